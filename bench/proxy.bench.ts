/**
 * The proxy: requests through `SecretgateProxy` (one header substitution each) against direct
 * undici (the limit), a bare CONNECT tunnel, a bare TLS-terminate-and-re-encrypt hop (the ceiling
 * for any intercepting proxy) and mitmproxy with a substitution addon (skipped, saying so, when
 * `mitmdump` is not installed). The sink and every hop run in processes of their own; the client
 * (undici `ProxyAgent`, keep-alive, 32 in flight) runs here. Rounds are interleaved.
 *
 * 1. requests/s, and the ratios: ours / mitmproxy (goal >= 4), ours / bare TLS hop (goal >= 0.8;
 *    also read as CPU per request, steadier on a busy machine)
 * 2. CPU per request of the hop, µs, from /proc/<pid>/stat (goal: ours <= 1/5 of mitmproxy's)
 * 3. a 10 MB streamed upload with a placeholder, MB/s (goal: ours >= 0.5 of the bare tunnel)
 * 4. a new host's first certificate (mint + TLS context), ms (goal < 5 ms)
 */
import { CertificateAuthority } from "@secretgate/proxy"
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { once } from "node:events"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Readable } from "node:stream"
import * as tls from "node:tls"
import { fileURLToPath } from "node:url"
import { Agent, type Dispatcher, ProxyAgent, request } from "undici"
import { load, median, quantile, startSink, table, TLS_DIR } from "./support.js"

const ROUNDS = 5
const REQUESTS = 2000
const CONCURRENCY = 32
const UPLOAD_BYTES = 10 * 1024 * 1024
const UPLOAD_ROUNDS = 5
const VALUE = `sk-bench-${"v".repeat(40)}`
const TICKS_PER_SECOND = Number(spawnSync("getconf", ["CLK_TCK"]).stdout?.toString().trim() || 100)

interface Hop {
  readonly name: string
  readonly pid: number | undefined
  readonly dispatcher: Dispatcher
  /** The placeholder to send (`VALUE` where the hop substitutes nothing: the same bytes either way). */
  readonly header: string
  stop(): Promise<void>
}

/** CPU seconds a process has used (user + system), from /proc. */
const cpuOf = (pid: number | undefined): number => {
  if (pid === undefined) return Number.NaN
  try {
    const fields = readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]!.split(" ")
    return (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND
  } catch {
    return Number.NaN
  }
}

const children: Array<ChildProcess> = []
process.once("exit", () => {
  for (const child of children) child.kill()
})

/** Spawns a process and waits for a stdout line that says it is ready; its output is drained after. */
const spawnHop = (command: string, args: ReadonlyArray<string>, ready: (line: string) => boolean): Promise<{ child: ChildProcess; line: string }> =>
  new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ["ignore", "pipe", "inherit"] })
    children.push(child)
    let buffered = ""
    let done = false
    child.stdout!.on("data", (chunk: Buffer) => {
      if (done) return
      buffered += String(chunk)
      const line = buffered.split("\n").find(ready)
      if (line === undefined) return
      done = true
      resolve({ child, line })
    })
    child.once("exit", () => {
      if (!done) reject(new Error(`${command} exited before it was ready`))
    })
  })

const stopChild = async (child: ChildProcess) => {
  child.kill()
  if (child.exitCode === null) await once(child, "exit")
}

const hopScript = fileURLToPath(new URL("./proxyHop.ts", import.meta.url))
/** The hops run the packages as built, as this process does (`published.mjs`). */
const published = fileURLToPath(new URL("./published.mjs", import.meta.url))

const nodeHop = async (name: string, kind: string): Promise<Hop> => {
  const { child, line } = await spawnHop(process.execPath, ["--import", "tsx", "--import", published, hopScript, kind, TLS_DIR, VALUE], (l) => l.startsWith("{"))
  const started = JSON.parse(line) as { port: number; ca: string; proxyUrl?: string; placeholder?: string }
  const dispatcher = new ProxyAgent({
    uri: started.proxyUrl ?? `http://127.0.0.1:${started.port}`,
    requestTls: { ca: [started.ca, readFileSync(`${TLS_DIR}/ca.pem`, "utf8")] },
    connections: CONCURRENCY
  } as ProxyAgent.Options)
  return {
    name,
    pid: child.pid,
    dispatcher,
    header: started.placeholder ?? VALUE,
    stop: async () => {
      await dispatcher.close()
      await stopChild(child)
    }
  }
}

