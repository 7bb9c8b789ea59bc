/**
 * The database going away and coming back, as replicas see it: the store reaches the PostgreSQL
 * server through a TCP relay on 127.0.0.1 that the test cuts (every connection dropped, new ones
 * refused) and restores. Runs when `SECRETGATE_TEST_DATABASE_URL` is set.
 */
import { describe, expect, it } from "@effect/vitest"
import { KeyRing, SecretChanges, Secrets } from "@secretgate/core"
import { SqlSecretStore } from "@secretgate/sql"
import { Context, Effect, Either, Layer, Redacted } from "effect"
import * as Net from "node:net"
import { databaseUrl, dropSchema, freshSchema, skipReason, testKey } from "./support.js"

/** A relay to the test server that can be cut and restored on the same port. */
const relay = async (target: URL) => {
  const sockets = new Set<Net.Socket>()
  const server = Net.createServer((client) => {
    const upstream = Net.connect(Number(target.port || 5432), target.hostname)
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.on("close", () => sockets.delete(socket))
      socket.on("error", () => (client.destroy(), upstream.destroy()))
    }
    client.pipe(upstream).pipe(client)
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const port = (server.address() as Net.AddressInfo).port
  return {
    url: (() => {
      const url = new URL(target.href)
      url.hostname = "127.0.0.1"
      url.port = String(port)
      return url.href
    })(),
    cut: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        for (const socket of sockets) socket.destroy()
      }),
    restore: () => new Promise<void>((resolve) => server.listen(port, "127.0.0.1", resolve)),
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        if (server.listening) server.close(() => resolve())
        else resolve()
      })
  }
}

const until = <E, R>(check: Effect.Effect<boolean, E, R>, what: string) =>
  Effect.gen(function*() {
    const deadline = Date.now() + 15_000
    while (!(yield* check)) {
      if (Date.now() > deadline) return yield* Effect.dieMessage(`${what} did not happen within 15 s`)
      yield* Effect.sleep("50 millis")
    }
  })

describe.skipIf(databaseUrl === undefined)(skipReason ?? "sql: the database goes away and comes back", () => {
  it.live("operations fail with StoreUnavailable saying what to check, the store stops being live, and both recover", () =>
    Effect.gen(function*() {
      const schema = freshSchema()
      yield* Effect.addFinalizer(() => Effect.promise(() => dropSchema(schema)))
      const link = yield* Effect.acquireRelease(Effect.promise(() => relay(new URL(databaseUrl!))), (r) => Effect.promise(r.close))
      const context = yield* Layer.build(SqlSecretStore.layer({
        url: Redacted.make(link.url),
        keyRing: KeyRing.make([testKey]),
        schema,
        maxConnections: 2,
        connectTimeout: "2 seconds"
      }))
      const secrets = Context.get(context, Secrets.Secrets)
      const changes = Context.get(context, SecretChanges.SecretChanges)
      const o = `org-${globalThis.crypto.randomUUID()}`
      const secret = yield* secrets.create(o, { name: "kept", value: Redacted.make("value-kept-123") })
      yield* until(Effect.sync(() => changes.live(o)), "the listener connecting")

      yield* Effect.promise(link.cut)
      const failed = yield* Effect.either(secrets.get(o, secret.id))
      expect(Either.isLeft(failed)).toBe(true)
      const error = Either.isLeft(failed) ? failed.left : undefined
      expect(error?._tag).toBe("StoreUnavailable")
      expect(error?.message).toMatch(
        /the database at 127\.0\.0\.1:\d+\/\w+ cannot be reached \(ECONNREFUSED\): check that it is running|the connection to the database at 127\.0\.0\.1:\d+\/\w+ was lost/
      )
      expect(JSON.stringify(error)).not.toContain("value-kept-123")
      const write = yield* Effect.either(secrets.create(o, { name: "during", value: Redacted.make("x") }))
      expect(Either.isLeft(write) && write.left._tag).toBe("StoreUnavailable")
      yield* until(Effect.sync(() => !changes.live(o)), "the store saying it is not live")

      yield* Effect.promise(link.restore)
      yield* until(Effect.map(Effect.either(secrets.get(o, secret.id)), Either.isRight), "reads working again")
      yield* until(Effect.sync(() => changes.live(o)), "the listener reconnecting")
      expect((yield* secrets.list(o)).map((s) => s.name)).toEqual(["kept"])
    }).pipe(Effect.scoped), 60_000)
})
