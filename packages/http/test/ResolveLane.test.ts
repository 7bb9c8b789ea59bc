/**
 * The fast lane of `POST /secret/resolve`: the same requests, sent once with a declared length
 * (which the lane takes) and once chunked (which it leaves to the full application), answer with
 * byte-identical statuses, headers and bodies (`Date` aside), successes and every failure: bad
 * keys, bad bodies, bad payloads, backend failures and defects. A success through the lane opens
 * no server span (the full application opens one per request), so the lane is really taken.
 */
import { HttpServer } from "@effect/platform"
import { Secrets, StoreUnavailable } from "@secretgate/core"
import { ApiKeys, SecretServer } from "@secretgate/http"
import { MemorySecretStore } from "@secretgate/memory"
import { Effect, Layer, ManagedRuntime, Redacted, Tracer } from "effect"
import * as Net from "node:net"
import { Pool } from "undici"
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

const runtimes: Array<ManagedRuntime.ManagedRuntime<unknown, unknown>> = []
const start = async (backend: Layer.Layer<Secrets.Secrets>, basePath = "/", maxBodyBytes?: number) => {
  const runtime = ManagedRuntime.make(
    SecretServer.layer({ basePath, ...(maxBodyBytes === undefined ? {} : { maxBodyBytes }) }).pipe(
      Layer.provide(backend),
      Layer.provide(ApiKeys.layer(registry)),
      Layer.provide(Layer.setTracer(recording))
    )
  )
  runtimes.push(runtime as ManagedRuntime.ManagedRuntime<unknown, unknown>)
  const address = (await runtime.runPromise(Effect.map(HttpServer.HttpServer, (server) => server.address))) as HttpServer.TcpAddress
  return address.port
}

/** One request on a fresh connection; the raw bytes of the answer, `Date` removed. */
const raw = (port: number, bytes: Buffer): Promise<string> =>
  new Promise((resolve, reject) => {
    const socket = Net.connect(port, "127.0.0.1")
    const chunks: Array<Buffer> = []
    socket.on("data", (chunk) => chunks.push(chunk))
    socket.on("end", () => resolve(Buffer.concat(chunks).toString("utf8").replace(/\r\nDate: [^\r]*/i, "")))
    socket.on("error", reject)
    socket.write(bytes)
  })

const head = (path: string, headers: string) => `POST ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n${headers}`

/** The request with a declared length (the lane's), and chunked (the full application's). */
const both = async (port: number, body: Buffer | string, headers: string, path = "/secret/resolve") => {
  const bytes = typeof body === "string" ? Buffer.from(body) : body
  spans.length = 0
  const lane = await raw(port, Buffer.concat([Buffer.from(`${head(path, headers)}Content-Length: ${bytes.length}\r\n\r\n`), bytes]))
  const laneSpans = spans.length
  const full = await raw(
    port,
    Buffer.concat([
      Buffer.from(`${head(path, headers)}Transfer-Encoding: chunked\r\n\r\n`),
      ...(bytes.length > 0 ? [Buffer.from(`${bytes.length.toString(16)}\r\n`), bytes, Buffer.from("\r\n")] : []),
      Buffer.from("0\r\n\r\n")
    ])
  )
  return { lane, full, laneSpans }
}

const auth = (key: string) => `Authorization: Bearer ${key}\r\n`

let port: number
let placeholder: string

beforeAll(async () => {
  port = await start(MemorySecretStore.layer())
  const body = JSON.stringify({ name: "lane", value: "v-lane-secret", hosts: ["api.example.com"] })
  const answer = await raw(
    port,
    Buffer.from(`${head("/secret", auth(manage))}Content-Type: application/json\r\nContent-Length: ${body.length}\r\n\r\n${body}`)
  )
  placeholder = (JSON.parse(answer.slice(answer.indexOf("\r\n\r\n") + 4)) as { placeholder: string }).placeholder
})

afterAll(async () => {
  for (const runtime of runtimes) await runtime.dispose()
})

