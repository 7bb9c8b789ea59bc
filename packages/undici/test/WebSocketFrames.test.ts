/**
 * The WebSocket frame engine against an in-memory socket. Properties: however a peer fragments
 * its messages, interleaves control frames and however the bytes are cut into chunks, what goes on
 * is exactly each message rewritten whole — server frames scrubbed of the value, client frames with
 * the placeholder substituted and masked again — and nothing else.
 */
import { Placeholder, Substitution } from "@secretgate/core"
import { Redacted } from "effect"
import fc from "fast-check"
import { Buffer } from "node:buffer"
import { Duplex } from "node:stream"
import { describe, expect, it } from "vitest"
import { makeScrubber } from "../src/internal/scrubber.js"
import { ScrubbedWebSocket } from "../src/internal/WebSocketScrub.js"

const VALUE = "sk-live-Fr4m3s-0K"
const PLACEHOLDER = Placeholder.generate()
const scrubber = makeScrubber([{ id: "1", name: "key", placeholder: PLACEHOLDER, hosts: [], value: Redacted.make(VALUE) }])
const outgoing = {
  matcher: Substitution.placeholderMatcher(new Placeholder.Scanner(), (found) => (found === PLACEHOLDER ? Buffer.from(VALUE) : undefined)),
  mayHold: (payload: Buffer) => payload.includes(Placeholder.DEFAULT_PREFIX),
  control: () => {}
}

interface Frame {
  readonly fin: boolean
  readonly opcode: number
  readonly payload: Buffer
}

/** A frame's bytes, masked with `mask` when given. */
const encode = (frame: Frame, mask?: Buffer): Buffer => {
  const length = frame.payload.length
  const second = (mask === undefined ? 0 : 0x80) | (length < 126 ? length : length < 0x10000 ? 126 : 127)
  const extended = length < 126 ? Buffer.alloc(0) : length < 0x10000 ? Buffer.alloc(2) : Buffer.alloc(8)
  if (length >= 126 && length < 0x10000) extended.writeUInt16BE(length)
  if (length >= 0x10000) extended.writeBigUInt64BE(BigInt(length))
  const payload = mask === undefined ? frame.payload : Buffer.from(frame.payload.map((byte, i) => byte ^ mask[i % 4]!))
  return Buffer.concat([Buffer.from([(frame.fin ? 0x80 : 0) | frame.opcode, second]), extended, mask ?? Buffer.alloc(0), payload])
}

/** Every frame in `bytes` (unmasked as needed); throws on a frame cut short. */
const decode = (bytes: Buffer): Array<Frame & { readonly masked: boolean }> => {
  const frames: Array<Frame & { readonly masked: boolean }> = []
  let at = 0
  while (at < bytes.length) {
    const masked = (bytes[at + 1]! & 0x80) !== 0
    let length = bytes[at + 1]! & 0x7f
    let start = at + 2
    if (length === 126) {
      length = bytes.readUInt16BE(start)
      start += 2
    } else if (length === 127) {
      length = Number(bytes.readBigUInt64BE(start))
      start += 8
    }
    const mask = masked ? bytes.subarray(start, start + 4) : undefined
    if (masked) start += 4
    if (start + length > bytes.length) throw new Error("a frame cut short")
    const raw = bytes.subarray(start, start + length)
    frames.push({
      fin: (bytes[at]! & 0x80) !== 0,
      opcode: bytes[at]! & 0x0f,
      masked,
      payload: mask === undefined ? Buffer.from(raw) : Buffer.from(raw.map((byte, i) => byte ^ mask[i % 4]!))
    })
    at = start + length
  }
  return frames
}

/** Data messages reassembled from frames, and the control frames apart. */
const messagesOf = (frames: ReadonlyArray<Frame>) => {
  const messages: Array<{ opcode: number; payload: Buffer }> = []
  const controls: Array<Frame> = []
  let parts: Array<Buffer> = []
  let opcode = 0
  for (const frame of frames) {
    if (frame.opcode >= 0x8) {
      controls.push(frame)
      continue
    }
    if (frame.opcode !== 0) opcode = frame.opcode
    parts.push(frame.payload)
    if (frame.fin) {
      messages.push({ opcode, payload: Buffer.concat(parts) })
      parts = []
    }
  }
  return { messages, controls }
}

/** A message's text: filler with the given string at random places (possibly none). */
const message = (inserted: string) =>
  fc.record({
    binary: fc.boolean(),
    parts: fc.array(fc.oneof(fc.string({ maxLength: 40 }), fc.constant(inserted)), { minLength: 0, maxLength: 6 }),
    // cut points of the payload into fragments (zero-length fragments included)
    cuts: fc.array(fc.nat(300), { maxLength: 5 }),
    ping: fc.option(fc.oneof(fc.constant(`p ${inserted}`), fc.string({ maxLength: 20 })), { nil: undefined })
  })

