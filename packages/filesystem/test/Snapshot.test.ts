import { FileSystem } from "@effect/platform"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { describe, expect, it } from "@effect/vitest"
import { KeyRing, Placeholder, type Secret, Secrets, SecretStore } from "@secretgate/core"
import { FileSystemSecretStore } from "@secretgate/filesystem"
import { Effect, Logger, LogLevel, Redacted } from "effect"
import { createHmac } from "node:crypto"
import { copyFileSync, existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import * as Path from "node:path"
import * as Engine from "../src/internal/engine.js"
import { type Child, failure, runChild, startChild, tempStore, withStore } from "./support.js"

const ORGS = ["acme", "globex", "initech"] as const
const value = (text: string) => Redacted.make(text)
const newKey = () => KeyRing.keyToBase64(KeyRing.generateKey("k"))

const snapshotOf = (directory: string) => Path.join(directory, "snapshot")
const recordFile = (directory: string, id: string) => Path.join(directory, "records", id.slice(0, 2), `${id}.json`)
const header = (directory: string) => JSON.parse(readFileSync(snapshotOf(directory), "utf8").split("\n")[0]!)

/**
 * Everything a reader can see: per organization the listing, every secret by id and by name,
 * and every value (through its placeholder), plus the key statuses.
 */
const contents = (options: FileSystemSecretStore.Options, orgs: ReadonlyArray<string> = ORGS) =>
  withStore(options, Effect.gen(function*() {
    const s = yield* Secrets.Secrets
    const byOrg: Record<string, unknown> = {}
    for (const org of orgs) {
      const listed = yield* s.list(org)
      const got = yield* Effect.forEach(listed, (secret) => s.get(org, secret.id))
      const named = yield* Effect.forEach(listed, (secret) => s.getByName(org, secret.name))
      const values = (yield* s.resolve(org, listed.map((secret) => secret.placeholder))).map((r) => Redacted.value(r.value))
      byOrg[org] = { listed, got, named, values }
    }
    const keys = yield* (yield* FileSystemSecretStore.FileSystemSecretStore).keys
    return { byOrg, keys }
  }))

/** The same, read by an open without a snapshot: every record file read and authenticated. */
const scanned = (options: FileSystemSecretStore.Options, orgs: ReadonlyArray<string> = ORGS) =>
  Effect.suspend(() => {
    rmSync(snapshotOf(options.directory), { force: true })
    return contents(options, orgs)
  })

/** Opens the engine itself (for the settings tests lower) and lists "acme". */
const openEngine = (
  directory: string,
  key: Redacted.Redacted<string>,
  settings: Pick<Engine.EngineOptions, "snapshotMaxBytes" | "snapshotRefreshFiles">
) =>
  Effect.flatMap(FileSystem.FileSystem, (fs) =>
    Effect.flatMap(
      Engine.open(fs, {
        directory,
        keys: { _tag: "Configured", ring: KeyRing.make([KeyRing.keyFromBase64("primary", key)]) },
        lockTimeoutMillis: 10_000,
        journalLimitBytes: 4 * 1024 * 1024,
        ...settings
      }),
      (engine) => engine.store.listAll("acme")
    )).pipe(Effect.provide(NodeFileSystem.layer), Effect.scoped)

/** Creates, updates and deletes in several organizations. */
const churn = (options: FileSystemSecretStore.Options, round: number, count = 12) =>
  withStore(options, Effect.gen(function*() {
    const s = yield* Secrets.Secrets
    for (const org of ORGS) {
      const made: Array<Secret.Secret> = []
      for (let i = 0; i < count; i++) {
        made.push(yield* s.create(org, {
          name: `r${round}-${i}`,
          value: value(`value-${org}-${round}-${i}`),
          ...(i % 3 === 0 ? { description: `about ${i}` } : {}),
          hosts: i % 2 === 0 ? [`h${i}.example.com`] : []
        }))
      }
      for (let i = 0; i < count; i += 4) yield* s.update(org, made[i]!.id, { value: value(`updated-${org}-${round}-${i}`) })
      for (let i = 1; i < count; i += 5) yield* s.update(org, made[i]!.id, { description: "changed", hosts: ["new.example.com"] })
      for (let i = 2; i < count; i += 6) yield* s.delete(org, made[i]!.id)
    }
  }))

describe("the index snapshot", () => {
  it.live("an open from the snapshot gives what a full scan gives (several organizations, after journal rotations)", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      const options = { directory, key: newKey(), journalLimitBytes: 2_000 }
      yield* churn(options, 0)
      yield* churn(options, 1)
      expect(existsSync(Path.join(directory, "journal.prev"))).toBe(true)
      expect(header(directory)).toMatchObject({ format: "secretgate-snapshot", version: 1, keyId: "primary" })
      const fromSnapshot = yield* contents(options)
      expect(existsSync(snapshotOf(directory))).toBe(true)
      const full = yield* scanned(options)
      expect(fromSnapshot).toEqual(full)
      expect((full.byOrg["acme"] as { listed: Array<unknown> }).listed.length).toBe(20)
      // the scan wrote a fresh snapshot; opening from it again gives the same
      expect(existsSync(snapshotOf(directory))).toBe(true)
      expect(yield* contents(options)).toEqual(full)
    }), 60_000)

  it.live("a tampered, truncated, garbage, foreign or other-version snapshot is ignored, and replaced", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      const key = newKey()
      const options = { directory, key }
      yield* churn(options, 0, 6)
      const expected = yield* scanned(options)
      const good = readFileSync(snapshotOf(directory), "utf8")
      // a snapshot of another store under the same key: valid MAC, but its journal is not this one
      const other = tempStore()
      yield* churn({ directory: other, key }, 0, 3)
      const foreignStore = readFileSync(snapshotOf(other), "utf8")
      // authenticated as docs/filesystem.md says, with this store's key or another one
      const [goodHeader, payload] = good.split("\n") as [string, string]
      const macUnder = (base64: Redacted.Redacted<string>, body: string) => {
        const bytes = Buffer.from(Redacted.value(base64), "base64")
        const macKey = createHmac("sha256", bytes).update("secretgate/filesystem/v1/snapshot-mac").digest()
        const mac = createHmac("sha256", macKey).update(`secretgate-snapshot 1\n${body}`).digest("base64")
        return `${goodHeader.replace(/"mac":"[^"]*"/, `"mac":"${mac}"`)}\n${body}\n`
      }
      expect(macUnder(key, payload)).toBe(good)
      const parsed = JSON.parse(payload) as { records: Array<Array<unknown>> }
      expect(JSON.stringify(parsed)).toBe(payload)
      const withoutRecord = JSON.stringify({ ...parsed, records: parsed.records.filter((row) => row[2] !== "r0-3") })
      expect(withoutRecord.length).toBeLessThan(payload.length)
      const cases: ReadonlyArray<readonly [string, string]> = [
        ["a name changed", good.replace("r0-1", "r0-X")],
        ["an organization changed", good.replace(/"globex"/g, "\"acme\"")],
        ["a record dropped", `${goodHeader}\n${withoutRecord}\n`],
        ["the position moved", good.replace(/"offset":\d+/, "\"offset\":0")],
        ["the MAC changed", good.replace(/"mac":"(.)/, (_m, c: string) => `"mac":"${c === "A" ? "B" : "A"}`)],
        ["truncated", good.slice(0, good.length >> 1)],
        ["the final newline missing", good.slice(0, -1)],
        ["empty", ""],
        ["garbage", "\u0000\u00ff not json at all\n{]\n"],
        ["JSON of another shape", "{\"format\":\"secretgate-snapshot\"}\n[]\n"],
        ["another version", good.replace("\"version\":1", "\"version\":2")],
        ["an unknown key id", good.replace("\"keyId\":\"primary\"", "\"keyId\":\"elsewhere\"")],
        ["another store's", foreignStore],
        ["another key's", macUnder(newKey(), payload)]
      ]
      for (const [what, text] of cases) {
        writeFileSync(snapshotOf(directory), text, { mode: 0o600 })
        expect(yield* contents(options), what).toEqual(expected)
        expect(readFileSync(snapshotOf(directory), "utf8"), what).not.toBe(text)
        expect(header(directory).format, what).toBe("secretgate-snapshot")
      }
      // authentic, but the record files disagree: the directory listing finds the one left out
      writeFileSync(snapshotOf(directory), macUnder(key, withoutRecord), { mode: 0o600 })
      expect(yield* contents(options)).toEqual(expected)
      // a directory in its place: ignored (and not replaced)
      rmSync(snapshotOf(directory))
      mkdirSync(snapshotOf(directory))
      expect(yield* contents(options)).toEqual(expected)
      rmSync(snapshotOf(directory), { recursive: true })
    }), 60_000)

  it.live("a stale snapshot is caught up with writes made since, by this process and by others", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      const key = newKey()
      const options = { directory, key }
      yield* churn(options, 0, 6)
      yield* scanned(options) // a fresh snapshot
      const old = readFileSync(snapshotOf(directory))
      yield* churn(options, 1, 6)
      const env = { SG_KEY: Redacted.value(key) }
      yield* Effect.promise(() => runChild("command", [directory, "acme", "create", "from-child", "c1"], env))
      yield* Effect.promise(() => runChild("command", [directory, "acme", "update", "r0-0", "c2"], env))
      yield* Effect.promise(() => runChild("command", [directory, "globex", "delete", "r0-1"], env))
      writeFileSync(snapshotOf(directory), old) // whatever the opens since wrote
      const fromSnapshot = yield* contents(options)
      expect(readFileSync(snapshotOf(directory)).equals(old)).toBe(true) // few changes: not rewritten
      const full = yield* scanned(options)
      expect(fromSnapshot).toEqual(full)
      const acme = full.byOrg["acme"] as { listed: Array<Secret.Secret>; values: Array<string> }
      expect(acme.listed.map((s) => s.name)).toContain("from-child")
      expect(acme.values).toContain("c2")
      expect((full.byOrg["globex"] as { listed: Array<Secret.Secret> }).listed.map((s) => s.name)).not.toContain("r0-1")
    }), 60_000)

  it.live("a record file edited in place behind the store's back: after an open from the snapshot its get fails, not the listing", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      const options = { directory, key: newKey() }
      yield* churn(options, 0, 6)
      yield* scanned(options)
      const victim = yield* withStore(options, Effect.flatMap(Secrets.Secrets, (s) => s.getByName("acme", "r0-1")))
      writeFileSync(recordFile(directory, victim.id), "garbled")
      yield* withStore(options, Effect.gen(function*() {
        const s = yield* Secrets.Secrets
        expect((yield* s.list("acme")).map((x) => x.name)).toContain("r0-1")
        const error = yield* failure(s.get("acme", victim.id))
        expect(error._tag).toBe("StoreCorrupted")
        expect((yield* failure(s.resolve("acme", [victim.placeholder])))._tag).toBe("StoreCorrupted")
      }))
      // a file removed or added behind its back is noticed at open (the directory is listed)
      const other = yield* withStore(options, Effect.flatMap(Secrets.Secrets, (s) => s.getByName("acme", "r0-3")))
      const copy = readFileSync(recordFile(directory, other.id))
      rmSync(recordFile(directory, other.id))
      yield* withStore(options, Effect.gen(function*() {
        const s = yield* Secrets.Secrets
        const names = (yield* s.list("acme")).map((x) => x.name)
        expect(names).not.toContain("r0-3")
        expect(names).toContain("r0-1") // still not read: edited in place
        expect((yield* failure(s.get("acme", other.id)))._tag).toBe("SecretNotFound")
        // the garbled record can still be deleted by its organization
        yield* s.delete("acme", victim.id)
      }))
      writeFileSync(recordFile(directory, other.id), copy)
      yield* withStore(options, Effect.gen(function*() {
        const s = yield* Secrets.Secrets
        expect((yield* s.list("acme")).map((x) => x.name)).toContain("r0-3")
        expect(yield* s.get("acme", other.id)).toEqual(other)
      }))
    }), 60_000)

  it.live("a snapshot whose journal position is gone (two generations later) is not used: the store is read in full", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      const key = newKey()
      yield* churn({ directory, key }, 0, 6)
      yield* scanned({ directory, key })
      const old = readFileSync(snapshotOf(directory))
      const untouched = yield* withStore({ directory, key }, Effect.flatMap(Secrets.Secrets, (s) => s.getByName("acme", "r0-1")))
      yield* churn({ directory, key, journalLimitBytes: 600 }, 1, 6)
      const journalHeader = (file: string) => readFileSync(Path.join(directory, file), "utf8").split("\n")[0]!.split(" ")
      const generation = JSON.parse(old.toString("utf8").split("\n")[1]!).generation
      expect(journalHeader("journal")[2]).not.toBe(generation)
      expect(journalHeader("journal.prev")[2]).not.toBe(generation)
      // a record file damaged behind the store's back: only an open that reads it can tell
      writeFileSync(recordFile(directory, untouched.id), "garbled")
      writeFileSync(snapshotOf(directory), old)
      yield* withStore({ directory, key }, Effect.gen(function*() {
        const s = yield* Secrets.Secrets
        expect((yield* failure(s.list("acme")))._tag).toBe("StoreCorrupted")
        expect((yield* failure(s.get("acme", untouched.id)))._tag).toBe("StoreCorrupted")
      }))
      expect(readFileSync(snapshotOf(directory)).equals(old)).toBe(false)
    }), 60_000)

  it.live("a damaged record still makes listing fail after an open from the snapshot, and mends when restored", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      const options = { directory, key: newKey() }
      yield* churn(options, 0, 6)
      const victim = yield* withStore(options, Effect.flatMap(Secrets.Secrets, (s) => s.getByName("acme", "r0-1")))
      const path = recordFile(directory, victim.id)
      const original = readFileSync(path)
      writeFileSync(path, original.toString("utf8").replace("h0.example.com", "evil.example").replace("\"r0-1\"", "\"r0-one\""))
      rmSync(snapshotOf(directory))
      const check = withStore(options, Effect.gen(function*() {
        const s = yield* Secrets.Secrets
        const listing = yield* failure(s.list("acme"))
        expect(listing._tag).toBe("StoreCorrupted")
        expect(listing.message).toContain(path)
        expect((yield* failure(s.get("acme", victim.id)))._tag).toBe("StoreCorrupted")
        expect((yield* s.list("globex")).length).toBe(5)
      }))
      yield* check // full scan: writes a snapshot that records the damage
      expect(JSON.parse(readFileSync(snapshotOf(directory), "utf8").split("\n")[1]!).damaged).toEqual([victim.id])
      yield* check // from the snapshot
      writeFileSync(path, original)
      yield* withStore(options, Effect.gen(function*() {
        const s = yield* Secrets.Secrets
        expect((yield* s.list("acme")).map((x) => x.name)).toContain("r0-1")
        expect(yield* s.get("acme", victim.id)).toEqual(victim)
      }))
    }), 60_000)

  it.live("keys rotated and retired since the snapshot: it is not trusted, and the store opens whole", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      const options = { directory }
      yield* churn(options, 0, 4)
      const firstKey = header(directory).keyId as string
      const before = yield* contents(options)
      const old = readFileSync(snapshotOf(directory))
      yield* withStore(options, Effect.gen(function*() {
        const store = yield* FileSystemSecretStore.FileSystemSecretStore
        yield* store.rotateKey
        yield* store.retireKey(firstKey)
      }))
      expect(header(directory).keyId).not.toBe(firstKey) // reseal and retireKey write one after their scan
      writeFileSync(snapshotOf(directory), old) // the one written before the rotation
      expect(header(directory).keyId).toBe(firstKey)
      const after = yield* contents(options)
      expect(header(directory).keyId).not.toBe(firstKey)
      expect((after.byOrg as Record<string, { values: unknown }>)["acme"]!.values).toEqual(
        (before.byOrg as Record<string, { values: unknown }>)["acme"]!.values
      )
      expect(after).toEqual(yield* scanned(options))
    }), 60_000)

  it.live("writers killed with SIGKILL while writing the snapshot leave a store that opens whole", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      const key = KeyRing.keyToBase64(KeyRing.generateKey())
      const options = { directory, key, quota: 100_000 }
      yield* withStore(options, Effect.flatMap(Secrets.Secrets, (s) =>
        Effect.forEach(Array.from({ length: 300 }, (_, i) => i), (i) =>
          s.create("acme", { name: `bulk-${i}`, value: value(`bulk-${i}`), description: "x".repeat(200) }), { discard: true })))
      const env = { SG_KEY: Redacted.value(key) }
      // journalLimitBytes 1: every write starts a generation and writes the snapshot
      const spawnWriter = () => startChild("writer", [directory, "acme", "20", "1"], env)
      // where a kill lands is timing; the torn-file and leftover-temp cases are tested directly below
      for (let round = 0; round < 8; round++) {
        const writer: Child = spawnWriter()
        yield* Effect.promise(() => writer.waitFor("ready"))
        yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 200)))
        writer.process.kill("SIGKILL")
        const exit = yield* Effect.promise(() => writer.exited)
        expect(exit.signal, exit.stderr).toBe("SIGKILL")
        // as a reader opening now finds it, then as a full scan does: the same, and every record whole
        const opened = yield* contents(options, ["acme"])
        const full = yield* scanned(options, ["acme"])
        expect(opened).toEqual(full)
        const acme = full.byOrg["acme"] as { listed: Array<Secret.Secret>; values: Array<string> }
        acme.listed.forEach((secret, i) => {
          if (secret.name.startsWith("w-")) expect(acme.values[i]).toBe(`value-${secret.name}-${secret.description?.replace("gen ", "")}`)
        })
        expect(readdirSync(directory).filter((name) => name.startsWith(".tmp-"))).toEqual([])
      }
    }), 180_000)

  it.live("a snapshot torn by a crash, and its temp file, are handled at open", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      const options = { directory, key: newKey() }
      yield* churn(options, 0, 6)
      const expected = yield* scanned(options)
      const good = readFileSync(snapshotOf(directory), "utf8")
      writeFileSync(Path.join(directory, ".tmp-0123456789abcdef"), good.slice(0, 100), { mode: 0o600 })
      writeFileSync(snapshotOf(directory), good.slice(0, good.length - 40), { mode: 0o600 })
      expect(yield* contents(options)).toEqual(expected)
      expect(readdirSync(directory).filter((name) => name.startsWith(".tmp-"))).toEqual([])
      // replaced by a whole one, from which the next open gives the same
      expect(readFileSync(snapshotOf(directory), "utf8").endsWith("\n")).toBe(true)
      expect(header(directory).format).toBe("secretgate-snapshot")
      expect(yield* contents(options)).toEqual(expected)
    }), 60_000)
})

/** Runs `effect` with every log line from Debug up collected into `lines` as "LEVEL message". */
const collectingLogs = <A, E, R>(effect: Effect.Effect<A, E, R>, lines: Array<string>) =>
  effect.pipe(
    Effect.provide(Logger.replace(
      Logger.defaultLogger,
      Logger.make(({ logLevel, message }) => {
        lines.push(`${logLevel.label} ${Array.isArray(message) ? message.join(" ") : String(message)}`)
      })
    )),
    Logger.withMinimumLogLevel(LogLevel.Debug)
  )

describe("the index snapshot and record files put back behind the store's back", () => {
  /**
   * A store with a generated key file and one secret "x" sealed with the first key, whose file is
   * then put back from a copy taken before a rotation (re-sealed x with the second key) and an
   * update of its hosts, after an open that wrote the snapshot from the newer file.
   */
  const restoredFromBackup = Effect.gen(function*() {
    const directory = tempStore()
    const options = { directory }
    const x = yield* withStore(options, Effect.flatMap(Secrets.Secrets, (s) =>
      s.create("acme", { name: "x", value: value("v1"), hosts: ["a.example.com", "old.example.com"] })))
    const firstKey = yield* withStore(options, Effect.map(
      Effect.flatMap(FileSystemSecretStore.FileSystemSecretStore, (store) => store.keys),
      (keys) => keys[0]!.id
    ))
    const backup = `${directory}.x-backup.json`
    copyFileSync(recordFile(directory, x.id), backup)
    yield* withStore(options, Effect.gen(function*() {
      yield* (yield* FileSystemSecretStore.FileSystemSecretStore).rotateKey
      yield* (yield* Secrets.Secrets).update("acme", x.id, { hosts: ["a.example.com"] })
    }))
    yield* scanned(options, ["acme"]) // a fresh snapshot: x sealed with the second key, one host
    copyFileSync(backup, recordFile(directory, x.id))
    return { options, x, firstKey }
  })

  it.live("retireKey reads the record files: it refuses a key an older copy put back still seals, and reseal re-seals it", () =>
    Effect.gen(function*() {
      const { firstKey, options, x } = yield* restoredFromBackup
      yield* withStore(options, Effect.gen(function*() {
        const store = yield* FileSystemSecretStore.FileSystemSecretStore
        const refused = yield* failure(store.retireKey(firstKey))
        expect(refused._tag).toBe("KeyManagementError")
        expect(refused.message).toContain("still seals 1 record(s)")
        // the scan corrected the index: key counts and the listing are the file's
        expect((yield* store.keys).map((k) => [k.id === firstKey, k.records])).toEqual([[true, 1], [false, 0]])
        expect((yield* (yield* Secrets.Secrets).list("acme")).map((s) => s.hosts)).toEqual([["a.example.com", "old.example.com"]])
        expect(yield* store.reseal).toBe(1)
        yield* store.retireKey(firstKey)
      }))
      const got = yield* withStore(options, Effect.flatMap(Secrets.Secrets, (s) => s.get("acme", x.id)))
      expect(got.hosts).toEqual(["a.example.com", "old.example.com"])
      const resolved = yield* withStore(options, Effect.flatMap(Secrets.Secrets, (s) => s.resolve("acme", [x.placeholder])))
      expect(resolved.map((r) => Redacted.value(r.value))).toEqual(["v1"])
    }), 60_000)

  it.live("reseal alone re-seals an older copy put back (its worklist comes from the files)", () =>
    Effect.gen(function*() {
      const { firstKey, options, x } = yield* restoredFromBackup
      yield* withStore(options, Effect.gen(function*() {
        const store = yield* FileSystemSecretStore.FileSystemSecretStore
        expect(yield* store.reseal).toBe(1)
        expect((yield* store.keys).map((k) => [k.id === firstKey, k.records])).toEqual([[true, 0], [false, 1]])
        yield* store.retireKey(firstKey)
        expect(Redacted.value((yield* (yield* Secrets.Secrets).resolve("acme", [x.placeholder]))[0]!.value)).toBe("v1")
      }))
    }), 60_000)

  it.live("a read of an older copy put back corrects the index from the file: listing and key counts follow", () =>
    Effect.gen(function*() {
      const { firstKey, options, x } = yield* restoredFromBackup
      yield* withStore(options, Effect.gen(function*() {
        const s = yield* Secrets.Secrets
        const store = yield* FileSystemSecretStore.FileSystemSecretStore
        // from the snapshot: what it says until the file is read
        expect((yield* s.list("acme")).map((secret) => secret.hosts)).toEqual([["a.example.com"]])
        const got = yield* s.get("acme", x.id)
        expect(got.hosts).toEqual(["a.example.com", "old.example.com"])
        expect(got.updatedAt).toEqual(x.updatedAt)
        expect(yield* s.list("acme")).toEqual([got])
        expect((yield* store.keys).map((k) => [k.id === firstKey, k.records])).toEqual([[true, 1], [false, 0]])
      }))
    }), 60_000)

  it.live("a copy of an earlier record under the same id put back (another placeholder) reads as not found, and the index follows the file", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      const options = { directory, key: newKey() }
      const earlier = yield* withStore(options, Effect.flatMap(Secrets.Secrets, (s) =>
        s.create("acme", { name: "x", value: value("earlier"), hosts: ["a.example.com"] })))
      const backup = `${directory}.x-backup.json`
      copyFileSync(recordFile(directory, earlier.id), backup)
      // the id used again, by a record of the same name with another placeholder and creation time
      const later = yield* withStore(options, Effect.gen(function*() {
        const s = yield* Secrets.Secrets
        const store = yield* SecretStore.SecretStore
        const record = yield* Effect.flatMap(store.findById("acme", earlier.id), Effect.orDie)
        yield* s.delete("acme", earlier.id)
        const again = { ...record, placeholder: Placeholder.generate(), createdAt: new Date(record.createdAt.getTime() + 1000) }
        yield* store.insert(again, { quota: 10 })
        return yield* s.get("acme", earlier.id)
      }))
      yield* scanned(options, ["acme"]) // a fresh snapshot of the later record
      copyFileSync(backup, recordFile(directory, earlier.id))
      yield* withStore(options, Effect.gen(function*() {
        const s = yield* Secrets.Secrets
        expect((yield* s.list("acme")).map((secret) => secret.placeholder)).toEqual([later.placeholder])
        expect((yield* failure(s.get("acme", earlier.id)))._tag).toBe("SecretNotFound")
        expect((yield* s.list("acme")).map((secret) => secret.placeholder)).toEqual([earlier.placeholder])
        expect(yield* s.get("acme", earlier.id)).toEqual(earlier)
      }))
    }), 60_000)
})

describe("the index snapshot stays within the journal's reach", () => {
  /** The snapshot's journal position. */
  const positionOf = (directory: string) => {
    const { generation, offset } = JSON.parse(readFileSync(snapshotOf(directory), "utf8").split("\n")[1]!) as { generation: string; offset: number }
    return { generation, offset }
  }
  const journalGeneration = (directory: string, file = "journal") => readFileSync(Path.join(directory, file), "utf8").split("\n")[0]!.split(" ")[2]

  it.live("an open from a snapshot whose position is in journal.prev writes a fresh one in the current generation", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      const key = newKey()
      yield* churn({ directory, key }, 0, 4)
      yield* scanned({ directory, key }, ["acme"])
      const old = readFileSync(snapshotOf(directory))
      const before = positionOf(directory)
      // writes until exactly one rollover: the snapshot's generation is now journal.prev
      yield* withStore({ directory, key, journalLimitBytes: 1_500 }, Effect.gen(function*() {
        const s = yield* Secrets.Secrets
        for (let i = 0; !existsSync(Path.join(directory, "journal.prev")); i++) {
          expect(i).toBeLessThan(100)
          yield* s.create("acme", { name: `more-${i}`, value: value(`more-${i}`) })
        }
      }))
      writeFileSync(snapshotOf(directory), old, { mode: 0o600 })
      expect(journalGeneration(directory, "journal.prev")).toBe(before.generation)
      const listed = yield* openEngine(directory, key, {})
      expect(listed.length).toBeGreaterThan(0)
      const after = positionOf(directory)
      expect(after.generation).toBe(journalGeneration(directory))
      expect(after.generation).not.toBe(before.generation)
    }), 60_000)

  it.live("an open that re-read more files than the limit writes a fresh snapshot; one under it does not", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      const key = newKey()
      yield* churn({ directory, key }, 0, 2)
      yield* scanned({ directory, key }, ["acme"])
      const old = readFileSync(snapshotOf(directory))
      yield* churn({ directory, key }, 1, 2) // a few record files changed since the snapshot
      writeFileSync(snapshotOf(directory), old, { mode: 0o600 })
      yield* openEngine(directory, key, { snapshotRefreshFiles: 1_000 })
      expect(readFileSync(snapshotOf(directory)).equals(old)).toBe(true) // few re-reads: left as it is
      yield* openEngine(directory, key, { snapshotRefreshFiles: 1 })
      expect(readFileSync(snapshotOf(directory)).equals(old)).toBe(false)
      expect(positionOf(directory).offset).toBeGreaterThan(JSON.parse(old.toString("utf8").split("\n")[1]!).offset)
    }), 60_000)
})

describe("the index snapshot: size and logged reasons", () => {
  it.live("the size limit is in bytes, as the open reads it: a snapshot of non-ASCII descriptions over it is not written, with a warning", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      const key = newKey()
      yield* withStore({ directory, key }, Effect.flatMap(Secrets.Secrets, (s) =>
        Effect.forEach([0, 1, 2], (i) => s.create("acme", { name: `n${i}`, value: value(`v${i}`), description: "秘".repeat(300) }))))
      yield* scanned({ directory, key }, ["acme"]) // writes the snapshot of the three
      const text = readFileSync(snapshotOf(directory), "utf8")
      const bytes = statSync(snapshotOf(directory)).size
      expect(bytes).toBeGreaterThan(text.length) // 3 bytes a character
      const openWithLimit = (snapshotMaxBytes: number) => openEngine(directory, key, { snapshotMaxBytes })
      const logs: Array<string> = []
      rmSync(snapshotOf(directory))
      // as many characters as the limit, more bytes: an open with this limit would not read it
      expect((yield* collectingLogs(openWithLimit(text.length), logs)).length).toBe(3)
      expect(existsSync(snapshotOf(directory))).toBe(false)
      expect(logs.some((line) => line.startsWith("WARN") && line.includes(snapshotOf(directory)) && line.includes(`${bytes} bytes`)))
        .toBe(true)
      // at the limit in bytes it is written, and the next open with that limit reads it
      expect((yield* openWithLimit(bytes)).length).toBe(3)
      expect(statSync(snapshotOf(directory)).size).toBe(bytes)
      logs.length = 0
      yield* collectingLogs(openWithLimit(bytes), logs)
      expect(logs.filter((line) => line.includes("not used"))).toEqual([])
    }), 60_000)

  it.live("why a snapshot is not used, or not written, is logged: a warning naming the file and the reason, never a value", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      const options = { directory, key: newKey() }
      const logs: Array<string> = []
      // none yet: only a debug line
      yield* collectingLogs(churn(options, 0, 3), logs)
      expect(logs.filter((line) => line.includes("snapshot"))).toEqual([`DEBUG no snapshot at ${snapshotOf(directory)}: reading every record file`])
      const expected = yield* scanned(options) // writes a snapshot of what churn made
      const good = readFileSync(snapshotOf(directory), "utf8")
      const warnings = (text: string) => {
        writeFileSync(snapshotOf(directory), text, { mode: 0o600 })
        logs.length = 0
        return Effect.map(collectingLogs(contents(options), logs), (seen) => {
          expect(seen).toEqual(expected) // and the open is whole
          return logs.filter((line) => line.startsWith("WARN"))
        })
      }
      expect(yield* warnings(good.replace("r0-1", "r0-X"))).toEqual([
        `WARN snapshot ${snapshotOf(directory)} not used (it fails its MAC): reading every record file`
      ])
      expect((yield* warnings(good.replace("\"keyId\":\"primary\"", "\"keyId\":\"elsewhere\"")))[0]).toContain(
        "written under key \"elsewhere\", which this process cannot use"
      )
      expect((yield* warnings(good.slice(0, 50)))[0]).toContain("(truncated)")
      // a directory in its place: not used, and not written
      rmSync(snapshotOf(directory))
      mkdirSync(snapshotOf(directory))
      logs.length = 0
      expect(yield* collectingLogs(contents(options), logs)).toEqual(expected)
      const warned = logs.filter((line) => line.startsWith("WARN"))
      expect(warned[0]).toBe(`WARN snapshot ${snapshotOf(directory)} not used (it is a directory, not a file): reading every record file`)
      expect(warned[1]).toMatch(/^WARN snapshot .* not written: /)
      expect(logs.join("\n")).not.toMatch(/value-|updated-/)
      rmSync(snapshotOf(directory), { recursive: true })
    }), 60_000)
})
