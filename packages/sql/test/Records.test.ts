/**
 * Rows to records, and the MAC each row carries: the MAC stays HMAC-SHA256 over the record's JSON
 * (rows written by earlier versions still verify), a row changed in any field is refused even
 * right after it was read unchanged, and malformed rows are `StoreCorrupted`.
 */
import { describe, expect, it } from "@effect/vitest"
import { KeyRing, SecretStore, StoreCorrupted } from "@secretgate/core"
import { createHmac } from "node:crypto"
import { makeMac, toMetadata, toVersioned } from "../src/internal/records.js"
import { testKey } from "./fixtures/testKey.js"

const ring = KeyRing.make([testKey])

/** The MAC as specified, computed with `createHmac`. */
const reference = (record: SecretStore.SecretRecord): string =>
  createHmac("sha256", Buffer.from(KeyRing.keyCheck(testKey, "secretgate/sql/v1/record-mac"), "base64"))
    .update(JSON.stringify(["secretgate-sql-record", 1, ...SecretStore.authenticatedFields(record)]))
    .digest("base64")

const record = (overrides: Partial<SecretStore.SecretRecord> = {}): SecretStore.SecretRecord => ({
  id: "3f1c2a9e-0000-4000-8000-000000000001",
  organizationId: "org-1",
  name: "stripe_key",
  hosts: ["api.stripe.com", "*.example.com"],
  placeholder: "sg_secret_0123456789abcdef0123456789abcdef",
  sealed: { keyId: testKey.id, nonce: "bm9uY2U=", ciphertext: "Y2lwaGVydGV4dA==" },
  createdAt: new Date("2026-01-02T03:04:05.678Z"),
  updatedAt: new Date("2026-01-02T03:04:05.678Z"),
  ...overrides
})

const row = (overrides: Record<string, unknown> = {}): Record<string, unknown> => ({
  organization_id: "org-1",
  id: "3f1c2a9e-0000-4000-8000-000000000001",
  name: "stripe_key",
  description: null,
  hosts: ["api.stripe.com"],
  placeholder: "sg_secret_0123456789abcdef0123456789abcdef",
  key_id: testKey.id,
  nonce: "bm9uY2U=",
  ciphertext: "Y2lwaGVydGV4dA==",
  mac: "bWFj",
  created_at: new Date("2026-01-02T03:04:05.678Z"),
  updated_at: "2026-01-02T03:04:05.678Z",
  version: "3",
  ...overrides
})

