/**
 * Every shape of request body and headers undici accepts, through `request`, `stream` and
 * `fetch`: scanned and substituted for an allowed host, blocked for another (before anything is
 * sent when the body's length is known), and never read twice. And transfer codings: the
 * sandbox's `TE` never goes on, and a transfer-coded response is refused like a compressed one.
 * Real HTTPS servers on 127.0.0.1 with the test CA; plain undici `Agent`s as the baseline.
 */
import { EgressRefused, SubstitutionBlocked } from "@secretgate/undici"
import { Buffer } from "node:buffer"
import { Writable } from "node:stream"
import { gzipSync } from "node:zlib"
import { type Dispatcher, fetch as undiciFetch, FormData as UndiciFormData, request, stream } from "undici"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { arrayBufferOf, SHAPES } from "./support/bodyShapes.js"
import { last, makeWorld, type World } from "./support/fixture.js"
import { type RawTls, startRawTls } from "./support/rawServer.js"
import { plainAgent } from "./support/upstream.js"

let world: World
let plain: ReturnType<typeof plainAgent>
beforeAll(async () => {
  world = await makeWorld()
  plain = plainAgent()
})
afterAll(async () => {
  await plain.close()
  await world.close()
})

const VALUE = "sk-live-B0dyShap3s"

type Client = "request" | "stream"

/** Sends `body` by POST through `client`; resolves with the response text or rejects. */
const send = async (client: Client, dispatcher: Dispatcher, url: string, body: unknown, headers: Record<string, string> = {}): Promise<string> => {
  const options = { method: "POST" as const, body: body as string, headers, dispatcher }
  if (client === "request") return (await request(url, options)).body.text()
  const chunks: Array<Buffer> = []
  await stream(url, options, () =>
    new Writable({
      write(chunk: Buffer, _encoding, callback) {
        chunks.push(chunk)
        callback()
      }
    }))
  return Buffer.concat(chunks).toString("utf8")
}

/** The received body with any multipart boundary replaced by a fixed name (undici picks it at random). */
const normalised = (received: { headers: Record<string, unknown>; body: Buffer }): string => {
  const boundary = /boundary=([^;\s]+)/.exec(String(received.headers["content-type"] ?? ""))?.[1]
  const text = received.body.toString("utf8")
  return boundary === undefined ? text : text.replaceAll(boundary, "BOUNDARY")
}

