/**
 * What scrubbing looks for, and the scan that finds it: each value of a snapshot (as UTF-8 and as
 * Latin-1 bytes) and each re-encoded Basic credential, under any stack of up to `MAX_DEPTH` escape
 * syntaxes of `escapes.ts`, each with what replaces it. Used by the response handlers
 * (`ScrubHandler.ts`), the WebSocket frames (`WebSocketScrub.ts`) and the check of outgoing URLs
 * (`plan.ts`).
 *
 * Decode-and-match: one automaton per snapshot (built once, shared by every request and host) runs
 * over the raw bytes, and over each decoded stream of each stack near its escapes only; a match in
 * a decoded stream is mapped back to the span of the original bytes it came from. The work is
 * linear in the bytes: one automaton pass, plus copies and short windows around escapes. A chunk
 * dense with escapes that matter is read instead by the readings automaton (`readings.ts`), which
 * follows every stack in one pass over the raw bytes.
 */
import { Automaton, type Secrets, Substitution } from "@secretgate/core"
import { Redacted } from "effect"
import { Buffer } from "node:buffer"
import { EgressRefused } from "../EgressError.js"
import { type CleanCheck, LAYER_TAILS, makeCleanCheck } from "./clean.js"
import { GAVE_UP, readable, Readings, STACKS } from "./readings.js"
import { CANONICAL, CUT, decode, type Decoded, endOf, escapeAt, hasIntroducer, INTRODUCER, LITERAL, LONGEST_ESCAPE, MAX_DEPTH, MAX_EXPANSION, MAX_REFERENCE_DIGITS, nextIntroducer, PARSED, startOf, type Syntax, SYNTAXES } from "./escapes.js"

type ResolvedSecret = Secrets.ResolvedSecret

/** How input bytes are compared: as they are; `+` as space (under percent-encoding); also ignoring case (header names). */
const enum Kind {
  Exact = 0,
  Plus = 1,
  Loose = 2
}

const PLUS_IS_SPACE = Automaton.fold([[0x2b, 0x20]])
const FOLDS = [Automaton.IDENTITY, PLUS_IS_SPACE, Automaton.fold([[0x2b, 0x20]], Automaton.LOWER_CASE)]

/**
 * Which byte pairs occur next to each other in some pattern (after folding), indexed by
 * `first << 8 | second`. A match of two or more bytes that covers a byte holds that byte and one of
 * its neighbours: an escape whose decoded bytes pair with no neighbour into such a pair is in no
 * match, and its stream need not be scanned there.
 */
const pairsOf = (patterns: ReadonlyArray<Buffer>, folding: Automaton.Fold): Uint8Array => {
  const pairs = new Uint8Array(65536)
  for (const pattern of patterns) {
    for (let i = 1; i < pattern.length; i++) pairs[(folding[pattern[i - 1]!]! << 8) | folding[pattern[i]!]!] = 1
  }
  return pairs
}

/** One automaton's patterns and what replaces each. */
class PatternSet {
  readonly plus: boolean
  /** The length of the shortest pattern. */
  readonly shortest: number
  private readonly automata: Array<Automaton.Automaton | undefined> = [undefined, undefined, undefined]
  private readonly firstBytes: Array<Uint8Array | undefined> = [undefined, undefined, undefined]
  private readonly pairTables: Array<Uint8Array | undefined> = [undefined, undefined, undefined]
  private readonly encoded = new Map<number, Buffer>()
  /** The skip search over raw bytes (`undefined`: patterns too short for it to pay). */
  readonly search: SkipSearch | undefined

  constructor(
    readonly patterns: ReadonlyArray<Buffer>,
    /** Per pattern: the text that replaces it, before it is written in the syntaxes it was found under. */
    private readonly replacements: ReadonlyArray<string>,
    /** Per pattern: the secret whose value it is (`undefined` for Basic credentials). */
    readonly secrets: ReadonlyArray<ResolvedSecret | undefined>
  ) {
    this.plus = patterns.some((pattern) => pattern.includes(0x20) || pattern.includes(0x2b))
    this.shortest = patterns.reduce((min, pattern) => Math.min(min, pattern.length), Infinity)
    this.automata[Kind.Exact] = new Automaton.Automaton(patterns)
    this.search = this.shortest >= SkipSearch.SHORTEST ? new SkipSearch(patterns) : undefined
  }

  /** The byte pairs of the patterns under the kind's folding, or `undefined` when a pattern is one byte long. */
  pairs(kind: Kind): Uint8Array | undefined {
    if (this.shortest < 2) return undefined
    const k = kind === Kind.Plus && !this.plus ? Kind.Exact : kind
    return (this.pairTables[k] ??= pairsOf(this.patterns, FOLDS[k]!))
  }

  /** The folding of the kind. */
  folding(kind: Kind): Automaton.Fold {
    return FOLDS[kind === Kind.Plus && !this.plus ? Kind.Exact : kind]!
  }

  automaton(kind: Kind): Automaton.Automaton {
    // `+` equals space only matters if some pattern holds one
    const k = kind === Kind.Plus && !this.plus ? Kind.Exact : kind
    return (this.automata[k] ??= new Automaton.Automaton(this.patterns, FOLDS[k]))
  }

  /** Per byte, 1 where a pattern starts with it, as the kind's automaton folds bytes. */
  first(kind: Kind): Uint8Array {
    const k = kind === Kind.Plus && !this.plus ? Kind.Exact : kind
    let table = this.firstBytes[k]
    if (table === undefined) {
      const automaton = this.automaton(k)
      const one = Buffer.alloc(1)
      table = this.firstBytes[k] = new Uint8Array(256)
      for (let byte = 0; byte < 256; byte++) {
        one[0] = byte
        table[byte] = automaton.depth(automaton.scan(one, 0, 1, Automaton.Automaton.ROOT, IGNORE)) === 1 ? 1 : 0
      }
    }
    return table
  }

  private readonly byStack: Array<Array<Buffer | undefined>> = []

  /** The bytes that replace pattern `i` found under the stack `STACKS[stack]`. */
  replacementUnder(i: number, stack: number): Buffer {
    const known = (this.byStack[stack] ??= [])
    return (known[i] ??= this.replacement(i, STACKS[stack]!))
  }

  /** The bytes that replace pattern `i` found under `stack` (outermost first). */
  replacement(i: number, stack: ReadonlyArray<Syntax>): Buffer {
    // one number per (pattern, stack): a stack of up to two syntaxes, each 1..3, in base 4
    let key = i * 16
    for (const syntax of stack) key = key * 4 + SYNTAXES.indexOf(syntax) + 1
    key = key * 16 + stack.length
    let bytes = this.encoded.get(key)
    if (bytes === undefined) {
      const text = stack.reduceRight((inner, syntax) => CANONICAL[syntax](inner), this.replacements[i]!)
      bytes = Buffer.from(text, "utf8")
      if (this.encoded.size < 4096) this.encoded.set(key, bytes)
    }
    return bytes
  }

  /** The longest pattern length (0 when none). */
  get longest(): number {
    return this.automata[Kind.Exact]!.longest
  }

  /** Bytes the automata and the skip search examined so far. */
  work(): number {
    return this.automata.reduce((sum, automaton) => sum + (automaton?.work ?? 0), 0) + (this.search?.work ?? 0)
  }
}

/**
 * How seldom a byte stands in a response of any kind, as an anchor of the skip search (0: too often
 * to be one): control bytes and bytes UTF-8 never writes, then `^` `` ` `` `|` `~`, then `$` `@` `*`
 * `!`, then `(` `)` `+` and the first bytes of 4-byte UTF-8 characters (emoji). Letters, digits,
 * white space, the rest of the punctuation and most other UTF-8 bytes are in any text.
 */
const RARENESS = Uint8Array.from({ length: 256 }, (_, byte) => {
  if ((byte < 0x20 && byte !== 0x09 && byte !== 0x0a && byte !== 0x0d) || byte === 0x7f || byte >= 0xf5) return 4
  const char = String.fromCharCode(byte)
  if ("^`|~".includes(char)) return 3
  if ("$@*!".includes(char)) return 2
  return "()+".includes(char) || (byte >= 0xf0 && byte <= 0xf4) ? 1 : 0
})

/** Whether `byte` is not in `bytes[0, end)`. */
const absent = (bytes: Buffer, byte: number, end: number): boolean => {
  const at = bytes.indexOf(byte)
  return at === -1 || at >= end
}

/** The most anchors the skip search looks for (each is a pass of the byte search over a chunk). */
const MAX_ANCHORS = 2

/**
 * Up to `MAX_ANCHORS` rare bytes (`RARENESS`) such that every pattern holds one of them, or
 * `undefined`: each picked to be in the most patterns not yet covered, the rarest among those.
 */
const anchorsOf = (patterns: ReadonlyArray<Buffer>): Array<number> | undefined => {
  let left = patterns
  const anchors: Array<number> = []
  while (left.length > 0) {
    if (anchors.length === MAX_ANCHORS) return undefined
    const holding = new Uint32Array(256)
    for (const pattern of left) for (const byte of new Set(pattern)) holding[byte]!++
    let best = -1
    for (let byte = 0; byte < 256; byte++) {
      if (RARENESS[byte] === 0 || holding[byte] === 0) continue
      if (best === -1 || holding[byte]! > holding[best]! || (holding[byte] === holding[best] && RARENESS[byte]! > RARENESS[best]!)) best = byte
    }
    if (best === -1) return undefined
    anchors.push(best)
    left = left.filter((pattern) => !pattern.includes(best))
  }
  return anchors
}

