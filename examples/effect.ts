/**
 * secretgate from Effect: the services and layers a control plane composes, with no Promise facade.
 * A secret is created through `Secrets`, mounted with `SandboxMount`, and a sandbox's request goes
 * out through `@effect/platform`'s `HttpClient` provided by `SecretgateHttpClient.layer`, which
 * puts the value in only for the allowed host and scrubs it from the answer.
 *
 * Run it: `npx tsx examples/effect.ts`
 */
import { HttpClient, HttpClientRequest } from "@effect/platform"
import { SandboxMount, SecretResolver, Secrets } from "@secretgate/core"
import { MemorySecretStore } from "@secretgate/memory"
import { SecretgateHttpClient } from "@secretgate/undici"
import { Console, Effect, Layer, Redacted } from "effect"
import { startLocalInternet } from "./support/localUpstream.js"

const organizationId = "acme"

const program = Effect.gen(function*() {
  // A stand-in for the internet: one local HTTPS server that answers for every host name and
  // echoes what it receives.
  const internet = yield* Effect.acquireRelease(Effect.promise(startLocalInternet), (server) => Effect.promise(server.close))

  // 1. The domain service: create a secret (the value is Redacted from the start).
  const secrets = yield* Secrets.Secrets
  const secret = yield* secrets.create(organizationId, {
    name: "billing-key",
    value: Redacted.make("sk_live_billing_42"),
    hosts: ["api.allowed.test"]
  })
  yield* Console.log(`created ${secret.name}: ${secret.placeholder}`)

  // 2. A sandbox mount and its resolver.
  const mount = yield* SandboxMount.make(organizationId, { BILLING_KEY: "billing-key" })
  const resolver = yield* SecretResolver.make(mount)

  // 3. The sandbox's HTTP client, routed through the egress agent (closed when the layer is).
  const egress = SecretgateHttpClient.layer({ resolver, agentOptions: internet.agentOptions })
  const send = (host: string) =>
    Effect.gen(function*() {
      const client = yield* HttpClient.HttpClient
      const response = yield* client.execute(
        HttpClientRequest.get(internet.url(host, "/charge")).pipe(HttpClientRequest.bearerToken(mount.env.BILLING_KEY!))
      )
      const echoed = (yield* response.json) as { youSent: { authorization: string } }
      return echoed.youSent.authorization
    })
  const [allowedEcho, evilEcho] = yield* Effect.all([send("api.allowed.test"), send("evil.test")]).pipe(Effect.provide(egress))
  const [allowed, evil] = internet.received
  yield* Console.log(`api.allowed.test received  ${allowed?.authorization}   <- the real value`)
  yield* Console.log(`evil.test received         ${evil?.authorization}   <- only the placeholder`)
  yield* Console.log(`the sandbox read back      ${allowedEcho}   <- scrubbed`)

  const ok = allowed?.authorization === "Bearer sk_live_billing_42" &&
    evil?.authorization === `Bearer ${mount.env.BILLING_KEY}` &&
    allowedEcho === `Bearer ${mount.env.BILLING_KEY}` && evilEcho === `Bearer ${mount.env.BILLING_KEY}`
  yield* Console.log(ok ? "end to end: OK" : "end to end: UNEXPECTED RESULT")
  return ok
})

// The backend is one layer: swap in FileSystemSecretStore.layer({ directory }) or
// HttpSecrets.layer({ baseUrl, apiKey }) and nothing above changes.
const ok = await Effect.runPromise(program.pipe(Effect.scoped, Effect.provide(Layer.orDie(MemorySecretStore.layer()))))
process.exitCode = ok ? 0 : 1
