/**
 * `HttpSecrets` beyond the conformance suite: the Promise facade over it, typed errors across the
 * wire, auth failures, and a clear `StoreUnavailable` when the server is unreachable, slow, broken
 * or not a secretgate server at all. Also the server's graceful shutdown.
 */
import {
  Forbidden,
  Secretgate,
  SecretNameTaken,
  SecretNotFound,
  Secrets,
  StoreUnavailable,
  Unauthorized
} from "@secretgate/core"
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import { ApiKeys, HttpSecrets, SecretServer } from "@secretgate/http"
import { MemorySecretStore } from "@secretgate/memory"
import { Effect, Layer, Redacted } from "effect"
import * as Http from "node:http"
import * as Net from "node:net"
import { inspect } from "node:util"
import { Agent } from "undici"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const ORG = "acme"
const registry = ApiKeys.makeRegistry()
const manage = registry.issue({ organizationId: ORG, scopes: ["secrets:manage"] }).key
const resolve = registry.issue({ organizationId: ORG, scopes: ["secrets:resolve"] }).key
let server: SecretServer.RunningServer

beforeAll(async () => {
  server = await SecretServer.serve({ backend: MemorySecretStore.layer(), keys: registry })
})
afterAll(() => server.close())

const gateFor = (options: Partial<HttpSecrets.Options> & { readonly organizationId?: string } = {}) =>
  new Secretgate({
    layer: HttpSecrets.layer({ baseUrl: server.url, apiKey: manage, resolveApiKey: resolve, ...options }),
    organizationId: options.organizationId ?? ORG
  })

const rejection = async (promise: Promise<unknown>): Promise<unknown> =>
  promise.then(() => expect.fail("expected a rejection"), (error: unknown) => error)

/** A server on a free port, closed at the end of `use`. */
const withServer = async (
  handler: Http.RequestListener,
  use: (url: string) => Promise<void>
) => {
  const raw = Http.createServer(handler)
  await new Promise<void>((resolve) => raw.listen(0, "127.0.0.1", resolve))
  try {
    await use(`http://127.0.0.1:${(raw.address() as Net.AddressInfo).port}`)
  } finally {
    raw.closeAllConnections()
    await new Promise((resolve) => raw.close(resolve))
  }
}

