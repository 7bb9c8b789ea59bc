// PGlite's declarations use the Emscripten types without depending on them: this brings them in
// for a program that type-checks its dependencies' declarations (skipLibCheck off)
/// <reference types="emscripten" preserve="true" />
/**
 * An `@effect/sql` `SqlClient` over PGlite (`@electric-sql/pglite`): real PostgreSQL compiled to
 * WebAssembly, in this process, with no server. The same SQL runs here and on a PostgreSQL server,
 * so an application can start on a laptop with a data directory and move to a server later.
 *
 * PGlite is one connection: statements of different fibers run one at a time, and a transaction
 * holds the connection until it ends (other fibers wait), so a transaction never sees another
 * fiber's statements. Statements are compiled by `@effect/sql-pg`'s compiler (same dialect).
 *
 * @since 0.1.0
 */
import { PGlite } from "@electric-sql/pglite"
import * as Reactivity from "@effect/experimental/Reactivity"
import * as SqlClient from "@effect/sql/SqlClient"
import type { Connection } from "@effect/sql/SqlConnection"
import { SqlError } from "@effect/sql/SqlError"
import * as PgClient from "@effect/sql-pg/PgClient"
import { Context, Effect, Layer, Stream } from "effect"
import { pgliteLock } from "./internal/execute.js"

/**
 * The PGlite client: a `SqlClient` plus the PGlite instance (for `LISTEN`, dumps, closing).
 *
 * @since 0.1.0
 */
export interface PgliteClient extends SqlClient.SqlClient {
  readonly pglite: PGlite
  /** The data directory, or `undefined` for a database in memory. */
  readonly dataDir: string | undefined
}

/**
 * @since 0.1.0
 */
export const PgliteClient = Context.GenericTag<PgliteClient>("@secretgate/sql/PgliteClient")

/**
 * Where the database lives.
 *
 * @since 0.1.0
 */
export interface Options {
  /**
   * A directory for the database files (created if missing), so data survives restarts; only one
   * process may open it at a time. Omitted: in memory, gone when the layer is released.
   */
  readonly dataDir?: string
  /**
   * A tarball from `pglite.dumpDataDir()` to start from instead of running `initdb` (which takes
   * seconds): tests start each file's database from one saved copy.
   */
  readonly loadDataDir?: Blob
  /**
   * A PGlite instance the caller already has (and closes): `dataDir` and `loadDataDir` are then
   * ignored. Every client over one instance shares one lock, so their transactions never interleave.
   */
  readonly pglite?: PGlite
}

const failed = (message: string) => (cause: unknown) => new SqlError({ cause, message })

/**
 * Opens PGlite and wraps it as a `SqlClient`; the database is closed with the scope.
 *
 * @since 0.1.0
 */
export const make = (
  options: Options = {}
): Effect.Effect<PgliteClient, SqlError, import("effect/Scope").Scope | Reactivity.Reactivity> =>
  Effect.gen(function*() {
    const pglite = options.pglite ?? (yield* Effect.acquireRelease(
      Effect.tryPromise({
        try: () =>
          PGlite.create({
            ...(options.dataDir === undefined ? {} : { dataDir: options.dataDir }),
            ...(options.loadDataDir === undefined ? {} : { loadDataDir: options.loadDataDir })
          }),
        catch: failed("PGlite could not be started")
      }),
      (db) => Effect.promise(() => db.close())
    ))
    // one connection: a permit per statement, or per transaction for its whole length
    const permits = pgliteLock(pglite)
    const exclusive = Effect.acquireRelease(permits.take(1), () => permits.release(1))

    const query = (sql: string, params: ReadonlyArray<unknown>, rowMode?: "array") =>
      Effect.tryPromise({
        try: () => pglite.query<any>(sql, params as Array<unknown>, rowMode === undefined ? {} : { rowMode }),
        catch: failed("Failed to execute statement")
      })

    const connection: Connection = {
      execute: (sql, params, transformRows) =>
        Effect.map(query(sql, params), (result) => (transformRows ? transformRows(result.rows) : result.rows)),
      executeRaw: (sql, params) => query(sql, params),
      executeValues: (sql, params) => Effect.map(query(sql, params, "array"), (result) => result.rows),
      executeUnprepared: (sql, params, transformRows) =>
        params.length > 0
          ? Effect.map(query(sql, params), (result) => (transformRows ? transformRows(result.rows) : result.rows))
          : Effect.map(
            Effect.tryPromise({ try: () => pglite.exec(sql), catch: failed("Failed to execute statement") }),
            (results) => {
              const rows = (results[results.length - 1]?.rows ?? []) as ReadonlyArray<any>
              return transformRows ? transformRows(rows) : rows
            }
          ),
      executeStream: (sql, params, transformRows) =>
        Stream.flatMap(
          Stream.fromEffect(query(sql, params)),
          (result) => Stream.fromIterable(transformRows ? transformRows(result.rows) : result.rows)
        )
    }
    const acquirer = Effect.as(exclusive, connection)
    const client = yield* SqlClient.make({
      acquirer,
      transactionAcquirer: acquirer,
      compiler: PgClient.makeCompiler(),
      spanAttributes: [["db.system.name", "postgresql"], ["db.namespace", "pglite"]]
    })
    return Object.assign(client, { pglite, dataDir: options.pglite === undefined ? options.dataDir : options.pglite.dataDir })
  })

/**
 * Provides the PGlite `SqlClient` (also as `PgliteClient`).
 *
 * @since 0.1.0
 * @example
 * ```ts
 * import { PgliteClient } from "@secretgate/sql"
 * const Sql = PgliteClient.layer({ dataDir: "/var/lib/secretgate/pglite" })
 * ```
 */
export const layer = (options: Options = {}): Layer.Layer<PgliteClient | SqlClient.SqlClient, SqlError> =>
  Layer.scopedContext(
    Effect.map(make(options), (client) => Context.make(PgliteClient, client).pipe(Context.add(SqlClient.SqlClient, client)))
  ).pipe(Layer.provide(Reactivity.layer))
