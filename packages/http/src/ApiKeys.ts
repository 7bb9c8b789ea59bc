/**
 * API keys of the REST server. Each key belongs to one organization and carries scopes:
 * `secrets:manage` for the `/secret` routes, `secrets:resolve` for the egress resolve route, which
 * returns values. A key never holds both, so a management key can never read a value.
 *
 * Keys are kept as SHA-256 hashes only; the plaintext exists once, when a key is generated or
 * configured, and is never stored or logged.
 *
 * @since 0.1.0
 */
import { Context, Effect, Layer, Option, Redacted } from "effect"
import { Buffer } from "node:buffer"
import { createHash, randomBytes, timingSafeEqual } from "node:crypto"

/**
 * What a key may do: `secrets:manage` (create, list, get, update, delete) or `secrets:resolve`
 * (read the values behind placeholders, for an egress proxy).
 *
 * @since 0.1.0
 */
export type Scope = "secrets:manage" | "secrets:resolve"

/**
 * The scope of the management routes.
 *
 * @since 0.1.0
 */
export const MANAGE: Scope = "secrets:manage"

/**
 * The scope of the egress resolve route.
 *
 * @since 0.1.0
 */
export const RESOLVE: Scope = "secrets:resolve"

/**
 * An authenticated key: who is calling, for which organization, allowed to do what.
 *
 * @since 0.1.0
 */
export interface ApiKey {
  /** A short, non-secret name of the key (for logs and revocation). */
  readonly id: string
  readonly organizationId: string
  readonly scopes: ReadonlyArray<Scope>
}

/**
 * A key as configured: either its plaintext `key` (hashed at once, never kept) or its `hash`
 * (`sha256:<64 hex>`, as printed by {@link hash}), so that configuration need not hold plaintext.
 *
 * @since 0.1.0
 */
export type KeyEntry =
  & {
    readonly id?: string
    readonly organizationId: string
    readonly scopes: ReadonlyArray<Scope>
  }
  & ({ readonly key: string | Redacted.Redacted<string> } | { readonly hash: string })

/**
 * Looks up the key behind a bearer token.
 *
 * @since 0.1.0
 */
export interface ApiKeys {
  /** The key whose plaintext is `token`, if any. */
  readonly authenticate: (token: Redacted.Redacted<string>) => Effect.Effect<Option.Option<ApiKey>>
  /**
   * Calls `listener` with each key as it is revoked; returns the unsubscribe function. Optional:
   * the server ends a revoked key's open watch streams at once when it is given, and otherwise
   * notices at the stream's next heartbeat (when it authenticates the key again).
   */
  readonly onRevoke?: (listener: (apiKey: ApiKey) => void) => () => void
}

/**
 * @since 0.1.0
 */
export const ApiKeys = Context.GenericTag<ApiKeys>("@secretgate/http/ApiKeys")

/**
 * A mutable, in-memory set of keys: the `ApiKeys` of `SecretServer.serve` and of tests, which can
 * issue and revoke keys while the server runs.
 *
 * @since 0.1.0
 */
export interface Registry extends ApiKeys {
  /**
   * Adds a configured key; fails (throws) on a malformed entry (a `TypeError` for a key holding
   * whitespace, control characters or non-ASCII) or a duplicate key or id.
   */
  readonly add: (entry: KeyEntry) => ApiKey
  /** Generates a fresh key for `organizationId`, returning its plaintext (shown this once). */
  readonly issue: (options: { readonly organizationId: string; readonly scopes: ReadonlyArray<Scope>; readonly id?: string }) => {
    readonly apiKey: ApiKey
    readonly key: Redacted.Redacted<string>
  }
  /**
   * Removes the key with this id; true when there was one. Requests authenticate no more with it,
   * and the server ends the watch streams it opened.
   */
  readonly revoke: (id: string) => boolean
  readonly onRevoke: (listener: (apiKey: ApiKey) => void) => () => void
}

