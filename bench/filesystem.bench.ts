/**
 * The filesystem backend against the memory backend (the baseline, same process, same run):
 * create, get, update and list-page latency (p50/p99) and CPU time per operation (user + system,
 * `process.cpuUsage`, steadier than latency on a shared machine) at 1,000 and 100,000 secrets in one
 * organization. Goals: get p50 under 1 ms at 100,000, and get cost within 2x from 1,000 to 100,000.
 *
 * Seeding: the memory store is filled through the public API. The filesystem store is created
 * through the public API (manifest, key check, journal), then its record files are written
 * directly, following the format in docs/filesystem.md, without the per-file fsync of the real
 * write path (100,000 fsyncs would take minutes and measure the disk, not the store). The store
 * is then reopened normally without a snapshot, which reads and authenticates every file (a file
 * that did not match the documented format would be reported damaged and fail the run) and writes
 * the index snapshot; then opened once more, from the snapshot. Both opens are timed. Measured
 * operations all go through the public `Secrets` API with the real, durable write path.
 */
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { KeyRing, Placeholder, SecretCipher, Secrets } from "@secretgate/core"
import { FileSystemSecretStore } from "@secretgate/filesystem"
import { MemorySecretStore } from "@secretgate/memory"
import { Effect, Layer, ManagedRuntime, Redacted } from "effect"
import { createHmac } from "node:crypto"
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import * as Path from "node:path"

const ORG = "bench-org"
const SIZES = [1_000, 100_000] as const
const QUOTA = 1_000_000

type Op = "create" | "get" | "update" | "list-page"
interface Stats {
  readonly p50: number
  readonly p99: number
  /** CPU time (user + system, all threads) per operation, in ms: steadier than latency on a shared machine. */
  readonly cpu: number
}

