/**
 * `Secrets.requireHosts`: a server configured to refuse secrets without hosts (which may go to any
 * host) refuses creating one and updating one to have none, with a typed error on `hosts`, and
 * leaves the store as it was; everything else passes through. Over the in-memory backend, through
 * the wrapper, the layer helper and the backend's own option.
 */
import { InvalidSecretInput, Secretgate, Secrets } from "@secretgate/core"
import { Effect, Either, Redacted } from "effect"
import { describe, expect, it } from "vitest"
import { MemorySecretStore } from "../../memory/src/index.js"

const ORG = "acme"
const run = <A, E>(effect: Effect.Effect<A, E, Secrets.Secrets>) => Effect.runPromise(effect.pipe(Effect.provide(MemorySecretStore.layer())))

const expectHostsRefusal = (result: Either.Either<unknown, unknown>) => {
  expect(Either.isLeft(result)).toBe(true)
  const error = (result as Either.Left<unknown, unknown>).left
  expect(error).toBeInstanceOf(InvalidSecretInput)
  expect((error as InvalidSecretInput).field).toBe("hosts")
  expect((error as Error).message).toMatch(/requires every secret to name the hosts.*give hosts/)
}

describe("Secrets.requireHosts", () => {
  it("refuses a create without hosts or with none, and an update to none or leaving none; the store is unchanged", async () => {
    const outcome = await run(Effect.gen(function*() {
      const raw = yield* Secrets.Secrets
      const strict = Secrets.requireHosts(raw)
      const missing = yield* Effect.either(strict.create(ORG, { name: "no-hosts", value: Redacted.make("v1") }))
      const empty = yield* Effect.either(strict.create(ORG, { name: "empty-hosts", value: Redacted.make("v1"), hosts: [] }))
      const good = yield* strict.create(ORG, { name: "scoped", value: Redacted.make("v1"), hosts: ["api.example.com"] })
      const toNone = yield* Effect.either(strict.update(ORG, good.id, { hosts: [] }))
      // a secret created before the setting (or behind its back) has no hosts
      const legacy = yield* raw.create(ORG, { name: "legacy", value: Redacted.make("v1") })
      const keepsNone = yield* Effect.either(strict.update(ORG, legacy.id, { value: Redacted.make("v2") }))
      const fixed = yield* strict.update(ORG, legacy.id, { hosts: ["api.example.com"] })
      const thenValue = yield* strict.update(ORG, legacy.id, { value: Redacted.make("v3") })
      const badHosts = yield* Effect.either(strict.update(ORG, good.id, { hosts: "api.example.com" as never }))
      const list = yield* strict.list(ORG)
      return { missing, empty, toNone, keepsNone, fixed, thenValue, badHosts, list }
    }))
    const { missing, empty, toNone, keepsNone, fixed, thenValue, badHosts, list } = outcome
    for (const refused of [missing, empty, toNone, keepsNone]) expectHostsRefusal(refused)
    expect(fixed.hosts).toEqual(["api.example.com"])
    expect(thenValue.hosts).toEqual(["api.example.com"])
    // a hosts field that is not a list is the service's own validation error, not this one
    expect(Either.isLeft(badHosts) && (badHosts.left as InvalidSecretInput).message).not.toMatch(/requires every secret/)
    expect(list.map((secret) => [secret.name, secret.hosts])).toEqual([["legacy", ["api.example.com"]], ["scoped", ["api.example.com"]]])
  })

  it("works through the layer helper and the backend's requireHosts option, and through the facade", async () => {
    for (const layer of [Secrets.withRequiredHosts(MemorySecretStore.layer()), MemorySecretStore.layer({ requireHosts: true })]) {
      const gate = new Secretgate({ layer, organizationId: ORG })
      try {
        await expect(gate.secret.create({ name: "open", value: "v" })).rejects.toBeInstanceOf(InvalidSecretInput)
        const created = await gate.secret.create({ name: "closed", value: "v", hosts: ["*.example.com"] })
        await expect(gate.secret.update(created.id, { hosts: [] })).rejects.toThrow(/requires every secret to name the hosts/)
        expect((await gate.secret.list()).map((secret) => secret.hosts)).toEqual([["*.example.com"]])
      } finally {
        await gate.dispose()
      }
    }
  })
})
