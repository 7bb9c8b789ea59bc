/**
 * The proxy's own behaviour, through real sockets: tokens, tunnel or intercept, the SNI held to the
 * CONNECT host, clients that reject the certificate, allowlists, plain HTTP, `block`, streaming both
 * ways, `Expect: 100-continue`, trailers, hop-by-hop fields, redirects, WebSockets, revocation.
 */
import { X509Certificate } from "node:crypto"
import { writeFile } from "node:fs/promises"
import * as https from "node:https"
import type { AddressInfo } from "node:net"
import * as net from "node:net"
import { Readable } from "node:stream"
import { request, WebSocket } from "undici"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { CA, tls as fixture } from "../../undici/test/support/upstream.js"
import { startWebSocketUpstream, type WebSocketUpstream } from "../../undici/test/support/webSocketUpstream.js"
import { authorizationOf, connectRaw, proxyAgent, readBytes, tlsOver, waitFor } from "./support/client.js"
import { InvalidProxyOptions, SecretgateProxy } from "../src/index.js"
import { installed, makeWorld, run, type World } from "./support/world.js"

const VALUE = "v4lue-Of-The-Secret"
let world: World
let ws: WebSocketUpstream
beforeAll(async () => {
  world = await makeWorld()
  ws = await startWebSocketUpstream()
})
afterAll(async () => {
  await ws.close()
  await world.close()
})

/** A plain-HTTP proxy request (absolute-form, as curl sends for http:// URLs) on a raw socket. */
const askPlain = (proxyUrl: string | null, target: string, extra = ""): Promise<{ status: number; text: string }> =>
  new Promise((resolve, reject) => {
    const { hostname, port } = new URL(world.proxy.url)
    const host = URL.canParse(target) ? new URL(target).host : "x"
    const socket = net.connect(Number(port), hostname, () =>
      socket.write(`GET ${target} HTTP/1.1\r\nHost: ${host}\r\n${proxyUrl === null ? "" : `Proxy-Authorization: ${authorizationOf(proxyUrl)}\r\n`}${extra}Connection: close\r\n\r\n`))
    readBytes(socket, () => false).then((bytes) => {
      const raw = bytes.toString("utf8")
      const split = raw.indexOf("\r\n\r\n")
      const head = raw.slice(0, split)
      // the body without chunk framing, so that the text can be searched
      const body = /transfer-encoding: chunked/i.test(head) ? raw.slice(split + 4).replace(/(^|\r\n)[0-9a-f]+\r\n/gi, "") : raw.slice(split + 4)
      resolve({ status: Number(raw.split(" ")[1]), text: `${head}\r\n\r\n${body}` })
    }, reject)
  })

const lastReceived = () => world.https.received[world.https.received.length - 1]!
const authority = (host: string) => `${host}:${world.https.port}`

