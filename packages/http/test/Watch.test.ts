/**
 * The watch: `GET /secret/watch` streams an organization's changes, and `HttpSecrets` uses it so
 * that a remote egress resolver keeps values until a change is announced and sees it on its very
 * next request; while the stream is down it polls every TTL (and logs so), and it resumes.
 * Real servers on 127.0.0.1, a real TCP relay to cut the stream, raw HTTP for the wire.
 */
import { Secretgate, SecretResolver, Secrets } from "@secretgate/core"
import { FileSystemSecretStore } from "@secretgate/filesystem"
import { ApiKeys, HttpSecrets, SecretServer } from "@secretgate/http"
import { MemorySecretStore } from "@secretgate/memory"
import { type Duration, Effect, Layer, Logger, ManagedRuntime, Option, Redacted } from "effect"
import { mkdtempSync, rmSync } from "node:fs"
import * as Http from "node:http"
import * as Net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import * as WatchStream from "../src/internal/watchStream.js"

const ORG = "acme"
const OTHER = "globex"
const registry = ApiKeys.makeRegistry()
const issue = (organizationId: string, scope: ApiKeys.Scope) =>
  Redacted.value(registry.issue({ organizationId, scopes: [scope] }).key)
const manage = issue(ORG, "secrets:manage")
const resolveKey = issue(ORG, "secrets:resolve")
const manageOther = issue(OTHER, "secrets:manage")
const resolveOther = issue(OTHER, "secrets:resolve")

let server: SecretServer.RunningServer
const cleanup: Array<() => Promise<unknown> | unknown> = []

beforeAll(async () => {
  server = await SecretServer.serve({ backend: MemorySecretStore.layer(), keys: registry, watchHeartbeat: "200 millis" })
})
afterAll(async () => {
  for (const step of cleanup.reverse()) await step()
  await server.close()
})

/** The management facade of an organization, over HTTP. */
const admin = (organizationId = ORG, key = manage, url = server.url) => {
  const gate = new Secretgate({ layer: HttpSecrets.layer({ baseUrl: url, apiKey: key, watch: false }), organizationId })
  cleanup.push(() => gate.dispose())
  return gate
}

/** An egress side: `Secrets` over HTTP with the resolve key, its log lines captured. */
const egress = async (url = server.url, options: Partial<HttpSecrets.Options> = {}) => {
  const logs: Array<string> = []
  const capture = Logger.replace(Logger.defaultLogger, Logger.make(({ message }) => logs.push(String(message))))
  const runtime = ManagedRuntime.make(
    HttpSecrets.layer({ baseUrl: url, apiKey: resolveKey, ...options }).pipe(Layer.provide(capture))
  )
  cleanup.push(() => runtime.dispose())
  const secrets = await runtime.runPromise(Secrets.Secrets)
  const resolver = (mount: Parameters<typeof SecretResolver.make>[0], ttl: Duration.DurationInput) =>
    runtime.runPromise(SecretResolver.make(mount, { ttl }).pipe(Effect.provideService(Secrets.Secrets, secrets)))
  return { secrets, resolver, logs }
}

const valueOf = async (resolver: SecretResolver.SecretResolver, placeholder: string) => {
  const secret = (await resolver.current()).get(placeholder)
  return secret === undefined ? undefined : { value: Redacted.value(secret.value), hosts: secret.hosts }
}

