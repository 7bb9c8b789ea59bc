/**
 * The SQL store against the bare driver issuing the very same statements (the baseline, same
 * process, same database, interleaved rounds): get by id, create, update and a list page at 1,000
 * and at 1,000,000 secrets, then creates at concurrency 16 (throughput). On PostgreSQL the baseline
 * is a bare `pg` pool of the same size; on PGlite, `pglite.query` on the same instance (for
 * reference). Latency is wall time per operation; CPU per operation comes from
 * `process.cpuUsage` (steadier on a shared machine).
 *
 * Each operation is first run untimed on both sides (warm-up: 2,000 times, enough for the JIT to
 * have compiled both paths; creates 100 times, each adds a row), then measured in 20 short rounds
 * that alternate which side goes first.
 *
 * Goals: get p50 <= 1.3x the bare driver; get at 1,000,000 within 1.2x of get at 1,000; creates
 * at concurrency 16 >= 0.7x the bare driver's throughput.
 *
 * Seeding (not through the API): the measured organization's 1,000 rows are sealed and MAC'd by
 * the store's own code and inserted in batches; the rest of the table is filler rows in other
 * organizations made by one `INSERT ... SELECT FROM generate_series` (never read, they only make
 * the table and its indexes big). The store operates at the `SecretStore` level, so both sides do
 * the same statements with the same parameters, and on PostgreSQL the same named (prepared)
 * statements, as the store's own pool does; the store adds its Effect runtime, row decoding and the
 * MAC check. One more row, "get (bare unprepared)", compares the store's get with the bare driver
 * sending the text unnamed (parsed and planned each time, as `pool.query(text, params)` does).
 *
 * Needs a PostgreSQL server: `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/test`).
 * Works in a schema of its own and drops it at the end.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import { KeyRing, Placeholder, SecretCipher, SecretStore } from "@secretgate/core"
import { PgliteClient, SqlSecretStore } from "@secretgate/sql"
import { Context, Effect, Layer, Redacted, Runtime, type Scope } from "effect"
import { randomBytes, randomUUID } from "node:crypto"
import pg from "pg"
import { statementName } from "../packages/sql/src/internal/execute.js"
import { makeMac } from "../packages/sql/src/internal/records.js"
import * as Statements from "../packages/sql/src/internal/statements.js"
import { load, median, quantile, table } from "./support.js"

const DATABASE_URL = process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test"
const ORG = "bench-org"
const OWN = 1_000
const SIZES = [1_000, 1_000_000] as const
/** Rounds of the latency measurements: many short ones, so that both sides see the same load. */
const ROUNDS = 20
/**
 * Untimed operations of each side before each measurement. With 100, neither side's path was
 * compiled yet when measured (the bare driver's get still cost ~200 µs of CPU, ~60 µs once
 * compiled): the figures were of the JIT at work, more so for the side with more code.
 */
const WARM_UP = 2_000
/** Creates warm up less: each one adds a row to the organization measured. */
const WARM_UP_CREATES = 100
/** Rounds of the throughput measurement. */
const THROUGHPUT_ROUNDS = 5
const POOL = 10
const key = KeyRing.keyFromBase64("bench", randomBytes(32).toString("base64"))
const ring = KeyRing.make([key])
const cipher = SecretCipher.make(ring)
const mac = makeMac(ring)

/** A bare driver: runs a statement text with its parameters. */
type Bare = (text: string, params: ReadonlyArray<unknown>) => Promise<ReadonlyArray<Record<string, unknown>>>

interface Sample {
  readonly latencies: Array<number>
  cpuMicros: number
  ops: number
}
const sample = (): Sample => ({ latencies: [], cpuMicros: 0, ops: 0 })

const timed = async (into: Sample, count: number, op: (i: number) => Promise<unknown>) => {
  const cpu = process.cpuUsage()
  for (let i = 0; i < count; i++) {
    const started = performance.now()
    await op(i)
    into.latencies.push(performance.now() - started)
  }
  const used = process.cpuUsage(cpu)
  into.cpuMicros += used.user + used.system
  into.ops += count
}

const record = (name: string): SecretStore.SecretRecord => {
  const id = randomUUID()
  const at = new Date()
  return {
    id,
    organizationId: ORG,
    name,
    hosts: ["api.example.com"],
    placeholder: Placeholder.generate(),
    sealed: cipher.seal(Redacted.make("bench-value"), { organizationId: ORG, secretId: id }),
    createdAt: at,
    updatedAt: at
  }
}

const insertParams = (channel: string, r: SecretStore.SecretRecord) => [
  r.organizationId, 1_000_000_000, r.id, r.name, r.description ?? null, r.hosts, r.placeholder,
  r.sealed.keyId, r.sealed.nonce, r.sealed.ciphertext, mac.sign(r), r.createdAt, r.updatedAt, channel
] as const

