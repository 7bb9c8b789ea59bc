/**
 * The readings automaton (`readings.ts`), which scrubs the chunks whose escapes matter, finds at
 * least what the exhaustive reference finds (every byte it covers, and holding back at least as
 * much), on every input; on texts made of whole values in escape syntaxes and clean text, exactly
 * that. It gives up within its budget, and the chunk is then scanned stack by stack.
 */
import fc from "fast-check"
import { afterEach, beforeEach, describe, expect, it } from "vitest"
import { encodeLayers, type Syntax, SYNTAXES } from "../src/internal/escapes.js"
import { Substitution } from "@secretgate/core"
import { ALLOWANCE, readable, Readings } from "../src/internal/readings.js"
import { EgressRefused } from "../src/EgressError.js"
import { coverage, makeScrubber, READINGS_BUDGET, scrubBytes } from "../src/internal/scrubber.js"
import { alphabets, picks, secret, text, valueOf } from "./support/scrubberInputs.js"

const RUNS = Number(process.env.SHORTCUT_RUNS ?? 2000) / 2

/**
 * The bytes scrubbing replaces when `bytes` arrive in chunks cut at `cuts` (as `StreamRewriter`
 * does: what a scan holds back is scanned again with the next chunk, and what the scan asked to be
 * given back with it); `between` runs after the first chunk's scan.
 */
const streamed = (scrubber: ReturnType<typeof makeScrubber>, bytes: Buffer, cuts: ReadonlyArray<number>, between = () => {}): Uint8Array => {
  const covered = new Uint8Array(bytes.length)
  const ends = [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b).concat(bytes.length)
  let from = 0
  let resume: unknown
  for (const [k, end] of ends.entries()) {
    if (end < from) continue
    const atEnd = end === bytes.length
    const scanned = scrubber.matcher.scan!(bytes.subarray(from, end), atEnd, resume)
    if (k === 0) between()
    const { matches, holdFrom } = scanned
    resume = scanned.resume
    const keep = atEnd ? end - from : holdFrom
    let emitted = 0
    for (const match of matches) {
      if (match.index >= keep) break
      covered.fill(1, from + match.index, from + match.index + match.length)
      emitted = match.index + match.length
    }
    from += Math.max(emitted, keep)
  }
  return covered
}

/** The building budget, the shared allowance and the reserve for chunks out of step, all spent. */
const spendAll = () => {
  Object.assign(ALLOWANCE, { cap: 0, left: 0, perSecond: 0 })
  Object.assign(READINGS_BUDGET, { base: 0, perByte: 0, outOfStep: 0 })
}

/**
 * Streams `bytes` cut at `cuts` and checks that nothing the whole stream's reference covers is let
 * through; false when the response was cut off instead (`EgressRefused`).
 */
const streamsCovering = (scrubber: ReturnType<typeof makeScrubber>, bytes: Buffer, cuts: ReadonlyArray<number>, between = () => {}): boolean => {
  let chunked: Uint8Array
  try {
    chunked = streamed(scrubber, bytes, cuts, between)
  } catch (error) {
    expect(error).toBeInstanceOf(EgressRefused)
    return false
  }
  const reference = coverage(scrubber, bytes, true, "exhaustive").covered
  expect(reference.findIndex((covered, i) => covered === 1 && chunked[i] !== 1)).toBe(-1)
  return true
}

/** Checks the readings against the reference; returns whether the readings scanned the input. */
const coversAll = (values: ReadonlyArray<string>, bytes: Buffer, atEnd: boolean, exactly = false, cuts: ReadonlyArray<number> = []): boolean => {
  const scrubber = makeScrubber(values.map(secret))
  const scrub = coverage(scrubber, bytes, atEnd, "scrub")
  const reference = coverage(scrubber, bytes, atEnd, "exhaustive")
  const missed = reference.covered.findIndex((covered, i) => covered === 1 && scrub.covered[i] !== 1)
  expect(missed).toBe(-1)
  if (atEnd) {
    // whatever the chunks, no byte the reference covers in the whole is let through
    const chunked = streamed(scrubber, bytes, cuts)
    expect(reference.covered.findIndex((covered, i) => covered === 1 && chunked[i] !== 1)).toBe(-1)
  }
  if (exactly) {
    expect(scrub.hold).toBe(reference.hold)
    expect(Buffer.from(scrub.covered).toString("hex")).toBe(Buffer.from(reference.covered).toString("hex"))
  }
  return scrub.read
}

