/**
 * The typed errors of secretgate. Every fallible operation fails with one of these; each is a
 * `Schema.TaggedError`, so it survives the wire (the HTTP backend re-creates the same class) and
 * `err instanceof SecretNotFound` works in Promise code. None of them ever carries a secret value.
 *
 * @since 0.1.0
 */
import { Schema } from "effect"

/**
 * No secret with that id (or name) exists in the organization. Another organization's secret is
 * reported exactly like a missing one.
 *
 * @since 0.1.0
 */
export class SecretNotFound extends Schema.TaggedError<SecretNotFound>()("SecretNotFound", {
  message: Schema.String,
  secretId: Schema.optional(Schema.String),
  names: Schema.optional(Schema.Array(Schema.String))
}) {
  /** @since 0.1.0 */
  static readonly status = 404
  /** @since 0.1.0 */
  static byId(secretId: string): SecretNotFound {
    return new SecretNotFound({ message: `secret ${JSON.stringify(secretId)} not found`, secretId })
  }
  /** @since 0.1.0 */
  static byNames(names: ReadonlyArray<string>): SecretNotFound {
    const list = names.map((name) => JSON.stringify(name)).join(", ")
    return new SecretNotFound({
      message: names.length === 1 ? `secret ${list} not found` : `secrets ${list} not found`,
      names
    })
  }
}

/**
 * A secret with that name already exists in the organization (names are case-sensitive).
 *
 * @since 0.1.0
 */
export class SecretNameTaken extends Schema.TaggedError<SecretNameTaken>()("SecretNameTaken", {
  message: Schema.String,
  /** The contested name (not `name`, which every Error has for its class name). */
  secretName: Schema.String
}) {
  /** @since 0.1.0 */
  static readonly status = 409
  /** @since 0.1.0 */
  static of(name: string): SecretNameTaken {
    return new SecretNameTaken({
      message: `a secret named ${JSON.stringify(name)} already exists in this organization`,
      secretName: name
    })
  }
}

/**
 * The input broke a domain rule. `field` says which (`name`, `hosts[2]`, `value`, `cursor`, ...)
 * and `message` says why, e.g. `hosts[2] "api.example.com:443": ports are not supported`.
 *
 * @since 0.1.0
 */
export class InvalidSecretInput extends Schema.TaggedError<InvalidSecretInput>()("InvalidSecretInput", {
  message: Schema.String,
  field: Schema.String
}) {
  /** @since 0.1.0 */
  static readonly status = 400
  /** @since 0.1.0 */
  static of(field: string, reason: string): InvalidSecretInput {
    // `hosts[2] "a.com:1": ports are not supported` reads better than `hosts[2]: "a.com:1": ...`
    const separator = reason.startsWith("\"") ? " " : ": "
    return new InvalidSecretInput({ message: `${field}${separator}${reason}`, field })
  }
}

/**
 * The organization already holds as many secrets as its quota allows.
 *
 * @since 0.1.0
 */
export class QuotaExceeded extends Schema.TaggedError<QuotaExceeded>()("QuotaExceeded", {
  message: Schema.String,
  limit: Schema.Number
}) {
  /** @since 0.1.0 */
  static readonly status = 400
  /** @since 0.1.0 */
  static of(limit: number): QuotaExceeded {
    return new QuotaExceeded({
      message: `the organization has reached its quota of ${limit} secrets; delete unused secrets first`,
      limit
    })
  }
}

/**
 * Missing, malformed or unknown credentials.
 *
 * @since 0.1.0
 */
export class Unauthorized extends Schema.TaggedError<Unauthorized>()("Unauthorized", {
  message: Schema.String
}) {
  /** @since 0.1.0 */
  static readonly status = 401
}

/**
 * Valid credentials that do not allow this operation (wrong scope or organization).
 *
 * @since 0.1.0
 */
export class Forbidden extends Schema.TaggedError<Forbidden>()("Forbidden", {
  message: Schema.String
}) {
  /** @since 0.1.0 */
  static readonly status = 403
}

/**
 * Stored data could not be read back as written (damaged, truncated, or of an unknown format).
 * `location` names the record or file, so an operator knows what to restore.
 *
 * @since 0.1.0
 */
export class StoreCorrupted extends Schema.TaggedError<StoreCorrupted>()("StoreCorrupted", {
  message: Schema.String,
  location: Schema.optional(Schema.String)
}) {
  /** @since 0.1.0 */
  static readonly status = 500
}

/**
 * A sealed value failed to open: wrong or missing key, tampered ciphertext, or a ciphertext
 * copied from another record. Never answered with silently wrong data.
 *
 * @since 0.1.0
 */
export class DecryptionFailed extends Schema.TaggedError<DecryptionFailed>()("DecryptionFailed", {
  message: Schema.String,
  secretId: Schema.optional(Schema.String)
}) {
  /** @since 0.1.0 */
  static readonly status = 500
}

/**
 * The backend could not be reached or failed to answer (I/O error, remote server down, timeout).
 *
 * @since 0.1.0
 */
export class StoreUnavailable extends Schema.TaggedError<StoreUnavailable>()("StoreUnavailable", {
  message: Schema.String
}) {
  /** @since 0.1.0 */
  static readonly status = 503
}

/**
 * Failures of the backend that any operation may meet: damaged data, a value that will not open,
 * a backend that cannot be reached, or (for a remote backend) credentials it refuses.
 *
 * @since 0.1.0
 */
export type StoreError = StoreCorrupted | DecryptionFailed | StoreUnavailable | Unauthorized | Forbidden

/**
 * Every error a secretgate operation can fail with, as one schema (a tagged union), for the wire.
 *
 * @since 0.1.0
 */
export const SecretError = Schema.Union(
  SecretNotFound,
  SecretNameTaken,
  InvalidSecretInput,
  QuotaExceeded,
  Unauthorized,
  Forbidden,
  StoreCorrupted,
  DecryptionFailed,
  StoreUnavailable
)

/**
 * @since 0.1.0
 */
export type SecretError = typeof SecretError.Type

/**
 * The HTTP status that stands for an error.
 *
 * @since 0.1.0
 */
export const statusOf = (error: SecretError): number => {
  switch (error._tag) {
    case "SecretNotFound":
      return SecretNotFound.status
    case "SecretNameTaken":
      return SecretNameTaken.status
    case "InvalidSecretInput":
      return InvalidSecretInput.status
    case "QuotaExceeded":
      return QuotaExceeded.status
    case "Unauthorized":
      return Unauthorized.status
    case "Forbidden":
      return Forbidden.status
    case "StoreCorrupted":
      return StoreCorrupted.status
    case "DecryptionFailed":
      return DecryptionFailed.status
    case "StoreUnavailable":
      return StoreUnavailable.status
  }
}
