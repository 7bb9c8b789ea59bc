/**
 * `@secretgate/cli`: the `secretgate` command, and its parts for embedding.
 *
 * @since 0.1.0
 */
export * as Cli from "./Cli.js"
export * as ExitCode from "./ExitCode.js"
export * as Store from "./Store.js"
