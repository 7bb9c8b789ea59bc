/**
 * The REST server and its clients, over loopback, servers in child processes (so that client and
 * server do not share an event loop; each child reports its own CPU time and the requests it saw).
 *
 * 1. Server CPU per `GET /secret/{id}` and requests/s, `SecretServer` (memory backend) against a
 *    bare `node:http` server answering the same JSON after the same Bearer check (SHA-256 of the
 *    key, constant-time compare), undici `Pool` at concurrency 64, interleaved rounds, medians.
 * 2. `HttpSecrets` (through the Promise facade) against raw HTTP (undici `Pool` + `JSON.parse`,
 *    sending the same bytes: key and organization header) to the same server, the same number of
 *    connections on both sides: client CPU per call and calls/s, interleaved rounds, medians.
 * 3. 1,000 remote egress resolvers in this process (one `HttpSecrets`, each resolver mounting its
 *    own secret and asked for its values every 100 ms, as a sandbox's traffic would) against one
 *    server, for 30 s with one update a second: requests reaching the server with the watch and
 *    with TTL polling (ttl 1 s), and the time from an update's answer to the first resolver
 *    serving the new value (the updated secret's resolver asked every millisecond).
 *
 * 4. Server CPU per `POST /secret/resolve` (one placeholder, resolve key): the same request with a
 *    declared length (answered by the resolve fast lane) against chunked (which the lane leaves to
 *    the full application), to the same server, interleaved rounds, medians.
 *
 * `SECRETGATE_BENCH_QUICK=1` shortens every part (for a smoke run); `SECRETGATE_BENCH_PARTS=1,3`
 * runs only those parts.
 */
import { Secretgate, SecretResolver, Secrets } from "@secretgate/core"
import { ApiKeys, HttpSecrets, SecretApi, SecretServer } from "@secretgate/http"
import { MemorySecretStore } from "@secretgate/memory"
import { Effect, Layer, Logger, LogLevel, ManagedRuntime, Redacted } from "effect"
import { type ChildProcess, fork } from "node:child_process"
import { createHash, timingSafeEqual } from "node:crypto"
import * as Http from "node:http"
import { once } from "node:events"
import { Readable } from "node:stream"
import { fileURLToPath } from "node:url"
import { Pool } from "undici"
import { median, quantile, table } from "./support.js"

const QUICK = process.env.SECRETGATE_BENCH_QUICK === "1"
const PARTS = (process.env.SECRETGATE_BENCH_PARTS ?? "1,2,3,4").split(",")
const ROUNDS = QUICK ? 2 : 5
const REQUESTS = QUICK ? 1_000 : 4_000
const CONCURRENCY = 64
const RESOLVERS = Number(process.env.SECRETGATE_BENCH_RESOLVERS ?? (QUICK ? 100 : 1_000))
const WATCH_SECONDS = QUICK ? 5 : 30
const ORG = "bench"
const CHILD = "SECRETGATE_HTTP_BENCH_CHILD"
const { ORGANIZATION_HEADER } = SecretApi

// ---------------------------------------------------------------------------------------------
// The children: a server that reports its CPU time and the requests it saw, by route.

interface Report {
  readonly cpuMicros: number
  readonly requests: Record<string, number>
}

type Message = { readonly report: Report } | { readonly url: string }

const SECRET_JSON = JSON.stringify({
  id: "3b241101-e2bb-4255-8caf-4136c566a962",
  name: "bench_0",
  placeholder: "sg_secret_abcdefghijklmnopqrstuvwxyz234567",
  hosts: ["api.example.com"],
  createdAt: "2026-01-01T00:00:00.000Z",
  updatedAt: "2026-01-01T00:00:00.000Z"
})

