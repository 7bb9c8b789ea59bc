/**
 * Egress overhead: `SecretgateAgent` against a plain undici `Agent`, same loopback sink (a child
 * process, so it does not share the client's event loop), interleaved rounds, one process.
 *
 * 1. requests/s and p50/p99 with one header substitution per request (goal: ratio >= 0.95), over
 *    HTTPS (the real case) and over plain HTTP with `allowHttp` (no TLS cost to hide ours)
 * 2. a 10 MB streamed body with placeholders, MB/s (goal: >= 0.8 of pass-through)
 * 3. WebSocket messages, MB/s, with every frame scrubbed (`webSockets: true`) against a raw socket
 * 4. per-request cost with 10 vs 100,000 secrets in the organization, mount of 5 (goal: within 10%)
 *
 * Ratios are medians of per-round ratios: each round runs both dispatchers back to back, so slow
 * phases of this shared machine hit both.
 */
import { Secretgate } from "@secretgate/core"
import { MemorySecretStore } from "@secretgate/memory"
import { SecretgateAgent } from "@secretgate/undici"
import { readFileSync } from "node:fs"
import { Agent, request, upgrade } from "undici"
import { load, loopbackLookup, median, quantile, startSink, table, TLS_DIR } from "./support.js"

const ROUNDS = 8
const REQUESTS = 3000
const CONCURRENCY = 32
const HOST = "upstream.test"
const UPLOADS = 10
const STREAM_ROUNDS = 15

const connect = { ...loopbackLookup, ca: readFileSync(`${TLS_DIR}/ca.pem`) }
const agentOptions = { connections: CONCURRENCY, connect: connect as never }

