import fc from "fast-check"
import { programArbitrary, runProgram, startFuzzer, disposeGate } from "./test/support/fuzzProgram.ts"
const fuzzer = await startFuzzer({ syntax: false })
const programs = fc.sample(programArbitrary(fuzzer.escapers), { numRuns: 300, seed: 3 })
for (const [i, p] of programs.entries()) { const v = await runProgram(fuzzer, p); if (v.length) { console.log(i, JSON.stringify(v)); console.log(JSON.stringify(p)) } }
await fuzzer.close(); await disposeGate()