// the properties build automata for thousands of value sets: they may take what they need
const savedAllowance = { ...ALLOWANCE }
const savedBudget = { ...READINGS_BUDGET }
beforeEach(() => Object.assign(ALLOWANCE, { cap: 1e12, left: 1e12 }))
afterEach(() => {
  Object.assign(ALLOWANCE, savedAllowance, { at: Date.now() })
  Object.assign(READINGS_BUDGET, savedBudget)
})

describe("the readings automaton finds everything the stacks find", () => {
  for (const alphabet of alphabets) {
    it(`on values of any length amid noise, whole or cut off, at the end of a stream or not (${alphabet.label})`, () => {
      let read = 0
      fc.assert(
        fc.property(
          fc.array(valueOf(alphabet.values), { minLength: 1, maxLength: 12 }).chain((values) =>
            fc.tuple(fc.constant(values), text(values, alphabet.text), fc.boolean(), fc.array(fc.nat(), { maxLength: 6 }))),
          ([values, bytes, atEnd, cuts]) => {
            if (coversAll(values, bytes, atEnd, false, cuts)) read++
          }
        ),
        { numRuns: RUNS }
      )
      // (inputs with no escape that matters, or values it cannot read, take the stacks)
      expect(read).toBeGreaterThan(RUNS / 4)
    })

    it(`with many values, and long ones (${alphabet.label})`, () => {
      fc.assert(
        fc.property(
          fc.array(fc.string({ unit: fc.constantFrom(...alphabet.values, ..."skq_"), minLength: 8, maxLength: 30 }), { minLength: 9, maxLength: 40 })
            .chain((values) => fc.tuple(fc.constant(values), text(values, alphabet.text), fc.boolean())),
          ([values, bytes, atEnd]) => {
            coversAll(values, bytes, atEnd)
          }
        ),
        { numRuns: 300 }
      )
    })
  }

  it("holds back from a place the stacks read in step: a chunk after a dense one may be scanned by them", () => {
    // `\\` is one JSON escape; held back from between its two backslashes, the next chunk (few
    // escapes: the stacks) would pair the second with the `\` that `&#92;` writes, and miss the
    // `\u0041` the whole stream reads after it
    const scrubber = makeScrubber([secret("ABCD", 0)])
    const bytes = Buffer.from("\\\\&#92;u0041BCD " + "x".repeat(200))
    expect(scrubBytes(scrubber, bytes).includes("BCD ")).toBe(false)
    const reference = coverage(scrubber, bytes, true, "exhaustive").covered
    for (let cut = 1; cut < 16; cut++) {
      const chunked = streamed(scrubber, bytes, [cut])
      expect(reference.findIndex((covered, i) => covered === 1 && chunked[i] !== 1)).toBe(-1)
    }
  })

  it("a hold the stacks would read out of step, with no place in step after the last match: the next chunk is read by the automaton, whatever its budget, or the response is cut off", () => {
    // the match (`\u0051ZX…`, escaped) ends right before the `\\`: no place between them is in
    // step, so the next chunk starts out of step; then escapes that each need a new state, so that
    // with the budget and the allowance spent the automaton would give up on it
    const soup = Array.from({ length: 300 }, (_, i) => `\\u${(0x100 + i).toString(16).padStart(4, "0")}&#${i};`).join("")
    const cutOff = [0, 0]
    const flagged = [0, 0]
    for (const [r, reserve] of [0, 50_000].entries()) {
      for (let cut = 10; cut < 20; cut++) {
        Object.assign(ALLOWANCE, { cap: 1e12, left: 1e12 })
        Object.assign(READINGS_BUDGET, { ...savedBudget, outOfStep: reserve })
        // (a value no other case uses: an automaton with nothing built)
        const value = `QZX${r}${String.fromCharCode(65 + cut)}`
        const scrubber = makeScrubber([secret(value, 0)])
        const escaped = `\\u0051${value.slice(1)}`
        const bytes = Buffer.from(`${escaped}\\\\&#92;u0051${value.slice(1)} ${soup}`)
        const first = scrubber.matcher.scan!(bytes.subarray(0, cut), false)
        if ((first.resume as { outOfStep?: boolean } | undefined)?.outOfStep === true) flagged[r]!++
        let chunked: Uint8Array
        try {
          // (the reserve is the stream's, taken at its first chunk: spending it after changes nothing)
          chunked = streamed(scrubber, bytes, [cut], spendAll)
        } catch (error) {
          // cut off, with a message that says why
          expect(error).toBeInstanceOf(EgressRefused)
          expect((error as Error).message).toMatch(/cut off/)
          cutOff[r]!++
          continue
        }
        const reference = coverage(scrubber, bytes, true, "exhaustive").covered
        expect(reference.findIndex((covered, i) => covered === 1 && chunked[i] !== 1)).toBe(-1)
        // (the whole, scanned last: its states built, nothing would need the budget above)
        expect(scrubBytes(scrubber, bytes).includes(`${value.slice(1)} `)).toBe(false)
      }
    }
    // the cuts between the backslashes and in the reference after them leave the hold out of step;
    // with no reserve the response is cut off there, with one it is read whole
    expect(flagged).toEqual([7, 7])
    expect(cutOff).toEqual([7, 0])
  })

  for (const alphabet of alphabets) {
    it(`streamed, a dense stretch then a long sparse one, cut anywhere: nothing the whole stream's reference covers is let through (${alphabet.label})`, () => {
      fc.assert(
        fc.property(
          fc.array(valueOf(alphabet.values), { minLength: 1, maxLength: 6 }).chain((values) =>
            fc.tuple(fc.constant(values), text(values, alphabet.text, { minLength: 1, maxLength: 10 }), text(values, alphabet.text, { minLength: 0, maxLength: 2 }), fc.array(fc.nat(), { minLength: 1, maxLength: 4 }))),
          ([values, dense, tail, cuts]) => {
            // the sparse stretch: many clean words, so a chunk made of it is not read by the automaton
            // (no space: with `+` in values, the reference would match every space, see `alphabets`)
            const bytes = Buffer.concat([dense, tail, Buffer.from("-lorem-ipsum-dolor-sit-amet".repeat(12))])
            coversAll(values, bytes, true, false, cuts.map((cut) => cut % (dense.length + tail.length + 8)))
          }
        ),
        { numRuns: RUNS }
      )
    })
  }

  it("a hold the stacks set inside another stack's escape, or the automaton walked back to the start of a chunk out of step: moved, or said to be out of step (found by review)", () => {
    // the JSON stack, read from the start, holds back from the `c` of `%5c` (a value starting with
    // `c`, then `\\` cut off): the next chunk, read from there, had lost the percent escape
    const pad = "x".repeat(60) + " "
    for (const [value, tail, head] of [
      ["c0ffee42", "%5c\\", "u005c\\u0030ffee42"],
      ["C0FFEE42", "%5C\\", "u005C\\u0030FFEE42"],
      ["2bad7e11", "&#92\\", "u0032\\u0062ad7e11"],
      ["Cafe-9", "&#x5C\\", "u005C\\u0061fe-9"]
    ] as const) {
      const scrubber = makeScrubber([secret(value, 0)])
      const bytes = Buffer.from(pad + tail + head + " " + pad)
      const reference = coverage(scrubber, bytes, true, "exhaustive").covered
      expect(reference.includes(1)).toBe(true)
      const chunked = streamed(scrubber, bytes, [pad.length + tail.length])
      expect(reference.findIndex((covered, i) => covered === 1 && chunked[i] !== 1)).toBe(-1)
    }
    // a chunk out of step (`5C`, cut from `%5C`) whose hold the automaton moved back to two bytes
    // from its start, taken for in step as if the start were
    const values = ["5Cz", "C0ffee42"]
    const chunks = ["\\u0043\\u0030ffee42%5C", "\\", "u005C\\u0030ffee42 " + "lorem ipsum dolor sit amet, ".repeat(4)]
    const scrubber = makeScrubber(values.map(secret))
    const bytes = Buffer.from(chunks.join(""))
    const reference = coverage(scrubber, bytes, true, "exhaustive").covered
    const chunked = streamed(scrubber, bytes, [chunks[0]!.length, chunks[0]!.length + chunks[1]!.length])
    expect(reference.findIndex((covered, i) => covered === 1 && chunked[i] !== 1)).toBe(-1)
  })

  it("three cuts around `%5C\\u005C…`: a chunk left out of step stays so until a place is found in step within it (found by review)", () => {
    // a chunk out of step whose hold the automaton moves back near its start: the start is no
    // place in step, nor what only the start precedes
    const pad = "lorem ipsum dolor sit amet, ".repeat(4)
    let streams = 0
    for (const v1 of ["5Cz", "5C0", "5", "5C", "C5x"]) {
      for (const head of ["\\u0043\\u0030ffee42", "C0ffee42", "\\u0051ZXW", "xx"]) {
        const scrubber = makeScrubber([v1, "C0ffee42", "QZXW"].map(secret))
        const bytes = Buffer.from(`${head}%5C\\u005C\\u0030ffee42 ${pad}`)
        const reference = coverage(scrubber, bytes, true, "exhaustive").covered
        const at = head.length
        for (let a = at; a <= at + 6; a++) {
          for (let b = a; b <= at + 8; b++) {
            for (let c = b; c <= at + 10; c++) {
              const chunked = streamed(scrubber, bytes, [a, b, c])
              expect(reference.findIndex((covered, i) => covered === 1 && chunked[i] !== 1)).toBe(-1)
              streams++
            }
          }
        }
      }
    }
    expect(streams).toBe(4900)
  })

  it("a chain of overlapping values, each one's end the next one's start, is cut off once it would be held back past the limit, not carried and scanned again with every chunk (found by review)", () => {
    // `1f3kQz9A`: the `1` of each `\\u0041` or `%41` (an `A`) starts the next value, read raw
    const value = "1f3kQz9A"
    const scrubber = makeScrubber([secret(value, 0)])
    const body = (n: number) => Buffer.from("1" + "f3kQz9\\u0041f3kQz9%41".repeat(n))
    // a short chain passes, every value in it replaced
    const short = body(200)
    const reference = coverage(scrubber, short, true, "exhaustive").covered
    const rewriter = new Substitution.StreamRewriter(scrubber.matcher)
    const out = Buffer.concat([...Array.from({ length: Math.ceil(short.length / 1000) }, (_, k) => rewriter.push(short.subarray(k * 1000, (k + 1) * 1000))), rewriter.end()])
    expect(reference.includes(0)).toBe(false)
    expect(out.includes("f3kQz9")).toBe(false)
    // a long one is cut off within the limit (64 KiB held back), not after the whole body
    const long = body(40_000)
    const chunked = new Substitution.StreamRewriter(scrubber.matcher)
    let pushed = 0
    expect(() => {
      for (; pushed < long.length; pushed += 16_384) chunked.push(long.subarray(pushed, pushed + 16_384))
    }).toThrow(EgressRefused)
    expect(pushed).toBeLessThanOrEqual(96 * 1024)
  })

  it("chains just under the limit, in chunks of 16 bytes (a sender can choose them): each byte is scanned a bounded number of times, not once per chunk while it is held back", () => {
    const value = "1f3kQz9A"
    const scrubber = makeScrubber([secret(value, 0)])
    // chains of about 3.5 KB, each broken by an `x`
    const body = Buffer.from(("1" + "f3kQz9\\u0041f3kQz9%41".repeat(170) + "x").repeat(20))
    let scanned = 0
    const counting: Substitution.Matcher = {
      ...scrubber.matcher,
      scan: (bytes, atEnd, resume) => {
        scanned += bytes.length
        return scrubber.matcher.scan!(bytes, atEnd, resume)
      }
    }
    const rewriter = new Substitution.StreamRewriter(counting)
    const out: Array<Buffer> = []
    for (let at = 0; at < body.length; at += 16) out.push(Buffer.from(rewriter.push(body.subarray(at, at + 16))))
    out.push(rewriter.end())
    expect(Buffer.concat(out).includes("f3kQz9")).toBe(false)
    expect(scanned).toBeLessThan(20 * body.length)
  })

  it("an empty chunk changes nothing the scan of the next needs: a hold out of step stays so", () => {
    const scrubber = makeScrubber([secret("QZXWe", 0)])
    const first = scrubber.matcher.scan!(Buffer.from("\\u0051ZXWe\\\\&"), false)
    expect((first.resume as { outOfStep?: boolean } | undefined)?.outOfStep).toBe(true)
    const empty = scrubber.matcher.scan!(Buffer.alloc(0), false, first.resume)
    expect(empty.resume).toBe(first.resume)
    expect((empty.resume as { outOfStep?: boolean }).outOfStep).toBe(true)
  })

  for (const spent of [false, true]) {
    it(`runs of introducers before a value under two layers, cut anywhere in them${spent ? ", the budget spent after the first chunk" : ""}: nothing the whole stream's reference covers is let through`, () => {
      // (no space anywhere: with `+` in a value, the reference would match every space, see `alphabets`)
      const pad = "lorem-ipsum-dolor-sit-amet,-".repeat(8)
      const introducers = fc.constantFrom("\\", "\\\\", "%5C", "&#92;", "\\u005C", "%", "&", "&amp;", "\\u0026", "%25", "\\u0025", "%26", "&#37;", "&#38;", "\\u0025\\u0035\\u0043", "+", "&bsol;")
      let cutOff = 0
      fc.assert(
        fc.property(
          fc.string({ unit: fc.constantFrom(..."QZXW019&%\\/\"';#é"), minLength: 2, maxLength: 6 }),
          fc.array(introducers, { maxLength: 4 }),
          fc.array(fc.constantFrom<Syntax>(...SYNTAXES), { maxLength: 2 }),
          picks,
          fc.nat(),
          fc.nat(),
          fc.nat(),
          fc.constantFrom(..."KZ_/\\&%"),
          fc.boolean(),
          (value, before, layers, pick, offset, length, at, last, piece) => {
            Object.assign(ALLOWANCE, { cap: 1e12, left: 1e12 })
            Object.assign(READINGS_BUDGET, savedBudget)
            const middle = before.join("") + encodeLayers(value, layers, pick)
            // a second value: a piece of the middle, so that a match can end anywhere in it
            const start = offset % middle.length
            const values = piece ? [middle.slice(start, start + 1 + (length % (middle.length - start))) + last, value] : [value]
            const scrubber = makeScrubber(values.map(secret))
            const bytes = Buffer.from(pad + middle + pad)
            if (!streamsCovering(scrubber, bytes, [pad.length + (at % (Buffer.byteLength(middle) + 1))], spent ? spendAll : undefined)) cutOff++
          }
        ),
        // (cheap runs, and the case this is for is rare among them)
        { numRuns: RUNS * 4 }
      )
      expect(cutOff).toBeLessThan(RUNS)
    })
  }

  for (const alphabet of alphabets) {
    it(`streamed, the budget and the allowance spent after the first chunk: nothing the whole stream's reference covers is let through, or the response is cut off (${alphabet.label})`, () => {
      let cutOff = 0
      fc.assert(
        fc.property(
          fc.array(valueOf(alphabet.values), { minLength: 1, maxLength: 6 }).chain((values) =>
            fc.tuple(fc.constant(values), text(values, alphabet.text, { minLength: 1, maxLength: 16 }), fc.array(fc.nat(), { minLength: 1, maxLength: 4 }))),
          ([values, bytes, cuts]) => {
            Object.assign(ALLOWANCE, { cap: 1e12, left: 1e12 })
            Object.assign(READINGS_BUDGET, savedBudget)
            // (streamed first: what the whole's scans build would spare the chunks the budget)
            const scrubber = makeScrubber(values.map(secret))
            if (!streamsCovering(scrubber, bytes, cuts, spendAll)) cutOff++
          }
        ),
        { numRuns: RUNS }
      )
      // most streams go on: a hold out of step is rare
      expect(cutOff).toBeLessThan(RUNS / 4)
    })
  }

  it("exactly what the stacks find, on whole values written under any stack between clean words", () => {
    // one way to read each escape: the readings agree with a decoder from the start of the stream
    const word = fc.string({ unit: fc.constantFrom(..."lorem ipsum"), minLength: 1, maxLength: 12 })
    fc.assert(
      fc.property(
        fc.array(fc.string({ unit: fc.constantFrom(..."<>\"'!*()/ é😀=sk_0123456789"), minLength: 4, maxLength: 16 }), { minLength: 1, maxLength: 6 }).chain((values) =>
          fc.tuple(
            fc.constant(values),
            fc.array(fc.tuple(word, fc.nat({ max: values.length - 1 }), fc.array(fc.constantFrom<Syntax>(...SYNTAXES), { maxLength: 2 }), picks), { minLength: 1, maxLength: 8 }),
            fc.array(fc.nat(), { maxLength: 6 })
          )),
        ([values, pieces, cuts]) => {
          const bytes = Buffer.from(pieces.map(([before, i, layers, pick]) => `${before} ${encodeLayers(values[i]!, layers, pick)} `).join(""), "utf8")
          coversAll(values, bytes, true, true, cuts)
        }
      ),
      { numRuns: RUNS / 4 }
    )
  })

  it("the benchmark's dense echo: every form of 64 values, scrubbed as the stacks scrub it", () => {
    const values = Array.from({ length: 64 }, (_, i) => `sk_${i}&<>"'!*()+/ é😀=${(i * 7919).toString(36)}x${"z".repeat(i % 9)}`)
    const json = (t: string) => JSON.stringify(t).slice(1, -1)
    const forms = (v: string) => [
      json(v).replace(/[&<>]/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`),
      encodeURIComponent(v).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16)}`).toLowerCase(),
      [...v].map((c) => (/[a-z0-9]/i.test(c) ? c : `&#${c.codePointAt(0)};`)).join(""),
      json(json(v)),
      json(encodeURIComponent(v))
    ]
    const bytes = Buffer.from(values.flatMap(forms).join(" "), "utf8")
    const scrubber = makeScrubber(values.map(secret))
    const scrub = coverage(scrubber, bytes, true, "scrub")
    expect(scrub.read).toBe(true)
    expect(Buffer.from(scrub.covered).toString("hex")).toBe(Buffer.from(coverage(scrubber, bytes, true, "exhaustive").covered).toString("hex"))
    expect(scrubBytes(scrubber, bytes).toString("utf8")).not.toMatch(/sk_\d/)
  })
})

