/**
 * Sealing and opening secret values with tweetnacl `secretbox` (XSalsa20-Poly1305).
 *
 * Every seal draws a fresh random 24-byte nonce and uses the ring's current key. The sealed
 * plaintext binds the record: it starts with the organization id and secret id, and `open` checks
 * both, so a ciphertext copied onto another record fails with `DecryptionFailed`.
 *
 * @since 0.1.0
 */
import { Context, Effect, Layer, Redacted, Schema } from "effect"
import { Buffer } from "node:buffer"
import nacl from "tweetnacl"
import { DecryptionFailed } from "./SecretError.js"
import * as KeyRing from "./KeyRing.js"

/**
 * A value as stored: key id, nonce and ciphertext (base64). Safe to persist anywhere.
 *
 * @since 0.1.0
 */
export const SealedValue = Schema.Struct({
  keyId: Schema.String,
  nonce: Schema.String,
  ciphertext: Schema.String
})

/**
 * @since 0.1.0
 */
export type SealedValue = typeof SealedValue.Type

/**
 * Which record a sealed value belongs to.
 *
 * @since 0.1.0
 */
export interface Binding {
  readonly organizationId: string
  readonly secretId: string
}

/**
 * Seals and opens values for records.
 *
 * @since 0.1.0
 */
export interface SecretCipher {
  /** Seals with the current key and a fresh nonce. */
  readonly seal: (value: Redacted.Redacted<string>, binding: Binding) => SealedValue
  /** Opens a sealed value of this record, or fails with `DecryptionFailed`. */
  readonly open: (sealed: SealedValue, binding: Binding) => Effect.Effect<Redacted.Redacted<string>, DecryptionFailed>
  /** The id of the key new seals use. */
  readonly currentKeyId: string
}

/**
 * @since 0.1.0
 */
export const SecretCipher = Context.GenericTag<SecretCipher>("@secretgate/core/SecretCipher")

const encoder = new TextEncoder()
const decoder = new TextDecoder("utf-8", { fatal: true })
const VERSION = 1

const header = (binding: Binding): Uint8Array => {
  const org = encoder.encode(binding.organizationId)
  const id = encoder.encode(binding.secretId)
  const out = new Uint8Array(1 + 2 + org.length + 2 + id.length)
  const view = new DataView(out.buffer)
  out[0] = VERSION
  view.setUint16(1, org.length)
  out.set(org, 3)
  view.setUint16(3 + org.length, id.length)
  out.set(id, 5 + org.length)
  return out
}

const sameBytes = (a: Uint8Array, b: Uint8Array): boolean => {
  if (a.length !== b.length) return false
  let diff = 0
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!
  return diff === 0
}

/**
 * A cipher over a key ring.
 *
 * @since 0.1.0
 */
export const make = (ring: KeyRing.KeyRing): SecretCipher => {
  const fail = (binding: Binding, why: string) =>
    Effect.fail(new DecryptionFailed({ message: `secret ${JSON.stringify(binding.secretId)} could not be decrypted: ${why}`, secretId: binding.secretId }))
  return {
    currentKeyId: ring.current.id,
    seal(value, binding) {
      const head = header(binding)
      const body = encoder.encode(Redacted.value(value))
      const plaintext = new Uint8Array(head.length + body.length)
      plaintext.set(head)
      plaintext.set(body, head.length)
      const nonce = nacl.randomBytes(nacl.secretbox.nonceLength)
      const box = nacl.secretbox(plaintext, nonce, Redacted.value(ring.current.bytes))
      plaintext.fill(0)
      body.fill(0)
      return {
        keyId: ring.current.id,
        nonce: Buffer.from(nonce).toString("base64"),
        ciphertext: Buffer.from(box).toString("base64")
      }
    },
    open(sealed, binding) {
      const key = ring.keys.get(sealed.keyId)
      if (key === undefined) return fail(binding, `key ${JSON.stringify(sealed.keyId)} is not on the key ring`)
      const nonce = Buffer.from(sealed.nonce, "base64")
      if (nonce.length !== nacl.secretbox.nonceLength) return fail(binding, "malformed nonce")
      const plaintext = nacl.secretbox.open(new Uint8Array(Buffer.from(sealed.ciphertext, "base64")), new Uint8Array(nonce), Redacted.value(key.bytes))
      if (plaintext === null) return fail(binding, "authentication failed (wrong key or tampered data)")
      const head = header(binding)
      if (plaintext.length < head.length || !sameBytes(plaintext.subarray(0, head.length), head)) {
        return fail(binding, "the sealed value belongs to another record")
      }
      try {
        const value = decoder.decode(plaintext.subarray(head.length))
        return Effect.succeed(Redacted.make(value))
      } catch {
        return fail(binding, "the plaintext is not UTF-8")
      } finally {
        plaintext.fill(0)
      }
    }
  }
}

/**
 * Provides `SecretCipher` over a key ring.
 *
 * @since 0.1.0
 */
export const layer = (ring: KeyRing.KeyRing): Layer.Layer<SecretCipher> => Layer.succeed(SecretCipher, make(ring))