/** Grows the table to `size` rows: the organization's own rows plus filler in other organizations. */
const seed = async (bare: Bare, schema: string, size: number, own: ReadonlyArray<SecretStore.SecretRecord>) => {
  const st = Statements.make(schema)
  const current = Number((await bare(`SELECT count(*) AS n FROM ${schema}.secrets`, []))[0]!["n"])
  if (current === 0) {
    for (const r of own) await bare(st.insert, insertParams(`secretgate_${schema}`, r))
  }
  const filler = size - Math.max(current, own.length)
  if (filler <= 0) return
  const from = Math.max(current, own.length) - own.length
  // 1,000 secrets per filler organization
  await bare(
    `INSERT INTO ${schema}.organizations (id, secret_count, revision)
     SELECT 'filler-' || o, 1000, 1 FROM generate_series($1::int / 1000, ($1::int + $2::int - 1) / 1000) o ON CONFLICT (id) DO NOTHING`,
    [from, filler]
  )
  await bare(
    `INSERT INTO ${schema}.secrets (organization_id, id, name, description, hosts, placeholder, key_id, nonce, ciphertext, mac, created_at, updated_at)
     SELECT 'filler-' || (g / 1000), md5(g::text)::uuid::text, 'filler_' || g, NULL, ARRAY['api.example.com'],
       'sg_secret_' || substr(md5('p' || g::text) || md5('q' || g::text), 1, 32), $3::text, 'n', 'c', 'm',
       now() - g * interval '1 millisecond', now() - g * interval '1 millisecond'
     FROM generate_series($1::int, $1::int + $2::int - 1) g`,
    [from, filler, key.id]
  )
  await bare(`ANALYZE ${schema}.secrets`, [])
}

interface Engine {
  readonly name: string
  readonly bare: Bare
  /** The bare driver sending statements unnamed (PostgreSQL only). */
  readonly unprepared?: Bare
  readonly store: SqlSecretStore.SqlSecretStore
  readonly run: <A>(effect: Effect.Effect<A, unknown>) => Promise<A>
  readonly schema: string
  readonly sizes: ReadonlyArray<number>
}

const fmt = (ms: number) => (ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : `${ms.toFixed(2)} ms`)

const benchEngine = async (engine: Engine) => {
  const st = Statements.make(engine.schema)
  const channel = `secretgate_${engine.schema}`
  const own = Array.from({ length: OWN }, (_, i) => record(`own_${String(i).padStart(5, "0")}`))
  const query: SecretStore.PageQuery = { limit: 50, sort: "createdAt", order: "desc" }
  const page = st.page(query, undefined)
  const rows: Array<Array<string | number>> = []
  const getP50 = new Map<number, number>()
  let created = 0
  for (const size of engine.sizes) {
    const seeding = performance.now()
    await seed(engine.bare, engine.schema, size, own)
    const seeded = performance.now() - seeding
    const ops: Record<string, { bare: (i: number) => Promise<unknown>; store: (i: number) => Promise<unknown>; count: number; warmUp?: number }> = {
      get: {
        count: 500,
        bare: (i) => engine.bare(st.findById, [ORG, own[(i * 7919) % OWN]!.id]),
        store: (i) => engine.run(engine.store.findById(ORG, own[(i * 7919) % OWN]!.id))
      },
      ...(engine.unprepared === undefined ? {} : {
        "get (bare unprepared)": {
          count: 500,
          bare: (i: number) => engine.unprepared!(st.findById, [ORG, own[(i * 7919) % OWN]!.id]),
          store: (i: number) => engine.run(engine.store.findById(ORG, own[(i * 7919) % OWN]!.id))
        }
      }),
      create: {
        count: 100,
        warmUp: WARM_UP_CREATES,
        bare: () => engine.bare(st.insert, insertParams(channel, record(`c_${size}_${created++}`))),
        store: () => engine.run(engine.store.insert(record(`c_${size}_${created++}`), { quota: 1_000_000_000 }))
      },
      update: {
        count: 200,
        bare: async (i) => {
          const r = own[(i * 104729) % OWN]!
          const [row] = await engine.bare(st.findById, [ORG, r.id])
          const next = { ...r, updatedAt: new Date() }
          await engine.bare(st.update, [ORG, r.id, null, next.hosts, next.sealed.keyId, next.sealed.nonce, next.sealed.ciphertext, mac.sign(next), next.updatedAt, row!["version"], channel])
        },
        store: (i) => engine.run(engine.store.update(ORG, own[(i * 104729) % OWN]!.id, (current) => ({ ...current, updatedAt: new Date() })))
      },
      "list page (50)": {
        count: 200,
        bare: () => engine.bare(page.text, page.params(ORG)),
        store: () => engine.run(engine.store.list(ORG, query))
      }
    }
    for (const [name, op] of Object.entries(ops)) {
      const bare = sample()
      const store = sample()
      // warm-up, untimed: both paths compiled by the JIT and their connections' statements prepared
      // (seeding has run the bare driver's insert a thousand times, but the store's reads not once)
      for (let i = 0; i < (op.warmUp ?? WARM_UP); i++) {
        await op.bare(i)
        await op.store(i)
      }
      for (let round = 0; round < ROUNDS; round++) {
        // interleaved, alternating which goes first
        const pair = round % 2 === 0 ? [[bare, op.bare], [store, op.store]] as const : [[store, op.store], [bare, op.bare]] as const
        for (const [into, f] of pair) await timed(into, Math.ceil(op.count / ROUNDS), f)
      }
      const sorted = (s: Sample) => [...s.latencies].sort((a, b) => a - b)
      const bareP50 = quantile(sorted(bare), 0.5)
      const storeP50 = quantile(sorted(store), 0.5)
      if (name === "get") getP50.set(size, storeP50)
      rows.push([
        name,
        size.toLocaleString("en"),
        fmt(bareP50),
        fmt(quantile(sorted(bare), 0.99)),
        fmt(storeP50),
        fmt(quantile(sorted(store), 0.99)),
        (storeP50 / bareP50).toFixed(2),
        `${(bare.cpuMicros / bare.ops).toFixed(0)} / ${(store.cpuMicros / store.ops).toFixed(0)}`
      ])
    }
    console.log(`(${engine.name}: ${size.toLocaleString("en")} rows seeded in ${(seeded / 1000).toFixed(1)} s)`)
  }
  // creates at concurrency 16: throughput, interleaved rounds
  const throughput = { bare: [] as Array<number>, store: [] as Array<number> }
  for (let round = 0; round < THROUGHPUT_ROUNDS; round++) {
    throughput.bare.push((await load(200, 16, async () => {
      await engine.bare(st.insert, insertParams(channel, record(`t_${created++}`)))
    })).rps)
    throughput.store.push((await load(200, 16, () => engine.run(engine.store.insert(record(`t_${created++}`), { quota: 1_000_000_000 })))).rps)
  }
  console.log("")
  table(["operation", "secrets", "bare p50", "bare p99", "store p50", "store p99", "store/bare p50", "CPU µs/op bare / store"], rows)
  const small = getP50.get(engine.sizes[0]!)!
  const large = getP50.get(engine.sizes[engine.sizes.length - 1]!)!
  const ratio = median(throughput.store) / median(throughput.bare)
  console.log("")
  console.log(`${engine.name}: get p50 at ${engine.sizes[engine.sizes.length - 1]!.toLocaleString("en")} vs ${engine.sizes[0]!.toLocaleString("en")}: ${(large / small).toFixed(2)}x (goal <= 1.2x)`)
  console.log(
    `${engine.name}: creates at concurrency 16: bare ${median(throughput.bare).toFixed(0)}/s, store ${median(throughput.store).toFixed(0)}/s, store/bare ${ratio.toFixed(2)} (goal >= 0.7)`
  )
}

