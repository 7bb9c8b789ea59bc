/**
 * Request bodies in every shape undici accepts, read the way undici would read them (its
 * `core/request.js` and `dispatcher/client-h1.js`, 7.30), so that the bytes scanned for
 * placeholders are the bytes that go out. The caller's body never goes downstream: what does is
 * a copy (bytes) or an iterable of this module reading the caller's body once.
 *
 * | shape (undici's test, in its order)                 | read as                                 |
 * |-----------------------------------------------------|-----------------------------------------|
 * | `pipe` + `on` (a stream): FormData / bytes / Blob-like first | as that shape; else its async iterator, or its `data` events (a legacy stream) |
 * | string, `Uint8Array`, other views, `ArrayBuffer`   | bytes of known length (copied)          |
 * | `URLSearchParams` (iterable of pairs: undici fails) | its form serialisation, as `fetch` sends it |
 * | FormData (tag and methods)                          | undici's multipart serialisation        |
 * | Blob-like (a `Blob`, or tag Blob/File with `stream()` or `arrayBuffer()`) | `stream()`, else `arrayBuffer()` |
 * | iterable or async iterable (generators, arrays, a web `ReadableStream`) | its chunks (strings or bytes) |
 * | anything else                                       | passed on for undici to refuse          |
 */
import type { Substitution } from "@secretgate/core"
import { Buffer } from "node:buffer"
import { FormData as UndiciFormData, Response } from "undici"
import { EgressRefused } from "../EgressError.js"

/** A body whose bytes are all here: checked whole before anything is sent. */
export interface KnownBody {
  readonly kind: "known"
  /** A private copy: a caller changing its buffer later changes nothing that goes out. */
  readonly bytes: Buffer
  /** The content type the shape implies (sent when the caller set none). */
  readonly impliedType: string | undefined
}

/** A body read as it streams. */
export interface StreamedBody {
  readonly kind: "streamed"
  readonly source: ChunkSource
  readonly impliedType: string | undefined
  /**
   * Read whole before anything is sent: a Blob or FormData whose size is known and small, so that
   * a refused placeholder anywhere in it stops the request before its first byte.
   */
  readonly whole: boolean
}

/** A primitive undici does not accept either (a number, say): passed on, for undici to refuse. */
export interface ForeignBody {
  readonly kind: "foreign"
}

export type Body = KnownBody | StreamedBody | ForeignBody

/** Chunks of a body, read once: the iterator undici would use, taken once. */
export interface ChunkSource {
  readonly iterator: AsyncIterator<unknown> | Iterator<unknown>
  /** Whether the iterator is a sync one (whose values may be promises, as `for await` takes them). */
  readonly sync: boolean
}

/** A Blob or FormData of at most this many bytes is read whole before it is sent. */
const WHOLE_UP_TO = 1024 * 1024

const FOREIGN: ForeignBody = { kind: "foreign" }

type Shape = Record<PropertyKey, unknown>

/** An object or a function (a function with an iterator is an iterable body to undici). */
const isObject = (value: unknown): value is Shape => (typeof value === "object" && value !== null) || typeof value === "function"

/** undici's `isStream`. */
const isStream = (body: Shape): boolean => typeof body.pipe === "function" && typeof body.on === "function"

/** undici's `isFormDataLike`. */
const isFormDataLike = (body: Shape): boolean =>
  typeof body.append === "function" && typeof body.delete === "function" && typeof body.get === "function" &&
  typeof body.getAll === "function" && typeof body.has === "function" && typeof body.set === "function" &&
  body[Symbol.toStringTag] === "FormData"

/** undici's `isBlobLike`. */
const isBlobLike = (body: Shape): boolean => {
  if (body instanceof Blob) return true
  const tag = body[Symbol.toStringTag]
  return (tag === "Blob" || tag === "File") && (typeof body.stream === "function" || typeof body.arrayBuffer === "function")
}

/** A private copy of the bytes a view or buffer holds. */
const copyOf = (view: ArrayBufferView | ArrayBuffer): Buffer => {
  const source = view instanceof ArrayBuffer ? new Uint8Array(view) : new Uint8Array(view.buffer, view.byteOffset, view.byteLength)
  const copy = Buffer.allocUnsafe(source.byteLength)
  copy.set(source)
  return copy
}

