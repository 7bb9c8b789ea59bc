/**
 * The management audit trail of the REST server: a JSON Lines file (one `SecretAudit` event per
 * line, created with mode 0600 and appended to), and which mutation a refused request attempted.
 */
import { PrivateFile, SecretAudit } from "@secretgate/core"
import { Clock, Duration, Effect, type Scope } from "effect"
import { appendFile, close } from "node:fs"
import { promisify } from "node:util"

const appendTo = promisify(appendFile)
const closeFd = promisify(close)

/**
 * A sink appending each event to the file at `path`, opened with core's `PrivateFile.openAppend`
 * (created 0600; an existing file is narrowed to 0600; a symbolic link, a FIFO or other non-regular
 * file, another user's file or a hard-linked one is refused). Each line is written before the
 * request is answered; a failed write is logged (the change itself has happened) and the server
 * carries on. The file is closed with the scope.
 */
export const jsonLinesFile = (path: string): Effect.Effect<SecretAudit.Sink, PrivateFile.PrivateFileError, Scope.Scope> =>
  Effect.gen(function*() {
    const fd = yield* Effect.acquireRelease(
      Effect.try({
        try: () => PrivateFile.openAppend(path, "the audit log"),
        catch: (error) => error as PrivateFile.PrivateFileError
      }),
      (fd) => Effect.promise(() => closeFd(fd))
    )
    // one write at a time, so that lines never interleave
    const lock = yield* Effect.makeSemaphore(1)
    return (event) =>
      lock.withPermits(1)(
        Effect.tryPromise(() => appendTo(fd, `${SecretAudit.toJsonLine(event)}\n`)).pipe(
          Effect.catchAll((error) => Effect.logError(`secretgate: could not write the audit log ${path}`, error.cause)),
          Effect.asVoid
        )
      )
  })

const KEYLESS_INTERVAL = Duration.seconds(1)

/**
 * `sink`, with the `unauthenticated` events (no API key, or an unknown one: anyone can cause them)
 * stripped of everything the caller chose (the secret id of the path, any name or field) and
 * written at most once a second: an event arriving within a second of the last one written is
 * folded into the next, whose `attempts` says how many it stands for. Folded attempts are written
 * a second after the last line at the latest, and when the scope closes. Other events pass as they
 * are.
 */
export const foldKeyless = (sink: SecretAudit.Sink): Effect.Effect<SecretAudit.Sink, never, Scope.Scope> =>
  Effect.gen(function*() {
    const scope = yield* Effect.scope
    const lock = yield* Effect.makeSemaphore(1)
    let lastWritten = Number.NEGATIVE_INFINITY
    let folded = 0
    let latest: SecretAudit.ManagementEvent | undefined
    let flushScheduled = false
    const write = (event: SecretAudit.ManagementEvent, attempts: number) =>
      Effect.flatMap(Clock.currentTimeMillis, (now) => {
        lastWritten = now
        folded = 0
        latest = undefined
        return sink({ ...event, attempts })
      })
    const flush = Effect.uninterruptible(lock.withPermits(1)(
      Effect.suspend(() => (latest === undefined ? Effect.void : write(latest, folded)))
    ))
    yield* Effect.addFinalizer(() => flush)
    const keyless = (event: SecretAudit.ManagementEvent): SecretAudit.ManagementEvent => ({
      time: event.time,
      organizationId: undefined,
      actor: undefined,
      action: event.action,
      outcome: event.outcome,
      secretId: undefined,
      secretName: undefined,
      fields: [],
      error: event.error
    })
    return (event) => {
      if (event.outcome !== "unauthenticated") return sink(event)
      return lock.withPermits(1)(Effect.flatMap(Clock.currentTimeMillis, (now) => {
        const due = lastWritten + Duration.toMillis(KEYLESS_INTERVAL)
        if (now >= due) return write(keyless(event), folded + 1)
        folded += 1
        latest = keyless(event)
        if (flushScheduled) return Effect.void
        flushScheduled = true
        return Effect.asVoid(Effect.forkIn(
          Effect.zipRight(
            Effect.sleep(Duration.millis(due - now)),
            Effect.zipRight(Effect.sync(() => {
              flushScheduled = false
            }), flush)
          ),
          scope
        ))
      }))
    }
  })

/** Several sinks as one. */
export const both = (first: SecretAudit.Sink | undefined, second: SecretAudit.Sink): SecretAudit.Sink =>
  first === undefined ? second : (event) => Effect.zipRight(first(event), second(event))

/**
 * The mutation a request to a management route attempts, from its method (the route has matched:
 * `POST` is create, `PATCH` update, `DELETE` delete), with the secret id of its path; `undefined`
 * for reads. (`foldKeyless` drops the secret id again when no key was recognized.)
 */
export const attemptOf = (method: string, url: string): Omit<SecretAudit.Attempt, "organizationId"> | undefined => {
  const action = method === "POST" ? "create" : method === "PATCH" ? "update" : method === "DELETE" ? "delete" : undefined
  if (action === undefined) return undefined
  if (action === "create") return { action }
  const path = url.split("?")[0]!
  const last = path.slice(path.lastIndexOf("/") + 1)
  let secretId: string
  try {
    secretId = decodeURIComponent(last)
  } catch {
    secretId = last
  }
  return { action, secretId }
}
