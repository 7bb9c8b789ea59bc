/**
 * The SQL store's own behaviour, on every engine of the run: migrations, keys, tampering,
 * pagination under concurrent inserts, rotation, freshness between two stores over one database,
 * and what an unreachable database looks like.
 */
import { describe, expect, it } from "@effect/vitest"
import * as SqlClient from "@effect/sql/SqlClient"
import { KeyRing, SecretResolver, Secrets, SandboxMount, type Secret } from "@secretgate/core"
import { SqlSecretStore } from "@secretgate/sql"
import { Duration, Effect, Either, Layer, Redacted } from "effect"
import { engines, freshSchema, pglite, testKey } from "./support.js"

const org = () => `org-${globalThis.crypto.randomUUID()}`
const failure = <A, E, R>(effect: Effect.Effect<A, E, R>) =>
  Effect.flatMap(Effect.either(effect), (result) =>
    Either.isLeft(result) ? Effect.succeed(result.left) : Effect.dieMessage("expected a failure, got a success"))

/** Polls `check` (every 20 ms, at most `within`) until it holds. */
const eventually = <E, R>(check: Effect.Effect<boolean, E, R>, within: Duration.DurationInput = "5 seconds") =>
  Effect.gen(function*() {
    const deadline = Date.now() + Duration.toMillis(Duration.decode(within))
    while (!(yield* check)) {
      if (Date.now() > deadline) return yield* Effect.dieMessage("the condition did not hold in time")
      yield* Effect.sleep("20 millis")
    }
  })

const newKey = KeyRing.keyFromBase64("next-key", Buffer.alloc(32, 9).toString("base64"))