describe("the facade over HttpSecrets", () => {
  it("creates, reads, updates, deletes and mounts like an in-process backend", async () => {
    await using gate = gateFor()
    const secret = await gate.secret.create({ name: "github", value: "ghp_facade", hosts: ["api.github.com"] })
    expect(secret.createdAt).toBeInstanceOf(Date)
    expect(await gate.secret.get(secret.id)).toEqual(secret)
    const updated = await gate.secret.update(secret.id, { description: "the token" })
    expect(updated.placeholder).toBe(secret.placeholder)
    const mount = await gate.mount({ GITHUB_TOKEN: "github" })
    expect(mount.env).toEqual({ GITHUB_TOKEN: secret.placeholder })
    const resolver = await gate.resolver(mount)
    const values = await resolver.current()
    const value = values.get(secret.placeholder)!.value
    expect(Redacted.isRedacted(value)).toBe(true)
    expect(Redacted.value(value)).toBe("ghp_facade")
    expect(inspect(values, { depth: 5 })).not.toContain("ghp_facade")
    expect(JSON.stringify([...values.values()])).not.toContain("ghp_facade")
    await gate.secret.delete(secret.id)
    expect(await rejection(gate.secret.get(secret.id))).toBeInstanceOf(SecretNotFound)
  })

  it("rejects with the same typed error classes as in process", async () => {
    await using gate = gateFor()
    await gate.secret.create({ name: "dup", value: "v" })
    const taken = await rejection(gate.secret.create({ name: "dup", value: "v" }))
    expect(taken).toBeInstanceOf(SecretNameTaken)
    expect((taken as SecretNameTaken).secretName).toBe("dup")
    expect((taken as SecretNameTaken).name).toBe("SecretNameTaken")
    const missing = await rejection(gate.secret.get("no-such-id"))
    expect(missing).toBeInstanceOf(SecretNotFound)
    expect((missing as SecretNotFound).secretId).toBe("no-such-id")
    const mountMissing = await rejection(gate.mount({ A: "nope", B: "nada" }))
    expect(mountMissing).toBeInstanceOf(SecretNotFound)
    expect((mountMissing as SecretNotFound).names).toEqual(["nope", "nada"])
  })

  it("ids are sent percent-encoded", async () => {
    await using gate = gateFor()
    for (const id of ["a/b", "a b", "../secret", "x?y=1#z", "%2F"]) {
      expect(await rejection(gate.secret.get(id))).toBeInstanceOf(SecretNotFound)
    }
  })

  it("ids that are dot segments, empty or long → SecretNotFound (not StoreUnavailable), for get, update and delete", async () => {
    await using gate = gateFor()
    const kept = await gate.secret.create({ name: "dot_ids_keep", value: "v" })
    const ids = ["..", ".", "", "%2e%2e", ".%2E", "...", "x".repeat(101), "x".repeat(150), "x".repeat(5000), "x".repeat(20000)]
    for (const id of ids) {
      for (const attempt of [gate.secret.get(id), gate.secret.update(id, { description: "d" }), gate.secret.delete(id)]) {
        const error = await rejection(attempt)
        expect(error, JSON.stringify(id.slice(0, 20))).toBeInstanceOf(SecretNotFound)
      }
    }
    expect((await rejection(gate.secret.get(".."))) as SecretNotFound).toMatchObject({ secretId: ".." })
    expect(await gate.secret.list()).toContainEqual(kept)
  })

  it("finds a secret by name among more than a page of similar names", async () => {
    const org = `org-names-${Date.now()}`
    const key = registry.issue({ organizationId: org, scopes: ["secrets:manage"] }).key
    await using gate = gateFor({ organizationId: org, apiKey: key })
    for (let i = 0; i < 230; i++) await gate.secret.create({ name: `atok${String(i).padStart(3, "0")}`, value: "v" })
    const exact = await gate.secret.create({ name: "tok", value: "v" })
    const mount = await gate.mount({ TOKEN: "tok", LAST: "atok229" })
    expect(mount.env.TOKEN).toBe(exact.placeholder)
  })

  it("an organization that is not the key's → Forbidden", async () => {
    await using gate = gateFor({ organizationId: "someone-else" })
    const error = await rejection(gate.secret.list())
    expect(error).toBeInstanceOf(Forbidden)
    expect((error as Forbidden).message).toMatch(/does not belong to organization "someone-else"/)
  })

  it("a key with a trailing newline: refused at construction (fixed key) or Unauthorized (per-organization key), never echoed", async () => {
    const plaintext = Redacted.value(manage)
    await using fixed = gateFor({ apiKey: `${plaintext}\n` })
    const error = await rejection(fixed.secret.list())
    expect(String((error as Error).message)).toMatch(/HttpSecrets: apiKey contains leading or trailing whitespace/)
    expect(inspect(error)).not.toContain(plaintext)
    await using fixedResolve = gateFor({ resolveApiKey: Redacted.make(`${Redacted.value(resolve)}\r\n`) })
    expect(String((await rejection(fixedResolve.secret.list()) as Error).message)).toMatch(/HttpSecrets: resolveApiKey contains/)
    await using perOrg = gateFor({ apiKey: () => `${plaintext}\n` })
    const unauthorized = await rejection(perOrg.secret.list())
    expect(unauthorized).toBeInstanceOf(Unauthorized)
    expect((unauthorized as Unauthorized).message).toMatch(/the API key for organization "acme" contains leading or trailing whitespace/)
    expect(inspect(unauthorized)).not.toContain(plaintext)
  })

  it("a wrong key → Unauthorized; a management key used for resolve → Forbidden", async () => {
    await using wrong = gateFor({ apiKey: "sgk_not_a_real_key_at_all" })
    expect(await rejection(wrong.secret.list())).toBeInstanceOf(Unauthorized)
    await using noResolveKey = gateFor({ resolveApiKey: manage })
    await noResolveKey.secret.create({ name: "needs-resolve", value: "v" })
    const mount = await noResolveKey.mount({ X: "needs-resolve" })
    const resolver = await noResolveKey.resolver(mount)
    await expect(resolver.current()).rejects.toThrow()
    const exit = await noResolveKey.runtime.runPromiseExit(
      Effect.flatMap(Secrets.Secrets, (s) => s.resolve(ORG, [mount.env.X!]))
    )
    expect(exit._tag).toBe("Failure")
    expect(String(exit)).toMatch(/Forbidden/)
  })
})

