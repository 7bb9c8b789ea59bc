/**
 * `@effect/platform`'s `HttpClient` routed through a `SecretgateAgent`, for sandbox runtimes
 * written with Effect.
 *
 * @since 0.1.0
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import type { HttpClient } from "@effect/platform/HttpClient"
import { Effect, Layer } from "effect"
import { type Options, SecretgateAgent } from "./SecretgateAgent.js"

/**
 * Provides `HttpClient` over a `SecretgateAgent` built from `options`; the agent is closed with
 * the layer's scope.
 *
 * @since 0.1.0
 * @example
 * ```ts
 * import { HttpClient } from "@effect/platform"
 * import { SecretgateHttpClient } from "@secretgate/undici"
 * const program = HttpClient.get("https://api.github.com/user", { headers: { authorization: `Bearer ${env.GITHUB_TOKEN}` } })
 * program.pipe(Effect.provide(SecretgateHttpClient.layer({ resolver })))
 * ```
 */
export const layer = (options: Options): Layer.Layer<HttpClient> =>
  NodeHttpClient.layerUndiciWithoutDispatcher.pipe(
    Layer.provide(
      Layer.scoped(
        NodeHttpClient.Dispatcher,
        Effect.acquireRelease(
          Effect.sync(() => new SecretgateAgent(options)),
          (agent) => Effect.promise(() => agent.destroy())
        )
      )
    )
  )
