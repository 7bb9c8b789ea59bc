/**
 * `@secretgate/http`: the REST API (one `HttpApi` definition), the server serving any `Secrets`,
 * and `HttpSecrets`, the `Secrets` service over a remote server.
 *
 * @since 0.1.0
 */
export * as ApiKeys from "./ApiKeys.js"
export * as SecretApi from "./SecretApi.js"
export * as SecretServer from "./SecretServer.js"
export * as HttpSecrets from "./HttpSecrets.js"
export * as Telemetry from "./Telemetry.js"
