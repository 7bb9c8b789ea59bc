/**
 * The server's management audit trail (`auditLog`): a real server on 127.0.0.1 writing a real
 * file. Every mutation attempt through the API (done, not found, conflicting, invalid, refused)
 * becomes exactly one JSON line naming the key, the organization, the secret and the fields
 * written; reads add nothing; no form of a value ever reaches the file, which is created 0600.
 */
import { ApiKeys, SecretServer } from "@secretgate/http"
import { MemorySecretStore } from "@secretgate/memory"
import { Redacted } from "effect"
import { Buffer } from "node:buffer"
import { chmodSync, linkSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Agent, request } from "undici"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

// quotes, a backslash and non-ASCII, so that its JSON-escaped form differs from the raw one
const VALUE = "sk-audit-\"Zq9\\xV2\"-ünï-never-in-the-log"
const VALUE_2 = "sk-audit-second-Qm3\"\\-never-in-the-log"
const FORMS = (value: string) => [
  value,
  JSON.stringify(value).slice(1, -1),
  Buffer.from(value).toString("base64"),
  Buffer.from(value).toString("base64url"),
  Buffer.from(value).toString("hex"),
  encodeURIComponent(value)
]

const dir = mkdtempSync(join(tmpdir(), "secretgate-audit-"))
const file = join(dir, "audit.jsonl")
const registry = ApiKeys.makeRegistry()
const manage = registry.issue({ organizationId: "acme", scopes: ["secrets:manage"], id: "ops-key" })
const resolve = registry.issue({ organizationId: "acme", scopes: ["secrets:resolve"], id: "egress-key" })
const dispatcher = new Agent({ keepAliveTimeout: 1000 })
let server: SecretServer.RunningServer

const call = async (method: string, path: string, options: { key?: string | null; body?: unknown; raw?: string } = {}) => {
  const headers: Record<string, string> = {}
  const key = options.key === undefined ? Redacted.value(manage.key) : options.key
  if (key !== null) headers.authorization = `Bearer ${key}`
  const body = options.raw ?? (options.body === undefined ? null : JSON.stringify(options.body))
  if (body !== null) headers["content-type"] = "application/json"
  const response = await request(`${server.url}${path}`, { method: method as "GET", headers, body, dispatcher })
  const text = await response.body.text()
  return { status: response.statusCode, json: text === "" ? undefined : JSON.parse(text) }
}

const lines = () =>
  readFileSync(file, "utf8").split("\n").filter((line) => line !== "").map((line) => JSON.parse(line) as Record<string, unknown>)

beforeAll(async () => {
  server = await SecretServer.serve({ backend: MemorySecretStore.layer(), keys: registry, auditLog: file })
})
afterAll(async () => {
  await server.close()
  await dispatcher.close()
  rmSync(dir, { recursive: true, force: true })
})