/**
 * Every occurrence of a few or many patterns in raw bytes, mostly without looking at each byte:
 * the shift-table search of Wu and Manber. Each pattern's first `m` bytes (`m`: the shortest
 * pattern's length) are all that decide where to look; a window of `m` bytes whose last `BLOCK`
 * bytes end no such prefix can be moved on by as many bytes as the table says (up to `m - BLOCK + 1`),
 * and a window they do end is checked against the patterns whose prefix ends that way.
 *
 * Each window waits for the one before it (its place is that window's shift), so a single walk
 * spends most of its time waiting for memory: the bytes are walked as four lanes at once (the
 * windows ending in each quarter), whose loads the processor overlaps. That halves the time of a
 * clean response's search.
 *
 * Before any of that, where every pattern holds one of at most two bytes that responses seldom
 * hold (`anchorsOf`), bytes holding neither hold no pattern: the platform's byte search (a few bytes
 * per processor cycle) finds that out, and the walk is skipped.
 *
 * Its work is bounded by one check per window plus the bytes compared; where comparing would cost
 * more than `BUDGET` times the input (inputs made of a pattern's own repetitions), the caller falls
 * back to the automaton, whose work is one step per byte whatever the input.
 */
class SkipSearch {
  /** Patterns shorter than this are searched by the automaton. */
  static readonly SHORTEST = 4
  private static readonly BUDGET = 2
  private readonly m: number
  /** How far the window's hash shifts its last bytes but one: 3-byte blocks for prefixes of 8 bytes or more, else 2 (the first shifted out). */
  private readonly high: number
  private readonly low: number
  /** block hash -> how far the window may move; 0: some prefix ends with this block. */
  private readonly shift: Uint8Array
  /** block hash -> the patterns whose prefix ends with it. */
  private readonly ending: Array<Array<number> | undefined>
  /** Per lane: the occurrences found, as (pattern, start) pairs (reused from one search to the next). */
  private readonly found: Array<Array<number>> = [[], [], [], []]
  /** Bytes one of which every pattern holds (`undefined`: no such few rare ones). */
  private readonly anchors: ReadonlyArray<number> | undefined
  /** Bytes compared in this search, and how many it may compare. */
  private compared = 0
  private budget = 0
  /** Windows and bytes examined so far. */
  work = 0

  constructor(private readonly patterns: ReadonlyArray<Buffer>) {
    const m = patterns.reduce((min, pattern) => Math.min(min, pattern.length), Infinity)
    this.m = Math.min(m, 256)
    this.anchors = anchorsOf(patterns)
    const block = this.m >= 8 ? 3 : 2
    ;[this.high, this.low] = block === 3 ? [10, 5] : [16, 8]
    const most = this.m - block + 1
    this.shift = new Uint8Array(65536).fill(most)
    this.ending = []
    patterns.forEach((pattern, index) => {
      for (let end = block - 1; end < this.m; end++) {
        const h = this.hash(pattern, end)
        const shift = this.m - 1 - end
        if (shift < this.shift[h]!) this.shift[h] = shift
        if (shift === 0) (this.ending[h] ??= []).push(index)
      }
    })
  }

  /** The hash of the block ending at `end` (at least 2: a 2-byte block's first byte is shifted out). */
  private hash(bytes: Uint8Array, end: number): number {
    return ((end >= 2 ? bytes[end - 2]! << this.high : 0) ^ (bytes[end - 1]! << this.low) ^ bytes[end]!) & 0xffff
  }

  /**
   * Every occurrence that ends within `bytes[0, end)`, in order, as (pattern, start) pairs (an array
   * the next search reuses); `undefined` when the input is too repetitive for the search to stay
   * cheap.
   */
  all(bytes: Buffer, end: number): ReadonlyArray<number> | undefined {
    const { anchors, found } = this
    const first = found[0]!
    for (let k = 0; k < found.length; k++) if (found[k]!.length !== 0) found[k]!.length = 0
    if (anchors !== undefined && absent(bytes, anchors[0]!, end) && (anchors.length === 1 || absent(bytes, anchors[1]!, end))) return first
    const { m, shift, high, low } = this
    this.compared = 0
    this.budget = SkipSearch.BUDGET * end + 64
    // the windows ending at [m - 1, end), a quarter of them per lane
    const start = m - 1
    const span = Math.max(0, end - start)
    const q1 = start + Math.floor(span / 4)
    const q2 = start + Math.floor(span / 2)
    const q3 = start + Math.floor((3 * span) / 4)
    let a = start
    let b = q1
    let c = q2
    let d = q3
    let windows = 0
    while (a < q1 && b < q2 && c < q3 && d < end) {
      const ha = ((bytes[a - 2]! << high) ^ (bytes[a - 1]! << low) ^ bytes[a]!) & 0xffff
      const hb = ((bytes[b - 2]! << high) ^ (bytes[b - 1]! << low) ^ bytes[b]!) & 0xffff
      const hc = ((bytes[c - 2]! << high) ^ (bytes[c - 1]! << low) ^ bytes[c]!) & 0xffff
      const hd = ((bytes[d - 2]! << high) ^ (bytes[d - 1]! << low) ^ bytes[d]!) & 0xffff
      const sa = shift[ha]!
      const sb = shift[hb]!
      const sc = shift[hc]!
      const sd = shift[hd]!
      windows += 4
      a = sa !== 0 ? a + sa : this.check(bytes, a, end, ha, 0)
      b = sb !== 0 ? b + sb : this.check(bytes, b, end, hb, 1)
      c = sc !== 0 ? c + sc : this.check(bytes, c, end, hc, 2)
      d = sd !== 0 ? d + sd : this.check(bytes, d, end, hd, 3)
    }
    windows += this.walk(bytes, a, q1, end, 0) + this.walk(bytes, b, q2, end, 1) + this.walk(bytes, c, q3, end, 2) + this.walk(bytes, d, end, end, 3)
    this.work += windows + this.compared
    if (this.compared > this.budget) return undefined
    for (let k = 1; k < found.length; k++) {
      const lane = found[k]!
      for (let i = 0; i < lane.length; i++) first.push(lane[i]!)
    }
    return first
  }

  /** One lane's windows ending at `[pos, to)`, walked alone; returns how many. */
  private walk(bytes: Uint8Array, pos: number, to: number, end: number, lane: number): number {
    const { shift, high, low } = this
    let windows = 0
    while (pos < to) {
      windows++
      const h = ((bytes[pos - 2]! << high) ^ (bytes[pos - 1]! << low) ^ bytes[pos]!) & 0xffff
      const s = shift[h]!
      pos = s !== 0 ? pos + s : this.check(bytes, pos, end, h, lane)
    }
    return windows
  }

  /**
   * The patterns whose prefix the window ending at `pos` ends, compared with the bytes from its
   * start; returns where its lane goes on (past `end` once the search is over its budget).
   */
  private check(bytes: Uint8Array, pos: number, end: number, h: number, lane: number): number {
    const { m, patterns } = this
    const start = pos - m + 1
    for (const index of this.ending[h]!) {
      const pattern = patterns[index]!
      const length = pattern.length
      if (start + length > end) continue
      let i = 0
      while (i < length && bytes[start + i] === pattern[i]) i++
      this.compared += i + 1
      if (i === length) this.found[lane]!.push(index, start)
    }
    return this.compared > this.budget ? end : pos + 1
  }
}

const EMPTY = Buffer.alloc(0)

/** How to scrub one response. */
export interface Scrubber {
  readonly sets: ReadonlyArray<PatternSet>
  readonly matcher: Substitution.Matcher
  /** Nothing to look for. */
  readonly empty: boolean
  /**
   * The length of the shortest pattern: fewer bytes cannot hold a match in any syntax (decoding
   * never makes bytes longer), so a short header is passed without a scan.
   */
  readonly shortest: number
  /** The length of the longest pattern (1 when none). */
  readonly longest: number
  /** Whether a pattern holds a space or `+` (then `+` is an escape of percent-encoding, a space's). */
  readonly plus: boolean
}

export const isLatin1 = (text: string): boolean => {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0xff) return false
  return true
}

/** A value's byte forms: UTF-8, and Latin-1 when that differs (header values travel as Latin-1). */
const byteForms = (text: string): Array<Buffer> => {
  const utf8 = Buffer.from(text, "utf8")
  if (!isLatin1(text)) return [utf8]
  const latin1 = Buffer.from(text, "latin1")
  return latin1.equals(utf8) ? [utf8] : [utf8, latin1]
}

const patternSet = (entries: ReadonlyArray<readonly [from: string, to: string, secret: ResolvedSecret | undefined]>): PatternSet => {
  const seen = new Set<string>()
  const patterns: Array<Buffer> = []
  const replacements: Array<string> = []
  const secrets: Array<ResolvedSecret | undefined> = []
  for (const [from, to, secret] of entries) {
    for (const bytes of byteForms(from)) {
      const key = bytes.toString("latin1")
      if (bytes.length === 0 || seen.has(key)) continue
      seen.add(key)
      patterns.push(bytes)
      replacements.push(to)
      secrets.push(secret)
    }
  }
  return new PatternSet(patterns, replacements, secrets)
}

const fromSets = (sets: ReadonlyArray<PatternSet>): Scrubber => {
  const live = sets.filter((set) => set.patterns.length > 0)
  const longest = live.reduce((max, set) => Math.max(max, set.longest), 1)
  const scrubber: Scrubber = {
    sets: live,
    empty: live.length === 0,
    longest,
    plus: live.some((set) => set.plus),
    shortest: live.reduce((min, set) => Math.min(min, ...set.patterns.map((pattern) => pattern.length)), Infinity),
    matcher: {
      // the longest a match can be: every byte of the longest pattern under two of the widest escapes
      maxLength: longest * MAX_EXPANSION.html * MAX_EXPANSION.html,
      find(bytes, from, end, atEnd) {
        const { matches } = scan(scrubber, end === bytes.length ? bytes : bytes.subarray(0, end), atEnd, Kind.Exact)
        return matches.find((match) => match.index >= from)
      },
      scan: (bytes, atEnd, resume) => scan(scrubber, bytes, atEnd, Kind.Exact, resume instanceof Stream ? resume : undefined)
    }
  }
  return scrubber
}

/**
 * The scrubber for these secrets: each value → its placeholder.
 */
export const makeScrubber = (secrets: Iterable<ResolvedSecret>): Scrubber => {
  const entries: Array<readonly [string, string, ResolvedSecret]> = []
  for (const secret of secrets) entries.push([Redacted.value(secret.value), secret.placeholder, secret])
  return fromSets([patternSet(entries)])
}