describe("plain http only to loopback", () => {
  const construct = async (baseUrl: string, extra: Partial<HttpSecrets.Options> = {}) => {
    await using gate = gateFor({ baseUrl, timeout: "2 seconds", ...extra })
    return rejection(gate.secret.list())
  }

  it("http:// to a host that is not loopback fails at construction, naming the risk; the key is never sent", async () => {
    for (const baseUrl of ["http://secrets.example.com", "http://10.0.0.5:8080/api", "http://[2001:db8::1]", "http://localhost.evil.example", "http://128.0.0.1", "HTTP://secrets.example.com"]) {
      const error = await construct(baseUrl)
      expect(error).not.toBeInstanceOf(StoreUnavailable)
      expect(String((error as Error).message)).toMatch(/plain http to a host that is not loopback.*Use https:\/\/, or set allowInsecure: true/)
      expect(inspect(error)).not.toContain(Redacted.value(manage))
    }
  })

  it("loopback hosts, https://, and allowInsecure are accepted", async () => {
    // loopback: a real request is made (the server here answers)
    for (const host of ["127.0.0.1", "localhost", "127.1"]) {
      await using gate = gateFor({ baseUrl: server.url.replace("127.0.0.1", host) })
      expect(await gate.secret.list()).toBeInstanceOf(Array)
    }
    for (const baseUrl of ["http://[::1]:1", "http://127.9.9.9:1", "http://[::ffff:127.0.0.1]:1"]) {
      expect(await construct(baseUrl)).toBeInstanceOf(StoreUnavailable)
    }
    // not loopback, but allowed: the request is attempted (and cannot reach the host)
    const insecure = await construct("http://secretgate-test.invalid", { allowInsecure: true })
    expect(insecure).toBeInstanceOf(StoreUnavailable)
    expect((insecure as StoreUnavailable).message).toMatch(/cannot reach/)
    const tls = await construct("https://secretgate-test.invalid")
    expect(tls).toBeInstanceOf(StoreUnavailable)
  })
})

