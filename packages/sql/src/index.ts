/**
 * `@secretgate/sql`: a `SecretStore` on `@effect/sql`. PostgreSQL for many replicas sharing one
 * store; PGlite (PostgreSQL in WebAssembly) embedded, with the same schema and SQL.
 *
 * @since 0.1.0
 */
export * as PgliteClient from "./PgliteClient.js"
export * as SqlSecretStore from "./SqlSecretStore.js"
