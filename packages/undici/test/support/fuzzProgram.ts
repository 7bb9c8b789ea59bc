/**
 * The egress fuzzer: random programs of requests through a `SecretgateAgent` against real
 * loopback servers (`fuzzUpstream.ts`), checked against an oracle written apart from the agent.
 *
 * A program is plain data (so a failure prints as it is): a set of secrets (values with any
 * characters, host patterns or unrestricted, mounted or not), `onDisallowed`, redirects to follow,
 * and requests (client, method, destination, placeholders in path, query, headers of any shape,
 * Basic credentials and a body of any shape, a `Host` header, and the script of every hop's
 * upstream). Invariants, after every program:
 *
 * 1. no destination receives a value it may not (a secret not mounted, not allowed for that host,
 *    plain `http:`, or a request whose `Host` names another host);
 * 2. the sandbox never receives a value in any form the scrubber claims (raw, JSON, percent/form,
 *    HTML, up to two layers; `fuzzEscapes.ts`), in anything it can see: status, headers, body (also
 *    decompressed), trailers, the URL `fetch` ended at, errors;
 * 3. under `block`, no destination receives a placeholder it may not have a value for, and nothing
 *    at all of a first hop holding one when its body's length is known;
 * 4. no request hangs;
 * and, as a differential check, a destination a mounted secret is allowed for never receives its
 * placeholder (plain undici would send it; the agent sends the value).
 */
import { Placeholder, Secretgate } from "@secretgate/core"
import { MemorySecretStore } from "@secretgate/memory"
import { SecretgateAgent } from "@secretgate/undici"
import fc from "fast-check"
import { Buffer } from "node:buffer"
import { Writable } from "node:stream"
import { inspect } from "node:util"
import { gunzipSync } from "node:zlib"
import { Agent, fetch as undiciFetch, request, stream } from "undici"
import { SHAPES } from "./bodyShapes.js"
import { CURRENT_ESCAPERS, type Escaper, recoverAll, SYNTAX_ESCAPERS } from "./fuzzEscapes.js"
import { type Arrival, type Behaviour, type Destination, startUpstreams, type Upstreams } from "./fuzzUpstream.js"
import { CA } from "./upstream.js"

// ---------------------------------------------------------------------------------------------
// the world

export const DESTINATIONS: ReadonlyArray<Destination> = [
  { name: "api.allowed.test", host: "api.allowed.test", secure: true },
  { name: "API.Allowed.TEST.", host: "api.allowed.test", secure: true },
  { name: "example.com", host: "example.com", secure: true },
  { name: "x.example.com", host: "x.example.com", secure: true },
  { name: "evil.test", host: "evil.test", secure: true },
  { name: "other.test", host: "other.test", secure: true },
  { name: "127.0.0.1", host: "127.0.0.1", secure: true },
  // plain http: not allowed for values, unless named in allowHttp
  { name: "plain.allowed.test", host: "plain.allowed.test", secure: false },
  { name: "open.allowed.test", host: "open.allowed.test", secure: false }
]
const ALLOW_HTTP = ["open.allowed.test"]

/** Host patterns a secret may have (or none: unrestricted). */
const PATTERNS = ["api.allowed.test", "*.example.com", "open.allowed.test", "plain.allowed.test", "other.test"] as const

/** The oracle's host matching, for these patterns only. */
const matches = (pattern: string, host: string): boolean =>
  pattern.startsWith("*.") ? host === pattern.slice(2) || host.endsWith(pattern.slice(1)) : host === pattern

const isIp = (host: string) => /^\d+\.\d+\.\d+\.\d+$/.test(host)

/** How long a request may take before it counts as hanging (less a grace period). */
const TIMEOUT_MS = 10_000

/** Trust the test CA; every name is 127.0.0.1 (each destination is its own port). */
const agentOptions = {
  connect: {
    ca: CA,
    lookup: (_hostname: string, options: unknown, callback: (...args: Array<unknown>) => void) => {
      if (typeof options === "object" && options !== null && (options as { all?: boolean }).all === true) callback(null, [{ address: "127.0.0.1", family: 4 }])
      else callback(null, "127.0.0.1", 4)
    }
  },
  headersTimeout: TIMEOUT_MS,
  bodyTimeout: TIMEOUT_MS
}

