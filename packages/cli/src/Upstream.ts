/**
 * How a proxy started by the CLI reaches upstreams: `--resolve host:address` pins (as curl's
 * `--resolve`, without the port) and `--upstream-ca` extra roots. Shared by `run` and `proxy`.
 *
 * @since 0.1.0
 */
import { Options } from "@effect/cli"
import { Effect, Option } from "effect"
import { readFileSync } from "node:fs"
import { CliFailure } from "./CliFailure.js"

/**
 * @since 0.1.0
 */
export const options = {
  resolve: Options.text("resolve").pipe(
    Options.repeated,
    Options.withDescription("host:address — pin a host name to an address for upstream connections (as curl's --resolve)")
  ),
  upstreamCa: Options.file("upstream-ca", { exists: "yes" }).pipe(
    Options.optional,
    Options.withDescription("A PEM file of extra CA certificates the proxy trusts upstream")
  )
} as const

/**
 * The proxy's `upstream` option from `--resolve` and `--upstream-ca`. An IPv6 address may be
 * bracketed (`api.example.com:[::1]`).
 *
 * @since 0.1.0
 */
export const fromOptions = (args: { readonly resolve: ReadonlyArray<string>; readonly upstreamCa: Option.Option<string> }) =>
  Effect.gen(function*() {
    const resolve: Record<string, string> = {}
    for (const entry of args.resolve) {
      const colon = entry.indexOf(":")
      if (colon <= 0 || colon === entry.length - 1) {
        return yield* CliFailure.usage(`--resolve ${JSON.stringify(entry)} is not host:address (e.g. api.example.com:127.0.0.1)`)
      }
      resolve[entry.slice(0, colon)] = entry.slice(colon + 1).replace(/^\[(.*)\]$/, "$1")
    }
    const caFile = Option.getOrUndefined(args.upstreamCa)
    const ca = caFile === undefined ? undefined : yield* Effect.try({
      try: () => readFileSync(caFile, "utf8"),
      catch: (error) => CliFailure.usage(`could not read --upstream-ca ${caFile}: ${(error as Error).message}`)
    })
    return { resolve, ...(ca === undefined ? {} : { ca }) }
  })

/**
 * The proxy's `allowPrivateDestinations` from `--allow-private` (`all`, or CIDRs). Shared by `run`
 * and `proxy`.
 *
 * @since 0.2.0
 */
export const allowPrivateOf = (entries: ReadonlyArray<string>): boolean | ReadonlyArray<string> =>
  entries.some((entry) => entry.trim().toLowerCase() === "all") ? true : entries.length === 0 ? false : entries
