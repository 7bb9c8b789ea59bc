/**
 * `secretgate proxy`: a long-running proxy for many sandboxes (containers, VMs) that reach it over
 * the network. Sandboxes are declared in a JSON file (`--sandboxes`); for each, the proxy writes
 * the environment to start it with into `<env-dir>/<id>.env` (mode 0600: it holds the sandbox's
 * proxy token; give each sandbox its own file, never the directory), e.g. for `docker run
 * --env-file`. The files a sandbox must read (the CA, the CA bundle, Node's preload) go to
 * `--bundle-dir`, the one directory to mount into sandboxes. Tokens are new at every start; SIGHUP
 * re-reads the file (new tokens, new env files; all or nothing); SIGTERM/SIGINT stop it.
 *
 * @since 0.1.0
 */
import { Command, Options } from "@effect/cli"
import type { ProxyAuditEvent, Registration } from "@secretgate/proxy"
import { Cause, Effect, Exit, Option, Schema } from "effect"
import { chmodSync, closeSync, fsyncSync, lstatSync, mkdirSync, openSync, readFileSync, realpathSync, renameSync, rmSync, writeSync } from "node:fs"
import { basename, dirname, join, resolve, sep } from "node:path"
import { randomBytes } from "node:crypto"
import { CliFailure } from "../CliFailure.js"
import * as Signals from "../Signals.js"
import * as Store from "../Store.js"
import * as Upstream from "../Upstream.js"

const SandboxEntry = Schema.Struct({
  id: Schema.String.pipe(Schema.pattern(/^[A-Za-z0-9_.-]{1,64}$/)),
  mount: Schema.Record({ key: Schema.String, value: Schema.String }),
  onDisallowed: Schema.optionalWith(Schema.Literal("forward", "block"), { exact: true }),
  unrestricted: Schema.optionalWith(Schema.Literal("allow", "deny"), { exact: true }),
  allowHttp: Schema.optionalWith(Schema.Array(Schema.String), { exact: true }),
  allowedHosts: Schema.optionalWith(Schema.Array(Schema.String), { exact: true }),
  webSockets: Schema.optionalWith(Schema.Boolean, { exact: true })
})
const SandboxesFile = Schema.parseJson(Schema.Array(SandboxEntry).pipe(
  Schema.filter((entries) => {
    const ids = entries.map((entry) => entry.id)
    const duplicate = ids.find((id, index) => ids.indexOf(id) !== index)
    return duplicate === undefined || `sandbox id ${JSON.stringify(duplicate)} appears twice`
  })
))
type SandboxEntry = typeof SandboxEntry.Type

