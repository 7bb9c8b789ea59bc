/**
 * Input shapes that must fail as typed errors, not crash: absurd nesting, wrong literals.
 */
import { InvalidSecretInput, Secret } from "@secretgate/core"
import { Effect, Either } from "effect"
import { describe, expect, it } from "vitest"

const decode = <A, I>(schema: Parameters<typeof Secret.decodeInput<A, I>>[0], input: unknown, what?: string) =>
  Effect.runSync(Effect.either(Secret.decodeInput(schema, what)(input)))

describe("decodeInput", () => {
  it("refuses deeply nested input with a typed error instead of overflowing the stack", () => {
    let deep: unknown = "x"
    for (let i = 0; i < 100_000; i++) deep = [deep]
    const result = decode(Secret.CreateSecretBody, { name: "a", value: "v", hosts: deep })
    expect(Either.isLeft(result)).toBe(true)
    const error = (result as Either.Left<InvalidSecretInput, unknown>).left
    expect(error).toBeInstanceOf(InvalidSecretInput)
    expect(error.message).toMatch(/nested more than 16 levels deep/)
  })

  it("accepts the nesting real input has", () => {
    const result = decode(Secret.CreateSecretBody, { name: "a", value: "v", hosts: ["a.example.com"], description: "d" })
    expect(Either.isRight(result)).toBe(true)
  })

  it("says which sort fields and orders exist, without echoing the bad one as the only choice", () => {
    const sort = decode(Secret.ListQuery, { sort: "bogus" }, "query")
    expect(Either.isLeft(sort) && sort.left.message).toBe(`sort: must be one of "name", "createdAt", "updatedAt"`)
    const order = decode(Secret.ListQuery, { order: "up" }, "query")
    expect(Either.isLeft(order) && order.left.message).toBe(`order: must be "asc" or "desc"`)
  })
})

describe("well-formed Unicode", () => {
  const lone = ["\ud800", "\udfff", "a\ud83dz", "\ude00a"] // high or low half without its other half
  const reason = "must be well-formed Unicode text (it holds a lone UTF-16 surrogate)"

  const failureOf = <A, I>(schema: Parameters<typeof Secret.decodeInput<A, I>>[0], input: unknown) => {
    const result = decode(schema, input)
    if (Either.isRight(result)) throw new Error("expected a failure")
    return result.left
  }

  it("a name, value, description or host with a lone surrogate is InvalidSecretInput naming the field", () => {
    for (const bad of lone) {
      const cases = [
        [{ name: `a${bad}`, value: "v" }, "name"],
        [{ name: "a", value: `v${bad}` }, "value"],
        [{ name: "a", value: "v", description: `d${bad}` }, "description"],
        [{ name: "a", value: "v", hosts: ["ok.example.com", `h${bad}.example.com`] }, "hosts[1]"]
      ] as const
      for (const [input, field] of cases) {
        const error = failureOf(Secret.CreateSecretBody, input)
        expect(error).toBeInstanceOf(InvalidSecretInput)
        expect(error.field).toBe(field)
        expect(error.message).toBe(`${field}: ${reason}`)
      }
      // an update, a lookup by name and a list filter are checked the same way
      expect(failureOf(Secret.UpdateSecretBody, { value: bad }).message).toBe(`value: ${reason}`)
      expect(failureOf(Secret.UpdateSecretBody, { description: bad }).message).toBe(`description: ${reason}`)
      expect(failureOf(Secret.ListQuery, { name: bad }).message).toBe(`name: ${reason}`)
    }
  })

  it("the value's message never holds the value", () => {
    const error = failureOf(Secret.CreateSecretBody, { name: "a", value: "sk-live-\ud800-secret" })
    expect(error.message).not.toContain("sk-live")
  })

  it("well-formed text outside the BMP (surrogate pairs) is accepted unchanged", () => {
    const result = decode(Secret.CreateSecretBody, { name: "a", value: "v\ud83d\ude00", description: "emoji \ud83d\ude00" })
    expect(Either.isRight(result)).toBe(true)
    if (Either.isRight(result)) expect(result.right.description).toBe("emoji \u{1F600}")
  })
})
