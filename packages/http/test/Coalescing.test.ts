/**
 * Coalescing of remote resolves: many egress requests at once over the same mount send one
 * `POST /secret/resolve`, counted by a real server (every request it receives, by route); a write
 * made through the client or a change announced by the watch is never answered by a resolve sent
 * before it.
 */
import { Secretgate, SecretResolver, Secrets } from "@secretgate/core"
import { ApiKeys, HttpSecrets, SecretServer } from "@secretgate/http"
import { MemorySecretStore } from "@secretgate/memory"
import { Effect, Layer, ManagedRuntime, Redacted } from "effect"
import diagnostics from "node:diagnostics_channel"
import type * as Http from "node:http"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const ORG = "acme"
const registry = ApiKeys.makeRegistry()
const manage = Redacted.value(registry.issue({ organizationId: ORG, scopes: ["secrets:manage"] }).key)
const resolveKey = Redacted.value(registry.issue({ organizationId: ORG, scopes: ["secrets:resolve"] }).key)

let server: SecretServer.RunningServer
let port: number
// requests the server received, by method and path
const received = new Map<string, number>()
const count = (message: unknown) => {
  const request = (message as { request: Http.IncomingMessage }).request
  if (request.socket.localPort !== port) return
  const route = `${request.method} ${request.url}`
  received.set(route, (received.get(route) ?? 0) + 1)
}
const resolves = () => received.get("POST /secret/resolve") ?? 0

beforeAll(async () => {
  server = await SecretServer.serve({ backend: MemorySecretStore.layer(), keys: registry })
  port = Number(new URL(server.url).port)
  diagnostics.subscribe("http.server.request.start", count)
})
afterAll(async () => {
  diagnostics.unsubscribe("http.server.request.start", count)
  await server.close()
})

const egressSide = (options: Partial<HttpSecrets.Options> = {}) =>
  ManagedRuntime.make(HttpSecrets.layer({ baseUrl: server.url, apiKey: manage, resolveApiKey: resolveKey, ...options }))

