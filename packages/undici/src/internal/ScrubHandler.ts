/**
 * Wraps a response handler so that no value of the given secrets reaches it: every form of each
 * value (raw, JSON-escaped, URL-encoded, re-encoded Basic credentials) is replaced by the secret's
 * placeholder in the response headers, the body (streamed, boundary-safe) and the trailers.
 */
import { type Secrets, Substitution } from "@secretgate/core"
import { Redacted } from "effect"
import { Buffer } from "node:buffer"
import type { Dispatcher } from "undici"
import { EgressRefused } from "../EgressError.js"
import { echoForms } from "./encoding.js"

type Headers = Record<string, string | Array<string> | undefined>

/** How to scrub one response: literal replacements (longest first) and their byte matcher. */
export interface Scrubber {
  readonly pairs: ReadonlyArray<readonly [string, string]>
  /** The `from` side of `pairs` as bytes. */
  readonly patterns: ReadonlyArray<Buffer>
  /** Length of the shortest pattern: shorter text cannot hold any. */
  readonly shortest: number
  readonly matcher: Substitution.Matcher
}

/**
 * The scrubber for these secrets: every echo form of each value → its placeholder, and re-encoded
 * Basic credentials → the caller's original ones.
 */
export const makeScrubber = (
  secrets: ReadonlyArray<Secrets.ResolvedSecret>,
  basicEchoes: ReadonlyArray<readonly [string, string]>
): Scrubber => {
  const map = new Map<string, string>()
  for (const [sent, original] of basicEchoes) {
    map.set(sent, original)
    const token = sent.trim().split(/\s+/)[1]
    const originalToken = original.trim().split(/\s+/)[1]
    if (token !== undefined && originalToken !== undefined) map.set(token, originalToken)
  }
  for (const secret of secrets) {
    for (const form of echoForms(Redacted.value(secret.value))) if (!map.has(form)) map.set(form, secret.placeholder)
  }
  const pairs = [...map].sort((a, b) => b[0].length - a[0].length)
  const patterns = pairs.map(([from]) => Buffer.from(from, "utf8"))
  return {
    pairs,
    patterns,
    shortest: Math.min(...pairs.map(([from]) => from.length)),
    matcher: Substitution.literalMatcher(pairs.map(([, to], i) => [patterns[i]!, Buffer.from(to, "utf8")] as const))
  }
}

const scrubText = (pairs: ReadonlyArray<readonly [string, string]>, text: string): string => {
  if (text.length < (pairs[pairs.length - 1]?.[0].length ?? 0)) return text
  let out = text
  for (const [from, to] of pairs) if (out.includes(from)) out = out.replaceAll(from, to)
  return out
}

