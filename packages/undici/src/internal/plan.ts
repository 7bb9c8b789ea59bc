/**
 * The per-request work of the interceptor: decide, for every placeholder in the request, whether
 * its value goes in, and produce the rewritten dispatch options. Never mutates the caller's options.
 */
import { type Placeholder, type Secrets, Substitution } from "@secretgate/core"
import { Redacted } from "effect"
import { Buffer } from "node:buffer"
import type { Dispatcher } from "undici"
import type { AuditEvent, AuditSink, Surface, WithheldReason } from "../AuditEvent.js"
import { DisallowedValue, EgressRefused, SubstitutionBlocked, UnsafeSubstitution } from "../EgressError.js"
import { type Allowance, allowanceFor, namesTarget, NOTHING, type Target, type Targets, valuesScrubber } from "./destination.js"
import { bodyEncoder, decodeBasic, encodeBasic, forUrl } from "./encoding.js"
import type { Retention } from "./retention.js"
import { type Scrubber, secretsIn, withBasicEchoes } from "./scrubber.js"
import type { Outgoing } from "./WebSocketScrub.js"

type ResolvedSecret = Secrets.ResolvedSecret

/** What stays the same for every request of one interceptor. */
export interface Settings {
  readonly scanners: ReadonlyArray<Placeholder.Scanner>
  /** Placeholder → name of every mounted secret. */
  readonly mounted: ReadonlyMap<string, string>
  readonly targets: Targets
  readonly onDisallowed: "forward" | "block"
  readonly audit: AuditSink | undefined
  /** Whether WebSocket handshakes may carry values (their frames are then scrubbed). */
  readonly webSockets: boolean
  /** The values this agent held that are no longer current, still scrubbed (see `retention.ts`). */
  readonly retention: Retention
}

/** The outcome for one request. */
export interface Plan {
  readonly options: Dispatcher.DispatchOptions
  /** How to scrub the response, or `undefined` when no mounted secret may go to this destination. */
  readonly scrub: Scrubber | undefined
  /**
   * For a WebSocket handshake (with `webSockets: true`): how the client's messages are rewritten;
   * the frames that come back are scrubbed with `scrub`.
   */
  readonly webSocket: Outgoing | undefined
}

/** How a value is written where a placeholder stood. */
const enum Into {
  Header,
  Credentials,
  Url,
  Query
}

/**
 * One request's decisions. Lives as long as its request: a streamed body keeps using it after
 * dispatch.
 */
class Rewriter {
  private emitted: Set<string> | undefined
  /** Authorization headers as sent → as the caller wrote them, for scrubbing an echo. */
  readonly basicEchoes: Array<readonly [sent: string, original: string]> = []

  constructor(
    private readonly settings: Settings,
    private readonly values: ReadonlyMap<string, ResolvedSecret>,
    private readonly allowance: Allowance,
    private readonly target: Target,
    /** Set when nothing may be substituted anywhere in this request, and why. */
    private readonly restricted: WithheldReason | undefined
  ) {}

  /** The secret whose value replaces `placeholder` here, or `undefined` to leave it (or throws to block). */
  secretFor(placeholder: string, surface: Surface): ResolvedSecret | undefined {
    const secret = this.values.get(placeholder)
    const reason: WithheldReason | undefined = secret === undefined
      ? (this.settings.mounted.has(placeholder) ? "unavailable" : "not-mounted")
      : this.restricted !== undefined
      ? this.restricted
      : !this.target.secure
      ? "insecure-scheme"
      : !this.allowance.allowed.has(secret)
      ? "host-not-allowed"
      : undefined
    if (reason === undefined) {
      if (this.settings.audit !== undefined) this.emit({ type: "substituted", secret: secret!.name, host: this.target.host, surface })
      return secret
    }
    this.withhold(secret?.name ?? this.settings.mounted.get(placeholder), surface, reason)
    return undefined
  }

