import fc from "fast-check"
import { Buffer } from "node:buffer"
import { describe, expect, it } from "vitest"
import * as Placeholder from "../src/Placeholder.js"
import * as Substitution from "../src/Substitution.js"

const ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
const scanner = new Placeholder.Scanner()
const bytes = (text: string) => Buffer.from(text, "latin1")
const text = (data: Uint8Array) => Buffer.from(data).toString("latin1")

const P1 = `sg_secret_${"a".repeat(32)}`
const P2 = `sg_secret_${"b2".repeat(16)}`
const UNKNOWN = `sg_secret_${"7".repeat(32)}`

const VALUES = new Map<string, string>([
  [P1, "sk-one"],
  [P2, "a-much-longer-secret-value-".repeat(8)]
])
const decide = (placeholder: string) => {
  const value = VALUES.get(placeholder)
  return value === undefined ? undefined : bytes(value)
}
const placeholders = () => Substitution.placeholderMatcher(scanner, decide)

/** Streams `chunks` through a fresh rewriter; the output and the rewriter. */
const stream = (matcher: Substitution.Matcher, chunks: ReadonlyArray<Uint8Array>) => {
  const rewriter = new Substitution.StreamRewriter(matcher)
  const out = Buffer.concat([...chunks.map((chunk) => rewriter.push(chunk)), rewriter.end()])
  return { out, rewriter }
}

/** `data` cut at the given offsets (sorted, may repeat: empty chunks are allowed). */
const cut = (data: Buffer, offsets: ReadonlyArray<number>): Array<Buffer> => {
  const sorted = [...offsets].sort((a, b) => a - b)
  const chunks: Array<Buffer> = []
  let from = 0
  for (const at of sorted) {
    chunks.push(data.subarray(from, at))
    from = at
  }
  chunks.push(data.subarray(from))
  return chunks
}

// Reference implementations: the obvious left-to-right scan, one position at a time.

const IN_ALPHABET = new Set([...ALPHABET].map((c) => c.charCodeAt(0)))

const naivePlaceholders = (input: Buffer, prefix: string, replace: (p: string) => Uint8Array | undefined): Buffer => {
  const length = prefix.length + 32
  const out: Array<Uint8Array> = []
  let i = 0
  while (i < input.length) {
    const candidate = input.subarray(i, i + length)
    const isMatch = candidate.length === length &&
      candidate.subarray(0, prefix.length).equals(bytes(prefix)) &&
      [...candidate.subarray(prefix.length)].every((b) => IN_ALPHABET.has(b))
    const replacement = isMatch ? replace(text(candidate)) : undefined
    if (replacement !== undefined) {
      out.push(replacement)
      i += length
    } else {
      // nothing replaced here (no match, or a match left in place): move on by one byte, so a
      // placeholder starting inside a kept match is still found
      out.push(input.subarray(i, i + 1))
      i += 1
    }
  }
  return Buffer.concat(out)
}

const naiveLiterals = (input: Buffer, pairs: ReadonlyArray<readonly [Buffer, Buffer]>): Buffer => {
  const out: Array<Uint8Array> = []
  let i = 0
  while (i < input.length) {
    let best: readonly [Buffer, Buffer] | undefined
    for (const pair of pairs) {
      const [from] = pair
      if (from.length === 0 || !input.subarray(i, i + from.length).equals(from)) continue
      if (best === undefined || from.length > best[0].length) best = pair
    }
    if (best === undefined) {
      out.push(input.subarray(i, i + 1))
      i += 1
    } else {
      out.push(best[1])
      i += best[0].length
    }
  }
  return Buffer.concat(out)
}

// Inputs dense in near-misses: placeholders known and unknown (often back to back), bare prefixes,
// runs of token characters glued to them, and other bytes.
const placeholderInput = fc
  .array(
    fc.oneof(
      fc.constantFrom(P1, P2, UNKNOWN, `${P1}${P2}`, "sg_secret_", "sg_sec", "sg_", "_", " ", "\r\n", "A", "0"),
      fc.string({ unit: fc.constantFrom(...ALPHABET), maxLength: 35 }),
      fc.uint8Array({ maxLength: 6 }).map((b) => text(b))
    ),
    { maxLength: 16 }
  )
  .map((fragments) => bytes(fragments.join("")))