const HASH_PREFIX = "sha256:"
const HASH_PATTERN = /^sha256:[0-9a-f]{64}$/
const KEY_PREFIX = "sgk_"
const MIN_KEY_LENGTH = 16
const BASE32 = "abcdefghijklmnopqrstuvwxyz234567"

const digest = (key: string): Buffer => createHash("sha256").update(key, "utf8").digest()

/**
 * The stored form of a key: `sha256:<hex>`. Keys are long random strings, so a plain SHA-256 is
 * enough (a slow password hash protects guessable secrets, which these are not).
 *
 * @since 0.1.0
 * @example
 * ```ts
 * import { ApiKeys } from "@secretgate/http"
 * console.log(ApiKeys.hash("sgk_...")) // put this in configuration instead of the key
 * ```
 */
export const hash = (key: string | Redacted.Redacted<string>): string =>
  HASH_PREFIX + digest(typeof key === "string" ? key : Redacted.value(key)).toString("hex")

/**
 * A fresh random key: `sgk_` and 40 characters of base32 (200 random bits).
 *
 * @since 0.1.0
 */
export const generate = (): Redacted.Redacted<string> => {
  const bytes = randomBytes(40)
  let key = KEY_PREFIX
  for (const byte of bytes) key += BASE32[byte & 31]
  return Redacted.make(key)
}

const checkScopes = (scopes: ReadonlyArray<Scope>): ReadonlyArray<Scope> => {
  if (scopes.length === 0) throw new Error("an API key needs at least one scope (\"secrets:manage\" or \"secrets:resolve\")")
  for (const scope of scopes) {
    if (scope !== MANAGE && scope !== RESOLVE) {
      throw new Error(`unknown API key scope ${JSON.stringify(scope)}: use "secrets:manage" or "secrets:resolve"`)
    }
  }
  if (scopes.includes(MANAGE) && scopes.includes(RESOLVE)) {
    throw new Error(
      "an API key cannot hold both \"secrets:manage\" and \"secrets:resolve\": issue one key per scope, so that a management key can never read values"
    )
  }
  return [...new Set(scopes)]
}

const describeEntry = (entry: KeyEntry, position: number | undefined): string =>
  entry.id !== undefined
    ? `API key ${JSON.stringify(entry.id)}`
    : position === undefined
    ? "the API key"
    : `the API key at position ${position} of the configured keys (counting from 0)`

// What a bearer token can carry: printable ASCII without spaces. A key with anything else (a
// trailing newline read from a file, a tab, a non-ASCII letter) could be stored but never
// presented, so it is refused where it is configured.
const KEY_CHARACTERS = /^[\x21-\x7e]*$/

/**
 * Throws a `TypeError` when `key` holds whitespace, control characters or anything outside
 * printable ASCII. The message names the entry (`label`), never the key.
 *
 * @since 0.1.0
 */
export const checkKeyCharacters = (key: string, label = "the API key"): void => {
  if (KEY_CHARACTERS.test(key)) return
  const what = /^\s|\s$/.test(key)
    ? "leading or trailing whitespace (a newline read from a file?)"
    : /[\s\p{Cc}]/u.test(key)
    ? "whitespace or control characters"
    : "characters outside printable ASCII"
  throw new TypeError(
    `${label} contains ${what}; an Authorization header cannot carry it, so it could never authenticate. ` +
      "Remove them (keys are used exactly as given, never trimmed)"
  )
}

interface Stored {
  readonly apiKey: ApiKey
  readonly digest: Buffer
}

/**
 * A registry holding `entries`. Throws on a malformed entry (missing organization, bad scopes, a
 * key shorter than 16 characters, a key holding whitespace, control characters or non-ASCII (a
 * `TypeError` naming the entry by id or position, never quoting the key), a malformed hash, a
 * duplicate).
 *
 * @since 0.1.0
 * @example
 * ```ts
 * import { ApiKeys } from "@secretgate/http"
 * const keys = ApiKeys.makeRegistry([{ key: process.env.SECRETGATE_API_KEY!, organizationId: "acme", scopes: ["secrets:manage"] }])
 * const { key } = keys.issue({ organizationId: "acme", scopes: ["secrets:resolve"] })
 * ```
 */
