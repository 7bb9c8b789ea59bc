/**
 * Where everything lives inside a store directory. See docs/filesystem.md.
 */
import { createHash } from "node:crypto"
import * as Path from "node:path"

/** `format` field of the manifest. */
export const STORE_FORMAT = "secretgate-filesystem"
/** On-disk format version this code reads and writes. */
export const FORMAT_VERSION = 1

/** The paths of one store. */
export interface Layout {
  readonly root: string
  /** `store.json`: format, version, the key checks. */
  readonly manifest: string
  /** `keys.json`: generated keys, when no key is configured. */
  readonly keyFile: string
  /** `lock`: held by the one process writing. */
  readonly lock: string
  /** `lock.break`: held while a stale `lock` is being removed. */
  readonly lockBreaker: string
  /** `journal`: the change feed that keeps every process's cache current. */
  readonly journal: string
  /** `journal.prev`: the previous journal generation, for processes that are behind. */
  readonly journalPrevious: string
  /** `journal.mark`: the size the journal reached in its generation, to notice it being shortened. */
  readonly journalMark: string
  /** `snapshot`: the authenticated metadata index at a journal position, so that an open need not read every record. */
  readonly snapshot: string
  /** `records/`: one file per secret in 256 shard directories. */
  readonly records: string
}

/** The layout of the store in `root`. */
export const layout = (root: string): Layout => ({
  root,
  manifest: Path.join(root, "store.json"),
  keyFile: Path.join(root, "keys.json"),
  lock: Path.join(root, "lock"),
  lockBreaker: Path.join(root, "lock.break"),
  journal: Path.join(root, "journal"),
  journalPrevious: Path.join(root, "journal.prev"),
  journalMark: Path.join(root, "journal.mark"),
  snapshot: Path.join(root, "snapshot"),
  records: Path.join(root, "records")
})

// lower-case only, so that two ids never share a file on a case-insensitive file system
const PLAIN_ID = /^[0-9a-f]{2}[0-9a-z-]{0,126}$/
const KEY = "(?:[0-9a-f]{2}[0-9a-z-]{0,126}|_[0-9a-f]{64})"
const FILE_NAME = new RegExp(`^${KEY}\\.json$`)
const FILE_KEY = new RegExp(`^${KEY}$`)

/** `true` for a string that is a file key (the name of a record file without `.json`). */
export const isFileKey = (text: string): boolean => FILE_KEY.test(text)

/**
 * The file key of a record id: the id itself when it is a plain lower-case id (uuids are), else
 * `_` and the SHA-256 of the id. File keys are safe file names and name journal entries.
 */
export const fileKeyOf = (id: string): string =>
  PLAIN_ID.test(id) ? id : `_${createHash("sha256").update(id, "utf8").digest("hex")}`

/** The shard directory name of a file key: two hex digits. */
export const shardOf = (fileKey: string): string => (fileKey.startsWith("_") ? fileKey.slice(1, 3) : fileKey.slice(0, 2))

/** The path of the record file of a file key. */
export const recordPath = (paths: Layout, fileKey: string): string =>
  // a plain concatenation: `records` is resolved and both parts are safe names (Path.join costs ~1 µs)
  `${paths.records}${Path.sep}${shardOf(fileKey)}${Path.sep}${fileKey}.json`

/** The file key of a record file name in shard `shard`, or `undefined` for a name the store never writes. */
export const fileKeyOfName = (shard: string, name: string): string | undefined => {
  if (!FILE_NAME.test(name)) return undefined
  const fileKey = name.slice(0, -".json".length)
  return shardOf(fileKey) === shard ? fileKey : undefined
}

/** `true` for a shard directory name. */
export const isShard = (name: string): boolean => /^[0-9a-f]{2}$/.test(name)
