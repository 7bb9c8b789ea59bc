/**
 * A `SecretStore` on `@effect/sql`: PostgreSQL, so that many server replicas and egress hosts on
 * many machines share one store, or PGlite embedded in the process (the same SQL, no server).
 *
 * Every write is one statement that also bumps the organization's `revision` and notifies the
 * other replicas (`pg_notify`); the quota is counted in the organization's row, which each create
 * locks, so it is exact under any concurrency; names and placeholders are unique by constraint.
 * Each row carries a MAC under the sealing key: a row changed by someone without the key is
 * refused. Schema, migrations, freshness bounds, rotation and behaviour when the database is down
 * are described in `docs/sql.md`.
 *
 * @since 0.1.0
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import * as PgClient from "@effect/sql-pg/PgClient"
import {
  DecryptionFailed,
  KeyRing,
  SecretChanges,
  QuotaExceeded,
  SecretCipher,
  SecretNameTaken,
  SecretNotFound,
  Secrets,
  SecretStore,
  StoreCorrupted,
  type StoreError,
  StoreUnavailable
} from "@secretgate/core"
import { Config, type ConfigError, Context, Duration, Effect, Layer, Option, Redacted, type Scope } from "effect"
import { constraintOf, inTransaction, isTransient, retryAgain, retryTransient, sqlState, unavailable } from "./internal/errors.js"
import * as Execute from "./internal/execute.js"
import * as Freshness from "./internal/freshness.js"
import * as Listeners from "./internal/listeners.js"
import * as Migrations from "./internal/migrations.js"
import { KEY_CHECK_PURPOSE, makeMac, toMetadata, toVersioned, type Versioned } from "./internal/records.js"
import * as Statements from "./internal/statements.js"
import * as PgliteClient from "./PgliteClient.js"

type SecretRecord = SecretStore.SecretRecord

/**
 * Settings of the store, whatever the engine.
 *
 * @since 0.1.0
 */
export interface Options extends Secrets.Options {
  /**
   * The PostgreSQL schema holding the store's tables (created by the first migration). Lower-case
   * letters, digits and `_`, at most 48 characters. Default `secretgate`.
   */
  readonly schema?: string
  /** The encryption key: 32 bytes as base64, typically from an environment variable. */
  readonly key?: Redacted.Redacted<string>
  /** Id of `key` (default `"primary"`), so that it can later be rotated out. */
  readonly keyId?: string
  /** Several keys, oldest first; the last one seals. For rotation. */
  readonly keyRing?: KeyRing.KeyRing
  /**
   * How often the revisions of the organizations this replica serves are read, the guarantee
   * behind `LISTEN`/`NOTIFY` (which is faster but may miss changes while its connection is down).
   * Default 1 second; 0 turns polling off.
   */
  readonly pollInterval?: Duration.DurationInput
  /** Listen for other replicas' changes (`LISTEN`). Default `true`. */
  readonly listen?: boolean
}

/**
 * Settings of the PostgreSQL engine: the store's options plus `@effect/sql-pg`'s connection
 * settings (`url`, or `host`/`port`/`database`/`username`/`password`, `ssl`, `maxConnections`
 * (default 10 per replica), timeouts).
 *
 * @since 0.1.0
 */
export interface PgConfig extends Options, PgClient.PgClientConfig {}

/**
 * Settings of the embedded PGlite engine. Without `dataDir` the database lives in memory (and,
 * without a key, values are sealed with a random key: the data dies with the process anyway).
 *
 * @since 0.1.0
 */
export interface PgliteConfig extends Options, PgliteClient.Options {}

/**
 * Core's `KeyRing.KeyManagementError` (one class for every backend with key management): retiring
 * the current key, a key still in use, or an unknown key id.
 *
 * @since 0.1.0
 */
export const KeyManagementError = KeyRing.KeyManagementError

/**
 * @since 0.1.0
 */
export type KeyManagementError = KeyRing.KeyManagementError

/**
 * One key of the store.
 *
 * @since 0.1.0
 */
export interface KeyStatus {
  readonly id: string
  /** New seals use this key. */
  readonly current: boolean
  /** Records sealed with this key. */
  readonly records: number
  /** This replica holds the key (it can open those records). */
  readonly held: boolean
}

/**
 * Progress of a `reseal`, reported after each batch.
 *
 * @since 0.1.0
 */
