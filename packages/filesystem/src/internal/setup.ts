/**
 * The steps of an open before the index exists: the directories, a new store's files (manifest,
 * key file, journal), and the leftovers of killed writers. No state of its own.
 */
import type { FileSystem } from "@effect/platform"
import { KeyRing, StoreCorrupted, type StoreError, StoreUnavailable } from "@secretgate/core"
import { Effect, Option } from "effect"
import * as Path from "node:path"
import { DIRECTORY_MODE, listIfExists, removeDurably, TEMP_PREFIX, unavailable } from "./io.js"
import * as Journal from "./journal.js"
import * as Keys from "./keys.js"
import type { StoreClock } from "./clock.js"
import type { Layout } from "./layout.js"
import * as Lock from "./lock.js"
import type { RecordFiles } from "./recordFiles.js"
import type { StoreKeys } from "./storeKeys.js"

/** Creates `path` as a directory (mode 0700) if missing, and restricts an existing one to 0700. */
export const ensureDirectory = (fs: FileSystem.FileSystem, path: string): Effect.Effect<void, StoreUnavailable> =>
  Effect.gen(function*() {
    yield* fs.makeDirectory(path, { recursive: true, mode: DIRECTORY_MODE }).pipe(
      Effect.mapError(unavailable("create directory", path))
    )
    const info = yield* fs.stat(path).pipe(Effect.mapError(unavailable("stat", path)))
    if (info.type !== "Directory") {
      return yield* Effect.fail(new StoreUnavailable({ message: `${path} exists and is not a directory` }))
    }
    if (process.platform !== "win32" && (info.mode & 0o077) !== 0) {
      yield* fs.chmod(path, DIRECTORY_MODE).pipe(Effect.mapError(unavailable("restrict permissions of", path)))
    }
  })

/** `true` when the manifest, the key file (for generated keys) or the journal is missing or unusable. */
export const needsInitialising = (
  fs: FileSystem.FileSystem,
  paths: Layout,
  keys: StoreKeys
): Effect.Effect<boolean, StoreError> =>
  Effect.gen(function*() {
    const current = yield* Keys.readManifest(fs, paths)
    if (current === undefined || current.keys.length === 0) return true
    if ((yield* Journal.read(fs, paths.journal))._tag !== "Read") return true
    if (keys.source._tag === "Configured") return false
    return (yield* Keys.readKeyFile(fs, paths)) === undefined
  })

/**
 * Under the lock: creates what is missing (manifest, key file, journal). A new store's manifest
 * lists the configured (or generated) keys; an existing manifest is never changed here: keys with
 * new ids are registered only once the open has fully succeeded (`Rotation.registerKeys`), so a
 * failed open (a wrong key under a new id, say) writes nothing to store.json.
 */
export const initialise = (
  fs: FileSystem.FileSystem,
  paths: Layout,
  keys: StoreKeys,
  files: RecordFiles
): Effect.Effect<void, StoreError> =>
  Effect.gen(function*() {
    let current = yield* Keys.readManifest(fs, paths)
    if (current === undefined && (yield* files.any)) {
      return yield* Effect.fail(
        new StoreCorrupted({
          message: `${paths.manifest} is missing but ${paths.records} holds records: restore it from a backup`,
          location: paths.manifest
        })
      )
    }
    let ring: ReadonlyArray<KeyRing.Key>
    if (keys.source._tag === "Configured") {
      ring = [...keys.source.ring.keys.values()]
    } else {
      const inFile = yield* Keys.readKeyFile(fs, paths)
      if (inFile !== undefined) {
        ring = inFile
      } else {
        if (current !== undefined && current.keys.length > 0) return yield* Effect.fail(keys.missingKeyFile())
        ring = [KeyRing.generateKey(Keys.newKeyId(new Set()))]
        yield* Keys.writeKeyFile(fs, paths, ring)
      }
    }
    const fresh = current === undefined
    current ??= Keys.newManifest([])
    const known = current
    yield* Keys.verifyRing(paths, known, KeyRing.make(ring))
    const journal = yield* Journal.read(fs, paths.journal)
    // a brand-new store (no records: checked above) registers its keys at once
    const register = fresh || known.keys.length === 0
    const added = register
      ? ring.filter((key) => !known.keys.some((k) => k.id === key.id) && !known.retired.includes(key.id))
      : []
    if (fresh || added.length > 0) {
      yield* Keys.writeManifest(fs, paths, {
        ...known,
        keys: [...known.keys, ...added.map((key) => ({ id: key.id, check: Keys.keyCheck(key) }))]
      })
    }
    if (journal._tag !== "Read") {
      yield* Journal.create(fs, paths, undefined)
    } else if (added.length > 0) {
      yield* Effect.scoped(Effect.flatMap(
        fs.open(paths.journal, { flag: "a" }).pipe(Effect.mapError(unavailable("open", paths.journal))),
        (file) => Journal.append(file, paths.journal, "K\n")
      ))
    }
  })

/**
 * Removes the leftovers of killed writers: temp files (only ever written under the lock, so
 * removed under it) and lock attempts older than `Lock.LOCK_TEMP_STALE_MS`.
 */
export const removeLeftovers = (
  fs: FileSystem.FileSystem,
  paths: Layout,
  temps: ReadonlyArray<string>,
  underLock: <A, E>(body: Effect.Effect<A, E>) => Effect.Effect<A, E | StoreUnavailable>,
  clock: StoreClock
): Effect.Effect<void, StoreUnavailable> =>
  Effect.gen(function*() {
    // compared with file modification times, which are wall-clock times
    const now = clock.wallMillis()
    const names = yield* listIfExists(fs, paths.root)
    const rootTemps = names.filter((name) => name.startsWith(TEMP_PREFIX) || name === "journal.prev.tmp")
    const lockTemps = names.filter((name) => /^lock\.(?:break\.)?[0-9a-f]+\.(?:tmp|gone)$/.test(name))
    const oldLockTemps: Array<string> = []
    for (const name of lockTemps) {
      const info = yield* fs.stat(Path.join(paths.root, name)).pipe(Effect.option)
      const mtime = Option.flatMap(info, (i) => i.mtime)
      if (Option.isSome(mtime) && now - mtime.value.getTime() > Lock.LOCK_TEMP_STALE_MS) {
        oldLockTemps.push(Path.join(paths.root, name))
      }
    }
    const all = [...temps, ...rootTemps.map((name) => Path.join(paths.root, name))]
    if (all.length > 0) {
      yield* underLock(Effect.forEach(all, (path) => removeDurably(fs, path), { discard: true }))
    }
    yield* Effect.forEach(oldLockTemps, (path) => fs.remove(path).pipe(Effect.ignore), { discard: true })
  })
