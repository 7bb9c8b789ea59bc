import { runProgram, startFuzzer, disposeGate } from "./test/support/fuzzProgram.ts"
import { readFileSync } from "node:fs"
const fuzzer = await startFuzzer({ syntax: false })
const p = JSON.parse(readFileSync(process.argv[2]!, "utf8"))
const t = Date.now(); const v = await runProgram(fuzzer, p); console.log(Date.now() - t, JSON.stringify(v, null, 1))
for (const a of fuzzer.upstreams.arrivals) console.log(a.destination.name, a.method, a.url.slice(0, 100), a.complete, a.body.length)
await fuzzer.close(); await disposeGate()
