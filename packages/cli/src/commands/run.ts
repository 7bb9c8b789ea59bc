/**
 * `secretgate run --mount ENV=secret -- <command> [args...]`: runs a program whose environment holds
 * placeholders, with its HTTP(S) traffic through a secretgate proxy started for it alone, so that its
 * requests to a secret's allowed hosts carry the value and nothing it can read does.
 *
 * The child gets: the placeholders; the proxy variables with its token; `NO_PROXY` for loopback
 * only; the CA variables; what Node 20 needs (a preload, since its `fetch` ignores the proxy
 * variables). Copies of those inherited from this process are removed first, and so is every
 * `SECRETGATE_*` variable (the store key and API keys stay with this process). Signals are passed
 * on; the exit code is the child's (128 + n for a signal n).
 *
 * A child running as the same user as this process can still read what that user can (this
 * process's own environment in `/proc`, a filesystem store's files): `--user` runs it as another.
 *
 * @since 0.1.0
 */
import { Args, Command, Options } from "@effect/cli"
import type { ProxyAuditEvent } from "@secretgate/proxy"
import { Effect, Option } from "effect"
import { type ChildProcess, spawn } from "node:child_process"
import { chmodSync, mkdtempSync, rmSync } from "node:fs"
import { constants, tmpdir } from "node:os"
import { join } from "node:path"
import * as ChildUser from "../ChildUser.js"
import { CliFailure } from "../CliFailure.js"
import * as Signals from "../Signals.js"
import * as Store from "../Store.js"
import * as Upstream from "../Upstream.js"

const mount = Options.keyValueMap("mount").pipe(
  Options.withDescription("ENV=secret-name: the child's variable ENV holds the secret's placeholder (repeatable)")
)

/**
 * Names a mount may not take: the child's proxy and CA variables, which the environment needs for
 * itself.
 */
const RESERVED = /^(https?_proxy|no_proxy|all_proxy|node_options|node_use_env_proxy|node_extra_ca_certs|ssl_cert_file|ssl_cert_dir|requests_ca_bundle|curl_ca_bundle|git_ssl_cainfo|secretgate_.*)$/i

/** Variables of this process a child must not inherit: ours, and anything the proxy's env sets. */
const INHERITED = /^(SECRETGATE_.*|https?_proxy|all_proxy|no_proxy|SSL_CERT_DIR)$/i

/**
 * The child's environment: this process's, without what it must not inherit, plus the sandbox's.
 *
 * @since 0.1.0
 */
export const childEnvironment = (parent: NodeJS.ProcessEnv, sandbox: Readonly<Record<string, string>>): Record<string, string> => {
  const ours = new Set(Object.keys(sandbox).map((name) => name.toUpperCase()))
  const env: Record<string, string> = {}
  for (const [name, value] of Object.entries(parent)) {
    if (value === undefined || INHERITED.test(name) || ours.has(name.toUpperCase())) continue
    env[name] = value
  }
  Object.assign(env, sandbox)
  const inheritedNodeOptions = parent["NODE_OPTIONS"]
  if (inheritedNodeOptions !== undefined && inheritedNodeOptions.trim() !== "" && sandbox["NODE_OPTIONS"] !== undefined) {
    env["NODE_OPTIONS"] = `${inheritedNodeOptions} ${sandbox["NODE_OPTIONS"]}`
  }
  return env
}

/**
 * What the proxy did for the child: per mounted secret, and per connection.
 *
 * @since 0.1.0
 */
export interface Tally {
  readonly secrets: Map<string, { substituted: number; withheld: number; blocked: number; unrestricted?: number }>
  readonly connections: { intercepted: number; tunnelled: number; refused: number }
}

/**
 * Signals passed on to the child. From a terminal, Ctrl-C and Ctrl-\ reach the child already (it
 * is in the same foreground process group): passing them on again would deliver them twice, so
 * they are only caught (`terminalSignals`): `secretgate run` waits for the child to end, as a shell
 * does, rather than die before it and leave it running without the proxy.
 */
const forwardedSignals = (fromTerminal: boolean): ReadonlyArray<NodeJS.Signals> =>
  fromTerminal ? ["SIGTERM", "SIGHUP", "SIGUSR2"] : ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR2"]

/** Signals the terminal sends the child itself, which `secretgate run` only waits through. */
const terminalSignals = (fromTerminal: boolean): ReadonlyArray<NodeJS.Signals> => fromTerminal ? ["SIGINT", "SIGQUIT"] : []

/**
 * @since 0.1.0
 */
