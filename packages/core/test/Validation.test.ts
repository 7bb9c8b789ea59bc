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