const serveChild = async (kind: string, manage: string, resolve: string) => {
  const requests: Record<string, number> = {}
  // every request the server sees, by method and route shape
  const count = (request: Http.IncomingMessage) => {
    const route = `${request.method} ${(request.url ?? "").split("?")[0]!.replace(/\/[0-9a-f-]{36}$/, "/{id}")}`
    requests[route] = (requests[route] ?? 0) + 1
  }
  let url: string
  if (kind === "bare") {
    const expected = createHash("sha256").update(manage).digest()
    const server = Http.createServer((request, response) => {
      count(request)
      const match = /^Bearer +(\S+) *$/i.exec(request.headers.authorization ?? "")
      const presented = match === null ? undefined : createHash("sha256").update(match[1]!).digest()
      if (presented === undefined || !timingSafeEqual(presented, expected)) {
        response.writeHead(401, { "content-type": "application/json" }).end(`{"statusCode":401}`)
        return
      }
      response.writeHead(200, { "content-type": "application/json", "content-length": Buffer.byteLength(SECRET_JSON) })
      response.end(SECRET_JSON)
    })
    server.keepAliveTimeout = 60_000
    await new Promise<void>((done) => server.listen(0, "127.0.0.1", done))
    url = `http://127.0.0.1:${(server.address() as { port: number }).port}`
  } else {
    // "secretgate-logged": with access logs on, each entry a JSON line to a file stream (/dev/null)
    const sink = kind === "secretgate-logged" ? (await import("node:fs")).createWriteStream("/dev/null") : undefined
    // "secretgate-telemetry": traces and metrics exported over OTLP to a receiver in the parent
    const otlp = kind === "secretgate-telemetry" ? process.env.SECRETGATE_HTTP_BENCH_OTLP : undefined
    const started = await SecretServer.serve({
      ...(sink === undefined ? {} : { accessLog: (entry: SecretServer.AccessLogEntry) => void sink.write(`${JSON.stringify(entry)}\n`) }),
      ...(otlp === undefined ? {} : { otlp: { endpoint: otlp } }),
      backend: MemorySecretStore.layer(),
      keys: [
        { key: manage, organizationId: ORG, scopes: ["secrets:manage"] },
        { key: resolve, organizationId: ORG, scopes: ["secrets:resolve"] }
      ]
    })
    // a listener of its own, before the server's: counts every request whatever answers it
    const { default: diagnostics } = await import("node:diagnostics_channel")
    diagnostics.subscribe("http.server.request.start", (message) => count((message as { request: Http.IncomingMessage }).request))
    url = started.url
  }
  process.send!({ url } satisfies Message)
  process.on("message", (message) => {
    if (message === "report") {
      const usage = process.cpuUsage()
      process.send!({ report: { cpuMicros: usage.user + usage.system, requests: { ...requests } } } satisfies Message)
    }
  })
  process.on("disconnect", () => process.exit(0))
}

interface Child {
  readonly url: string
  readonly report: () => Promise<Report>
  readonly stop: () => Promise<void>
}

const startChild = async (
  kind: "bare" | "secretgate" | "secretgate-logged" | "secretgate-telemetry",
  manage: string,
  resolve: string
): Promise<Child> => {
  const child: ChildProcess = fork(fileURLToPath(import.meta.url), [], {
    env: { ...process.env, [CHILD]: JSON.stringify({ kind, manage, resolve }) },
    execArgv: process.execArgv,
    stdio: ["ignore", "inherit", "inherit", "ipc"]
  })
  const [first] = (await once(child, "message")) as [Message]
  if (!("url" in first)) throw new Error("the bench server did not start")
  return {
    url: first.url,
    report: async () => {
      child.send("report")
      for (;;) {
        const [message] = (await once(child, "message")) as [Message]
        if ("report" in message) return message.report
      }
    },
    stop: async () => {
      child.disconnect()
      if (child.exitCode === null) await once(child, "exit")
    }
  }
}

if (process.env[CHILD] !== undefined) {
  const { kind, manage, resolve } = JSON.parse(process.env[CHILD]) as { kind: string; manage: string; resolve: string }
  await serveChild(kind, manage, resolve)
}

// ---------------------------------------------------------------------------------------------