const chunkOffsets = (data: Buffer) => fc.array(fc.integer({ min: 0, max: data.length }), { maxLength: 10 })

describe("placeholderMatcher", () => {
  const input = bytes(`GET /v1?key=${P1} HTTP/1.1\r\nAuthorization: Bearer ${P2}\r\nX-Other: ${UNKNOWN}\r\n\r\n`)
  const expected = bytes(
    `GET /v1?key=sk-one HTTP/1.1\r\nAuthorization: Bearer ${VALUES.get(P2)}\r\nX-Other: ${UNKNOWN}\r\n\r\n`
  )

  it("rewrites a whole buffer", () => {
    expect(text(Substitution.rewriteBytes(placeholders(), input))).toBe(text(expected))
    expect(text(naivePlaceholders(input, "sg_secret_", decide))).toBe(text(expected))
  })

  it("finds a placeholder split across two chunks at every offset", () => {
    const data = bytes(`Bearer ${P1}`)
    for (let at = 0; at <= data.length; at++) {
      const { out, rewriter } = stream(placeholders(), [data.subarray(0, at), data.subarray(at)])
      expect(text(out), `split at ${at}`).toBe("Bearer sk-one")
      expect(rewriter.matches).toBe(1)
    }
  })

  it("finds every placeholder split across three chunks at every pair of offsets", () => {
    for (let i = 0; i <= input.length; i++) {
      for (let j = i; j <= input.length; j++) {
        const { out, rewriter } = stream(placeholders(), cut(input, [i, j]))
        if (!out.equals(expected)) expect(text(out), `split at ${i}, ${j}`).toBe(text(expected))
        if (rewriter.matches !== 3) expect(rewriter.matches, `split at ${i}, ${j}`).toBe(3)
      }
    }
  })

  it("finds placeholders fed one byte at a time", () => {
    const chunks = [...input].map((byte) => Uint8Array.of(byte))
    expect(text(stream(placeholders(), chunks).out)).toBe(text(expected))
  })

  it("takes a placeholder glued to token characters, however the stream is cut", () => {
    const cases: ReadonlyArray<readonly [string, string]> = [
      [`x=${P1}a;`, "x=sk-onea;"],
      [`x=${P1}abc`, "x=sk-oneabc"],
      [`key-${P1}`, "key-sk-one"],
      [`abc${P1}7`, "abcsk-one7"],
      [`x=${P1}`, "x=sk-one"]
    ]
    for (const [input, output] of cases) {
      const data = bytes(input)
      for (let at = 0; at <= data.length; at++) {
        expect(text(stream(placeholders(), cut(data, [at])).out), `${input} split at ${at}`).toBe(output)
      }
    }
  })

  it("takes placeholders back to back, however the stream is cut", () => {
    const data = bytes(`${P1}${P2}${UNKNOWN}${P1}`)
    const expected = `sk-one${VALUES.get(P2)}${UNKNOWN}sk-one`
    for (let i = 0; i <= data.length; i++) {
      for (let j = i; j <= data.length; j++) {
        const { out, rewriter } = stream(placeholders(), cut(data, [i, j]))
        if (text(out) !== expected) expect(text(out), `split at ${i}, ${j}`).toBe(expected)
        if (rewriter.matches !== 4) expect(rewriter.matches, `split at ${i}, ${j}`).toBe(4)
      }
    }
    const chunks = [...data].map((byte) => Uint8Array.of(byte))
    expect(text(stream(placeholders(), chunks).out)).toBe(expected)
  })

  it("does not take a prefix followed by fewer than 32 token characters, or broken by another byte", () => {
    const short = bytes(`x=${P1.slice(0, -1)}`)
    const broken = bytes(`x=${P1.slice(0, 25)}-${P1.slice(26)}${"a".repeat(10)}`)
    for (const data of [short, broken]) {
      for (let at = 0; at <= data.length; at++) {
        const { out, rewriter } = stream(placeholders(), cut(data, [at]))
        expect(text(out), `split at ${at}`).toBe(text(data))
        expect(rewriter.matches).toBe(0)
      }
    }
  })

  it("replaces with values longer and shorter than the placeholder, and with nothing", () => {
    const long = "L".repeat(10_000)
    const matcher = Substitution.placeholderMatcher(scanner, (p) =>
      p === P1 ? bytes(long) : p === P2 ? bytes("s") : new Uint8Array(0))
    const data = bytes(`[${P1}][${P2}][${UNKNOWN}]`)
    for (let at = 0; at <= data.length; at += 7) {
      expect(text(stream(matcher, cut(data, [at, at + 20])).out)).toBe(`[${long}][s][]`)
    }
  })

  it("keeps a placeholder's bytes when the decision is undefined, but still counts it", () => {
    const matcher = Substitution.placeholderMatcher(scanner, () => undefined)
    const data = bytes(`${P1} ${P2} ${UNKNOWN}`)
    const { out, rewriter } = stream(matcher, cut(data, [10, 50, 90]))
    expect(out.equals(data)).toBe(true)
    expect(rewriter.matches).toBe(3)
  })

  it("decides each placeholder exactly once, however the stream is cut", () => {
    const data = bytes(`${P1}|${P2}|${P1}`)
    for (let at = 0; at <= data.length; at++) {
      const asked: Array<string> = []
      stream(Substitution.placeholderMatcher(scanner, (p) => {
        asked.push(p)
        return decide(p)
      }), cut(data, [at]))
      expect(asked, `split at ${at}`).toEqual([P1, P2, P1])
    }
  })

  it("lets `decide` refuse the whole stream by throwing", () => {
    const matcher = Substitution.placeholderMatcher(scanner, () => {
      throw new Error("not allowed")
    })
    expect(() => Substitution.rewriteBytes(matcher, bytes(`a ${P1} b`))).toThrow("not allowed")
  })

  it("carries at most one placeholder's length, with no look-ahead", () => {
    expect(placeholders().maxLength).toBe(scanner.length)
    expect(Substitution.placeholderMatcher(new Placeholder.Scanner("k_"), decide).maxLength).toBe(34)
  })
})