const log = (event: string, fields: Record<string, unknown> = {}) =>
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), event, ...fields })}\n`)

/**
 * The real path of `path` (symbolic links followed): of the path itself, or, while it does not
 * exist yet, of its nearest existing parent with the rest appended.
 */
const realPathOf = (path: string): string => {
  const absolute = resolve(path)
  const rest: Array<string> = []
  for (let current = absolute;; current = dirname(current)) {
    try {
      return join(realpathSync(current), ...rest.reverse())
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT" || dirname(current) === current) return absolute
      rest.push(basename(current))
    }
  }
}

/** Whether `inner` is `outer` or a directory inside it, as real paths (`alias -> bundle` is `bundle`). */
const within = (inner: string, outer: string): boolean => {
  const a = realPathOf(inner)
  const b = realPathOf(outer)
  return a === b || a.startsWith(b.endsWith(sep) ? b : `${b}${sep}`)
}

/** `host:port` → its parts. */
const parseListen = (text: string): Effect.Effect<{ host: string; port: number }, CliFailure> => {
  const match = /^(?:\[([^\]]+)\]|([^:]*)):(\d{1,5})$/.exec(text)
  const port = Number(match?.[3])
  if (match === null || port > 65535) return Effect.fail(CliFailure.usage(`--listen ${JSON.stringify(text)} is not host:port (e.g. 0.0.0.0:8443)`))
  return Effect.succeed({ host: match[1] ?? (match[2] === "" ? "127.0.0.1" : match[2]!), port })
}

/**
 * An env file's text: `NAME=value` lines, values as they are (Docker's `--env-file` takes them
 * literally: no quoting). A value with a line break cannot be written; none of ours has one.
 *
 * @since 0.1.0
 */
export const envFileText = (env: Readonly<Record<string, string>>): string => {
  for (const [name, value] of Object.entries(env)) {
    if (/[\r\n]/.test(value)) throw new Error(`the variable ${name} holds a line break and cannot go into an env file`)
  }
  return `${Object.entries(env).map(([name, value]) => `${name}=${value}`).join("\n")}\n`
}

/** A directory of ours: created 0700, or an existing one tightened to it (refused if not a directory). */
const privateDirectory = (directory: string, label: string): Effect.Effect<void, CliFailure> =>
  Effect.try({
    try: () => {
      mkdirSync(directory, { recursive: true, mode: 0o700 })
      if (!lstatSync(directory).isDirectory()) throw new Error("not a directory")
      chmodSync(directory, 0o700)
    },
    catch: (error) => CliFailure.usage(`${label} ${directory}: ${(error as Error).message}`)
  })

/**
 * A file's new text, 0600, synced, in a fresh file beside it (never following a link planted at its
 * name); `put` renames it into place, `drop` removes it.
 */
const stagePrivateFile = (file: string, text: string) => {
  const temporary = `${file}.${randomBytes(6).toString("hex")}.tmp`
  const fd = openSync(temporary, "wx", 0o600)
  try {
    writeSync(fd, text)
    fsyncSync(fd)
  } catch (error) {
    closeSync(fd)
    rmSync(temporary, { force: true })
    throw error
  }
  closeSync(fd)
  return {
    put: () => renameSync(temporary, file),
    // (best effort: what is left is a 0600 file in the private --env-dir, replaced by the next load)
    drop: () => {
      try {
        rmSync(temporary, { force: true })
      } catch {
        // left
      }
    }
  }
}

/**
 * @since 0.1.0
 */
export const command = Command.make(
  "proxy",
  {
    ...Store.options,
    listen: Options.text("listen").pipe(Options.withDefault("127.0.0.1:8443"), Options.withDescription("host:port to listen on")),
    caDir: Options.directory("ca-dir").pipe(Options.optional, Options.withDescription("Keep the proxy's CA here (key 0600), so sandboxes keep trusting it across restarts; default: a new CA each start")),
    sandboxes: Options.file("sandboxes", { exists: "yes" }).pipe(Options.withDescription("JSON: [{ id, mount: { ENV: secret }, onDisallowed?, unrestricted?, allowHttp?, allowedHosts?, webSockets? }]")),
    envDir: Options.directory("env-dir").pipe(Options.withDescription("Where <id>.env files are written (directory 0700, files 0600); never mount it into a sandbox")),
    bundleDir: Options.directory("bundle-dir").pipe(Options.withDescription("Where the files sandboxes read (CA, CA bundle, Node preload) are written: mount this one, read-only, at the same path")),
    unrestricted: Options.choice("unrestricted", ["allow", "deny"]).pipe(
      Options.optional,
      Options.withDescription(
        "A secret without hosts (it may go to any host): substitute it everywhere, audited (allow), or never (deny); a sandbox's own \"unrestricted\" wins. Default: deny"
      )
    ),
    audit: Options.text("audit").pipe(Options.optional, Options.withDescription("Append the audit events to this file (0600), as JSON lines (default: stderr, with the logs)")),
    ...Upstream.options,
    allowPrivate: Options.text("allow-private").pipe(
      Options.repeated,
      Options.withDescription(
        "A private destination sandboxes may reach: a CIDR or address (10.0.0.0/8, fd00::/8, 192.168.1.5), or \"all\" (repeatable). Default: none — loopback, private, link-local (cloud metadata) addresses are refused; names pinned with --resolve are trusted"
      )
    )
  },
  (args) =>
    Effect.gen(function*() {
      const listen = yield* parseListen(args.listen)
      const location = yield* Store.parse(args.store, args.schema)
      const layer = yield* Store.layer(location, { values: true })
      const upstream = yield* Upstream.fromOptions(args)
      const caDir = Option.getOrUndefined(args.caDir)
      if (caDir !== undefined && within(caDir, args.bundleDir)) return yield* CliFailure.usage("--ca-dir holds the CA's private key: it must not be (or be inside) the --bundle-dir sandboxes read")
      if (caDir !== undefined && (within(caDir, args.envDir) || within(args.envDir, caDir))) {
        return yield* CliFailure.usage("--ca-dir holds the CA's private key and --env-dir every sandbox's token: keep them in separate directories")
      }
      if (within(args.envDir, args.bundleDir)) return yield* CliFailure.usage("--env-dir holds every sandbox's token: it must not be (or be inside) the --bundle-dir sandboxes read")
      yield* privateDirectory(args.envDir, "--env-dir")
      yield* Effect.try({
        try: () => mkdirSync(args.bundleDir, { recursive: true, mode: 0o755 }),
        catch: (error) => CliFailure.usage(`--bundle-dir ${args.bundleDir}: ${(error as Error).message}`)
      })
      const [{ Secretgate }, { SecretgateProxy }, { AuditFile }] = yield* Effect.promise(() =>
        Promise.all([import("@secretgate/core"), import("@secretgate/proxy"), import("@secretgate/undici")])
      )
      const unrestrictedOf = (entry: SandboxEntry) => entry.unrestricted ?? Option.getOrUndefined(args.unrestricted)
      const auditPath = Option.getOrUndefined(args.audit)
      const auditFile = auditPath === undefined ? undefined : yield* Effect.acquireRelease(
        Effect.try({
          try: () => AuditFile.open<ProxyAuditEvent.ProxyAuditEvent>(auditPath),
          catch: (error) => CliFailure.usage(`--audit ${auditPath}: ${(error as Error).message}`)
        }),
        (file) => Effect.promise(() => file.close())
      )
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
              directory: args.bundleDir,
              ...(caDir === undefined ? {} : { ca: { directory: caDir } }),
              upstream,
              allowPrivateDestinations: Upstream.allowPrivateOf(args.allowPrivate),
              audit: auditFile === undefined ? (event) => log("audit", { ...event }) : auditFile.write
            }),
          catch: (error) => new CliFailure({ kind: "unavailable", message: `could not start the proxy on ${args.listen}: ${(error as Error).message}` })
        }),
        (proxy) => Effect.promise(() => proxy.close())
      )

      let registered: ReadonlyArray<Registration> = []
      const revokeAll = (registrations: ReadonlyArray<Registration>) =>
        Effect.promise(() => Promise.all(registrations.map((registration) => registration.revoke())))
      const envFileOf = (entry: SandboxEntry) => join(args.envDir, `${entry.id}.env`)
      const register = (entry: SandboxEntry) =>
        Effect.gen(function*() {
          const mount = yield* Effect.tryPromise({ try: () => gate.mount(entry.mount), catch: (error) => error })
          const resolver = yield* Effect.tryPromise({ try: () => gate.resolver(mount), catch: (error) => error })
          const registration = yield* Effect.try({
            try: () =>
              proxy.register({
                id: entry.id,
                resolver,
                ...(entry.onDisallowed === undefined ? {} : { onDisallowed: entry.onDisallowed }),
                ...(unrestrictedOf(entry) === undefined ? {} : { unrestricted: unrestrictedOf(entry)! }),
                ...(entry.allowHttp === undefined ? {} : { allowHttp: entry.allowHttp }),
                ...(entry.allowedHosts === undefined ? {} : { allowedHosts: entry.allowedHosts }),
                ...(entry.webSockets === undefined ? {} : { webSockets: entry.webSockets })
              }),
            catch: (error) => CliFailure.usage(`sandbox ${entry.id}: ${(error as Error).message}`)
          })
          return { entry, mount, registration }
        })
      // All or nothing: every sandbox is registered before any env file is written; on a failure
      // the new registrations are revoked and the old ones (and their files) stay.
      const load = Effect.gen(function*() {
        const text = yield* Effect.try({ try: () => readFileSync(args.sandboxes, "utf8"), catch: (error) => CliFailure.usage(`could not read --sandboxes: ${(error as Error).message}`) })
        const entries = yield* Schema.decodeUnknown(SandboxesFile)(text).pipe(
          Effect.mapError((error) =>
            CliFailure.usage(
              `--sandboxes ${args.sandboxes} is not a JSON array of { id, mount: { ENV: secret-name }, onDisallowed?, unrestricted?, allowHttp?, allowedHosts?, webSockets? } with distinct ids (${
                error.message.split("\n").at(-1)?.trim()
              })`
            )
          )
        )
        const next: Array<Registration> = []
        const written = yield* Effect.forEach(entries, (entry) => Effect.tap(register(entry), ({ registration }) => Effect.sync(() => next.push(registration)))).pipe(
          Effect.tapError(() => revokeAll(next))
        )
        // every file staged before any is put in place: a failure here changes nothing
        const staged: Array<ReturnType<typeof stagePrivateFile>> = []
        yield* Effect.try({
          try: () => {
            for (const { entry, registration } of written) staged.push(stagePrivateFile(envFileOf(entry), envFileText(registration.env)))
          },
          catch: (error) => new CliFailure({ kind: "failure", message: `could not write the env files in --env-dir ${args.envDir}: ${(error as Error).message}` })
        }).pipe(Effect.tapError(() => Effect.andThen(Effect.sync(() => staged.forEach((file) => file.drop())), revokeAll(next))))
        const previous = registered
        for (const [i, { entry, mount }] of written.entries()) {
          try {
            staged[i]!.put()
          } catch (error) {
            // Some files hold the new tokens, the rest the old: both stay good, so that no sandbox
            // is left with a revoked one; the next load that succeeds revokes them all.
            registered = [...previous, ...next]
            for (const file of staged.slice(i)) file.drop()
            return yield* new CliFailure({
              kind: "failure",
              message: `could not put ${envFileOf(entry)} in place (the sandboxes before it have their new environment, the others keep theirs): ${(error as Error).message}`
            })
          }
          log("registered", { sandbox: entry.id, envFile: envFileOf(entry), secrets: mount.secrets.map((secret) => secret.name) })
        }
        registered = next
        yield* revokeAll(previous)
      })
      // SIGHUP reloads, one reload at a time, once the first load is done; SIGTERM/SIGINT stop. All
      // are listened for from before the first env file is written (which whoever starts sandboxes
      // may take as the proxy being ready) and "listening" is said.
      let started = false
      let stopping = false
      let reloadAsked = false
      let reloading: Promise<void> = Promise.resolve()
      const reload = () => {
        if (stopping) return
        reloading = reloading.then(() =>
          Effect.runPromiseExit(load).then((exit) => {
            if (Exit.isFailure(exit)) {
              const failure = Cause.squash(exit.cause) as { message?: unknown } | null | undefined
              log("reload-failed", { message: String(failure?.message ?? failure) })
            }
          })
        )
      }
      yield* Signals.on(["SIGHUP"], () => (started ? reload() : (reloadAsked = true)))
      const stopRequested = yield* Signals.first(["SIGTERM", "SIGINT"])
      // (a stop waits for a reload under way before the proxy closes)
      yield* Effect.addFinalizer(() => Effect.promise(() => reloading))
      yield* load
      started = true
      if (reloadAsked) reload()
      log("listening", { url: proxy.url, bundleDir: args.bundleDir, ca: proxy.bundle.caFile, caBundle: proxy.bundle.bundleFile })
      const signal = yield* stopRequested
      stopping = true
      log("stopping", { signal })
    }).pipe(Effect.scoped)
).pipe(Command.withDescription(
  "A long-running proxy for sandboxes declared in a file; writes each one's environment to <env-dir>/<id>.env.\n" +
    "Example: secretgate proxy --listen 0.0.0.0:8443 --ca-dir /var/lib/secretgate-ca --bundle-dir /run/secretgate-bundle --sandboxes sandboxes.json --env-dir /run/secretgate-env"
))
