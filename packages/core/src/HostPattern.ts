/**
 * Allowed-host patterns for secrets: parsing, destination normalisation and an
 * index that matches a destination against many patterns in O(labels).
 *
 * Everything here is pure. Patterns and destinations are both parsed into the
 * same normal form (lower-case ASCII, IDN as punycode, no port, no trailing dot)
 * before anything is compared.
 *
 * @since 0.1.0
 */

/**
 * A normalised allowed-host entry: `"api.example.com"` or `"*.example.com"`.
 * Produce one with {@link parse}.
 *
 * @since 0.1.0
 */
export type HostPattern = string

/**
 * The outcome of {@link parse}: the normalised pattern, or a short human reason
 * for rejecting the input (meant to follow `hosts[i] "<input>": `).
 *
 * @since 0.1.0
 */
export type ParseResult =
  | { readonly ok: true; readonly pattern: HostPattern }
  | { readonly ok: false; readonly reason: string }

/**
 * A normalised destination host: a DNS name, or an IP literal (IPv4 dotted
 * quad, or IPv6 without brackets).
 *
 * @since 0.1.0
 */
export type Destination =
  | { readonly kind: "name"; readonly host: string }
  | { readonly kind: "ip"; readonly host: string }

const WILDCARD_PREFIX = "*."
const MAX_NAME_LENGTH = 253
const MAX_LABEL_LENGTH = 63