/** `count` calls of `task`, `CONCURRENCY` at a time; wall-clock ms and failures. */
const drive = async (count: number, task: () => Promise<void>) => {
  let next = 0
  let failed = 0
  const started = performance.now()
  await Promise.all(Array.from({ length: CONCURRENCY }, async () => {
    while (next < count) {
      next++
      try {
        await task()
      } catch {
        failed++
      }
    }
  }))
  return { millis: performance.now() - started, failed }
}

const getRaw = (pool: Pool, path: string, headers: Record<string, string>) => async () => {
  const response = await pool.request({ method: "GET", path, headers })
  const body = await response.body.text()
  if (response.statusCode !== 200) throw new Error(`status ${response.statusCode}`)
  JSON.parse(body)
}

const serverCost = async (manage: string, resolve: string) => {
  const bare = await startChild("bare", manage, resolve)
  const ours = await startChild("secretgate", manage, resolve)
  const logged = await startChild("secretgate-logged", manage, resolve)
  // an OTLP receiver in this process (its CPU is not the server's): answers every export 200
  const collector = Http.createServer((request, response) => {
    request.resume()
    request.on("end", () => response.end("{}"))
  })
  await new Promise<void>((done) => collector.listen(0, "127.0.0.1", done))
  process.env.SECRETGATE_HTTP_BENCH_OTLP = `http://127.0.0.1:${(collector.address() as { port: number }).port}`
  const traced = await startChild("secretgate-telemetry", manage, resolve)
  const create = async (url: string) => {
    const admin = new Secretgate({ layer: HttpSecrets.layer({ baseUrl: url, apiKey: manage, watch: false }), organizationId: ORG })
    const id = (await admin.secret.create({ name: "bench_0", value: "value-0", hosts: ["api.example.com"] })).id
    await admin.dispose()
    return id
  }
  const id = await create(ours.url)
  const loggedId = await create(logged.url)
  const tracedId = await create(traced.url)
  const authorization = { authorization: `Bearer ${manage}` }
  const targets = [
    { name: "bare node:http (baseline)", child: bare, path: `/secret/${id}` },
    { name: "SecretServer, memory backend", child: ours, path: `/secret/${id}` },
    { name: "SecretServer, memory backend, access log on", child: logged, path: `/secret/${loggedId}` },
    { name: "SecretServer, memory backend, telemetry on (OTLP export)", child: traced, path: `/secret/${tracedId}` }
  ]
  const logCost: Array<number> = []
  const telemetryCost: Array<number> = []
  const samples = new Map<string, { cpu: Array<number>; rps: Array<number>; ratio: Array<number> }>()
  let failed = 0
  try {
    for (const target of targets) {
      const pool = new Pool(target.child.url, { connections: CONCURRENCY, pipelining: 1 })
      await drive(REQUESTS / 4, getRaw(pool, target.path, authorization))
      await pool.close()
    }
    for (let round = 0; round < ROUNDS; round++) {
      const rps: Array<number> = []
      for (const target of targets) {
        const pool = new Pool(target.child.url, { connections: CONCURRENCY, pipelining: 1 })
        await drive(CONCURRENCY, getRaw(pool, target.path, authorization))
        const before = await target.child.report()
        const run = await drive(REQUESTS, getRaw(pool, target.path, authorization))
        const after = await target.child.report()
        await pool.close()
        failed += run.failed
        const sample = samples.get(target.name) ?? { cpu: [], rps: [], ratio: [] }
        sample.cpu.push((after.cpuMicros - before.cpuMicros) / REQUESTS)
        sample.rps.push(REQUESTS / run.millis * 1000)
        rps.push(REQUESTS / run.millis * 1000)
        samples.set(target.name, sample)
      }
      samples.get(targets[1]!.name)!.ratio.push(rps[1]! / rps[0]!)
      samples.get(targets[2]!.name)!.ratio.push(rps[2]! / rps[0]!)
      samples.get(targets[3]!.name)!.ratio.push(rps[3]! / rps[0]!)
      telemetryCost.push(samples.get(targets[3]!.name)!.cpu.at(-1)! / samples.get(targets[1]!.name)!.cpu.at(-1)!)
      samples.get(targets[0]!.name)!.ratio.push(1)
      logCost.push(samples.get(targets[2]!.name)!.cpu.at(-1)! / samples.get(targets[1]!.name)!.cpu.at(-1)!)
    }
  } finally {
    await bare.stop()
    await ours.stop()
    await logged.stop()
    await traced.stop()
    await new Promise<void>((done) => collector.close(() => done()))
  }
  console.log(`### Server CPU per GET /secret/{id} (concurrency ${CONCURRENCY}, ${ROUNDS} interleaved rounds of ${REQUESTS}, medians)\n`)
  table(
    ["server", "server CPU µs/request", "req/s", "req/s ratio to bare"],
    [...samples].map(([name, sample]) => [name, median(sample.cpu), Math.round(median(sample.rps)), median(sample.ratio)])
  )
  console.log(`\nServer CPU per request with the access log on, against off (same round): ${median(logCost).toFixed(2)}×`)
  console.log(`Server CPU per request with telemetry on (OTLP export; no fast lane), against off (same round): ${median(telemetryCost).toFixed(2)}×\n`)
  return failed
}

