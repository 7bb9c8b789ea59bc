/**
 * The Promise facade and the egress layer against a remote secretgate server: the same code as
 * with an in-process backend, with `HttpSecrets.layer(...)` as the layer.
 *
 * Run it: `npx tsx examples/remote-client.ts`. With SECRETGATE_STORE (the server's URL),
 * SECRETGATE_API_KEY and SECRETGATE_RESOLVE_KEY set (as `examples/remote-server.ts` prints them) it
 * talks to that server; otherwise it starts one of its own in this process first. A server on another
 * host must be https:// (plain http is accepted only for loopback, or with `allowInsecure: true`).
 */
import { Secretgate, SecretNameTaken } from "@secretgate/core"
import { ApiKeys, HttpSecrets, SecretServer } from "@secretgate/http"
import { MemorySecretStore } from "@secretgate/memory"
import { type AuditEvent, SecretgateAgent } from "@secretgate/undici"
import { Redacted } from "effect"
import * as Http from "node:http"
import type * as Net from "node:net"
import { request } from "undici"

const organizationId = process.env.SECRETGATE_ORGANIZATION ?? "acme"

// 0. The server: the one from remote-server.ts, or a local one.
let local: SecretServer.RunningServer | undefined
let baseUrl = process.env.SECRETGATE_STORE
let apiKey = process.env.SECRETGATE_API_KEY
let resolveApiKey = process.env.SECRETGATE_RESOLVE_KEY
if (baseUrl === undefined || apiKey === undefined || resolveApiKey === undefined) {
  const manage = ApiKeys.generate()
  const resolve = ApiKeys.generate()
  local = await SecretServer.serve({
    backend: MemorySecretStore.layer(),
    keys: [
      { key: manage, organizationId, scopes: ["secrets:manage"] },
      { key: resolve, organizationId, scopes: ["secrets:resolve"] }
    ]
  })
  ;[baseUrl, apiKey, resolveApiKey] = [local.url, Redacted.value(manage), Redacted.value(resolve)]
  console.log(`(no SECRETGATE_STORE: started a server of our own at ${baseUrl})`)
}

// 1. The facade over HttpSecrets: secret management as with Daytona's SecretService.
const gate = new Secretgate({
  layer: HttpSecrets.layer({ baseUrl, apiKey, resolveApiKey, timeout: "5 seconds" }),
  organizationId
})
const name = `example-token-${Date.now()}`
const secret = await gate.secret.create({ name, value: "tok_remote_0ld", hosts: ["localhost"] })
await gate.secret.update(secret.id, { value: "tok_remote_R3al" })
console.log(`created ${secret.name} on ${baseUrl}: placeholder ${secret.placeholder}`)
try {
  await gate.secret.create({ name, value: "again" })
} catch (error) {
  // remote errors are the same classes as in process
  console.log(`creating it twice: ${error instanceof SecretNameTaken ? "SecretNameTaken" : "?"}: ${(error as Error).message}`)
}

// 2. A sandbox gets the placeholder; its egress resolves values from the server (resolve key),
//    reusing them for at most 1 second.
const mount = await gate.mount({ API_TOKEN: name })
console.log(`sandbox env: API_TOKEN=${mount.env.API_TOKEN}`)
const audit: Array<AuditEvent.AuditEvent> = []
const agent = new SecretgateAgent({
  resolver: await gate.resolver(mount, { ttl: "1 second" }),
  allowHttp: ["localhost"], // plain http only for this local demo; values otherwise need https
  audit: (event) => audit.push(event)
})

// 3. An upstream API on localhost that echoes the Authorization header it received.
const seenByUpstream: Array<string | undefined> = []
const upstream = Http.createServer((req, res) => {
  seenByUpstream.push(req.headers.authorization)
  res.end(JSON.stringify({ youSent: req.headers.authorization }))
})
await new Promise<void>((resolve) => upstream.listen(0, "localhost", resolve))
const port = (upstream.address() as Net.AddressInfo).port

// The sandbox's request carries the placeholder; the upstream receives the value; the echo that
// comes back to the sandbox carries the placeholder again.
const response = await request(`http://localhost:${port}/v1/me`, {
  headers: { authorization: `Bearer ${mount.env.API_TOKEN}` },
  dispatcher: agent
})
console.log(`upstream received: ${seenByUpstream.at(-1)}`)
console.log(`sandbox read back: ${await response.body.text()}`)
console.log(`audit: ${JSON.stringify(audit)}`)

await gate.secret.delete(secret.id)
await agent.close()
upstream.close()
await gate.dispose()
await local?.close()
