/**
 * `LISTEN` on a dedicated connection, for the two engines. `@effect/sql-pg`'s own `listen` neither
 * reports nor recovers a dropped connection, so the PostgreSQL one is a plain `pg.Client` whose
 * `error`/`end` events fail the effect that `Freshness` waits on (and then reconnects).
 */
import type { PGlite } from "@electric-sql/pglite"
import { Effect } from "effect"
import pg from "pg"
import type { Listen } from "./freshness.js"

/** Connection settings of the listener's own connection (those of the pool). */
export type ClientConfig = pg.ClientConfig

/** A listener over a PostgreSQL server. */
export const postgres = (config: ClientConfig): Listen => (channel, onPayload) =>
  Effect.gen(function*() {
    const client = new pg.Client(config)
    let onLost: ((error: unknown) => void) | undefined
    const lostEarly: Array<unknown> = []
    const lose = (error: unknown) => (onLost === undefined ? lostEarly.push(error) : onLost(error))
    client.on("error", lose)
    client.on("end", () => lose(new Error("the listener's connection ended")))
    client.on("notification", (message) => {
      if (message.channel === channel && message.payload !== undefined) onPayload(message.payload)
    })
    yield* Effect.acquireRelease(
      Effect.tryPromise(() => client.connect()),
      () => Effect.promise(() => client.end().catch(() => undefined)).pipe(Effect.timeoutOption(1_000))
    )
    yield* Effect.tryPromise(() => client.query(`LISTEN ${pg.escapeIdentifier(channel)}`))
    return Effect.async<never, unknown>((resume) => {
      if (lostEarly.length > 0) return resume(Effect.fail(lostEarly[0]))
      onLost = (error) => resume(Effect.fail(error))
    })
  })

/** A listener over PGlite (in process: it is never lost). */
export const pglite = (db: PGlite): Listen => (channel, onPayload) =>
  Effect.gen(function*() {
    yield* Effect.acquireRelease(
      Effect.tryPromise(() => db.listen(channel, onPayload)),
      (unlisten) => Effect.promise(() => unlisten().catch(() => undefined))
    )
    return Effect.never
  })