describe("literalMatcher", () => {
  const literals = (pairs: ReadonlyArray<readonly [string, string]>) =>
    Substitution.literalMatcher(pairs.map(([from, to]) => [bytes(from), bytes(to)] as const))

  it("replaces each literal with its pair", () => {
    const matcher = literals([["sk-one", "[P1]"], ["pw", "[P2]"]])
    expect(text(Substitution.rewriteBytes(matcher, bytes("echo sk-one and pw, pw")))).toBe("echo [P1] and [P2], [P2]")
  })

  it("takes the longest literal where two start at the same position", () => {
    const matcher = literals([["abc", "1"], ["abcdef", "2"], ["ab", "3"]])
    expect(text(Substitution.rewriteBytes(matcher, bytes("abcdefg abcde ab a")))).toBe("2g 1de 3 a")
  })

  it("takes the leftmost match first, even over a longer one further right", () => {
    const matcher = literals([["bcdef", "X"], ["abc", "Y"]])
    expect(text(Substitution.rewriteBytes(matcher, bytes("abcdef")))).toBe("Ydef")
    expect(text(Substitution.rewriteBytes(matcher, bytes("zbcdef")))).toBe("zX")
  })

  it("does not let matches overlap and resumes right after a match", () => {
    expect(text(Substitution.rewriteBytes(literals([["aa", "b"]]), bytes("aaaaa")))).toBe("bba")
    expect(text(Substitution.rewriteBytes(literals([["aab", "X"]]), bytes("aaab")))).toBe("aX")
  })

  it("does not rescan replacements", () => {
    expect(text(Substitution.rewriteBytes(literals([["a", "aa"]]), bytes("aba")))).toBe("aabaa")
  })

  it("ignores empty literals", () => {
    const matcher = literals([["", "X"], ["b", "B"]])
    expect(text(Substitution.rewriteBytes(matcher, bytes("abc")))).toBe("aBc")
    expect(text(Substitution.rewriteBytes(literals([["", "X"]]), bytes("abc")))).toBe("abc")
  })

  it("finds overlapping literals split across chunks at every offset", () => {
    const matcher = () => literals([["secret", "<1>"], ["secret-long-value", "<2>"], ["et-lo", "<3>"]])
    const data = bytes("a secret-long-value, a secret-lo, a secret")
    const expected = "a <2>, a <1>-lo, a <1>"
    for (let i = 0; i <= data.length; i++) {
      for (let j = i; j <= data.length; j++) {
        const out = stream(matcher(), cut(data, [i, j])).out
        if (text(out) !== expected) expect(text(out), `split at ${i}, ${j}`).toBe(expected)
      }
    }
  })
})

