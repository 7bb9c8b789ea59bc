/**
 * `UnreadBody` on a real Node HTTP server and raw client sockets: a body an answer left unread is
 * read and dropped up to the bound (the connection then serves the next request), and past it the
 * connection is closed; `after` answers once the body is in.
 */
import { UnreadBody } from "@secretgate/core"
import * as Http from "node:http"
import type { AddressInfo } from "node:net"
import * as Net from "node:net"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

let server: Http.Server
let port: number
beforeAll(async () => {
  server = Http.createServer({ requestTimeout: 0 }, (request, response) => {
    if (request.url === "/expect") throw new Error("a request with an unknown Expect reached the handler")
    if (request.url === "/after") {
      return UnreadBody.after(request, 500, () => {
        response.writeHead(429, { connection: "close" })
        response.end("later\n")
      })
    }
    UnreadBody.bound(request, response)
    response.writeHead(401)
    response.end("no\n")
  })
  server.on("checkExpectation", UnreadBody.expectationFailed)
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  port = (server.address() as AddressInfo).port
})
afterAll(() => new Promise<void>((resolve) => server.close(() => resolve())))

/** Sends `head`, then `total` bytes of chunked body a piece per turn (then `tail`, if it ran out); reads until the server ends. */
const exchange = (path: string, total: number, tail = "0\r\n\r\n", headers = "") =>
  new Promise<{ text: string; sent: number; failed: boolean }>((resolve) => {
    const socket = Net.connect({ host: "127.0.0.1", port, allowHalfOpen: true })
    const piece = Buffer.from(`1000\r\n${"x".repeat(0x1000)}\r\n`)
    const chunks: Array<Buffer> = []
    let sent = 0
    let failed = false
    socket.on("data", (chunk: Buffer) => chunks.push(chunk))
    socket.once("error", () => (failed = true))
    socket.once("end", () => socket.end())
    socket.once("close", () => resolve({ text: Buffer.concat(chunks).toString("latin1"), sent, failed }))
    const pump = () => {
      if (socket.destroyed || failed) return
      if (sent >= total) return void socket.write(tail)
      socket.write(piece, (error) => {
        if (error) return
        sent += piece.length
        setImmediate(pump)
      })
    }
    socket.write(`POST ${path} HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n${headers}\r\n`, () => pump())
  })

describe("UnreadBody", () => {
  it("bound: a body that ends within the bound is dropped and the connection serves the next request", async () => {
    const seen = await exchange("/", 100 * 1024, "0\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    expect(seen.text.split("HTTP/1.1 401").length - 1).toBe(2)
    expect(seen.failed).toBe(false)
  })

  it("bound: a body past the bound closes the connection, however much more the client would send", async () => {
    const seen = await exchange("/", 64 * 1024 * 1024)
    // (cut off, the connection may be reset before the client reads the answer, however late the
    // close: under load a client can be slower than the linger; the answer, when read, is this)
    if (seen.text !== "") expect(seen.text).toMatch(/^HTTP\/1\.1 401 /)
    expect(seen.sent).toBeLessThan(8 * UnreadBody.DRAIN_BYTES)
  })

  it("after: the answer waits for the body's end, so a client still sending reads it", async () => {
    const seen = await exchange("/after", 200 * 1024)
    expect(seen.text).toMatch(/^HTTP\/1\.1 429 /)
    expect(seen.failed).toBe(false)
    expect(seen.sent).toBeGreaterThanOrEqual(200 * 1024)
  })

  it("after: a body declared and never sent is not waited for past its time", async () => {
    const socket = Net.connect({ host: "127.0.0.1", port })
    socket.write("POST /after HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")
    const chunks: Array<Buffer> = []
    socket.on("data", (chunk: Buffer) => chunks.push(chunk))
    await new Promise((resolve) => socket.once("close", resolve))
    expect(Buffer.concat(chunks).toString()).toMatch(/^HTTP\/1\.1 429 /)
  })

  it("expectationFailed: an unknown Expect gets 417, and its body the same bound", async () => {
    const seen = await exchange("/expect", 64 * 1024 * 1024, "0\r\n\r\n", "Expect: bogus\r\n")
    // (cut off, the connection may be reset before the client reads the answer, however late the
    // close: under load a client can be slower than the linger; the answer, when read, is this)
    if (seen.text !== "") expect(seen.text).toMatch(/^HTTP\/1\.1 417 /)
    expect(seen.sent).toBeLessThan(8 * UnreadBody.DRAIN_BYTES)
  })
})
