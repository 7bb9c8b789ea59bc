import { FileSystem } from "@effect/platform"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { describe, expect, it } from "@effect/vitest"
import { KeyRing, SecretCipher, Secrets, SecretStore } from "@secretgate/core"
import { Effect, Redacted, TestClock } from "effect"
import { existsSync, readFileSync, writeFileSync } from "node:fs"
import { hostname } from "node:os"
import * as Path from "node:path"
import * as Clock from "../src/internal/clock.js"
import * as Engine from "../src/internal/engine.js"
import { deadPid, failure, startChild, tempStore, withStore } from "./support.js"

const ORG = "acme"
const YEAR = 365 * 24 * 3_600_000

/** The system's clocks with the wall clock moved by `step()` (read at every call): the monotonic clock is untouched. */
const stepped = (step: () => number): Clock.StoreClock => ({ ...Clock.live, wallMillis: () => Date.now() + step() })

/** `Secrets` over the engine opened with `clock`, for the duration of `body`. */
const withClock = <A, E>(
  directory: string,
  key: Redacted.Redacted<string>,
  clock: Clock.StoreClock,
  lockTimeoutMillis: number,
  body: (secrets: Secrets.Secrets) => Effect.Effect<A, E>
) =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    const engine = yield* Engine.open(fs, {
      directory,
      keys: { _tag: "Configured", ring: KeyRing.make([KeyRing.keyFromBase64("primary", key)]) },
      lockTimeoutMillis,
      journalLimitBytes: 4 * 1024 * 1024,
      clock
    })
    const secrets = yield* Secrets.make().pipe(
      Effect.provideService(SecretStore.SecretStore, engine.store),
      Effect.provideService(SecretCipher.SecretCipher, engine.cipher)
    )
    return yield* body(secrets)
  }).pipe(Effect.provide(NodeFileSystem.layer))

const create = (name: string) => (secrets: Secrets.Secrets) => secrets.create(ORG, { name, value: Redacted.make("v") })

/** A store with one secret, and its lock held by another live process until `release`. */
const heldByAnother = Effect.gen(function*() {
  const directory = tempStore()
  const key = KeyRing.keyToBase64(KeyRing.generateKey())
  yield* withStore({ directory, key }, Effect.flatMap(Secrets.Secrets, create("first")))
  const holder = startChild("lockHolder", [directory])
  yield* Effect.promise(() => holder.waitFor("held"))
  const lock = readFileSync(Path.join(directory, "lock"), "utf8")
  const release = Effect.promise(async () => {
    holder.process.stdin!.write("go\n")
    const exit = await holder.exited
    expect(exit.code, exit.stderr).toBe(0)
  })
  return { directory, key, lock, release }
})

describe("the wall clock stepped while processes hold the lock", () => {
  it.live("forward by years: a live holder's lock is not taken for stale, the writer times out and the lock stays", () =>
    Effect.gen(function*() {
      const { directory, key, lock, release } = yield* heldByAnother
      const forward = stepped(() => 10 * YEAR)
      const error = yield* failure(withClock(directory, key, forward, 1_000, create("second")))
      expect(error._tag).toBe("StoreUnavailable")
      expect(error.message).toMatch(/timed out after 1000 ms waiting for the store lock/)
      expect(readFileSync(Path.join(directory, "lock"), "utf8")).toBe(lock)
      yield* release
      yield* withClock(directory, key, forward, 1_000, create("second"))
    }), 30_000)

  it.live("backward by an hour during the wait: lockTimeout still ends the wait (monotonic deadline)", () =>
    Effect.gen(function*() {
      const { directory, key, release } = yield* heldByAnother
      let reads = 0
      // every read of the wall clock is an hour earlier than the one before
      const backward = stepped(() => -3_600_000 * reads++)
      const outcome = yield* withClock(directory, key, backward, 1_500, create("second")).pipe(
        Effect.flip,
        // a guard, not a timing assert: a wait that followed the wall clock would take hours
        Effect.timeout("30 seconds")
      )
      expect(outcome._tag).toBe("StoreUnavailable")
      expect(outcome.message).toMatch(/timed out after 1500 ms/)
      yield* release
    }), 60_000)

  for (const [way, step] of [["forward", YEAR], ["backward", -YEAR]] as const) {
    it.live(`${way}: a dead holder's lock is still broken`, () =>
      Effect.gen(function*() {
        const directory = tempStore()
        const key = KeyRing.keyToBase64(KeyRing.generateKey())
        yield* withStore({ directory, key }, Effect.flatMap(Secrets.Secrets, create("first")))
        const boot = process.platform === "linux" ? readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim() : null
        writeFileSync(
          Path.join(directory, "lock"),
          JSON.stringify({ pid: deadPid(), host: hostname(), token: "dead", since: Date.now(), start: null, boot })
        )
        yield* withClock(directory, key, stepped(() => step), 2_000, create("second"))
        expect(existsSync(Path.join(directory, "lock"))).toBe(false)
      }))
  }

  it.live.skipIf(process.platform !== "linux")("a lock of another boot is stale although its pid is alive and its time is recent", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      const key = KeyRing.keyToBase64(KeyRing.generateKey())
      yield* withStore({ directory, key }, Effect.flatMap(Secrets.Secrets, create("first")))
      writeFileSync(
        Path.join(directory, "lock"),
        JSON.stringify({
          pid: process.ppid,
          host: hostname(),
          token: "other-boot",
          since: Date.now(),
          start: null,
          boot: "00000000-0000-4000-8000-000000000000"
        })
      )
      yield* withClock(directory, key, Clock.live, 2_000, create("second"))
      expect(existsSync(Path.join(directory, "lock"))).toBe(false)
    }))
})