describe("a server that is unreachable, slow or broken → StoreUnavailable", () => {
  it("nothing listening", async () => {
    const probe = Net.createServer()
    await new Promise<void>((resolve) => probe.listen(0, "127.0.0.1", resolve))
    const port = (probe.address() as Net.AddressInfo).port
    await new Promise((resolve) => probe.close(resolve))
    await using gate = gateFor({ baseUrl: `http://127.0.0.1:${port}` })
    const error = await rejection(gate.secret.list())
    expect(error).toBeInstanceOf(StoreUnavailable)
    expect((error as StoreUnavailable).message).toMatch(new RegExp(`cannot reach the secretgate server at http://127.0.0.1:${port} \\(ECONNREFUSED\\)`))
  })

  it("no answer within the timeout", async () => {
    await withServer(() => {/* never answers */}, async (url) => {
      await using gate = gateFor({ baseUrl: url, timeout: "150 millis" })
      const started = Date.now()
      const error = await rejection(gate.secret.list())
      expect(error).toBeInstanceOf(StoreUnavailable)
      expect((error as StoreUnavailable).message).toMatch(/no answer from the secretgate server at .* within 150ms/)
      expect(Date.now() - started).toBeLessThan(5000)
    })
  })

  it("an answer that is not this API (wrong baseUrl, a proxy's HTML page, garbage JSON)", async () => {
    const answers: Array<[number, string, string]> = [
      [200, "text/html", "<html>hello</html>"],
      [200, "application/json", "{\"unexpected\":true}"],
      [404, "text/plain", "not found"],
      [502, "text/html", "<h1>Bad Gateway</h1>"],
      [200, "application/json", "{not json"]
    ]
    for (const [status, type, body] of answers) {
      await withServer((_, res) => res.writeHead(status, { "content-type": type }).end(body), async (url) => {
        await using gate = gateFor({ baseUrl: url })
        const error = await rejection(gate.secret.list())
        expect(error).toBeInstanceOf(StoreUnavailable)
        expect((error as StoreUnavailable).message).toMatch(/not a secretgate API answer; is baseUrl right\?/)
        expect((error as StoreUnavailable).message).not.toContain(body)
      })
    }
  })

  it("an answer over the size limit → StoreUnavailable \"answer too large\", without reading it all", async () => {
    const padding = " ".repeat(9 * 1024 * 1024)
    // a valid JSON answer ([] padded) over 8 MiB, with a declared length
    await withServer((_, res) => res.writeHead(200, { "content-type": "application/json" }).end(`[${padding}]`), async (url) => {
      await using gate = gateFor({ baseUrl: url })
      const error = await rejection(gate.secret.list())
      expect(error).toBeInstanceOf(StoreUnavailable)
      expect((error as StoreUnavailable).message).toMatch(/sent an answer too large \(over 8388608 bytes\)/)
    })
    // an endless streamed answer without a length: refused once over the limit, not at the timeout
    let sent = 0
    await withServer((_, res) => {
      res.writeHead(200, { "content-type": "application/json" })
      res.write("[")
      const chunk = " ".repeat(64 * 1024)
      const more = () => {
        while (!res.destroyed && sent < 64 * 1024 * 1024) {
          sent += chunk.length
          if (!res.write(chunk)) return void res.once("drain", more)
        }
      }
      more()
    }, async (url) => {
      await using gate = gateFor({ baseUrl: url, timeout: "20 seconds", maxResponseBytes: 1024 * 1024 })
      const error = await rejection(gate.secret.list())
      expect(error).toBeInstanceOf(StoreUnavailable)
      expect((error as StoreUnavailable).message).toMatch(/answer too large \(over 1048576 bytes\)/)
      expect(sent).toBeLessThan(32 * 1024 * 1024)
    })
  })

  it("maxResponseBytes applies to management answers; resolve answers may hold their whole batch", async () => {
    const org = `org-answer-size-${Date.now()}`
    const key = registry.issue({ organizationId: org, scopes: ["secrets:manage"] }).key
    const resolveKey = registry.issue({ organizationId: org, scopes: ["secrets:resolve"] }).key
    await using gate = gateFor({ organizationId: org, apiKey: key, resolveApiKey: resolveKey, maxResponseBytes: 4096 })
    const names: Record<string, string> = {}
    for (let i = 0; i < 30; i++) {
      await gate.secret.create({ name: `big_${i}`, value: "v".repeat(3000) })
      names[`BIG_${i}`] = `big_${i}`
    }
    const error = await rejection(gate.secret.list())
    expect(error).toBeInstanceOf(StoreUnavailable)
    expect((error as StoreUnavailable).message).toMatch(/answer too large \(over 4096 bytes\)/)
    // the client still works after refusing an answer
    expect((await gate.secret.get((await gate.secret.create({ name: "small", value: "v" })).id)).name).toBe("small")
    const mount = await gate.mount(names) // pages of 200 names: under 4096 bytes each when filtered
    const values = await (await gate.resolver(mount)).current()
    expect(values.size).toBe(30)
    expect(HttpSecrets.DEFAULT_MAX_RESPONSE_BYTES).toBe(8 * 1024 * 1024)
  })

  it("a backend failure on the server comes back typed (503) or as a generic 500", async () => {
    const broken = (failure: Effect.Effect<never>) =>
      Layer.effect(
        Secrets.Secrets,
        Effect.map(Secrets.Secrets, (inner) => ({ ...inner, list: () => failure }))
      ).pipe(Layer.provide(MemorySecretStore.layer()))
    const unavailable = await SecretServer.serve({
      backend: broken(Effect.fail(new StoreUnavailable({ message: "disk is gone" })) as never),
      keys: registry
    })
    const dying = await SecretServer.serve({ backend: broken(Effect.die(new Error("boom at /secret/path.ts:12"))), keys: registry })
    try {
      await using a = gateFor({ baseUrl: unavailable.url })
      const error = await rejection(a.secret.list())
      expect(error).toBeInstanceOf(StoreUnavailable)
      expect((error as StoreUnavailable).message).toBe("disk is gone")
      const raw = await fetch(`${dying.url}/secret`, { headers: { authorization: `Bearer ${Redacted.value(manage)}` } })
      expect(raw.status).toBe(500)
      const body = await raw.text()
      expect(JSON.parse(body)).toEqual({
        statusCode: 500,
        message: "internal server error",
        error: "Internal Server Error",
        code: "InternalServerError"
      })
      await using b = gateFor({ baseUrl: dying.url })
      const failed = await rejection(b.secret.list())
      expect(failed).toBeInstanceOf(StoreUnavailable)
      expect((failed as StoreUnavailable).message).toMatch(/failed: internal server error/)
    } finally {
      await unavailable.close()
      await dying.close()
    }
  })
})

