/**
 * The `secretgate` binary: runs the command line, prints a failure as one line on stderr, and exits
 * with the code `ExitCode.ts` assigns to it.
 *
 * @since 0.1.0
 */
import * as NodeContext from "@effect/platform-node/NodeContext"
import { Cause, Effect, Exit, Option } from "effect"
import { run } from "./Cli.js"
import { describe } from "./ExitCode.js"

const exit = await Effect.runPromiseExit(run(process.argv).pipe(Effect.provide(NodeContext.layer)))
if (Exit.isFailure(exit)) {
  const failure = Cause.failureOption(exit.cause)
  const { code, message } = describe(Option.isSome(failure) ? failure.value : Cause.squash(exit.cause))
  if (message !== "") process.stderr.write(`secretgate: ${message}\n`)
  process.exitCode = code
}