const clientCost = async (manage: string, resolve: string) => {
  const server = await startChild("secretgate", manage, resolve)
  // the same connections on both sides
  const remote = new Secretgate({
    layer: HttpSecrets.layer({ baseUrl: server.url, apiKey: manage, watch: false, maxConnections: CONCURRENCY }),
    organizationId: ORG
  })
  const pool = new Pool(server.url, { connections: CONCURRENCY, pipelining: 1 })
  const samples = new Map<string, { cpu: Array<number>; rps: Array<number>; ratio: Array<number> }>()
  let failed = 0
  try {
    const id = (await remote.secret.create({ name: "bench_0", value: "value-0", hosts: ["api.example.com"] })).id
    const tasks = [
      // the bytes HttpSecrets sends: the key and the organization header
      {
        name: "raw HTTP: undici Pool + JSON.parse (baseline)",
        task: getRaw(pool, `/secret/${id}`, { authorization: `Bearer ${manage}`, [ORGANIZATION_HEADER]: ORG })
      },
      { name: "HttpSecrets: gate.secret.get(id)", task: async () => void (await remote.secret.get(id)) }
    ]
    for (const { task } of tasks) await drive(REQUESTS / 4, task)
    for (let round = 0; round < ROUNDS; round++) {
      const cpu: Array<number> = []
      for (const { name, task } of tasks) {
        const before = process.cpuUsage()
        const run = await drive(REQUESTS, task)
        const used = process.cpuUsage(before)
        failed += run.failed
        const sample = samples.get(name) ?? { cpu: [], rps: [], ratio: [] }
        sample.cpu.push((used.user + used.system) / REQUESTS)
        sample.rps.push(REQUESTS / run.millis * 1000)
        cpu.push((used.user + used.system) / REQUESTS)
        samples.set(name, sample)
      }
      samples.get(tasks[0]!.name)!.ratio.push(1)
      samples.get(tasks[1]!.name)!.ratio.push(cpu[1]! / cpu[0]!)
    }
  } finally {
    await pool.close()
    await remote.dispose()
    await server.stop()
  }
  console.log(`\n### Client CPU per call, GET /secret/{id} (concurrency ${CONCURRENCY}, ${ROUNDS} interleaved rounds of ${REQUESTS}, medians)\n`)
  table(
    ["client", "client CPU µs/call", "calls/s", "CPU ratio to raw"],
    [...samples].map(([name, sample]) => [name, median(sample.cpu), Math.round(median(sample.rps)), median(sample.ratio)])
  )
  return failed
}

