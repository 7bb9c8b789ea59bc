/**
 * What the database's failures mean for a caller: `SqlError`s become `StoreUnavailable` with a
 * message a person can act on; serialization failures and deadlocks are retried first. The
 * driver's error objects (which may carry the statement's parameters) never leave this module.
 */
import type { SqlError } from "@effect/sql/SqlError"
import { StoreUnavailable } from "@secretgate/core"
import { Duration, Effect, Option, Schedule } from "effect"

/** The PostgreSQL error fields we read (pg and PGlite both expose them). */
interface DatabaseError {
  readonly code?: unknown
  readonly constraint?: unknown
  readonly message?: unknown
}

const causeOf = (error: SqlError): DatabaseError =>
  typeof error.cause === "object" && error.cause !== null ? (error.cause as DatabaseError) : {}

/** The SQLSTATE of the failure, when the server sent one. */
export const sqlState = (error: SqlError): string | undefined => {
  const code = causeOf(error).code
  return typeof code === "string" && /^[0-9A-Z]{5}$/.test(code) ? code : undefined
}

/** The constraint a failure names (unique and foreign-key violations). */
export const constraintOf = (error: SqlError): string | undefined => {
  const constraint = causeOf(error).constraint
  return typeof constraint === "string" ? constraint : undefined
}

/** `40001` serialization failure, `40P01` deadlock: the statement may simply run again. */
export const isTransient = (error: SqlError): boolean => {
  const state = sqlState(error)
  return state === "40001" || state === "40P01"
}

// Node socket errors, and the pg driver's own words for a lost connection
const NETWORK = /^(ECONNREFUSED|ECONNRESET|ETIMEDOUT|EPIPE|ENOTFOUND|EAI_AGAIN|EHOSTUNREACH|ENETUNREACH)$/
const LOST = /Connection terminated|connection timeout|Connection timed out|timeout exceeded when trying to connect|Client has encountered a connection error|not queryable/i

/** Why the database could not be used, in words for an operator. */
const describe = (error: SqlError, where: string): string => {
  const cause = causeOf(error)
  const state = sqlState(error)
  const code = typeof cause.code === "string" ? cause.code : undefined
  const text = typeof cause.message === "string" ? cause.message : ""
  if (code !== undefined && NETWORK.test(code)) {
    return `the database ${where} cannot be reached (${code}): check that it is running and that the connection settings are right`
  }
  if (state !== undefined && (state.startsWith("08") || state === "57P01" || state === "57P02" || state === "57P03")) {
    return `the connection to the database ${where} was lost (SQLSTATE ${state}): the operation may or may not have been applied; retry it once the database is back`
  }
  if (state === "53300") {
    return `the database ${where} has no free connection slots (too many clients): lower maxConnections per replica or raise max_connections`
  }
  if (state === "28000" || state === "28P01") {
    return `the database ${where} refused the credentials (SQLSTATE ${state}): check the user and password of the connection settings`
  }
  if (state === "3D000") return `the database ${where} does not exist (SQLSTATE 3D000): create it or fix the connection settings`
  if (state === "40001" || state === "40P01") {
    return `the database ${where} kept failing the statement with a serialization failure or deadlock (SQLSTATE ${state}) after it was run again several times: too many writers at once; retry`
  }
  if (LOST.test(text) || LOST.test(error.message)) {
    return `the connection to the database ${where} was lost or timed out: the operation may or may not have been applied; retry it once the database is back`
  }
  if (state !== undefined) return `the database ${where} failed the statement (SQLSTATE ${state})`
  return `the database ${where} failed: ${error.message}`
}

/** A `StoreUnavailable` for a database failure; never carries the driver's error (or its parameters). */
export const unavailable = (where: string) => (error: SqlError): StoreUnavailable =>
  new StoreUnavailable({ message: describe(error, where) })

const backoff = Schedule.exponential(Duration.millis(5), 2).pipe(Schedule.jittered, Schedule.intersect(Schedule.recurs(8)))

/**
 * Retries serialization failures and deadlocks (a few times, with jittered backoff). The retry is
 * set up only once a statement has failed: a schedule's driver per statement cost a get by id as
 * much CPU as decoding its row.
 */
export const retryTransient = <A, R>(effect: Effect.Effect<A, SqlError, R>): Effect.Effect<A, SqlError, R> =>
  Effect.catchIf(effect, isTransient, () => retryAgain(effect))

/** After a first transient failure: `effect` again at once, then with backoff while transient. */
export const retryAgain = <A, R>(effect: Effect.Effect<A, SqlError, R>): Effect.Effect<A, SqlError, R> =>
  Effect.retry(effect, { while: isTransient, schedule: backoff })

/**
 * `withTransaction`, with a failed `COMMIT` (a connection lost at that moment) as a failure
 * instead of the defect `@effect/sql` makes of it.
 */
export const inTransaction = <A, E, R>(
  withTransaction: <A1, E1, R1>(effect: Effect.Effect<A1, E1, R1>) => Effect.Effect<A1, E1 | SqlError, R1>,
  effect: Effect.Effect<A, E, R>
): Effect.Effect<A, E | SqlError, R> =>
  withTransaction(effect).pipe(
    Effect.catchSomeDefect((defect) =>
      isSqlError(defect) ? Option.some(Effect.fail(defect)) : Option.none()
    )
  )

const isSqlError = (value: unknown): value is SqlError =>
  typeof value === "object" && value !== null && (value as { readonly _tag?: unknown })._tag === "SqlError"
