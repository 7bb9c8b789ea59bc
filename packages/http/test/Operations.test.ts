/**
 * Operating the server: the readiness probe over a backend that goes down (a real remote backend,
 * `HttpSecrets` to a second server, which is then closed), and structured access logs taken from
 * real requests (fast lane, full application, errors, a watch stream) that never hold a raw path,
 * a query string, a key or a value.
 */
import { ApiKeys, HttpSecrets, SecretServer } from "@secretgate/http"
import { expectError, send } from "@secretgate/http/testing"
import { MemorySecretStore } from "@secretgate/memory"
import { Redacted } from "effect"
import * as Http from "node:http"
import { afterAll, describe, expect, it } from "vitest"

const VALUE = "sk-ops-Hq7vN3xL2-never-in-a-log"
const cleanup: Array<() => Promise<unknown>> = []
afterAll(async () => {
  for (const step of cleanup.reverse()) await step()
})

const serve = async (options: Parameters<typeof SecretServer.serve<unknown>>[0]) => {
  const server = await SecretServer.serve(options)
  cleanup.push(() => server.close())
  return server
}

describe("GET /ready", () => {
  it("is 200 while the backend answers and 503 with the reason once it is down; /health stays 200; no key needed", async () => {
    const registry = ApiKeys.makeRegistry()
    const upstreamKey = registry.issue({ organizationId: "secretgate-readiness-probe", scopes: ["secrets:manage"] }).key
    const reads: Array<SecretServer.AccessLogEntry> = []
    const upstream = await SecretServer.serve({ backend: MemorySecretStore.layer(), keys: registry, accessLog: (entry) => reads.push(entry) })
    let upstreamOpen = true
    cleanup.push(() => (upstreamOpen ? upstream.close() : Promise.resolve()))
    // a server whose backend is the upstream server, over HTTP
    const server = await serve({
      backend: HttpSecrets.layer({ baseUrl: upstream.url, apiKey: upstreamKey, watch: false, timeout: "2 seconds" }),
      keys: []
    })
    const ready = await send(`${server.url}/ready`, "GET")
    expect({ status: ready.status, json: ready.json }).toEqual({ status: 200, json: { status: "ready" } })
    // probes share one read: 20 at once reach the backend once (twice if a second passed in between)
    const probes = await Promise.all(Array.from({ length: 20 }, () => send(`${server.url}/ready`, "GET")))
    expect(probes.map((probe) => probe.status)).toEqual(Array(20).fill(200))
    expect(reads.length).toBeGreaterThanOrEqual(1)
    expect(reads.length).toBeLessThanOrEqual(3)
    expect(reads.every((read) => read.route === "/secret/{secretId}" && read.status === 404)).toBe(true)

    await upstream.close()
    upstreamOpen = false
    // one answer serves the probes of the next second
    const deadline = Date.now() + 10_000
    let down = await send(`${server.url}/ready`, "GET")
    while (down.status === 200 && Date.now() < deadline) {
      await new Promise((resolve) => setTimeout(resolve, 100))
      down = await send(`${server.url}/ready`, "GET")
    }
    expectError(down, 503, "Service Unavailable", /^not ready: the backend failed a read \(StoreUnavailable; details in the server's log\)$/)
    expect(down.json.code).toBe("StoreUnavailable")
    // the probe needs no key, so it says nothing about where the backend is
    expect(down.text).not.toContain(upstream.url)
    const health = await send(`${server.url}/health`, "GET")
    expect({ status: health.status, json: health.json }).toEqual({ status: 200, json: { status: "ok" } })
  })

  it("follows the base path", async () => {
    const server = await serve({ backend: MemorySecretStore.layer(), keys: [], basePath: "/api" })
    expect((await send(`${server.url}/ready`, "GET")).json).toEqual({ status: "ready" })
    expect(server.url).toMatch(/\/api$/)
  })
})

describe("access logs", () => {
  it("one entry per request: method, route template, status, duration, key id; never a path, query, key or value", async () => {
    const entries: Array<SecretServer.AccessLogEntry> = []
    const registry = ApiKeys.makeRegistry()
    const issued = registry.issue({ id: "ops-manage", organizationId: "acme", scopes: ["secrets:manage"] })
    const resolveKey = registry.issue({ id: "ops-resolve", organizationId: "acme", scopes: ["secrets:resolve"] })
    const key = Redacted.value(issued.key)
    const server = await serve({
      backend: MemorySecretStore.layer(),
      keys: registry,
      accessLog: (entry) => entries.push(entry),
      watchHeartbeat: "50 millis"
    })
    const created = await send(`${server.url}/secret`, "POST", { key, body: { name: "logged", value: VALUE } })
    const id = created.json.id as string
    await send(`${server.url}/secret/${id}`, "GET", { key }) // the fast lane
    await send(`${server.url}/secret/${id}?token=${VALUE}`, "GET", { key }) // the full application (a query)
    await send(`${server.url}/secret/paginated?name=${VALUE}`, "GET", { key })
    await send(`${server.url}/secret/${id}`, "PUT", { key, body: { value: VALUE } })
    await send(`${server.url}/secret/${VALUE}`, "GET") // no key
    await send(`${server.url}/${VALUE}/x`, "GET", { key })
    await send(`${server.url}/health`, "GET")
    await send(`${server.url}/secret/resolve`, "POST", { key: Redacted.value(resolveKey.key), body: { placeholders: [created.json.placeholder] } })
    // a watch stream, logged when it ends
    await new Promise<void>((resolve, reject) => {
      const request = Http.get(`${server.url}/secret/watch`, { headers: { authorization: `Bearer ${Redacted.value(resolveKey.key)}` } }, (response) => {
        response.once("data", () => request.destroy())
        response.once("close", () => resolve())
        response.on("error", () => {})
      })
      request.on("error", () => {})
      request.once("close", () => resolve())
      setTimeout(() => reject(new Error("the watch stream did not open")), 10_000).unref()
    })
    const deadline = Date.now() + 10_000
    while (entries.length < 10 && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))

    const shape = entries.map(({ method, route, status, keyId }) => ({ method, route, status, keyId }))
    expect(shape).toEqual([
      { method: "POST", route: "/secret", status: 201, keyId: "ops-manage" },
      { method: "GET", route: "/secret/{secretId}", status: 200, keyId: "ops-manage" },
      { method: "GET", route: "/secret/{secretId}", status: 200, keyId: "ops-manage" },
      { method: "GET", route: "/secret/paginated", status: 200, keyId: "ops-manage" },
      { method: "PUT", route: null, status: 405, keyId: undefined },
      { method: "GET", route: "/secret/{secretId}", status: 401, keyId: undefined },
      { method: "GET", route: null, status: 404, keyId: undefined },
      { method: "GET", route: "/health", status: 200, keyId: undefined },
      { method: "POST", route: "/secret/resolve", status: 200, keyId: "ops-resolve" },
      { method: "GET", route: "/secret/watch", status: 200, keyId: "ops-resolve" }
    ])
    for (const entry of entries) {
      expect(entry.time).toMatch(/^\d{4}-\d{2}-\d{2}T/)
      expect(typeof entry.durationMs).toBe("number")
      expect(entry.durationMs).toBeGreaterThanOrEqual(0)
      expect(Object.keys(entry).every((name) => ["time", "method", "route", "status", "durationMs", "keyId", "aborted"].includes(name))).toBe(true)
    }
    const text = JSON.stringify(entries)
    for (const forbidden of [VALUE, id, key, "?", "token"]) expect(text).not.toContain(forbidden)
  })

  it("`accessLog: true` writes JSON lines to standard output; off by default", async () => {
    const lines: Array<string> = []
    const write = process.stdout.write
    process.stdout.write = ((chunk: string | Uint8Array, ...rest: Array<any>) => {
      lines.push(String(chunk))
      return write.call(process.stdout, chunk, ...rest)
    }) as typeof process.stdout.write
    try {
      const on = await serve({ backend: MemorySecretStore.layer(), keys: [], accessLog: true })
      const off = await serve({ backend: MemorySecretStore.layer(), keys: [] })
      await send(`${on.url}/health`, "GET")
      await send(`${off.url}/ready`, "GET")
      const deadline = Date.now() + 5_000
      while (!lines.some((line) => line.includes("/health")) && Date.now() < deadline) await new Promise((resolve) => setTimeout(resolve, 20))
    } finally {
      process.stdout.write = write
    }
    const logged = lines.filter((line) => line.startsWith("{")).map((line) => JSON.parse(line))
    expect(logged).toEqual([expect.objectContaining({ method: "GET", route: "/health", status: 200 })])
    expect(lines.join("")).not.toContain("/ready")
  })
})
