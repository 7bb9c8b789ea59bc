/**
 * `@secretgate/undici`: the egress layer. Placeholders in a sandbox's outbound requests become
 * values only for allowed hosts over TLS; values never come back in responses.
 *
 * @since 0.1.0
 */
export * as AuditEvent from "./AuditEvent.js"
export * as AuditFile from "./AuditFile.js"
export * from "./EgressError.js"
export * as Interceptor from "./Interceptor.js"
export { SecretgateAgent } from "./SecretgateAgent.js"
export type { Options as SecretgateAgentOptions } from "./SecretgateAgent.js"
export * as SecretgateHttpClient from "./HttpClient.js"