  /** A placeholder stays: audit it, and with `onDisallowed: "block"` fail the request. */
  private withhold(name: string | undefined, surface: Surface, reason: WithheldReason): void {
    const blocked = this.settings.onDisallowed === "block"
    if (this.settings.audit !== undefined) {
      this.emit({ type: blocked ? "blocked" : "withheld", secret: name, host: this.target.host, surface, reason })
    }
    if (blocked) {
      throw new SubstitutionBlocked({
        message: `request to ${this.target.host} blocked: its ${surface} holds the placeholder of ${
          name === undefined ? "a secret not mounted for this sandbox" : `secret ${JSON.stringify(name)}`
        }, which may not be sent there (${reason})`,
        secret: name,
        host: this.target.host,
        surface,
        reason
      })
    }
  }

  /** Reports (or blocks on) every placeholder in `text`, which stands where no value is ever put. */
  withholdIn(text: string, surface: Surface): void {
    if (!this.mayHold(text)) return
    for (const scanner of this.settings.scanners) {
      for (const placeholder of scanner.findAll(text)) this.refuse(placeholder, surface, "unsafe-position")
    }
  }

  private refuse(placeholder: string, surface: Surface, reason: WithheldReason): void {
    const name = this.values.get(placeholder)?.name ?? this.settings.mounted.get(placeholder)
    this.withhold(name, surface, reason)
  }

  /** `text` with every placeholder whose value may go here replaced, written as `into` requires. */
  replaceText(text: string, into: Into, headerName = ""): string {
    let out = text
    for (const scanner of this.settings.scanners) {
      if (!out.includes(scanner.prefix)) continue
      out = scanner.replaceIn(out, (placeholder) => {
        const secret = this.secretFor(placeholder, into === Into.Url || into === Into.Query ? "url" : "header")
        if (secret === undefined) return undefined
        const value = Redacted.value(secret.value)
        switch (into) {
          case Into.Header: {
            if (this.allowance.unsafeInHeader.size > 0 && this.allowance.unsafeInHeader.has(secret)) {
              throw new UnsafeSubstitution({
                message: `secret ${JSON.stringify(secret.name)} cannot be sent in header ${JSON.stringify(headerName)}: its value holds a control or non-Latin-1 character (CR, LF and NUL could split the request)`,
                secret: secret.name,
                surface: "header"
              })
            }
            return value
          }
          case Into.Url:
            return forUrl(value)
          case Into.Credentials:
          case Into.Query: // undici percent-encodes query values itself
            return value
        }
      })
    }
    return out
  }

  /** A header value after substitution; Basic credentials are decoded, substituted, re-encoded. */
  header(name: string, value: string): string {
    this.withholdIn(name, "header")
    const lower = name.length === 13 || name.length === 19 ? name.toLowerCase() : ""
    if (lower === "authorization" || lower === "proxy-authorization") {
      const basic = decodeBasic(value)
      if (basic !== undefined && this.mayHold(basic.credentials)) {
        const credentials = this.replaceText(basic.credentials, Into.Credentials)
        if (credentials === basic.credentials) return value
        const sent = encodeBasic(basic.scheme, credentials, basic.tail)
        this.basicEchoes.push([sent, value])
        return sent
      }
    }
    return this.mayHold(value) ? this.replaceText(value, Into.Header, name) : value
  }

  /** Whether text (or bytes: a placeholder prefix is ASCII) may hold a placeholder. */
  mayHold(text: string | Buffer): boolean {
    for (const scanner of this.settings.scanners) if (text.includes(scanner.prefix)) return true
    return false
  }

