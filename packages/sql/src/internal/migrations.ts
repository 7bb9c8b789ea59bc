/**
 * The schema and its migrations. Each migration is a list of statements applied in one
 * transaction, recorded in `<schema>.migrations`. Replicas starting at once on an empty database
 * take a transaction-scoped advisory lock first, so exactly one applies each migration and the
 * others then find it done.
 */
import * as SqlClient from "@effect/sql/SqlClient"
import type { SqlError } from "@effect/sql/SqlError"
import { StoreCorrupted } from "@secretgate/core"
import { Effect } from "effect"

/** A schema name usable unquoted everywhere (a channel name is derived from it, too). */
export const SCHEMA = /^[a-z_][a-z0-9_]{0,47}$/

interface Migration {
  readonly version: number
  readonly name: string
  readonly statements: (schema: string) => ReadonlyArray<string>
}

/**
 * Version 1. Identifiers, names and placeholders are `COLLATE "C"`: byte order, which for these
 * ASCII values is the order the other backends sort by (JavaScript string order), and lets
 * `(organization_id, name)` serve as the index for the name sort.
 */
const initial: Migration = {
  version: 1,
  name: "initial",
  statements: (s) => [
    `CREATE TABLE ${s}.organizations (
      id text COLLATE "C" PRIMARY KEY,
      secret_count integer NOT NULL DEFAULT 0 CONSTRAINT organizations_secret_count_check CHECK (secret_count >= 0),
      revision bigint NOT NULL DEFAULT 0
    )`,
    `CREATE TABLE ${s}.keys (
      id text COLLATE "C" PRIMARY KEY,
      "check" text NOT NULL,
      added_at timestamptz NOT NULL DEFAULT now()
    )`,
    `CREATE TABLE ${s}.retired_keys (
      id text COLLATE "C" PRIMARY KEY,
      retired_at timestamptz NOT NULL DEFAULT now()
    )`,
    `CREATE TABLE ${s}.secrets (
      organization_id text COLLATE "C" NOT NULL CONSTRAINT secrets_organization_fkey REFERENCES ${s}.organizations (id),
      id text COLLATE "C" NOT NULL,
      name text COLLATE "C" NOT NULL,
      description text,
      hosts text[] NOT NULL,
      placeholder text COLLATE "C" NOT NULL,
      key_id text COLLATE "C" NOT NULL CONSTRAINT secrets_key_fkey REFERENCES ${s}.keys (id),
      nonce text NOT NULL,
      ciphertext text NOT NULL,
      mac text NOT NULL,
      created_at timestamptz(3) NOT NULL,
      updated_at timestamptz(3) NOT NULL,
      version bigint NOT NULL DEFAULT 1,
      CONSTRAINT secrets_pkey PRIMARY KEY (organization_id, id),
      CONSTRAINT secrets_name_key UNIQUE (organization_id, name),
      CONSTRAINT secrets_placeholder_key UNIQUE (placeholder)
    )`,
    `CREATE INDEX secrets_created_idx ON ${s}.secrets (organization_id, created_at, id)`,
    `CREATE INDEX secrets_updated_idx ON ${s}.secrets (organization_id, updated_at, id)`,
    `CREATE INDEX secrets_key_idx ON ${s}.secrets (key_id)`
  ]
}

/** Every migration, in order. */
export const migrations: ReadonlyArray<Migration> = [initial]

/** The schema version this package writes. */
export const LATEST = migrations[migrations.length - 1]!.version

/**
 * Brings `schema` up to date; returns the versions it applied (none when another replica already
 * had). A database whose schema is newer than this package knows is refused.
 */
export const migrate = (schema: string): Effect.Effect<ReadonlyArray<number>, SqlError | StoreCorrupted, SqlClient.SqlClient> =>
  Effect.gen(function*() {
    const sql = yield* SqlClient.SqlClient
    return yield* sql.withTransaction(Effect.gen(function*() {
      // 64-bit lock key from the schema name, so stores in other schemas do not wait for this one
      yield* sql.unsafe(`SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, [`secretgate:${schema}`])
      yield* sql.unsafe(`CREATE SCHEMA IF NOT EXISTS ${schema}`)
      yield* sql.unsafe(
        `CREATE TABLE IF NOT EXISTS ${schema}.migrations (version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`
      )
      const rows = yield* sql.unsafe<{ readonly version: unknown }>(`SELECT coalesce(max(version), 0) AS version FROM ${schema}.migrations`)
      const current = Number(rows[0]?.version ?? 0)
      if (current > LATEST) {
        return yield* Effect.fail(
          new StoreCorrupted({
            message:
              `the database schema ${JSON.stringify(schema)} is at version ${current}, newer than this @secretgate/sql knows (${LATEST}): upgrade @secretgate/sql on this replica`,
            location: `${schema}.migrations`
          })
        )
      }
      const applied: Array<number> = []
      for (const migration of migrations) {
        if (migration.version <= current) continue
        for (const statement of migration.statements(schema)) yield* sql.unsafe(statement)
        yield* sql.unsafe(`INSERT INTO ${schema}.migrations (version, name) VALUES ($1, $2)`, [migration.version, migration.name])
        applied.push(migration.version)
      }
      return applied
    }))
  })
