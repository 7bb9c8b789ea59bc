/**
 * Response scrubbing: no value of the given secrets reaches the handler. Each value and re-encoded
 * Basic credential, in every form `scrubber.ts` knows (as UTF-8 and Latin-1 bytes, under nested
 * JSON, percent and HTML escape syntaxes), is replaced by the secret's placeholder (or the caller's original credentials) in the
 * status text, the headers, the body (streamed, boundary-safe) and the trailers; an error that
 * carries upstream bytes holding a value is replaced by one that does not.
 */
import { Substitution } from "@secretgate/core"
import { Buffer } from "node:buffer"
import type { Duplex } from "node:stream"
import type { Dispatcher } from "undici"
import { EgressRefused } from "../EgressError.js"
import { holds, isLatin1, type Scrubber, scrubBytes } from "./scrubber.js"
import { type Outgoing, ScrubbedWebSocket } from "./WebSocketScrub.js"

type Headers = Record<string, string | Array<string> | undefined>

/** A header string as undici decodes header bytes (Latin-1), scrubbed as bytes. */
const scrubString = (scrubber: Scrubber, text: string, ignoreCase = false): string => {
  if (scrubber.empty || text.length === 0) return text
  const bytes = Buffer.from(text, isLatin1(text) ? "latin1" : "utf8")
  const scrubbed = scrubBytes(scrubber, bytes, ignoreCase)
  return scrubbed === bytes ? text : scrubbed.toString("latin1")
}

/** A header name as undici hands it over (lower-cased): matched without regard to case. */
const scrubName = (scrubber: Scrubber, name: string): string => scrubString(scrubber, name, true)

const scrubHeaders = (scrubber: Scrubber, headers: Headers | null | undefined, dropLength: boolean): Headers => {
  const out: Headers = {}
  if (headers === null || headers === undefined) return out
  for (const name in headers) {
    const value = headers[name]
    if (value === undefined) continue
    if (dropLength && name.length === 14 && name.toLowerCase() === "content-length") continue
    out[scrubName(scrubber, name)] = Array.isArray(value) ? value.map((item) => scrubString(scrubber, item)) : scrubString(scrubber, value)
  }
  return out
}

const toRaw = (headers: Headers): Array<Buffer> => {
  const raw: Array<Buffer> = []
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue
    for (const item of Array.isArray(value) ? value : [value]) raw.push(Buffer.from(name, "latin1"), Buffer.from(item, "latin1"))
  }
  return raw
}

/** Whether an error (its message, stack, fields, causes) holds any pattern. */
const errorHolds = (scrubber: Scrubber, value: unknown, depth = 0, seen = new Set<unknown>()): boolean => {
  if (depth > 6 || value === null || value === undefined || seen.has(value)) return false
  if (typeof value === "string") return holds(scrubber, Buffer.from(value, "utf8")) || (isLatin1(value) && holds(scrubber, Buffer.from(value, "latin1")))
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return holds(scrubber, Buffer.from(value.buffer, value.byteOffset, value.byteLength))
  if (typeof value !== "object") return false
  seen.add(value)
  const fields = new Set<PropertyKey>(Object.getOwnPropertyNames(value))
  for (const key of ["message", "stack", "cause", "errors", "data"]) fields.add(key)
  for (const key of fields) {
    let field: unknown
    try {
      field = (value as Record<PropertyKey, unknown>)[key]
    } catch {
      continue
    }
    if (Array.isArray(field) ? field.some((item) => errorHolds(scrubber, item, depth + 1, seen)) : errorHolds(scrubber, field, depth + 1, seen)) return true
  }
  return false
}

/** The error itself, or, when it holds a value (upstream bytes in a parser error, say), one that does not. */
export const sanitizeError = (scrubber: Scrubber | undefined, error: Error): Error => {
  if (scrubber === undefined || !errorHolds(scrubber, error)) return error
  const code = (error as { code?: unknown }).code
  const detail = typeof code === "string" ? ` (${code})` : ""
  return new EgressRefused({
    message: `the request failed with ${error.name}${detail}; its details held a secret value and were withheld`
  })
}

/** The encodings other than identity that a `content-encoding` value names. */
const encodingsOf = (value: string | ReadonlyArray<string>): Array<string> =>
  (typeof value === "string" ? value : value.join(",")).split(",").map((e) => e.trim().toLowerCase()).filter((e) => e !== "" && e !== "identity")

