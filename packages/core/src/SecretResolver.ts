/**
 * `SecretResolver`: how the egress layer gets the values of a sandbox's mounted secrets. Defined
 * here so that any `Secrets` (in process or remote) plugs into `@secretgate/undici` the same way.
 *
 * The resolver loads the mounted secrets' current values and keeps them current: with `ttl: 0`
 * (the default, right for in-process backends) every request sees the latest update or delete; a
 * remote backend sets a bounded TTL so that requests do not each cost a round trip.
 *
 * @since 0.1.0
 */
import { Duration, Effect, Exit, Runtime } from "effect"
import type { SandboxMount } from "./SandboxMount.js"
import type { StoreError } from "./SecretError.js"
import { type ResolvedSecret, Secrets } from "./Secrets.js"

/**
 * The values a sandbox's egress may substitute, looked up by placeholder.
 *
 * @since 0.1.0
 */
export interface SecretResolver {
  /** The mount it serves. */
  readonly mount: SandboxMount
  /** The current values of the mounted secrets; deleted secrets are absent. */
  readonly current: () => Promise<ReadonlyMap<string, ResolvedSecret>>
}

/**
 * @since 0.1.0
 */
export interface Options {
  /** How long loaded values may be reused. Default 0: every call loads them afresh. */
  readonly ttl?: Duration.DurationInput
}

/**
 * A resolver over the `Secrets` in context.
 *
 * @since 0.1.0
 */
export const make = (mount: SandboxMount, options: Options = {}): Effect.Effect<SecretResolver, never, Secrets> =>
  Effect.gen(function*() {
    const secrets = yield* Secrets
    const runtime = yield* Effect.runtime<never>()
    const run = Runtime.runPromiseExit(runtime)
    const ttl = Duration.toMillis(Duration.decode(options.ttl ?? 0))
    const placeholders = mount.secrets.map((secret) => secret.placeholder)
    const load = (): Promise<ReadonlyMap<string, ResolvedSecret>> =>
      run(secrets.resolve(mount.organizationId, placeholders)).then((exit) => {
        if (Exit.isSuccess(exit)) return new Map(exit.value.map((secret) => [secret.placeholder, secret]))
        throw squashStoreError(exit)
      })
    if (ttl <= 0) return { mount, current: load }

    let cached: { readonly at: number; readonly values: Promise<ReadonlyMap<string, ResolvedSecret>> } | undefined
    return {
      mount,
      current: () => {
        const now = Date.now()
        if (cached === undefined || now - cached.at >= ttl) {
          const values = load()
          cached = { at: now, values }
          // a failed load is not cached: the next request tries again
          values.catch(() => {
            if (cached?.values === values) cached = undefined
          })
        }
        return cached.values
      }
    }
  })

const squashStoreError = (exit: Exit.Exit<unknown, StoreError>): unknown =>
  Exit.isFailure(exit) ? (exit.cause._tag === "Fail" ? exit.cause.error : new Error("secret resolution failed")) : undefined
