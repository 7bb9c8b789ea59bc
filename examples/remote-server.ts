/**
 * A secretgate REST server: the Daytona-compatible Secret API plus the egress resolve route, for
 * one organization, on the in-memory backend.
 *
 * Run it: `npx tsx examples/remote-server.ts` (PORT, HOST, SECRETGATE_KEY and
 * SECRETGATE_RESOLVE_KEY may be set; missing keys are generated and printed). Stop with Ctrl-C:
 * requests in flight are finished first.
 *
 * Then, in another shell, `SECRETGATE_URL=... SECRETGATE_KEY=... SECRETGATE_RESOLVE_KEY=... npx tsx
 * examples/remote-client.ts`, or curl it:
 *   curl -H "Authorization: Bearer $SECRETGATE_KEY" $SECRETGATE_URL/secret
 */
import { ApiKeys, SecretServer } from "@secretgate/http"
import { MemorySecretStore } from "@secretgate/memory"
import { Redacted } from "effect"

const organizationId = process.env.SECRETGATE_ORG ?? "acme"
const manageKey = process.env.SECRETGATE_KEY ?? Redacted.value(ApiKeys.generate())
const resolveKey = process.env.SECRETGATE_RESOLVE_KEY ?? Redacted.value(ApiKeys.generate())

const server = await SecretServer.serve({
  port: Number(process.env.PORT ?? 8080),
  host: process.env.HOST ?? "127.0.0.1",
  // In-memory: the secrets live as long as this process. A durable server puts the filesystem
  // backend (`@secretgate/filesystem`) here instead; nothing else changes.
  backend: MemorySecretStore.layer(),
  keys: [
    { id: "demo-manage", key: manageKey, organizationId, scopes: ["secrets:manage"] },
    { id: "demo-resolve", key: resolveKey, organizationId, scopes: ["secrets:resolve"] }
  ]
})

console.log(`secretgate server listening on ${server.url} (organization ${JSON.stringify(organizationId)})`)
console.log(`OpenAPI document: ${server.url}/openapi.json`)
console.log(`demo keys (shown once; the server keeps only their hashes):`)
console.log(`  export SECRETGATE_URL=${server.url}`)
console.log(`  export SECRETGATE_KEY=${manageKey}           # secrets:manage`)
console.log(`  export SECRETGATE_RESOLVE_KEY=${resolveKey}   # secrets:resolve (egress only)`)
console.log(`try: curl -s -H "Authorization: Bearer $SECRETGATE_KEY" $SECRETGATE_URL/secret`)

const stop = async (signal: string) => {
  console.log(`\n${signal}: finishing requests in flight, then stopping`)
  await server.close()
  process.exit(0)
}
process.once("SIGINT", () => void stop("SIGINT"))
process.once("SIGTERM", () => void stop("SIGTERM"))
