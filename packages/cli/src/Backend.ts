/**
 * Runs a command's work against the store `--store` names, for the organization `--org` names.
 *
 * @since 0.1.0
 */
import { type Secret, Secrets } from "@secretgate/core"
import { Effect, type Option } from "effect"
import type { CliFailure } from "./CliFailure.js"
import * as Store from "./Store.js"

/**
 * The options every store command receives.
 *
 * @since 0.1.0
 */
export interface StoreArgs {
  readonly store: string
  readonly org: string
  /** `--schema` (or `SECRETGATE_SCHEMA`), for a PostgreSQL store. */
  readonly schema: Option.Option<string>
}

/**
 * Runs `work` with the organization's `Secrets`.
 *
 * @since 0.1.0
 */
export const withSecrets = <A, E>(
  args: StoreArgs,
  work: (secrets: Secrets.Secrets, organizationId: string) => Effect.Effect<A, E>,
  needs: { readonly values?: boolean } = {}
): Effect.Effect<A, E | CliFailure | unknown> =>
  Effect.gen(function*() {
    const location = yield* Store.parse(args.store, args.schema)
    const layer = yield* Store.layer(location, needs)
    return yield* Effect.flatMap(Secrets.Secrets, (secrets) => work(secrets, args.org)).pipe(
      Effect.provide(layer as never),
      Effect.scoped
    ) as Effect.Effect<A, E>
  })

/**
 * A secret by id or, when no secret has that id, by name.
 *
 * @since 0.1.0
 */
export const find = (secrets: Secrets.Secrets, organizationId: string, idOrName: string): Effect.Effect<Secret.Secret, unknown> =>
  secrets.get(organizationId, idOrName).pipe(
    Effect.catchTag("SecretNotFound", () => secrets.getByName(organizationId, idOrName))
  )