describe("the lean caller", () => {
  it("sends, for every operation, exactly the bytes of an undici request (method, path, header order, body)", async () => {
    const seen: Array<string> = []
    const raw = Net.createServer((socket) => {
      let buffer = ""
      socket.on("data", (data) => {
        buffer += data.toString("latin1")
        const end = buffer.indexOf("\r\n\r\n")
        if (end < 0) return
        const length = Number(/content-length: (\d+)/i.exec(buffer)?.[1] ?? 0)
        if (buffer.length < end + 4 + length) return
        seen.push(buffer)
        buffer = ""
        socket.write("HTTP/1.1 500 Internal Server Error\r\ncontent-length: 2\r\n\r\nno")
      })
    })
    await new Promise<void>((resolve) => raw.listen(0, "127.0.0.1", resolve))
    const host = `127.0.0.1:${(raw.address() as Net.AddressInfo).port}`
    try {
      const gate = new Secretgate({
        layer: HttpSecrets.layer({ baseUrl: `http://${host}/api`, apiKey: "k".repeat(40), resolveApiKey: "r".repeat(40), watch: false }),
        organizationId: ORG
      })
      await gate.secret.get("a b/c").catch(() => {})
      await gate.secret.create({ name: "n", value: "v", hosts: ["x.com"] }).catch(() => {})
      await gate.secret.update("id1", { description: null }).catch(() => {})
      await gate.secret.delete("id1").catch(() => {})
      await gate.secret.list().catch(() => {})
      await gate.secret.listPaginated({ limit: 5, name: "a&b" }).catch(() => {})
      await gate.runtime.runPromise(Effect.flatMap(Secrets.Secrets, (s) => s.resolve(ORG, ["sg_a", "sg_b"]))).catch(() => {})
      await gate.dispose()
      const head = (request: string, key = "k") =>
        `${request} HTTP/1.1\r\nhost: ${host}\r\nconnection: keep-alive\r\nauthorization: Bearer ${key.repeat(40)}\r\n` +
        `x-daytona-organization-id: ${ORG}\r\n`
      const json = (body: string) => `content-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`
      expect(seen).toEqual([
        `${head("GET /api/secret/a%20b%2Fc")}\r\n`,
        `${head("POST /api/secret")}${json(`{"name":"n","value":"v","hosts":["x.com"]}`)}`,
        `${head("PATCH /api/secret/id1")}${json(`{"description":null}`)}`,
        `${head("DELETE /api/secret/id1")}\r\n`,
        `${head("GET /api/secret")}\r\n`,
        `${head("GET /api/secret/paginated?limit=5&name=a%26b")}\r\n`,
        `${head("POST /api/secret/resolve", "r")}${json(`{"placeholders":["sg_a","sg_b"]}`)}`
      ])
    } finally {
      await new Promise((resolve) => raw.close(resolve))
    }
  })

  it("closing the service ends the requests still in flight (with a dispatcher of the caller's own)", async () => {
    let arrived!: () => void
    const requestArrived = new Promise<void>((resolve) => arrived = resolve)
    let closed!: () => void
    const socketClosed = new Promise<void>((resolve) => closed = resolve)
    await withServer((request) => {
      request.socket.once("close", () => closed())
      arrived()
    }, async (url) => {
      const agent = new Agent()
      try {
        const gate = new Secretgate({
          layer: HttpSecrets.layerWithoutClient({ baseUrl: url, apiKey: manage, watch: false, timeout: "10 minutes" }).pipe(
            Layer.provide(Layer.succeed(NodeHttpClient.Dispatcher, agent))
          ),
          organizationId: ORG
        })
        const pending = rejection(gate.secret.list())
        await requestArrived
        await gate.dispose()
        const error = await pending
        expect(error).toBeInstanceOf(StoreUnavailable)
        expect((error as StoreUnavailable).message).toMatch(/the client was closed/)
        await socketClosed
      } finally {
        await agent.destroy()
      }
    })
  })
})

