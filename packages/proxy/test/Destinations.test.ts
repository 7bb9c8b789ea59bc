/**
 * Private destinations: a sandbox may not use the proxy to reach loopback, RFC 1918, link-local
 * (cloud metadata), unique-local or unspecified addresses unless the embedder allowed them — not
 * through a tunnel, an intercepted request or a plain-HTTP request, whether the address is an IP
 * literal or what a name resolves to. Real curl against real servers on 127.0.0.1; `localhost` is
 * a name the proxy's resolver does not pin, so it is resolved (to 127.0.0.1) like any other name.
 */
import { writeFile } from "node:fs/promises"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { CA } from "../../undici/test/support/upstream.js"
import { InvalidProxyOptions, type ProxyAuditEvent, SecretgateProxy } from "../src/index.js"
import { Destinations, embeddedIpv4, kindOf } from "../src/internal/destinations.js"
import { authorizationOf, connectRaw } from "./support/client.js"
import { installed, makeWorld, run, type World } from "./support/world.js"

const VALUE = "tok_Pr1vate-Dest_77a1"
const hasCurl = installed("curl")

/** curl through the registration's proxy even for loopback names (its NO_PROXY lists them). */
const curl = (world: World, env: NodeJS.ProcessEnv, proxyUrl: string, args: ReadonlyArray<string>) =>
  run("curl", ["-sS", "--noproxy", "", "-x", proxyUrl, "--cacert", `${world.proxy.bundle.bundleFile}.with-test-ca.pem`, ...args], env)

const withTestCa = async (world: World) => {
  const fs = await import("node:fs/promises")
  await writeFile(`${world.proxy.bundle.bundleFile}.with-test-ca.pem`, Buffer.concat([await fs.readFile(world.proxy.bundle.bundleFile), CA]))
}

type Refused = Extract<ProxyAuditEvent.ProxyAuditEvent, { type: "refused" }>

const refusals = (events: ReadonlyArray<ProxyAuditEvent.ProxyAuditEvent>): Array<Refused> =>
  events.filter((event): event is Refused => event.type === "refused" && event.reason === "private-destination")