export const command = Command.make(
  "run",
  {
    ...Store.options,
    mount,
    onDisallowed: Options.choice("on-disallowed", ["forward", "block"]).pipe(
      Options.withDefault("forward" as const),
      Options.withDescription("A placeholder headed for a host its secret is not allowed for: forward it unchanged, or block the request")
    ),
    unrestricted: Options.choice("unrestricted", ["allow", "deny"]).pipe(
      Options.optional,
      Options.withDescription(
        "A secret without hosts (it may go to any host): substitute it everywhere, audited (allow), or never (deny). Default: deny"
      )
    ),
    allowHttp: Options.text("allow-http").pipe(Options.repeated, Options.withDescription("A host whose plain-http requests may carry values (loopback tests)")),
    ...Upstream.options,
    allowPrivate: Options.text("allow-private").pipe(
      Options.repeated,
      Options.withDescription(
        "A private destination the proxied programs may reach: a CIDR or address (10.0.0.0/8, fd00::/8, 192.168.1.5), or \"all\" (repeatable). Default: none — loopback, private, link-local (cloud metadata) addresses are refused; names pinned with --resolve are trusted"
      )
    ),
    user: ChildUser.option,
    audit: Options.text("audit").pipe(Options.optional, Options.withDescription("Append the audit events to this file, as JSON lines")),
    quiet: Options.boolean("quiet").pipe(Options.withDescription("No summary on stderr")),
    command: Args.text({ name: "command" }).pipe(Args.atLeast(1), Args.withDescription("The program and its arguments, after --"))
  },
  (args) =>
    Effect.gen(function*() {
      const spec = Object.fromEntries(args.mount)
      if (Object.keys(spec).length === 0) return yield* CliFailure.usage("run needs at least one --mount ENV=secret-name")
      const reserved = Object.keys(spec).filter((name) => RESERVED.test(name)).sort()
      if (reserved.length > 0) {
        return yield* CliFailure.usage(`--mount ${reserved.join(", ")}: the program's proxy and CA variables are not available as mount names`)
      }
      const location = yield* Store.parse(args.store, args.schema)
      const layer = yield* Store.layer(location, { values: true })
      const upstream = yield* Upstream.fromOptions(args)
      const user = yield* ChildUser.resolve(args.user)

      const [{ Secretgate }, { SecretgateProxy }] = yield* Effect.promise(() => Promise.all([import("@secretgate/core"), import("@secretgate/proxy")]))
      const gate = yield* Effect.acquireRelease(
        Effect.sync(() => new Secretgate({ layer: layer as never, organizationId: args.org })),
        (gate) => Effect.promise(() => gate.dispose())
      )
      const sandboxMount = yield* Effect.tryPromise({ try: () => gate.mount(spec), catch: (error) => error })
      const resolver = yield* Effect.tryPromise({ try: () => gate.resolver(sandboxMount), catch: (error) => error })

      const tally: Tally = {
        secrets: new Map(sandboxMount.secrets.map((secret) => [secret.name, { substituted: 0, withheld: 0, blocked: 0 }])),
        connections: { intercepted: 0, tunnelled: 0, refused: 0 }
      }
      // The audit sink runs on the proxy's request path: lines go to a stream (AuditFile), never a
      // synchronous write per event; it is flushed and closed after the child exits.
      const auditPath = Option.getOrUndefined(args.audit)
      const { AuditFile } = yield* Effect.promise(() => import("@secretgate/undici"))
      const auditFile = auditPath === undefined ? undefined : yield* Effect.acquireRelease(
        Effect.try({
          try: () => AuditFile.open<ProxyAuditEvent.ProxyAuditEvent>(auditPath!),
          catch: (error) => CliFailure.usage(`--audit ${auditPath}: ${(error as Error).message}`)
        }),
        (file) => Effect.promise(() => file.close())
      )
      const audit = (event: ProxyAuditEvent.ProxyAuditEvent) => {
        if (event.type === "substituted" || event.type === "withheld" || event.type === "blocked") {
          const counts = event.secret === undefined ? undefined : tally.secrets.get(event.secret)
          if (counts !== undefined) counts[event.type]++
          if (counts !== undefined && event.type === "substituted" && event.unrestricted) counts.unrestricted = (counts.unrestricted ?? 0) + 1
        } else if (event.type === "intercepted" || event.type === "tunnelled" || event.type === "refused") {
          tally.connections[event.type]++
        }
        auditFile?.write(event)
      }
      // Another user must be able to read the CA files handed to the child: a directory of our own,
      // readable by all (the files hold no secret), removed at the end.
      const bundleDirectory = yield* Effect.acquireRelease(
        Effect.sync(() => {
          const directory = mkdtempSync(join(tmpdir(), "secretgate-run-"))
          if (user !== undefined) chmodSync(directory, 0o755)
          return directory
        }),
        (directory) => Effect.sync(() => rmSync(directory, { recursive: true, force: true }))
      )
      const proxy = yield* Effect.acquireRelease(
        Effect.tryPromise({
          try: () => SecretgateProxy.start({ upstream, audit, directory: bundleDirectory, allowPrivateDestinations: Upstream.allowPrivateOf(args.allowPrivate) }),
          catch: (error) => CliFailure.usage(`could not start the proxy: ${(error as Error).message}`)
        }),
        (proxy) => Effect.promise(() => proxy.close())
      )
      const unrestricted = Option.getOrUndefined(args.unrestricted)
      const sandbox = proxy.register({ resolver, onDisallowed: args.onDisallowed, allowHttp: args.allowHttp, ...(unrestricted === undefined ? {} : { unrestricted }) })

      const [program, ...programArgs] = args.command
      // Signals are forwarded from before the child starts: it may print, and whoever runs us
      // signal us, before `spawn` has returned here (a handler runs on a later turn of the event
      // loop, by when `child` is set).
      let child: ChildProcess | undefined
      // (one that comes before the child exists is passed on once it does)
      const early: Array<NodeJS.Signals> = []
      const fromTerminal = process.stdin.isTTY === true
      yield* Signals.on(forwardedSignals(fromTerminal), (signal) => child === undefined ? early.push(signal) : child.kill(signal))
      yield* Signals.on(terminalSignals(fromTerminal), () => {})
      const exit = yield* Effect.async<{ code: number | null; signal: NodeJS.Signals | null }, CliFailure>((resume) => {
        let started: ChildProcess
        try {
          started = child = spawn(program!, programArgs, {
            stdio: "inherit",
            env: childEnvironment(process.env, sandbox.env),
            ...(user === undefined ? {} : { uid: user.uid, gid: user.gid })
          })
        } catch (error) {
          return resume(Effect.fail(new CliFailure({ kind: "command-not-executable", message: `could not start ${program}: ${(error as Error).message}` })))
        }
        started.once("error", (error: NodeJS.ErrnoException) => {
          resume(Effect.fail(
            new CliFailure({
              kind: error.code === "ENOENT" ? "command-not-found" : "command-not-executable",
              message: error.code === "ENOENT" ? `${program}: command not found` : `could not start ${program}: ${error.message}`
            })
          ))
        })
        started.once("exit", (code, signal) => resume(Effect.succeed({ code, signal })))
        for (const signal of early.splice(0)) started.kill(signal)
        return Effect.sync(() => started.kill("SIGTERM"))
      })

      if (!args.quiet) process.stderr.write(summary(tally))
      process.exitCode = exit.signal !== null ? 128 + (constants.signals[exit.signal] ?? 0) : exit.code ?? 1
    }).pipe(Effect.scoped)
).pipe(Command.withDescription(
  "Run a program with placeholders in its environment; its HTTPS requests to a secret's allowed hosts carry the value.\n" +
    "Example: secretgate run --mount OPENAI_API_KEY=openai -- python agent.py"
))

/**
 * The summary printed after the child exits: what happened to each mounted secret and to the
 * child's connections, with a warning when a mount was never used, or when no connection came
 * through the proxy at all (a client that bypassed it).
 *
 * @since 0.1.0
 */
export const summary = (tally: Tally): string => {
  const { intercepted, tunnelled, refused } = tally.connections
  const connections = intercepted + tunnelled + refused
  const lines = [`secretgate: ${connections} connection(s) through the proxy: ${intercepted} intercepted, ${tunnelled} tunnelled, ${refused} refused`]
  for (const [name, counts] of tally.secrets) {
    const used = counts.substituted + counts.withheld + counts.blocked > 0
    const warning = (counts.unrestricted ?? 0) > 0
      ? " — the secret has no hosts: its value went to every host asked for (give it hosts, and drop --unrestricted allow)"
      : used ? "" : connections === 0
      ? " — never used, and no connection came through the proxy: does the program ignore HTTPS_PROXY?"
      : " — never used"
    lines.push(`  ${name}: ${counts.substituted} substituted, ${counts.withheld} withheld, ${counts.blocked} blocked${warning}`)
  }
  return `${lines.join("\n")}\n`
}
