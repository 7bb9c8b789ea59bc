/**
 * The backend conformance suite. Every `Secrets` implementation (core over any `SecretStore`, or
 * remote over HTTP) must pass it; each backend's test file calls `conformance` with its layer.
 *
 * Each test works in a fresh random organization, so one layer serves the whole suite.
 *
 * @since 0.1.0
 */
import { describe, expect, layer } from "@effect/vitest"
import { Effect, Either, type Layer, Redacted } from "effect"
import * as Placeholder from "../Placeholder.js"
import * as SandboxMount from "../SandboxMount.js"
import type { CreateSecretParams, Secret } from "../Secret.js"
import { Secrets } from "../Secrets.js"

/**
 * How the suite builds layers: `quota` is the per-organization quota the layer must enforce.
 *
 * @since 0.1.0
 */
export type MakeLayer = (options: { readonly quota: number }) => Layer.Layer<Secrets, unknown>

const org = () => `org-${globalThis.crypto.randomUUID()}`
const value = (text: string) => Redacted.make(text)
const params = (name: string, extra: Partial<Omit<CreateSecretParams, "name">> = {}): CreateSecretParams => ({
  name,
  value: value(`value-of-${name}`),
  ...extra
})
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

const flip = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.flatMap(Effect.either(effect), (result) =>
    Either.isLeft(result) ? Effect.succeed(result.left) : Effect.dieMessage("expected a failure, got a success"))

/**
 * Registers the suite under `name`.
 *
 * @since 0.1.0
 * @example
 * ```ts
 * import { conformance } from "@secretgate/core/testing"
 * import { MemorySecretStore } from "@secretgate/memory"
 * conformance("memory", ({ quota }) => MemorySecretStore.layer({ quota }))
 * ```
 */