const eventually = async (check: () => unknown | Promise<unknown>, timeout = 10_000) => {
  const deadline = Date.now() + timeout
  for (;;) {
    try {
      return await check()
    } catch (error) {
      if (Date.now() > deadline) throw error
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }
}

/** Opens the stream with raw HTTP; collects its `change` events' data. */
const openStream = (key: string, url = server.url) =>
  new Promise<{ status: number; events: Array<any>; body: string; close: () => void }>((resolve, reject) => {
    const request = Http.get(`${url}/secret/watch`, { headers: { authorization: `Bearer ${key}` } }, (response) => {
      const stream = { status: response.statusCode!, events: [] as Array<any>, body: "", close: () => request.destroy() }
      response.setEncoding("utf8")
      response.on("data", (text: string) => {
        stream.body += text
        stream.events = [...stream.body.matchAll(/^event: change\ndata: (.*)$/gm)].map((match) => JSON.parse(match[1]!))
      })
      response.on("error", () => {})
      cleanup.push(stream.close)
      resolve(stream)
    })
    request.on("error", reject)
  })

describe("GET /secret/watch", () => {
  it("streams the organization's changes as server-sent events, the current revision first", async () => {
    const stream = await openStream(resolveKey)
    expect(stream.status).toBe(200)
    await eventually(() => expect(stream.events).toHaveLength(1))
    expect(stream.events[0]).toEqual({ revision: expect.any(String) })
    const gate = admin()
    const created = await gate.secret.create({ name: "streamed", value: "v1" })
    await eventually(() => expect(stream.events).toHaveLength(2))
    expect(stream.events[1]).toEqual({ revision: expect.any(String), placeholders: [created.placeholder] })
    expect(stream.events[1].revision).not.toBe(stream.events[0].revision)
    // heartbeats keep the connection alive
    await eventually(() => expect(stream.body).toContain(": keep-alive\n\n"))
    // never a value
    await gate.secret.update(created.id, { value: "v2-never-on-the-stream" })
    await eventually(() => expect(stream.events).toHaveLength(3))
    expect(stream.body).not.toContain("v2-never-on-the-stream")
  })

  it("cannot be opened with a management key, nor without a key", async () => {
    const withManage = await openStream(manage)
    expect(withManage.status).toBe(403)
    await eventually(() => expect(withManage.body).toContain(`"code":"Forbidden"`))
    expect((await openStream("sgk_unknown-key-of-nobody")).status).toBe(401)
  })

  it("shows an organization only its own changes", async () => {
    const mine = await openStream(resolveKey)
    const theirs = await openStream(resolveOther)
    await eventually(() => expect(mine.events).toHaveLength(1))
    await eventually(() => expect(theirs.events).toHaveLength(1))
    const other = await admin(OTHER, manageOther).secret.create({ name: "theirs", value: "x" })
    const own = await admin().secret.create({ name: "mine", value: "y" })
    await eventually(() => expect(mine.events).toHaveLength(2))
    await eventually(() => expect(theirs.events).toHaveLength(2))
    expect(mine.events[1].placeholders).toEqual([own.placeholder])
    expect(theirs.events[1].placeholders).toEqual([other.placeholder])
  })

  it("answers 503 over a backend that does not announce every change (and HttpSecrets then polls, saying so)", async () => {
    const directory = mkdtempSync(join(tmpdir(), "secretgate-watch-"))
    // a filesystem store not watching its directory: other processes' writes are seen by polling only
    const filesystem = await SecretServer.serve({
      backend: FileSystemSecretStore.layer({ directory, watchDirectory: false }),
      keys: registry
    })
    cleanup.push(() => rmSync(directory, { recursive: true, force: true }))
    cleanup.push(() => filesystem.close())
    const stream = await openStream(resolveKey, filesystem.url)
    expect(stream.status).toBe(503)
    await eventually(() => expect(stream.body).toContain(`"code":"StoreUnavailable"`))

    const gate = admin(ORG, manage, filesystem.url)
    const secret = await gate.secret.create({ name: "polled", value: "v1" })
    const { logs, resolver, secrets } = await egress(filesystem.url)
    const polling = await resolver(await gate.mount({ P: "polled" }), "100 millis")
    expect(await valueOf(polling, secret.placeholder)).toEqual({ value: "v1", hosts: [] })
    await eventually(() => expect(logs.join("\n")).toMatch(/change stream of organization "acme" .* is down \(the server answered 503\); resolvers poll every TTL/))
    expect(secrets.changes!.live(ORG)).toBe(false)
    await gate.secret.update(secret.id, { value: "v2" })
    await eventually(async () => expect((await valueOf(polling, secret.placeholder))?.value).toBe("v2"))
  })
})

describe("a remote resolver with the watch", () => {
  const setUp = async () => {
    const gate = admin()
    const name = `w_${Math.random().toString(36).slice(2)}`
    const secret = await gate.secret.create({ name, value: "v1", hosts: ["api.example.com"] })
    const bystander = await gate.secret.create({ name: `${name}_other`, value: "b1" })
    const side = await egress()
    // a TTL no test waits for: only an announcement can explain a refresh
    const resolver = await side.resolver(await gate.mount({ S: name }), "10 minutes")
    expect(await valueOf(resolver, secret.placeholder)).toEqual({ value: "v1", hosts: ["api.example.com"] })
    await eventually(() => expect(side.secrets.changes!.live(ORG)).toBe(true))
    return { gate, secret, bystander, resolver, side }
  }

  it("keeps its values (the same map, no request) while nothing it mounts changes", async () => {
    const { bystander, gate, resolver } = await setUp()
    const kept = await resolver.current()
    await gate.secret.update(bystander.id, { value: "b2" })
    await gate.secret.create({ name: `created_${Date.now()}`, value: "c" })
    expect(resolver.current()).toBe(kept)
  })

  it("sees an update, a hosts change and a delete on its next request after the write's answer", async () => {
    const { gate, resolver, secret } = await setUp()
    await gate.secret.update(secret.id, { value: "v2" })
    expect(await valueOf(resolver, secret.placeholder)).toEqual({ value: "v2", hosts: ["api.example.com"] })
    await gate.secret.update(secret.id, { hosts: ["*.example.org"] })
    expect(await valueOf(resolver, secret.placeholder)).toEqual({ value: "v2", hosts: ["*.example.org"] })
    await gate.secret.delete(secret.id)
    expect(await valueOf(resolver, secret.placeholder)).toBeUndefined()
  })

  it("sees a create: the organization's revision has moved by the time the write is answered", async () => {
    const { gate, side } = await setUp()
    const heard: Array<ReadonlyArray<string> | undefined> = []
    side.secrets.changes!.subscribe((change) => heard.push(change.placeholders))
    const before = side.secrets.revision!(ORG)
    const created = await gate.secret.create({ name: `fresh_${Date.now()}`, value: "n" })
    expect(side.secrets.revision!(ORG)).toBeGreaterThan(before)
    expect(heard).toContainEqual([created.placeholder])
  })
})

describe("a dropped stream", () => {
  it("falls back to polling every TTL (with a log line) and resumes", async () => {
    // a relay in front of the server that can refuse the watch route
    let refuseWatch = false
    const sockets = new Set<Net.Socket>()
    const relay = Net.createServer((client) => {
      const upstream = Net.connect(new URL(server.url).port as unknown as number, "127.0.0.1")
      sockets.add(client)
      client.once("data", (first) => {
        if (refuseWatch && first.toString("latin1").startsWith("GET /secret/watch")) return client.destroy()
        upstream.write(first)
        client.pipe(upstream).pipe(client)
      })
      const close = () => {
        sockets.delete(client)
        client.destroy()
        upstream.destroy()
      }
      client.on("error", close).on("close", close)
      upstream.on("error", close).on("close", close)
    })
    await new Promise<void>((resolve) => relay.listen(0, "127.0.0.1", resolve))
    cleanup.push(() => new Promise((resolve) => relay.close(resolve)))
    const relayUrl = `http://127.0.0.1:${(relay.address() as Net.AddressInfo).port}`

    const gate = admin()
    const secret = await gate.secret.create({ name: `dropped_${Date.now()}`, value: "v1" })
    const side = await egress(relayUrl)
    const resolver = await side.resolver(await gate.mount({ D: secret.name }), "200 millis")
    expect((await valueOf(resolver, secret.placeholder))?.value).toBe("v1")
    await eventually(() => expect(side.secrets.changes!.live(ORG)).toBe(true))

    // cut every connection (the watch among them) and refuse new watches
    refuseWatch = true
    for (const socket of sockets) socket.destroy()
    await eventually(() => expect(side.secrets.changes!.live(ORG)).toBe(false))
    await eventually(() => expect(side.logs.join("\n")).toMatch(/change stream of organization "acme" from http:\/\/127\.0\.0\.1:\d+ is down/))
    // polling: a change is seen within the TTL although nothing announced it
    await gate.secret.update(secret.id, { value: "v2" })
    await eventually(async () => expect((await valueOf(resolver, secret.placeholder))?.value).toBe("v2"))

    // the watch comes back: announcements again, and a log line
    refuseWatch = false
    await eventually(() => expect(side.secrets.changes!.live(ORG)).toBe(true), 20_000)
    expect(side.logs.join("\n")).toMatch(/change stream of organization "acme" is back/)
    await gate.secret.update(secret.id, { value: "v3" })
    await eventually(async () => expect((await valueOf(resolver, secret.placeholder))?.value).toBe("v3"))
  })
})

describe("watch streams are capped, and end when their key is revoked", () => {
  /** Opens a stream; `ended` settles when the server ends it. */
  const open = (key: string, url: string) =>
    new Promise<{ status: number; body: () => string; ended: Promise<void>; close: () => void }>((resolve, reject) => {
      const request = Http.get(`${url}/secret/watch`, { headers: { authorization: `Bearer ${key}` } }, (response) => {
        let body = ""
        response.setEncoding("utf8")
        response.on("data", (text: string) => (body += text))
        response.on("error", () => {})
        const ended = new Promise<void>((done) => response.once("end", done))
        cleanup.push(() => request.destroy())
        resolve({ status: response.statusCode!, body: () => body, ended, close: () => request.destroy() })
      })
      request.on("error", reject)
    })
  const within = <A>(promise: Promise<A>, what: string, ms = 10_000) =>
    Promise.race([promise, new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`${what} within ${ms} ms`)), ms).unref())])

  it("a key's streams end at once when the registry revokes it; other keys' streams stay open", async () => {
    const keys = ApiKeys.makeRegistry()
    const doomed = keys.issue({ id: "doomed", organizationId: ORG, scopes: ["secrets:resolve"] })
    const kept = keys.issue({ id: "kept", organizationId: ORG, scopes: ["secrets:resolve"] })
    // a long heartbeat: the end must come from the revocation, not from a later re-check
    const server = await SecretServer.serve({ backend: MemorySecretStore.layer(), keys, watchHeartbeat: "1 hour" })
    cleanup.push(() => server.close())
    const first = await open(Redacted.value(doomed.key), server.url)
    const second = await open(Redacted.value(doomed.key), server.url)
    const other = await open(Redacted.value(kept.key), server.url)
    expect([first.status, second.status, other.status]).toEqual([200, 200, 200])
    await eventually(() => expect(first.body()).toContain("event: change"))
    keys.revoke("doomed")
    await within(Promise.all([first.ended, second.ended]), "the revoked key's streams ended", 5_000)
    let otherEnded = false
    void other.ended.then(() => (otherEnded = true))
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(otherEnded).toBe(false)
    expect((await open(Redacted.value(doomed.key), server.url)).status).toBe(401)
  })

  it("a change announced after a stream was ended (its key revoked, the server shutting down) writes nothing: the server stays up", async () => {
    // the window between a stream's end and its close is as long as its client takes to read the
    // end (forever, for one that stopped reading); a change announced in it once wrote after the
    // end, and the unhandled error took the process down
    const subscribers = new Set<(change: { organizationId?: string; placeholders?: ReadonlyArray<string> }) => void>()
    const changes = {
      subscribe: (f: (change: { organizationId?: string; placeholders?: ReadonlyArray<string> }) => void) => {
        subscribers.add(f)
        return () => void subscribers.delete(f)
      },
      live: () => true
    }
    const announce = () => {
      for (const f of [...subscribers]) f({ organizationId: ORG, placeholders: ["sg_secret_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"] })
    }
    const streams = WatchStream.makeOpenStreams()
    const caller = { id: "k1", organizationId: ORG, scopes: ["secrets:resolve"] } as unknown as ApiKeys.ApiKey
    const server = Http.createServer((_, response) => {
      Effect.runFork(WatchStream.serve({
        response,
        secrets: {} as never,
        changes: changes as never,
        revision: () => 1,
        caller,
        token: Redacted.make("t"),
        keys: { authenticate: () => Effect.succeed(Option.none()) } as never,
        instance: "i",
        heartbeatMillis: 3_600_000,
        open: streams,
        limits: { perKey: 16, perOrganization: 64 }
      }))
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    cleanup.push(() => new Promise<void>((resolve) => server.close(() => resolve())))
    const url = `http://127.0.0.1:${(server.address() as Net.AddressInfo).port}`
    const revoked = await open("t", url)
    await eventually(() => expect(revoked.body()).toContain("event: change"))
    WatchStream.endForKey(streams, "k1")
    announce()
    const shut = await open("t", url)
    await eventually(() => expect(shut.body()).toContain("event: change"))
    WatchStream.endAll(streams)
    announce()
    await within(Promise.all([revoked.ended, shut.ended]), "both streams ended", 5_000)
    // nothing after the end, and the listeners are gone
    expect(revoked.body().match(/event: change/g)).toHaveLength(1)
    expect(subscribers.size).toBe(0)

    // a client that stops reading while changes go on is cut off, not buffered for without bound
    const stalled = await new Promise<Http.IncomingMessage>((resolve, reject) => {
      const request = Http.get(`${url}/secret/watch`, (response) => {
        response.pause()
        resolve(response)
      })
      request.on("error", reject)
      cleanup.push(() => request.destroy())
    })
    stalled.on("error", () => {})
    await eventually(() => expect(subscribers.size).toBe(1))
    let sent = 0
    for (; sent < 300_000 && subscribers.size > 0; sent++) announce()
    // cut off once a MiB waited unsent (each event is about a hundred bytes; the sockets hold some)
    expect(subscribers.size).toBe(0)
    expect(sent).toBeLessThan(300_000)
  })

  it("with an ApiKeys that announces no revocation, a stream ends at the first heartbeat after its key stops authenticating", async () => {
    const valid = new Map<string, ApiKeys.ApiKey>()
    const token = "sgk_custom-key-of-a-database-0001"
    valid.set(token, { id: "from-db", organizationId: ORG, scopes: ["secrets:resolve"] })
    const fromDatabase: ApiKeys.ApiKeys = {
      authenticate: (presented) => Effect.sync(() => Option.fromNullable(valid.get(Redacted.value(presented))))
    }
    const server = await SecretServer.serve({ backend: MemorySecretStore.layer(), keys: fromDatabase, watchHeartbeat: "50 millis" })
    cleanup.push(() => server.close())
    const stream = await open(token, server.url)
    expect(stream.status).toBe(200)
    await eventually(() => expect(stream.body()).toContain(": keep-alive"))
    let ended = false
    void stream.ended.then(() => (ended = true))
    await new Promise((resolve) => setTimeout(resolve, 200))
    expect(ended).toBe(false)
    valid.delete(token)
    await within(stream.ended, "the stream of a key that no longer authenticates ended")
  })

  it("beyond maxWatchStreams per key → 429 TooManyWatchStreams; per organization likewise; a closed stream frees its place", async () => {
    const keys = ApiKeys.makeRegistry()
    const a = Redacted.value(keys.issue({ organizationId: ORG, scopes: ["secrets:resolve"] }).key)
    const b = Redacted.value(keys.issue({ organizationId: ORG, scopes: ["secrets:resolve"] }).key)
    const c = Redacted.value(keys.issue({ organizationId: ORG, scopes: ["secrets:resolve"] }).key)
    const elsewhere = Redacted.value(keys.issue({ organizationId: OTHER, scopes: ["secrets:resolve"] }).key)
    const server = await SecretServer.serve({
      backend: MemorySecretStore.layer(),
      keys,
      maxWatchStreams: { perKey: 2, perOrganization: 3 }
    })
    cleanup.push(() => server.close())
    const a1 = await open(a, server.url)
    const a2 = await open(a, server.url)
    const a3 = await open(a, server.url)
    expect([a1.status, a2.status, a3.status]).toEqual([200, 200, 429])
    await eventually(() => expect(JSON.parse(a3.body())).toMatchObject({
      statusCode: 429,
      error: "Too Many Requests",
      code: "TooManyWatchStreams",
      limit: 2,
      message: expect.stringMatching(/^this API key already holds 2 open watch streams, the most the server allows \(2\); close one, or poll POST \/secret\/resolve$/)
    }))
    const b1 = await open(b, server.url)
    const c1 = await open(c, server.url)
    expect([b1.status, c1.status]).toEqual([200, 429])
    await eventually(() => expect(JSON.parse(c1.body())).toMatchObject({ code: "TooManyWatchStreams", limit: 3, message: expect.stringMatching(/^organization "acme" already holds 3/) }))
    // another organization has its own count
    expect((await open(elsewhere, server.url)).status).toBe(200)
    // closing a stream frees its place
    a1.close()
    await eventually(async () => {
      const again = await open(a, server.url)
      expect(again.status).toBe(200)
    })
    expect(() => SecretServer.layerApi({ maxWatchStreams: { perKey: 0 } })).toThrow(/maxWatchStreams.perKey must be a positive whole number/)
  })

  it("HttpSecrets refused with 429 polls (saying so) and takes the stream once a place is free", async () => {
    const server = await SecretServer.serve({ backend: MemorySecretStore.layer(), keys: registry, maxWatchStreams: { perKey: 1 } })
    cleanup.push(() => server.close())
    const holder = await open(resolveKey, server.url)
    expect(holder.status).toBe(200)
    const gate = admin(ORG, manage, server.url)
    const secret = await gate.secret.create({ name: "capped", value: "v1" })
    const { logs, resolver, secrets } = await egress(server.url)
    const polling = await resolver(await gate.mount({ P: "capped" }), "100 millis")
    expect(await valueOf(polling, secret.placeholder)).toEqual({ value: "v1", hosts: [] })
    await eventually(() => expect(logs.join("\n")).toMatch(/change stream of organization "acme" .* is down \(the server answered 429\); resolvers poll every TTL/))
    expect(secrets.changes!.live(ORG)).toBe(false)
    await gate.secret.update(secret.id, { value: "v2" })
    await eventually(async () => expect((await valueOf(polling, secret.placeholder))?.value).toBe("v2"))
    holder.close()
    await eventually(() => expect(logs.join("\n")).toMatch(/change stream of organization "acme" is back/), 20_000)
    await eventually(() => expect(secrets.changes!.live(ORG)).toBe(true))
  })
})
