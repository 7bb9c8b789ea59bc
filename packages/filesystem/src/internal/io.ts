/**
 * Small I/O helpers: error mapping, durable atomic writes, bounded reads.
 */
import type { FileSystem } from "@effect/platform"
import type { PlatformError } from "@effect/platform/Error"
import { StoreUnavailable } from "@secretgate/core"
import { Effect } from "effect"
import { randomBytes } from "node:crypto"
import * as Path from "node:path"

/** File mode of every file the store writes. */
export const FILE_MODE = 0o600
/** File mode of every directory the store creates. */
export const DIRECTORY_MODE = 0o700
/** Prefix of the temporary files of atomic writes; leftovers of a crash are removed under the lock. */
export const TEMP_PREFIX = ".tmp-"

const errnoOf = (error: PlatformError): string | undefined =>
  error._tag === "SystemError" ? (error.cause as NodeJS.ErrnoException | undefined)?.code : undefined

/** What an operator can do about the errors a store meets in practice, by errno code. */
const EXPLAINED: Readonly<Record<string, string>> = {
  EROFS: "the file system is read-only; remount it read-write, or configure a store directory on a writable file system",
  EACCES: "permission denied; the store directory and its files must belong to the user running this process",
  EPERM: "operation not permitted; the store directory and its files must belong to the user running this process",
  ENOSPC: "no space left on the device; free some space (nothing was changed)",
  EDQUOT: "the disk quota is exhausted; free some space or raise the quota (nothing was changed)",
  EMFILE: "this process has too many open files; raise its limit (ulimit -n)",
  ENFILE: "the system has too many open files",
  EIO: "the device reported an I/O error; check the disk",
  ENOTDIR: "a part of the path is not a directory"
}

const reasonOf = (error: PlatformError): string => {
  const code = errnoOf(error)
  const explained = code === undefined ? undefined : EXPLAINED[code]
  if (explained !== undefined) return explained
  if (error._tag !== "SystemError") return error._tag
  return error.reason === "Unknown" && code !== undefined ? code : error.reason
}

// the system's own words ("EROFS: read-only file system, open '…'"), without the platform's generic reason
const detailOf = (error: PlatformError): string =>
  error._tag === "SystemError" && error.description !== undefined ? error.description : error.message

/** `true` for "no such file or directory". */
export const isNotFound = (error: PlatformError): boolean => error._tag === "SystemError" && error.reason === "NotFound"

/** `true` when the path does not exist: no such file, or a component of it is not a directory. */
export const isMissing = (error: PlatformError): boolean =>
  isNotFound(error) ||
  (error._tag === "SystemError" && (error.cause as NodeJS.ErrnoException | undefined)?.code === "ENOTDIR")

/** `true` for "already exists". */
export const isAlreadyExists = (error: PlatformError): boolean =>
  error._tag === "SystemError" && error.reason === "AlreadyExists"

/** Maps an I/O failure to `StoreUnavailable`, saying what was being done to which path. */
export const unavailable = (what: string, path: string) => (error: PlatformError): StoreUnavailable =>
  new StoreUnavailable({
    message: `could not ${what} ${path}: ${reasonOf(error)} (${detailOf(error)})`
  })

/** Random hex, for temp file names and lock tokens. */
export const token = (bytes = 8): string => randomBytes(bytes).toString("hex")

/** fsync of a directory, so that a rename or unlink in it survives a power loss. */
export const syncDirectory = (fs: FileSystem.FileSystem, directory: string): Effect.Effect<void, StoreUnavailable> =>
  process.platform === "win32"
    ? Effect.void // directories cannot be opened on Windows; NTFS journals metadata itself
    : Effect.scoped(Effect.flatMap(fs.open(directory, { flag: "r" }), (file) => file.sync)).pipe(
      Effect.mapError(unavailable("fsync directory", directory))
    )

/**
 * Writes `data` to `path` atomically and durably: a temp file in the same directory (mode 0600,
 * created exclusively), fsync, rename over `path`, fsync of the directory. A reader sees the old
 * content or the new, never a mix; after a crash the file is old or new.
 */
