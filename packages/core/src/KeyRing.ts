/**
 * Encryption keys, each known by a key id. The newest key seals; every key still on the ring opens.
 * Rotation is: add a key (it becomes current), re-seal every record, then retire the old key.
 *
 * @since 0.1.0
 */
import { Data, Redacted } from "effect"
import { Buffer } from "node:buffer"
import { createHmac, timingSafeEqual } from "node:crypto"
import nacl from "tweetnacl"

/**
 * Bytes in a key (tweetnacl `secretbox.keyLength`).
 *
 * @since 0.1.0
 */
export const KEY_LENGTH = 32

const KEY_ID = /^[A-Za-z0-9_.-]{1,64}$/

/**
 * A key management request on a store that cannot be carried out: retiring the current key, a key
 * still in use, an unknown key id, rotating keys that come from configuration. An operator's act on
 * one store, not a wire error. Every backend with key management (filesystem, SQL) fails with this
 * one class, re-exported as `FileSystemSecretStore.KeyManagementError` and
 * `SqlSecretStore.KeyManagementError`.
 *
 * @since 0.1.0
 */
export class KeyManagementError extends Data.TaggedError("KeyManagementError")<{
  readonly message: string
}> {}

/**
 * One key. The bytes are `Redacted` so that logging a key ring never prints them.
 *
 * @since 0.1.0
 */
export interface Key {
  readonly id: string
  readonly bytes: Redacted.Redacted<Uint8Array>
}

/**
 * The keys a cipher may use; `current` seals.
 *
 * @since 0.1.0
 */
export interface KeyRing {
  readonly current: Key
  readonly keys: ReadonlyMap<string, Key>
}

/**
 * A fresh random key.
 *
 * @since 0.1.0
 */
export const generateKey = (id: string = `k${Date.now().toString(36)}`): Key => ({
  id,
  bytes: Redacted.make(nacl.randomBytes(KEY_LENGTH))
})

/**
 * Reads a key from base64 (standard or url-safe), as found in an environment variable. Throws a
 * `TypeError` that says what is wrong (never echoing the input).
 *
 * @since 0.1.0
 */
export const keyFromBase64 = (id: string, base64: string | Redacted.Redacted<string>): Key => {
  const text = typeof base64 === "string" ? base64 : Redacted.value(base64)
  const bytes = new Uint8Array(Buffer.from(text.trim(), "base64"))
  if (bytes.length !== KEY_LENGTH) {
    throw new TypeError(`key ${JSON.stringify(id)} must be ${KEY_LENGTH} bytes of base64 (got ${bytes.length} bytes)`)
  }
  return { id, bytes: Redacted.make(bytes) }
}

/**
 * The key as base64, for writing to a key file or a secret manager.
 *
 * @since 0.1.0
 */
export const keyToBase64 = (key: Key): Redacted.Redacted<string> =>
  Redacted.make(Buffer.from(Redacted.value(key.bytes)).toString("base64"))

/**
 * A ring from keys, oldest first: the last one is current. Throws a `TypeError` for an empty list,
 * a bad key id, a key of the wrong size or a duplicate id.
 *
 * @since 0.1.0
 * @example
 * ```ts
 * import { KeyRing } from "@secretgate/core"
 * const ring = KeyRing.make([KeyRing.generateKey("2026-01"), KeyRing.generateKey("2026-06")])
 * ring.current.id // "2026-06"
 * ```
 */
export const make = (keys: ReadonlyArray<Key>): KeyRing => {
  if (keys.length === 0) throw new TypeError("a key ring needs at least one key")
  const byId = new Map<string, Key>()
  for (const key of keys) {
    if (!KEY_ID.test(key.id)) throw new TypeError(`key id ${JSON.stringify(key.id)} must be 1-64 characters of [A-Za-z0-9_.-]`)
    if (Redacted.value(key.bytes).length !== KEY_LENGTH) throw new TypeError(`key ${JSON.stringify(key.id)} must be ${KEY_LENGTH} bytes`)
    if (byId.has(key.id)) throw new TypeError(`key id ${JSON.stringify(key.id)} appears twice`)
    byId.set(key.id, key)
  }
  return { current: keys[keys.length - 1]!, keys: byId }
}

/**
 * A ring with one fresh random key: for tests and the in-memory backend, whose data dies with the
 * process anyway.
 *
 * @since 0.1.0
 */
export const ephemeral = (): KeyRing => make([generateKey("ephemeral")])

/**
 * The same ring with `key` added as the new current key.
 *
 * @since 0.1.0
 */
export const rotate = (ring: KeyRing, key: Key): KeyRing => make([...ring.keys.values(), key])

/**
 * The same ring without `keyId`. The current key cannot be retired.
 *
 * @since 0.1.0
 */
export const retire = (ring: KeyRing, keyId: string): KeyRing => {
  if (keyId === ring.current.id) throw new TypeError(`key ${JSON.stringify(keyId)} is current and cannot be retired`)
  if (!ring.keys.has(keyId)) throw new TypeError(`key ${JSON.stringify(keyId)} is not on the key ring`)
  const older = [...ring.keys.values()].filter((key) => key.id !== keyId && key !== ring.current)
  return make([...older, ring.current])
}

/**
 * A check value of `key` for `purpose` (`HMAC-SHA256(key, purpose)`, base64): stored beside data
 * sealed with the key, it tells the right key from a wrong one under the same id at open, and
 * reveals nothing about the key. Each backend passes its own purpose string.
 *
 * @since 0.1.0
 */
export const keyCheck = (key: Key, purpose: string): string =>
  createHmac("sha256", Redacted.value(key.bytes)).update(purpose).digest("base64")

/**
 * `true` when `check` is `keyCheck(key, purpose)`, compared in constant time.
 *
 * @since 0.1.0
 */
export const keyCheckMatches = (key: Key, purpose: string, check: string): boolean =>
  macMatches(Buffer.from(keyCheck(key, purpose), "base64"), check)

/**
 * `true` when `stored` is `expected` written as base64 exactly as `Buffer.toString("base64")`
 * writes it (base64 decoding skips spaces and junk, so any other spelling is refused: stored
 * integrity values are written by this code and read back as they were), compared in constant
 * time. For the MACs and key checks the backends keep beside their data.
 *
 * @since 0.1.0
 */
export const macMatches = (expected: Uint8Array, stored: string): boolean => {
  if (stored.length !== Math.ceil(expected.length / 3) * 4) return false
  const actual = Buffer.from(stored, "base64")
  return actual.length === expected.length && timingSafeEqual(actual, expected) && actual.toString("base64") === stored
}
