/**
 * CONNECT handling: authenticate the sandbox (`407` otherwise), check the target and the limits,
 * then either tunnel the connection byte for byte or terminate TLS with a leaf certificate for the
 * CONNECT host (the SNI held to it) and hand the decrypted socket to the inner HTTP server, whose
 * requests go through the sandbox's egress agent.
 */
import { HostPattern } from "@secretgate/core"
import type { Duplex } from "node:stream"
import type * as http from "node:http"
import type * as net from "node:net"
import * as tls from "node:tls"
import type { AuditSink, RefusedReason, UntimedConnectionEvent } from "../ProxyAuditEvent.js"
import { auditedMessage, type Destinations, PRIVATE_DESTINATION } from "./destinations.js"
import type { InnerServer, Session } from "./innerServer.js"
import type { LeafCache } from "./leafCache.js"
import { quoteTarget, refuseOn } from "./refusal.js"
import type { Registry } from "./registry.js"
import { Replayed } from "./replayed.js"
import { type Sandbox, timed } from "./sandbox.js"
import { tunnel } from "./tunnel.js"
import type { lookupWith } from "./upstream.js"

export interface Limits {
  readonly handshakeTimeout: number
  readonly idleTimeout: number
  readonly connectTimeout: number
}

export interface ConnectContext {
  readonly registry: Registry
  readonly leaves: LeafCache
  /** Reads the requests of intercepted connections. */
  readonly inner: InnerServer
  readonly limits: Limits
  readonly lookup: ReturnType<typeof lookupWith>
  /** Which addresses sandboxes may reach. */
  readonly destinations: Destinations
  /** Events no sandbox can be named for. */
  readonly audit: AuditSink | undefined
}

export const PROXY_AUTHENTICATE = { "proxy-authenticate": "Basic realm=\"secretgate\"" }

export interface Target {
  readonly host: string
  readonly port: number
  readonly origin: string
}

