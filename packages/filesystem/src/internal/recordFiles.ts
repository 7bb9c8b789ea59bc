/**
 * The `records/` directory: reading one record file (into a whole record, or into what the index
 * keeps of it), listing the shard directories, reading every file (a scan), and creating a shard
 * before its first write. Its only state is the set of shard directories known to exist.
 */
import type { FileSystem } from "@effect/platform"
import type { StoreError, StoreUnavailable } from "@secretgate/core"
import { Effect } from "effect"
import * as Path from "node:path"
import { DIRECTORY_MODE, listIfExists, readBounded, syncDirectory, TEMP_PREFIX, unavailable } from "./io.js"
import { fileKeyOfName, isShard, type Layout, recordPath } from "./layout.js"
import * as RecordFile from "./recordFile.js"
import { type Entry, metaOf, RecordIndex } from "./recordIndex.js"
import type { StoreKeys } from "./storeKeys.js"

/** What the index keeps of one record file (never its sealed value). */
export interface Indexed {
  readonly entry: Entry
  /** Set when the file is sealed with a key the store knows and this process does not hold. */
  readonly missingKey: string | undefined
}

/** Every record file read: the index they make, leftover temp files, and keys this process lacks. */
export interface Scan {
  readonly index: RecordIndex
  readonly temps: ReadonlyArray<string>
  /** Key id → how many files are sealed with it (known to the store, not held by this process). */
  readonly missingKeys: ReadonlyMap<string, number>
}

/** The record files and leftover temp files in the shard directories (names only). */
export interface Listing {
  readonly files: ReadonlyArray<string>
  readonly temps: ReadonlyArray<string>
}

/** The record files of one store. */
export interface RecordFiles {
  /**
   * One record file, `undefined` when it does not exist. Only real I/O errors fail; a file no
   * record can be (a directory, too large, not UTF-8) is damage of that one record.
   */
  readonly read: (fileKey: string) => Effect.Effect<RecordFile.Decoded | undefined, StoreUnavailable>
  /** What the index keeps of one record file, `undefined` when it does not exist. */
  readonly readEntry: (fileKey: string) => Effect.Effect<Indexed | undefined, StoreUnavailable>
  /** The record files and leftover temp files: no file is read. */
  readonly list: Effect.Effect<Listing, StoreUnavailable>
  /** Reads every record file into a fresh index, oldest record first. */
  readonly scan: Effect.Effect<Scan, StoreError>
  /** `true` when some shard holds a record file (names only). */
  readonly any: Effect.Effect<boolean, StoreUnavailable>
  /** Creates the shard directory of a record file if this process has not seen it. */
  readonly ensureShard: (shard: string) => Effect.Effect<void, StoreUnavailable>
}

/** The record files of the store at `paths`, decoded with `keys`. */
export const make = (fs: FileSystem.FileSystem, paths: Layout, keys: StoreKeys): RecordFiles => {
  const shards = new Set<string>()

  const read = (fileKey: string): Effect.Effect<RecordFile.Decoded | undefined, StoreUnavailable> => {
    const path = recordPath(paths, fileKey)
    return Effect.map(readBounded(fs, path, RecordFile.MAX_FILE_BYTES), (read): RecordFile.Decoded | undefined => {
      if (read === undefined) return undefined
      if (read._tag === "Odd") {
        return { _tag: "Damaged", damage: RecordFile.damaged(fileKey, path, read.why, { id: fileKey }) }
      }
      return keys.decode(fileKey, path, read.text)
    })
  }

  const entryOf = (fileKey: string, decoded: RecordFile.Decoded): Entry =>
    decoded._tag === "Record"
      ? { _tag: "Record", record: metaOf(decoded.record), path: recordPath(paths, fileKey) }
      : { _tag: "Damaged", damage: decoded.damage }

  const readEntry = (fileKey: string): Effect.Effect<Indexed | undefined, StoreUnavailable> =>
    Effect.map(read(fileKey), (decoded) =>
      decoded === undefined ? undefined : {
        entry: entryOf(fileKey, decoded),
        missingKey: decoded._tag === "MissingKey" ? decoded.keyId : undefined
      })

  const shardNames = Effect.map(listIfExists(fs, paths.records), (names) => names.filter(isShard))

  const list = Effect.gen(function*() {
    const temps: Array<string> = []
    const files: Array<string> = []
    yield* Effect.forEach(yield* shardNames, (shard) =>
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

  const scan = Effect.gen(function*() {
    const { files, temps } = yield* list
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

  const any = Effect.gen(function*() {
    for (const shard of yield* shardNames) {
      const names = yield* listIfExists(fs, Path.join(paths.records, shard))
      if (names.some((name) => fileKeyOfName(shard, name) !== undefined)) return true
    }
    return false
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

  return { read, readEntry, list, scan, any, ensureShard }
}