describe("tokens", () => {
  it("a CONNECT without a token, with a garbled one or a wrong one gets 407 with Proxy-Authenticate, and no connection is made", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const real = authorizationOf(sandbox.registration.proxyUrl)
    const token = new URL(sandbox.registration.proxyUrl).password
    const before = world.https.received.length
    for (
      const authorization of [
        null,
        "Basic !!!not-base64!!!",
        `Bearer ${token}`,
        `Basic ${Buffer.from(`sg:${token.slice(0, -1)}x`).toString("base64")}`,
        `Basic ${Buffer.from("sg:").toString("base64")}`,
        `${real}x`
      ]
    ) {
      const answer = await connectRaw(world.proxy, authority("api.allowed.test"), authorization)
      expect(answer.status, String(authorization)).toBe(407)
      expect(answer.head.toLowerCase()).toContain("proxy-authenticate: basic realm=\"secretgate\"")
      expect(answer.body).toContain("the sandbox's token")
    }
    expect(world.https.received.length).toBe(before)
    expect(world.events).toContainEqual(expect.objectContaining({ type: "refused", reason: "unauthenticated", sandbox: undefined, status: 407 }))
    // the user name does not matter; the token does
    const other = await connectRaw(world.proxy, authority("api.allowed.test"), `Basic ${Buffer.from(`someone:${token}`).toString("base64")}`)
    expect(other.status).toBe(200)
    other.socket.destroy()
  })

  it("a second sandbox's token gets only that sandbox's secrets: another's placeholder is not substituted, and its host is tunnelled", async () => {
    const first = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const second = await world.sandbox({ other: ["other-value", ["other.test"]] })
    const agent = proxyAgent(world.proxy, second.registration)
    const response = await request(world.https.url("api.allowed.test", "/echo"), {
      dispatcher: agent,
      headers: { authorization: `Bearer ${first.mount.env.TOKEN}` }
    })
    await response.body.text()
    expect(lastReceived().headers.authorization).toBe(`Bearer ${first.mount.env.TOKEN}`)
    expect(second.events).toContainEqual(expect.objectContaining({ type: "tunnelled", sandbox: second.registration.id, host: "api.allowed.test", port: world.https.port }))
    // the same through an intercepted host of the second sandbox: not mounted there
    const intercepted = await request(world.https.url("other.test", "/echo"), {
      dispatcher: agent,
      headers: { authorization: `Bearer ${first.mount.env.TOKEN}` }
    })
    await intercepted.body.text()
    expect(lastReceived().headers.authorization).toBe(`Bearer ${first.mount.env.TOKEN}`)
    expect(second.events).toContainEqual(expect.objectContaining({ type: "withheld", reason: "not-mounted", host: "other.test" }))
    expect(first.events).toEqual([])
    await agent.close()
  })

  it("revoke: the token stops working and the sandbox's open connections are closed", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const open = await connectRaw(world.proxy, authority("evil.test"), authorizationOf(sandbox.registration.proxyUrl))
    expect(open.status).toBe(200)
    const closed = new Promise((resolve) => open.socket.once("close", resolve))
    await sandbox.registration.revoke()
    await closed
    const after = await connectRaw(world.proxy, authority("evil.test"), authorizationOf(sandbox.registration.proxyUrl))
    expect(after.status).toBe(407)
  })
})

