/**
 * A `SecretStore` on disk: one encrypted, authenticated file per secret in a directory that
 * several processes may share. Writes are atomic and durable (temp file, fsync, rename, fsync of
 * the directory) and serialised across processes by a lock file with stale-lock recovery; every
 * process keeps an in-memory index of the records' metadata (never their sealed values) that a
 * small journal keeps current, so a read costs one `stat` of the journal plus one read of the
 * record file it found, and never scans the store. An open loads that index from an
 * authenticated snapshot tied to a journal position and re-reads only the record files changed
 * since (without a usable snapshot it reads every file). No plaintext value ever reaches the disk.
 * The on-disk format, key management and the guarantees are described in `docs/filesystem.md`.
 *
 * @since 0.1.0
 */
import * as FileSystem from "@effect/platform/FileSystem"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import {
  DecryptionFailed,
  KeyRing,
  SecretChanges,
  SecretCipher,
  Secrets,
  SecretStore,
  type StoreError,
  StoreUnavailable
} from "@secretgate/core"
import { Context, Duration, Effect, Layer, Option, type Redacted, type Scope } from "effect"
import * as Engine from "./internal/engine.js"
import type { KeyManagementError } from "./internal/errors.js"
import { FORMAT_VERSION as CURRENT_FORMAT_VERSION } from "./internal/layout.js"

export {
  /**
   * @since 0.1.0
   */
  KeyManagementError
} from "./internal/errors.js"

/**
 * The on-disk format version this version of the package reads and writes (the `version` field
 * of `store.json` and of every record file). A store of a newer version is refused at open.
 *
 * @since 0.1.0
 */
export const FORMAT_VERSION: number = CURRENT_FORMAT_VERSION

/**
 * Settings of the filesystem backend.
 *
 * @since 0.1.0
 */
export interface Options extends Secrets.Options {
  /** The store directory; created with mode 0700 if missing (an existing one is restricted to 0700). */
  readonly directory: string
  /**
   * The encryption key: 32 bytes as base64 (standard or url-safe), typically from an environment
   * variable. When neither `key` nor `keyRing` is given, the store generates a key and keeps it in
   * `keys.json` (mode 0600) inside the directory.
   */
  readonly key?: Redacted.Redacted<string>
  /** Id of `key` in the store (default `"primary"`), so that it can later be rotated out. */
  readonly keyId?: string
  /** Several keys, oldest first; the last one seals. For rotation with configured keys. */
  readonly keyRing?: KeyRing.KeyRing
  /** How long a write waits for another process's lock before failing with `StoreUnavailable`. Default 10 seconds. */
  readonly lockTimeout?: Duration.DurationInput
  /** Size at which the change journal starts a new generation. Default 4 MiB. */
  readonly journalLimitBytes?: number
  /**
   * How often the journal is checked for other processes' writes, the guarantee behind watching
   * the directory (`layer` and `layerStore` announce every write as `SecretChanges`). Default 1
   * second; 0 turns polling off.
   */
  readonly pollInterval?: Duration.DurationInput
  /**
   * Watch the store directory (`fs.watch`) to see other processes' writes at once; while the
   * watch runs the store says it announces every change (`SecretChanges.live`), so resolvers keep
   * values until one is announced and the REST server offers its watch route. Default true.
   */
  readonly watchDirectory?: boolean
}

/**
 * One key of a store.
 *
 * @since 0.1.0
 */
export interface KeyStatus {
  readonly id: string
  /** New seals use this key. */
  readonly current: boolean
  /** Records sealed with this key. */
  readonly records: number
  /** This process holds the key (it can open those records). */
  readonly held: boolean
}

/**
 * The filesystem store: a `SecretStore` plus key management.
 *
 * Rotation: with a generated key file, `rotateKey` adds a key and re-seals every record; with
 * configured keys, add the new key last to `keyRing`, reopen, and run `reseal`. Either way the old
 * key keeps opening records until `retireKey` removes it, which it refuses while any record still
 * uses it. A crash halfway leaves every record sealed with the old key or the new one; run
 * `reseal` again to finish.
 *
 * @since 0.1.0
 */