const refuseEncoded = (encodings: ReadonlyArray<string>): EgressRefused =>
  new EgressRefused({
    message: `the response is ${encodings.join(", ")}-encoded although identity was requested, so it cannot be scrubbed of secret values; it was not delivered`
  })

/**
 * Why a response cannot be scrubbed, if so: a content coding, or a transfer coding other than
 * `chunked` (undici removes only the chunked framing, so a `gzip, chunked` body arrives compressed).
 */
const codingRefusal = (
  contentEncoding: string | ReadonlyArray<string> | undefined,
  transferEncoding: string | ReadonlyArray<string> | undefined
): EgressRefused | undefined => {
  const codings = [
    ...(contentEncoding === undefined ? [] : encodingsOf(contentEncoding)),
    ...(transferEncoding === undefined ? [] : encodingsOf(transferEncoding).filter((coding) => coding !== "chunked"))
  ]
  return codings.length === 0 ? undefined : refuseEncoded(codings)
}

/**
 * The handshake offered no extension; a server that answers with one (compression, say) would send
 * frames that cannot be scrubbed.
 */
const extensionRefusal = (value: string | ReadonlyArray<string> | undefined): EgressRefused | undefined =>
  value === undefined || (typeof value === "string" ? value : value.join(",")).trim() === ""
    ? undefined
    : new EgressRefused({
      message: "the WebSocket server accepted an extension that was not offered (compression, say), so its frames could not be scrubbed; the connection was closed"
    })

/**
 * The controller handed downstream: pause, resume and abort go to the real one, which stays out of
 * reach (a private field), and raw headers and trailers are the scrubbed ones, built only if asked.
 */
class ScrubController implements Dispatcher.DispatchController {
  scrubbedHeaders: Headers | undefined
  scrubbedTrailers: Headers | undefined
  readonly #target: Dispatcher.DispatchController
  constructor(target: Dispatcher.DispatchController) {
    this.#target = target
  }
  get rawHeaders(): Array<Buffer> | null {
    return this.scrubbedHeaders === undefined ? null : toRaw(this.scrubbedHeaders)
  }
  get rawTrailers(): Array<Buffer> | null {
    return this.scrubbedTrailers === undefined ? null : toRaw(this.scrubbedTrailers)
  }
  get aborted() {
    return this.#target.aborted
  }
  get paused() {
    return this.#target.paused
  }
  get reason() {
    return this.#target.reason
  }
  abort(reason: Error) {
    this.#target.abort(reason)
  }
  pause() {
    this.#target.pause()
  }
  resume() {
    this.#target.resume()
  }
}

/**
 * Scrubbing for a handler of undici's v7 API (`onResponseStart`, ...).
 */
export class ScrubHandler implements Dispatcher.DispatchHandler {
  private controller: ScrubController | undefined
  private readonly rewriter: Substitution.StreamRewriter
  private failed = false

  constructor(
    private readonly handler: Dispatcher.DispatchHandler,
    private readonly scrubber: Scrubber,
    private readonly webSocket: Outgoing | undefined
  ) {
    this.rewriter = new Substitution.StreamRewriter(scrubber.matcher)
  }

  private wrap(controller: Dispatcher.DispatchController): ScrubController {
    if (this.controller === undefined) this.controller = new ScrubController(controller)
    return this.controller
  }

  onRequestStart(controller: Dispatcher.DispatchController, context: unknown): void {
    this.handler.onRequestStart?.(this.wrap(controller), context)
  }

  onRequestUpgrade(controller: Dispatcher.DispatchController, statusCode: number, headers: Headers, socket: Duplex): void {
    const wrapped = this.wrap(controller)
    const refused = this.webSocket !== undefined ? extensionRefusal(headers["sec-websocket-extensions"]) : undefined
    if (refused !== undefined) {
      socket.destroy()
      this.handler.onResponseError?.(wrapped, refused)
      return
    }
    const scrubbed = scrubHeaders(this.scrubber, headers, false)
    wrapped.scrubbedHeaders = scrubbed
    ;(this.handler.onRequestUpgrade as ((...args: Array<unknown>) => void) | undefined)?.call(
      this.handler,
      wrapped,
      statusCode,
      scrubbed,
      this.webSocket !== undefined ? new ScrubbedWebSocket(socket, this.scrubber, this.webSocket) : socket
    )
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: Headers, statusMessage?: string): void {
    const wrapped = this.wrap(controller)
    const refused = this.scrubber.empty ? undefined : codingRefusal(headers["content-encoding"], headers["transfer-encoding"])
    if (refused !== undefined) {
      // The value could hide in compressed bytes: refuse rather than pass it on unscrubbed.
      this.failed = true
      controller.abort(refused)
      return
    }
    const scrubbed = scrubHeaders(this.scrubber, headers, true)
    wrapped.scrubbedHeaders = scrubbed
    this.handler.onResponseStart?.(wrapped, statusCode, scrubbed as never, scrubString(this.scrubber, statusMessage ?? ""))
  }

