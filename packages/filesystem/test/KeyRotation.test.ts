import { describe, expect, it } from "@effect/vitest"
import { KeyRing, Secrets } from "@secretgate/core"
import { FileSystemSecretStore } from "@secretgate/filesystem"
import { Effect, Redacted } from "effect"
import { readFileSync } from "node:fs"
import * as Path from "node:path"
import { failure, filesUnder, open, startChild, tempStore, withStore } from "./support.js"

const ORG = "acme"
const value = (text: string) => Redacted.make(text)
const Store = FileSystemSecretStore.FileSystemSecretStore

/** The key ids the record files on disk are sealed with. */
const keyIdsOnDisk = (directory: string) =>
  filesUnder(Path.join(directory, "records")).map((file) => JSON.parse(readFileSync(file, "utf8")).record.sealed.keyId as string)

const resolveAll = (s: Secrets.Secrets, placeholders: ReadonlyArray<string>) =>
  Effect.map(s.resolve(ORG, placeholders), (all) => all.map((r) => [r.name, Redacted.value(r.value)] as const).sort())

const createMany = (count: number, prefix = "s") =>
  Effect.flatMap(Secrets.Secrets, (s) =>
    Effect.forEach(Array.from({ length: count }, (_, i) => i), (i) => s.create(ORG, { name: `${prefix}${i}`, value: value(`${prefix}-value-${i}`) })))

