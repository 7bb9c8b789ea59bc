/**
 * The in-memory index of one process and how it keeps up with the journal, and so with every
 * other process: where this process is in the journal (`position`), which record files a writer
 * announced and has not confirmed (`pending`), and the index itself. A read `stat`s the journal
 * and catches up only when it changed; the lock holder also repairs the journal and appends to
 * it (every append moves `position`). Nothing else changes these three.
 */
import type { FileSystem } from "@effect/platform"
import { type SecretStore, StoreCorrupted, type StoreError, type StoreUnavailable } from "@secretgate/core"
import { Effect, Option } from "effect"
import { unavailable } from "./io.js"
import * as Journal from "./journal.js"
import { fileKeyOf, type Layout, recordPath } from "./layout.js"
import type { RecordFiles, Scan } from "./recordFiles.js"
import { type Entry, type Meta, metaOf, RecordIndex, sameIdentity, sameMeta } from "./recordIndex.js"
import type { StoreKeys } from "./storeKeys.js"

type SecretRecord = SecretStore.SecretRecord

/** An announcement (B) open this long makes a reader try the lock once to close it (its writer likely died). */
const PENDING_CLOSE_MS = 500

/** What the journal holds after a position. */
export type Since =
  | { readonly _tag: "Lines"; readonly entries: ReadonlyArray<Journal.Entry>; readonly next: Journal.Position }
  /** The position is gone (more than one generation behind, or no longer in the file), or a line nobody can read might have named any record. */
  | { readonly _tag: "Lost" }
  /** The journal is missing, not a journal, or was shortened or rewritten: the lock holder starts a new generation. */
  | { readonly _tag: "Repair" }

