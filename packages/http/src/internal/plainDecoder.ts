/**
 * A decoder compiled from a schema's AST for the plain JSON answers of the API (structs of
 * strings, numbers, booleans, `null`, arrays and `Schema.Date`), which does what
 * `Schema.decodeUnknownEither` does for such a schema without its general machinery. It is derived
 * from the schema (never written by hand), covers only those AST nodes, and answers `undefined`
 * for a schema it does not cover; the decoder it gives answers `MISMATCH` for any input that is not
 * plainly valid, so that the caller decodes that input with the schema itself (and gets its error).
 */
import { Schema, SchemaAST } from "effect"

/** What a plain decoder answers for an input it leaves to the schema. */
export const MISMATCH: unique symbol = Symbol("MISMATCH")

export type PlainDecoder = (input: unknown) => unknown

const DATE = Schema.Date.ast

const hasOwn = Object.prototype.hasOwnProperty

/** A plain decoder for `ast`, or undefined if `ast` has a node it does not cover. */
export const compile = (ast: SchemaAST.AST): PlainDecoder | undefined => {
  if (ast === DATE) {
    return (input) => {
      if (typeof input !== "string") return MISMATCH
      const date = new Date(input)
      return Number.isNaN(date.getTime()) ? MISMATCH : date
    }
  }
  switch (ast._tag) {
    case "StringKeyword":
      return (input) => typeof input === "string" ? input : MISMATCH
    case "NumberKeyword":
      return (input) => typeof input === "number" ? input : MISMATCH
    case "BooleanKeyword":
      return (input) => typeof input === "boolean" ? input : MISMATCH
    case "UndefinedKeyword":
      return (input) => input === undefined ? input : MISMATCH
    case "Literal": {
      const literal = ast.literal
      return (input) => input === literal ? input : MISMATCH
    }
    case "Union": {
      const members: Array<PlainDecoder> = []
      for (const member of ast.types) {
        // only members that are not transformed: the first that accepts an input gives it back as is
        if (member._tag !== "StringKeyword" && member._tag !== "NumberKeyword" && member._tag !== "BooleanKeyword" &&
          member._tag !== "UndefinedKeyword" && member._tag !== "Literal") return undefined
        members.push(compile(member)!)
      }
      return (input) => {
        for (const member of members) if (member(input) !== MISMATCH) return input
        return MISMATCH
      }
    }
    case "TupleType": {
      if (ast.elements.length !== 0 || ast.rest.length !== 1) return undefined
      const item = compile(ast.rest[0]!.type)
      if (item === undefined) return undefined
      return (input) => {
        if (!Array.isArray(input)) return MISMATCH
        const output = new Array(input.length)
        for (let i = 0; i < input.length; i++) {
          const decoded = item(input[i])
          if (decoded === MISMATCH) return MISMATCH
          output[i] = decoded
        }
        return output
      }
    }
    case "TypeLiteral": {
      if (ast.indexSignatures.length !== 0) return undefined
      const fields: Array<{ readonly name: string; readonly optional: boolean; readonly decode: PlainDecoder }> = []
      for (const property of ast.propertySignatures) {
        if (typeof property.name !== "string") return undefined
        const decode = compile(property.type)
        if (decode === undefined) return undefined
        fields.push({ name: property.name, optional: property.isOptional, decode })
      }
      return (input) => {
        if (typeof input !== "object" || input === null || Array.isArray(input)) return MISMATCH
        // only the declared properties, in their order (excess ones are left out, as the schema does)
        const output: Record<string, unknown> = {}
        for (const field of fields) {
          if (!hasOwn.call(input, field.name)) {
            if (field.optional) continue
            return MISMATCH
          }
          const decoded = field.decode((input as Record<string, unknown>)[field.name])
          if (decoded === MISMATCH) return MISMATCH
          output[field.name] = decoded
        }
        return output
      }
    }
    default:
      return undefined
  }
}
