/**
 * The destinations of the egress fuzzer: one real server per host (HTTPS with the test CA, or
 * plain HTTP), all on 127.0.0.1, so that which server got a request says where it really went,
 * whatever Host header or TLS name it carried. Each server records every request it gets (the
 * moment its head arrives, and whole once it ends) and answers as the program's script says:
 * an echo of the request through one or two escape syntaxes, into the body (split across
 * chunks), headers, the status text, trailers or a redirect's `Location`; or a compressed or
 * transfer-coded one.
 */
import { Buffer } from "node:buffer"
import * as http from "node:http"
import * as https from "node:https"
import type { AddressInfo } from "node:net"
import { gzipSync } from "node:zlib"
import type { Escaper } from "./fuzzEscapes.js"
import { tls } from "./upstream.js"

/** A destination: the host a request connects to, and how. */
export interface Destination {
  /** The host as the URL names it. */
  readonly name: string
  /** The normalised host the agent matches secrets against (`undefined` for an IP literal). */
  readonly host: string
  readonly secure: boolean
}

/** What a script says one hop's upstream does. */
export interface Behaviour {
  /** 200, or a redirect to `to` (a destination name), optionally carrying the echo in its query. */
  readonly status: 200 | 301 | 302 | 303 | 307 | 308
  readonly to: string
  /** Escapers applied in order to the echo (empty: as received). */
  readonly escapes: ReadonlyArray<Escaper>
  readonly into: { readonly body: boolean; readonly header: boolean; readonly status: boolean; readonly trailer: boolean; readonly location: boolean }
  /** Body split into this many writes (1: one). */
  readonly pieces: number
  readonly coding: "none" | "gzip" | "transfer-gzip"
}

/** One request as a server received it. */
export interface Arrival {
  readonly destination: Destination
  readonly method: string
  readonly url: string
  readonly rawHeaders: ReadonlyArray<string>
  /** Filled as the body arrives; `complete` once it ended. */
  body: Buffer
  complete: boolean
}

export interface Upstreams {
  readonly destinations: ReadonlyArray<Destination>
  /** Every arrival since the last `reset`, in order. */
  readonly arrivals: Array<Arrival>
  /** `https://name:port` of a destination. */
  origin(name: string): string
  /** The script of request `id`: its hops' behaviours (hops past the end answer 200 with the echo). */
  script(id: string, hops: ReadonlyArray<Behaviour>): void
  reset(): void
  close(): Promise<void>
}

/** The request id and hop a path names: `/f/<id>/<hop>/...`. */
const route = (url: string): { id: string; hop: number } | undefined => {
  const match = /^\/f\/([^/?]+)\/(\d+)/.exec(url)
  return match === null ? undefined : { id: match[1]!, hop: Number(match[2]) }
}

const HEADER_SAFE = /^[\t\x20-\x7e\x80-\xff]*$/

const echoOf = (arrival: Arrival): string =>
  `${arrival.method} ${arrival.url}\n${arrival.rawHeaders.join("\n")}\n\n${arrival.body.toString("utf8")}`

/** Starts one server per destination. */
export const startUpstreams = async (destinations: ReadonlyArray<Destination>): Promise<Upstreams> => {
  const arrivals: Array<Arrival> = []
  const scripts = new Map<string, ReadonlyArray<Behaviour>>()
  const ports = new Map<string, number>()
  const servers: Array<http.Server> = []

  const origin = (name: string): string => {
    const destination = destinations.find((d) => d.name === name)!
    return `${destination.secure ? "https" : "http"}://${name}:${ports.get(name)}`
  }

  const answer = (arrival: Arrival, res: http.ServerResponse) => {
    const at = route(arrival.url)
    const behaviour = at === undefined ? undefined : scripts.get(at.id)?.[at.hop]
    let echo = echoOf(arrival)
    for (const escaper of behaviour?.escapes ?? []) echo = escaper.escape(echo)
    if (behaviour === undefined || at === undefined) {
      res.writeHead(200, { "content-type": "text/plain" })
      res.end(echo)
      return
    }
    const headers: Record<string, string> = { "content-type": "text/plain; charset=utf-8" }
    // whole or not at all: a cut echo (a Basic token cut short, say) is not a form scrubbing claims
    const fits = echo.length <= 4000 && HEADER_SAFE.test(echo)
    if (behaviour.into.header && fits) headers["x-echo"] = echo
    if (behaviour.status !== 200) {
      const next = `/f/${at.id}/${at.hop + 1}/next`
      const query = behaviour.into.location && echo.length <= 4000 ? `?e=${encodeURIComponent(echo)}` : ""
      headers.location = `${origin(behaviour.to)}${next}${query}`
    }
    if (behaviour.into.trailer) headers.trailer = "x-echo-trailer"
    let body = behaviour.into.body ? Buffer.from(echo, "utf8") : Buffer.from("ok")
    if (behaviour.coding === "gzip") {
      headers["content-encoding"] = "gzip"
      body = gzipSync(body)
    } else if (behaviour.coding === "transfer-gzip") {
      // Node frames it chunked (the header names chunked last) and sends the compressed bytes
      headers["transfer-encoding"] = "gzip, chunked"
      body = gzipSync(body)
    }
    res.statusCode = behaviour.status
    if (behaviour.into.status && fits && !/[\r\n]/.test(echo)) res.statusMessage = echo
    for (const [name, value] of Object.entries(headers)) res.setHeader(name, value)
    const trailer = behaviour.into.trailer && fits ? echo : "none"
    const size = Math.max(1, Math.ceil(body.length / behaviour.pieces))
    let offset = 0
    const write = () => {
      if (res.destroyed) return
      if (offset >= body.length) {
        if (behaviour.into.trailer) res.addTrailers({ "x-echo-trailer": trailer })
        res.end()
        return
      }
      res.write(body.subarray(offset, offset + size))
      offset += size
      setImmediate(write)
    }
    write()
  }

  for (const destination of destinations) {
    const handler = (req: http.IncomingMessage, res: http.ServerResponse) => {
      const arrival: Arrival = { destination, method: req.method ?? "", url: req.url ?? "", rawHeaders: req.rawHeaders, body: Buffer.alloc(0), complete: false }
      arrivals.push(arrival)
      req.on("data", (chunk: Buffer) => {
        arrival.body = Buffer.concat([arrival.body, chunk])
      })
      req.on("error", () => {})
      req.on("end", () => {
        arrival.complete = true
        try {
          answer(arrival, res)
        } catch {
          res.destroy()
        }
      })
    }
    const server = destination.secure
      ? https.createServer({ key: tls("server.key"), cert: tls("server.pem") }, handler)
      : http.createServer(handler)
    server.on("clientError", (_error, socket) => socket.destroy())
    server.keepAliveTimeout = 1000
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    ports.set(destination.name, (server.address() as AddressInfo).port)
    servers.push(server)
  }

  return {
    destinations,
    arrivals,
    origin,
    script: (id, hops) => {
      scripts.set(id, hops)
    },
    reset: () => {
      arrivals.length = 0
      scripts.clear()
    },
    close: async () => {
      await Promise.all(servers.map((server) =>
        new Promise<void>((resolve) => {
          server.closeAllConnections()
          server.close(() => resolve())
        })
      ))
    }
  }
}