describe("StreamRewriter holds nothing but the carry", () => {
  /**
   * Pushes chunks and, after each push, compares what went in with what came out. With
   * replacements of the same length as their match, the difference is exactly what is held.
   */
  const heldAfterEachPush = (matcher: Substitution.Matcher, chunks: ReadonlyArray<Uint8Array>) => {
    const rewriter = new Substitution.StreamRewriter(matcher)
    let pushed = 0
    let emitted = 0
    const held: Array<number> = []
    for (const chunk of chunks) {
      pushed += chunk.length
      emitted += rewriter.push(chunk).length
      held.push(pushed - emitted)
    }
    emitted += rewriter.end().length
    return { held, pushed, emitted }
  }

  it("emits a large chunk that cannot end in a partial match at once, whole", () => {
    const matcher = placeholders()
    const rewriter = new Substitution.StreamRewriter(matcher)
    const chunk = Buffer.alloc(1 << 20, "x")
    expect(rewriter.push(chunk).length).toBe(chunk.length)
    expect(rewriter.end().length).toBe(0)
  })

  it("holds back only the part of the tail that could begin a placeholder", () => {
    const matcher = placeholders()
    for (const tail of ["s", "sg_sec", `${Placeholder.DEFAULT_PREFIX}abc`, `${Placeholder.DEFAULT_PREFIX}${"a".repeat(31)}`]) {
      const rewriter = new Substitution.StreamRewriter(matcher)
      const chunk = Buffer.concat([Buffer.alloc(1000, "."), Buffer.from(tail)])
      expect([tail, rewriter.push(chunk).length]).toEqual([tail, 1000])
      expect(rewriter.end().toString()).toBe(tail)
    }
    const rewriter = new Substitution.StreamRewriter(matcher)
    expect(rewriter.push(Buffer.from("....sg_x")).length).toBe(8)
  })

  it("holds at most maxLength - 1 bytes however the placeholder stream is cut", () => {
    const sameLength = Substitution.placeholderMatcher(scanner, (p) => (p === UNKNOWN ? undefined : bytes("V".repeat(42))))
    fc.assert(
      fc.property(placeholderInput, fc.array(fc.nat(), { maxLength: 12 }), (data, offsets) => {
        const { held, pushed, emitted } = heldAfterEachPush(sameLength, cut(data, offsets.map((o) => o % (data.length + 1))))
        for (const h of held) {
          expect(h).toBeGreaterThanOrEqual(0)
          expect(h).toBeLessThanOrEqual(sameLength.maxLength - 1)
        }
        expect(emitted).toBe(pushed)
      }),
      { numRuns: 300 }
    )
  })

  it("holds at most maxLength - 1 bytes with literal patterns, fed a byte at a time", () => {
    const matcher = Substitution.literalMatcher([[bytes("abcd"), bytes("ABCD")], [bytes("cd"), bytes("CD")]])
    const data = bytes("xxabcdxxcdabcabcdabc".repeat(20))
    const { held, pushed, emitted } = heldAfterEachPush(matcher, [...data].map((b) => Uint8Array.of(b)))
    expect(Math.max(...held)).toBeLessThanOrEqual(matcher.maxLength - 1)
    expect(emitted).toBe(pushed)
  })

  it("does not keep a reference to the caller's chunk", () => {
    const data = bytes(`abc ${P1}`)
    const first = Buffer.from(data.subarray(0, 20))
    const rewriter = new Substitution.StreamRewriter(placeholders())
    const head = Buffer.from(rewriter.push(first))
    first.fill(0) // the caller reuses its buffer
    const rest = Buffer.concat([rewriter.push(data.subarray(20)), rewriter.end()])
    expect(text(Buffer.concat([head, rest]))).toBe("abc sk-one")
  })

  it("passes an empty stream and empty chunks through", () => {
    expect(stream(placeholders(), []).out.length).toBe(0)
    expect(text(stream(placeholders(), [bytes(""), bytes(`${P1}`), bytes(""), bytes("")]).out)).toBe("sk-one")
  })
})

