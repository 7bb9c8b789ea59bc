/**
 * The per-request work of the interceptor: decide, for every placeholder in the request, whether
 * its value goes in, and produce the rewritten dispatch options. Pure apart from audit calls.
 */
import { HostPattern, Placeholder, type Secrets, Substitution } from "@secretgate/core"
import { Redacted } from "effect"
import { Buffer } from "node:buffer"
import type { Dispatcher } from "undici"
import type { AuditSink, Surface, WithheldReason } from "../AuditEvent.js"
import { EgressRefused, SubstitutionBlocked, UnsafeSubstitution } from "../EgressError.js"
import { bodyEncoder, decodeBasic, encodeBasic, forUrl, headerSafe } from "./encoding.js"
import { makeScrubber, type Scrubber } from "./ScrubHandler.js"

type ResolvedSecret = Secrets.ResolvedSecret

/** What stays the same for every request of one interceptor. */
export interface Settings {
  readonly scanners: ReadonlyArray<Placeholder.Scanner>
  /** Placeholder → name of every mounted secret. */
  readonly mounted: ReadonlyMap<string, string>
  readonly allowHttp: ReadonlySet<string>
  readonly onDisallowed: "forward" | "block"
  readonly audit: AuditSink | undefined
}

/** The outcome for one request. */
export interface Plan {
  readonly options: Dispatcher.DispatchOptions
  /** How to scrub the response, or `undefined` when no mounted secret may go to this destination. */
  readonly scrub: Scrubber | undefined
}

/** A pair of header name and value, names as given. */
type HeaderPair = [name: string, value: string]

/** What one snapshot of values means for one destination; computed once, then reused. */
interface ForDestination {
  readonly allowed: ReadonlySet<ResolvedSecret>
  readonly scrub: Scrubber | undefined
}

const byDestination = new WeakMap<ReadonlyMap<string, ResolvedSecret>, Map<string, ForDestination>>()

/**
 * The secrets among `values` whose hosts admit `host`, and their scrubber. Cached per snapshot (a
 * new snapshot after every change) and destination, so a request to a known host costs two map
 * lookups; the host index keeps the first computation independent of the number of secrets.
 */
const forDestination = (values: ReadonlyMap<string, ResolvedSecret>, host: string): ForDestination => {
  let cache = byDestination.get(values)
  if (cache === undefined) {
    cache = new Map()
    byDestination.set(values, cache)
  }
  let entry = cache.get(host)
  if (entry === undefined) {
    const index = new HostPattern.HostIndex([...values.values()].map((secret) => ({ hosts: secret.hosts, value: secret })))
    const allowed = index.match(host)
    entry = { allowed: new Set(allowed), scrub: allowed.length === 0 ? undefined : makeScrubber(allowed, []) }
    if (cache.size > 1024) cache.clear() // bounded: a sandbox talking to endless hosts
    cache.set(host, entry)
  }
  return entry
}

const NOTHING_ALLOWED: ForDestination = { allowed: new Set(), scrub: undefined }

/**
 * Per-request decisions. One instance lives as long as its request (a streamed body keeps using
 * it after dispatch).
 */
class Decider {
  private readonly emitted = new Set<string>()

  constructor(
    private readonly settings: Settings,
    private readonly values: ReadonlyMap<string, ResolvedSecret>,
    private readonly allowed: ReadonlySet<ResolvedSecret>,
    private readonly secure: boolean,
    readonly host: string
  ) {}

  /** The value to put in place of `placeholder`, or `undefined` to leave it (or throw to block). */
  value(placeholder: string, surface: Surface): ResolvedSecret | undefined {
    const secret = this.values.get(placeholder)
    const reason: WithheldReason | undefined = secret === undefined
      ? (this.settings.mounted.has(placeholder) ? "unavailable" : "not-mounted")
      : !this.secure
      ? "insecure-scheme"
      : !this.allowed.has(secret)
      ? "host-not-allowed"
      : undefined
    if (reason === undefined) {
      this.emit("substituted", secret!.name, surface)
      return secret
    }
    const name = secret?.name ?? this.settings.mounted.get(placeholder)
    if (this.settings.onDisallowed === "block") {
      this.emit("blocked", name, surface, reason)
      throw new SubstitutionBlocked({
        message: `request to ${this.host} blocked: its ${surface} holds the placeholder of ${
          name === undefined ? "a secret not mounted for this sandbox" : `secret ${JSON.stringify(name)}`
        }, which may not be sent there (${reason})`,
        secret: name,
        host: this.host,
        surface,
        reason
      })
    }
    this.emit("withheld", name, surface, reason)
    return undefined
  }

