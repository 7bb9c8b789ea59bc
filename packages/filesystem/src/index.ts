/**
 * `@secretgate/filesystem`: secrets on disk, encrypted at rest, atomic and safe for several
 * processes sharing one directory.
 *
 * @since 0.1.0
 */
export * as FileSystemSecretStore from "./FileSystemSecretStore.js"