for (const engine of engines) {
  describe(`sql (${engine.name})`, () => {
    it.live("opening an up-to-date schema again applies nothing; a newer schema is refused", () =>
      Effect.gen(function*() {
        const schema = freshSchema()
        const client = yield* Layer.build(engine.client())
        const open = (options: SqlSecretStore.Options = {}) =>
          Layer.build(SqlSecretStore.layerStore({ keyRing: KeyRing.make([testKey]), schema, ...options })).pipe(
            Effect.provide(client)
          )
        yield* open()
        yield* open()
        const sql = SqlClientOf(client)
        const applied = yield* sql.unsafe<{ version: number }>(`SELECT version FROM ${schema}.migrations`)
        expect(applied.map((row) => row.version)).toEqual([1])
        yield* sql.unsafe(`INSERT INTO ${schema}.migrations (version, name) VALUES (99, 'future')`)
        const newer = yield* failure(open())
        expect(newer._tag).toBe("StoreCorrupted")
        expect(newer.message).toMatch(/version 99, newer than this @secretgate\/sql knows \(1\): upgrade/)
        const badSchema = yield* failure(open({ schema: "Bad-Schema" }))
        expect(badSchema._tag).toBe("StoreUnavailable")
        expect(badSchema.message).toMatch(/schema "Bad-Schema" must be/)
        yield* sql.unsafe(`DROP SCHEMA ${schema} CASCADE`)
      }).pipe(Effect.scoped))

    it.live("keys: a wrong key under a known id, or records under a key not configured, fail the open", () =>
      Effect.gen(function*() {
        const schema = freshSchema()
        const client = yield* Layer.build(engine.client())
        const open = (ring: KeyRing.KeyRing) =>
          Layer.build(SqlSecretStore.layerClient({ keyRing: ring, schema })).pipe(Effect.provide(client))
        const context = yield* open(KeyRing.make([testKey]))
        yield* Effect.provide(Effect.flatMap(Secrets.Secrets, (s) => s.create(org(), { name: "a", value: Redacted.make("v") })), context)
        const impostor = KeyRing.keyFromBase64(testKey.id, Buffer.alloc(32, 1).toString("base64"))
        const wrong = yield* failure(open(KeyRing.make([impostor])))
        expect(wrong._tag).toBe("DecryptionFailed")
        expect(wrong.message).toMatch(/the key configured as "test-key" is not the key this database knows/)
        const missing = yield* failure(open(KeyRing.make([newKey])))
        expect(missing._tag).toBe("DecryptionFailed")
        expect(missing.message).toMatch(/1 record\(s\) are sealed with key "test-key", which is not configured: add it to keyRing/)
        yield* SqlClientOf(client).unsafe(`DROP SCHEMA ${schema} CASCADE`)
      }).pipe(Effect.scoped))

    it.live("a statement failed by a serialization failure or a deadlock runs again; one that keeps failing is StoreUnavailable, saying so", () =>
      Effect.gen(function*() {
        const { secrets, sql, store } = yield* opened(engine.layer())
        const s = store.schema
        // the database itself fails the inserts: a trigger raises 40001 and 40P01 in turn while a
        // sequence (not rolled back with the failed statement) is under a bound
        yield* sql.unsafe(`CREATE SEQUENCE ${s}.flaky`)
        yield* sql.unsafe(`CREATE TABLE ${s}.flaky_bound (n bigint)`)
        yield* sql.unsafe(`INSERT INTO ${s}.flaky_bound VALUES (2)`)
        yield* sql.unsafe(`CREATE FUNCTION ${s}.flaky() RETURNS trigger LANGUAGE plpgsql AS $$
          DECLARE attempt bigint := nextval('${s}.flaky');
          BEGIN
            IF attempt <= (SELECT n FROM ${s}.flaky_bound) THEN
              IF attempt % 2 = 1 THEN RAISE EXCEPTION 'injected' USING ERRCODE = '40001'; END IF;
              RAISE EXCEPTION 'injected' USING ERRCODE = '40P01';
            END IF;
            RETURN NEW;
          END $$`)
        yield* sql.unsafe(`CREATE TRIGGER flaky BEFORE INSERT ON ${s}.secrets FOR EACH ROW EXECUTE FUNCTION ${s}.flaky()`)
        const attempts = () => Effect.map(sql.unsafe<{ last_value: string }>(`SELECT last_value FROM ${s}.flaky`), ([row]) => Number(row!.last_value))
        const o = org()
        const created = yield* secrets.create(o, { name: "after_two_failures", value: Redacted.make("retried-value"), hosts: ["api.example.com"] })
        expect(yield* attempts()).toBe(3)
        expect((yield* secrets.get(o, created.id)).name).toBe("after_two_failures")
        // failing for good: given up after its retries, nothing written, the quota untouched
        yield* sql.unsafe(`UPDATE ${s}.flaky_bound SET n = 1000000`)
        const before = yield* attempts()
        const failed = yield* failure(secrets.create(o, { name: "never", value: Redacted.make("never-value") }))
        expect(failed._tag).toBe("StoreUnavailable")
        expect(failed.message).toMatch(/serialization failure or deadlock \(SQLSTATE 40(001|P01)\) .*retry/)
        expect(failed.message).not.toContain("never-value")
        expect((yield* attempts()) - before).toBeGreaterThan(2)
        expect((yield* secrets.list(o)).map((secret) => secret.name)).toEqual(["after_two_failures"])
        const [quota] = yield* sql.unsafe<{ secret_count: string }>(`SELECT secret_count FROM ${s}.organizations WHERE id = $1`, [o])
        expect(Number(quota!.secret_count)).toBe(1)
      }).pipe(Effect.scoped))

    it.live("values are sealed in the database; a row changed without the key is refused, other rows still work", () =>
      Effect.gen(function*() {
        const { secrets, sql, store } = yield* opened(engine.layer())
        const o = org()
        const victim = yield* secrets.create(o, { name: "victim", value: Redacted.make("plain-value-123"), hosts: ["api.example.com"] })
        const other = yield* secrets.create(o, { name: "other", value: Redacted.make("plain-value-456") })
        const dump = JSON.stringify(yield* sql.unsafe(`SELECT * FROM ${store.schema}.secrets`))
        expect(dump).not.toContain("plain-value")
        // read (and so verified) once unchanged: a row changed after that is refused all the same
        expect((yield* secrets.get(o, victim.id)).hosts).toEqual(["api.example.com"])
        yield* sql.unsafe(`UPDATE ${store.schema}.secrets SET hosts = '{}' WHERE id = $1`, [victim.id])
        const tampered = yield* failure(secrets.resolve(o, [victim.placeholder]))
        expect(tampered._tag).toBe("StoreCorrupted")
        expect(tampered.message).toMatch(/does not match its MAC/)
        expect(tampered.message).not.toContain("plain-value")
        expect((yield* failure(secrets.get(o, victim.id)))._tag).toBe("StoreCorrupted")
        const [resolved] = yield* secrets.resolve(o, [other.placeholder])
        expect(Redacted.value(resolved!.value)).toBe("plain-value-456")
      }).pipe(Effect.scoped))

    it.live("keyset pagination stays exact while rows are inserted between pages (equal timestamps too)", () =>
      Effect.gen(function*() {
        const { secrets, sql, store } = yield* opened(engine.layer())
        const o = org()
        const original: Array<Secret.Secret> = []
        for (let i = 0; i < 12; i++) original.push(yield* secrets.create(o, { name: `s${i}`, value: Redacted.make("v") }))
        // the same millisecond for half of them: only the id orders those
        yield* sql.unsafe(`UPDATE ${store.schema}.secrets SET created_at = '2026-01-01T00:00:00.000Z', updated_at = created_at WHERE organization_id = $1 AND name < 's6'`, [o])
        for (const sort of ["name", "createdAt", "updatedAt"] as const) {
          for (const order of ["asc", "desc"] as const) {
            const seen: Array<string> = []
            let cursor: string | undefined
            let inserted = 0
            do {
              const page = yield* secrets.listPage(o, { limit: 4, sort, order, ...(cursor === undefined ? {} : { cursor }) })
              seen.push(...page.items.map((s) => s.id))
              cursor = page.nextCursor ?? undefined
              yield* secrets.create(o, { name: `new_${sort}_${order}_${inserted++}`, value: Redacted.make("v") })
            } while (cursor !== undefined)
            expect(new Set(seen).size).toBe(seen.length)
            for (const secret of original) expect(seen).toContain(secret.id)
            // the order is the one every backend uses: the sort field, then the id
            const listed = (yield* secrets.list(o)).filter((s) => seen.includes(s.id))
            const key = (s: Secret.Secret) => (sort === "name" ? s.name : s[sort].getTime())
            const expected = [...listed].sort((a, b) =>
              (key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0) * (order === "asc" ? 1 : -1))
            expect(seen).toEqual(expected.map((s) => s.id))
          }
        }
      }).pipe(Effect.scoped))

    it.live("rotation: reseal in batches with progress, retireKey refused while used, a retired key is never used again", () =>
      Effect.gen(function*() {
        const schema = freshSchema()
        const client = yield* Layer.build(engine.client())
        const open = (ring: KeyRing.KeyRing) =>
          Layer.build(SqlSecretStore.layerClient({ keyRing: ring, schema })).pipe(Effect.provide(client))
        const before = yield* open(KeyRing.make([testKey]))
        const oldSecrets = before.unsafeMap.get(Secrets.Secrets.key) as Secrets.Secrets
        const o = org()
        const made: Array<Secret.Secret> = []
        for (let i = 0; i < 7; i++) made.push(yield* oldSecrets.create(o, { name: `k${i}`, value: Redacted.make(`value-${i}`) }))

        const after = yield* open(KeyRing.make([testKey, newKey]))
        const store = after.unsafeMap.get(SqlSecretStore.SqlSecretStore.key) as SqlSecretStore.SqlSecretStore
        const secrets = after.unsafeMap.get(Secrets.Secrets.key) as Secrets.Secrets
        const inUse = yield* failure(store.retireKey(testKey.id))
        expect(inUse._tag).toBe("KeyManagementError")
        // one class for every backend: core's, re-exported here
        expect(inUse).toBeInstanceOf(KeyRing.KeyManagementError)
        expect(SqlSecretStore.KeyManagementError).toBe(KeyRing.KeyManagementError)
        expect(inUse.message).toBe(`7 record(s) are still sealed with key "test-key": run reseal first`)
        expect((yield* failure(store.retireKey(newKey.id))).message).toMatch(/is current and cannot be retired/)
        expect((yield* failure(store.retireKey("nope"))).message).toMatch(/"nope" is not known to this store/)

        const progress: Array<SqlSecretStore.ResealProgress> = []
        expect(yield* store.reseal({ batchSize: 3, onProgress: (p) => progress.push(p) })).toBe(7)
        expect(progress).toEqual([{ resealed: 0, total: 7 }, { resealed: 3, total: 7 }, { resealed: 6, total: 7 }, { resealed: 7, total: 7 }])
        expect(yield* store.reseal()).toBe(0)
        expect(yield* store.keys).toEqual([
          { id: "next-key", current: true, records: 7, held: true },
          { id: "test-key", current: false, records: 0, held: true }
        ])
        const values = yield* secrets.resolve(o, made.map((s) => s.placeholder))
        expect(values.map((v) => Redacted.value(v.value)).sort()).toEqual(made.map((_, i) => `value-${i}`))
        // the timestamps a user sees do not change with a reseal
        expect(yield* secrets.get(o, made[0]!.id)).toEqual(made[0])

        yield* store.retireKey(testKey.id)
        yield* store.retireKey(testKey.id) // again: nothing to do
        expect((yield* store.keys).map((k) => k.id)).toEqual(["next-key"])
        // a replica that still seals with the retired key cannot write, and says why
        const stale = yield* failure(open(KeyRing.make([testKey])))
        expect(stale._tag).toBe("DecryptionFailed")
        expect(stale.message).toMatch(/the sealing key "test-key" has been retired/)
        const lagging = yield* failure(oldSecrets.create(o, { name: "late", value: Redacted.make("from-a-stale-replica") }))
        expect(lagging._tag).toBe("StoreUnavailable")
        expect(lagging.message).toMatch(/seals with key "test-key", which the store has retired: put the new key last/)
        // it cannot read what is sealed with the new key either, and says so
        const unreadable = yield* failure(oldSecrets.update(o, made[1]!.id, { value: Redacted.make("from-a-stale-replica") }))
        expect(unreadable.message).toMatch(/sealed with key "next-key", which is not on this replica's key ring/)
        const [unchanged] = yield* secrets.resolve(o, [made[1]!.placeholder])
        expect(Redacted.value(unchanged!.value)).toBe("value-1")
        expect((yield* secrets.list(o)).length).toBe(7)
        yield* SqlClientOf(client).unsafe(`DROP SCHEMA ${schema} CASCADE`)
      }).pipe(Effect.scoped))

    it.live("freshness: a change made through another store over the same database reaches a resolver at once", () =>
      Effect.gen(function*() {
        const schema = freshSchema()
        const client = yield* Layer.build(engine.client())
        // two stores: over one PGlite, or over two pools of the server
        const open = Effect.gen(function*() {
          const own = engine.name === "pglite" ? client : yield* Layer.build(engine.client())
          return yield* Layer.build(SqlSecretStore.layerClient({ keyRing: KeyRing.make([testKey]), schema, pollInterval: "1 hour" })).pipe(
            Effect.provide(own)
          )
        })
        const a = yield* open
        const b = yield* open
        const secretsA = a.unsafeMap.get(Secrets.Secrets.key) as Secrets.Secrets
        const o = org()
        yield* secretsA.create(o, { name: "token", value: Redacted.make("first"), hosts: ["api.example.com"] })
        const { resolver } = yield* Effect.gen(function*() {
          const mount = yield* SandboxMount.make(o, { TOKEN: "token" })
          // a long TTL: only the revision can make it reload
          return { resolver: yield* SecretResolver.make(mount, { ttl: "1 hour" }) }
        }).pipe(Effect.provide(b))
        const valueOf = Effect.promise(async () => {
          const values = await resolver.current()
          return [...values.values()].map((v) => Redacted.value(v.value))
        })
        expect(yield* valueOf).toEqual(["first"])
        const secret = yield* secretsA.getByName(o, "token")
        yield* secretsA.update(o, secret.id, { value: Redacted.make("second") })
        yield* eventually(Effect.map(valueOf, (values) => values[0] === "second"), "3 seconds")
        yield* secretsA.delete(o, secret.id)
        yield* eventually(Effect.map(valueOf, (values) => values.length === 0), "3 seconds")
        yield* Effect.flatMap(SqlClient.SqlClient, (sql) => sql.unsafe(`DROP SCHEMA ${schema} CASCADE`)).pipe(Effect.provide(client))
      }).pipe(Effect.scoped))
  })
}

describe("sql: a database that cannot be reached", () => {
  it.live("opening fails with StoreUnavailable, saying what to check, without the password", () =>
    Effect.gen(function*() {
      const error = yield* failure(Layer.build(SqlSecretStore.layer({
        url: Redacted.make("postgres://someone:hunter2-password@127.0.0.1:1/nowhere"),
        key: Redacted.make(Buffer.alloc(32, 3).toString("base64")),
        connectTimeout: "2 seconds"
      })).pipe(Effect.scoped))
      expect(error._tag).toBe("StoreUnavailable")
      expect(error.message).toMatch(/127\.0\.0\.1:1\/nowhere/)
      expect(error.message).toMatch(/cannot be reached \(ECONNREFUSED\): check that it is running/)
      expect(error.message).not.toContain("hunter2")
      expect(JSON.stringify(error)).not.toContain("hunter2")
    }))

  it.live("a store without a key configured is refused at open with a message saying how to set one", () =>
    Effect.gen(function*() {
      const error = (yield* failure(Layer.build(SqlSecretStore.layerClient().pipe(Layer.provide(pglite.client()))).pipe(Effect.scoped))) as { _tag: string; message: string }
      expect(error._tag).toBe("DecryptionFailed")
      expect(error.message).toMatch(/no encryption key configured: set key/)
    }))
})

/** The `SqlClient` of a built context. */
/** A store of the engine opened in the test's scope: its services and the SQL client under it. */
const opened = <E>(layer: Layer.Layer<any, E>) =>
  Effect.map(Layer.build(layer), (context) => ({
    secrets: context.unsafeMap.get(Secrets.Secrets.key) as Secrets.Secrets,
    store: context.unsafeMap.get(SqlSecretStore.SqlSecretStore.key) as SqlSecretStore.SqlSecretStore,
    sql: SqlClientOf(context)
  }))

function SqlClientOf(context: import("effect").Context.Context<any>): SqlClient.SqlClient {
  return context.unsafeMap.get(SqlClient.SqlClient.key) as SqlClient.SqlClient
}