describe("tunnel or intercept", () => {
  it("a host with no secret is tunnelled byte for byte: any bytes, both ways, untouched", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    // a raw TCP echo upstream: no TLS, no HTTP; what goes in must come back exactly
    const echo = net.createServer((socket) => socket.pipe(socket))
    await new Promise<void>((resolve) => echo.listen(0, "127.0.0.1", resolve))
    const port = (echo.address() as AddressInfo).port
    const tunnel = await connectRaw(world.proxy, `other.test:${port}`, authorizationOf(sandbox.registration.proxyUrl))
    expect(tunnel.status).toBe(200)
    const bytes = Buffer.concat([Buffer.from(`GET / HTTP/1.1\r\nAuthorization: Bearer ${sandbox.mount.env.TOKEN}\r\n\r\n`), Buffer.from([0, 1, 2, 255, 254, 13, 10])])
    tunnel.socket.write(bytes)
    const back = await readBytes(tunnel.socket, (received) => received.length >= bytes.length)
    expect(back.equals(bytes)).toBe(true)
    tunnel.socket.destroy()
    echo.close()
    expect(sandbox.events).toEqual([expect.objectContaining({ type: "tunnelled", sandbox: sandbox.registration.id, host: "other.test", port })])
  })

  it("a tunnelled TLS connection shows the upstream's own certificate; an intercepted one the proxy's leaf for the CONNECT host", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const upstreamCertificate = new X509Certificate(fixture("server.pem"))
    const tunnelled = await connectRaw(world.proxy, authority("evil.test"), authorizationOf(sandbox.registration.proxyUrl))
    const direct = await tlsOver(tunnelled.socket, { servername: "evil.test", ca: CA })
    expect(direct.getPeerX509Certificate()!.fingerprint256).toBe(upstreamCertificate.fingerprint256)
    direct.destroy()

    const intercepted = await connectRaw(world.proxy, authority("API.Allowed.Test."), authorizationOf(sandbox.registration.proxyUrl))
    const leaf = await tlsOver(intercepted.socket, { servername: "api.allowed.test", ca: world.proxy.ca.certificatePem })
    const certificate = leaf.getPeerX509Certificate()!
    expect(certificate.checkHost("api.allowed.test")).toBe("api.allowed.test")
    expect(certificate.checkIssued(world.proxy.ca.certificate)).toBe(true)
    expect(leaf.alpnProtocol).toBe(false)
    leaf.destroy()
  })

  it("an IP-literal CONNECT target gets a certificate for the address (no SNI) when intercepted", async () => {
    const open = await makeWorld({ allowPrivateDestinations: ["127.0.0.1/32"] })
    try {
      const sandbox = await open.sandbox({ token: [VALUE] }, { unrestricted: "allow" }) // unrestricted: matches IP literals too
      const intercepted = await connectRaw(open.proxy, `127.0.0.1:${open.https.port}`, authorizationOf(sandbox.registration.proxyUrl))
      const leaf = await tlsOver(intercepted.socket, { ca: open.proxy.ca.certificatePem, host: "127.0.0.1" })
      expect(leaf.getPeerX509Certificate()!.checkIP("127.0.0.1")).toBe("127.0.0.1")
      leaf.write(`GET /echo HTTP/1.1\r\nHost: 127.0.0.1:${open.https.port}\r\nAuthorization: Bearer ${sandbox.mount.env.TOKEN}\r\nConnection: close\r\n\r\n`)
      const response = (await readBytes(leaf, () => false)).toString("utf8")
      expect(response).toContain("200 OK")
      expect(response).not.toContain(VALUE)
      expect(open.https.received.at(-1)!.headers.authorization).toBe(`Bearer ${VALUE}`)
    } finally {
      await open.close()
    }
  })

  it("a TLS server name other than the CONNECT host is refused: no certificate for it, nothing sent upstream", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const before = world.https.received.length
    const intercepted = await connectRaw(world.proxy, authority("api.allowed.test"), authorizationOf(sandbox.registration.proxyUrl))
    await expect(tlsOver(intercepted.socket, { servername: "evil.test", ca: world.proxy.ca.certificatePem })).rejects.toThrow()
    expect(world.https.received.length).toBe(before)
    expect(sandbox.events).toContainEqual(expect.objectContaining({ type: "refused", reason: "sni-mismatch", host: "api.allowed.test" }))
  })

  it("a Node client that does not trust the proxy's CA (or pins the host's certificate) hangs up without an alert: tls-rejected", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const intercepted = await connectRaw(world.proxy, authority("api.allowed.test"), authorizationOf(sandbox.registration.proxyUrl))
    // trusts only the upstream's CA, as a client pinning the real certificate would
    await expect(tlsOver(intercepted.socket, { servername: "api.allowed.test", ca: CA })).rejects.toThrow()
    intercepted.socket.destroy()
    await waitFor(() => sandbox.events.some((event) => event.type === "tls-rejected"), "the tls-rejected event")
    const event = sandbox.events.find((event) => event.type === "tls-rejected")!
    expect(event).toMatchObject({ type: "tls-rejected", host: "api.allowed.test", alert: undefined })
    expect((event as { message: string }).message).toContain("it closed the connection during the handshake")
    expect((event as { message: string }).message).toContain("SSL_CERT_FILE")
  })

  it.skipIf(!installed("curl"))("curl pinning the upstream's CA sends a TLS alert: tls-rejected names it", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const caFile = `${world.proxy.bundle.caFile}.pinned.pem`
    await writeFile(caFile, CA)
    const ran = await run("curl", ["-sS", "--cacert", caFile, world.https.url("api.allowed.test", "/echo")], sandbox.env)
    expect(ran.code).toBe(60) // curl: peer certificate cannot be authenticated
    await waitFor(() => sandbox.events.some((event) => event.type === "tls-rejected"), "the tls-rejected event")
    expect(sandbox.events.find((event) => event.type === "tls-rejected")).toMatchObject({ host: "api.allowed.test", alert: "unknown ca" })
  })

  it("allowedHosts: other hosts are refused with 403 before any connection, for CONNECT and plain HTTP", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] }, { allowedHosts: ["*.allowed.test"] })
    const refused = await connectRaw(world.proxy, authority("evil.test"), authorizationOf(sandbox.registration.proxyUrl))
    expect(refused.status).toBe(403)
    expect(refused.body).toContain("evil.test is not among this sandbox's allowed hosts")
    const allowed = await connectRaw(world.proxy, authority("deep.sub.allowed.test"), authorizationOf(sandbox.registration.proxyUrl))
    expect(allowed.status).toBe(200)
    allowed.socket.destroy()
    const plain = await askPlain(sandbox.registration.proxyUrl, world.http.url("evil.test", "/echo"))
    expect(plain.status).toBe(403)
    expect(plain.text).toContain("evil.test is not among this sandbox's allowed hosts")
  })

  it("under block, every host is intercepted and a placeholder bound elsewhere fails the request with 403 before anything is sent", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] }, { onDisallowed: "block" })
    const before = world.https.received.length
    const agent = proxyAgent(world.proxy, sandbox.registration)
    const response = await request(world.https.url("evil.test", "/echo"), { dispatcher: agent, headers: { authorization: `Bearer ${sandbox.mount.env.TOKEN}` } })
    expect(response.statusCode).toBe(403)
    expect(response.headers["x-secretgate-error"]).toBe("SubstitutionBlocked")
    expect(await response.body.text()).toContain("blocked")
    expect(world.https.received.length).toBe(before)
    expect(sandbox.events).toContainEqual(expect.objectContaining({ type: "intercepted", sandbox: sandbox.registration.id, host: "evil.test", port: world.https.port }))
    await agent.close()
  })
})

