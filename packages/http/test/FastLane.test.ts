/**
 * The fast lane of `GET /secret/{id}`: it answers with exactly the bytes of the full application
 * (compared on raw sockets, `Date` aside), it is really taken (the full application opens a server
 * span per request, the lane none), and everything it does not answer (other routes, failures,
 * paths it does not recognise exactly) is answered by the full application as before.
 */
import { HttpServer } from "@effect/platform"
import { ApiKeys, SecretServer } from "@secretgate/http"
import { MemorySecretStore } from "@secretgate/memory"
import { Effect, Layer, ManagedRuntime, Redacted, Tracer } from "effect"
import * as Net from "node:net"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const ORG = "acme"
const registry = ApiKeys.makeRegistry()
const manage = Redacted.value(registry.issue({ organizationId: ORG, scopes: ["secrets:manage"] }).key)
const resolveKey = Redacted.value(registry.issue({ organizationId: ORG, scopes: ["secrets:resolve"] }).key)

// every span the server opens, by name
const spans: Array<string> = []
const native = Effect.runSync(Effect.tracer)
const recording = Tracer.make({
  span: (name, ...rest) => {
    spans.push(name)
    return native.span(name, ...rest)
  },
  context: native.context
})

const servers: Array<{ port: number; dispose: () => Promise<void> }> = []
const start = async (basePath: string) => {
  const runtime = ManagedRuntime.make(
    SecretServer.layer({ basePath }).pipe(
      Layer.provide(MemorySecretStore.layer()),
      Layer.provide(ApiKeys.layer(registry)),
      Layer.provide(Layer.setTracer(recording))
    )
  )
  const address = (await runtime.runPromise(Effect.map(HttpServer.HttpServer, (server) => server.address))) as HttpServer.TcpAddress
  const server = { port: address.port, dispose: () => runtime.dispose() }
  servers.push(server)
  return server
}

let root: { port: number }
let api: { port: number }
let id: string
let apiId: string

/** One request on a fresh connection; the raw bytes of the answer. */
const raw = (port: number, head: string, body = ""): Promise<string> =>
  new Promise((resolve, reject) => {
    const socket = Net.connect(port, "127.0.0.1")
    const chunks: Array<Buffer> = []
    socket.on("data", (chunk) => chunks.push(chunk))
    socket.on("end", () => resolve(Buffer.concat(chunks).toString("utf8")))
    socket.on("error", reject)
    socket.write(`${head}\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n${body}`)
  })

const get = (port: number, path: string, key = manage, extra = "") =>
  raw(port, `GET ${path} HTTP/1.1\r\nAuthorization: Bearer ${key}${extra}`)

const create = async (port: number, base: string): Promise<string> => {
  const body = JSON.stringify({ name: "lane", value: "v-lane-1", hosts: ["api.example.com"], description: "d" })
  const answer = await raw(
    port,
    `POST ${base}/secret HTTP/1.1\r\nAuthorization: Bearer ${manage}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}`,
    body
  )
  expect(answer).toMatch(/^HTTP\/1\.1 201 /)
  return (JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4)) as { id: string }).id
}

const withoutDate = (answer: string) => answer.replace(/\r\nDate: [^\r]*/i, "")

/** The spans opened while `run` ran. */
const spansOf = async (run: () => Promise<unknown>) => {
  spans.length = 0
  await run()
  return [...spans]
}

beforeAll(async () => {
  root = await start("/")
  api = await start("/api")
  id = await create(root.port, "")
  apiId = await create(api.port, "/api")
})

afterAll(async () => {
  for (const server of servers) await server.dispose()
})

describe("GET /secret/{id} fast lane", () => {
  it("answers with the same bytes as the full application, and opens no server span", async () => {
    let fast = ""
    let full = ""
    expect(await spansOf(async () => (fast = await get(root.port, `/secret/${id}`)))).toEqual([])
    // a query string (ignored by the route) takes the full application
    expect((await spansOf(async () => (full = await get(root.port, `/secret/${id}?`)))).length).toBeGreaterThan(0)
    expect(fast).toMatch(/^HTTP\/1\.1 200 OK\r\n/)
    expect(fast).toContain(`"id":"${id}"`)
    expect(withoutDate(fast)).toBe(withoutDate(full))
  })

  it("follows the base path", async () => {
    let fast = ""
    expect(await spansOf(async () => (fast = await get(api.port, `/api/secret/${apiId}`)))).toEqual([])
    expect(withoutDate(fast)).toBe(withoutDate(await get(api.port, `/api/secret/${apiId}?`)))
    // the same path without the base is no route of that server
    expect(await get(api.port, `/secret/${apiId}`)).toMatch(/^HTTP\/1\.1 404 [^]*"code":"RouteNotFound"/)
  })

  it("hands failures to the full application, which answers them as before", async () => {
    const cases: Array<[string, string, RegExp]> = [
      ["missing secret", await get(root.port, "/secret/0b7e2a2e-0000-4000-8000-000000000000"), /^HTTP\/1\.1 404 [^]*"code":"SecretNotFound"/],
      ["unknown key", await get(root.port, `/secret/${id}`, "sgk_not-a-known-key-at-all"), /^HTTP\/1\.1 401 [^]*"code":"Unauthorized"/],
      ["resolve key", await get(root.port, `/secret/${id}`, resolveKey), /^HTTP\/1\.1 403 [^]*"code":"Forbidden"/],
      [
        "organization header of another organization",
        await get(root.port, `/secret/${id}`, manage, "\r\nX-Daytona-Organization-ID: other"),
        /^HTTP\/1\.1 403 [^]*"code":"Forbidden"/
      ]
    ]
    for (const [name, answer, expected] of cases) expect(answer, name).toMatch(expected)
    // each was tried by the lane, then answered (with its span) by the full application
    expect(await spansOf(() => get(root.port, "/secret/0b7e2a2e-0000-4000-8000-000000000000"))).not.toEqual([])
  })

  it("leaves other routes and paths it does not recognise exactly to the full application", async () => {
    const paginated = await spansOf(async () => expect(await get(root.port, "/secret/paginated")).toMatch(/^HTTP\/1\.1 200 [^]*"items"/))
    expect(paginated).not.toEqual([])
    const encoded = await spansOf(async () => expect(await get(root.port, `/secret/${encodeURIComponent(id).replace("-", "%2D")}`)).toMatch(/^HTTP\/1\.1 200 /))
    expect(encoded).not.toEqual([])
    expect(await get(root.port, "/secret/a/b")).toMatch(/^HTTP\/1\.1 404 [^]*"code":"RouteNotFound"/)
    expect(await raw(root.port, `HEAD /secret/${id} HTTP/1.1\r\nAuthorization: Bearer ${manage}`)).not.toContain(`"id"`)
  })
})