const basicScrubbers = new WeakMap<Scrubber, Map<string, Scrubber>>()

/**
 * The scrubber plus re-encoded Basic credentials → the caller's original ones (written in the
 * syntaxes the echo was found under). Kept per scrubber and credentials (bounded): what a scrubber
 * builds as it is used (its byte pairs, its readings automaton's key) is built once, not per request.
 */
export const withBasicEchoes = (scrubber: Scrubber, basicEchoes: ReadonlyArray<readonly [sent: string, original: string]>): Scrubber => {
  if (basicEchoes.length === 0) return scrubber
  let known = basicScrubbers.get(scrubber)
  if (known === undefined) basicScrubbers.set(scrubber, (known = new Map()))
  const key = basicEchoes.map(([sent, original]) => `${sent}\n${original}`).join("\n\n")
  let combined = known.get(key)
  if (combined === undefined) {
    const token = (header: string) => header.trim().split(/\s+/)[1] ?? ""
    const set = patternSet(basicEchoes.flatMap(([sent, original]) => [[sent, original, undefined], [token(sent), token(original), undefined]] as const))
    combined = fromSets([...scrubber.sets, set])
    if (known.size >= 256) known.clear()
    known.set(key, combined)
  }
  return combined
}

/**
 * Nothing to scrub: for a WebSocket connection to a host no mounted secret is allowed for, whose
 * outgoing messages are still checked for placeholders (audit, `block`).
 */
export const NOTHING_TO_SCRUB: Scrubber = fromSets([])

/** `cleanCut`'s answer where the stacks' escapes are not known without decoding them. */
const UNKNOWN = -2

/** Matches found, as spans of the scanned bytes, before overlapping ones are joined. */
class Candidates {
  readonly starts: Array<number> = []
  readonly ends: Array<number> = []
  readonly replacements: Array<Buffer> = []
  readonly secrets: Array<ResolvedSecret | undefined> = []
  /** Where a match could still begin once more bytes arrive (the earliest such place). */
  hold: number
  /** Whether the readings automaton found them (rather than the stacks). */
  read = false
  /** Whether every layer was clean (`layersOf`). */
  clean = false
  /** Where every layer is clean, `cleanCut`'s answer (else `UNKNOWN`). */
  cut = UNKNOWN
  constructor(end: number) {
    this.hold = end
  }
  add(start: number, end: number, replacement: Buffer, secret: ResolvedSecret | undefined) {
    this.starts.push(start)
    this.ends.push(end)
    this.replacements.push(replacement)
    this.secrets.push(secret)
  }
}

/** A scan's matches not wanted (only the state it ends in). */
const IGNORE = (): void => {}

/** Maps a span of a decoded stream back to the scanned bytes. */
type Span = (start: number, end: number) => void

/** Where the last `Span` call put its answer (one pair, reused: no array per match). */
const SPAN = { start: 0, end: 0 }

/**
 * Runs each set's automaton over `decoded` near its escapes (only there can a match differ from
 * one in the stream it was decoded from), and at its end (for what must be held back).
 */
const matchNearEscapes = (
  sets: ReadonlyArray<PatternSet>,
  decoded: Decoded,
  stack: ReadonlyArray<Syntax>,
  kind: Kind,
  atEnd: boolean,
  span: Span,
  found: Candidates,
  exhaustive: boolean
) => {
  const bytes = decoded.bytes
  const length = bytes.length
  for (const set of sets) {
    const automaton = set.automaton(kind)
    const reach = automaton.longest - 1
    const scanWindow = (from: number, to: number) => {
      automaton.scan(bytes, from, to, Automaton.Automaton.ROOT, (pattern, end) => {
        span(end - automaton.lengthOf(pattern), end)
        found.add(SPAN.start, SPAN.end, set.replacement(pattern, stack), set.secrets[pattern])
      })
    }
    if (!atEnd) {
      // a proper prefix of a pattern at the end: more bytes could complete it
      const state = automaton.scan(bytes, Math.max(0, length - reach), length, Automaton.Automaton.ROOT, IGNORE)
      const depth = automaton.depth(state)
      if (depth > 0) {
        span(length - depth, length)
        found.hold = Math.min(found.hold, SPAN.start)
      }
    }
    if (exhaustive) {
      if (length > 0) scanWindow(0, length)
      continue
    }
    let windowStart = -1
    let windowEnd = -1
    const { outAt, outLength } = decoded
    const pairs = set.pairs(kind)
    const folding = set.folding(kind)
    for (let k = 0; k < outAt.length; k++) {
      // an escape whose bytes pair with no neighbour as in a pattern is in no match
      if (pairs === undefined ? !relevant(automaton, bytes, outAt[k]!, outLength[k]!) : !paired(pairs, folding, bytes, length, outAt[k]!, outLength[k]!)) continue
      const from = Math.max(0, outAt[k]! - reach)
      const to = Math.min(length, outAt[k]! + outLength[k]! + reach)
      if (from <= windowEnd) windowEnd = Math.max(windowEnd, to)
      else {
        if (windowEnd > windowStart) scanWindow(windowStart, windowEnd)
        windowStart = from
        windowEnd = to
      }
    }
    // the end of the stream: a partial match there must be held back
    if (!atEnd) {
      const from = Math.max(0, length - reach)
      if (from <= windowEnd) windowEnd = Math.max(windowEnd, length)
      else {
        if (windowEnd > windowStart) scanWindow(windowStart, windowEnd)
        windowStart = from
        windowEnd = length
      }
    }
    if (windowEnd > windowStart) scanWindow(windowStart, windowEnd)
  }
}

/**
 * Whether a byte of `bytes[at, at + count)` forms, with the byte before or after it, a pair that
 * occurs in a pattern (`pairs`, after `folding`).
 */
const paired = (pairs: Uint8Array, folding: Automaton.Fold, bytes: Buffer, length: number, at: number, count: number): boolean => {
  const from = Math.max(0, at - 1)
  const to = Math.min(length, at + count + 1)
  let previous = folding[bytes[from]!]!
  for (let i = from + 1; i < to; i++) {
    const current = folding[bytes[i]!]!
    if (pairs[(previous << 8) | current] === 1) return true
    previous = current
  }
  return false
}

/** Whether any of `bytes[at, at + length)` occurs in a pattern of the automaton. */
const relevant = (automaton: Automaton.Automaton, bytes: Buffer, at: number, length: number): boolean => {
  for (let i = at; i < at + length; i++) if (automaton.occurs(bytes[i]!)) return true
  return false
}

/**
 * Up to this many patterns, the raw bytes are searched with the platform's `indexOf` per pattern
 * (a few native scans beat one pass of the automaton in JavaScript); beyond, the automaton. Either
 * way the work is bounded per byte (by this number times the pattern length, or by one step).
 */
const NATIVE_SEARCH_UP_TO = 8


/**
 * How far (exclusive) an escape of `syntax` at introducer `i` of `bytes` may reach, at most: a
 * JSON escape's second byte (`\\u` is up to 12 bytes long with a surrogate pair, any other 2), a
 * percent escape's 3 bytes, an HTML reference's `&`, `#`/`#x`, digits or name and `;`.
 */
const reachOf = (syntax: Syntax, bytes: Buffer, length: number, i: number): number => {
  if (syntax === "json") return i + (bytes[i + 1] === 0x75 ? 12 : 2)
  if (syntax === "percent") return bytes[i] === 0x2b ? i + 1 : i + 3
  let j = i + 1
  if (j < length && bytes[j] === 0x23) {
    j++
    if (j < length && (bytes[j]! | 0x20) === 0x78) j++
  }
  const from = j
  while (j < length && j - from < MAX_REFERENCE_DIGITS + 1 && isAlphanumeric(bytes[j]!)) j++
  return j < length && bytes[j] === 0x3b ? j + 1 : j
}

/** Whether an escape of any syntax that an introducer in `bytes[from, to)` may start reaches `at` or past it (`reachOf`). */
const reaches = (bytes: Buffer, from: number, to: number, at: number, introducersOf: Uint8Array): boolean => {
  for (let q = Math.max(0, from); q < to; q++) {
    const bits = introducersOf[bytes[q]!]!
    if (bits === 0) continue
    for (let bit = 0; bit < SYNTAXES.length; bit++) if ((bits & (1 << bit)) !== 0 && reachOf(SYNTAXES[bit]!, bytes, bytes.length, q) >= at) return true
  }
  return false
}

const isAlphanumeric = (byte: number): boolean => (byte >= 0x30 && byte <= 0x39) || ((byte | 0x20) >= 0x61 && (byte | 0x20) <= 0x7a)

/** A bit per syntax of `SYNTAXES`, in a mask of the inner layers to decode. */
const ALL_LAYERS = (1 << SYNTAXES.length) - 1

/** The bits of `layersOf`'s answer that say every layer is clean. */
const ALL_CLEAN = ALL_LAYERS << 4

/** How a stack's decoded stream is compared: `+` as space under percent-encoding, case aside in header names (`loose`). */
const kindOf = (stack: ReadonlyArray<Syntax>, loose: boolean): Kind => (loose ? Kind.Loose : stack.includes("percent") ? Kind.Plus : Kind.Exact)

/** Per byte: the bits of the syntaxes it introduces an escape of (`+` apart: it counts for percent only where a value holds a space or `+`). */
const INTRODUCES = (() => {
  const table = new Uint8Array(256)
  SYNTAXES.forEach((syntax, bit) => (table[INTRODUCER[syntax]] |= 1 << bit))
  return table
})()
const PERCENT = SYNTAXES.indexOf("percent")
const HTML = SYNTAXES.indexOf("html")
const PERCENT_BIT = 1 << PERCENT

/** Per byte, the syntaxes (bits of `SYNTAXES`) it introduces an escape of, `+` counting for percent. */
const INTRODUCES_PLUS = INTRODUCES.map((bits, byte) => (byte === 0x2b ? bits | PERCENT_BIT : bits))