describe("plain HTTP", () => {
  it("absolute-form http:// requests (curl, Python) are forwarded without values, unless allowHttp names the host", async () => {
    const plain = await world.sandbox({ token: [VALUE, ["upstream.test"]] })
    const url = world.http.url("upstream.test", "/echo")
    const withheld = await askPlain(plain.registration.proxyUrl, url, `Authorization: Bearer ${plain.mount.env.TOKEN}\r\n`)
    expect(withheld.status).toBe(200)
    expect(world.http.received.at(-1)!.headers.authorization).toBe(`Bearer ${plain.mount.env.TOKEN}`)
    expect(plain.events).toContainEqual(expect.objectContaining({ type: "withheld", reason: "insecure-scheme", host: "upstream.test" }))
    const opted = await world.sandbox({ token: [VALUE, ["upstream.test"]] }, { allowHttp: ["upstream.test"] })
    const substituted = await askPlain(opted.registration.proxyUrl, url, `Authorization: Bearer ${opted.mount.env.TOKEN}\r\n`)
    expect(world.http.received.at(-1)!.headers.authorization).toBe(`Bearer ${VALUE}`)
    expect(substituted.text).not.toContain(VALUE)
    expect(substituted.text).toContain(`Bearer ${opted.mount.env.TOKEN}`)
  })

  it("plain HTTP inside a CONNECT tunnel (undici's ProxyAgent for http:// URLs) is served the same way", async () => {
    const plain = await world.sandbox({ token: [VALUE, ["upstream.test"]] })
    const agent = proxyAgent(world.proxy, plain.registration)
    const url = world.http.url("upstream.test", "/echo")
    await (await request(url, { dispatcher: agent, headers: { authorization: `Bearer ${plain.mount.env.TOKEN}` } })).body.text()
    expect(world.http.received.at(-1)!.headers.authorization).toBe(`Bearer ${plain.mount.env.TOKEN}`)
    expect(plain.events).toContainEqual(expect.objectContaining({ type: "withheld", reason: "insecure-scheme" }))
    await agent.close()

    const opted = await world.sandbox({ token: [VALUE, ["upstream.test"]] }, { allowHttp: ["upstream.test"] })
    const optedAgent = proxyAgent(world.proxy, opted.registration)
    const echoed = await (await request(url, { dispatcher: optedAgent, headers: { authorization: `Bearer ${opted.mount.env.TOKEN}` } })).body.text()
    expect(world.http.received.at(-1)!.headers.authorization).toBe(`Bearer ${VALUE}`)
    expect(echoed).not.toContain(VALUE)
    await optedAgent.close()
  })

  it("an absolute-form https:// request sent in clear is refused (no TLS downgrade); a request to the proxy itself says what it is", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const downgrade = await askPlain(sandbox.registration.proxyUrl, world.https.url("api.allowed.test", "/echo"))
    expect(downgrade.status).toBe(400)
    expect(downgrade.text).toContain("must go through CONNECT")
    const origin = await askPlain(sandbox.registration.proxyUrl, "/echo")
    expect(origin.status).toBe(400)
    expect(origin.text).toContain("this is a proxy")
    const anonymous = await askPlain(null, world.http.url("upstream.test", "/echo"))
    expect(anonymous.status).toBe(407)
    expect(sandbox.events).toContainEqual(expect.objectContaining({ type: "refused", reason: "https-absolute-form", status: 400 }))
  })
})