describe("POST /secret/resolve fast lane", () => {
  it("answers a resolve with the bytes of the full application, and opens no server span", async () => {
    const payload = JSON.stringify({ placeholders: [placeholder, "sg_secret_unknownunknownunknownunknown23"] })
    const { full, lane, laneSpans } = await both(port, payload, `${auth(resolveKey)}Content-Type: application/json\r\n`)
    expect(lane).toMatch(/^HTTP\/1\.1 200 OK\r\n/)
    expect(lane).toContain(`"value":"v-lane-secret"`)
    expect(lane).toBe(full)
    expect(laneSpans).toBe(0)
    expect(spans.length).toBeGreaterThan(0)
    // empty, and with the organization header
    const empty = await both(port, `{"placeholders":[]}`, `${auth(resolveKey)}X-Daytona-Organization-ID: ${ORG}\r\n`)
    expect(empty.lane).toMatch(/^HTTP\/1\.1 200 OK\r\n[^]*\{"secrets":\[\]\}$/)
    expect(empty.lane).toBe(empty.full)
    expect(empty.laneSpans).toBe(0)
  })

  it("answers every failure as the full application does: keys, bodies, payloads", async () => {
    const good = JSON.stringify({ placeholders: [placeholder] })
    const cases: Array<[string, Buffer | string, string, RegExp]> = [
      ["no key", good, "", /^HTTP\/1\.1 401 [^]*"code":"Unauthorized"/],
      ["unknown key", good, auth("sgk_not-a-known-key-at-all"), /^HTTP\/1\.1 401 /],
      ["malformed Authorization", good, "Authorization: Basic abc\r\n", /^HTTP\/1\.1 401 /],
      ["management key", good, auth(manage), /^HTTP\/1\.1 403 [^]*"code":"Forbidden"/],
      ["another organization", good, `${auth(resolveKey)}X-Daytona-Organization-ID: other\r\n`, /^HTTP\/1\.1 403 /],
      ["malformed JSON", `{"placeholders":[`, auth(resolveKey), /^HTTP\/1\.1 400 [^]*"code":"InvalidSecretInput"/],
      ["invalid UTF-8", Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]), auth(resolveKey), /^HTTP\/1\.1 400 [^]*UTF-8/],
      ["empty body", "", auth(resolveKey), /^HTTP\/1\.1 400 /],
      ["blank body", "  \n", auth(resolveKey), /^HTTP\/1\.1 400 /],
      ["not an object", "[]", auth(resolveKey), /^HTTP\/1\.1 400 /],
      ["null", "null", auth(resolveKey), /^HTTP\/1\.1 400 /],
      ["placeholders not an array", `{"placeholders":"x"}`, auth(resolveKey), /^HTTP\/1\.1 400 [^]*must be an array of strings/],
      ["an unknown field", `{"placeholders":[],"placeholder":"x"}`, auth(resolveKey), /^HTTP\/1\.1 400 [^]*is not a field of this request/],
      ["a placeholder not a string", `{"placeholders":[1]}`, auth(resolveKey), /^HTTP\/1\.1 400 [^]*must be a string/],
      [
        "too many placeholders",
        JSON.stringify({ placeholders: Array.from({ length: 1001 }, (_, i) => `p${i}`) }),
        auth(resolveKey),
        /^HTTP\/1\.1 400 [^]*at most 1000/
      ]
    ]
    for (const [name, body, headers, expected] of cases) {
      const { full, lane } = await both(port, body, headers)
      expect(lane, name).toMatch(expected)
      expect(lane, name).toBe(full)
      expect(lane, name).not.toContain("v-lane-secret")
    }
  })

  it("answers backend failures and defects as the full application does", async () => {
    const broken = (failure: Effect.Effect<never>) =>
      Layer.effect(Secrets.Secrets, Effect.map(Secrets.Secrets, (inner) => ({ ...inner, resolve: () => failure }))).pipe(
        Layer.provide(MemorySecretStore.layer())
      )
    const unavailable = await start(broken(Effect.fail(new StoreUnavailable({ message: "disk is gone" })) as never))
    const dying = await start(broken(Effect.die(new Error("boom at /secret/path.ts:12"))))
    const good = JSON.stringify({ placeholders: ["sg_secret_unknownunknownunknownunknown23"] })
    const a = await both(unavailable, good, auth(resolveKey))
    expect(a.lane).toMatch(/^HTTP\/1\.1 503 [^]*disk is gone/)
    expect(a.lane).toBe(a.full)
    const b = await both(dying, good, auth(resolveKey))
    expect(b.lane).toMatch(/^HTTP\/1\.1 500 [^]*"internal server error"/)
    expect(b.lane).not.toContain("boom")
    expect(b.lane).toBe(b.full)
  })

  it("a connection kept alive serves the next request after a failure handed over", async () => {
    const pool = new Pool(`http://127.0.0.1:${port}`, { connections: 1 })
    try {
      const send = async (body: string) => {
        const answer = await pool.request({
          method: "POST",
          path: "/secret/resolve",
          headers: { authorization: `Bearer ${resolveKey}`, "content-type": "application/json" },
          body
        })
        return { status: answer.statusCode, body: await answer.body.text() }
      }
      for (let i = 0; i < 3; i++) {
        expect((await send(`{"placeholders":[`)).status).toBe(400)
        const ok = await send(JSON.stringify({ placeholders: [placeholder] }))
        expect(ok.status).toBe(200)
        expect(ok.body).toContain("v-lane-secret")
      }
    } finally {
      await pool.close()
    }
  })

  it("leaves what it does not take whole to the full application: base path, query, oversized bodies", async () => {
    const good = JSON.stringify({ placeholders: [placeholder] })
    const api = await start(MemorySecretStore.layer(), "/api", 64)
    // the lane follows the base path
    const based = await both(api, `{"placeholders":[]}`, auth(resolveKey), "/api/secret/resolve")
    expect(based.lane).toMatch(/^HTTP\/1\.1 200 /)
    expect(based.lane).toBe(based.full)
    expect(based.laneSpans).toBe(0)
    // over the limit: 413 either way, the connection closed
    const large = await both(api, JSON.stringify({ placeholders: ["x".repeat(100)] }), auth(resolveKey), "/api/secret/resolve")
    expect(large.lane).toMatch(/^HTTP\/1\.1 413 [^]*Connection: close/i)
    // a query: the full application's
    const query = await both(port, good, auth(resolveKey), "/secret/resolve?x=1")
    expect(query.laneSpans).toBeGreaterThan(0)
    expect(query.lane).toBe(query.full)
  })
})
