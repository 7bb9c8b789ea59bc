import fc from "fast-check"
import { Buffer } from "node:buffer"
import { describe, expect, it } from "vitest"
import * as Placeholder from "../src/Placeholder.js"

const ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
const DEFAULT_FORMAT = /^sg_secret_[a-z2-7]{32}$/

/** A placeholder with a chosen token, so tests can control what follows it. */
const make = (fill: string, prefix = Placeholder.DEFAULT_PREFIX) => prefix + fill.repeat(32).slice(0, 32)

const P1 = make("a")
const P2 = make("b2")
const P3 = make("7z")

/** Every start index `indexIn` reports, walking the bytes as a stream consumer would. */
const indicesIn = (scanner: Placeholder.Scanner, bytes: Uint8Array): Array<number> => {
  const found: Array<number> = []
  let at = scanner.indexIn(bytes, 0)
  while (at !== -1) {
    found.push(at)
    at = scanner.indexIn(bytes, at + scanner.length)
  }
  return found
}

const tokenArb = fc.string({ unit: fc.constantFrom(...ALPHABET), minLength: 32, maxLength: 32 })
const prefixArb = fc
  .tuple(
    fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz"),
    fc.string({ unit: fc.constantFrom(..."abcdefghijklmnopqrstuvwxyz0123456789_"), maxLength: 31 })
  )
  .map(([head, rest]) => head + rest)

describe("generate", () => {
  it("is the default prefix plus 32 characters of [a-z2-7]", () => {
    for (let i = 0; i < 200; i++) expect(Placeholder.generate()).toMatch(DEFAULT_FORMAT)
    expect(Placeholder.DEFAULT_PREFIX).toBe("sg_secret_")
    expect(Placeholder.TOKEN_LENGTH).toBe(32)
  })

  it("never repeats over many draws", () => {
    const seen = new Set<string>()
    for (let i = 0; i < 20_000; i++) seen.add(Placeholder.generate())
    expect(seen.size).toBe(20_000)
  })

  it("uses the whole alphabet at every position (all 160 bits are random)", () => {
    // A bit-extraction bug (a position fed by fewer than 5 random bits) shows up as a position that
    // only ever takes some of the 32 characters. With 3,000 draws the chance that a fair position
    // misses a character is about 32 * (31/32)^3000, i.e. never.
    const seen = Array.from({ length: 32 }, () => new Set<string>())
    for (let i = 0; i < 3_000; i++) {
      const token = Placeholder.generate().slice(Placeholder.DEFAULT_PREFIX.length)
      for (let position = 0; position < 32; position++) seen[position]!.add(token[position]!)
    }
    for (const characters of seen) expect([...characters].sort().join("")).toBe([...ALPHABET].sort().join(""))
  })

  it("takes a configurable prefix", () => {
    const placeholder = Placeholder.generate("acme_")
    expect(placeholder).toMatch(/^acme_[a-z2-7]{32}$/)
    expect(Placeholder.isPlaceholder(placeholder, "acme_")).toBe(true)
    expect(Placeholder.isPlaceholder(placeholder)).toBe(false)
    expect(new Placeholder.Scanner("acme_").findAll(`x ${placeholder} y`)).toEqual([placeholder])
  })
})

describe("checkPrefix", () => {
  it.each(["a", "sg_secret_", "acme_", "x9_", "a".repeat(32), "z0123456789_"])("accepts %j", (prefix) => {
    expect(Placeholder.checkPrefix(prefix)).toBeUndefined()
    expect(() => new Placeholder.Scanner(prefix)).not.toThrow()
  })

  it.each([
    ["empty", ""],
    ["upper-case", "Sg_secret_"],
    ["starts with a digit", "1abc"],
    ["starts with _", "_abc"],
    ["dash", "sg-secret-"],
    ["dot", "sg.secret"],
    ["space", "sg secret"],
    ["non-ASCII", "sé_"],
    ["URL-special", "a%2f"],
    ["33 characters", "a".repeat(33)]
  ])("rejects a prefix with %s", (_, prefix) => {
    const problem = Placeholder.checkPrefix(prefix)
    expect(problem).toContain("must be 1-32 characters of [a-z0-9_] starting with a letter")
    expect(problem).toContain(JSON.stringify(prefix))
    expect(() => new Placeholder.Scanner(prefix)).toThrow(TypeError)
    expect(() => new Placeholder.Scanner(prefix)).toThrow(problem!)
  })
})