  /** Rewrites body bytes (or WebSocket messages): values encoded for the content type. */
  bodyMatcher(contentType: string | undefined, surface: Surface = "body"): Substitution.Matcher {
    const encode = bodyEncoder(contentType)
    const replace = (placeholder: string) => {
      const secret = this.secretFor(placeholder, surface)
      return secret === undefined ? undefined : Buffer.from(encode(Redacted.value(secret.value)), "utf8")
    }
    const matchers = this.settings.scanners.map((scanner) => Substitution.placeholderMatcher(scanner, replace))
    if (matchers.length === 1) return matchers[0]!
    return {
      maxLength: Math.max(...matchers.map((m) => m.maxLength)),
      find(bytes, from, end, atEnd) {
        let best: Substitution.Match | undefined
        for (const m of matchers) {
          const found = m.find(bytes, from, end, atEnd)
          if (found !== undefined && (best === undefined || found.index < best.index)) best = found
        }
        return best
      }
    }
  }

  private emit(event: AuditEvent) {
    const key = `${event.type}\0${event.secret ?? ""}\0${event.surface}\0${"reason" in event ? event.reason : ""}`
    this.emitted ??= new Set()
    if (this.emitted.has(key)) return
    this.emitted.add(key)
    try {
      this.settings.audit!(event)
    } catch {
      // an audit sink must not break egress
    }
  }
}

/** Flat `[name, value, ...]` headers being rewritten. */
class HeaderList {
  readonly flat: Array<string> = []
  changed = false

  constructor(private readonly rewriter: Rewriter) {}

  add(name: unknown, value: unknown): void {
    if (value === undefined || value === null) return
    const key = typeof name === "string" ? name : Buffer.isBuffer(name) ? name.toString("latin1") : String(name)
    if (Array.isArray(value)) for (const item of value) this.addOne(key, item)
    else this.addOne(key, value)
  }

  private addOne(name: string, value: unknown): void {
    const text = typeof value === "string" ? value : Buffer.isBuffer(value) ? value.toString("latin1") : String(value)
    if (name.length === 4 && name.toLowerCase() === "host") {
      // never substituted: undici takes the TLS server name from it
      this.rewriter.withholdIn(text, "header")
      this.flat.push(name, text)
      return
    }
    const next = this.rewriter.header(name, text)
    if (next !== text) this.changed = true
    this.flat.push(name, next)
  }
}

type HeaderEntry = readonly [name: string, value: unknown]

const nameText = (name: unknown): string =>
  typeof name === "string" ? name : Buffer.isBuffer(name) ? name.toString("latin1") : String(name)

/** The caller's headers, in every form undici accepts, as `[name, value]` entries (read once). */
const headerEntries = (headers: Dispatcher.DispatchOptions["headers"]): Array<HeaderEntry> => {
  const entries: Array<HeaderEntry> = []
  if (headers === null || headers === undefined) return entries
  if (Array.isArray(headers)) {
    if (headers.length > 0 && Array.isArray(headers[0])) for (const [name, value] of headers as unknown as Array<[unknown, unknown]>) entries.push([nameText(name), value])
    else for (let i = 0; i < headers.length; i += 2) entries.push([nameText(headers[i]), headers[i + 1]])
  } else if (typeof (headers as Iterable<unknown>)[Symbol.iterator] === "function") {
    for (const [name, value] of headers as Iterable<[unknown, unknown]>) entries.push([nameText(name), value])
  } else {
    const record = headers as Record<string, unknown>
    for (const name in record) entries.push([name, record[name]])
  }
  return entries
}

const valuesOf = (value: unknown): Array<string> =>
  value === undefined || value === null
    ? []
    : (Array.isArray(value) ? value : [value]).map((item) => (Buffer.isBuffer(item) ? item.toString("latin1") : String(item)))

/**
 * Why nothing at all may be substituted into this request, if so: it upgrades the connection to
 * anything but a WebSocket whose frames will be scrubbed (other traffic cannot be), or it names
 * another host than the one it connects to — in a `Host` header, a TLS `servername` or an
 * absolute-form path — which is where a shared front end would really route it.
 */
