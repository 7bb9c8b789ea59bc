/**
 * Regression tests for the review findings (memory use, odd record files, failed opens, retired
 * keys, interruptible lock waits, stale locks, dead writers' announcements, lock removal races).
 */
import { describe, expect, it } from "@effect/vitest"
import { KeyRing, Secrets } from "@secretgate/core"
import { Effect, Exit, Redacted } from "effect"
import { FileSystem } from "@effect/platform"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import {
  appendFileSync,
  existsSync,
  linkSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  unlinkSync,
  writeFileSync
} from "node:fs"
import { hostname, uptime } from "node:os"
import * as Path from "node:path"
import { FileSystemSecretStore } from "@secretgate/filesystem"
import * as Lock from "../src/internal/lock.js"
import { deadPid, failure, startChild, tempStore, withStore, winnersOf } from "./support.js"

const ORG = "acme"
const value = (text: string) => Redacted.make(text)
const newKey = () => KeyRing.keyToBase64(KeyRing.generateKey("k"))
const recordFile = (directory: string, id: string) => Path.join(directory, "records", id.slice(0, 2), `${id}.json`)


const resolveOne = (secrets: Secrets.Secrets, placeholder: string) =>
  Effect.map(secrets.resolve(ORG, [placeholder]), (resolved) => resolved.map((r) => Redacted.value(r.value)))

describe("memory: the index holds no sealed values", () => {
  it.live("the sealed value comes from the record file at each read, not from memory", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      yield* withStore({ directory, key: newKey() }, Effect.gen(function*() {
        const s = yield* Secrets.Secrets
        const created = yield* s.create(ORG, { name: "db", value: value("first-value") })
        const path = recordFile(directory, created.id)
        const firstFile = readFileSync(path)
        yield* s.update(ORG, created.id, { value: value("second-value") })
        expect(yield* resolveOne(s, created.placeholder)).toEqual(["second-value"])
        // put the first (validly authenticated) file back behind the store's back, without a
        // journal entry: an index that kept ciphertexts would still answer with the second value
        writeFileSync(path, firstFile)
        expect(yield* resolveOne(s, created.placeholder)).toEqual(["first-value"])
        const page = yield* s.listPage(ORG, { limit: 10 })
        expect(page.items.map((item) => item.id)).toEqual([created.id])
      }))
    }))
})

describe("a failed open writes nothing", () => {
  it.live("a wrong key under a new key id fails the open without registering it; the right key later rotates", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      const oldKey = KeyRing.generateKey("old")
      const newKey = KeyRing.generateKey("new")
      const impostor = KeyRing.generateKey("new") // same id, other bytes
      const made = yield* withStore(
        { directory, keyRing: KeyRing.make([oldKey]) },
        Effect.flatMap(Secrets.Secrets, (s) => s.create(ORG, { name: "db", value: value("v1") }))
      )
      const manifest = readFileSync(Path.join(directory, "store.json"), "utf8")
      // only the impostor configured: the records are sealed with "old", which it does not hold
      const error = yield* failure(withStore({ directory, keyRing: KeyRing.make([impostor]) }, Effect.void))
      expect(error._tag).toBe("DecryptionFailed")
      expect(readFileSync(Path.join(directory, "store.json"), "utf8")).toBe(manifest)
      // the correct rotation still works
      yield* withStore({ directory, keyRing: KeyRing.make([oldKey, newKey]) }, Effect.gen(function*() {
        const store = yield* FileSystemSecretStore.FileSystemSecretStore
        expect(yield* store.reseal).toBe(1)
        yield* store.retireKey("old")
      }))
      yield* withStore({ directory, keyRing: KeyRing.make([newKey]) }, Effect.gen(function*() {
        const s = yield* Secrets.Secrets
        expect(yield* resolveOne(s, made.placeholder)).toEqual(["v1"])
      }))
    }))
})