describe("isPlaceholder", () => {
  it("accepts exactly one placeholder", () => {
    expect(Placeholder.isPlaceholder(Placeholder.generate())).toBe(true)
    expect(Placeholder.isPlaceholder(P1)).toBe(true)
    expect(Placeholder.isPlaceholder(make("234567"))).toBe(true)
  })

  it.each([
    ["31 token characters", P1.slice(0, -1)],
    ["33 token characters", `${P1}a`],
    ["the prefix alone", "sg_secret_"],
    ["empty", ""],
    ["an upper-case token", `sg_secret_${"A".repeat(32)}`],
    ["a 0 in the token", `sg_secret_${"a".repeat(31)}0`],
    ["a 1 in the token", `sg_secret_1${"a".repeat(31)}`],
    ["an 8 in the token", `sg_secret_${"a".repeat(15)}8${"a".repeat(16)}`],
    ["a - in the token", `sg_secret_${"a".repeat(16)}-${"a".repeat(15)}`],
    ["another prefix", `sg_secreT_${"a".repeat(32)}`],
    ["leading space", ` ${P1}`.slice(0, P1.length)],
    ["surrounding text", ` ${P1} `],
    ["a non-ASCII token character", `sg_secret_${"a".repeat(31)}é`]
  ])("rejects %s", (_, text) => {
    expect(Placeholder.isPlaceholder(text)).toBe(false)
  })

  it("checks against the given prefix", () => {
    expect(Placeholder.isPlaceholder(make("a", "k_"), "k_")).toBe(true)
    expect(Placeholder.isPlaceholder(make("a", "k_"), "j_")).toBe(false)
  })
})