const restrictionOf = (
  options: Dispatcher.DispatchOptions,
  target: Target,
  entries: ReadonlyArray<HeaderEntry>,
  webSocket: boolean
): WithheldReason | undefined => {
  if (options.upgrade !== undefined && options.upgrade !== null && options.upgrade !== false && !webSocket) return "unsafe-position"
  if (typeof options.method === "string" && options.method.toUpperCase() === "CONNECT") return "unsafe-position"
  for (const [name, value] of entries) {
    if (name.length === 4 && name.toLowerCase() === "host" && valuesOf(value).some((host) => !namesTarget(target, host))) return "host-mismatch"
  }
  const servername = (options as { servername?: unknown }).servername
  if (servername !== undefined && servername !== null && !(typeof servername === "string" && namesTarget(target, servername))) return "host-mismatch"
  if (typeof options.path === "string" && !options.path.startsWith("/")) return "host-mismatch"
  return undefined
}

/** A WebSocket opening handshake (RFC 6455): a GET that asks to upgrade to `websocket`. */
const isWebSocketHandshake = (options: Dispatcher.DispatchOptions): boolean =>
  typeof options.upgrade === "string" && options.upgrade.toLowerCase() === "websocket" &&
  (options.method === undefined || (typeof options.method === "string" && options.method.toUpperCase() === "GET"))

/** Whether a header name is `lower`, case-insensitively. */
const is = (name: string, lower: string): boolean => name.length === lower.length && name.toLowerCase() === lower

/** The value of a header in a flat list, case-insensitively. */
const headerValue = (flat: ReadonlyArray<string>, name: string): string | undefined => {
  for (let i = 0; i < flat.length; i += 2) if (is(flat[i]!, name)) return flat[i + 1]
  return undefined
}

/**
 * The headers as they go out, in one pass: `content-length` exact for a rewritten body of known
 * length and absent (chunked) for a stream; and when the response will be scrubbed, no compression
 * (a compressed response could not be scrubbed, and is refused) and no storing by a cache between
 * here and the upstream (it would keep the unscrubbed response for other callers); for a WebSocket
 * handshake, no extension offered (compressed frames could not be rewritten).
 */
const finishHeaders = (
  flat: ReadonlyArray<string>,
  length: number | "stream" | undefined,
  scrubbed: boolean,
  webSocket: boolean
): Array<string> => {
  const out: Array<string> = []
  let hadLength = false
  let cacheControl: string | undefined
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i]!
    const value = flat[i + 1]!
    if (length !== undefined && is(name, "content-length")) hadLength = true
    else if (scrubbed && is(name, "accept-encoding")) continue
    // no WebSocket extension (permessage-deflate): compressed frames could not be rewritten
    else if (webSocket && is(name, "sec-websocket-extensions")) continue
    else if (scrubbed && is(name, "cache-control")) cacheControl = cacheControl === undefined ? value : `${cacheControl}, ${value}`
    else out.push(name, value)
  }
  if (typeof length === "number" && hadLength) out.push("content-length", String(length))
  if (scrubbed) {
    out.push("accept-encoding", "identity")
    out.push("cache-control", cacheControl === undefined ? "no-store" : /\bno-store\b/i.test(cacheControl) ? cacheControl : `${cacheControl}, no-store`)
  }
  return out
}


const toBytes = (chunk: unknown): Uint8Array => {
  if (typeof chunk === "string") return Buffer.from(chunk, "utf8")
  if (chunk instanceof Uint8Array) return chunk
  if (ArrayBuffer.isView(chunk)) return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength)
  if (chunk instanceof ArrayBuffer) return new Uint8Array(chunk)
  throw new EgressRefused({ message: `request body chunks must be strings or bytes, got ${typeof chunk}` })
}

/**
 * The pieces of a rewritten chunk as they go out: a large piece (the caller's bytes around a value)
 * as it is, runs of small ones (a value, the bytes between two) joined: copying a large piece costs
 * more than one more write, and a write per small piece more than copying it.
 */