/**
 * Which inner syntaxes (a mask of bits of `SYNTAXES`) decoding under the escapes of `first` can find
 * a match in that the stacks without `first`'s syntax do not. Such a match holds bytes of one of
 * `first`'s escapes (elsewhere the decoded stream is the input, and an inner syntax reads it as it
 * reads the input: from each introducer on, whatever came before; a backslash written by an escape,
 * which could change how JSON pairs the backslashes after it, is an introducer itself). Those bytes
 * stand in the inner layer as they are, with the bytes beside them, unless an inner escape may hold
 * them or their neighbours: an introducer among them, up to `LONGEST_ESCAPE` bytes before them, or
 * right after them. So an inner layer is needed only where such an introducer is, where the
 * escape's bytes pair with a neighbour as in a value (then every inner layer is), or where a value
 * is one byte long. (What is held back at the end of a stream cut off is the caller's: see
 * `tailFrom`.)
 *
 * It reads the decoded stream only within `LONGEST_ESCAPE + 1` bytes of an escape's bytes.
 */
const innerLayersNeeded = (scrubber: Scrubber, first: Decoded, kind: Kind, plus: boolean): number => {
  const bytes = first.bytes
  const length = bytes.length
  const { outAt, outLength } = first
  const count = outAt.length
  if (count === 0) return 0
  const sets = scrubber.sets
  const pairs: Array<Uint8Array> = []
  const foldings: Array<Automaton.Fold> = []
  for (const set of sets) {
    const table = set.pairs(kind)
    if (table === undefined) return ALL_LAYERS
    pairs.push(table)
    foldings.push(set.folding(kind))
  }
  const introducersOf = plus ? INTRODUCES_PLUS : INTRODUCES
  let needed = 0
  for (let k = 0; k < count; k++) {
    const at = outAt[k]!
    const after = at + outLength[k]!
    for (let s = 0; s < pairs.length; s++) if (paired(pairs[s]!, foldings[s]!, bytes, length, at, after - at)) return ALL_LAYERS
    const to = Math.min(length - 1, after)
    for (let i = Math.max(0, at - LONGEST_ESCAPE); i <= to; i++) {
      const byte = bytes[i]!
      const bits = introducersOf[byte]! & ~needed
      if (bits === 0) continue
      for (let bit = 0; bit < SYNTAXES.length; bit++) {
        if ((bits & (1 << bit)) === 0) continue
        const inner = SYNTAXES[bit]!
        // right after the escape's bytes: an inner escape whose bytes are unknown here; before
        // them: one that may reach the byte before them, or into them; in them: a backslash may
        // change how JSON pairs the backslashes after it, and an HTML `&` or a `+` that can start
        // nothing stands as it is
        if (i === after || (i < at ? reachOf(inner, bytes, length, i) >= at : inner === "json" || reachOf(inner, bytes, length, i) > i + 1)) {
          needed |= 1 << bit
          if (needed === ALL_LAYERS) return needed
        }
      }
    }
  }
  return needed
}

/**
 * Where to start decoding `inner` over `first` (a stream cut off by the end of its input, whose
 * last escapes are near that end) so that what is held back at the end is what decoding it whole
 * would hold: early enough that the inner stream's last `longest` bytes (and an inner escape cut
 * off at the end) come from what is decoded, and at a place no inner escape spans or changes how
 * it is read: no introducer in the `LONGEST_ESCAPE` bytes before it. Matches there need no more:
 * one that holds bytes of an escape of `first` is found wherever `innerLayersNeeded` says so, and
 * elsewhere the stream is the input, which the stack of `inner` alone reads.
 */
const tailFrom = (inner: Syntax, bytes: Buffer, longest: number, plus: boolean): number => {
  let at = Math.max(0, bytes.length - longest * MAX_EXPANSION[inner] - LONGEST_ESCAPE)
  const introducer = INTRODUCER[inner]
  const pluses = inner === "percent" && plus
  for (;;) {
    if (at <= 0) return 0
    // the last introducer before `at`, if it is within reach of it
    const from = Math.max(0, at - LONGEST_ESCAPE)
    let last = bytes.lastIndexOf(introducer, at - 1)
    if (pluses) last = Math.max(last, bytes.lastIndexOf(0x2b, at - 1))
    if (last < from) return at
    at = last
  }
}

/** Whether `byte` introduces an escape of some syntax (`+` only where values hold a space or `+`). */
const isIntroducer = (byte: number, plus: boolean): boolean => (plus ? INTRODUCES_PLUS : INTRODUCES)[byte] !== 0

/** The byte pairs of every pattern of the scrubber with `+` as space, or `undefined` when a pattern is one byte long. */
export const unionPairs = (() => {
  const known = new WeakMap<Scrubber, Uint8Array | null>()
  return (scrubber: Scrubber): Uint8Array | undefined => {
    let table = known.get(scrubber)
    if (table === undefined) {
      table = scrubber.shortest < 2 ? null : pairsOf(scrubber.sets.flatMap((set) => set.patterns), PLUS_IS_SPACE)
      known.set(scrubber, table)
    }
    return table ?? undefined
  }
})()

/** Decoded bytes of one escape (4 at most). */
const ONE = Buffer.alloc(4)

/**
 * Whether no escape of the first layer of `syntax` over `bytes` can be part of a match that the
 * stacks without that layer miss, nor need an inner layer (`innerLayersNeeded`), found without
 * decoding the layer: each escape is read where it stands (`escapeAt`, as every decoding reads
 * it), its decoded bytes looked at with the input's bytes beside them. It answers false, and the
 * layer is decoded, where an escape:
 * - pairs with the byte before it, within itself or with the byte after it as in a value (`pairs`:
 *   of every pattern, `+` as space: more than any one stack's);
 * - writes an introducer of any syntax, or is followed by one (an introducer of `syntax` itself
 *   only if it does not start an escape that writes none);
 * - is reached by an escape of any syntax that an introducer up to `LONGEST_ESCAPE` bytes before
 *   it may start (in the stretch of input since the previous escape: what comes before that
 *   escape was looked at with it, and its decoded bytes introduce nothing).
 * An escape cut off by the end of the input (more bytes could complete it) ends the reading: no
 * match holds it yet, and what is held back for it is found where `candidates` decodes the last
 * bytes of every layer that a stream cut off has (it lies within `LONGEST_ESCAPE` bytes of the end).
 * Between escapes the decoded stream is the input, byte for byte, so the bytes looked at are the
 * decoded ones, or (where an escape begins right after) more than those. Where the reading ended
 * goes to `tails` (`LAYER_TAILS`), for `holdCleanTail`.
 */
const cleanLayer = (syntax: Syntax, bytes: Buffer, atEnd: boolean, plus: boolean, pairs: Uint8Array, tails: Int32Array): boolean => {
  const end = bytes.length
  const folding = PLUS_IS_SPACE
  const introducersOf = plus ? INTRODUCES_PLUS : INTRODUCES
  const own = 1 << SYNTAXES.indexOf(syntax)
  // -2: not searched yet (see `nextIntroducer`)
  const cursor = { percent: -2, plus: -2 }
  const tail = 4 * SYNTAXES.indexOf(syntax)
  let previousStart = -1
  let previousEnd = -1
  let previousLast = 0
  let ownAfter = -1
  let pos = 0
  for (let i = nextIntroducer(syntax, bytes, 0, plus, cursor); i !== -1; i = nextIntroducer(syntax, bytes, pos, plus, cursor)) {
    const length = escapeAt(syntax, bytes, i, end, atEnd, ONE, 0)
    if (length === CUT) {
      tails[tail + 3] = i
      break
    }
    if (length === LITERAL) {
      // an introducer standing for itself right after an escape
      if (i === ownAfter) return false
      pos = i + 1
      continue
    }
    const count = PARSED.written
    let previous = i === previousEnd ? folding[previousLast]! : i > 0 ? folding[bytes[i - 1]!]! : -1
    const after = i + length
    for (let k = 0; k < count; k++) {
      const byte = ONE[k]!
      // (an introducer is one byte, the whole of what its escape writes)
      if (introducersOf[byte] !== 0 && !standsAlone(own, byte, bytes, after, introducersOf)) return false
      const current = folding[byte]!
      if (previous !== -1 && pairs[(previous << 8) | current] === 1) return false
      previous = current
    }
    if (after < end) {
      const next = bytes[after]!
      if (pairs[(previous << 8) | folding[next]!] === 1) return false
      const bits = introducersOf[next]!
      if (bits !== 0) {
        if (bits !== own) return false
        ownAfter = after
      }
    }
    // (read in the input: where it stops before the escape, so would the decoded stream's)
    if (reaches(bytes, Math.max(i - LONGEST_ESCAPE, previousEnd), i, i, introducersOf)) return false
    previousStart = i
    previousEnd = after
    previousLast = ONE[count - 1]!
    pos = after
  }
  tails[tail] = previousStart
  tails[tail + 1] = previousEnd
  tails[tail + 2] = previousLast
  return true
}

/** Where the layers' readings ended (`layersOf`), for `candidates` to read right after asking. */
const TAILS = new Int32Array(LAYER_TAILS)

/** The compiled clean check (`clean.ts`), made when first needed; `undefined` where it cannot run. */
let compiled: CleanCheck | undefined | null = null

/**
 * For each syntax `s` of `SYNTAXES`: bit `s` set when `bytes` hold an introducer of it, bit `s + 4`
 * when that layer holds none or is clean (`cleanLayer`; never without `pairs`), and then where its
 * reading ended in `tails` (`LAYER_TAILS`). Found by the compiled check where it can run
 * (`compiledToo`, for tests that compare the two), else here.
 */
