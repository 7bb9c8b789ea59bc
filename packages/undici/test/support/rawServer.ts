/**
 * Upstreams with behaviour the shared `upstream.ts` does not have, for the leak regression tests:
 *
 * - `startSpecial()`: an HTTPS server (test CA) that records the SNI names it is offered, every
 *   request, upgrade and CONNECT it gets, and answers with echoes in awkward places: raw header
 *   bytes (Latin-1 and UTF-8), the status text, JSON with `\/` escaping, URL-encoded `Location`,
 *   cacheable responses, and the upgraded / tunnelled socket itself.
 * - `startRawTls()`: a TLS server that reads a request head and lets the test write any bytes back
 *   (e.g. a response undici cannot parse).
 */
import { readFileSync } from "node:fs"
import * as http from "node:http"
import * as https from "node:https"
import type { AddressInfo } from "node:net"
import type * as net from "node:net"
import * as tls from "node:tls"

const file = (name: string) => readFileSync(new URL(`../fixtures/tls/${name}`, import.meta.url))
const KEY = file("server.key")
const CERT = file("server.pem")

export interface SpecialRequest {
  readonly kind: "request" | "upgrade" | "connect"
  readonly method: string
  readonly url: string
  readonly headers: http.IncomingHttpHeaders
  readonly rawHeaders: ReadonlyArray<string>
  readonly body: Buffer
  /** The SNI name of the TLS connection the request came on (`undefined` when none was sent). */
  readonly servername: string | undefined
}

export interface Special {
  readonly port: number
  /** SNI names offered by clients, including handshakes that failed. */
  readonly servernames: Array<string>
  readonly received: Array<SpecialRequest>
  /** How many times `/cache` was actually served by the origin. */
  readonly cacheHits: { count: number }
  url(host: string, path?: string): string
  /** Everything received (SNI, request lines, headers, bodies), as Latin-1 text. */
  everything(): string
  close(): Promise<void>
}

/** The received header `name` as the bytes that came over the wire (Node decodes them as Latin-1). */
const headerBytes = (req: http.IncomingMessage, name: string): Buffer => {
  const value = req.headers[name]
  return Buffer.from(typeof value === "string" ? value : Array.isArray(value) ? value.join(", ") : "", "latin1")
}

const sniOf = (socket: net.Socket): string | undefined => {
  const name = (socket as tls.TLSSocket).servername
  return typeof name === "string" ? name : undefined
}

/** A JSON string literal with `/` escaped as `\/`, as PHP's json_encode writes it. */
const phpJson = (value: unknown): string => JSON.stringify(value).replaceAll("/", "\\/")