describe("the request bridge", () => {
  it("streams a 10 MB upload: the upstream receives bytes before the client has sent them all, and the value is substituted in the stream", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const agent = proxyAgent(world.proxy, sandbox.registration)
    const start = world.https.progress.bytes
    const chunk = Buffer.alloc(64 * 1024, "a")
    async function* body() {
      yield Buffer.from(`token=${sandbox.mount.env.TOKEN}&`)
      for (let i = 0; i < 80; i++) yield chunk // 5 MB
      // the rest only once the upstream has received most of the first half: nothing holds the body whole
      await waitFor(() => world.https.progress.bytes - start >= 4 * 1024 * 1024, "the upstream to receive the first 4 MB")
      for (let i = 0; i < 80; i++) yield chunk
    }
    const response = await request(world.https.url("api.allowed.test", "/upload"), { method: "POST", dispatcher: agent, body: Readable.from(body()) })
    await response.body.dump()
    expect(response.statusCode).toBe(200)
    const received = lastReceived()
    expect(received.body.length).toBe(`token=${VALUE}&`.length + 160 * chunk.length)
    expect(received.body.subarray(0, 40).toString()).toBe(`token=${VALUE}&`.padEnd(40, "a"))
    await agent.close()
  })

  it("relays a server-sent-events response event by event (the second event is written only after the client saw the first)", async () => {
    const sandbox = await world.sandbox({ token: [VALUE] })
    let seenFirst = false
    const server = https.createServer({ key: fixture("server.key"), cert: fixture("server.pem") }, async (req, res) => {
      res.writeHead(200, { "content-type": "text/event-stream" })
      res.write(`data: first ${req.headers.authorization}\n\n`)
      await waitFor(() => seenFirst, "the client to see the first event")
      res.end("data: second\n\n")
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    const agent = proxyAgent(world.proxy, sandbox.registration)
    const response = await request(`https://upstream.test:${(server.address() as AddressInfo).port}/events`, {
      dispatcher: agent,
      headers: { authorization: `Bearer ${sandbox.mount.env.TOKEN}` }
    })
    let text = ""
    for await (const piece of response.body) {
      text += piece.toString()
      if (text.includes("first")) seenFirst = true
    }
    expect(text).toBe(`data: first Bearer ${sandbox.mount.env.TOKEN}\n\ndata: second\n\n`)
    await agent.close()
    server.close()
  })

  it("passes trailers (scrubbed), drops hop-by-hop fields both ways, and hands redirects back to the client", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const agent = proxyAgent(world.proxy, sandbox.registration)
    const trailers = await request(world.https.url("api.allowed.test", "/echo-trailers"), { dispatcher: agent, headers: { authorization: `Bearer ${sandbox.mount.env.TOKEN}` } })
    expect(await trailers.body.text()).toBe("see trailers")
    expect(trailers.trailers).toEqual({ "x-echo": `Bearer ${sandbox.mount.env.TOKEN}` })
    expect(lastReceived().headers.authorization).toBe(`Bearer ${VALUE}`)

    // hop-by-hop fields as a raw client sends them (undici refuses to send some of them)
    const tunnel = await connectRaw(world.proxy, authority("api.allowed.test"), authorizationOf(sandbox.registration.proxyUrl))
    const secure = await tlsOver(tunnel.socket, { servername: "api.allowed.test", ca: world.proxy.ca.certificatePem })
    secure.write(
      `GET /echo HTTP/1.1\r\nHost: ${authority("api.allowed.test")}\r\nConnection: keep-alive, X-Hop\r\nX-Hop: 1\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\nProxy-Authorization: Basic c2c6eA==\r\nX-End-To-End: 2\r\n\r\n`
    )
    const answer = (await readBytes(secure, (received) => received.includes("}"))).toString().toLowerCase()
    secure.destroy()
    // the upstream's own connection fields (Node answers keep-alive: timeout=5) end at the proxy, which says its own
    expect(answer).not.toContain("keep-alive: timeout=5")
    expect(answer.match(/\r\nconnection:/g)?.length ?? 0).toBeLessThanOrEqual(1)
    const received = lastReceived().headers
    expect(received["x-hop"]).toBeUndefined()
    expect(received["keep-alive"]).toBeUndefined()
    expect(received["proxy-authorization"]).toBeUndefined()
    expect(received.te).toBeUndefined()
    expect(received["x-end-to-end"]).toBe("2")

    const redirect = await request(world.https.url("api.allowed.test", `/redirect?status=302&to=${encodeURIComponent("https://evil.test/")}`), { dispatcher: agent })
    expect(redirect.statusCode).toBe(302)
    expect(redirect.headers.location).toBe("https://evil.test/")
    await redirect.body.dump()
    await agent.close()
  })

  it.skipIf(!installed("curl"))("Expect: 100-continue works (curl waits for it), and the Expect field is not sent on", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const body = `token=${sandbox.mount.env.TOKEN}&${"x".repeat(4000)}`
    const ran = await run("curl", ["-sS", "-H", "Expect: 100-continue", "--expect100-timeout", "30", "--data-binary", "@-", world.https.url("api.allowed.test", "/echo")], sandbox.env, body)
    expect(ran.code).toBe(0)
    const received = lastReceived()
    expect(received.headers.expect).toBeUndefined()
    expect(received.body.toString()).toBe(`token=${VALUE}&${"x".repeat(4000)}`)
    expect(JSON.parse(ran.stdout).body).toBe(body)
  })

  it("a Host header naming another host than the CONNECT target gets no value (host-mismatch); an absolute-form target in the tunnel is refused", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const tunnel = await connectRaw(world.proxy, authority("api.allowed.test"), authorizationOf(sandbox.registration.proxyUrl))
    const secure = await tlsOver(tunnel.socket, { servername: "api.allowed.test", ca: world.proxy.ca.certificatePem })
    secure.write(`GET /echo HTTP/1.1\r\nHost: evil.test\r\nAuthorization: Bearer ${sandbox.mount.env.TOKEN}\r\n\r\n`)
    const first = (await readBytes(secure, (received) => received.includes("}"))).toString()
    expect(first).toContain("200 OK")
    expect(lastReceived().headers.authorization).toBe(`Bearer ${sandbox.mount.env.TOKEN}`)
    expect(sandbox.events).toContainEqual(expect.objectContaining({ type: "withheld", reason: "host-mismatch" }))
    secure.write(`GET https://evil.test/echo HTTP/1.1\r\nHost: evil.test\r\nConnection: close\r\n\r\n`)
    const second = (await readBytes(secure, () => false)).toString()
    expect(second).toContain("400 Bad Request")
    expect(second).toContain("origin-form")
  })
})

