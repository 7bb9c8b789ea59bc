/**
 * The per-request work of the interceptor: decide, for every placeholder in the request, whether
 * its value goes in, and produce the rewritten dispatch options. Never mutates the caller's options.
 */
import { type Placeholder, type Secrets, Substitution } from "@secretgate/core"
import { Redacted } from "effect"
import { Buffer } from "node:buffer"
import type { Dispatcher } from "undici"
import type { AuditEvent, AuditSink, Surface, WithheldReason } from "../AuditEvent.js"
import { EgressRefused, SubstitutionBlocked, UnsafeSubstitution } from "../EgressError.js"
import { type Allowance, allowanceFor, NOTHING, type Target, type Targets } from "./destination.js"
import { bodyEncoder, decodeBasic, encodeBasic, forUrl, headerSafe } from "./encoding.js"
import { makeScrubber, type Scrubber } from "./ScrubHandler.js"

type ResolvedSecret = Secrets.ResolvedSecret

/** What stays the same for every request of one interceptor. */
export interface Settings {
  readonly scanners: ReadonlyArray<Placeholder.Scanner>
  /** Placeholder → name of every mounted secret. */
  readonly mounted: ReadonlyMap<string, string>
  readonly targets: Targets
  readonly onDisallowed: "forward" | "block"
  readonly audit: AuditSink | undefined
}

