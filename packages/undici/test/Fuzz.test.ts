/**
 * The egress fuzzer, bounded: a few dozen random programs against real loopback servers (see
 * `support/fuzzProgram.ts` for the programs and invariants). `pnpm fuzz --count N --seed S` runs a
 * long campaign. A failure prints the seed and the shrunk program; rerun it with
 * `SECRETGATE_FUZZ_SEED=<seed>` (and `SECRETGATE_FUZZ_PATH=<path>` to go straight to it).
 */
import fc from "fast-check"
import { afterAll, beforeAll, describe, it } from "vitest"
import { disposeGate, type Fuzzer, programArbitrary, runProgram, startFuzzer } from "./support/fuzzProgram.js"

const RUNS = Number(process.env.SECRETGATE_FUZZ_RUNS ?? 30)
const SEED = process.env.SECRETGATE_FUZZ_SEED === undefined ? Date.now() % 2 ** 31 : Number(process.env.SECRETGATE_FUZZ_SEED)
const PATH = process.env.SECRETGATE_FUZZ_PATH

let fuzzer: Fuzzer
beforeAll(async () => {
  fuzzer = await startFuzzer({ syntax: true })
})
afterAll(async () => {
  await fuzzer.close()
  await disposeGate()
})

describe("egress fuzzer (bounded)", () => {
  it(`${RUNS} random programs keep every invariant (seed ${SEED})`, async () => {
    await fc.assert(
      fc.asyncProperty(programArbitrary(fuzzer.escapers), async (program) => {
        const violations = await runProgram(fuzzer, program)
        if (violations.length > 0) throw new Error(violations.map((v) => `${v.invariant}: ${v.detail}`).join("\n"))
      }),
      { numRuns: RUNS, seed: SEED, ...(PATH === undefined ? {} : { path: PATH }), endOnFailure: false }
    )
  }, 300_000)
})
