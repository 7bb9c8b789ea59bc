/**
 * Every reading of the escapes at once: one automaton over the raw bytes that finds a value under
 * every stack of up to `MAX_DEPTH` escape syntaxes in a single pass. The scrubber uses it for the
 * chunks whose escapes matter (a chunk none of whose escapes can hold a value takes the shortcuts
 * of `scrubber.ts`).
 *
 * Each stack reads the bytes as a chain: the outer syntax's decoder, the inner one's, then the
 * patterns. A decoder here reads each escape as the decoders of `escapes.ts` do, but at every
 * introducer it also goes on reading the introducer as itself: it follows every way the bytes can
 * be read, not only the one a decoder from the start of the stream picks. So it finds every match
 * the stacks of `escapes.ts` find and, where the bytes can be read more than one way, the other
 * readings' too: a superset, which only ever scrubs more.
 *
 * A thread is one such reading in progress with its age (the bytes it has read). The set of
 * threads alive after a byte is a state of a deterministic automaton built lazily, as RE2's and
 * Rust's regex engines build theirs, and cached per set of patterns: a byte the automaton has seen
 * the like of in that state costs one table step. A match completed on entering a state starts
 * where its thread's age says, and what must be held back at the end of a chunk is the span of
 * the oldest thread alive.
 *
 * Building a state costs far more than stepping through one. `scan` gives up (and the scrubber
 * scans the chunk stack by stack instead) once building for a chunk would cost more than a budget
 * in proportion to it (plus what is left of an allowance shared by the process), so no input costs
 * more than a small multiple of that scan.
 */
import { Buffer } from "node:buffer"
import { makeWalk, type Walk } from "./walk.js"
import { hexValue, LONGEST_ESCAPE, MAX_DEPTH, MAX_EXPANSION, MAX_REFERENCE_DIGITS, NAME_ROOT, nameChild, nameIsLegacy, nameText, putUtf8, SHORT_ESCAPES, type Syntax, SYNTAXES } from "./escapes.js"

/** Every stack, in the order the scrubber reports matches found under several (raw first). */
export const STACKS: ReadonlyArray<ReadonlyArray<Syntax>> = (() => {
  const stacks: Array<ReadonlyArray<Syntax>> = [[]]
  for (const outer of SYNTAXES) {
    stacks.push([outer])
    if (MAX_DEPTH >= 2) for (const inner of SYNTAXES) stacks.push([outer, inner])
  }
  return stacks
})()

/** A thread in a state: its reading (a number below `2 ** 32`) times `AGE`, plus the input bytes it has read. */
const AGE = 2 ** 20

/** Decoder states: a tag times `T` plus a payload. 0 is "between escapes". */
const T = 2 ** 40
const IDLE = 0

// --- the decoders

const UTF8 = Buffer.alloc(4)
/** A code point's UTF-8 bytes, or undefined when it is not a character. */
const utf8 = (cp: number): Array<number> | undefined => {
  if (cp > 0x10ffff) return undefined
  const n = putUtf8(UTF8, 0, cp)
  return n === 0 ? undefined : Array.from(UTF8.subarray(0, n))
}
const isDecimal = (byte: number) => byte >= 0x30 && byte <= 0x39

/**
 * One step of a decoder of a syntax in `state` reading `byte`: each way to go on, as a next state
 * and what it writes (`undefined`: nothing yet). Every decoder reads the introducer as itself, too.
 */
type Step = (state: number, byte: number, out: Array<number | Array<number> | undefined>) => void

/** Pushes `(state, written)` onto `out`, two entries per way. */
const way = (out: Array<number | Array<number> | undefined>, state: number, written: Array<number> | undefined) => {
  out.push(state, written)
}

const readJson: Step = (state, byte, out) => {
  const tag = Math.floor(state / T)
  const v = state % T
  if (state === IDLE) {
    way(out, IDLE, [byte])
    if (byte === 0x5c) way(out, 1 * T, undefined)
    return
  }
  if (tag === 1) {
    // after `\`
    const short = SHORT_ESCAPES[byte]!
    if (short !== -1) way(out, IDLE, [short])
    else if (byte === 0x75) way(out, 2 * T, undefined)
    return
  }
  const h = hexValue(byte)
  if (h === -1) {
    if (tag === 6 && byte === 0x5c) way(out, 7 * T + v, undefined)
    else if (tag === 7 && byte === 0x75) way(out, 8 * T + v * 65536, undefined)
    return
  }
  if (tag >= 2 && tag <= 5) {
    // `\u` and tag - 2 digits so far
    const unit = v * 16 + h
    if (tag < 5) way(out, (tag + 1) * T + unit, undefined)
    else if (unit >= 0xd800 && unit <= 0xdbff) way(out, 6 * T + unit, undefined)
    else if (unit < 0xdc00 || unit > 0xdfff) way(out, IDLE, utf8(unit))
    return
  }
  if (tag >= 8 && tag <= 11) {
    // a low surrogate after `\uD8xx\u`, tag - 8 digits so far
    const high = Math.floor(v / 65536)
    const low = (v % 65536) * 16 + h
    if (tag < 11) way(out, (tag + 1) * T + high * 65536 + low, undefined)
    else if (low >= 0xdc00 && low <= 0xdfff) way(out, IDLE, utf8(0x10000 + ((high - 0xd800) << 10) + (low - 0xdc00)))
  }
}

