import { describe, expect, it } from "@effect/vitest"
import { KeyRing, SandboxMount, Secrets, type Secret } from "@secretgate/core"
import { Effect, Redacted } from "effect"
import { mkdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from "node:fs"
import * as Path from "node:path"
import { failure, tempStore, withStore } from "./support.js"

const ORG = "acme"
const value = (text: string) => Redacted.make(text)

interface Fixture {
  readonly directory: string
  readonly key: Redacted.Redacted<string>
  readonly a: Secret.Secret
  readonly b: Secret.Secret
  readonly c: Secret.Secret
  readonly pathOf: (secret: Secret.Secret) => string
}

/** A store with three secrets; the tests damage `b`. */
const fixture = Effect.gen(function*() {
  const directory = tempStore()
  const key = KeyRing.keyToBase64(KeyRing.generateKey("k"))
  const [a, b, c] = yield* withStore(
    { directory, key },
    Effect.flatMap(Secrets.Secrets, (s) =>
      Effect.forEach(["a", "b", "c"], (name) =>
        s.create(ORG, { name, value: value(`value-of-${name}`), hosts: [`${name}.example.com`] })))
  )
  const pathOf = (secret: Secret.Secret) => Path.join(directory, "records", secret.id.slice(0, 2), `${secret.id}.json`)
  return { directory, key, a: a!, b: b!, c: c!, pathOf } satisfies Fixture
})

/** After `b`'s file was damaged: `b` fails naming its file, `a` and `c` work, listing refuses to be incomplete. */
const expectOnlyBFails = (f: Fixture, tags: ReadonlyArray<string> = ["StoreCorrupted"]) =>
  withStore({ directory: f.directory, key: f.key }, Effect.gen(function*() {
    const s = yield* Secrets.Secrets
    const path = f.pathOf(f.b)
    const byId = yield* failure(s.get(ORG, f.b.id))
    expect(tags).toContain(byId._tag)
    if (byId._tag === "StoreCorrupted") expect(byId.location).toBe(path)
    expect(byId.message).toContain(path)
    expect((yield* failure(s.update(ORG, f.b.id, { description: "x" })))._tag).toBe(byId._tag)
    for (const other of [f.a, f.c]) {
      expect(yield* s.get(ORG, other.id)).toEqual(other)
      const [resolved] = yield* s.resolve(ORG, [other.placeholder])
      expect(Redacted.value(resolved!.value)).toBe(`value-of-${other.name}`)
    }
    const listing = yield* failure(s.list(ORG))
    expect(listing._tag).toBe(byId._tag)
    expect(listing.message).toContain(path)
    // another organization is not affected by a file that claims this one
    return byId
  }))

const flipBit = (path: string, position: number, bit: number) => {
  const bytes = readFileSync(path)
  bytes[position] = bytes[position]! ^ (1 << bit)
  writeFileSync(path, bytes)
}

describe("tampering and damage", () => {
  it.live("a flipped bit anywhere in a record fails that record alone", () =>
    Effect.gen(function*() {
      const f = yield* fixture
      const path = f.pathOf(f.b)
      const original = readFileSync(path)
      // a deterministic spread of positions over the whole file, including the MAC, the
      // ciphertext, the host list, the field names and the final newline
      const positions = Array.from({ length: 48 }, (_, i) => Math.floor((i * original.length) / 48))
      positions.push(original.length - 1)
      for (const [i, position] of positions.entries()) {
        flipBit(path, position, i % 8)
        yield* expectOnlyBFails(f)
        writeFileSync(path, original)
      }
      // restored: b is whole again
      yield* withStore({ directory: f.directory, key: f.key }, Effect.flatMap(Secrets.Secrets, (s) => s.get(ORG, f.b.id)))
    }), 60_000)

  it.live("a changed host list is caught (it would widen where the value may go)", () =>
    Effect.gen(function*() {
      const f = yield* fixture
      const path = f.pathOf(f.b)
      writeFileSync(path, readFileSync(path, "utf8").replace("b.example.com", "attacker.example"))
      const error = yield* expectOnlyBFails(f)
      expect(error.message).toMatch(/secret record ".*" is damaged \(it fails its integrity check: tampered with or damaged\)/)
      // the damaged record still claims its name and placeholder: those lookups fail too
      yield* withStore({ directory: f.directory, key: f.key }, Effect.gen(function*() {
        const s = yield* Secrets.Secrets
        expect((yield* failure(s.getByName(ORG, "b")))._tag).toBe("StoreCorrupted")
        expect((yield* failure(s.resolve(ORG, [f.b.placeholder])))._tag).toBe("StoreCorrupted")
        expect((yield* failure(s.create(ORG, { name: "b", value: value("replacement") })))._tag).toBe("StoreCorrupted")
        // ...but not for another organization, which cannot see it
        expect((yield* failure(s.get("other-org", f.b.id)))._tag).toBe("SecretNotFound")
        expect(yield* s.list("other-org")).toEqual([])
      }))
    }))

  it.live("a ciphertext moved from another record is caught", () =>
    Effect.gen(function*() {
      const f = yield* fixture
      const a = JSON.parse(readFileSync(f.pathOf(f.a), "utf8"))
      const b = JSON.parse(readFileSync(f.pathOf(f.b), "utf8"))
      b.record.sealed = a.record.sealed
      writeFileSync(f.pathOf(f.b), JSON.stringify(b))
      yield* expectOnlyBFails(f)
    }))

  it.live("another record's file put in its place is caught", () =>
    Effect.gen(function*() {
      const f = yield* fixture
      writeFileSync(f.pathOf(f.b), readFileSync(f.pathOf(f.a)))
      const error = yield* expectOnlyBFails(f)
      expect(error.message).toContain(`it holds record ${JSON.stringify(f.a.id)}, which belongs elsewhere`)
    }))

  it.live("a truncated, empty or garbage record file fails that record alone", () =>
    Effect.gen(function*() {
      const f = yield* fixture
      const path = f.pathOf(f.b)
      const original = readFileSync(path)
      for (const damage of [original.subarray(0, original.length >> 1), Buffer.alloc(0), Buffer.from([0xff, 0x00, 0x13, 0x37])]) {
        writeFileSync(path, damage)
        const error = yield* expectOnlyBFails(f)
        expect(error.message).toContain(`secret record ${JSON.stringify(f.b.id)} is damaged (not valid JSON`)
      }
    }))

  it.live("a directory or a huge (sparse) file in place of a record fails that record alone, not the store", () =>
    Effect.gen(function*() {
      const f = yield* fixture
      const path = f.pathOf(f.b)
      const original = readFileSync(path)
      // a directory where the record file should be
      rmSync(path)
      mkdirSync(path)
      let error = yield* expectOnlyBFails(f)
      expect(error.message).toContain("it is a directory")
      rmSync(path, { recursive: true })
      // a 600 MB sparse file: refused by its size, never read into memory
      writeFileSync(path, "")
      truncateSync(path, 600 * 1024 * 1024)
      error = yield* expectOnlyBFails(f)
      expect(error.message).toMatch(/it is 629145600 bytes, larger than any record/)
      // the record file restored: b is whole again
      writeFileSync(path, original)
      yield* withStore({ directory: f.directory, key: f.key }, Effect.gen(function*() {
        expect((yield* (yield* Secrets.Secrets).list(ORG)).map((x) => x.name)).toEqual(["a", "b", "c"])
      }))
    }))

  it.live("a damaged record is damage on every path (by id, by name, through a mount, a create of its name), running and after a reopen; its backup restores it", () =>
    Effect.gen(function*() {
      const f = yield* fixture
      const path = f.pathOf(f.b)
      const original = readFileSync(path)
      const expectDamage = (s: Secrets.Secrets) =>
        Effect.gen(function*() {
          const attempts: ReadonlyArray<Effect.Effect<unknown, { readonly _tag: string; readonly message: string }>> = [
            s.create(ORG, { name: "b", value: value("a second b") }),
            s.get(ORG, f.b.id),
            s.getByName(ORG, "b"),
            SandboxMount.make(ORG, { B: "b" }).pipe(Effect.provideService(Secrets.Secrets, s)),
            s.create(ORG, { name: "b", value: value("a second b") })
          ]
          for (const attempt of attempts) {
            const error = yield* failure(attempt)
            expect(error._tag).toBe("StoreCorrupted")
            expect(error.message).toContain(path)
          }
          // the other records are unaffected by name and through a mount
          expect((yield* s.getByName(ORG, "a")).id).toBe(f.a.id)
          const mounted = yield* SandboxMount.make(ORG, { A: "a", C: "c" }).pipe(Effect.provideService(Secrets.Secrets, s))
          expect(mounted.env).toEqual({ A: f.a.placeholder, C: f.c.placeholder })
        })
      // a process that knew the record when its file was garbled
      yield* withStore({ directory: f.directory, key: f.key }, Effect.gen(function*() {
        const s = yield* Secrets.Secrets
        yield* s.list(ORG)
        writeFileSync(path, "{ not json")
        yield* expectDamage(s)
      }))
      // a process that opens the store with the file already garbled (it cannot read the name)
      yield* withStore({ directory: f.directory, key: f.key }, Effect.flatMap(Secrets.Secrets, expectDamage))
      // the documented remedy: the backup put back, and nothing collides with it
      writeFileSync(path, original)
      yield* withStore({ directory: f.directory, key: f.key }, Effect.gen(function*() {
        const s = yield* Secrets.Secrets
        expect((yield* s.getByName(ORG, "b")).id).toBe(f.b.id)
        expect((yield* s.list(ORG)).map((x) => x.name)).toEqual(["a", "b", "c"])
      }))
    }))

  it.live("a damaged record can be deleted by its organization, which clears the damage", () =>
    Effect.gen(function*() {
      const f = yield* fixture
      flipBit(f.pathOf(f.b), 40, 2)
      yield* withStore({ directory: f.directory, key: f.key }, Effect.gen(function*() {
        const s = yield* Secrets.Secrets
        expect((yield* failure(s.delete("other-org", f.b.id)))._tag).toBe("SecretNotFound")
        yield* s.delete(ORG, f.b.id)
        expect((yield* s.list(ORG)).map((x) => x.name)).toEqual(["a", "c"])
        yield* s.create(ORG, { name: "b", value: value("fresh") })
      }))
    }))

  it.live("a damaged or truncated manifest or key file fails the open with a clear error", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      yield* withStore({ directory }, Effect.flatMap(Secrets.Secrets, (s) => s.create(ORG, { name: "x", value: value("v") })))
      const cases: ReadonlyArray<readonly [string, (text: Buffer) => Buffer | string, RegExp]> = [
        ["store.json", (text) => text.subarray(0, 20), /store\.json is not valid JSON \(truncated or damaged\)/],
        ["store.json", () => "{\"format\":\"something-else\"}", /is not a secretgate store manifest/],
        ["store.json", (text) => text.toString("utf8").replace("\"keys\"", "\"kays\""), /malformed "keys" list/],
        ["keys.json", (text) => text.subarray(0, 30), /keys\.json is not valid JSON/],
        ["keys.json", () => "{\"format\":\"secretgate-keys\",\"version\":1,\"keys\":[{\"id\":\"k\",\"key\":\"c2hvcnQ=\"}]}", /holds an invalid key: .*32 bytes/]
      ]
      for (const [file, damage, message] of cases) {
        const path = Path.join(directory, file)
        const original = readFileSync(path)
        writeFileSync(path, damage(original), { mode: 0o600 })
        const error = yield* failure(withStore({ directory }, Effect.void))
        expect(error._tag).toBe("StoreCorrupted")
        expect(error.message).toMatch(message)
        if (error._tag === "StoreCorrupted") expect(error.location).toBe(path)
        writeFileSync(path, original)
      }
      // everything restored: the store opens with its data
      yield* withStore({ directory }, Effect.flatMap(Secrets.Secrets, (s) => s.getByName(ORG, "x")))
    }))

  it.live("a lost manifest with records still present is refused, not replaced by an empty store", () =>
    Effect.gen(function*() {
      const f = yield* fixture
      rmSync(Path.join(f.directory, "store.json"))
      const error = yield* failure(withStore({ directory: f.directory, key: f.key }, Effect.void))
      expect(error._tag).toBe("StoreCorrupted")
      expect(error.message).toMatch(/store\.json is missing but .*records holds records/)
    }))

  it.live("files the store never writes are ignored; a records path that is a file is a clear error", () =>
    Effect.gen(function*() {
      const f = yield* fixture
      writeFileSync(Path.join(f.directory, "records", f.a.id.slice(0, 2), "README.txt"), "notes")
      mkdirSync(Path.join(f.directory, "records", "not-a-shard"))
      yield* withStore({ directory: f.directory, key: f.key }, Effect.gen(function*() {
        expect((yield* (yield* Secrets.Secrets).list(ORG)).length).toBe(3)
      }))
      rmSync(Path.join(f.directory, "records"), { recursive: true })
      writeFileSync(Path.join(f.directory, "records"), "oops")
      const error = yield* failure(withStore({ directory: f.directory, key: f.key }, Effect.void))
      expect(error._tag).toBe("StoreUnavailable")
      expect(error.message).toContain("records")
    }))
})
