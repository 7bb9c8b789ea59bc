/**
 * Rows to records and back. Every row carries a MAC over all its fields under a key derived from
 * the key that sealed its value, so someone who can write the database but does not hold the key
 * cannot change where a value may go (its hosts), move a ciphertext, or edit any other field
 * unnoticed: a read that returns a whole record checks it and fails with `StoreCorrupted`.
 */
import { DecryptionFailed, KeyRing, SecretStore, StoreCorrupted } from "@secretgate/core"
import { Buffer } from "node:buffer"
import { createHmac, timingSafeEqual } from "node:crypto"

type SecretRecord = SecretStore.SecretRecord
type SecretMetadata = SecretStore.SecretMetadata

/** A record as read, with the version its compare-and-set update needs. */
export interface Versioned {
  readonly record: SecretRecord
  readonly version: number
}

const MAC_PURPOSE = "secretgate/sql/v1/record-mac"

/** The purpose string of the key checks stored in the `keys` table. */
export const KEY_CHECK_PURPOSE = "secretgate/sql/v1/key-check"

/** MACs rows under the keys of a ring. */
export const makeMac = (ring: KeyRing.KeyRing) => {
  const macKeys = new Map<string, Buffer>()
  const macKey = (keyId: string): Buffer | undefined => {
    let derived = macKeys.get(keyId)
    if (derived === undefined) {
      const key = ring.keys.get(keyId)
      if (key === undefined) return undefined
      derived = Buffer.from(KeyRing.keyCheck(key, MAC_PURPOSE), "base64")
      macKeys.set(keyId, derived)
    }
    return derived
  }
  const input = (record: SecretRecord) => JSON.stringify(["secretgate-sql-record", 1, ...SecretStore.authenticatedFields(record)])
  const compute = (key: Buffer, record: SecretRecord) => createHmac("sha256", key).update(input(record)).digest()
  return {
    /** The MAC of a record sealed with a key of the ring (base64). */
    sign: (record: SecretRecord): string => compute(macKey(record.sealed.keyId)!, record).toString("base64"),
    /** Checks a record read back against its MAC. */
    verify: (record: SecretRecord, mac: string): DecryptionFailed | StoreCorrupted | undefined => {
      const key = macKey(record.sealed.keyId)
      if (key === undefined) {
        return new DecryptionFailed({
          message: `secret ${JSON.stringify(record.id)} is sealed with key ${JSON.stringify(record.sealed.keyId)}, which is not on this replica's key ring: add it to keyRing`,
          secretId: record.id
        })
      }
      const expected = compute(key, record)
      const actual = Buffer.from(mac, "base64")
      if (actual.length === expected.length && timingSafeEqual(actual, expected)) return undefined
      return new StoreCorrupted({
        message:
          `secret ${JSON.stringify(record.id)} does not match its MAC: its row was changed without the key (or restored from another database); restore it from a backup or delete it`,
        location: `secrets row ${JSON.stringify(record.id)}`
      })
    }
  }
}

const isStringArray = (value: unknown): value is Array<string> =>
  Array.isArray(value) && value.every((item) => typeof item === "string")

const corrupted = (id: unknown, why: string) =>
  new StoreCorrupted({ message: `secrets row ${JSON.stringify(String(id))} is malformed: ${why}`, location: `secrets row ${JSON.stringify(String(id))}` })

const date = (value: unknown): Date | undefined => {
  const parsed = value instanceof Date ? value : typeof value === "string" ? new Date(value) : undefined
  return parsed !== undefined && Number.isFinite(parsed.getTime()) ? parsed : undefined
}

/** The metadata columns of a row. */
export const toMetadata = (row: Record<string, unknown>): SecretMetadata | StoreCorrupted => {
  const { created_at, description, hosts, id, name, organization_id, placeholder, updated_at } = row
  if (typeof id !== "string" || typeof organization_id !== "string" || typeof name !== "string" || typeof placeholder !== "string") {
    return corrupted(id, "a text column is missing")
  }
  if (!isStringArray(hosts)) return corrupted(id, "hosts is not a list of text")
  if (description !== null && typeof description !== "string") return corrupted(id, "description is not text")
  const createdAt = date(created_at)
  const updatedAt = date(updated_at)
  if (createdAt === undefined || updatedAt === undefined) return corrupted(id, "a timestamp is missing")
  return {
    id,
    organizationId: organization_id,
    name,
    ...(description === null ? {} : { description }),
    hosts,
    placeholder,
    createdAt,
    updatedAt
  }
}

/** A whole row: record, MAC and version. */
export const toVersioned = (row: Record<string, unknown>): { readonly versioned: Versioned; readonly mac: string } | StoreCorrupted => {
  const metadata = toMetadata(row)
  if (metadata instanceof StoreCorrupted) return metadata
  const { ciphertext, key_id, mac, nonce, version } = row
  if (typeof key_id !== "string" || typeof nonce !== "string" || typeof ciphertext !== "string" || typeof mac !== "string") {
    return corrupted(metadata.id, "the sealed value is missing")
  }
  return {
    versioned: { record: { ...metadata, sealed: { keyId: key_id, nonce, ciphertext } }, version: Number(version) },
    mac
  }
}
