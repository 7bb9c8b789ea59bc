/**
 * Shared benchmark helpers: a loopback HTTP sink in a child process (so it does not share the
 * client's event loop), percentiles, and a tiny table printer.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { once } from "node:events"
import { fileURLToPath } from "node:url"

const SINK = `
const fs = require("node:fs")
const tls = process.argv[1]
const files = new Map()
const answer = (req, res) => {
  // /file?path=: that file's bytes as the response (read once), for the scrubbing benchmarks
  if (req.url.startsWith("/file?")) {
    const path = new URL(req.url, "http://x").searchParams.get("path")
    if (!files.has(path)) files.set(path, fs.readFileSync(path))
    const body = files.get(path)
    req.on("data", () => {})
    req.on("end", () => { res.writeHead(200, { "content-type": "application/json", "content-length": String(body.length) }); res.end(body) })
    return
  }
  req.on("data", () => {})
  req.on("end", () => { res.writeHead(200, { "content-type": "text/plain", "content-length": "2" }); res.end("ok") })
}
const server = tls
  ? require("node:https").createServer({ key: fs.readFileSync(tls + "/server.key"), cert: fs.readFileSync(tls + "/server.pem") }, answer)
  : require("node:http").createServer(answer)
server.keepAliveTimeout = 60000
// a WebSocket upgrade gets ?count= binary messages of ?size= bytes (every ?every=th one ending in
// ?echo=, when given), then a close frame
server.on("upgrade", (req, socket) => {
  const url = new URL(req.url, "http://x")
  const count = Number(url.searchParams.get("count") ?? 1000)
  const size = Number(url.searchParams.get("size") ?? 1024)
  const echo = url.searchParams.get("echo")
  const every = Number(url.searchParams.get("every") ?? 10)
  const key = String(req.headers["sec-websocket-key"])
  const accept = require("node:crypto").createHash("sha1").update(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").digest("base64")
  socket.write("HTTP/1.1 101 Switching Protocols\\r\\nUpgrade: websocket\\r\\nConnection: Upgrade\\r\\nSec-WebSocket-Accept: " + accept + "\\r\\n\\r\\n")
  const payload = Buffer.alloc(size, "m")
  const header = size < 126 ? Buffer.from([0x82, size]) : Buffer.from([0x82, 126, size >> 8, size & 0xff])
  const frame = Buffer.concat([header, payload])
  const echoed = echo === null ? frame : Buffer.concat([header, payload.subarray(0, size - echo.length), Buffer.from(echo)])
  let sent = 0
  const more = () => {
    while (sent < count) {
      sent++
      if (!socket.write(sent % every === 0 ? echoed : frame)) return socket.once("drain", more)
    }
    socket.end(Buffer.from([0x88, 2, 0x03, 0xe8]))
  }
  socket.on("error", () => {})
  socket.on("data", () => {})
  more()
})
server.listen(0, "127.0.0.1", () => process.stdout.write(String(server.address().port) + "\\n"))
`

/** The test certificate authority and server certificate (for `*.test` names). */
export const TLS_DIR = fileURLToPath(new URL("../packages/undici/test/fixtures/tls", import.meta.url))

/** Starts the sink (HTTPS with the test certificate when `secure`); resolves to its port and a stop function. */
export const startSink = async (secure = false): Promise<{ port: number; url: string; stop: () => void }> => {
  const child: ChildProcess = spawn(process.execPath, ["-e", SINK, ...(secure ? [TLS_DIR] : [])], { stdio: ["ignore", "pipe", "ignore"] })
  const stop = () => child.kill()
  process.once("exit", stop)
  const [data] = (await once(child.stdout!, "data")) as [Buffer]
  return { port: Number(data.toString().trim()), url: `http://127.0.0.1:${data.toString().trim()}`, stop }
}

/** The q-quantile (0..1) of sorted numbers. */
export const quantile = (sorted: ReadonlyArray<number>, q: number): number =>
  sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!

/** Runs `count` calls of `task` with `concurrency` in flight; returns latencies (ms) and elapsed ms. */
export const load = async (count: number, concurrency: number, task: () => Promise<void>) => {
  const latencies: Array<number> = []
  let next = 0
  let failures = 0
  const started = performance.now()
  const worker = async () => {
    while (next < count) {
      next++
      const t0 = performance.now()
      try {
        await task()
      } catch {
        failures++
      }
      latencies.push(performance.now() - t0)
    }
  }
  await Promise.all(Array.from({ length: concurrency }, worker))
  const elapsed = performance.now() - started
  latencies.sort((a, b) => a - b)
  return { latencies, elapsed, failures, rps: (count / elapsed) * 1000 }
}

/** Prints rows as an aligned table. */
export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string | number>>) => {
  const cells = [header, ...rows.map((row) => row.map((cell) => (typeof cell === "number" ? format(cell) : cell)))]
  const widths = header.map((_, i) => Math.max(...cells.map((row) => String(row[i]).length)))
  for (const [index, row] of cells.entries()) {
    console.log(row.map((cell, i) => String(cell).padEnd(widths[i]!)).join("  "))
    if (index === 0) console.log(widths.map((w) => "-".repeat(w)).join("  "))
  }
}

const format = (n: number) => Number.isInteger(n) ? String(n) : (Math.abs(n) >= 100 ? n.toFixed(0) : Math.abs(n) >= 10 ? n.toFixed(1) : n.toFixed(3))

/** Median of numbers. */
export const median = (values: ReadonlyArray<number>) => quantile([...values].sort((a, b) => a - b), 0.5)

/** undici agent options that resolve every host name to 127.0.0.1 (for named loopback targets). */
export const loopbackLookup = {
  lookup: (_host: string, options: unknown, callback: (...args: Array<unknown>) => void) => {
    if ((options as { all?: boolean }).all === true) callback(null, [{ address: "127.0.0.1", family: 4 }])
    else callback(null, "127.0.0.1", 4)
  }
}
