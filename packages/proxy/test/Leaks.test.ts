/**
 * The leak paths of docs/security.md that apply to a proxy, each through the real proxy: the value
 * must reach only allowed hosts, and never come back to the sandbox — not in a response (body,
 * headers, trailers, split across chunks, compressed), not in an error the proxy writes, not in an
 * audit event, not in anything the proxy or a registration shows.
 */
import { inspect } from "node:util"
import { readFileSync } from "node:fs"
import { gzipSync } from "node:zlib"
import { request } from "undici"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startRawTls } from "../../undici/test/support/rawServer.js"
import { authorizationOf, connectRaw, proxyAgent, readBytes, tlsOver } from "./support/client.js"
import { makeWorld, type World } from "./support/world.js"

const VALUE = "Sup3r/Secret+Value=="
let world: World
beforeAll(async () => {
  world = await makeWorld()
})
afterAll(() => world.close())

const lastReceived = () => world.https.received[world.https.received.length - 1]!

/** Sends a request through the proxy as the sandbox; the response as text (headers, body, trailers). */
const through = async (
  sandbox: Awaited<ReturnType<World["sandbox"]>>,
  url: string,
  options: { method?: string; headers?: Record<string, string>; body?: string | Buffer } = {}
) => {
  const agent = proxyAgent(world.proxy, sandbox.registration)
  try {
    const response = await request(url, { dispatcher: agent, method: (options.method ?? "GET") as "GET", headers: options.headers ?? {}, body: options.body ?? null })
    const body = await response.body.text()
    return { status: response.statusCode, headers: response.headers, body, trailers: response.trailers, all: JSON.stringify([response.headers, body, response.trailers]) }
  } finally {
    await agent.close()
  }
}

describe("responses never carry the value back", () => {
  it("an echo in the body (JSON, split across tiny chunks), in response headers and in Basic credentials is scrubbed", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const placeholder = sandbox.mount.env.TOKEN!
    const headers = { authorization: `Bearer ${placeholder}`, "x-token": placeholder, "content-type": "application/json" }
    for (const path of ["/echo", "/echo-chunked?size=3", "/echo-chunked?size=1", "/echo-headers"]) {
      const answer = await through(sandbox, world.https.url("api.allowed.test", path), { method: "POST", headers, body: JSON.stringify({ token: placeholder }) })
      expect(lastReceived().headers["x-token"]).toBe(VALUE)
      expect(answer.all, path).not.toContain(VALUE)
      expect(answer.all, path).not.toContain(JSON.stringify(VALUE).slice(1, -1))
      expect(answer.all, path).toContain(placeholder)
    }
    const basic = await through(sandbox, world.https.url("api.allowed.test", "/echo-headers"), {
      headers: { authorization: `Basic ${Buffer.from(`me:${placeholder}`).toString("base64")}` }
    })
    expect(lastReceived().headers.authorization).toBe(`Basic ${Buffer.from(`me:${VALUE}`).toString("base64")}`)
    expect(basic.headers["x-echo-authorization"]).toBe(`Basic ${Buffer.from(`me:${placeholder}`).toString("base64")}`)
  })

  it("a compressed echo is refused with 502 rather than passed on unscrubbed", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const answer = await through(sandbox, world.https.url("api.allowed.test", "/echo-gzip"), { headers: { authorization: `Bearer ${sandbox.mount.env.TOKEN}` } })
    expect(answer.status).toBe(502)
    expect(answer.headers["x-secretgate-error"]).toBe("EgressRefused")
    expect(answer.body).toContain("cannot be scrubbed")
    expect(answer.all).not.toContain(VALUE)
  })

  it("an upstream answer undici cannot parse, holding the value, becomes an error without it", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const raw = await startRawTls((head, socket) => {
      const sent = /authorization: Bearer (.*)\r\n/i.exec(head)?.[1] ?? ""
      socket.end(`HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Bad\u0001${sent}: x\r\n\r\nhello`)
    })
    const answer = await through(sandbox, raw.url("api.allowed.test", "/"), { headers: { authorization: `Bearer ${sandbox.mount.env.TOKEN}` } })
    expect(raw.heads.join("\n")).toContain(VALUE)
    expect(answer.status).toBe(502)
    expect(answer.all).not.toContain(VALUE)
    await raw.close()
  })
})