describe("every body shape undici accepts is scanned and substituted", () => {
  for (const shape of SHAPES) {
    for (const client of ["request", "stream"] as const) {
      it(`${shape.name} through undici.${client}: the allowed host gets the value where plain undici would send the placeholder`, async () => {
        const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
        const text = `a=${box.env.KEY}&bb=${box.env.KEY}`
        const url = world.https.url("api.allowed.test", "/")
        await send(client, box.agent, url, shape.make(text))
        const substituted = last(world.https)
        expect(substituted.body.toString("utf8")).not.toContain(box.env.KEY)
        if (shape.plainSends) {
          await send(client, plain, url, shape.make(text))
          const baseline = last(world.https)
          expect(normalised(substituted)).toBe(normalised(baseline).replaceAll(box.env.KEY!, VALUE))
          const type = (received: typeof baseline) => received.headers["content-type"]?.replace(/boundary=\S+/, "boundary=BOUNDARY")
          expect(type(substituted)).toBe(type(baseline))
        } else {
          expect(normalised(substituted)).toContain(VALUE)
        }
      })
    }

    it(`${shape.name} to a host its secret is not allowed for, under block: refused${shape.known ? ", nothing sent" : ", the placeholder never sent"}`, async () => {
      const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { onDisallowed: "block" })
      const heads = world.https.progress.heads
      const received = world.https.received.length
      const error = await send("request", box.agent, world.https.url("evil.test", "/"), shape.make(`a=${box.env.KEY}&bb=${box.env.KEY}`))
        .then(() => undefined, (e: unknown) => e)
      expect(error).toBeInstanceOf(SubstitutionBlocked)
      if (shape.known) expect(world.https.progress.heads).toBe(heads)
      for (const r of world.https.received.slice(received)) expect(r.body.toString("latin1")).not.toContain(box.env.KEY)
    })
  }

  for (const [name, make] of [
    ["Blob", (text: string) => new Blob([text], { type: "text/plain" })],
    ["undici FormData", (text: string) => {
      const form = new UndiciFormData()
      form.append("field", text)
      return form
    }],
    ["URLSearchParams", (text: string) => new URLSearchParams({ field: text })],
    ["web ReadableStream", (text: string) => new Blob([text]).stream()]
  ] as const) {
    it(`${name} through fetch: substituted, with the content type fetch gives it`, async () => {
      const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
      await (await undiciFetch(world.https.url("api.allowed.test", "/"), {
        method: "POST",
        body: make(`a=${box.env.KEY}`),
        dispatcher: box.agent,
        duplex: "half"
      } as never)).text()
      const received = last(world.https).body.toString("utf8")
      expect(received).toContain(VALUE)
      expect(received).not.toContain(box.env.KEY)
    })
  }

  it("fetch with a body holding a placeholder blocked there fails with SubstitutionBlocked, and does not hang (found by the fuzzer)", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { onDisallowed: "block" })
    for (const body of [`k=${box.env.KEY}`, new DataView(arrayBufferOf(`k=${box.env.KEY}`)), new Blob([`k=${box.env.KEY}`])]) {
      const error = await undiciFetch(world.https.url("evil.test", "/"), { method: "PATCH", body, dispatcher: box.agent }).then(() => undefined, (e: unknown) => e)
      expect((error as { cause?: unknown }).cause).toBeInstanceOf(SubstitutionBlocked)
    }
  })

  it("a dispatcher flagged isMockActive makes fetch pass the body's source itself (a FormData): still substituted", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const form = new UndiciFormData()
    form.append("field", `a=${box.env.KEY}`)
    ;(box.agent as unknown as { isMockActive: boolean }).isMockActive = true
    await (await undiciFetch(world.https.url("api.allowed.test", "/"), { method: "POST", body: form, dispatcher: box.agent })).text()
    expect(last(world.https).body.toString("utf8")).toContain(`a=${VALUE}`)
    expect(String(last(world.https).headers["content-type"])).toMatch(/^multipart\/form-data; boundary=/)
  })

  it("a JSON Blob gets the value JSON-escaped; a form-typed URLSearchParams gets it form-encoded", async () => {
    const tricky = 'quote" and&amp=+'
    const box = await world.sandbox({ key: [tricky, ["api.allowed.test"]] })
    await send("request", box.agent, world.https.url("api.allowed.test", "/"), new Blob([JSON.stringify({ k: box.env.KEY })], { type: "application/json" }))
    expect(JSON.parse(last(world.https).body.toString("utf8"))).toEqual({ k: tricky })
    await send("request", box.agent, world.https.url("api.allowed.test", "/"), new URLSearchParams({ k: box.env.KEY! }))
    expect(new URLSearchParams(last(world.https).body.toString("utf8")).get("k")).toBe(tricky)
    expect(last(world.https).headers["content-type"]).toBe("application/x-www-form-urlencoded;charset=UTF-8")
  })

  it("a body changed by its caller after dispatch goes out as it was checked (under block)", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { onDisallowed: "block" })
    // a first request loads the values: the next one is planned as it is dispatched
    await send("request", box.agent, world.https.url("evil.test", "/"), "warm-up")
    const body = Buffer.from("x".repeat(box.env.KEY!.length + 8))
    const pending = send("request", box.agent, world.https.url("evil.test", "/"), body)
    // the request is planned; undici writes the body later, after connecting
    body.write(`k=${box.env.KEY}`)
    await pending
    expect(last(world.https).body.toString("latin1")).toBe("x".repeat(box.env.KEY!.length + 8))
  })

  it("a streamed chunk changed by its caller while the socket still holds it goes out as it was checked (under block, plain http)", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { onDisallowed: "block" })
    // large enough that a plain TCP socket cannot take it at once and keeps a reference to it
    const chunk = Buffer.alloc(8 * 1024 * 1024, "x")
    const body = (async function*() {
      // the caller changes the chunk's end once undici has handed it to the socket
      setImmediate(() => chunk.write(`k=${box.env.KEY}`, chunk.length - 100))
      yield chunk
      yield Buffer.from("end")
    })()
    await send("request", box.agent, world.http.url("evil.test", "/"), body)
    expect(last(world.http).body.toString("latin1")).not.toContain(box.env.KEY)
  })

  it("a body that is no shape undici accepts is refused with EgressRefused before anything is sent", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const heads = world.https.progress.heads
    for (const body of [{ text: box.env.KEY }, { [Symbol.toStringTag]: "Blob", size: 3 }]) {
      const error = await send("request", box.agent, world.https.url("api.allowed.test", "/"), body).then(() => undefined, (e: unknown) => e)
      expect(error).toBeInstanceOf(EgressRefused)
      expect(String((error as Error).message)).toMatch(/a request body must be a string, bytes, a Blob, FormData/)
    }
    expect(world.https.progress.heads).toBe(heads)
  })

  it("a FormData field that is neither a string nor a Blob is refused with EgressRefused", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const fake = {
      [Symbol.toStringTag]: "FormData",
      append() {},
      delete() {},
      get() {},
      getAll() {},
      has() {},
      set() {},
      *[Symbol.iterator]() {
        yield ["field", { text: box.env.KEY }]
      }
    }
    const error = await send("request", box.agent, world.https.url("api.allowed.test", "/"), fake).then(() => undefined, (e: unknown) => e)
    expect(error).toBeInstanceOf(EgressRefused)
    expect(String((error as Error).message)).toMatch(/field "field" is neither a string nor a Blob/)
  })
})