export const startSpecial = async (): Promise<Special> => {
  const servernames: Array<string> = []
  const received: Array<SpecialRequest> = []
  const cacheHits = { count: 0 }
  const sockets = new Set<net.Socket>()
  const context = tls.createSecureContext({ key: KEY, cert: CERT })
  const server = https.createServer({
    key: KEY,
    cert: CERT,
    SNICallback: (servername, callback) => {
      servernames.push(servername)
      callback(null, context)
    }
  }, (req, res) => {
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.on("end", () => {
      const body = Buffer.concat(chunks)
      received.push({ kind: "request", method: req.method ?? "", url: req.url ?? "", headers: req.headers, rawHeaders: req.rawHeaders, body, servername: sniOf(req.socket) })
      const url = new URL(req.url ?? "/", "https://special")
      switch (url.pathname) {
        case "/bytes-echo": {
          // the x-key header's bytes back, as Latin-1 bytes and as UTF-8 bytes, in headers and body
          const bytes = headerBytes(req, "x-key")
          const asUtf8 = Buffer.from(bytes.toString("latin1"), "utf8")
          res.writeHead(200, {
            "content-type": "application/octet-stream",
            // Node writes header strings as Latin-1: one char per byte
            "x-echo-latin1": bytes.toString("latin1"),
            "x-echo-utf8": asUtf8.toString("latin1")
          })
          res.end(Buffer.concat([Buffer.from("latin1="), bytes, Buffer.from("\nutf8="), asUtf8, Buffer.from("\n")]))
          return
        }
        case "/status-echo": {
          res.statusCode = 200
          res.statusMessage = String(req.headers["x-key"] ?? "none")
          res.setHeader("content-type", "text/plain")
          res.end("see the status text")
          return
        }
        case "/basic-echo": {
          // PHP-style JSON (`\/`) in the body, URL-encoded in a Location header
          const authorization = String(req.headers.authorization ?? "")
          const proxy = String(req.headers["proxy-authorization"] ?? "")
          res.writeHead(200, {
            "content-type": "application/json",
            location: `/next?auth=${encodeURIComponent(authorization)}&proxy=${encodeURIComponent(proxy)}`
          })
          res.end(`{"authorization":${phpJson(authorization)},"proxy":${phpJson(proxy)}}`)
          return
        }
        case "/cache": {
          cacheHits.count++
          res.writeHead(200, { "content-type": "text/plain", "cache-control": "public, max-age=60" })
          res.end(`authorization=${req.headers.authorization ?? "none"}`)
          return
        }
        default: {
          res.writeHead(200, { "content-type": "application/json" })
          res.end(JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body: body.toString("utf8") }))
        }
      }
    })
  })
  server.on("upgrade", (req: http.IncomingMessage, socket: net.Socket) => {
    received.push({ kind: "upgrade", method: req.method ?? "", url: req.url ?? "", headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.alloc(0), servername: sniOf(socket) })
    const authorization = String(req.headers.authorization ?? "none")
    socket.on("error", () => socket.destroy())
    socket.write(
      `HTTP/1.1 101 Switching Protocols\r\nconnection: Upgrade\r\nupgrade: ${req.headers.upgrade ?? "echo"}\r\nx-echo: ${authorization}\r\n\r\n`,
      "latin1"
    )
    // after the upgrade the socket is opaque: echo the credentials on it, then close
    socket.end(`authorization=${authorization}\n`, "latin1")
  })
  server.on("connect", (req: http.IncomingMessage, socket: net.Socket) => {
    received.push({ kind: "connect", method: req.method ?? "", url: req.url ?? "", headers: req.headers, rawHeaders: req.rawHeaders, body: Buffer.alloc(0), servername: sniOf(socket) })
    const authorization = String(req.headers.authorization ?? "none")
    socket.on("error", () => socket.destroy())
    socket.write(`HTTP/1.1 200 Connection Established\r\nx-echo: ${authorization}\r\n\r\n`, "latin1")
    socket.end(`authorization=${authorization}\n`, "latin1")
  })
  server.on("secureConnection", (socket: tls.TLSSocket) => {
    sockets.add(socket)
    socket.on("close", () => sockets.delete(socket))
  })
  server.on("tlsClientError", () => {})
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const port = (server.address() as AddressInfo).port
  return {
    port,
    servernames,
    received,
    cacheHits,
    url: (host, path = "/") => `https://${host}:${port}${path}`,
    everything: () =>
      [
        `SNI ${servernames.join(" ")}`,
        ...received.map((r) => `${r.kind} ${r.method} ${r.url} (SNI ${r.servername ?? "-"})\n${r.rawHeaders.join("\n")}\n\n${r.body.toString("latin1")}`)
      ].join("\n---\n"),
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.closeAllConnections()
        server.close(() => resolve())
      })
  }
}

export interface RawTls {
  readonly port: number
  /** Request heads received (everything up to the blank line), as Latin-1 text. */
  readonly heads: Array<string>
  url(host: string, path?: string): string
  close(): Promise<void>
}

/**
 * A TLS server (test CA) that reads one request head per connection and hands it to `respond`,
 * which writes whatever bytes it likes to the socket.
 */
export const startRawTls = async (respond: (head: string, socket: tls.TLSSocket) => void): Promise<RawTls> => {
  const heads: Array<string> = []
  const sockets = new Set<tls.TLSSocket>()
  const server = tls.createServer({ key: KEY, cert: CERT }, (socket) => {
    sockets.add(socket)
    socket.on("close", () => sockets.delete(socket))
    socket.on("error", () => socket.destroy())
    let buffered = Buffer.alloc(0)
    const onData = (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk])
      const end = buffered.indexOf("\r\n\r\n")
      if (end === -1) return
      socket.off("data", onData)
      const head = buffered.subarray(0, end).toString("latin1")
      heads.push(head)
      respond(head, socket)
    }
    socket.on("data", onData)
  })
  server.on("tlsClientError", () => {})
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const port = (server.address() as AddressInfo).port
  return {
    port,
    heads,
    url: (host, path = "/") => `https://${host}:${port}${path}`,
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      })
  }
}

/** The value of header `name` in a raw request head, or `""`. */
export const headerOf = (head: string, name: string): string => {
  for (const line of head.split("\r\n").slice(1)) {
    const colon = line.indexOf(":")
    if (colon > 0 && line.slice(0, colon).trim().toLowerCase() === name) return line.slice(colon + 1).trim()
  }
  return ""
}
