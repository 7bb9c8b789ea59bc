/**
 * WebSocket handshakes with `webSockets: true`: the value goes into the handshake only on an allowed
 * host over TLS, and the frames the server sends back are scrubbed — across fragments, TCP
 * boundaries and interleaved control frames — or the connection is closed when they cannot be.
 * Clients: undici's `WebSocket`, and `undici.upgrade` for the raw bytes.
 */
import { Buffer } from "node:buffer"
import type { Duplex } from "node:stream"
import { connect, upgrade, WebSocket } from "undici"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { makeWorld, type World } from "./support/fixture.js"
import { startWebSocketUpstream, type WebSocketUpstream } from "./support/webSocketUpstream.js"

const VALUE = "sk-live-W3bS0ck3t-0K"

let world: World
let ws: WebSocketUpstream
beforeAll(async () => {
  world = await makeWorld()
  ws = await startWebSocketUpstream()
})
afterAll(async () => {
  await ws.close()
  await world.close()
})

/** Opens a WebSocket through the agent; collects messages until the connection closes or `count` arrive. */
const converse = (url: string, agent: unknown, authorization: string, send: ReadonlyArray<string> = [], count = Infinity) =>
  new Promise<{ messages: Array<string>; closed: { code: number; reason: string } | undefined; error: boolean }>((resolve) => {
    const socket = new WebSocket(url, { dispatcher: agent as never, headers: { authorization } })
    const messages: Array<string> = []
    let error = false
    const done = (closed?: { code: number; reason: string }) => resolve({ messages, closed, error })
    socket.binaryType = "arraybuffer"
    socket.onopen = () => {
      for (const text of send) socket.send(text)
    }
    socket.onmessage = (event) => {
      messages.push(typeof event.data === "string" ? event.data : Buffer.from(event.data as ArrayBuffer).toString("latin1"))
      if (messages.length >= count) {
        socket.close()
      }
    }
    socket.onerror = () => {
      error = true
    }
    socket.onclose = (event) => done({ code: event.code, reason: event.reason })
  })

/** The raw bytes of an upgraded connection through the agent, until the server stops sending. */
const rawUpgrade = async (url: string, agent: unknown, authorization: string, quietMs = 150) => {
  const http = url.replace(/^wss:/, "https:")
  const { socket, headers } = await upgrade(http, {
    dispatcher: agent as never,
    protocol: "websocket",
    headers: { authorization, "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==", "sec-websocket-version": "13", "sec-websocket-extensions": "permessage-deflate" }
  })
  const chunks: Array<Buffer> = []
  const errors: Array<Error> = []
  ;(socket as Duplex).on("error", (error) => errors.push(error))
  await new Promise<void>((resolve) => {
    let timer = setTimeout(resolve, quietMs)
    ;(socket as Duplex).on("data", (chunk: Buffer) => {
      chunks.push(chunk)
      clearTimeout(timer)
      timer = setTimeout(resolve, quietMs)
    })
    ;(socket as Duplex).on("close", () => resolve())
  })
  ;(socket as Duplex).destroy()
  return { bytes: Buffer.concat(chunks), headers, errors }
}

/** Decodes unmasked server frames: [fin, opcode, payload] each. */
const framesOf = (bytes: Buffer) => {
  const frames: Array<{ fin: boolean; opcode: number; payload: Buffer }> = []
  let at = 0
  while (at + 2 <= bytes.length) {
    let length = bytes[at + 1]! & 0x7f
    let start = at + 2
    if (length === 126) {
      length = bytes.readUInt16BE(at + 2)
      start = at + 4
    } else if (length === 127) {
      length = Number(bytes.readBigUInt64BE(at + 2))
      start = at + 10
    }
    frames.push({ fin: (bytes[at]! & 0x80) !== 0, opcode: bytes[at]! & 0x0f, payload: bytes.subarray(start, start + length) })
    at = start + length
  }
  return frames
}