describe("WebSockets", () => {
  it("with webSockets: true, the handshake on an intercepted host carries the value and every frame back is scrubbed", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] }, { webSockets: true })
    const agent = proxyAgent(world.proxy, sandbox.registration)
    const socket = new WebSocket(ws.url("api.allowed.test", "/ws/echo"), { dispatcher: agent, headers: { authorization: `Bearer ${sandbox.mount.env.TOKEN}` } } as never)
    const messages: Array<string> = []
    await new Promise<void>((resolve, reject) => {
      socket.onmessage = (event) => {
        messages.push(String(event.data))
        if (messages.length === 1) socket.send(`mine: ${sandbox.mount.env.TOKEN}`)
        if (messages.length === 2) resolve()
      }
      socket.onerror = (event) => reject(new Error(String((event as { message?: string }).message)))
    })
    socket.close()
    expect(ws.handshakes.at(-1)!.headers.authorization).toBe(`Bearer ${VALUE}`)
    expect(ws.messages.at(-1)).toBe(`mine: ${VALUE}`)
    expect(messages).toEqual([`you sent Bearer ${sandbox.mount.env.TOKEN}`, `mine: ${sandbox.mount.env.TOKEN}`])
    await agent.close()
  })

  it("without webSockets the handshake carries the placeholder only; upgrades other than WebSocket are refused with 501", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const agent = proxyAgent(world.proxy, sandbox.registration)
    const socket = new WebSocket(ws.url("api.allowed.test", "/ws/echo"), { dispatcher: agent, headers: { authorization: `Bearer ${sandbox.mount.env.TOKEN}` } } as never)
    const first = await new Promise<string>((resolve, reject) => {
      socket.onmessage = (event) => resolve(String(event.data))
      socket.onerror = () => reject(new Error("websocket failed"))
    })
    socket.close()
    expect(first).toBe(`you sent Bearer ${sandbox.mount.env.TOKEN}`)
    expect(ws.handshakes.at(-1)!.headers.authorization).toBe(`Bearer ${sandbox.mount.env.TOKEN}`)
    await agent.close()

    const tunnel = await connectRaw(world.proxy, authority("api.allowed.test"), authorizationOf(sandbox.registration.proxyUrl))
    const secure = await tlsOver(tunnel.socket, { servername: "api.allowed.test", ca: world.proxy.ca.certificatePem })
    secure.write("GET / HTTP/1.1\r\nHost: api.allowed.test\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")
    const answer = (await readBytes(secure, () => false)).toString()
    expect(answer).toContain("501 Not Implemented")
    expect(answer).toContain("only WebSocket upgrades")
  })
})

