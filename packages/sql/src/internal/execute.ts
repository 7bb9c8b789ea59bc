/**
 * How the store's statements reach the database. `@effect/sql`'s statement machinery (a span, the
 * compiler, fiber-ref and transaction look-ups per statement) cost more CPU than the database spent
 * answering a get by id, so where the store owns the driver it calls the driver directly:
 *
 * - PostgreSQL, when the pool is the store's own (`SqlSecretStore.layer`): `pool.query` with the
 *   statement *named*, so each connection parses and plans it once and later runs only bind and
 *   execute (the statements are a small fixed set; a name is derived from the text, so the same
 *   text has the same name on every connection and replica);
 * - PGlite: `pglite.query` under the instance's lock (the one `PgliteClient` takes), and through
 *   `@effect/sql` when the fiber is inside one of its transactions (whose connection it must use);
 * - any other `SqlClient` (an embedder's own): `sql.unsafe`, as before.
 *
 * A statement is run with its continuations (`onRows`, `onError`): on the store's own pool they
 * are called in the driver's callback, so a get suspends the caller's fiber once and resumes it with
 * its answer, with no further effect per statement (each layer of `flatMap`/`mapError`/`catchIf`
 * around a statement was CPU on every get).
 */
import type { PGlite } from "@electric-sql/pglite"
import * as Reactivity from "@effect/experimental/Reactivity"
import * as SqlClient from "@effect/sql/SqlClient"
import { SqlError } from "@effect/sql/SqlError"
import * as PgClient from "@effect/sql-pg/PgClient"
import { Context, Duration, Effect, Layer, Option, Redacted } from "effect"
import { createHash } from "node:crypto"
import pg from "pg"

/** Rows as the drivers return them. */
export type Rows = ReadonlyArray<Record<string, unknown>>

/**
 * Runs one statement (text with `$n` parameters) and continues with `onRows` when it succeeds or
 * `onError` when it fails (a failure of `onRows`'s effect is not handed to `onError`).
 */
export type Execute = <A, E>(
  text: string,
  params: ReadonlyArray<unknown>,
  onRows: (rows: Rows) => Effect.Effect<A, E>,
  onError: (error: SqlError) => Effect.Effect<A, E>
) => Effect.Effect<A, E>

const names = new Map<string, string>()

/**
 * The name a statement is prepared under: derived from its text, so one text has one name on
 * every connection (the driver refuses a name reused for another text).
 */
export const statementName = (text: string): string => {
  let name = names.get(text)
  if (name === undefined) {
    name = `secretgate_${createHash("sha256").update(text).digest("hex").slice(0, 32)}`
    // the store's statements are a few dozen texts; the bound only guards against a misuse
    if (names.size < 1_000) names.set(text, name)
  }
  return name
}

/**
 * The `pg` pool under a `PgClient` that `layerPg` made (absent for an embedder's own client,
 * whose pool `@effect/sql-pg` does not expose).
 */
export class PgPool extends Context.Tag("@secretgate/sql/internal/PgPool")<PgPool, pg.Pool>() {}

const failed = (cause: unknown) => new SqlError({ cause, message: "Failed to execute statement" })

/**
 * Statements on the pool, prepared per connection. An interrupted statement is not cancelled on
 * the server: it finishes and its connection returns to the pool (every statement of the store is
 * one short, atomic statement).
 */
export const pool = (pool: pg.Pool): Execute => (text, params, onRows, onError) =>
  Effect.async((resume) => {
    pool.query<Record<string, unknown>>(
      { name: statementName(text), text, values: params as Array<unknown> },
      (error, result) => {
        let next
        try {
          next = error ? onError(failed(error)) : onRows(result.rows)
        } catch (defect) {
          // thrown in the driver's callback, it would escape the fiber: a defect, as in `Effect.map`
          next = Effect.die(defect)
        }
        resume(next)
      }
    )
  })

/** `onRows` and `onError` after a statement that is an effect. */
const continued = <A, E>(
  statement: Effect.Effect<Rows, SqlError>,
  onRows: (rows: Rows) => Effect.Effect<A, E>,
  onError: (error: SqlError) => Effect.Effect<A, E>
): Effect.Effect<A, E> => Effect.matchEffect(statement, { onFailure: onError, onSuccess: onRows })

