/**
 * One PostgreSQL database, two processes: a `SecretServer` (this process) where secrets are managed
 * over HTTP, and an egress host (a child process) whose sandbox's requests get the values
 * substituted, reading the same database directly. An update made through the server reaches the
 * egress host's next request within milliseconds (LISTEN/NOTIFY), however many processes there are.
 *
 * Run it: `DATABASE_URL=postgres://user:password@host:5432/db npx tsx examples/postgres.ts`
 * (default: the local server `postgres://postgres@127.0.0.1:5432/test`). It works in a schema of
 * its own, `secretgate_example_<random>`, and drops it at the end. `api.allowed.test` is a local
 * stand-in for the real API (`examples/support/localUpstream.ts`).
 */
import { Secretgate } from "@secretgate/core"
import { ApiKeys, HttpSecrets, SecretServer } from "@secretgate/http"
import { SqlSecretStore } from "@secretgate/sql"
import { SecretgateAgent } from "@secretgate/undici"
import { Redacted } from "effect"
import { spawn } from "node:child_process"
import { randomBytes } from "node:crypto"
import { createInterface } from "node:readline"
import pg from "pg"
import { fileURLToPath } from "node:url"
import { request } from "undici"
import { startLocalInternet } from "./support/localUpstream.js"

const url = Redacted.make(process.env.DATABASE_URL ?? "postgres://postgres@127.0.0.1:5432/test")
const schema = process.argv[4] ?? `secretgate_example_${randomBytes(4).toString("hex")}`
const organizationId = "acme"

if (process.argv[2] === "egress") {
  // ── the egress host: its own connection to the same database, no HTTP to the server ─────────────
  const key = Redacted.make(process.env.SECRETGATE_KEY!)
  const gate = new Secretgate({ layer: SqlSecretStore.layer({ url, key, schema, maxConnections: 2 }), organizationId })
  const internet = await startLocalInternet()
  const mount = await gate.mount({ GITHUB_TOKEN: process.argv[3]! })
  const agent = new SecretgateAgent({ resolver: await gate.resolver(mount), agentOptions: internet.agentOptions })
  const call = async () => {
    const response = await request(internet.url("api.allowed.test", "/user"), {
      headers: { authorization: `Bearer ${mount.env.GITHUB_TOKEN}` },
      dispatcher: agent
    })
    await response.body.text()
    return internet.received[internet.received.length - 1]!.authorization
  }
  console.log(`egress: sandbox env GITHUB_TOKEN=${mount.env.GITHUB_TOKEN}`)
  console.log(`egress: api.allowed.test received ${await call()}`)
  console.log("egress: waiting for an update")
  const lines = createInterface({ input: process.stdin })
  for await (const line of lines) {
    if (line !== "updated") continue
    const started = Date.now()
    let seen = await call()
    while (seen === "Bearer ghp_first_value" && Date.now() - started < 5_000) seen = await call()
    console.log(`egress: api.allowed.test received ${seen} (${Date.now() - started} ms after the update)`)
    break
  }
  await agent.close()
  await internet.close()
  await gate.dispose()
  process.exit(0)
} else {
  // ── the server ───────────────────────────────────────────────────────────────────────────────
  const key = Redacted.make(process.env.SECRETGATE_KEY ?? randomBytes(32).toString("base64"))
  const manage = ApiKeys.generate()
  let server: SecretServer.RunningServer
  try {
    server = await SecretServer.serve({
      backend: SqlSecretStore.layer({ url, key, schema, maxConnections: 4 }),
      keys: [{ key: manage, organizationId, scopes: ["secrets:manage"] }]
    })
  } catch (error) {
    console.error(`server: could not open the store: ${(error as Error).message}`)
    console.error("Set DATABASE_URL to a PostgreSQL server you may create a schema on.")
    process.exit(1)
  }
  console.log(`server: listening on ${server.url}, store in schema ${schema}`)
  const admin = new Secretgate({ layer: HttpSecrets.layer({ baseUrl: server.url, apiKey: manage }), organizationId })
  const name = `github-token-${randomBytes(4).toString("hex")}`
  const secret = await admin.secret.create({ name, value: "ghp_first_value", hosts: ["api.allowed.test"] })
  console.log(`server: created ${name} (placeholder ${secret.placeholder})`)

  // the key goes to the child through its environment, never its arguments
  const child = spawn(process.execPath, ["--import", "tsx", fileURLToPath(import.meta.url), "egress", name, schema], {
    env: { ...process.env, SECRETGATE_KEY: Redacted.value(key), DATABASE_URL: Redacted.value(url) },
    stdio: ["pipe", "pipe", "inherit"]
  })
  for await (const line of createInterface({ input: child.stdout! })) {
    console.log(line)
    if (line === "egress: waiting for an update") {
      await admin.secret.update(secret.id, { value: "ghp_second_value" })
      console.log("server: updated the value")
      child.stdin!.end("updated\n")
    }
  }
  const code = await new Promise<number | null>((resolve) => child.on("exit", resolve))
  await admin.secret.delete(secret.id)
  await admin.dispose()
  await server.close()
  const sql = new pg.Client({ connectionString: Redacted.value(url) })
  await sql.connect()
  await sql.query(`DROP SCHEMA ${schema} CASCADE`)
  await sql.end()
  console.log(code === 0 ? "two processes, one database: OK" : `the egress process failed (${code})`)
  process.exit(code === 0 ? 0 : 1)
}
