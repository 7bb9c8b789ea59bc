/**
 * A real upstream for the egress tests: an HTTPS (or plain HTTP) server on 127.0.0.1 with a test CA,
 * recording every request it receives, with routes that echo, redirect, stream and compress.
 */
import { readFileSync } from "node:fs"
import * as http from "node:http"
import * as https from "node:https"
import type { AddressInfo } from "node:net"
import { gzipSync } from "node:zlib"
import { Agent } from "undici"

export const tls = (file: string) => readFileSync(new URL(`../fixtures/tls/${file}`, import.meta.url))
export const CA = tls("ca.pem")

/** What the upstream saw of one request. */
export interface Received {
  readonly method: string
  readonly url: string
  readonly host: string | undefined
  readonly headers: http.IncomingHttpHeaders
  readonly rawHeaders: ReadonlyArray<string>
  readonly body: Buffer
  readonly chunked: boolean
}

export interface Upstream {
  readonly port: number
  readonly received: Array<Received>
  /** Request body bytes received so far, counted as they arrive (before a request ends). */
  readonly progress: { bytes: number; heads: number }
  /**
   * Bodies to answer requests for a path with, as a hostile upstream that knows a value would: the
   * parts written one by one, 50 ms apart, so that each reaches the client as chunks of its own.
   */
  readonly replies: Map<string, ReadonlyArray<string>>
  /** The URL of `path` on `host` (resolved to 127.0.0.1 by `testAgentOptions`). */
  url(host: string, path?: string): string
  close(): Promise<void>
}

const handle = (received: Array<Received>, progress: { bytes: number; heads: number }, replies: Map<string, ReadonlyArray<string>>) => (req: http.IncomingMessage, res: http.ServerResponse) => {
  // a request head arrived, whether or not its body ever ends
  progress.heads++
  const chunks: Array<Buffer> = []
  req.on("data", (chunk: Buffer) => {
    progress.bytes += chunk.length
    chunks.push(chunk)
  })
  req.on("end", () => {
    const body = Buffer.concat(chunks)
    const url = new URL(req.url ?? "/", "http://upstream")
    received.push({
      method: req.method ?? "",
      url: req.url ?? "",
      host: req.headers.host,
      headers: req.headers,
      rawHeaders: req.rawHeaders,
      body,
      chunked: req.headers["transfer-encoding"] === "chunked"
    })
    const echo = JSON.stringify({ method: req.method, url: req.url, headers: req.headers, body: body.toString("utf8") })
    const parts = replies.get(url.pathname)
    if (parts !== undefined) {
      res.writeHead(200, { "content-type": "text/plain" })
      const write = (k: number) => {
        if (k === parts.length) return res.end()
        res.write(parts[k]!)
        setTimeout(() => write(k + 1), 50)
      }
      write(0)
      return
    }
    switch (url.pathname) {
      case "/redirect": {
        res.writeHead(Number(url.searchParams.get("status") ?? 302), { location: url.searchParams.get("to") ?? "/" })
        res.end()
        return
      }
      case "/echo-headers": {
        // reflects every request header into the response headers
        const headers: Record<string, string> = {}
        for (const [name, value] of Object.entries(req.headers)) {
          if (typeof value === "string" && !["host", "connection", "content-length", "transfer-encoding"].includes(name)) headers[`x-echo-${name}`] = value
        }
        res.writeHead(200, { ...headers, "content-type": "text/plain" })
        res.end("ok")
        return
      }
      case "/echo-chunked": {
        // the echo, written a few bytes at a time so values straddle chunk boundaries
        const size = Number(url.searchParams.get("size") ?? 3)
        res.writeHead(200, { "content-type": "application/json" })
        let at = 0
        const write = () => {
          if (at >= echo.length) return res.end()
          res.write(echo.slice(at, at + size))
          at += size
          setImmediate(write)
        }
        write()
        return
      }
      case "/echo-trailers": {
        res.writeHead(200, { "content-type": "text/plain", trailer: "x-echo" })
        res.write("see trailers")
        res.addTrailers({ "x-echo": req.headers.authorization ?? "" })
        res.end()
        return
      }
      case "/echo-gzip": {
        // `?name=` spells the header name as given (Node writes it so), e.g. `CONTENT-ENCODING`
        res.writeHead(200, { "content-type": "application/json", [url.searchParams.get("name") ?? "content-encoding"]: "gzip" })
        res.end(gzipSync(echo))
        return
      }
      default: {
        res.writeHead(200, { "content-type": "application/json" })
        res.end(echo)
      }
    }
  })
}

/** Starts an upstream; `secure: false` for plain HTTP. */
export const startUpstream = async (options: { readonly secure?: boolean } = {}): Promise<Upstream> => {
  const received: Array<Received> = []
  const progress = { bytes: 0, heads: 0 }
  const replies = new Map<string, ReadonlyArray<string>>()
  const server = options.secure === false
    ? http.createServer(handle(received, progress, replies))
    : https.createServer({ key: tls("server.key"), cert: tls("server.pem") }, handle(received, progress, replies))
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const port = (server.address() as AddressInfo).port
  const scheme = options.secure === false ? "http" : "https"
  return {
    port,
    received,
    progress,
    replies,
    url: (host, path = "/") => `${scheme}://${host.includes(":") && !host.startsWith("[") ? `[${host}]` : host}:${port}${path}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      })
  }
}

/**
 * Agent options for tests: trust the test CA, and resolve every name to 127.0.0.1 (so that
 * `https://api.allowed.test:PORT` reaches the local upstream, with the real name in TLS and Host).
 */
export const testAgentOptions: Agent.Options = {
  connect: {
    ca: CA,
    lookup: (_hostname, options, callback) => {
      const all = typeof options === "object" && options !== null && (options as { all?: boolean }).all === true
      if (all) (callback as (err: null, addresses: Array<{ address: string; family: number }>) => void)(null, [{ address: "127.0.0.1", family: 4 }])
      else (callback as (err: null, address: string, family: number) => void)(null, "127.0.0.1", 4)
    }
  }
}

/** A plain agent with the same settings: the baseline of what would happen without secretgate. */
export const plainAgent = () => new Agent(testAgentOptions)
