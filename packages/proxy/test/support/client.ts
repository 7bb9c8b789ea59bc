/**
 * In-process clients of the proxy for the behaviour tests: undici's `ProxyAgent` (as an SDK would
 * use it), and raw sockets for what a well-behaved client never does (no token, a garbled one, a
 * wrong TLS server name, a slow request head).
 */
import * as net from "node:net"
import * as tls from "node:tls"
import { ProxyAgent } from "undici"
import { CA } from "../../../undici/test/support/upstream.js"
import type { Registration, SecretgateProxy } from "../../src/index.js"

/** A `ProxyAgent` for a registration, trusting the proxy's CA and the upstream's test CA. */
export const proxyAgent = (proxy: SecretgateProxy, registration: Registration): ProxyAgent =>
  new ProxyAgent({ uri: registration.proxyUrl, requestTls: { ca: [proxy.ca.certificatePem, CA.toString("utf8")] } })

export interface Connected {
  readonly status: number
  /** The response head as text. */
  readonly head: string
  /** The body of a refusal (read until the proxy closed), empty for `200`. */
  readonly body: string
  readonly socket: net.Socket
}

/** `Proxy-Authorization` for a proxy URL's userinfo. */
export const authorizationOf = (proxyUrl: string): string => {
  const url = new URL(proxyUrl)
  return `Basic ${Buffer.from(`${decodeURIComponent(url.username)}:${decodeURIComponent(url.password)}`).toString("base64")}`
}

/**
 * Sends `CONNECT authority` on a new socket (with `authorization` unless `null`) and reads the
 * answer's head; for a refusal, also its body.
 */
export const connectRaw = (proxy: SecretgateProxy, authority: string, authorization: string | null): Promise<Connected> =>
  new Promise((resolve, reject) => {
    const { hostname, port } = new URL(proxy.url)
    const socket = net.connect(Number(port), hostname)
    let received = Buffer.alloc(0)
    const onData = (chunk: Buffer) => {
      received = Buffer.concat([received, chunk])
      const end = received.indexOf("\r\n\r\n")
      if (end === -1) return
      const head = received.subarray(0, end).toString("latin1")
      const status = Number(head.split(" ")[1])
      if (status === 200) {
        socket.off("data", onData)
        const rest = received.subarray(end + 4)
        if (rest.length > 0) socket.unshift(rest)
        return resolve({ status, head, body: "", socket })
      }
      socket.off("data", onData)
      const body: Array<Buffer> = [received.subarray(end + 4)]
      socket.on("data", (more: Buffer) => body.push(more))
      socket.once("close", () => resolve({ status, head, body: Buffer.concat(body).toString("utf8"), socket }))
    }
    socket.on("data", onData)
    socket.once("error", reject)
    socket.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n${authorization === null ? "" : `Proxy-Authorization: ${authorization}\r\n`}\r\n`)
  })

/** A TLS client over an established tunnel; resolves once the handshake is done, rejects if it fails. */
export const tlsOver = (socket: net.Socket, options: tls.ConnectionOptions): Promise<tls.TLSSocket> =>
  new Promise((resolve, reject) => {
    const secure = tls.connect({ socket, ...options })
    secure.once("secureConnect", () => resolve(secure))
    secure.once("error", reject)
  })

/** Reads from a socket until it has `length` bytes or it ends. */
export const readBytes = (socket: net.Socket | tls.TLSSocket, until: (received: Buffer) => boolean): Promise<Buffer> =>
  new Promise((resolve) => {
    let received = Buffer.alloc(0)
    const onData = (chunk: Buffer) => {
      received = Buffer.concat([received, chunk])
      if (until(received)) {
        socket.off("data", onData)
        resolve(received)
      }
    }
    socket.on("data", onData)
    socket.once("close", () => resolve(received))
  })

/** Waits until `condition` holds (polling), failing with `what` after `ms`. */
export const waitFor = async (condition: () => boolean, what: string, ms = 10_000): Promise<void> => {
  const deadline = Date.now() + ms
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((resolve) => setTimeout(resolve, 10))
  }
}
