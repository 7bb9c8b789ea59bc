/**
 * The store engine: opens a directory and composes the parts of an open store. See
 * docs/filesystem.md for the format and the guarantees, and docs/architecture.md for the map:
 *
 * - `storeKeys`: the keys this process holds (manifest, key ring, cipher);
 * - `recordFiles`: reading, listing and scanning record files;
 * - `liveIndex`: the index, the journal position and open announcements, kept current;
 * - `writer`: the lock, the write path, and what a read does first (`sync`);
 * - `snapshotting`: writing the snapshot, and an open that resumes from it;
 * - `rotation`: key statuses, registration, rotation, reseal, retirement;
 * - `setup`: directories, a new store's files, leftovers;
 * - `secretStore`: the `SecretStore` over all of it;
 * - `changes`: announcements of every write, this process's and other processes' (`SecretChanges`).
 */
import type { FileSystem } from "@effect/platform"
import { DecryptionFailed, type SecretCipher, type SecretStore, type StoreError } from "@secretgate/core"
import { Effect, Option, type Scope } from "effect"
import * as Path from "node:path"
import * as Changes from "./changes.js"
import * as Clock from "./clock.js"
import type { StoreClock } from "./clock.js"
import type { KeyManagementError } from "./errors.js"
import { type Layout, layout } from "./layout.js"
import * as LiveIndex from "./liveIndex.js"
import * as RecordFiles from "./recordFiles.js"
import * as Rotation from "./rotation.js"
import * as SecretStoreOf from "./secretStore.js"
import * as Setup from "./setup.js"
import * as Snapshot from "./snapshot.js"
import * as Snapshotting from "./snapshotting.js"
import * as StoreKeys from "./storeKeys.js"
import * as Writer from "./writer.js"

/** Where the keys come from. */
export type KeySource = StoreKeys.KeySource

/** One key of the store, as key management sees it. */
export type KeyStatus = Rotation.KeyStatus

/** Settings of the engine. */
export interface EngineOptions {
  readonly directory: string
  readonly keys: KeySource
  readonly lockTimeoutMillis: number
  readonly journalLimitBytes: number
  /** Largest snapshot written or read (default `Snapshot.MAX_BYTES`); lowered by tests. */
  readonly snapshotMaxBytes?: number
  /** An open that re-read more record files than this writes a fresh snapshot (default 1,000); lowered by tests. */
  readonly snapshotRefreshFiles?: number
  /** The clocks (default: the system's); tests step the wall clock. */
  readonly clock?: StoreClock
}

/** What the engine offers. */
export interface Engine {
  readonly paths: Layout
  readonly store: SecretStore.SecretStore
  readonly cipher: SecretCipher.SecretCipher
  readonly keys: Effect.Effect<ReadonlyArray<KeyStatus>, StoreError>
  readonly rotateKey: Effect.Effect<KeyStatus, KeyManagementError | StoreError>
  readonly reseal: Effect.Effect<number, StoreError>
  readonly retireKey: (keyId: string) => Effect.Effect<void, KeyManagementError | StoreError>
  /** Starts announcing the store's changes, this process's and others' (see `changes`). */
  readonly changes: (options: Changes.Options) => Effect.Effect<Changes.Feed, never, Scope.Scope>
}

/** An open from the snapshot that had to re-read more record files than this writes a fresh snapshot. */
const SNAPSHOT_REFRESH_FILES = 1_000

/** Opens (creating if needed) the store in `options.directory`. */
export const open = (
  fs: FileSystem.FileSystem,
  options: EngineOptions
): Effect.Effect<Engine, StoreError> =>
  Effect.gen(function*() {
    const paths = layout(Path.resolve(options.directory))
    const clock = options.clock ?? Clock.live
    const keys = StoreKeys.make(fs, paths, options.keys)
    const files = RecordFiles.make(fs, paths, keys)
    const live = LiveIndex.make(fs, paths, keys, files)
    const parts = { fs, paths, keys, files, live }
    const snapshots = Snapshotting.make(parts, options.snapshotMaxBytes ?? Snapshot.MAX_BYTES)
    const writer = Writer.make(parts, {
      lock: { path: paths.lock, breaker: paths.lockBreaker, timeoutMillis: options.lockTimeoutMillis, clock },
      journalLimitBytes: options.journalLimitBytes
    }, snapshots)
    const rotation = Rotation.make(parts, writer, snapshots)

    // the directory and a new store's files
    yield* Setup.ensureDirectory(fs, paths.root)
    yield* Setup.ensureDirectory(fs, paths.records)
    if (yield* Setup.needsInitialising(fs, paths, keys)) yield* writer.underLock(Setup.initialise(fs, paths, keys, files))
    yield* keys.load

    // the index: from the snapshot when it can be trusted, else from every record file
    const resumed = yield* snapshots.resume
    let loaded: RecordFiles.Scan | "repair" = resumed === undefined
      ? yield* live.reload
      : { index: live.index(), temps: resumed.temps, missingKeys: new Map() }
    if (loaded === "repair") {
      yield* writer.underLock(Setup.initialise(fs, paths, keys, files))
      loaded = yield* live.reload
      if (loaded === "repair") return yield* Effect.fail(LiveIndex.journalBroken(paths))
    }
    if (loaded.missingKeys.size > 0) {
      const [[keyId, count]] = [...loaded.missingKeys]
      return yield* Effect.fail(
        new DecryptionFailed({
          message: `${count} record(s) in ${paths.root} are sealed with key ${
            JSON.stringify(keyId)
          }, which is not configured: add it to the key ring (newest key last)`
        })
      )
    }

    // tidy up, register newly configured keys, and refresh the snapshot when the open was slow
    yield* Setup.removeLeftovers(fs, paths, loaded.temps, writer.underLock, clock)
    yield* rotation.registerKeys
    const refreshFiles = options.snapshotRefreshFiles ?? SNAPSHOT_REFRESH_FILES
    if (resumed === undefined || resumed.previousGeneration || resumed.reread > refreshFiles) {
      // takes the lock only if it is free: a busy lock skips it
      yield* writer.tryTransact(snapshots.save).pipe(
        Effect.flatMap(Option.match({
          onNone: () => Effect.logDebug(`snapshot ${paths.snapshot} not written: another process holds the lock`),
          onSome: () => Effect.void
        })),
        Effect.catchAll((error) => Effect.logWarning(`snapshot ${paths.snapshot} not written: ${error.message}`))
      )
    }

    return {
      paths,
      store: SecretStoreOf.make(live, writer),
      cipher: keys.cipher,
      keys: rotation.keys,
      rotateKey: rotation.rotateKey,
      reseal: rotation.reseal,
      retireKey: rotation.retireKey,
      changes: (changes) => Changes.make({ fs, paths, live, files, sync: writer.sync }, changes)
    } satisfies Engine
  })
