/**
 * Sandbox mounts: which secrets a sandbox gets, as environment variables holding placeholders.
 *
 * A mount is also the egress allow-list: a sandbox's requests only ever get *its* mounted secrets
 * substituted, even if its code learns another secret's placeholder.
 *
 * @since 0.1.0
 */
import { Effect, Either, Schema } from "effect"
import { type Secret, SecretName } from "./Secret.js"
import { InvalidSecretInput, SecretNotFound, type StoreError } from "./SecretError.js"
import { Secrets } from "./Secrets.js"

/**
 * Most entries in one mount.
 *
 * @since 0.1.0
 */
export const MAX_ENTRIES = 64

const ENV_VAR = /^[A-Za-z_][A-Za-z0-9_]*$/
const isSecretName = Schema.is(SecretName)

/**
 * What to mount: environment variable → secret name, as an object or as pairs (pairs let a caller's
 * duplicate variable be reported rather than silently overwritten).
 *
 * @since 0.1.0
 */
export type MountSpec = Readonly<Record<string, string>> | ReadonlyArray<readonly [envVar: string, secretName: string]>

/**
 * A secret as mounted into a sandbox.
 *
 * @since 0.1.0
 */
export interface MountedSecret {
  readonly envVar: string
  readonly id: string
  readonly name: string
  readonly placeholder: string
  readonly hosts: ReadonlyArray<string>
}

/**
 * The result of a mount: `env` goes into the sandbox; `secrets` is what its egress may substitute.
 *
 * @since 0.1.0
 */
export interface SandboxMount {
  readonly organizationId: string
  readonly env: Readonly<Record<string, string>>
  readonly secrets: ReadonlyArray<MountedSecret>
}

const entriesOf = (spec: MountSpec): ReadonlyArray<readonly [string, string]> =>
  Array.isArray(spec) ? spec : Object.entries(spec as Record<string, string>)

/**
 * Mounts secrets by name. Checks every entry first (variable names, duplicates, at most 64), then
 * looks every name up and reports all missing names at once.
 *
 * @since 0.1.0
 * @example
 * ```ts
 * const mount = yield* SandboxMount.make("acme", { ANTHROPIC_API_KEY: "anthropic-prod" })
 * mount.env // { ANTHROPIC_API_KEY: "sg_secret_..." }
 * ```
 */
export const make = (
  organizationId: string,
  spec: MountSpec
): Effect.Effect<SandboxMount, InvalidSecretInput | SecretNotFound | StoreError, Secrets> =>
  Effect.gen(function*() {
    if (spec === null || typeof spec !== "object") {
      return yield* Effect.fail(InvalidSecretInput.of("mount", "must map environment variables to secret names"))
    }
    const entries = entriesOf(spec)
    if (entries.length > MAX_ENTRIES) {
      return yield* Effect.fail(InvalidSecretInput.of("mount", `has ${entries.length} entries; at most ${MAX_ENTRIES} are allowed`))
    }
    const seen = new Set<string>()
    for (const entry of entries) {
      const [envVar, name] = Array.isArray(entry) ? entry : []
      if (typeof envVar !== "string" || !ENV_VAR.test(envVar)) {
        return yield* Effect.fail(InvalidSecretInput.of(`mount[${JSON.stringify(envVar)}]`, "is not a valid environment variable name ([A-Za-z_][A-Za-z0-9_]*)"))
      }
      if (seen.has(envVar)) return yield* Effect.fail(InvalidSecretInput.of(`mount[${JSON.stringify(envVar)}]`, "appears more than once"))
      if (typeof name !== "string" || !isSecretName(name)) {
        return yield* Effect.fail(InvalidSecretInput.of(`mount[${JSON.stringify(envVar)}]`, `${JSON.stringify(name)} is not a valid secret name`))
      }
      seen.add(envVar)
    }
    const secrets = yield* Secrets
    const looked = yield* Effect.forEach(
      entries,
      ([envVar, name]) =>
        secrets.getByName(organizationId, name).pipe(
          Effect.map((secret): Either.Either<readonly [string, Secret], string> => Either.right([envVar, secret] as const)),
          Effect.catchTag("SecretNotFound", () => Effect.succeed(Either.left(name)))
        ),
      { concurrency: 8 }
    )
    const missing = [...new Set(looked.flatMap((result) => (Either.isLeft(result) ? [result.left] : [])))]
    if (missing.length > 0) return yield* Effect.fail(SecretNotFound.byNames(missing))
    const mounted = looked.flatMap((result) => (Either.isRight(result) ? [result.right] : []))
    return {
      organizationId,
      env: Object.fromEntries(mounted.map(([envVar, secret]) => [envVar, secret.placeholder])),
      secrets: mounted.map(([envVar, secret]) => ({
        envVar,
        id: secret.id,
        name: secret.name,
        placeholder: secret.placeholder,
        hosts: secret.hosts
      }))
    }
  })
