/**
 * `@secretgate/proxy`: the same egress for any process. An HTTPS forward proxy that intercepts TLS
 * per sandbox and sends the decrypted requests through `@secretgate/undici`'s agent, so that curl,
 * Python, git, Go and Node programs get placeholders substituted (and values scrubbed) exactly as
 * in-process code does.
 *
 * @since 0.1.0
 */
export * as CertificateAuthority from "./CertificateAuthority.js"
export * as ProxyAuditEvent from "./ProxyAuditEvent.js"
export * from "./ProxyError.js"
export { SecretgateProxy } from "./SecretgateProxy.js"
export type {
  Limits as SecretgateProxyLimits,
  Options as SecretgateProxyOptions,
  Registration,
  RegisterOptions
} from "./SecretgateProxy.js"