describe("headers of every shape are read once into a plain copy", () => {
  const shapes: ReadonlyArray<readonly [string, (name: string, value: string) => unknown]> = [
    ["plain object", (name, value) => ({ [name]: value })],
    ["flat array", (name, value) => [name, value]],
    ["array of pairs", (name, value) => [[name, value]]],
    ["Headers", (name, value) => new Headers({ [name]: value })],
    ["Map", (name, value) => new Map([[name, value]])],
    ["generator (read only once possible)", (name, value) => (function*() {
      yield [name, value]
    })()],
    ["object with its own iterator", (name, value) => ({ *[Symbol.iterator]() {
      yield [name, value]
    } })],
    ["array of values", (name, value) => ({ [name]: ["first", value] })]
  ]
  for (const [label, make] of shapes) {
    it(`${label}: substituted for the allowed host, blocked for another`, async () => {
      const allowed = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
      await (await request(world.https.url("api.allowed.test", "/"), { headers: make("x-key", `k=${allowed.env.KEY}`) as never, dispatcher: allowed.agent })).body.text()
      expect(String(last(world.https).headers["x-key"])).toContain(`k=${VALUE}`)
      const blocking = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { onDisallowed: "block" })
      const heads = world.https.progress.heads
      const error = await request(world.https.url("evil.test", "/"), { headers: make("x-key", blocking.env.KEY!) as never, dispatcher: blocking.agent })
        .then(() => undefined, (e: unknown) => e)
      expect(error).toBeInstanceOf(SubstitutionBlocked)
      expect(world.https.progress.heads).toBe(heads)
    })
  }

  /** Headers whose `x-key` getter answers `benign` for the first `reads` reads, then `hostile`. */
  const shifty = (reads: number, benign: string, hostile: string) => {
    let count = 0
    return Object.defineProperty({ accept: "*/*" }, "x-key", { enumerable: true, get: () => (count++ < reads ? benign : hostile) })
  }

  it("a header getter that answers differently on a later read cannot get a placeholder past block", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { onDisallowed: "block" })
    for (const reads of [1, 2, 3, 4]) {
      const since = world.https.received.length
      await request(world.https.url("evil.test", "/"), { headers: shifty(reads, "benign", box.env.KEY!), dispatcher: box.agent })
        .then((response) => response.body.text(), () => undefined)
      for (const r of world.https.received.slice(since)) expect([reads, r.rawHeaders.join("\n")]).toEqual([reads, expect.not.stringContaining(box.env.KEY!)])
    }
  })

  it("a Proxy whose keys change between looks cannot get a placeholder past block", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { onDisallowed: "block" })
    for (const looks of [1, 2, 3]) {
      let count = 0
      const headers = new Proxy({} as Record<string, string>, {
        ownKeys: () => (count++ < looks ? ["accept"] : ["accept", "x-key"]),
        getOwnPropertyDescriptor: () => ({ enumerable: true, configurable: true }),
        get: (_target, key) => (key === "x-key" ? box.env.KEY : "*/*")
      })
      const since = world.https.received.length
      await request(world.https.url("evil.test", "/"), { headers, dispatcher: box.agent }).then((response) => response.body.text(), () => undefined)
      for (const r of world.https.received.slice(since)) expect(r.rawHeaders.join("\n")).not.toContain(box.env.KEY)
    }
  })

  it("a Host header value that stringifies differently each time never sends the value under another Host", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    for (const first of [0, 1]) {
      let count = first
      const host = { toString: () => (count++ % 2 === 0 ? "api.allowed.test" : "evil.test") }
      const since = world.https.received.length
      await request(world.https.url("api.allowed.test", "/"), { headers: { host: host as never, "x-key": box.env.KEY! }, dispatcher: box.agent })
        .then((response) => response.body.text(), () => undefined)
      for (const r of world.https.received.slice(since)) {
        if (r.host !== "api.allowed.test") expect(String(r.headers["x-key"])).not.toContain(VALUE)
      }
    }
  })

  it("a query getter that answers differently on a later read cannot get a placeholder past block", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { onDisallowed: "block" })
    for (const reads of [1, 2, 3, 4]) {
      let count = 0
      const query = Object.defineProperty({ a: "1" }, "k", { enumerable: true, get: () => (count++ < reads ? "benign" : box.env.KEY) })
      const since = world.https.received.length
      await request(world.https.url("evil.test", "/"), { query, dispatcher: box.agent }).then((response) => response.body.text(), () => undefined)
      for (const r of world.https.received.slice(since)) expect(r.url).not.toContain(box.env.KEY)
    }
  })
})