const scrubHeaders = (pairs: ReadonlyArray<readonly [string, string]>, headers: Headers | null | undefined, dropLength: boolean): Headers => {
  const out: Headers = {}
  if (headers === null || headers === undefined) return out
  for (const [name, value] of Object.entries(headers)) {
    if (value === undefined) continue
    if (dropLength && name.toLowerCase() === "content-length") continue
    out[scrubText(pairs, name)] = Array.isArray(value) ? value.map((item) => scrubText(pairs, item)) : scrubText(pairs, value)
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

/** The encodings other than identity that a `content-encoding` value names. */
const encodingsOf = (value: string | ReadonlyArray<string>): Array<string> =>
  (typeof value === "string" ? value : value.join(",")).split(",").map((e) => e.trim().toLowerCase()).filter((e) => e !== "" && e !== "identity")

const refuseEncoded = (encodings: ReadonlyArray<string>): EgressRefused =>
  new EgressRefused({
    message: `the response is ${encodings.join(", ")}-encoded although identity was requested, so it cannot be scrubbed of secret values; it was not delivered`
  })

/**
 * The controller handed downstream: the real one, except that raw headers and trailers are the
 * scrubbed ones (the unscrubbed bytes must not be reachable through it), built only if asked for.
 */
class ScrubController implements Dispatcher.DispatchController {
  scrubbedHeaders: Headers | undefined
  scrubbedTrailers: Headers | undefined
  constructor(private readonly target: Dispatcher.DispatchController) {}
  get rawHeaders(): Array<Buffer> | null {
    return this.scrubbedHeaders === undefined ? null : toRaw(this.scrubbedHeaders)
  }
  get rawTrailers(): Array<Buffer> | null {
    return this.scrubbedTrailers === undefined ? null : toRaw(this.scrubbedTrailers)
  }
  get aborted() {
    return this.target.aborted
  }
  get paused() {
    return this.target.paused
  }
  get reason() {
    return this.target.reason
  }
  abort(reason: Error) {
    this.target.abort(reason)
  }
  pause() {
    this.target.pause()
  }
  resume() {
    this.target.resume()
  }
}

/**
 * @see module comment
 */
export class ScrubHandler implements Dispatcher.DispatchHandler {
  private controller: ScrubController | undefined
  private readonly rewriter: Substitution.StreamRewriter
  private failed = false

  private readonly pairs: ReadonlyArray<readonly [string, string]>

  constructor(private readonly handler: Dispatcher.DispatchHandler, scrubber: Scrubber) {
    this.pairs = scrubber.pairs
    this.rewriter = new Substitution.StreamRewriter(scrubber.matcher)
  }

  private wrap(controller: Dispatcher.DispatchController): ScrubController {
    if (this.controller === undefined) this.controller = new ScrubController(controller)
    return this.controller
  }

  onRequestStart(controller: Dispatcher.DispatchController, context: unknown): void {
    this.handler.onRequestStart?.(this.wrap(controller), context)
  }

  onRequestUpgrade(controller: Dispatcher.DispatchController, statusCode: number, headers: Headers, socket: unknown): void {
    const scrubbed = scrubHeaders(this.pairs, headers, false)
    const wrapped = this.wrap(controller)
    wrapped.scrubbedHeaders = scrubbed
    ;(this.handler.onRequestUpgrade as ((...args: Array<unknown>) => void) | undefined)?.call(this.handler, wrapped, statusCode, scrubbed, socket)
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: Headers, statusMessage?: string): void {
    const wrapped = this.wrap(controller)
    const encoding = headers["content-encoding"]
    const encodings = encoding === undefined ? [] : encodingsOf(encoding)
    if (encodings.length > 0) {
      // The value could hide in compressed bytes: refuse rather than pass it on unscrubbed.
      this.failed = true
      controller.abort(refuseEncoded(encodings))
      return
    }
    const scrubbed = scrubHeaders(this.pairs, headers, true)
    wrapped.scrubbedHeaders = scrubbed
    this.handler.onResponseStart?.(wrapped, statusCode, scrubbed as never, scrubText(this.pairs, statusMessage ?? ""))
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.failed) return
    const out = this.rewriter.push(chunk)
    if (out.length > 0) this.handler.onResponseData?.(this.wrap(controller), out)
  }

  onResponseEnd(controller: Dispatcher.DispatchController, trailers: Headers): void {
    if (this.failed) return
    const wrapped = this.wrap(controller)
    const tail = this.rewriter.end()
    if (tail.length > 0) this.handler.onResponseData?.(wrapped, tail)
    const scrubbed = scrubHeaders(this.pairs, trailers, false)
    wrapped.scrubbedTrailers = scrubbed
    this.handler.onResponseEnd?.(wrapped, scrubbed as never)
  }

  onResponseError(controller: Dispatcher.DispatchController, error: Error): void {
    this.handler.onResponseError?.(this.wrap(controller), error)
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

const CONTENT_LENGTH = "content-length"
const CONTENT_ENCODING = "content-encoding"

const nameIs = (raw: Buffer | string, name: string): boolean =>
  raw.length === name.length && raw.toString("latin1").toLowerCase() === name

/**
 * The same scrubbing for a handler of undici's older API, receiving raw header bytes straight from
 * the connection: no conversion to and from header objects, and a header with nothing to scrub is
 * passed on as the very same bytes.
 */
export class LegacyScrubHandler implements LegacyHandler {
  private readonly rewriter: Substitution.StreamRewriter
  private abort: ((reason?: Error) => void) | undefined
  private failed = false

  constructor(private readonly handler: LegacyHandler, private readonly scrubber: Scrubber) {
    this.rewriter = new Substitution.StreamRewriter(scrubber.matcher)
  }

  private scrubRaw(raw: ReadonlyArray<Buffer | string> | null, dropLength: boolean): Array<Buffer> {
    const out: Array<Buffer> = []
    if (raw === null) return out
    for (let i = 0; i + 1 < raw.length; i += 2) {
      const name = raw[i]!
      if (dropLength && nameIs(name, CONTENT_LENGTH)) continue
      out.push(this.scrubBytes(name), this.scrubBytes(raw[i + 1]!))
    }
    return out
  }

  private scrubBytes(bytes: Buffer | string): Buffer {
    const buffer = typeof bytes === "string" ? Buffer.from(bytes, "latin1") : bytes
    if (buffer.length < this.scrubber.shortest) return buffer
    for (const pattern of this.scrubber.patterns) {
      if (buffer.includes(pattern)) return Buffer.from(scrubText(this.scrubber.pairs, buffer.toString("utf8")), "utf8")
    }
    return buffer
  }

  onConnect(abort: (reason?: Error) => void, context?: unknown): void {
    this.abort = abort
    this.handler.onConnect?.(abort, context)
  }

  onUpgrade(statusCode: number, rawHeaders: Array<Buffer>, socket: unknown): void {
    this.handler.onUpgrade?.(statusCode, this.scrubRaw(rawHeaders, false), socket)
  }

  onResponseStarted(): void {
    this.handler.onResponseStarted?.()
  }

  onHeaders(statusCode: number, rawHeaders: Array<Buffer>, resume: () => void, statusText?: string): boolean | void {
    for (let i = 0; i + 1 < rawHeaders.length; i += 2) {
      if (!nameIs(rawHeaders[i]!, CONTENT_ENCODING)) continue
      const encodings = encodingsOf(rawHeaders[i + 1]!.toString("latin1"))
      if (encodings.length > 0) {
        // The value could hide in compressed bytes: refuse rather than pass it on unscrubbed.
        this.failed = true
        const error = refuseEncoded(encodings)
        if (this.abort !== undefined) this.abort(error)
        else this.onError(error)
        return false
      }
    }
    return this.handler.onHeaders?.(statusCode, this.scrubRaw(rawHeaders, true), resume, statusText === undefined ? undefined : scrubText(this.scrubber.pairs, statusText))
  }

  onData(chunk: Buffer): boolean | void {
    if (this.failed) return true
    const out = this.rewriter.push(chunk)
    return out.length > 0 ? this.handler.onData?.(out) : true
  }

  onComplete(rawTrailers: Array<Buffer> | null): void {
    if (this.failed) return
    const tail = this.rewriter.end()
    if (tail.length > 0) this.handler.onData?.(tail)
    this.handler.onComplete?.(this.scrubRaw(rawTrailers, false))
  }

  onError(error: Error): void {
    if (this.handler.onError === undefined) throw error
    this.handler.onError(error)
  }
}

/** A scrubbing wrapper for a handler of either undici API. */
export const scrubbing = (handler: Dispatcher.DispatchHandler, scrubber: Scrubber): Dispatcher.DispatchHandler =>
  typeof handler.onRequestStart === "function" || typeof handler.onResponseStart === "function"
    ? new ScrubHandler(handler, scrubber)
    : new LegacyScrubHandler(handler as LegacyHandler, scrubber) as unknown as Dispatcher.DispatchHandler
