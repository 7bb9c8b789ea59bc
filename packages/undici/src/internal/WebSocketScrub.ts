/**
 * A WebSocket connection (RFC 6455) after a handshake planned with `webSockets: true`. Both
 * directions are parsed frame by frame and re-framed, each message's payload rewritten across its
 * fragments and chunk boundaries: what the server sends is scrubbed of values (every frame), and
 * what the client sends has the placeholders of secrets allowed for the connection's host replaced
 * by their values (data frames; control frames go as they are).
 *
 * Re-framing is what an intermediary may do when no extension was negotiated (RFC 6455 §5.4): a
 * message may go on in other fragments than it came in, never with other content than the
 * rewritten one. The handshake offered no extension, so a frame with a reserved bit set, a frame
 * masked the wrong way for its direction, an unknown opcode or a malformed control frame is a
 * protocol error: the connection is closed rather than anything passed on unrewritten.
 */
import { Substitution } from "@secretgate/core"
import { Buffer } from "node:buffer"
import { randomFillSync } from "node:crypto"
import { Duplex } from "node:stream"
import { EgressRefused } from "../EgressError.js"
import { holds, type Scrubber } from "./scrubber.js"

const EMPTY = Buffer.alloc(0)
const FIN = 0x80
const MASKED = 0x80
const CONTINUATION = 0x0
const MAX_CONTROL_PAYLOAD = 125
/** Lengths a JS number holds exactly; no real frame comes near. */
const MAX_PAYLOAD = Number.MAX_SAFE_INTEGER

/** How one direction of the connection is handled. */
interface Direction {
  /** Client frames are always masked, server frames never (RFC 6455 §5.1). */
  readonly masked: boolean
  /** Rewrites each data message. */
  readonly matcher: Substitution.Matcher
  /** Whether a whole message may go on exactly as it came (nothing in it to rewrite). */
  readonly clean: (payload: Buffer) => boolean
  /** A control frame's payload as it goes on. */
  readonly control: (payload: Buffer) => Buffer
}

/**
 * A control frame's payload after scrubbing, within the 125 bytes a control frame may carry: a
 * placeholder may be longer than the value it replaces, and then the text is cut, at a character
 * boundary (a close frame's reason must stay UTF-8; its status code, the first two bytes, stays).
 * Cutting scrubbed bytes cannot bring a value back.
 */
const scrubControl = (scrubber: Scrubber) => (payload: Buffer): Buffer => {
  const scrubbed = payload.length === 0 ? payload : Substitution.rewriteBytes(scrubber.matcher, payload)
  if (scrubbed.length <= MAX_CONTROL_PAYLOAD) return scrubbed
  let end = MAX_CONTROL_PAYLOAD
  while (end > 2 && (scrubbed[end]! & 0xc0) === 0x80) end--
  return scrubbed.subarray(0, end)
}

/** Masking keys for client frames: unpredictable (RFC 6455 §10.3), drawn from a refilled pool. */
const masks = { pool: Buffer.alloc(4096), at: 4096 }
const nextMask = (): Buffer => {
  if (masks.at + 4 > masks.pool.length) {
    masks.pool = randomFillSync(Buffer.alloc(4096))
    masks.at = 0
  }
  const mask = masks.pool.subarray(masks.at, masks.at + 4)
  masks.at += 4
  return mask
}

/**
 * `bytes` XOR the masking key, starting `offset` bytes into the payload (a copy): masks and unmasks
 * alike.
 */
const xorMask = (bytes: Buffer, mask: Buffer, offset: number): Buffer => {
  const out = Buffer.allocUnsafe(bytes.length)
  for (let i = 0; i < bytes.length; i++) out[i] = bytes[i]! ^ mask[(offset + i) & 3]!
  return out
}

/** A frame with this payload, masked with a fresh key when `masked`. */
const frameOf = (fin: boolean, opcode: number, pieces: ReadonlyArray<Buffer>, masked: boolean): Array<Buffer> => {
  const length = pieces.reduce((sum, piece) => sum + piece.length, 0)
  const first = (fin ? FIN : 0) | opcode
  const mask = masked ? MASKED : 0
  let header: Buffer
  if (length < 126) {
    header = Buffer.from([first, mask | length])
  } else if (length < 0x10000) {
    header = Buffer.alloc(4)
    header[0] = first
    header[1] = mask | 126
    header.writeUInt16BE(length, 2)
  } else {
    header = Buffer.alloc(10)
    header[0] = first
    header[1] = mask | 127
    header.writeUInt32BE(Math.floor(length / 0x1_0000_0000), 2)
    header.writeUInt32BE(length % 0x1_0000_0000, 6)
  }
  if (!masked) return [header, ...pieces]
  const key = Buffer.from(nextMask())
  return [header, key, xorMask(pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces), key, 0)]
}