describe("SecretServer auditLog", () => {
  it("writes one line per mutation attempt, with its outcome, and none for reads", async () => {
    const expected: Array<Record<string, unknown>> = []
    const expect1 = async (answer: Promise<{ status: number; json: any }>, status: number, line: Record<string, unknown>) => {
      const before = lines().length
      const { status: got, json } = await answer
      expect(got).toBe(status)
      // the line is written before the answer is sent
      const after = lines()
      expect(after.length).toBe(before + 1)
      expected.push(line)
      return { json, line: after[after.length - 1]! }
    }
    const org = { organizationId: "acme", actor: "ops-key" }

    const { json: created, line: createdLine } = await expect1(
      call("POST", "/secret", { body: { name: "STRIPE_KEY", value: VALUE, hosts: ["api.stripe.com"] } }),
      201,
      { ...org, action: "create", outcome: "ok", secretName: "STRIPE_KEY", fields: ["name", "value", "hosts"], error: null }
    )
    expect(createdLine.secretId).toBe(created.id)
    await expect1(call("POST", "/secret", { body: { name: "STRIPE_KEY", value: VALUE } }), 409, {
      ...org, action: "create", outcome: "conflict", secretId: null, secretName: "STRIPE_KEY", fields: ["name", "value"], error: "SecretNameTaken"
    })
    await expect1(call("POST", "/secret", { raw: `{"name":"X","value":"${VALUE.replace(/[\\"]/g, "\\$&")}"` }), 400, {
      ...org, action: "create", outcome: "invalid", secretId: null, secretName: null, fields: [], error: "InvalidSecretInput"
    })

    // reads: no line
    const before = lines().length
    expect((await call("GET", "/secret")).status).toBe(200)
    expect((await call("GET", `/secret/${created.id}`)).status).toBe(200)
    expect((await call("GET", "/secret/paginated?limit=5")).status).toBe(200)
    expect(lines().length).toBe(before)

    await expect1(call("PATCH", `/secret/${created.id}`, { body: { value: VALUE_2, hosts: ["api.stripe.com", "*.stripe.com"] } }), 200, {
      ...org, action: "update", outcome: "ok", secretId: created.id, secretName: "STRIPE_KEY", fields: ["value", "hosts"], error: null
    })
    await expect1(call("PATCH", `/secret/${created.id}`, { body: { hosts: "not-a-list" } }), 400, {
      ...org, action: "update", outcome: "invalid", secretId: created.id, secretName: null, fields: [], error: "InvalidSecretInput"
    })
    await expect1(call("PATCH", "/secret/no-such-id", { body: { description: "x" } }), 404, {
      ...org, action: "update", outcome: "not-found", secretId: "no-such-id", secretName: null, fields: ["description"], error: "SecretNotFound"
    })
    // refused keys: a resolve key (known, denied) and no key at all
    await expect1(call("POST", "/secret", { key: Redacted.value(resolve.key), body: { name: "SNEAKY", value: VALUE } }), 403, {
      organizationId: "acme", actor: "egress-key", action: "create", outcome: "denied", secretId: null, secretName: null, fields: [], error: "Forbidden"
    })
    // keyless: no secret id from the path (the caller chose it); the first of the second gets a line
    await expect1(call("DELETE", `/secret/${created.id}`, { key: null }), 401, {
      organizationId: null, actor: null, action: "delete", outcome: "unauthenticated", secretId: null, secretName: null, fields: [], error: "Unauthorized", attempts: 1
    })
    await expect1(call("DELETE", `/secret/${created.id}`), 204, {
      ...org, action: "delete", outcome: "ok", secretId: created.id, secretName: "STRIPE_KEY", fields: [], error: null
    })
    await expect1(call("DELETE", `/secret/${created.id}`), 404, {
      ...org, action: "delete", outcome: "not-found", secretId: created.id, secretName: null, fields: [], error: "SecretNotFound"
    })

    const written = lines()
    expect(written).toHaveLength(expected.length)
    for (const [index, line] of written.entries()) {
      expect(line).toMatchObject(expected[index]!)
      const keys = ["action", "actor", "error", "fields", "organizationId", "outcome", "secretId", "secretName", "time"]
      expect(Object.keys(line).sort()).toEqual(line.outcome === "unauthenticated" ? [...keys, "attempts"].sort() : keys)
      expect(Date.parse(line.time as string)).not.toBeNaN()
    }
  })

  it("never holds a value in any form, and the file is 0600", () => {
    const text = readFileSync(file, "utf8")
    for (const form of [...FORMS(VALUE), ...FORMS(VALUE_2)]) expect(text).not.toContain(form)
    expect(text).not.toContain("sk-audit")
    expect(statSync(file).mode & 0o777).toBe(0o600)
  })

  it("tightens an existing file to 0600 and appends to it", async () => {
    const existing = join(dir, "existing.jsonl")
    writeFileSync(existing, "{\"earlier\":true}\n")
    chmodSync(existing, 0o644)
    const other = await SecretServer.serve({ backend: MemorySecretStore.layer(), keys: registry, auditLog: existing })
    try {
      const response = await request(`${other.url}/secret`, {
        method: "POST",
        headers: { authorization: `Bearer ${Redacted.value(manage.key)}`, "content-type": "application/json" },
        body: JSON.stringify({ name: "A", value: VALUE }),
        dispatcher
      })
      await response.body.text()
      expect(response.statusCode).toBe(201)
    } finally {
      await other.close()
    }
    expect(statSync(existing).mode & 0o777).toBe(0o600)
    const written = readFileSync(existing, "utf8").trim().split("\n")
    expect(written[0]).toBe("{\"earlier\":true}")
    expect(JSON.parse(written[1]!)).toMatchObject({ action: "create", outcome: "ok", secretName: "A" })
  })

  it("refuses to start when the file cannot be opened, naming it", async () => {
    await expect(SecretServer.serve({ backend: MemorySecretStore.layer(), keys: registry, auditLog: join(dir, "missing", "audit.jsonl") }))
      .rejects.toThrow(/the audit log .*missing.* cannot be opened/)
  })

  // the opener is core's PrivateFile.openAppend (its own tests cover FIFOs, owners, hard links)
  it("refuses a symbolic link or a hard-linked file at the path, leaving the target untouched", async () => {
    const target = join(dir, "someone-elses.txt")
    writeFileSync(target, "theirs\n")
    chmodSync(target, 0o644)
    const link = join(dir, "link.jsonl")
    symlinkSync(target, link)
    await expect(SecretServer.serve({ backend: MemorySecretStore.layer(), keys: registry, auditLog: link }))
      .rejects.toThrow(/the audit log .*link\.jsonl is a symbolic link/)
    const hard = join(dir, "hard.jsonl")
    linkSync(target, hard)
    await expect(SecretServer.serve({ backend: MemorySecretStore.layer(), keys: registry, auditLog: hard }))
      .rejects.toThrow(/the audit log .*hard\.jsonl has 2 links/)
    expect(readFileSync(target, "utf8")).toBe("theirs\n")
    expect(statSync(target).mode & 0o777).toBe(0o644)
  })

  it("folds keyless attempts: no caller-chosen text, at most one line a second, every attempt counted", async () => {
    const keyless = join(dir, "keyless.jsonl")
    const other = await SecretServer.serve({ backend: MemorySecretStore.layer(), keys: registry, auditLog: keyless })
    const MARK = "caller-chosen-Xq7"
    const COUNT = 30
    const started = Date.now()
    try {
      const answers = await Promise.all(Array.from({ length: COUNT }, async (_, index) => {
        const method = (["DELETE", "PATCH", "POST"] as const)[index % 3]!
        const path = method === "POST" ? "/secret" : `/secret/${MARK}-${index}`
        const headers: Record<string, string> = { "content-type": "application/json" }
        if (index % 2 === 1) headers.authorization = `Bearer sgk_${"b".repeat(40)}`
        const body = method === "DELETE" ? null : JSON.stringify({ name: `${MARK}-name`, value: VALUE })
        const response = await request(`${other.url}${path}`, { method, headers, body, dispatcher })
        await response.body.text()
        return response.statusCode
      }))
      expect(answers).toEqual(Array(COUNT).fill(401))
    } finally {
      await other.close()
    }
    const elapsedSeconds = (Date.now() - started) / 1000
    const text = readFileSync(keyless, "utf8")
    expect(text).not.toContain(MARK)
    for (const form of FORMS(VALUE)) expect(text).not.toContain(form)
    const written = text.split("\n").filter((line) => line !== "").map((line) => JSON.parse(line) as Record<string, unknown>)
    // the folded ones are written by the time the server has closed
    expect(written.reduce((sum, line) => sum + (line.attempts as number), 0)).toBe(COUNT)
    // one line when the first came, then at most one a second (the last one at closing)
    expect(written.length).toBeLessThanOrEqual(Math.floor(elapsedSeconds) + 2)
    for (const line of written) {
      expect(line).toMatchObject({
        organizationId: null, actor: null, outcome: "unauthenticated", secretId: null, secretName: null, fields: [], error: "Unauthorized"
      })
      expect(["create", "update", "delete"]).toContain(line.action)
    }
  })
})