export interface FileSystemSecretStore extends SecretStore.SecretStore {
  /** The absolute path of the store directory. */
  readonly directory: string
  /** Cipher over the store's keys, kept current when another process rotates the key file. */
  readonly cipher: SecretCipher.SecretCipher
  /**
   * The store's keys and how many records each one seals, as the index knows them (a read of a
   * record file keeps its entry current; `reseal` and `retireKey` read every file).
   */
  readonly keys: Effect.Effect<ReadonlyArray<KeyStatus>, StoreError>
  /** Generated key files only: adds a new current key and re-seals every record with it. */
  readonly rotateKey: Effect.Effect<KeyStatus, KeyManagementError | StoreError>
  /**
   * Re-seals every record not sealed with the current key; returns how many. Safe to re-run. Reads
   * every record file under the lock first (writers wait: ~6–11 s at 100,000 secrets).
   */
  readonly reseal: Effect.Effect<number, StoreError>
  /**
   * Forgets a key no record uses any more (and removes it from a generated key file); decided from
   * every record file, read under the lock, never from the index alone.
   */
  readonly retireKey: (keyId: string) => Effect.Effect<void, KeyManagementError | StoreError>
}

/**
 * @since 0.1.0
 */
export const FileSystemSecretStore = Context.GenericTag<FileSystemSecretStore>(
  "@secretgate/filesystem/FileSystemSecretStore"
)

const keySource = (options: Options): Effect.Effect<Engine.KeySource, DecryptionFailed> => {
  if (options.key !== undefined && options.keyRing !== undefined) {
    return Effect.fail(new DecryptionFailed({ message: "configure either key or keyRing, not both" }))
  }
  if (options.keyRing !== undefined) return Effect.succeed({ _tag: "Configured", ring: options.keyRing })
  if (options.key === undefined) return Effect.succeed({ _tag: "File" })
  const key = options.key
  return Effect.try({
    try: () => ({ _tag: "Configured", ring: KeyRing.make([KeyRing.keyFromBase64(options.keyId ?? "primary", key)]) }) as const,
    catch: (error) =>
      new DecryptionFailed({ message: `the configured key is not usable: ${(error as Error).message}` })
  })
}

/**
 * Opens (creating if needed) the store in `options.directory`. Fails at open, not later, when the
 * key is wrong (`DecryptionFailed`), a file the store needs is damaged or of a newer format
 * (`StoreCorrupted`), or the directory cannot be used (`StoreUnavailable`).
 *
 * @since 0.1.0
 */
export const make = (
  options: Options
): Effect.Effect<FileSystemSecretStore, StoreError, FileSystem.FileSystem> =>
  Effect.gen(function*() {
    const fs = yield* FileSystem.FileSystem
    if (options.directory.trim() === "") {
      return yield* Effect.fail(new StoreUnavailable({ message: "the store directory must not be empty" }))
    }
    const engine = yield* Engine.open(fs, {
      directory: options.directory,
      keys: yield* keySource(options),
      lockTimeoutMillis: Duration.toMillis(Duration.decode(options.lockTimeout ?? Duration.seconds(10))),
      journalLimitBytes: options.journalLimitBytes ?? 4 * 1024 * 1024
    })
    const store = FileSystemSecretStore.of({
      ...engine.store,
      directory: engine.paths.root,
      cipher: engine.cipher,
      keys: engine.keys,
      rotateKey: engine.rotateKey,
      reseal: engine.reseal,
      retireKey: engine.retireKey
    })
    engines.set(store, engine)
    return store
  })

// the engine behind each store `make` opened, for `announcing`
const engines = new WeakMap<FileSystemSecretStore, Engine.Engine>()

