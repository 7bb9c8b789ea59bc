/**
 * Inputs for the scrubber's properties: secrets, values of every length the scrubber treats
 * differently, and texts of noise and values written under random stacks of escape syntaxes.
 */
import { Placeholder } from "@secretgate/core"
import { Redacted } from "effect"
import fc from "fast-check"
import { encodeLayers, type Pick, type Syntax, SYNTAXES } from "../../src/internal/escapes.js"

export const secret = (value: string, i: number) => ({
  id: `s${i}`,
  name: `s${i}`,
  value: Redacted.make(value),
  placeholder: Placeholder.generate(),
  hosts: ["api.example.com"]
})

export const picks = fc.infiniteStream(fc.nat()).map((stream) => {
  const iterator = stream[Symbol.iterator]()
  return ((n: number) => iterator.next().value! % n) as Pick
})
/**
 * The characters values and noise are made of. Under percent-encoding the scrubber compares `+`
 * and space as one byte, so a value's `+` also matches a space of the text (more is scrubbed than
 * the syntax needs, which is harmless) wherever it scans; the exhaustive scan looks everywhere, the
 * shortcuts only near escapes. So each property leaves one of the two out of the values: with
 * spaces in values and `+` only in the text, or `+` in values and no space anywhere.
 */
export const SPECIAL = "&<>\"'!*()/\\%;#xuX0123456789abcdefé😀"
export const alphabets = [
  { label: "values with spaces, `+` in the text", values: SPECIAL + " ", text: SPECIAL + "+ " },
  { label: "values with `+`, no space anywhere", values: SPECIAL + "+", text: SPECIAL + "+" }
]
/** Values of every length the shortcuts treat differently: one byte, under 4, under 8, longer. */
export const valueOf = (alphabet: string) => fc.string({ unit: fc.oneof(fc.constantFrom(...alphabet), fc.constantFrom(..."skq_-AZ")), minLength: 1, maxLength: 14 })
/** Noise that looks like the start of escapes, cut-off ones included. */
export const noiseOf = (alphabet: string) => fc.oneof(
  fc.string({ unit: fc.constantFrom(...alphabet, ..."loremipsum"), maxLength: 12 }),
  fc.constantFrom("\\u00", "\\\\", "&#", "&#x", "&amp", "&amp;", "%2", "%25", "%5C", "\\u0026", "&quot;", "+", "\\", "&", "%")
)
export const stack = fc.array(fc.constantFrom<Syntax>(...SYNTAXES), { maxLength: 2 })

/** A text of noise and values written under random stacks, some of them cut short. */
export const text = (values: ReadonlyArray<string>, alphabet: string, pieces = { minLength: 0, maxLength: 10 }) =>
  fc.array(
    fc.oneof(
      noiseOf(alphabet),
      fc.tuple(fc.nat({ max: values.length - 1 }), stack, picks, fc.nat({ max: 3 })).map(([i, layers, pick, cut]) => {
        const written = encodeLayers(values[i]!, layers, pick)
        return cut === 0 ? written.slice(0, Math.max(1, written.length - 3)) : written
      })
    ),
    pieces
  ).map((pieces) => Buffer.from(pieces.join(""), "utf8"))
