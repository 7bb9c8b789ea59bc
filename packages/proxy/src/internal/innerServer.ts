/**
 * The inner HTTP server: it reads the requests of intercepted connections (decrypted TLS sockets,
 * or plain HTTP inside a tunnel), each handed to it with the session saying whose the connection
 * is and where its requests go, and passes them to the request bridge.
 *
 * It never listens, so Node does not track its connections and its own `headersTimeout` does not
 * run: a request head that does not arrive in time (a slowloris-style client) is cut off here.
 */
import { UnreadBody } from "@secretgate/core"
import * as http from "node:http"
import type { Duplex } from "node:stream"
import type { RefusedReason } from "../ProxyAuditEvent.js"
import { forward, forwardUpgrade } from "./bridge.js"
import { onClientError, quoteTarget, refuseOn } from "./refusal.js"
import type { Sandbox } from "./sandbox.js"

/** An intercepted connection: whose it is and where its requests go. */
export interface Session {
  readonly sandbox: Sandbox
  readonly host: string
  readonly port: number
  /** `https://host:port` (`http:` for plain HTTP in the tunnel): the dispatch origin of every request on this connection. */
  readonly origin: string
  /** Whether a request came on it (a connection closed without one may have rejected the certificate). */
  used: boolean
}

export interface InnerServer {
  readonly server: http.Server
  /** Serves a connection: its requests are read and forwarded for its session. */
  serve(socket: Duplex, session: Session): void
}

type Refuse = (socket: Duplex, session: Session, reason: RefusedReason, status: number, message: string) => void

export const makeInnerServer = (
  options: http.ServerOptions,
  limits: { readonly handshakeTimeout: number; readonly maxHeaderSize: number },
  refuse: Refuse
): InnerServer => {
  const server = http.createServer(options)
  const sessions = new WeakMap<object, Session>()
  const heads = new WeakMap<object, NodeJS.Timeout>()
  const keepAlive = options.keepAliveTimeout ?? 5000

  /** Cuts the connection off unless a request head arrives within `ms`. */
  const awaitHead = (socket: Duplex, ms: number) => {
    if (socket.destroyed) return
    clearTimeout(heads.get(socket))
    const timer = setTimeout(() => {
      refuseOn(socket, 408, `the request head did not arrive within ${limits.handshakeTimeout} ms (limits.handshakeTimeout)`)
    }, ms)
    timer.unref()
    heads.set(socket, timer)
  }

  server.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
    const session = sessions.get(req.socket)
    if (session === undefined) return void req.socket.destroy()
    clearTimeout(heads.get(req.socket))
    session.used = true
    // (a body an answer leaves unread, a refusal's or a failed forward's, is read no further than
    // UnreadBody.DRAIN_BYTES)
    UnreadBody.bound(req, res)
    // the next head may come after the keep-alive pause, and then must come in time
    res.once("finish", () => awaitHead(req.socket, keepAlive + limits.handshakeTimeout))
    if (!(req.url ?? "").startsWith("/")) {
      res.writeHead(400, { "content-type": "text/plain; charset=utf-8" })
      return void res.end(`secretgate proxy: requests inside a CONNECT tunnel to ${session.host} must use origin-form targets (/path), got ${quoteTarget(req.url)}\n`)
    }
    forward(session.sandbox, session.origin, req.url!, req, res)
  })

  server.on("upgrade", (req: http.IncomingMessage, socket: Duplex, head: Buffer) => {
    const session = sessions.get(req.socket)
    if (session === undefined) return void socket.destroy()
    clearTimeout(heads.get(req.socket))
    session.used = true
    if ((req.url ?? "").startsWith("/") && forwardUpgrade(session.sandbox, session.origin, req.url!, req, socket, head)) return
    refuse(socket, session, "upgrade-not-supported", 501, `only WebSocket upgrades (GET, Upgrade: websocket) are supported on intercepted hosts; ${JSON.stringify(String(req.headers.upgrade))} is not`)
  })

  server.on("checkExpectation", UnreadBody.expectationFailed)
  server.on("clientError", onClientError(limits))

  return {
    server,
    serve(socket, session) {
      sessions.set(socket, session)
      socket.once("close", () => clearTimeout(heads.get(socket)))
      awaitHead(socket, limits.handshakeTimeout)
      server.emit("connection", socket)
    }
  }
}
