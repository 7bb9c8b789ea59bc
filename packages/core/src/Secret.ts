/**
 * The domain: what a secret is, and the rules its inputs follow.
 *
 * Two forms of the create/update parameters exist: the `*Params` schemas hold the value as a
 * `Redacted` (what the `Secrets` service takes), the `*Body` schemas take it as a plain string (what
 * arrives over the wire or from Promise users) and redact it while decoding.
 *
 * @since 0.1.0
 */
import { Effect, ParseResult, Schema } from "effect"
import { Buffer } from "node:buffer"
import * as HostPattern from "./HostPattern.js"
import { InvalidSecretInput } from "./SecretError.js"

/**
 * Longest value, in UTF-8 bytes.
 *
 * @since 0.1.0
 */
export const MAX_VALUE_BYTES = 64 * 1024
/** @since 0.1.0 */
export const MAX_NAME_LENGTH = 255
/** @since 0.1.0 */
export const MAX_DESCRIPTION_LENGTH = 1024
/** @since 0.1.0 */
export const MAX_HOSTS = 100

const NAME_PATTERN = /^[a-zA-Z_][a-zA-Z0-9_-]*$/

// a lone UTF-16 surrogate: half of a pair, with no other half (UTF-8 cannot encode it)
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/

/** Why `text` is not well-formed Unicode, or `undefined` when it is. Never quotes or locates anything in it. */
const illFormed = (text: string): string | undefined =>
  LONE_SURROGATE.test(text) ? "must be well-formed Unicode text (it holds a lone UTF-16 surrogate)" : undefined

// every text input is checked for well-formed Unicode first, so no backend ever stores a changed text
const string = (what: string) =>
  Schema.String.annotations({ message: () => `must be ${what}` }).pipe(
    Schema.filter((text) => illFormed(text) ?? true)
  )

/**
 * A secret name: `^[a-zA-Z_][a-zA-Z0-9_-]*$`, 1–255 characters, unique (case-sensitive) within the
 * organization.
 *
 * @since 0.1.0
 */
export const SecretName = string("a string").pipe(
  Schema.filter((name) => {
    if (name.length === 0) return "must not be empty"
    if (name.length > MAX_NAME_LENGTH) return `must be at most ${MAX_NAME_LENGTH} characters (got ${name.length})`
    if (!NAME_PATTERN.test(name)) {
      return `${JSON.stringify(name)} must start with a letter or _ and contain only letters, digits, _ and -`
    }
    return true
  })
)

/**
 * The plaintext value (never echoed in a message): a non-empty string of at most 64 KiB of UTF-8.
 *
 * @since 0.1.0
 */
export const SecretValue = string("a string").pipe(
  Schema.filter((value) => {
    if (value.length === 0) return "must not be empty"
    const bytes = Buffer.byteLength(value, "utf8")
    if (bytes > MAX_VALUE_BYTES) return `must be at most ${MAX_VALUE_BYTES} bytes of UTF-8 (got ${bytes})`
    return true
  })
)

/**
 * An optional human description, at most 1,024 characters.
 *
 * @since 0.1.0
 */
export const Description = string("a string").pipe(
  Schema.filter((text) =>
    text.length <= MAX_DESCRIPTION_LENGTH || `must be at most ${MAX_DESCRIPTION_LENGTH} characters (got ${text.length})`
  )
)

/**
 * One allowed-host entry, decoded to its normal form (lower-case ASCII, IDN as punycode).
 *
 * @since 0.1.0
 */
export const Host = Schema.transformOrFail(string("a string"), Schema.String, {
  strict: true,
  decode: (input, _, ast) => {
    const parsed = HostPattern.parse(input)
    return parsed.ok
      ? ParseResult.succeed(parsed.pattern)
      : ParseResult.fail(new ParseResult.Type(ast, input, `${JSON.stringify(input)}: ${parsed.reason}`))
  },
  encode: ParseResult.succeed
})

/**
 * The allowed hosts: at most 100 entries, duplicates (after normalisation) removed. `[]` means
 * unrestricted.
 *
 * @since 0.1.0
 */
export const Hosts = Schema.Array(Host).annotations({ message: () => "must be an array of host names" }).pipe(
  Schema.filter((hosts) => hosts.length <= MAX_HOSTS || `must have at most ${MAX_HOSTS} entries (got ${hosts.length})`),
  Schema.transform(Schema.Array(Schema.String), {
    strict: true,
    decode: (hosts) => [...new Set(hosts)],
    encode: (hosts) => hosts
  })
)

/**
 * A secret as every read returns it. There is no `value`: it is write-only.
 *
 * @since 0.1.0
 */
export const Secret = Schema.Struct({
  id: Schema.String,
  name: Schema.String,
  description: Schema.optional(Schema.String),
  placeholder: Schema.String,
  hosts: Schema.Array(Schema.String),
  createdAt: Schema.Date,
  updatedAt: Schema.Date
}).annotations({ identifier: "Secret" })

/**
 * @since 0.1.0
 */
export type Secret = typeof Secret.Type

const createFields = {
  name: SecretName,
  description: Schema.optional(Description),
  hosts: Schema.optional(Hosts)
}

const updateFields = {
  description: Schema.optional(Schema.NullOr(Description)),
  hosts: Schema.optional(Hosts)
}