/**
 * The store with its changes announced: `SecretChanges` for every write, this process's (before
 * the write's effect completes) and other processes' on the same directory (see `pollInterval`
 * and `watchDirectory`), until the scope closes.
 *
 * @since 0.1.0
 */
export const announcing = (
  store: FileSystemSecretStore,
  options: Pick<Options, "pollInterval" | "watchDirectory"> = {}
): Effect.Effect<{ readonly store: FileSystemSecretStore; readonly changes: SecretChanges.SecretChanges }, never, Scope.Scope> =>
  Effect.gen(function*() {
    const engine = engines.get(store)
    if (engine === undefined) return yield* Effect.dieMessage("FileSystemSecretStore.announcing: not a store opened by make")
    const pollInterval = Duration.decodeUnknown(options.pollInterval ?? "1 second")
    // (a negative or NaN number of milliseconds would decode as 0: refused, not taken as "off")
    const given = options.pollInterval
    const pollMillis = typeof given === "number" && !(given >= 0)
      ? Number.NaN
      : Option.match(pollInterval, { onNone: () => Number.NaN, onSome: Duration.toMillis })
    if (!(pollMillis >= 0 && pollMillis < 2 ** 31)) {
      return yield* Effect.dieMessage(
        `FileSystemSecretStore: pollInterval must be a duration from 0 (no polling) to 24 days (got ${String(options.pollInterval)})`
      )
    }
    const feed = yield* engine.changes({
      pollInterval: Duration.millis(pollMillis),
      watch: options.watchDirectory ?? true
    })
    const announced = FileSystemSecretStore.of({
      ...store,
      insert: (record, quota) => Effect.ensuring(store.insert(record, quota), feed.check),
      update: (organizationId, id, change) => Effect.ensuring(store.update(organizationId, id, change), feed.check),
      delete: (organizationId, id) => Effect.ensuring(store.delete(organizationId, id), feed.check)
    })
    engines.set(announced, engine)
    return { store: announced, changes: feed.changes }
  })

/**
 * Provides the `SecretStore` (also as `FileSystemSecretStore`), the `SecretCipher` over the
 * store's keys and the store's `SecretChanges` (see `announcing`), on whatever `FileSystem` is
 * provided.
 *
 * @since 0.1.0
 */
export const layerStore = (
  options: Options
): Layer.Layer<
  FileSystemSecretStore | SecretStore.SecretStore | SecretCipher.SecretCipher | SecretChanges.SecretChanges,
  StoreError,
  FileSystem.FileSystem
> =>
  Layer.scopedContext(
    Effect.flatMap(make(options), (opened) =>
      Effect.map(announcing(opened, options), ({ changes, store }) =>
        Context.make(FileSystemSecretStore, store).pipe(
          Context.add(SecretStore.SecretStore, store),
          Context.add(SecretCipher.SecretCipher, store.cipher),
          Context.add(SecretChanges.SecretChanges, changes)
        )))
  )

/**
 * Provides `Secrets` over a store directory on the Node file system, with its `SecretStore` and
 * `FileSystemSecretStore`: the one layer an application needs.
 *
 * @since 0.1.0
 * @example
 * ```ts
 * import { Secretgate } from "@secretgate/core"
 * import { FileSystemSecretStore } from "@secretgate/filesystem"
 * import { Redacted } from "effect"
 *
 * const gate = new Secretgate({
 *   layer: FileSystemSecretStore.layer({
 *     directory: "/var/lib/secretgate",
 *     key: Redacted.make(process.env.SECRETGATE_KEY!) // omit to use a generated key file
 *   }),
 *   organizationId: "acme"
 * })
 * ```
 */
export const layer = (
  options: Options
): Layer.Layer<
  Secrets.Secrets | SecretStore.SecretStore | FileSystemSecretStore | SecretCipher.SecretCipher | SecretChanges.SecretChanges,
  StoreError
> =>
  Secrets.layer(options).pipe(
    Layer.provideMerge(layerStore(options)),
    Layer.provide(NodeFileSystem.layer)
  )
