import { SecretApi } from "@secretgate/http"
import { readFileSync } from "node:fs"
import { describe, expect, it } from "vitest"
import { render, target } from "../scripts/openapi.js"

describe("OpenAPI document", () => {
  it("docs/openapi.json is the document generated from SecretApi (regenerate: npx tsx packages/http/scripts/openapi.ts)", () => {
    expect(readFileSync(target, "utf8")).toBe(render())
  })

  it("describes the six Daytona routes, the resolve and watch routes, the probes, bearer auth and the error body", () => {
    const spec = SecretApi.openApi()
    const operations = Object.entries(spec.paths).flatMap(([path, item]) => Object.keys(item).map((method) => `${method.toUpperCase()} ${path}`))
    expect(operations.sort()).toEqual([
      "DELETE /secret/{secretId}",
      "GET /secret",
      "GET /secret/paginated",
      "GET /secret/{secretId}",
      "PATCH /secret/{secretId}",
      "POST /secret",
      "POST /secret/resolve",
      "GET /secret/watch",
      "GET /health",
      "GET /ready"
    ].sort())
    expect(spec.components.securitySchemes).toEqual({ apiKey: expect.objectContaining({ type: "http", scheme: "bearer" }) })
    const create = spec.paths["/secret"]!.post!
    expect(Object.keys(create.responses).sort()).toEqual(["201", "400", "401", "403", "409", "413", "500", "503"])
    expect(Object.keys(spec.paths["/secret/{secretId}"]!.delete!.responses).sort()).toEqual(["204", "401", "403", "404", "500", "503"])
    expect(spec.components.schemas.SecretNotFound).toMatchObject({ required: ["statusCode", "message", "error", "code"] })
    expect(JSON.stringify(spec)).not.toContain("HttpApiDecodeError")
    const query = spec.paths["/secret/paginated"]!.get!.parameters.filter((p) => p.in === "query").map((p) => p.name)
    expect(query).toEqual(["cursor", "limit", "name", "sort", "order"])
    const watch = spec.paths["/secret/watch"]!.get!
    expect(Object.keys(watch.responses[200]!.content!)).toEqual(["text/event-stream"])
    expect(Object.keys(watch.responses).sort()).toEqual(["200", "401", "403", "429", "500", "503"])
    // the probes need no key
    expect(spec.paths["/health"]!.get!.security).toEqual([])
    expect(Object.keys(spec.paths["/ready"]!.get!.responses).sort()).toEqual(["200", "500", "503"])
    expect(spec.components.schemas.ChangeEvent).toMatchObject({ required: ["revision"], properties: { revision: { type: "string" } } })
  })

  it("says that unknown body fields are refused: every request body is closed", () => {
    const spec = SecretApi.openApi()
    const bodies = Object.values(spec.paths).flatMap((item) =>
      Object.values(item).flatMap((operation: any) => operation.requestBody === undefined ? [] : [operation.requestBody.content["application/json"].schema.$ref])
    )
    expect(bodies.sort()).toEqual([
      "#/components/schemas/CreateSecret",
      "#/components/schemas/ResolveRequest",
      "#/components/schemas/UpdateSecret"
    ])
    for (const ref of bodies) {
      expect(spec.components.schemas[ref.split("/").pop()!]).toMatchObject({ additionalProperties: false })
    }
    // responses stay open: a later server may add fields
    expect(spec.components.schemas.Secret).toMatchObject({ additionalProperties: true })
    expect(spec.info.description).toMatch(/405 `MethodNotAllowed` with an `Allow` header/)
  })

  it("follows the base path", () => {
    expect(Object.keys(SecretApi.openApi("/api/v1").paths)).toContain("/api/v1/secret/{secretId}")
  })
})
