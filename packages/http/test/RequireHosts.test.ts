/**
 * A server whose backend refuses secrets without hosts (`Secrets.withRequiredHosts`, what
 * `secretgate serve --require-hosts` wires): over real HTTP, `POST /secret` without hosts or with
 * none, and `PATCH` to none, answer 400 naming `hosts`; nothing is stored.
 */
import { Secrets } from "@secretgate/core"
import { ApiKeys, SecretServer } from "@secretgate/http"
import { MemorySecretStore } from "@secretgate/memory"
import { Redacted } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const registry = ApiKeys.makeRegistry()
const key = Redacted.value(registry.issue({ organizationId: "acme", scopes: ["secrets:manage"] }).key)
let server: SecretServer.RunningServer
beforeAll(async () => {
  server = await SecretServer.serve({ backend: Secrets.withRequiredHosts(MemorySecretStore.layer()), keys: registry })
})
afterAll(() => server.close())

const call = async (method: string, path: string, body?: unknown) => {
  const response = await fetch(`${server.url.replace(/\/$/, "")}${path}`, {
    method,
    headers: { authorization: `Bearer ${key}`, ...(body === undefined ? {} : { "content-type": "application/json" }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) })
  })
  return { status: response.status, body: await response.json() as Record<string, unknown> }
}

describe("a server that requires hosts", () => {
  it("answers 400 naming hosts for a secret without hosts, created or updated; stores nothing of it", async () => {
    for (const body of [{ name: "open", value: "v" }, { name: "open", value: "v", hosts: [] }]) {
      const refused = await call("POST", "/secret", body)
      expect(refused.status).toBe(400)
      expect(refused.body).toMatchObject({ statusCode: 400, field: "hosts" })
      expect(String(refused.body.message)).toMatch(/requires every secret to name the hosts/)
    }
    const created = await call("POST", "/secret", { name: "closed", value: "v", hosts: ["api.example.com"] })
    expect(created.status).toBe(201)
    const emptied = await call("PATCH", `/secret/${String(created.body.id)}`, { hosts: [] })
    expect(emptied.status).toBe(400)
    expect(emptied.body).toMatchObject({ field: "hosts" })
    const listed = await call("GET", "/secret")
    expect(JSON.stringify(listed.body)).not.toContain("\"open\"")
    expect(JSON.stringify(listed.body)).toContain("api.example.com")
  })
})
