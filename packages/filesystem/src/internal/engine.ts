/**
 * The store engine: opens a directory, keeps the in-memory index current from the journal, and
 * performs every write under the cross-process lock. See docs/filesystem.md for the format and the
 * guarantees.
 */
import type { FileSystem } from "@effect/platform"
import {
  DecryptionFailed,
  KeyRing,
  QuotaExceeded,
  SecretCipher,
  SecretNameTaken,
  SecretNotFound,
  SecretStore,
  StoreCorrupted,
  type StoreError,
  StoreUnavailable
} from "@secretgate/core"
import { Effect, Either, Exit, Option } from "effect"
import * as Path from "node:path"
import { KeyManagementError } from "./errors.js"
import {
  DIRECTORY_MODE,
  listIfExists,
  readBounded,
  removeDurably,
  syncDirectory,
  TEMP_PREFIX,
  unavailable,
  writeAtomic
} from "./io.js"
import * as Journal from "./journal.js"
import * as Keys from "./keys.js"
import { fileKeyOf, fileKeyOfName, isShard, type Layout, layout, recordPath, shardOf } from "./layout.js"
import * as Lock from "./lock.js"
import * as RecordFile from "./recordFile.js"
import { type Entry, type Meta, metaOf, RecordIndex } from "./recordIndex.js"
import * as Snapshot from "./snapshot.js"

type SecretRecord = SecretStore.SecretRecord

/** Where the keys come from. */
export type KeySource =
  | { readonly _tag: "Configured"; readonly ring: KeyRing.KeyRing }
  | { readonly _tag: "File" }

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
}

/** One key of the store, as key management sees it. */
export interface KeyStatus {
  readonly id: string
  /** New seals use this key. */
  readonly current: boolean
  /** Records sealed with it. */
  readonly records: number
  /** This process holds the key's bytes. */
  readonly held: boolean
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
}

const RESEAL_BATCH = 64
/** An announcement (B) open this long makes a reader try the lock once to close it (its writer likely died). */
const PENDING_CLOSE_MS = 500
/** An open from the snapshot that had to re-read more record files than this writes a fresh snapshot. */
const SNAPSHOT_REFRESH_FILES = 1_000

/** The fields an update never changes: records that differ in one of them are different records. */
const sameIdentity = (a: Meta | SecretRecord, b: Meta | SecretRecord): boolean =>
  a.id === b.id && a.organizationId === b.organizationId && a.name === b.name && a.placeholder === b.placeholder &&
  a.createdAt.getTime() === b.createdAt.getTime()

const sameHosts = (a: ReadonlyArray<string>, b: ReadonlyArray<string>): boolean =>
  a.length === b.length && a.every((host, i) => host === b[i])

/** Whether the index's `meta` says what the authentic `record` (read from its file) says. */
const sameMeta = (meta: Meta, record: SecretRecord | undefined): boolean =>
  record !== undefined && sameIdentity(meta, record) && meta.description === record.description &&
  sameHosts(meta.hosts, record.hosts) && meta.keyId === record.sealed.keyId &&
  meta.updatedAt.getTime() === record.updatedAt.getTime()

