/**
 * A multi-pattern byte matcher (Aho–Corasick): one pass over the input finds every occurrence of
 * any of its patterns, in time linear in the input whatever the number of patterns or matches.
 *
 * Built once for a set of patterns and then shared: the egress scrubber builds one per snapshot of
 * secret values. Input bytes may be folded (treated as another byte: `+` as space, upper-case as
 * lower-case) so that one automaton matches modulo an equivalence.
 *
 * @since 0.2.0
 */

/**
 * Byte equivalences applied to the input and the patterns: `fold[b]` is the byte `b` counts as.
 *
 * @since 0.2.0
 */
export type Fold = Uint8Array

/**
 * No folding.
 *
 * @since 0.2.0
 */
export const IDENTITY: Fold = Uint8Array.from({ length: 256 }, (_, b) => b)

/**
 * A fold built from `IDENTITY` with some bytes mapped to others.
 *
 * @since 0.2.0
 * @example
 * ```ts
 * import { Automaton } from "@secretgate/core"
 * const plusIsSpace = Automaton.fold([[0x2b, 0x20]])
 * ```
 */
export const fold = (pairs: Iterable<readonly [from: number, to: number]>, base: Fold = IDENTITY): Fold => {
  const out = Uint8Array.from(base)
  for (const [from, to] of pairs) out[from] = base[to]!
  return out
}

/**
 * ASCII letters as lower case.
 *
 * @since 0.2.0
 */
export const LOWER_CASE: Fold = fold(Array.from({ length: 26 }, (_, i) => [0x41 + i, 0x61 + i] as const))

/**
 * Called for an occurrence: which pattern, and where it ends (exclusive) in the input.
 *
 * @since 0.2.0
 */
export type OnMatch = (pattern: number, end: number) => void

/**
 * The automaton over a list of patterns (empty ones are ignored). Pattern `i` of the list is
 * reported as `i`.
 *
 * @since 0.2.0
 */
export class Automaton {
  /** The state before any byte: no partial match. @since 0.2.0 */
  static readonly ROOT = 0
  /** Number of patterns given. @since 0.2.0 */
  readonly size: number
  /** Length of the longest pattern (0 when none). @since 0.2.0 */
  readonly longest: number
  /** Bytes scanned so far by all scans (a work counter: tests check that scrubbing stays linear). @since 0.2.0 */
  work = 0
  private readonly classes: Uint8Array
  private readonly width: number
  /**
   * (state * width) + class -> next state, times width (so a step is one addition); bitwise-not of
   * that when the next state ends a pattern, so the scan loop tests a sign, not another table.
   */
  private readonly delta: Int32Array
  /** state -> longest pattern ending here, or -1 */
  private readonly output: Int32Array
  /** state -> the next shorter state on the suffix chain that has an output, or -1 */
  private readonly nextOutput: Int32Array
  /** state -> its depth (length of the partial match it stands for) */
  private readonly depths: Int32Array
  private readonly lengths: Int32Array
  /** state -> whether some pattern goes on past it */
  private readonly inner: Uint8Array