const readPercent: Step = (state, byte, out) => {
  if (state === IDLE) {
    way(out, IDLE, [byte])
    if (byte === 0x25) way(out, 1 * T, undefined)
    return
  }
  const h = hexValue(byte)
  if (h === -1) return
  if (state === 1 * T) way(out, 2 * T + h, undefined)
  else way(out, IDLE, [(state % T) * 16 + h])
}

/** A numeric reference's digits so far, forwards: tag `DECIMAL + count` or `HEXADECIMAL + count`. */
const DECIMAL = 10
const HEXADECIMAL = 20
const NAME = 30

const readHtml: Step = (state, byte, out) => {
  if (state === IDLE) {
    way(out, IDLE, [byte])
    if (byte === 0x26) way(out, 1 * T, undefined)
    return
  }
  const tag = Math.floor(state / T)
  const v = state % T
  if (tag === 1) {
    // after `&`: a number or a name
    if (byte === 0x23) way(out, 2 * T, undefined)
    else nameStep(NAME_ROOT, byte, out)
    return
  }
  if (tag === 2) {
    // after `&#`
    if ((byte | 0x20) === 0x78) way(out, 3 * T, undefined)
    else if (isDecimal(byte)) digitStep(DECIMAL, 0, 0, byte - 0x30, 10, out)
    return
  }
  if (tag === 3) {
    const h = hexValue(byte)
    if (h !== -1) digitStep(HEXADECIMAL, 0, 0, h, 16, out)
    return
  }
  if (tag === NAME) {
    if (byte === 0x3b) {
      const text = nameText(v)
      if (text !== undefined) way(out, IDLE, Array.from(text))
    } else nameStep(v, byte, out)
    return
  }
  const decimal = tag > DECIMAL && tag <= DECIMAL + MAX_REFERENCE_DIGITS
  const count = tag - (decimal ? DECIMAL : HEXADECIMAL)
  if (byte === 0x3b) {
    const bytes = utf8(v)
    if (bytes !== undefined) way(out, IDLE, bytes)
    return
  }
  const d = decimal ? (isDecimal(byte) ? byte - 0x30 : -1) : hexValue(byte)
  if (d !== -1 && count < MAX_REFERENCE_DIGITS) digitStep(decimal ? DECIMAL : HEXADECIMAL, count, v, d, decimal ? 10 : 16, out)
}

/** One more digit of a numeric reference: go on reading, or end it here without `;`. */
const digitStep = (base: number, count: number, value: number, digit: number, radix: number, out: Array<number | Array<number> | undefined>) => {
  const next = value * radix + digit
  if (next > 0x10ffff) return
  way(out, (base + count + 1) * T + next, undefined)
  const bytes = utf8(next)
  if (bytes !== undefined) way(out, IDLE, bytes)
}

/** One more letter of a name: go on reading it, or end it here without `;` (where HTML allows that). */
const nameStep = (node: number, byte: number, out: Array<number | Array<number> | undefined>) => {
  const child = nameChild(node, byte)
  if (child === 0) return
  way(out, NAME * T + child, undefined)
  if (nameIsLegacy(child)) way(out, IDLE, Array.from(nameText(child)!))
}

const READERS: Readonly<Record<Syntax, Step>> = { json: readJson, percent: readPercent, html: readHtml }

/** The most input bytes one decoded byte of the stack comes from (and one escape of any syntax spans). */
const expansionOf = (stack: ReadonlyArray<Syntax>) => stack.reduce((product, syntax) => product * MAX_EXPANSION[syntax], 1)

/** `+` compared as a space (under stacks with percent-encoding), as `scrubber.ts` compares them. */
const plusFold = (byte: number) => (byte === 0x2b ? 0x20 : byte)

