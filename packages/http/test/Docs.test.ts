/**
 * `docs/http-api.md` against the `HttpApi` definition: every error code, status and field its error
 * table documents is what the wire schemas say (and every wire error is documented), and every
 * route of its route table answers the statuses it lists. The OpenAPI document's version is the
 * package's.
 */
import { HttpApiSchema } from "@effect/platform"
import { SecretApi } from "@secretgate/http"
import { Schema } from "effect"
import type * as AST from "effect/SchemaAST"
import { readFileSync } from "node:fs"
import { describe, expect, it } from "vitest"

const doc = readFileSync(new URL("../../../docs/http-api.md", import.meta.url), "utf8")
const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version: string }

/** The rows of the markdown table whose header row starts with `header`. */
const table = (header: string): Array<Array<string>> => {
  const lines = doc.split("\n")
  const start = lines.findIndex((line) => line.startsWith(`| ${header} |`))
  expect(start, `a table headed "${header}" in docs/http-api.md`).toBeGreaterThanOrEqual(0)
  const rows: Array<Array<string>> = []
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith("|")) break
    rows.push(line.split("|").slice(1, -1).map((cell) => cell.trim()))
  }
  return rows
}

const codesIn = (cell: string) => [...cell.matchAll(/`([A-Za-z]+)`/g)].map((match) => match[1]!)
const statusesIn = (cell: string) => [...cell.matchAll(/\b([1-5]\d\d)\b/g)].map((match) => Number(match[1]))

const COMMON = ["statusCode", "message", "error", "code"]

/** The wire body's own fields (besides the common four) of an error schema. */
const extraFields = (schema: Schema.Schema.Any): Array<string> => {
  const encoded = Schema.encodedSchema(schema).ast as AST.TypeLiteral
  return encoded.propertySignatures.map((property) => String(property.name)).filter((name) => !COMMON.includes(name))
}

describe("docs/http-api.md is checked against SecretApi", () => {
  it("the error table: each code's status and extra fields are the wire schema's, and every wire error is there", () => {
    const documented = new Set<string>()
    for (const [status, codeCell, fieldCell] of table("status")) {
      const codes = codesIn(codeCell!)
      expect(codes.length, `a code in the row ${codeCell}`).toBeGreaterThan(0)
      const fields = new Set<string>()
      for (const code of codes) {
        const schema = (SecretApi.Errors as Record<string, Schema.Schema.Any>)[code]
        expect(schema, `docs/http-api.md documents ${code}, which SecretApi.Errors does not have`).toBeDefined()
        expect({ code, status: HttpApiSchema.getStatusErrorAST(schema!.ast) }).toEqual({ code, status: Number(status) })
        for (const field of extraFields(schema!)) fields.add(field)
        documented.add(code)
      }
      expect({ codes, fields: codesIn(fieldCell!).sort() }).toEqual({ codes, fields: [...fields].sort() })
    }
    expect([...documented].sort()).toEqual(Object.keys(SecretApi.Errors).sort())
  })

  it("the route table: each route exists and answers the statuses listed, plus 401/403 when authenticated and 500/503", () => {
    const spec = SecretApi.openApi()
    const rows = table("route")
    const seen = new Set<string>()
    for (const [routeCell, , successCell, errorsCell] of rows) {
      const [, method, path] = /^`(\w+) ([^?`]+)/.exec(routeCell!)!
      if (path === "/openapi.json") continue
      const operation = (spec.paths as Record<string, Record<string, { responses: Record<string, unknown>; security?: unknown }>>)[path!]?.[
        method!.toLowerCase()
      ]
      expect(operation, `${method} ${path} in the OpenAPI document`).toBeDefined()
      seen.add(`${method} ${path}`)
      const authenticated = ((operation!.security as Array<unknown> | undefined) ?? []).length > 0
      const listed = new Set([...statusesIn(successCell!), ...statusesIn(errorsCell!), 500, 503, ...(authenticated ? [401, 403] : [])])
      expect({ route: `${method} ${path}`, statuses: [...listed].sort() }).toEqual({
        route: `${method} ${path}`,
        statuses: Object.keys(operation!.responses).map(Number).sort()
      })
    }
    const all = Object.entries(spec.paths).flatMap(([path, item]) => Object.keys(item).map((method) => `${method.toUpperCase()} ${path}`))
    expect([...seen].sort()).toEqual(all.sort())
  })

  it("a 409 carries secretName, as the server sends it", () => {
    expect(extraFields(SecretApi.Errors.SecretNameTaken)).toEqual(["secretName"])
    expect(doc).not.toMatch(/SecretNameTaken` \| `name`/)
  })

  it("the OpenAPI document's version is the package's", () => {
    expect(SecretApi.VERSION).toBe(pkg.version)
    expect(SecretApi.openApi().info.version).toBe(pkg.version)
  })
})