const withoutCopies = (pieces: ReadonlyArray<Buffer>): Array<Buffer> => {
  /** Pieces shorter than this are joined; longer ones go out as they are. */
  const COPY_BELOW = 16 * 1024
  const out: Array<Buffer> = []
  let small: Array<Buffer> = []
  const flush = () => {
    if (small.length > 0) out.push(small.length === 1 ? small[0]! : Buffer.concat(small))
    small = []
  }
  for (const piece of pieces) {
    if (piece.length === 0) continue
    if (piece.length < COPY_BELOW) {
      small.push(piece)
      continue
    }
    flush()
    out.push(piece)
  }
  flush()
  return out
}

/**
 * A streamed body rewritten chunk by chunk. Written out rather than as an async generator: a
 * generator pays extra turns of the microtask queue for every chunk, which a fast upload notices.
 */
class RewrittenBody implements AsyncIterableIterator<Buffer> {
  private readonly source: AsyncIterator<unknown> | Iterator<unknown>
  private readonly sync: boolean
  private done = false
  /** Pieces of the last chunk still to go. */
  private readonly queue: Array<Buffer> = []

  constructor(source: AsyncIterable<unknown> | Iterable<unknown>, private readonly rewriter: Substitution.StreamRewriter) {
    this.sync = !(Symbol.asyncIterator in source)
    this.source = this.sync
      ? (source as Iterable<unknown>)[Symbol.iterator]()
      : (source as AsyncIterable<unknown>)[Symbol.asyncIterator]()
  }

  [Symbol.asyncIterator](): this {
    return this
  }

  async next(): Promise<IteratorResult<Buffer, undefined>> {
    try {
      if (this.queue.length > 0) return { done: false, value: this.queue.shift()! }
      while (!this.done) {
        const step = await this.source.next()
        if (step.done === true) {
          this.done = true
          const tail = this.rewriter.end()
          if (tail.length > 0) return { done: false, value: tail }
          break
        }
        // a sync iterable may yield promises of chunks, as `for await` would take them
        const chunk = this.sync ? await step.value : step.value
        // one write of the carry and the chunk together; the pieces go out as `withoutCopies` says
        const pieces = this.rewriter.write(toBytes(chunk))
        if (pieces.length === 1) {
          if (pieces[0]!.length > 0) return { done: false, value: pieces[0]! }
          continue
        }
        for (const group of withoutCopies(pieces)) this.queue.push(group)
        if (this.queue.length > 0) return { done: false, value: this.queue.shift()! }
      }
      return { done: true, value: undefined }
    } catch (error) {
      // a refused chunk (blocked placeholder, not bytes) or a failed source: the body is over, and
      // the source (a file stream, say) gets to close
      await this.close()
      throw error
    }
  }

  /** The consumer stopped early (an aborted request): let the source clean up. */
  async return(): Promise<IteratorResult<Buffer, undefined>> {
    await this.close()
    return { done: true, value: undefined }
  }

  private async close(): Promise<void> {
    if (this.done) return
    this.done = true
    try {
      await this.source.return?.()
    } catch {
      // the body's own failure (or the abort) is what the request reports
    }
  }
}

const isKnownBody = (body: unknown): body is string | Uint8Array | ArrayBuffer =>
  typeof body === "string" || ArrayBuffer.isView(body) || body instanceof ArrayBuffer

const isStreamBody = (body: unknown): body is AsyncIterable<unknown> | Iterable<unknown> =>
  typeof body === "object" && body !== null &&
  (typeof (body as AsyncIterable<unknown>)[Symbol.asyncIterator] === "function" ||
    typeof (body as Iterable<unknown>)[Symbol.iterator] === "function")

const isBlob = (body: unknown): body is Blob =>
  typeof body === "object" && body !== null && typeof (body as Blob).stream === "function" && typeof (body as Blob).size === "number"

