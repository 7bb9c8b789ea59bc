/**
 * The wire format, checked with raw HTTP requests, never through the derived client: the shared
 * Daytona wire suite (`@secretgate/http/testing`, also run against a `secretgate serve` child
 * process by the CLI's tests) against in-process servers, plus what only an in-process server can
 * show: keys issued and revoked at run time, key validation, keys configured by hash, a small
 * body limit.
 */
import { ApiKeys, SecretServer } from "@secretgate/http"
import { expectError, send, WIRE_KEYS, wireSuite } from "@secretgate/http/testing"
import { MemorySecretStore } from "@secretgate/memory"
import { Effect, Layer, Redacted } from "effect"
import { Readable } from "node:stream"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const VALUE = "sk-wire-Zq9xV2bN7-never-on-the-wire"
const ORG_A = "org-a"

/** A registry with one key per entry of WIRE_KEYS, and the plaintext of each. */
const wireKeys = () => {
  const registry = ApiKeys.makeRegistry()
  const plaintext = new Map<string, string>()
  for (const { organizationId, scope } of WIRE_KEYS) {
    plaintext.set(`${organizationId} ${scope}`, Redacted.value(registry.issue({ organizationId, scopes: [scope] }).key))
  }
  return {
    registry,
    key: (organizationId: string, scope: ApiKeys.Scope) => {
      const key = plaintext.get(`${organizationId} ${scope}`)
      if (key === undefined) throw new Error(`the wire suite asked for a key it does not declare: ${organizationId} ${scope}`)
      return key
    }
  }
}

const servers: Array<SecretServer.RunningServer> = []
const start = async (options: Omit<SecretServer.ServeOptions<never>, "backend" | "keys"> = {}) => {
  const keys = wireKeys()
  const server = await SecretServer.serve({ ...options, backend: MemorySecretStore.layer(), keys: keys.registry })
  servers.push(server)
  return { url: server.url, key: keys.key, registry: keys.registry }
}
afterAll(async () => {
  for (const server of servers) await server.close()
})

wireSuite("in process", () => start())
wireSuite("in process, base path /api/v1", () => start({ basePath: "/api/v1" }))
wireSuite("in process, a 4 KiB body limit", async () => ({ ...(await start({ maxBodyBytes: 4096 })), maxBodyBytes: 4096 }))

describe("keys at run time", () => {
  let target: Awaited<ReturnType<typeof start>>
  beforeAll(async () => {
    target = await start()
  })

  it("a revoked key → 401", async () => {
    const { apiKey, key: revoked } = target.registry.issue({ organizationId: ORG_A, scopes: ["secrets:manage"] })
    expect((await send(`${target.url}/secret`, "GET", { key: Redacted.value(revoked) })).status).toBe(200)
    target.registry.revoke(apiKey.id)
    expectError(await send(`${target.url}/secret`, "GET", { key: Redacted.value(revoked) }), 401, "Unauthorized", /unknown or revoked/)
  })

  it("a key cannot hold both scopes, and weak or malformed keys are refused", () => {
    expect(() => target.registry.issue({ organizationId: ORG_A, scopes: ["secrets:manage", "secrets:resolve"] })).toThrow(/both/)
    expect(() => ApiKeys.makeRegistry([{ key: "short", organizationId: ORG_A, scopes: ["secrets:manage"] }])).toThrow(/at least 16/)
    expect(() => ApiKeys.makeRegistry([{ hash: "md5:x", organizationId: ORG_A, scopes: ["secrets:manage"] }])).toThrow(/sha256/)
    expect(() => ApiKeys.makeRegistry([{ key: "k".repeat(20), organizationId: "", scopes: ["secrets:manage"] }])).toThrow(/organization/)
  })

  it("a key with whitespace, control or non-ASCII characters is refused with a TypeError that names the entry, never the key", async () => {
    const secret = "sgk_abcdefghijklmnopqrstuvwxyz234567abcdef"
    const bad = [`${secret}\n`, `${secret}\r\n`, ` ${secret}`, `${secret}\t`, `sgk_abc def${secret}`, `${secret}\u0000`, `${secret}\u007f`, `${secret}é`, `${secret}\u00a0`]
    for (const k of bad) {
      const thrown = (() => {
        try {
          ApiKeys.makeRegistry([
            { key: ApiKeys.generate(), organizationId: ORG_A, scopes: ["secrets:manage"] },
            { key: Redacted.make(k), organizationId: ORG_A, scopes: ["secrets:manage"] }
          ])
        } catch (error) {
          return error as Error
        }
        return expect.fail("expected a TypeError")
      })()
      expect(thrown).toBeInstanceOf(TypeError)
      expect(thrown.message).toMatch(/API key at position 1 /)
      expect(thrown.message).not.toContain("sgk_")
      expect(thrown.message).not.toContain(secret.slice(4, 12))
    }
    const registryWithIds = ApiKeys.makeRegistry()
    expect(() => registryWithIds.add({ id: "from-file", key: `${secret}\n`, organizationId: ORG_A, scopes: ["secrets:manage"] }))
      .toThrow(/^API key "from-file" contains leading or trailing whitespace/)
    expect(() => registryWithIds.add({ key: `${secret}\n`, organizationId: ORG_A, scopes: ["secrets:manage"] })).toThrow(TypeError)
    expect(() => ApiKeys.layer([{ key: `${secret}\n`, organizationId: ORG_A, scopes: ["secrets:manage"] }]).pipe(Layer.launch, Effect.runSync))
      .toThrow(/API key at position 0 of the configured keys \(counting from 0\) contains/)
    await expect(SecretServer.serve({ backend: MemorySecretStore.layer(), keys: [{ key: `${secret}\n`, organizationId: ORG_A, scopes: ["secrets:manage"] }] }))
      .rejects.toThrow(/API key at position 0 of the configured keys \(counting from 0\) contains/)
    // the same key without the newline is fine and authenticates
    registryWithIds.add({ id: "from-file", key: secret, organizationId: ORG_A, scopes: ["secrets:manage"] })
    expect(await Effect.runPromise(registryWithIds.authenticate(Redacted.make(secret)))).toMatchObject({ _tag: "Some" })
  })

  it("keys configured by hash work like keys configured in plaintext", async () => {
    const plaintext = ApiKeys.generate()
    const byHash = ApiKeys.makeRegistry([{ hash: ApiKeys.hash(plaintext), organizationId: ORG_A, scopes: ["secrets:manage"] }])
    const other = await SecretServer.serve({ backend: MemorySecretStore.layer(), keys: byHash })
    try {
      expect((await send(`${other.url}/secret`, "GET", { key: Redacted.value(plaintext) })).status).toBe(200)
      expect((await send(`${other.url}/secret`, "GET", { key: ApiKeys.hash(plaintext) })).status).toBe(401)
    } finally {
      await other.close()
    }
  })
})

describe("a small body limit", () => {
  let target: Awaited<ReturnType<typeof start>>
  beforeAll(async () => {
    target = await start({ maxBodyBytes: 4096 })
  })

  it("a body just under the limit is accepted; a streamed one over it is not", async () => {
    const manage = target.key(ORG_A, "secrets:manage")
    expect((await send(`${target.url}/secret`, "POST", { key: manage, body: { name: "fits", value: "x".repeat(3500) } })).status).toBe(201)
    const chunks = Array.from({ length: 10 }, () => Buffer.from("x".repeat(1000)))
    const answer = await send(`${target.url}/secret/whatever`, "PATCH", { key: manage, raw: Readable.from(chunks) })
    expectError(answer, 413, "Payload Too Large")
    expect(answer.text).not.toContain(VALUE)
  })
})
