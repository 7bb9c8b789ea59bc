/**
 * Audit events: what the egress layer did with each placeholder it met. Each says when, for which
 * sandbox, which request (method, destination host and port, path without the query), where in it
 * (surface), which secret, what was decided (`type`) and why (`reason`) — never a value, never a
 * query string. `AuditFile` writes them as JSON Lines; the schema is in `docs/egress.md`.
 *
 * @since 0.1.0
 */

/**
 * Where in the request a placeholder was found: a header value, the path or query, the body, or a
 * message the client sent over a WebSocket connection (`webSockets: true`).
 *
 * @since 0.1.0
 */
export type Surface = "header" | "url" | "body" | "message"

/**
 * Why a placeholder was not replaced by its value.
 *
 * - `host-not-allowed`: the destination is not one of the secret's hosts
 * - `insecure-scheme`: plain `http:` to a host not opted in with `allowHttp`
 * - `not-mounted`: the placeholder belongs to no secret mounted for this sandbox
 * - `unavailable`: the mounted secret was deleted
 * - `host-mismatch`: the request names another host than the one it connects to (a `Host` header,
 *   a TLS `servername` or an absolute-form path), so where the value would really go is unclear
 * - `unsafe-position`: the placeholder stands where a value is never put: a header name, a query
 *   key, or a request that upgrades the connection (WebSocket, CONNECT), whose traffic cannot be
 *   scrubbed
 * - `unrestricted`: the secret has no hosts (it may go anywhere) and the agent's `unrestricted`
 *   policy is `"deny"`
 *
 * @since 0.1.0
 */
export type WithheldReason =
  | "host-not-allowed"
  | "unrestricted"
  | "insecure-scheme"
  | "not-mounted"
  | "unavailable"
  | "host-mismatch"
  | "unsafe-position"

/**
 * What every event says about its request.
 *
 * @since 0.2.0
 */
export interface RequestFields {
  /** When it was decided, ISO 8601 (`2026-11-30T08:15:39.123Z`). */
  readonly time: string
  /** The agent's `sandbox` option (the proxy's registration id); `undefined` when none was given. */
  readonly sandbox: string | undefined
  /** The request's method, upper-case (`GET`). */
  readonly method: string
  /** The destination host, normalised (lower-case, no trailing dot; an IPv6 literal without brackets). */
  readonly host: string
  /** The destination port (443 for `https:` unless the origin names another). */
  readonly port: number
  /** The request's path without its query or fragment (placeholders as the caller wrote them). */
  readonly path: string
  readonly surface: Surface
}

/**
 * One thing the egress layer did. Emitted once per secret, surface and decision per request (per
 * connection for a WebSocket: its handshake and messages together). `type` is the decision.
 *
 * @since 0.1.0
 */
export type AuditEvent =
  | (RequestFields & {
    readonly type: "substituted"
    readonly secret: string
    /**
     * The secret has no hosts: its value may go to any host, and went to this one (allowed by the
     * agent's `unrestricted: "allow"`). Worth a look: give the secret hosts.
     */
    readonly unrestricted: boolean
  })
  | (RequestFields & {
    readonly type: "withheld" | "blocked"
    /** The secret's name; `undefined` for a placeholder that is not mounted here. */
    readonly secret: string | undefined
    readonly reason: WithheldReason
  })

/**
 * Receives audit events. Called synchronously on the request path: keep it cheap, and never throw.
 *
 * @since 0.1.0
 */
export type AuditSink = (event: AuditEvent) => void