/**
 * What `Secrets.create` takes.
 *
 * @since 0.1.0
 */
export const CreateSecretParams = Schema.Struct({ ...createFields, value: Schema.RedactedFromSelf(SecretValue) })

/**
 * @since 0.1.0
 */
export type CreateSecretParams = typeof CreateSecretParams.Type

/**
 * The create parameters as sent by users and over the wire: `value` is a plain string.
 *
 * @since 0.1.0
 */
export const CreateSecretBody = Schema.Struct({ ...createFields, value: Schema.Redacted(SecretValue) }).annotations({
  identifier: "CreateSecret"
})

/**
 * What `Secrets.update` takes. Omitted fields stay; `description: null` clears the description.
 *
 * @since 0.1.0
 */
export const UpdateSecretParams = Schema.Struct({
  ...updateFields,
  value: Schema.optional(Schema.RedactedFromSelf(SecretValue))
})

/**
 * @since 0.1.0
 */
export type UpdateSecretParams = typeof UpdateSecretParams.Type

/**
 * The update parameters as sent by users and over the wire.
 *
 * @since 0.1.0
 */
export const UpdateSecretBody = Schema.Struct({ ...updateFields, value: Schema.optional(Schema.Redacted(SecretValue)) })
  .annotations({ identifier: "UpdateSecret" })

/**
 * How a page of secrets is sorted.
 *
 * @since 0.1.0
 */
export const SortField = Schema.Literal("name", "createdAt", "updatedAt").annotations({
  message: () => ({ message: `must be one of "name", "createdAt", "updatedAt"`, override: true })
})

/**
 * @since 0.1.0
 */
export const SortOrder = Schema.Literal("asc", "desc").annotations({
  message: () => ({ message: `must be "asc" or "desc"`, override: true })
})

/**
 * Query of a paginated list. `name` filters by case-insensitive substring; `cursor` is opaque and
 * comes from the previous page's `nextCursor`.
 *
 * @since 0.1.0
 */
export const ListQuery = Schema.Struct({
  cursor: Schema.optional(string("a string")),
  limit: Schema.optional(
    Schema.Number.annotations({ message: () => "must be a whole number from 1 to 200" }).pipe(
      Schema.filter((n) => (Number.isInteger(n) && n >= 1 && n <= 200) || "must be a whole number from 1 to 200")
    )
  ),
  name: Schema.optional(string("a string")),
  sort: Schema.optional(SortField),
  order: Schema.optional(SortOrder)
})

/**
 * @since 0.1.0
 */
export type ListQuery = typeof ListQuery.Type

/**
 * One page of secrets; `nextCursor` is `null` on the last page.
 *
 * @since 0.1.0
 */
export const SecretPage = Schema.Struct({
  items: Schema.Array(Secret),
  total: Schema.Number,
  nextCursor: Schema.NullOr(Schema.String)
}).annotations({ identifier: "SecretPage" })

/**
 * @since 0.1.0
 */
export type SecretPage = typeof SecretPage.Type

const fieldOf = (path: ReadonlyArray<PropertyKey>): string =>
  path.reduce<string>(
    (field, key) => (typeof key === "number" ? `${field}[${key}]` : field === "" ? String(key) : `${field}.${String(key)}`),
    ""
  )

/**
 * Decodes untrusted input with a schema, failing with an `InvalidSecretInput` that names the first
 * offending field and says why. Messages never contain the input's `value`.
 *
 * @since 0.1.0
 */
export const decodeInput = <A, I>(schema: Schema.Schema<A, I>, what = "input") => {
  const decode = Schema.decodeUnknown(schema, { errors: "first", onExcessProperty: "ignore" })
  return (input: unknown): Effect.Effect<A, InvalidSecretInput> =>
    nestedTooDeeply(input)
      ? Effect.fail(InvalidSecretInput.of(what, `is nested more than ${MAX_NESTING} levels deep, or too large`))
      : decode(input).pipe(
      Effect.mapError((error) => {
        const issue = ParseResult.ArrayFormatter.formatErrorSync(error)[0]
        if (issue === undefined) return InvalidSecretInput.of(what, "is invalid")
        const field = fieldOf(issue.path)
        if (field === "") return InvalidSecretInput.of(what, "must be an object")
        const message = issue._tag === "Missing" ? "is required" : issue.message
        return InvalidSecretInput.of(field, field === "value" ? safeValueMessage(message) : message)
      })
    )
}

/** Deeper than any valid input: refused before decoding, which would otherwise recurse without bound. */
const MAX_NESTING = 16

const nestedTooDeeply = (input: unknown): boolean => {
  const stack: Array<readonly [unknown, number]> = [[input, 0]]
  let visited = 0
  while (stack.length > 0) {
    const [value, depth] = stack.pop()!
    if (typeof value !== "object" || value === null) continue
    if (depth >= MAX_NESTING || ++visited > 100_000) return true
    for (const child of Array.isArray(value) ? value : Object.values(value)) {
      if (typeof child === "object" && child !== null) stack.push([child, depth + 1])
    }
  }
  return false
}

// Our own value messages never echo the input; anything else about `value` is replaced by a
// generic one, in case a message of effect's own ("Expected string, actual ...") would.
const safeValueMessage = (message: string): string =>
  message === "must not be empty" || message.startsWith("must be") || message === "is required"
    ? message
    : "must be a non-empty string"
