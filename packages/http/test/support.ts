/**
 * Shared set-up of the HTTP tests: a real server on 127.0.0.1 (port 0) over a given backend, and
 * API keys issued on demand, one per organization and scope.
 */
import { HttpServer } from "@effect/platform"
import type { Secrets } from "@secretgate/core"
import { ApiKeys, HttpSecrets, SecretServer } from "@secretgate/http"
import { Context, Effect, Layer, Redacted } from "effect"

/** Issues (and remembers) one key per organization for a scope. */
export const keysFor = (registry: ApiKeys.Registry, scope: ApiKeys.Scope) => {
  const issued = new Map<string, Redacted.Redacted<string>>()
  return (organizationId: string): Redacted.Redacted<string> => {
    let key = issued.get(organizationId)
    if (key === undefined) {
      key = registry.issue({ organizationId, scopes: [scope] }).key
      issued.set(organizationId, key)
    }
    return key
  }
}

/**
 * `Secrets` over HTTP: a live server with `backend` behind it, and `HttpSecrets` talking to it
 * with keys issued per organization.
 */
export const remoteSecrets = <E>(
  backend: Layer.Layer<Secrets.Secrets, E>,
  options: SecretServer.ApiOptions = {}
): Layer.Layer<Secrets.Secrets, E | unknown> =>
  Layer.unwrapScoped(Effect.gen(function*() {
    const registry = ApiKeys.makeRegistry()
    const context = yield* Layer.build(
      SecretServer.layer(options).pipe(Layer.provide(backend), Layer.provide(ApiKeys.layer(registry)))
    )
    const address = Context.get(context, HttpServer.HttpServer).address
    if (address._tag !== "TcpAddress") return yield* Effect.dieMessage("expected a TCP address")
    return HttpSecrets.layer({
      baseUrl: `http://127.0.0.1:${address.port}${options.basePath ?? ""}`,
      apiKey: keysFor(registry, "secrets:manage"),
      resolveApiKey: keysFor(registry, "secrets:resolve")
    })
  }))

/** The plaintext of a key, for raw requests. */
export const bearer = (key: Redacted.Redacted<string>): string => `Bearer ${Redacted.value(key)}`