export interface ResealProgress {
  /** Records re-sealed so far. */
  readonly resealed: number
  /** Records that were not sealed with the current key when the reseal started. */
  readonly total: number
}

/**
 * @since 0.1.0
 */
export interface ResealOptions {
  /** Records per batch (one read and one write statement each). Default 500. */
  readonly batchSize?: number
  /** Called after each batch, e.g. to draw a progress bar. */
  readonly onProgress?: (progress: ResealProgress) => void
}

/**
 * The SQL store: a `SecretStore` plus key management.
 *
 * Rotation: add the new key last to every replica's `keyRing` and restart them (new seals use it,
 * old records still open), run `reseal` once, then `retireKey(oldId)`, which is refused while any
 * record still uses the key, and remove the old key from the configuration.
 *
 * @since 0.1.0
 */
export interface SqlSecretStore extends SecretStore.SecretStore {
  /** The schema of the store's tables. */
  readonly schema: string
  /** Cipher over the configured keys. */
  readonly cipher: SecretCipher.SecretCipher
  /**
   * Announcements of every write, this replica's at once and other replicas' as they arrive
   * (`LISTEN`/`NOTIFY`, and a polled revision); `live` while the listener is connected. See
   * `docs/sql.md`, freshness.
   */
  readonly changes: SecretChanges.SecretChanges
  /** Reads the revisions of the organizations this replica serves now, instead of at the next poll. */
  readonly refresh: Effect.Effect<void, StoreError>
  /** Every key the database knows (not retired), with the number of records each seals. */
  readonly keys: Effect.Effect<ReadonlyArray<KeyStatus>, StoreError>
  /**
   * Re-seals every record not sealed with the current key, in batches; returns how many. Safe to
   * re-run, and to run while replicas write (a record changed meanwhile is skipped: its writer
   * sealed it anew).
   */
  readonly reseal: (options?: ResealOptions) => Effect.Effect<number, StoreError>
  /**
   * Forgets a key no record uses any more; refused (atomically with respect to writers) while one
   * does. The id is remembered as retired: a replica still configured with it never registers it
   * again, and one still sealing with it fails its writes with a message saying so.
   */
  readonly retireKey: (keyId: string) => Effect.Effect<void, KeyManagementError | StoreError>
}

/**
 * @since 0.1.0
 */
export const SqlSecretStore = Context.GenericTag<SqlSecretStore>("@secretgate/sql/SqlSecretStore")

const keyRingOf = (options: Options): Effect.Effect<KeyRing.KeyRing, DecryptionFailed> => {
  if (options.key !== undefined && options.keyRing !== undefined) {
    return Effect.fail(new DecryptionFailed({ message: "configure either key or keyRing, not both" }))
  }
  if (options.keyRing !== undefined) return Effect.succeed(options.keyRing)
  if (options.key === undefined) {
    return Effect.fail(
      new DecryptionFailed({
        message: "no encryption key configured: set key (32 bytes of base64, e.g. from an environment variable) or keyRing"
      })
    )
  }
  const key = options.key
  return Effect.try({
    try: () => KeyRing.make([KeyRing.keyFromBase64(options.keyId ?? "primary", key)]),
    catch: (error) => new DecryptionFailed({ message: `the configured key is not usable: ${(error as Error).message}` })
  })
}

/** Where the database is, for messages (never with a password). */
const describeClient = (pg: Option.Option<PgClient.PgClient>, pglite: Option.Option<PgliteClient.PgliteClient>): string => {
  if (Option.isSome(pglite)) return "(PGlite, in this process)"
  if (Option.isNone(pg)) return "(the SqlClient provided)"
  const config = pg.value.config
  return `at ${config.host ?? "localhost"}:${config.port ?? 5432}/${config.database ?? config.username ?? "postgres"}`
}

const listenerConfig = (config: PgClient.PgClientConfig): Listeners.ClientConfig => ({
  ...(config.url === undefined ? {} : { connectionString: Redacted.value(config.url) }),
  ...(config.host === undefined ? {} : { host: config.host }),
  ...(config.port === undefined ? {} : { port: config.port }),
  ...(config.database === undefined ? {} : { database: config.database }),
  ...(config.username === undefined ? {} : { user: config.username }),
  ...(config.password === undefined ? {} : { password: Redacted.value(config.password) }),
  ...(config.ssl === undefined ? {} : { ssl: config.ssl }),
  ...(config.stream === undefined ? {} : { stream: config.stream as never }),
  connectionTimeoutMillis: 10_000,
  // a connection that died without a word (a network partition) is noticed in minutes, not hours;
  // until then the polled revision keeps replicas current
  keepAlive: true,
  keepAliveInitialDelayMillis: 10_000
})