describe("the readings automaton's compiled walk (`walk.ts`)", () => {
  /** Every match (stack, pattern, start, end) and answer of `scan` over `bytes` cut at `cuts`, from a fresh automaton. */
  const scanned = (readings: Readings, bytes: Buffer, cuts: ReadonlyArray<number>, budget = 1e9) => {
    const matches: Array<readonly [number, number, number, number]> = []
    const answers: Array<number> = []
    let from = 0
    for (const end of [...new Set(cuts.map((cut) => cut % (bytes.length + 1)))].sort((a, b) => a - b).concat(bytes.length)) {
      if (end < from) continue
      const chunk = bytes.subarray(from, end)
      const answer = readings.scan(chunk, chunk.length, end === bytes.length, budget, (stack, pattern, start, matchEnd) => matches.push([stack, pattern, from + start, from + matchEnd]))
      answers.push(answer)
      // as the scrubber does: what is held back comes again with the next chunk
      from = answer < 0 ? end : from + answer
    }
    return { matches, answers, built: readings.built, states: readings.states }
  }

  const pair = (values: ReadonlyArray<string>) => {
    const patterns = values.map((value) => Buffer.from(value, "utf8"))
    const compiled = new Readings(patterns)
    expect(compiled.walksCompiled).toBe(true)
    const typescript = new Readings(patterns, false)
    expect(typescript.walksCompiled).toBe(false)
    return { compiled, typescript }
  }

  for (const alphabet of alphabets) {
    it(`reports what the TypeScript walk reports, chunk by chunk, and builds the same states (${alphabet.label})`, () => {
      fc.assert(
        fc.property(
          fc.array(valueOf(alphabet.values), { minLength: 1, maxLength: 3 }).chain((values) => fc.tuple(fc.constant(values), text(values, alphabet.text), fc.array(fc.nat(), { maxLength: 4 }))),
          ([values, bytes, cuts]) => {
            if (!readable(values.map((value) => Buffer.from(value, "utf8")))) return
            const { compiled, typescript } = pair(values)
            expect(scanned(compiled, bytes, cuts)).toEqual(scanned(typescript, bytes, cuts))
          }
        ),
        { numRuns: RUNS / 4 }
      )
    })
  }

  it("the benchmark's dense echo in pieces longer than the module's (16 KiB), its table grown while a chunk is walked: the same matches", () => {
    const values = Array.from({ length: 64 }, (_, i) => `sk_${i}&<>"'!*()+/ é😀=${(i * 7919).toString(36)}x${"z".repeat(i % 9)}`)
    const json = (t: string) => JSON.stringify(t).slice(1, -1)
    const forms = (v: string) => [json(v).replace(/[&<>]/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`), [...v].map((c) => (/[a-z0-9]/i.test(c) ? c : `&#${c.codePointAt(0)};`)).join(""), json(json(v))]
    const bytes = Buffer.from(values.flatMap(forms).join(" ").repeat(5), "utf8")
    expect(bytes.length).toBeGreaterThan(3 * 16384)
    const { compiled, typescript } = pair(values)
    // one chunk of it all (thousands of states built while it is walked), then again in cuts that fall anywhere in a piece
    const whole = scanned(compiled, bytes, [])
    expect(whole).toEqual(scanned(typescript, bytes, []))
    expect(whole.states).toBeGreaterThan(2000)
    expect(whole.matches.length).toBeGreaterThanOrEqual(5 * values.length * forms("x").length)
    const cuts = [16383, 16385, 30000, 32768, 40001]
    expect(scanned(compiled, bytes, cuts)).toEqual(scanned(typescript, bytes, cuts))
    // built once, walked from the table: the same bytes again need no transition built
    const transitions = compiled.transitions
    expect(transitions).toBeGreaterThan(2000)
    expect(scanned(compiled, bytes, [20000]).matches.length).toBe(whole.matches.length)
    expect(compiled.transitions).toBe(transitions)
  })

  it("where its memory cannot grow for a larger table, gives up on the chunk (the stacks scan it) and starts afresh; then walks as before", () => {
    const values = Array.from({ length: 64 }, (_, i) => `sk_${i}&<>"'!*()+/ é😀=${(i * 7919).toString(36)}`)
    const bytes = Buffer.from(values.map((v) => `${JSON.stringify(JSON.stringify(v).slice(1, -1)).slice(1, -1)} ${[...v].map((c) => `&#${c.codePointAt(0)};`).join("")}`).join(" "), "utf8")
    const { compiled, typescript } = pair(values)
    const memory = (globalThis as unknown as { WebAssembly: { Memory: { prototype: { grow: (pages: number) => number } } } }).WebAssembly.Memory.prototype
    const grow = memory.grow
    memory.grow = () => {
      throw new RangeError("WebAssembly.Memory.grow(): Maximum memory size exceeded")
    }
    try {
      expect(scanned(compiled, bytes, []).answers).toEqual([-1])
    } finally {
      memory.grow = grow
    }
    expect(compiled.walksCompiled).toBe(true)
    const again = scanned(compiled, bytes, [])
    expect(again.matches).toEqual(scanned(typescript, bytes, []).matches)
    expect(again.states).toBeGreaterThan(4000)
  })

  it("an error while building leaves no half-built automaton: the scan throws (the response is cut off), the next one starts afresh", () => {
    const values = ["sk_0&<>\"'!*()+/ é😀=zzzz", "tok en+/é😀 x"]
    const bytes = Buffer.from(values.map((v) => `${JSON.stringify(v).slice(1, -1)} ${[...v].map((c) => `&#${c.codePointAt(0)};`).join("")}`).join(" "), "utf8")
    const { compiled, typescript } = pair(values)
    const building = compiled as unknown as { build: (...args: Array<unknown>) => number }
    const build = building.build
    let calls = 0
    building.build = function(this: unknown, ...args: Array<unknown>) {
      if (++calls === 50) throw new Error("a bug while building")
      return build.apply(this, args)
    }
    expect(() => compiled.scan(bytes, bytes.length, true, 1e9, () => {})).toThrow("a bug while building")
    expect(compiled.states).toBe(1)
    const again = scanned(compiled, bytes, [])
    const reference = scanned(typescript, bytes, [])
    expect([again.matches, again.answers, again.states]).toEqual([reference.matches, reference.answers, reference.states])
  })

  it("gives up where the TypeScript walk does: at the same byte of a chunk that needs more building than its budget", () => {
    Object.assign(ALLOWANCE, { cap: 0, left: 0 })
    const { compiled, typescript } = pair(["sk_0&<>\"'!*()+/ é😀=zzzz"])
    const soup = Buffer.from(Array.from({ length: 3000 }, (_, i) => `\\u${(0x100 + i).toString(16).padStart(4, "0")}&#${i};`).join(""), "utf8")
    const a = scanned(compiled, soup, [], 3000)
    expect(a.answers).toEqual([-1])
    expect(a).toEqual(scanned(typescript, soup, [], 3000))
  })
})

describe("the readings automaton's cost", () => {
  const saved = { ...READINGS_BUDGET }
  afterEach(() => Object.assign(READINGS_BUDGET, saved))

  it("a chunk whose building would pass the budget is scanned by the stacks, with the same result", () => {
    Object.assign(READINGS_BUDGET, { base: 0, perByte: 0 })
    Object.assign(ALLOWANCE, { cap: 0, left: 0 })
    // (values no other test uses: a new automaton)
    const values = ["sk_budget&<>\"'x", "tok en+/é😀 budget"]
    const bytes = Buffer.from(`a \\u0026 ${encodeLayers(values[0]!, ["json"], () => 0)} and ${encodeLayers(values[1]!, ["html", "percent"], () => 1)} b`, "utf8")
    const scrubber = makeScrubber(values.map(secret))
    const scrub = coverage(scrubber, bytes, false, "scrub")
    expect(scrub.read).toBe(false)
    const stacks = coverage(scrubber, bytes, false, "stacks")
    expect(scrub.hold).toBe(stacks.hold)
    expect(Buffer.from(scrub.covered).toString("hex")).toBe(Buffer.from(stacks.covered).toString("hex"))
    expect(scrub.covered.includes(1)).toBe(true)
  })

  it("building stops within the budget on input made to need a new state at every byte", () => {
    Object.assign(ALLOWANCE, { cap: 0, left: 0 })
    const readings = new Readings([Buffer.from("sk_0&<>\"'!*()+/ é😀=zzzz")])
    // every escape of a different character: a thread in a new decoder state at each step
    const soup = Buffer.from(Array.from({ length: 20_000 }, (_, i) => `\\u${(0x100 + i).toString(16).padStart(4, "0")}&#${i};`).join(""), "utf8")
    const before = readings.built
    const answer = readings.scan(soup, soup.length, true, 5000, () => {})
    expect(answer).toBe(-1)
    // a build started within the budget finishes its state: a few dozen steps more at most
    expect(readings.built - before).toBeLessThan(5000 + 200)
  })

  it("the allowance beyond each chunk's budget is shared by every automaton, and refills over time", () => {
    Object.assign(ALLOWANCE, { cap: 20_000, perSecond: 0, left: 20_000, at: Date.now() })
    const soup = Buffer.from(Array.from({ length: 4000 }, (_, i) => `\\u${(0x100 + i).toString(16).padStart(4, "0")}&#${i};`).join(""), "utf8")
    // two sets of values: the second gets only what the first left
    const first = new Readings([Buffer.from("sk_first&<>\"'é😀")])
    expect(first.scan(soup, soup.length, true, 0, () => {})).toBe(-1)
    expect(ALLOWANCE.left).toBe(0)
    const second = new Readings([Buffer.from("sk_second&<>\"'é😀")])
    const before = second.built
    expect(second.scan(soup, soup.length, true, 0, () => {})).toBe(-1)
    expect(second.built - before).toBeLessThan(200)
    // refilled at its rate
    Object.assign(ALLOWANCE, { perSecond: 1000, at: Date.now() - 5000 })
    expect(second.scan(soup.subarray(0, 100), 100, true, 0, () => {})).not.toBe(-1)
  })

  it("text whose escapes are few is scanned by the stacks (cheaper there), a value in it found all the same", () => {
    const values = ["sk_sparse&<>\"'é😀"]
    const words = "lorem ipsum dolor sit amet ".repeat(200)
    const bytes = Buffer.from(`${words}${encodeLayers(values[0]!, ["json"], () => 0)}${words}`, "utf8")
    const scrubber = makeScrubber(values.map(secret))
    const scrub = coverage(scrubber, bytes, true, "scrub")
    expect(scrub.read).toBe(false)
    expect(scrub.covered.includes(1)).toBe(true)
    expect(Buffer.from(scrub.covered).toString("hex")).toBe(Buffer.from(coverage(scrubber, bytes, true, "exhaustive").covered).toString("hex"))
    // the same value amid escapes as dense as an echo of values is read by the automaton
    const dense = Buffer.from(Array.from({ length: 40 }, () => encodeLayers(values[0]!, ["json"], () => 0)).join(" "), "utf8")
    expect(coverage(scrubber, dense, true, "scrub").read).toBe(true)
  })

  it("does not read patterns that could begin or end inside one escape's bytes (Latin-1 forms)", () => {
    expect(readable([Buffer.from("sk_live", "utf8"), Buffer.from("é😀", "utf8")])).toBe(true)
    // a Latin-1 `é` (0xe9) at the end: the first byte of a three-byte character
    expect(readable([Buffer.from("café", "latin1")])).toBe(false)
    // a Latin-1 `©` (0xa9) at the start: a continuation byte
    expect(readable([Buffer.from("©x", "latin1")])).toBe(false)
    expect(readable([Buffer.from("aéb", "latin1")])).toBe(true)
    // a value so long that a thread's age would not fit its number; one whose bytes are too varied
    expect(readable([Buffer.alloc(8000, "a")])).toBe(false)
    expect(readable([Buffer.from(Array.from({ length: 200 }, (_, i) => i + 32))])).toBe(false)
  })
})
