/**
 * `secretgate proxy`: a long-running proxy for many sandboxes (containers, VMs) that reach it over
 * the network. Sandboxes are declared in a JSON file (`--sandboxes`); for each, the proxy writes
 * the environment to start it with into `<env-dir>/<id>.env` (mode 0600: it holds the sandbox's
 * proxy token), e.g. for `docker run --env-file`. Tokens are new at every start; SIGHUP re-reads the
 * file (new tokens, new env files); SIGTERM/SIGINT stop it.
 *
 * @since 0.1.0
 */
import { Command, Options } from "@effect/cli"
import { Effect, Option, Schema } from "effect"
import { mkdirSync, readFileSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { CliFailure } from "../CliFailure.js"
import * as Store from "../Store.js"

const SandboxEntry = Schema.Struct({
  id: Schema.String.pipe(Schema.pattern(/^[A-Za-z0-9_.-]{1,64}$/)),
  mount: Schema.Record({ key: Schema.String, value: Schema.String }),
  onDisallowed: Schema.optionalWith(Schema.Literal("forward", "block"), { exact: true }),
  allowHttp: Schema.optionalWith(Schema.Array(Schema.String), { exact: true }),
  allowedHosts: Schema.optionalWith(Schema.Array(Schema.String), { exact: true }),
  webSockets: Schema.optionalWith(Schema.Boolean, { exact: true })
})
const SandboxesFile = Schema.parseJson(Schema.Array(SandboxEntry))

const log = (event: string, fields: Record<string, unknown> = {}) =>
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), event, ...fields })}\n`)

/** `host:port` → its parts. */
const parseListen = (text: string): Effect.Effect<{ host: string; port: number }, CliFailure> => {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text)
  const port = Number(match?.[3])
  if (match === null || port > 65535) return Effect.fail(CliFailure.usage(`--listen ${JSON.stringify(text)} is not host:port (e.g. 0.0.0.0:8443)`))
  return Effect.succeed({ host: match[1] ?? (match[2] === "" ? "127.0.0.1" : match[2]!), port })
}

/** A value for an env file: quoted only when it must be. */
const envLine = (name: string, value: string) => `${name}=${/^[\w@%+=:,./-]*$/.test(value) ? value : JSON.stringify(value)}`

/**
 * @since 0.1.0
 */
export const command = Command.make(
  "proxy",
  {
    ...Store.options,
    listen: Options.text("listen").pipe(Options.withDefault("127.0.0.1:8443"), Options.withDescription("host:port to listen on")),
    caDir: Options.directory("ca-dir").pipe(Options.optional, Options.withDescription("Keep the proxy's CA here (key 0600), so sandboxes keep trusting it across restarts; default: a new CA each start")),
    sandboxes: Options.file("sandboxes", { exists: "yes" }).pipe(Options.withDescription("JSON: [{ id, mount: { ENV: secret }, onDisallowed?, allowHttp?, allowedHosts?, webSockets? }]")),
    envDir: Options.directory("env-dir").pipe(Options.withDescription("Where <id>.env files are written (0600)")),
    resolve: Options.text("resolve").pipe(Options.repeated, Options.withDescription("host:address — pin a host name to an address upstream")),
    upstreamCa: Options.file("upstream-ca", { exists: "yes" }).pipe(Options.optional, Options.withDescription("Extra CA certificates (PEM) trusted upstream"))
  },
  (args) =>
    Effect.gen(function*() {
      const listen = yield* parseListen(args.listen)
      const location = yield* Store.parse(args.store)
      const layer = yield* Store.layer(location, { values: true })
      const resolve: Record<string, string> = {}
      for (const entry of args.resolve) {
        const colon = entry.indexOf(":")
        if (colon <= 0) return yield* CliFailure.usage(`--resolve ${JSON.stringify(entry)} is not host:address`)
        resolve[entry.slice(0, colon)] = entry.slice(colon + 1)
      }
      const [{ Secretgate }, { SecretgateProxy }] = yield* Effect.promise(() => Promise.all([import("@secretgate/core"), import("@secretgate/proxy")]))
      const caFile = Option.getOrUndefined(args.upstreamCa)
      const caDir = Option.getOrUndefined(args.caDir)
      const gate = yield* Effect.acquireRelease(
        Effect.sync(() => new Secretgate({ layer: layer as never, organizationId: args.org })),
        (gate) => Effect.promise(() => gate.dispose())
      )
      const proxy = yield* Effect.acquireRelease(
        Effect.tryPromise({
          try: () =>
            SecretgateProxy.start({
              host: listen.host,
              port: listen.port,
              ...(caDir === undefined ? {} : { ca: { directory: caDir } }),
              upstream: { resolve, ...(caFile === undefined ? {} : { ca: readFileSync(caFile, "utf8") }) },
              audit: (event) => log("audit", { ...event })
            }),
          catch: (error) => new CliFailure({ kind: "unavailable", message: `could not start the proxy on ${args.listen}: ${(error as Error).message}` })
        }),
        (proxy) => Effect.promise(() => proxy.close())
      )
      mkdirSync(args.envDir, { recursive: true, mode: 0o700 })

      let registered: Array<{ revoke(): Promise<void> }> = []
      const load = Effect.gen(function*() {
        const text = yield* Effect.try({ try: () => readFileSync(args.sandboxes, "utf8"), catch: (error) => CliFailure.usage(`could not read --sandboxes: ${(error as Error).message}`) })
        const entries = yield* Schema.decodeUnknown(SandboxesFile)(text).pipe(
          Effect.mapError(() => CliFailure.usage(`--sandboxes ${args.sandboxes} is not a JSON array of { id, mount: { ENV: secret-name }, onDisallowed?, allowHttp?, allowedHosts?, webSockets? }`))
        )
        const next: Array<{ revoke(): Promise<void> }> = []
        for (const entry of entries) {
          const mount = yield* Effect.tryPromise({ try: () => gate.mount(entry.mount), catch: (error) => error })
          const resolver = yield* Effect.tryPromise({ try: () => gate.resolver(mount), catch: (error) => error })
          const registration = proxy.register({
            id: entry.id,
            resolver,
            ...(entry.onDisallowed === undefined ? {} : { onDisallowed: entry.onDisallowed }),
            ...(entry.allowHttp === undefined ? {} : { allowHttp: entry.allowHttp }),
            ...(entry.allowedHosts === undefined ? {} : { allowedHosts: entry.allowedHosts }),
            ...(entry.webSockets === undefined ? {} : { webSockets: entry.webSockets })
          })
          const file = join(args.envDir, `${entry.id}.env`)
          writeFileSync(file, `${Object.entries(registration.env).map(([name, value]) => envLine(name, value)).join("\n")}\n`, { mode: 0o600 })
          next.push(registration)
          log("registered", { sandbox: entry.id, envFile: file, secrets: mount.secrets.map((secret) => secret.name) })
        }
        const previous = registered
        registered = next
        yield* Effect.promise(() => Promise.all(previous.map((registration) => registration.revoke())))
      })
      yield* load
      log("listening", { url: proxy.url, ca: proxy.bundle.caFile, caBundle: proxy.bundle.bundleFile })

      // SIGHUP reloads; SIGTERM/SIGINT stop
      const signal = yield* Effect.async<string>((resume) => {
        const reload = () => void Effect.runPromise(Effect.either(load)).then((result) => {
          if (result._tag === "Left") log("reload-failed", { message: String((result.left as { message?: string }).message ?? result.left) })
        })
        const stop = (name: string) => () => resume(Effect.succeed(name))
        const handlers = [["SIGHUP", reload], ["SIGTERM", stop("SIGTERM")], ["SIGINT", stop("SIGINT")]] as const
        for (const [name, handler] of handlers) process.on(name, handler)
        return Effect.sync(() => {
          for (const [name, handler] of handlers) process.removeListener(name, handler)
        })
      })
      log("stopping", { signal })
    }).pipe(Effect.scoped)
).pipe(Command.withDescription(
  "A long-running proxy for sandboxes declared in a file; writes each one's environment to <env-dir>/<id>.env.\n" +
    "Example: secretgate proxy --listen 0.0.0.0:8443 --ca-dir /var/lib/secretgate-ca --sandboxes sandboxes.json --env-dir /run/secretgate"
))
