/**
 * Errors the egress layer fails a request with. Each message says what to change, and none
 * contains a secret value.
 *
 * @since 0.1.0
 */
import { Data } from "effect"
import type { Surface, WithheldReason } from "./AuditEvent.js"

/**
 * With `onDisallowed: "block"`, a placeholder that may not be substituted for this destination
 * fails the request. For a body of known length this happens before any byte is sent; a streamed
 * body is cut off before the chunk holding the placeholder.
 *
 * @since 0.1.0
 */
export class SubstitutionBlocked extends Data.TaggedError("SubstitutionBlocked")<{
  readonly message: string
  readonly secret: string | undefined
  readonly host: string
  readonly surface: Surface
  readonly reason: WithheldReason
}> {
  /** undici and Node's fetch surface `code` on errors. @since 0.1.0 */
  readonly code = "SECRETGATE_BLOCKED"
}

/**
 * A secret's value cannot be put where its placeholder stands: a header value with CR, LF, NUL
 * or another control character (it could split the request), for instance.
 *
 * @since 0.1.0
 */
export class UnsafeSubstitution extends Data.TaggedError("UnsafeSubstitution")<{
  readonly message: string
  readonly secret: string
  readonly surface: Surface
}> {
  /** @since 0.1.0 */
  readonly code = "SECRETGATE_UNSAFE_VALUE"
}

/**
 * The request or response cannot be processed safely (e.g. a body type the interceptor cannot
 * scan, or a response encoding it cannot scrub).
 *
 * @since 0.1.0
 */
export class EgressRefused extends Data.TaggedError("EgressRefused")<{
  readonly message: string
}> {
  /** @since 0.1.0 */
  readonly code = "SECRETGATE_REFUSED"
}

/**
 * The values of the mounted secrets could not be loaded (backend down, key missing, ...).
 *
 * @since 0.1.0
 */
export class ResolutionFailed extends Data.TaggedError("ResolutionFailed")<{
  readonly message: string
  readonly cause?: unknown
}> {
  /** @since 0.1.0 */
  readonly code = "SECRETGATE_RESOLUTION_FAILED"
}

/**
 * A request's URL (path or query, in any escape syntax the scrubber knows) holds the value of a
 * secret that may not go to its destination: a redirect whose `Location` echoed a value in a form
 * that slipped past scrubbing, say. The request is refused before anything is sent.
 *
 * @since 0.2.0
 */
export class DisallowedValue extends Data.TaggedError("DisallowedValue")<{
  readonly message: string
  /** The secret's name (never its value). */
  readonly secret: string
  readonly host: string
}> {
  /** @since 0.2.0 */
  readonly code = "SECRETGATE_DISALLOWED_VALUE"
}
