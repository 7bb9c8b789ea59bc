/**
 * The store's `SecretChanges`: every write bumps its organization's `revision` and sends
 * `pg_notify(channel, [revision, organization, placeholder])` in the same statement. This module
 * turns those into announcements for the layers that keep values (the egress resolver) and pass
 * changes on (the REST server's watch route):
 *
 * - this replica's own writes are announced by the store as soon as their statement succeeds;
 * - other replicas' writes arrive by `LISTEN` on a dedicated connection. While it is connected the
 *   store is `live`; when it is lost, `live` turns false (the resolver falls back to its TTL), the
 *   listener reconnects with backoff, and once `LISTEN` is back it announces a change of every
 *   organization (some may have been missed) and is `live` again;
 * - the guarantee behind both: every `pollInterval`, the revisions of the organizations asked about
 *   recently are read, and any that moved without an announcement is announced (this covers a
 *   connection that died without the client noticing).
 */
import type { SqlError } from "@effect/sql/SqlError"
import { SecretChanges } from "@secretgate/core"
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
  /** An organization not asked about for this long is no longer polled. */
  readonly forgetAfter: Duration.Duration
}

export interface Freshness {
  readonly changes: SecretChanges.SecretChanges
  /** Announces a write this replica made (its statement returned the new revision). */
  readonly wrote: (organizationId: string, revision: number, placeholder: string) => void
  /** Polls every watched organization now. */
  readonly poll: Effect.Effect<void, SqlError>
}

/** The organizations asked about recently (polled), by when they were last asked about. */
type Watched = Map<string, number>

/** Parses a notification payload: `[revision, organization, placeholder]` as JSON. */
const parse = (payload: string): readonly [number, string, string] | undefined => {
  try {
    const value: unknown = JSON.parse(payload)
    if (
      Array.isArray(value) && value.length === 3 && Number.isSafeInteger(Number(value[0])) &&
      typeof value[1] === "string" && typeof value[2] === "string"
    ) return [Number(value[0]), value[1], value[2]]
  } catch {
    // not ours
  }
  return undefined
}

/** Starts the feeds in the scope; they stop with it. */
export const make = (options: Options): Effect.Effect<Freshness, never, Scope.Scope> =>
  Effect.gen(function*() {
    const watched: Watched = new Map()
    // the newest revision known of each organization, so that the notification of a write already
    // announced (this replica's own, or one a poll found) is not announced again
    const latest = new Map<string, number>()
    let listening = false
    const forgetAfter = Duration.toMillis(options.forgetAfter)
    const hub = SecretChanges.makeHub((organizationId) => {
      watched.set(organizationId, Date.now())
      return listening
    })

    /** Records a revision; true when it is news. */
    const observe = (organizationId: string, revision: number): boolean => {
      if (revision <= (latest.get(organizationId) ?? 0)) return false
      if (latest.size >= 100_000) latest.clear() // a bound; forgetting only risks a repeated announcement
      latest.set(organizationId, revision)
      return true
    }

    const poll = Effect.suspend(() => {
      const now = Date.now()
      for (const [organizationId, askedAt] of watched) {
        if (now - askedAt > forgetAfter) watched.delete(organizationId)
      }
      if (watched.size === 0) return Effect.void
      return Effect.map(options.readRevisions([...watched.keys()]), (rows) => {
        // a revision that moved unannounced (the first reading of an organization included: an
        // extra reload, never a missed one)
        for (const [organizationId, revision] of rows) {
          if (observe(organizationId, revision)) hub.publish({ organizationId })
        }
      })
    })

    if (options.listen !== undefined) {
      const listen = options.listen
      let failures = 0
      const session = Effect.scoped(Effect.gen(function*() {
        const lost = yield* listen(options.channel, (payload) => {
          const parsed = parse(payload)
          if (parsed === undefined) return
          const [revision, organizationId, placeholder] = parsed
          if (observe(organizationId, revision)) hub.publish({ organizationId, placeholders: [placeholder] })
        })
        // anything may have changed while no one listened (first start or reconnect)
        yield* Effect.ignore(poll)
        listening = true
        failures = 0
        hub.publish({})
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

    if (Duration.toMillis(options.pollInterval) > 0) {
      yield* Effect.ignore(poll).pipe(Effect.repeat(Schedule.spaced(options.pollInterval)), Effect.forkScoped)
    }

    return {
      changes: hub,
      wrote: (organizationId, revision, placeholder) => {
        observe(organizationId, revision)
        hub.publish({ organizationId, placeholders: [placeholder] })
      },
      poll
    }
  })