describe("key rotation", () => {
  it.live("generated key file: rotate re-seals everything; the old key reads until retired", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      const made = yield* withStore({ directory }, createMany(5))
      const [oldKey] = yield* withStore({ directory }, Effect.flatMap(Store, (store) => store.keys))
      expect(oldKey).toMatchObject({ current: true, records: 5, held: true })

      const rotated = yield* withStore({ directory }, Effect.gen(function*() {
        const store = yield* Store
        const status = yield* store.rotateKey
        expect(status).toMatchObject({ current: true, records: 5 })
        expect(yield* store.keys).toEqual([
          { id: oldKey!.id, current: false, records: 0, held: true },
          { id: status.id, current: true, records: 5, held: true }
        ])
        return status
      }))
      expect(new Set(keyIdsOnDisk(directory))).toEqual(new Set([rotated.id]))
      expect(JSON.parse(readFileSync(Path.join(directory, "keys.json"), "utf8")).keys.map((k: { id: string }) => k.id))
        .toEqual([oldKey!.id, rotated.id])

      yield* withStore({ directory }, Effect.gen(function*() {
        const store = yield* Store
        yield* store.retireKey(oldKey!.id)
        expect((yield* store.keys).map((k) => k.id)).toEqual([rotated.id])
      }))
      expect(JSON.parse(readFileSync(Path.join(directory, "keys.json"), "utf8")).keys.map((k: { id: string }) => k.id))
        .toEqual([rotated.id])
      yield* withStore({ directory }, Effect.gen(function*() {
        const s = yield* Secrets.Secrets
        expect(yield* resolveAll(s, made.map((m) => m.placeholder))).toEqual(made.map((m, i) => [m.name, `s-value-${i}`]).sort())
      }))
    }))

  it.live("refuses to retire the current key, a key in use, or an unknown key; configured keys are not rotated here", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      const oldRing = KeyRing.make([KeyRing.keyFromBase64("old", KeyRing.keyToBase64(KeyRing.generateKey()))])
      yield* withStore({ directory, keyRing: oldRing }, createMany(2))
      const both = KeyRing.rotate(oldRing, KeyRing.generateKey("new"))
      yield* withStore({ directory, keyRing: both }, Effect.gen(function*() {
        const store = yield* Store
        const current = yield* failure(store.retireKey("new"))
        expect(current.message).toMatch(/"new" is the current key: rotate to a new key first/)
        const inUse = yield* failure(store.retireKey("old"))
        expect(inUse.message).toMatch(/"old" still seals 2 record\(s\): run reseal first/)
        expect((yield* failure(store.retireKey("nope"))).message).toMatch(/no key "nope"/)
        const rotate = yield* failure(store.rotateKey)
        expect(rotate._tag).toBe("KeyManagementError")
        // one class for every backend: core's, re-exported here
        expect(rotate).toBeInstanceOf(KeyRing.KeyManagementError)
        expect(FileSystemSecretStore.KeyManagementError).toBe(KeyRing.KeyManagementError)
        expect(rotate.message).toMatch(/add the new key to the configured key ring/)
      }))
    }))

  it.live("configured keys: add the new key, reseal, retire the old one, drop it from the configuration", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      const oldKey = KeyRing.keyFromBase64("2025", KeyRing.keyToBase64(KeyRing.generateKey()))
      const newKey = KeyRing.keyFromBase64("2026", KeyRing.keyToBase64(KeyRing.generateKey()))
      const made = yield* withStore({ directory, keyRing: KeyRing.make([oldKey]) }, createMany(4))
      const later = yield* withStore({ directory, keyRing: KeyRing.make([oldKey, newKey]) }, Effect.gen(function*() {
        const [one] = yield* createMany(1, "later")
        const store = yield* Store
        expect((yield* store.keys).map((k) => [k.id, k.records])).toEqual([["2025", 4], ["2026", 1]])
        expect(yield* store.reseal).toBe(4)
        expect(yield* store.reseal).toBe(0)
        yield* store.retireKey("2025")
        return one!
      }))
      expect(new Set(keyIdsOnDisk(directory))).toEqual(new Set(["2026"]))
      yield* withStore({ directory, keyRing: KeyRing.make([newKey]) }, Effect.gen(function*() {
        const s = yield* Secrets.Secrets
        expect(yield* resolveAll(s, [...made, later].map((m) => m.placeholder))).toEqual(
          [...made.map((m, i) => [m.name, `s-value-${i}`] as const), [later.name, "later-value-0"] as const].sort()
        )
      }))
      // the old key alone no longer opens the store: it is retired
      const error = yield* failure(withStore({ directory, keyRing: KeyRing.make([oldKey]) }, Effect.void))
      expect(error._tag).toBe("DecryptionFailed")
      expect(error.message).toMatch(/key "2025" was retired from the store/)
    }))

  it.live("another process's rotation and retirement are followed, and a late write under the retired key is re-sealed", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      const a = yield* open({ directory })
      const b = yield* open({ directory })
      const sa = yield* Effect.provide(Secrets.Secrets, a)
      const sb = yield* Effect.provide(Secrets.Secrets, b)
      const storeA = yield* Effect.provide(Store, a)
      const storeB = yield* Effect.provide(Store, b)
      const first = yield* sb.create(ORG, { name: "first", value: value("one") })
      const oldId = (yield* storeA.keys)[0]!.id

      const rotated = yield* storeA.rotateKey
      yield* storeA.retireKey(oldId)
      // b still seals with the old key (its ring is behind until its next read) ...
      expect(storeB.cipher.currentKeyId).toBe(oldId)
      const late = yield* sb.create(ORG, { name: "late", value: value("two") })
      // ... and the store re-sealed that write with the current key
      expect(storeB.cipher.currentKeyId).toBe(rotated.id)
      expect(new Set(keyIdsOnDisk(directory))).toEqual(new Set([rotated.id]))
      expect(yield* resolveAll(sa, [first.placeholder, late.placeholder])).toEqual([["first", "one"], ["late", "two"]])
      expect(yield* resolveAll(sb, [first.placeholder, late.placeholder])).toEqual([["first", "one"], ["late", "two"]])
    }).pipe(Effect.scoped))

  it.live("a re-seal killed halfway leaves every record readable; running it again finishes", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      const oldBase64 = KeyRing.keyToBase64(KeyRing.generateKey())
      const newBase64 = KeyRing.keyToBase64(KeyRing.generateKey())
      const oldKey = KeyRing.keyFromBase64("old", oldBase64)
      const newKey = KeyRing.keyFromBase64("new", newBase64)
      const both = KeyRing.make([oldKey, newKey])
      const made = yield* withStore({ directory, keyRing: KeyRing.make([oldKey]) }, createMany(300))

      // register the new key, then let a child process re-seal and kill it as soon as it has started
      const watcher = yield* open({ directory, keyRing: both })
      const store = yield* Effect.provide(Store, watcher)
      const child = startChild("resealer", [directory], {
        SG_OLD_KEY: Redacted.value(oldBase64),
        SG_NEW_KEY: Redacted.value(newBase64)
      })
      yield* Effect.promise(() => child.waitFor("ready"))
      for (;;) {
        const keys = yield* store.keys
        if ((keys.find((k) => k.id === "new")?.records ?? 0) >= 20) break
        yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 2)))
      }
      child.process.kill("SIGKILL")
      const exit = yield* Effect.promise(() => child.exited)
      expect(exit.signal).toBe("SIGKILL")

      const counts = Object.fromEntries((yield* store.keys).map((k) => [k.id, k.records]))
      expect(counts["old"]! + counts["new"]!).toBe(300)
      expect(counts["old"]).toBeGreaterThan(0) // it really was halfway
      yield* withStore({ directory, keyRing: both }, Effect.gen(function*() {
        const s = yield* Secrets.Secrets
        const resolved = yield* resolveAll(s, made.map((m) => m.placeholder))
        expect(resolved.length).toBe(300)
        expect(resolved).toEqual(made.map((m, i) => [m.name, `s-value-${i}`] as const).sort())
        const again = yield* (yield* Store).reseal
        expect(again).toBe(counts["old"])
        yield* (yield* Store).retireKey("old")
      }))
      expect(new Set(keyIdsOnDisk(directory))).toEqual(new Set(["new"]))
    }).pipe(Effect.scoped), 60_000)
})
