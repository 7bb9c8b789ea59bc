/**
 * The journal: an append-only change feed, so that every process's in-memory index stays current
 * without rescanning the store. It holds no record data, only which record files changed:
 *
 *     secretgate-journal 1 <generation> <previous generation or ->
 *     B <fileKey>      a writer is about to replace or remove this record file
 *     C <fileKey>      ... and has done so
 *     K                the manifest or key file changed
 *
 * Only the lock holder appends. A reader remembers its offset and the file's identity (inode,
 * size, mtime): one `stat` tells it whether anything changed. When the journal grows past a limit
 * the lock holder starts a new generation; the previous one stays as `journal.prev` for readers
 * that were behind, and a reader further behind rescans the records.
 *
 * A journal is never shortened within a generation by the store itself (only a torn last line is
 * cut). To notice when someone else shortens or rewrites it, a reader also remembers the last line
 * it consumed and finds it again just before its offset, and the lock holder records the size it
 * reached in `journal.mark` (`<generation> <size>`), which no append of the same generation may be
 * below. A journal that fails either check is treated as broken: the lock holder starts a new
 * generation, and every process, finding its position gone, reads every record file again.
 */
import type { FileSystem } from "@effect/platform"
import type { StoreUnavailable } from "@secretgate/core"
import { Effect, Option } from "effect"
import { FILE_MODE, isNotFound, token, unavailable, writeAtomic } from "./io.js"
import type { Layout } from "./layout.js"

const MAGIC = "secretgate-journal 1"
const HEADER_MAX = 256
const HEADER = /^secretgate-journal 1 ([0-9a-f]{16}) ([0-9a-f]{16}|-)$/
const ENTRY = /^([BC]) ([0-9a-z_-]{1,130})$/

/** One journal line. */
export type Entry =
  | { readonly op: "B" | "C"; readonly fileKey: string }
  | { readonly op: "K" }

/** Where a reader is in the journal. */
export interface Position {
  readonly generation: string
  readonly ino: number
  readonly size: number
  readonly mtimeMs: number
  /** Bytes consumed: always at the end of a complete line. */
  readonly offset: number
  /** The last line consumed (with its newline), where known: it must still end at `offset`. */
  readonly tail?: Uint8Array
}

/** What a read of one journal file found. */
export type Segment =
  | { readonly _tag: "Missing" }
  | { readonly _tag: "Invalid" }
  | {
    readonly _tag: "Read"
    readonly generation: string
    readonly previous: string | undefined
    readonly entries: ReadonlyArray<Entry>
    /** A complete line that is not an entry: the reader cannot know what changed. */
    readonly garbled: boolean
    /** Shorter than `from`, or the line before `from` is not the expected tail: rewritten behind the store's back. */
    readonly rewritten: boolean
    readonly position: Position
  }

const decoder = new TextDecoder()

const readAll = (file: FileSystem.File, from: number, size: number) =>
  Effect.gen(function*() {
    const out = new Uint8Array(Math.max(0, size - from))
    let filled = 0
    yield* file.seek(from, "start")
    while (filled < out.length) {
      const chunk = yield* file.readAlloc(out.length - filled)
      if (Option.isNone(chunk)) break
      out.set(chunk.value, filled)
      filled += chunk.value.length
    }
    return out.subarray(0, filled)
  })

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => a.length === b.length && a.every((byte, i) => byte === b[i])

/** The last complete line of `bytes` (which end with a newline), or `undefined` when there is none. */
const lastLine = (bytes: Uint8Array): Uint8Array | undefined => {
  if (bytes.length === 0) return undefined
  return bytes.slice(bytes.lastIndexOf(0x0a, bytes.length - 2) + 1)
}

/**
 * Reads the journal at `path` from `from` (default: just after the header), only if its
 * generation is `expected` (when given; otherwise the header alone is returned with no entries).
 * With `tail`, the bytes just before `from` must be that line, or the segment is `rewritten`.
 */