export interface Fuzzer {
  readonly upstreams: Upstreams
  /** The connection pool every program's agent dispatches through (kept-alive TLS connections). */
  readonly pool: Agent
  /** The escapers upstreams echo through: the forms the scrubber claims. */
  readonly escapers: ReadonlyArray<Escaper>
  close(): Promise<void>
}

/**
 * Starts the servers. `syntax: true` makes upstreams echo in every escape syntax, not only the
 * forms JavaScript's encoders write.
 */
export const startFuzzer = async (options: { readonly syntax: boolean }): Promise<Fuzzer> => {
  const upstreams = await startUpstreams(DESTINATIONS)
  const pool = new Agent(agentOptions as never)
  return {
    upstreams,
    pool,
    escapers: options.syntax ? [...CURRENT_ESCAPERS, ...SYNTAX_ESCAPERS] : CURRENT_ESCAPERS,
    close: async () => {
      await pool.destroy()
      await upstreams.close()
    }
  }
}

// ---------------------------------------------------------------------------------------------
// programs (plain data)

/** Text made of literal pieces and placeholders: of secret `n`, or a well-formed unknown one. */
export type Piece = string | { readonly secret: number } | "unknown placeholder"
export type Template = ReadonlyArray<Piece>

export interface SecretSpec {
  readonly value: string
  readonly hosts: ReadonlyArray<string>
  readonly mounted: boolean
}

export interface HopSpec {
  readonly status: Behaviour["status"]
  /** Index into `DESTINATIONS` of the redirect target. */
  readonly to: number
  /** Names of escapers, applied in order. */
  readonly escapes: ReadonlyArray<string>
  readonly into: Behaviour["into"]
  readonly pieces: number
  readonly coding: Behaviour["coding"]
}

export interface RequestSpec {
  readonly client: "request" | "stream" | "fetch"
  readonly method: "GET" | "POST" | "PUT" | "PATCH" | "DELETE"
  /** Index into `DESTINATIONS`. */
  readonly destination: number
  readonly path: Template
  readonly query: ReadonlyArray<Template>
  readonly headers: ReadonlyArray<readonly [name: string, value: Template]>
  readonly headerShape: "object" | "flat array" | "pairs" | "Headers" | "Map" | "generator"
  readonly basic: Template | undefined
  /** Index into `DESTINATIONS` of a `Host` header, if any. */
  readonly hostHeader: number | undefined
  readonly te: "gzip" | "trailers" | undefined
  readonly body: { readonly shape: string; readonly text: Template; readonly type: string | undefined } | undefined
  readonly hops: ReadonlyArray<HopSpec>
}

export interface Program {
  readonly secrets: ReadonlyArray<SecretSpec>
  readonly onDisallowed: "forward" | "block"
  /** The agent's policy for secrets without hosts (`undefined`: its default, `deny`). */
  readonly unrestricted: "allow" | "deny" | undefined
  readonly maxRedirections: 0 | 3
  readonly requests: ReadonlyArray<RequestSpec>
}

/** Characters that escape syntaxes treat specially, and some that encoders disagree on. */
const SPECIAL = [..."&<>\"'!*()+/\\% =?#;:,@$[]{}|^`~\t\n\r\u0000é€\u2028😀"]

