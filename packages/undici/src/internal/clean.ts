/**
 * The scrubber's clean check (`cleanLayer` of `scrubber.ts`), compiled: `wasm/clean.c`, built into
 * `cleanWasm.ts`. One pass finds every introducer sixty-four bytes at a time, they are listed by
 * syntax, then each layer's escapes are read as `escapeAt` reads them, with the same tables
 * (written into the module's memory from `escapes.ts` and `scrubber.ts` when it is first used);
 * what it found of an escape is kept by the bytes around it, until the byte pairs or `+` change.
 * A long chunk whose start is dense with escapes (the scrubber's rule, `dense` in `tables`) and
 * dirty in every syntax (a dense echo, which the readings automaton reads) is answered from that
 * start alone.
 * For a chunk of ordinary JSON it costs a fraction of the TypeScript check, which stays the
 * reference (`CleanWasm.test.ts` compares the two) and the fallback where WebAssembly with SIMD is
 * not available.
 */
import { Buffer } from "node:buffer"
import { CLEAN_WASM } from "./cleanWasm.js"
import { instantiate, type Memory } from "./wasm.js"
import { INTRODUCER, LONGEST_ESCAPE, MAX_REFERENCE_DIGITS, NAMES, nameIsLegacy, nameText, SHORT_ESCAPES, SYNTAXES } from "./escapes.js"

/** The tables of `scrubber.ts` the check reads. */
export interface CleanTables {
  /** Per byte: the bits (of `SYNTAXES`) of the syntaxes it introduces an escape of, without and with `+` for percent. */
  readonly introduces: Uint8Array
  readonly introducesPlus: Uint8Array
  /** `+` as a space. */
  readonly fold: Uint8Array
  /** The scrubber's density rule: a chunk with an introducer in `every` bytes of its first `sample` is dense. */
  readonly dense: { readonly sample: number; readonly every: number }
}

/**
 * Where each layer's reading of its escapes ended (`cleanLayer`'s, for a clean layer), four numbers
 * per layer of `SYNTAXES` from `4 * layer`: the last escape's start and end (-1: none), the last
 * byte it wrote, and where an escape cut off by the end of the bytes begins, which ended the
 * reading (-1: none).
 */
export const LAYER_TAILS = 4 * SYNTAXES.length

/** Chunks longer than this are checked in TypeScript: the module's memory grows to hold the chunk and never shrinks. */
const LONGEST_CHUNK = 1 << 20

/** The module's trie has room for this many nodes (`NODES` in `clean.c`). */
const NODES = 2048

export interface CleanCheck {
  /**
   * For each syntax `s` of `SYNTAXES`: bit `s` set when `bytes` hold an introducer of it, bit
   * `s + 4` when that layer is clean (`cleanLayer`) or holds none, and then where its reading
   * ended in `tails` (`LAYER_TAILS` numbers). `undefined` for a chunk too long.
   */
  readonly layers: (bytes: Buffer, atEnd: boolean, plus: boolean, pairs: Uint8Array, tails: Int32Array) => number | undefined
}

interface Exports {
  readonly memory: Memory
  readonly table: (which: number) => number
  readonly configure: (escape: number, digits: number, name: number, json: number, percent: number, html: number, sample: number, every: number) => void
  readonly layers: (length: number, atEnd: number, plus: number) => number
  readonly forget: () => void
}

/** The compiled check, or `undefined` where this runtime cannot instantiate it (no WebAssembly SIMD). */
export const makeCleanCheck = (tables: CleanTables): CleanCheck | undefined => {
  const exports = instantiate<Exports>(CLEAN_WASM)
  if (exports === undefined) return undefined
  // (the module's tables have room for so many names' nodes, and four bytes per name's text)
  const texts = Array.from({ length: NAMES.nodes }, (_, node) => nameText(node))
  // (and each introducer introduces escapes of one syntax: the module lists them by syntax)
  const single = (table: Uint8Array) => table.every((bits) => (bits & (bits - 1)) === 0)
  if (NAMES.nodes > NODES || texts.some((text) => text !== undefined && text.length > 4) || SYNTAXES.join() !== "json,percent,html" || !single(tables.introduces) || !single(tables.introducesPlus)) return undefined
  const bytesAt = (which: number, length: number) => new Uint8Array(exports.memory.buffer, exports.table(which), length)
  bytesAt(1, 256).set(tables.introduces)
  bytesAt(2, 256).set(tables.introducesPlus)
  bytesAt(3, 256).set(tables.fold)
  bytesAt(4, 256).set(SHORT_ESCAPES.map((byte) => (byte === -1 ? 0xff : byte)))
  bytesAt(5, 256).set(NAMES.SYMBOL)
  new Uint16Array(exports.memory.buffer, exports.table(6), NAMES.NEXT.length).set(NAMES.NEXT)
  const text = bytesAt(7, NODES * 4)
  const textLength = bytesAt(8, NODES)
  const legacy = bytesAt(9, NODES)
  for (let node = 0; node < NAMES.nodes; node++) {
    const written = texts[node]
    if (written !== undefined) {
      text.set(written, node * 4)
      textLength[node] = written.length
    }
    legacy[node] = nameIsLegacy(node) ? 1 : 0
  }
  exports.configure(LONGEST_ESCAPE, MAX_REFERENCE_DIGITS, NAMES.LONGEST_NAME, INTRODUCER.json, INTRODUCER.percent, INTRODUCER.html, tables.dense.sample, tables.dense.every)
  const base = exports.table(10)
  const pairsAt = exports.table(0)
  const tailsAt = exports.table(11)
  let loaded: Uint8Array | undefined
  let loadedPlus = false
  // the module's memory (new views after it grows)
  let heap = new Uint8Array(exports.memory.buffer)
  let ends = new Int32Array(exports.memory.buffer, tailsAt, LAYER_TAILS)
  return {
    layers(bytes, atEnd, plus, pairs, tails) {
      const length = bytes.length
      if (length > LONGEST_CHUNK) return undefined
      // the chunk, then (16-byte aligned) a position per introducer, and a list per syntax with room for each
      const needed = base + length + 16 + 16 * (length + 1)
      if (needed > heap.length) {
        const memory = exports.memory
        try {
          memory.grow(Math.ceil((needed - memory.buffer.byteLength) / 65536))
        } catch {
          // no more memory for the module: this chunk is checked in TypeScript
          return undefined
        }
        heap = new Uint8Array(memory.buffer)
        ends = new Int32Array(memory.buffer, tailsAt, LAYER_TAILS)
      }
      if (pairs !== loaded || plus !== loadedPlus) {
        // (what the module kept of escapes it read holds for these pairs and `plus` only)
        if (pairs !== loaded) heap.set(pairs, pairsAt)
        exports.forget()
        loaded = pairs
        loadedPlus = plus
      }
      heap.set(bytes, base)
      const answer = exports.layers(length, atEnd ? 1 : 0, plus ? 1 : 0)
      tails.set(ends)
      return answer
    }
  }
}