export const layersOf = (bytes: Buffer, atEnd: boolean, plus: boolean, pairs: Uint8Array | undefined, compiledToo = true, tails = TAILS): number => {
  if (pairs !== undefined && compiledToo) {
    if (compiled === null) compiled = makeCleanCheck({ introduces: INTRODUCES, introducesPlus: INTRODUCES_PLUS, fold: PLUS_IS_SPACE, dense: DENSE })
    const answer = compiled?.layers(bytes, atEnd, plus, pairs, tails)
    if (answer !== undefined) return answer
  }
  let layers = 0
  for (let layer = 0; layer < SYNTAXES.length; layer++) {
    const syntax = SYNTAXES[layer]!
    tails[4 * layer] = tails[4 * layer + 1] = tails[4 * layer + 3] = -1
    tails[4 * layer + 2] = 0
    if (!hasIntroducer(syntax, bytes, 0, bytes.length, plus)) layers |= 16 << layer
    else layers |= pairs !== undefined && cleanLayer(syntax, bytes, atEnd, plus, pairs, tails) ? 17 << layer : 1 << layer
  }
  return layers
}

/**
 * Whether an introducer an escape wrote (`byte`, followed in the decoded stream by the input from
 * `after`) can start no escape of an inner layer that reaches past it: a `+` (it stands for a space
 * or itself), or an `&` that no `#`, `;`, letter or digit follows (when the input there starts an
 * escape of the layer's own syntax, `own` in `introducersOf`, what follows is unknown here).
 */
const standsAlone = (own: number, byte: number, bytes: Buffer, after: number, introducersOf: Uint8Array): boolean => {
  if (byte === 0x2b) return true
  if (byte !== 0x26) return false
  if (after >= bytes.length) return true
  const next = bytes[after]!
  return introducersOf[next] !== own && next !== 0x23 && next !== 0x3b && !isAlphanumeric(next)
}

/**
 * The last place at or before `at` where every stack reads the input in step with a reading from
 * its start: one that follows a byte no escape holds (`SEPARATES`) or `2 * LONGEST_ESCAPE` bytes,
 * with no introducer between, so that no escape of a first layer spans it nor ends within
 * `LONGEST_ESCAPE` bytes of it, and none of an inner layer can (after a separator every decoder is
 * between escapes, and bytes that introduce nothing keep it there); or the start, and places that
 * only the start and no introducer precede, when the bytes started in step (`startInStep`). -1
 * when there is none down to `floor` (above 0).
 */
const inStepBefore = (bytes: Buffer, at: number, plus: boolean, floor = 0, startInStep = true): number => {
  for (;;) {
    if (at <= 0) return floor <= 0 && startInStep ? 0 : -1
    if (at < floor) return -1
    const stop = Math.max(0, at - 2 * LONGEST_ESCAPE)
    let q = at - 1
    while (q >= stop && !isIntroducer(bytes[q]!, plus)) {
      if (SEPARATES[bytes[q]!] === 1) return at
      q--
    }
    // (fewer than `2 * LONGEST_ESCAPE` bytes back to the start prove nothing if it was out of step)
    if (q < stop) return startInStep || at >= 2 * LONGEST_ESCAPE ? at : -1
    at = q
  }
}

/**
 * Where the escapes of every stack lie in `bytes[from, end)`, read from `from` (a place in step):
 * the open spans they cover, merged where they overlap (a place strictly inside one is inside an
 * escape of some stack), as `[start, end, start, end, ...]` in order. An escape cut off by the end
 * covers up to the end.
 */
const escapeSpans = (bytes: Buffer, from: number, plus: boolean): Array<number> => {
  const spans: Array<number> = []
  const add = (start: number, end: number) => {
    if (end - start > 1) spans.push(start, end)
  }
  for (const outer of SYNTAXES) {
    if (!hasIntroducer(outer, bytes, from, bytes.length, plus)) continue
    const first = decode(outer, bytes, from, bytes.length, false, plus)
    for (let k = 0; k < first.inAt.length; k++) add(first.inAt[k]!, first.inAt[k]! + first.inLength[k]!)
    if (first.cut !== -1) add(first.cut, bytes.length)
    if (MAX_DEPTH < 2) continue
    for (const inner of SYNTAXES) {
      if (!hasIntroducer(inner, first.bytes, 0, first.bytes.length, plus)) continue
      const second = decode(inner, first.bytes, 0, first.bytes.length, false, plus, 1)
      for (let k = 0; k < second.inAt.length; k++) add(startOf(first, second.inAt[k]!), endOf(first, second.inAt[k]! + second.inLength[k]!))
      if (second.cut !== -1) add(startOf(first, second.cut), bytes.length)
    }
  }
  const order = Array.from({ length: spans.length / 2 }, (_, k) => k).sort((a, b) => spans[2 * a]! - spans[2 * b]!)
  const merged: Array<number> = []
  for (const k of order) {
    const start = spans[2 * k]!
    const end = spans[2 * k + 1]!
    const last = merged.length - 1
    if (last > 0 && start < merged[last]!) merged[last] = Math.max(merged[last]!, end)
    else merged.push(start, end)
  }
  return merged
}

/**
 * Where the layers `layersOf` found (`layers`, `tails`) are all clean: -1 when no layer's stream is
 * cut off, else where the one layer's escape cut off by the end begins (where its stream ends);
 * `UNKNOWN` otherwise (a layer not clean, or two cut off). Then every stack's escapes are the
 * input's own, of its syntax (the clean layers' escapes write no introducer that starts one, and
 * none of another syntax reaches them), but where an inner layer's stream ends early: over the cut
 * layer, at the cut (`goesOnFrom`), or with an `&` a clean layer's last escape wrote at the end,
 * which an inner HTML layer waits on (that escape reaches the end itself).
 */
export const cleanCut = (layers: number, tails: Int32Array): number => {
  if ((layers & ALL_CLEAN) !== ALL_CLEAN) return UNKNOWN
  let cut = -1
  for (let layer = 0; layer < SYNTAXES.length; layer++) {
    const at = tails[4 * layer + 3]!
    if (at === -1 || (layers & (1 << layer)) === 0) continue
    if (cut !== -1) return UNKNOWN
    cut = at
  }
  return cut
}

/**
 * Whether the stacks go on from `at` (what `stacksHold` finds by decoding them), where every
 * layer is clean and `cut` is `cleanCut`'s answer: no escape of any syntax that an introducer before
 * `at` may start reaches past it, and where a layer is cut off, no inner layer reading its stream,
 * which ends at `cut`, finds an escape there cut off that starts before `at`. (A clean layer's last
 * escape writes an `&` only where no escape of its own follows: not right before its cut.)
 */
export const goesOnFrom = (bytes: Buffer, at: number, cut: number, plus: boolean): boolean => {
  const introducersOf = plus ? INTRODUCES_PLUS : INTRODUCES
  if (reaches(bytes, at - LONGEST_ESCAPE, at, at + 1, introducersOf)) return false
  if (cut === -1) return true
  for (let q = Math.max(0, cut - LONGEST_ESCAPE); q < Math.min(at, cut); q++) {
    const bits = introducersOf[bytes[q]!]!
    if (bits === 0) continue
    for (let bit = 0; bit < SYNTAXES.length; bit++) if ((bits & (1 << bit)) !== 0 && escapeAt(SYNTAXES[bit]!, bytes, q, cut, false, ONE, 0) === CUT) return false
  }
  return true
}

/**
 * The stacks' hold, moved back to where the stacks can go on from (`matches` cut to those it leaves
 * committed), or -1 when that lies further back than `limit` (`matches` as they were). A
 * stack holds back from where its partial match begins in its decoded stream, which another stack
 * may read as inside an escape (the `c` of `%5c`, where JSON read from the start holds `c\\` back
 * for a value starting with `c`), and the stacks read the next chunk from its first byte as from a
 * stream's start: so the hold moves to the start of the escapes of any layer that hold it, and a
 * match that ends past it is held back too (found again with the next chunk). The escapes are read
 * once, from a place in step before `limit`; a hold that already is such a place costs a look back.
 */
export const stacksHold = (bytes: Buffer, matches: ReadonlyArray<Substitution.Match>, hold: number, limit: number, plus: boolean): number => {
  let keep = matches.length
  // (the last match committed ends at or before the hold)
  if (hold <= 0 || inStepBefore(bytes, hold, plus, hold) === hold) return hold
  // read from near the hold first; from before `limit` only if matches to hold back go further
  let from = inStepBefore(bytes, hold - 2 * LONGEST_ESCAPE, plus)
  let spans = escapeSpans(bytes, from, plus)
  let k = spans.length - 2
  let far = false
  const inStep = (at: number): number => {
    if (at < from && !far) {
      far = true
      from = inStepBefore(bytes, Math.max(0, limit) - 2 * LONGEST_ESCAPE, plus)
      spans = escapeSpans(bytes, from, plus)
      k = spans.length - 2
    }
    while (k >= 0 && spans[k]! >= at) k -= 2
    return k >= 0 && at < spans[k + 1]! ? spans[k]! : at
  }
  let at = inStep(hold)
  while (at >= limit && keep > 0 && matches[keep - 1]!.index + matches[keep - 1]!.length > at) at = inStep(Math.min(at, matches[--keep]!.index))
  if (at < limit) return -1
  // (`matches` is `scan`'s own array whenever it holds any)
  if (keep < matches.length) (matches as Array<Substitution.Match>).length = keep
  return at
}

/**
 * Holds back a proper prefix of a pattern of the set at the end of `bytes[0, length)` (one that
 * starts at `after` or later), as the kind's automaton reads it: more bytes could complete it. (A
 * pattern already whole there was found, and is not held.)
 */
const holdTail = (set: PatternSet, kind: Kind, bytes: Buffer, found: Candidates, after = 0, length = bytes.length) => {
  const automaton = set.automaton(kind)
  // a prefix starts with a pattern's first byte, and its first two bytes start a pattern: the
  // automaton reads from the first place that does, where its state at the end is the same (the
  // longest suffix that is a pattern's prefix starts there or later), and not at all without one
  const first = set.first(kind)
  let from = Math.max(after, length - automaton.longest + 1)
  for (; from < length; from++) {
    if (first[bytes[from]!] === 0) continue
    if (from + 1 === length || automaton.depth(automaton.scan(bytes, from, from + 2, Automaton.Automaton.ROOT, IGNORE)) === 2) break
  }
  if (from === length) return
  const state = automaton.scan(bytes, from, length, Automaton.Automaton.ROOT, IGNORE)
  found.hold = Math.min(found.hold, length - automaton.depth(state))
}