describe("options", () => {
  it("bad proxy options fail start with InvalidProxyOptions naming the option", async () => {
    const cases: Array<[Parameters<typeof SecretgateProxy.start>[0], string, RegExp]> = [
      [{ limits: { idleTimeout: 0 } }, "limits.idleTimeout", /must be a positive number, got 0/],
      [{ limits: { connectionsPerSandbox: Number.NaN } }, "limits.connectionsPerSandbox", /positive number/],
      [{ upstream: { resolve: { "api.example.com": "not-an-ip" } } }, "upstream.resolve[\"api.example.com\"]", /not an IP address/],
      [{ upstream: { resolve: { "bad host!": "127.0.0.1" } } }, "upstream.resolve[\"bad host!\"]", /is not a host name/],
      [{ upstream: { ca: "not a certificate" } }, "upstream.ca", /PEM certificates/]
    ]
    for (const [options, option, message] of cases) {
      const error = await SecretgateProxy.start(options).then(() => undefined, (e: unknown) => e)
      expect(error, option).toBeInstanceOf(InvalidProxyOptions)
      expect((error as InvalidProxyOptions).option).toBe(option)
      expect((error as Error).message).toMatch(message)
    }
  })

  it("bad registrations fail with InvalidProxyOptions; nothing is registered", async () => {
    const resolver = await world.gate.resolver(await world.gate.mount({}))
    const attempts: Array<[unknown, string]> = [
      [{}, "resolver"],
      [{ resolver, onDisallowed: "drop" }, "onDisallowed"],
      [{ resolver, allowedHosts: ["*.com"] }, "allowedHosts[0]"],
      [{ resolver, allowedHosts: ["ok.example", "https://x.example/"] }, "allowedHosts[1]"]
    ]
    for (const [options, option] of attempts) {
      let error: unknown
      try {
        world.proxy.register(options as never)
      } catch (e) {
        error = e
      }
      expect(error, option).toBeInstanceOf(InvalidProxyOptions)
      expect((error as InvalidProxyOptions).option).toBe(option)
    }
  })

  it("a CA kept in a directory is the same after a restart; the bundle directory given is kept, the temporary one removed", async () => {
    const { mkdir, mkdtemp, readFile, rm, stat } = await import("node:fs/promises")
    const { join } = await import("node:path")
    const { tmpdir } = await import("node:os")
    const directory = await mkdtemp(join(tmpdir(), "secretgate-proxy-ca-"))
    try {
      const bundle = join(directory, "bundle") // beside the CA: sandboxes read this one
      await mkdir(bundle)
      const first = await SecretgateProxy.start({ ca: { directory: join(directory, "ca") }, directory: bundle })
      const fingerprint = first.ca.certificate.fingerprint256
      expect(await readFile(join(bundle, "ca.pem"), "utf8")).toBe(first.ca.certificatePem)
      expect(await readFile(join(bundle, "ca-bundle.pem"), "utf8")).toMatch(/^-----BEGIN CERTIFICATE-----[\s\S]+-----BEGIN CERTIFICATE-----/)
      await first.close()
      await stat(join(bundle, "ca.pem")) // kept: the embedder's directory
      const second = await SecretgateProxy.start({ ca: { directory: join(directory, "ca") } })
      expect(second.ca.certificate.fingerprint256).toBe(fingerprint)
      const temporary = second.bundle.caFile
      await second.close()
      await expect(stat(temporary)).rejects.toThrow()
      expect(() => second.register({ resolver: null as never })).toThrow(InvalidProxyOptions)
    } finally {
      await rm(directory, { recursive: true, force: true })
    }
  })
})
