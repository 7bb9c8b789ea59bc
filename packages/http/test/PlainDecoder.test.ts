import { Secret } from "@secretgate/core"
import { Arbitrary, Either, FastCheck as fc, Schema } from "effect"
import { describe, expect, it } from "vitest"
import * as PlainDecoder from "../src/internal/plainDecoder.js"
import { SecretApi } from "../src/SecretApi.js"

// The plain decoder must answer exactly what the schema's decode answers, or leave the input to it.
const agrees = (schema: Schema.Schema<any, any>, input: unknown) => {
  const plain = PlainDecoder.compile(schema.ast)!
  const decoded = plain(input)
  const expected = Schema.decodeUnknownEither(schema)(input)
  // left to the schema (which decodes it, or fails with its own error)
  if (decoded === PlainDecoder.MISMATCH) return true
  expect(Either.isRight(expected)).toBe(true)
  expect(decoded).toStrictEqual(Either.getOrThrow(expected))
  return true
}

// Answers of the API as a server encodes them, and the same answers broken in every field.
const encodedOf = (schema: Schema.Schema<any, any>) => Arbitrary.make(schema).map((value) => Schema.encodeSync(schema)(value))
const broken = (schema: Schema.Schema<any, any>) =>
  fc.tuple(encodedOf(schema), fc.anything(), fc.nat()).map(([encoded, junk, pick]) => {
    const copy = structuredClone(encoded) as Record<string, unknown>
    const keys = Object.keys(copy)
    if (keys.length > 0) copy[keys[pick % keys.length]!] = junk
    return copy
  })

const schemas = {
  Secret: Secret.Secret,
  "Array(Secret)": Schema.Array(Secret.Secret),
  SecretPage: Secret.SecretPage
} as const

describe("PlainDecoder", () => {
  for (const [name, schema] of Object.entries(schemas)) {
    it(`compiles ${name} and decodes it as the schema does`, () => {
      expect(PlainDecoder.compile(schema.ast)).toBeDefined()
      fc.assert(fc.property(encodedOf(schema), (input) => {
        // a valid answer is decoded by the plain decoder itself
        expect(PlainDecoder.compile(schema.ast)!(input)).not.toBe(PlainDecoder.MISMATCH)
        return agrees(schema, input)
      }), { numRuns: 300 })
      fc.assert(fc.property(broken(schema), (input) => agrees(schema, input)), { numRuns: 500 })
      fc.assert(fc.property(fc.anything(), (input) => agrees(schema, input)), { numRuns: 300 })
    })
  }

  it("keeps out excess properties and leaves absent optional ones absent, as the schema does", () => {
    const input = {
      id: "x",
      name: "n",
      placeholder: "p",
      hosts: [],
      createdAt: "2026-01-01T00:00:00.000Z",
      updatedAt: "2026-01-01T00:00:00.000Z",
      extra: 1
    }
    agrees(Secret.Secret, input)
    expect(Object.keys(PlainDecoder.compile(Secret.Secret.ast)!(input) as object)).not.toContain("description")
    expect(PlainDecoder.compile(Secret.Secret.ast)!({ ...input, createdAt: "not a date" })).toBe(PlainDecoder.MISMATCH)
  })

  it("leaves schemas with transformations or refinements to the schema", () => {
    expect(PlainDecoder.compile(Secret.SecretName.ast)).toBeUndefined()
    expect(PlainDecoder.compile(Schema.Struct({ value: Schema.Redacted(Schema.String) }).ast)).toBeUndefined()
    expect(PlainDecoder.compile(SecretApi.groups.egress.endpoints.resolve.successSchema.ast)).toBeUndefined()
  })
})