  private emit(type: "substituted" | "withheld" | "blocked", secret: string | undefined, surface: Surface, reason?: WithheldReason) {
    const audit = this.settings.audit
    if (audit === undefined) return
    const key = `${type}\0${secret ?? ""}\0${surface}\0${reason ?? ""}`
    if (this.emitted.has(key)) return
    this.emitted.add(key)
    try {
      audit(
        type === "substituted"
          ? { type, secret: secret!, host: this.host, surface }
          : { type, secret, host: this.host, surface, reason: reason! }
      )
    } catch {
      // an audit sink must not break egress
    }
  }
}

/** Finds placeholders of any of the mount's prefixes. */
const matcherFor = (scanners: ReadonlyArray<Placeholder.Scanner>, replace: (placeholder: string) => Uint8Array | undefined): Substitution.Matcher => {
  if (scanners.length === 1) return Substitution.placeholderMatcher(scanners[0]!, replace)
  const matchers = scanners.map((scanner) => Substitution.placeholderMatcher(scanner, replace))
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

const replaceInText = (scanners: ReadonlyArray<Placeholder.Scanner>, text: string, replace: (placeholder: string) => string | undefined): string =>
  scanners.reduce((current, scanner) => scanner.replaceIn(current, replace), text)

const mayHold = (scanners: ReadonlyArray<Placeholder.Scanner>, text: string): boolean =>
  scanners.some((scanner) => text.includes(scanner.prefix))

const headerPairs = (headers: Dispatcher.DispatchOptions["headers"]): Array<HeaderPair> => {
  const pairs: Array<HeaderPair> = []
  const push = (name: unknown, value: unknown) => {
    if (value === undefined || value === null) return
    const key = Buffer.isBuffer(name) ? name.toString("latin1") : String(name)
    if (Array.isArray(value)) for (const item of value) pairs.push([key, Buffer.isBuffer(item) ? item.toString("latin1") : String(item)])
    else pairs.push([key, Buffer.isBuffer(value) ? value.toString("latin1") : String(value)])
  }
  if (headers === null || headers === undefined) return pairs
  if (Array.isArray(headers)) {
    if (headers.length > 0 && Array.isArray(headers[0])) for (const [name, value] of headers as unknown as Array<[unknown, unknown]>) push(name, value)
    else for (let i = 0; i < headers.length; i += 2) push(headers[i], headers[i + 1])
  } else if (typeof (headers as Iterable<unknown>)[Symbol.iterator] === "function") {
    for (const [name, value] of headers as Iterable<[unknown, unknown]>) push(name, value)
  } else {
    for (const [name, value] of Object.entries(headers)) push(name, value)
  }
  return pairs
}

const isKnownBody = (body: unknown): body is string | Uint8Array | ArrayBuffer =>
  typeof body === "string" || ArrayBuffer.isView(body) || body instanceof ArrayBuffer

const toBytes = (chunk: unknown): Uint8Array => {
  if (typeof chunk === "string") return Buffer.from(chunk, "utf8")
  if (chunk instanceof Uint8Array) return chunk
  if (ArrayBuffer.isView(chunk)) return new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength)
  if (chunk instanceof ArrayBuffer) return new Uint8Array(chunk)
  throw new EgressRefused({ message: `request body chunks must be strings or bytes, got ${typeof chunk}` })
}

