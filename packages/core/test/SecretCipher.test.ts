import { Effect, Exit, Redacted } from "effect"
import { Buffer } from "node:buffer"
import { inspect } from "node:util"
import { describe, expect, it } from "vitest"
import * as KeyRing from "../src/KeyRing.js"
import * as SecretCipher from "../src/SecretCipher.js"
import { DecryptionFailed } from "../src/SecretError.js"

const A1 = { organizationId: "org-a", secretId: "id-1" }
const A2 = { organizationId: "org-a", secretId: "id-2" }
const B1 = { organizationId: "org-b", secretId: "id-1" }

const open = (cipher: SecretCipher.SecretCipher, sealed: SecretCipher.SealedValue, binding: SecretCipher.Binding) =>
  Redacted.value(Effect.runSync(cipher.open(sealed, binding)))

const openFailure = (cipher: SecretCipher.SecretCipher, sealed: SecretCipher.SealedValue, binding: SecretCipher.Binding) => {
  const exit = Effect.runSyncExit(cipher.open(sealed, binding))
  if (Exit.isSuccess(exit)) throw new Error("expected the sealed value not to open")
  if (exit.cause._tag !== "Fail") throw new Error(`expected a typed failure, got ${exit.cause._tag}`)
  return exit.cause.error
}

const flipByte = (base64: string, index: number, mask: number) => {
  const bytes = Buffer.from(base64, "base64")
  bytes[index] = bytes[index]! ^ mask
  return bytes.toString("base64")
}

const keyBytes = (fill: number) => new Uint8Array(KeyRing.KEY_LENGTH).fill(fill)
const key = (id: string, fill = 7): KeyRing.Key => ({ id, bytes: Redacted.make(keyBytes(fill)) })

