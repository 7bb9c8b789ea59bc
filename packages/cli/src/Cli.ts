/**
 * The `secretgate` command: every subcommand, and `run(argv)` for the binary.
 *
 * @since 0.1.0
 */
import { Command } from "@effect/cli"
import * as apiKey from "./commands/apiKey.js"
import * as keys from "./commands/keys.js"
import * as proxy from "./commands/proxy.js"
import * as run_ from "./commands/run.js"
import * as secret from "./commands/secret.js"
import * as serve from "./commands/serve.js"

/**
 * The root command.
 *
 * @since 0.1.0
 */
export const root = Command.make("secretgate").pipe(
  Command.withDescription("Organization-scoped secrets that sandboxed code never sees"),
  Command.withSubcommands([run_.command, proxy.command, secret.command, keys.command, serve.command, apiKey.command])
)

/**
 * Runs the command line (`process.argv` shape: node, script, arguments...).
 *
 * @since 0.1.0
 */
export const run = Command.run(root, { name: "secretgate", version: "0.0.0" })