export const read = (
  fs: FileSystem.FileSystem,
  path: string,
  options: { readonly from?: number; readonly expected?: string; readonly tail?: Uint8Array | undefined } = {}
): Effect.Effect<Segment, StoreUnavailable> =>
  Effect.scoped(
    Effect.gen(function*() {
      const file = yield* fs.open(path, { flag: "r" })
      const info = yield* file.stat
      const size = Number(info.size)
      const head = yield* readAll(file, 0, Math.min(size, HEADER_MAX))
      const newline = head.indexOf(0x0a)
      const match = newline < 0 ? null : HEADER.exec(decoder.decode(head.subarray(0, newline)))
      if (match === null) return { _tag: "Invalid" } as const
      const generation = match[1]!
      const previous = match[2] === "-" ? undefined : match[2]!
      const headerEnd = newline + 1
      const position = {
        generation,
        ino: Option.getOrElse(info.ino, () => 0),
        size,
        mtimeMs: Option.match(info.mtime, { onNone: () => 0, onSome: (date) => date.getTime() })
      }
      if (options.expected !== undefined && options.expected !== generation) {
        return {
          _tag: "Read",
          generation,
          previous,
          entries: [],
          garbled: false,
          rewritten: false,
          position: { ...position, offset: headerEnd }
        } as const
      }
      const from = Math.max(headerEnd, options.from ?? headerEnd)
      const expectedTail = options.tail !== undefined && from - options.tail.length >= headerEnd ? options.tail : undefined
      const start = from - (expectedTail?.length ?? 0)
      const read = yield* readAll(file, start, size)
      const rewritten = size < from ||
        (expectedTail !== undefined && !sameBytes(read.subarray(0, expectedTail.length), expectedTail))
      const bytes = read.subarray(from - start)
      const end = bytes.lastIndexOf(0x0a) + 1 // a torn last line (no newline yet) is left for later
      const entries: Array<Entry> = []
      let garbled = false
      for (const line of decoder.decode(bytes.subarray(0, end)).split("\n")) {
        if (line === "") continue
        if (line === "K") {
          entries.push({ op: "K" })
          continue
        }
        const entry = ENTRY.exec(line)
        if (entry === null) garbled = true
        else entries.push({ op: entry[1] as "B" | "C", fileKey: entry[2]! })
      }
      const tail = lastLine(bytes.subarray(0, end)) ?? options.tail
      return {
        _tag: "Read",
        generation,
        previous,
        entries,
        garbled,
        rewritten,
        position: { ...position, offset: from + end, ...(tail === undefined ? {} : { tail }) }
      } as const
    })
  ).pipe(
    Effect.catchIf(isNotFound, () => Effect.succeed({ _tag: "Missing" } as const)),
    Effect.mapError(unavailable("read", path))
  )

/** The identity of the journal file now: compared with a `Position` on every read. */
export const identity = (
  fs: FileSystem.FileSystem,
  path: string
): Effect.Effect<{ readonly ino: number; readonly size: number; readonly mtimeMs: number } | undefined, StoreUnavailable> =>
  fs.stat(path).pipe(
    Effect.map((info) => ({
      ino: Option.getOrElse(info.ino, () => 0),
      size: Number(info.size),
      mtimeMs: Option.match(info.mtime, { onNone: () => 0, onSome: (date) => date.getTime() })
    })),
    Effect.map((info): { readonly ino: number; readonly size: number; readonly mtimeMs: number } | undefined => info),
    Effect.catchIf(isNotFound, () => Effect.succeed(undefined)),
    Effect.mapError(unavailable("stat", path))
  )

/** Starts a fresh journal generation at `paths.journal` (atomically replacing any file there). */
export const create = (
  fs: FileSystem.FileSystem,
  paths: Layout,
  previous: string | undefined
): Effect.Effect<void, StoreUnavailable> => writeAtomic(fs, paths.journal, `${MAGIC} ${token()} ${previous ?? "-"}\n`)

/**
 * Starts a new generation, keeping the current one as `journal.prev`. At no moment is there no
 * `journal`: the old file is linked to `journal.prev` before the new one is renamed over it.
 */
export const rollover = (
  fs: FileSystem.FileSystem,
  paths: Layout,
  generation: string
): Effect.Effect<void, StoreUnavailable> => {
  const staging = `${paths.journalPrevious}.tmp`
  return fs.remove(staging).pipe(
    Effect.catchIf(isNotFound, () => Effect.void),
    Effect.zipRight(fs.link(paths.journal, staging)),
    Effect.zipRight(fs.rename(staging, paths.journalPrevious)),
    Effect.mapError(unavailable("keep the previous journal as", paths.journalPrevious)),
    Effect.zipRight(create(fs, paths, generation))
  )
}

/** What `journal.mark` says: the size the lock holder reached in a generation. */
export interface Mark {
  readonly generation: string
  readonly size: number
}

const MARK = /^([0-9a-f]{16}) ([0-9]{1,15})\n$/

/** Reads `journal.mark`; `undefined` when it is missing or unreadable (a mark only ever adds a check). */
export const readMark = (fs: FileSystem.FileSystem, paths: Layout): Effect.Effect<Mark | undefined> =>
  fs.readFileString(paths.journalMark).pipe(
    Effect.map((text) => {
      const match = MARK.exec(text)
      return match === null ? undefined : { generation: match[1]!, size: Number(match[2]) }
    }),
    Effect.orElseSucceed(() => undefined)
  )

/**
 * Records the size the journal reached (lock holder only, after an append). Not fsynced: after a
 * power loss it may be behind the journal (no check lost but that of the lost lines) or, rarely,
 * ahead of it, which only makes the next writer start a new generation.
 */
export const writeMark = (fs: FileSystem.FileSystem, paths: Layout, mark: Mark): Effect.Effect<void, StoreUnavailable> =>
  fs.writeFileString(paths.journalMark, `${mark.generation} ${mark.size}\n`, { mode: FILE_MODE }).pipe(
    Effect.mapError(unavailable("write", paths.journalMark))
  )

/** Appends lines to an open journal (opened with flag "a"). */
export const append = (
  file: FileSystem.File,
  path: string,
  lines: string | Uint8Array
): Effect.Effect<void, StoreUnavailable> =>
  file.writeAll(typeof lines === "string" ? new TextEncoder().encode(lines) : lines).pipe(
    Effect.mapError(unavailable("append to", path))
  )
