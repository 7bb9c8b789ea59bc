/**
 * Rows to records and back. Every row carries a MAC over all its fields under a key derived from
 * the key that sealed its value, so someone who can write the database but does not hold the key
 * cannot change where a value may go (its hosts), move a ciphertext, or edit any other field
 * unnoticed: a read that returns a whole record checks it and fails with `StoreCorrupted`.
 */
import { DecryptionFailed, KeyRing, SecretStore, StoreCorrupted } from "@secretgate/core"
import { Buffer } from "node:buffer"
import * as Crypto from "node:crypto"

type SecretRecord = SecretStore.SecretRecord
type SecretMetadata = SecretStore.SecretMetadata

/** A record as read, with the version its compare-and-set update needs. */
export interface Versioned {
  readonly record: SecretRecord
  readonly version: number
}

/** A whole row as read: the record, its version, and the MAC it carries (not checked yet). */
export interface Read extends Versioned {
  readonly mac: string
}

const MAC_PURPOSE = "secretgate/sql/v1/record-mac"

/** The purpose string of the key checks stored in the `keys` table. */
export const KEY_CHECK_PURPOSE = "secretgate/sql/v1/key-check"

/** HMAC-SHA256's block: a key is padded to it, XORed with `ipad`/`opad`. */
const BLOCK = 64

/**
 * HMAC-SHA256 under one key, with the padded keys computed once (RFC 2104:
 * `H((K ^ opad) || H((K ^ ipad) || message))`) and both hashes one-shot `crypto.hash` calls into
 * buffers reused across calls: `createHmac` per row cost a get several microseconds of set-up for
 * one short message. Where `crypto.hash` is missing (Node.js before 20.12), `createHmac`.
 */
const hmacSha256 = (key: Buffer): (message: string) => Buffer => {
  if (typeof Crypto.hash !== "function" || key.length > BLOCK) {
    return (message) => Crypto.createHmac("sha256", key).update(message).digest()
  }
  const inner = Buffer.alloc(BLOCK + 1024, 0x36)
  const outer = Buffer.alloc(BLOCK + 32, 0x5c)
  for (let i = 0; i < key.length; i++) {
    inner[i] = 0x36 ^ key[i]!
    outer[i] = 0x5c ^ key[i]!
  }
  const padded = Buffer.from(inner.subarray(0, BLOCK))
  return (message) => {
    const length = Buffer.byteLength(message)
    // a long message (a row with a large value) gets space of its own: the reused space stays small
    const space = BLOCK + length <= inner.length ? inner : Buffer.allocUnsafe(BLOCK + length)
    if (space !== inner) padded.copy(space, 0)
    space.write(message, BLOCK)
    Crypto.hash("sha256", space.subarray(0, BLOCK + length), "buffer").copy(outer, BLOCK)
    return Crypto.hash("sha256", outer, "buffer")
  }
}

/** How many verified rows a store remembers. */
const VERIFIED_ROWS = 4_096

/**
 * The longest MAC input of a row that is remembered once verified (4,096 of them: 16 MiB at most):
 * a larger row is checked in full each time it is read (its hashing, not the set-up, dominates).
 */
const REMEMBERED_INPUT = 4_096

/** The length of a MAC in base64 (HMAC-SHA256: 32 bytes). */
const MAC_LENGTH = 44

/**
 * Whether two lists of authenticated fields (text, numbers, `null`, lists of text) are equal, i.e.
 * whether their MAC inputs (their JSON) are.
 */
const sameFields = (a: ReadonlyArray<unknown>, b: ReadonlyArray<unknown>): boolean => {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) {
    const x = a[i]
    const y = b[i]
    if (x === y) continue
    if (!Array.isArray(x) || !Array.isArray(y) || x.length !== y.length) return false
    for (let j = 0; j < x.length; j++) if (x[j] !== y[j]) return false
  }
  return true
}