describe("streaming equals whole-buffer equals the reference", () => {
  it("for placeholders", () => {
    fc.assert(
      fc.property(
        placeholderInput.chain((data) => fc.tuple(fc.constant(data), chunkOffsets(data))),
        ([data, offsets]) => {
          const expected = naivePlaceholders(data, "sg_secret_", decide)
          expect(text(Substitution.rewriteBytes(placeholders(), data))).toBe(text(expected))
          expect(text(stream(placeholders(), cut(data, offsets)).out)).toBe(text(expected))
        }
      ),
      { numRuns: 1_000 }
    )
  })

  it("for placeholders of a custom prefix made of token characters", () => {
    const prefix = "ab"
    const custom = new Placeholder.Scanner(prefix)
    const replace = (p: string) => (p.endsWith("a") ? undefined : bytes(`<${p.slice(2, 6)}>`))
    const input = fc
      .array(fc.oneof(fc.constantFrom("ab", "a", "b", "_", "abab"), fc.string({ unit: fc.constantFrom("a", "b", "c"), maxLength: 40 })), {
        maxLength: 12
      })
      .map((fragments) => bytes(fragments.join("")))
    fc.assert(
      fc.property(input.chain((data) => fc.tuple(fc.constant(data), chunkOffsets(data))), ([data, offsets]) => {
        const expected = naivePlaceholders(data, prefix, replace)
        const matcher = () => Substitution.placeholderMatcher(custom, replace)
        expect(text(Substitution.rewriteBytes(matcher(), data))).toBe(text(expected))
        expect(text(stream(matcher(), cut(data, offsets)).out)).toBe(text(expected))
      }),
      { numRuns: 1_000 }
    )
  })

  it("for literals, including overlapping ones", () => {
    const small = fc.string({ unit: fc.constantFrom("a", "b", "c"), minLength: 1, maxLength: 5 })
    const pairs = fc.uniqueArray(fc.tuple(small, fc.string({ unit: fc.constantFrom("X", "Y", "Z"), maxLength: 6 })), {
      selector: ([from]) => from,
      minLength: 1,
      maxLength: 5
    })
    const data = fc.string({ unit: fc.constantFrom("a", "b", "c", "d"), maxLength: 80 }).map(bytes)
    fc.assert(
      fc.property(
        pairs,
        data.chain((d) => fc.tuple(fc.constant(d), chunkOffsets(d))),
        (pairList, [input, offsets]) => {
          const asBytes = pairList.map(([from, to]) => [bytes(from), bytes(to)] as const)
          const expected = naiveLiterals(input, asBytes)
          expect(text(Substitution.rewriteBytes(Substitution.literalMatcher(asBytes), input))).toBe(text(expected))
          expect(text(stream(Substitution.literalMatcher(asBytes), cut(input, offsets)).out)).toBe(text(expected))
        }
      ),
      { numRuns: 2_000 }
    )
  })
})