const known = (bytes: Buffer, impliedType?: string): KnownBody => ({ kind: "known", bytes, impliedType })

/** The iterator `for await` would take from `source`, its method read once. */
const iterate = (source: unknown): ChunkSource | undefined => {
  if (!isObject(source) && typeof source !== "string") return undefined
  const shape = source as Shape
  const asyncMethod = shape[Symbol.asyncIterator]
  if (typeof asyncMethod === "function") return { iterator: asyncMethod.call(source) as AsyncIterator<unknown>, sync: false }
  const syncMethod = shape[Symbol.iterator]
  if (typeof syncMethod === "function") return { iterator: syncMethod.call(source) as Iterator<unknown>, sync: true }
  return undefined
}

const streamed = (source: ChunkSource, impliedType: string | undefined, whole: boolean): StreamedBody => ({ kind: "streamed", source, impliedType, whole })

/** One chunk: an `ArrayBuffer` the Blob-like hands over (`arrayBuffer()`), awaited when read. */
const once = (chunk: () => Promise<unknown>): ChunkSource => {
  let done = false
  return {
    sync: false,
    iterator: {
      async next() {
        if (done) return { done: true, value: undefined }
        done = true
        return { done: false, value: await chunk() }
      }
    }
  }
}

/** A Blob-like as undici sends it: `stream()` when it has one, else `arrayBuffer()`; its type. */
const blobBody = (blob: Shape): StreamedBody => {
  const type = blob.type
  // undici sends the type as `${type}` when the caller set no content type
  const impliedType = type === undefined || type === null || type === "" ? undefined : `${type as string}`
  const size = blob.size
  const whole = typeof size === "number" && size <= WHOLE_UP_TO
  const stream = blob.stream
  if (typeof stream === "function") {
    const source = iterate(stream.call(blob))
    if (source === undefined) throw new EgressRefused({ message: "the Blob body's stream() returned something that is not a stream; pass a string, Buffer or stream instead" })
    return streamed(source, impliedType, whole)
  }
  const arrayBuffer = blob.arrayBuffer as () => Promise<unknown>
  return streamed(once(() => arrayBuffer.call(blob)), impliedType, true)
}

/**
 * A FormData as undici serialises it: its entries read once into undici's own `FormData`, whose
 * multipart encoding (boundary, escaping, file parts) undici's `Response` produces.
 */
const formDataBody = (form: Shape): StreamedBody => {
  const entries = iterate(form)
  if (entries === undefined || !entries.sync) {
    throw new EgressRefused({ message: "the FormData body cannot be read (it has no entries iterator); pass a FormData from undici or Node, or a string or stream" })
  }
  const copy = new UndiciFormData()
  let size = 0
  const iterator = entries.iterator as Iterator<unknown>
  for (let step = iterator.next(); step.done !== true; step = iterator.next()) {
    const entry = step.value as unknown
    if (!Array.isArray(entry) || entry.length !== 2) throw new EgressRefused({ message: "the FormData body has an entry that is not a [name, value] pair" })
    const name = `${entry[0] as string}`
    const value: unknown = entry[1]
    if (typeof value === "string") {
      copy.append(name, value)
      size += value.length * 3
    } else if (value instanceof Blob) {
      copy.append(name, value)
      size += value.size
    } else {
      throw new EgressRefused({ message: `the FormData body's field ${JSON.stringify(name)} is neither a string nor a Blob or File, so it cannot be scanned for placeholders` })
    }
  }
  const response = new Response(copy)
  const impliedType = response.headers.get("content-type") ?? undefined
  return streamed(iterate(response.body)!, impliedType, size <= WHOLE_UP_TO)
}

/** Chunks held from a legacy stream before it is paused. */
const LEGACY_HIGH_WATER = 16

/**
 * A legacy stream (`pipe`/`on`, no async iterator) read as undici's `writeStream` reads one: its
 * `data` events until `end`, paused while chunks wait; `error`, or `close` before `end`, fails it.
 * (Node's `Readable.wrap` would drop chunks still buffered when the stream closes.)
 */