const resolvers = async (manage: string, resolve: string) => {
  const rows: Array<Array<string | number>> = []
  let failed = 0
  for (const watch of [true, false]) {
    const server = await startChild("secretgate", manage, resolve)
    const admin = new Secretgate({ layer: HttpSecrets.layer({ baseUrl: server.url, apiKey: manage, watch: false }), organizationId: ORG })
    // the egress side: one HttpSecrets for every resolver, as a platform process would hold
    const egress = ManagedRuntime.make(
      HttpSecrets.layer({ baseUrl: server.url, apiKey: resolve, watch }).pipe(Layer.provide(Logger.minimumLogLevel(LogLevel.Error)))
    )
    try {
      const secrets = await egress.runPromise(Secrets.Secrets)
      const ids: Array<string> = []
      const all: Array<SecretResolver.SecretResolver> = []
      const placeholders: Array<string> = []
      for (let i = 0; i < RESOLVERS; i++) {
        const created = await admin.secret.create({ name: `sandbox_${i}`, value: `v0-${i}`, hosts: ["api.example.com"] })
        ids.push(created.id)
        placeholders.push(created.placeholder)
        const mount = await admin.mount({ TOKEN: `sandbox_${i}` })
        all.push(await egress.runPromise(SecretResolver.make(mount, { ttl: "1 second" }).pipe(Effect.provideService(Secrets.Secrets, secrets))))
      }
      for (const resolver of all) await resolver.current()
      if (watch) {
        while (secrets.changes?.live(ORG) !== true) await new Promise((done) => setTimeout(done, 10))
      }
      // each sandbox's traffic: its resolver asked every 100 ms, spread over the interval
      let stopped = false
      let failures = 0
      let firstFailure: string | undefined
      const failure = (error: unknown) => {
        failures++
        firstFailure ??= String((error as { message?: unknown }).message ?? error)
      }
      const traffic = all.map((resolver, i) =>
        setTimeout(function ask() {
          if (stopped) return
          Promise.resolve(resolver.current()).catch(failure)
          setTimeout(ask, 100)
        }, (i * 100) / RESOLVERS)
      )
      const before = await server.report()
      const lags: Array<number> = []
      for (let second = 0; second < WATCH_SECONDS; second++) {
        const tick = performance.now()
        const i = (second * 7919) % RESOLVERS
        const value = `v${second + 1}-${i}`
        await admin.secret.update(ids[i]!, { value })
        const answered = performance.now()
        // the updated secret's resolver, asked every millisecond until it serves the new value
        // (an overloaded server may fail a load: counted, and asked again)
        for (;;) {
          const current = await Promise.resolve(all[i]!.current()).catch((error) => (failure(error), undefined))
          const secret = current?.get(placeholders[i]!)
          if (secret !== undefined && Redacted.value(secret.value) === value) break
          await new Promise((done) => setTimeout(done, 1))
        }
        lags.push(performance.now() - answered)
        const rest = 1000 - (performance.now() - tick)
        if (rest > 0) await new Promise((done) => setTimeout(done, rest))
      }
      const after = await server.report()
      stopped = true
      for (const timer of traffic) clearTimeout(timer)
      const resolves = (after.requests["POST /secret/resolve"] ?? 0) - (before.requests["POST /secret/resolve"] ?? 0)
      // the stream is opened once, before the measured interval: counted whole
      const watches = after.requests["GET /secret/watch"] ?? 0
      const updates = (after.requests["PATCH /secret/{id}"] ?? 0) - (before.requests["PATCH /secret/{id}"] ?? 0)
      if (firstFailure !== undefined) console.log(`(${watch ? "watch" : "TTL"}: first failed load: ${firstFailure})`)
      const sorted = [...lags].sort((a, b) => a - b)
      rows.push([
        watch ? "watch (GET /secret/watch)" : "TTL polling (ttl 1 s)",
        resolves,
        failures,
        watches,
        (resolves + watches) / WATCH_SECONDS,
        updates,
        quantile(sorted, 0.5),
        quantile(sorted, 0.99)
      ])
    } finally {
      await egress.dispose()
      await admin.dispose()
      await server.stop()
    }
  }
  console.log(
    `\n### ${RESOLVERS} remote resolvers vs one server, ${WATCH_SECONDS} s, one update a second ` +
      `(each resolver asked every 100 ms)\n`
  )
  table(
    ["mode", "resolve requests", "failed loads", "watch requests", "requests/s to the server", "updates", "update → new value p50 ms", "p99 ms"],
    rows
  )
  const [withWatch, polling] = rows as Array<Array<number>>
  console.log(`\nrequests reaching the server, TTL polling / watch: ${(polling![4]! / withWatch![4]!).toFixed(1)}×`)
  return failed
}