/** What journal lines say: announcements still open, record files changed, and whether the keys changed. */
export const pendingOf = (entries: ReadonlyArray<Journal.Entry>, start: ReadonlySet<string>) => {
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

/** The journal could not be repaired: recreated, it still cannot be read. */
export const journalBroken = (paths: Layout): StoreCorrupted =>
  new StoreCorrupted({ message: `${paths.journal} is unreadable even after it was recreated`, location: paths.journal })

/** The index of one open store and its place in the journal. */
export interface LiveIndex {
  readonly index: () => RecordIndex
  readonly position: () => Journal.Position
  /** Record files announced (B) and not yet confirmed (C): re-read on every catch-up. */
  readonly pending: () => ReadonlySet<string>
  /** Runs `body` with no catch-up of this process running meanwhile. */
  readonly exclusive: <A, E>(body: Effect.Effect<A, E>) => Effect.Effect<A, E>
  /** `true` when nothing changed since the last catch-up: one `stat` of the journal. */
  readonly isCurrent: Effect.Effect<boolean, StoreUnavailable>
  /**
   * Brings the index up to date with the journal. Without the lock, a journal that needs repair
   * is reported as "repair"; with it (`locked`), it is repaired here, and a torn last line cut off.
   */
  readonly catchUp: (locked: boolean) => Effect.Effect<"ok" | "repair", StoreError>
  /** Replaces the whole index from every record file: journal position first, so nothing is missed. */
  readonly reload: Effect.Effect<Scan | "repair", StoreError>
  /** The journal lines after `from`: in its generation, and in the next when `from` is now in `journal.prev`. */
  readonly linesSince: (from: Journal.Position) => Effect.Effect<Since, StoreError>
  /** Re-reads these record files into the index: removals first, so a freed name can be reused. */
  readonly reread: (fileKeys: Iterable<string>) => Effect.Effect<void, StoreUnavailable>
  /**
   * The whole record behind `meta`, read from its file (the index holds no sealed values);
   * `undefined` when the file is gone or holds another record; a damaged file fails with its
   * damage. The file is the truth: where its metadata differs, the index is corrected from it.
   */
  readonly load: (meta: Meta) => Effect.Effect<SecretRecord | undefined, StoreError>
  /** Lock holder only: appends lines to the journal and moves `position` past them. */
  readonly append: (lines: string) => Effect.Effect<void, StoreUnavailable>
  /** Lock holder only, caught up: confirms announcements whose writer is gone. */
  readonly closePending: Effect.Effect<void, StoreError>
  /** `true` when an announcement has stayed open longer than a write takes (at most once per 0.5 s); `now` is monotonic. */
  readonly danglingTooLong: (now: number) => boolean
  /** Notes an attempt to close dangling announcements, so the next one waits 0.5 s. */
  readonly closeAttempted: (now: number) => void
  /** A confirmed write by this process: the index takes `entry` for `fileKey`. */
  readonly written: (fileKey: string, entry: Entry | undefined) => void
  /** A write that failed between its announcement and its confirmation: treated like a dead writer's. */
  readonly unconfirmed: (fileKey: string) => Effect.Effect<void>
  /** Lock holder only: starts a new journal generation. `true` when the index now follows it. */
  readonly startGeneration: Effect.Effect<boolean, StoreUnavailable>
  /** Replaces the index (after a scan under the lock). */
  readonly replace: (index: RecordIndex) => void
  /** Starts from a given state (an open from the snapshot), before re-reading what changed since. */
  readonly resumeAt: (index: RecordIndex, position: Journal.Position, pending: ReadonlySet<string>) => void
}

/** The index of the store at `paths`; empty, at no journal position, until `reload` or `resumeAt`. */
export const make = (fs: FileSystem.FileSystem, paths: Layout, keys: StoreKeys, files: RecordFiles): LiveIndex => {
  let index = new RecordIndex()
  let position: Journal.Position = { generation: "", ino: 0, size: 0, mtimeMs: 0, offset: 0 }
  let pending = new Set<string>()
  /** When this process first saw each open announcement (B without C), to notice dead writers'. */
  const pendingSeen = new Map<string, number>()
  let lastCloseAttempt = Number.NEGATIVE_INFINITY
  const syncMutex = Effect.unsafeMakeSemaphore(1)

  const reread = (fileKeys: Iterable<string>) =>
    Effect.gen(function*() {
      const list = [...fileKeys]
      if (list.length === 0) return
      const read = yield* Effect.forEach(list, files.readEntry, { concurrency: 8 })
      list.forEach((fileKey, i) => {
        if (read[i] === undefined) index.set(fileKey, undefined)
      })
      list.forEach((fileKey, i) => {
        const indexed = read[i]
        if (indexed !== undefined) index.set(fileKey, indexed.entry)
      })
    })

  const load = (meta: Meta): Effect.Effect<SecretRecord | undefined, StoreError> => {
    const fileKey = fileKeyOf(meta.id)
    return Effect.flatMap(files.read(fileKey), (decoded) => {
      const indexed = index.get(fileKey)
      // only while the index still holds what the lookup found: a re-read meanwhile (another
      // fiber caught up with the journal) is at least as new as this read
      const current = indexed?._tag === "Record" && indexed.record === meta
      if (decoded !== undefined && decoded._tag !== "Record") {
        // damaged behind the store's back: from now on the index knows it (its name stays taken)
        if (current) index.set(fileKey, { _tag: "Damaged", damage: decoded.damage })
        return Effect.fail(decoded.damage.error)
      }
      const record = decoded?.record
      if (current && !sameMeta(meta, record)) {
        const path = recordPath(paths, fileKey)
        index.set(fileKey, record === undefined ? undefined : { _tag: "Record", record: metaOf(record), path })
      }
      if (record === undefined || !sameIdentity(meta, record)) return Effect.succeed(undefined)
      return Effect.succeed(record)
    })
  }

  const reload = Effect.gen(function*() {
    const segment = yield* Journal.read(fs, paths.journal)
    if (segment._tag !== "Read") return "repair" as const
    const { keys: keysChanged, open } = pendingOf(segment.entries, new Set())
    if (keysChanged) yield* keys.load
    const scanned = yield* files.scan
    index = scanned.index
    position = segment.position
    pending = open
    yield* reread(pending)
    return scanned
  })

  const append = (lines: string) =>
    Effect.scoped(Effect.gen(function*() {
      const bytes = new TextEncoder().encode(lines)
      const file = yield* fs.open(paths.journal, { flag: "a" }).pipe(Effect.mapError(unavailable("open", paths.journal)))
      yield* Journal.append(file, paths.journal, bytes)
      const info = yield* file.stat.pipe(Effect.mapError(unavailable("stat", paths.journal)))
      const size = Number(info.size)
      // shortened by someone else since we caught up: the offset we expected is past the end, so
      // the next catch-up under the lock starts a new generation
      const offset = Math.max(size, position.offset + bytes.length)
      position = {
        generation: position.generation,
        ino: Option.getOrElse(info.ino, () => 0),
        size,
        mtimeMs: Option.match(info.mtime, { onNone: () => 0, onSome: (date) => date.getTime() }),
        offset,
        tail: bytes.slice(bytes.lastIndexOf(0x0a, bytes.length - 2) + 1)
      }
      // an extra check only: a mark that cannot be written (no space, say) must not fail the write
      if (offset === size) yield* Effect.ignore(Journal.writeMark(fs, paths, { generation: position.generation, size }))
    }))

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

  const linesSince = (from: Journal.Position): Effect.Effect<Since, StoreError> =>
    Effect.gen(function*() {
      // the mark first: it is written after the append it records, so it is never ahead of a journal read after it
      const mark = yield* Journal.readMark(fs, paths)
      const current = yield* Journal.read(fs, paths.journal, { from: from.offset, expected: from.generation, tail: from.tail })
      if (current._tag !== "Read") return { _tag: "Repair" } as const
      if (mark !== undefined && mark.generation === current.generation && current.position.size < mark.size) {
        return { _tag: "Repair" } as const // shorter than its lock holder left it
      }
      if (current.generation === from.generation) {
        if (current.rewritten) return { _tag: "Repair" } as const
        if (current.garbled) return { _tag: "Lost" } as const
        return { _tag: "Lines", entries: current.entries, next: current.position } as const
      }
      // a new generation: finish the old one (now journal.prev) unless we fell further behind
      const previous = yield* Journal.read(fs, paths.journalPrevious, { from: from.offset, expected: from.generation, tail: from.tail })
      const fresh = yield* Journal.read(fs, paths.journal)
      if (
        previous._tag !== "Read" || previous.generation !== from.generation || previous.rewritten ||
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
        return reloaded === "repair" ? yield* Effect.fail(journalBroken(paths)) : "ok" as const
      }
      if (since._tag === "Lost") {
        // fell too far behind, or a line we cannot read might have named any record: rescan
        const reloaded = yield* reload
        if (reloaded === "repair") return locked ? yield* follow(locked) : "repair" as const
        return "ok" as const
      }
      const { changed, keys: keysChanged, open } = pendingOf(since.entries, pending)
      if (keysChanged) yield* keys.load
      yield* reread(new Set([...changed, ...open]))
      pending = open
      position = since.next
      return "ok" as const
    })

  const catchUp = (locked: boolean): Effect.Effect<"ok" | "repair", StoreError> =>
    locked ? Effect.zipLeft(follow(true), cutTornLine) : follow(false)

  const isCurrent = Effect.suspend(() =>
    pending.size > 0 ? Effect.succeed(false) : Effect.map(Journal.identity(fs, paths.journal), (now) =>
      now !== undefined && now.ino === position.ino && now.size === position.size && now.mtimeMs === position.mtimeMs)
  )

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

  const closePending: Effect.Effect<void, StoreError> = Effect.suspend(() => {
    if (pending.size === 0) return Effect.void
    // the files are old or new, both whole
    const dangling = [...pending]
    return Effect.gen(function*() {
      yield* append(dangling.map((fileKey) => `C ${fileKey}\n`).join(""))
      pending = new Set()
      yield* reread(dangling)
    })
  })

  const startGeneration = Effect.gen(function*() {
    yield* Journal.rollover(fs, paths, position.generation)
    const fresh = yield* Journal.read(fs, paths.journal)
    if (fresh._tag !== "Read") return false
    position = fresh.position
    return true
  })

  return {
    index: () => index,
    position: () => position,
    pending: () => pending,
    exclusive: (body) => syncMutex.withPermits(1)(body),
    isCurrent,
    catchUp,
    reload,
    linesSince,
    reread,
    load,
    append,
    closePending,
    danglingTooLong,
    closeAttempted: (now) => {
      lastCloseAttempt = now
    },
    written: (fileKey, entry) => index.set(fileKey, entry),
    unconfirmed: (fileKey) =>
      Effect.suspend(() => {
        pending.add(fileKey)
        return Effect.ignore(reread([fileKey]))
      }),
    startGeneration,
    replace: (next) => {
      index = next
    },
    resumeAt: (next, at, open) => {
      index = next
      position = at
      pending = new Set(open)
    }
  }
}
