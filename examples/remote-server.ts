/**
 * A secretgate REST server: the Daytona-compatible Secret API plus the egress resolve route, for
 * one organization, on the filesystem backend (encrypted at rest; the directory survives restarts).
 *
 * Run it: `npx tsx examples/remote-server.ts` (PORT, HOST, SECRETGATE_DIR, SECRETGATE_KEY and
 * SECRETGATE_RESOLVE_KEY may be set; missing API keys are generated and printed; without
 * SECRETGATE_DIR the store lives in a temporary directory). Stop with Ctrl-C: requests in flight
 * are finished first. The server speaks plain http: keep it on loopback (the default), or put a
 * TLS-terminating proxy in front of it for other hosts (`HttpSecrets` refuses plain http to a host
 * that is not loopback unless `allowInsecure: true`).
 *
 * Then, in another shell, `SECRETGATE_URL=... SECRETGATE_KEY=... SECRETGATE_RESOLVE_KEY=... npx tsx
 * examples/remote-client.ts`, or curl it:
 *   curl -H "Authorization: Bearer $SECRETGATE_KEY" $SECRETGATE_URL/secret
 */
import { FileSystemSecretStore } from "@secretgate/filesystem"
import { ApiKeys, SecretServer } from "@secretgate/http"
import { Redacted } from "effect"
import { tmpdir } from "node:os"
import { join } from "node:path"

const organizationId = process.env.SECRETGATE_ORG ?? "acme"
const manageKey = process.env.SECRETGATE_KEY ?? Redacted.value(ApiKeys.generate())
const resolveKey = process.env.SECRETGATE_RESOLVE_KEY ?? Redacted.value(ApiKeys.generate())
// Without a `key` option the store generates its encryption key and keeps it in the directory
// (mode 0600); production passes one from a secret manager instead.
const directory = process.env.SECRETGATE_DIR ?? join(tmpdir(), "secretgate-remote-server")

const server = await SecretServer.serve({
  port: Number(process.env.PORT ?? 8080),
  host: process.env.HOST ?? "127.0.0.1",
  // Any `Secrets` layer serves: `MemorySecretStore.layer()` for a throw-away server.
  backend: FileSystemSecretStore.layer({ directory }),
  keys: [
    { id: "demo-manage", key: manageKey, organizationId, scopes: ["secrets:manage"] },
    { id: "demo-resolve", key: resolveKey, organizationId, scopes: ["secrets:resolve"] }
  ]
})

console.log(`secretgate server listening on ${server.url} (organization ${JSON.stringify(organizationId)})`)
console.log(`secrets stored encrypted in ${directory}`)
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