/** The outcome for one request. */
export interface Plan {
  readonly options: Dispatcher.DispatchOptions
  /** How to scrub the response, or `undefined` when no mounted secret may go to this destination. */
  readonly scrub: Scrubber | undefined
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
    private readonly target: Target
  ) {}

  /** The secret whose value replaces `placeholder` here, or `undefined` to leave it (or throws to block). */
  secretFor(placeholder: string, surface: Surface): ResolvedSecret | undefined {
    const secret = this.values.get(placeholder)
    const reason: WithheldReason | undefined = secret === undefined
      ? (this.settings.mounted.has(placeholder) ? "unavailable" : "not-mounted")
      : !this.target.secure
      ? "insecure-scheme"
      : !this.allowance.allowed.has(secret)
      ? "host-not-allowed"
      : undefined
    if (reason === undefined) {
      if (this.settings.audit !== undefined) this.emit({ type: "substituted", secret: secret!.name, host: this.target.host, surface })
      return secret
    }
    const name = secret?.name ?? this.settings.mounted.get(placeholder)
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
    return undefined
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
            if (!headerSafe(value)) {
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

  mayHold(text: string): boolean {
    for (const scanner of this.settings.scanners) if (text.includes(scanner.prefix)) return true
    return false
  }

  /** Rewrites body bytes: values encoded for the content type. */
  bodyMatcher(contentType: string | undefined): Substitution.Matcher {
    const encode = bodyEncoder(contentType)
    const replace = (placeholder: string) => {
      const secret = this.secretFor(placeholder, "body")
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
    const next = this.rewriter.header(name, text)
    if (next !== text) this.changed = true
    this.flat.push(name, next)
  }
}

/** The caller's headers (every form undici accepts) as a flat list, each value rewritten. */
const rewriteHeaders = (headers: Dispatcher.DispatchOptions["headers"], rewriter: Rewriter): HeaderList => {
  const list = new HeaderList(rewriter)
  if (headers === null || headers === undefined) return list
  if (Array.isArray(headers)) {
    if (headers.length > 0 && Array.isArray(headers[0])) for (const [name, value] of headers as unknown as Array<[unknown, unknown]>) list.add(name, value)
    else for (let i = 0; i < headers.length; i += 2) list.add(headers[i], headers[i + 1])
  } else if (typeof (headers as Iterable<unknown>)[Symbol.iterator] === "function") {
    for (const [name, value] of headers as Iterable<[unknown, unknown]>) list.add(name, value)
  } else {
    const record = headers as Record<string, unknown>
    for (const name in record) list.add(name, record[name])
  }
  return list
}

/** The value of a header in a flat list, case-insensitively. */
const headerValue = (flat: ReadonlyArray<string>, name: string): string | undefined => {
  for (let i = 0; i < flat.length; i += 2) if (flat[i]!.length === name.length && flat[i]!.toLowerCase() === name) return flat[i + 1]
  return undefined
}

/** The flat list without `name` (case-insensitively). */
const withoutHeader = (flat: ReadonlyArray<string>, name: string): Array<string> => {
  const out: Array<string> = []
  for (let i = 0; i < flat.length; i += 2) {
    if (!(flat[i]!.length === name.length && flat[i]!.toLowerCase() === name)) out.push(flat[i]!, flat[i + 1]!)
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

async function* rewriteStream(source: AsyncIterable<unknown> | Iterable<unknown>, rewriter: Substitution.StreamRewriter) {
  for await (const chunk of source) {
    const out = rewriter.push(toBytes(chunk))
    if (out.length > 0) yield out
  }
  const tail = rewriter.end()
  if (tail.length > 0) yield tail
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
 * Plans one dispatch. Throws `SubstitutionBlocked`, `UnsafeSubstitution` or `EgressRefused`
 * before anything is sent when the request must not go out.
 */
export const plan = (settings: Settings, values: ReadonlyMap<string, ResolvedSecret>, options: Dispatcher.DispatchOptions): Plan => {
  const target = settings.targets.of(options.origin)
  const allowance = target.secure && target.matchable !== undefined ? allowanceFor(values, target.matchable) : NOTHING
  const rewriter = new Rewriter(settings, values, allowance, target)

  // Headers: values as they are (Basic credentials decoded and re-encoded).
  const headers = rewriteHeaders(options.headers, rewriter)
  let flat = headers.flat
  let headersChanged = headers.changed

  // Path and query: values percent-encoded.
  const path = typeof options.path === "string" && rewriter.mayHold(options.path) ? rewriter.replaceText(options.path, Into.Url) : options.path
  let query = options.query
  if (query !== undefined && query !== null && Object.values(query).some((value) => typeof value === "string" && rewriter.mayHold(value))) {
    const rewritten: Record<string, unknown> = {}
    for (const [key, value] of Object.entries(query)) {
      rewritten[key] = typeof value === "string" && rewriter.mayHold(value) ? rewriter.replaceText(value, Into.Query) : value
    }
    query = rewritten
  }

  // Body: values encoded for the content type; known lengths rewritten now, streams chunk by chunk.
  let body: unknown = options.body
  let length: number | "stream" | undefined
  if (body !== null && body !== undefined) {
    if (isFormData(body)) {
      throw new EgressRefused({ message: "FormData bodies cannot be scanned for placeholders here; use fetch (which serialises them) or pass a string, Buffer or stream" })
    }
    const matcher = rewriter.bodyMatcher(headerValue(flat, "content-type"))
    if (isKnownBody(body)) {
      const bytes = toBytes(body)
      const rewritten = Substitution.rewriteBytes(matcher, bytes)
      if (!rewritten.equals(bytes)) {
        body = rewritten
        length = rewritten.length
      }
    } else if (isBlob(body)) {
      body = rewriteStream(body.stream() as unknown as AsyncIterable<Uint8Array>, new Substitution.StreamRewriter(matcher))
      length = "stream"
    } else if (isStreamBody(body)) {
      body = rewriteStream(body, new Substitution.StreamRewriter(matcher))
      length = "stream"
    }
  }
  if (length !== undefined) {
    // exact for a rewritten buffer, absent (chunked) for a stream
    const hadLength = headerValue(flat, "content-length") !== undefined
    flat = withoutHeader(flat, "content-length")
    if (typeof length === "number" && hadLength) flat.push("content-length", String(length))
    headersChanged = true
  }

  const scrub = allowance.scrub === undefined || rewriter.basicEchoes.length === 0
    ? allowance.scrub
    : makeScrubber([...allowance.allowed], rewriter.basicEchoes)
  if (scrub !== undefined) {
    // A compressed response could not be scrubbed: ask for none (a compressed one is refused).
    flat = withoutHeader(flat, "accept-encoding")
    flat.push("accept-encoding", "identity")
    headersChanged = true
  }

  const next = {
    ...options,
    path,
    headers: headersChanged ? flat : options.headers,
    body,
    // An inner redirect interceptor would replay the substituted request to wherever the upstream
    // points; with this it cannot. Redirects are followed by an interceptor outside this one, which
    // dispatches each hop through here again, from the caller's original request.
    maxRedirections: 0
  } as Dispatcher.DispatchOptions
  if (query !== options.query) (next as { query?: unknown }).query = query
  return { options: next, scrub }
}
