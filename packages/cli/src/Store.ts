/**
 * Where secrets live: the `--store` option (or `SECRETGATE_STORE`) and `--org` (or
 * `SECRETGATE_ORGANIZATION`), shared by every command, and the backend layer each location means.
 *
 * - a directory path or `file:` URL: the filesystem backend (store key from `SECRETGATE_KEY`, else
 *   the store's own key file);
 * - `http://` / `https://`: a secretgate server (`SECRETGATE_API_KEY`, and `SECRETGATE_RESOLVE_KEY`
 *   where values are needed);
 * - `postgres://` / `postgresql://`: the SQL backend on a PostgreSQL server (store key from
 *   `SECRETGATE_KEY`, required; the password from the URL or `PGPASSWORD`);
 * - `memory:`: a store that lives as long as the command (for `serve` and trying things out).
 *
 * Each backend's package is loaded only when its location is used: a command starts faster.
 *
 * @since 0.1.0
 */
import { Options } from "@effect/cli"
import type { Secrets } from "@secretgate/core"
import type { FileSystemSecretStore } from "@secretgate/filesystem"
import { Config, Effect, type Layer, Option, type Redacted } from "effect"
import { isAbsolute, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { CliFailure } from "./CliFailure.js"

/**
 * A parsed `--store`.
 *
 * @since 0.1.0
 */
export type Location =
  | { readonly _tag: "Directory"; readonly directory: string }
  | { readonly _tag: "Server"; readonly url: string }
  | { readonly _tag: "Memory" }
  | { readonly _tag: "Postgres"; readonly url: string }

/**
 * The options every command takes.
 *
 * @since 0.1.0
 */
export const options = {
  store: Options.text("store").pipe(
    Options.withFallbackConfig(Config.string("SECRETGATE_STORE")),
    Options.withDescription(
      "Where secrets live: a directory (filesystem store), postgres://… (SQL store), an http(s):// secretgate server, or memory: (env SECRETGATE_STORE)"
    )
  ),
  org: Options.text("org").pipe(
    Options.withFallbackConfig(Config.string("SECRETGATE_ORGANIZATION")),
    Options.withDefault("default"),
    Options.withDescription("The organization to act for (env SECRETGATE_ORGANIZATION; default \"default\")")
  )
} as const

/**
 * Parses a `--store` value.
 *
 * @since 0.1.0
 */
export const parse = (text: string): Effect.Effect<Location, CliFailure> => {
  const value = text.trim()
  if (value === "") return Effect.fail(CliFailure.usage("--store is empty: give a directory, an http(s):// server URL or memory:"))
  if (value === "memory:") return Effect.succeed({ _tag: "Memory" })
  const scheme = /^([a-z][a-z0-9+.-]*):/i.exec(value)?.[1]?.toLowerCase()
  if (scheme === "http" || scheme === "https") {
    try {
      const url = new URL(value)
      if (url.username !== "" || url.password !== "") {
        return Effect.fail(CliFailure.usage("--store must not carry credentials in the URL: set SECRETGATE_API_KEY instead"))
      }
      return Effect.succeed({ _tag: "Server", url: url.href.replace(/\/$/, "") })
    } catch {
      return Effect.fail(CliFailure.usage(`--store ${JSON.stringify(value)} is not a valid URL`))
    }
  }
  if (scheme === "file") return Effect.succeed({ _tag: "Directory", directory: fileURLToPath(value) })
  if (scheme === "postgres" || scheme === "postgresql") return Effect.succeed({ _tag: "Postgres", url: value })
  // a Windows drive letter ("C:\...") is a path, not a scheme
  if (scheme !== undefined && scheme.length > 1) {
    return Effect.fail(CliFailure.usage(`--store ${JSON.stringify(value)}: unknown scheme "${scheme}:" (a directory, http(s)://, postgres://, file: or memory:)`))
  }
  return Effect.succeed({ _tag: "Directory", directory: isAbsolute(value) ? value : resolve(value) })
}

/**
 * What a location needs from the environment, read when the store is opened (never from argv).
 */
const storeKey = Config.option(Config.redacted("SECRETGATE_KEY"))
const apiKey = Config.option(Config.redacted("SECRETGATE_API_KEY"))
const resolveKey = Config.option(Config.redacted("SECRETGATE_RESOLVE_KEY"))

/**
 * The backend at a location, as a layer providing `Secrets` (and for a directory
 * `FileSystemSecretStore`, for key management).
 *
 * @since 0.1.0
 */
export const layer = (
  location: Location,
  needs: { readonly values?: boolean } = {}
): Effect.Effect<Layer.Layer<Secrets.Secrets | FileSystemSecretStore.FileSystemSecretStore, unknown> | Layer.Layer<Secrets.Secrets, unknown>, CliFailure> => {
  switch (location._tag) {
    case "Memory":
      return Effect.map(load(() => import("@secretgate/memory")), ({ MemorySecretStore }) => MemorySecretStore.layer())
    case "Directory":
      return Effect.gen(function*() {
        const key = yield* configured(storeKey)
        const { FileSystemSecretStore } = yield* load(() => import("@secretgate/filesystem"))
        return FileSystemSecretStore.layer(Option.isSome(key) ? { directory: location.directory, key: key.value } : { directory: location.directory })
      })
    case "Postgres":
      return Effect.gen(function*() {
        const key = yield* configured(storeKey)
        if (Option.isNone(key)) {
          return yield* CliFailure.usage("a PostgreSQL store needs its store key in SECRETGATE_KEY (32 bytes, base64), the same for every replica")
        }
        const { SqlSecretStore } = yield* load(() => import("@secretgate/sql"))
        const { Redacted } = yield* load(() => import("effect"))
        return SqlSecretStore.layer({ url: Redacted.make(location.url), key: key.value })
      })
    case "Server":
      return Effect.gen(function*() {
        const manage = yield* configured(apiKey)
        const resolve = yield* configured(resolveKey)
        if (Option.isNone(manage) && (needs.values !== true || Option.isNone(resolve))) {
          return yield* CliFailure.usage(
            `the store ${location.url} is a server: set SECRETGATE_API_KEY to an API key with the secrets:manage scope`
          )
        }
        if (needs.values === true && Option.isNone(resolve)) {
          return yield* CliFailure.usage(`reading values from ${location.url} needs SECRETGATE_RESOLVE_KEY (an API key with the secrets:resolve scope)`)
        }
        const key = Option.getOrElse(manage, () => Option.getOrThrow(resolve))
        const { HttpSecrets } = yield* load(() => import("@secretgate/http"))
        return HttpSecrets.layer({
          baseUrl: location.url,
          apiKey: key,
          resolveApiKey: Option.getOrUndefined(resolve)
        })
      })
  }
}

const load = <A>(module: () => Promise<A>) => Effect.promise(module)

const configured = <A>(config: Config.Config<Option.Option<Redacted.Redacted<A>>>) =>
  Effect.mapError(config, (error) => CliFailure.usage(`could not read the environment: ${String(error)}`))