const legacyStream = (stream: Shape): ChunkSource => {
  type Emitter = { on(event: string, listener: (...args: Array<unknown>) => void): unknown; removeListener?(event: string, listener: (...args: Array<unknown>) => void): unknown }
  const emitter = stream as unknown as Emitter
  const pause = typeof stream.pause === "function" ? stream.pause as () => void : undefined
  const resume = typeof stream.resume === "function" ? stream.resume as () => void : undefined
  const chunks: Array<unknown> = []
  let ended = false
  let failure: unknown
  let wake: (() => void) | undefined
  const notify = () => {
    const waiting = wake
    wake = undefined
    waiting?.()
  }
  const listeners: Record<string, (...args: Array<unknown>) => void> = {
    data: (chunk) => {
      chunks.push(chunk)
      if (chunks.length >= LEGACY_HIGH_WATER) pause?.call(stream)
      notify()
    },
    end: () => {
      ended = true
      notify()
    },
    error: (error) => {
      failure ??= error ?? new EgressRefused({ message: "the request body stream failed" })
      notify()
    },
    close: () => {
      if (!ended) failure ??= new EgressRefused({ message: "the request body stream closed before it ended" })
      notify()
    }
  }
  for (const [event, listener] of Object.entries(listeners)) emitter.on.call(stream, event, listener)
  resume?.call(stream)
  const detach = () => {
    for (const [event, listener] of Object.entries(listeners)) emitter.removeListener?.call(stream, event, listener)
  }
  return {
    sync: false,
    iterator: {
      async next(): Promise<IteratorResult<unknown>> {
        for (;;) {
          if (chunks.length > 0) {
            const chunk = chunks.shift()
            if (chunks.length === 0) resume?.call(stream)
            return { done: false, value: chunk }
          }
          if (failure !== undefined) {
            detach()
            throw failure
          }
          if (ended) {
            detach()
            return { done: true, value: undefined }
          }
          await new Promise<void>((resolve) => (wake = resolve))
        }
      },
      async return(): Promise<IteratorResult<unknown>> {
        detach()
        if (typeof stream.destroy === "function") (stream.destroy as () => void).call(stream)
        return { done: true, value: undefined }
      }
    }
  }
}

/** The body as undici would read it. Throws `EgressRefused` for a shape that cannot be scanned. */
export const bodyOf = (body: unknown): Body => {
  if (typeof body === "string") return known(Buffer.from(body, "utf8"))
  if (!isObject(body)) return FOREIGN
  if (isStream(body)) {
    // undici keeps a stream as it is, and then writes it as the first of these it is
    if (isFormDataLike(body)) return formDataBody(body)
    if (body instanceof Uint8Array) return known(copyOf(body))
    if (isBlobLike(body)) return blobBody(body)
    const source = iterate(body)
    return streamed(source !== undefined && !source.sync ? source : legacyStream(body), undefined, false)
  }
  if (ArrayBuffer.isView(body) || body instanceof ArrayBuffer) return known(copyOf(body))
  if (body instanceof URLSearchParams) return known(Buffer.from(body.toString(), "utf8"), "application/x-www-form-urlencoded;charset=UTF-8")
  if (isFormDataLike(body)) return formDataBody(body)
  if (isBlobLike(body)) return blobBody(body)
  const source = iterate(body)
  if (source === undefined) {
    // refused here, not by undici: undici would read the object again, and might find a body there
    throw new EgressRefused({
      message: `a request body must be a string, bytes, a Blob, FormData, URLSearchParams, a stream or an (async) iterable; got ${describe(body)}`
    })
  }
  return streamed(source, undefined, false)
}

const describe = (body: Shape): string => {
  const tag = Object.prototype.toString.call(body).slice(8, -1)
  return tag === "Object" ? "a plain object" : `a ${tag}`
}

const toBytes = (chunk: unknown): Uint8Array => {
  if (typeof chunk === "string") return Buffer.from(chunk, "utf8")
  if (chunk instanceof Uint8Array) return chunk
  if (ArrayBuffer.isView(chunk)) return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength)
  if (chunk instanceof ArrayBuffer) return new Uint8Array(chunk)
  throw new EgressRefused({ message: `request body chunks must be strings or bytes, got ${chunk === null ? "null" : typeof chunk}` })
}

