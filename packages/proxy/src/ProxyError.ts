/**
 * Errors of the proxy. Each message says what to change; none holds a secret value or a token.
 *
 * @since 0.1.0
 */
import { Data } from "effect"

/**
 * The certificate authority cannot be loaded or kept: a missing half of a pair, a file that is not
 * what it should be, a key readable by other users, an expired certificate.
 *
 * @since 0.1.0
 */
export class CertificateAuthorityError extends Data.TaggedError("CertificateAuthorityError")<{
  readonly message: string
}> {}

/**
 * An option of the proxy or of a registration is not valid (says which and why).
 *
 * @since 0.1.0
 */
export class InvalidProxyOptions extends Data.TaggedError("InvalidProxyOptions")<{
  readonly message: string
  readonly option: string
}> {
  /** @since 0.1.0 */
  static of(option: string, problem: string): InvalidProxyOptions {
    return new InvalidProxyOptions({ message: `${option} ${problem}`, option })
  }
}