describe("graceful shutdown", () => {
  it("finishes the requests in flight, then stops accepting connections", async () => {
    let release!: () => void
    const gate = new Promise<void>((resolve) => (release = resolve))
    let entered!: () => void
    const inFlight = new Promise<void>((resolve) => (entered = resolve))
    const slow = Layer.effect(
      Secrets.Secrets,
      Effect.map(Secrets.Secrets, (inner) => ({
        ...inner,
        list: (organizationId: string) =>
          Effect.zipRight(
            Effect.promise(() => {
              entered()
              return gate
            }),
            inner.list(organizationId)
          )
      }))
    ).pipe(Layer.provide(MemorySecretStore.layer()))
    const draining = await SecretServer.serve({ backend: slow, keys: registry })
    const pending = fetch(`${draining.url}/secret`, { headers: { authorization: `Bearer ${Redacted.value(manage)}` } })
    await inFlight
    let closed = false
    const closing = draining.close().then(() => (closed = true))
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(closed).toBe(false)
    await expect(fetch(`${draining.url}/secret`)).rejects.toThrow()
    release()
    const response = await pending
    expect(response.status).toBe(200)
    expect(await response.json()).toEqual([])
    await closing
    expect(closed).toBe(true)
  })

  it("cuts the connections still busy after shutdownTimeout", async () => {
    const stuck = Layer.effect(
      Secrets.Secrets,
      Effect.map(Secrets.Secrets, (inner) => ({ ...inner, list: () => Effect.never }))
    ).pipe(Layer.provide(MemorySecretStore.layer()))
    const draining = await SecretServer.serve({ backend: stuck, keys: registry, shutdownTimeout: "200 millis" })
    const pending = fetch(`${draining.url}/secret`, { headers: { authorization: `Bearer ${Redacted.value(manage)}` } })
    await new Promise((resolve) => setTimeout(resolve, 50))
    const started = Date.now()
    await draining.close()
    expect(Date.now() - started).toBeLessThan(3000)
    await expect(pending).rejects.toThrow()
  })
})

describe("layerWithoutClient", () => {
  it("sends every request through the undici Dispatcher in context", async () => {
    const seen: Array<string> = []
    const dispatcher = new Agent().compose((dispatch) => (options, handler) => {
      seen.push(`${options.method} ${options.path}`)
      return dispatch(options, handler)
    })
    const gate = new Secretgate({
      layer: HttpSecrets.layerWithoutClient({ baseUrl: server.url, apiKey: manage, watch: false }).pipe(
        Layer.provide(Layer.succeed(NodeHttpClient.Dispatcher, dispatcher))
      ),
      organizationId: ORG
    })
    try {
      const created = await gate.secret.create({ name: "dispatched", value: "v" })
      await gate.secret.get(created.id)
      expect(seen).toEqual(["POST /secret", `GET /secret/${created.id}`])
    } finally {
      await gate.dispose()
      await dispatcher.close()
    }
  })
})