const makeOrganization = async (total: number) => {
  const gate = new Secretgate({ layer: MemorySecretStore.layer({ quota: 200_000 }), organizationId: "bench" })
  const mounted: Record<string, string> = {}
  for (let i = 0; i < 5; i++) {
    await gate.secret.create({ name: `mounted_${i}`, value: `value-${i}-${"v".repeat(40)}`, hosts: [HOST, "*.example.com"] })
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
  const agent = new SecretgateAgent({ resolver: await gate.resolver(mount), allowHttp: [HOST], agentOptions })
  return { gate, mount, agent }
}

type Dispatcher = Agent | SecretgateAgent
type Run = Awaited<ReturnType<typeof load>>

const interleave = async (a: () => Promise<Run>, b: () => Promise<Run>) => {
  const as: Array<Run> = []
  const bs: Array<Run> = []
  await a()
  await b()
  for (let round = 0; round < ROUNDS; round++) {
    as.push(await a())
    bs.push(await b())
  }
  return { as, bs, ratio: median(as.map((run, i) => bs[i]!.rps / run.rps)) }
}

const summary = (runs: ReadonlyArray<Run>) => ({
  rps: median(runs.map((r) => r.rps)),
  p50: median(runs.map((r) => quantile(r.latencies, 0.5))),
  p99: median(runs.map((r) => quantile(r.latencies, 0.99))),
  failures: runs.reduce((n, r) => n + r.failures, 0)
})

export default async () => {
  const small = await makeOrganization(10)
  const placeholder = small.mount.env.SECRET_0!
  const plain = new Agent(agentOptions)
  const call = (dispatcher: Dispatcher, url: string, header: string) => () =>
    load(REQUESTS, CONCURRENCY, async () => {
      const response = await request(url, { headers: { authorization: `Bearer ${header}` }, dispatcher })
      await response.body.dump()
    })

  // 1. header substitution, over HTTPS and plain HTTP
  const rows: Array<Array<string | number>> = []
  const sinks = { https: await startSink(true), http: await startSink(false) }
  for (const scheme of ["https", "http"] as const) {
    const url = `${scheme}://${HOST}:${sinks[scheme].port}/v1/ping`
    const result = await interleave(call(plain, url, placeholder), call(small.agent, url, placeholder))
    const p = summary(result.as)
    const g = summary(result.bs)
    rows.push(
      [`${scheme}: plain Agent`, p.rps, p.p50, p.p99, p.failures, ""],
      [`${scheme}: SecretgateAgent`, g.rps, g.p50, g.p99, g.failures, result.ratio.toFixed(3)]
    )
  }
  console.log(`header substitution: ${ROUNDS} interleaved rounds x ${REQUESTS} requests, concurrency ${CONCURRENCY}, medians`)
  table(["dispatcher", "req/s", "p50 ms", "p99 ms", "failed", "req/s ratio (goal >= 0.95)"], rows)

  // 2. 10 MB streamed body
  const chunk = Buffer.alloc(64 * 1024, ".")
  const body = () =>
    (async function*() {
      for (let i = 0; i < 160; i++) yield i % 16 === 0 ? Buffer.concat([chunk, Buffer.from(`key=${placeholder};`)]) : chunk
    })()
  // one measurement is 10 uploads back to back (100 MB), so that a round is long enough to time
  const upload = async (dispatcher: Dispatcher) => {
    const t0 = performance.now()
    for (let i = 0; i < UPLOADS; i++) {
      const response = await request(`http://${HOST}:${sinks.http.port}/upload`, { method: "POST", body: body() as never, dispatcher })
      await response.body.dump()
    }
    return ((UPLOADS * 10) / (performance.now() - t0)) * 1000
  }
  await upload(plain)
  await upload(small.agent)
  const mbps: Array<readonly [number, number]> = []
  for (let round = 0; round < STREAM_ROUNDS; round++) mbps.push([await upload(plain), await upload(small.agent)])
  console.log(`\n10 MB streamed bodies over http (160 x 64 KiB chunks, 10 placeholders; ${UPLOADS} uploads per measurement), ${STREAM_ROUNDS} interleaved rounds, medians`)
  table(["dispatcher", "MB/s", "ratio (goal >= 0.8)"], [
    ["plain Agent (pass-through)", median(mbps.map(([p]) => p)), ""],
    ["SecretgateAgent", median(mbps.map(([, g]) => g)), median(mbps.map(([p, g]) => g / p)).toFixed(3)]
  ])

  // 3. WebSocket: a server streams binary messages; scrubbed frames (webSockets: true) against the
  //    plain socket of an Agent
  const wsAgent = new SecretgateAgent({ resolver: await small.gate.resolver(small.mount), webSockets: true, agentOptions })
  const messages = 20_000
  // every 10th message ends with the mounted value, which the agent must scrub
  const echo = encodeURIComponent(`value-0-${"v".repeat(40)}`)
  const receive = async (dispatcher: Dispatcher) => {
    const t0 = performance.now()
    const { socket } = await upgrade(`https://${HOST}:${sinks.https.port}/ws?count=${messages}&size=1024&every=10&echo=${echo}`, {
      dispatcher,
      protocol: "websocket",
      headers: { authorization: `Bearer ${placeholder}`, "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==", "sec-websocket-version": "13" }
    })
    let bytes = 0
    let values = 0
    await new Promise<void>((resolve, reject) => {
      socket.on("data", (chunk: Buffer) => {
        bytes += chunk.length
        // (a count per chunk; a value split across two chunks is not counted, which is fine here)
        if (chunk.includes("v".repeat(40))) values++
      })
      socket.on("end", () => resolve())
      socket.on("error", reject)
    })
    socket.destroy()
    if (bytes < messages * 1000) throw new Error(`only ${bytes} bytes arrived`)
    if (dispatcher === wsAgent && values > 0) throw new Error("a value came through the agent unscrubbed")
    if (dispatcher === plain && values === 0) throw new Error("the sink sent no value: the scrubbing path was not measured")
    return (bytes / 1e6 / (performance.now() - t0)) * 1000
  }
  await receive(plain)
  await receive(wsAgent)
  const wsRounds: Array<readonly [number, number]> = []
  for (let round = 0; round < STREAM_ROUNDS; round++) wsRounds.push([await receive(plain), await receive(wsAgent)])
  console.log(`\nWebSocket over https: ${messages} binary messages of 1 KiB per measurement, every 10th ending in the value, ${STREAM_ROUNDS} interleaved rounds, medians`)
  table(["dispatcher", "MB/s", "ratio"], [
    ["plain Agent (raw socket)", median(wsRounds.map(([p]) => p)), ""],
    ["SecretgateAgent (frames scrubbed)", median(wsRounds.map(([, g]) => g)), median(wsRounds.map(([p, g]) => g / p)).toFixed(3)]
  ])

  // 4. organization size
  const large = await makeOrganization(100_000)
  const url = `http://${HOST}:${sinks.http.port}/v1/ping`
  const sizes = await interleave(call(small.agent, url, placeholder), call(large.agent, url, large.mount.env.SECRET_0!))
  console.log(`\norganization size (mount of 5, http), ${ROUNDS} interleaved rounds, medians`)
  table(["organization", "req/s", "ratio (goal 0.9-1.1)"], [
    ["10 secrets", summary(sizes.as).rps, ""],
    ["100,000 secrets", summary(sizes.bs).rps, sizes.ratio.toFixed(3)]
  ])

  await Promise.all([plain.close(), small.agent.close(), large.agent.close(), wsAgent.close()])
  await Promise.all([small.gate.dispose(), large.gate.dispose()])
  sinks.https.stop()
  sinks.http.stop()
}