const storeOver = (layer: Layer.Layer<SqlClient.SqlClient, unknown>, schema: string): Effect.Effect<
  Context.Context<SqlSecretStore.SqlSecretStore | SqlClient.SqlClient>,
  unknown,
  Scope.Scope
> => Layer.build(SqlSecretStore.layerStore({ keyRing: ring, schema }).pipe(Layer.provideMerge(layer)))

export default async () => {
  // ── PostgreSQL ─────────────────────────────────────────────────────────────────────────────────
  const schema = `sg_bench_${randomBytes(4).toString("hex")}`
  const pool = new pg.Pool({ connectionString: DATABASE_URL, max: POOL })
  try {
    await pool.query("SELECT 1")
  } catch (error) {
    console.log(`(no PostgreSQL server at ${DATABASE_URL.replace(/\/\/[^@]*@/, "//")}: ${(error as Error).message}; set DATABASE_URL. PostgreSQL part skipped)`)
    await pool.end()
    return
  }
  await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    // the store's production layer: its own pool (of the same size as the bare one)
    const context = yield* Layer.build(
      SqlSecretStore.layer({ url: Redacted.make(DATABASE_URL), maxConnections: POOL, keyRing: ring, schema })
    )
    const store = Context.get(context, SqlSecretStore.SqlSecretStore)
    const runtime = yield* Effect.runtime<never>()
    const run = <A>(effect: Effect.Effect<A, unknown>) => Runtime.runPromise(runtime)(effect)
    yield* Effect.promise(() =>
      benchEngine({
        name: "PostgreSQL",
        schema,
        sizes: SIZES,
        store,
        run,
        bare: async (text, params) => (await pool.query({ name: statementName(text), text, values: params as Array<unknown> })).rows,
        unprepared: async (text, params) => (await pool.query(text, params as Array<unknown>)).rows
      })
    )
  }))).finally(async () => {
    await pool.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
    await pool.end()
  })

  // ── PGlite, for reference ─────────────────────────────────────────────────────────────────────
  console.log("")
  await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
    const context = yield* storeOver(PgliteClient.layer(), "secretgate")
    const store = Context.get(context, SqlSecretStore.SqlSecretStore)
    const db = Context.get(context, SqlClient.SqlClient) as PgliteClient.PgliteClient
    const runtime = yield* Effect.runtime<never>()
    yield* Effect.promise(() =>
      benchEngine({
        name: "PGlite",
        schema: "secretgate",
        sizes: SIZES,
        store,
        run: (effect) => Runtime.runPromise(runtime)(effect),
        bare: async (text, params) => (await db.pglite.query<Record<string, unknown>>(text, params as Array<unknown>)).rows
      })
    )
  })))
}