/**
 * Whether the automaton can read these patterns: every pattern starts and ends where a decoded
 * character does (no pattern begins with a UTF-8 continuation byte, nor ends inside a character's
 * bytes: only Latin-1 forms of values can break this, and then a match could begin or end inside
 * one escape's decoded bytes, which the readings do not follow), the patterns hold fewer than 160
 * distinct bytes (so that the classes of bytes fit in the hints' 8 bits), and none is so long
 * (over 7,000 bytes) that a thread's age could pass `AGE`. Otherwise the scrubber keeps to its
 * stacks.
 */
export const readable = (patterns: ReadonlyArray<Buffer>): boolean =>
  new Set(patterns.flatMap((pattern) => [...pattern])).size < 160 &&
  patterns.every((pattern) => pattern.length * expansionOf(["html", "html"]) + LONGEST_ESCAPE < AGE) &&
  patterns.every((pattern) => {
    if (pattern.length === 0 || (pattern[0]! & 0xc0) === 0x80) return false
    // the last lead byte among the last three: enough continuation bytes after it?
    for (let back = 1; back <= Math.min(3, pattern.length); back++) {
      const byte = pattern[pattern.length - back]!
      if ((byte & 0xc0) === 0x80) continue
      const length = byte < 0x80 ? 1 : byte >= 0xf0 ? 4 : byte >= 0xe0 ? 3 : byte >= 0xc0 ? 2 : 1
      return back >= length
    }
    return true
  })

/** A pattern completed: which stack read it, which pattern, and where its bytes were. */
export type OnMatch = (stack: number, pattern: number, start: number, end: number) => void

/** What `scan` answers when building would cost more than the chunk's budget. */
export const GAVE_UP = -1

/**
 * A decoder reached `MAX_DECODER_STATES`, or the readings `MAX_READINGS` (input made of ever new
 * escapes): the automaton starts afresh.
 */
class Saturated extends Error {}
const MAX_DECODER_STATES = 65536
/** (A step's key, `reading * 256 + class`, must fit in 31 bits.) */
const MAX_READINGS = 1 << 22

/** Byte strings decoders write, interned (an id per distinct string). */
class Written {
  private readonly ids = new Map<string, number>()
  readonly bytes: Array<ReadonlyArray<number>> = []
  idOf(bytes: ReadonlyArray<number>): number {
    const key = String.fromCharCode(...bytes)
    let id = this.ids.get(key)
    if (id === undefined) {
      id = this.bytes.length
      this.bytes.push(bytes)
      this.ids.set(key, id)
    }
    return id
  }
}

/** A decoder's states, interned (0 is between escapes), and its steps, memoized per state and byte. */
class Decoder {
  private readonly ids = new Map<number, number>([[IDLE, 0]])
  private readonly values: Array<number> = [IDLE]
  private readonly memo = new Map<number, Int32Array>()
  private readonly out: Array<number | Array<number> | undefined> = []
  constructor(private readonly step: Step, private readonly written: Written) {}

  /** The ways on from state `id` on `byte`: pairs of (next state, written string or -1). */
  ways(id: number, byte: number): Int32Array {
    const at = id * 256 + byte
    let ways = this.memo.get(at)
    if (ways === undefined) {
      const out = this.out
      out.length = 0
      this.step(this.values[id]!, byte, out)
      ways = new Int32Array(out.length)
      for (let w = 0; w < out.length; w += 2) {
        ways[w] = this.idOf(out[w] as number)
        const written = out[w + 1] as Array<number> | undefined
        ways[w + 1] = written === undefined ? -1 : this.written.idOf(written)
      }
      this.memo.set(at, ways)
    }
    return ways
  }

  private idOf(value: number): number {
    let id = this.ids.get(value)
    if (id === undefined) {
      id = this.values.length
      if (id >= MAX_DECODER_STATES) throw new Saturated()
      this.values.push(value)
      this.ids.set(value, id)
    }
    return id
  }
}

const hashOf = (a: number, b: number, c: number, d: number): number =>
  (Math.imul(a, 0x9e3779b1) ^ Math.imul(b, 0x85ebca6b) ^ Math.imul(c, 0xc2b2ae35) ^ Math.imul(d, 0x27d4eb2f)) >>> 0