  /**
   * The rewriter's answer for the next chunk (`undefined`: the end), or `undefined` when it refused
   * to go on: the response is cut off (at its end, where there is nothing left to abort, it fails).
   */
  private rewrite(controller: Dispatcher.DispatchController, chunk: Buffer | undefined): Buffer | undefined {
    try {
      return chunk === undefined ? this.rewriter.end() : this.rewriter.push(chunk)
    } catch (error) {
      this.failed = true
      const reason = sanitizeError(this.scrubber, error as Error)
      if (chunk === undefined) this.handler.onResponseError?.(this.wrap(controller), reason)
      else controller.abort(reason)
      return undefined
    }
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.failed) return
    // one chunk on for one chunk in: a dense echo's many replacements are joined here, in one
    // native copy, rather than pushed through the body stream a few bytes at a time
    const scrubbed = this.rewrite(controller, chunk)
    if (scrubbed !== undefined && scrubbed.length > 0) this.handler.onResponseData?.(this.wrap(controller), scrubbed)
  }

  onResponseEnd(controller: Dispatcher.DispatchController, trailers: Headers): void {
    if (this.failed) return
    const wrapped = this.wrap(controller)
    const tail = this.rewrite(controller, undefined)
    if (tail === undefined) return
    if (tail.length > 0) this.handler.onResponseData?.(wrapped, tail)
    const scrubbed = scrubHeaders(this.scrubber, trailers, false)
    wrapped.scrubbedTrailers = scrubbed
    this.handler.onResponseEnd?.(wrapped, scrubbed as never)
  }

  onResponseError(controller: Dispatcher.DispatchController, error: Error): void {
    this.handler.onResponseError?.(this.wrap(controller), sanitizeError(this.scrubber, error))
  }
}

/** A handler of undici's older API (`onHeaders`, `onData`, ...), as `undici.request` and `fetch` pass. */
interface LegacyHandler {
  onConnect?(abort: (reason?: Error) => void, context?: unknown): void
  onUpgrade?(statusCode: number, rawHeaders: Array<Buffer>, socket: unknown): void
  onResponseStarted?(): void
  onHeaders?(statusCode: number, rawHeaders: Array<Buffer>, resume: () => void, statusText?: string): boolean | void
  onData?(chunk: Buffer): boolean | void
  onComplete?(rawTrailers: Array<Buffer> | null): void
  onError?(error: Error): void
}

/** Whether a raw header name is `name` (lower-case letters and `-`), compared byte by byte. */
const nameIs = (raw: Buffer | string, name: string): boolean => {
  if (raw.length !== name.length) return false
  if (typeof raw === "string") return raw.toLowerCase() === name
  for (let i = 0; i < name.length; i++) {
    const expected = name.charCodeAt(i)
    const byte = raw[i]!
    if (byte !== expected && !(expected >= 0x61 && expected <= 0x7a && byte === expected - 0x20)) return false
  }
  return true
}

/**
 * The same scrubbing for a handler of undici's older API, receiving raw header bytes straight from
 * the connection: no conversion to and from header objects, and a header with nothing to scrub is
 * passed on as the very same bytes.
 */
export class LegacyScrubHandler implements LegacyHandler {
  private readonly rewriter: Substitution.StreamRewriter
  private abort: ((reason?: Error) => void) | undefined
  private failed = false

  constructor(private readonly handler: LegacyHandler, private readonly scrubber: Scrubber, private readonly webSocket: Outgoing | undefined) {
    this.rewriter = new Substitution.StreamRewriter(scrubber.matcher)
  }

