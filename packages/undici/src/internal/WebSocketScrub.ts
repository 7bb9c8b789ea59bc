/**
 * Scrubbing of a WebSocket connection (RFC 6455) after a handshake that may have carried values:
 * the frames the server sends are parsed and sent on re-framed, each message's payload rewritten by
 * the response scrubber across its fragments and chunk boundaries. What the client writes passes
 * through unchanged.
 *
 * Re-framing is what an intermediary may do when no extension was negotiated (RFC 6455 §5.4): a
 * message may arrive in other fragments than the server sent, never with other content than the
 * scrubbed one. The handshake offered no extension, so a frame with a reserved bit set, a masked
 * frame, an unknown opcode or a malformed control frame is a protocol error: the connection is
 * closed rather than anything passed on unscrubbed.
 */
import { Substitution } from "@secretgate/core"
import { Buffer } from "node:buffer"
import { Duplex } from "node:stream"
import { EgressRefused } from "../EgressError.js"
import { holds, type Scrubber } from "./ScrubHandler.js"

const EMPTY = Buffer.alloc(0)
const FIN = 0x80
const CONTINUATION = 0x0
const MAX_CONTROL_PAYLOAD = 125
/** Lengths a JS number holds exactly; no real frame comes near. */
const MAX_PAYLOAD = Number.MAX_SAFE_INTEGER

/** The header of an unmasked frame with this payload length. */
const frameHeader = (fin: boolean, opcode: number, length: number): Buffer => {
  const first = (fin ? FIN : 0) | opcode
  if (length < 126) return Buffer.from([first, length])
  if (length < 0x10000) {
    const header = Buffer.alloc(4)
    header[0] = first
    header[1] = 126
    header.writeUInt16BE(length, 2)
    return header
  }
  const header = Buffer.alloc(10)
  header[0] = first
  header[1] = 127
  header.writeUInt32BE(Math.floor(length / 0x1_0000_0000), 2)
  header.writeUInt32BE(length % 0x1_0000_0000, 6)
  return header
}

/**
 * A control frame's payload after scrubbing, within the 125 bytes a control frame may carry: a
 * placeholder may be longer than the value it replaces, and then the text is cut, at a character
 * boundary (a close frame's reason must stay UTF-8; its status code, the first two bytes, stays).
 * Cutting scrubbed bytes cannot bring a value back.
 */
const controlPayload = (scrubber: Scrubber, payload: Buffer): Buffer => {
  const scrubbed = payload.length === 0 ? payload : Substitution.rewriteBytes(scrubber.matcher, payload)
  if (scrubbed.length <= MAX_CONTROL_PAYLOAD) return scrubbed
  let end = MAX_CONTROL_PAYLOAD
  while (end > 2 && (scrubbed[end]! & 0xc0) === 0x80) end--
  return scrubbed.subarray(0, end)
}

interface Frame {
  readonly fin: boolean
  readonly opcode: number
  remaining: number
  /** The payload so far, for a control frame (at most 125 bytes). */
  readonly control: Array<Buffer> | undefined
}

interface Message {
  readonly opcode: number
  readonly rewriter: Substitution.StreamRewriter
  /** Whether a fragment of it went out (later ones are continuations). */
  started: boolean
}

/**
 * The socket of an upgraded WebSocket connection, as the caller gets it: reads are the server's
 * frames scrubbed, writes go to the server as they are.
 */
export class ScrubbedWebSocket extends Duplex {
  readonly #socket: Duplex
  readonly #scrubber: Scrubber
  #header: Buffer = EMPTY
  #frame: Frame | undefined
  #message: Message | undefined

