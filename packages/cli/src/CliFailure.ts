/**
 * A failure of the command line itself (a bad option, a missing environment variable, a refused
 * operation), with the kind that decides its exit code (see `ExitCode.ts`).
 *
 * @since 0.1.0
 */
import { Data } from "effect"

/**
 * @since 0.1.0
 */
export type Kind = "usage" | "not-found" | "conflict" | "unavailable" | "failure" | "command-not-found" | "command-not-executable"

/**
 * @since 0.1.0
 */
export class CliFailure extends Data.TaggedError("CliFailure")<{ readonly kind: Kind; readonly message: string }> {
  /** A mistake in how the command was called: exit code 2. @since 0.1.0 */
  static usage(message: string): CliFailure {
    return new CliFailure({ kind: "usage", message })
  }
}
