/**
 * The REST server under a bounded loopback load: 20,000 `GET /secret/{id}` at concurrency 64 over
 * keep-alive connections, from this process to a server in a child process (memory backend), so
 * that client and server do not share an event loop.
 *
 * Rows: raw HTTP (undici `Pool`), the Promise facade over `HttpSecrets`, and the baseline: the same
 * calls on the in-process facade (memory backend). Every request must succeed; the ratio is
 * requests/s against the baseline, measured in this same process.
 */
import { Secretgate } from "@secretgate/core"
import { ApiKeys, HttpSecrets, SecretServer } from "@secretgate/http"
import { MemorySecretStore } from "@secretgate/memory"
import { Redacted } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { once } from "node:events"
import { fileURLToPath } from "node:url"
import { Pool } from "undici"

const REQUESTS = 20_000
const WARMUP = 2_000
const CONCURRENCY = 64
const SECRETS = 100
const ORG = "bench"
const CHILD = "SECRETGATE_HTTP_BENCH_SERVER"

interface Run {
  readonly name: string
  readonly failed: number
  readonly rps: number
  readonly p50: number
  readonly p99: number
}

/** `count` calls of `task(i)`, `concurrency` at a time; latencies in ms. */
const measure = async (name: string, count: number, task: (i: number) => Promise<void>): Promise<Run> => {
  const latencies = new Float64Array(count)
  let next = 0
  let failed = 0
  const started = performance.now()
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < count) {
      const i = next++
      const t0 = performance.now()
      try {
        await task(i)
      } catch {
        failed++
      }
      latencies[i] = performance.now() - t0
    }
  }))
  const elapsed = performance.now() - started
  latencies.sort()
  const at = (q: number) => latencies[Math.min(count - 1, Math.floor(q * count))]!
  return { name, failed, rps: (count / elapsed) * 1000, p50: at(0.5), p99: at(0.99) }
}

const startServerProcess = async (manage: string): Promise<{ url: string; child: ChildProcess }> => {
  const child = spawn(process.execPath, [...process.execArgv, fileURLToPath(import.meta.url)], {
    env: { ...process.env, [CHILD]: manage },
    stdio: ["ignore", "pipe", "inherit"]
  })
  const [data] = (await once(child.stdout!, "data")) as [Buffer]
  return { url: data.toString().trim(), child }
}

// In the child: serve, print the URL, run until killed.
if (process.env[CHILD] !== undefined) {
  const server = await SecretServer.serve({
    backend: MemorySecretStore.layer(),
    keys: [{ key: process.env[CHILD]!, organizationId: ORG, scopes: ["secrets:manage"] }]
  })
  process.stdout.write(`${server.url}\n`)
  process.once("SIGTERM", () => void server.close().then(() => process.exit(0)))
}

export default async () => {
  const manage = Redacted.value(ApiKeys.generate())
  const { url, child } = await startServerProcess(manage)
  const local = new Secretgate({ layer: MemorySecretStore.layer(), organizationId: ORG })
  const remote = new Secretgate({ layer: HttpSecrets.layer({ baseUrl: url, apiKey: manage }), organizationId: ORG })
  const pool = new Pool(url, { connections: CONCURRENCY, pipelining: 1, keepAliveTimeout: 30_000 })
  try {
    const localIds: Array<string> = []
    const remoteIds: Array<string> = []
    for (let i = 0; i < SECRETS; i++) {
      const params = { name: `bench_${i}`, value: `value-${i}-${"v".repeat(40)}`, hosts: ["api.example.com"] }
      localIds.push((await local.secret.create(params)).id)
      remoteIds.push((await remote.secret.create(params)).id)
    }
    const headers = { authorization: `Bearer ${manage}` }
    const raw = async (i: number) => {
      const response = await pool.request({ method: "GET", path: `/secret/${remoteIds[i % SECRETS]}`, headers })
      await response.body.text()
      if (response.statusCode !== 200) throw new Error(`status ${response.statusCode}`)
    }
    const viaRemote = async (i: number) => void (await remote.secret.get(remoteIds[i % SECRETS]!))
    const viaLocal = async (i: number) => void (await local.secret.get(localIds[i % SECRETS]!))

    for (const task of [viaLocal, raw, viaRemote]) await measure("warm-up", WARMUP, task)
    const baseline = await measure("in-process facade (baseline)", REQUESTS, viaLocal)
    const runs = [
      baseline,
      await measure("raw HTTP, undici Pool", REQUESTS, raw),
      await measure("facade over HttpSecrets", REQUESTS, viaRemote)
    ]

    const rows = runs.map((run) => [
      run.name,
      String(REQUESTS),
      String(run.failed),
      run.rps.toFixed(0),
      run.p50.toFixed(3),
      run.p99.toFixed(3),
      (run.rps / baseline.rps).toFixed(3)
    ])
    const header = ["GET /secret/{id}, concurrency 64", "requests", "failed", "req/s", "p50 ms", "p99 ms", "ratio"]
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)))
    const line = (cells: ReadonlyArray<string>) => console.log(cells.map((cell, i) => cell.padEnd(widths[i]!)).join("  "))
    line(header)
    line(widths.map((w) => "-".repeat(w)))
    rows.forEach(line)
    const failed = runs.reduce((sum, run) => sum + run.failed, 0)
    if (failed > 0) {
      console.log(`\n${failed} requests failed: the server must answer every request of a bounded load`)
      process.exitCode = 1
    }
  } finally {
    await pool.close()
    await remote.dispose()
    await local.dispose()
    child.kill("SIGTERM")
    await once(child, "exit")
  }
}
