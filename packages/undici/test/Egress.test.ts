/**
 * What the egress layer does for a sandbox: substitution in every surface and body kind, through
 * every client, and scrubbing of responses.
 */
import { SecretgateAgent } from "@secretgate/undici"
import { Readable } from "node:stream"
import { fetch as undiciFetch, ProxyAgent, request } from "undici"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { everything, last, makeWorld, type World } from "./support/fixture.js"
import { startProxy } from "./support/proxy.js"
import { CA, testAgentOptions } from "./support/upstream.js"

let world: World
beforeAll(async () => {
  world = await makeWorld()
})
afterAll(() => world.close())

const VALUE = "sk-live-Zq9xV2bN7"

describe("substitution surfaces", () => {
  it("replaces a placeholder in a header value", async () => {
    const box = await world.sandbox({ api: [VALUE, ["api.allowed.test"]] })
    const response = await request(world.https.url("api.allowed.test", "/"), {
      headers: { authorization: `Bearer ${box.env.API}`, "x-other": "plain" },
      dispatcher: box.agent
    })
    await response.body.text()
    expect(last(world.https).headers.authorization).toBe(`Bearer ${VALUE}`)
    expect(last(world.https).headers["x-other"]).toBe("plain")
    expect(box.events).toEqual([expect.objectContaining({ type: "substituted", secret: "api", host: "api.allowed.test", surface: "header" })])
  })

  it("decodes, substitutes and re-encodes Authorization: Basic", async () => {
    const box = await world.sandbox({ pass: ["p@ss:wörd", ["api.allowed.test"]] })
    const basic = Buffer.from(`alice:${box.env.PASS}`).toString("base64")
    await (await request(world.https.url("api.allowed.test"), { headers: { Authorization: `Basic ${basic}` }, dispatcher: box.agent })).body.text()
    const sent = last(world.https).headers.authorization!
    expect(sent).toMatch(/^Basic /)
    expect(Buffer.from(sent.slice(6), "base64").toString("utf8")).toBe("alice:p@ss:wörd")
  })

  it("substitutes in path and query, percent-encoded", async () => {
    const box = await world.sandbox({ tok: ["a b/c?d&e=f", ["api.allowed.test"]] })
    await (await request(world.https.url("api.allowed.test", `/v1/${box.env.TOK}/x?key=${box.env.TOK}&n=1`), { dispatcher: box.agent })).body.text()
    expect(last(world.https).url).toBe(`/v1/${encodeURIComponent("a b/c?d&e=f")}/x?key=${encodeURIComponent("a b/c?d&e=f")}&n=1`)
    await (await request(world.https.url("api.allowed.test", "/q"), { query: { key: box.env.TOK }, dispatcher: box.agent })).body.text()
    expect(new URL(last(world.https).url, "https://x").searchParams.get("key")).toBe("a b/c?d&e=f")
  })

  it("a query parameter named __proto__ stays a parameter when substituted", async () => {
    const box = await world.sandbox({ tok: ["v4lue", ["api.allowed.test"]] })
    const query = JSON.parse(`{"__proto__": "${box.env.TOK}", "n": "1"}`) as Record<string, string>
    await (await request(world.https.url("api.allowed.test", "/q"), { query, dispatcher: box.agent })).body.text()
    const sent = new URL(last(world.https).url, "https://x").searchParams
    expect([sent.get("__proto__"), sent.get("n")]).toEqual(["v4lue", "1"])
  })

  it("JSON bodies get a JSON-escaped value, form bodies a form-encoded one", async () => {
    const box = await world.sandbox({ tricky: ['quote" back\\ slash&=+', ["api.allowed.test"]] })
    await (await request(world.https.url("api.allowed.test", "/"), {
      method: "POST",
      headers: { "content-type": "application/json; charset=utf-8" },
      body: JSON.stringify({ token: box.env.TRICKY }),
      dispatcher: box.agent
    })).body.text()
    expect(JSON.parse(last(world.https).body.toString("utf8"))).toEqual({ token: 'quote" back\\ slash&=+' })
    await (await request(world.https.url("api.allowed.test", "/"), {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: new URLSearchParams({ token: box.env.TRICKY!, other: "1" }).toString(),
      dispatcher: box.agent
    })).body.text()
    expect(new URLSearchParams(last(world.https).body.toString("utf8")).get("token")).toBe('quote" back\\ slash&=+')
  })

  const bodies: ReadonlyArray<readonly [string, (text: string) => unknown, boolean]> = [
    ["string", (text) => text, false],
    ["Buffer", (text) => Buffer.from(text), false],
    ["Uint8Array", (text) => new Uint8Array(Buffer.from(text)), false],
    ["Readable", (text) => Readable.from([Buffer.from(text.slice(0, 7)), Buffer.from(text.slice(7))]), true],
    ["async iterable", (text) => (async function*() {
      for (const char of text) yield Buffer.from(char)
    })(), true],
    ["sync iterable", (text) => (function*() {
      for (const char of text) yield char
    })(), true],
    ["Blob", (text) => new Blob([text]), true],
    ["sync iterable of promises", (text) => [Promise.resolve(text.slice(0, 9)), Promise.resolve(Buffer.from(text.slice(9)))], true]
  ]
  for (const [kind, make, streamed] of bodies) {
    it(`substitutes in a ${kind} body with ${streamed ? "chunked encoding" : "an exact content-length"}`, async () => {
      const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
      const text = `key=${box.env.KEY};again=${box.env.KEY};`
      await (await request(world.https.url("api.allowed.test", "/"), {
        method: "POST",
        headers: { "content-type": "text/plain", ...(streamed ? {} : { "content-length": String(Buffer.byteLength(text)) }) },
        body: make(text) as string,
        dispatcher: box.agent
      })).body.text()
      const received = last(world.https)
      expect(received.body.toString()).toBe(`key=${VALUE};again=${VALUE};`)
      if (streamed) {
        expect(received.chunked).toBe(true)
        expect(received.headers["content-length"]).toBeUndefined()
      } else {
        expect(received.headers["content-length"]).toBe(String(received.body.length))
      }
    })
  }

  it("large streamed chunks with values at the start, middle and end, and two in one chunk, arrive exact", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const big = (n: number) => "x".repeat(n)
    const texts = [
      `${box.env.KEY}${big(40_000)}`,
      `${big(20_000)}${box.env.KEY}${big(20_000)}`,
      `${big(40_000)}${box.env.KEY}`,
      `${big(30_000)}${box.env.KEY}-${box.env.KEY}${big(30_000)}`,
      big(50_000)
    ]
    const body = (async function*() {
      for (const text of texts) yield Buffer.from(text)
    })()
    await (await request(world.https.url("api.allowed.test", "/"), { method: "POST", body: body as never, dispatcher: box.agent })).body.text()
    expect(last(world.https).body.toString()).toBe(texts.join("").replaceAll(box.env.KEY!, VALUE))
  })

  it("a streamed body whose source fails fails the request with the source's error", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const body = (async function*() {
      yield Buffer.from(`key=${box.env.KEY};`)
      throw new Error("the source broke")
    })()
    const attempt = request(world.https.url("api.allowed.test", "/"), { method: "POST", body: body as never, dispatcher: box.agent })
      .then((response) => response.body.text())
    await expect(attempt).rejects.toThrow("the source broke")
  })

  /** An endless streamed body: counts its reads, and notes when it was closed. */
  const trackedSource = (chunk: (read: number) => unknown) => {
    const state = { read: 0, cleanedUp: false }
    const body = (async function*() {
      try {
        for (;;) {
          state.read++
          yield chunk(state.read)
          await new Promise((resolve) => setImmediate(resolve))
        }
      } finally {
        state.cleanedUp = true
      }
    })()
    return { body: body as never, state }
  }

  for (const [label, poison] of [["a blocked placeholder", "blocked"], ["a chunk that is not bytes", "not-bytes"]] as const) {
    it(`a streamed body refused at ${label} fails the request and closes its source`, async () => {
      const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]], other: ["x", ["other.test"]] }, { onDisallowed: "block" })
      const { body, state } = trackedSource((read) =>
        read < 3 ? Buffer.from(`key=${box.env.KEY};`) : poison === "blocked" ? Buffer.from(`other=${box.env.OTHER};`) : 42)
      const attempt = request(world.https.url("api.allowed.test", "/"), { method: "POST", body, dispatcher: box.agent })
        .then((response) => response.body.text())
      await expect(attempt).rejects.toThrow(poison === "blocked" ? /blocked/ : /must be strings or bytes/)
      expect(state).toEqual({ read: 3, cleanedUp: true })
    })
  }

  it("an aborted upload stops reading its source, which gets to clean up", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const controller = new AbortController()
    const { body, state } = trackedSource((read) => {
      if (read === 5) controller.abort()
      return Buffer.alloc(16 * 1024, `key=${box.env.KEY};`)
    })
    const attempt = request(world.https.url("api.allowed.test", "/"), { method: "POST", body, signal: controller.signal, dispatcher: box.agent })
    await expect(attempt).rejects.toThrow()
    await expect.poll(() => state.cleanedUp).toBe(true)
    expect(state.read).toBeLessThan(50)
  })

  it("leaves a body without placeholders byte for byte as it was", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const body = Buffer.from(Array.from({ length: 5000 }, (_, i) => i % 256))
    await (await request(world.https.url("api.allowed.test"), { method: "PUT", body, dispatcher: box.agent })).body.text()
    expect(last(world.https).body.equals(body)).toBe(true)
  })
})