/** Tuples of four small numbers interned as 0, 1, 2, ... (open addressing: no allocation per lookup). */
class Tuples {
  private slots = new Int32Array(1 << 12).fill(-1)
  /** Per id: its four numbers. */
  values = new Int32Array(1 << 12)
  size = 0
  idOf(a: number, b: number, c: number, d: number): number {
    const mask = this.slots.length - 1
    let h = hashOf(a, b, c, d)
    for (;;) {
      h &= mask
      const id = this.slots[h]!
      if (id === -1) break
      const at = id * 4
      if (this.values[at] === a && this.values[at + 1] === b && this.values[at + 2] === c && this.values[at + 3] === d) return id
      h++
    }
    const id = this.size++
    if (id * 4 + 4 > this.values.length) {
      const grown = new Int32Array(this.values.length * 2)
      grown.set(this.values)
      this.values = grown
    }
    const at = id * 4
    this.values[at] = a
    this.values[at + 1] = b
    this.values[at + 2] = c
    this.values[at + 3] = d
    this.slots[h] = id
    if (this.size * 2 > this.slots.length) this.rehash()
    return id
  }
  private rehash() {
    this.slots = new Int32Array(this.slots.length * 2).fill(-1)
    const mask = this.slots.length - 1
    for (let id = 0; id < this.size; id++) {
      const at = id * 4
      let h = hashOf(this.values[at]!, this.values[at + 1]!, this.values[at + 2]!, this.values[at + 3]!)
      for (;;) {
        h &= mask
        if (this.slots[h] === -1) break
        h++
      }
      this.slots[h] = id
    }
  }
}

/**
 * Sorted lists of distinct numbers interned as states (hashed, then compared), kept end to end in
 * one array: `find` answers the state's number, or `-1 - number` for a list seen for the first time
 * (which it keeps a copy of). (An array per state made the heap a collector had to walk at length.)
 */
class States {
  /** Open addressing: hash slot → state + 1 (0: empty). */
  private slots = new Int32Array(1 << 12)
  private hashes: Array<number> = []
  /** The lists, end to end; where each begins (`starts[id]`, `starts[id + 1]` its end). */
  pool = new Float64Array(1 << 14)
  starts = new Int32Array(1 << 10)
  count = 0

  /** The list `list[0, length)`'s state. */
  find(list: Float64Array, length: number): number {
    let h = length
    for (let i = 0; i < length; i++) h = Math.imul(h ^ (list[i]! | 0) ^ ((list[i]! / 4294967296) | 0), 0x9e3779b1)
    h >>>= 0
    const mask = this.slots.length - 1
    for (let slot = h & mask; ; slot = (slot + 1) & mask) {
      const entry = this.slots[slot]!
      if (entry === 0) break
      const id = entry - 1
      if (this.hashes[id] !== h) continue
      const from = this.starts[id]!
      if (this.starts[id + 1]! - from !== length) continue
      let i = 0
      while (i < length && this.pool[from + i] === list[i]) i++
      if (i === length) return id
    }
    const id = this.count++
    if (id + 2 > this.starts.length) {
      const grown = new Int32Array(this.starts.length * 2)
      grown.set(this.starts)
      this.starts = grown
    }
    const from = this.starts[id]!
    if (from + length > this.pool.length) {
      const grown = new Float64Array(Math.max(this.pool.length * 2, from + length))
      grown.set(this.pool)
      this.pool = grown
    }
    for (let i = 0; i < length; i++) this.pool[from + i] = list[i]!
    this.starts[id + 1] = from + length
    this.hashes.push(h)
    if (this.count * 2 > this.slots.length) this.rehash()
    else this.place(id)
    return -1 - id
  }

  private place(id: number) {
    const mask = this.slots.length - 1
    let slot = this.hashes[id]! & mask
    while (this.slots[slot] !== 0) slot = (slot + 1) & mask
    this.slots[slot] = id + 1
  }

  private rehash() {
    this.slots = new Int32Array(this.slots.length * 2)
    for (let id = 0; id < this.count; id++) this.place(id)
  }
}

/**
 * Numbers below 2 ** 31 mapped to numbers (open addressing: no allocation per entry; a `Map` of
 * some 100,000 entries made half the cost of building).
 */
class Steps {
  private keys = new Int32Array(1 << 12).fill(-1)
  private values = new Int32Array(1 << 12)
  size = 0
  /** The number `key` maps to, or -1. */
  get(key: number): number {
    const mask = this.keys.length - 1
    for (let slot = Math.imul(key, 0x9e3779b1) >>> 0 & mask; ; slot = (slot + 1) & mask) {
      const at = this.keys[slot]!
      if (at === key) return this.values[slot]!
      if (at === -1) return -1
    }
  }
  set(key: number, value: number) {
    if ((this.size + 1) * 2 > this.keys.length) this.grow()
    const mask = this.keys.length - 1
    let slot = Math.imul(key, 0x9e3779b1) >>> 0 & mask
    while (this.keys[slot] !== -1 && this.keys[slot] !== key) slot = (slot + 1) & mask
    if (this.keys[slot] === -1) this.size++
    this.keys[slot] = key
    this.values[slot] = value
  }
  private grow() {
    const keys = this.keys
    const values = this.values
    this.keys = new Int32Array(keys.length * 2).fill(-1)
    this.values = new Int32Array(keys.length * 2)
    this.size = 0
    for (let slot = 0; slot < keys.length; slot++) if (keys[slot] !== -1) this.set(keys[slot]!, values[slot]!)
  }
}