/** The frames of one message: fragments at the cuts, a ping after the first one. */
const framesOf = (spec: { binary: boolean; parts: Array<string>; cuts: Array<number>; ping: string | undefined }): Array<Frame> => {
  const payload = Buffer.from(spec.parts.join(""))
  const cuts = [...new Set(spec.cuts.map((cut) => Math.min(cut, payload.length)))].sort((a, b) => a - b)
  const bounds = [0, ...cuts, payload.length]
  const frames: Array<Frame> = []
  for (let i = 0; i + 1 < bounds.length; i++) {
    frames.push({ fin: i + 2 === bounds.length, opcode: i === 0 ? (spec.binary ? 0x2 : 0x1) : 0x0, payload: payload.subarray(bounds[i], bounds[i + 1]) })
    if (i === 0 && spec.ping !== undefined) frames.push({ fin: true, opcode: 0x9, payload: Buffer.from(spec.ping) })
  }
  return frames
}

/** Splits bytes at the given cut points. */
const chunked = (bytes: Buffer, cuts: ReadonlyArray<number>): Array<Buffer> => {
  const points = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b)
  const bounds = [0, ...points, bytes.length]
  return bounds.slice(1).map((end, i) => Buffer.from(bytes.subarray(bounds[i], end)))
}

/** A wrapper over an in-memory socket: what the server sends is pushed in, what goes out is kept. */
const connection = () => {
  const written: Array<Buffer> = []
  const real = new Duplex({
    read() {},
    write(chunk: Buffer, _encoding, callback) {
      written.push(chunk)
      callback()
    }
  })
  const socket = new ScrubbedWebSocket(real, scrubber, outgoing)
  const received: Array<Buffer> = []
  socket.on("data", (chunk: Buffer) => received.push(chunk))
  socket.on("error", () => {})
  return { real, socket, written, received }
}

const settle = () => new Promise((resolve) => setImmediate(resolve))

describe("the WebSocket frame engine (properties)", () => {
  it("server frames: each message arrives scrubbed whole, however fragmented and chunked; control payloads too", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(message(VALUE), { minLength: 1, maxLength: 5 }), fc.array(fc.nat(), { maxLength: 12 }), async (specs, cuts) => {
        const { real, socket, received } = connection()
        const bytes = Buffer.concat(specs.flatMap(framesOf).map((frame) => encode(frame)))
        for (const chunk of chunked(bytes, cuts)) real.push(chunk)
        await settle()
        const out = Buffer.concat(received)
        expect(out.includes(VALUE)).toBe(false)
        const { messages, controls } = messagesOf(decode(out))
        expect(messages.map((m) => [m.opcode, m.payload.toString()])).toEqual(
          specs.map((spec) => [spec.binary ? 0x2 : 0x1, spec.parts.join("").replaceAll(VALUE, PLACEHOLDER)])
        )
        expect(controls.map((c) => c.payload.toString())).toEqual(
          specs.flatMap((spec) => (spec.ping === undefined ? [] : [spec.ping.replaceAll(VALUE, PLACEHOLDER).slice(0, 125)]))
        )
        socket.destroy()
      }),
      { numRuns: 150 }
    )
  })

  it("never hands the real socket a view of the caller's buffer (the caller could change it after the check)", () => {
    const { socket, written } = connection()
    const key = Buffer.from([9, 9, 9, 9])
    const frame = Buffer.concat([Buffer.from([0x82, 0x81]), key, Buffer.from([0x41 ^ 9])])
    const original = Buffer.from(frame)
    socket.write(frame)
    frame[1] = 0x80 | 40 // a longer length, after the check
    expect(written).toHaveLength(1)
    expect(written[0]!.equals(original)).toBe(true)
    socket.destroy()
  })

  it("client frames: each message goes out with the placeholder substituted and masked, however fragmented and written", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.array(message(PLACEHOLDER), { minLength: 1, maxLength: 5 }),
        fc.array(fc.nat(), { maxLength: 12 }),
        fc.uint8Array({ minLength: 4, maxLength: 4 }),
        async (specs, cuts, key) => {
          const { socket, written } = connection()
          const bytes = Buffer.concat(specs.flatMap(framesOf).map((frame) => encode(frame, Buffer.from(key))))
          for (const chunk of chunked(bytes, cuts)) socket.write(chunk)
          await settle()
          const frames = decode(Buffer.concat(written))
          expect(frames.every((frame) => frame.masked)).toBe(true)
          const { messages, controls } = messagesOf(frames)
          expect(messages.map((m) => [m.opcode, m.payload.toString()])).toEqual(
            specs.map((spec) => [spec.binary ? 0x2 : 0x1, spec.parts.join("").replaceAll(PLACEHOLDER, VALUE)])
          )
          // control frames go as they are: no value is ever put into one
          expect(controls.map((c) => c.payload.toString())).toEqual(specs.flatMap((spec) => (spec.ping === undefined ? [] : [spec.ping])))
          socket.destroy()
        }
      ),
      { numRuns: 150 }
    )
  })
})