  constructor(patterns: ReadonlyArray<Uint8Array>, readonly folding: Fold = IDENTITY) {
    this.size = patterns.length
    this.lengths = Int32Array.from(patterns, (pattern) => pattern.length)
    this.longest = patterns.reduce((max, pattern) => Math.max(max, pattern.length), 0)
    // byte classes: each byte that occurs in a pattern (after folding) is its own class, all others 0
    const classes = new Uint8Array(256)
    const classOf = new Map<number, number>()
    for (const pattern of patterns) {
      for (const byte of pattern) {
        const folded = folding[byte]!
        if (!classOf.has(folded)) classOf.set(folded, classOf.size + 1)
      }
    }
    for (let b = 0; b < 256; b++) classes[b] = classOf.get(folding[b]!) ?? 0
    this.classes = classes
    const width = classOf.size + 1
    this.width = width
    // the trie
    const total = patterns.reduce((sum, pattern) => sum + pattern.length, 1)
    const trie = new Int32Array(total * width).fill(-1)
    const output = new Int32Array(total).fill(-1)
    const depths = new Int32Array(total)
    const inner = new Uint8Array(total)
    let states = 1
    patterns.forEach((pattern, index) => {
      if (pattern.length === 0) return
      let state = 0
      for (const byte of pattern) {
        const slot = state * width + classes[byte]!
        if (trie[slot] === -1) {
          inner[state] = 1
          depths[states] = depths[state]! + 1
          trie[slot] = states++
        }
        state = trie[slot]!
      }
      if (output[state] === -1) output[state] = index
    })
    // failure links, breadth first; the table becomes the full transition function
    const delta = trie.subarray(0, states * width)
    const fail = new Int32Array(states)
    const nextOutput = new Int32Array(states).fill(-1)
    const queue = new Int32Array(states)
    let head = 0
    let tail = 0
    for (let c = 0; c < width; c++) {
      const next = delta[c]!
      if (next === -1) delta[c] = 0
      else {
        fail[next] = 0
        queue[tail++] = next
      }
    }
    while (head < tail) {
      const state = queue[head++]!
      const f = fail[state]!
      nextOutput[state] = output[f] !== -1 ? f : nextOutput[f]!
      if (output[state] === -1 && output[f] !== -1) output[state] = output[f]!
      for (let c = 0; c < width; c++) {
        const slot = state * width + c
        const next = delta[slot]!
        if (next === -1) delta[slot] = delta[f * width + c]!
        else {
          fail[next] = delta[f * width + c]!
          queue[tail++] = next
        }
      }
    }
    for (let slot = 0; slot < delta.length; slot++) {
      const next = delta[slot]!
      delta[slot] = output[next] !== -1 ? ~(next * width) : next * width
    }
    this.delta = delta
    this.output = output.subarray(0, states)
    this.nextOutput = nextOutput
    this.depths = depths.subarray(0, states)
    this.inner = inner.subarray(0, states)
  }

  /** Length of pattern `i`. @since 0.2.0 */
  lengthOf(pattern: number): number {
    return this.lengths[pattern]!
  }

  /** How many bytes the partial match of `state` spans (0 at the root). @since 0.2.0 */
  depth(state: number): number {
    return this.depths[state / this.width]!
  }

  /** Whether `byte` occurs in any pattern (after folding). @since 0.2.0 */
  occurs(byte: number): boolean {
    return this.classes[byte] !== 0
  }

  /**
   * Scans `bytes[start, end)` from `state` (`ROOT`, or what an earlier scan returned); for every position where a pattern ends, calls
   * `onMatch` with the longest pattern ending there (a shorter one ending at the same place lies
   * inside it). Returns the state after the last byte.
   *
   * @since 0.2.0
   */
  scan(bytes: Uint8Array, start: number, end: number, state: number, onMatch: OnMatch): number {
    const { classes, delta, output, width } = this
    let s = state
    for (let i = start; i < end; i++) {
      const next = delta[s + classes[bytes[i]!]!]!
      if (next >= 0) s = next
      else {
        s = ~next
        onMatch(output[s / width]!, i + 1)
      }
    }
    this.work += end > start ? end - start : 0
    return s
  }

  /**
   * Every pattern ending in `state`, longest first (for a caller that must skip some of them).
   *
   * @since 0.2.0
   */
  *outputs(premultiplied: number): Generator<number> {
    const state = premultiplied / this.width
    if (this.output[state] === -1) return
    let previous = this.output[state]!
    yield previous
    for (let s = this.nextOutput[state]!; s > 0; s = this.nextOutput[s]!) {
      if (this.output[s] !== previous) yield (previous = this.output[s]!)
    }
  }

  /**
   * The longest pattern that starts at `bytes[at]` and ends by `end`, or -1; and whether the bytes
   * up to `end` are still a prefix of some longer pattern (more bytes could make a longer match).
   *
   * @since 0.2.0
   */
  longestAt(bytes: Uint8Array, at: number, end: number): { readonly pattern: number; readonly open: boolean } {
    const { classes, delta, output, width, depths } = this
    let s = 0
    let best = -1
    for (let i = at; i < end; i++) {
      const step = delta[s * width + classes[bytes[i]!]!]!
      const next = (step >= 0 ? step : ~step) / width
      // leaving the trie path (the match would no longer start at `at`)
      if (depths[next] !== i - at + 1) {
        this.work += i - at + 1
        return { pattern: best, open: false }
      }
      s = next
      const found = output[s]!
      if (found !== -1 && this.lengths[found] === depths[s]) best = found
    }
    this.work += end > at ? end - at : 0
    return { pattern: best, open: this.inner[s] === 1 }
  }
}
