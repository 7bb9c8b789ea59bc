/**
 * How the store's statements reach the database: on its own pool, one named (prepared) statement
 * per read, parsed and planned once per connection; through an embedder's own `SqlClient` (no pool
 * of ours) they go through `@effect/sql` and still work; on PGlite, a read inside the embedder's
 * transaction uses that transaction's connection (and does not wait for the lock it holds).
 */
import { describe, expect, it } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import * as PgClient from "@effect/sql-pg/PgClient"
import { KeyRing, Secrets, SecretStore } from "@secretgate/core"
import { SqlSecretStore } from "@secretgate/sql"
import { Context, Effect, Layer, Option, Redacted } from "effect"
import * as Execute from "../src/internal/execute.js"
import { databaseUrl, dropSchema, freshSchema, pglite, skipReason, testKey } from "./support.js"

const org = () => `org-${globalThis.crypto.randomUUID()}`
const scopedSchema = Effect.acquireRelease(Effect.sync(freshSchema), (schema) => Effect.promise(() => dropSchema(schema)))

/** The statements prepared on the (one) connection of `sql`, with how often each ran. */
const prepared = (sql: SqlClient.SqlClient) =>
  Effect.map(
    sql.unsafe<{ name: string; statement: string; runs: string }>(
      `SELECT name, statement, (generic_plans + custom_plans)::text AS runs FROM pg_prepared_statements`
    ),
    (rows) => new Map(rows.map((row) => [row.name, { statement: row.statement, runs: Number(row.runs) }]))
  )

describe.skipIf(databaseUrl === undefined)(skipReason ?? "sql statements on a PostgreSQL server", () => {
  it.live("on the store's own pool a get by id is one prepared statement: 20 gets run it 20 times and nothing else", () =>
    Effect.gen(function*() {
      const schema = yield* scopedSchema
      // one connection, so that pg_prepared_statements shows every statement the store sent
      const context = yield* Layer.build(
        SqlSecretStore.layerClient({ keyRing: KeyRing.make([testKey]), schema, listen: false, pollInterval: 0 }).pipe(
          Layer.provideMerge(Execute.layerPg({ url: Redacted.make(databaseUrl!), maxConnections: 1 }))
        )
      )
      const secrets = Context.get(context, Secrets.Secrets)
      const store = Context.get(context, SecretStore.SecretStore)
      const sql = Context.get(context, SqlClient.SqlClient)
      const o = org()
      const secret = yield* secrets.create(o, { name: "token", value: Redacted.make("v"), hosts: ["api.example.com"] })
      const before = yield* prepared(sql)
      for (let i = 0; i < 20; i++) expect(Option.isSome(yield* store.findById(o, secret.id))).toBe(true)
      const after = yield* prepared(sql)
      const ran = [...after].map(([name, { runs, statement }]) => ({ statement, runs: runs - (before.get(name)?.runs ?? 0) }))
        .filter(({ runs }) => runs > 0)
      expect(ran).toHaveLength(1)
      expect(ran[0]!.runs).toBe(20)
      expect(ran[0]!.statement).toMatch(new RegExp(`FROM ${schema}\\.secrets WHERE organization_id = \\$1 AND id = \\$2`))
    }).pipe(Effect.scoped))

  it.live("over an embedder's own PgClient (no pool of ours) the store works through @effect/sql", () =>
    Effect.gen(function*() {
      const schema = yield* scopedSchema
      const context = yield* Layer.build(
        SqlSecretStore.layerClient({ keyRing: KeyRing.make([testKey]), schema }).pipe(
          Layer.provideMerge(PgClient.layer({ url: Redacted.make(databaseUrl!), maxConnections: 2 }))
        )
      )
      const secrets = Context.get(context, Secrets.Secrets)
      const o = org()
      const created = yield* secrets.create(o, { name: "token", value: Redacted.make("v"), hosts: ["api.example.com"] })
      yield* secrets.update(o, created.id, { hosts: ["api.example.org"] })
      expect((yield* secrets.getByName(o, "token")).hosts).toEqual(["api.example.org"])
      expect((yield* secrets.listPage(o, { limit: 10 })).items.map((item) => item.name)).toEqual(["token"])
      yield* secrets.delete(o, created.id)
      expect((yield* secrets.listPage(o, { limit: 10 })).total).toBe(0)
    }).pipe(Effect.scoped))
})

describe("sql statements on PGlite", () => {
  it.live("a read inside the embedder's transaction on the same PGlite uses that transaction (and does not wait for its lock)", () =>
    Effect.gen(function*() {
      const context = yield* Layer.build(
        SqlSecretStore.layerClient({ keyRing: KeyRing.make([testKey]), schema: freshSchema() }).pipe(Layer.provideMerge(pglite.client()))
      )
      const secrets = Context.get(context, Secrets.Secrets)
      const store = Context.get(context, SecretStore.SecretStore)
      const sql = Context.get(context, SqlClient.SqlClient)
      const o = org()
      const created = yield* secrets.create(o, { name: "token", value: Redacted.make("v"), hosts: ["api.example.com"] })
      const found = yield* sql.withTransaction(store.findById(o, created.id)).pipe(Effect.timeout("10 seconds"))
      expect(Option.map(found, (record) => record.name)).toEqual(Option.some("token"))
    }).pipe(Effect.scoped))
})