describe("WebSocket handshakes (webSockets: true)", () => {
  it("the allowed host gets the value in the handshake and in messages; echoes come back as the placeholder", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { webSockets: true })
    const result = await converse(ws.url("api.allowed.test", "/ws/echo"), box.agent, `Bearer ${box.env.KEY}`, [`again ${box.env.KEY}`], 2)
    expect(ws.handshakes.at(-1)!.headers.authorization).toBe(`Bearer ${VALUE}`)
    expect(ws.messages.at(-1)).toBe(`again ${VALUE}`)
    expect(result.messages).toEqual([`you sent Bearer ${box.env.KEY}`, `again ${box.env.KEY}`])
    expect(box.events).toContainEqual(expect.objectContaining({ type: "substituted", secret: "key", host: "api.allowed.test", surface: "header" }))
    expect(box.events).toContainEqual(expect.objectContaining({ type: "substituted", secret: "key", host: "api.allowed.test", surface: "message" }))
  })

  it("a placeholder the client splits across masked fragments and writes is substituted (every split point)", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { webSockets: true })
    const text = Buffer.from(`{"auth":"${box.env.KEY}","n":1}`)
    const masked = (fin: boolean, opcode: number, payload: Buffer) => {
      const key = Buffer.from([0x12, 0x34, 0x56, 0x78])
      const body = Buffer.from(payload.map((byte, i) => byte ^ key[i % 4]!))
      return Buffer.concat([Buffer.from([(fin ? 0x80 : 0) | opcode, 0x80 | payload.length]), key, body])
    }
    for (let split = 1; split < text.length; split += 3) {
      const { socket } = await upgrade(`https://api.allowed.test:${ws.port}/ws/echo`, {
        dispatcher: box.agent,
        protocol: "websocket",
        headers: { "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==", "sec-websocket-version": "13" }
      })
      const before = ws.messages.length
      const bytes = Buffer.concat([masked(false, 0x1, text.subarray(0, split)), masked(true, 0x0, text.subarray(split))])
      // and the TCP writes cut the frames elsewhere again
      const cut = Math.min(bytes.length - 1, split + 5)
      socket.write(bytes.subarray(0, cut))
      socket.write(bytes.subarray(cut))
      await expect.poll(() => ws.messages.length).toBe(before + 1)
      expect([split, ws.messages.at(-1)]).toEqual([split, `{"auth":"${VALUE}","n":1}`])
      socket.destroy()
    }
  })

  it("a placeholder in a message to a host its secret is not allowed for stays, or with block closes the connection", async () => {
    const forward = await world.sandbox({ key: [VALUE, ["api.allowed.test"]], other: ["other-value", ["other.test"]] }, { webSockets: true })
    const sent = await converse(ws.url("api.allowed.test", "/ws/echo"), forward.agent, "none", [`k=${forward.env.OTHER}`], 2)
    expect(ws.messages.at(-1)).toBe(`k=${forward.env.OTHER}`)
    expect(sent.messages).toEqual(["you sent none", `k=${forward.env.OTHER}`])
    expect(forward.events).toContainEqual(expect.objectContaining({ type: "withheld", secret: "other", host: "api.allowed.test", surface: "message", reason: "host-not-allowed" }))

    const block = await world.sandbox({ key: [VALUE, ["api.allowed.test"]], other: ["other-value", ["other.test"]] }, { webSockets: true, onDisallowed: "block" })
    const before = ws.messages.length
    const blocked = await converse(ws.url("api.allowed.test", "/ws/echo"), block.agent, "none", [`k=${block.env.OTHER}`])
    expect(ws.messages.length).toBe(before)
    expect(blocked.closed?.code).not.toBe(1000)
    expect(block.events).toContainEqual(expect.objectContaining({ type: "blocked", secret: "other", host: "api.allowed.test", surface: "message", reason: "host-not-allowed" }))
  })

  it("a placeholder in a client's control frame is never substituted: withheld, or with block the connection closes", async () => {
    const ping = (text: string) => {
      const key = Buffer.from([1, 2, 3, 4])
      const payload = Buffer.from(text)
      return Buffer.concat([Buffer.from([0x89, 0x80 | payload.length]), key, Buffer.from(payload.map((byte, i) => byte ^ key[i % 4]!))])
    }
    for (const onDisallowed of ["forward", "block"] as const) {
      const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { webSockets: true, onDisallowed })
      const { socket } = await upgrade(`https://api.allowed.test:${ws.port}/ws/echo`, {
        dispatcher: box.agent,
        protocol: "websocket",
        headers: { "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==", "sec-websocket-version": "13" }
      })
      const errors: Array<Error> = []
      socket.on("error", (error: Error) => errors.push(error))
      socket.write(ping(`p ${box.env.KEY}`))
      const event = { type: onDisallowed === "block" ? "blocked" : "withheld", secret: "key", host: "api.allowed.test", surface: "message", reason: "unsafe-position" }
      await expect.poll(() => box.events).toContainEqual(expect.objectContaining(event))
      if (onDisallowed === "block") await expect.poll(() => errors.map((error) => error.message)).toEqual([expect.stringMatching(/blocked/)])
      else expect(errors).toEqual([])
      socket.destroy()
    }
  })

  it("a large message from the client (16-bit length, many TCP chunks) is substituted", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { webSockets: true })
    const filler = "z".repeat(30_000)
    await converse(ws.url("api.allowed.test", "/ws/echo"), box.agent, "none", [`${filler}${box.env.KEY}${filler}`], 2)
    expect(ws.messages.at(-1)).toBe(`${filler}${VALUE}${filler}`)
  })

  it("no extension is offered, so frames come uncompressed", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { webSockets: true })
    await converse(ws.url("api.allowed.test", "/ws/echo"), box.agent, `Bearer ${box.env.KEY}`, [], 1)
    expect(ws.handshakes.at(-1)!.headers["sec-websocket-extensions"]).toBeUndefined()
  })

  for (const size of [1, 2, 3, 7, 16, 64]) {
    it(`a value split across fragments of ${size} bytes, TCP writes of 5 and an interleaved ping is scrubbed`, async () => {
      const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { webSockets: true })
      const { bytes } = await rawUpgrade(ws.url("api.allowed.test", `/ws/fragments?size=${size}`), box.agent, `Bearer ${box.env.KEY}`)
      expect(bytes.includes(VALUE)).toBe(false)
      const frames = framesOf(bytes)
      const data = frames.filter((f) => f.opcode <= 0x2)
      expect(data[0]!.opcode).toBe(0x1)
      expect(data.slice(1).every((f) => f.opcode === 0x0)).toBe(true)
      expect(data.at(-1)!.fin).toBe(true)
      expect(data.slice(0, -1).every((f) => !f.fin)).toBe(true)
      expect(Buffer.concat(data.map((f) => f.payload)).toString()).toBe(JSON.stringify({ token: `Bearer ${box.env.KEY}` }))
      const ping = frames.find((f) => f.opcode === 0x9)!
      expect(ping.payload.toString()).toBe(`Bearer ${box.env.KEY}`.slice(0, 125))
    })
  }

  it("through a v7 handler too (an agent with redirects composes one)", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { webSockets: true, maxRedirections: 3 })
    const { bytes } = await rawUpgrade(ws.url("api.allowed.test", "/ws/fragments?size=3"), box.agent, `Bearer ${box.env.KEY}`)
    expect(ws.handshakes.at(-1)!.headers.authorization).toBe(`Bearer ${VALUE}`)
    expect(bytes.includes(VALUE)).toBe(false)
    const data = framesOf(bytes).filter((f) => f.opcode <= 0x2)
    expect(Buffer.concat(data.map((f) => f.payload)).toString()).toBe(JSON.stringify({ token: `Bearer ${box.env.KEY}` }))
    const result = await converse(ws.url("api.allowed.test", "/ws/echo"), box.agent, `Bearer ${box.env.KEY}`, [], 1)
    expect(result.messages).toEqual([`you sent Bearer ${box.env.KEY}`])
    const deflate = upgrade(`https://api.allowed.test:${ws.port}/ws/deflate`, {
      dispatcher: box.agent,
      protocol: "websocket",
      headers: { authorization: `Bearer ${box.env.KEY}`, "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==", "sec-websocket-version": "13" }
    })
    await expect(deflate).rejects.toThrow(/extension that was not offered/)
  })

  it("frames with nothing to scrub go on byte for byte, in order, around one that is scrubbed", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { webSockets: true })
    const { bytes } = await rawUpgrade(ws.url("api.allowed.test", "/ws/mixed"), box.agent, `Bearer ${box.env.KEY}`)
    const frames = framesOf(bytes)
    const expected = Array.from({ length: 50 }, (_, i) => i === 25 ? `token Bearer ${box.env.KEY}` : `message ${i}`)
    expect(frames.filter((f) => f.opcode === 0x1).map((f) => f.payload.toString())).toEqual(expected)
    expect(frames.map((f) => f.opcode).indexOf(0x9)).toBe(10)
    expect(frames.every((f) => f.fin)).toBe(true)
    expect(bytes.includes(VALUE)).toBe(false)
  })

  it("undici's WebSocket reassembles the re-framed message", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { webSockets: true })
    const result = await converse(ws.url("api.allowed.test", "/ws/fragments?size=4"), box.agent, `Bearer ${box.env.KEY}`, [], 1)
    expect(result.messages).toEqual([JSON.stringify({ token: `Bearer ${box.env.KEY}` })])
  })

  it("a close frame whose reason echoes the value is scrubbed, its code kept", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { webSockets: true })
    const result = await converse(ws.url("api.allowed.test", "/ws/close"), box.agent, `Bearer ${box.env.KEY}`)
    expect(result.closed).toEqual({ code: 4000, reason: `Bearer ${box.env.KEY}` })
  })

  it("a large binary message (64-bit length) with the value in the middle is scrubbed", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { webSockets: true })
    const result = await converse(ws.url("api.allowed.test", "/ws/big"), box.agent, `Bearer ${box.env.KEY}`, [], 1)
    expect(result.messages).toHaveLength(1)
    const message = result.messages[0]!
    expect(message.length).toBe(200 * 1024 + `Bearer ${box.env.KEY}`.length)
    expect(message.includes(VALUE)).toBe(false)
    expect(message.includes(`Bearer ${box.env.KEY}`)).toBe(true)
  })

  for (const kind of ["rsv", "masked", "opcode", "continuation"]) {
    it(`a frame that breaks the protocol (${kind}) closes the connection before anything after it`, async () => {
      const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { webSockets: true })
      const { bytes, errors } = await rawUpgrade(ws.url("api.allowed.test", `/ws/bad?kind=${kind}`), box.agent, `Bearer ${box.env.KEY}`)
      expect(bytes.length).toBe(0)
      expect(errors.map((error) => error.message)).toEqual([expect.stringMatching(/broke the protocol/)])
      const result = await converse(ws.url("api.allowed.test", `/ws/bad?kind=${kind}`), box.agent, `Bearer ${box.env.KEY}`)
      expect(result.messages).toEqual([])
      expect(result.closed?.code).not.toBe(1000)
    })
  }

  it("the socket handed over never exposes the real one (a setTimeout callback runs on the wrapper)", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { webSockets: true })
    const { socket } = await upgrade(`https://api.allowed.test:${ws.port}/ws/fragments?size=4`, {
      dispatcher: box.agent,
      protocol: "websocket",
      headers: { authorization: `Bearer ${box.env.KEY}`, "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==", "sec-websocket-version": "13" }
    })
    const seen: Array<Buffer> = []
    const owners: Array<unknown> = []
    socket.on("data", (chunk: Buffer) => seen.push(chunk))
    await new Promise<void>((resolve) => {
      ;(socket as Duplex & { setTimeout(ms: number, callback: () => void): void }).setTimeout(1, function(this: unknown) {
        owners.push(this)
        // hostile code would listen here for the bytes before scrubbing
        ;(this as Duplex).on("data", (chunk: Buffer) => seen.push(chunk))
        resolve()
      })
    })
    await new Promise((resolve) => setTimeout(resolve, 200))
    socket.destroy()
    expect(owners).toEqual([socket])
    expect(Buffer.concat(seen).includes(VALUE)).toBe(false)
    expect(Buffer.concat(seen).includes(box.env.KEY!)).toBe(true)
  })

  it("a server that accepts an extension not offered is refused", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { webSockets: true })
    const attempt = upgrade(`https://api.allowed.test:${ws.port}/ws/deflate`, {
      dispatcher: box.agent,
      protocol: "websocket",
      headers: { authorization: `Bearer ${box.env.KEY}`, "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==", "sec-websocket-version": "13" }
    })
    await expect(attempt).rejects.toThrow(/extension that was not offered/)
    const result = await converse(ws.url("api.allowed.test", "/ws/deflate"), box.agent, `Bearer ${box.env.KEY}`)
    expect(result.messages).toEqual([])
  })

  it("another host gets the placeholder in the handshake and in messages", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { webSockets: true })
    const result = await converse(ws.url("evil.test", "/ws/echo"), box.agent, `Bearer ${box.env.KEY}`, [`again ${box.env.KEY}`], 2)
    expect(ws.handshakes.at(-1)!.headers.authorization).toBe(`Bearer ${box.env.KEY}`)
    expect(ws.messages.at(-1)).toBe(`again ${box.env.KEY}`)
    expect(result.messages).toEqual([`you sent Bearer ${box.env.KEY}`, `again ${box.env.KEY}`])
    expect(box.events).toContainEqual(expect.objectContaining({ type: "withheld", secret: "key", host: "evil.test", surface: "message", reason: "host-not-allowed" }))
  })

  it("without webSockets (the default) a handshake carries the placeholder only", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
    await converse(ws.url("api.allowed.test", "/ws/echo"), box.agent, `Bearer ${box.env.KEY}`, [], 1)
    expect(ws.handshakes.at(-1)!.headers.authorization).toBe(`Bearer ${box.env.KEY}`)
    expect(box.events).toContainEqual(expect.objectContaining({ type: "withheld", secret: "key", host: "api.allowed.test", surface: "header", reason: "unsafe-position" }))
  })

  it("a CONNECT, a non-WebSocket upgrade or a WebSocket upgrade that is not a GET still carries no value", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { webSockets: true })
    const before = ws.handshakes.length
    const headers = { authorization: `Bearer ${box.env.KEY}`, "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==", "sec-websocket-version": "13" }
    const url = `https://api.allowed.test:${ws.port}/ws/echo`
    const close = ({ socket }: { socket: unknown }) => (socket as Duplex).destroy()
    await upgrade(url, { dispatcher: box.agent, protocol: "h2c", headers }).then(close, () => undefined)
    await upgrade(url, { dispatcher: box.agent, protocol: "websocket", method: "POST", headers }).then(close, () => undefined)
    await connect(url, { dispatcher: box.agent, headers }).then(close, () => undefined)
    const seen = ws.handshakes.slice(before)
    expect(seen.map((h) => h.path)).toEqual(["/ws/echo", "/ws/echo", expect.stringMatching(/^CONNECT /)])
    expect(seen.map((h) => h.headers.authorization)).toEqual(Array(3).fill(`Bearer ${box.env.KEY}`))
    expect(box.events.filter((e) => e.type === "substituted")).toEqual([])
  })

  it("a server's ping that, scrubbed, would exceed 125 bytes is cut to 125, with no value in it", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { webSockets: true })
    const { bytes } = await rawUpgrade(ws.url("api.allowed.test", "/ws/ping-long"), box.agent, `Bearer ${box.env.KEY}`)
    const [ping] = framesOf(bytes)
    expect(ping!.opcode).toBe(0x9)
    expect(ping!.payload.toString()).toBe(`${"x".repeat(98)}${box.env.KEY}`.slice(0, 125))
  })

  it("a close reason cut to fit stays UTF-8 (cut before a character, not inside it), its code kept", async () => {
    const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] }, { webSockets: true })
    const result = await converse(ws.url("api.allowed.test", "/ws/close-long"), box.agent, `Bearer ${box.env.KEY}`)
    expect(result.closed).toEqual({ code: 4000, reason: `${box.env.KEY}${"é".repeat(40)}` })
  })
})