describe("StreamRewriter with a whole-buffer scan", () => {
  /**
   * A literal matcher that answers whole-buffer scans: leftmost longest matches, replaced (or,
   * for `keep`, left in place), and held back from where a literal could still begin.
   */
  const scanning = (pairs: ReadonlyArray<readonly [string, string | undefined]>): Substitution.Matcher => {
    const literal = Substitution.literalMatcher(pairs.map(([from, to]) => [bytes(from), bytes(to ?? from)] as const))
    const keep = new Set(pairs.filter(([, to]) => to === undefined).map(([from]) => from))
    return {
      ...literal,
      scan(data, atEnd) {
        const matches: Array<Substitution.Match> = []
        let holdFrom = data.length
        for (let from = 0; ;) {
          const match = literal.find(data, from, data.length, atEnd)
          if (match === undefined) break
          const found = text(data.subarray(match.index, match.index + match.length))
          matches.push(keep.has(found) ? { index: match.index, length: match.length, replacement: undefined } : match)
          from = match.index + match.length
        }
        if (!atEnd) {
          const lastEnd = matches.length === 0 ? 0 : matches[matches.length - 1]!.index + matches[matches.length - 1]!.length
          for (let at = Math.max(lastEnd, data.length - literal.maxLength + 1); at < data.length; at++) {
            const tail = text(data.subarray(at))
            if (pairs.some(([from]) => from.startsWith(tail))) {
              holdFrom = at
              break
            }
          }
        }
        return { matches, holdFrom }
      }
    }
  }

  it("streamed in any chunks, writes what the whole buffer becomes, in one buffer per chunk", () => {
    const pairs = [["secret", "[S]"], ["sec", "<short and longer>"], ["tok", undefined], ["xy", ""]] as const
    fc.assert(
      fc.property(fc.string({ unit: fc.constantFrom(..."secrtokxy ab"), maxLength: 120 }), fc.array(fc.nat({ max: 120 }), { maxLength: 8 }), (input, offsets) => {
        const data = bytes(input)
        const whole = Substitution.rewriteBytes(scanning(pairs), data)
        const streamed = stream(scanning(pairs), cut(data, offsets.map((o) => o % (data.length + 1))))
        expect(text(streamed.out)).toBe(text(whole))
        expect(text(whole)).toBe(input.replace(/secret|sec|xy/g, (m) => (m === "secret" ? "[S]" : m === "sec" ? "<short and longer>" : "")))
      }),
      { numRuns: 2000 }
    )
  })

  it("hands on nothing whose memory holds more than what was handed on (a replaced value, bytes held back)", () => {
    // a joint of what was held back and the next chunk is written into space shared by the
    // chunks handed on: whatever of it is not handed on (the value, bytes held back) is wiped
    fc.assert(
      fc.property(fc.array(fc.constantFrom("secret", "se", "cret", "sec", " ", "ab", "s"), { maxLength: 40 }), fc.array(fc.nat({ max: 200 }), { maxLength: 12 }), (words, offsets) => {
        const data = bytes(words.join(""))
        const rewriter = new Substitution.StreamRewriter(scanning([["secret", "[S]"]]))
        const handed: Array<Buffer> = []
        for (const chunk of cut(data, offsets.map((o) => o % (data.length + 1)))) handed.push(rewriter.push(chunk))
        handed.push(rewriter.end())
        // the whole memory of each chunk handed on (what its `buffer` reaches), the caller's own
        // chunks apart, holds what was handed on and zeros, nothing else
        const views = new Map<ArrayBufferLike, Array<Buffer>>()
        for (const out of handed) if (out.buffer !== data.buffer && out.length > 0) views.set(out.buffer, [...(views.get(out.buffer) ?? []), out])
        for (const [memory, outs] of views) {
          const rest = Buffer.from(new Uint8Array(memory))
          for (const out of outs) rest.fill(0, out.byteOffset, out.byteOffset + out.length)
          expect(rest.every((byte) => byte === 0)).toBe(true)
        }
        expect(text(Buffer.concat(handed))).toBe(text(data).replaceAll("secret", "[S]"))
      }),
      { numRuns: 1000 }
    )
  })

  it("wipes a joint it wrote when the matcher refuses to go on: chunks handed on before reach nothing of it", () => {
    const literal = scanning([["secret", "[S]"]])
    let refuse = false
    const refusing: Substitution.Matcher = {
      ...literal,
      scan(data, atEnd) {
        if (refuse) throw new Error("refused")
        return literal.scan!(data, atEnd)
      }
    }
    // (each chunk in memory of its own: Node's pool would put them all in one)
    const own = (text: string) => {
      const chunk = Buffer.allocUnsafeSlow(Buffer.byteLength(text))
      chunk.write(text)
      return chunk
    }
    const rewriter = new Substitution.StreamRewriter(refusing)
    const handed = [rewriter.push(own("first chunk, then a sec")), rewriter.push(own("ret and more, se"))]
    refuse = true
    const last = own("cret kept raw: RAW-BYTES")
    expect(() => rewriter.push(last)).toThrow("refused")
    for (const out of handed) if (out.buffer !== last.buffer) expect(Buffer.from(new Uint8Array(out.buffer)).includes("RAW-BYTES")).toBe(false)
    // nothing held back survives the refusal
    refuse = false
    expect(text(rewriter.end())).toBe("")
  })

  it("gives each scan back what the scan before it in the same stream returned as `resume`, through `push`, `write` and `end`", () => {
    // a matcher that counts the bytes it has seen, and says so to its next scan
    const seen: Array<unknown> = []
    const literal = scanning([["secret", "[S]"]])
    const counting: Substitution.Matcher = {
      ...literal,
      scan(data, atEnd, resume) {
        seen.push(resume)
        const result = literal.scan!(data, atEnd)
        return { ...result, resume: { chunks: ((resume as { chunks: number } | undefined)?.chunks ?? 0) + 1 } }
      }
    }
    const rewriter = new Substitution.StreamRewriter(counting)
    rewriter.push(bytes("a sec"))
    rewriter.write(bytes("ret b"))
    rewriter.push(bytes("c se"))
    rewriter.end()
    expect(seen).toEqual([undefined, { chunks: 1 }, { chunks: 2 }, { chunks: 3 }])
    // a new stream starts afresh; a whole buffer is one scan, given nothing
    seen.length = 0
    Substitution.rewriteBytes(counting, bytes("secret"))
    new Substitution.StreamRewriter(counting).push(bytes("x"))
    expect(seen).toEqual([undefined, undefined])
  })

  it("reads a long carry again only once a quarter of its length has arrived: tiny chunks after it cost in proportion to them, and the output is the same", () => {
    // a literal 3,000 bytes long: its start, arriving, is held back whole
    const long = "<" + "x".repeat(2998) + ">"
    const literal = scanning([[long, "[L]"], ["secret", "[S]"]])
    let scanned = 0
    const counting: Substitution.Matcher = {
      ...literal,
      scan(data, atEnd) {
        scanned += data.length
        return literal.scan!(data, atEnd)
      }
    }
    fc.assert(
      fc.property(fc.array(fc.constantFrom(long, long.slice(0, 2500), "secret", "se", "ab", "xxxx"), { maxLength: 12 }), fc.array(fc.nat({ max: 40_000 }), { maxLength: 6 }), fc.integer({ min: 1, max: 64 }), (words, offsets, size) => {
        const data = bytes(words.join(""))
        const whole = Substitution.rewriteBytes(literal, data)
        // chunks of `size` bytes, and a few cut anywhere
        const cuts = [...new Set([...Array.from({ length: Math.ceil(data.length / size) }, (_, k) => k * size), ...offsets.map((o) => o % (data.length + 1))])].sort((a, b) => a - b)
        scanned = 0
        const rewriter = new Substitution.StreamRewriter(counting)
        const out: Array<Buffer> = []
        for (let k = 0; k < cuts.length; k++) out.push(Buffer.from(rewriter.push(data.subarray(cuts[k], cuts[k + 1] ?? data.length))))
        out.push(rewriter.end())
        expect(text(Buffer.concat(out))).toBe(text(whole))
        // each byte is read a bounded number of times: a carry (up to 3,000 bytes) once per
        // quarter of its length arrived, not once per chunk of `size` (one under 64 bytes, each time)
        expect(scanned).toBeLessThanOrEqual(6 * data.length + 64 * cuts.length + 2 * 3000)
      }),
      { numRuns: 300 }
    )
  })

  it("passes a chunk with nothing to replace or hold back as it is", () => {
    const rewriter = new Substitution.StreamRewriter(scanning([["secret", "[S]"]]))
    const chunk = bytes("nothing to see here")
    expect(rewriter.push(chunk)).toBe(chunk)
  })
})
