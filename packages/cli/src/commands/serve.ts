/**
 * `secretgate serve`: the REST API (wire-compatible with Daytona's Secret API) over a `--store`.
 *
 * API keys come from `--keys-file` (JSON; plaintext keys or their `sha256:` hashes, as
 * `secretgate api-key new` prints them) or, for `--org`, from `SECRETGATE_API_KEY` and
 * `SECRETGATE_RESOLVE_KEY`. Logs are JSON lines on stderr: the server's life (`listening`,
 * `stopping`, `stopped`) and one `request` line per request (method, route template, status,
 * duration, API key id; `--no-access-log` turns them off). `GET /health` and `GET /ready` answer
 * probes without a key. SIGTERM and SIGINT stop it gracefully.
 *
 * @since 0.1.0
 */
import { Command, Options } from "@effect/cli"
import { Secrets } from "@secretgate/core"
import type { ApiKeys, SecretServer } from "@secretgate/http"
import { Config, Effect, type Layer, Option, Schema } from "effect"
import { readFile } from "node:fs/promises"
import { CliFailure } from "../CliFailure.js"
import * as Signals from "../Signals.js"
import * as Store from "../Store.js"

const Scope = Schema.Literal("secrets:manage", "secrets:resolve")
const KeyEntry = Schema.Union(
  Schema.Struct({ id: Schema.optionalWith(Schema.String, { exact: true }), organizationId: Schema.String, scopes: Schema.Array(Scope), hash: Schema.String }),
  Schema.Struct({ id: Schema.optionalWith(Schema.String, { exact: true }), organizationId: Schema.String, scopes: Schema.Array(Scope), key: Schema.Redacted(Schema.String) })
)
const KeysFile = Schema.parseJson(Schema.Array(KeyEntry))

/** One structured log line (never a value, never a key). */
const log = (event: string, fields: Record<string, unknown> = {}) =>
  Effect.sync(() => process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level: "info", event, ...fields })}\n`))

const keysFromFile = (path: string) =>
  Effect.gen(function*() {
    const text = yield* Effect.tryPromise({
      try: () => readFile(path, "utf8"),
      catch: (error) => CliFailure.usage(`could not read --keys-file ${path}: ${(error as Error).message}`)
    })
    return yield* Schema.decodeUnknown(KeysFile)(text).pipe(
      Effect.mapError(() =>
        CliFailure.usage(
          `--keys-file ${path} is not a JSON array of { "id"?, "organizationId", "scopes": ["secrets:manage" | "secrets:resolve"], "hash" | "key" }`
        )
      )
    )
  })

const keysFromEnvironment = (organizationId: string) =>
  Effect.gen(function*() {
    const manage = yield* Effect.orDie(Config.option(Config.redacted("SECRETGATE_API_KEY")))
    const resolve = yield* Effect.orDie(Config.option(Config.redacted("SECRETGATE_RESOLVE_KEY")))
    const entries: Array<ApiKeys.KeyEntry> = []
    if (Option.isSome(manage)) entries.push({ id: "env-manage", key: manage.value, organizationId, scopes: ["secrets:manage"] })
    if (Option.isSome(resolve)) entries.push({ id: "env-resolve", key: resolve.value, organizationId, scopes: ["secrets:resolve"] })
    if (entries.length === 0) {
      return yield* CliFailure.usage("no API keys: give --keys-file, or set SECRETGATE_API_KEY (secrets:manage) and/or SECRETGATE_RESOLVE_KEY (secrets:resolve)")
    }
    return entries
  })

/**
 * @since 0.1.0
 */
export const command = Command.make(
  "serve",
  {
    ...Store.options,
    port: Options.integer("port").pipe(Options.withDefault(8080), Options.withDescription("Port to listen on (0: any free port)")),
    host: Options.text("host").pipe(Options.withDefault("127.0.0.1"), Options.withDescription("Interface to listen on")),
    keysFile: Options.file("keys-file", { exists: "yes" }).pipe(Options.optional, Options.withDescription("API keys, JSON (see secretgate api-key new)")),
    requireHosts: Options.boolean("require-hosts").pipe(
      Options.withDescription("Refuse (400) creating a secret without hosts, or updating one to have none: such a secret's value may go to any host")
    ),
    noAccessLog: Options.boolean("no-access-log").pipe(Options.withDescription("Do not log a JSON line per request on stderr")),
    auditLog: Options.file("audit-log").pipe(
      Options.optional,
      Options.withDescription("Append the management audit trail (who created, updated, deleted which secret) to this file, as JSON lines (created 0600)")
    ),
    otelEndpoint: Options.text("otel-endpoint").pipe(
      Options.withFallbackConfig(Config.string("OTEL_EXPORTER_OTLP_ENDPOINT")),
      Options.optional,
      Options.withDescription("Export traces and metrics to this OpenTelemetry collector over OTLP/HTTP, e.g. http://127.0.0.1:4318 (env OTEL_EXPORTER_OTLP_ENDPOINT)")
    )
  },
  (args) =>
    Effect.gen(function*() {
      const location = yield* Store.parse(args.store, args.schema)
      if (location._tag === "Server") return yield* CliFailure.usage("serve: --store is a server already; serve a directory or memory:")
      const store = yield* Store.layer(location)
      const backend = args.requireHosts ? Secrets.withRequiredHosts(store as Layer.Layer<Secrets.Secrets, unknown>) : store
      const keys = Option.isSome(args.keysFile) ? yield* keysFromFile(args.keysFile.value) : yield* keysFromEnvironment(args.org)
      const { SecretServer } = yield* Effect.promise(() => import("@secretgate/http"))
      const server = yield* Effect.tryPromise({
        try: () =>
          SecretServer.serve({
            port: args.port,
            host: args.host,
            backend: backend as never,
            keys,
            ...(Option.isSome(args.auditLog) ? { auditLog: args.auditLog.value } : {}),
            ...(Option.isSome(args.otelEndpoint) ? { otlp: { endpoint: args.otelEndpoint.value } } : {}),
            ...(args.noAccessLog ? {} : { accessLog: (entry: SecretServer.AccessLogEntry) => Effect.runSync(log("request", { ...entry })) })
          }),
        catch: (error) =>
          // a TypeError is a setting refused before anything started (an OTLP endpoint that is no URL)
          error instanceof TypeError
            ? CliFailure.usage(error.message)
            : new CliFailure({ kind: "unavailable", message: `could not start the server: ${(error as Error).message}` })
      })
      const stopRequested = yield* Signals.first(["SIGTERM", "SIGINT"])
      yield* log("listening", { url: server.url, keys: keys.length, health: `${server.url}/health`, ready: `${server.url}/ready`, requireHosts: args.requireHosts })
      const signal = yield* stopRequested
      yield* log("stopping", { signal })
      yield* Effect.promise(() => server.close())
      yield* log("stopped")
    }).pipe(Effect.scoped)
).pipe(Command.withDescription(
  "Serve the REST API over a store, with GET /health and GET /ready for probes and a JSON access log line per request on stderr. " +
    "Example: SECRETGATE_API_KEY=$(cat manage.key) secretgate serve --store /var/lib/secretgate --port 8080"
))