/** A value: any characters around a nonce with `Q`, which no literal piece holds (so no program can guess a value). */
const valueArbitrary = (): fc.Arbitrary<string> => {
  const char = fc.oneof(
    fc.constantFrom(...SPECIAL),
    fc.string({ unit: "binary", minLength: 1, maxLength: 1 }),
    fc.constantFrom(..."abcXYZ019-_.")
  )
  const nonce = fc.string({ unit: fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789"), minLength: 6, maxLength: 6 })
  return fc.tuple(fc.array(char, { maxLength: 10 }), nonce, fc.array(char, { maxLength: 10 }))
    .map(([head, nonce, tail]) => `${head.join("")}Q${nonce}Q${tail.join("")}`)
}

const literal = (alphabet: string, maxLength = 8): fc.Arbitrary<string> =>
  fc.string({ unit: fc.constantFrom(...alphabet), minLength: 1, maxLength })

const templateArbitrary = (secrets: number, alphabet: string): fc.Arbitrary<Template> =>
  fc.array(
    fc.oneof(
      { weight: 3, arbitrary: literal(alphabet) },
      { weight: 3, arbitrary: fc.nat({ max: secrets - 1 }).map((secret) => ({ secret })) },
      { weight: 1, arbitrary: fc.constant("unknown placeholder" as const) }
    ),
    { minLength: 1, maxLength: 4 }
  )

const URL_SAFE = "abcdefghijklmnopxyz0123456789-._~"
const HEADER_SAFE = "abcdefxyzABCDEF0123456789 -_.,;:=/+\"'()<>&!*%"
const ANY_TEXT = "abcxyzABC019 -_.,;:=/+\"'()<>&!*%?#[]{}\\\n\t€é"

const hopArbitrary = (escapers: ReadonlyArray<Escaper>): fc.Arbitrary<HopSpec> =>
  fc.record({
    status: fc.constantFrom<HopSpec["status"]>(200, 200, 200, 301, 302, 303, 307, 308),
    to: fc.nat({ max: DESTINATIONS.length - 1 }),
    escapes: fc.array(fc.constantFrom(...escapers.map((e) => e.name)), { maxLength: 2 }),
    into: fc.record({ body: fc.boolean(), header: fc.boolean(), status: fc.boolean(), trailer: fc.boolean(), location: fc.boolean() }),
    pieces: fc.integer({ min: 1, max: 6 }),
    coding: fc.constantFrom<HopSpec["coding"]>("none", "none", "none", "gzip", "transfer-gzip")
  }).map((hop) => ({
    ...hop,
    // the redirect's query is percent-encoded once more: keep within two layers
    escapes: hop.into.location ? hop.escapes.slice(0, 1) : hop.escapes
  }))

const requestArbitrary = (secrets: number, escapers: ReadonlyArray<Escaper>): fc.Arbitrary<RequestSpec> => {
  const template = (alphabet: string) => templateArbitrary(secrets, alphabet)
  return fc.record({
    client: fc.constantFrom<RequestSpec["client"]>("request", "stream", "fetch"),
    method: fc.constantFrom<RequestSpec["method"]>("GET", "POST", "PUT", "PATCH", "DELETE"),
    destination: fc.nat({ max: DESTINATIONS.length - 1 }),
    path: template(URL_SAFE),
    query: fc.array(template(ANY_TEXT), { maxLength: 2 }),
    // one value per name: a Map keeps only one (Basic credentials bring their own authorization)
    headers: fc.uniqueArray(fc.tuple(fc.constantFrom("x-key", "x-other", "x-token", "cookie", "x-json"), template(HEADER_SAFE)), { maxLength: 3, selector: ([name]) => name }),
    headerShape: fc.constantFrom<RequestSpec["headerShape"]>("object", "flat array", "pairs", "Headers", "Map", "generator"),
    basic: fc.option(template(URL_SAFE), { nil: undefined }),
    hostHeader: fc.option(fc.nat({ max: DESTINATIONS.length - 1 }), { nil: undefined, freq: 8 }),
    te: fc.constantFrom<RequestSpec["te"]>(undefined, undefined, undefined, "gzip", "trailers"),
    body: fc.option(
      fc.record({
        shape: fc.constantFrom(...SHAPES.map((shape) => shape.name)),
        text: template(ANY_TEXT),
        type: fc.constantFrom(undefined, "application/json", "application/x-www-form-urlencoded", "text/plain")
      }),
      { nil: undefined }
    ),
    hops: fc.array(hopArbitrary(escapers), { minLength: 1, maxLength: 3 })
  })
}

/** Random programs; `escapers` are the forms upstreams echo in. */
export const programArbitrary = (escapers: ReadonlyArray<Escaper>): fc.Arbitrary<Program> => {
  const secret = fc.record({
    value: valueArbitrary(),
    hosts: fc.oneof(fc.constant([]), fc.subarray([...PATTERNS], { minLength: 1 })),
    mounted: fc.constantFrom(true, true, true, false)
  })
  // built once per number of secrets, not per program
  const byCount = [1, 2, 3].map((count) =>
    fc.record({
      secrets: fc.array(secret, { minLength: count, maxLength: count }),
      onDisallowed: fc.constantFrom<Program["onDisallowed"]>("forward", "block"),
      unrestricted: fc.constantFrom<Program["unrestricted"]>(undefined, "allow", "deny"),
      maxRedirections: fc.constantFrom<Program["maxRedirections"]>(0, 3),
      requests: fc.array(requestArbitrary(count, escapers), { minLength: 1, maxLength: 3 })
    })
  )
  return fc.oneof(...byCount)
}

// ---------------------------------------------------------------------------------------------
// running a program

/** What the sandbox could see of one request. */
interface Seen {
  readonly index: number
  readonly texts: Array<string | Uint8Array>
}

/** Something an invariant found. */
export interface Violation {
  readonly invariant: string
  readonly detail: string
}

const UNKNOWN_PLACEHOLDER = `${Placeholder.DEFAULT_PREFIX}${"q".repeat(Placeholder.TOKEN_LENGTH)}`
const PLACEHOLDER_PATTERN = new RegExp(`${Placeholder.DEFAULT_PREFIX}[a-z2-7]{${Placeholder.TOKEN_LENGTH}}`, "g")

let programs = 0

/** A gate shared by programs (secrets get fresh names), replaced now and then to stay small. */
let shared: { gate: Secretgate; uses: number } | undefined
const gateFor = async (): Promise<Secretgate> => {
  if (shared === undefined || shared.uses >= 200) {
    await shared?.gate.dispose()
    shared = { gate: new Secretgate({ layer: MemorySecretStore.layer({ quota: 1_000_000 }), organizationId: "fuzz" }), uses: 0 }
  }
  shared.uses++
  return shared.gate
}

/** Disposes the shared gate (end of a campaign). */
export const disposeGate = async (): Promise<void> => {
  await shared?.gate.dispose()
  shared = undefined
}

const normalHost = (name: string) => name.toLowerCase().replace(/\.$/, "")

/** Runs a program; resolves with what the invariants found (empty: nothing). */
export const runProgram = async (fuzzer: Fuzzer, program: Program): Promise<Array<Violation>> => {
  const id = `p${++programs}`
  const gate = await gateFor()
  const { upstreams } = fuzzer
  upstreams.reset()
  const placeholders: Array<string> = []
  const mountSpec: Record<string, string> = {}
  for (const [i, secret] of program.secrets.entries()) {
    const created = await gate.secret.create({ name: `${id}_s${i}`, value: secret.value, hosts: [...secret.hosts] })
    placeholders.push(created.placeholder)
    if (secret.mounted) mountSpec[`S${i}`] = created.name
  }
  const mount = await gate.mount(mountSpec)
  const agent = new SecretgateAgent({
    resolver: await gate.resolver(mount),
    onDisallowed: program.onDisallowed,
    ...(program.unrestricted === undefined ? {} : { unrestricted: program.unrestricted }),
    maxRedirections: program.maxRedirections,
    allowHttp: ALLOW_HTTP,
    dispatcher: fuzzer.pool
  })
  const render = (template: Template): string =>
    template.map((piece) => typeof piece === "string" ? piece === "unknown placeholder" ? UNKNOWN_PLACEHOLDER : piece : placeholders[piece.secret]!).join("")

  const violations: Array<Violation> = []
  const seen: Array<Seen> = []
  try {
    for (const [index, spec] of program.requests.entries()) {
      const requestId = `${id}-${index}`
      upstreams.script(requestId, spec.hops.map((hop) => ({
        status: hop.status,
        to: DESTINATIONS[hop.to]!.name,
        escapes: hop.escapes.map((name) => fuzzer.escapers.find((e) => e.name === name)!),
        into: hop.into,
        pieces: hop.pieces,
        coding: hop.coding
      })))
      const texts: Array<string | Uint8Array> = []
      seen.push({ index, texts })
      const outcome = await withTimeout(send(agent, upstreams, spec, requestId, render, texts))
      if (outcome === "timeout") violations.push({ invariant: "4. no request hangs", detail: `request ${index} did not settle in ${TIMEOUT_MS} ms` })
    }
  } finally {
    await agent.destroy().catch(() => undefined)
  }
  // A request refused mid-body rejects on the client before the server has read its head: let the
  // servers (in this process) take in what is already on its way, so the checks see it.
  await settle()
  // only this program's arrivals (a late one of the previous program is not this one's)
  const arrivals = upstreams.arrivals.filter((arrival) => arrival.url.startsWith(`/f/${id}-`))
  check(program, arrivals, seen, placeholders, id, violations)
  return violations
}

const settle = async () => {
  for (let i = 0; i < 3; i++) await new Promise((resolve) => setImmediate(resolve))
  await new Promise((resolve) => setTimeout(resolve, 5))
}

const withTimeout = <A>(promise: Promise<A>): Promise<A | "timeout"> => {
  let timer: NodeJS.Timeout | undefined
  return Promise.race([
    promise,
    new Promise<"timeout">((resolve) => {
      timer = setTimeout(() => resolve("timeout"), TIMEOUT_MS + 2_000)
    })
  ]).finally(() => clearTimeout(timer))
}

const headersIn = (shape: RequestSpec["headerShape"], entries: ReadonlyArray<readonly [string, string]>): unknown => {
  switch (shape) {
    case "object": {
      const out: Record<string, string | Array<string>> = {}
      for (const [name, value] of entries) {
        const had = out[name]
        out[name] = had === undefined ? value : [...(Array.isArray(had) ? had : [had]), value]
      }
      return out
    }
    case "flat array":
      return entries.flat()
    case "pairs":
      return entries.map(([name, value]) => [name, value])
    case "Headers": {
      const headers = new Headers()
      for (const [name, value] of entries) headers.append(name, value)
      return headers
    }
    case "Map": {
      // a Map keeps one value per name
      return new Map(entries)
    }
    case "generator":
      return (function*() {
        yield* entries.map(([name, value]) => [name, value])
      })()
  }
}

/** Sends one request of the program; records what the sandbox could see of it. */
const send = async (
  agent: SecretgateAgent,
  upstreams: Upstreams,
  spec: RequestSpec,
  requestId: string,
  render: (template: Template) => string,
  texts: Array<string | Uint8Array>
): Promise<void> => {
  const destination = DESTINATIONS[spec.destination]!
  const path = `/f/${requestId}/0/${render(spec.path)}`
  const entries: Array<readonly [string, string]> = spec.headers.map(([name, value]) => [name, render(value)])
  if (spec.basic !== undefined) entries.push(["authorization", `Basic ${Buffer.from(`user:${render(spec.basic)}`, "utf8").toString("base64")}`])
  if (spec.hostHeader !== undefined) entries.push(["host", normalHost(DESTINATIONS[spec.hostHeader]!.name)])
  if (spec.te !== undefined) entries.push(["te", spec.te])
  const withBody = spec.body !== undefined && spec.method !== "GET" && spec.method !== "DELETE"
  const shape = withBody ? SHAPES.find((s) => s.name === spec.body!.shape)! : undefined
  if (withBody && spec.body!.type !== undefined) entries.push(["content-type", spec.body!.type])
  const bodyText = withBody ? render(spec.body!.text) : ""
  const query = spec.query.map((value) => render(value))
  const url = `${upstreams.origin(destination.name)}${path}`
  try {
    if (spec.client === "fetch") {
      const fetchShape = shape?.fetch === true ? shape : SHAPES[0]!
      // fetch takes its query in the URL
      const search = query.length === 0 ? "" : `?${new URLSearchParams(query.map((value, i): [string, string] => [`q${i}`, value])).toString()}`
      const response = await undiciFetch(`${url}${search}`, {
        method: spec.method,
        headers: entries.filter(([name]) => name !== "host" && name !== "te") as Array<[string, string]>,
        ...(withBody ? { body: fetchShape.make(bodyText) as never, duplex: "half" } : {}),
        dispatcher: agent
      } as never)
      texts.push(response.url, response.statusText, JSON.stringify([...response.headers]))
      texts.push(new Uint8Array(await response.arrayBuffer()))
      return
    }
    const options = {
      method: spec.method,
      headers: headersIn(spec.headerShape, entries) as never,
      query: Object.fromEntries(query.map((value, i) => [`q${i}`, value])),
      ...(withBody ? { body: shape!.make(bodyText) as never } : {}),
      dispatcher: agent
    }
    if (spec.client === "request") {
      const response = await request(url, options)
      texts.push(JSON.stringify(response.headers))
      texts.push(new Uint8Array(await response.body.arrayBuffer()))
      texts.push(JSON.stringify(response.trailers))
      return
    }
    const chunks: Array<Buffer> = []
    const data = await stream(url, options, ({ headers }) => {
      texts.push(JSON.stringify(headers))
      return new Writable({
        write(chunk: Buffer, _encoding, callback) {
          chunks.push(chunk)
          callback()
        }
      })
    })
    texts.push(Buffer.concat(chunks), JSON.stringify((data as { trailers?: unknown }).trailers ?? {}))
  } catch (error) {
    texts.push(inspect(error, { depth: 8, showHidden: true }), String(error), JSON.stringify(error, Object.getOwnPropertyNames(error ?? {})) ?? "")
  }
}

// ---------------------------------------------------------------------------------------------
// the oracle

/** Base64 tokens (Basic credentials echoed), also with `/`, `+` and `=` escaped, decoded. */
const base64Tokens = (text: string): Array<Uint8Array> =>
  [...text.replaceAll("\\/", "/").replace(/%2[fF]/g, "/").replace(/%2[bB]/g, "+").replace(/%3[dD]/g, "=").matchAll(/[A-Za-z0-9+/]{12,}={0,2}/g)]
    .map((token) => Buffer.from(token[0], "base64"))

/** Every view the sandbox can take of what it saw: a gzip body uncompressed, Basic credentials decoded. */
const views = (texts: ReadonlyArray<string | Uint8Array>): Array<string | Uint8Array> => {
  const out: Array<string | Uint8Array> = []
  for (const text of texts) {
    out.push(text)
    let bytes = typeof text === "string" ? undefined : text
    if (bytes !== undefined && bytes[0] === 0x1f && bytes[1] === 0x8b) {
      try {
        bytes = gunzipSync(bytes)
        out.push(bytes)
      } catch {
        // not whole
      }
    }
    out.push(...base64Tokens(typeof text === "string" ? text : Buffer.from(bytes!).toString("latin1")))
  }
  return out
}

/** What a destination received, as text, with Basic credentials decoded. */
const receivedText = (arrival: Arrival): Array<string | Uint8Array> => {
  const head = `${arrival.method} ${arrival.url}\n${arrival.rawHeaders.join("\n")}`
  const out: Array<string | Uint8Array> = [Buffer.from(head, "latin1"), arrival.body]
  for (const token of head.matchAll(/basic\s+([A-Za-z0-9+/=]+)/gi)) out.push(Buffer.from(token[1]!, "base64"))
  return out
}

const hostHeaderOf = (arrival: Arrival): string | undefined => {
  for (let i = 0; i + 1 < arrival.rawHeaders.length; i += 2) {
    if (arrival.rawHeaders[i]!.toLowerCase() === "host") return arrival.rawHeaders[i + 1]
  }
  return undefined
}

/** Whether the request's Host header names another host than the one it went to (nothing may be substituted). */
const restricted = (arrival: Arrival): boolean => {
  const host = hostHeaderOf(arrival)
  if (host === undefined) return false
  const name = host.startsWith("[") ? host.slice(0, host.indexOf("]") + 1) : host.replace(/:\d+$/, "")
  return normalHost(name) !== arrival.destination.host
}

const check = (
  program: Program,
  arrivals: ReadonlyArray<Arrival>,
  seen: ReadonlyArray<Seen>,
  placeholders: ReadonlyArray<string>,
  id: string,
  violations: Array<Violation>
): void => {
  const allowedAt = (secret: number, destination: Destination): boolean => {
    const spec = program.secrets[secret]!
    const secure = destination.secure || ALLOW_HTTP.includes(destination.host)
    // a secret without hosts goes anywhere under unrestricted: "allow", nowhere under "deny" (the default)
    const hostOk = spec.hosts.length === 0
      ? program.unrestricted === "allow"
      : !isIp(destination.host) && spec.hosts.some((pattern) => matches(pattern, destination.host))
    return spec.mounted && secure && hostOk
  }
  const secretOf = new Map(placeholders.map((placeholder, i) => [placeholder, i]))

  for (const arrival of arrivals) {
    const at = `${arrival.destination.name} (${arrival.method} ${arrival.url.slice(0, 80)})`
    const texts = receivedText(arrival)
    const mayReceive = (secret: number) => !restricted(arrival) && allowedAt(secret, arrival.destination)
    // 1. values only where allowed (a value that is also part of a value allowed here, two secrets
    // sharing one say, may arrive: the sandbox's placeholder of the allowed one brings it)
    const allowedValues = program.secrets.flatMap((spec, i) => mayReceive(i) ? [spec.value] : [])
    const forbidden = program.secrets.flatMap((spec, i) => mayReceive(i) || allowedValues.some((value) => value.includes(spec.value)) ? [] : [i])
    const reported = new Set<number>()
    for (const text of texts) {
      for (const [k, how, excerpt] of recoverAll(text, forbidden.map((i) => program.secrets[i]!.value))) {
        const i = forbidden[k]!
        if (reported.has(i)) continue
        reported.add(i)
        violations.push({ invariant: "1. no disallowed destination receives a value", detail: `secret ${i} reached ${at} (${how}): ${excerpt}` })
      }
    }
    const all = texts.map((text) => typeof text === "string" ? text : Buffer.from(text).toString("latin1")).join("\n")
    for (const match of all.matchAll(PLACEHOLDER_PATTERN)) {
      const secret = secretOf.get(match[0])
      const allowed = secret !== undefined && mayReceive(secret)
      // 3. under block, no placeholder goes where it may not have its value
      if (!allowed && program.onDisallowed === "block") {
        violations.push({ invariant: "3. under block, no disallowed placeholder leaves", detail: `${secret === undefined ? "an unknown placeholder" : `secret ${secret}'s placeholder`} reached ${at}` })
      }
      // differential: where the value may go, the placeholder never does
      if (allowed) {
        violations.push({ invariant: "substituted where allowed", detail: `secret ${secret}'s placeholder reached ${at}, which may have its value` })
      }
    }
  }

  // 3. under block, nothing of a first hop holding a disallowed placeholder, when its length is known
  if (program.onDisallowed === "block") {
    for (const [index, spec] of program.requests.entries()) {
      const destination = DESTINATIONS[spec.destination]!
      const withBody = spec.body !== undefined && spec.method !== "GET" && spec.method !== "DELETE"
      const known = spec.client !== "fetch" && (!withBody || SHAPES.find((s) => s.name === spec.body!.shape)!.known)
      if (!known) continue
      const mismatch = spec.hostHeader !== undefined && normalHost(DESTINATIONS[spec.hostHeader]!.name) !== destination.host
      const templates: Array<Template> = [spec.path, ...spec.query, ...spec.headers.map(([, value]) => value)]
      if (spec.basic !== undefined) templates.push(spec.basic)
      if (withBody) templates.push(spec.body!.text)
      const disallowed = templates.some((template) =>
        template.some((piece) => piece === "unknown placeholder" || (typeof piece === "object" && (mismatch || !allowedAt(piece.secret, destination))))
      )
      if (!disallowed) continue
      const sent = arrivals.filter((arrival) => arrival.url.startsWith(`/f/${id}-${index}/0/`))
      if (sent.length > 0) {
        violations.push({
          invariant: "3. under block, nothing of a request of known length with a disallowed placeholder leaves",
          detail: `request ${index}'s first hop reached ${sent[0]!.destination.name} (${sent[0]!.method} ${sent[0]!.url.slice(0, 120)})`
        })
      }
    }
  }

  // 2. the sandbox never receives a value in a form the scrubber claims
  const values = program.secrets.map((secret) => secret.value)
  for (const { index, texts } of seen) {
    for (const view of views(texts)) {
      for (const [i, how, excerpt] of recoverAll(view, values)) {
        violations.push({ invariant: "2. the sandbox never receives a value", detail: `request ${index} showed secret ${i}'s value (${how}): ${excerpt}` })
      }
    }
  }
}
