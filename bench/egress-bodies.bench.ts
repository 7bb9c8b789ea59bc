/**
 * Request bodies of each shape through `SecretgateAgent` against a plain undici `Agent`: client CPU
 * per request (µs, `process.cpuUsage` around interleaved rounds: steadier than req/s on a shared
 * machine), a 16 KiB body holding one placeholder, over plain HTTP with `allowHttp` (no TLS cost to
 * hide ours), to the same loopback sink in a child process.
 */
import { Secretgate } from "@secretgate/core"
import { MemorySecretStore } from "@secretgate/memory"
import { SecretgateAgent } from "@secretgate/undici"
import { Buffer } from "node:buffer"
import { Agent, FormData, request } from "undici"
import { loopbackLookup, median, startSink, table } from "./support.js"

const ROUNDS = 7
const REQUESTS = 300
const HOST = "upstream.test"

const SHAPES: ReadonlyArray<readonly [string, (text: string) => unknown]> = [
  ["string", (text) => text],
  ["Buffer", (text) => Buffer.from(text)],
  ["Blob", (text) => new Blob([text])],
  ["FormData", (text) => {
    const form = new FormData()
    form.append("field", text)
    return form
  }],
  ["async generator", (text) => (async function*() {
    yield Buffer.from(text)
  })()]
]

/** CPU µs per request of `REQUESTS` sequential requests. */
const cpuPerRequest = async (send: () => Promise<void>): Promise<number> => {
  const before = process.cpuUsage()
  for (let i = 0; i < REQUESTS; i++) await send()
  const used = process.cpuUsage(before)
  return (used.user + used.system) / REQUESTS
}

export default async () => {
  const sink = await startSink(false)
  const gate = new Secretgate({ layer: MemorySecretStore.layer(), organizationId: "bench" })
  await gate.secret.create({ name: "key", value: `value-${"v".repeat(40)}`, hosts: [HOST] })
  const mount = await gate.mount({ KEY: "key" })
  const agentOptions = { connect: loopbackLookup as never }
  const agent = new SecretgateAgent({ resolver: await gate.resolver(mount), allowHttp: [HOST], agentOptions })
  const plain = new Agent(agentOptions)
  const url = `http://${HOST}:${sink.port}/`
  const text = `${"x".repeat(8 * 1024)}key=${mount.env.KEY};${"y".repeat(8 * 1024)}`
  const rows: Array<Array<string>> = []
  try {
    for (const [name, make] of SHAPES) {
      const send = (dispatcher: Agent | SecretgateAgent) => async () => {
        const response = await request(url, { method: "POST", body: make(text) as string, dispatcher })
        await response.body.dump()
      }
      await cpuPerRequest(send(plain))
      await cpuPerRequest(send(agent))
      const plains: Array<number> = []
      const agents: Array<number> = []
      for (let round = 0; round < ROUNDS; round++) {
        plains.push(await cpuPerRequest(send(plain)))
        agents.push(await cpuPerRequest(send(agent)))
      }
      const p = median(plains)
      const a = median(agents)
      rows.push([name, p.toFixed(0), a.toFixed(0), (a - p).toFixed(0), (a / p).toFixed(2)])
    }
  } finally {
    await agent.close()
    await plain.close()
    await gate.dispose()
    sink.stop()
  }
  table(["16 KiB body, one placeholder", "plain Agent µs/req", "SecretgateAgent µs/req", "over plain µs", "ratio"], rows)
}