export const writeAtomic = (
  fs: FileSystem.FileSystem,
  path: string,
  data: string
): Effect.Effect<void, StoreUnavailable> => {
  const directory = Path.dirname(path)
  const temp = Path.join(directory, `${TEMP_PREFIX}${token()}`)
  const bytes = new TextEncoder().encode(data)
  const write = Effect.scoped(
    Effect.gen(function*() {
      const file = yield* fs.open(temp, { flag: "wx", mode: FILE_MODE })
      yield* file.writeAll(bytes)
      yield* file.sync
    })
  ).pipe(Effect.mapError(unavailable("write", temp)))
  return write.pipe(
    Effect.zipRight(fs.rename(temp, path).pipe(Effect.mapError(unavailable("rename into place", path)))),
    Effect.tapError(() => fs.remove(temp).pipe(Effect.ignore)),
    Effect.zipRight(syncDirectory(fs, directory))
  )
}

/** Removes `path` (a missing file is fine) and fsyncs its directory. */
export const removeDurably = (
  fs: FileSystem.FileSystem,
  path: string
): Effect.Effect<void, StoreUnavailable> =>
  fs.remove(path).pipe(
    Effect.catchIf(isNotFound, () => Effect.void),
    Effect.mapError(unavailable("remove", path)),
    Effect.zipRight(syncDirectory(fs, Path.dirname(path)))
  )

/** The file's text, or `undefined` when it does not exist. */
export const readIfExists = (
  fs: FileSystem.FileSystem,
  path: string
): Effect.Effect<string | undefined, StoreUnavailable> =>
  fs.readFileString(path, "utf8").pipe(
    Effect.catchIf(isMissing, () => Effect.succeed(undefined)),
    Effect.mapError(unavailable("read", path))
  )

/** Directory entries, or `[]` when the directory does not exist. */
export const listIfExists = (
  fs: FileSystem.FileSystem,
  path: string
): Effect.Effect<ReadonlyArray<string>, StoreUnavailable> =>
  fs.readDirectory(path).pipe(
    Effect.catchIf(isNotFound, () => Effect.succeed([])),
    Effect.mapError(unavailable("list", path))
  )

/** What `readBounded` found at a path. */
export type BoundedRead =
  | { readonly _tag: "Text"; readonly text: string }
  /** Not a file this store could have written: a directory, too large, not UTF-8. Not an I/O error. */
  | { readonly _tag: "Odd"; readonly why: string }

// not fatal: bytes that are not UTF-8 become U+FFFD, and the record then fails to parse or its MAC
const utf8 = new TextDecoder("utf-8")

/**
 * Reads a small file: `stat` first, then the file if it is a regular file of at most `limit`
 * bytes. `undefined` when it does not exist. A directory or a file larger than `limit` (a sparse
 * 600 MB file is never read into memory) is reported as `Odd` with the reason; only real I/O
 * errors fail. Bytes that are not UTF-8 are decoded lossily (the caller's parse or MAC check then
 * rejects them). (`stat` then `readFile` rather than `fstat` on an open descriptor: a third of the
 * cost per read; the store replaces record files only with small ones, by rename.) `what` names
 * the largest file expected, for the reason given.
 */
export const readBounded = (
  fs: FileSystem.FileSystem,
  path: string,
  limit: number,
  what = "any record"
): Effect.Effect<BoundedRead | undefined, StoreUnavailable> =>
  Effect.suspend(() => Effect.gen(function*() {
    const info = yield* fs.stat(path)
    if (info.type === "Directory") return { _tag: "Odd", why: "it is a directory, not a file" } as const
    if (info.type !== "File") return { _tag: "Odd", why: `it is not a regular file (${info.type})` } as const
    if (Number(info.size) > limit) {
      return { _tag: "Odd", why: `it is ${Number(info.size)} bytes, larger than ${what} (${limit} bytes at most)` } as const
    }
    const bytes = yield* fs.readFile(path)
    if (bytes.length > limit) {
      return { _tag: "Odd", why: `it is ${bytes.length} bytes, larger than ${what} (${limit} bytes at most)` } as const
    }
    return { _tag: "Text", text: utf8.decode(bytes) } as const
  })).pipe(
    Effect.catchIf(isMissing, () => Effect.succeed(undefined)),
    Effect.catchIf(
      (error) => errnoOf(error) === "EISDIR",
      () => Effect.succeed({ _tag: "Odd", why: "it is a directory, not a file" } as const)
    ),
    Effect.mapError(unavailable("read", path))
  )