async function* rewriteStream(source: AsyncIterable<unknown> | Iterable<unknown>, rewriter: Substitution.StreamRewriter) {
  for await (const chunk of source) {
    const out = rewriter.push(toBytes(chunk))
    if (out.length > 0) yield out
  }
  const tail = rewriter.end()
  if (tail.length > 0) yield tail
}

const isStreamBody = (body: unknown): body is AsyncIterable<unknown> | Iterable<unknown> =>
  typeof body === "object" && body !== null &&
  (typeof (body as AsyncIterable<unknown>)[Symbol.asyncIterator] === "function" ||
    typeof (body as Iterable<unknown>)[Symbol.iterator] === "function")

const isBlob = (body: unknown): body is Blob =>
  typeof body === "object" && body !== null && typeof (body as Blob).stream === "function" && typeof (body as Blob).size === "number"

const isFormData = (body: unknown): boolean =>
  typeof body === "object" && body !== null && (body as { [Symbol.toStringTag]?: string })[Symbol.toStringTag] === "FormData"

interface Target {
  /** The destination host as audit events name it. */
  readonly host: string
  /** The host to match secrets' hosts against (the host index normalises it), `undefined` if unusable. */
  readonly name: string | undefined
  readonly secure: boolean
}

const targets = new Map<string, Target>()

/** Where a dispatch goes, from its origin (never a Host header); cached per origin string. */
const destinationOf = (settings: Settings, origin: Dispatcher.DispatchOptions["origin"]): Target => {
  if (origin === undefined || origin === null) {
    throw new EgressRefused({ message: "the request has no origin; dispatch through an Agent, not a bare Client" })
  }
  const key = String(origin)
  const known = targets.get(key)
  if (known !== undefined && settings.allowHttp === allowHttpOf.get(known)) return known
  const url = new URL(key)
  const normal = HostPattern.normalizeDestination(url.hostname)
  const secure = url.protocol === "https:" ||
    (url.protocol === "http:" && normal !== undefined && settings.allowHttp.has(normal.host))
  const target: Target = {
    host: normal?.host ?? url.hostname,
    name: normal === undefined ? undefined : url.hostname,
    secure
  }
  if (targets.size > 1024) targets.clear()
  targets.set(key, target)
  allowHttpOf.set(target, settings.allowHttp)
  return target
}
const allowHttpOf = new WeakMap<Target, ReadonlySet<string>>()

/**
 * Plans one dispatch. Throws `SubstitutionBlocked`, `UnsafeSubstitution` or `EgressRefused`
 * before anything is sent when the request must not go out.
 */