/** A table of `length` steps, or `undefined` where there is no memory for it. */
const allocated = (length: number): Uint16Array | undefined => {
  try {
    return new Uint16Array(length)
  } catch {
    return undefined
  }
}

/** States one `Readings` may build before its automaton is dropped and built afresh (below `ACCEPTS`). */
const MAX_STATES = 30_000
const ACCEPTS = 0x8000
/**
 * Reading steps the automata may spend building beyond the budgets of the chunks they scan, shared
 * by every automaton of the process: up to `cap` (about what the automaton for 64 values needs to
 * read a dense echo of them in every form of the benchmark, some 0.5 s of CPU time), refilled at
 * `perSecond`. A new set of values (a Basic credential echoed makes one) gets nothing of its own,
 * so input made to need new states everywhere costs at most this much more over time, and each
 * chunk its budget. (Tests change it.)
 */
export const ALLOWANCE = { cap: 150_000, perSecond: 2_500, left: 150_000, at: Date.now() }

/** What is left of the allowance now. */
const allowanceLeft = (): number => {
  const now = Date.now()
  ALLOWANCE.left = Math.min(ALLOWANCE.cap, ALLOWANCE.left + (Math.max(0, now - ALLOWANCE.at) / 1000) * ALLOWANCE.perSecond)
  ALLOWANCE.at = now
  return ALLOWANCE.left
}

/**
 * The automaton for one list of patterns (each pattern's index is what `OnMatch` reports).
 *
 * A reading is (stack, outer decoder state, inner decoder state, trie node); a thread is a reading
 * and its age, the input bytes it has read since it began. States are sets of threads, so a match
 * completed on entering a state starts where its thread's age says: no second pass finds it, and
 * what to hold back at the end of a chunk is known exactly (the oldest thread still alive).
 */
export class Readings {
  /** Byte → class: bytes no decoder nor pattern tells apart share one. */
  private readonly classOf = new Uint8Array(256)
  /** A byte of each class. */
  private readonly sample: Array<number> = []
  private readonly width: number
  /** Trie of the patterns (exact, and with `+` as space): children, the pattern ending at a node. */
  private readonly kids: Array<Map<number, number>> = [new Map()]
  private readonly ends: Array<number> = [-1]
  private readonly roots: [number, number]
  private readonly folds: ReadonlyArray<boolean>
  /** Per stack: the most input bytes a match can span (older threads can complete nothing). */
  private readonly oldest: ReadonlyArray<number>

  private fresh!: {
    written: Written
    decoders: Record<Syntax, Decoder>
    /** Readings: (stack, outer decoder state, inner decoder state, trie node). */
    readings: Tuples
    /** Per reading: how old a thread of it may grow (0: it has read nothing, the root between escapes). */
    reach: Int32Array
    /** Per reading and class: where in `arena` the readings it becomes are (their count, then them). */
    steps: Steps
    arena: Int32Array
    used: number
    roots: Array<number>
    states: States
    /** Per state: (stack, pattern, age) of each match completed on entering it, by stack. */
    accepts: Array<Int32Array | undefined>
    /** Per state: the age of its oldest thread that may still grow into a match (0: none). */
    back: Array<number>
    /**
     * `state * width + class` → 0 (not built), or `next + 1`, plus `ACCEPTS` when `next` completes
     * matches (16 bits a step: the table a dense input walks stays small enough for the caches).
     */
    table: Uint16Array
    /**
     * Per state: the class of the transition last taken from it (above the low 16 bits) and its
     * entry (the low 16), or -1: most states of a repetitive input go on the same way each time, and this small array
     * stays in the processor's cache where the table does not. (The compiled walk keeps its own.)
     */
    last: Int32Array
    /** The compiled walk over `table` (`walk.ts`), or `undefined`: the walk in TypeScript. */
    walk: Walk | undefined
    start: number
  }

  /** Work done building (reading steps), for the budget and for tests. */
  built = 0

