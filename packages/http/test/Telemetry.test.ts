/**
 * Traces and metrics, for real: a plain node:http OTLP/HTTP receiver on 127.0.0.1 collects what
 * the exporter POSTs while a real server answers real requests (and a real egress agent talks to a
 * real upstream). The spans and metrics arrive under their documented names, with route templates
 * and outcomes, and no attribute holds a value, a key, a placeholder or a query string.
 */
import { Secretgate } from "@secretgate/core"
import { ApiKeys, SecretServer, Telemetry } from "@secretgate/http"
import { MemorySecretStore } from "@secretgate/memory"
import { SecretgateAgent } from "@secretgate/undici"
import { HttpServer } from "@effect/platform"
import { Effect, Layer, ManagedRuntime, Redacted, Tracer } from "effect"
import { Buffer } from "node:buffer"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { Agent, request } from "undici"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startUpstream, testAgentOptions } from "../../undici/test/support/upstream.js"

const VALUE = "sk-otel-\"Zq9\\xV2\"-ünï-never-exported"
const QUERY_MARK = "cursor-q7w8e9-never-exported"

interface Received {
  readonly path: string
  readonly contentType: string | undefined
  readonly text: string
}

/** An OTLP/HTTP receiver: answers every POST 200 and keeps its body. */
const startReceiver = async () => {
  const received: Array<Received> = []
  const server = Http.createServer((req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.on("end", () => {
      received.push({ path: req.url ?? "", contentType: req.headers["content-type"], text: Buffer.concat(chunks).toString("utf8") })
      res.writeHead(200, { "content-type": "application/json" }).end("{}")
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    close: () => new Promise<void>((resolve) => server.close(() => resolve()))
  }
}

type Receiver = Awaited<ReturnType<typeof startReceiver>>

interface Attribute {
  readonly key: string
  readonly value: Record<string, unknown>
}
const attributes = (list: ReadonlyArray<Attribute> | undefined): Record<string, unknown> =>
  Object.fromEntries((list ?? []).map((attribute) => [attribute.key, Object.values(attribute.value)[0]]))

const spansOf = (receiver: Receiver) =>
  receiver.received.filter((r) => r.path === "/v1/traces").flatMap((r) =>
    JSON.parse(r.text).resourceSpans.flatMap((rs: any) =>
      rs.scopeSpans.flatMap((ss: any) => ss.spans.map((span: any) => ({ ...span, attributes: attributes(span.attributes) })))
    )
  ) as Array<{ name: string; kind: number; attributes: Record<string, unknown>; parentSpanId?: string; spanId: string; traceId: string }>

/** Every data point of every metric export, with its metric's name and flattened attributes. */
const pointsOf = (receiver: Receiver) =>
  receiver.received.filter((r) => r.path === "/v1/metrics").flatMap((r) =>
    JSON.parse(r.text).resourceMetrics.flatMap((rm: any) =>
      rm.scopeMetrics.flatMap((sm: any) =>
        sm.metrics.flatMap((metric: any) => {
          const data = metric.histogram ?? metric.sum ?? metric.gauge
          return (data?.dataPoints ?? []).map((point: any) => ({ name: metric.name as string, ...point, attributes: attributes(point.attributes) }))
        })
      )
    )
  ) as Array<{ name: string; attributes: Record<string, unknown>; count?: string | number; asInt?: string | number; asDouble?: number }>

const forms = (value: string) => [
  value,
  JSON.stringify(value).slice(1, -1),
  Buffer.from(value).toString("base64"),
  Buffer.from(value).toString("hex"),
  encodeURIComponent(value)
]

const dispatcher = new Agent({ keepAliveTimeout: 1000 })

describe("the server's traces and metrics over OTLP", () => {
  let receiver: Receiver
  let manageKey: string
  let resolveKey: string
  let placeholder: string

  beforeAll(async () => {
    receiver = await startReceiver()
    const registry = ApiKeys.makeRegistry()
    manageKey = Redacted.value(registry.issue({ organizationId: "acme", scopes: ["secrets:manage"], id: "ops" }).key)
    resolveKey = Redacted.value(registry.issue({ organizationId: "acme", scopes: ["secrets:resolve"], id: "egress" }).key)
    const server = await SecretServer.serve({
      backend: MemorySecretStore.layer(),
      keys: registry,
      otlp: { endpoint: receiver.url, exportInterval: "1 hour" }
    })
    const call = async (method: string, path: string, key: string, body?: unknown) => {
      const response = await request(`${server.url}${path}`, {
        method: method as "GET",
        headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
        body: body === undefined ? null : JSON.stringify(body),
        dispatcher
      })
      const text = await response.body.text()
      return { status: response.statusCode, json: text === "" ? undefined : JSON.parse(text) }
    }
    try {
      const created = await call("POST", "/secret", manageKey, { name: "STRIPE_KEY", value: VALUE, hosts: ["api.stripe.com"] })
      expect(created.status).toBe(201)
      placeholder = created.json.placeholder
      expect((await call("GET", `/secret/${created.json.id}`, manageKey)).status).toBe(200)
      expect((await call("GET", `/secret/paginated?limit=5&cursor=${QUERY_MARK}`, manageKey)).status).toBe(400)
      expect((await call("GET", "/secret/no-such-id", manageKey)).status).toBe(404)
      expect((await call("PATCH", `/secret/${created.json.id}`, manageKey, { value: `${VALUE}-2` })).status).toBe(200)
      const resolved = await call("POST", "/secret/resolve", resolveKey, { placeholders: [placeholder] })
      expect(resolved.status).toBe(200)
      expect((await call("DELETE", `/secret/${created.json.id}`, manageKey)).status).toBe(204)
    } finally {
      // whatever is left is exported on shutdown
      await server.close()
    }
  }, 60_000)

  afterAll(async () => {
    await receiver.close()
  })

  it("exports as OTLP/HTTP JSON to /v1/traces and /v1/metrics", () => {
    expect(receiver.received.map((r) => r.path)).toEqual(expect.arrayContaining(["/v1/traces", "/v1/metrics"]))
    for (const r of receiver.received) expect(r.contentType).toMatch(/^application\/json/)
  })

  it("one server span per request, named by method and route template, with the Secrets operation beneath it", () => {
    const spans = spansOf(receiver)
    const server = spans.filter((span) => span.attributes["http.request.method"] !== undefined)
    expect(server.map((span) => span.name).sort()).toEqual([
      "http.server DELETE /secret/{secretId}",
      "http.server GET /secret/paginated",
      "http.server GET /secret/{secretId}",
      "http.server GET /secret/{secretId}",
      "http.server PATCH /secret/{secretId}",
      "http.server POST /secret",
      "http.server POST /secret/resolve"
    ])
    const create = server.find((span) => span.name === "http.server POST /secret")!
    expect(create.attributes).toMatchObject({ "http.request.method": "POST", "http.route": "/secret", "http.response.status_code": 201 })
    expect(server.map((span) => [span.name, span.attributes["http.response.status_code"]])).toEqual(expect.arrayContaining([
      ["http.server GET /secret/{secretId}", 404],
      ["http.server GET /secret/paginated", 400],
      ["http.server DELETE /secret/{secretId}", 204]
    ]))
    const operation = spans.find((span) => span.name === "secretgate.secrets.create")!
    expect(operation.attributes).toMatchObject({ "secretgate.operation": "create", "secretgate.organization": "acme" })
    expect(operation.traceId).toBe(create.traceId)
    expect(operation.parentSpanId).toBeDefined()
    expect(spans.map((span) => span.name)).toEqual(expect.arrayContaining([
      "secretgate.secrets.get",
      "secretgate.secrets.update",
      "secretgate.secrets.resolve",
      "secretgate.secrets.delete"
    ]))
  })

  it("request durations by method, route and status; operations by outcome; resolver refreshes", () => {
    const points = pointsOf(receiver)
    const requests = points.filter((point) => point.name === "http.server.request.duration")
    expect(requests.map((point) => point.attributes)).toEqual(expect.arrayContaining([
      { "http.request.method": "POST", "http.route": "/secret", "http.response.status_code": "201" },
      { "http.request.method": "GET", "http.route": "/secret/{secretId}", "http.response.status_code": "200" },
      { "http.request.method": "GET", "http.route": "/secret/{secretId}", "http.response.status_code": "404" },
      { "http.request.method": "POST", "http.route": "/secret/resolve", "http.response.status_code": "200" },
      { "http.request.method": "DELETE", "http.route": "/secret/{secretId}", "http.response.status_code": "204" }
    ]))
    const operations = points.filter((point) => point.name === "secretgate.secrets.operation.duration")
    expect(operations.map((point) => point.attributes)).toEqual(expect.arrayContaining([
      { "secretgate.operation": "create", "secretgate.outcome": "ok" },
      { "secretgate.operation": "get", "secretgate.outcome": "not-found" },
      { "secretgate.operation": "resolve", "secretgate.outcome": "ok" }
    ]))
    const refreshes = points.filter((point) => point.name === "secretgate.resolver.refreshes")
    expect(refreshes.map((point) => point.attributes)).toEqual(expect.arrayContaining([{ "secretgate.outcome": "ok" }]))
  })

  it("no value, key, placeholder or query string in anything exported", () => {
    const everything = receiver.received.map((r) => r.text).join("\n")
    for (const form of [...forms(VALUE), ...forms(`${VALUE}-2`)]) expect(everything).not.toContain(form)
    expect(everything).not.toContain("sk-otel")
    expect(everything).not.toContain(manageKey)
    expect(everything).not.toContain(resolveKey)
    expect(everything).not.toContain(placeholder)
    expect(everything).not.toContain(QUERY_MARK)
    expect(everything).not.toContain("limit=5")
  })
})

describe("egress metrics from the agent's audit events", () => {
  it("counts substituted, withheld and blocked placeholders by surface and reason, and exports them", async () => {
    const receiver = await startReceiver()
    const upstream = await startUpstream({ secure: false })
    const gate = new Secretgate({ layer: MemorySecretStore.layer(), organizationId: "acme" })
    const seen: Array<string> = []
    try {
      await gate.secret.create({ name: "LOCAL", value: VALUE, hosts: ["api.allowed.test"] })
      await gate.secret.create({ name: "ELSEWHERE", value: `${VALUE}-2`, hosts: ["api.example.com"] })
      const mount = await gate.mount({ LOCAL: "LOCAL", ELSEWHERE: "ELSEWHERE" })
      const exported = await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
        yield* Layer.build(Telemetry.layerOtlp({ endpoint: receiver.url, exportInterval: "1 hour" }))
        const agent = new SecretgateAgent({
          resolver: yield* Effect.promise(() => gate.resolver(mount)),
          allowHttp: ["api.allowed.test"],
          agentOptions: testAgentOptions,
          audit: Telemetry.egressAudit((event) => seen.push(event.type))
        })
        yield* Effect.promise(async () => {
          const response = await request(upstream.url("api.allowed.test", "/?q=1"), {
            headers: { authorization: `Bearer ${mount.env.LOCAL}`, "x-other": mount.env.ELSEWHERE! },
            dispatcher: agent
          })
          await response.body.text()
          await agent.close()
        })
      })).pipe(Effect.as(true)))
      expect(exported).toBe(true)
    } finally {
      await gate.dispose()
      await upstream.close()
      await receiver.close()
    }
    // the adapter hands every event on
    expect(seen.sort()).toEqual(["substituted", "withheld"])
    const points = pointsOf(receiver).filter((point) => point.name === "secretgate.egress.decisions")
    expect(points.map((point) => point.attributes)).toEqual(expect.arrayContaining([
      { "secretgate.egress.decision": "substituted", "secretgate.egress.surface": "header", "secretgate.egress.reason": "none" },
      { "secretgate.egress.decision": "withheld", "secretgate.egress.surface": "header", "secretgate.egress.reason": "host-not-allowed" }
    ]))
    const everything = receiver.received.map((r) => r.text).join("\n")
    for (const form of [...forms(VALUE), ...forms(`${VALUE}-2`)]) expect(everything).not.toContain(form)
  }, 60_000)
})

