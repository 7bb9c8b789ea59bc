/**
 * Request targets in refusals: what the proxy quotes of a target it refuses (an origin-form
 * request to the proxy, a malformed CONNECT target, an absolute-form URL it cannot parse, a
 * non-origin-form target inside a tunnel) is cut at the first `?` or `#` and capped in length, in
 * the audit event and in the answer alike — a query string may carry a key, and audit lines never
 * hold one. Real curl (`--request-target`) and raw sockets against the proxy.
 */
import { writeFile } from "node:fs/promises"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { CA } from "../../undici/test/support/upstream.js"
import { authorizationOf, connectRaw } from "./support/client.js"
import { installed, makeWorld, run, type World } from "./support/world.js"

const VALUE = "tok_Targets_9f1c"
const QUERY = "api_key=qs_Secret_5e2b"
const hasCurl = installed("curl")

describe("a refused request target", () => {
  let world: World
  beforeAll(async () => {
    world = await makeWorld()
    await writeFile(`${world.proxy.bundle.bundleFile}.with-test-ca.pem`, Buffer.concat([await import("node:fs/promises").then((fs) => fs.readFile(world.proxy.bundle.bundleFile)), CA]))
  })
  afterAll(() => world.close())

  const curl = (proxyUrl: string, env: NodeJS.ProcessEnv, args: ReadonlyArray<string>) =>
    run("curl", ["-sS", "--noproxy", "", "-x", proxyUrl, "--cacert", `${world.proxy.bundle.bundleFile}.with-test-ca.pem`, "-w", "\n%{http_code}", ...args], env)

  const refusedBadRequests = (events: World["events"]) => events.filter((event) => event.type === "refused" && event.reason === "bad-request")

  it.skipIf(!hasCurl)("origin-form to the proxy: 400, the path quoted without its query, in the answer and the audit event", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const ran = await curl(sandbox.registration.proxyUrl, sandbox.env, ["--request-target", `/v1/items?${QUERY}#frag`, "http://api.allowed.test/"])
    expect(ran.stdout).toMatch(/400$/)
    expect(ran.stdout).toContain(`"/v1/items?…"`)
    expect(ran.stdout).not.toContain(QUERY)
    const refused = refusedBadRequests(sandbox.events)
    expect(refused).toHaveLength(1)
    expect(JSON.stringify(refused)).toContain("/v1/items?…")
    expect(JSON.stringify(refused)).not.toContain("qs_Secret")
  })

  it.skipIf(!hasCurl)("absolute-form URL with a bad port: 400, quoted without its query", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const ran = await curl(sandbox.registration.proxyUrl, sandbox.env, ["--request-target", `http://api.allowed.test:99999/x?${QUERY}`, "http://api.allowed.test/"])
    expect(ran.stdout).toMatch(/400$/)
    expect(ran.stdout).not.toContain(QUERY)
    const refused = refusedBadRequests(sandbox.events)
    expect(refused).toHaveLength(1)
    expect(JSON.stringify(refused)).toContain("http://api.allowed.test:99999/x?…")
    expect(JSON.stringify(refused)).not.toContain("qs_Secret")
  })

  it.skipIf(!hasCurl)("a fragment alone is cut too, and a long target is capped", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const long = `/${"a".repeat(5000)}`
    await curl(sandbox.registration.proxyUrl, sandbox.env, ["--request-target", `/p#${QUERY}`, "http://api.allowed.test/"])
    const ran = await curl(sandbox.registration.proxyUrl, sandbox.env, ["--request-target", long, "http://api.allowed.test/"])
    expect(ran.stdout).toMatch(/400$/)
    const [fragment, capped] = refusedBadRequests(sandbox.events)
    expect(fragment!.type === "refused" && fragment!.message).toContain(`"/p#…"`)
    expect(JSON.stringify(fragment)).not.toContain("qs_Secret")
    expect(capped!.type === "refused" && capped!.message.length).toBeLessThan(400)
    expect(ran.stdout.length).toBeLessThan(400)
  })

  it("malformed CONNECT target: 400, quoted without its query", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const answer = await connectRaw(world.proxy, `api.allowed.test:443/x?${QUERY}`, authorizationOf(sandbox.registration.proxyUrl))
    expect(answer.status).toBe(400)
    expect(answer.body).not.toContain(QUERY)
    const refused = refusedBadRequests(sandbox.events)
    expect(refused).toHaveLength(1)
    expect(JSON.stringify(refused)).toContain("api.allowed.test:443/x?…")
    expect(JSON.stringify(refused)).not.toContain("qs_Secret")
  })

  it.skipIf(!hasCurl)("a non-origin-form target inside an intercepted tunnel: 400, quoted without its query", async () => {
    const sandbox = await world.sandbox({ token: [VALUE, ["api.allowed.test"]] })
    const ran = await curl(sandbox.registration.proxyUrl, sandbox.env, ["--request-target", `*?${QUERY}`, world.https.url("api.allowed.test", "/echo")])
    expect(ran.stdout).toMatch(/400$/)
    expect(ran.stdout).toContain(`"*?…"`)
    expect(ran.stdout).not.toContain(QUERY)
    expect(JSON.stringify(sandbox.events)).not.toContain("qs_Secret")
  })
})