const MAX_UPDATE_ATTEMPTS = 50

/**
 * Opens the store on the `SqlClient` in context: migrates the schema (under an advisory lock),
 * registers and checks the keys, and starts listening for other replicas' changes. Fails at open,
 * not later, when the database cannot be reached (`StoreUnavailable`), a configured key is not the
 * key the database knows by that id or records are sealed with a key not configured
 * (`DecryptionFailed`), or the schema is newer than this package (`StoreCorrupted`).
 *
 * @since 0.1.0
 */
export const make = (options: Options = {}): Effect.Effect<SqlSecretStore, StoreError, SqlClient.SqlClient | Scope.Scope> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    const pg = yield* Effect.serviceOption(PgClient.PgClient)
    const pglite = yield* Effect.serviceOption(PgliteClient.PgliteClient)
    const schema = options.schema ?? "secretgate"
    if (!Migrations.SCHEMA.test(schema)) {
      return yield* Effect.fail(
        new StoreUnavailable({ message: `schema ${JSON.stringify(schema)} must be 1-48 characters of [a-z0-9_], not starting with a digit` })
      )
    }
    const ring = yield* keyRingOf(options)
    const cipher = SecretCipher.make(ring)
    const mac = makeMac(ring)
    const where = describeClient(pg, pglite)
    const fail = unavailable(where)
    const st = Statements.make(schema)
    const channel = `secretgate_${schema}`

    const pool = yield* Effect.serviceOption(Execute.PgPool)
    const run: Execute.Execute = Option.isSome(pool)
      ? Execute.pool(pool.value)
      : Option.isSome(pglite)
      ? Execute.pglite(pglite.value.pglite, sql)
      : Execute.client(sql)
    /**
     * Runs a statement and continues with its rows, or with its failure once serialization failures
     * and deadlocks have been retried (the retry is set up only then).
     */
    const query = <A, E>(
      text: string,
      params: ReadonlyArray<unknown>,
      onRows: (rows: Execute.Rows) => Effect.Effect<A, E>,
      onError: (error: SqlError) => Effect.Effect<A, E>
    ): Effect.Effect<A, E> =>
      run(text, params, onRows, (error) =>
        isTransient(error)
          ? Effect.matchEffect(retryAgain(run(text, params, Effect.succeed, Effect.fail)), { onFailure: onError, onSuccess: onRows })
          : onError(error))
    const exec = (text: string, params: ReadonlyArray<unknown> = []): Effect.Effect<Execute.Rows, SqlError> =>
      query(text, params, Effect.succeed, Effect.fail)
    const failed = (error: SqlError): Effect.Effect<never, StoreError> => Effect.fail(fail(error))
    /** A write's failures, with a sealing key that the store has retired said in words. */
    const writeFailure = (error: SqlError): StoreUnavailable =>
      sqlState(error) === "23503" && constraintOf(error) === "secrets_key_fkey"
        ? new StoreUnavailable({
          message:
            `this replica seals with key ${JSON.stringify(ring.current.id)}, which the store has retired: put the new key last in its keyRing and restart it`
        })
        : fail(error)

    yield* Migrations.migrate(schema).pipe(
      Effect.catchTag("SqlError", (error) => Effect.fail(fail(error)))
    )

    // keys: register ours, check them against what the database knows
    const ringKeys = [...ring.keys.values()]
    yield* exec(st.registerKeys, [ringKeys.map((key) => key.id), ringKeys.map((key) => KeyRing.keyCheck(key, KEY_CHECK_PURPOSE))]).pipe(
      Effect.mapError(fail)
    )
    const known = yield* Effect.mapError(exec(st.keys), fail)
    if (known.some((row) => row["retired"] === true && row["id"] === ring.current.id)) {
      return yield* Effect.fail(
        new DecryptionFailed({
          message: `the sealing key ${JSON.stringify(ring.current.id)} has been retired from this store: put a new key last in keyRing`
        })
      )
    }
    for (const row of known) {
      const id = String(row["id"])
      const key = ring.keys.get(id)
      if (row["retired"] === true) continue
      if (key !== undefined && !KeyRing.keyCheckMatches(key, KEY_CHECK_PURPOSE, String(row["check"]))) {
        return yield* Effect.fail(
          new DecryptionFailed({
            message: `the key configured as ${JSON.stringify(id)} is not the key this database knows by that id (schema ${schema}): check the key configuration`
          })
        )
      } else if (key === undefined && Number(row["records"]) > 0) {
        return yield* Effect.fail(
          new DecryptionFailed({
            message: `${Number(row["records"])} record(s) are sealed with key ${JSON.stringify(id)}, which is not configured: add it to keyRing`
          })
        )
      }
    }

    const freshness = yield* Freshness.make({
      channel,
      listen: options.listen === false
        ? undefined
        : Option.isSome(pglite)
        ? Listeners.pglite(pglite.value.pglite)
        : Option.isSome(pg)
        ? Listeners.postgres({ ...listenerConfig(pg.value.config), application_name: `secretgate-listener:${schema}` })
        : undefined,
      readRevisions: (organizations) =>
        Effect.map(exec(st.revisions, [organizations]), (rows) => rows.map((row) => [String(row["id"]), Number(row["revision"])] as const)),
      pollInterval: Duration.decode(options.pollInterval ?? (Option.isSome(pglite) ? 0 : "1 second")),
      forgetAfter: Duration.minutes(10)
    })

    /** The row of a statement that reads at most one, checked against its MAC, as `pick` has it. */
    const one = <A>(rows: Execute.Rows, pick: (read: Versioned) => A): Effect.Effect<Option.Option<A>, StoreError> => {
      const row = rows[0]
      if (row === undefined) return Effect.succeedNone
      const read = toVersioned(row)
      if (read instanceof StoreCorrupted) return Effect.fail(read)
      const problem = mac.verify(read.record, read.mac)
      return problem === undefined ? Effect.succeed(Option.some(pick(read))) : Effect.fail(problem)
    }
    const readOne = (text: string, params: ReadonlyArray<unknown>): Effect.Effect<Option.Option<Versioned>, StoreError> =>
      query(text, params, (rows) => one(rows, (read) => read), failed)
    /** A get: decoded and checked in the statement's continuation, with no further effect. */
    const findOne = (text: string, params: ReadonlyArray<unknown>): Effect.Effect<Option.Option<SecretRecord>, StoreError> =>
      query(text, params, (rows) => one(rows, (read) => read.record), failed)

    const insert = (
      record: SecretRecord,
      quota: number
    ): Effect.Effect<void, SecretNameTaken | SecretStore.PlaceholderTaken | QuotaExceeded | StoreError> =>
      Effect.gen(function*() {
        if (quota < 1) return yield* Effect.fail(QuotaExceeded.of(quota))
        const rows = yield* exec(st.insert, [
          record.organizationId,
          quota,
          record.id,
          record.name,
          record.description ?? null,
          record.hosts,
          record.placeholder,
          record.sealed.keyId,
          record.sealed.nonce,
          record.sealed.ciphertext,
          mac.sign(record),
          record.createdAt,
          record.updatedAt,
          channel
        ]).pipe(Effect.mapError((error): SecretNameTaken | SecretStore.PlaceholderTaken | StoreUnavailable => {
          if (sqlState(error) === "23505") {
            const constraint = constraintOf(error)
            if (constraint === "secrets_name_key") return SecretNameTaken.of(record.name)
            if (constraint === "secrets_placeholder_key") return new SecretStore.PlaceholderTaken()
          }
          return writeFailure(error)
        }))
        if (rows.length > 0) return freshness.wrote(record.organizationId, Number(rows[0]!["revision"]), record.placeholder)
        // the quota held: a taken name is still the better answer
        const taken = yield* Effect.mapError(exec(st.nameTaken, [record.organizationId, record.name]), fail)
        return yield* Effect.fail(taken.length > 0 ? SecretNameTaken.of(record.name) : QuotaExceeded.of(quota))
      })

    const update = (
      organizationId: string,
      id: string,
      change: (current: SecretRecord) => SecretRecord,
      attempt: number
    ): Effect.Effect<SecretRecord, SecretNotFound | StoreError> =>
      Effect.gen(function*() {
        const found = yield* readOne(st.findById, [organizationId, id])
        if (Option.isNone(found)) return yield* Effect.fail(SecretNotFound.byId(id))
        const next = change(found.value.record)
        const rows = yield* exec(st.update, [
          organizationId,
          id,
          next.description ?? null,
          next.hosts,
          next.sealed.keyId,
          next.sealed.nonce,
          next.sealed.ciphertext,
          mac.sign(next),
          next.updatedAt,
          found.value.version,
          channel
        ]).pipe(Effect.mapError(writeFailure))
        if (rows.length > 0) {
          freshness.wrote(organizationId, Number(rows[0]!["revision"]), next.placeholder)
          return next
        }
        // changed (or deleted) since it was read: read it again and apply the change to that
        if (attempt >= MAX_UPDATE_ATTEMPTS) {
          return yield* Effect.fail(new StoreUnavailable({ message: `secret ${JSON.stringify(id)} is being changed by too many writers at once; retry` }))
        }
        return yield* update(organizationId, id, change, attempt + 1)
      })

    const reseal = (resealOptions: ResealOptions = {}) =>
      Effect.gen(function*() {
        const batchSize = resealOptions.batchSize ?? 500
        if (!Number.isSafeInteger(batchSize) || batchSize < 1) return yield* Effect.dieMessage("batchSize must be a positive integer")
        const current = ring.current.id
        const counted = yield* Effect.mapError(exec(st.countToReseal, [current]), fail)
        const total = Number(counted[0]?.["n"] ?? 0)
        let resealed = 0
        let after: readonly [string, string] = ["", ""]
        resealOptions.onProgress?.({ resealed, total })
        while (true) {
          const rows = yield* Effect.mapError(exec(st.toReseal, [current, after[0], after[1], batchSize]), fail)
          if (rows.length === 0) break
          const batch = { organizations: [] as Array<string>, ids: [] as Array<string>, versions: [] as Array<number>, nonces: [] as Array<string>, ciphertexts: [] as Array<string>, macs: [] as Array<string> }
          for (const row of rows) {
            const read = toVersioned(row)
            if (read instanceof StoreCorrupted) return yield* Effect.fail(read)
            const { record, version } = read
            const problem = mac.verify(record, read.mac)
            if (problem !== undefined) return yield* Effect.fail(problem)
            const binding = { organizationId: record.organizationId, secretId: record.id }
            const value = yield* cipher.open(record.sealed, binding)
            const sealed = cipher.seal(value, binding)
            batch.organizations.push(record.organizationId)
            batch.ids.push(record.id)
            batch.versions.push(version)
            batch.nonces.push(sealed.nonce)
            batch.ciphertexts.push(sealed.ciphertext)
            batch.macs.push(mac.sign({ ...record, sealed }))
            after = [record.organizationId, record.id]
          }
          const updated = yield* Effect.mapError(
            exec(st.resealBatch, [batch.organizations, batch.ids, batch.versions, current, batch.nonces, batch.ciphertexts, batch.macs]),
            fail
          )
          resealed += updated.length
          resealOptions.onProgress?.({ resealed, total })
          if (rows.length < batchSize) break
        }
        return resealed
      })

    const retireKey = (keyId: string): Effect.Effect<void, KeyManagementError | StoreError> =>
      Effect.gen(function*() {
        if (keyId === ring.current.id) {
          return yield* Effect.fail(new KeyManagementError({ message: `key ${JSON.stringify(keyId)} is current and cannot be retired: put a new key last in keyRing first` }))
        }
        const outcome = yield* inTransaction(
          sql.withTransaction,
          Effect.gen(function*() {
            const deleted = yield* sql.unsafe(st.deleteKey, [keyId])
            if (deleted.length === 0) return "unknown" as const
            yield* sql.unsafe(st.retireKey, [keyId])
            return "retired" as const
          })
        ).pipe(
          retryTransient,
          Effect.catchAll((error) =>
            sqlState(error) === "23503" ? Effect.succeed("in use" as const) : Effect.fail(fail(error))
          )
        )
        if (outcome === "in use") {
          const rows = yield* Effect.mapError(exec(st.countSealedWith, [keyId]), fail)
          return yield* Effect.fail(
            new KeyManagementError({
              message: `${Number(rows[0]?.["n"] ?? 0)} record(s) are still sealed with key ${JSON.stringify(keyId)}: run reseal first`
            })
          )
        }
        if (outcome === "unknown") {
          const keys = yield* Effect.mapError(exec(st.keys), fail)
          // retiring twice is fine; an id the store never knew is a typo worth saying
          if (!keys.some((row) => row["id"] === keyId && row["retired"] === true)) {
            return yield* Effect.fail(new KeyManagementError({ message: `key ${JSON.stringify(keyId)} is not known to this store` }))
          }
        }
      })

    return SqlSecretStore.of({
      schema,
      cipher,
      changes: freshness.changes,
      refresh: Effect.mapError(freshness.poll, fail),
      insert: (record, { quota }) => insert(record, quota),
      findById: (organizationId, id) => findOne(st.findById, [organizationId, id]),
      findByName: (organizationId, name) => findOne(st.findByName, [organizationId, name]),
      findByPlaceholder: (organizationId, placeholder) => findOne(st.findByPlaceholder, [organizationId, placeholder]),
      listAll: (organizationId) =>
        Effect.flatMap(Effect.mapError(exec(st.listAll, [organizationId]), fail), (rows) =>
          Effect.forEach(rows, (row) => {
            const metadata = toMetadata(row)
            return metadata instanceof StoreCorrupted ? Effect.fail(metadata) : Effect.succeed(metadata)
          })),
      list: (organizationId, query) =>
        Effect.gen(function*() {
          const after = query.cursor === undefined ? undefined : yield* SecretStore.decodeCursor(query, query.cursor)
          const page = st.page(query, after)
          const rows = yield* Effect.mapError(exec(page.text, page.params(organizationId)), fail)
          const items: Array<SecretStore.SecretMetadata> = []
          for (const row of rows) {
            if (row["id"] === null || row["id"] === undefined) continue
            const metadata = toMetadata(row)
            if (metadata instanceof StoreCorrupted) return yield* Effect.fail(metadata)
            items.push(metadata)
          }
          const hasMore = items.length > query.limit
          const shown = hasMore ? items.slice(0, query.limit) : items
          return {
            items: shown,
            total: Number(rows[0]?.["total"] ?? 0),
            nextCursor: hasMore && shown.length > 0 ? SecretStore.encodeCursor(query, shown[shown.length - 1]!) : null
          }
        }),
      update: (organizationId, id, change) => update(organizationId, id, change, 1),
      delete: (organizationId, id) =>
        Effect.flatMap(Effect.mapError(exec(st.delete, [organizationId, id, channel]), writeFailure), (rows) => {
          if (rows.length === 0) return Effect.fail(SecretNotFound.byId(id))
          freshness.wrote(organizationId, Number(rows[0]!["revision"]), String(rows[0]!["placeholder"]))
          return Effect.void
        }),
      keys: Effect.map(Effect.mapError(exec(st.keys), fail), (rows) =>
        rows.filter((row) => row["retired"] !== true).map((row) => ({
          id: String(row["id"]),
          current: row["id"] === ring.current.id,
          records: Number(row["records"]),
          held: ring.keys.has(String(row["id"]))
        }))),
      reseal,
      retireKey
    })
  })