describe("a collector that is down", () => {
  it("changes nothing for the server's clients, and the server still stops", async () => {
    const closed = await startReceiver()
    await closed.close()
    const registry = ApiKeys.makeRegistry()
    const key = Redacted.value(registry.issue({ organizationId: "acme", scopes: ["secrets:manage"] }).key)
    const server = await SecretServer.serve({
      backend: MemorySecretStore.layer(),
      keys: registry,
      otlp: { endpoint: closed.url, exportInterval: "10 millis" }
    })
    try {
      for (let i = 0; i < 3; i++) {
        const response = await request(`${server.url}/secret`, {
          method: "POST",
          headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
          body: JSON.stringify({ name: `S${i}`, value: VALUE }),
          dispatcher
        })
        await response.body.text()
        expect(response.statusCode).toBe(201)
        await new Promise((resolve) => setTimeout(resolve, 30))
      }
    } finally {
      await server.close()
    }
  }, 60_000)
})

describe("layerOtlp", () => {
  it("refuses an endpoint that is not an http(s) URL, naming what it got", () => {
    expect(() => Telemetry.layerOtlp({ endpoint: "localhost:4318" })).toThrow(/must be an http\(s\) URL .*localhost:4318/)
    expect(() => Telemetry.layerOtlp({ endpoint: "not a url" })).toThrow(TypeError)
  })
})