describe("timestamps when the wall clock steps back", () => {
  it.effect("updatedAt never precedes createdAt (or the last update), and every page walk sees each secret once, in order", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      const key = KeyRing.keyToBase64(KeyRing.generateKey())
      const hour = 3_600_000
      yield* TestClock.setTime(10 * YEAR)
      const first = yield* withStore({ directory, key }, Effect.gen(function*() {
        const s = yield* Secrets.Secrets
        const a = yield* s.create(ORG, { name: "a", value: Redacted.make("v") })
        yield* TestClock.adjust(hour)
        const b = yield* s.create(ORG, { name: "b", value: Redacted.make("v") })
        return { a, b }
      }))
      // the clock steps back two hours, below both creations
      yield* TestClock.setTime(10 * YEAR - 2 * hour)
      const after = yield* withStore({ directory, key }, Effect.gen(function*() {
        const s = yield* Secrets.Secrets
        const a = yield* s.update(ORG, first.a.id, { description: "after the step" })
        const b = yield* s.update(ORG, first.b.id, { value: Redacted.make("w") })
        const again = yield* s.update(ORG, first.b.id, { description: "and again" })
        yield* s.create(ORG, { name: "c", value: Redacted.make("v") })
        return { a, b, again }
      }))
      expect(after.a.updatedAt.getTime()).toBe(first.a.createdAt.getTime())
      expect(after.b.updatedAt.getTime()).toBe(first.b.createdAt.getTime())
      expect(after.again.updatedAt.getTime()).toBeGreaterThanOrEqual(after.b.updatedAt.getTime())
      yield* withStore({ directory, key }, Effect.gen(function*() {
        const s = yield* Secrets.Secrets
        const all = yield* s.list(ORG)
        for (const secret of all) expect(secret.updatedAt.getTime()).toBeGreaterThanOrEqual(secret.createdAt.getTime())
        for (const sort of ["name", "createdAt", "updatedAt"] as const) {
          for (const order of ["asc", "desc"] as const) {
            const seen: Array<string> = []
            let cursor: string | undefined
            do {
              const page = yield* s.listPage(ORG, { sort, order, limit: 1, ...(cursor === undefined ? {} : { cursor }) })
              seen.push(...page.items.map((item) => item.name))
              cursor = page.nextCursor ?? undefined
            } while (cursor !== undefined)
            const key = (x: (typeof all)[number]) => sort === "name" ? x.name : x[sort].getTime()
            const expected = [...all].sort((x, y) => {
              const byKey = key(x) < key(y) ? -1 : key(x) > key(y) ? 1 : x.id < y.id ? -1 : 1
              return order === "asc" ? byKey : -byKey
            })
            expect(seen, `${sort} ${order}`).toEqual(expected.map((x) => x.name))
          }
        }
      }))
    }))
})