describe("SecretCipher", () => {
  const cipher = SecretCipher.make(KeyRing.ephemeral())

  it.each([
    ["ASCII", "sk-ant-api03-abc"],
    ["one character", "x"],
    ["unicode", "pässwörd 🔑 日本語 \u0000 \r\n \u{10FFFF}"],
    ["64 KiB", "v".repeat(64 * 1024)],
    ["64 KiB of multi-byte characters", "é".repeat(32 * 1024)]
  ])("seals and opens %s", (_, value) => {
    const sealed = cipher.seal(Redacted.make(value), A1)
    expect(open(cipher, sealed, A1)).toBe(value)
    expect(sealed.ciphertext).not.toContain(Buffer.from(value).toString("base64").slice(0, 16))
  })

  it("seals as base64 with the current key id and a 24-byte nonce", () => {
    const sealed = cipher.seal(Redacted.make("value"), A1)
    expect(Object.keys(sealed).sort()).toEqual(["ciphertext", "keyId", "nonce"])
    expect(sealed.keyId).toBe("ephemeral")
    expect(sealed.keyId).toBe(cipher.currentKeyId)
    expect(Buffer.from(sealed.nonce, "base64").length).toBe(24)
    expect(Buffer.from(sealed.nonce, "base64").toString("base64")).toBe(sealed.nonce)
    expect(Buffer.from(sealed.ciphertext, "base64").toString("base64")).toBe(sealed.ciphertext)
  })

  it("draws a fresh nonce for every seal", () => {
    const value = Redacted.make("same value")
    const seals = Array.from({ length: 200 }, () => cipher.seal(value, A1))
    expect(new Set(seals.map((s) => s.nonce)).size).toBe(200)
    expect(new Set(seals.map((s) => s.ciphertext)).size).toBe(200)
    for (const sealed of seals.slice(0, 5)) expect(open(cipher, sealed, A1)).toBe("same value")
  })

  it("fails with DecryptionFailed for every single flipped byte of the ciphertext", () => {
    const sealed = cipher.seal(Redacted.make("tamper-me-please"), A1)
    const length = Buffer.from(sealed.ciphertext, "base64").length
    for (let index = 0; index < length; index++) {
      for (const mask of [0x01, 0x80, 0xff]) {
        const error = openFailure(cipher, { ...sealed, ciphertext: flipByte(sealed.ciphertext, index, mask) }, A1)
        expect(error).toBeInstanceOf(DecryptionFailed)
        expect(error.secretId).toBe("id-1")
        expect(error.message).toContain("authentication failed")
      }
    }
    expect(open(cipher, sealed, A1)).toBe("tamper-me-please")
  })

  it("fails with DecryptionFailed for every single flipped byte of the nonce", () => {
    const sealed = cipher.seal(Redacted.make("tamper-me-please"), A1)
    for (let index = 0; index < 24; index++) {
      for (const mask of [0x01, 0x80, 0xff]) {
        const error = openFailure(cipher, { ...sealed, nonce: flipByte(sealed.nonce, index, mask) }, A1)
        expect(error).toBeInstanceOf(DecryptionFailed)
      }
    }
  })

  it("fails with DecryptionFailed for a truncated, extended or emptied ciphertext", () => {
    const sealed = cipher.seal(Redacted.make("tamper-me-please"), A1)
    const raw = Buffer.from(sealed.ciphertext, "base64")
    for (const ciphertext of [
      raw.subarray(0, raw.length - 1),
      raw.subarray(1),
      raw.subarray(0, 16),
      Buffer.concat([raw, Buffer.of(0)]),
      Buffer.alloc(0)
    ]) {
      expect(openFailure(cipher, { ...sealed, ciphertext: ciphertext.toString("base64") }, A1)).toBeInstanceOf(DecryptionFailed)
    }
  })

  it("fails with DecryptionFailed for a malformed nonce", () => {
    const sealed = cipher.seal(Redacted.make("v"), A1)
    const nonce = Buffer.from(sealed.nonce, "base64")
    for (const bad of [nonce.subarray(0, 23).toString("base64"), Buffer.concat([nonce, Buffer.of(1)]).toString("base64"), "", "!!!"]) {
      const error = openFailure(cipher, { ...sealed, nonce: bad }, A1)
      expect(error).toBeInstanceOf(DecryptionFailed)
      expect(error.message).toContain("malformed nonce")
    }
  })

  it("fails with DecryptionFailed under the wrong key", () => {
    const sealed = cipher.seal(Redacted.make("v"), A1)
    const other = SecretCipher.make(KeyRing.ephemeral()) // same key id "ephemeral", other bytes
    const error = openFailure(other, sealed, A1)
    expect(error).toBeInstanceOf(DecryptionFailed)
    expect(error.message).toContain("authentication failed")
  })

  it("binds the sealed value to its record: a swapped ciphertext does not open", () => {
    const sealed = cipher.seal(Redacted.make("belongs to org-a/id-1"), A1)
    for (const binding of [A2, B1, { organizationId: "org-a", secretId: "id-10" }, { organizationId: "org-", secretId: "aid-1" }]) {
      const error = openFailure(cipher, sealed, binding)
      expect(error).toBeInstanceOf(DecryptionFailed)
      expect(error.message).toContain("belongs to another record")
      expect(error.secretId).toBe(binding.secretId)
    }
    expect(open(cipher, sealed, A1)).toBe("belongs to org-a/id-1")
  })

  it("keeps the organization and id apart (no ambiguity from concatenation)", () => {
    const sealed = cipher.seal(Redacted.make("v"), { organizationId: "ab", secretId: "c" })
    expect(openFailure(cipher, sealed, { organizationId: "a", secretId: "bc" })).toBeInstanceOf(DecryptionFailed)
  })

  it("never puts the value into a failure", () => {
    const sealed = cipher.seal(Redacted.make("very-distinctive-value"), A1)
    const errors = [
      openFailure(cipher, sealed, A2),
      openFailure(cipher, { ...sealed, ciphertext: flipByte(sealed.ciphertext, 20, 1) }, A1),
      openFailure(SecretCipher.make(KeyRing.ephemeral()), sealed, A1)
    ]
    for (const error of errors) {
      for (const shown of [error.message, String(error), inspect(error, { depth: Infinity }), JSON.stringify(error)]) {
        expect(shown).not.toContain("very-distinctive-value")
      }
    }
  })

  describe("rotation", () => {
    it("opens old seals with an old key, seals new ones with the newest key, and refuses retired keys", () => {
      const oldKey = KeyRing.generateKey("2026-01")
      const newKey = KeyRing.generateKey("2026-06")
      const before = SecretCipher.make(KeyRing.make([oldKey]))
      const oldSeal = before.seal(Redacted.make("old value"), A1)
      expect(oldSeal.keyId).toBe("2026-01")

      const rotatedRing = KeyRing.rotate(KeyRing.make([oldKey]), newKey)
      const rotated = SecretCipher.make(rotatedRing)
      expect(rotated.currentKeyId).toBe("2026-06")
      expect(open(rotated, oldSeal, A1)).toBe("old value")

      // rotation: re-seal with the newest key
      const newSeal = rotated.seal(Redacted.make(open(rotated, oldSeal, A1)), A1)
      expect(newSeal.keyId).toBe("2026-06")
      expect(open(rotated, newSeal, A1)).toBe("old value")
      // a process that has not seen the new key yet cannot open it, and says why
      expect(openFailure(before, newSeal, A1).message).toContain(`key "2026-06" is not on the key ring`)

      const retired = SecretCipher.make(KeyRing.retire(rotatedRing, "2026-01"))
      expect(retired.currentKeyId).toBe("2026-06")
      expect(open(retired, newSeal, A1)).toBe("old value")
      const error = openFailure(retired, oldSeal, A1)
      expect(error).toBeInstanceOf(DecryptionFailed)
      expect(error.message).toBe(`secret "id-1" could not be decrypted: key "2026-01" is not on the key ring`)
    })

    it("keeps every older key through several rotations", () => {
      let ring = KeyRing.make([key("k1", 1)])
      const seals: Array<SecretCipher.SealedValue> = []
      for (let i = 2; i <= 5; i++) {
        seals.push(SecretCipher.make(ring).seal(Redacted.make(`v${i - 1}`), A1))
        ring = KeyRing.rotate(ring, key(`k${i}`, i))
      }
      const cipher = SecretCipher.make(ring)
      expect(cipher.currentKeyId).toBe("k5")
      expect(seals.map((s) => s.keyId)).toEqual(["k1", "k2", "k3", "k4"])
      expect(seals.map((s) => open(cipher, s, A1))).toEqual(["v1", "v2", "v3", "v4"])
      const pruned = KeyRing.retire(KeyRing.retire(ring, "k2"), "k1")
      expect([...pruned.keys.keys()]).toEqual(["k3", "k4", "k5"])
      expect(pruned.current.id).toBe("k5")
    })
  })
})

