/**
 * The readings automaton's walk (`Readings.forward` of `readings.ts`), compiled: `wasm/walk.c`,
 * built into `walkWasm.ts`. Each fresh automaton has an instance of its own, whose memory holds the
 * automaton's table (built in TypeScript, written through `table`) and, per state, the step last
 * taken from it. A dense echo walks a table of some megabytes; compiled, a byte costs about half
 * what it costs in TypeScript (`bench/egress.bench.ts`). The TypeScript walk stays, the reference
 * (`ScrubberReadings.test.ts` compares the two) and the fallback where WebAssembly is not
 * available.
 */
import { Buffer } from "node:buffer"
import { WALK_WASM } from "./walkWasm.js"

/** What this file uses of WebAssembly (the TypeScript library of this package does not declare it). */
interface Wasm {
  readonly Module: new (bytes: Uint8Array) => unknown
  readonly Instance: new (module: unknown) => { readonly exports: unknown }
}

interface Exports {
  readonly memory: { readonly buffer: ArrayBuffer; grow(pages: number): number }
  readonly address: (which: number) => number
  readonly configure: (classes: number) => void
  readonly walk: (state: number, from: number, end: number) => number
}

export interface Walk {
  /**
   * The table, at least `entries` steps long, through which `readings.ts` writes the steps it
   * builds (a step not built is 0). A view made before is stale once this is asked again.
   */
  table(entries: number): Uint16Array
  /**
   * Walks `bytes[from, end)` from `state`, pushing (state, end) onto `found` for each state entered
   * that completes matches; returns where it stopped: `end`, or the byte whose step is not built,
   * with the state there in `state`.
   */
  walk(bytes: Uint8Array, from: number, end: number, state: number, found: Array<number>): number
  /** The state where the last walk stopped. */
  readonly state: number
}

/** The compiled module, once (`null`: this runtime cannot compile it). */
let module: unknown = undefined

/** A walk over a fresh table for bytes of `classOf` (`width` classes), or `undefined` where WebAssembly is not available. */
export const makeWalk = (classOf: Uint8Array, width: number): Walk | undefined => {
  let exports: Exports
  try {
    const wasm = (globalThis as unknown as { readonly WebAssembly: Wasm }).WebAssembly
    if (module === null) return undefined
    module ??= new wasm.Module(Buffer.from(WALK_WASM, "base64"))
    exports = new wasm.Instance(module).exports as Exports
  } catch {
    module = null
    return undefined
  }
  const memory = exports.memory
  const tableAt = exports.address(5)
  const piece = exports.address(4)
  const bytesAt = exports.address(1)
  new Uint8Array(memory.buffer, exports.address(0), 256).set(classOf)
  exports.configure(width)
  // views of the module's memory (made again when it grows)
  let input = new Uint8Array(memory.buffer, bytesAt, piece)
  let found = new Int32Array(memory.buffer, exports.address(2), 2 * piece)
  let result = new Int32Array(memory.buffer, exports.address(3), 2)
  let table = new Uint16Array(memory.buffer, tableAt, 0)
  const walk: Walk = {
    state: 0,
    table(entries) {
      if (entries <= table.length) return table
      const needed = tableAt + 2 * entries
      // (memory the module never had is zero: a step not built)
      if (needed > memory.buffer.byteLength) memory.grow(Math.ceil((needed - memory.buffer.byteLength) / 65536))
      input = new Uint8Array(memory.buffer, bytesAt, piece)
      found = new Int32Array(memory.buffer, exports.address(2), 2 * piece)
      result = new Int32Array(memory.buffer, exports.address(3), 2)
      table = new Uint16Array(memory.buffer, tableAt, entries)
      return table
    },
    walk(bytes, from, end, state, into) {
      let at = from
      while (at < end) {
        const to = Math.min(end, at + piece)
        input.set(bytes.subarray(at, to))
        const stopped = exports.walk(state, 0, to - at)
        state = result[0]!
        for (let k = 0, count = result[1]!; k < count; k += 2) into.push(found[k]!, found[k + 1]! + at)
        at += stopped
        if (at < to) break
      }
      ;(walk as { state: number }).state = state
      return at
    }
  }
  return walk
}
