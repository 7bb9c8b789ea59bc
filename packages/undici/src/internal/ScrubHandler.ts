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
  return {
    pairs,
    matcher: Substitution.literalMatcher(pairs.map(([from, to]) => [Buffer.from(from, "utf8"), Buffer.from(to, "utf8")] as const))
  }
}

const scrubText = (pairs: ReadonlyArray<readonly [string, string]>, text: string): string => {
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

/**
 * The controller handed downstream: the real one, except that raw headers and trailers are the
 * scrubbed ones (the unscrubbed bytes must not be reachable through it).
 */
class ScrubController implements Dispatcher.DispatchController {
  rawHeaders: Array<Buffer> | null = null
  rawTrailers: Array<Buffer> | null = null
  constructor(private readonly target: Dispatcher.DispatchController) {}
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
    wrapped.rawHeaders = toRaw(scrubbed)
    ;(this.handler.onRequestUpgrade as ((...args: Array<unknown>) => void) | undefined)?.call(this.handler, wrapped, statusCode, scrubbed, socket)
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: Headers, statusMessage?: string): void {
    const wrapped = this.wrap(controller)
    const encoding = headers["content-encoding"]
    const encodings = (Array.isArray(encoding) ? encoding.join(",") : encoding ?? "").split(",").map((e) => e.trim().toLowerCase()).filter((e) => e !== "" && e !== "identity")
    if (encodings.length > 0) {
      // The value could hide in compressed bytes: refuse rather than pass it on unscrubbed.
      this.failed = true
      const error = new EgressRefused({
        message: `the response is ${encodings.join(", ")}-encoded although identity was requested, so it cannot be scrubbed of secret values; it was not delivered`
      })
      controller.abort(error)
      return
    }
    const scrubbed = scrubHeaders(this.pairs, headers, true)
    wrapped.rawHeaders = toRaw(scrubbed)
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
    wrapped.rawTrailers = toRaw(scrubbed)
    this.handler.onResponseEnd?.(wrapped, scrubbed as never)
  }

  onResponseError(controller: Dispatcher.DispatchController, error: Error): void {
    this.handler.onResponseError?.(this.wrap(controller), error)
  }
}
