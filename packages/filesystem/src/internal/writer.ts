/**
 * The write path: this process's write mutex, the store lock, and one record change announced
 * (`B`), performed (atomic write or removal) and confirmed (`C`) in the journal, then taken into
 * the index. Also what a read does first (`sync`): catch up, and take the lock when the journal
 * needs repair or a dead writer's announcement needs closing.
 */
import type { SecretStore, StoreError, StoreUnavailable } from "@secretgate/core"
import { Effect, Exit, type Option } from "effect"
import { removeDurably, writeAtomic } from "./io.js"
import { fileKeyOf, recordPath, shardOf } from "./layout.js"
import * as Lock from "./lock.js"
import type { Parts } from "./parts.js"
import * as RecordFile from "./recordFile.js"
import { type Entry, metaOf } from "./recordIndex.js"
import type { Snapshots } from "./snapshotting.js"

type SecretRecord = SecretStore.SecretRecord

/** The writes of one open store. */
export interface Writer {
  /**
   * Runs `body` holding this process's write mutex, the store lock and the index, with the index
   * caught up and the journal repaired. Announced changes whose writer died are closed first.
   */
  readonly transact: <A, E>(body: Effect.Effect<A, E>) => Effect.Effect<A, E | StoreError>
  /** As `transact`, but only if no other process holds the lock: `Option.none` when one does. */
  readonly tryTransact: <A, E>(body: Effect.Effect<A, E>) => Effect.Effect<Option.Option<A>, E | StoreError>
  /** Runs `body` holding the store lock only (waiting for it): for the steps of an open. */
  readonly underLock: <A, E>(body: Effect.Effect<A, E>) => Effect.Effect<A, E | StoreUnavailable>
  /** Before every read: one `stat` of the journal, and a catch-up only when it changed. */
  readonly sync: Effect.Effect<void, StoreError>
  /** Inside `transact`: writes `record` (re-sealed first if its key was retired meanwhile). */
  readonly put: (record: SecretRecord) => Effect.Effect<SecretRecord, StoreError>
  /** Inside `transact`: removes the record file of `fileKey`. */
  readonly remove: (fileKey: string) => Effect.Effect<void, StoreError>
}

/** Settings of the write path. */
export interface WriterOptions {
  readonly lock: Lock.LockOptions
  readonly journalLimitBytes: number
}

/** The write path of the store at `paths`. */
export const make = ({ files, fs, keys, live, paths }: Parts, options: WriterOptions, snapshots: Snapshots): Writer => {
  const writeMutex = Effect.unsafeMakeSemaphore(1)

  const caughtUp = <A, E>(body: Effect.Effect<A, E>) =>
    live.exclusive(Effect.gen(function*() {
      yield* live.catchUp(true)
      // we hold the lock, so whoever announced these is gone
      yield* live.closePending
      return yield* body
    }))

  const transact = <A, E>(body: Effect.Effect<A, E>): Effect.Effect<A, E | StoreError> =>
    writeMutex.withPermits(1)(Lock.withLock(fs, options.lock)(caughtUp(body)))

  const tryTransact = <A, E>(body: Effect.Effect<A, E>): Effect.Effect<Option.Option<A>, E | StoreError> =>
    writeMutex.withPermits(1)(Lock.tryWithLock(fs, options.lock)(caughtUp(body)))

  /**
   * Closes announcements whose writer died, if the lock is free right now (a stale lock, as a
   * dead writer leaves, is broken); otherwise leaves them to the next attempt or writer.
   */
  const closeDangling: Effect.Effect<void> = Effect.suspend(() => {
    live.closeAttempted(options.lock.clock.monotonicMillis())
    return writeMutex.withPermitsIfAvailable(1)(Lock.tryWithLock(fs, options.lock)(caughtUp(Effect.void))).pipe(
      Effect.ignore
    )
  })

  const sync: Effect.Effect<void, StoreError> = Effect.gen(function*() {
    if (yield* live.isCurrent) return
    const outcome = yield* live.exclusive(live.catchUp(false))
    if (outcome === "repair") return yield* transact(Effect.void)
    if (live.danglingTooLong(options.lock.clock.monotonicMillis())) yield* closeDangling
  })

  /** Announces, performs and confirms one record file change, then updates the index. */
  const change = (fileKey: string, io: Effect.Effect<void, StoreUnavailable>, entry: Entry | undefined) =>
    Effect.uninterruptible(Effect.gen(function*() {
      yield* live.append(`B ${fileKey}\n`)
      const result = yield* Effect.exit(Effect.zipRight(io, live.append(`C ${fileKey}\n`)))
      if (Exit.isFailure(result)) {
        // the change may or may not have happened, unconfirmed: treat it like a dead writer's
        // announcement (re-read on every read, closed by the next write)
        yield* live.unconfirmed(fileKey)
        return yield* result
      }
      live.written(fileKey, entry)
      if (live.position().size > options.journalLimitBytes) {
        // the write is done whatever happens here; a failed rollover is retried by the next write
        yield* Effect.ignore(Effect.gen(function*() {
          // so that the snapshot stays within the journal's reach (journal.prev at worst)
          if (yield* live.startGeneration) yield* snapshots.save
        }))
      }
    }))

  const put = (record: SecretRecord): Effect.Effect<SecretRecord, StoreError> =>
    Effect.gen(function*() {
      const { key, record: written } = yield* keys.forWrite(record)
      const fileKey = fileKeyOf(written.id)
      const path = recordPath(paths, fileKey)
      const text = RecordFile.encode(written, key)
      yield* change(
        fileKey,
        Effect.zipRight(files.ensureShard(shardOf(fileKey)), writeAtomic(fs, path, text)),
        { _tag: "Record", record: metaOf(written), path }
      )
      return written
    })

  const remove = (fileKey: string) => change(fileKey, removeDurably(fs, recordPath(paths, fileKey)), undefined)

  return { transact, tryTransact, underLock: (body) => Lock.withLock(fs, options.lock)(body), sync, put, remove }
}
