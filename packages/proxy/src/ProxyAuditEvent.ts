/**
 * What the proxy reports: the egress agent's events (`substituted`, `withheld`, `blocked`) for the
 * requests it forwarded, and its own events about connections — `intercepted`, `tunnelled`,
 * `refused` and `tls-rejected`. Every event has its `time` (ISO 8601) and names the sandbox
 * (`undefined` when the client did not say which, e.g. a missing token); none holds a value, a
 * token or a query string. The schema is in `docs/egress.md` and `docs/proxy.md`.
 *
 * @since 0.1.0
 */
import type { AuditEvent } from "@secretgate/undici"

/**
 * Why the proxy refused a connection or request.
 *
 * - `unauthenticated`: no valid sandbox token (`407`)
 * - `host-not-allowed`: outside the sandbox's `allowedHosts` (`403`)
 * - `private-destination`: the host is, or resolves to, a loopback, private, link-local (cloud
 *   metadata) or otherwise non-public address the proxy was not told to allow
 *   (`allowPrivateDestinations`) (`403`)
 * - `too-many-connections`: the sandbox's connection limit was reached (`429`)
 * - `bad-request`: a malformed CONNECT target or request, or a request to the proxy itself (`400`)
 * - `https-absolute-form`: an `https://` request sent in clear to the proxy; no TLS downgrade (`400`)
 * - `sni-mismatch`: the TLS server name differs from the CONNECT host
 * - `upgrade-not-supported`: an upgrade other than WebSocket on an intercepted host (`501`)
 * - `resolution-failed`: the sandbox's secrets could not be loaded to decide (`503`)
 * - `upstream-unreachable`: the tunnel's upstream could not be reached (`502`)
 * - `handshake-timeout`: the client did not complete its TLS handshake in time
 *
 * @since 0.1.0
 */
export type RefusedReason =
  | "unauthenticated"
  | "host-not-allowed"
  | "private-destination"
  | "too-many-connections"
  | "bad-request"
  | "https-absolute-form"
  | "sni-mismatch"
  | "upgrade-not-supported"
  | "resolution-failed"
  | "upstream-unreachable"
  | "handshake-timeout"

/**
 * An event of the proxy itself.
 *
 * @since 0.1.0
 */
export type ConnectionEvent = ConnectionEventFields & (
  | {
    /** TLS terminated: the sandbox has a secret that may go to this host, or `block` inspects every host. */
    readonly type: "intercepted"
    readonly sandbox: string
    readonly host: string
    readonly port: number
  }
  | {
    /** Passed on byte for byte: nothing of this sandbox may be substituted for this host. */
    readonly type: "tunnelled"
    readonly sandbox: string
    readonly host: string
    readonly port: number
  }
  | {
    readonly type: "refused"
    readonly sandbox: string | undefined
    readonly host: string | undefined
    readonly reason: RefusedReason
    /** The HTTP status sent, when one was. */
    readonly status: number | undefined
    /** What happened and what to do, for a person. */
    readonly message: string
  }
  | {
    /**
     * The client hung up on the proxy's certificate: it does not trust the CA (the CA variables
     * were ignored) or it pins the host's own certificate.
     */
    readonly type: "tls-rejected"
    readonly sandbox: string
    readonly host: string
    /** The TLS alert the client sent (`unknown ca`, `bad certificate`, ...), when it sent one. */
    readonly alert: string | undefined
    readonly message: string
  }
)

/**
 * What every event of the proxy itself has.
 *
 * @since 0.2.0
 */
export interface ConnectionEventFields {
  /** When it happened, ISO 8601. */
  readonly time: string
}

/**
 * An event as the proxy's code reports it: the time is added when it is reported.
 *
 * @since 0.2.0
 */
export type UntimedConnectionEvent = ConnectionEvent extends infer E ? E extends unknown ? Omit<E, "time"> : never : never

/**
 * Any event the proxy reports: its own, or the egress agent's with the sandbox named.
 *
 * @since 0.1.0
 */
export type ProxyAuditEvent = ConnectionEvent | (AuditEvent.AuditEvent & { readonly sandbox: string })

/**
 * Receives events. Called synchronously on the proxy's path: keep it cheap, and never throw.
 *
 * @since 0.1.0
 */
export type AuditSink = (event: ProxyAuditEvent) => void
