/**
 * One record file: `{ format, version, mac, record }`. The record holds only the sealed value; the
 * MAC (HMAC-SHA256 under a key derived from the sealing key) covers every field, so a changed host
 * list, a swapped ciphertext or a flipped bit is caught when the file is read.
 */
import { DecryptionFailed, KeyRing, StoreCorrupted, SecretStore } from "@secretgate/core"
import { Either, Schema } from "effect"
import { createHmac } from "node:crypto"
import { recordMacKey } from "./keys.js"
import { fileKeyOf, FORMAT_VERSION } from "./layout.js"

type SecretRecord = SecretStore.SecretRecord

const RECORD_FORMAT = "secretgate-record"

/**
 * Largest record file read. The largest valid record is about 120 KB (a 64 KiB value sealed and
 * base64-encoded is ~87 KB, plus up to 100 hosts of 253 characters and a 1,024-character
 * description); anything beyond this is not a record and is never read into memory.
 */
export const MAX_FILE_BYTES = 1024 * 1024

/** What an unreadable record file still tells about itself (unverified), to fail the right lookups. */
export interface Claim {
  readonly id?: string
  readonly organizationId?: string
  readonly name?: string
  readonly placeholder?: string
}

/** A record file that cannot be used, and the error every lookup of it fails with. */
export interface Damage {
  readonly fileKey: string
  readonly path: string
  readonly error: StoreCorrupted | DecryptionFailed
  readonly claim: Claim
}

/** The outcome of reading one record file. */
export type Decoded =
  | { readonly _tag: "Record"; readonly record: SecretRecord }
  | { readonly _tag: "Damaged"; readonly damage: Damage }
  /** Verified shape, but sealed with a key the store knows and this process does not hold. */
  | { readonly _tag: "MissingKey"; readonly keyId: string; readonly damage: Damage }

const macInput = (record: SecretRecord): string =>
  JSON.stringify([RECORD_FORMAT, FORMAT_VERSION, ...SecretStore.authenticatedFields(record)])

const mac = (key: KeyRing.Key, record: SecretRecord): Buffer =>
  createHmac("sha256", recordMacKey(key)).update(macInput(record)).digest()

const encodeRecord = Schema.encodeSync(SecretStore.SecretRecord)
const decodeRecord = Schema.decodeUnknownEither(SecretStore.SecretRecord)

/** The file content of `record`, authenticated with `key` (the key that sealed it). */
export const encode = (record: SecretRecord, key: KeyRing.Key): string =>
  `${
    JSON.stringify({
      format: RECORD_FORMAT,
      version: FORMAT_VERSION,
      mac: mac(key, record).toString("base64"),
      record: encodeRecord(record)
    })
  }\n`

const claimOf = (value: unknown): Claim => {
  if (typeof value !== "object" || value === null) return {}
  const record = (value as Record<string, unknown>)["record"]
  if (typeof record !== "object" || record === null) return {}
  const fields = record as Record<string, unknown>
  const claim: { -readonly [K in keyof Claim]: Claim[K] } = {}
  for (const field of ["id", "organizationId", "name", "placeholder"] as const) {
    const text = fields[field]
    if (typeof text === "string") claim[field] = text
  }
  return claim
}

/** A damaged-record entry with a message an operator can act on. */
export const damaged = (fileKey: string, path: string, why: string, claim: Claim = {}): Damage => {
  const what = claim.id === undefined ? "a secret record" : `secret record ${JSON.stringify(claim.id)}`
  return {
    fileKey,
    path,
    claim,
    error: new StoreCorrupted({
      message: `${what} is damaged (${why}): restore ${path} from a backup, or delete the secret`,
      location: path
    })
  }
}

/**
 * Reads a record file's text. `keys` are the keys this process holds; `knownKeyIds` the ids the
 * manifest lists (a record sealed with an id outside both is damaged, not merely unreadable).
 */
export const decode = (
  fileKey: string,
  path: string,
  text: string,
  keys: ReadonlyMap<string, KeyRing.Key>,
  knownKeyIds: ReadonlySet<string>,
  retiredKeyIds: ReadonlySet<string> = new Set()
): Decoded => {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return { _tag: "Damaged", damage: damaged(fileKey, path, "not valid JSON: truncated or overwritten", { id: fileKey }) }
  }
  const claim = claimOf(parsed)
  const fail = (why: string): Decoded => ({ _tag: "Damaged", damage: damaged(fileKey, path, why, claim) })
  const body = parsed as Record<string, unknown>
  if (typeof parsed !== "object" || parsed === null || body["format"] !== RECORD_FORMAT) return fail("not a record file")
  if (body["version"] !== FORMAT_VERSION) {
    return fail(`format version ${JSON.stringify(body["version"])}, this library reads ${FORMAT_VERSION}`)
  }
  const decoded = decodeRecord(body["record"])
  if (Either.isLeft(decoded)) return fail("its fields do not form a record")
  const record = decoded.right
  if (fileKeyOf(record.id) !== fileKey) return fail(`it holds record ${JSON.stringify(record.id)}, which belongs elsewhere`)
  // only keys the manifest lists may seal: a retired key (or one never registered) is refused even
  // when this process still holds it, so a record MAC'd with it cannot come back
  if (retiredKeyIds.has(record.sealed.keyId)) {
    return fail(`sealed with key ${JSON.stringify(record.sealed.keyId)}, which this store has retired`)
  }
  if (!knownKeyIds.has(record.sealed.keyId)) return fail(`sealed with unknown key ${JSON.stringify(record.sealed.keyId)}`)
  const key = keys.get(record.sealed.keyId)
  if (key === undefined) {
    return {
      _tag: "MissingKey",
      keyId: record.sealed.keyId,
      damage: {
        fileKey,
        path,
        claim,
        error: new DecryptionFailed({
          message: `secret ${JSON.stringify(record.id)} is sealed with key ${
            JSON.stringify(record.sealed.keyId)
          }, which this process does not hold; reopen the store with the current key ring`,
          secretId: record.id
        })
      }
    }
  }
  if (typeof body["mac"] !== "string" || !KeyRing.macMatches(mac(key, record), body["mac"])) {
    return fail("it fails its integrity check: tampered with or damaged")
  }
  return { _tag: "Record", record }
}