/** A target `host:port` (authority-form), normalised; `undefined` when malformed. */
export const parseTarget = (authority: string, scheme: "https" | "http", defaultPort?: number): Target | undefined => {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[^[\]:/@?#\s]+)(?::(\d{1,5}))?$/.exec(authority)
  if (match === null) return undefined
  const port = match[2] === undefined ? defaultPort : Number(match[2])
  if (port === undefined || port < 1 || port > 65535) return undefined
  const normal = HostPattern.normalizeDestination(match[1]!)
  if (normal === undefined) return undefined
  const hostInUrl = normal.kind === "ip" && normal.host.includes(":") ? `[${normal.host}]` : normal.host
  return { host: normal.host, port, origin: `${scheme}://${hostInUrl}:${port}` }
}

/** Reports an event for a sandbox, or to the proxy's sink when none is known. */
export const report = (context: ConnectContext, sandbox: Sandbox | undefined, event: UntimedConnectionEvent): void => {
  if (sandbox !== undefined) return sandbox.report(event)
  try {
    context.audit?.(timed(event))
  } catch {
    // an audit sink must not break the proxy
  }
}

/** Answers with a refusal and reports it. */
export const refuse = (
  context: ConnectContext,
  socket: Duplex,
  sandbox: Sandbox | undefined,
  host: string | undefined,
  reason: RefusedReason,
  status: number,
  message: string,
  headers?: Readonly<Record<string, string>>,
  audited: string = message
): void => {
  report(context, sandbox, { type: "refused", sandbox: sandbox?.id, host, reason, status, message: audited })
  refuseOn(socket, status, message, headers)
}

/** The `connect` listener of the proxy's server. */
export const onConnect = (context: ConnectContext) => (req: http.IncomingMessage, socket: net.Socket, head: Buffer): void => {
  socket.on("error", () => socket.destroy())
  const sandbox = context.registry.authenticate(req.headers["proxy-authorization"])
  const target = parseTarget(req.url ?? "", "https")
  if (sandbox === undefined) {
    return refuse(
      context,
      socket,
      undefined,
      target?.host,
      "unauthenticated",
      407,
      "this proxy needs the sandbox's token: use the proxy URL that register() returned (http://sg:<token>@host:port), which clients send as Proxy-Authorization",
      PROXY_AUTHENTICATE
    )
  }
  if (target === undefined) {
    return refuse(context, socket, sandbox, undefined, "bad-request", 400, `CONNECT target ${quoteTarget(req.url)} is not host:port`)
  }
  if (!sandbox.mayReach(target.host)) {
    return refuse(context, socket, sandbox, target.host, "host-not-allowed", 403, `${target.host} is not among this sandbox's allowed hosts`)
  }
  const literal = context.destinations.literal(target.host)
  if (literal !== undefined) return refuse(context, socket, sandbox, target.host, "private-destination", 403, literal.message)
  if (!sandbox.admit(socket)) {
    return refuse(
      context,
      socket,
      sandbox,
      target.host,
      "too-many-connections",
      429,
      `this sandbox already has ${sandbox.settings.maxConnections} open connections (the proxy's limits.connectionsPerSandbox)`
    )
  }
  socket.setNoDelay(true)
  socket.setTimeout(context.limits.idleTimeout, () => socket.destroy())
  const decided = sandbox.intercepts(target.host)
  const proceed = (intercepted: boolean) => {
    if (socket.destroyed) return
    if (intercepted) return intercept(context, sandbox, target, socket, head)
    report(context, sandbox, { type: "tunnelled", sandbox: sandbox.id, host: target.host, port: target.port })
    tunnel(socket, head, target, { lookup: context.lookup, connectTimeout: context.limits.connectTimeout, idleTimeout: context.limits.idleTimeout }, (error) =>
      (error as { code?: unknown }).code === PRIVATE_DESTINATION
        ? refuse(context, socket, sandbox, target.host, "private-destination", 403, error.message, undefined, auditedMessage(error))
        : refuse(context, socket, sandbox, target.host, "upstream-unreachable", 502, `cannot reach ${target.host}:${target.port}: ${error.message}`))
  }
  if (typeof decided === "boolean") return proceed(decided)
  decided.then(proceed, () =>
    refuse(context, socket, sandbox, target.host, "resolution-failed", 503, "could not load this sandbox's secrets to decide how to handle the connection; try again"))
}

/** The alert name in an OpenSSL error (`...:tlsv1 alert unknown ca:...`), if the client sent one. */
const alertOf = (error: Error): string | undefined => /(?:tlsv1|sslv3|tls) alert ([a-z ]+)/i.exec(error.message)?.[1]?.trim().toLowerCase()

/** The first byte of a TLS record carrying a handshake. */
const TLS_HANDSHAKE = 0x16

/**
 * Serves an intercepted connection: answers `200`, then reads the client's first bytes. A TLS
 * handshake is terminated with a leaf for the CONNECT host; anything else is plain HTTP inside the
 * tunnel (undici's `ProxyAgent` sends `http://` requests so), served with an `http:` origin. Either
 * way the inner HTTP server then reads the requests.
 */
const intercept = (context: ConnectContext, sandbox: Sandbox, target: Target, socket: net.Socket, head: Buffer): void => {
  report(context, sandbox, { type: "intercepted", sandbox: sandbox.id, host: target.host, port: target.port })
  socket.write("HTTP/1.1 200 Connection Established\r\n\r\n")
  const timer = setTimeout(() => {
    report(context, sandbox, {
      type: "refused",
      sandbox: sandbox.id,
      host: target.host,
      reason: "handshake-timeout",
      status: undefined,
      message: `the client did not complete its TLS handshake for ${target.host} within ${context.limits.handshakeTimeout} ms (limits.handshakeTimeout)`
    })
    socket.destroy()
  }, context.limits.handshakeTimeout)
  socket.once("close", () => clearTimeout(timer))
  const start = (first: Buffer) => {
    if (first[0] === TLS_HANDSHAKE) {
      socket.pause()
      socket.unshift(first) // a TLSSocket reads what is buffered on the socket it wraps
      return terminateTls(context, sandbox, target, socket, timer)
    }
    clearTimeout(timer)
    context.inner.serve(new Replayed(socket, first), { sandbox, host: target.host, port: target.port, origin: target.origin.replace(/^https:/, "http:"), used: false })
  }
  if (head.length > 0) return start(head)
  socket.once("data", start)
}

/** Terminates the client's TLS with a leaf for the CONNECT host (the SNI held to it). */
const terminateTls = (context: ConnectContext, sandbox: Sandbox, target: Target, socket: net.Socket, timer: NodeJS.Timeout): void => {
  let secureContext: tls.SecureContext
  try {
    secureContext = context.leaves.contextFor(target.host)
  } catch (error) {
    clearTimeout(timer)
    report(context, sandbox, { type: "refused", sandbox: sandbox.id, host: target.host, reason: "bad-request", status: undefined, message: `cannot mint a certificate for ${target.host}: ${(error as Error).message}` })
    return void socket.destroy()
  }
  let settled = false
  const settle = () => {
    settled = true
    clearTimeout(timer)
  }
  const secure = new tls.TLSSocket(socket, {
    isServer: true,
    secureContext,
    ALPNProtocols: ["http/1.1"],
    SNICallback: (servername, callback) => {
      const named = HostPattern.normalizeDestination(servername)
      if (named !== undefined && named.host === target.host) return callback(null, secureContext)
      settle()
      const message = `the TLS server name ${JSON.stringify(servername)} is not the CONNECT host ${target.host}; the connection was closed`
      report(context, sandbox, { type: "refused", sandbox: sandbox.id, host: target.host, reason: "sni-mismatch", status: undefined, message })
      callback(new Error(message), undefined)
    }
  })
  const rejected = (alert: string | undefined, afterHandshake = false) =>
    report(context, sandbox, {
      type: "tls-rejected",
      sandbox: sandbox.id,
      host: target.host,
      alert,
      message: `the client rejected the proxy's certificate for ${target.host} (${
        alert !== undefined
          ? `TLS alert: ${alert}`
          : afterHandshake
          ? "it closed the connection right after the handshake without sending a request"
          : "it closed the connection during the handshake"
      }). Give it the proxy's CA (the CA variables of the registration's env, e.g. SSL_CERT_FILE or NODE_EXTRA_CA_CERTS); a client that pins this host's certificate cannot be intercepted: then no secret may be allowed for ${target.host}, so that its connections are tunnelled`
    })
  let session: Session | undefined
  secure.once("secure", () => {
    settle()
    session = { sandbox, host: target.host, port: target.port, origin: target.origin, used: false }
    context.inner.serve(secure, session)
  })
  secure.on("error", (error: Error) => {
    if (!settled) {
      settle()
      const alert = alertOf(error)
      if (alert !== undefined || (error as NodeJS.ErrnoException).code === "ECONNRESET") rejected(alert)
      else {
        const message = `the TLS handshake with the client for ${target.host} failed: ${error.message}`
        report(context, sandbox, { type: "refused", sandbox: sandbox.id, host: target.host, reason: "bad-request", status: undefined, message })
      }
    }
    secure.destroy()
  })
  // the proxy's server keeps half-open connections: a client hanging up mid-handshake only ends it
  secure.once("end", () => {
    if (settled) return
    settle()
    rejected(undefined)
    secure.destroy()
  })
  secure.once("close", () => {
    if (!settled) {
      settle()
      rejected(undefined)
    } else if (session !== undefined && !session.used) {
      // Node's own clients check the certificate after the handshake and just hang up
      rejected(undefined, true)
    }
    socket.destroy()
  })
}