interface Frame {
  readonly fin: boolean
  readonly opcode: number
  readonly mask: Buffer | undefined
  readonly length: number
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

/** One direction's frames: parsed, rewritten, re-framed; `emit` gets the bytes that go on. */
class FrameStream {
  #header: Buffer = EMPTY
  #frame: Frame | undefined
  #message: Message | undefined

  constructor(
    private readonly direction: Direction,
    private readonly emit: (pieces: ReadonlyArray<Buffer>) => void,
    /** Called once on a protocol error; nothing after the bad frame goes on. */
    private readonly fail: (reason: string) => void
  ) {}

  failed = false

  write(chunk: Buffer): void {
    let at = 0
    // start of a run of whole frames that go on exactly as they came, or -1
    let asIs = -1
    while (at < chunk.length && !this.failed) {
      if (this.#frame === undefined && this.#message === undefined && this.#header.length === 0) {
        const end = this.#cleanFrameEnd(chunk, at)
        if (end !== -1) {
          if (asIs === -1) asIs = at
          at = end
          continue
        }
      }
      if (asIs !== -1) {
        this.emit([chunk.subarray(asIs, at)])
        asIs = -1
      }
      if (this.#frame === undefined) {
        at = this.#readHeader(chunk, at)
        continue
      }
      const frame = this.#frame
      const take = Math.min(frame.remaining, chunk.length - at)
      const offset = frame.length - frame.remaining
      const raw = chunk.subarray(at, at + take)
      const slice = frame.mask === undefined ? raw : xorMask(raw, frame.mask, offset)
      at += take
      frame.remaining -= take
      if (frame.control !== undefined) {
        frame.control.push(slice)
        if (frame.remaining === 0) this.#endControl(frame)
      } else {
        this.#data(frame, slice)
      }
    }
    if (asIs !== -1 && !this.failed) this.emit([chunk.subarray(asIs, at)])
  }

  /**
   * Where a whole, unfragmented text or binary frame that starts at `at` ends, when it lies entirely
   * in `chunk` and holds nothing to rewrite (then it goes on byte for byte, as the common case); -1
   * otherwise (the frame is parsed, checked and re-framed).
   */
  #cleanFrameEnd(chunk: Buffer, at: number): number {
    if (chunk.length - at < 2) return -1
    const first = chunk[at]!
    const second = chunk[at + 1]!
    // FIN, no reserved bit, text or binary; masked as this direction must be; a 7- or 16-bit length
    if (first !== (FIN | 0x1) && first !== (FIN | 0x2)) return -1
    if (((second & MASKED) !== 0) !== this.direction.masked) return -1
    const length7 = second & 0x7f
    if (length7 === 127) return -1
    const maskAt = at + (length7 === 126 ? 4 : 2)
    const start = maskAt + (this.direction.masked ? 4 : 0)
    if (chunk.length < start) return -1
    const length = length7 === 126 ? chunk.readUInt16BE(at + 2) : length7
    const end = start + length
    if (end > chunk.length) return -1
    const payload = this.direction.masked
      ? xorMask(chunk.subarray(start, end), chunk.subarray(maskAt, maskAt + 4), 0)
      : chunk.subarray(start, end)
    return this.direction.clean(payload) ? end : -1
  }

  /** Reads (more of) a frame header from `chunk` at `at`; returns where the header's bytes end. */
  #readHeader(chunk: Buffer, at: number): number {
    // the few header bytes carried over from the last chunk, and at most 14 more of this one
    const carried = this.#header.length
    const available = carried === 0 ? chunk.subarray(at, at + 14) : Buffer.concat([this.#header, chunk.subarray(at, at + 14)])
    const length7 = available.length < 2 ? 0 : available[1]! & 0x7f
    const masked = available.length >= 2 && (available[1]! & MASKED) !== 0
    const size = 2 + (length7 === 126 ? 2 : length7 === 127 ? 8 : 0) + (masked ? 4 : 0)
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
    if (masked !== this.direction.masked) {
      return this.#failed(this.direction.masked ? "a frame from the client is not masked" : "a frame from the server is masked", chunk)
    }
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
      this.#message = { opcode, rewriter: new Substitution.StreamRewriter(this.direction.matcher), started: false }
    }
    const frame: Frame = {
      fin,
      opcode,
      mask: masked ? Buffer.from(header.subarray(size - 4, size)) : undefined,
      length,
      remaining: length,
      control: control ? [] : undefined
    }
    this.#frame = frame
    if (length === 0) {
      if (control) this.#endControl(frame)
      else this.#data(frame, EMPTY)
    }
    return at + used
  }

