/**
 * The egress interceptor (`@secretgate/undici`) running on `HttpSecrets`: a sandbox host with no
 * secrets of its own, resolving values from a remote secretgate server over the resolve route.
 */
import { Secretgate } from "@secretgate/core"
import { ApiKeys, HttpSecrets, SecretServer } from "@secretgate/http"
import { MemorySecretStore } from "@secretgate/memory"
import { type AuditEvent, SecretgateAgent } from "@secretgate/undici"
import { Effect, Option } from "effect"
import * as Http from "node:http"
import type * as Net from "node:net"
import { request } from "undici"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const ORG = "egress-org"
const TTL_MS = 200

let server: SecretServer.RunningServer
let gate: Secretgate
let upstream: Http.Server
let upstreamUrl: string
const received: Array<string | undefined> = []
let resolveCalls = 0

beforeAll(async () => {
  const registry = ApiKeys.makeRegistry()
  const manage = registry.issue({ organizationId: ORG, scopes: ["secrets:manage"] }).key
  const resolve = registry.issue({ organizationId: ORG, scopes: ["secrets:resolve"] }).key
  // counts the requests made with a resolve key, i.e. round trips of the egress resolver
  const counting: ApiKeys.ApiKeys = {
    authenticate: (token) =>
      Effect.tap(registry.authenticate(token), (key) => {
        if (Option.isSome(key) && key.value.scopes.includes("secrets:resolve")) resolveCalls++
      })
  }
  server = await SecretServer.serve({ backend: MemorySecretStore.layer(), keys: counting })
  gate = new Secretgate({
    layer: HttpSecrets.layer({ baseUrl: server.url, apiKey: manage, resolveApiKey: resolve }),
    organizationId: ORG
  })
  // an upstream API that records the Authorization header and echoes it back
  upstream = Http.createServer((req, res) => {
    received.push(req.headers.authorization)
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ youSent: req.headers.authorization }))
  })
  await new Promise<void>((resolve) => upstream.listen(0, "127.0.0.1", resolve))
  upstreamUrl = `http://127.0.0.1:${(upstream.address() as Net.AddressInfo).port}/v1/user`
})

afterAll(async () => {
  await gate.dispose()
  await server.close()
  upstream.closeAllConnections()
  await new Promise((resolve) => upstream.close(resolve))
})

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

describe("egress over HttpSecrets", () => {
  it("substitutes a mounted secret's value, scrubs the echo, and picks up a changed value within the TTL", async () => {
    const secret = await gate.secret.create({ name: "upstream_token", value: "tok-one-111" })
    const mount = await gate.mount({ TOKEN: "upstream_token" })
    const resolver = await gate.resolver(mount, { ttl: `${TTL_MS} millis` })
    const events: Array<AuditEvent.AuditEvent> = []
    // (an IP-literal destination matches only secrets without hosts, which must be allowed outright)
    const agent = new SecretgateAgent({ resolver, allowHttp: ["127.0.0.1"], unrestricted: "allow", audit: (event) => events.push(event) })
    try {
      const send = async () => {
        const response = await request(upstreamUrl, {
          headers: { authorization: `Bearer ${mount.env.TOKEN}` },
          dispatcher: agent
        })
        return { status: response.statusCode, body: await response.body.text() }
      }

      const first = await send()
      expect(first.status).toBe(200)
      expect(received.at(-1)).toBe("Bearer tok-one-111")
      // the echo reaches the sandbox with the placeholder, not the value
      expect(first.body).toContain(mount.env.TOKEN!)
      expect(first.body).not.toContain("tok-one-111")
      expect(events).toContainEqual(expect.objectContaining({ type: "substituted", secret: "upstream_token", host: "127.0.0.1", surface: "header" }))

      await gate.secret.update(secret.id, { value: "tok-two-222" })
      await sleep(TTL_MS + 50)
      const second = await send()
      expect(received.at(-1)).toBe("Bearer tok-two-222")
      expect(second.body).not.toContain("tok-two-222")

      await gate.secret.delete(secret.id)
      await sleep(TTL_MS + 50)
      await send()
      expect(received.at(-1)).toBe(`Bearer ${mount.env.TOKEN}`)
      expect(events.at(-1)).toMatchObject({ type: "withheld", secret: "upstream_token" })
      expect(JSON.stringify(events)).not.toMatch(/tok-(one|two)/)
    } finally {
      await agent.close()
    }
  })

  it("within the TTL, requests share one resolution instead of a round trip each", async () => {
    await gate.secret.create({ name: "shared_token", value: "tok-shared" })
    const mount = await gate.mount({ TOKEN: "shared_token" })
    const agent = new SecretgateAgent({ resolver: await gate.resolver(mount, { ttl: "10 seconds" }), allowHttp: ["127.0.0.1"], unrestricted: "allow" })
    const before = resolveCalls
    try {
      for (let i = 0; i < 20; i++) {
        await (await request(upstreamUrl, { headers: { authorization: `Bearer ${mount.env.TOKEN}` }, dispatcher: agent })).body.text()
        expect(received.at(-1)).toBe("Bearer tok-shared")
      }
    } finally {
      await agent.close()
    }
    expect(resolveCalls - before).toBe(1)
  })

  it("a secret not allowed for the destination is forwarded as its placeholder", async () => {
    await gate.secret.create({ name: "elsewhere", value: "tok-elsewhere", hosts: ["api.example.com"] })
    const mount = await gate.mount({ OTHER: "elsewhere" })
    const events: Array<AuditEvent.AuditEvent> = []
    const agent = new SecretgateAgent({
      resolver: await gate.resolver(mount, { ttl: `${TTL_MS} millis` }),
      allowHttp: ["127.0.0.1"],
      audit: (event) => events.push(event)
    })
    try {
      await (await request(upstreamUrl, { headers: { authorization: `Bearer ${mount.env.OTHER}` }, dispatcher: agent })).body.text()
      expect(received.at(-1)).toBe(`Bearer ${mount.env.OTHER}`)
      expect(events).toContainEqual(expect.objectContaining({ type: "withheld", secret: "elsewhere", reason: "host-not-allowed" }))
    } finally {
      await agent.close()
    }
  })
})
