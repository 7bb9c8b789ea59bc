/**
 * `secretgate serve` as an operator runs it: `--audit-log` writes the management audit trail of
 * a real server process to a real file (0600), naming the API key, never the value;
 * `--otel-endpoint` (or `OTEL_EXPORTER_OTLP_ENDPOINT`) sends its spans and metrics to a real
 * OTLP/HTTP receiver.
 */
import { Buffer } from "node:buffer"
import { mkdtempSync, readFileSync, rmSync, statSync } from "node:fs"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { secretgate, start } from "./support/cli.js"

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

describe("secretgate serve --otel-endpoint", () => {
  const receive = async () => {
    const received: Array<{ path: string; text: string }> = []
    const server = Http.createServer((req, res) => {
      const chunks: Array<Buffer> = []
      req.on("data", (chunk: Buffer) => chunks.push(chunk))
      req.on("end", () => {
        received.push({ path: req.url ?? "", text: Buffer.concat(chunks).toString("utf8") })
        res.end("{}")
      })
    })
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
    return { received, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, close: () => new Promise((resolve) => server.close(resolve)) }
  }

  for (const how of ["flag", "environment"] as const) {
    it(`sends spans and metrics to the collector on shutdown (endpoint from the ${how})`, async () => {
      const collector = await receive()
      const served = await start(
        ["serve", "--store", "memory:", "--org", "acme", "--port", "0", "--no-access-log", ...(how === "flag" ? ["--otel-endpoint", collector.url] : [])],
        /"event":"listening","url":"([^"]+)"/,
        { env: { SECRETGATE_API_KEY: KEY, ...(how === "environment" ? { OTEL_EXPORTER_OTLP_ENDPOINT: collector.url } : {}) } }
      )
      try {
        const url = served.match[1]!
        const headers = { authorization: `Bearer ${KEY}`, "content-type": "application/json" }
        const created = await fetch(`${url}/secret`, { method: "POST", headers, body: JSON.stringify({ name: "stripe", value: VALUE }) })
        expect(created.status).toBe(201)
        expect((await fetch(`${url}/secret?marker=query-never-exported`, { headers })).status).toBe(200)
      } finally {
        served.child.kill("SIGTERM")
      }
      expect(await served.exited).toBe(0)
      await collector.close()
      const traces = collector.received.filter((r) => r.path === "/v1/traces").map((r) => r.text).join("\n")
      const metrics = collector.received.filter((r) => r.path === "/v1/metrics").map((r) => r.text).join("\n")
      expect(traces).toContain("http.server POST /secret")
      expect(traces).toContain("secretgate.secrets.create")
      expect(metrics).toContain("http.server.request.duration")
      expect(metrics).toContain("secretgate.secrets.operation.duration")
      const everything = collector.received.map((r) => r.text).join("\n")
      expect(everything).not.toContain(VALUE)
      expect(everything).not.toContain(KEY)
      expect(everything).not.toContain("query-never-exported")
    }, 120_000)
  }

  it("refuses an endpoint that is not a URL (exit 2), naming it", async () => {
    const result = await secretgate(["serve", "--store", "memory:", "--org", "acme", "--port", "0", "--otel-endpoint", "collector:4318"], {
      env: { SECRETGATE_API_KEY: KEY }
    })
    expect(result.code).toBe(2)
    expect(result.stderr).toMatch(/OTLP endpoint must be an http\(s\) URL .*collector:4318/)
  }, 120_000)
})
