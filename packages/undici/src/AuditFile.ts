/**
 * `AuditFile`: a ready audit sink that appends events to a file as JSON Lines, one object per line,
 * through a write stream (the sink runs on the request path: it never writes synchronously). The
 * file is opened with core's `PrivateFile.openAppend`: created `0600`; an existing one is appended
 * to and narrowed to `0600`, and refused if it is a symbolic link, not a regular file (a FIFO is
 * refused without blocking), another user's, or hard-linked. Fields that are `undefined` are written
 * as `null`, so every line of one event type has the same keys. The schema is in `docs/egress.md`.
 *
 * @since 0.2.0
 */
import { PrivateFile } from "@secretgate/core"
import { Data } from "effect"
import { createWriteStream } from "node:fs"
import type { AuditEvent } from "./AuditEvent.js"

/**
 * The audit file cannot be opened: a symbolic link, not a regular file, another user's, hard-linked,
 * or an error of the file system (`reason` and the message say which).
 *
 * @since 0.2.0
 */
export class AuditFileError extends Data.TaggedError("AuditFileError")<{
  readonly message: string
  readonly path: string
  /** @since 0.2.0 */
  readonly reason: PrivateFile.Reason
}> {}

/**
 * An open audit file.
 *
 * @since 0.2.0
 */
export interface AuditFile<E extends object = AuditEvent> {
  readonly path: string
  /** The sink: appends `event` as one JSON line. Never throws; after a write error, drops events. */
  readonly write: (event: E) => void
  /** The write error that stopped the file, if one did. */
  readonly error: () => Error | undefined
  /** Writes what is buffered and closes the file. */
  readonly close: () => Promise<void>
}

const line = (event: object): string => `${JSON.stringify(event, (_key, value: unknown) => (value === undefined ? null : value))}\n`

/**
 * Opens (creates `0600`, or appends to) `path`. Throws `AuditFileError` when it cannot.
 *
 * @since 0.2.0
 * @example
 * ```ts
 * import { AuditFile, SecretgateAgent } from "@secretgate/undici"
 * const audit = AuditFile.open("/var/log/secretgate/egress.jsonl")
 * const agent = new SecretgateAgent({ resolver, sandbox: "build-42", audit: audit.write })
 * // ... at shutdown:
 * await agent.close()
 * await audit.close()
 * ```
 */
export const open = <E extends object = AuditEvent>(path: string): AuditFile<E> => {
  let fd: number
  try {
    fd = PrivateFile.openAppend(path, "the audit file")
  } catch (error) {
    const { message, reason } = error as PrivateFile.PrivateFileError
    throw new AuditFileError({ message, path, reason })
  }
  const stream = createWriteStream("", { fd, flags: "a" })
  let failure: Error | undefined
  stream.on("error", (error) => {
    failure ??= error
  })
  return {
    path,
    write: (event) => {
      if (failure !== undefined || stream.destroyed) return
      try {
        stream.write(line(event))
      } catch (error) {
        failure ??= error as Error
      }
    },
    error: () => failure,
    close: () =>
      new Promise<void>((resolve) => {
        if (stream.destroyed) return resolve()
        stream.end(() => resolve())
        stream.once("error", () => resolve())
      })
  }
}