describe("KeyRing", () => {
  it("makes a ring whose last key is current", () => {
    const ring = KeyRing.make([key("a", 1), key("b", 2), key("c", 3)])
    expect(ring.current.id).toBe("c")
    expect([...ring.keys.keys()]).toEqual(["a", "b", "c"])
  })

  it("refuses an empty list", () => {
    expect(() => KeyRing.make([])).toThrow(new TypeError("a key ring needs at least one key"))
  })

  it.each(["", "has space", "a/b", "ключ", "a:b", "x".repeat(65)])("refuses the key id %j", (id) => {
    expect(() => KeyRing.make([key(id)])).toThrow(TypeError)
    expect(() => KeyRing.make([key(id)])).toThrow("must be 1-64 characters of [A-Za-z0-9_.-]")
  })

  it.each(["k", "2026-06", "prod_key.v2", "x".repeat(64)])("accepts the key id %j", (id) => {
    expect(KeyRing.make([key(id)]).current.id).toBe(id)
  })

  it.each([0, 16, 31, 33, 64])("refuses a key of %i bytes", (size) => {
    const bad = { id: "k", bytes: Redacted.make(new Uint8Array(size)) }
    expect(() => KeyRing.make([bad])).toThrow(new TypeError(`key "k" must be 32 bytes`))
  })

  it("refuses a duplicate key id", () => {
    expect(() => KeyRing.make([key("k", 1), key("j", 2), key("k", 3)])).toThrow(new TypeError(`key id "k" appears twice`))
  })

  it("generates random keys with valid ids", () => {
    const a = KeyRing.generateKey()
    const b = KeyRing.generateKey()
    expect(Redacted.value(a.bytes).length).toBe(32)
    expect(Buffer.from(Redacted.value(a.bytes)).equals(Buffer.from(Redacted.value(b.bytes)))).toBe(false)
    expect(() => KeyRing.make([a])).not.toThrow()
  })

  it("refuses to retire the current key or an unknown key", () => {
    const ring = KeyRing.make([key("a", 1), key("b", 2)])
    expect(() => KeyRing.retire(ring, "b")).toThrow(`key "b" is current and cannot be retired`)
    expect(() => KeyRing.retire(ring, "zzz")).toThrow(`key "zzz" is not on the key ring`)
  })

  it("refuses to rotate to a key id already on the ring", () => {
    expect(() => KeyRing.rotate(KeyRing.make([key("a")]), key("a", 9))).toThrow("appears twice")
  })

  describe("keyFromBase64", () => {
    const raw = Buffer.from(Array.from({ length: 32 }, (_, i) => i * 7 + 3))

    it("reads standard and url-safe base64, plain or redacted, surrounding whitespace ignored", () => {
      for (const text of [
        raw.toString("base64"),
        raw.toString("base64url"),
        ` ${raw.toString("base64")}\n`
      ]) {
        const fromString = KeyRing.keyFromBase64("k", text)
        expect(fromString.id).toBe("k")
        expect(Buffer.from(Redacted.value(fromString.bytes)).equals(raw)).toBe(true)
        const fromRedacted = KeyRing.keyFromBase64("k", Redacted.make(text))
        expect(Buffer.from(Redacted.value(fromRedacted.bytes)).equals(raw)).toBe(true)
      }
    })

    it("round-trips through keyToBase64", () => {
      const original = KeyRing.generateKey("k")
      const text = KeyRing.keyToBase64(original)
      expect(Redacted.isRedacted(text)).toBe(true)
      expect(String(text)).toBe("<redacted>")
      const back = KeyRing.keyFromBase64("k", text)
      expect(Buffer.from(Redacted.value(back.bytes)).equals(Buffer.from(Redacted.value(original.bytes)))).toBe(true)
    })

    it.each([
      ["too short", Buffer.alloc(31, 0xab).toString("base64"), 31],
      ["too long", Buffer.alloc(33, 0xab).toString("base64"), 33],
      ["empty", "", 0],
      ["not base64", "!!!!not-a-key!!!!", undefined]
    ])("says what is wrong with a key that is %s, without echoing it", (_, text, got) => {
      let thrown: unknown
      try {
        KeyRing.keyFromBase64("prod", text)
      } catch (error) {
        thrown = error
      }
      expect(thrown).toBeInstanceOf(TypeError)
      const message = (thrown as TypeError).message
      expect(message).toMatch(/^key "prod" must be 32 bytes of base64 \(got \d+ bytes\)$/)
      if (got !== undefined) expect(message).toContain(`(got ${got} bytes)`)
      if (text.length > 0) {
        expect(message).not.toContain(text)
        expect(String(thrown)).not.toContain(text)
        expect(inspect(thrown)).not.toContain(text)
      }
    })
  })

  describe("never shows key bytes", () => {
    const secretBytes = Buffer.from(Array.from({ length: 32 }, (_, i) => 200 + (i % 50)))
    const ring = KeyRing.rotate(
      KeyRing.make([KeyRing.keyFromBase64("old", secretBytes.toString("base64"))]),
      KeyRing.keyFromBase64("new", Buffer.from(secretBytes).reverse().toString("base64"))
    )
    const forms = (bytes: Buffer) => [
      bytes.toString("base64"),
      bytes.toString("base64url"),
      bytes.toString("hex"),
      [...bytes.subarray(0, 8)].join(", "),
      [...bytes.subarray(0, 8)].join(",")
    ]

    it("in util.inspect, JSON or String of a ring, a key or a cipher", () => {
      const shown = [
        inspect(ring, { depth: Infinity }),
        inspect(ring, { depth: Infinity, showHidden: true }),
        inspect(ring.keys, { depth: Infinity }),
        inspect(SecretCipher.make(ring), { depth: Infinity, showHidden: true }),
        JSON.stringify(ring),
        JSON.stringify(ring.current),
        JSON.stringify([...ring.keys.values()]),
        String(ring.current.bytes),
        `${ring.current.bytes}`
      ]
      for (const text of shown) {
        for (const form of [...forms(secretBytes), ...forms(Buffer.from(secretBytes).reverse())]) {
          expect(text).not.toContain(form)
        }
      }
      expect(JSON.stringify(ring.current)).toBe(`{"id":"new","bytes":"<redacted>"}`)
      expect(inspect(ring.current)).toContain("<redacted>")
    })
  })
})
