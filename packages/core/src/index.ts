/**
 * `@secretgate/core`: the domain, host matching, placeholders, substitution, crypto, the services
 * and the Promise facade. Every backend and adapter builds on it.
 *
 * @since 0.1.0
 */
export * as Automaton from "./Automaton.js"
export * as HostPattern from "./HostPattern.js"
export * as KeyRing from "./KeyRing.js"
export * as Placeholder from "./Placeholder.js"
export * as SandboxMount from "./SandboxMount.js"
export * as PrivateFile from "./PrivateFile.js"
export * as Secret from "./Secret.js"
export * as SecretAudit from "./SecretAudit.js"
export * as SecretChanges from "./SecretChanges.js"
export * as SecretCipher from "./SecretCipher.js"
export * as SecretResolver from "./SecretResolver.js"
export * as Secrets from "./Secrets.js"
export * as SecretStore from "./SecretStore.js"
export * as Substitution from "./Substitution.js"
export * as UnreadBody from "./UnreadBody.js"
export * from "./SecretError.js"
export { SecretService, Secretgate, unwrap } from "./Secretgate.js"
export type { CreateSecretParams, Options as SecretgateOptions, UpdateSecretParams } from "./Secretgate.js"
