/**
 * A secretgate REST server: the Daytona-compatible Secret API plus the egress resolve route, for
 * one organization, on the filesystem backend (encrypted at rest; the directory survives restarts).
 *
 * Run it: `npx tsx examples/remote-server.ts`. PORT, HOST, SECRETGATE_STORE (the store's directory;
 * default: one in the temporary directory), SECRETGATE_KEY (the store key, base64; default: a key
 * file the store generates), SECRETGATE_ORGANIZATION, and the API keys SECRETGATE_API_KEY
 * (`secrets:manage`) and SECRETGATE_RESOLVE_KEY (`secrets:resolve`) may be set; missing API keys are
 * generated and printed. Stop with Ctrl-C: requests in flight
 * are finished first. The server speaks plain http: keep it on loopback (the default), or put a
 * TLS-terminating proxy in front of it for other hosts (`HttpSecrets` refuses plain http to a host
 * that is not loopback unless `allowInsecure: true`).
 *
 * Then, in another shell, `SECRETGATE_STORE=<server url> SECRETGATE_API_KEY=... SECRETGATE_RESOLVE_KEY=...
 * npx tsx examples/remote-client.ts`, or curl it:
 *   curl -H "Authorization: Bearer $SECRETGATE_API_KEY" $SECRETGATE_STORE/secret
 */
import { FileSystemSecretStore } from "@secretgate/filesystem"
import { ApiKeys, SecretServer } from "@secretgate/http"
import { Redacted } from "effect"
import { tmpdir } from "node:os"
import { join } from "node:path"

const organizationId = process.env.SECRETGATE_ORGANIZATION ?? "acme"
const manageKey = process.env.SECRETGATE_API_KEY ?? Redacted.value(ApiKeys.generate())
const resolveKey = process.env.SECRETGATE_RESOLVE_KEY ?? Redacted.value(ApiKeys.generate())
const directory = process.env.SECRETGATE_STORE ?? join(tmpdir(), "secretgate-remote-server")
if (/^[a-z][a-z0-9+.-]*:\/\//i.test(directory)) {
  console.error(`SECRETGATE_STORE is ${JSON.stringify(directory)}: this server keeps its store in a directory; give it a path`)
  process.exit(2)
}
// Without SECRETGATE_KEY the store generates its key and keeps it in the directory (mode 0600);
// production passes one from a secret manager instead.
const storeKey = process.env.SECRETGATE_KEY

const server = await SecretServer.serve({
  port: Number(process.env.PORT ?? 8080),
  host: process.env.HOST ?? "127.0.0.1",
  // Any `Secrets` layer serves: `MemorySecretStore.layer()` for a throw-away server.
  backend: FileSystemSecretStore.layer(storeKey === undefined ? { directory } : { directory, key: Redacted.make(storeKey) }),
  keys: [
    { id: "demo-manage", key: manageKey, organizationId, scopes: ["secrets:manage"] },
    { id: "demo-resolve", key: resolveKey, organizationId, scopes: ["secrets:resolve"] }
  ]
})

console.log(`secretgate server listening on ${server.url} (organization ${JSON.stringify(organizationId)})`)
console.log(`secrets stored encrypted in ${directory}`)
console.log(`OpenAPI document: ${server.url}/openapi.json`)
console.log(`demo keys (shown once; the server keeps only their hashes):`)
console.log(`  export SECRETGATE_STORE=${server.url}`)
console.log(`  export SECRETGATE_API_KEY=${manageKey}       # secrets:manage`)
console.log(`  export SECRETGATE_RESOLVE_KEY=${resolveKey}   # secrets:resolve (egress only)`)
console.log(`try: curl -s -H "Authorization: Bearer $SECRETGATE_API_KEY" $SECRETGATE_STORE/secret`)

const stop = async (signal: string) => {
  console.log(`\n${signal}: finishing requests in flight, then stopping`)
  await server.close()
  process.exit(0)
}
process.once("SIGINT", () => void stop("SIGINT"))
process.once("SIGTERM", () => void stop("SIGTERM"))
