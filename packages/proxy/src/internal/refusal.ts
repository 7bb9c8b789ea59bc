/**
 * The proxy's own answers: refusals written on a raw socket (before a tunnel exists, or instead of
 * an upgrade), and the status a failed forwarded request is answered with. Bodies are one line a
 * person can act on; they never hold a value (the egress errors are built from names only).
 */
import { STATUS_CODES } from "node:http"
import type { Duplex } from "node:stream"

/** The longest request target a refusal quotes (what is cut off ends in `…`). */
export const QUOTED_TARGET_LIMIT = 200

/**
 * A request target (`req.url`, a CONNECT authority) as a refusal quotes it: cut at the first `?`
 * or `#` (a query string may carry a key; audit events never hold one) and at
 * `QUOTED_TARGET_LIMIT` characters, then JSON-quoted.
 */
export const quoteTarget = (target: string | undefined): string => {
  const text = target ?? ""
  const cut = text.search(/[?#]/)
  const path = cut === -1 ? text : `${text.slice(0, cut)}${text[cut]}…`
  return JSON.stringify(path.length > QUOTED_TARGET_LIMIT ? `${path.slice(0, QUOTED_TARGET_LIMIT)}…` : path)
}

/** A complete `Connection: close` response as bytes. */
export const rawResponse = (status: number, message: string, headers: Readonly<Record<string, string>> = {}): string => {
  const body = `secretgate proxy: ${message}\n`
  const lines = [`HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "Error"}`]
  for (const [name, value] of Object.entries({
    "content-type": "text/plain; charset=utf-8",
    "content-length": String(Buffer.byteLength(body)),
    connection: "close",
    ...headers
  })) lines.push(`${name}: ${value}`)
  return `${lines.join("\r\n")}\r\n\r\n${body}`
}

/** Answers on a raw socket and closes it once the answer is out. */
export const refuseOn = (socket: Duplex, status: number, message: string, headers?: Readonly<Record<string, string>>): void => {
  if (socket.destroyed || !socket.writable) return void socket.destroy()
  socket.end(rawResponse(status, message, headers))
  // a client that never reads its answer does not keep the socket
  setTimeout(() => socket.destroy(), 1000).unref()
}

/** What a request that failed before its response began is answered with. */
export const statusFor = (error: Error): number => {
  switch ((error as { code?: unknown }).code) {
    case "SECRETGATE_BLOCKED":
    case "SECRETGATE_UNSAFE_VALUE":
    case "SECRETGATE_PRIVATE_DESTINATION":
      return 403
    case "SECRETGATE_RESOLUTION_FAILED":
      return 503
    case "UND_ERR_CONNECT_TIMEOUT":
    case "UND_ERR_HEADERS_TIMEOUT":
      return 504
    default:
      return 502
  }
}

/** A short name for the kind of failure, for the `x-secretgate-error` header. */
export const kindOf = (error: Error): string => {
  const tag = (error as { _tag?: unknown })._tag
  if (typeof tag === "string") return tag
  const code = (error as { code?: unknown }).code
  return typeof code === "string" ? code : error.name
}

/** Answers malformed requests, over-long headers and slow heads with a clear status. */
export const onClientError = (limits: { readonly maxHeaderSize: number; readonly handshakeTimeout: number }) =>
(error: NodeJS.ErrnoException, socket: Duplex): void => {
  switch (error.code) {
    case "HPE_HEADER_OVERFLOW":
      return refuseOn(socket, 431, `the request headers exceed the proxy's limit of ${limits.maxHeaderSize} bytes (limits.maxHeaderSize)`)
    case "ERR_HTTP_REQUEST_TIMEOUT":
      return refuseOn(socket, 408, `the request head did not arrive within ${limits.handshakeTimeout} ms (limits.handshakeTimeout)`)
    case "ECONNRESET":
      return void socket.destroy()
    default:
      return refuseOn(socket, 400, `malformed request (${error.code ?? error.message})`)
  }
}