describe("by default", () => {
  let world: World
  beforeAll(async () => {
    world = await makeWorld()
    await withTestCa(world)
  })
  afterAll(() => world.close())

  it.each([
    ["127.0.0.1", "loopback"],
    ["169.254.169.254", "link-local"],
    ["10.1.2.3", "private"],
    ["192.168.0.1", "private"],
    ["172.20.0.1", "private"],
    ["0.0.0.0", "unspecified"],
    ["[::1]", "loopback"],
    ["[fd12::1]", "unique-local"],
    ["[fe80::1]", "link-local"],
    ["[::ffff:127.0.0.1]", "loopback"],
    ["[64:ff9b::127.0.0.1]", "loopback"],
    ["[64:ff9b::a9fe:a9fe]", "link-local"],
    ["[2002:a00:1::1]", "private"],
    ["[::ffff:0:192.168.0.1]", "private"]
  ])("refuses CONNECT to the IP literal %s with 403 before connecting (%s)", async (host, kind) => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const answer = await connectRaw(world.proxy, `${host}:443`, authorizationOf(sandbox.registration.proxyUrl))
    expect(answer.status).toBe(403)
    expect(answer.body).toContain(kind)
    expect(answer.body).toContain("allowPrivateDestinations")
    expect(refusals(sandbox.events)).toHaveLength(1)
    expect(refusals(sandbox.events)[0]).toMatchObject({ status: 403, sandbox: sandbox.registration.id })
  })

  it.skipIf(!hasCurl)("refuses a tunnel to a name that resolves to loopback (after resolution), with a reason curl shows", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const before = world.https.received.length
    const ran = await curl(world, sandbox.env, sandbox.registration.proxyUrl, [world.https.url("localhost", "/echo")])
    expect(ran.code).not.toBe(0)
    expect(ran.stderr).toMatch(/403/)
    expect(ran.stderr).not.toContain("127.0.0.1")
    expect(world.https.received.length).toBe(before)
    expect(sandbox.events).toContainEqual(expect.objectContaining({ type: "tunnelled", sandbox: sandbox.registration.id, host: "localhost", port: world.https.port }))
    const [refused] = refusals(sandbox.events)
    expect(refused).toMatchObject({ host: "localhost", status: 403 })
    expect(refused!.message).toContain("localhost resolves to 127.0.0.1, which is a loopback address")
  })

  it("a refused tunnel's answer names the host, not the address it resolves to (the audit event does)", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const answer = await connectRaw(world.proxy, `localhost:${world.https.port}`, authorizationOf(sandbox.registration.proxyUrl))
    expect(answer.status).toBe(403)
    expect(answer.body).toContain("localhost resolves to a non-public address")
    expect(answer.body).toContain("--resolve localhost:<address>")
    expect(answer.body).not.toContain("127.0.0.1")
    expect(refusals(sandbox.events)[0]!.message).toContain("localhost resolves to 127.0.0.1, which is a loopback address")
  })

  it.skipIf(!hasCurl)("refuses an intercepted request to a name that resolves to loopback: 403 with the reason, nothing sent", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["localhost"]] })
    const before = world.https.received.length
    const ran = await curl(world, sandbox.env, sandbox.registration.proxyUrl, ["-H", `Authorization: Bearer ${sandbox.mount.env.TOKEN}`, "-w", "\n%{http_code}", world.https.url("localhost", "/echo")])
    expect(ran.code).toBe(0)
    expect(ran.stdout).toMatch(/403$/)
    // the sandbox learns the name is refused and how to allow it, not what it resolves to
    expect(ran.stdout).toContain("localhost resolves to a non-public address")
    expect(ran.stdout).toContain("--allow-private")
    expect(ran.stdout).not.toContain("127.0.0.1")
    expect(ran.stdout).not.toContain(VALUE)
    expect(world.https.received.length).toBe(before)
    expect(sandbox.events).toContainEqual(expect.objectContaining({ type: "intercepted", sandbox: sandbox.registration.id, host: "localhost", port: world.https.port }))
    expect(refusals(sandbox.events)).toEqual([expect.objectContaining({ host: "localhost", status: 403 })])
    // the operator's audit event names the address and the exact option
    expect(refusals(sandbox.events)[0]!.message).toContain("localhost resolves to 127.0.0.1, which is a loopback address")
    expect(refusals(sandbox.events)[0]!.message).toContain("--allow-private 127.0.0.1/32")
  })

  it.skipIf(!hasCurl)("refuses plain-HTTP absolute-form requests to a loopback name and to the metadata address", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const before = world.http.received.length
    const local = await curl(world, sandbox.env, sandbox.registration.proxyUrl, ["-w", "\n%{http_code}", world.http.url("localhost", "/echo")])
    expect(local.stdout).toMatch(/403$/)
    expect(local.stdout).toContain("localhost resolves to a non-public address")
    expect(local.stdout).not.toContain("127.0.0.1")
    expect(refusals(sandbox.events)[0]!.message).toContain("localhost resolves to 127.0.0.1")
    const metadata = await curl(world, sandbox.env, sandbox.registration.proxyUrl, ["-w", "\n%{http_code}", "http://169.254.169.254/latest/meta-data/"])
    expect(metadata.stdout).toMatch(/403$/)
    expect(metadata.stdout).toContain("169.254.169.254 is a link-local")
    expect(world.http.received.length).toBe(before)
    expect(refusals(sandbox.events).map((event) => event.host)).toEqual(["localhost", "169.254.169.254"])
  })

  it.skipIf(!hasCurl)("still reaches names the embedder pinned to 127.0.0.1 (upstream.resolve, the CLI's --resolve)", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const ran = await curl(world, sandbox.env, sandbox.registration.proxyUrl, ["--fail", "-H", `Authorization: Bearer ${sandbox.mount.env.TOKEN}`, world.https.url("api.allowed.test", "/echo")])
    expect(ran.code).toBe(0)
    expect(world.https.received.at(-1)!.headers.authorization).toBe(`Bearer ${VALUE}`)
    expect(refusals(sandbox.events)).toEqual([])
  })
})

