/**
 * Egress overhead: `SecretgateAgent` against a plain undici `Agent`, same loopback sink (in a child
 * process), interleaved rounds, in one process. Plain HTTP with `allowHttp` opt-in, so TLS cost
 * does not hide ours.
 *
 * 1. requests/s and p50/p99 with one header substitution per request (goal: ratio >= 0.95)
 * 2. a 10 MB streamed body with placeholders, MB/s (goal: >= 0.8 of pass-through)
 * 3. per-request cost with 10 vs 100,000 secrets in the organization, mount of 5 (goal: within 10%)
 */
import { Secretgate } from "@secretgate/core"
import { MemorySecretStore } from "@secretgate/memory"
import { SecretgateAgent } from "@secretgate/undici"
import { Agent, request } from "undici"
import { load, loopbackLookup, median, quantile, startSink, table } from "./support.js"

const ROUNDS = 5
const REQUESTS = 4000
const CONCURRENCY = 32

const makeOrganization = async (total: number) => {
  const gate = new Secretgate({ layer: MemorySecretStore.layer({ quota: 200_000 }), organizationId: "bench" })
  const mounted: Record<string, string> = {}
  for (let i = 0; i < 5; i++) {
    await gate.secret.create({ name: `mounted_${i}`, value: `value-${i}-${"v".repeat(40)}`, hosts: ["sink.bench.test", "*.example.com"] })
    mounted[`SECRET_${i}`] = `mounted_${i}`
  }
  // the rest of the organization, created in batches through the service
  const batch = 500
  for (let start = 5; start < total; start += batch) {
    await Promise.all(
      Array.from({ length: Math.min(batch, total - start) }, (_, k) =>
        gate.secret.create({ name: `other_${start + k}`, value: `other-value-${start + k}`, hosts: [`h${start + k}.example.com`] }))
    )
  }
  const mount = await gate.mount(mounted)
  const agent = new SecretgateAgent({ resolver: await gate.resolver(mount), allowHttp: ["sink.bench.test"], agentOptions: { connections: CONCURRENCY, connect: loopbackLookup as never } })
  return { gate, mount, agent }
}

export default async () => {
  const sink = await startSink()
  const plain = new Agent({ connections: CONCURRENCY, connect: loopbackLookup as never })
  const target = `http://sink.bench.test:${sink.port}`
  const small = await makeOrganization(10)
  const call = (dispatcher: Agent | SecretgateAgent, header: string) => async () => {
    const response = await request(`${target}/v1/ping`, { headers: { authorization: `Bearer ${header}` }, dispatcher })
    await response.body.dump()
  }
  const placeholder = small.mount.env.SECRET_0!

  // warm-up
  await load(1000, CONCURRENCY, call(plain, placeholder))
  await load(1000, CONCURRENCY, call(small.agent, placeholder))

  // 1. header substitution
  const plainRuns: Array<Awaited<ReturnType<typeof load>>> = []
  const gateRuns: Array<Awaited<ReturnType<typeof load>>> = []
  for (let round = 0; round < ROUNDS; round++) {
    plainRuns.push(await load(REQUESTS, CONCURRENCY, call(plain, placeholder)))
    gateRuns.push(await load(REQUESTS, CONCURRENCY, call(small.agent, placeholder)))
  }
  const summary = (runs: typeof plainRuns) => ({
    rps: median(runs.map((r) => r.rps)),
    p50: median(runs.map((r) => quantile(r.latencies, 0.5))),
    p99: median(runs.map((r) => quantile(r.latencies, 0.99))),
    failures: runs.reduce((n, r) => n + r.failures, 0)
  })
  const p = summary(plainRuns)
  const g = summary(gateRuns)
  console.log(`header substitution: ${ROUNDS} interleaved rounds x ${REQUESTS} requests, concurrency ${CONCURRENCY}, medians`)
  table(["dispatcher", "req/s", "p50 ms", "p99 ms", "failed"], [
    ["plain Agent", p.rps, p.p50, p.p99, p.failures],
    ["SecretgateAgent", g.rps, g.p50, g.p99, g.failures],
    ["ratio (goal >= 0.95)", (g.rps / p.rps).toFixed(3), (p.p50 / g.p50).toFixed(3), (p.p99 / g.p99).toFixed(3), ""]
  ])

  // 2. 10 MB streamed body
  const chunk = Buffer.alloc(64 * 1024, ".")
  const body = (withPlaceholders: boolean) =>
    (async function*() {
      for (let i = 0; i < 160; i++) {
        yield withPlaceholders && i % 16 === 0 ? Buffer.concat([chunk, Buffer.from(`key=${placeholder};`)]) : chunk
      }
    })()
  const upload = async (dispatcher: Agent | SecretgateAgent) => {
    const t0 = performance.now()
    const response = await request(`${target}/upload`, { method: "POST", body: body(true) as never, dispatcher })
    await response.body.dump()
    return (10 / (performance.now() - t0)) * 1000
  }
  const plainMBps: Array<number> = []
  const gateMBps: Array<number> = []
  await upload(plain)
  await upload(small.agent)
  for (let round = 0; round < 8; round++) {
    plainMBps.push(await upload(plain))
    gateMBps.push(await upload(small.agent))
  }
  console.log(`\n10 MB streamed body (160 x 64 KiB chunks, 10 placeholders), 8 interleaved rounds, medians`)
  table(["dispatcher", "MB/s"], [
    ["plain Agent (pass-through)", median(plainMBps)],
    ["SecretgateAgent", median(gateMBps)],
    ["ratio (goal >= 0.8)", (median(gateMBps) / median(plainMBps)).toFixed(3)]
  ])

  // 3. organization size
  const large = await makeOrganization(100_000)
  const largePlaceholder = large.mount.env.SECRET_0!
  await load(1000, CONCURRENCY, call(large.agent, largePlaceholder))
  const smallRuns: Array<number> = []
  const largeRuns: Array<number> = []
  for (let round = 0; round < ROUNDS; round++) {
    smallRuns.push((await load(REQUESTS, CONCURRENCY, call(small.agent, placeholder))).rps)
    largeRuns.push((await load(REQUESTS, CONCURRENCY, call(large.agent, largePlaceholder))).rps)
  }
  console.log(`\norganization size (mount of 5), ${ROUNDS} interleaved rounds, medians`)
  table(["organization", "req/s"], [
    ["10 secrets", median(smallRuns)],
    ["100,000 secrets", median(largeRuns)],
    ["ratio (goal within 10%)", (median(largeRuns) / median(smallRuns)).toFixed(3)]
  ])

  await Promise.all([plain.close(), small.agent.close(), large.agent.close()])
  await Promise.all([small.gate.dispose(), large.gate.dispose()])
  sink.stop()
}