  private scrubRaw(raw: ReadonlyArray<Buffer | string> | null, dropLength: boolean): Array<Buffer> {
    const out: Array<Buffer> = []
    if (raw === null) return out
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = raw[i]!
      if (dropLength && nameIs(name, "content-length")) continue
      out.push(this.bytes(name, true), this.bytes(raw[i + 1]!))
    }
    return out
  }

  private bytes(value: Buffer | string, ignoreCase = false): Buffer {
    return scrubBytes(this.scrubber, typeof value === "string" ? Buffer.from(value, "latin1") : value, ignoreCase)
  }

  onConnect(abort: (reason?: Error) => void, context?: unknown): void {
    this.abort = abort
    this.handler.onConnect?.(abort, context)
  }

  onUpgrade(statusCode: number, rawHeaders: Array<Buffer>, socket: Duplex): void {
    if (this.webSocket !== undefined) {
      const extensions: Array<string> = []
      for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
        if (nameIs(rawHeaders[i]!, "sec-websocket-extensions")) extensions.push(rawHeaders[i + 1]!.toString("latin1"))
      }
      const refused = extensionRefusal(extensions.length === 0 ? undefined : extensions)
      if (refused !== undefined) {
        socket.destroy()
        this.onError(refused)
        return
      }
    }
    this.handler.onUpgrade?.(
      statusCode,
      this.scrubRaw(rawHeaders, false),
      this.webSocket !== undefined ? new ScrubbedWebSocket(socket, this.scrubber, this.webSocket) : socket
    )
  }

  onResponseStarted(): void {
    this.handler.onResponseStarted?.()
  }

  onHeaders(statusCode: number, rawHeaders: Array<Buffer>, resume: () => void, statusText?: string): boolean | void {
    for (let i = 0; !this.scrubber.empty && i + 1 < rawHeaders.length; i += 2) {
      const name = rawHeaders[i]!
      const content = nameIs(name, "content-encoding")
      if (!content && !nameIs(name, "transfer-encoding")) continue
      const value = rawHeaders[i + 1]!.toString("latin1")
      const refused = content ? codingRefusal(value, undefined) : codingRefusal(undefined, value)
      if (refused !== undefined) {
        // The value could hide in compressed bytes: refuse rather than pass it on unscrubbed.
        this.failed = true
        if (this.abort !== undefined) this.abort(refused)
        else this.onError(refused)
        return false
      }
    }
    const text = statusText === undefined ? undefined : scrubString(this.scrubber, statusText)
    return this.handler.onHeaders?.(statusCode, this.scrubRaw(rawHeaders, true), resume, text)
  }

  /**
   * The rewriter's answer for the next chunk (`undefined`: the end), or `undefined` when it refused
   * to go on: the response is cut off (at its end, where there is nothing left to abort, it fails).
   */
  private rewrite(chunk: Buffer | undefined): Buffer | undefined {
    try {
      return chunk === undefined ? this.rewriter.end() : this.rewriter.push(chunk)
    } catch (error) {
      this.failed = true
      if (this.abort !== undefined && chunk !== undefined) this.abort(error as Error)
      else this.onError(error as Error)
      return undefined
    }
  }

  onData(chunk: Buffer): boolean | void {
    if (this.failed) return true
    const scrubbed = this.rewrite(chunk)
    return scrubbed === undefined || scrubbed.length === 0 || this.handler.onData?.(scrubbed) !== false
  }

  onComplete(rawTrailers: Array<Buffer> | null): void {
    if (this.failed) return
    const tail = this.rewrite(undefined)
    if (tail === undefined) return
    if (tail.length > 0) this.handler.onData?.(tail)
    this.handler.onComplete?.(this.scrubRaw(rawTrailers, false))
  }

  onError(error: Error): void {
    if (this.handler.onError === undefined) throw sanitizeError(this.scrubber, error)
    this.handler.onError(sanitizeError(this.scrubber, error))
  }
}

/**
 * A scrubbing wrapper for a handler of either undici API; for a WebSocket handshake, the upgraded
 * connection's frames are handled too (incoming scrubbed, outgoing substituted).
 */
export const scrubbing = (
  handler: Dispatcher.DispatchHandler,
  scrubber: Scrubber,
  webSocket?: Outgoing
): Dispatcher.DispatchHandler =>
  typeof handler.onRequestStart === "function" || typeof handler.onResponseStart === "function"
    ? new ScrubHandler(handler, scrubber, webSocket)
    : new LegacyScrubHandler(handler as LegacyHandler, scrubber, webSocket) as unknown as Dispatcher.DispatchHandler