/** MACs rows under the keys of a ring. */
export const makeMac = (ring: KeyRing.KeyRing) => {
  const macs = new Map<string, (message: string) => Buffer>()
  const macOf = (keyId: string): ((message: string) => Buffer) | undefined => {
    let mac = macs.get(keyId)
    if (mac === undefined) {
      const key = ring.keys.get(keyId)
      if (key === undefined) return undefined
      mac = hmacSha256(Buffer.from(KeyRing.keyCheck(key, MAC_PURPOSE), "base64"))
      macs.set(keyId, mac)
    }
    return mac
  }
  // JSON.stringify(["secretgate-sql-record", 1, ...fields]), without copying the fields' array
  const input = (fields: ReadonlyArray<unknown>) => `["secretgate-sql-record",1,${JSON.stringify(fields).slice(1)}`
  // The rows verified lately, by MAC, with their authenticated fields. A row read again with every
  // field equal is known good without computing its MAC again: under one key id (fixed for this
  // store's life) the outcome cannot differ; a row changed in any field is checked in full. The
  // cache holds nothing a writer of the database cannot read there (MACs, sealed values), and its
  // comparisons are against those, never against a MAC the key would make. Oldest out first.
  const verified = new Map<string, ReadonlyArray<unknown>>()
  return {
    /** The MAC of a record sealed with a key of the ring (base64). */
    sign: (record: SecretRecord): string =>
      macOf(record.sealed.keyId)!(input(SecretStore.authenticatedFields(record))).toString("base64"),
    /** Checks a record read back against its MAC. */
    verify: (record: SecretRecord, mac: string): DecryptionFailed | StoreCorrupted | undefined => {
      const compute = macOf(record.sealed.keyId)
      if (compute === undefined) {
        return new DecryptionFailed({
          message: `secret ${JSON.stringify(record.id)} is sealed with key ${JSON.stringify(record.sealed.keyId)}, which is not on this replica's key ring: add it to keyRing`,
          secretId: record.id
        })
      }
      const fields = SecretStore.authenticatedFields(record)
      // only the MAC as this store writes it (base64 decoding skips spaces and junk: a padded MAC
      // would pass the comparison, and each padding be remembered apart)
      if (mac.length === MAC_LENGTH) {
        const known = verified.get(mac)
        if (known !== undefined && sameFields(known, fields)) return undefined
        const text = input(fields)
        if (KeyRing.macMatches(compute(text), mac)) {
          if (text.length <= REMEMBERED_INPUT) {
            if (verified.size >= VERIFIED_ROWS) verified.delete(verified.keys().next().value!)
            // a copy: the record's own lists go to the caller
            verified.set(mac, fields.map((field) => (Array.isArray(field) ? [...field] : field)))
          }
          return undefined
        }
      }
      return new StoreCorrupted({
        message:
          `secret ${JSON.stringify(record.id)} does not match its MAC: its row was changed without the key (or restored from another database); restore it from a backup or delete it`,
        location: `secrets row ${JSON.stringify(record.id)}`
      })
    }
  }
}

const isStringArray = (value: unknown): value is Array<string> => {
  if (!Array.isArray(value)) return false
  for (const item of value) if (typeof item !== "string") return false
  return true
}

const corrupted = (id: unknown, why: string) =>
  new StoreCorrupted({ message: `secrets row ${JSON.stringify(String(id))} is malformed: ${why}`, location: `secrets row ${JSON.stringify(String(id))}` })

const date = (value: unknown): Date | undefined => {
  const parsed = value instanceof Date ? value : typeof value === "string" ? new Date(value) : undefined
  return parsed !== undefined && Number.isFinite(parsed.getTime()) ? parsed : undefined
}

/** Why the metadata columns of a row are unusable, if they are. */
const metadataProblem = (row: Record<string, unknown>): StoreCorrupted | undefined => {
  const { description, hosts, id } = row
  if (typeof id !== "string" || typeof row["organization_id"] !== "string" || typeof row["name"] !== "string" || typeof row["placeholder"] !== "string") {
    return corrupted(id, "a text column is missing")
  }
  if (!isStringArray(hosts)) return corrupted(id, "hosts is not a list of text")
  if (description !== null && typeof description !== "string") return corrupted(id, "description is not text")
  if (date(row["created_at"]) === undefined || date(row["updated_at"]) === undefined) return corrupted(id, "a timestamp is missing")
  return undefined
}

/** The metadata columns of a row. */
export const toMetadata = (row: Record<string, unknown>): SecretMetadata | StoreCorrupted => {
  const problem = metadataProblem(row)
  if (problem !== undefined) return problem
  const metadata = {
    id: row["id"] as string,
    organizationId: row["organization_id"] as string,
    name: row["name"] as string,
    hosts: row["hosts"] as Array<string>,
    placeholder: row["placeholder"] as string,
    createdAt: date(row["created_at"])!,
    updatedAt: date(row["updated_at"])!
  }
  return row["description"] === null ? metadata : { ...metadata, description: row["description"] as string }
}

/** A whole row: record, version and MAC (built in one go: a get reads one on every call). */
export const toVersioned = (row: Record<string, unknown>): Read | StoreCorrupted => {
  const problem = metadataProblem(row)
  if (problem !== undefined) return problem
  const { ciphertext, description, key_id, mac, nonce } = row
  if (typeof key_id !== "string" || typeof nonce !== "string" || typeof ciphertext !== "string" || typeof mac !== "string") {
    return corrupted(row["id"], "the sealed value is missing")
  }
  const id = row["id"] as string
  const organizationId = row["organization_id"] as string
  const name = row["name"] as string
  const hosts = row["hosts"] as Array<string>
  const placeholder = row["placeholder"] as string
  const sealed = { keyId: key_id, nonce, ciphertext }
  const createdAt = date(row["created_at"])!
  const updatedAt = date(row["updated_at"])!
  const record: SecretRecord = description === null
    ? { id, organizationId, name, hosts, placeholder, sealed, createdAt, updatedAt }
    : { id, organizationId, name, description: description as string, hosts, placeholder, sealed, createdAt, updatedAt }
  return { record, version: Number(row["version"]), mac }
}
