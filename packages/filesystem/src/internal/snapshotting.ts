/**
 * When the index snapshot is written, and how an open resumes from it instead of reading every
 * record file. The file format is `snapshot.ts`; the guarantees are in docs/filesystem.md.
 */
import type { StoreError } from "@secretgate/core"
import { Effect, Either } from "effect"
import { readBounded, writeAtomic } from "./io.js"
import { fileKeyOf, recordPath } from "./layout.js"
import { pendingOf } from "./liveIndex.js"
import type { Parts } from "./parts.js"
import { RecordIndex } from "./recordIndex.js"
import * as Snapshot from "./snapshot.js"

/** What an open from the snapshot did. */
export interface Resumed {
  readonly temps: ReadonlyArray<string>
  /** Record files read (named by the journal after the snapshot, damaged, or added or removed behind its back). */
  readonly reread: number
  /** The snapshot's position is in `journal.prev`: the next journal generation would make it unusable. */
  readonly previousGeneration: boolean
}

/** Writing and resuming from the snapshot of one store. */
export interface Snapshots {
  /**
   * Writes the index as it is now, at the current journal position. Only while holding the lock,
   * caught up and with no announcement open (so the index reflects every line before the
   * position): its temp file is then, like every temp file, a leftover only a dead lock holder
   * leaves. A snapshot that cannot be written (larger than an open reads, I/O) is skipped, with a
   * warning: the next open scans.
   */
  readonly save: Effect.Effect<void>
  /**
   * The index from the snapshot instead of from every record file: the snapshot's records, then
   * the record files named by the journal after its position, the damaged ones, and those the
   * directory listing (names only) shows added or removed since. `undefined` when there is no
   * usable snapshot (missing, damaged, not authentic, under a key this process cannot use, its
   * position no longer in the journal), or when it names records a full scan would refuse the
   * open over (a key this process does not hold): the caller then reads every record file.
   */
  readonly resume: Effect.Effect<Resumed | undefined, StoreError>
}

/** The snapshot of the store at `paths`, of at most `maxBytes`. */
export const make = ({ files, fs, keys, live, paths }: Parts, maxBytes: number): Snapshots => {
  const save: Effect.Effect<void> = Effect.suspend(() => {
    const notWritten = (why: string) => `snapshot ${paths.snapshot} not written: ${why}`
    const key = keys.snapshotKey(keys.ring().current.id)
    if (key === undefined) return Effect.logDebug(notWritten("the current key is not registered in the manifest yet"))
    if (live.pending().size > 0) return Effect.logDebug(notWritten("a change is announced and not confirmed"))
    const position = live.position()
    if (position.offset !== position.size) return Effect.logDebug(notWritten("the journal ends in a torn line"))
    const index = live.index()
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
    if (bytes > maxBytes) {
      return Effect.logWarning(
        notWritten(`it would be ${bytes} bytes, more than the ${maxBytes} an open reads; every open reads every record file`)
      )
    }
    return writeAtomic(fs, paths.snapshot, text).pipe(
      Effect.catchAll((error) => Effect.logWarning(notWritten(error.message)))
    )
  })

  const resume: Effect.Effect<Resumed | undefined, StoreError> = Effect.gen(function*() {
    const unusable = (why: string) =>
      Effect.as(Effect.logWarning(`snapshot ${paths.snapshot} not used (${why}): reading every record file`), undefined)
    // an unreadable snapshot is as good as none: the scan then reports whatever is really wrong
    const read = yield* Effect.either(readBounded(fs, paths.snapshot, maxBytes, "a snapshot an open reads"))
    if (Either.isLeft(read)) return yield* unusable(read.left.message)
    if (read.right === undefined) {
      return yield* Effect.as(Effect.logDebug(`no snapshot at ${paths.snapshot}: reading every record file`), undefined)
    }
    if (read.right._tag === "Odd") return yield* unusable(read.right.why)
    const decoded = Snapshot.decode(read.right.text, keys.snapshotKey)
    if (decoded._tag === "Invalid") return yield* unusable(decoded.why)
    const { snapshot } = decoded
    const since = yield* live.linesSince({ generation: snapshot.generation, offset: snapshot.offset, ino: 0, size: 0, mtimeMs: 0 })
    if (since._tag === "Repair") return yield* unusable("the journal is missing, not a journal, or was shortened")
    if (since._tag === "Lost") {
      return yield* unusable("its journal position is gone: rotated out, past the end, or followed by an unreadable line")
    }
    const { changed, keys: keysChanged, open } = pendingOf(since.entries, new Set())
    if (keysChanged) yield* keys.load
    const fresh = new RecordIndex()
    const fileKeys = snapshot.records.map((record) => fileKeyOf(record.id))
    snapshot.records.forEach((record, i) => {
      fresh.set(fileKeys[i]!, { _tag: "Record", record, path: recordPath(paths, fileKeys[i]!) })
    })
    live.resumeAt(fresh, since.next, open)
    const { files: present, temps } = yield* files.list
    const toRead = new Set([...snapshot.damaged, ...changed, ...open])
    for (const fileKey of present) if (fresh.get(fileKey) === undefined) toRead.add(fileKey)
    const listed = new Set(present)
    for (const fileKey of fileKeys) if (!listed.has(fileKey)) toRead.add(fileKey)
    yield* live.reread(toRead)
    const index = live.index()
    for (const keyId of index.keyUsage.keys()) {
      if (keys.snapshotKey(keyId) === undefined) {
        return yield* unusable(`it holds records sealed with key ${JSON.stringify(keyId)}, which this process cannot use`)
      }
    }
    for (const damage of index.damaged.values()) {
      if (damage.error._tag === "DecryptionFailed") {
        return yield* unusable(`record file ${damage.path} is sealed with a key this process does not hold`)
      }
    }
    return { temps, reread: toRead.size, previousGeneration: snapshot.generation !== since.next.generation }
  })

  return { save, resume }
}
