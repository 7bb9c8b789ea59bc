/**
 * Header fields across the proxy, as RFC 9110 7.6.1 says: the connection-specific ones
 * (`Connection`, the fields it lists, `Keep-Alive`, `Proxy-Connection`, `TE`, `Transfer-Encoding`,
 * `Upgrade`) and the proxy's own (`Proxy-Authorization`, `Proxy-Authenticate`) end at the proxy;
 * everything else goes on as it came, in order, with its case.
 */
import type { IncomingHttpHeaders } from "node:http"

const HOP_BY_HOP = new Set([
  "connection",
  "keep-alive",
  "proxy-connection",
  "proxy-authorization",
  "proxy-authenticate",
  "te",
  "transfer-encoding",
  "upgrade"
])

/** The field names a `Connection` header lists (they end here too). */
const listedIn = (connection: ReadonlyArray<string>): Set<string> => {
  const names = new Set<string>()
  for (const value of connection) for (const name of value.split(",")) if (name.trim() !== "") names.add(name.trim().toLowerCase())
  return names
}

/**
 * A request's raw headers to send on, flat (`[name, value, ...]`): without hop-by-hop fields,
 * without `Expect` (the proxy has answered `100 Continue` itself) and, when the body is streamed,
 * without `Content-Length` (the body is re-framed upstream).
 */
export const requestHeaders = (raw: ReadonlyArray<string>, options: { readonly streamed: boolean }): Array<string> => {
  const connection: Array<string> = []
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === "connection") connection.push(raw[i + 1]!)
  const listed = listedIn(connection)
  const out: Array<string> = []
  for (let i = 0; i < raw.length; i += 2) {
    const lower = raw[i]!.toLowerCase()
    if (HOP_BY_HOP.has(lower) || listed.has(lower) || lower === "expect") continue
    if (options.streamed && lower === "content-length") continue
    out.push(raw[i]!, raw[i + 1]!)
  }
  return out
}

/** A response's headers (undici's lower-cased object) to send on, flat, without hop-by-hop fields. */
export const responseHeaders = (headers: IncomingHttpHeaders): Array<string> => {
  const connection = headers["connection"]
  const listed = listedIn(connection === undefined ? [] : Array.isArray(connection) ? connection : [connection])
  const out: Array<string> = []
  for (const name in headers) {
    const value = headers[name]
    if (value === undefined || HOP_BY_HOP.has(name) || listed.has(name)) continue
    if (Array.isArray(value)) for (const item of value) out.push(name, item)
    else out.push(name, value)
  }
  return out
}

/** Trailers as `addTrailers` takes them (a list of pairs keeps repeated fields). */
export const trailerPairs = (trailers: IncomingHttpHeaders | null | undefined): Array<[string, string]> => {
  const out: Array<[string, string]> = []
  if (trailers === null || trailers === undefined) return out
  for (const name in trailers) {
    const value = trailers[name]
    if (value === undefined) continue
    for (const item of Array.isArray(value) ? value : [value]) out.push([name, item])
  }
  return out
}
