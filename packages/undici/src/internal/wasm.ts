/**
 * Instances of the scrubber's WebAssembly modules (`clean.ts`, `walk.ts`): each module compiled
 * once from its base64 text, an instance made per call.
 */
import { Buffer } from "node:buffer"

/** What the modules use of WebAssembly (the TypeScript library of this package does not declare it). */
interface Wasm {
  readonly Module: new (bytes: Uint8Array) => unknown
  readonly Instance: new (module: unknown) => { readonly exports: unknown }
}

/** A module's memory, as its exports give it. */
export interface Memory {
  readonly buffer: ArrayBuffer
  grow(pages: number): number
}

/** Each module by its text, once compiled (`null`: this runtime cannot compile it, e.g. no WebAssembly or no SIMD). */
const modules = new Map<string, unknown>()

/**
 * A new instance of the module `base64` holds, or `undefined` where this runtime cannot compile it
 * or has no memory for an instance now.
 */
export const instantiate = <Exports>(base64: string): Exports | undefined => {
  let module = modules.get(base64)
  if (module === null) return undefined
  const wasm = (globalThis as unknown as { readonly WebAssembly?: Wasm }).WebAssembly
  if (module === undefined) {
    try {
      module = new wasm!.Module(Buffer.from(base64, "base64"))
    } catch {
      module = null
    }
    modules.set(base64, module)
    if (module === null) return undefined
  }
  try {
    return new wasm!.Instance(module).exports as Exports
  } catch {
    return undefined
  }
}
