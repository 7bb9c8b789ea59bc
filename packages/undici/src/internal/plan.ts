/**
 * The per-request work of the interceptor: decide, for every placeholder in the request, whether
 * its value goes in, and produce the rewritten dispatch options. Never mutates the caller's options.
 */
import { type Placeholder, type Secrets, Substitution } from "@secretgate/core"
import { Redacted } from "effect"
import { Buffer } from "node:buffer"
import type { Dispatcher } from "undici"
import type { AuditEvent, AuditSink, RequestFields, Surface, WithheldReason } from "../AuditEvent.js"
import { DisallowedValue, SubstitutionBlocked, UnsafeSubstitution } from "../EgressError.js"
import { bodyOf, RewrittenBody } from "./bodies.js"
import { type Allowance, allowanceFor, namesTarget, NOTHING, type Target, type Targets, valuesScrubber } from "./destination.js"
import { bodyEncoder, decodeBasic, encodeBasic, forUrl } from "./encoding.js"
import type { Retention } from "./retention.js"
import { type Scrubber, scrubBytes, secretsIn, withBasicEchoes } from "./scrubber.js"
import type { Outgoing } from "./WebSocketScrub.js"

type ResolvedSecret = Secrets.ResolvedSecret

/** What stays the same for every request of one interceptor. */
export interface Settings {
  readonly scanners: ReadonlyArray<Placeholder.Scanner>
  /** Placeholder → name of every mounted secret. */
  readonly mounted: ReadonlyMap<string, string>
  readonly targets: Targets
  readonly onDisallowed: "forward" | "block"
  /** Whether a secret without hosts (unrestricted) may be substituted for any host. */
  readonly unrestricted: "allow" | "deny"
  readonly audit: AuditSink | undefined
  /** Names the sandbox in audit events. */
  readonly sandbox: string | undefined
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
    private readonly restricted: WithheldReason | undefined,
    /** The request as audit events describe it (read once from the caller's copy). */
    private readonly request: { readonly method: unknown; readonly path: unknown },
    private readonly past: ReadonlyArray<ResolvedSecret>
  ) {}

  private fields: Omit<RequestFields, "surface"> | undefined

  /** What the request's events say about it, built on the first event. */
  private requestFields(): Omit<RequestFields, "surface"> {
    if (this.fields !== undefined) return this.fields
    const raw = typeof this.request.path === "string" ? this.request.path : "/"
    const cut = raw.search(/[?#]/)
    let path = cut === -1 ? raw : raw.slice(0, cut)
    // the sandbox never holds a value; one in its path came from an echo (a redirect): never logged
    if (this.values.size > 0 || this.past.length > 0) path = scrubBytes(valuesScrubber(this.values, this.past), Buffer.from(path, "utf8")).toString("utf8")
    this.fields = {
      time: new Date().toISOString(),
      sandbox: this.settings.sandbox,
      method: typeof this.request.method === "string" ? this.request.method.toUpperCase() : "GET",
      host: this.target.host,
      port: this.target.port,
      path
    }
    return this.fields
  }

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
      : secret.hosts.length === 0 && this.settings.unrestricted === "deny"
      ? "unrestricted"
      : undefined
    if (reason === undefined) {
      if (this.settings.audit !== undefined) {
        this.emit({ ...this.requestFields(), type: "substituted", secret: secret!.name, surface, unrestricted: secret!.hosts.length === 0 })
      }
      return secret
    }
    this.withhold(secret?.name ?? this.settings.mounted.get(placeholder), surface, reason)
    return undefined
  }

  /** A placeholder stays: audit it, and with `onDisallowed: "block"` fail the request. */
  private withhold(name: string | undefined, surface: Surface, reason: WithheldReason): void {
    const blocked = this.settings.onDisallowed === "block"
    if (this.settings.audit !== undefined) {
      this.emit({ ...this.requestFields(), type: blocked ? "blocked" : "withheld", secret: name, surface, reason })
    }
    if (blocked) {
      throw new SubstitutionBlocked({
        message: `request to ${this.target.host} blocked: its ${surface} holds the placeholder of ${
          name === undefined ? "a secret not mounted for this sandbox" : `secret ${JSON.stringify(name)}`
        }, which may not be sent there (${reason}${
          reason === "unrestricted" ? ": the secret has no hosts, and this agent's unrestricted policy is \"deny\"; give the secret hosts" : ""
        })`,
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
      // the time of this event (a WebSocket's message events come after its handshake's)
      this.settings.audit!({ ...event, time: new Date().toISOString() })
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

  add(name: string, values: HeaderValues): void {
    if (typeof values === "string") this.addOne(name, values)
    else for (const value of values) this.addOne(name, value)
  }

  private addOne(name: string, text: string): void {
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

/** A header's value or values, each turned into a string once. */
type HeaderValues = string | ReadonlyArray<string>
type HeaderEntry = readonly [name: string, values: HeaderValues]

/** A header name or value as text, read once (`${}` as undici coerces; bytes as Latin-1). */
const text = (item: unknown): string =>
  typeof item === "string" ? item : Buffer.isBuffer(item) ? item.toString("latin1") : item === null ? "" : `${item as string}`

/** undici's test for headers to iterate: an iterator of their own, not one planted on `Object.prototype`. */
const hasSafeIterator = (headers: object): boolean => {
  const prototype = Object.getPrototypeOf(headers) as object | null
  return Object.prototype.hasOwnProperty.call(headers, Symbol.iterator) ||
    (prototype !== null && prototype !== Object.prototype && typeof (headers as Iterable<unknown>)[Symbol.iterator] === "function")
}

const entry = (name: unknown, value: unknown): HeaderEntry | undefined =>
  value === undefined ? undefined : [text(name), Array.isArray(value) ? Array.from(value as Array<unknown>, text) : text(value)]

/**
 * The caller's headers, in every form undici accepts (flat array, array of pairs, iterable such as
 * `Headers`, plain object with getters or not), read exactly once into `[name, values]` entries of
 * strings: the checks and what goes downstream are built from this one reading. `undefined` for a
 * value that is not headers at all (undici refuses it).
 */
const headerEntries = (headers: unknown): Array<HeaderEntry> | undefined => {
  const entries: Array<HeaderEntry> = []
  const push = (name: unknown, value: unknown) => {
    const read = entry(name, value)
    if (read !== undefined) entries.push(read)
  }
  if (headers === null || headers === undefined) return entries
  if (typeof headers !== "object") return undefined
  if (Array.isArray(headers)) {
    const items = Array.from(headers as Array<unknown>)
    if (items.length > 0 && Array.isArray(items[0])) {
      for (const pair of items) {
        const [name, value] = Array.isArray(pair) ? pair as Array<unknown> : []
        push(name, value)
      }
    } else {
      for (let i = 0; i < items.length; i += 2) push(items[i], items[i + 1])
    }
  } else if (hasSafeIterator(headers)) {
    for (const pair of headers as Iterable<unknown>) {
      const [name, value] = Array.isArray(pair) ? pair as Array<unknown> : []
      push(name, value)
    }
  } else {
    for (const name of Object.keys(headers)) push(name, (headers as Record<string, unknown>)[name])
  }
  return entries
}

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
    if (name.length === 4 && name.toLowerCase() === "host" && (typeof value === "string" ? [value] : value).some((host) => !namesTarget(target, host))) return "host-mismatch"
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
 * handshake, no extension offered (compressed frames could not be rewritten). The caller's `TE`
 * never goes on: it could ask for a transfer coding (`gzip`) that only `chunked` framing would be
 * removed from; only its `trailers` token is kept.
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
  let trailers = false
  for (let i = 0; i < flat.length; i += 2) {
    const name = flat[i]!
    const value = flat[i + 1]!
    if (length !== undefined && is(name, "content-length")) hadLength = true
    else if (is(name, "te")) trailers ||= value.split(",").some((coding) => coding.split(";")[0]!.trim().toLowerCase() === "trailers")
    else if (scrubbed && is(name, "accept-encoding")) continue
    // no WebSocket extension (permessage-deflate): compressed frames could not be rewritten
    else if (webSocket && is(name, "sec-websocket-extensions")) continue
    else if (scrubbed && is(name, "cache-control")) cacheControl = cacheControl === undefined ? value : `${cacheControl}, ${value}`
    else out.push(name, value)
  }
  if (typeof length === "number" && hadLength) out.push("content-length", String(length))
  if (trailers) out.push("te", "trailers")
  if (scrubbed) {
    out.push("accept-encoding", "identity")
    out.push("cache-control", cacheControl === undefined ? "no-store" : /\bno-store\b/i.test(cacheControl) ? cacheControl : `${cacheControl}, no-store`)
  }
  return out
}


/**
 * The query as undici's `querystring.stringify` reads it (own enumerable keys, arrays item by item),
 * read once into a plain copy; anything but an object is left for undici. `fromEntries` defines
 * each field, so a `__proto__` key stays a query parameter.
 */
const readQuery = (query: unknown): unknown =>
  typeof query !== "object" || query === null
    ? query
    : Object.fromEntries(Object.entries(query).map(([key, item]) => [key, Array.isArray(item) ? Array.from(item as Array<unknown>) : item]))

/** The query copy with placeholders in values substituted, in keys reported (never substituted). */
const rewriteQuery = (rewriter: Rewriter, query: unknown): unknown => {
  if (typeof query !== "object" || query === null) return query
  const value = (item: unknown): unknown =>
    typeof item === "string" && rewriter.mayHold(item) ? rewriter.replaceText(item, Into.Query) : item
  return Object.fromEntries(Object.entries(query).map(([key, item]) => {
    rewriter.withholdIn(key, "url")
    return [key, Array.isArray(item) ? item.map(value) : value(item)]
  }))
}

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
  // read once; `undefined` when not headers at all, which undici refuses
  const entries = headerEntries(options.headers)
  const webSocket = settings.webSockets && isWebSocketHandshake(options)
  // the query read once: checked as the caller wrote it, then rewritten
  const callerQuery = readQuery(options.query)
  refuseValuesInUrl(values, past, allowance, target, options.path, callerQuery)
  const rewriter = new Rewriter(settings, values, allowance, target, restrictionOf(options, target, entries ?? [], webSocket), { method: options.method, path: options.path }, past)

  // Headers: values as they are (Basic credentials decoded and re-encoded).
  const headers = new HeaderList(rewriter)
  for (const [name, value] of entries ?? []) headers.add(name, value)
  const flat = headers.flat

  // Path and query: values percent-encoded (undici encodes `query` itself); never in query keys.
  const path = typeof options.path === "string" && rewriter.mayHold(options.path) ? rewriter.replaceText(options.path, Into.Url) : options.path
  const query = rewriteQuery(rewriter, callerQuery)

  // Body: read as undici would, into a copy (known length, rewritten now) or a rewritten stream.
  let body: unknown = options.body
  let length: number | "stream" | undefined
  if (body !== null && body !== undefined) {
    const shape = bodyOf(body)
    if (shape.kind !== "foreign") {
      let contentType = headerValue(flat, "content-type")
      if (contentType === undefined && shape.impliedType !== undefined) {
        // undici would send the type the body implies; the value must be encoded for it
        contentType = shape.impliedType
        flat.push("content-type", contentType)
      }
      const matcher = rewriter.bodyMatcher(contentType)
      if (shape.kind === "known") {
        const rewritten = Substitution.rewriteBytes(matcher, shape.bytes)
        body = rewritten
        if (!rewritten.equals(shape.bytes)) length = rewritten.length
      } else {
        body = new RewrittenBody(shape.source, new Substitution.StreamRewriter(matcher), settings.onDisallowed === "block", shape.whole)
        length = "stream"
      }
    }
  }
  const scrub = allowance.scrub === undefined ? undefined : withBasicEchoes(allowance.scrub, rewriter.basicEchoes)

  // the copy goes downstream, rewritten: the headers, query and body it holds are this plan's own
  if (query !== options.query) options.query = query as Record<string, unknown>
  options.origin = target.origin
  if (path !== options.path) options.path = path as string
  if (entries !== undefined) options.headers = finishHeaders(flat, length, scrub !== undefined, webSocket)
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
