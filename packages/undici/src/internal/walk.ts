/**
 * The readings automaton's walk (`Readings.forward` of `readings.ts`), compiled: `wasm/walk.c`,
 * built into `walkWasm.ts`. Each fresh automaton has an instance of its own, whose memory holds the
 * automaton's table (built in TypeScript, written through `table`) and, per state, the step last
 * taken from it. A dense echo walks a table of some megabytes; compiled, a byte costs about half
 * what it costs in TypeScript (`bench/egress.bench.ts`). The TypeScript walk stays, the reference
 * (`ScrubberReadings.test.ts` compares the two) and the fallback where WebAssembly is not
 * available.
 */
import { instantiate, type Memory } from "./wasm.js"
import { WALK_WASM } from "./walkWasm.js"

interface Exports {
  readonly memory: Memory
  readonly address: (which: number) => number
  readonly configure: (classes: number) => void
  readonly walk: (state: number, from: number, end: number) => number
}

export interface Walk {
  /**
   * The table, at least `entries` steps long, through which `readings.ts` writes the steps it
   * builds (a step not built is 0), or `undefined` where the module's memory cannot grow to hold
   * it. A view made before is stale once this is asked again.
   */
  table(entries: number): Uint16Array | undefined
  /**
   * Walks `bytes[0, end)` from `state`, pushing (state, end) onto `found` for each state entered
   * that completes matches; at a step not built yet, asks `missing` (the state there and the
   * byte's index) to build it into the table, and takes it, or stops where `missing` answers
   * false. Returns the state at the end, or -1 where it stopped.
   */
  walk(bytes: Uint8Array, end: number, state: number, found: Array<number>, missing: (state: number, at: number) => boolean): number
}

/** A walk over a fresh table for bytes of `classOf` (`width` classes), or `undefined` where WebAssembly is not available. */
export const makeWalk = (classOf: Uint8Array, width: number): Walk | undefined => {
  const exports = instantiate<Exports>(WALK_WASM)
  if (exports === undefined) return undefined
  const memory = exports.memory
  const tableAt = exports.address(5)
  const piece = exports.address(4)
  new Uint8Array(memory.buffer, exports.address(0), 256).set(classOf)
  exports.configure(width)
  // views of the module's memory (made again when it grows)
  let input: Uint8Array
  let found: Int32Array
  let result: Int32Array
  let table: Uint16Array
  const views = (entries: number) => {
    input = new Uint8Array(memory.buffer, exports.address(1), piece)
    found = new Int32Array(memory.buffer, exports.address(2), 2 * piece)
    result = new Int32Array(memory.buffer, exports.address(3), 2)
    table = new Uint16Array(memory.buffer, tableAt, entries)
  }
  views(0)
  return {
    table(entries) {
      if (entries <= table.length) return table
      const needed = tableAt + 2 * entries
      // (memory the module never had is zero: a step not built)
      if (needed > memory.buffer.byteLength) {
        try {
          memory.grow(Math.ceil((needed - memory.buffer.byteLength) / 65536))
        } catch {
          return undefined
        }
      }
      views(entries)
      return table
    },
    walk(bytes, end, state, into, missing) {
      for (let at = 0; at < end; at += piece) {
        const length = Math.min(piece, end - at)
        input.set(bytes.subarray(at, at + length))
        // where a step was last built in this piece (-1: none)
        let built = -1
        for (let from = 0; ;) {
          const stopped = exports.walk(state, from, length)
          state = result[0]!
          for (let k = 0, count = result[1]!; k < count; k += 2) into.push(found[k]!, found[k + 1]! + at)
          if (stopped === length) break
          // (a step just built and not taken: the table written is not the one walked; never go round again)
          if (stopped === built) throw new Error("the compiled walk's table does not hold the step just built")
          if (!missing(state, at + stopped)) return -1
          // the step is in the table now (the memory may have grown: the views are new, the piece is still in it)
          built = from = stopped
        }
      }
      return state
    }
  }
}