const MITM_ADDON = `
from mitmproxy import http
PLACEHOLDER = "sg_secret_mitmmitmmitmmitmmitmmitmmitmmit"
VALUE = ${JSON.stringify(VALUE)}
def request(flow: http.HTTPFlow) -> None:
    value = flow.request.headers.get("authorization")
    if value is not None and PLACEHOLDER in value:
        flow.request.headers["authorization"] = value.replace(PLACEHOLDER, VALUE)
`

const mitmHop = async (directory: string): Promise<Hop | undefined> => {
  if (spawnSync("mitmdump", ["--version"], { stdio: "ignore" }).status !== 0) return undefined
  writeFileSync(join(directory, "addon.py"), MITM_ADDON)
  const port = 20000 + Math.floor(Math.random() * 20000)
  const { child } = await spawnHop(
    "mitmdump",
    [
      "--listen-host", "127.0.0.1", "--listen-port", String(port), "--set", `confdir=${directory}`, "-s", join(directory, "addon.py"),
      "--set", `ssl_verify_upstream_trusted_ca=${TLS_DIR}/ca.pem`, "--set", "stream_large_bodies=1m", "--set", "flow_detail=0"
    ],
    (line) => line.includes("listening")
  ).catch(() => ({ child: undefined as never }))
  if (child === undefined) return undefined
  const dispatcher = new ProxyAgent({
    uri: `http://127.0.0.1:${port}`,
    requestTls: { ca: [readFileSync(join(directory, "mitmproxy-ca-cert.pem"), "utf8")] },
    connections: CONCURRENCY
  } as ProxyAgent.Options)
  return {
    name: "mitmproxy (addon substitutes)",
    pid: child.pid,
    dispatcher,
    header: "sg_secret_mitmmitmmitmmitmmitmmitmmitmmit",
    stop: async () => {
      await dispatcher.close()
      await stopChild(child)
    }
  }
}

/** One round of requests through a hop: requests/s and the hop's CPU per request. */
const round = async (hop: Hop, url: string) => {
  const cpu = cpuOf(hop.pid)
  const run = await load(REQUESTS, CONCURRENCY, async () => {
    const response = await request(url, { headers: { authorization: `Bearer ${hop.header}` }, dispatcher: hop.dispatcher })
    await response.body.dump()
    if (response.statusCode !== 200) throw new Error(`status ${response.statusCode}`)
  })
  return { ...run, cpuPerRequest: ((cpuOf(hop.pid) - cpu) / REQUESTS) * 1e6 }
}

/** A 10 MB upload with the placeholder in its first chunk: MB/s. */
const upload = async (hop: Hop, url: string): Promise<number> => {
  const chunk = Buffer.alloc(64 * 1024, "u")
  const first = Buffer.concat([Buffer.from(`token=${hop.header}&`), chunk.subarray(100)])
  const chunks = UPLOAD_BYTES / chunk.length
  const body = Readable.from((function*() {
    yield first
    for (let i = 1; i < chunks; i++) yield chunk
  })(), { objectMode: false })
  const started = performance.now()
  const response = await request(url, { method: "POST", body, dispatcher: hop.dispatcher })
  await response.body.dump()
  if (response.statusCode !== 200) throw new Error(`upload: status ${response.statusCode}`)
  return UPLOAD_BYTES / 1e6 / ((performance.now() - started) / 1000)
}

/** Minting a leaf and its TLS context for hosts never seen, as the proxy does on a first CONNECT: wall and CPU ms. */
const firstCertificates = () => {
  const ca = CertificateAuthority.generate()
  // as SecretgateProxy.start does: one throwaway leaf warms the minting code up
  const warm = ca.issue("warm-up.invalid")
  tls.createSecureContext({ key: warm.keyPem, cert: warm.certificatePem, minVersion: "TLSv1.2" })
  const wall: Array<number> = []
  const cpu: Array<number> = []
  for (let i = 0; i < 300; i++) {
    const started = performance.now()
    const used = process.cpuUsage()
    const leaf = ca.issue(`host-${i}.example.com`)
    tls.createSecureContext({ key: leaf.keyPem, cert: leaf.certificatePem, minVersion: "TLSv1.2" })
    const spent = process.cpuUsage(used)
    cpu.push((spent.user + spent.system) / 1000)
    wall.push(performance.now() - started)
  }
  const sorted = (values: Array<number>) => [...values].sort((a, b) => a - b)
  return { first: { wall: wall[0]!, cpu: cpu[0]! }, wall: sorted(wall), cpu: sorted(cpu) }
}