/**
 * Provides the store (as `SqlSecretStore` and `SecretStore`), its `SecretChanges` and the
 * `SecretCipher` over its keys,
 * on the `SqlClient` in context: an embedder's own client (`@effect/sql-pg`'s `PgClient`, whose
 * connection settings the listener reuses, or `PgliteClient`).
 *
 * @since 0.1.0
 */
export const layerStore = (
  options: Options = {}
): Layer.Layer<Provided, StoreError, SqlClient.SqlClient> =>
  Layer.scopedContext(
    Effect.map(make(options), (store) =>
      Context.make(SqlSecretStore, store).pipe(
        Context.add(SecretStore.SecretStore, store),
        Context.add(SecretChanges.SecretChanges, store.changes),
        Context.add(SecretCipher.SecretCipher, store.cipher)
      ))
  )

/**
 * What the store's layers provide besides `Secrets`.
 *
 * @since 0.1.0
 */
export type Provided = SqlSecretStore | SecretStore.SecretStore | SecretChanges.SecretChanges | SecretCipher.SecretCipher

/**
 * Provides `Secrets` over the `SqlClient` the embedder already has, with the store and cipher.
 *
 * @since 0.1.0
 * @example
 * ```ts
 * import { PgClient } from "@effect/sql-pg"
 * import { SqlSecretStore } from "@secretgate/sql"
 * import { Layer, Redacted } from "effect"
 *
 * const Backend = SqlSecretStore.layerClient({ key: Redacted.make(process.env.SECRETGATE_KEY!) }).pipe(
 *   Layer.provide(PgClient.layer({ url: Redacted.make(process.env.DATABASE_URL!) }))
 * )
 * ```
 */