/**
 * The readings automata, shared by every scrubber of the same patterns (a resolver hands out a new
 * snapshot, and so new scrubbers, after every change; what the automaton has built stays), the
 * most recently used kept.
 */
const sharedReadings = new Map<string, Readings>()
const SHARED_READINGS = 4

/** The readings automaton of a scrubber's patterns, and which set and pattern each is (`null`: patterns it cannot read). */
const readingsOf = (() => {
  const known = new WeakMap<Scrubber, { readings: Readings; owners: Array<readonly [PatternSet, number]> } | null>()
  return (scrubber: Scrubber) => {
    let entry = known.get(scrubber)
    if (entry === undefined) {
      const owners = scrubber.sets.flatMap((set) => set.patterns.map((_, i) => [set, i] as const))
      const patterns = owners.map(([set, i]) => set.patterns[i]!)
      if (readable(patterns)) {
        const key = patterns.map((pattern) => pattern.toString("hex")).join(",")
        let readings = sharedReadings.get(key)
        if (readings === undefined) readings = new Readings(patterns)
        else sharedReadings.delete(key)
        sharedReadings.set(key, readings)
        if (sharedReadings.size > SHARED_READINGS) sharedReadings.delete(sharedReadings.keys().next().value!)
        entry = { readings, owners }
      } else entry = null
      known.set(scrubber, entry)
    }
    return entry ?? undefined
  }
})()

/**
 * How many reading steps building the readings automaton may cost per chunk (`base`, plus
 * `perByte` per byte of it, plus what is left of the allowance `readings.ts` shares among all
 * automata) before the chunk is scanned stack by stack instead. A step costs a few microseconds;
 * the stacks cost up to ~200 ns per byte of a dense echo: so a chunk the automaton gives up on
 * costs at most about twice what the stacks alone cost. A chunk only the automaton may read (see
 * `Stream`) may spend besides, once per response, a reserve of `outOfStep` steps (some 0.2 s of CPU
 * time at most) before the response is cut off. (Tests change it.)
 */
export const READINGS_BUDGET = { base: 200, perByte: 0.05, outOfStep: 50_000 }

/**
 * How dense with introducers a chunk whose escapes matter is when the readings automaton reads it
 * rather than the stacks: at least one in `every` bytes of its first `sample` (the start of a chunk
 * stands for the rest). The automaton's table step (a few nanoseconds a byte) beats the stacks
 * where escapes are this dense (an echo made of escapes costs the stacks ~200 ns a byte), and
 * loses to them on text whose escapes are few (~2 ns a byte for a JSON document with an escape
 * every 80 bytes). The compiled clean check reads the same rule (`clean.ts`).
 */
const DENSE = { sample: 1024, every: 24 } as const

/** Whether the start of `bytes` is dense with introducers (`DENSE`; a byte at a time: they are many). */
const dense = (bytes: Buffer, plus: boolean): boolean => {
  const sample = Math.min(bytes.length, DENSE.sample)
  const introduces = plus ? INTRODUCES_PLUS : INTRODUCES
  let count = 0
  for (let i = 0; i < sample; i++) if (introduces[bytes[i]!] !== 0) count++
  return count > 0 && count * DENSE.every >= sample
}

/**
 * What the scan of a stream's chunk hands on to the next (`Matcher.scan`'s `resume`), made the
 * first time it matters: whether the bytes held back start at a place the stacks may read out of
 * step with a reading from the stream's start (see `restartable`), and what is left of the
 * stream's reserve for reading such bytes by the readings automaton all the same.
 */
class Stream {
  outOfStep = false
  reserve = READINGS_BUDGET.outOfStep
}

/**
 * Every match by the readings automaton (false: it gave up on this chunk). A chunk that starts out
 * of step may also spend its stream's reserve.
 */
const readAll = (scrubber: Scrubber, bytes: Buffer, atEnd: boolean, found: Candidates, stream?: Stream): boolean => {
  const entry = readingsOf(scrubber)
  if (entry === undefined) return false
  const { readings, owners } = entry
  const budget = READINGS_BUDGET.base + bytes.length * READINGS_BUDGET.perByte
  const before = readings.built
  const hold = readings.scan(bytes, bytes.length, atEnd, budget + (stream?.reserve ?? 0), (stack, pattern, start, end) => {
    const [set, i] = owners[pattern]!
    found.add(start, end, set.replacementUnder(i, stack), set.secrets[i])
  })
  if (stream !== undefined) stream.reserve = Math.max(0, stream.reserve - Math.max(0, readings.built - before - budget))
  if (hold === GAVE_UP) return false
  found.hold = Math.min(found.hold, hold)
  found.read = true
  return true
}

/**
 * The most bytes a scan may hold back for the next. What can still grow into a match spans at most
 * the longest match (`maxLength`); only a chain of matches each overlapping the next, which an
 * upstream that knows a value can write without end (`1f3kQz9A` as `1f3kQz9\u0041f3kQz9%41...`,
 * each `1` a value's end and the next one's start, read by different stacks), holds back more, and
 * then every chunk would be scanned again with all before it: past this, the response is cut off.
 */
const carryLimit = (scrubber: Scrubber): number => Math.max(4 * scrubber.matcher.maxLength, 4096)

/** Why a response is cut off when what it would hold back passes `carryLimit`. */
const tooLong = () =>
  new EgressRefused({
    message:
      "The response was cut off: it holds a run of overlapping secret values longer than scrubbing holds back between chunks. " +
      "Only an upstream that knows a value writes such a run; the value is not passed."
  })

/**
 * Why a response is cut off: a chunk that only the readings automaton reads in step (see
 * `restartable`) needed more building than the chunk's budget, the allowance and its stream's
 * reserve. Scanning it stack by stack could let a value through.
 */
const tooDense = () =>
  new EgressRefused({
    message:
      "The response was cut off: it is so dense with escapes (\\, %, &) that scrubbing the rest would cost more CPU than secretgate allows a response, " +
      "and scrubbing it a cheaper way could let a secret's value through. An upstream echoing escape-heavy input sends such responses; retry later, or send less escape-heavy input."
  })

/**
 * What the stacks that start with a clean layer of `outer` (`cleanLayer`) hold back at the end of
 * `bytes`, found without decoding them where it can be (true; false: the caller decodes). Such a
 * layer's escapes write bytes that pair with no neighbour as in a value, introduce no escape (an
 * `&` or a `+` that starts none apart) and are reached by no escape of another syntax, in its own
 * stream and in any inner one read over it (where the bytes beside them are the input's, as
 * `cleanLayer` looked at them). So, unless a stream is cut off before its end (by an escape of the
 * layer cut off, or by an inner HTML layer waiting for more after an `&` the layer's last escape
 * wrote: then the caller decodes, since a value's prefix may end where the stream is cut), a proper
 * prefix of a value at the end of such a stream is one of:
 * - bytes after the layer's last escape, which are the input's own: held by the raw search, by an
 *   inner layer as it reads the input (the input's escapes of that syntax are its own layer's), and
 *   here under `+` as space for percent;
 * - the one byte the layer's last escape wrote, where that escape ends the bytes: held from the
 *   escape when a value starts with it.
 * The layer's reading from the start of the bytes (`cleanLayer`'s, which is decoding's) says where
 * its last escape ended and what it wrote, and whether an escape cut off ended it (`tails`).
 */
const holdCleanTail = (scrubber: Scrubber, layer: number, bytes: Buffer, found: Candidates, tails: Int32Array): boolean => {
  const tail = 4 * layer
  if (tails[tail + 3] !== -1) return false
  const length = bytes.length
  // (the last escape ends the bytes)
  if (tails[tail + 1] === length) {
    const written = tails[tail + 2]!
    if (written === INTRODUCER.html) return false
    if (startsValue(scrubber, written)) found.hold = Math.min(found.hold, tails[tail]!)
  }
  // under `+` as space, bytes after the layer's last escape (those before it, and its own, are the
  // decoded stream's other bytes)
  if (layer === PERCENT && scrubber.plus) {
    const after = Math.max(0, tails[tail + 1]!)
    for (const set of scrubber.sets) if (set.plus) holdTail(set, Kind.Plus, bytes, found, after)
  }
  return true
}

/**
 * What the stacks that start with a clean layer hold back where its stream ends early (`end`): at
 * an escape of it cut off by the end of the bytes, or (`end` the bytes' length) where its last
 * escape wrote an `&` there, which an inner HTML layer waits on; every layer clean, no other cut off
 * (`cleanCut`). False where that is not found so (the caller decodes). Each inner layer's stream
 * over it ends there too, unless an escape of the inner layer is cut off first (an introducer the
 * input reads as itself, whose escape more bytes could complete: `&zz` before the cut; the `&` the
 * layer wrote). Every stack's escapes are the input's own (`cleanCut`), so a proper prefix of a
 * value at the end of such a stream is, as at the end of the bytes (`holdCleanTail`), input after
 * the stack's last escape, or the one byte that escape wrote where it ends the stream: each
 * stack's held as its kind reads it.
 */
