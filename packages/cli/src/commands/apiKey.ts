/**
 * `secretgate api-key new`: a new API key, printed once, and the entry a `--keys-file` holds for
 * it (its hash: the server never needs the plaintext).
 *
 * @since 0.1.0
 */
import { Command, Options } from "@effect/cli"
import { Console, Effect, Redacted } from "effect"
import * as Store from "../Store.js"

const newKey = Command.make(
  "new",
  {
    org: Store.options.org,
    id: Options.text("id").pipe(Options.withDescription("A short, non-secret name for the key (logs, revocation)")),
    scope: Options.choice("scope", ["secrets:manage", "secrets:resolve"]).pipe(
      Options.repeated,
      Options.withDescription("A scope; repeat for both")
    )
  },
  (args) =>
    Effect.gen(function*() {
      const { ApiKeys } = yield* Effect.promise(() => import("@secretgate/http"))
      const key = ApiKeys.generate()
      const scopes = args.scope.length === 0 ? ["secrets:manage" as const] : [...new Set(args.scope)]
      yield* Console.log(Redacted.value(key))
      yield* Console.error(
        `the key above is shown once; add this entry to the server's --keys-file:\n${
          JSON.stringify({ id: args.id, organizationId: args.org, scopes, hash: ApiKeys.hash(key) })
        }`
      )
    })
).pipe(Command.withDescription("Generate an API key. Example: secretgate api-key new --id ci --scope secrets:manage > ci.key"))

/**
 * @since 0.1.0
 */
export const command = Command.make("api-key").pipe(
  Command.withDescription("API keys for secretgate serve"),
  Command.withSubcommands([newKey])
)
