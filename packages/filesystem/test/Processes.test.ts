import { describe, expect, it } from "@effect/vitest"
import { KeyRing, Secrets, SecretStore } from "@secretgate/core"
import { FileSystemSecretStore } from "@secretgate/filesystem"
import { Effect, Option, Redacted } from "effect"
import { existsSync, readdirSync } from "node:fs"
import * as Path from "node:path"
import { type Child, failure, filesUnder, open, runChild, startChild, tempStore, withStore, winnersOf } from "./support.js"

const ORG = "acme"

/**
 * Opens the store afresh and checks every record: each one whole (its value and description were
 * written together), and a write goes through, so no lock was left stuck.
 */
const verify = (directory: string, key: Redacted.Redacted<string>) =>
  withStore({ directory, key, quota: 100_000, lockTimeout: 5_000 }, Effect.gen(function*() {
    const store = yield* SecretStore.SecretStore
    const cipher = (yield* FileSystemSecretStore.FileSystemSecretStore).cipher
    const records = yield* store.listAll(ORG)
    for (const listed of records) {
      const found = yield* store.findById(ORG, listed.id)
      if (Option.isNone(found)) continue // deleted by a live writer since the listing
      const record = found.value
      const opened = yield* cipher.open(record.sealed, { organizationId: ORG, secretId: record.id })
      const gen = record.description?.replace("gen ", "")
      expect(Redacted.value(opened), record.name).toBe(`value-${record.name}-${gen}`)
    }
    const secrets = yield* Secrets.Secrets
    const probe = yield* secrets.create(ORG, { name: `probe-${globalThis.crypto.randomUUID()}`, value: Redacted.make("p") })
    yield* secrets.delete(ORG, probe.id)
    return records.length
  }))

describe("processes", () => {
  it.live("a change made by another process is seen on the next read", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      const key = KeyRing.keyToBase64(KeyRing.generateKey())
      const secrets = yield* Effect.provide(Secrets.Secrets, yield* open({ directory, key }))
      const env = { SG_KEY: Redacted.value(key) }
      const run = (...args: Array<string>) =>
        Effect.tryPromise({ try: () => runChild("command", [directory, ORG, ...args], env), catch: (error) => error as Error })
      const valueOf = (placeholder: string) =>
        Effect.map(secrets.resolve(ORG, [placeholder]), (all) => all.map((s) => Redacted.value(s.value)))

      yield* run("create", "from-child", "first")
      const created = yield* secrets.getByName(ORG, "from-child")
      expect(yield* valueOf(created.placeholder)).toEqual(["first"])
      yield* run("update", "from-child", "second")
      expect(yield* valueOf(created.placeholder)).toEqual(["second"])
      yield* run("delete", "from-child")
      expect((yield* failure(secrets.get(ORG, created.id)))._tag).toBe("SecretNotFound")
      expect(yield* valueOf(created.placeholder)).toEqual([])
      // and the other way round: the child sees the parent's secret (its create collides)
      yield* secrets.create(ORG, { name: "from-parent", value: Redacted.make("p") })
      const collision = yield* Effect.either(run("create", "from-parent", "x"))
      expect(collision._tag).toBe("Left")
      if (collision._tag === "Left") expect(collision.left.message).toMatch(/a secret named "from-parent" already exists/)
    }).pipe(Effect.scoped), 120_000)

  it.live("writers killed with SIGKILL at random moments never leave a torn record or a stuck lock", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      const key = KeyRing.keyToBase64(KeyRing.generateKey())
      yield* withStore({ directory, key }, Effect.void)
      const env = { SG_KEY: Redacted.value(key) }
      const spawnWriter = () => startChild("writer", [directory, ORG, "30"], env)
      // three writers share the store; one at a time is killed and replaced
      const pool: Array<Child> = [spawnWriter(), spawnWriter(), spawnWriter()]
      const kills = 25
      let lastCount = 0
      try {
        for (let round = 0; round < kills; round++) {
          const victim = pool.shift()!
          yield* Effect.promise(() => victim.waitFor("ready"))
          yield* Effect.promise(() => new Promise((resolve) => setTimeout(resolve, 20 + Math.random() * 250)))
          victim.process.kill("SIGKILL")
          const exit = yield* Effect.promise(() => victim.exited)
          expect(exit.signal, exit.stderr).toBe("SIGKILL")
          pool.push(spawnWriter())
          lastCount = yield* verify(directory, key)
        }
      } finally {
        for (const child of pool) child.process.kill("SIGKILL")
      }
      yield* Effect.promise(() => Promise.all(pool.map((child) => child.exited)))
      expect(lastCount).toBeGreaterThan(0)
      // all writers dead, some perhaps mid-write: the store opens, is whole, and takes writes
      yield* verify(directory, key)
      // leftovers of killed writers were cleaned up by that open
      expect(filesUnder(directory).filter((file) => Path.basename(file).startsWith(".tmp-"))).toEqual([])
      expect(existsSync(Path.join(directory, "lock"))).toBe(false)
    }), 180_000)

  it.live("processes opening a fresh directory at once agree on one generated key", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      const outputs = yield* Effect.promise(() =>
        Promise.all([0, 1, 2, 3].map(() => runChild("command", [directory, ORG, "key"])))
      )
      const ids = outputs.map((output) => output.trim())
      expect(new Set(ids).size).toBe(1)
      yield* withStore({ directory }, Effect.gen(function*() {
        const keys = yield* (yield* FileSystemSecretStore.FileSystemSecretStore).keys
        expect(keys.map((k) => k.id)).toEqual([ids[0]])
      }))
    }), 30_000)

  it.live("4 processes × 250 creates, names colliding: exactly the expected set, each shared name created once", () =>
    Effect.gen(function*() {
      const directory = tempStore() // not created yet: the workers race to initialise it too
      const key = KeyRing.keyToBase64(KeyRing.generateKey())
      const workers = [0, 1, 2, 3].map((worker) =>
        startChild("creator", [directory, ORG, String(worker), "250"], { SG_KEY: Redacted.value(key) })
      )
      yield* Effect.promise(() => Promise.all(workers.map((child) => child.waitFor("ready"))))
      for (const child of workers) child.process.stdin!.write("go\n")
      const exits = yield* Effect.promise(() => Promise.all(workers.map((child) => child.exited)))
      exits.forEach((exit) => expect(exit.code, exit.stderr).toBe(0))
      const shared = Array.from({ length: 50 }, (_, i) => `shared-${i}`)
      const winners = winnersOf(workers, 50)
      expect([...winners.keys()].sort()).toEqual([...shared].sort())

      yield* withStore({ directory, key, quota: 100_000 }, Effect.gen(function*() {
        const secrets = yield* Secrets.Secrets
        const all = yield* secrets.list(ORG)
        const expected = [
          ...shared,
          ...[0, 1, 2, 3].flatMap((w) => Array.from({ length: 250 }, (_, j) => j).filter((j) => j % 5 !== 0).map((j) => `w${w}-${j}`))
        ]
        expect(all.map((s) => s.name).sort()).toEqual(expected.sort())
        // no lost write: every value is the one its creator wrote
        const resolved = yield* secrets.resolve(ORG, all.map((s) => s.placeholder))
        expect(resolved.length).toBe(850)
        for (const secret of resolved) {
          const creator = secret.name.startsWith("shared-") ? winners.get(secret.name) : Number(secret.name.slice(1, 2))
          expect(Redacted.value(secret.value)).toBe(`from-w${creator}-${secret.name}`)
        }
      }))
      expect(readdirSync(directory)).not.toContain("lock")
    }), 120_000)
})