describe("coalescing of concurrent resolves", () => {
  it("50 resolvers of one mount asked at once → one resolve request; each gets the values", async () => {
    const runtime = egressSide({ watch: false })
    const gate = new Secretgate({ layer: HttpSecrets.layer({ baseUrl: server.url, apiKey: manage, watch: false }), organizationId: ORG })
    try {
      await gate.secret.create({ name: "coalesced", value: "v-coalesced-1" })
      const mount = await gate.mount({ TOKEN: "coalesced" })
      const secrets = await runtime.runPromise(Secrets.Secrets)
      const resolvers = await Promise.all(Array.from({ length: 50 }, () =>
        runtime.runPromise(SecretResolver.make(mount, { ttl: "1 second" }).pipe(Effect.provideService(Secrets.Secrets, secrets)))))
      const before = resolves()
      const all = await Promise.all(resolvers.map((resolver) => resolver.current()))
      expect(resolves() - before).toBe(1)
      for (const values of all) {
        expect(Redacted.value([...values.values()][0]!.value)).toBe("v-coalesced-1")
      }
      // direct calls of the service coalesce too; other placeholders or organizations do not join
      const again = resolves()
      const placeholder = mount.secrets[0]!.placeholder
      const answers = await runtime.runPromise(Effect.all(
        [
          ...Array.from({ length: 20 }, () => secrets.resolve(ORG, [placeholder])),
          secrets.resolve(ORG, [placeholder, "sg_secret_unknownunknownunknownunknown23"])
        ],
        { concurrency: "unbounded" }
      ))
      expect(resolves() - again).toBe(2)
      expect(answers.every((answer) => answer.length === 1)).toBe(true)
    } finally {
      await runtime.dispose()
      await gate.dispose()
    }
  })

  // A server whose first resolve waits until released: that resolve is surely in flight while
  // something changes.
  const gatedServer = async () => {
    let release!: () => void
    const released = new Promise<void>((resolve) => release = resolve)
    let first = true
    const gated = Layer.effect(
      Secrets.Secrets,
      Effect.map(Secrets.Secrets, (inner): Secrets.Secrets => ({
        ...inner,
        resolve: (organizationId, placeholders) => {
          if (!first) return inner.resolve(organizationId, placeholders)
          first = false
          return Effect.zipRight(Effect.promise(() => released), inner.resolve(organizationId, placeholders))
        }
      }))
    ).pipe(Layer.provide(MemorySecretStore.layer()))
    const slow = await SecretServer.serve({ backend: gated, keys: registry })
    const slowPort = Number(new URL(slow.url).port)
    const counter = { sent: 0 }
    const countSlow = (message: unknown) => {
      const request = (message as { request: Http.IncomingMessage }).request
      if (request.socket.localPort === slowPort && request.url === "/secret/resolve") counter.sent++
    }
    diagnostics.subscribe("http.server.request.start", countSlow)
    return {
      url: slow.url,
      counter,
      release: () => release(),
      close: async () => {
        release()
        diagnostics.unsubscribe("http.server.request.start", countSlow)
        await slow.close()
      }
    }
  }

  it("a resolve started after a write answered through the same client does not join one sent before it", async () => {
    const slow = await gatedServer()
    const runtime = ManagedRuntime.make(HttpSecrets.layer({ baseUrl: slow.url, apiKey: manage, resolveApiKey: resolveKey, watch: false }))
    try {
      const secrets = await runtime.runPromise(Secrets.Secrets)
      const created = await runtime.runPromise(secrets.create(ORG, { name: "rotated", value: Redacted.make("v-old") }))
      const resolve = () => runtime.runPromise(secrets.resolve(ORG, [created.placeholder]))
      const early = resolve()
      while (slow.counter.sent === 0) await new Promise((resolve) => setTimeout(resolve, 5))
      await runtime.runPromise(secrets.update(ORG, created.id, { value: Redacted.make("v-new") }))
      // sent after the write's answer: a request of their own (one for the three), answered at once
      const late = await Promise.all([resolve(), resolve(), resolve()])
      expect(slow.counter.sent).toBe(2)
      for (const answer of late) expect(Redacted.value(answer[0]!.value)).toBe("v-new")
      slow.release()
      await early
    } finally {
      await runtime.dispose()
      await slow.close()
    }
  })

  it("a resolve started after the watch announced a change made elsewhere does not join one sent before it", async () => {
    const slow = await gatedServer()
    const admin = new Secretgate({ layer: HttpSecrets.layer({ baseUrl: slow.url, apiKey: manage, watch: false }), organizationId: ORG })
    const runtime = ManagedRuntime.make(HttpSecrets.layer({ baseUrl: slow.url, apiKey: resolveKey }))
    try {
      const created = await admin.secret.create({ name: "announced", value: "v-old" })
      const secrets = await runtime.runPromise(Secrets.Secrets)
      // the watch starts with the organization's first revision asked for
      secrets.revision!(ORG, [created.placeholder])
      while (secrets.changes?.live(ORG) !== true) await new Promise((resolve) => setTimeout(resolve, 5))
      const resolve = () => runtime.runPromise(secrets.resolve(ORG, [created.placeholder]))
      const early = resolve()
      while (slow.counter.sent === 0) await new Promise((resolve) => setTimeout(resolve, 5))
      const before = secrets.revision!(ORG, [created.placeholder])
      await admin.secret.update(created.id, { value: "v-new" })
      while (secrets.revision!(ORG, [created.placeholder]) === before) await new Promise((resolve) => setTimeout(resolve, 5))
      const late = await Promise.all([resolve(), resolve(), resolve()])
      expect(slow.counter.sent).toBe(2)
      for (const answer of late) expect(Redacted.value(answer[0]!.value)).toBe("v-new")
      slow.release()
      await early
    } finally {
      await runtime.dispose()
      await admin.dispose()
      await slow.close()
    }
  })

  it("failures reach every joined caller, typed", async () => {
    const runtime = ManagedRuntime.make(HttpSecrets.layer({ baseUrl: server.url, apiKey: manage, watch: false }))
    try {
      const secrets = await runtime.runPromise(Secrets.Secrets)
      const before = resolves()
      const exits = await runtime.runPromise(Effect.all(
        Array.from({ length: 10 }, () => Effect.exit(secrets.resolve(ORG, ["sg_secret_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"]))),
        { concurrency: "unbounded" }
      ))
      expect(resolves() - before).toBe(1)
      for (const exit of exits) {
        expect(exit._tag).toBe("Failure")
        expect(JSON.stringify(exit)).toMatch(/Forbidden/)
      }
    } finally {
      await runtime.dispose()
    }
  })
})