export const plan = (
  settings: Settings,
  values: ReadonlyMap<string, ResolvedSecret>,
  options: Dispatcher.DispatchOptions
): Plan => {
  const target = destinationOf(settings, options.origin)
  const { host, secure } = target
  const destination = secure && target.name !== undefined ? forDestination(values, target.name) : NOTHING_ALLOWED
  const decider = new Decider(settings, values, destination.allowed, secure, host)
  const { scanners } = settings
  const basicEchoes: Array<readonly [string, string]> = []

  // Headers: values as they are, Basic credentials decoded and re-encoded.
  let headersChanged = false
  let contentType: string | undefined
  const pairs = headerPairs(options.headers).map(([name, value]): HeaderPair => {
    const lower = name.toLowerCase()
    if (lower === "content-type") contentType = value
    const basicCandidate = lower === "authorization" || lower === "proxy-authorization"
    if (!basicCandidate && !mayHold(scanners, value)) return [name, value]
    const intoHeader = (placeholder: string): string | undefined => {
      const secret = decider.value(placeholder, "header")
      if (secret === undefined) return undefined
      const plain = Redacted.value(secret.value)
      if (!headerSafe(plain)) {
        throw new UnsafeSubstitution({
          message: `secret ${JSON.stringify(secret.name)} cannot be sent in header ${JSON.stringify(name)}: its value holds a control or non-Latin-1 character (CR, LF and NUL could split the request)`,
          secret: secret.name,
          surface: "header"
        })
      }
      return plain
    }
    if (basicCandidate) {
      const basic = decodeBasic(value)
      if (basic !== undefined && mayHold(scanners, basic.credentials)) {
        const credentials = replaceInText(scanners, basic.credentials, (placeholder) => {
          const secret = decider.value(placeholder, "header")
          return secret === undefined ? undefined : Redacted.value(secret.value)
        })
        if (credentials === basic.credentials) return [name, value]
        headersChanged = true
        const sent = encodeBasic(basic.scheme, credentials, basic.tail)
        basicEchoes.push([sent, value])
        return [name, sent]
      }
      if (!mayHold(scanners, value)) return [name, value]
    }
    const next = replaceInText(scanners, value, intoHeader)
    if (next !== value) headersChanged = true
    return [name, next]
  })

  // Path and query: values percent-encoded.
  const intoUrl = (placeholder: string) => {
    const secret = decider.value(placeholder, "url")
    return secret === undefined ? undefined : forUrl(Redacted.value(secret.value))
  }
  const path = typeof options.path === "string" && mayHold(scanners, options.path)
    ? replaceInText(scanners, options.path, intoUrl)
    : options.path
  let query = options.query
  if (query !== undefined && query !== null) {
    query = Object.fromEntries(
      Object.entries(query).map(([key, value]) => [
        key,
        typeof value === "string" && mayHold(scanners, value)
          ? replaceInText(scanners, value, (placeholder) => {
            const secret = decider.value(placeholder, "url")
            return secret === undefined ? undefined : Redacted.value(secret.value) // undici encodes query values itself
          })
          : value
      ])
    )
  }

  // Body: values encoded for the content type; known lengths rewritten now, streams chunk by chunk.
  const encode = bodyEncoder(contentType)
  const matcher = matcherFor(scanners, (placeholder) => {
    const secret = decider.value(placeholder, "body")
    return secret === undefined ? undefined : Buffer.from(encode(Redacted.value(secret.value)), "utf8")
  })
  let body: unknown = options.body
  let bodyLength: number | "stream" | undefined
  if (isKnownBody(body)) {
    const bytes = toBytes(body)
    const rewritten = Substitution.rewriteBytes(matcher, bytes)
    if (!rewritten.equals(bytes)) {
      body = rewritten
      bodyLength = rewritten.length
    }
  } else if (isFormData(body)) {
    throw new EgressRefused({ message: "FormData bodies cannot be scanned for placeholders here; use fetch (which serialises them) or pass a string, Buffer or stream" })
  } else if (isBlob(body)) {
    body = rewriteStream(body.stream() as unknown as AsyncIterable<Uint8Array>, new Substitution.StreamRewriter(matcher))
    bodyLength = "stream"
  } else if (isStreamBody(body)) {
    body = rewriteStream(body, new Substitution.StreamRewriter(matcher))
    bodyLength = "stream"
  }

  const scrub = destination.scrub === undefined || basicEchoes.length === 0
    ? destination.scrub
    : makeScrubber([...destination.allowed], basicEchoes)
  let headers: Array<HeaderPair> = pairs
  if (bodyLength !== undefined) {
    headers = headers.filter(([name]) => name.toLowerCase() !== "content-length")
    if (typeof bodyLength === "number" && pairs.length !== headers.length) headers.push(["content-length", String(bodyLength)])
    headersChanged = true
  }
  if (scrub !== undefined) {
    // A compressed response could not be scrubbed: ask for none (a compressed one is refused).
    headers = headers.filter(([name]) => name.toLowerCase() !== "accept-encoding")
    headers.push(["accept-encoding", "identity"])
    headersChanged = true
  }

  const next: Dispatcher.DispatchOptions = {
    ...options,
    path: path as string,
    ...(query === undefined ? {} : { query }),
    ...(headersChanged ? { headers: headers.flat() } : {}),
    body: body as Dispatcher.DispatchOptions["body"],
    // An inner redirect interceptor would replay the substituted request to wherever the upstream
    // points; with this it cannot. Redirects are followed by an interceptor outside this one, which
    // dispatches each hop through here again, from the caller's original request.
    maxRedirections: 0
  } as Dispatcher.DispatchOptions
  return { options: next, scrub }
}
