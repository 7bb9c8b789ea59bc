/**
 * What this replica knows of each organization's `revision` (the counter every write bumps in the
 * `organizations` row). `SqlSecretStore.revision` reads it synchronously, so the egress resolver
 * reloads values on the first request after a change made through any replica.
 *
 * Two feeds keep it current, for the organizations someone asked about recently:
 * - fast: `NOTIFY` on the store's channel (payload `<revision>:<organization id>`), sent by each
 *   write in the same statement; a listener whose connection dies reconnects with backoff and then
 *   polls once, so a notification lost meanwhile is caught up;
 * - guarantee: a poll of those organizations' revisions every `pollInterval`, which also covers a
 *   listener that is down for long.
 */
import type { SqlError } from "@effect/sql/SqlError"
import { Duration, Effect, Schedule, type Scope } from "effect"

/**
 * A way to receive notifications: succeeds once `LISTEN` is in place on a dedicated connection
 * (held by the scope), with an effect that fails when that connection is lost. `onPayload` is
 * called for each notification.
 */
export type Listen = (
  channel: string,
  onPayload: (payload: string) => void
) => Effect.Effect<Effect.Effect<never, unknown>, unknown, Scope.Scope>

/** Reads the current revisions of `organizations` (absent ones: no row yet). */
export type ReadRevisions = (organizations: ReadonlyArray<string>) => Effect.Effect<ReadonlyArray<readonly [string, number]>, SqlError>

export interface Options {
  readonly channel: string
  readonly listen: Listen | undefined
  readonly readRevisions: ReadRevisions
  /** 0 turns polling off (an embedded database that no other process can write). */
  readonly pollInterval: Duration.Duration
  /** An organization not asked about for this long is no longer watched. */
  readonly forgetAfter: Duration.Duration
}

export interface Freshness {
  readonly revision: (organizationId: string) => number
  /** Polls every watched organization now (also used after a reconnect). */
  readonly poll: Effect.Effect<void, SqlError>
  /** Listener state, for tests and health checks. */
  readonly listening: () => boolean
}

interface Watched {
  revision: number
  askedAt: number
}

/** Starts the feeds in the scope; they stop with it. */
export const make = (options: Options): Effect.Effect<Freshness, never, Scope.Scope> =>
  Effect.gen(function*() {
    const watched = new Map<string, Watched>()
    let listening = false
    const forgetAfter = Duration.toMillis(options.forgetAfter)

    const observe = (organizationId: string, revision: number) => {
      const entry = watched.get(organizationId)
      if (entry !== undefined && revision > entry.revision) entry.revision = revision
    }

    const poll = Effect.suspend(() => {
      const now = Date.now()
      for (const [organizationId, entry] of watched) {
        if (now - entry.askedAt > forgetAfter) watched.delete(organizationId)
      }
      if (watched.size === 0) return Effect.void
      return Effect.map(options.readRevisions([...watched.keys()]), (rows) => {
        for (const [organizationId, revision] of rows) observe(organizationId, revision)
      })
    })

    const onPayload = (payload: string) => {
      const colon = payload.indexOf(":")
      if (colon <= 0) return
      const revision = Number(payload.slice(0, colon))
      if (Number.isSafeInteger(revision)) observe(payload.slice(colon + 1), revision)
    }

    if (options.listen !== undefined) {
      const listen = options.listen
      let failures = 0
      const session = Effect.scoped(Effect.gen(function*() {
        const lost = yield* listen(options.channel, onPayload)
        listening = true
        failures = 0
        // catch up on whatever was notified before LISTEN was in place (first start or reconnect)
        yield* Effect.ignore(poll)
        return yield* lost
      })).pipe(
        Effect.ensuring(Effect.sync(() => {
          listening = false
        })),
        // reconnect with backoff: 50 ms, doubling, at most 5 s between tries
        Effect.catchAll(() => Effect.suspend(() => Effect.sleep(Duration.millis(Math.min(5_000, 50 * 2 ** failures++)))))
      )
      yield* Effect.forkScoped(Effect.forever(session))
    }

    const interval = Duration.toMillis(options.pollInterval)
    if (interval > 0) {
      yield* Effect.ignore(poll).pipe(
        Effect.repeat(Schedule.spaced(options.pollInterval)),
        Effect.forkScoped
      )
    }

    return {
      revision: (organizationId) => {
        const entry = watched.get(organizationId)
        if (entry !== undefined) {
          entry.askedAt = Date.now()
          return entry.revision
        }
        watched.set(organizationId, { revision: 0, askedAt: Date.now() })
        return 0
      },
      poll,
      listening: () => listening
    }
  })
