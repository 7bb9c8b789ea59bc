/**
 * `PrivateFile`: opens a file that only this process's user may read, for appending (the audit
 * trails of the REST server and of the egress agent). The path is opened with
 * `O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_NONBLOCK` (mode `0600`), so that a symbolic
 * link at the path is never followed and a FIFO never blocks the opening; the opened descriptor is
 * then checked (`fstat`), and refused unless it is a regular file, owned by the current user, with
 * one link (a hard link elsewhere would let its owner read every line); last it is narrowed to
 * `0600` (`fchmod`).
 *
 * @since 0.2.0
 */
import { Data } from "effect"
import { closeSync, constants, fchmodSync, fstatSync, openSync } from "node:fs"

/**
 * Why the file was refused.
 *
 * - `symlink`: a symbolic link is at the path
 * - `not-regular`: a directory, FIFO, socket or device is at the path
 * - `other-owner`: the file belongs to another user
 * - `hard-linked`: the file has more than one link
 * - `io`: the file system refused (the message says how)
 *
 * @since 0.2.0
 */
export type Reason = "symlink" | "not-regular" | "other-owner" | "hard-linked" | "io"

/**
 * The file at `path` cannot be opened as a private file; `message` says why and what to do.
 *
 * @since 0.2.0
 */
export class PrivateFileError extends Data.TaggedError("PrivateFileError")<{
  readonly message: string
  readonly path: string
  readonly reason: Reason
}> {}

const FLAGS = constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT | constants.O_NOFOLLOW | constants.O_NONBLOCK

/**
 * Opens `path` for appending (creating it `0600`) and returns its file descriptor, which the
 * caller closes. `what` names the file in messages (`"the audit log"`). Throws `PrivateFileError`.
 *
 * @since 0.2.0
 * @example
 * ```ts
 * import { PrivateFile } from "@secretgate/core"
 * import { closeSync, writeSync } from "node:fs"
 *
 * const fd = PrivateFile.openAppend("/var/log/secretgate/audit.jsonl", "the audit log")
 * writeSync(fd, "{}\n")
 * closeSync(fd)
 * ```
 */
export const openAppend = (path: string, what = "the file"): number => {
  const refuse = (reason: Reason, why: string) =>
    new PrivateFileError({ message: `${what} ${path} ${why}`, path, reason })
  let fd: number
  try {
    fd = openSync(path, FLAGS, 0o600)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === "ELOOP") throw refuse("symlink", "is a symbolic link; give the path of a regular file")
    // ENXIO: a FIFO that no one reads; EISDIR: a directory
    if (code === "ENXIO" || code === "EISDIR") {
      throw refuse("not-regular", "is not a regular file; give the path of a regular file")
    }
    throw refuse("io", `cannot be opened: ${(error as Error).message}`)
  }
  try {
    const info = fstatSync(fd)
    if (!info.isFile()) throw refuse("not-regular", "is not a regular file; give the path of a regular file")
    const uid = process.getuid?.()
    if (uid !== undefined && info.uid !== uid) {
      throw refuse(
        "other-owner",
        `belongs to another user (uid ${info.uid}, this process runs as ${uid}); remove it or give another path`
      )
    }
    if (info.nlink !== 1) {
      throw refuse("hard-linked", `has ${info.nlink} links (a hard link elsewhere); remove it or give another path`)
    }
    fchmodSync(fd, 0o600)
  } catch (error) {
    closeSync(fd)
    if (error instanceof PrivateFileError) throw error
    throw refuse("io", `cannot be made private (mode 0600): ${(error as Error).message}`)
  }
  return fd
}