const holdCleanEnd = (scrubber: Scrubber, layer: number, bytes: Buffer, found: Candidates, tails: Int32Array, end: number): boolean => {
  found.hold = Math.min(found.hold, end)
  const tail = 4 * layer
  const lastStart = tails[tail]!
  const lastEnd = tails[tail + 1]!
  const written = tails[tail + 2]!
  holdStreamEnd(scrubber, layer === PERCENT ? Kind.Plus : Kind.Exact, bytes, end, lastStart, lastEnd, written, found)
  const introducersOf = scrubber.plus ? INTRODUCES_PLUS : INTRODUCES
  for (let inner = 0; inner < SYNTAXES.length; inner++) {
    const kind = layer === PERCENT || inner === PERCENT ? Kind.Plus : Kind.Exact
    if (inner === HTML && lastEnd === end && written === INTRODUCER.html) {
      // the `&` waits for more: the inner stream ends before the escape that wrote it, after
      // input that holds no escape of the stack back as far as a value reaches (else: decoded)
      for (let q = Math.max(0, lastStart - scrubber.longest - LONGEST_ESCAPE); q < lastStart; q++) if ((introducersOf[bytes[q]!]! & ((1 << layer) | (1 << inner))) !== 0) return false
      found.hold = Math.min(found.hold, lastStart)
      holdStreamEnd(scrubber, kind, bytes, lastStart, -1, -1, 0, found)
      continue
    }
    // (over the layer, its own escapes are all read: none of its own syntax is left)
    const innerTail = 4 * inner
    const innerEnd = inner === layer ? -1 : tails[innerTail + 1]!
    // the inner layer's last escape, where its reading may have looked as far as the cut (a name
    // the layer's introducer ended, `&gtk` before `\`), read again where its stream ends: the same,
    // or decoded
    const innerStart = inner === layer ? -1 : tails[innerTail]!
    if (innerStart >= lastEnd && innerStart >= end - LONGEST_ESCAPE - 1 && escapeAt(SYNTAXES[inner]!, bytes, innerStart, end, false, ONE, 0) !== innerEnd - innerStart) return false
    let stream = end
    for (let q = Math.max(0, lastEnd, innerEnd, end - LONGEST_ESCAPE); q < end; q++) {
      if ((introducersOf[bytes[q]!]! & (1 << inner)) === 0) continue
      const read = escapeAt(SYNTAXES[inner]!, bytes, q, end, false, ONE, 0)
      if (read === CUT) {
        stream = q
        break
      }
      if (read !== LITERAL) return false
    }
    found.hold = Math.min(found.hold, stream)
    if (innerEnd > lastEnd) holdStreamEnd(scrubber, kind, bytes, stream, tails[innerTail]!, innerEnd, tails[innerTail + 2]!, found)
    else holdStreamEnd(scrubber, kind, bytes, stream, lastStart, lastEnd, written, found)
  }
  return true
}

/**
 * Holds back, as the kind reads them, proper prefixes of values at the end of a stream that ends at
 * `end`, whose bytes after its last escape (`lastStart` to `lastEnd`, which wrote `written`; -1:
 * none) are the input's own.
 */
const holdStreamEnd = (scrubber: Scrubber, kind: Kind, bytes: Buffer, end: number, lastStart: number, lastEnd: number, written: number, found: Candidates) => {
  for (const set of scrubber.sets) {
    if (lastEnd === end && set.first(kind)[written] === 1) found.hold = Math.min(found.hold, lastStart)
    holdTail(set, kind, bytes, found, Math.max(0, lastEnd), end)
  }
}

/**
 * Whether a value starts with the byte `written` by an escape, as the stacks that start with its
 * layer may read it: as it is, and, where values hold a space or `+`, a space and a `+` as one (an
 * inner percent layer reads them so wherever its stream holds a `%` or `+`; held either way, which
 * holds one escape more than needed where it holds none).
 */
const startsValue = (() => {
  const known = new WeakMap<Scrubber, Uint8Array>()
  return (scrubber: Scrubber, written: number): boolean => {
    let table = known.get(scrubber)
    if (table === undefined) {
      table = new Uint8Array(256)
      for (const set of scrubber.sets) for (const pattern of set.patterns) table[pattern[0]!] = 1
      if (scrubber.plus && (table[0x20] === 1 || table[0x2b] === 1)) table[0x20] = table[0x2b] = 1
      known.set(scrubber, table)
    }
    return table[written] === 1
  }
})()

/**
 * Every match of `bytes` under any stack, unjoined, and where to hold back. `outOfStep`: the
 * stream's bytes held back start where the stacks may read out of step: only the readings automaton
 * reads them, or the response is cut off (`tooDense`).
 */
const candidates = (scrubber: Scrubber, bytes: Buffer, atEnd: boolean, loose: boolean, exhaustive = false, readings = true, outOfStep?: Stream): Candidates => {
  const found = new Candidates(bytes.length)
  const sets = scrubber.sets
  if (sets.length === 0 || bytes.length === 0) return found
  if (outOfStep !== undefined) {
    if (!readAll(scrubber, bytes, atEnd, found, outOfStep)) throw tooDense()
    return found
  }
  const plus = scrubber.plus
  const pairs = loose || exhaustive ? undefined : unionPairs(scrubber)
  // per layer: whether it has an escape at all (bit `layer`), and whether none of them matters
  // (bit `layer + 4`: then the shortcuts below apply)
  const layers = layersOf(bytes, atEnd, plus, pairs)
  found.clean = pairs !== undefined && (layers & ALL_CLEAN) === ALL_CLEAN
  if (found.clean) found.cut = cleanCut(layers, TAILS)
  // a chunk whose escapes matter is read by the readings automaton where they are dense
  if (readings && !loose && !exhaustive && (layers & ALL_CLEAN) !== ALL_CLEAN && dense(bytes, plus) && readAll(scrubber, bytes, atEnd, found)) return found
  for (let s = 0; s < sets.length; s++) {
    const set = sets[s]!
    const kind = loose ? Kind.Loose : Kind.Exact
    const automaton = set.automaton(kind)
    const search = set.search
    const occurrences = loose || exhaustive || search === undefined ? undefined : search.all(bytes, bytes.length)
    if (occurrences !== undefined) {
      for (let k = 0; k < occurrences.length; k += 2) {
        const i = occurrences[k]!
        const at = occurrences[k + 1]!
        found.add(at, at + set.patterns[i]!.length, set.replacement(i, []), set.secrets[i])
      }
      // only the end, where a match may be cut off, needs the automaton's state
      if (!atEnd) holdTail(set, kind, bytes, found)
      continue
    }
    if (!loose && !exhaustive && set.patterns.length <= NATIVE_SEARCH_UP_TO) {
      // a few patterns: the platform's byte search finds each faster than a pass of the automaton;
      // only the end, where a match may be cut off, needs the automaton's state
      set.patterns.forEach((pattern, i) => {
        for (let at = bytes.indexOf(pattern); at !== -1; at = bytes.indexOf(pattern, at + 1)) {
          found.add(at, at + pattern.length, set.replacement(i, []), set.secrets[i])
        }
      })
      if (!atEnd) holdTail(set, kind, bytes, found)
      continue
    }
    automaton.scan(bytes, 0, bytes.length, Automaton.Automaton.ROOT, (pattern, end) => {
      found.add(end - automaton.lengthOf(pattern), end, set.replacement(pattern, []), set.secrets[pattern])
    })
    if (!atEnd) holdTail(set, kind, bytes, found)
  }
  for (let layer = 0; layer < SYNTAXES.length; layer++) {
    if ((layers & (1 << layer)) === 0) continue
    const outer = SYNTAXES[layer]!
    let from = 0
    if (pairs !== undefined && (layers & (16 << layer)) !== 0) {
      // no escape of the layer matters: nothing to find in it but what is held back at its end,
      // found without decoding it where it can be; else decoded from a place every stack reads in
      // step, early enough for a value under the widest escapes (an inner escape's bytes are not a
      // first-layer escape's here). Where every layer is clean, no stack's escape is in a match
      // (an inner layer's escapes over a clean layer are the input's own), and what a stack holds
      // back at the end of its stream (cut off within an escape's length of the end) is input
      // after its last escape or the one byte that escape wrote: from early enough for a value's
      // bytes and two escapes
      if (atEnd || holdCleanTail(scrubber, layer, bytes, found, TAILS)) continue
      if (found.cut !== UNKNOWN && found.cut === TAILS[4 * layer + 3] && holdCleanEnd(scrubber, layer, bytes, found, TAILS, found.cut === -1 ? bytes.length : found.cut)) continue
      const reach = found.clean ? scrubber.longest + 3 * LONGEST_ESCAPE : scrubber.longest * MAX_EXPANSION.html + 3 * LONGEST_ESCAPE
      from = inStepBefore(bytes, bytes.length - reach, plus)
    }
    const first = decode(outer, bytes, from, bytes.length, atEnd, plus)
    if (first.cut !== -1) found.hold = Math.min(found.hold, first.cut)
    const once: Span = (start, end) => {
      SPAN.start = startOf(first, start)
      SPAN.end = endOf(first, end)
    }
    matchNearEscapes(sets, first, [outer], kindOf([outer], loose), atEnd, once, found, exhaustive)
    if (MAX_DEPTH < 2) continue
    // the pairs under `+` as space too: a superset of those of any stack with `outer`
    const needed = exhaustive ? ALL_LAYERS : innerLayersNeeded(scrubber, first, loose ? Kind.Loose : Kind.Plus, plus)
    // cut off, with escapes near the end: what the inner layers hold back there
    const count = first.outAt.length
    const nearEnd = !atEnd && (first.cut !== -1 || (count > 0 && first.outAt[count - 1]! + first.outLength[count - 1]! + scrubber.longest + LONGEST_ESCAPE >= first.bytes.length))
    if (needed === 0 && !nearEnd) continue
    for (const [bit, inner] of SYNTAXES.entries()) {
      const from = (needed & (1 << bit)) !== 0 ? 0 : nearEnd ? tailFrom(inner, first.bytes, scrubber.longest, plus) : -1
      if (from === -1 || !hasIntroducer(inner, first.bytes, from, first.bytes.length, plus)) continue
      const second = decode(inner, first.bytes, from, first.bytes.length, atEnd, plus, 1)
      if (second.cut !== -1) found.hold = Math.min(found.hold, startOf(first, second.cut))
      const twice: Span = (start, end) => once(startOf(second, start), endOf(second, end))
      matchNearEscapes(sets, second, [outer, inner], kindOf([outer, inner], loose), atEnd, twice, found, exhaustive)
    }
  }
  return found
}

/**
 * Two replacements joined, kept per scrubber (first → second → both): a dense echo joins the same
 * two at every value, where an allocation each would cost more than finding them. At most
 * `JOINED` pairs are kept (replacements past `PatternSet`'s own cache are new buffers each time).
 */
