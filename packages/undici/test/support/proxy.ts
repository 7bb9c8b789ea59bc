/**
 * A minimal HTTP CONNECT proxy on 127.0.0.1 that tunnels to the local upstream and records what
 * passed through it (TLS bytes only, if all is well).
 */
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import * as net from "node:net"

export interface Proxy {
  readonly url: string
  readonly connects: Array<string>
  bytesSeen(): Buffer
  close(): Promise<void>
}

export const startProxy = async (): Promise<Proxy> => {
  const connects: Array<string> = []
  const seen: Array<Buffer> = []
  const sockets = new Set<net.Socket>()
  const server = http.createServer((_req, res) => {
    res.writeHead(405)
    res.end()
  })
  server.on("connect", (req: http.IncomingMessage, client: net.Socket, head: Buffer) => {
    connects.push(req.url ?? "")
    const port = Number((req.url ?? "").split(":").pop())
    const upstream = net.connect(port, "127.0.0.1", () => {
      client.write("HTTP/1.1 200 Connection Established\r\n\r\n")
      if (head.length > 0) upstream.write(head)
      client.on("data", (chunk: Buffer) => seen.push(chunk))
      upstream.on("data", (chunk: Buffer) => seen.push(chunk))
      client.pipe(upstream)
      upstream.pipe(client)
    })
    for (const socket of [client, upstream]) {
      sockets.add(socket)
      socket.on("close", () => sockets.delete(socket))
      socket.on("error", () => socket.destroy())
    }
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    connects,
    bytesSeen: () => Buffer.concat(seen),
    close: () =>
      new Promise<void>((resolve) => {
        for (const socket of sockets) socket.destroy()
        server.close(() => resolve())
      })
  }
}
