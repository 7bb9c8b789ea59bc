/**
 * The compiled clean check (`wasm/clean.c`, `src/internal/clean.ts`) answers exactly what the
 * TypeScript one (`cleanLayer` of `scrubber.ts`) answers, on any input; and the module committed is
 * the one `wasm/build.sh` builds from the source.
 */
import fc from "fast-check"
import { execFileSync, spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"
import { LAYER_TAILS } from "../src/internal/clean.js"
import { NAMED_REFERENCES } from "../src/internal/escapes.js"
import { layersOf, makeScrubber, unionPairs } from "../src/internal/scrubber.js"
import { alphabets, secret, text, valueOf } from "./support/scrubberInputs.js"

const agree = (values: ReadonlyArray<string>, bytes: Buffer, atEnd: boolean) => {
  const scrubber = makeScrubber(values.map(secret))
  const pairs = unionPairs(scrubber)
  if (pairs === undefined) return
  const plus = scrubber.sets.some((set) => set.plus)
  // the answers, and where each layer's reading ended (which `holdCleanTail` holds back from)
  const compiled = new Int32Array(LAYER_TAILS)
  const typescript = new Int32Array(LAYER_TAILS)
  expect(layersOf(bytes, atEnd, plus, pairs, true, compiled).toString(2)).toBe(layersOf(bytes, atEnd, plus, pairs, false, typescript).toString(2))
  expect([...compiled]).toEqual([...typescript])
}

/** Bytes made of escapes' pieces: every branch of every syntax's reading, cut off anywhere. */
const escapeNoise = fc
  .array(
    fc.oneof(
      fc.constantFrom("\\", "\\u", "\\u00", "\\uD83D", "\\uDE00", "\\uD83D\\uDE00", "\\\\", "\\\"", "\\n", "\\/", "\\'", "\\x"),
      fc.constantFrom("%", "%2", "%2F", "%2f", "%25", "%5C", "%26", "+", "%zz"),
      fc.constantFrom("&", "&#", "&#x", "&#X", "&#38;", "&#x26", "&#0000000038;", "&#123456789;", "&#x110000;", "&#xD800;", "&amp", "&amp;", "&ampx", "&notin;", "&not", "&copy", "&lt;", "&;"),
      fc.constantFrom(...[...NAMED_REFERENCES.keys()].slice(0, 40).map((name) => `&${name}`)),
      fc.string({ unit: fc.constantFrom(..."sk_-&<>\"'!*()+/ 09afAFxu#;é😀"), maxLength: 6 })
    ),
    { maxLength: 40 }
  )
  .map((pieces) => Buffer.from(pieces.join(""), "utf8"))

describe("the compiled clean check", () => {
  for (const alphabet of alphabets) {
    it(`answers what the TypeScript check answers, on values amid noise and escaped values (${alphabet.label})`, () => {
      fc.assert(
        fc.property(
          fc.array(valueOf(alphabet.values), { minLength: 1, maxLength: 8 }).chain((values) => fc.tuple(fc.constant(values), text(values, alphabet.text), fc.boolean())),
          ([values, bytes, atEnd]) => agree(values, bytes, atEnd)
        ),
        { numRuns: Number(process.env.SHORTCUT_RUNS ?? 2000) }
      )
    })
  }

  it("answers what the TypeScript check answers on every piece of every escape, cut off anywhere", () => {
    fc.assert(
      fc.property(fc.array(valueOf(alphabets[0]!.values), { minLength: 1, maxLength: 4 }), escapeNoise, fc.boolean(), (values, bytes, atEnd) => agree(values, bytes, atEnd)),
      { numRuns: Number(process.env.SHORTCUT_RUNS ?? 2000) }
    )
  })

  it("finds clean layers and dirty ones (the answers are not all alike)", () => {
    const scrubber = makeScrubber([secret(`sk_1&<>"'!*()+/ é`, 0)])
    const pairs = unionPairs(scrubber)!
    // JSON with escapes that write nothing of the value: every layer present and clean
    const clean = Buffer.from(`{"note":"a \\"quoted\\" word\\nnext &amp; more","url":"https://x.test/?q=c%2Fd&page=2"}`)
    expect(layersOf(clean, true, true, pairs).toString(2)).toBe("1110111")
    // a JSON escape writing `<` next to `&`: the JSON layer is not clean
    const dirty = Buffer.from(`text &\\u003c more words here, then %41 and &amp; fine`)
    expect(layersOf(dirty, true, true, pairs).toString(2)).toBe("1100111")
    expect(layersOf(dirty, true, true, pairs, false).toString(2)).toBe("1100111")
    // cut off inside an escape: clean so far (what is held back for it is the tail's, decoded apart)
    expect(layersOf(Buffer.from("abc %2"), false, true, pairs).toString(2)).toBe("1110010")
    expect(layersOf(Buffer.from("abc %2"), false, true, pairs, false).toString(2)).toBe("1110010")
    // but not where the escape before it pairs with a value's bytes
    expect(layersOf(Buffer.from("abc %2F%2"), false, true, pairs).toString(2)).toBe("1010010")
  })

  it("keeps what it read of an escape only for the byte pairs and `+` it read it with", () => {
    // the same escapes between the same bytes, clean for one set of values and not for another,
    // asked in turn, with `+` an introducer and not: each answer is the TypeScript check's
    const text = Buffer.from(`some words a \\"q\\"+ b %2Fx &amp; y a+b here and more`)
    const answers = new Set<string>()
    for (let round = 0; round < 3; round++) {
      for (const value of ["zz9!k", `"q!x`, "/x!", "& y!", "a b"]) {
        const pairs = unionPairs(makeScrubber([secret(value, 0)]))!
        for (const plus of [false, true]) {
          const answer = layersOf(text, false, plus, pairs).toString(2)
          expect(answer).toBe(layersOf(text, false, plus, pairs, false).toString(2))
          answers.add(answer)
        }
      }
    }
    // (each value leaves a layer of its own not clean, and `+` the JSON one: six answers in all)
    expect(answers.size).toBe(6)
  })

  it("answers the same when a chunk makes the module's memory grow, and for the chunks after it", () => {
    const scrubber = makeScrubber([secret(`sk_1&<>"'!*()+/ é`, 0)])
    const pairs = unionPairs(scrubber)!
    const small = Buffer.from(`a \\"b\\" &amp; %2F then &\\u003c`)
    expect(layersOf(small, true, true, pairs).toString(2)).toBe(layersOf(small, true, true, pairs, false).toString(2))
    // each longer than the last: the module's memory grows (up to 1 MiB chunks, seventeen bytes per byte)
    for (const size of [100_000, 300_000, 700_000, 1_000_000]) {
      const long = Buffer.from(`a \\"b\\" &amp; %2F `.repeat(Math.ceil(size / 20)).slice(0, size - 8) + "&\\u003c")
      expect(layersOf(long, true, true, pairs).toString(2)).toBe(layersOf(long, true, true, pairs, false).toString(2))
      expect(layersOf(small, true, true, pairs).toString(2)).toBe(layersOf(small, true, true, pairs, false).toString(2))
    }
  })

  it("answers a long chunk from its first KiB where that is dense and dirty in every syntax, and reads the whole chunk otherwise: the TypeScript check's answer each time", () => {
    const value = `sk_1&<>"'!*()+/ é`
    const pairs = unionPairs(makeScrubber([secret(value, 0)]))!
    const json = (t: string) => JSON.stringify(t).slice(1, -1)
    const forms = [json(value).replace(/[&<>]/g, (c) => `\\u00${c.charCodeAt(0).toString(16)}`), encodeURIComponent(value).replace(/[!'()*]/g, (c) => `%${c.charCodeAt(0).toString(16)}`), [...value].map((c) => `&#${c.codePointAt(0)};`).join("")]
    const filler = `some prose with a \\"quoted\\" word &amp; more %41 `
    const cases = {
      // every syntax dirty in the first KiB: the whole chunk's answer is all dirty
      dense: forms.join(" ").repeat(200),
      // dense and dirty at first in two syntaxes; the third clean throughout, or not there at all
      "third clean": (forms[0]! + " " + forms[1]! + " &amp; ").repeat(60) + filler.repeat(100),
      "third absent": (forms[0]! + " " + forms[1]! + " ").repeat(120),
      // dense and dirty at first in two syntaxes, the third dirty only far into the chunk
      "third late": (forms[0]! + " " + forms[1]! + " ").repeat(60) + filler.repeat(100) + forms[2]!,
      // dirty in every syntax at first but sparse: the whole chunk is listed
      sparse: forms.join(" ") + filler.repeat(200),
      // clean throughout
      clean: filler.repeat(200)
    }
    const answers = new Set<string>()
    for (const [name, text] of Object.entries(cases)) {
      const bytes = Buffer.from(text, "utf8")
      expect(bytes.length, name).toBeGreaterThanOrEqual(4096)
      for (const atEnd of [false, true]) {
        const compiled = new Int32Array(LAYER_TAILS)
        const typescript = new Int32Array(LAYER_TAILS)
        const answer = layersOf(bytes, atEnd, true, pairs, true, compiled).toString(2)
        expect(answer, name).toBe(layersOf(bytes, atEnd, true, pairs, false, typescript).toString(2))
        expect([...compiled], name).toEqual([...typescript])
        answers.add(`${name}: ${answer}`)
      }
    }
    expect([...answers].sort()).toEqual(["clean: 1110111", "dense: 111", "sparse: 111", "third absent: 1000011", "third clean: 1000111", "third late: 111"])
  })

  it("gives a chunk longer than its memory holds to the TypeScript check, with the same answer", () => {
    const scrubber = makeScrubber([secret(`sk_1&<>"'!*()+/ é`, 0)])
    const pairs = unionPairs(scrubber)!
    const long = Buffer.from(`a \\"b\\" &amp; %2F `.repeat(80_000) + "&\\u003c")
    expect(long.length).toBeGreaterThan(1 << 20)
    expect(layersOf(long, true, true, pairs)).toBe(layersOf(long, true, true, pairs, false))
    expect(layersOf(long, true, true, pairs) & 0b10000).toBe(0)
  })

  // the committed modules name the clang that built them: another version may write other bytes
  const committed = (name: string) => readFileSync(fileURLToPath(new URL(`../src/internal/${name}.ts`, import.meta.url)), "utf8")
  const builtWith = /^\/\/ Built with (.*)\.$/m.exec(committed("cleanWasm"))?.[1]
  const clang = spawnSync("clang", ["--version"], { encoding: "utf8" })
  const sameClang = clang.status === 0 && spawnSync("wasm-ld", ["--version"]).status === 0 && clang.stdout.split("\n")[0] === builtWith
  it.skipIf(!sameClang)(`are built from their source: wasm/build.sh writes the committed modules (needs ${builtWith} and lld)`, () => {
    const dir = mkdtempSync(join(tmpdir(), "secretgate-wasm-"))
    try {
      execFileSync(fileURLToPath(new URL("../wasm/build.sh", import.meta.url)), [dir])
      for (const name of ["cleanWasm", "walkWasm"]) expect(readFileSync(join(dir, `${name}.ts`), "utf8"), name).toBe(committed(name))
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
