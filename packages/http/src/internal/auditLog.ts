/**
 * The management audit trail of the REST server: a JSON Lines file (one `SecretAudit` event per
 * line, created with mode 0600 and appended to), and which mutation a refused request attempted.
 */
import { SecretAudit } from "@secretgate/core"
import { Effect, type Scope } from "effect"
import { open } from "node:fs/promises"

/**
 * A sink appending each event to the file at `path` (created 0600; an existing file is tightened
 * to 0600). Each line is written before the request is answered; a failed write is logged (the
 * change itself has happened) and the server carries on. The file is closed with the scope.
 */
export const jsonLinesFile = (path: string): Effect.Effect<SecretAudit.Sink, Error, Scope.Scope> =>
  Effect.gen(function*() {
    const handle = yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: async () => {
          const handle = await open(path, "a", 0o600)
          try {
            await handle.chmod(0o600)
          } catch (error) {
            await handle.close()
            throw error
          }
          return handle
        },
        catch: (error) => new Error(`could not open the audit log ${path}: ${(error as Error).message}`)
      }),
      (handle) => Effect.promise(() => handle.close())
    )
    // one write at a time, so that lines never interleave
    const lock = yield* Effect.makeSemaphore(1)
    return (event) =>
      lock.withPermits(1)(
        Effect.tryPromise(() => handle.write(`${SecretAudit.toJsonLine(event)}\n`)).pipe(
          Effect.catchAll((error) => Effect.logError(`secretgate: could not write the audit log ${path}`, error.cause)),
          Effect.asVoid
        )
      )
  })

/** Several sinks as one. */
export const both = (first: SecretAudit.Sink | undefined, second: SecretAudit.Sink): SecretAudit.Sink =>
  first === undefined ? second : (event) => Effect.zipRight(first(event), second(event))

/**
 * The mutation a request to a management route attempts, from its method (the route has matched:
 * `POST` is create, `PATCH` update, `DELETE` delete), with the secret id of its path; `undefined`
 * for reads.
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