describe("clients", () => {
  it("undici.fetch with { dispatcher }, request body and response scrubbed", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const response = await undiciFetch(world.https.url("api.allowed.test", "/echo"), {
      method: "POST",
      headers: { "x-api-key": box.env.KEY!, "content-type": "application/json" },
      body: JSON.stringify({ key: box.env.KEY }),
      dispatcher: box.agent
    })
    const echoed = await response.text()
    expect(last(world.https).headers["x-api-key"]).toBe(VALUE)
    expect(last(world.https).body.toString()).toContain(VALUE)
    expect(echoed).not.toContain(VALUE)
    expect(echoed).toContain(box.env.KEY)
  })

  it("Node's global fetch, per call and via setGlobalDispatcher", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const perCall = await globalThis.fetch(world.https.url("api.allowed.test", "/echo"), {
      headers: { "x-api-key": box.env.KEY! },
      dispatcher: box.agent
    } as unknown as RequestInit)
    expect(await perCall.text()).not.toContain(VALUE)
    expect(last(world.https).headers["x-api-key"]).toBe(VALUE)

    const { getGlobalDispatcher, setGlobalDispatcher } = await import("undici")
    const previous = getGlobalDispatcher()
    setGlobalDispatcher(box.agent)
    try {
      const global = await globalThis.fetch(world.https.url("api.allowed.test", "/echo"), {
        method: "POST",
        body: `k=${box.env.KEY}`
      })
      expect(await global.text()).not.toContain(VALUE)
      expect(last(world.https).body.toString()).toBe(`k=${VALUE}`)
    } finally {
      setGlobalDispatcher(previous)
    }
  })

  it("over a ProxyAgent (CONNECT tunnel): the proxy never sees the value", async () => {
    const proxy = await startProxy()
    const proxyAgent = new ProxyAgent({ uri: proxy.url, requestTls: { ca: CA } })
    try {
      const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { dispatcher: proxyAgent })
      const response = await request(world.https.url("api.allowed.test", "/echo"), {
        headers: { authorization: `Bearer ${box.env.KEY}` },
        dispatcher: box.agent
      })
      expect(await response.body.text()).not.toContain(VALUE)
      expect(last(world.https).headers.authorization).toBe(`Bearer ${VALUE}`)
      expect(proxy.connects).toEqual([`api.allowed.test:${world.https.port}`])
      expect(proxy.bytesSeen().includes(VALUE)).toBe(false)
    } finally {
      await proxyAgent.close()
      await proxy.close()
    }
  })

  it("closing the agent closes the Agent it made, never a dispatcher it was given", async () => {
    const { Agent } = await import("undici")
    const given = new Agent(testAgentOptions)
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { dispatcher: given })
    await (await request(world.https.url("api.allowed.test"), { headers: { "x-k": box.env.KEY! }, dispatcher: box.agent })).body.text()
    await box.agent.close()
    expect(given.closed).toBe(false)
    await (await request(world.https.url("api.allowed.test"), { dispatcher: given })).body.text()
    await given.close()

    const own = new SecretgateAgent({ resolver: await world.gate.resolver(box.mount), agentOptions: testAgentOptions })
    await own.close()
    await expect(request(world.https.url("api.allowed.test"), { dispatcher: own })).rejects.toThrow(/destroyed|closed/)
  })

  it("a plain Agent sees the placeholder (the baseline these tests compare against)", async () => {
    const { Agent } = await import("undici")
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    const plain = new Agent(testAgentOptions)
    await (await request(world.https.url("api.allowed.test"), { headers: { "x-k": box.env.KEY! }, dispatcher: plain })).body.text()
    await plain.close()
    expect(last(world.https).headers["x-k"]).toBe(box.env.KEY)
    expect(everything(world.https)).toContain(VALUE) // earlier tests did substitute
  })
})

describe("a resolver that throws", () => {
  it("fails the request with ResolutionFailed (request and fetch) instead of throwing out of dispatch", async () => {
    const box = await world.sandbox({ api: [VALUE, ["api.allowed.test"]] })
    const resolver = { mount: box.mount, current: () => { throw new Error("resolver disposed") } }
    const agent = new SecretgateAgent({ resolver: resolver as never, agentOptions: testAgentOptions })
    try {
      const before = world.https.received.length
      await expect(request(world.https.url("api.allowed.test", "/"), { dispatcher: agent })).rejects.toMatchObject({
        code: "SECRETGATE_RESOLUTION_FAILED",
        message: expect.stringContaining("resolver disposed")
      })
      await expect(undiciFetch(world.https.url("api.allowed.test", "/"), { dispatcher: agent })).rejects.toThrow()
      expect(world.https.received.length).toBe(before)
    } finally {
      await agent.close()
    }
  })
})