const resolveCost = async (manage: string, resolve: string) => {
  const server = await startChild("secretgate", manage, resolve)
  const admin = new Secretgate({ layer: HttpSecrets.layer({ baseUrl: server.url, apiKey: manage, watch: false }), organizationId: ORG })
  const placeholder = (await admin.secret.create({ name: "bench_resolve", value: "value-0", hosts: ["api.example.com"] })).placeholder
  await admin.dispose()
  const body = JSON.stringify({ placeholders: [placeholder] })
  const headers = { authorization: `Bearer ${resolve}`, "content-type": "application/json" }
  const post = (pool: Pool, chunked: boolean) => async () => {
    const response = await pool.request({
      method: "POST",
      path: "/secret/resolve",
      headers,
      // a stream has no declared length: sent chunked
      body: chunked ? Readable.from([Buffer.from(body)]) : body
    })
    const text = await response.body.text()
    if (response.statusCode !== 200) throw new Error(`status ${response.statusCode}`)
    JSON.parse(text)
  }
  const targets = [
    { name: "full application (chunked body)", chunked: true },
    { name: "resolve fast lane (declared length)", chunked: false }
  ]
  const samples = new Map<string, { cpu: Array<number>; rps: Array<number>; ratio: Array<number> }>()
  let failed = 0
  try {
    for (let round = 0; round < ROUNDS; round++) {
      const cpu: Array<number> = []
      for (const target of targets) {
        const pool = new Pool(server.url, { connections: CONCURRENCY, pipelining: 1 })
        await drive(CONCURRENCY, post(pool, target.chunked))
        const before = await server.report()
        const run = await drive(REQUESTS, post(pool, target.chunked))
        const after = await server.report()
        await pool.close()
        failed += run.failed
        const sample = samples.get(target.name) ?? { cpu: [], rps: [], ratio: [] }
        sample.cpu.push((after.cpuMicros - before.cpuMicros) / REQUESTS)
        sample.rps.push(REQUESTS / run.millis * 1000)
        cpu.push((after.cpuMicros - before.cpuMicros) / REQUESTS)
        samples.set(target.name, sample)
      }
      samples.get(targets[0]!.name)!.ratio.push(1)
      samples.get(targets[1]!.name)!.ratio.push(cpu[1]! / cpu[0]!)
    }
  } finally {
    await server.stop()
  }
  console.log(`\n### Server CPU per POST /secret/resolve (concurrency ${CONCURRENCY}, ${ROUNDS} interleaved rounds of ${REQUESTS}, medians)\n`)
  table(
    ["path", "server CPU µs/request", "req/s", "CPU ratio to the full application"],
    [...samples].map(([name, sample]) => [name, median(sample.cpu), Math.round(median(sample.rps)), median(sample.ratio)])
  )
  return failed
}

export default async () => {
  const manage = Redacted.value(ApiKeys.generate())
  const resolve = Redacted.value(ApiKeys.generate())
  let failed = 0
  if (PARTS.includes("1")) failed += await serverCost(manage, resolve)
  if (PARTS.includes("2")) failed += await clientCost(manage, resolve)
  if (PARTS.includes("3")) failed += await resolvers(manage, resolve)
  if (PARTS.includes("4")) failed += await resolveCost(manage, resolve)
  if (failed > 0) {
    console.log(`\n${failed} requests failed: the server must answer every request of a bounded load`)
    process.exitCode = 1
  }
}