  constructor(
    readonly patterns: ReadonlyArray<Buffer>,
    /** Whether the walk is the compiled one where it can run (`false`: the TypeScript one, for tests that compare the two). */
    private readonly compiled = true
  ) {
    const distinct = new Set<number>([0x5c, 0x25, 0x26, 0x23, 0x3b, 0x22, 0x2f, 0x27, 0x2b, 0x20])
    for (let b = 0; b < 256; b++) if ((b >= 0x30 && b <= 0x39) || ((b | 0x20) >= 0x61 && (b | 0x20) <= 0x7a)) distinct.add(b)
    for (const pattern of patterns) for (const byte of pattern) distinct.add(byte)
    let other = -1
    for (let b = 0; b < 256 && other === -1; b++) if (!distinct.has(b)) other = b
    this.sample.push(other === -1 ? 0 : other)
    for (const b of [...distinct].sort((x, y) => x - y)) {
      this.classOf[b] = this.sample.length
      this.sample.push(b)
    }
    this.width = this.sample.length
    this.roots = [this.trie(patterns, false), this.trie(patterns, true)]
    this.folds = STACKS.map((stack) => stack.includes("percent"))
    const longest = patterns.reduce((max, pattern) => Math.max(max, pattern.length), 0)
    this.oldest = STACKS.map((stack) => longest * expansionOf(stack) + LONGEST_ESCAPE)
    this.reset()
  }

  /** Drops every state built: the next scans build afresh. */
  private reset() {
    const written = new Written()
    let walk = this.compiled ? makeWalk(this.classOf, this.width) : undefined
    // (a walk whose memory cannot hold the first table is no walk: the table is TypeScript's then)
    const table = walk?.table(this.width * 1024)
    if (table === undefined) walk = undefined
    this.fresh = {
      written,
      decoders: Object.fromEntries(SYNTAXES.map((syntax) => [syntax, new Decoder(READERS[syntax], written)])) as Record<Syntax, Decoder>,
      readings: new Tuples(),
      reach: new Int32Array(1 << 12),
      steps: new Steps(),
      arena: new Int32Array(1 << 16),
      used: 0,
      roots: [],
      states: new States(),
      accepts: [],
      back: [],
      table: table ?? new Uint16Array(this.width * 1024),
      last: new Int32Array(walk === undefined ? 1024 : 0).fill(-1),
      walk,
      start: 0
    }
    this.fresh.roots = STACKS.map((_, stack) => this.readingOf(stack, 0, 0, this.roots[this.folds[stack] ? 1 : 0]))
    const roots = Float64Array.from(this.fresh.roots, (reading) => reading * AGE).sort()
    this.fresh.start = this.stateOf(roots, roots.length)
  }

  private trie(patterns: ReadonlyArray<Buffer>, fold: boolean): number {
    const root = this.kids.length
    this.kids.push(new Map())
    this.ends.push(-1)
    patterns.forEach((pattern, index) => {
      let node = root
      for (const raw of pattern) {
        const byte = fold ? plusFold(raw) : raw
        let child = this.kids[node]!.get(byte)
        if (child === undefined) {
          child = this.kids.length
          this.kids.push(new Map())
          this.ends.push(-1)
          this.kids[node]!.set(byte, child)
        }
        node = child
      }
      if (this.ends[node] === -1) this.ends[node] = index
    })
    return root
  }

  private readingOf(stack: number, outer: number, inner: number, node: number): number {
    const f = this.fresh
    const size = f.readings.size
    const id = f.readings.idOf(stack, outer, inner, node)
    if (id === size) {
      if (id >= MAX_READINGS) throw new Saturated()
      if (id === f.reach.length) {
        const grown = new Int32Array(id * 2)
        grown.set(f.reach)
        f.reach = grown
      }
      f.reach[id] = outer === 0 && inner === 0 && node === this.roots[this.folds[stack] ? 1 : 0] ? 0 : this.oldest[stack]!
    }
    return id
  }

  /** Where in the arena the readings `reading` becomes on a byte of class `cls` are (memoized): their count, then them. */
  private step(reading: number, cls: number): number {
    const f = this.fresh
    const at = reading * 256 + cls
    const known = f.steps.get(at)
    if (known !== -1) return known
    this.built++
    const next: Array<number> = []
    const values = f.readings.values
    const stack = values[reading * 4]!
    const outer = values[reading * 4 + 1]!
    const inner = values[reading * 4 + 2]!
    const node = values[reading * 4 + 3]!
    const layers = STACKS[stack]!
    const fold = this.folds[stack]!
    const byte = this.sample[cls]!
    if (layers.length === 0) {
      const child = this.kids[node]!.get(fold ? plusFold(byte) : byte)
      if (child !== undefined) next.push(this.readingOf(stack, 0, 0, child))
    } else {
      const ways = f.decoders[layers[0]!].ways(outer, byte)
      for (let w = 0; w < ways.length; w += 2) {
        const written = ways[w + 1]!
        if (written === -1) next.push(this.readingOf(stack, ways[w]!, inner, node))
        else this.feed(next, stack, layers, fold, ways[w]!, inner, node, f.written.bytes[written]!, 0)
      }
    }
    if (f.used + next.length + 1 > f.arena.length) {
      const grown = new Int32Array(f.arena.length * 2)
      grown.set(f.arena)
      f.arena = grown
    }
    const start = f.used
    f.arena[start] = next.length
    for (let k = 0; k < next.length; k++) f.arena[start + 1 + k] = next[k]!
    f.used += next.length + 1
    f.steps.set(at, start)
    return start
  }

