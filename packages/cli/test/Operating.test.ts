/**
 * `secretgate serve` as an operator runs it: `--audit-log` writes the management audit trail of
 * a real server process to a real file (0600), naming the API key, never the value.
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { start } from "./support/cli.js"

const VALUE = "sk-operating-Zq9xV2bN7-never-logged"
const KEY = "sgk_operating_manage_key_0123456789"

let root: string
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "secretgate-operating-"))
})
afterAll(() => rmSync(root, { recursive: true, force: true }))

describe("secretgate serve --audit-log", () => {
  it("appends one JSON line per mutation, as the environment's key, to a 0600 file", async () => {
    const file = join(root, "audit.jsonl")
    const served = await start(
      ["serve", "--store", "memory:", "--org", "acme", "--port", "0", "--audit-log", file],
      /"event":"listening","url":"([^"]+)"/,
      { env: { SECRETGATE_API_KEY: KEY } }
    )
    try {
      const url = served.match[1]!
      const headers = { authorization: `Bearer ${KEY}`, "content-type": "application/json" }
      const created = await fetch(`${url}/secret`, { method: "POST", headers, body: JSON.stringify({ name: "stripe", value: VALUE }) })
      expect(created.status).toBe(201)
      const { id } = await created.json() as { id: string }
      const deleted = await fetch(`${url}/secret/${id}`, { method: "DELETE", headers })
      expect(deleted.status).toBe(204)
    } finally {
      served.child.kill("SIGTERM")
    }
    expect(await served.exited).toBe(0)
    const text = readFileSync(file, "utf8")
    expect(text).not.toContain(VALUE)
    expect(text).not.toContain(KEY)
    const lines = text.trim().split("\n").map((line) => JSON.parse(line))
    expect(lines).toMatchObject([
      { organizationId: "acme", actor: "env-manage", action: "create", outcome: "ok", secretName: "stripe", fields: ["name", "value"] },
      { organizationId: "acme", actor: "env-manage", action: "delete", outcome: "ok", secretName: "stripe" }
    ])
    expect(statSync(file).mode & 0o777).toBe(0o600)
  }, 120_000)
})
