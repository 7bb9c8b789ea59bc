/**
 * Stored integrity values (MACs, key checks) match only as the code writes them: the same bytes in
 * canonical base64, compared in constant time.
 */
import { describe, expect, it } from "vitest"
import { KeyRing } from "@secretgate/core"
import { createHmac } from "node:crypto"

const key = KeyRing.keyFromBase64("k1", Buffer.alloc(32, 3).toString("base64"))

describe("KeyRing.macMatches", () => {
  const expected = createHmac("sha256", "k").update("record").digest()
  const written = expected.toString("base64")

  it("takes the MAC as Buffer.toString(\"base64\") writes it", () => {
    expect(KeyRing.macMatches(expected, written)).toBe(true)
  })

  it("refuses another MAC, a truncated one, and any other spelling of the same bytes", () => {
    const other = createHmac("sha256", "k").update("record!").digest("base64")
    for (const stored of [other, written.slice(0, -4), "", ` ${written}`, `${written} `, `${written}\n`, written.replace(/=$/, ""), `${written.slice(0, 10)}\n${written.slice(10)}`, written.replaceAll("+", "-").replaceAll("/", "_")]) {
      if (stored === written) continue
      expect(KeyRing.macMatches(expected, stored)).toBe(false)
    }
  })

  it("key checks go through it: the right key matches, a respelled check does not", () => {
    const check = KeyRing.keyCheck(key, "purpose")
    expect(KeyRing.keyCheckMatches(key, "purpose", check)).toBe(true)
    expect(KeyRing.keyCheckMatches(key, "purpose", `${check}  `)).toBe(false)
    expect(KeyRing.keyCheckMatches(key, "other purpose", check)).toBe(false)
  })
})