  constructor(socket: Duplex, scrubber: Scrubber) {
    super({ allowHalfOpen: true })
    this.#socket = socket
    this.#scrubber = scrubber
    socket.on("data", (chunk: Buffer) => this.#receive(chunk))
    // a connection that ends mid-frame ends here too; what was held back of a message is dropped
    socket.on("end", () => this.push(null))
    socket.on("error", (error: Error) => this.destroy(error))
    // closed once the caller has read what came before (a close frame, say)
    socket.on("close", () => {
      if (this.destroyed) return
      if (this.readableEnded) return void this.destroy()
      this.once("end", () => this.destroy())
      this.push(null)
    })
    socket.on("timeout", () => this.emit("timeout"))
  }

  /**
   * Node socket methods a WebSocket client may call; they act on the real socket. None hands it a
   * function of the caller's: a listener on the real socket runs with `this` bound to it, and
   * whoever holds it reads the frames before they are scrubbed.
   */
  setNoDelay(noDelay?: boolean): this {
    ;(this.#socket as { setNoDelay?: (noDelay?: boolean) => void }).setNoDelay?.(noDelay)
    return this
  }

  setKeepAlive(enable?: boolean, initialDelay?: number): this {
    ;(this.#socket as { setKeepAlive?: (enable?: boolean, delay?: number) => void }).setKeepAlive?.(enable, initialDelay)
    return this
  }

  setTimeout(timeout: number, callback?: () => void): this {
    ;(this.#socket as { setTimeout?: (timeout: number) => void }).setTimeout?.(timeout)
    // as `net.Socket` does, but on this wrapper: the real socket's "timeout" is re-emitted here
    if (callback !== undefined) {
      if (timeout === 0) this.removeListener("timeout", callback)
      else this.once("timeout", callback)
    }
    return this
  }

  address(): unknown {
    return (this.#socket as { address?: () => unknown }).address?.() ?? {}
  }

  override _read(): void {
    this.#socket.resume()
  }

  override _write(chunk: Buffer, encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.#socket.write(chunk, encoding, callback)
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#socket.end(callback)
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#socket.destroy()
    callback(error)
  }

  #emit(pieces: ReadonlyArray<Buffer>): void {
    let more = true
    for (const piece of pieces) if (piece.length > 0) more = this.push(piece) && more
    if (!more) this.#socket.pause()
  }

  #receive(chunk: Buffer): void {
    let at = 0
    // start of a run of whole frames that go on exactly as they came, or -1
    let asIs = -1
    while (at < chunk.length && !this.destroyed) {
      if (this.#frame === undefined && this.#message === undefined && this.#header.length === 0) {
        const end = this.#cleanFrameEnd(chunk, at)
        if (end !== -1) {
          if (asIs === -1) asIs = at
          at = end
          continue
        }
      }
      if (asIs !== -1) {
        this.#emit([chunk.subarray(asIs, at)])
        asIs = -1
      }
      if (this.#frame === undefined) {
        at = this.#readHeader(chunk, at)
        continue
      }
      const frame = this.#frame
      const take = Math.min(frame.remaining, chunk.length - at)
      const slice = chunk.subarray(at, at + take)
      at += take
      frame.remaining -= take
      if (frame.control !== undefined) {
        frame.control.push(slice)
        if (frame.remaining === 0) this.#endControl(frame)
      } else {
        this.#data(frame, slice)
      }
    }
    if (asIs !== -1 && !this.destroyed) this.#emit([chunk.subarray(asIs, at)])
  }

  /**
   * Where a whole, unfragmented text or binary frame that starts at `at` ends, when it lies entirely
   * in `chunk` and holds nothing to scrub (then it goes on byte for byte, as the common case); -1
   * otherwise (the frame is parsed, checked and re-framed).
   */
  #cleanFrameEnd(chunk: Buffer, at: number): number {
    if (chunk.length - at < 2) return -1
    const first = chunk[at]!
    const second = chunk[at + 1]!
    // FIN, no reserved bit, text or binary; unmasked; a 7- or 16-bit length
    if (first !== (FIN | 0x1) && first !== (FIN | 0x2)) return -1
    if (second >= 127) return -1
    const size = second === 126 ? 4 : 2
    if (chunk.length - at < size) return -1
    const length = second === 126 ? chunk.readUInt16BE(at + 2) : second
    const end = at + size + length
    if (end > chunk.length || holds(this.#scrubber, chunk.subarray(at + size, end))) return -1
    return end
  }

  /** Reads (more of) a frame header from `chunk` at `at`; returns where the header's bytes end. */
  #readHeader(chunk: Buffer, at: number): number {
    // the few header bytes carried over from the last chunk, and at most 14 more of this one
    const carried = this.#header.length
    const available = carried === 0 ? chunk.subarray(at, at + 14) : Buffer.concat([this.#header, chunk.subarray(at, at + 14)])
    const length7 = available.length < 2 ? 0 : available[1]! & 0x7f
    const size = 2 + (length7 === 126 ? 2 : length7 === 127 ? 8 : 0)
    if (available.length < size) {
      this.#header = Buffer.from(available)
      return chunk.length
    }
    this.#header = EMPTY
    const header = available.subarray(0, size)
    const used = size - carried
    const fin = (header[0]! & FIN) !== 0
    const opcode = header[0]! & 0x0f
    if ((header[0]! & 0x70) !== 0) return this.#failed("a reserved bit is set, though no extension was negotiated", chunk)
    if ((header[1]! & 0x80) !== 0) return this.#failed("a frame from the server is masked", chunk)
    const length = length7 === 126
      ? header.readUInt16BE(2)
      : length7 === 127
      ? header.readUInt32BE(2) * 0x1_0000_0000 + header.readUInt32BE(6)
      : length7
    if (length > MAX_PAYLOAD) return this.#failed("a frame longer than 2^53 bytes", chunk)
    const control = (opcode & 0x8) !== 0
    if (control) {
      if (opcode > 0xa) return this.#failed("an unknown control opcode", chunk)
      if (!fin || length > MAX_CONTROL_PAYLOAD) return this.#failed("a fragmented or oversized control frame", chunk)
    } else if (opcode === CONTINUATION) {
      if (this.#message === undefined) return this.#failed("a continuation frame outside a message", chunk)
    } else {
      if (opcode > 0x2) return this.#failed("an unknown data opcode", chunk)
      if (this.#message !== undefined) return this.#failed("a new message before the last one ended", chunk)
      this.#message = { opcode, rewriter: new Substitution.StreamRewriter(this.#scrubber.matcher), started: false }
    }
    const frame: Frame = { fin, opcode, remaining: length, control: control ? [] : undefined }
    this.#frame = frame
    if (length === 0) {
      if (control) this.#endControl(frame)
      else this.#data(frame, EMPTY)
    }
    return at + used
  }

  /** Closes the connection on a protocol error; the rest of the chunk is dropped. */
  #failed(reason: string, chunk: Buffer): number {
    this.destroy(new EgressRefused({
      message: `the WebSocket server broke the protocol (${reason}); the connection was closed so that nothing unscrubbed reaches the sandbox`
    }))
    return chunk.length
  }

  #endControl(frame: Frame): void {
    this.#frame = undefined
    const payload = controlPayload(this.#scrubber, Buffer.concat(frame.control!))
    this.#emit([frameHeader(true, frame.opcode, payload.length), payload])
  }

  /** Part of a data frame's payload: rewritten, and sent on as a fragment of the message. */
  #data(frame: Frame, slice: Buffer): void {
    const message = this.#message!
    const last = frame.remaining === 0
    if (last) this.#frame = undefined
    const pieces = slice.length === 0 ? [] : message.rewriter.write(slice)
    const ends = last && frame.fin
    if (ends) {
      pieces.push(message.rewriter.end())
      this.#message = undefined
    }
    const length = pieces.reduce((sum, piece) => sum + piece.length, 0)
    // a fragment with nothing in it is left out, unless it ends the message
    if (length === 0 && !ends) return
    this.#emit([frameHeader(ends, message.started ? CONTINUATION : message.opcode, length), ...pieces])
    message.started = true
  }
}