export const makeRegistry = (entries: Iterable<KeyEntry> = []): Registry => {
  const byDigest = new Map<string, Stored>()
  const byId = new Map<string, string>()
  const revocationListeners = new Set<(apiKey: ApiKey) => void>()
  let counter = 0

  const store = (digestBytes: Buffer, options: { readonly id?: string; readonly organizationId: string; readonly scopes: ReadonlyArray<Scope> }) => {
    if (typeof options.organizationId !== "string" || options.organizationId === "") {
      throw new Error("an API key must belong to an organization (organizationId is empty)")
    }
    const scopes = checkScopes(options.scopes)
    const id = options.id ?? `key-${++counter}-${digestBytes.subarray(0, 4).toString("hex")}`
    if (byId.has(id)) throw new Error(`an API key with id ${JSON.stringify(id)} already exists`)
    const hex = digestBytes.toString("hex")
    if (byDigest.has(hex)) throw new Error(`API key ${JSON.stringify(id)} is configured twice`)
    const apiKey: ApiKey = { id, organizationId: options.organizationId, scopes }
    byDigest.set(hex, { apiKey, digest: digestBytes })
    byId.set(id, hex)
    return apiKey
  }

  const add = (entry: KeyEntry, position?: number): ApiKey => {
    if ("hash" in entry) {
      if (!HASH_PATTERN.test(entry.hash)) throw new Error("an API key hash must look like sha256:<64 lower-case hex digits>")
      return store(Buffer.from(entry.hash.slice(HASH_PREFIX.length), "hex"), entry)
    }
    const key = typeof entry.key === "string" ? entry.key : Redacted.value(entry.key)
    checkKeyCharacters(key, describeEntry(entry, position))
    if (key.length < MIN_KEY_LENGTH) {
      throw new Error(`an API key must be at least ${MIN_KEY_LENGTH} characters long; ApiKeys.generate() makes good ones`)
    }
    return store(digest(key), entry)
  }

  let position = 0
  for (const entry of entries) add(entry, position++)

  return {
    add: (entry) => add(entry),
    issue: (options) => {
      const key = generate()
      return { apiKey: store(digest(Redacted.value(key)), options), key }
    },
    revoke: (id) => {
      const hex = byId.get(id)
      if (hex === undefined) return false
      const stored = byDigest.get(hex)!
      byId.delete(id)
      byDigest.delete(hex)
      for (const listener of [...revocationListeners]) listener(stored.apiKey)
      return true
    },
    onRevoke: (listener) => {
      revocationListeners.add(listener)
      return () => void revocationListeners.delete(listener)
    },
    authenticate: (token) =>
      Effect.sync(() => {
        const presented = digest(Redacted.value(token))
        // The map lookup is keyed by a SHA-256 digest, which an attacker cannot steer byte by byte,
        // and the final comparison is constant-time.
        const stored = byDigest.get(presented.toString("hex"))
        if (stored === undefined || !timingSafeEqual(stored.digest, presented)) return Option.none()
        return Option.some(stored.apiKey)
      })
  }
}

/**
 * Provides `ApiKeys` from configured entries or an existing registry.
 *
 * @since 0.1.0
 */
export const layer = (keys: Iterable<KeyEntry> | ApiKeys): Layer.Layer<ApiKeys> =>
  Layer.sync(ApiKeys, () => (isApiKeys(keys) ? keys : makeRegistry(keys)))

const isApiKeys = (u: Iterable<KeyEntry> | ApiKeys): u is ApiKeys =>
  typeof (u as Partial<ApiKeys>).authenticate === "function"