describe("the request span without telemetry", () => {
  it("an embedder's own tracer sees one span per request with the route template, never the query string or a header", async () => {
    const recorded: Array<{ name: string; attributes: Map<string, unknown> }> = []
    const native = Effect.runSync(Effect.tracer)
    const recording = Tracer.make({
      span: (name, ...rest) => {
        const span = native.span(name, ...rest)
        recorded.push({ name, attributes: span.attributes as Map<string, unknown> })
        return span
      },
      context: native.context
    })
    const registry = ApiKeys.makeRegistry()
    const key = Redacted.value(registry.issue({ organizationId: "acme", scopes: ["secrets:manage"] }).key)
    const runtime = ManagedRuntime.make(
      SecretServer.layer().pipe(
        Layer.provide(MemorySecretStore.layer()),
        Layer.provide(ApiKeys.layer(registry)),
        Layer.provide(Layer.setTracer(recording))
      )
    )
    try {
      const address = (await runtime.runPromise(Effect.map(HttpServer.HttpServer, (server) => server.address))) as HttpServer.TcpAddress
      const response = await request(`http://127.0.0.1:${address.port}/secret/paginated?limit=5&cursor=${QUERY_MARK}`, {
        headers: { authorization: `Bearer ${key}`, "x-custom": QUERY_MARK },
        dispatcher
      })
      await response.body.text()
    } finally {
      await runtime.dispose()
    }
    const server = recorded.filter((span) => span.name.startsWith("http.server"))
    expect(server.map((span) => span.name)).toEqual(["http.server GET /secret/paginated"])
    const everything = JSON.stringify(recorded.map((span) => [span.name, [...span.attributes.entries()]]))
    expect(everything).not.toContain(QUERY_MARK)
    expect(everything).not.toContain(key)
    expect(everything).not.toContain("limit=5")
  })
})
