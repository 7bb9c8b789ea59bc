/**
 * The hops of `proxy.bench.ts`, each run in a process of its own (so that its CPU can be read from
 * /proc and it does not share the client's event loop). `tsx bench/proxyHop.ts <kind> <tls dir> <value>`
 * (`<value>` too, for `secretgate`) prints one JSON line: `{ port, ca, proxyUrl, placeholder }`.
 *
 * - `tunnel`: a bare CONNECT tunnel (net sockets piped)
 * - `tls-hop`: a bare TLS-terminate-and-re-encrypt hop (the test certificate, an inner HTTP server,
 *   undici upstream): what any intercepting proxy must at least do
 * - `secretgate`: `SecretgateProxy` with one sandbox whose one secret may go to any host
 */
import { Secretgate } from "@secretgate/core"
import { MemorySecretStore } from "@secretgate/memory"
import { SecretgateProxy } from "@secretgate/proxy"
import { readFileSync } from "node:fs"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as net from "node:net"
import { pipeline } from "node:stream"
import * as tls from "node:tls"
import { Agent, type Dispatcher, request } from "undici"

const [kind, tlsDir, value] = process.argv.slice(2) as [string, string, string]
const file = (name: string) => readFileSync(`${tlsDir}/${name}`, "utf8")

const listen = async (server: http.Server): Promise<number> => {
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return (server.address() as AddressInfo).port
}

const tunnelHop = async () => {
  const server = http.createServer()
  server.on("connect", (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    const [host, port] = (req.url ?? "").split(":") as [string, string]
    const upstream = net.connect(Number(port), host, () => {
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n")
      if (head.length > 0) upstream.write(head)
      client.pipe(upstream)
      upstream.pipe(client)
    })
    upstream.on("error", () => client.destroy())
    client.on("error", () => upstream.destroy())
  })
  return { port: await listen(server), ca: file("ca.pem") }
}

const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "proxy-authorization", "te", "transfer-encoding", "upgrade", "host"])

const tlsHop = async () => {
  const upstream = new Agent({ connect: { ca: file("ca.pem") } })
  const targets = new WeakMap<object, string>()
  const context = tls.createSecureContext({ key: file("server.key"), cert: file("server.pem") })
  const inner = http.createServer((req, res) => {
    const headers: Record<string, string | Array<string>> = {}
    for (const [name, value] of Object.entries(req.headers)) if (value !== undefined && !HOP_BY_HOP.has(name)) headers[name] = value
    const hasBody = req.headers["content-length"] !== undefined || req.headers["transfer-encoding"] !== undefined
    request(`https://${targets.get(req.socket)}${req.url}`, {
      dispatcher: upstream,
      method: req.method as Dispatcher.HttpMethod,
      headers,
      body: hasBody ? req : null
    }).then((response) => {
      const out: Record<string, string | Array<string>> = {}
      for (const [name, value] of Object.entries(response.headers)) if (value !== undefined && !HOP_BY_HOP.has(name)) out[name] = value
      res.writeHead(response.statusCode, out)
      pipeline(response.body, res, () => {})
    }, () => {
      res.writeHead(502)
      res.end()
    })
  })
  const server = http.createServer()
  server.on("connect", (req: http.IncomingMessage, client: net.Socket) => {
    client.write("HTTP/1.1 200 Connection Established\r\n\r\n")
    const secure = new tls.TLSSocket(client, { isServer: true, secureContext: context, ALPNProtocols: ["http/1.1"] })
    secure.on("error", () => secure.destroy())
    secure.once("secure", () => {
      targets.set(secure, req.url ?? "")
      inner.emit("connection", secure)
    })
  })
  return { port: await listen(server), ca: file("ca.pem") }
}

const secretgateHop = async () => {
  const gate = new Secretgate({ layer: MemorySecretStore.layer(), organizationId: "bench" })
  await gate.secret.create({ name: "bench", value }) // any host: IP literals too
  const mount = await gate.mount({ TOKEN: "bench" })
  // (the sink is on loopback, which the proxy refuses unless allowed)
  const proxy = await SecretgateProxy.start({ upstream: { ca: file("ca.pem") }, allowPrivateDestinations: ["127.0.0.1/32"] })
  const sandbox = proxy.register({ resolver: await gate.resolver(mount) })
  return { port: Number(new URL(proxy.url).port), ca: proxy.ca.certificatePem, proxyUrl: sandbox.proxyUrl, placeholder: mount.env.TOKEN }
}

const started = kind === "tunnel" ? await tunnelHop() : kind === "tls-hop" ? await tlsHop() : await secretgateHop()
process.stdout.write(`${JSON.stringify(started)}\n`)
