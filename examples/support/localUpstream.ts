/**
 * Stand-ins for the internet, for the examples: one HTTPS server on 127.0.0.1 that answers for any
 * host name (with the repository's test certificate), records what it receives, and echoes requests
 * back. `agentOptions` makes undici trust that certificate and resolve every name to 127.0.0.1.
 */
import { readFileSync } from "node:fs"
import * as https from "node:https"
import type { AddressInfo } from "node:net"
import type { Agent } from "undici"

const tls = (file: string) => readFileSync(new URL(`../../packages/undici/test/fixtures/tls/${file}`, import.meta.url))

export interface Received {
  readonly host: string
  readonly authorization: string | undefined
  readonly body: string
}

export const startLocalInternet = async () => {
  const received: Array<Received> = []
  const server = https.createServer({ key: tls("server.key"), cert: tls("server.pem") }, (req, res) => {
    let body = ""
    req.setEncoding("utf8")
    req.on("data", (chunk: string) => (body += chunk))
    req.on("end", () => {
      received.push({ host: (req.headers.host ?? "").split(":")[0]!, authorization: req.headers.authorization, body })
      res.writeHead(200, { "content-type": "application/json" })
      res.end(JSON.stringify({ youSent: { authorization: req.headers.authorization, body } }))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const port = (server.address() as AddressInfo).port
  const agentOptions: Agent.Options = {
    connect: {
      ca: tls("ca.pem"),
      lookup: (_host, options, callback) => {
        const cb = callback as (...args: Array<unknown>) => void
        if ((options as { all?: boolean }).all === true) cb(null, [{ address: "127.0.0.1", family: 4 }])
        else cb(null, "127.0.0.1", 4)
      }
    }
  }
  return {
    received,
    agentOptions,
    /** The CA certificate (PEM) the server's certificate is signed by. */
    ca: tls("ca.pem").toString("utf8"),
    url: (host: string, path = "/") => `https://${host}:${port}${path}`,
    close: () => new Promise<void>((resolve) => {
      server.closeAllConnections()
      server.close(() => resolve())
    })
  }
}