describe("values go only where they are allowed", () => {
  it("a value with CR/LF is never put into a header: 403 before anything is sent", async () => {
    const sandbox = await world.sandbox({ token: ["line\r\nX-Injected: 1", ["api.allowed.test"]] })
    const before = world.https.received.length
    const answer = await through(sandbox, world.https.url("api.allowed.test", "/echo"), { headers: { "x-token": sandbox.mount.env.TOKEN! } })
    expect(answer.status).toBe(403)
    expect(answer.headers["x-secretgate-error"]).toBe("UnsafeSubstitution")
    expect(answer.body).not.toContain("X-Injected")
    expect(world.https.received.length).toBe(before)
  })

  it("wildcard over-match and IP literals: badexample.com and 127.0.0.1 are tunnelled for a *.example.com secret", async () => {
    const open = await makeWorld({ allowPrivateDestinations: ["127.0.0.1"] })
    try {
      const sandbox = await open.sandbox({ token: [VALUE, ["*.example.com"]] })
      for (const host of ["badexample.com", "127.0.0.1"]) {
        const connected = await connectRaw(open.proxy, `${host}:${open.https.port}`, authorizationOf(sandbox.registration.proxyUrl))
        expect(connected.status).toBe(200)
        connected.socket.destroy()
      }
      expect(sandbox.events.map((event) => event.type)).toEqual(["tunnelled", "tunnelled"])
    } finally {
      await open.close()
    }
  })

  it("case and a trailing dot in the CONNECT host do not escape matching; the value goes to the normalised host", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const tunnel = await connectRaw(world.proxy, `API.Allowed.TEST.:${world.https.port}`, authorizationOf(sandbox.registration.proxyUrl))
    const secure = await tlsOver(tunnel.socket, { servername: "api.allowed.test", ca: world.proxy.ca.certificatePem })
    secure.write(`GET /echo HTTP/1.1\r\nHost: api.allowed.test:${world.https.port}\r\nAuthorization: Bearer ${sandbox.mount.env.TOKEN}\r\nConnection: close\r\n\r\n`)
    const answer = (await readBytes(secure, () => false)).toString()
    expect(answer).toContain("200 OK")
    expect(answer).not.toContain(VALUE)
    expect(lastReceived().headers.authorization).toBe(`Bearer ${VALUE}`)
  })

  it("an update is seen by the next connection and request: new value, new host intercepted; a delete withholds", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const secret = (await world.gate.secret.list()).find((item) => item.placeholder === sandbox.mount.env.TOKEN)!
    await world.gate.secret.update(secret.id, { value: "n3w-value", hosts: ["api.allowed.test", "other.test"] })
    await through(sandbox, world.https.url("other.test", "/echo"), { headers: { authorization: `Bearer ${sandbox.mount.env.TOKEN}` } })
    expect(lastReceived().headers.authorization).toBe("Bearer n3w-value")
    await world.gate.secret.delete(secret.id)
    await through(sandbox, world.https.url("api.allowed.test", "/echo"), { headers: { authorization: `Bearer ${sandbox.mount.env.TOKEN}` } })
    expect(lastReceived().headers.authorization).toBe(`Bearer ${sandbox.mount.env.TOKEN}`)
  })

  it("a compressed request body is never rewritten: it arrives as the client sent it", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const gzipped = gzipSync(`{"token":"${sandbox.mount.env.TOKEN}"}`)
    await through(sandbox, world.https.url("api.allowed.test", "/echo"), { method: "POST", headers: { "content-encoding": "gzip" }, body: gzipped })
    expect(lastReceived().body.equals(gzipped)).toBe(true)
  })
})

describe("nothing the proxy shows holds a value", () => {
  it("audit events, error answers, inspect output of the proxy and registrations, the env and the bundle files", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] }, { onDisallowed: "block" })
    const blocked = await through(sandbox, world.https.url("evil.test", "/echo"), { headers: { authorization: `Bearer ${sandbox.mount.env.TOKEN}` } })
    expect(blocked.status).toBe(403)
    await through(sandbox, world.https.url("api.allowed.test", "/echo"), { headers: { authorization: `Bearer ${sandbox.mount.env.TOKEN}` } })
    expect(lastReceived().headers.authorization).toBe(`Bearer ${VALUE}`)
    const shown = [
      JSON.stringify(world.events),
      JSON.stringify(sandbox.events),
      blocked.all,
      inspect(world.proxy, { depth: 10 }),
      inspect(sandbox.registration, { depth: 10 }),
      JSON.stringify(sandbox.registration.env),
      ...[world.proxy.bundle.caFile, world.proxy.bundle.bundleFile, world.proxy.bundle.nodePreload].map((file) => readFileSync(file, "utf8"))
    ]
    for (const text of shown) expect(text).not.toContain(VALUE)
    expect(inspect(world.proxy, { depth: 10 })).not.toContain("PRIVATE KEY")
  })
})