describe("sql records", () => {
  it("a row's MAC is HMAC-SHA256 under the derived key over its fields' JSON, whatever their length and characters", () => {
    const mac = makeMac(ring)
    const records = [
      record(),
      record({ name: "clé_🔑", description: "für die Ü-Bahn \"quoted\" \\ \u2028 \u0000" }),
      // longer than the reused buffer starts: it grows, and a short one after it is still right
      record({ description: "é".repeat(3_000), hosts: Array.from({ length: 50 }, (_, i) => `h${i}.example.com`) }),
      record({ name: "short" })
    ]
    for (const r of records) {
      expect(mac.sign(r)).toBe(reference(r))
      expect(mac.verify(r, reference(r))).toBeUndefined()
    }
  })

  it("a row changed in any field is refused, also right after it was read unchanged", () => {
    const mac = makeMac(ring)
    const original = record({ description: "d" })
    const signed = mac.sign(original)
    expect(mac.verify(original, signed)).toBeUndefined()
    expect(mac.verify({ ...original, hosts: [...original.hosts] }, signed)).toBeUndefined() // read again, equal
    const changed: Array<SecretStore.SecretRecord> = [
      { ...original, hosts: ["api.stripe.com"] },
      { ...original, hosts: [...original.hosts, "evil.example"] },
      { ...original, hosts: ["api.stripe.com", "*.example.co"] },
      { ...original, name: "other" },
      { ...original, id: "3f1c2a9e-0000-4000-8000-000000000002" },
      { ...original, organizationId: "org-2" },
      { ...original, description: "e" },
      record(), // description gone
      { ...original, placeholder: "sg_secret_ffffffffffffffffffffffffffffffff" },
      { ...original, sealed: { ...original.sealed, ciphertext: "b3RoZXI=" } },
      { ...original, sealed: { ...original.sealed, nonce: "b3RoZXI=" } },
      { ...original, createdAt: new Date(original.createdAt.getTime() + 1) },
      { ...original, updatedAt: new Date(original.updatedAt.getTime() - 1) }
    ]
    for (const tampered of changed) {
      const problem = mac.verify(tampered, signed)
      expect(problem?._tag).toBe("StoreCorrupted")
      expect(problem?.message).toMatch(/does not match its MAC/)
    }
  })

  it("what a caller does to a record it was given does not change what is known to be good", () => {
    const mac = makeMac(ring)
    const original = record()
    const signed = mac.sign(original)
    const read = { ...original, hosts: [...original.hosts] }
    expect(mac.verify(read, signed)).toBeUndefined()
    read.hosts.push("evil.example")
    expect(mac.verify({ ...original, hosts: [...original.hosts, "evil.example"] }, signed)?._tag).toBe("StoreCorrupted")
  })

  it("a MAC not written as the store writes it is refused, also after the row was read with its own", () => {
    const mac = makeMac(ring)
    const original = record()
    const signed = mac.sign(original)
    // base64 decoding skips spaces and junk: a padded MAC would otherwise pass, and be remembered apart
    const respelled = [`${signed}${" ".repeat(1_000)}`, ` ${signed}`, `${signed}\n`, signed.replace(/=$/, ""), `${signed.slice(0, 20)}\n${signed.slice(20)}`]
    for (const other of respelled) expect(mac.verify(original, other)?._tag).toBe("StoreCorrupted")
    expect(mac.verify(original, signed)).toBeUndefined()
    for (const other of respelled) expect(mac.verify(original, other)?._tag).toBe("StoreCorrupted")
  })

  it("a row moved to another key of the ring is refused, also after it was read under its own", () => {
    const second = KeyRing.keyFromBase64("second", Buffer.alloc(32, 7).toString("base64"))
    const mac = makeMac(KeyRing.make([testKey, second]))
    const original = record()
    const signed = mac.sign(original)
    const moved = { ...original, sealed: { ...original.sealed, keyId: "second" } }
    expect(mac.verify(moved, signed)?._tag).toBe("StoreCorrupted")
    expect(mac.verify(original, signed)).toBeUndefined()
    expect(mac.verify(moved, signed)?._tag).toBe("StoreCorrupted")
    // each key keeps its own space: signing under both, interleaved, stays right
    for (const length of [0, 10, 2_000, 5]) {
      const a = record({ description: "x".repeat(length) })
      const b = { ...a, sealed: { ...a.sealed, keyId: "second" } }
      expect(mac.verify(a, mac.sign(a))).toBeUndefined()
      expect(mac.verify(b, mac.sign(b))).toBeUndefined()
      expect(mac.sign(a)).toBe(reference(a))
      expect(mac.sign(b)).not.toBe(mac.sign(a))
    }
  })

  it("a row sealed with a key not on the ring is DecryptionFailed", () => {
    const mac = makeMac(ring)
    const other = record({ sealed: { keyId: "gone", nonce: "bm9uY2U=", ciphertext: "Y2lwaGVydGV4dA==" } })
    const problem = mac.verify(other, "bWFj")
    expect(problem?._tag).toBe("DecryptionFailed")
    expect(problem?.message).toMatch(/sealed with key "gone", which is not on this replica's key ring/)
  })

  it("rows become records (no description key when the column is null), with their version and MAC", () => {
    const read = toVersioned(row())
    if (read instanceof StoreCorrupted) throw new Error(read.message)
    expect(read.version).toBe(3)
    expect(read.mac).toBe("bWFj")
    expect(read.record).toStrictEqual({
      id: "3f1c2a9e-0000-4000-8000-000000000001",
      organizationId: "org-1",
      name: "stripe_key",
      hosts: ["api.stripe.com"],
      placeholder: "sg_secret_0123456789abcdef0123456789abcdef",
      sealed: { keyId: testKey.id, nonce: "bm9uY2U=", ciphertext: "Y2lwaGVydGV4dA==" },
      createdAt: new Date("2026-01-02T03:04:05.678Z"),
      updatedAt: new Date("2026-01-02T03:04:05.678Z")
    })
    const described = toVersioned(row({ description: "d" }))
    expect(described instanceof StoreCorrupted ? undefined : described.record.description).toBe("d")
    const metadata = toMetadata(row())
    expect(metadata).toStrictEqual({
      id: "3f1c2a9e-0000-4000-8000-000000000001",
      organizationId: "org-1",
      name: "stripe_key",
      hosts: ["api.stripe.com"],
      placeholder: "sg_secret_0123456789abcdef0123456789abcdef",
      createdAt: new Date("2026-01-02T03:04:05.678Z"),
      updatedAt: new Date("2026-01-02T03:04:05.678Z")
    })
    expect(toMetadata(row({ description: "d" }))).toMatchObject({ description: "d" })
  })

  it("malformed rows are StoreCorrupted, saying what is wrong", () => {
    const cases: Array<[Record<string, unknown>, RegExp]> = [
      [{ name: null }, /a text column is missing/],
      [{ organization_id: 7 }, /a text column is missing/],
      [{ hosts: "api.stripe.com" }, /hosts is not a list of text/],
      [{ hosts: ["a", 1] }, /hosts is not a list of text/],
      [{ description: 5 }, /description is not text/],
      [{ created_at: "yesterday" }, /a timestamp is missing/],
      [{ updated_at: null }, /a timestamp is missing/]
    ]
    for (const [overrides, message] of cases) {
      for (const read of [toVersioned(row(overrides)), toMetadata(row(overrides))]) {
        expect(read).toMatchObject({ _tag: "StoreCorrupted" })
        expect((read as { message: string }).message).toMatch(/secrets row "3f1c2a9e-0000-4000-8000-000000000001" is malformed/)
        expect((read as { message: string }).message).toMatch(message)
      }
    }
    for (const column of ["key_id", "nonce", "ciphertext", "mac"]) {
      const read = toVersioned(row({ [column]: null }))
      expect(read).toMatchObject({ _tag: "StoreCorrupted" })
      expect((read as { message: string }).message).toMatch(/the sealed value is missing/)
    }
  })
})