// one lock per PGlite instance, whichever clients use it (PgliteClient takes it too)
const locks = new WeakMap<PGlite, Effect.Semaphore>()

/** The lock of a PGlite instance: a permit per statement, or per transaction for its whole length. */
export const pgliteLock = (db: PGlite): Effect.Semaphore => {
  let lock = locks.get(db)
  if (lock === undefined) {
    lock = Effect.unsafeMakeSemaphore(1)
    locks.set(db, lock)
  }
  return lock
}

/** Statements on a PGlite instance, under its lock; inside a transaction, through `@effect/sql`. */
export const pglite = (db: PGlite, sql: SqlClient.SqlClient): Execute => {
  const lock = pgliteLock(db)
  return (text, params, onRows, onError) =>
    continued(
      Effect.flatMap(Effect.serviceOption(SqlClient.TransactionConnection), (transaction) =>
        Option.isSome(transaction)
          ? sql.unsafe<Record<string, unknown>>(text, params)
          : lock.withPermits(1)(Effect.tryPromise({
            try: () => db.query<Record<string, unknown>>(text, params as Array<unknown>).then((result) => result.rows),
            catch: failed
          }))),
      onRows,
      onError
    )
}

/** Statements through `@effect/sql`. */
export const client = (sql: SqlClient.SqlClient): Execute => (text, params, onRows, onError) =>
  continued(sql.unsafe<Record<string, unknown>>(text, params), onRows, onError)

/**
 * Opens a `pg` pool the way `@effect/sql-pg`'s `PgClient.layer` does (its settings, a first
 * `SELECT 1` within the connect timeout, ended with the scope) and provides `PgClient` over it, plus
 * the pool itself for the store's direct statements.
 */
export const layerPg = (config: PgClient.PgClientConfig): Layer.Layer<PgClient.PgClient | SqlClient.SqlClient | PgPool, SqlError> =>
  Layer.scopedContext(Effect.gen(function*() {
    const opened = yield* Effect.acquireRelease(
      Effect.sync(() => {
        const created = new pg.Pool({
          ...(config.url === undefined ? {} : { connectionString: Redacted.value(config.url) }),
          ...(config.username === undefined ? {} : { user: config.username }),
          ...(config.host === undefined ? {} : { host: config.host }),
          ...(config.database === undefined ? {} : { database: config.database }),
          ...(config.password === undefined ? {} : { password: Redacted.value(config.password) }),
          ...(config.ssl === undefined ? {} : { ssl: config.ssl }),
          ...(config.port === undefined ? {} : { port: config.port }),
          ...(config.stream === undefined ? {} : { stream: config.stream as never }),
          ...(config.connectTimeout === undefined ? {} : { connectionTimeoutMillis: Duration.toMillis(config.connectTimeout) }),
          ...(config.idleTimeout === undefined ? {} : { idleTimeoutMillis: Duration.toMillis(config.idleTimeout) }),
          ...(config.maxConnections === undefined ? {} : { max: config.maxConnections }),
          ...(config.minConnections === undefined ? {} : { min: config.minConnections }),
          ...(config.connectionTTL === undefined ? {} : { maxLifetimeSeconds: Duration.toSeconds(config.connectionTTL) }),
          ...(config.types === undefined ? {} : { types: config.types }),
          application_name: config.applicationName ?? "secretgate"
        })
        // a connection that breaks while idle: the next statement gets a new one
        created.on("error", () => undefined)
        return created
      }),
      (opened) => Effect.promise(() => opened.end()).pipe(Effect.interruptible, Effect.timeoutOption(1_000))
    )
    yield* Effect.tryPromise({
      try: () => opened.query("SELECT 1"),
      catch: (cause) => new SqlError({ cause, message: "PgClient: Failed to connect" })
    }).pipe(
      Effect.timeoutFail({
        duration: config.connectTimeout ?? Duration.seconds(5),
        onTimeout: () => new SqlError({ cause: new Error("Connection timed out"), message: "PgClient: Connection timed out" })
      })
    )
    const sql = yield* PgClient.fromPool({
      acquire: Effect.succeed(opened),
      ...(config.spanAttributes === undefined ? {} : { spanAttributes: config.spanAttributes })
    })
    return Context.make(PgClient.PgClient, sql).pipe(Context.add(SqlClient.SqlClient, sql), Context.add(PgPool, opened))
  })).pipe(Layer.provide(Reactivity.layer))
