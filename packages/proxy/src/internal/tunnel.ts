/**
 * The tunnel: a CONNECT to a host where nothing of the sandbox may be substituted is passed on
 * byte for byte (the client's TLS goes end to end: certificate pinning, HTTP/2, gRPC and
 * WebSockets keep working). `200 Connection Established` is sent only once the upstream answered.
 */
import * as net from "node:net"
import type { lookupWith } from "./upstream.js"

export interface TunnelTarget {
  readonly host: string
  readonly port: number
}

/**
 * Opens the upstream connection, then joins the two sockets. `onUnreachable` is called (and the
 * client is not answered) when the upstream cannot be reached.
 */
export const tunnel = (
  client: net.Socket,
  head: Buffer,
  target: TunnelTarget,
  settings: { readonly lookup: ReturnType<typeof lookupWith>; readonly connectTimeout: number; readonly idleTimeout: number },
  onUnreachable: (error: Error) => void
): void => {
  const upstream = net.connect({ host: target.host, port: target.port, lookup: settings.lookup as never, noDelay: true })
  let connected = false
  const timer = setTimeout(() => upstream.destroy(new Error(`no connection to ${target.host}:${target.port} within ${settings.connectTimeout} ms`)), settings.connectTimeout)
  upstream.once("connect", () => {
    connected = true
    clearTimeout(timer)
    if (client.destroyed) return void upstream.destroy()
    client.write("HTTP/1.1 200 Connection Established\r\n\r\n")
    if (head.length > 0) upstream.write(head)
    for (const socket of [client, upstream]) {
      socket.setTimeout(settings.idleTimeout, () => {
        client.destroy()
        upstream.destroy()
      })
    }
    client.pipe(upstream)
    upstream.pipe(client)
  })
  upstream.on("error", (error) => {
    clearTimeout(timer)
    if (!connected) onUnreachable(error)
    else client.destroy()
  })
  // one side gone: the other is ended gracefully (what was written still arrives), errors end both
  upstream.once("close", () => {
    clearTimeout(timer)
    if (connected) client.end()
  })
  client.on("error", () => upstream.destroy())
  client.once("close", () => upstream.end())
}