describe("retired keys stay retired", () => {
  it.live("a ring still holding a retired key does not register it again, and records under it are refused", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      const oldKey = KeyRing.generateKey("old")
      const newKey = KeyRing.generateKey("new")
      const made = yield* withStore(
        { directory, keyRing: KeyRing.make([oldKey]) },
        Effect.flatMap(Secrets.Secrets, (s) => s.create(ORG, { name: "db", value: value("v1") }))
      )
      const path = recordFile(directory, made.id)
      const sealedWithOld = readFileSync(path)
      const both = KeyRing.make([oldKey, newKey])
      yield* withStore({ directory, keyRing: both }, Effect.gen(function*() {
        const store = yield* FileSystemSecretStore.FileSystemSecretStore
        expect(yield* store.reseal).toBe(1)
        yield* store.retireKey("old")
      }))
      const manifestOf = () => JSON.parse(readFileSync(Path.join(directory, "store.json"), "utf8"))
      // reopened with a ring that still holds the retired key: not registered again
      yield* withStore({ directory, keyRing: both }, Effect.gen(function*() {
        const s = yield* Secrets.Secrets
        expect(yield* resolveOne(s, made.placeholder)).toEqual(["v1"])
        expect((yield* (yield* FileSystemSecretStore.FileSystemSecretStore).keys).map((k) => k.id)).toEqual(["new"])
      }))
      expect(manifestOf().keys.map((k: { id: string }) => k.id)).toEqual(["new"])
      // a record file sealed and MAC'd with the retired key (an old copy put back) is refused,
      // although this process holds the key
      writeFileSync(path, sealedWithOld)
      yield* withStore({ directory, keyRing: both }, Effect.gen(function*() {
        const s = yield* Secrets.Secrets
        const error = yield* failure(s.get(ORG, made.id))
        expect(error._tag).toBe("StoreCorrupted")
        expect(error.message).toContain(`sealed with key "old", which this store has retired`)
      }))
      // a ring whose sealing key is the retired one is refused at open
      const reversed = yield* failure(withStore({ directory, keyRing: KeyRing.make([newKey, oldKey]) }, Effect.void))
      expect(reversed._tag).toBe("DecryptionFailed")
      expect(reversed.message).toContain(`key "old" was retired`)
      expect(manifestOf().keys.map((k: { id: string }) => k.id)).toEqual(["new"])
      expect(manifestOf().retired).toEqual(["old"])
    }))
})

describe("waiting for the lock", () => {
  it.live("is interruptible: a timeout around a write returns without waiting for lockTimeout", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      const key = newKey()
      // a lock timeout far beyond the test's own timeout: only an interruptible wait can finish
      const options = { directory, key, lockTimeout: 3_600_000 }
      yield* withStore(options, Effect.gen(function*() {
        const s = yield* Secrets.Secrets
        const lock = Path.join(directory, "lock")
        const held = JSON.stringify({ pid: process.ppid, host: hostname(), token: "alive", since: Date.now(), start: null })
        writeFileSync(lock, held)
        const exit = yield* Effect.exit(s.create(ORG, { name: "a", value: value("v") }).pipe(Effect.timeout("200 millis")))
        expect(Exit.isFailure(exit)).toBe(true)
        // the holder's lock is untouched, and nothing of ours was left
        expect(readFileSync(lock, "utf8")).toBe(held)
        rmSync(lock)
        yield* s.create(ORG, { name: "b", value: value("v") })
        expect(existsSync(lock)).toBe(false)
        expect((yield* s.list(ORG)).map((x) => x.name)).toEqual(["b"])
      }))
    }), 20_000)
})

describe("stale locks", () => {
  it.live("a lock taken before the host booted is stale even when its pid is alive and its start time unknown", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      const key = newKey()
      const options = { directory, key, lockTimeout: 2_000 }
      yield* withStore(options, Effect.flatMap(Secrets.Secrets, (s) => s.create(ORG, { name: "a", value: value("v") })))
      const lock = Path.join(directory, "lock")
      const bootedAt = Date.now() - uptime() * 1000
      // the pid is alive (a reused pid after a reboot), no start time (as off Linux)
      writeFileSync(
        lock,
        JSON.stringify({ pid: process.ppid, host: hostname(), token: "before-boot", since: bootedAt - 3_600_000, start: null })
      )
      yield* withStore(options, Effect.flatMap(Secrets.Secrets, (s) => s.create(ORG, { name: "b", value: value("v") })))
      expect(existsSync(lock)).toBe(false)
    }))
})

