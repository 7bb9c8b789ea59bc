/**
 * Audit events: what the egress layer did with each placeholder it met. They name the secret, the
 * destination host and the surface, never a value.
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
 *
 * @since 0.1.0
 */
export type WithheldReason =
  | "host-not-allowed"
  | "insecure-scheme"
  | "not-mounted"
  | "unavailable"
  | "host-mismatch"
  | "unsafe-position"

/**
 * One thing the egress layer did. Emitted once per secret and surface per request (per connection
 * for a WebSocket: its handshake and messages together).
 *
 * @since 0.1.0
 */
export type AuditEvent =
  | {
    readonly type: "substituted"
    readonly secret: string
    readonly host: string
    readonly surface: Surface
  }
  | {
    readonly type: "withheld" | "blocked"
    /** The secret's name; `undefined` for a placeholder that is not mounted here. */
    readonly secret: string | undefined
    readonly host: string
    readonly surface: Surface
    readonly reason: WithheldReason
  }

/**
 * Receives audit events. Called synchronously on the request path: keep it cheap, and never throw.
 *
 * @since 0.1.0
 */
export type AuditSink = (event: AuditEvent) => void