export const layerClient = (
  options: Options = {}
): Layer.Layer<Secrets.Secrets | Provided, StoreError, SqlClient.SqlClient> =>
  Secrets.layer(options).pipe(Layer.provideMerge(layerStore(options)))

const connectFailure = (config: PgClient.PgClientConfig) => (error: SqlError): StoreError =>
  unavailable(
    config.url === undefined
      ? `at ${config.host ?? "localhost"}:${config.port ?? 5432}/${config.database ?? config.username ?? "postgres"}`
      : `at ${safeUrl(Redacted.value(config.url))}`
  )(error)

const safeUrl = (url: string): string => {
  try {
    const parsed = new URL(url)
    return `${parsed.hostname}:${parsed.port || "5432"}${parsed.pathname}`
  } catch {
    return "(the configured url, which does not parse)"
  }
}

/**
 * Provides `Secrets` over a PostgreSQL server: a connection pool (`@effect/sql-pg`), the store,
 * its cipher. The one layer a server replica needs.
 *
 * @since 0.1.0
 * @example
 * ```ts
 * import { SecretServer } from "@secretgate/http"
 * import { SqlSecretStore } from "@secretgate/sql"
 * import { Redacted } from "effect"
 *
 * const server = await SecretServer.serve({
 *   port: 8080,
 *   backend: SqlSecretStore.layer({
 *     url: Redacted.make(process.env.DATABASE_URL!),
 *     key: Redacted.make(process.env.SECRETGATE_KEY!)
 *   }),
 *   keys: [...]
 * })
 * ```
 */