export default async () => {
  const certificates = firstCertificates()
  const sink = await startSink(true)
  const url = `https://127.0.0.1:${sink.port}/`
  const directory = mkdtempSync(join(tmpdir(), "secretgate-bench-mitm-"))
  const direct: Hop = {
    name: "direct undici (the limit)",
    pid: undefined,
    dispatcher: new Agent({ connections: CONCURRENCY, connect: { ca: readFileSync(`${TLS_DIR}/ca.pem`) } }),
    header: VALUE,
    stop: async () => {}
  }
  const hops: Array<Hop> = [
    direct,
    await nodeHop("bare CONNECT tunnel", "tunnel"),
    await nodeHop("bare TLS terminate + re-encrypt", "tls-hop"),
    await nodeHop("secretgate proxy (1 substitution)", "secretgate")
  ]
  const mitm = await mitmHop(directory)
  if (mitm === undefined) console.log("mitmdump is not installed (apt-get install -y mitmproxy): its row is skipped\n")
  else hops.push(mitm)
  try {
    const runs = new Map<string, Array<Awaited<ReturnType<typeof round>>>>(hops.map((hop) => [hop.name, []]))
    for (const hop of hops) await round(hop, url) // warm-up: connections, certificates, JIT
    for (let r = 0; r < ROUNDS; r++) for (const hop of hops) runs.get(hop.name)!.push(await round(hop, url))
    const uploads = new Map<string, Array<number>>(hops.map((hop) => [hop.name, []]))
    for (let r = 0; r < UPLOAD_ROUNDS; r++) for (const hop of hops) uploads.get(hop.name)!.push(await upload(hop, url))

    const rps = (name: string) => median(runs.get(name)!.map((run) => run.rps))
    const cpu = (name: string) => median(runs.get(name)!.map((run) => run.cpuPerRequest))
    const mbps = (name: string) => median(uploads.get(name)!)
    const ours = "secretgate proxy (1 substitution)"
    table(
      ["hop", "req/s", "p50 ms", "p99 ms", "hop CPU µs/req", "10 MB upload MB/s", "failures"],
      hops.map((hop) => {
        const all = runs.get(hop.name)!
        return [
          hop.name,
          rps(hop.name),
          median(all.map((run) => quantile(run.latencies, 0.5))),
          median(all.map((run) => quantile(run.latencies, 0.99))),
          hop.pid === undefined ? "-" : cpu(hop.name),
          mbps(hop.name),
          all.reduce((n, run) => n + run.failures, 0)
        ]
      })
    )
    console.log("")
    const rows: Array<[string, number, string]> = [
      ["req/s: ours / bare TLS hop", rps(ours) / rps("bare TLS terminate + re-encrypt"), ">= 0.8"],
      ["req/s: ours / bare tunnel", rps(ours) / rps("bare CONNECT tunnel"), "-"],
      ["req/s: ours / direct", rps(ours) / rps("direct undici (the limit)"), "-"],
      ["10 MB upload: ours / bare tunnel", mbps(ours) / mbps("bare CONNECT tunnel"), ">= 0.5"]
    ]
    if (mitm !== undefined) {
      rows.unshift(["req/s: ours / mitmproxy", rps(ours) / rps(mitm.name), ">= 4"])
      rows.push(["hop CPU per request: ours / mitmproxy", cpu(ours) / cpu(mitm.name), "<= 0.2"])
    }
    // the steadier reading of the same goal on a busy machine: CPU per request rather than req/s
    rows.splice(2, 0, ["hop CPU per request: bare TLS hop / ours", cpu("bare TLS terminate + re-encrypt") / cpu(ours), ">= 0.8"])
    table(["ratio", "value", "goal"], rows)
    console.log("")
    table(["first certificate of a new host (mint + TLS context)", "wall ms", "CPU ms", "goal"], [
      ["the first host after start", certificates.first.wall, certificates.first.cpu, "< 5"],
      ["median of 300 new hosts", quantile(certificates.wall, 0.5), quantile(certificates.cpu, 0.5), "< 5"],
      ["p99", quantile(certificates.wall, 0.99), quantile(certificates.cpu, 0.99), "< 5"]
    ])
  } finally {
    for (const hop of hops) await hop.stop()
    sink.stop()
    rmSync(directory, { recursive: true, force: true })
  }
}
