/**
 * A sandbox whose resolver fails (throws synchronously: disposed, or an embedder's own) fails its
 * own connections with 503, and the proxy goes on serving every other sandbox.
 */
import { Secretgate } from "@secretgate/core"
import { MemorySecretStore } from "@secretgate/memory"
import { afterAll, describe, expect, it } from "vitest"
import { SecretgateProxy } from "../src/index.js"
import { authorizationOf, connectRaw } from "./support/client.js"

const gate = new Secretgate({ layer: MemorySecretStore.layer(), organizationId: "acme" })
let proxy: SecretgateProxy | undefined
afterAll(async () => {
  await proxy?.close()
  await gate.dispose()
})

describe("a resolver that throws", () => {
  it("fails that sandbox's CONNECT with 503 resolution-failed; the proxy keeps serving others", async () => {
    proxy = await SecretgateProxy.start({ upstream: { resolve: { "api.allowed.test": "127.0.0.1" } } })
    const mount = await gate.mount({})
    const healthy = await gate.resolver(mount)
    const broken = { ...healthy, mount, current: () => { throw new Error("resolver disposed") } }
    const bad = proxy.register({ resolver: broken })
    const good = proxy.register({ resolver: healthy })

    const refused = await connectRaw(proxy, "api.allowed.test:443", authorizationOf(bad.proxyUrl))
    expect(refused.status).toBe(503)
    expect(refused.body).toContain("could not load this sandbox's secrets")

    // the proxy is alive: the other sandbox's CONNECT is answered (tunnelled: nothing to substitute)
    const other = await connectRaw(proxy, "api.allowed.test:1", authorizationOf(good.proxyUrl))
    expect(other.status).toBe(502)
    other.socket.destroy()
  }, 60_000)
})
