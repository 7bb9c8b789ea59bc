/**
 * @since 0.1.0
 */
export * as MemorySecretStore from "./MemorySecretStore.js"