const whitespaceOrControl = /[\s\p{Cc}]/u
const scheme = /^[a-z][a-z0-9+.-]*:\/\//i
const disallowedAscii = /[^a-z0-9.\-\u0080-\u{10ffff}]/iu
// WHATWG URL treats a host whose last label is numeric as an IPv4 address.
const numericLabel = /^(?:\d+|0x[0-9a-f]*)$/
const ipv4 = /^\d+\.\d+\.\d+\.\d+$/
const patternLabel = /^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$/
// Real destinations may carry `_` (e.g. service records), so only patterns forbid it.
const destinationLabel = /^[a-z0-9_-]+$/
const notInDestination = /[\s\p{Cc}/\\@?#%]/u

const fail = (reason: string): ParseResult => ({ ok: false, reason })

/** Lower-case and IDN→punycode through the WHATWG host parser, as a connection would. */
const toAsciiHost = (host: string): string | undefined => {
  try {
    return new URL(`http://${host}`).hostname
  } catch {
    return undefined
  }
}

const numericReason = (labels: ReadonlyArray<string>): string | undefined => {
  if (!numericLabel.test(labels[labels.length - 1] ?? "")) return undefined
  return labels.every((label) => numericLabel.test(label))
    ? "IP literals are not supported"
    : "the last label must not be numeric"
}

/** Rules on the shape of the input, before any normalisation. */
const syntaxReason = (input: string): string | undefined => {
  if (input === "") return "must not be empty"
  if (whitespaceOrControl.test(input)) return "must not contain whitespace or control characters"
  if (scheme.test(input)) return "schemes are not supported"
  if (input.includes("@")) return "user-info is not supported"
  if (input.includes("/")) return "paths are not supported"
  if (input.includes("?") || input.includes("#")) return "queries and fragments are not supported"
  if (input.startsWith("[") || input.split(":").length > 2) return "IP literals are not supported"
  if (input.includes(":")) return "ports are not supported"
  if (input.endsWith(".")) return "a trailing dot is not allowed"
  if (input === "*") return "a lone \"*\" is not allowed (omit hosts to allow every host)"
  const name = input.startsWith(WILDCARD_PREFIX) ? input.slice(WILDCARD_PREFIX.length) : input
  if (name.includes("*")) return "a wildcard is only allowed as the whole leading label, as in \"*.example.com\""
  if (name.includes("_")) return "underscores are not allowed"
  const invalid = disallowedAscii.exec(name)
  if (invalid !== null) return `invalid character "${invalid[0]}"`
  return numericReason(name.toLowerCase().split("."))
}

/** Rules on the normalised ASCII name (the part after any `*.`). */
const nameReason = (ascii: string, wildcard: boolean): string | undefined => {
  const labels = ascii.split(".")
  if (labels.some((label) => label === "")) return "empty labels are not allowed"
  if (ascii.includes("_")) return "underscores are not allowed"
  if (ascii.length > MAX_NAME_LENGTH) return `names must be at most ${MAX_NAME_LENGTH} characters`
  if (labels.some((label) => label.length > MAX_LABEL_LENGTH)) {
    return `labels must be at most ${MAX_LABEL_LENGTH} characters`
  }
  const numeric = numericReason(labels)
  if (numeric !== undefined) return numeric
  const invalid = labels.find((label) => !patternLabel.test(label))
  if (invalid !== undefined) {
    return /^-|-$/.test(invalid) ? "labels must not start or end with \"-\"" : `invalid label "${invalid}"`
  }
  if (wildcard && labels.length < 2) {
    return "a wildcard must cover at least two labels, as in \"*.example.com\""
  }
  return undefined
}

/**
 * Validates and normalises one allowed-host entry: lower-case, IDN to punycode.
 * Rejects schemes, paths, ports, user-info, queries, IP literals, empty or
 * over-long labels (> 63) and names (> 253), `_`, a trailing dot, a lone `*`,
 * a wildcard other than a whole leading label, a wildcard over a single label
 * and labels starting or ending with `-`. Surrounding whitespace is rejected,
 * not trimmed. Single-label names such as `localhost` are accepted.
 *
 * @example
 * import { HostPattern } from "@secretgate/core"
 *
 * HostPattern.parse("*.Bücher.example") // { ok: true, pattern: "*.xn--bcher-kva.example" }
 * HostPattern.parse("api.example.com:443") // { ok: false, reason: "ports are not supported" }
 *
 * @since 0.1.0
 */
export const parse = (input: string): ParseResult => {
  const syntax = syntaxReason(input)
  if (syntax !== undefined) return fail(syntax)
  const wildcard = input.startsWith(WILDCARD_PREFIX)
  const ascii = toAsciiHost(wildcard ? input.slice(WILDCARD_PREFIX.length) : input)
  if (ascii === undefined) return fail("not a valid internationalised domain name")
  const reason = nameReason(ascii, wildcard)
  if (reason !== undefined) return fail(reason)
  return { ok: true, pattern: wildcard ? WILDCARD_PREFIX + ascii : ascii }
}

/**
 * Normalises the hostname a connection is made to (as found in a URL origin):
 * lower-case, IDN to punycode, one trailing dot stripped, any port ignored,
 * IPv6 brackets removed. IPv4 and IPv6 literals come back as `kind: "ip"`.
 * Returns `undefined` for an empty or malformed hostname.
 *
 * @example
 * import { HostPattern } from "@secretgate/core"
 *
 * HostPattern.normalizeDestination("API.Example.com.:8443") // { kind: "name", host: "api.example.com" }
 * HostPattern.normalizeDestination("[::1]") // { kind: "ip", host: "::1" }
 *
 * @since 0.1.0
 */
export const normalizeDestination = (hostname: string): Destination | undefined => {
  if (hostname === "" || notInDestination.test(hostname)) return undefined
  const bareIpv6 = !hostname.startsWith("[") && hostname.split(":").length > 2
  const parsed = toAsciiHost(bareIpv6 ? `[${hostname}]` : hostname)
  if (parsed === undefined || parsed === "") return undefined
  if (parsed.startsWith("[")) return { kind: "ip", host: parsed.slice(1, -1) }
  const host = parsed.endsWith(".") ? parsed.slice(0, -1) : parsed
  if (ipv4.test(host)) return { kind: "ip", host }
  const labels = host.split(".")
  const valid = host.length <= MAX_NAME_LENGTH &&
    labels.every((label) => label.length <= MAX_LABEL_LENGTH && destinationLabel.test(label))
  return valid ? { kind: "name", host } : undefined
}

/**
 * Whether a normalised pattern (from {@link parse}) matches a normalised
 * destination name (from {@link normalizeDestination}). `api.example.com`
 * matches only itself; `*.example.com` matches `example.com` and any subdomain
 * at any depth, never `badexample.com` or `example.com.evil.com`.
 *
 * @since 0.1.0
 */
export const matches = (pattern: HostPattern, destinationHost: string): boolean => {
  if (!pattern.startsWith(WILDCARD_PREFIX)) return pattern === destinationHost
  const base = pattern.slice(WILDCARD_PREFIX.length)
  return destinationHost === base || destinationHost.endsWith(`.${base}`)
}

/**
 * One entry of a {@link HostIndex}: its normalised patterns (empty means
 * unrestricted) and the value returned when it matches.
 *
 * @since 0.1.0
 */
export interface HostIndexEntry<A> {
  readonly hosts: ReadonlyArray<HostPattern>
  readonly value: A
}

/** `host` itself, then each parent domain: `a.b.c`, `b.c`, `c`. */
const suffixesOf = (host: string): Array<string> => {
  const suffixes = [host]
  for (let dot = host.indexOf("."); dot !== -1; dot = host.indexOf(".", dot + 1)) {
    suffixes.push(host.slice(dot + 1))
  }
  return suffixes
}

const addTo = (map: Map<string, Array<number>>, key: string, index: number): void => {
  const indices = map.get(key)
  if (indices === undefined) map.set(key, [index])
  else indices.push(index)
}

/**
 * Matches a destination against many entries at a cost of O(labels of the
 * destination), not O(entries): exact patterns sit in a map keyed by host,
 * wildcards in a map keyed by their base domain, looked up for each suffix of
 * the destination. Patterns must already be normalised by {@link parse}; a
 * malformed one simply never matches.
 *
 * @example
 * import { HostPattern } from "@secretgate/core"
 *
 * const index = new HostPattern.HostIndex([
 *   { hosts: ["*.example.com"], value: "a" },
 *   { hosts: [], value: "b" }
 * ])
 * index.match("API.example.com") // ["a", "b"]
 * index.match("127.0.0.1") // ["b"]
 *
 * @since 0.1.0
 */
export class HostIndex<A> {
  /**
   * The number of entries.
   *
   * @since 0.1.0
   */
  readonly size: number
  readonly #values: ReadonlyArray<A>
  readonly #unrestricted: ReadonlyArray<number>
  readonly #unrestrictedValues: ReadonlyArray<A>
  readonly #exact = new Map<string, Array<number>>()
  readonly #wildcardBases = new Map<string, Array<number>>()

  /**
   * @since 0.1.0
   */
  constructor(entries: Iterable<HostIndexEntry<A>>) {
    const values: Array<A> = []
    const unrestricted: Array<number> = []
    for (const { hosts, value } of entries) {
      const index = values.push(value) - 1
      if (hosts.length === 0) unrestricted.push(index)
      for (const pattern of hosts) {
        if (pattern.startsWith(WILDCARD_PREFIX)) addTo(this.#wildcardBases, pattern.slice(WILDCARD_PREFIX.length), index)
        else addTo(this.#exact, pattern, index)
      }
    }
    this.size = values.length
    this.#values = values
    this.#unrestricted = unrestricted
    this.#unrestrictedValues = Object.freeze(unrestricted.map((index) => values[index]!))
  }

  /**
   * The values of every entry matching a raw destination hostname (normalised
   * here), each once, in entry order. Unrestricted entries match every host,
   * IP literals included; restricted entries never match an IP literal. A
   * malformed destination matches nothing.
   *
   * @since 0.1.0
   */
  match(destination: string): ReadonlyArray<A> {
    const normalized = normalizeDestination(destination)
    if (normalized === undefined) return []
    if (normalized.kind === "ip") return this.#unrestrictedValues
    const matched = new Set<number>(this.#exact.get(normalized.host))
    for (const suffix of suffixesOf(normalized.host)) {
      for (const index of this.#wildcardBases.get(suffix) ?? []) matched.add(index)
    }
    if (matched.size === 0) return this.#unrestrictedValues
    return [...this.#unrestricted, ...matched].sort((a, b) => a - b).map((index) => this.#values[index]!)
  }
}