describe("Scanner", () => {
  const scanner = new Placeholder.Scanner()

  it("has the length of prefix plus token", () => {
    expect(scanner.length).toBe(42)
    expect(new Placeholder.Scanner("k_").length).toBe(34)
  })

  describe("findAll", () => {
    it("finds placeholders in order, duplicates kept", () => {
      expect(scanner.findAll(`Bearer ${P1}`)).toEqual([P1])
      expect(scanner.findAll(`${P2} and ${P1}, again ${P2}`)).toEqual([P2, P1, P2])
      expect(scanner.findAll("nothing here")).toEqual([])
      expect(scanner.findAll("")).toEqual([])
    })

    it("finds the prefix inside other text", () => {
      expect(scanner.findAll(`token=${P1}&x=1`)).toEqual([P1])
      expect(scanner.findAll(`{"key":"${P1}"}`)).toEqual([P1])
      expect(scanner.findAll(`xsg_secret_${"a".repeat(32)}`)).toEqual([P1]) // no look-behind rule
      expect(scanner.findAll(`/v1/${P1}/items`)).toEqual([P1])
      expect(scanner.findAll(`user:${P1}`)).toEqual([P1])
    })

    it("finds a placeholder whatever follows it, token characters included", () => {
      expect(scanner.findAll(`${P1}a`)).toEqual([P1])
      expect(scanner.findAll(`${P1}7`)).toEqual([P1])
      expect(scanner.findAll(`${P1}${"b".repeat(20)}`)).toEqual([P1])
      for (const end of ["", "a", "z", "2", "7", "_", "-", "0", "1", "8", "9", "A", "Z", " ", "\"", "é", "\u{1F600}", "&", "\n"]) {
        expect(scanner.findAll(`${P1}${end}`)).toEqual([P1])
      }
    })

    it("does not accept fewer than 32 token characters", () => {
      expect(scanner.findAll(P1.slice(0, -1))).toEqual([])
      expect(scanner.findAll(`${P1.slice(0, -1)}_`)).toEqual([])
      expect(scanner.findAll(`${P1.slice(0, -1)}A`)).toEqual([])
      expect(scanner.findAll(`${P1.slice(0, -1)}é`)).toEqual([])
      expect(scanner.findAll(`sg_secret_${"a".repeat(20)}é${"a".repeat(11)}`)).toEqual([])
      for (let length = 0; length < 32; length++) {
        expect(scanner.findAll(`x sg_secret_${"a".repeat(length)}`), `${length} token characters`).toEqual([])
        expect(scanner.findAll(`x sg_secret_${"a".repeat(length)} y`), `${length} token characters`).toEqual([])
      }
    })

    it("is broken by a non-token character anywhere inside the 32", () => {
      for (const breaker of ["_", "-", "0", "1", "8", "9", "A", " ", "é", "\u{1F600}"]) {
        for (let at = 0; at < 32; at++) {
          const broken = `sg_secret_${"a".repeat(at)}${breaker}${"a".repeat(31 - at)}`
          expect(scanner.findAll(broken), `${JSON.stringify(breaker)} at ${at}`).toEqual([])
          // even with more token characters after it: the 32 must follow the prefix directly
          expect(scanner.findAll(`${broken}${"a".repeat(32)}`), `${JSON.stringify(breaker)} at ${at}`).toEqual([])
        }
      }
    })

    it("finds adjacent placeholders separated by any character", () => {
      for (const separator of ["_", "-", ",", " ", ":", "0", "1", "8", "9", "A", "\u00e9", "a", "7", "xyz"]) {
        expect(scanner.findAll(`${P1}${separator}${P2}`)).toEqual([P1, P2])
      }
      expect(scanner.findAll(`${P1}_${P2}_${P3}`)).toEqual([P1, P2, P3])
    })

    it("finds placeholders written back to back", () => {
      expect(scanner.findAll(`${P1}${P2}`)).toEqual([P1, P2])
      expect(scanner.findAll(`${P1}${P2}${P3}`)).toEqual([P1, P2, P3])
      expect(scanner.findAll(`${P1}${P1}`)).toEqual([P1, P1])
      expect(scanner.findAll(`x=${P2}${P1};`)).toEqual([P2, P1])
    })

    it("finds placeholders glued to other text on either side", () => {
      expect(scanner.findAll(`${P1}abc`)).toEqual([P1])
      expect(scanner.findAll(`key-${P1}abc`)).toEqual([P1])
      expect(scanner.findAll(`abc${P1}def${P2}ghi`)).toEqual([P1, P2])
      expect(scanner.findAll(`prefix${P1}${P2}suffix`)).toEqual([P1, P2])
    })

    it("finds a placeholder whose prefix is preceded by a partial prefix", () => {
      expect(scanner.findAll(`sg_secret_sg_secret_${"a".repeat(32)}`)).toEqual([P1])
      expect(scanner.findAll(`sg_secsg_secret_${"a".repeat(32)}`)).toEqual([P1])
    })

    it("works with a prefix made of token characters", () => {
      const letters = new Placeholder.Scanner("abc")
      const placeholder = make("q", "abc")
      const other = make("z", "abc")
      expect(letters.findAll(placeholder)).toEqual([placeholder])
      expect(letters.findAll(`${placeholder}q`)).toEqual([placeholder])
      expect(letters.findAll(`${placeholder}${other}`)).toEqual([placeholder, other])
      expect(letters.findAll(`abc_${placeholder}`)).toEqual([placeholder])
      // Such a prefix can start a run in text glued before a placeholder; the leftmost run is
      // taken and the scan goes on after it.
      expect(letters.findAll(`abc${placeholder}`)).toEqual([`abcabc${"q".repeat(29)}`])
    })
  })

  describe("replaceIn", () => {
    it("replaces each placeholder with what the callback returns", () => {
      const values = new Map([[P1, "one"], [P2, "two"]])
      expect(scanner.replaceIn(`a ${P1} b ${P2} c ${P1}`, (p) => values.get(p))).toBe("a one b two c one")
      expect(scanner.replaceIn(`${P1}`, (p) => values.get(p))).toBe("one")
      expect(scanner.replaceIn(`${P1}_${P2}`, (p) => values.get(p))).toBe("one_two")
    })

    it("replaces placeholders back to back and glued to text", () => {
      const values = new Map([[P1, "one"], [P2, "two"]])
      expect(scanner.replaceIn(`${P1}${P2}`, (p) => values.get(p))).toBe("onetwo")
      expect(scanner.replaceIn(`${P1}${P3}${P2}`, (p) => values.get(p))).toBe(`one${P3}two`)
      expect(scanner.replaceIn(`${P1}abc`, (p) => values.get(p))).toBe("oneabc")
      expect(scanner.replaceIn(`key-${P2}a`, (p) => values.get(p))).toBe("key-twoa")
    })

    it("keeps placeholders the callback returns undefined for", () => {
      const text = `a ${P1} b ${P3} c ${P2}`
      expect(scanner.replaceIn(text, (p) => (p === P3 ? undefined : "x"))).toBe(`a x b ${P3} c x`)
      expect(scanner.replaceIn(text, () => undefined)).toBe(text)
    })

    it("asks only about real placeholders, in order", () => {
      const asked: Array<string> = []
      scanner.replaceIn(`${P1.slice(0, -1)} ${P2}a sg_secret_ ${P3.slice(0, 20)}-${P3.slice(21)} ${P3}${P1}`, (p) => {
        asked.push(p)
        return undefined
      })
      expect(asked).toEqual([P2, P3, P1])
    })

    it("inserts replacements literally and does not rescan them", () => {
      expect(scanner.replaceIn(`[${P1}]`, () => "$&$1$$")).toBe("[$&$1$$]")
      expect(scanner.replaceIn(`[${P1}]`, () => P2)).toBe(`[${P2}]`)
      expect(scanner.replaceIn(`[${P1}]`, () => "")).toBe("[]")
    })

    it("returns text without placeholders unchanged", () => {
      const text = "sg_secret_ and sg_secret_short"
      expect(scanner.replaceIn(text, () => "x")).toBe(text)
    })
  })

  describe("indexIn", () => {
    it("finds placeholders in bytes", () => {
      const bytes = Buffer.from(`Authorization: Bearer ${P1}\r\nX-Key: ${P2}\r\n`)
      expect(indicesIn(scanner, bytes)).toEqual([22, 22 + 42 + 2 + 7])
    })

    it("reads a plain Uint8Array view at an offset", () => {
      const backing = new Uint8Array(Buffer.from(`#####${P1} ${P2}#####`))
      const view = backing.subarray(5, 5 + 42 + 1 + 42)
      expect(indicesIn(scanner, view)).toEqual([0, 43])
      expect(scanner.indexIn(backing, 0)).toBe(5)
    })

    it("starts at `from`", () => {
      const bytes = Buffer.from(`${P1} ${P2}`)
      expect(scanner.indexIn(bytes, 0)).toBe(0)
      expect(scanner.indexIn(bytes, 1)).toBe(43)
      expect(scanner.indexIn(bytes, 43)).toBe(43)
      expect(scanner.indexIn(bytes, 44)).toBe(-1)
    })

    it("accepts a run that reaches `end`, whatever follows", () => {
      const bytes = Buffer.from(`x ${P1}`)
      expect(scanner.indexIn(bytes, 0)).toBe(2)
      expect(scanner.indexIn(bytes, 0, bytes.length)).toBe(2)
      for (const after of ["_", "a", "7", "A", "\u00e9", P2]) {
        const followed = Buffer.from(`x ${P1}${after}`)
        expect(scanner.indexIn(followed, 0), `followed by ${after}`).toBe(2)
        expect(scanner.indexIn(followed, 0, 2 + 42), `followed by ${after}`).toBe(2)
      }
    })

    it("ignores bytes at and after `end`", () => {
      const bytes = Buffer.from(`${P1}a`)
      expect(scanner.indexIn(bytes, 0, 42)).toBe(0)
      expect(scanner.indexIn(bytes, 0, 41)).toBe(-1)
      expect(scanner.indexIn(Buffer.from(`ab ${P1}`), 0, 10)).toBe(-1)
      expect(scanner.indexIn(Buffer.from(`ab ${P1}`), 0, 44)).toBe(-1)
      expect(scanner.indexIn(Buffer.from(`ab ${P1}`), 0, 45)).toBe(3)
    })

    it("finds placeholders back to back, glued, and broken by a non-token byte", () => {
      expect(scanner.indexIn(Buffer.from(`${P1}a`), 0)).toBe(0)
      expect(scanner.indexIn(Buffer.from(`${P1}\u00e9`), 0)).toBe(0)
      expect(indicesIn(scanner, Buffer.from(`${P1}${P2}`))).toEqual([0, 42])
      expect(indicesIn(scanner, Buffer.from(`${P1}${P2}${P3}`))).toEqual([0, 42, 84])
      expect(indicesIn(scanner, Buffer.from(`abc${P1}def${P2}ghi`))).toEqual([3, 48])
      expect(scanner.indexIn(Buffer.from(`sg_secret_${"a".repeat(31)}\u00e9`), 0)).toBe(-1)
      for (let at = 0; at < 32; at++) {
        for (const breaker of ["_", "0", "A", "\u00e9"]) {
          const broken = Buffer.from(`sg_secret_${"a".repeat(at)}${breaker}${"a".repeat(40)}`)
          expect(scanner.indexIn(broken, 0), `${breaker} at ${at}`).toBe(-1)
        }
      }
    })

    it("agrees with findAll on any ASCII text", () => {
      const fragment = fc.oneof(
        fc.constantFrom(P1, P2, P3, "sg_secret_", "sg_sec", "_", " ", "&", "A", "0"),
        fc.string({ unit: fc.constantFrom(...ALPHABET), maxLength: 40 }),
        fc.string({ unit: "grapheme-ascii", maxLength: 8 })
      )
      fc.assert(
        fc.property(fc.array(fragment, { maxLength: 12 }), (fragments) => {
          const text = fragments.join("")
          const bytes = Buffer.from(text, "latin1")
          const fromBytes = indicesIn(scanner, bytes).map((index) => text.slice(index, index + scanner.length))
          expect(fromBytes).toEqual(scanner.findAll(text))
        }),
        { numRuns: 500 }
      )
    })
  })
})

