/**
 * A client socket whose first bytes were already read (to tell a TLS handshake from plain HTTP
 * inside a CONNECT tunnel), replayed in front of the rest. Node's HTTP server reads a `net.Socket`
 * straight from its handle, past anything `unshift`ed; this duplex has no handle, so it is read as
 * a stream, and it passes on the socket methods the server calls (timeouts, no-delay, keep-alive).
 */
import { Duplex } from "node:stream"
import type * as net from "node:net"

export class Replayed extends Duplex {
  constructor(private readonly socket: net.Socket, first: Buffer) {
    super({ allowHalfOpen: true })
    this.push(first)
    socket.on("data", (chunk: Buffer) => {
      if (!this.push(chunk)) socket.pause()
    })
    socket.once("end", () => this.push(null))
    socket.on("error", (error) => this.destroy(error))
    socket.once("close", () => this.destroy())
    socket.on("timeout", () => this.emit("timeout"))
    socket.on("drain", () => this.emit("drain"))
  }

  get remoteAddress(): string | undefined {
    return this.socket.remoteAddress
  }

  get remotePort(): number | undefined {
    return this.socket.remotePort
  }

  override _read(): void {
    this.socket.resume()
  }

  override _write(chunk: Buffer, encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.socket.write(chunk, encoding, callback)
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.socket.end(callback)
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.socket.destroy()
    callback(error)
  }

  setTimeout(ms: number, callback?: () => void): this {
    this.socket.setTimeout(ms)
    if (callback !== undefined) this.once("timeout", callback)
    return this
  }

  setNoDelay(noDelay?: boolean): this {
    this.socket.setNoDelay(noDelay)
    return this
  }

  setKeepAlive(enable?: boolean, delay?: number): this {
    this.socket.setKeepAlive(enable, delay)
    return this
  }
}