/**
 * The pieces of a rewritten chunk as they go out: a large piece (the caller's bytes around a value)
 * as it is, runs of small ones (a value, the bytes between two) joined: copying a large piece costs
 * more than one more write, and a write per small piece more than copying it. With `copy`, every
 * piece is a private copy (see `RewrittenBody`).
 */
const outgoing = (pieces: ReadonlyArray<Buffer>, copy: boolean): Array<Buffer> => {
  /** Pieces shorter than this are joined; longer ones go out as they are. */
  const COPY_BELOW = 16 * 1024
  const out: Array<Buffer> = []
  let small: Array<Buffer> = []
  const flush = () => {
    if (small.length > 0) out.push(small.length === 1 && !copy ? small[0]! : Buffer.concat(small))
    small = []
  }
  for (const piece of pieces) {
    if (piece.length === 0) continue
    if (piece.length < COPY_BELOW) {
      small.push(piece)
      continue
    }
    flush()
    out.push(copy ? Buffer.from(piece) : piece)
  }
  flush()
  return out
}

/**
 * A streamed body rewritten chunk by chunk. Written out rather than as an async generator: a
 * generator pays extra turns of the microtask queue for every chunk, which a fast upload notices.
 *
 * With `copy` (under `onDisallowed: "block"`), what goes out is never the caller's own memory: a
 * chunk changed after it was checked, while it waits in the socket's buffer, would otherwise carry
 * a placeholder past the check. With `whole`, the body is read and checked to its end before the
 * first byte goes out.
 */
export class RewrittenBody implements AsyncIterableIterator<Buffer> {
  private done = false
  /** Pieces still to go. */
  private readonly queue: Array<Buffer> = []

  constructor(
    private readonly source: ChunkSource,
    private readonly rewriter: Substitution.StreamRewriter,
    private readonly copy: boolean,
    private whole: boolean
  ) {}

  [Symbol.asyncIterator](): this {
    return this
  }

  async next(): Promise<IteratorResult<Buffer, undefined>> {
    try {
      if (this.queue.length > 0) return { done: false, value: this.queue.shift()! }
      while (!this.done) {
        await this.fill()
        if (this.whole) {
          if (!this.done) continue
          this.whole = false
        }
        if (this.queue.length > 0) return { done: false, value: this.queue.shift()! }
      }
      return { done: true, value: undefined }
    } catch (error) {
      // a refused chunk (blocked placeholder, not bytes) or a failed source: the body is over, and
      // the source (a file stream, say) gets to close
      this.queue.length = 0
      await this.close()
      throw error
    }
  }

  /**
   * Reads one chunk of the source into the queue (or the rewriter's tail, at the end). Not named
   * `read`: undici calls a body's `read(0)` to find its length.
   */
  private async fill(): Promise<void> {
    const step = await this.source.iterator.next()
    if (step.done === true) {
      this.done = true
      const tail = this.rewriter.end()
      if (tail.length > 0) this.queue.push(tail)
      return
    }
    // a sync iterable may yield promises of chunks, as `for await` would take them
    const chunk: unknown = this.source.sync ? await step.value : step.value
    // one write of the carry and the chunk together; the pieces go out as `outgoing` says
    const pieces = this.rewriter.write(toBytes(chunk))
    if (pieces.length === 1 && !this.copy) {
      if (pieces[0]!.length > 0) this.queue.push(pieces[0]!)
      return
    }
    for (const piece of outgoing(pieces, this.copy)) this.queue.push(piece)
  }

  /** The consumer stopped early (an aborted request): let the source clean up. */
  async return(): Promise<IteratorResult<Buffer, undefined>> {
    await this.close()
    return { done: true, value: undefined }
  }

  /**
   * Lets the source clean up: its `return()` runs now, but is not waited for — a source may never
   * settle it (fetch's own body generator, under some aborts, does not), and the request must not
   * hang on that.
   */
  private async close(): Promise<void> {
    if (this.done) return
    this.done = true
    try {
      const closing = this.source.iterator.return?.()
      if (closing instanceof Promise) closing.catch(() => undefined)
    } catch {
      // the body's own failure (or the abort) is what the request reports
    }
  }
}