describe("allowPrivateDestinations", () => {
  it.skipIf(!hasCurl)("a CIDR lets those addresses through (tunnel, intercepted and plain HTTP) and no others", async () => {
    const world = await makeWorld({ allowPrivateDestinations: ["127.0.0.0/8"] })
    try {
      await withTestCa(world)
      const sandbox = await world.sandbox({ token: [VALUE, ["localhost"]] })
      const intercepted = await curl(world, sandbox.env, sandbox.registration.proxyUrl, ["--fail", "-H", `Authorization: Bearer ${sandbox.mount.env.TOKEN}`, world.https.url("localhost", "/echo")])
      expect(intercepted.code).toBe(0)
      expect(world.https.received.at(-1)!.headers.authorization).toBe(`Bearer ${VALUE}`)
      const other = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
      const tunnelled = await curl(world, other.env, other.registration.proxyUrl, ["--fail", world.https.url("localhost", "/echo")])
      expect(tunnelled.code).toBe(0)
      const plain = await curl(world, other.env, other.registration.proxyUrl, ["--fail", world.http.url("localhost", "/echo")])
      expect(plain.code).toBe(0)
      expect(refusals(world.events)).toEqual([])
      const outside = await connectRaw(world.proxy, "10.0.0.1:443", authorizationOf(other.registration.proxyUrl))
      expect(outside.status).toBe(403)
    } finally {
      await world.close()
    }
  })

  it("true lets every address through", async () => {
    const world = await makeWorld({ allowPrivateDestinations: true })
    try {
      const sandbox = await world.sandbox({})
      const answer = await connectRaw(world.proxy, `127.0.0.1:${world.https.port}`, authorizationOf(sandbox.registration.proxyUrl))
      expect(answer.status).toBe(200)
      answer.socket.destroy()
    } finally {
      await world.close()
    }
  })

  it.each([[["10.0.0.0/33"]], [["not-an-ip"]], [["10.0.0.0/8", "fd00::/129"]], ["yes"]])("refuses %j with InvalidProxyOptions naming the entry", async (value) => {
    const error = await SecretgateProxy.start({ allowPrivateDestinations: value as never }).then(() => undefined, (e: unknown) => e)
    expect(error).toBeInstanceOf(InvalidProxyOptions)
    expect((error as InvalidProxyOptions).option).toMatch(/^allowPrivateDestinations/)
  })
})

describe("address classification", () => {
  it.each([
    ["64:ff9b::127.0.0.1", "127.0.0.1", "loopback"],
    ["64:ff9b::7f00:1", "127.0.0.1", "loopback"],
    ["64:ff9b::a9fe:a9fe", "169.254.169.254", "link-local"],
    ["64:ff9b::10.0.0.1", "10.0.0.1", "private"],
    ["64:ff9b:1::c0a8:1", "192.168.0.1", "private"],
    ["2002:7f00:1::1", "127.0.0.1", "loopback"],
    ["2002:a9fe:a9fe:1::5", "169.254.169.254", "link-local"],
    ["2002:ac14:1::", "172.20.0.1", "private"],
    ["::ffff:0:127.0.0.1", "127.0.0.1", "loopback"],
    ["::ffff:0:6440:1", "100.64.0.1", "shared"],
    ["2001:0:4136:e378:8000:63bf:80ff:fffe", "127.0.0.1", "loopback"]
  ])("%s carries %s and is refused as %s", (address, embedded, kind) => {
    expect(embeddedIpv4(address)).toBe(embedded)
    expect(kindOf(address)).toContain(kind)
    expect(new Destinations(false, []).refusalOf(address)).toContain(kind)
  })

  it.each([["::127.0.0.1", "IETF-reserved"], ["::ffff:127.0.0.1", "loopback"], ["::ffff:7f00:1", "loopback"]])("%s (IPv4-compatible/-mapped) is refused as %s", (address, kind) => {
    expect(kindOf(address)).toContain(kind)
  })

  it.each(["64:ff9b::8.8.8.8", "64:ff9b:1::808:808", "2002:808:808::1", "::ffff:0:8.8.8.8", "2001:0:4136:e378:8000:63bf:f7f7:f7f7", "2606:4700:4700::1111", "8.8.8.8"])(
    "%s (a public IPv4 address inside, or none) is public",
    (address) => {
      expect(kindOf(address)).toBeUndefined()
      expect(new Destinations(false, []).refusalOf(address)).toBeUndefined()
    }
  )

  it("allowing the IPv4 range allows the IPv6 forms that carry it", () => {
    const destinations = new Destinations(false, [{ network: "10.0.0.0", prefix: 8, family: "ipv4" }])
    expect(destinations.refusalOf("64:ff9b::10.1.2.3")).toBeUndefined()
    expect(destinations.refusalOf("2002:a01:203::1")).toBeUndefined()
    expect(destinations.refusalOf("64:ff9b::127.0.0.1")).toContain("loopback")
  })
})