describe("transfer codings", () => {
  let raw: RawTls
  beforeAll(async () => {
    raw = await startRawTls((head, socket) => {
      // the request's x-key, echoed gzip-compressed under a transfer coding (or only chunked)
      const key = /^x-key: *(.*)$/im.exec(head)?.[1] ?? ""
      const coding = /^x-coding: *(.*)$/im.exec(head)?.[1] ?? "gzip, chunked"
      const payload = coding.includes("gzip") ? gzipSync(`echo=${key}`) : Buffer.from(`echo=${key}`)
      socket.end(Buffer.concat([
        Buffer.from(`HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: ${coding}\r\nconnection: close\r\n\r\n${payload.length.toString(16)}\r\n`, "latin1"),
        payload,
        Buffer.from("\r\n0\r\n\r\n", "latin1")
      ]))
    })
  })
  afterAll(() => raw.close())

  it("the sandbox's TE never goes on; only its trailers token is kept", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    for (const [te, sent] of [["gzip", undefined], ["trailers, gzip;q=0.5", "trailers"], ["deflate", undefined]] as const) {
      await (await request(world.https.url("api.allowed.test", "/"), { headers: { te, "x-key": box.env.KEY! }, dispatcher: box.agent })).body.text()
      expect([te, last(world.https).headers.te]).toEqual([te, sent])
      // to a host nothing may go to, too
      await (await request(world.https.url("other.test", "/"), { headers: { te }, dispatcher: box.agent })).body.text()
      expect([te, last(world.https).headers.te]).toEqual([te, sent])
    }
  })

  for (const coding of ["gzip, chunked", "GZIP, Chunked", "deflate, chunked"]) {
    it(`a response with transfer-encoding "${coding}" is refused (request, fetch, stream), never delivered unscrubbed`, async () => {
      const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
      const url = raw.url("api.allowed.test", "/")
      const headers = { "x-key": box.env.KEY!, "x-coding": coding }
      const attempts = [
        request(url, { headers, dispatcher: box.agent }).then((response) => response.body.text()),
        undiciFetch(url, { headers, dispatcher: box.agent }).then((response) => response.text()),
        send("stream", box.agent, url, "", headers)
      ]
      for (const attempt of attempts) {
        const error = await attempt.then(() => undefined, (e: unknown) => e)
        expect(error).toBeDefined()
        expect(String((error as { cause?: unknown }).cause ?? error)).toMatch(/-encoded although identity was requested/)
      }
    })
  }

  it("a response with only chunked framing is delivered, scrubbed", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const text = await (await request(raw.url("api.allowed.test", "/"), { headers: { "x-key": box.env.KEY!, "x-coding": "chunked" }, dispatcher: box.agent })).body.text()
    expect(text).toBe(`echo=${box.env.KEY}`)
  })
})