describe("the placeholder alphabet survives encodings unchanged", () => {
  it("JSON, URL components, forms and headers leave any placeholder as it is", () => {
    fc.assert(
      fc.property(prefixArb, tokenArb, (prefix, token) => {
        const placeholder = prefix + token
        expect(Placeholder.isPlaceholder(placeholder, prefix)).toBe(true)
        expect(encodeURIComponent(placeholder)).toBe(placeholder)
        expect(encodeURI(placeholder)).toBe(placeholder)
        expect(JSON.stringify(placeholder)).toBe(`"${placeholder}"`)
        expect(new URLSearchParams({ key: placeholder }).toString()).toBe(`key=${placeholder}`)
        expect(new URL(`https://example.com/${placeholder}?q=${placeholder}`).href).toBe(
          `https://example.com/${placeholder}?q=${placeholder}`
        )
        expect(new Headers({ "x-key": placeholder }).get("x-key")).toBe(placeholder)
        // and so a scan of the encoded form still finds it
        const scanner = new Placeholder.Scanner(prefix)
        expect(scanner.findAll(JSON.stringify({ token: placeholder }))).toEqual([placeholder])
        expect(scanner.findAll(new URLSearchParams({ a: "1 2", token: placeholder }).toString())).toEqual([placeholder])
      }),
      { numRuns: 300 }
    )
  })

  it("generated placeholders survive the same encodings", () => {
    for (let i = 0; i < 500; i++) {
      const placeholder = Placeholder.generate()
      expect(encodeURIComponent(placeholder)).toBe(placeholder)
      expect(JSON.stringify(placeholder)).toBe(`"${placeholder}"`)
      expect(new URLSearchParams({ k: placeholder }).toString()).toBe(`k=${placeholder}`)
    }
  })
})