const isFormData = (body: unknown): boolean =>
  typeof body === "object" && body !== null && (body as { [Symbol.toStringTag]?: string })[Symbol.toStringTag] === "FormData"

/**
 * A plain copy of the caller's own fields, each read once. `Object.assign`, not a spread: V8 makes
 * a spread copy slow to extend (~1 µs per request). But assigning an own `__proto__` field (from
 * `JSON.parse`, a spread of such an object, or a `Proxy` saying so) sets the copy's prototype, whose
 * getters would then answer every later read afresh. The copy is checked, not the caller (a `Proxy`
 * can answer a check one way and the copy another): such options are copied again by a spread,
 * which keeps every field a plain one.
 */
const copyOnce = (caller: Dispatcher.DispatchOptions): Dispatcher.DispatchOptions & Record<string, unknown> => {
  const copy = Object.assign<Record<string, unknown>, Dispatcher.DispatchOptions>({}, caller)
  return Object.getPrototypeOf(copy) === Object.prototype ? copy : { ...caller }
}

/**
 * Refuses a request whose URL holds, in any form the scrubber knows, the value of a secret that may
 * not go to its destination. The sandbox never sees a value, so one in a URL came from somewhere
 * else: a redirect (followed by undici or `fetch`, each hop dispatched through here) whose
 * `Location` echoed it in a form scrubbing missed. Checked on the caller's URL, before any
 * placeholder in it is substituted.
 */
const refuseValuesInUrl = (
  values: ReadonlyMap<string, ResolvedSecret>,
  past: ReadonlyArray<ResolvedSecret>,
  allowance: Allowance,
  target: Target,
  path: unknown,
  query: unknown
): void => {
  if (values.size === 0 && past.length === 0) return
  const texts: Array<string> = typeof path === "string" ? [path] : []
  if (query !== undefined && query !== null && typeof query === "object") {
    for (const [key, value] of Object.entries(query)) {
      texts.push(key)
      for (const item of Array.isArray(value) ? value : [value]) if (typeof item === "string") texts.push(item)
    }
  }
  const scrubber = valuesScrubber(values, past)
  for (const text of texts) {
    for (const secret of secretsIn(scrubber, Buffer.from(text, "utf8"))) {
      if (allowance.allowed.has(secret)) continue
      throw new DisallowedValue({
        message: `request to ${target.host} refused: its URL holds the value of secret ${JSON.stringify(secret.name)}, which may not be sent there (a redirect that echoed it, say)`,
        secret: secret.name,
        host: target.host
      })
    }
  }
}

/**
 * Plans one dispatch. Throws `SubstitutionBlocked`, `UnsafeSubstitution` or `EgressRefused`
 * before anything is sent when the request must not go out.
 */