export const layer = (
  config: PgConfig
): Layer.Layer<Secrets.Secrets | Provided, StoreError> =>
  layerClient(config).pipe(
    Layer.provide(
      Execute.layerPg(config).pipe(Layer.mapError(connectFailure(config)))
    )
  )

/**
 * `layer` with its settings read from `Config` (environment variables by default).
 *
 * @since 0.1.0
 * @example
 * ```ts
 * import { SqlSecretStore } from "@secretgate/sql"
 * import { Config } from "effect"
 *
 * const Backend = SqlSecretStore.layerConfig({
 *   url: Config.redacted("DATABASE_URL"),
 *   key: Config.redacted("SECRETGATE_KEY")
 * })
 * ```
 */
export const layerConfig = (
  config: Config.Config.Wrap<PgConfig>
): Layer.Layer<Secrets.Secrets | Provided, StoreError | ConfigError.ConfigError> =>
  Layer.unwrapEffect(Effect.map(Config.unwrap(config), layer))

/**
 * Provides `Secrets` over PGlite, in this process: in memory, or in `dataDir` (one process at a
 * time). The same schema and SQL as on a server.
 *
 * @since 0.1.0
 * @example
 * ```ts
 * import { Secretgate } from "@secretgate/core"
 * import { SqlSecretStore } from "@secretgate/sql"
 * import { Redacted } from "effect"
 *
 * const gate = new Secretgate({
 *   layer: SqlSecretStore.layerPglite({ dataDir: "./data/secretgate", key: Redacted.make(process.env.SECRETGATE_KEY!) }),
 *   organizationId: "acme"
 * })
 * ```
 */
export const layerPglite = (
  config: PgliteConfig = {}
): Layer.Layer<
  Secrets.Secrets | Provided | PgliteClient.PgliteClient,
  StoreError
> =>
  layerClient(
    // in memory, the data dies with the process: a random key is as good as any
    config.dataDir === undefined && config.key === undefined && config.keyRing === undefined
      ? { ...config, keyRing: KeyRing.ephemeral() }
      : config
  ).pipe(
    Layer.provideMerge(
      PgliteClient.layer(config).pipe(Layer.mapError(unavailable("(PGlite, in this process)")))
    )
  )