const percentile = (sorted: ReadonlyArray<number>, p: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!

const measure = <E>(count: number, op: (i: number) => Effect.Effect<unknown, E>): Effect.Effect<Stats, E> =>
  Effect.gen(function*() {
    for (let i = 0; i < Math.min(20, count); i++) yield* op(i) // warm-up
    const times: Array<number> = []
    const cpuBefore = process.cpuUsage()
    for (let i = 0; i < count; i++) {
      const start = performance.now()
      yield* op(i)
      times.push(performance.now() - start)
    }
    const cpu = process.cpuUsage(cpuBefore)
    times.sort((a, b) => a - b)
    return { p50: percentile(times, 50), p99: percentile(times, 99), cpu: (cpu.user + cpu.system) / 1000 / count }
  })

/** The four operations against `Secrets` holding `ids` (all in ORG). */
const runOps = (size: number, ids: ReadonlyArray<string>) =>
  Effect.gen(function*() {
    const secrets = yield* Secrets.Secrets
    const value = Redacted.make("bench-value")
    const pick = (i: number) => ids[(i * 7919) % ids.length]!
    const results = new Map<Op, Stats>()
    let created = 0
    results.set("create", yield* measure(200, () => secrets.create(ORG, { name: `created-${size}-${created++}`, value })))
    results.set("get", yield* measure(5_000, (i) => secrets.get(ORG, pick(i))))
    results.set("update", yield* measure(200, (i) => secrets.update(ORG, pick(i), { value: Redacted.make(`v${i}`) })))
    results.set("list-page", yield* measure(size > 10_000 ? 20 : 200, () => secrets.listPage(ORG, { limit: 100 })))
    return results
  })

const populateMemory = (size: number) =>
  Effect.gen(function*() {
    const secrets = yield* Secrets.Secrets
    const ids: Array<string> = []
    for (let i = 0; i < size; i++) {
      ids.push((yield* secrets.create(ORG, { name: `seed-${i}`, value: Redacted.make(`seed-value-${i}`) })).id)
    }
    return ids
  })

/** Writes `size` record files as docs/filesystem.md describes them (see the note at the top). */
const seedFiles = (directory: string, key: KeyRing.Key, size: number): Array<string> => {
  const cipher = SecretCipher.make(KeyRing.make([key]))
  const macKey = createHmac("sha256", Redacted.value(key.bytes)).update("secretgate/filesystem/v1/record-mac").digest()
  const ids: Array<string> = []
  const start = Date.now() - size
  for (let i = 0; i < size; i++) {
    const id = globalThis.crypto.randomUUID()
    const at = new Date(start + i)
    const sealed = cipher.seal(Redacted.make(`seed-value-${i}`), { organizationId: ORG, secretId: id })
    const record = { id, organizationId: ORG, name: `seed-${i}`, hosts: [], placeholder: Placeholder.generate(), sealed }
    const mac = createHmac("sha256", macKey).update(JSON.stringify([
      "secretgate-record", 1, id, ORG, record.name, null, record.hosts, record.placeholder,
      sealed.keyId, sealed.nonce, sealed.ciphertext, at.getTime(), at.getTime()
    ])).digest("base64")
    const body = { format: "secretgate-record", version: 1, mac, record: { ...record, createdAt: at.toISOString(), updatedAt: at.toISOString() } }
    const shard = Path.join(directory, "records", id.slice(0, 2))
    mkdirSync(shard, { recursive: true, mode: 0o700 })
    writeFileSync(Path.join(shard, `${id}.json`), `${JSON.stringify(body)}\n`, { mode: 0o600 })
    ids.push(id)
  }
  return ids
}

const fmt = (ms: number) => (ms < 1 ? `${(ms * 1000).toFixed(0)} µs` : `${ms.toFixed(2)} ms`)

export default async (): Promise<void> => {
  const rows: Array<string> = []
  const getP50 = new Map<number, number>()
  const notes: Array<string> = []
  for (const size of SIZES) {
    // memory baseline
    const memory = ManagedRuntime.make(MemorySecretStore.layer({ quota: QUOTA }))
    const memoryIds = await memory.runPromise(populateMemory(size))
    const baseline = await memory.runPromise(runOps(size, memoryIds))
    await memory.dispose()

    // filesystem
    const root = mkdtempSync(Path.join(tmpdir(), "secretgate-bench-"))
    const directory = Path.join(root, "store")
    try {
      const base64 = KeyRing.keyToBase64(KeyRing.generateKey())
      const key = KeyRing.keyFromBase64("primary", base64)
      const options = { directory, key: base64, quota: QUOTA }
      await Effect.runPromise(Effect.scoped(Layer.build(FileSystemSecretStore.layer(options))))
      const started = performance.now()
      const ids = seedFiles(directory, key, size)
      const seedMs = Math.round(performance.now() - started)
      // the files were written behind the store's back: no snapshot may vouch for them
      const snapshot = Path.join(directory, "snapshot")
      rmSync(snapshot, { force: true })
      const openStore = async () => {
        const began = performance.now()
        const runtime = ManagedRuntime.make(FileSystemSecretStore.layer(options).pipe(Layer.provide(NodeFileSystem.layer)))
        const keys = await runtime.runPromise(Effect.flatMap(FileSystemSecretStore.FileSystemSecretStore, (store) => store.keys))
        const ms = Math.round(performance.now() - began)
        if (keys[0]?.records !== size) throw new Error(`seeded ${size} records, the store reads ${keys[0]?.records}`)
        return { runtime, ms }
      }
      const scanned = await openStore()
      await scanned.runtime.dispose()
      if (!existsSync(snapshot)) throw new Error("the open that read every file wrote no snapshot")
      const { runtime: fs, ms: snapshotMs } = await openStore()
      notes.push(
        `${size.toLocaleString("en")} secrets: seeding the files took ${seedMs} ms; opening the store without a snapshot (reading and authenticating every file, then writing the snapshot) ${scanned.ms} ms, from the snapshot ${snapshotMs} ms (${(scanned.ms / snapshotMs).toFixed(1)}x faster)`
      )
      const measured = await fs.runPromise(runOps(size, ids))
      await fs.dispose()

      for (const op of ["create", "get", "update", "list-page"] as const) {
        const m = baseline.get(op)!
        const f = measured.get(op)!
        if (op === "get") getP50.set(size, f.p50)
        rows.push(
          `| ${op} | ${size.toLocaleString("en")} | ${fmt(m.p50)} | ${fmt(m.p99)} | ${fmt(m.cpu)} | ${fmt(f.p50)} | ${fmt(f.p99)} | ${fmt(f.cpu)} | ${(f.p50 / m.p50).toFixed(1)}x |`
        )
      }
    } finally {
      rmSync(root, { recursive: true, force: true })
    }
  }
  console.log("| operation | secrets | memory p50 | memory p99 | memory CPU/op | filesystem p50 | filesystem p99 | filesystem CPU/op | fs/memory p50 |")
  console.log("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
  for (const row of rows) console.log(row)
  const small = getP50.get(SIZES[0])!
  const large = getP50.get(SIZES[1])!
  console.log("")
  console.log(`filesystem get p50 at 100,000: ${fmt(large)} (goal < 1 ms); 100,000 vs 1,000: ${(large / small).toFixed(2)}x (goal <= 2x)`)
  for (const note of notes) console.log(note)
}