export const plan = (settings: Settings, values: ReadonlyMap<string, ResolvedSecret>, caller: Dispatcher.DispatchOptions): Plan => {
  // Read every field once: a getter must not tell the checks one thing and undici another. The
  // copy becomes what goes downstream.
  const options = copyOnce(caller)
  const target = settings.targets.of(options.origin)
  // monotonic: a step of the wall clock neither stretches nor cuts how long a rotated value is kept
  const past = settings.retention.observe(values, performance.now())
  const allowance = target.secure && target.matchable !== undefined ? allowanceFor(values, target.matchable, past) : NOTHING
  const entries = headerEntries(options.headers)
  const webSocket = settings.webSockets && isWebSocketHandshake(options)
  refuseValuesInUrl(values, past, allowance, target, options.path, options.query)
  const rewriter = new Rewriter(settings, values, allowance, target, restrictionOf(options, target, entries, webSocket))

  // Headers: values as they are (Basic credentials decoded and re-encoded).
  const headers = new HeaderList(rewriter)
  for (const [name, value] of entries) headers.add(name, value)
  let flat = headers.flat
  // a one-shot iterable was used up reading it: send the list
  let headersChanged = headers.changed || (options.headers !== null && typeof options.headers === "object" && !Array.isArray(options.headers) &&
    typeof (options.headers as Iterable<unknown>)[Symbol.iterator] === "function")

  // Path and query: values percent-encoded (undici encodes `query` itself); never in query keys.
  const path = typeof options.path === "string" && rewriter.mayHold(options.path) ? rewriter.replaceText(options.path, Into.Url) : options.path
  let query = options.query
  if (query !== undefined && query !== null) {
    const holds = (text: unknown) => typeof text === "string" && rewriter.mayHold(text)
    if (Object.entries(query).some(([key, value]) => holds(key) || holds(value) || (Array.isArray(value) && value.some(holds)))) {
      // `fromEntries` defines each field: a `__proto__` key stays a query parameter
      query = Object.fromEntries(Object.entries(query).map(([key, value]) => {
        rewriter.withholdIn(key, "url")
        return [key, Array.isArray(value)
          ? value.map((item: unknown) => (holds(item) ? rewriter.replaceText(item as string, Into.Query) : item))
          : holds(value)
          ? rewriter.replaceText(value as string, Into.Query)
          : value]
      }))
    }
  }

  // Body: values encoded for the content type; known lengths rewritten now, streams chunk by chunk.
  let body: unknown = options.body
  let length: number | "stream" | undefined
  if (body !== null && body !== undefined) {
    if (isFormData(body)) {
      throw new EgressRefused({ message: "FormData bodies cannot be scanned for placeholders here; use fetch (which serialises them) or pass a string, Buffer or stream" })
    }
    let contentType = headerValue(flat, "content-type")
    if (contentType === undefined && isBlob(body) && body.type !== "") {
      // a Blob carries its type; undici would send it, and the value must be encoded for it
      contentType = body.type
      flat.push("content-type", contentType)
      headersChanged = true
    }
    const matcher = rewriter.bodyMatcher(contentType)
    if (isKnownBody(body)) {
      const bytes = toBytes(body)
      const rewritten = Substitution.rewriteBytes(matcher, bytes)
      if (!rewritten.equals(bytes)) {
        body = rewritten
        length = rewritten.length
      }
    } else if (isBlob(body)) {
      body = new RewrittenBody(body.stream() as unknown as AsyncIterable<Uint8Array>, new Substitution.StreamRewriter(matcher))
      length = "stream"
    } else if (isStreamBody(body)) {
      body = new RewrittenBody(body, new Substitution.StreamRewriter(matcher))
      length = "stream"
    }
  }
  const scrub = allowance.scrub === undefined ? undefined : withBasicEchoes(allowance.scrub, rewriter.basicEchoes)
  if (length !== undefined || scrub !== undefined || webSocket) {
    flat = finishHeaders(flat, length, scrub !== undefined, webSocket)
    headersChanged = true
  }

  // the copy goes downstream, rewritten
  if (query !== options.query) options.query = query as Record<string, unknown>
  options.origin = target.origin
  if (path !== options.path) options.path = path as string
  if (headersChanged) options.headers = flat
  if (body !== options.body) options.body = body as NonNullable<Dispatcher.DispatchOptions["body"]>
  // An inner redirect interceptor would replay the substituted request to wherever the upstream
  // points; with this it cannot. Redirects are followed by an interceptor outside this one, which
  // dispatches each hop through here again, from the caller's original request.
  options.maxRedirections = 0
  return {
    options,
    scrub,
    webSocket: webSocket
      ? {
        matcher: rewriter.bodyMatcher(undefined, "message"),
        mayHold: (payload) => rewriter.mayHold(payload),
        control: (payload) => {
          if (rewriter.mayHold(payload)) rewriter.withholdIn(payload.toString("latin1"), "message")
        }
      }
      : undefined
  }
}