describe("a writer that died between its announcement and its confirmation", () => {
  it.live("is closed out by a reader once the announcement is old, without waiting for a write", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      const key = newKey()
      yield* withStore({ directory, key }, Effect.gen(function*() {
        const s = yield* Secrets.Secrets
        const made = yield* s.create(ORG, { name: "a", value: value("v") })
        // what a writer killed after its "B" line leaves: the announcement and its (stale) lock
        const journal = Path.join(directory, "journal")
        const lock = Path.join(directory, "lock")
        appendFileSync(journal, `B ${made.id}\n`)
        writeFileSync(lock, JSON.stringify({ pid: deadPid(), host: hostname(), token: "dead", since: Date.now(), start: null }))
        expect(yield* s.get(ORG, made.id)).toEqual(made)
        yield* Effect.sleep("700 millis") // past the age at which a reader closes it (not a timing assert)
        expect(yield* s.get(ORG, made.id)).toEqual(made)
        const lines = readFileSync(journal, "utf8").trimEnd().split("\n")
        expect(lines[lines.length - 1]).toBe(`C ${made.id}`)
        expect(existsSync(lock)).toBe(false)
      }))
    }))
})

describe("removing a lock file only if it is the one expected", () => {
  it.live("a lock file replaced by another process between the check and the removal is left alone", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      mkdirSync(directory, { recursive: true })
      const path = Path.join(directory, "lock.break")
      const stale = JSON.stringify({ pid: 1, host: hostname(), token: "stale", since: 0, start: null })
      const fresh = JSON.stringify({ pid: process.pid, host: hostname(), token: "fresh", since: Date.now(), start: null })
      writeFileSync(path, stale)
      const real = yield* FileSystem.FileSystem
      let swapped = false
      // another process acts right after our first read of `path`: it removes the stale file
      // (as we meant to) and takes the breaker itself
      const racing: FileSystem.FileSystem = {
        ...real,
        readFileString: (file, encoding) =>
          Effect.tap(real.readFileString(file, encoding), () =>
            Effect.sync(() => {
              if (file !== path || swapped) return
              swapped = true
              unlinkSync(path)
              writeFileSync(`${path}.other`, fresh)
              linkSync(`${path}.other`, path)
              unlinkSync(`${path}.other`)
            }))
      }
      yield* Lock.removeIfSame(racing, path, stale)
      expect(swapped).toBe(true)
      expect(readFileSync(path, "utf8")).toBe(fresh)
      // and the file we did mean is removed
      yield* Lock.removeIfSame(real, path, fresh)
      expect(existsSync(path)).toBe(false)
      expect(readdirSync(directory)).toEqual([])
    }).pipe(Effect.provide(NodeFileSystem.layer)))

  it.live("4 processes writing while dead processes' locks and breakers keep appearing: each name created once, no lost write", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      const key = KeyRing.keyToBase64(KeyRing.generateKey())
      yield* withStore({ directory, key }, Effect.void)
      const dead = JSON.stringify({ pid: deadPid(), host: hostname(), token: "dead", since: Date.now(), start: null })
      // plants a dead holder's lock or breaker whenever there is none (never over a live one)
      let planted = 0
      const planter = setInterval(() => {
        for (const name of ["lock", "lock.break"]) {
          try {
            writeFileSync(Path.join(directory, name), dead, { flag: "wx" })
            planted++
          } catch {
            // present: a live holder's, or one planted before
          }
        }
      }, 5)
      const workers = [0, 1, 2, 3].map((worker) =>
        startChild("creator", [directory, ORG, String(worker), "100"], { SG_KEY: Redacted.value(key) })
      )
      const exits = yield* Effect.promise(async () => {
        try {
          await Promise.all(workers.map((child) => child.waitFor("ready")))
          for (const child of workers) child.process.stdin!.write("go\n")
          return await Promise.all(workers.map((child) => child.exited))
        } finally {
          clearInterval(planter)
        }
      })
      exits.forEach((exit) => expect(exit.code, exit.stderr).toBe(0))
      expect(planted).toBeGreaterThan(2)
      const winners = winnersOf(workers, 20)
      rmSync(Path.join(directory, "lock"), { force: true })
      rmSync(Path.join(directory, "lock.break"), { force: true })
      yield* withStore({ directory, key }, Effect.gen(function*() {
        const s = yield* Secrets.Secrets
        const all = yield* s.list(ORG)
        expect(all.length).toBe(20 + 4 * 80)
        const resolved = yield* s.resolve(ORG, all.map((secret) => secret.placeholder))
        for (const secret of resolved) {
          const creator = secret.name.startsWith("shared-") ? winners.get(secret.name) : Number(secret.name.slice(1, 2))
          expect(Redacted.value(secret.value)).toBe(`from-w${creator}-${secret.name}`)
        }
      }))
    }), 120_000)
})
