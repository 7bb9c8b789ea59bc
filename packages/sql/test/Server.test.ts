/**
 * What only a real PostgreSQL server can show: separate connections racing for one name and for
 * the last quota slot, migrations raced by processes, two `SecretServer` replicas in two processes
 * over one database with an egress agent fed by the other, and a listener whose connection the
 * server kills. Runs when `SECRETGATE_TEST_DATABASE_URL` is set (CI sets it).
 */
import { describe, expect, it } from "@effect/vitest"
import { KeyRing, Secretgate, Secrets, SecretResolver, SandboxMount } from "@secretgate/core"
import { ApiKeys, HttpSecrets } from "@secretgate/http"
import { SqlSecretStore } from "@secretgate/sql"
import { SecretgateAgent } from "@secretgate/undici"
import { Context, Duration, Effect, Either, Layer, Redacted } from "effect"
import * as Http from "node:http"
import type * as Net from "node:net"
import { request } from "undici"
import { databaseUrl, dropSchema, freshSchema, skipReason, startChild, testKey, withServer } from "./support.js"

const open = (schema: string, options: Partial<SqlSecretStore.PgConfig> = {}) =>
  Layer.build(SqlSecretStore.layer({ url: Redacted.make(databaseUrl!), maxConnections: 4, keyRing: KeyRing.make([testKey]), schema, ...options }))
const secretsOf = (context: Context.Context<Secrets.Secrets>) => Context.get(context, Secrets.Secrets)
const org = () => `org-${globalThis.crypto.randomUUID()}`

/** Drops the schema when the scope closes. */
const scopedSchema = Effect.acquireRelease(Effect.sync(freshSchema), (schema) => Effect.promise(() => dropSchema(schema)))

/** Polls `check` every 20 ms until it holds, at most `within`; returns how long it took. */
const within = <E, R>(bound: Duration.DurationInput, check: Effect.Effect<boolean, E, R>) =>
  Effect.gen(function*() {
    const started = Date.now()
    const deadline = started + Duration.toMillis(Duration.decode(bound))
    while (!(yield* check)) {
      if (Date.now() > deadline) return yield* Effect.dieMessage(`the condition did not hold within ${Duration.format(Duration.decode(bound))}`)
      yield* Effect.sleep("20 millis")
    }
    return Date.now() - started
  })

