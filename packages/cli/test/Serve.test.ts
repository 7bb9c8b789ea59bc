/**
 * `secretgate serve` as an operator runs it: a real child process over a real filesystem store,
 * with a keys file. The Daytona wire suite of `@secretgate/http` runs against it over HTTP, as it
 * runs against an in-process server; the probes answer without a key; every request leaves one
 * JSON access log line on stderr (route template, status, key id, never a value, key or query);
 * SIGTERM stops it.
 */
import { ApiKeys } from "@secretgate/http"
import { send, WIRE_KEYS, wireSuite } from "@secretgate/http/testing"
import { Redacted } from "effect"
import { once } from "node:events"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import * as Net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { start } from "./support/cli.js"

type Served = Awaited<ReturnType<typeof start>>

const VALUE = "sk-serve-Pw4nB8zQ1-never-logged"
const root = mkdtempSync(join(tmpdir(), "secretgate-serve-"))
const running: Array<Served> = []

/** `secretgate serve` on a fresh store, with one plaintext key per WIRE_KEYS entry in its keys file. */
const serve = async (name: string, extra: ReadonlyArray<string> = []) => {
  const keys = new Map<string, string>()
  const entries = WIRE_KEYS.map(({ organizationId, scope }, i) => {
    const key = Redacted.value(ApiKeys.generate())
    keys.set(`${organizationId} ${scope}`, key)
    return { id: `wire-${i}`, organizationId, scopes: [scope], key }
  })
  const keysFile = join(root, `${name}.keys.json`)
  writeFileSync(keysFile, JSON.stringify(entries), { mode: 0o600 })
  const served = await start(
    ["serve", "--store", join(root, name), "--port", "0", "--keys-file", keysFile, ...extra],
    /"event":"listening","url":"([^"]+)"/
  )
  running.push(served)
  return {
    served,
    url: served.match[1]!,
    key: (organizationId: string, scope: ApiKeys.Scope) => keys.get(`${organizationId} ${scope}`)!,
    keys: [...keys.values()]
  }
}

afterAll(async () => {
  for (const served of running) {
    served.child.kill("SIGTERM")
    await served.exited
  }
  rmSync(root, { recursive: true, force: true })
})

let wire: Awaited<ReturnType<typeof serve>>
beforeAll(async () => {
  wire = await serve("wire")
}, 60_000)

wireSuite("secretgate serve (a child process over a filesystem store)", () => wire)

describe("secretgate serve", () => {
  it("answers the probes without a key, logs one JSON line per request on stderr, never a value, key, id or query; SIGTERM stops it", async () => {
    const { served, url, key, keys } = await serve("logged")
    const manage = key("org-a", "secrets:manage")
    expect(served.output()).toMatch(/"event":"listening","url":"[^"]+","keys":7,"health":"http:\/\/127\.0\.0\.1:\d+\/health","ready":"http:\/\/127\.0\.0\.1:\d+\/ready"/)
    expect((await send(`${url}/health`, "GET")).json).toEqual({ status: "ok" })
    expect((await send(`${url}/ready`, "GET")).json).toEqual({ status: "ready" })
    const created = await send(`${url}/secret`, "POST", { key: manage, body: { name: "logged", value: VALUE } })
    expect(created.status).toBe(201)
    expect((await send(`${url}/secret/${created.json.id}?token=${VALUE}`, "GET", { key: manage })).status).toBe(200)
    expect((await send(`${url}/secret/${created.json.id}`, "PUT", { key: manage })).status).toBe(405)
    served.child.kill("SIGTERM")
    expect(await served.exited).toBe(0)

    const lines = served.output().split("\n").filter((line) => line.startsWith("{")).map((line) => JSON.parse(line))
    const requests = lines.filter((line) => line.event === "request").map(({ method, route, status, keyId }) => ({ method, route, status, keyId }))
    expect(requests).toEqual([
      { method: "GET", route: "/health", status: 200, keyId: undefined },
      { method: "GET", route: "/ready", status: 200, keyId: undefined },
      { method: "POST", route: "/secret", status: 201, keyId: "wire-0" },
      { method: "GET", route: "/secret/{secretId}", status: 200, keyId: "wire-0" },
      { method: "PUT", route: null, status: 405, keyId: undefined }
    ])
    for (const line of lines.filter((line) => line.event === "request")) {
      expect(line).toMatchObject({ level: "info", time: expect.stringMatching(/^\d{4}-/), durationMs: expect.any(Number) })
    }
    expect(lines.map((line) => line.event)).toEqual(expect.arrayContaining(["listening", "stopping", "stopped"]))
    for (const forbidden of [VALUE, created.json.id, "token=", ...keys]) expect(served.output()).not.toContain(forbidden)
  }, 120_000)

  it("a second SIGTERM while the stop waits on an open request ends it at once", async () => {
    const { served, url } = await serve("forced")
    // a request whose body never finishes: the graceful stop waits for it
    const target = new URL(url)
    const socket = Net.connect({ host: target.hostname, port: Number(target.port) })
    await once(socket, "connect")
    socket.write(`POST /secret HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"name":`)
    await new Promise((resolve) => setTimeout(resolve, 200))
    served.child.kill("SIGTERM")
    while (!served.output().includes(`"event":"stopping"`)) await new Promise((resolve) => setTimeout(resolve, 20))
    served.child.kill("SIGTERM")
    // a graceful stop would end with 0 once the request gave up; forced, the process dies of the signal
    expect(await served.exited).toBe(null)
    socket.destroy()
  }, 120_000)

  it("--no-access-log: no request lines", async () => {
    const { served, url } = await serve("quiet", ["--no-access-log"])
    expect((await send(`${url}/health`, "GET")).status).toBe(200)
    served.child.kill("SIGTERM")
    expect(await served.exited).toBe(0)
    expect(served.output()).not.toContain(`"event":"request"`)
    expect(served.output()).toContain(`"event":"stopped"`)
  }, 120_000)
})