  /** Feeds decoded `bytes[i..]` to the inner layer (or the patterns), pushing the readings that result. */
  private feed(next: Array<number>, stack: number, layers: ReadonlyArray<Syntax>, fold: boolean, outer: number, inner: number, node: number, bytes: ReadonlyArray<number>, i: number) {
    if (i === bytes.length) {
      next.push(this.readingOf(stack, outer, inner, node))
      return
    }
    if (layers.length < 2) {
      const child = this.kids[node]!.get(fold ? plusFold(bytes[i]!) : bytes[i]!)
      if (child !== undefined) this.feed(next, stack, layers, fold, outer, inner, child, bytes, i + 1)
      return
    }
    const f = this.fresh
    const ways = f.decoders[layers[1]!].ways(inner, bytes[i]!)
    for (let w = 0; w < ways.length; w += 2) {
      const written = ways[w + 1]!
      let to = node
      if (written !== -1) {
        const text = f.written.bytes[written]!
        for (let k = 0; k < text.length && to !== -1; k++) to = this.kids[to]!.get(fold ? plusFold(text[k]!) : text[k]!) ?? -1
        if (to === -1) continue
      }
      this.feed(next, stack, layers, fold, outer, ways[w]!, to, bytes, i + 1)
    }
  }

  /** The state for a sorted list of distinct threads, `threads[0, count)` (built on first sight). */
  private stateOf(threads: Float64Array, count: number): number {
    const f = this.fresh
    const found = f.states.find(threads, count)
    if (found >= 0) return found
    const id = -1 - found
    let accepted: Array<[number, number, number]> | undefined
    let back = 0
    const values = f.readings.values
    for (let t = 0; t < count; t++) {
      const thread = threads[t]!
      const reading = Math.floor(thread / AGE)
      const age = thread - reading * AGE
      const node = values[reading * 4 + 3]!
      const idle = values[reading * 4 + 1] === 0 && values[reading * 4 + 2] === 0
      if (idle && this.ends[node] !== -1) {
        // a match; of those of one pattern ending here, the widest holds the others (and of equally
        // wide ones, the first stack's is the one the scrubber would keep)
        const stack = values[reading * 4]!
        const pattern = this.ends[node]!
        const same = accepted?.find(([, p]) => p === pattern)
        if (same === undefined) (accepted ??= []).push([stack, pattern, age])
        else if (age > same[2] || (age === same[2] && stack < same[0])) {
          same[0] = stack
          same[2] = age
        }
      }
      back = Math.max(back, age)
    }
    f.accepts[id] = accepted === undefined ? undefined : Int32Array.from(accepted.sort((a, b) => a[0] - b[0] || a[1] - b[1]).flat())
    f.back[id] = back
    if ((id + 1) * this.width > f.table.length) {
      const length = Math.max((id + 1) * this.width, Math.min(f.table.length * 2, (MAX_STATES + 64) * this.width))
      const grown = f.walk !== undefined ? f.walk.table(length) : allocated(length)
      // no memory for a larger table: this automaton starts afresh, and the chunk is scanned by the stacks
      if (grown === undefined) throw new Saturated()
      if (f.walk === undefined) grown.set(f.table)
      f.table = grown
    }
    if (f.walk === undefined && id >= f.last.length) {
      const grown = new Int32Array(Math.max(id + 1, f.last.length * 2)).fill(-1)
      grown.set(f.last)
      f.last = grown
    }
    return id
  }

  /** Threads of the state being built (reused: most transitions lead to a state already known). */
  private scratch = new Float64Array(256)

  /** Transitions built so far (for tests: once the states an input needs are built, walking it again builds none). */
  transitions = 0

