/**
 * A raw HTTP/1.1 exchange over a plain TCP connection, written as a client streaming its body does:
 * what the server answered, how much of the body it let the client send, and whether the connection
 * was reset under the client. For tests of how a server ends connections (bodies over a limit,
 * answers given before a body is read), which an HTTP client library hides.
 *
 * @since 0.1.0
 */
import { Buffer } from "node:buffer"
import * as Net from "node:net"

/**
 * What a raw connection saw: the bytes it read, how many it sent, and whether it failed (a reset:
 * what a client writing to a server that closed with bytes unread gets, EPIPE or ECONNRESET).
 *
 * @since 0.1.0
 */
export interface RawExchange {
  readonly text: string
  readonly sent: number
  readonly failed: boolean
}

/**
 * Writes `head` on a new connection to `url`'s server (plain HTTP: TLS has no half-open
 * connection), then `body` a piece per turn of the event loop, as a client streaming a body does,
 * until it runs out or the connection fails; reads until the server ends the connection, or
 * `timeout` ms. The client keeps writing after the server's end (half-open), as an HTTP client
 * sending its body does.
 *
 * @since 0.1.0
 */
export const rawExchange = (url: string, head: string, body: Iterable<Buffer>, timeout = 20_000): Promise<RawExchange | "timed out"> =>
  new Promise((resolve) => {
    const target = new URL(url)
    const socket = Net.connect({ host: target.hostname.replace(/^\[(.*)\]$/, "$1"), port: Number(target.port || 80), allowHalfOpen: true })
    const chunks: Array<Buffer> = []
    let sent = 0
    let failed = false
    let ended = false
    const timer = setTimeout(() => {
      resolve("timed out")
      socket.destroy()
    }, timeout)
    socket.on("data", (chunk: Buffer) => chunks.push(chunk))
    socket.once("error", () => (failed = true))
    socket.once("close", () => {
      clearTimeout(timer)
      resolve({ text: Buffer.concat(chunks).toString("latin1"), sent, failed })
    })
    const pieces = body[Symbol.iterator]()
    let done = false
    const finish = () => {
      done = true
      if (ended) socket.end()
    }
    socket.once("end", () => {
      ended = true
      if (done) socket.end()
    })
    const pump = () => {
      if (socket.destroyed || failed) return
      const next = pieces.next()
      if (next.done === true) return finish()
      socket.write(next.value, (error) => {
        if (error !== undefined && error !== null) return
        sent += next.value.length
        setImmediate(pump)
      })
    }
    socket.write(head, () => pump())
  })