describe.skipIf(databaseUrl === undefined)(skipReason ?? "sql on a PostgreSQL server", () => {
  it.live("concurrent creates of one name on separate connections: exactly one wins", () =>
    Effect.gen(function*() {
      const schema = yield* scopedSchema
      const a = secretsOf(yield* open(schema))
      const b = secretsOf(yield* open(schema))
      const o = org()
      const results = yield* Effect.all(
        Array.from({ length: 40 }, (_, i) => Effect.either((i % 2 === 0 ? a : b).create(o, { name: "contended", value: Redacted.make(`v${i}`) }))),
        { concurrency: "unbounded" }
      )
      expect(results.filter(Either.isRight).length).toBe(1)
      expect(results.filter(Either.isLeft).map((r) => r.left._tag)).toEqual(Array(39).fill("SecretNameTaken"))
      expect((yield* b.list(o)).length).toBe(1)
    }).pipe(Effect.scoped))

  it.live("creates at the quota edge on separate connections: exactly one takes the last slot", () =>
    Effect.gen(function*() {
      const schema = yield* scopedSchema
      const a = secretsOf(yield* open(schema, { quota: 5 }))
      const b = secretsOf(yield* open(schema, { quota: 5 }))
      const o = org()
      for (let i = 0; i < 4; i++) yield* a.create(o, { name: `s${i}`, value: Redacted.make("v") })
      const results = yield* Effect.all(
        Array.from({ length: 16 }, (_, i) => Effect.either((i % 2 === 0 ? a : b).create(o, { name: `edge${i}`, value: Redacted.make("v") }))),
        { concurrency: "unbounded" }
      )
      expect(results.filter(Either.isRight).length).toBe(1)
      expect(results.filter(Either.isLeft).map((r) => r.left._tag)).toEqual(Array(15).fill("QuotaExceeded"))
      const counts = yield* Effect.promise(() =>
        withServer((client) =>
          client.query(`SELECT (SELECT count(*) FROM ${schema}.secrets WHERE organization_id = $1)::int AS rows,
            (SELECT secret_count FROM ${schema}.organizations WHERE id = $1) AS counted`, [o])
        )
      )
      expect(counts.rows[0]).toEqual({ rows: 5, counted: 5 })
    }).pipe(Effect.scoped))

  it.live("four processes opening an empty schema at once: one applies the migration, all open", () =>
    Effect.gen(function*() {
      const schema = yield* scopedSchema
      const children = Array.from({ length: 4 }, () => startChild("migrate", [schema]))
      yield* Effect.promise(() => Promise.all(children.map((child) => child.line((line) => line === "ready"))))
      for (const child of children) child.process.stdin!.write("go\n")
      const ends = yield* Effect.promise(() => Promise.all(children.map((child) => child.exited)))
      for (const end of ends) expect(end, end.stderr).toMatchObject({ code: 0 })
      const rows = yield* Effect.promise(() => withServer((client) => client.query(`SELECT version FROM ${schema}.migrations`)))
      expect(rows.rows).toEqual([{ version: 1 }])
    }).pipe(Effect.scoped), 120_000)

  it.live("two SecretServer replicas in two processes: a create on one is read on the other; an update on one is substituted by an egress agent fed by the other", () =>
    Effect.gen(function*() {
      const schema = yield* scopedSchema
      const manage = Redacted.value(ApiKeys.generate())
      const resolve = Redacted.value(ApiKeys.generate())
      const replicas = yield* Effect.acquireRelease(
        Effect.sync(() => [0, 1].map(() => startChild("replica", [schema], { REPLICA_MANAGE_KEY: manage, REPLICA_RESOLVE_KEY: resolve }))),
        (children) => Effect.promise(() => Promise.all(children.map((child) => (child.process.stdin!.end(), child.exited))))
      )
      // the first opens (and migrates) before the second, as replicas of a deployment may not
      const urls: Array<string> = []
      for (const replica of replicas) {
        urls.push((JSON.parse(yield* Effect.promise(() => replica.line((line) => line.startsWith("{")))) as { url: string }).url)
      }
      const gate = (baseUrl: string) =>
        Effect.acquireRelease(
          Effect.sync(() => new Secretgate({ layer: HttpSecrets.layer({ baseUrl, apiKey: manage, resolveApiKey: resolve }), organizationId: "acme" })),
          (g) => Effect.promise(() => g.dispose())
        )
      const a = yield* gate(urls[0]!)
      const b = yield* gate(urls[1]!)
      const created = yield* Effect.promise(() => a.secret.create({ name: "api-token", value: "value-one", hosts: ["localhost"] }))
      expect(yield* Effect.promise(() => b.secret.get(created.id))).toEqual(created)

      const received: Array<string | undefined> = []
      const upstream = Http.createServer((req, res) => {
        received.push(req.headers.authorization)
        res.end("ok")
      })
      yield* Effect.acquireRelease(
        Effect.promise(() => new Promise<void>((done) => upstream.listen(0, "localhost", done))),
        () => Effect.promise(() => new Promise<void>((done) => upstream.close(() => done())))
      )
      const port = (upstream.address() as Net.AddressInfo).port
      const mount = yield* Effect.promise(() => b.mount({ TOKEN: "api-token" }))
      const agent = new SecretgateAgent({ resolver: yield* Effect.promise(() => b.resolver(mount, { ttl: "300 millis" })), allowHttp: ["localhost"] })
      const call = Effect.promise(async () => {
        const response = await request(`http://localhost:${port}/`, { headers: { authorization: `Bearer ${mount.env.TOKEN}` }, dispatcher: agent })
        await response.body.text()
        return received[received.length - 1]
      })
      expect(yield* call).toBe("Bearer value-one")
      yield* Effect.promise(() => a.secret.update(created.id, { value: "value-two" }))
      // bound: the agent's TTL (300 ms) plus a request; replica B reads the database for each resolve
      yield* within("3 seconds", Effect.map(call, (seen) => seen === "Bearer value-two"))
      yield* Effect.promise(() => agent.close())
    }).pipe(Effect.scoped), 120_000)

  it.live("the listener's connection killed by the server: it reconnects, catches up, and no stale value outlives the bound", () =>
    Effect.gen(function*() {
      const schema = yield* scopedSchema
      const writer = secretsOf(yield* open(schema))
      // polling off: only the listener (and its catch-up after a reconnect) can bring changes
      const reader = yield* open(schema, { pollInterval: 0 })
      const o = org()
      yield* writer.create(o, { name: "token", value: Redacted.make("v1") })
      const resolver = yield* Effect.gen(function*() {
        const mount = yield* SandboxMount.make(o, { TOKEN: "token" })
        return yield* SecretResolver.make(mount, { ttl: "1 hour" })
      }).pipe(Effect.provide(reader))
      const current = Effect.promise(async () => [...(await resolver.current()).values()].map((v) => Redacted.value(v.value))[0])
      expect(yield* current).toBe("v1")
      const secret = yield* writer.getByName(o, "token")
      const listeners = (sql: string) =>
        Effect.promise(() =>
          withServer((client) => client.query(sql, [`secretgate-listener:${schema}`]))
        )
      yield* within("5 seconds", Effect.map(listeners(`SELECT pid FROM pg_stat_activity WHERE application_name = $1`), (r) => r.rows.length === 2))
      const killed = yield* listeners(`SELECT pg_terminate_backend(pid) AS killed FROM pg_stat_activity WHERE application_name = $1`)
      expect(killed.rows.length).toBe(2)
      // changed while no listener runs
      yield* writer.update(o, secret.id, { value: Redacted.make("v2") })
      // bound: the reconnect's backoff (50 ms, then doubling) and its catch-up poll
      yield* within("5 seconds", Effect.map(current, (value) => value === "v2"))
      yield* within("5 seconds", Effect.map(listeners(`SELECT pid FROM pg_stat_activity WHERE application_name = $1`), (r) => r.rows.length === 2))
      // and notifications flow again
      yield* writer.update(o, secret.id, { value: Redacted.make("v3") })
      yield* within("2 seconds", Effect.map(current, (value) => value === "v3"))
    }).pipe(Effect.scoped), 60_000)
})