export const conformance = (name: string, makeLayer: MakeLayer): void => {
  describe(`${name}: Secrets conformance`, () => {
    layer(makeLayer({ quota: 10_000 }), { timeout: 60_000 })((it) => {
      it.effect("create returns the model without the value", () =>
        Effect.gen(function*() {
          const secrets = yield* Secrets
          const o = org()
          const secret = yield* secrets.create(o, {
            name: "anthropic-prod",
            value: value("sk-ant-conformance-1"),
            description: "the prod key",
            hosts: ["API.Anthropic.com", "*.bücher.example"]
          })
          expect(secret.id).toMatch(UUID)
          expect(secret.name).toBe("anthropic-prod")
          expect(secret.description).toBe("the prod key")
          expect(secret.hosts).toEqual(["api.anthropic.com", "*.xn--bcher-kva.example"])
          expect(Placeholder.isPlaceholder(secret.placeholder)).toBe(true)
          expect(secret.createdAt).toBeInstanceOf(Date)
          expect(secret.updatedAt.getTime()).toBe(secret.createdAt.getTime())
          expect(JSON.stringify(secret)).not.toContain("sk-ant-conformance-1")
          expect(Object.keys(secret)).not.toContain("value")
          expect(yield* secrets.get(o, secret.id)).toEqual(secret)
          expect(yield* secrets.getByName(o, "anthropic-prod")).toEqual(secret)
        }))

      it.effect("omitted hosts mean unrestricted, shown as []", () =>
        Effect.gen(function*() {
          const secrets = yield* Secrets
          const secret = yield* secrets.create(org(), params("open"))
          expect(secret.hosts).toEqual([])
          expect(secret.description).toBeUndefined()
        }))

      it.effect("list returns every secret of the organization, sorted by name", () =>
        Effect.gen(function*() {
          const secrets = yield* Secrets
          const o = org()
          for (const n of ["charlie", "alpha", "Bravo", "_under"]) yield* secrets.create(o, params(n))
          const names = (yield* secrets.list(o)).map((s) => s.name)
          expect(names).toEqual(["Bravo", "_under", "alpha", "charlie"])
          expect(yield* secrets.list(org())).toEqual([])
        }))

      it.effect("names follow the rules", () =>
        Effect.gen(function*() {
          const secrets = yield* Secrets
          const o = org()
          for (const good of ["_x", "A-b_9", "a".repeat(255), "x"]) yield* secrets.create(o, params(good))
          for (const bad of ["", "9lives", "has space", "a.b", "a".repeat(256), "ünï", "-dash"]) {
            const error = yield* flip(secrets.create(o, params(bad)))
            expect(error._tag).toBe("InvalidSecretInput")
            if (error._tag === "InvalidSecretInput") {
              expect(error.field).toBe("name")
              expect(error.message).toMatch(/^name[: ]/)
            }
          }
          expect((yield* secrets.list(o)).length).toBe(4)
        }))

      it.effect("names are unique per organization and case-sensitive", () =>
        Effect.gen(function*() {
          const secrets = yield* Secrets
          const o = org()
          const first = yield* secrets.create(o, params("token"))
          const error = yield* flip(secrets.create(o, params("token", { value: value("other") })))
          expect(error._tag).toBe("SecretNameTaken")
          expect(error.message).toContain("token")
          yield* secrets.create(o, params("Token"))
          yield* secrets.create(org(), params("token"))
          const [resolved] = yield* secrets.resolve(o, [first.placeholder])
          expect(Redacted.value(resolved!.value)).toBe("value-of-token")
        }))

      it.effect("values: non-empty, at most 64 KiB of UTF-8, never in a message", () =>
        Effect.gen(function*() {
          const secrets = yield* Secrets
          const o = org()
          const empty = yield* flip(secrets.create(o, params("empty", { value: value("") })))
          expect(empty._tag).toBe("InvalidSecretInput")
          expect(empty.message).toBe("value: must not be empty")
          const big = "ä".repeat(32 * 1024) + "x" // 65,537 bytes
          const tooBig = yield* flip(secrets.create(o, params("big", { value: value(big) })))
          expect(tooBig._tag).toBe("InvalidSecretInput")
          expect(tooBig.message).toMatch(/^value: must be at most 65536 bytes/)
          expect(tooBig.message).not.toContain("ää")
          const max = yield* secrets.create(o, params("max", { value: value("ä".repeat(32 * 1024)) }))
          const [resolved] = yield* secrets.resolve(o, [max.placeholder])
          expect(Redacted.value(resolved!.value)).toBe("ä".repeat(32 * 1024))
        }))

      it.effect("descriptions: at most 1,024 characters", () =>
        Effect.gen(function*() {
          const secrets = yield* Secrets
          const o = org()
          yield* secrets.create(o, params("ok", { description: "d".repeat(1024) }))
          const error = yield* flip(secrets.create(o, params("long", { description: "d".repeat(1025) })))
          expect(error._tag).toBe("InvalidSecretInput")
          if (error._tag === "InvalidSecretInput") expect(error.field).toBe("description")
        }))

      it.effect("hosts: normalised, deduplicated, at most 100, each entry checked", () =>
        Effect.gen(function*() {
          const secrets = yield* Secrets
          const o = org()
          const secret = yield* secrets.create(o, params("h", { hosts: ["Example.COM", "example.com", "*.Example.com"] }))
          expect(secret.hosts).toEqual(["example.com", "*.example.com"])
          const hundred = Array.from({ length: 100 }, (_, i) => `h${i}.example.com`)
          yield* secrets.create(o, params("hundred", { hosts: hundred }))
          const tooMany = yield* flip(secrets.create(o, params("many", { hosts: [...hundred, "x.example.com"] })))
          expect(tooMany.message).toMatch(/^hosts: must have at most 100 entries/)
          const cases: ReadonlyArray<readonly [string, RegExp]> = [
            ["api.example.com:443", /port/],
            ["https://api.example.com", /scheme/],
            ["api.example.com/v1", /path/],
            ["user@api.example.com", /user/],
            ["10.0.0.1", /IP/],
            ["*", /\*/],
            ["*.com", /wildcard/],
            ["a.*.example.com", /wildcard/],
            ["api.example.com.", /trailing dot/],
            ["under_score.com", /underscore/],
            ["", /empty/]
          ]
          for (const [host, reason] of cases) {
            const error = yield* flip(secrets.create(o, params("bad", { hosts: ["fine.example.com", host] })))
            expect(error._tag).toBe("InvalidSecretInput")
            if (error._tag === "InvalidSecretInput") {
              expect(error.field).toBe("hosts[1]")
              expect(error.message).toContain(`hosts[1] ${JSON.stringify(host)}: `)
              expect(error.message).toMatch(reason)
            }
          }
          expect((yield* secrets.list(o)).map((s) => s.name)).toEqual(["h", "hundred"])
        }))

      it.effect("update: omitted fields stay, value and hosts replace, placeholder is stable", () =>
        Effect.gen(function*() {
          const secrets = yield* Secrets
          const o = org()
          const created = yield* secrets.create(o, params("svc", { description: "first", hosts: ["a.example.com"] }))
          const renamed = yield* secrets.update(o, created.id, { description: "second" })
          expect(renamed.description).toBe("second")
          expect(renamed.hosts).toEqual(["a.example.com"])
          expect(renamed.placeholder).toBe(created.placeholder)
          const revalued = yield* secrets.update(o, created.id, { value: value("rotated-value"), hosts: ["B.example.com"] })
          expect(revalued.placeholder).toBe(created.placeholder)
          expect(revalued.hosts).toEqual(["b.example.com"])
          expect(revalued.description).toBe("second")
          expect(revalued.createdAt.getTime()).toBe(created.createdAt.getTime())
          expect(revalued.updatedAt.getTime()).toBeGreaterThanOrEqual(created.updatedAt.getTime())
          const [resolved] = yield* secrets.resolve(o, [created.placeholder])
          expect(Redacted.value(resolved!.value)).toBe("rotated-value")
          expect(resolved!.hosts).toEqual(["b.example.com"])
          const cleared = yield* secrets.update(o, created.id, { description: null, hosts: [] })
          expect(cleared.description).toBeUndefined()
          expect(cleared.hosts).toEqual([])
          expect(yield* secrets.get(o, created.id)).toEqual(cleared)
        }))

      it.effect("update: bad input fails and leaves the secret intact", () =>
        Effect.gen(function*() {
          const secrets = yield* Secrets
          const o = org()
          const created = yield* secrets.create(o, params("keep", { hosts: ["a.example.com"] }))
          const badHosts = yield* flip(secrets.update(o, created.id, { value: value("new"), hosts: ["a.example.com:1"] }))
          expect(badHosts._tag).toBe("InvalidSecretInput")
          const empty = yield* flip(secrets.update(o, created.id, { value: value("") }))
          expect(empty._tag).toBe("InvalidSecretInput")
          const nullValue = yield* flip(secrets.update(o, created.id, { value: null } as never))
          expect(nullValue._tag).toBe("InvalidSecretInput")
          const nullHosts = yield* flip(secrets.update(o, created.id, { hosts: null } as never))
          expect(nullHosts._tag).toBe("InvalidSecretInput")
          expect(yield* secrets.get(o, created.id)).toEqual(created)
          const [resolved] = yield* secrets.resolve(o, [created.placeholder])
          expect(Redacted.value(resolved!.value)).toBe("value-of-keep")
          const missing = yield* flip(secrets.update(o, globalThis.crypto.randomUUID(), { description: "x" }))
          expect(missing._tag).toBe("SecretNotFound")
        }))

      it.effect("delete: gone for good; a re-created name gets a new placeholder", () =>
        Effect.gen(function*() {
          const secrets = yield* Secrets
          const o = org()
          const created = yield* secrets.create(o, params("temp"))
          yield* secrets.delete(o, created.id)
          expect((yield* flip(secrets.get(o, created.id)))._tag).toBe("SecretNotFound")
          expect((yield* flip(secrets.delete(o, created.id)))._tag).toBe("SecretNotFound")
          expect((yield* flip(secrets.getByName(o, "temp")))._tag).toBe("SecretNotFound")
          expect(yield* secrets.resolve(o, [created.placeholder])).toEqual([])
          const again = yield* secrets.create(o, params("temp"))
          expect(again.id).not.toBe(created.id)
          expect(again.placeholder).not.toBe(created.placeholder)
        }))

      it.effect("organizations are isolated: another's secret looks missing", () =>
        Effect.gen(function*() {
          const secrets = yield* Secrets
          const a = org()
          const b = org()
          const secret = yield* secrets.create(a, params("shared-name"))
          const notFound = yield* flip(secrets.get(b, secret.id))
          expect(notFound._tag).toBe("SecretNotFound")
          expect(notFound.message).toBe(`secret ${JSON.stringify(secret.id)} not found`)
          expect((yield* flip(secrets.update(b, secret.id, { description: "hijack" })))._tag).toBe("SecretNotFound")
          expect((yield* flip(secrets.delete(b, secret.id)))._tag).toBe("SecretNotFound")
          expect((yield* flip(secrets.getByName(b, "shared-name")))._tag).toBe("SecretNotFound")
          expect(yield* secrets.resolve(b, [secret.placeholder])).toEqual([])
          expect(yield* secrets.list(b)).toEqual([])
          expect((yield* secrets.listPage(b)).total).toBe(0)
          expect(yield* secrets.get(a, secret.id)).toEqual(secret)
        }))

      it.effect("resolve: values of known placeholders only", () =>
        Effect.gen(function*() {
          const secrets = yield* Secrets
          const o = org()
          const one = yield* secrets.create(o, params("one", { hosts: ["one.example.com"] }))
          const two = yield* secrets.create(o, params("two"))
          const resolved = yield* secrets.resolve(o, [one.placeholder, two.placeholder, Placeholder.generate(), one.placeholder])
          expect(resolved.map((r) => [r.name, r.placeholder, Redacted.value(r.value)]).sort()).toEqual([
            ["one", one.placeholder, "value-of-one"],
            ["two", two.placeholder, "value-of-two"]
          ])
          expect(resolved.find((r) => r.name === "one")!.hosts).toEqual(["one.example.com"])
        }))

      it.effect("what a caller gets is a copy: changing it changes nothing stored", () =>
        Effect.gen(function*() {
          const secrets = yield* Secrets
          const o = org()
          const created = yield* secrets.create(o, params("copied", { hosts: ["one.example.com"] }))
          const snapshot = structuredClone(created)
          const tamper = (secret: { readonly hosts: ReadonlyArray<string>; readonly createdAt: Date; readonly updatedAt: Date }) => {
            ;(secret.hosts as Array<string>).push("evil.example.com")
            secret.createdAt.setTime(0)
            secret.updatedAt.setTime(0)
          }
          tamper(created)
          tamper(yield* secrets.get(o, created.id))
          tamper(yield* secrets.getByName(o, "copied"))
          for (const listed of yield* secrets.list(o)) tamper(listed)
          for (const listed of (yield* secrets.listPage(o)).items) tamper(listed)
          for (const resolved of yield* secrets.resolve(o, [created.placeholder])) (resolved.hosts as Array<string>).push("evil.example.com")
          expect(yield* secrets.get(o, created.id)).toEqual(snapshot)
          expect(yield* secrets.list(o)).toEqual([snapshot])
          const [resolved] = yield* secrets.resolve(o, [created.placeholder])
          expect(resolved!.hosts).toEqual(["one.example.com"])
        }))

      it.effect("pagination walks every secret once, in order, for every sort", () =>
        Effect.gen(function*() {
          const secrets = yield* Secrets
          const o = org()
          const created: Array<Secret> = []
          for (let i = 0; i < 25; i++) {
            created.push(yield* secrets.create(o, params(`item-${String((i * 7) % 25).padStart(2, "0")}`)))
          }
          for (const sort of ["name", "createdAt", "updatedAt"] as const) {
            for (const order of ["asc", "desc"] as const) {
              const seen: Array<Secret> = []
              let cursor: string | undefined
              let pages = 0
              do {
                const page = yield* secrets.listPage(o, { limit: 7, sort, order, ...(cursor ? { cursor } : {}) })
                expect(page.total).toBe(25)
                seen.push(...page.items)
                cursor = page.nextCursor ?? undefined
                pages++
              } while (cursor !== undefined && pages < 10)
              expect(pages).toBe(4)
              expect(new Set(seen.map((s) => s.id)).size).toBe(25)
              const keys = seen.map((s) => sort === "name" ? s.name : s[sort].getTime())
              const sorted = [...keys].sort((x, y) => (x < y ? -1 : x > y ? 1 : 0))
              expect(keys).toEqual(order === "asc" ? sorted : sorted.reverse())
            }
          }
          const defaults = yield* secrets.listPage(o)
          expect(defaults.items.length).toBe(25)
          expect(defaults.nextCursor).toBeNull()
          const times = defaults.items.map((s) => s.createdAt.getTime())
          expect(times).toEqual([...times].sort((x, y) => y - x))
        }))

      it.effect("pagination filters by case-insensitive name substring", () =>
        Effect.gen(function*() {
          const secrets = yield* Secrets
          const o = org()
          for (const n of ["GitHub-prod", "github-dev", "gitlab", "other"]) yield* secrets.create(o, params(n))
          const page = yield* secrets.listPage(o, { name: "GITHUB", sort: "name", order: "asc" })
          expect(page.items.map((s) => s.name)).toEqual(["GitHub-prod", "github-dev"])
          expect(page.total).toBe(2)
          expect((yield* secrets.listPage(o, { name: "nothing" })).items).toEqual([])
        }))

      it.effect("pagination rejects bad queries", () =>
        Effect.gen(function*() {
          const secrets = yield* Secrets
          const o = org()
          yield* secrets.create(o, params("a"))
          yield* secrets.create(o, params("b"))
          for (const limit of [0, 201, 1.5, -1]) {
            const error = yield* flip(secrets.listPage(o, { limit }))
            expect(error._tag).toBe("InvalidSecretInput")
            if (error._tag === "InvalidSecretInput") expect(error.field).toBe("limit")
          }
          const badSort = yield* flip(secrets.listPage(o, { sort: "value" } as never))
          if (badSort._tag === "InvalidSecretInput") expect(badSort.field).toBe("sort")
          else expect.fail("expected InvalidSecretInput")
          const badCursor = yield* flip(secrets.listPage(o, { cursor: "not-a-cursor" }))
          if (badCursor._tag === "InvalidSecretInput") expect(badCursor.field).toBe("cursor")
          else expect.fail("expected InvalidSecretInput")
          const first = yield* secrets.listPage(o, { limit: 1, sort: "name" })
          const mismatch = yield* flip(secrets.listPage(o, { limit: 1, sort: "createdAt", cursor: first.nextCursor! }))
          expect(mismatch._tag).toBe("InvalidSecretInput")
        }))

      it.effect("200 concurrent creates of one name: exactly one succeeds", () =>
        Effect.gen(function*() {
          const secrets = yield* Secrets
          const o = org()
          const results = yield* Effect.all(
            Array.from({ length: 200 }, (_, i) => Effect.either(secrets.create(o, params("contended", { value: value(`v${i}`) })))),
            { concurrency: "unbounded" }
          )
          const wins = results.filter(Either.isRight)
          const losses = results.filter(Either.isLeft)
          expect(wins.length).toBe(1)
          expect(losses.every((r) => r.left._tag === "SecretNameTaken")).toBe(true)
          const all = yield* secrets.list(o)
          expect(all.length).toBe(1)
          expect(all[0]!.id).toBe(wins[0]!.right.id)
        }))

      it.effect("mount: env of placeholders, every missing name reported at once", () =>
        Effect.gen(function*() {
          const secrets = yield* Secrets
          const o = org()
          const gh = yield* secrets.create(o, params("github", { hosts: ["api.github.com"] }))
          const mount = yield* SandboxMount.make(o, { GITHUB_TOKEN: "github", ALSO_GH: "github" })
          expect(mount.env).toEqual({ GITHUB_TOKEN: gh.placeholder, ALSO_GH: gh.placeholder })
          expect(mount.secrets.map((s) => s.name)).toEqual(["github", "github"])
          expect(mount.secrets[0]!.hosts).toEqual(["api.github.com"])
          const missing = yield* flip(SandboxMount.make(o, { A: "github", B: "nope", C: "nada" }))
          expect(missing._tag).toBe("SecretNotFound")
          expect(missing.message).toBe(`secrets "nope", "nada" not found`)
          const dup = yield* flip(SandboxMount.make(o, [["A", "github"], ["A", "github"]]))
          expect(dup.message).toMatch(/more than once/)
          const badVar = yield* flip(SandboxMount.make(o, { "1BAD": "github" }))
          expect(badVar._tag).toBe("InvalidSecretInput")
          const badName = yield* flip(SandboxMount.make(o, { A: "github", B: "not a name" }))
          expect(badName.message).toBe(`mount["B"] "not a name" is not a valid secret name`)
          const tooMany = Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`V${i}`, "github"]))
          expect((yield* flip(SandboxMount.make(o, tooMany))).message).toMatch(/at most 64/)
          const other = yield* flip(SandboxMount.make(org(), { GITHUB_TOKEN: "github" }))
          expect(other._tag).toBe("SecretNotFound")
        }))
    })

    layer(makeLayer({ quota: 5 }), { timeout: 60_000 })((it) => {
      it.effect("quota: the organization's limit holds, and frees up on delete", () =>
        Effect.gen(function*() {
          const secrets = yield* Secrets
          const o = org()
          const made: Array<Secret> = []
          for (let i = 0; i < 5; i++) made.push(yield* secrets.create(o, params(`q${i}`)))
          const error = yield* flip(secrets.create(o, params("q5")))
          expect(error._tag).toBe("QuotaExceeded")
          expect(error.message).toMatch(/quota of 5/)
          yield* secrets.create(org(), params("elsewhere"))
          yield* secrets.delete(o, made[0]!.id)
          yield* secrets.create(o, params("q5"))
          expect((yield* secrets.list(o)).length).toBe(5)
        }))
    })
  })
}