/** Opens (creating if needed) the store in `options.directory`. */
export const open = (
  fs: FileSystem.FileSystem,
  options: EngineOptions
): Effect.Effect<Engine, StoreError> =>
  Effect.gen(function*() {
    const paths = layout(Path.resolve(options.directory))
    const snapshotMaxBytes = options.snapshotMaxBytes ?? Snapshot.MAX_BYTES
    const snapshotRefreshFiles = options.snapshotRefreshFiles ?? SNAPSHOT_REFRESH_FILES
    const lockOptions = { path: paths.lock, breaker: paths.lockBreaker, timeoutMillis: options.lockTimeoutMillis }

    // -- state of this process -------------------------------------------------------------------
    let manifest: Keys.Manifest = undefined as unknown as Keys.Manifest // set by loadKeys
    let knownKeyIds: ReadonlySet<string> = new Set()
    let retiredKeyIds: ReadonlySet<string> = new Set()
    let ring: KeyRing.KeyRing = undefined as unknown as KeyRing.KeyRing // set by loadKeys before any use
    /** Keys this process held before another process retired them: only to re-seal a late write. */
    const previousKeys = new Map<string, KeyRing.Key>()
    let cipher: SecretCipher.SecretCipher = undefined as unknown as SecretCipher.SecretCipher // set by loadKeys
    let index = new RecordIndex()
    let position: Journal.Position
    /** Record files a writer announced (B) and has not yet confirmed (C): re-read on every sync. */
    let pending = new Set<string>()
    const shards = new Set<string>()
    const syncMutex = Effect.unsafeMakeSemaphore(1)
    const writeMutex = Effect.unsafeMakeSemaphore(1)

    // -- keys --------------------------------------------------------------------------------------
    const ringFrom = (keys: ReadonlyArray<KeyRing.Key>) => KeyRing.make(keys)

    const missingKeyFile = () =>
      new DecryptionFailed({
        message: `the store's key file ${paths.keyFile} is missing: restore it from a backup, or configure the store's key`
      })

    const retiredCurrentKey = (keyId: string) =>
      new DecryptionFailed({
        message: `key ${
          JSON.stringify(keyId)
        } was retired from the store in ${paths.manifest} and cannot seal again: configure a newer key last in the key ring`
      })

    /**
     * (Re)reads the manifest and, for generated keys, the key file; refuses a wrong key. Retired
     * keys are dropped from the ring (refused outright when one is the key that would seal).
     */
    const loadKeys = Effect.gen(function*() {
      const read = yield* Keys.readManifest(fs, paths)
      if (read === undefined) {
        return yield* Effect.fail(
          new StoreCorrupted({ message: `${paths.manifest} is missing: restore it from a backup`, location: paths.manifest })
        )
      }
      let nextRing: KeyRing.KeyRing
      if (options.keys._tag === "Configured") {
        nextRing = options.keys.ring
      } else {
        const keys = yield* Keys.readKeyFile(fs, paths)
        if (keys === undefined) return yield* Effect.fail(missingKeyFile())
        nextRing = ringFrom(keys)
      }
      yield* Keys.verifyRing(paths, read, nextRing)
      const retired = new Set(read.retired)
      if ([...nextRing.keys.keys()].some((id) => retired.has(id))) {
        // a retired key is never used again, even if still configured
        if (retired.has(nextRing.current.id)) return yield* Effect.fail(retiredCurrentKey(nextRing.current.id))
        nextRing = ringFrom([...nextRing.keys.values()].filter((key) => !retired.has(key.id)))
      }
      manifest = read
      knownKeyIds = new Set(read.keys.map((key) => key.id))
      retiredKeyIds = retired
      for (const key of ring === undefined ? [] : ring.keys.values()) {
        if (!nextRing.keys.has(key.id)) previousKeys.set(key.id, key)
      }
      ring = nextRing
      cipher = SecretCipher.make(nextRing)
    })

    // -- directories -------------------------------------------------------------------------------
    const ensureDirectory = (path: string) =>
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

    const ensureShard = (shard: string) =>
      shards.has(shard) ? Effect.void : Effect.gen(function*() {
        const path = Path.join(paths.records, shard)
        yield* fs.makeDirectory(path, { recursive: true, mode: DIRECTORY_MODE }).pipe(
          Effect.mapError(unavailable("create directory", path))
        )
        yield* syncDirectory(fs, paths.records)
        shards.add(shard)
      })

    // -- reading records ---------------------------------------------------------------------------
    /**
     * One record file. Only real I/O errors fail (`StoreUnavailable`); a file no record can be (a
     * directory, too large, not UTF-8) is damage of that one record, like a file that fails to parse.
     */
    const readRecord = (fileKey: string): Effect.Effect<RecordFile.Decoded | undefined, StoreUnavailable> => {
      const path = recordPath(paths, fileKey)
      return Effect.map(readBounded(fs, path, RecordFile.MAX_FILE_BYTES), (read): RecordFile.Decoded | undefined => {
        if (read === undefined) return undefined
        if (read._tag === "Odd") {
          return { _tag: "Damaged", damage: RecordFile.damaged(fileKey, path, read.why, { id: fileKey }) }
        }
        return RecordFile.decode(fileKey, path, read.text, ring.keys, knownKeyIds, retiredKeyIds)
      })
    }

    const entryOf = (fileKey: string, decoded: RecordFile.Decoded): Entry =>
      decoded._tag === "Record"
        ? { _tag: "Record", record: metaOf(decoded.record), path: recordPath(paths, fileKey) }
        : { _tag: "Damaged", damage: decoded.damage }

    /** What the index keeps of one record file (never its sealed value), or `undefined` when it is gone. */
    interface Indexed {
      readonly entry: Entry
      /** Set when the file is sealed with a key the store knows and this process does not hold. */
      readonly missingKey: string | undefined
    }

    const readEntry = (fileKey: string): Effect.Effect<Indexed | undefined, StoreUnavailable> =>
      Effect.map(readRecord(fileKey), (decoded) =>
        decoded === undefined ? undefined : {
          entry: entryOf(fileKey, decoded),
          missingKey: decoded._tag === "MissingKey" ? decoded.keyId : undefined
        })

    /**
     * The whole record behind `meta`, read from its file (the index holds no sealed values). The
     * file is at least as new as the index (it was synced first): `undefined` when another process
     * removed it since; a damaged file fails with its damage.
     *
     * The file is authentic, so it is the truth: when its metadata differs from the index's (an
     * older copy put back behind the store's back, say, after an open that took the index from the
     * snapshot), the index is corrected from it, so that listings, key counts, `reseal` and
     * `retireKey` see what the file holds. A file that holds another record under this id (another
     * organization, name, placeholder or creation time: the id was reused, or an old copy of
     * another record was put back) reads as `undefined`, as the record we indexed is gone.
     */
    const load = (meta: Meta): Effect.Effect<SecretRecord | undefined, StoreError> => {
      const fileKey = fileKeyOf(meta.id)
      return Effect.flatMap(readRecord(fileKey), (decoded) => {
        if (decoded !== undefined && decoded._tag !== "Record") return Effect.fail(decoded.damage.error)
        const record = decoded?.record
        const indexed = index.get(fileKey)
        // only while the index still holds what the lookup found: a re-read meanwhile (another
        // fiber caught up with the journal) is at least as new as this read
        if (indexed?._tag === "Record" && indexed.record === meta && !sameMeta(meta, record)) {
          const path = recordPath(paths, fileKey)
          index.set(fileKey, record === undefined ? undefined : { _tag: "Record", record: metaOf(record), path })
        }
        if (record === undefined || !sameIdentity(meta, record)) return Effect.succeed(undefined)
        return Effect.succeed(record)
      })
    }

    /** Re-reads these record files into the index: removals first, so a freed name can be reused. */
    const reread = (fileKeys: Iterable<string>) =>
      Effect.gen(function*() {
        const keys = [...fileKeys]
        if (keys.length === 0) return
        const read = yield* Effect.forEach(keys, readEntry, { concurrency: 8 })
        keys.forEach((fileKey, i) => {
          if (read[i] === undefined) index.set(fileKey, undefined)
        })
        keys.forEach((fileKey, i) => {
          const indexed = read[i]
          if (indexed !== undefined) index.set(fileKey, indexed.entry)
        })
      })

    interface Scan {
      readonly index: RecordIndex
      readonly temps: ReadonlyArray<string>
      readonly missingKeys: ReadonlyMap<string, number>
    }

    /** The record files and leftover temp files in the shard directories: names only, no file is read. */
    const listRecordFiles = Effect.gen(function*() {
      const temps: Array<string> = []
      const files: Array<string> = []
      const shardNames = (yield* listIfExists(fs, paths.records)).filter(isShard)
      yield* Effect.forEach(shardNames, (shard) =>
        Effect.map(listIfExists(fs, Path.join(paths.records, shard)), (names) => {
          shards.add(shard)
          for (const name of names) {
            if (name.startsWith(TEMP_PREFIX)) temps.push(Path.join(paths.records, shard, name))
            const fileKey = fileKeyOfName(shard, name)
            if (fileKey !== undefined) files.push(fileKey)
          }
        }), { concurrency: 8, discard: true })
      return { temps, files }
    })

    /** Reads every record file: at open, and when this process fell too far behind the journal. */
    const scan = Effect.gen(function*() {
      const { files, temps } = yield* listRecordFiles
      // each file is reduced to its metadata as soon as it is read: no sealed value is kept
      const decoded = yield* Effect.forEach(files, readEntry, { concurrency: 32 })
      const missingKeys = new Map<string, number>()
      const entries: Array<readonly [string, Entry]> = []
      files.forEach((fileKey, i) => {
        const result = decoded[i]
        if (result === undefined) return // removed since the directory was listed
        if (result.missingKey !== undefined) {
          missingKeys.set(result.missingKey, (missingKeys.get(result.missingKey) ?? 0) + 1)
        }
        entries.push([fileKey, result.entry])
      })
      // oldest first, so that listings in creation order need little sorting
      const time = (entry: Entry) => (entry._tag === "Record" ? entry.record.createdAt.getTime() : 0)
      entries.sort((a, b) => time(a[1]) - time(b[1]))
      const fresh = new RecordIndex()
      for (const [fileKey, entry] of entries) fresh.set(fileKey, entry)
      return { index: fresh, temps, missingKeys } satisfies Scan
    })

    // -- the journal -------------------------------------------------------------------------------
    const pendingOf = (entries: ReadonlyArray<Journal.Entry>, start: ReadonlySet<string>) => {
      const open = new Set(start)
      const changed = new Set<string>()
      let keys = false
      for (const entry of entries) {
        if (entry.op === "K") keys = true
        else if (entry.op === "B") open.add(entry.fileKey)
        else {
          open.delete(entry.fileKey)
          changed.add(entry.fileKey)
        }
      }
      return { open, changed, keys }
    }

    /** Replaces the whole index: journal position first, then the records, so nothing is missed. */
    const reload = Effect.gen(function*() {
      const segment = yield* Journal.read(fs, paths.journal)
      if (segment._tag !== "Read") return "repair" as const
      const { keys, open } = pendingOf(segment.entries, new Set())
      if (keys) yield* loadKeys
      const scanned = yield* scan
      index = scanned.index
      position = segment.position
      pending = open
      yield* reread(pending)
      return scanned
    })

    /** `position` after appending, read from the open journal. */
    const appendJournal = (lines: string) =>
      Effect.scoped(Effect.gen(function*() {
        const file = yield* fs.open(paths.journal, { flag: "a" }).pipe(Effect.mapError(unavailable("open", paths.journal)))
        yield* Journal.append(file, paths.journal, lines)
        const info = yield* file.stat.pipe(Effect.mapError(unavailable("stat", paths.journal)))
        const size = Number(info.size)
        position = {
          generation: position.generation,
          ino: Option.getOrElse(info.ino, () => 0),
          size,
          mtimeMs: Option.match(info.mtime, { onNone: () => 0, onSome: (date) => date.getTime() }),
          offset: size
        }
      }))

    /**
     * Brings the index up to date with the journal. Without the lock, a journal that needs repair
     * is reported as "repair"; with it (`locked`), it is repaired here.
     */
    const catchUp = (locked: boolean): Effect.Effect<"ok" | "repair", StoreError> =>
      locked ? Effect.zipLeft(follow(true), cutTornLine) : follow(false)

    /** A torn last line (a writer lost power mid-append): nobody has consumed it, so the lock holder cuts it off. */
    const cutTornLine = Effect.suspend(() =>
      position.offset < position.size
        ? fs.truncate(paths.journal, position.offset).pipe(
          Effect.mapError(unavailable("truncate", paths.journal)),
          Effect.tap(() => {
            position = { ...position, size: position.offset }
          })
        )
        : Effect.void
    )

    /** What the journal holds after a position. */
    type Since =
      | { readonly _tag: "Lines"; readonly entries: ReadonlyArray<Journal.Entry>; readonly next: Journal.Position }
      /** The position is gone (more than one generation behind, or no longer in the file), or a line nobody can read might have named any record. */
      | { readonly _tag: "Lost" }
      /** The journal is missing or not a journal. */
      | { readonly _tag: "Repair" }

    /** The journal lines after `from`: in its generation, and in the next one when `from` is now in `journal.prev`. */
    const linesSince = (from: Journal.Position): Effect.Effect<Since, StoreError> =>
      Effect.gen(function*() {
        const current = yield* Journal.read(fs, paths.journal, { from: from.offset, expected: from.generation })
        if (current._tag !== "Read") return { _tag: "Repair" } as const
        if (current.generation === from.generation) {
          if (from.offset > current.position.size || current.garbled) return { _tag: "Lost" } as const
          return { _tag: "Lines", entries: current.entries, next: current.position } as const
        }
        // a new generation: finish the old one (now journal.prev) unless we fell further behind
        const previous = yield* Journal.read(fs, paths.journalPrevious, { from: from.offset, expected: from.generation })
        const fresh = yield* Journal.read(fs, paths.journal)
        if (
          previous._tag !== "Read" || previous.generation !== from.generation || from.offset > previous.position.size ||
          fresh._tag !== "Read" || fresh.previous !== from.generation || previous.garbled || fresh.garbled
        ) return { _tag: "Lost" } as const
        return { _tag: "Lines", entries: [...previous.entries, ...fresh.entries], next: fresh.position } as const
      })

    const follow = (locked: boolean): Effect.Effect<"ok" | "repair", StoreError> =>
      Effect.gen(function*() {
        const since = yield* linesSince(position)
        if (since._tag === "Repair") {
          if (!locked) return "repair" as const
          yield* Journal.create(fs, paths, undefined)
          const reloaded = yield* reload
          return reloaded === "repair" ? yield* Effect.fail(journalBroken()) : "ok" as const
        }
        if (since._tag === "Lost") {
          // fell too far behind, or a line we cannot read might have named any record: rescan
          const reloaded = yield* reload
          if (reloaded === "repair") return locked ? yield* follow(locked) : "repair" as const
          return "ok" as const
        }
        const { changed, keys, open } = pendingOf(since.entries, pending)
        if (keys) yield* loadKeys
        yield* reread(new Set([...changed, ...open]))
        pending = open
        position = since.next
        return "ok" as const
      })

    const journalBroken = () =>
      new StoreCorrupted({
        message: `${paths.journal} is unreadable even after it was recreated`,
        location: paths.journal
      })

    const sameAsPosition = (now: { readonly ino: number; readonly size: number; readonly mtimeMs: number } | undefined) =>
      now !== undefined && now.ino === position.ino && now.size === position.size && now.mtimeMs === position.mtimeMs

    /** When this process first saw each open announcement (B without C), to notice dead writers'. */
    const pendingSeen = new Map<string, number>()
    let lastCloseAttempt = 0

    /**
     * `true` when an announcement has stayed open longer than a write takes: its writer is likely
     * dead (a live one holds the lock from B to C, so trying the lock is harmless either way).
     * At most one attempt per `PENDING_CLOSE_MS`, so a slow live writer costs readers little.
     */
    const danglingTooLong = (now: number): boolean => {
      if (pending.size === 0) {
        pendingSeen.clear()
        return false
      }
      for (const fileKey of pendingSeen.keys()) if (!pending.has(fileKey)) pendingSeen.delete(fileKey)
      let oldest = now
      for (const fileKey of pending) {
        const seen = pendingSeen.get(fileKey)
        if (seen === undefined) pendingSeen.set(fileKey, now)
        else oldest = Math.min(oldest, seen)
      }
      return now - oldest > PENDING_CLOSE_MS && now - lastCloseAttempt > PENDING_CLOSE_MS
    }

    /**
     * Closes announcements whose writer died, if the lock is free right now (a stale lock, as a
     * dead writer leaves, is broken); otherwise leaves them to the next attempt or writer.
     */
    const closeDangling: Effect.Effect<void> = Effect.suspend(() => {
      lastCloseAttempt = Date.now()
      return writeMutex.withPermitsIfAvailable(1)(
        Lock.tryWithLock(fs, lockOptions)(syncMutex.withPermits(1)(Effect.zipRight(catchUp(true), closePending)))
      ).pipe(Effect.ignore)
    })

    /** Before every read: one `stat` of the journal, and a catch-up only when it changed. */
    const sync: Effect.Effect<void, StoreError> = Effect.gen(function*() {
      if (pending.size === 0 && sameAsPosition(yield* Journal.identity(fs, paths.journal))) return
      const outcome = yield* syncMutex.withPermits(1)(catchUp(false))
      if (outcome === "repair") return yield* transact(Effect.void)
      if (danglingTooLong(Date.now())) yield* closeDangling
    })

    /** Holding the lock, caught up: whoever announced the open changes is gone; confirms them. */
    const closePending: Effect.Effect<void, StoreError> = Effect.suspend(() => {
      if (pending.size === 0) return Effect.void
      // the files are old or new, both whole
      const dangling = [...pending]
      return Effect.gen(function*() {
        yield* appendJournal(dangling.map((fileKey) => `C ${fileKey}\n`).join(""))
        pending = new Set()
        yield* reread(dangling)
      })
    })

    // -- the snapshot ----------------------------------------------------------------------------------
    /** A key that may authenticate a snapshot: held by this process, listed in the manifest, not retired. */
    const snapshotKey = (keyId: string): KeyRing.Key | undefined =>
      knownKeyIds.has(keyId) && !retiredKeyIds.has(keyId) ? ring.keys.get(keyId) : undefined

    /**
     * Writes the index as it is now, at the current journal position. Only while holding the lock,
     * caught up and with no announcement open (so the index reflects every line before the
     * position): its temp file is then, like every temp file, a leftover only a dead lock holder
     * leaves. A snapshot that cannot be written (larger than an open reads, I/O) is skipped, with a
     * warning: the next open scans.
     */
    const saveSnapshot: Effect.Effect<void> = Effect.suspend(() => {
      const notWritten = (why: string) => `snapshot ${paths.snapshot} not written: ${why}`
      const key = snapshotKey(ring.current.id)
      if (key === undefined) return Effect.logDebug(notWritten("the current key is not registered in the manifest yet"))
      if (pending.size > 0) return Effect.logDebug(notWritten("a change is announced and not confirmed"))
      if (position.offset !== position.size) return Effect.logDebug(notWritten("the journal ends in a torn line"))
      const records = [...index.records()].sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime())
      let text: string
      try {
        text = Snapshot.encode(
          { generation: position.generation, offset: position.offset, records, damaged: [...index.damaged.keys()] },
          key
        )
      } catch {
        return Effect.logWarning(notWritten("the index is larger than a string can be; every open reads every record file"))
      }
      // in bytes, as the open measures it (a character of a description may take up to 3)
      const bytes = Buffer.byteLength(text, "utf8")
      if (bytes > snapshotMaxBytes) {
        return Effect.logWarning(
          notWritten(`it would be ${bytes} bytes, more than the ${snapshotMaxBytes} an open reads; every open reads every record file`)
        )
      }
      return writeAtomic(fs, paths.snapshot, text).pipe(
        Effect.catchAll((error) => Effect.logWarning(notWritten(error.message)))
      )
    })

    /** At open: takes the lock if it is free, catches up and writes the snapshot; a busy lock skips it. */
    const refreshSnapshot: Effect.Effect<void> = writeMutex.withPermits(1)(
      Lock.tryWithLock(fs, lockOptions)(syncMutex.withPermits(1)(Effect.gen(function*() {
        yield* catchUp(true)
        yield* closePending
        yield* saveSnapshot
      })))
    ).pipe(
      Effect.flatMap(Option.match({
        onNone: () => Effect.logDebug(`snapshot ${paths.snapshot} not written: another process holds the lock`),
        onSome: () => Effect.void
      })),
      Effect.catchAll((error) => Effect.logWarning(`snapshot ${paths.snapshot} not written: ${error.message}`))
    )

    /** What an open from the snapshot did. */
    interface Resumed {
      readonly temps: ReadonlyArray<string>
      /** Record files read (named by the journal after the snapshot, damaged, or added or removed behind its back). */
      readonly reread: number
      /** The snapshot's position is in `journal.prev`: the next journal generation would make it unusable. */
      readonly previousGeneration: boolean
    }

    /**
     * The index from the snapshot instead of from every record file: the snapshot's records, then
     * the record files named by the journal after its position, the damaged ones, and those the
     * directory listing (names only) shows added or removed since. `undefined` when there is no
     * usable snapshot (missing, damaged, not authentic, under a key this process cannot use, its
     * position no longer in the journal), or when it names records a full scan would refuse the
     * open over (a key this process does not hold): the caller then reads every record file, as
     * without a snapshot.
     */
    const resume: Effect.Effect<Resumed | undefined, StoreError> = Effect.gen(function*() {
      const unusable = (why: string) =>
        Effect.as(Effect.logWarning(`snapshot ${paths.snapshot} not used (${why}): reading every record file`), undefined)
      // an unreadable snapshot is as good as none: the scan then reports whatever is really wrong
      const read = yield* Effect.either(readBounded(fs, paths.snapshot, snapshotMaxBytes, "a snapshot an open reads"))
      if (Either.isLeft(read)) return yield* unusable(read.left.message)
      if (read.right === undefined) {
        return yield* Effect.as(Effect.logDebug(`no snapshot at ${paths.snapshot}: reading every record file`), undefined)
      }
      if (read.right._tag === "Odd") return yield* unusable(read.right.why)
      const decoded = Snapshot.decode(read.right.text, snapshotKey)
      if (decoded._tag === "Invalid") return yield* unusable(decoded.why)
      const { snapshot } = decoded
      const since = yield* linesSince({ generation: snapshot.generation, offset: snapshot.offset, ino: 0, size: 0, mtimeMs: 0 })
      if (since._tag === "Repair") return yield* unusable("the journal is missing or not a journal")
      if (since._tag === "Lost") {
        return yield* unusable("its journal position is gone: rotated out, past the end, or followed by an unreadable line")
      }
      const { changed, keys, open } = pendingOf(since.entries, new Set())
      if (keys) yield* loadKeys
      const fresh = new RecordIndex()
      const fileKeys = snapshot.records.map((record) => fileKeyOf(record.id))
      snapshot.records.forEach((record, i) => {
        fresh.set(fileKeys[i]!, { _tag: "Record", record, path: recordPath(paths, fileKeys[i]!) })
      })
      index = fresh
      const { files, temps } = yield* listRecordFiles
      const toRead = new Set([...snapshot.damaged, ...changed, ...open])
      const present = new Set(files)
      for (const fileKey of files) if (fresh.get(fileKey) === undefined) toRead.add(fileKey)
      for (const fileKey of fileKeys) if (!present.has(fileKey)) toRead.add(fileKey)
      yield* reread(toRead)
      pending = open
      position = since.next
      for (const keyId of index.keyUsage.keys()) {
        if (snapshotKey(keyId) === undefined) {
          return yield* unusable(`it holds records sealed with key ${JSON.stringify(keyId)}, which this process cannot use`)
        }
      }
      for (const damage of index.damaged.values()) {
        if (damage.error._tag === "DecryptionFailed") {
          return yield* unusable(`record file ${damage.path} is sealed with a key this process does not hold`)
        }
      }
      return { temps, reread: toRead.size, previousGeneration: snapshot.generation !== position.generation }
    })

    // -- writing -----------------------------------------------------------------------------------
    /**
     * Runs `body` holding this process's write mutex, the store lock and the index, with the index
     * caught up and the journal repaired. Announced changes whose writer died are closed first.
     */
    const transact = <A, E>(body: Effect.Effect<A, E>): Effect.Effect<A, E | StoreError> =>
      writeMutex.withPermits(1)(
        Lock.withLock(fs, lockOptions)(
          syncMutex.withPermits(1)(Effect.gen(function*() {
              yield* catchUp(true)
              // we hold the lock, so whoever announced these is gone
              yield* closePending
              return yield* body
            }))
        )
      )

    /** Announces, performs and confirms one record file change, then updates the index. */
    const change = (fileKey: string, io: Effect.Effect<void, StoreUnavailable>, entry: Entry | undefined) =>
      Effect.uninterruptible(Effect.gen(function*() {
        yield* appendJournal(`B ${fileKey}\n`)
        const result = yield* Effect.exit(Effect.zipRight(io, appendJournal(`C ${fileKey}\n`)))
        if (Exit.isFailure(result)) {
          // the change may or may not have happened, unconfirmed: treat it like a dead writer's
          // announcement (re-read on every read, closed by the next write)
          pending.add(fileKey)
          yield* Effect.ignore(reread([fileKey]))
          return yield* result
        }
        index.set(fileKey, entry)
        if (position.size > options.journalLimitBytes) {
          // the write is done whatever happens here; a failed rollover is retried by the next write
          yield* Effect.ignore(Effect.gen(function*() {
            yield* Journal.rollover(fs, paths, position.generation)
            const fresh = yield* Journal.read(fs, paths.journal)
            if (fresh._tag === "Read") {
              position = fresh.position
              // so that the snapshot stays within the journal's reach (journal.prev at worst)
              yield* saveSnapshot
            }
          }))
        }
      }))

    /**
     * Writes `record`. A record that this process sealed with a key another process has retired
     * meanwhile (this process's ring was behind) is re-sealed with the current key first.
     */
    const put = (record: SecretRecord): Effect.Effect<SecretRecord, StoreError> =>
      Effect.gen(function*() {
        let written = record
        let key = knownKeyIds.has(record.sealed.keyId) ? ring.keys.get(record.sealed.keyId) : undefined
        if (key === undefined) {
          const retired = previousKeys.get(record.sealed.keyId)
          if (retired === undefined) {
            return yield* Effect.fail(
              new DecryptionFailed({
                message: `secret ${JSON.stringify(record.id)} is sealed with key ${
                  JSON.stringify(record.sealed.keyId)
                }, which this store does not accept (never configured, or retired)`,
                secretId: record.id
              })
            )
          }
          const binding = { organizationId: record.organizationId, secretId: record.id }
          const value = yield* SecretCipher.make(KeyRing.make([retired])).open(record.sealed, binding)
          written = { ...record, sealed: cipher.seal(value, binding) }
          key = ring.current
        }
        const fileKey = fileKeyOf(written.id)
        const path = recordPath(paths, fileKey)
        const text = RecordFile.encode(written, key)
        yield* change(
          fileKey,
          Effect.zipRight(ensureShard(shardOf(fileKey)), writeAtomic(fs, path, text)),
          { _tag: "Record", record: metaOf(written), path }
        )
        return written
      })

    /**
     * Registers the keys of this process's ring that store.json does not list yet (a new key
     * configured for rotation, or a generated key whose registration a crash interrupted). Runs
     * only at the end of a successful open, under the lock, against a freshly read manifest.
     */
    const registerKeys: Effect.Effect<void, StoreError> = Effect.suspend(() =>
      [...ring.keys.keys()].every((id) => knownKeyIds.has(id)) ? Effect.void : transact(Effect.gen(function*() {
        const current = yield* Keys.readManifest(fs, paths)
        if (current === undefined) {
          return yield* Effect.fail(
            new StoreCorrupted({ message: `${paths.manifest} is missing: restore it from a backup`, location: paths.manifest })
          )
        }
        yield* Keys.verifyRing(paths, current, ring)
        const added = [...ring.keys.values()].filter((key) =>
          !current.keys.some((k) => k.id === key.id) && !current.retired.includes(key.id)
        )
        if (added.length === 0) return
        yield* Keys.writeManifest(fs, paths, {
          ...current,
          keys: [...current.keys, ...added.map((key) => ({ id: key.id, check: Keys.keyCheck(key) }))]
        })
        yield* appendJournal("K\n")
        yield* loadKeys
      }))
    )

    // -- opening -----------------------------------------------------------------------------------
    const hasRecordFiles = Effect.gen(function*() {
      for (const shard of (yield* listIfExists(fs, paths.records)).filter(isShard)) {
        const names = yield* listIfExists(fs, Path.join(paths.records, shard))
        if (names.some((name) => fileKeyOfName(shard, name) !== undefined)) return true
      }
      return false
    })

    /**
     * Creates what is missing (manifest, key file, journal). A new store's manifest lists the
     * configured (or generated) keys; an existing manifest is never changed here: keys with new
     * ids are registered only once the open has fully succeeded (`registerKeys`), so a failed open
     * (a wrong key under a new id, say) writes nothing to store.json.
     */
    const initialise = Effect.gen(function*() {
      let current = yield* Keys.readManifest(fs, paths)
      if (current === undefined && (yield* hasRecordFiles)) {
        return yield* Effect.fail(
          new StoreCorrupted({
            message: `${paths.manifest} is missing but ${paths.records} holds records: restore it from a backup`,
            location: paths.manifest
          })
        )
      }
      let keys: ReadonlyArray<KeyRing.Key>
      if (options.keys._tag === "Configured") {
        keys = [...options.keys.ring.keys.values()]
      } else {
        const inFile = yield* Keys.readKeyFile(fs, paths)
        if (inFile !== undefined) {
          keys = inFile
        } else {
          if (current !== undefined && current.keys.length > 0) return yield* Effect.fail(missingKeyFile())
          keys = [KeyRing.generateKey(Keys.newKeyId(new Set()))]
          yield* Keys.writeKeyFile(fs, paths, keys)
        }
      }
      const fresh = current === undefined
      current ??= Keys.newManifest([])
      const known = current
      yield* Keys.verifyRing(paths, known, ringFrom(keys))
      const journal = yield* Journal.read(fs, paths.journal)
      // a brand-new store (no records: checked above) registers its keys at once
      const register = fresh || known.keys.length === 0
      const added = register
        ? keys.filter((key) => !known.keys.some((k) => k.id === key.id) && !known.retired.includes(key.id))
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

    const needsInitialising = Effect.gen(function*() {
      const current = yield* Keys.readManifest(fs, paths)
      if (current === undefined || current.keys.length === 0) return true
      if ((yield* Journal.read(fs, paths.journal))._tag !== "Read") return true
      if (options.keys._tag === "Configured") return false
      return (yield* Keys.readKeyFile(fs, paths)) === undefined
    })

    const underLock = <A, E>(body: Effect.Effect<A, E>) => Lock.withLock(fs, lockOptions)(body)

    /** Leftovers of killed writers: temp files (only ever written under the lock) and old lock attempts. */
    const removeLeftovers = (temps: ReadonlyArray<string>) =>
      Effect.gen(function*() {
        const now = Date.now()
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

    yield* ensureDirectory(paths.root)
    yield* ensureDirectory(paths.records)
    if (yield* needsInitialising) yield* underLock(initialise)
    yield* loadKeys
    position = { generation: "", ino: 0, size: 0, mtimeMs: 0, offset: 0 }
    const resumed = yield* resume
    let loaded: Scan | "repair" = resumed === undefined
      ? yield* reload
      : { index, temps: resumed.temps, missingKeys: new Map() }
    if (loaded === "repair") {
      yield* underLock(initialise)
      loaded = yield* reload
      if (loaded === "repair") return yield* Effect.fail(journalBroken())
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
    yield* removeLeftovers(loaded.temps)
    yield* registerKeys
    if (
      resumed === undefined || resumed.previousGeneration || resumed.reread > snapshotRefreshFiles
    ) yield* refreshSnapshot

    // -- the SecretStore ---------------------------------------------------------------------------
    const view = <A, E>(f: (index: RecordIndex) => Effect.Effect<A, E>): Effect.Effect<A, E | StoreError> =>
      Effect.flatMap(sync, () => Effect.suspend(() => f(index)))

    const owned = (organizationId: string, record: Meta | undefined) =>
      record !== undefined && record.organizationId === organizationId ? record : undefined

    /** One lookup: the index finds the record, its file (one read) supplies the sealed value. */
    const lookup = (
      record: Meta | undefined,
      damage: () => RecordFile.Damage | undefined
    ): Effect.Effect<Option.Option<SecretRecord>, StoreError> => {
      if (record !== undefined) return Effect.map(load(record), Option.fromNullable)
      const damaged = damage()
      return damaged === undefined ? Effect.succeed(Option.none()) : Effect.fail(damaged.error)
    }

    const complete = (organizationId: string) =>
      Effect.suspend(() => {
        const damage = index.damageOfOrganization(organizationId)
        return damage === undefined ? Effect.void : Effect.fail(damage.error)
      })

    const store = SecretStore.SecretStore.of({
      insert: (record, { quota }) =>
        transact(Effect.suspend((): Effect.Effect<
          void,
          SecretNameTaken | SecretStore.PlaceholderTaken | QuotaExceeded | StoreError
        > => {
          const names = index.byOrganization.get(record.organizationId)
          if (names?.has(record.name)) return Effect.fail(SecretNameTaken.of(record.name))
          const damagedName = index.damageOfName(record.organizationId, record.name)
          if (damagedName !== undefined) return Effect.fail(damagedName.error)
          if (
            index.byPlaceholder.has(record.placeholder) ||
            [...index.damaged.values()].some((damage) => damage.claim.placeholder === record.placeholder)
          ) {
            return Effect.fail(new SecretStore.PlaceholderTaken())
          }
          if ((names?.size ?? 0) >= quota) return Effect.fail(QuotaExceeded.of(quota))
          if (index.get(fileKeyOf(record.id)) !== undefined) {
            return Effect.dieMessage(`a record with id ${JSON.stringify(record.id)} already exists`)
          }
          return Effect.asVoid(put(record))
        })),
      findById: (organizationId, id) =>
        view((index) =>
          lookup(owned(organizationId, index.byId.get(id)), () =>
            index.damaged.size === 0 ? undefined : index.damageOfFile(organizationId, fileKeyOf(id)))
        ),
      findByName: (organizationId, name) =>
        view((index) =>
          lookup(index.byOrganization.get(organizationId)?.get(name), () => index.damageOfName(organizationId, name))
        ),
      findByPlaceholder: (organizationId, placeholder) =>
        view((index) =>
          lookup(
            owned(organizationId, index.byPlaceholder.get(placeholder)),
            () => index.damageOfPlaceholder(organizationId, placeholder)
          )
        ),
      // Listing reads no record file: the index holds every record's metadata (authenticated when
      // its file was read), and a listing never shows a value.
      listAll: (organizationId) =>
        view((index) =>
          Effect.as(
            complete(organizationId),
            [...(index.byOrganization.get(organizationId)?.values() ?? [])].sort(SecretStore.byName)
          )
        ),
      list: (organizationId, query) =>
        view((index) =>
          Effect.zipRight(
            complete(organizationId),
            SecretStore.paginate(index.byOrganization.get(organizationId)?.values() ?? [], query)
          )
        ),
      update: (organizationId, id, changeRecord) =>
        transact(Effect.suspend((): Effect.Effect<SecretRecord, SecretNotFound | StoreError> => {
          const meta = owned(organizationId, index.byId.get(id))
          if (meta === undefined) {
            const damage = index.damageOfFile(organizationId, fileKeyOf(id))
            return Effect.fail(damage?.error ?? SecretNotFound.byId(id))
          }
          return Effect.flatMap(load(meta), (current): Effect.Effect<SecretRecord, SecretNotFound | StoreError> => {
            // under the lock and caught up: the file is what the index says
            if (current === undefined) return Effect.fail(SecretNotFound.byId(id))
            const next = changeRecord(current)
            if (!sameIdentity(current, next)) {
              return Effect.dieMessage(
                "SecretStore.update must not change id, organizationId, name, placeholder or createdAt"
              )
            }
            return put(next)
          })
        })),
      delete: (organizationId, id) =>
        transact(Effect.suspend((): Effect.Effect<void, SecretNotFound | StoreError> => {
          const fileKey = fileKeyOf(id)
          const current = owned(organizationId, index.byId.get(id))
          const damage = index.damaged.get(fileKey)
          // a damaged record may be deleted by the organization it claims to belong to
          if (current === undefined && damage?.claim.organizationId !== organizationId) {
            return Effect.fail(SecretNotFound.byId(id))
          }
          return change(fileKey, removeDurably(fs, recordPath(paths, fileKey)), undefined)
        }))
    })

    // -- key management ----------------------------------------------------------------------------
    const statusOf = (id: string): KeyStatus => ({
      id,
      current: ring.current.id === id,
      records: index.keyUsage.get(id) ?? 0,
      held: ring.keys.has(id)
    })

    const keyStatus = view(() => Effect.succeed(manifest.keys.map((key) => statusOf(key.id))))

    /**
     * Holding the lock, caught up: replaces the index with one read from every record file, and
     * writes a snapshot of it. Key decisions start from this, not from the index, which may hold
     * what the snapshot said of a file put back behind the store's back (an older copy, sealed with
     * a key the index no longer counts). Slow on a large store, but keys are rarely managed.
     */
    const rescan: Effect.Effect<Scan, StoreError> = Effect.gen(function*() {
      const scanned = yield* scan
      index = scanned.index
      yield* saveSnapshot
      return scanned
    })

    const reseal: Effect.Effect<number, StoreError> = Effect.gen(function*() {
      yield* transact(rescan)
      let total = 0
      for (;;) {
        const batch = yield* view((index) => {
          const stale: Array<Meta> = []
          for (const record of index.records()) {
            if (record.keyId !== ring.current.id) stale.push(record)
            if (stale.length === RESEAL_BATCH) break
          }
          return Effect.succeed(stale)
        })
        if (batch.length === 0) return total
        yield* transact(Effect.forEach(batch, (stale) =>
          Effect.gen(function*() {
            const meta = index.byId.get(stale.id)
            if (meta === undefined || meta.keyId === ring.current.id) return
            const record = yield* load(meta)
            // the file may say otherwise than the index did (load has corrected the index then)
            if (record === undefined || record.sealed.keyId === ring.current.id) return
            const binding = { organizationId: record.organizationId, secretId: record.id }
            const value = yield* cipher.open(record.sealed, binding)
            yield* put({ ...record, sealed: cipher.seal(value, binding) })
            total++
          }), { discard: true }))
      }
    })

    const rotateKey: Effect.Effect<KeyStatus, KeyManagementError | StoreError> = Effect.gen(function*() {
      if (options.keys._tag === "Configured") {
        return yield* Effect.fail(
          new KeyManagementError({
            message:
              "this store's keys come from configuration: add the new key to the configured key ring (newest last), reopen, then run reseal"
          })
        )
      }
      const id = yield* transact(Effect.gen(function*() {
        const inFile = yield* Keys.readKeyFile(fs, paths)
        if (inFile === undefined) return yield* Effect.fail(missingKeyFile())
        const key = KeyRing.generateKey(Keys.newKeyId(new Set([...knownKeyIds, ...retiredKeyIds, ...inFile.map((k) => k.id)])))
        const nextKeys = [...inFile, key]
        // key file first: a crash before the manifest is written is repaired at the next open
        yield* Keys.writeKeyFile(fs, paths, nextKeys)
        const nextManifest = { ...manifest, keys: [...manifest.keys, { id: key.id, check: Keys.keyCheck(key) }] }
        yield* Keys.writeManifest(fs, paths, nextManifest)
        yield* appendJournal("K\n")
        yield* loadKeys
        return key.id
      }))
      yield* reseal
      return yield* view(() => Effect.succeed(statusOf(id)))
    })

    const retireKey = (keyId: string): Effect.Effect<void, KeyManagementError | StoreError> =>
      transact(Effect.gen(function*() {
        const refuse = (message: string) => Effect.fail(new KeyManagementError({ message }))
        if (!knownKeyIds.has(keyId)) return yield* refuse(`this store has no key ${JSON.stringify(keyId)}`)
        if (keyId === ring.current.id) {
          return yield* refuse(`key ${JSON.stringify(keyId)} is the current key: rotate to a new key first`)
        }
        // from the files, not the index: a key must not go while any file is still sealed with it
        const scanned = yield* rescan
        const used = (index.keyUsage.get(keyId) ?? 0) + (scanned.missingKeys.get(keyId) ?? 0)
        if (used > 0) {
          return yield* refuse(`key ${JSON.stringify(keyId)} still seals ${used} record(s): run reseal first`)
        }
        yield* Keys.writeManifest(fs, paths, {
          ...manifest,
          keys: manifest.keys.filter((key) => key.id !== keyId),
          retired: [...manifest.retired.filter((id) => id !== keyId), keyId]
        })
        if (options.keys._tag === "File") {
          const inFile = yield* Keys.readKeyFile(fs, paths)
          if (inFile !== undefined) yield* Keys.writeKeyFile(fs, paths, inFile.filter((key) => key.id !== keyId))
        }
        yield* appendJournal("K\n")
        yield* loadKeys
      }))

    const cipherView: SecretCipher.SecretCipher = {
      get currentKeyId() {
        return cipher.currentKeyId
      },
      seal: (value, binding) => cipher.seal(value, binding),
      open: (sealed, binding) => cipher.open(sealed, binding)
    }

    return { paths, store, cipher: cipherView, keys: keyStatus, rotateKey, reseal, retireKey } satisfies Engine
  })