  /** Stops on a protocol error; the rest of the chunk is dropped. */
  #failed(reason: string, chunk: Buffer): number {
    this.failed = true
    this.fail(reason)
    return chunk.length
  }

  #endControl(frame: Frame): void {
    this.#frame = undefined
    this.emit(frameOf(true, frame.opcode, [this.direction.control(Buffer.concat(frame.control!))], this.direction.masked))
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
    // a fragment with nothing in it is left out, unless it ends the message
    if (!ends && pieces.every((piece) => piece.length === 0)) return
    this.emit(frameOf(ends, message.started ? CONTINUATION : message.opcode, pieces, this.direction.masked))
    message.started = true
  }
}

/** What the connection does with what the client sends: placeholders in its messages replaced. */
export interface Outgoing {
  readonly matcher: Substitution.Matcher
  /** Whether text may hold a placeholder (a quick test before the matcher runs). */
  readonly mayHold: (payload: Buffer) => boolean
  /**
   * Reports (or, with `block`, throws on) placeholders in a control frame's payload, where no
   * value is ever put.
   */
  readonly control: (payload: Buffer) => void
}

/**
 * The socket of an upgraded WebSocket connection, as the caller gets it: reads are the server's
 * frames scrubbed, writes go to the server with placeholders in messages substituted.
 */
export class ScrubbedWebSocket extends Duplex {
  readonly #socket: Duplex
  readonly #incoming: FrameStream
  readonly #outgoing: FrameStream
  #written: Array<Buffer> = []

  constructor(socket: Duplex, scrubber: Scrubber, outgoing: Outgoing) {
    super({ allowHalfOpen: true })
    this.#socket = socket
    this.#incoming = new FrameStream(
      { masked: false, matcher: scrubber.matcher, clean: (payload) => !holds(scrubber, payload), control: scrubControl(scrubber) },
      (pieces) => this.#push(pieces),
      (reason) => this.destroy(protocolError("server", reason))
    )
    this.#outgoing = new FrameStream(
      {
        masked: true,
        matcher: outgoing.matcher,
        clean: (payload) => !outgoing.mayHold(payload),
        control: (payload) => {
          outgoing.control(payload)
          return payload
        }
      },
      (pieces) => {
        for (const piece of pieces) this.#written.push(piece)
      },
      (reason) => this.destroy(protocolError("client", reason))
    )
    socket.on("data", (chunk: Buffer) => {
      try {
        this.#incoming.write(chunk)
      } catch (error) {
        // nothing of this chunk goes on; the connection is closed rather than the process crashed
        this.destroy(error instanceof Error ? error : new Error(String(error)))
      }
    })
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

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    try {
      this.#outgoing.write(chunk)
    } catch (error) {
      // a placeholder that may not be sent here, with onDisallowed: "block"
      this.destroy(error as Error)
      return callback(error as Error)
    }
    if (this.#outgoing.failed) return callback(protocolError("client", "see the error the connection was closed with"))
    const out = this.#written
    this.#written = []
    if (out.length === 0) return callback()
    // Always a copy: a clean frame goes on as a view of the caller's own buffer, which the caller
    // could change after the check while the socket still holds it (a plain TCP socket queues
    // what the kernel has not taken yet) — say, a length that makes the server swallow the next,
    // substituted frame and echo it back still masked, past the scrubber.
    this.#socket.write(Buffer.concat(out), callback)
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.#socket.end(callback)
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.#socket.destroy()
    callback(error)
  }

  #push(pieces: ReadonlyArray<Buffer>): void {
    let more = true
    for (const piece of pieces) if (piece.length > 0) more = this.push(piece) && more
    if (!more) this.#socket.pause()
  }
}

const protocolError = (side: "server" | "client", reason: string): EgressRefused =>
  new EgressRefused({
    message: `the WebSocket ${side} broke the protocol (${reason}); the connection was closed so that nothing ${
      side === "server" ? "unscrubbed reaches the sandbox" : "unchecked reaches the server"
    }`
  })