  /** Builds the transition of `state` on class `cls`; returns the table entry. */
  private build(state: number, cls: number): number {
    this.transitions++
    const f = this.fresh
    const states = f.states
    let scratch = this.scratch
    let count = 0
    const add = (thread: number) => {
      if (count === scratch.length) {
        const grown = new Float64Array(scratch.length * 2)
        grown.set(scratch)
        this.scratch = scratch = grown
      }
      scratch[count++] = thread
    }
    for (let m = states.starts[state]!, end = states.starts[state + 1]!; m < end; m++) {
      const thread = states.pool[m]!
      const reading = Math.floor(thread / AGE)
      const age = thread - reading * AGE + 1
      const at = this.step(reading, cls)
      const arena = f.arena
      for (let k = at + 1; k <= at + arena[at]!; k++) {
        const to = arena[k]!
        // a thread older than any match of its stack can be is dropped; one back between escapes
        // at the root has read nothing (the root's own thread is in every state)
        if (age <= f.reach[to]!) add(to * AGE + age)
      }
    }
    for (const root of f.roots) add(root * AGE)
    // sorted (a few dozen threads, most often: in place, no copy nor call out), duplicates dropped
    if (count > 32) scratch.subarray(0, count).sort()
    else {
      for (let i = 1; i < count; i++) {
        const thread = scratch[i]!
        let j = i - 1
        while (j >= 0 && scratch[j]! > thread) {
          scratch[j + 1] = scratch[j]!
          j--
        }
        scratch[j + 1] = thread
      }
    }
    let distinct = 0
    for (let i = 0; i < count; i++) if (i === 0 || scratch[i] !== scratch[i - 1]) scratch[distinct++] = scratch[i]!
    const target = this.stateOf(scratch, distinct)
    const value = (target + 1) | (f.accepts[target] === undefined ? 0 : ACCEPTS)
    f.table[state * this.width + cls] = value
    return value
  }


  /** States built so far (for tests). */
  get states(): number {
    return this.fresh.states.count
  }

  /** Whether the table is walked by the compiled walk (`walk.ts`; for tests). */
  get walksCompiled(): boolean {
    return this.fresh.walk !== undefined
  }

  private readonly found: Array<number> = []

  /**
   * Reports every match in `bytes[0, end)` (`onMatch`, in order of their ends) and returns where to
   * hold back from (`end` when `atEnd` or nothing could still grow into a match), or `GAVE_UP`,
   * having reported nothing, when building states for this input would cost more than `budget`
   * reading steps (and what is left of the `ALLOWANCE` shared by all automata).
   */
  scan(bytes: Uint8Array, end: number, atEnd: boolean, budget: number, onMatch: OnMatch): number {
    if (this.fresh.states.count > MAX_STATES) this.reset()
    let state: number
    const before = this.built
    try {
      state = this.forward(bytes, end, before + budget + allowanceLeft())
    } catch (error) {
      // (what was being built is left half done: afresh either way)
      this.reset()
      if (!(error instanceof Saturated)) throw error
      state = GAVE_UP
    }
    ALLOWANCE.left = Math.max(0, ALLOWANCE.left - Math.max(0, this.built - before - budget))
    if (state === GAVE_UP) return GAVE_UP
    const found = this.found
    const accepts = this.fresh.accepts
    for (let k = 0; k < found.length; k += 2) {
      const matches = accepts[found[k]!]!
      const matchEnd = found[k + 1]!
      for (let m = 0; m < matches.length; m += 3) onMatch(matches[m]!, matches[m + 1]!, matchEnd - matches[m + 2]!, matchEnd)
    }
    if (atEnd) return end
    return end - this.fresh.back[state]!
  }

  /** The automaton over `bytes[0, end)`: the last state, matches in `found` (state, end). */
  private forward(bytes: Uint8Array, end: number, limit: number): number {
    const { classOf, found, width } = this
    found.length = 0
    const walk = this.fresh.walk
    if (walk !== undefined) {
      // (GAVE_UP is the walk's -1)
      return walk.walk(bytes, end, this.fresh.start, found, (state, at) => {
        if (this.built > limit || this.fresh.states.count > MAX_STATES) return false
        this.build(state, classOf[bytes[at]!]!)
        return true
      })
    }
    let { table, last } = this.fresh
    let state = this.fresh.start
    for (let i = 0; i < end; i++) {
      const cls = classOf[bytes[i]!]!
      const hint = last[state]!
      let value: number
      if (hint >> 16 === cls) value = hint & 0xffff
      else {
        value = table[state * width + cls]!
        if (value === 0) {
          if (this.built > limit || this.fresh.states.count > MAX_STATES) return GAVE_UP
          value = this.build(state, cls)
          table = this.fresh.table
          last = this.fresh.last
        }
        last[state] = (cls << 16) | value
      }
      state = (value & (ACCEPTS - 1)) - 1
      if (value >= ACCEPTS) found.push(state, i + 1)
    }
    return state
  }
}