const joinedPairs = new WeakMap<Scrubber, { size: number; readonly pairs: Map<Buffer, Map<Buffer, Buffer>> }>()
const JOINED = 4096

/**
 * The matches `scan` returns, reused from one call to the next, as `Matcher.scan` allows (its caller
 * reads them before scanning again): a dense echo has some 16,000 per MiB, and an object each, with
 * the readings automaton's states filling the heap, cost more than finding them. Up to `POOLED`
 * are kept.
 */
const MATCHES: Array<Substitution.Match> = []
const POOL: Array<{ index: number; length: number; replacement: Buffer }> = []
const POOLED = 4096
const NO_MATCHES: ReadonlyArray<Substitution.Match> = Object.freeze([])

/**
 * A scan's answer: the hold moved to where the stacks can go on from, or said to be out of step
 * (`stream`: what the stream's previous scan handed on; `found`: what the scan found, by the
 * readings automaton or by the stacks, and whether every layer was clean).
 */
const finished = (
  scrubber: Scrubber,
  bytes: Buffer,
  atEnd: boolean,
  found: Candidates,
  stream: Stream | undefined,
  matches: ReadonlyArray<Substitution.Match>,
  holdFrom: number
): Substitution.Scan => {
  let at = holdFrom
  if (!atEnd && found.read) at = restartable(scrubber, bytes, matches, holdFrom, stream?.outOfStep === true)
  else if (!atEnd && holdFrom < bytes.length && !(found.cut !== UNKNOWN && goesOnFrom(bytes, holdFrom, found.cut, scrubber.plus))) {
    // (so far back that carrying it could make every chunk longer: -1, the next chunk the readings automaton's)
    at = stacksHold(bytes, matches, holdFrom, holdFrom - scrubber.matcher.maxLength, scrubber.plus)
  }
  if (bytes.length - (at === -1 ? holdFrom : at) > carryLimit(scrubber)) throw tooLong()
  if (at !== -1) {
    if (stream !== undefined) stream.outOfStep = false
    return { matches, holdFrom: at, resume: stream }
  }
  const next = stream ?? new Stream()
  next.outOfStep = true
  return { matches, holdFrom, resume: next }
}

/**
 * The matches to replace, joined where they overlap (a span covered by any match is replaced, by
 * the replacements of the matches that make it up, in order), and where to hold back: nothing
 * that a match still growing with more bytes could overlap is committed.
 */
const scan = (scrubber: Scrubber, bytes: Buffer, atEnd: boolean, kind: Kind, stream?: Stream): Substitution.Scan => {
  // (nothing read: what the stream's last scan said still holds)
  if (bytes.length === 0) return { matches: NO_MATCHES, holdFrom: 0, resume: stream }
  const outOfStep = stream?.outOfStep === true ? stream : undefined
  const found = candidates(scrubber, bytes, atEnd, kind === Kind.Loose, false, true, outOfStep)
  const count = found.starts.length
  const hold = atEnd ? bytes.length : found.hold
  if (count === 0) return finished(scrubber, bytes, atEnd, found, stream, NO_MATCHES, hold)
  const finish = (matches: ReadonlyArray<Substitution.Match>, holdFrom: number) => finished(scrubber, bytes, atEnd, found, stream, matches, holdFrom)
  // (the readings automaton's come in order already: then no order is built)
  let sorted = true
  for (let i = 1; i < count && sorted; i++) sorted = found.starts[i - 1]! < found.starts[i]! || (found.starts[i - 1] === found.starts[i] && found.ends[i - 1]! >= found.ends[i]!)
  const order = sorted ? undefined : Array.from({ length: count }, (_, i) => i).sort((a, b) => found.starts[a]! - found.starts[b]! || found.ends[b]! - found.ends[a]!)
  const matches = MATCHES
  matches.length = 0
  let start = -1
  let end = -1
  // the replacement of the group's first match, and of the others that make it longer
  let first: Buffer = EMPTY
  let second: Buffer | undefined
  let more: Array<Buffer> | undefined
  let holdFrom = hold
  let kept: { size: number; readonly pairs: Map<Buffer, Map<Buffer, Buffer>> } | undefined
  const joined = (first: Buffer, second: Buffer): Buffer => {
    if (kept === undefined && (kept = joinedPairs.get(scrubber)) === undefined) joinedPairs.set(scrubber, (kept = { size: 0, pairs: new Map() }))
    let both = kept.pairs.get(first)?.get(second)
    if (both === undefined) {
      both = Buffer.concat([first, second])
      if (kept.size < JOINED) {
        let known = kept.pairs.get(first)
        if (known === undefined) kept.pairs.set(first, (known = new Map()))
        known.set(second, both)
        kept.size++
      }
    }
    return both
  }
  const commit = () => {
    if (start === -1) return true
    if (end > hold) {
      // a match still growing may join this one: keep it all back
      holdFrom = Math.min(hold, start)
      return false
    }
    const replacement = second === undefined ? first : more === undefined ? joined(first, second) : Buffer.concat([first, second, ...more])
    let match = POOL[matches.length]
    if (match === undefined) {
      match = { index: 0, length: 0, replacement }
      if (POOL.length < POOLED) POOL.push(match)
    }
    match.index = start
    match.length = end - start
    match.replacement = replacement
    matches.push(match)
    return true
  }
  for (let k = 0; k < count; k++) {
    const i = order === undefined ? k : order[k]!
    const s = found.starts[i]!
    const e = found.ends[i]!
    if (s >= hold) break
    if (s >= end) {
      if (!commit()) return finish(matches, holdFrom)
      start = s
      end = e
      first = found.replacements[i]!
      second = more = undefined
    } else if (e > end) {
      end = e
      if (second === undefined) second = found.replacements[i]!
      else (more ??= []).push(found.replacements[i]!)
    }
  }
  commit()
  return finish(matches, holdFrom)
}

/**
 * Per byte: whether no escape of any syntax holds it (neither a letter or digit nor one of
 * `\ " / ' % + & # ;`). Right after such a byte every stack reads in step with a reading from the
 * start: it ends any escape and any run of backslashes, in the input and in every decoded stream.
 */
const SEPARATES = Uint8Array.from({ length: 256 }, (_, byte) => (isAlphanumeric(byte) || '\\"/\'%+&#;'.includes(String.fromCharCode(byte)) ? 0 : 1))

/**
 * Where the readings automaton's chunk is held back from, moved back, when a place is near, to one
 * the stacks can go on from; -1 when there is none. The automaton follows every reading of the
 * bytes, so it may hold back from inside an escape as a decoder from the start reads it (between
 * the two backslashes of `\\`), and the stacks read a chunk from its first byte as from a stream's
 * start. A place every stack reads in step is `inStepBefore`'s (the start of `bytes` only if they
 * started in step: not `outOfStep`); it is looked for between the end of the last match and the
 * hold (no match is split), no further back than the longest match. Where there is none, the hold
 * stays and the stream's next chunk is read by the automaton, which reads from anywhere, or not at
 * all (`candidates`).
 */
const restartable = (scrubber: Scrubber, bytes: Buffer, matches: ReadonlyArray<Substitution.Match>, holdFrom: number, outOfStep: boolean): number => {
  const last = matches[matches.length - 1]
  const floor = Math.max(last === undefined ? 0 : last.index + last.length, holdFrom - scrubber.matcher.maxLength)
  return inStepBefore(bytes, holdFrom, scrubber.plus, floor, !outOfStep)
}

/** Whether the bytes hold any value in any known form. */
export const holds = (scrubber: Scrubber, bytes: Buffer): boolean =>
  bytes.length >= scrubber.shortest && candidates(scrubber, bytes, true, false).starts.length > 0

/** The bytes scrubbed; the same buffer when there was nothing to scrub. */
export const scrubBytes = (scrubber: Scrubber, bytes: Buffer, ignoreCase = false): Buffer => {
  if (bytes.length < scrubber.shortest) return bytes
  const { matches } = scan(scrubber, bytes, true, ignoreCase ? Kind.Loose : Kind.Exact)
  if (matches.length === 0) return bytes
  const pieces: Array<Buffer> = []
  let at = 0
  for (const match of matches) {
    pieces.push(bytes.subarray(at, match.index), match.replacement as Buffer)
    at = match.index + match.length
  }
  pieces.push(bytes.subarray(at))
  return Buffer.concat(pieces)
}

/** The secrets whose values `bytes` hold in any known form. */
export const secretsIn = (scrubber: Scrubber, bytes: Buffer): Set<ResolvedSecret> => {
  const secrets = new Set<ResolvedSecret>()
  if (bytes.length < scrubber.shortest) return secrets
  const found = candidates(scrubber, bytes, true, false)
  for (const secret of found.secrets) if (secret !== undefined) secrets.add(secret)
  return secrets
}

/**
 * How `coverage` finds matches: `"exhaustive"`, each decoded stream of each stack scanned whole (the
 * reference the others are tested against); `"stacks"`, the stacks with their shortcuts; `"scrub"`,
 * as scrubbing does (the readings automaton where a layer's escapes matter, else the stacks).
 */
export type Engine = "exhaustive" | "stacks" | "scrub"

/**
 * Which bytes of `bytes` the scrubber would replace (one flag per byte), and from where it would
 * hold back, found by `engine`.
 */
export const coverage = (scrubber: Scrubber, bytes: Buffer, atEnd: boolean, engine: Engine): { readonly covered: Uint8Array; readonly hold: number; readonly read: boolean } => {
  const found = candidates(scrubber, bytes, atEnd, false, engine === "exhaustive", engine === "scrub")
  const covered = new Uint8Array(bytes.length)
  found.starts.forEach((start, i) => covered.fill(1, start, found.ends[i]!))
  return { covered, hold: atEnd ? bytes.length : found.hold, read: found.read }
}

/** Bytes the scrubber's automata scanned so far (for tests that check the work stays linear). */
export const workOf = (scrubber: Scrubber): number => scrubber.sets.reduce((sum, set) => sum + set.work(), 0)
