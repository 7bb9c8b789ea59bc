/**
 * Where secrets live: the `--store` option (or `SECRETGATE_STORE`) and `--org` (or
 * `SECRETGATE_ORGANIZATION`), shared by every command, and the backend layer each location means.
 *
 * - a directory path or `file:` URL: the filesystem backend (store key from `SECRETGATE_KEY`, else
 *   the store's own key file);
 * - `http://` / `https://`: a secretgate server (`SECRETGATE_API_KEY`, and `SECRETGATE_RESOLVE_KEY`
 *   where values are needed);
 * - `postgres://` / `postgresql://`: the SQL backend on a PostgreSQL server (store key from
 *   `SECRETGATE_KEY`, required; the password from the URL or `PGPASSWORD`), in the schema of
 *   `--schema` (or `SECRETGATE_SCHEMA`; default `secretgate`);
 * - `memory:`: a store that lives as long as the command (for `serve` and trying things out).
 *
 * `SECRETGATE_KEY` holds one key (32 bytes, base64; its id is `primary`) or, for rotation, a key
 * ring: `id:base64` entries separated by commas, oldest first, the last one sealing.
 *
 * Each backend's package is loaded only when its location is used: a command starts faster.
 *
 * @since 0.1.0
 */
import { Options } from "@effect/cli"
import { KeyRing, type Secrets } from "@secretgate/core"
import type { FileSystemSecretStore } from "@secretgate/filesystem"
import { Config, Effect, type Layer, Option, Redacted } from "effect"
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
  | { readonly _tag: "Postgres"; readonly url: string; readonly schema: string | undefined }

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
  ),
  schema: Options.text("schema").pipe(
    Options.withFallbackConfig(Config.string("SECRETGATE_SCHEMA")),
    Options.optional,
    Options.withDescription("The schema of a postgres:// store's tables (env SECRETGATE_SCHEMA; default \"secretgate\"); other stores ignore it")
  )
} as const

/**
 * Parses a `--store` value.
 *
 * @since 0.1.0
 */
export const parse = (text: string, schema: Option.Option<string> = Option.none()): Effect.Effect<Location, CliFailure> => {
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
  if (scheme === "postgres" || scheme === "postgresql") {
    const name = Option.getOrUndefined(schema)?.trim()
    if (name !== undefined && !/^[a-z_][a-z0-9_]{0,47}$/.test(name)) {
      return Effect.fail(
        CliFailure.usage(`--schema ${JSON.stringify(name)} must be 1-48 characters of a-z, 0-9 and _, not starting with a digit`)
      )
    }
    return Effect.succeed({ _tag: "Postgres", url: value, schema: name })
  }
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
        const keys = Option.isSome(key) ? yield* keyOptions(key.value) : {}
        const { FileSystemSecretStore } = yield* load(() => import("@secretgate/filesystem"))
        return FileSystemSecretStore.layer({ directory: location.directory, ...keys })
      })
    case "Postgres":
      return Effect.gen(function*() {
        const key = yield* configured(storeKey)
        if (Option.isNone(key)) {
          return yield* CliFailure.usage("a PostgreSQL store needs its store key in SECRETGATE_KEY (32 bytes, base64), the same for every replica")
        }
        const keys = yield* keyOptions(key.value)
        const { SqlSecretStore } = yield* load(() => import("@secretgate/sql"))
        const { Redacted } = yield* load(() => import("effect"))
        return SqlSecretStore.layer({
          url: Redacted.make(location.url),
          ...keys,
          ...(location.schema === undefined ? {} : { schema: location.schema })
        })
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

/**
 * `SECRETGATE_KEY` as a backend's key options: one key, or a ring (`id:base64,id:base64`, oldest
 * first). A message names the entry at fault, never its bytes.
 */
const keyOptions = (
  value: Redacted.Redacted<string>
): Effect.Effect<{ readonly key: Redacted.Redacted<string> } | { readonly keyRing: KeyRing.KeyRing }, CliFailure> => {
  const text = Redacted.value(value)
  if (!text.includes(":")) return Effect.succeed({ key: value })
  return Effect.try({
    try: () => {
      const keys = text.split(",").map((entry, index) => {
        const colon = entry.indexOf(":")
        if (colon < 1) throw new Error(`entry ${index + 1} is not id:base64`)
        return KeyRing.keyFromBase64(entry.slice(0, colon).trim(), entry.slice(colon + 1))
      })
      return { keyRing: KeyRing.make(keys) }
    },
    catch: (error) =>
      CliFailure.usage(
        `SECRETGATE_KEY is not one key (32 bytes, base64) nor a key ring (id:base64,id:base64, oldest first): ${(error as Error).message}`
      )
  })
}

const load = <A>(module: () => Promise<A>) => Effect.promise(module)

const configured = <A>(config: Config.Config<Option.Option<Redacted.Redacted<A>>>) =>
  Effect.mapError(config, (error) => CliFailure.usage(`could not read the environment: ${String(error)}`))
