/**
 * A long egress-fuzzing campaign: `pnpm fuzz [--count N] [--seed S] [--syntax | --current] [--path P]`.
 *
 * Runs N random programs (default 1,000) from seed S (default: from the clock) against real
 * loopback servers, printing progress, and at the end the count, the seed and what was found: on a
 * failure, the invariant, the details and the shrunk program, with the seed and path that replay
 * it (`--seed S --path P`). Exit code 0 when every program kept every invariant, 1 otherwise.
 *
 * `--syntax` (the default) has upstreams echo in every escape syntax the scrubber claims (other
 * languages' JSON, percent and HTML spellings); `--current` only in JavaScript's own encoders'.
 */
import fc from "fast-check"
import { parseArgs } from "node:util"
import { disposeGate, programArbitrary, runProgram, startFuzzer } from "./support/fuzzProgram.js"

const { values: args } = parseArgs({
  options: {
    count: { type: "string", default: "1000" },
    seed: { type: "string" },
    path: { type: "string" },
    syntax: { type: "boolean", default: false },
    current: { type: "boolean", default: false }
  }
})
const count = Number(args.count)
const seed = args.seed === undefined ? Date.now() % 2 ** 31 : Number(args.seed)
if (!Number.isInteger(count) || count < 1 || !Number.isInteger(seed)) {
  console.error("usage: pnpm fuzz [--count N] [--seed S] [--path P] [--syntax | --current] (N and S integers)")
  process.exit(2)
}
const syntax = !args.current

const fuzzer = await startFuzzer({ syntax })
console.log(`egress fuzzer: ${count} programs, seed ${seed}, ${syntax ? "every escape syntax" : "JavaScript's encoders only"}`)
const started = Date.now()
let ran = 0
const result = await fc.check(
  fc.asyncProperty(programArbitrary(fuzzer.escapers), async (program) => {
    const violations = await runProgram(fuzzer, program)
    if (++ran % 500 === 0) console.log(`  ${ran} programs, ${((Date.now() - started) / 1000).toFixed(0)} s`)
    if (violations.length > 0) throw new Error(violations.map((v) => `${v.invariant}: ${v.detail}`).join("\n"))
  }),
  { numRuns: count, seed, ...(args.path === undefined ? {} : { path: args.path }) }
)
await fuzzer.close()
await disposeGate()
const seconds = ((Date.now() - started) / 1000).toFixed(0)
if (!result.failed) {
  console.log(`egress fuzzer: ${result.numRuns} programs kept every invariant (seed ${seed}, ${seconds} s)`)
  process.exit(0)
}
console.log(fc.defaultReportMessage(result))
console.log(`\nwhat was found:\n${result.errorInstance instanceof Error ? result.errorInstance.message : String(result.errorInstance)}\n`)
console.log(`egress fuzzer: FOUND a violation after ${result.numRuns} programs (seed ${seed}, path ${result.counterexamplePath}, ${seconds} s)`)
process.exit(1)
