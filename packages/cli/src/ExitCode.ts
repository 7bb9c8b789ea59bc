/**
 * Exit codes, in one table: what a script calling `secretgate` can rely on.
 *
 * | code | meaning |
 * |---|---|
 * | 0 | done |
 * | 1 | unexpected failure |
 * | 2 | invalid input: a bad option or argument, or a value, name or host the store refuses |
 * | 3 | not found: no such secret (or a mount names a missing one) |
 * | 4 | conflict: the name is taken, the quota is full, a key still in use |
 * | 5 | unavailable: the store cannot be reached or read right now |
 * | 6 | denied: the API key is missing, unknown, or lacks the scope |
 * | 7 | damaged: the store is corrupted or cannot be decrypted with the key given |
 * | 126, 127 | `run`: the program cannot be run, or is not found |
 *
 * A program run by `secretgate run` passes its own exit code through (128 + n for a signal n); a
 * program that cannot be started gives 127 (not found) or 126 (not executable), as in a shell.
 *
 * @since 0.1.0
 */
import { ValidationError } from "@effect/cli"
import type { CliFailure } from "./CliFailure.js"

/**
 * @since 0.1.0
 */
export const ExitCode = {
  ok: 0,
  failure: 1,
  invalid: 2,
  notFound: 3,
  conflict: 4,
  unavailable: 5,
  denied: 6,
  damaged: 7,
  commandNotExecutable: 126,
  commandNotFound: 127
} as const

const BY_TAG: Record<string, number> = {
  InvalidSecretInput: ExitCode.invalid,
  SecretNotFound: ExitCode.notFound,
  SecretNameTaken: ExitCode.conflict,
  QuotaExceeded: ExitCode.conflict,
  KeyManagementError: ExitCode.conflict,
  StoreUnavailable: ExitCode.unavailable,
  Unauthorized: ExitCode.denied,
  Forbidden: ExitCode.denied,
  StoreCorrupted: ExitCode.damaged,
  DecryptionFailed: ExitCode.damaged
}

const BY_KIND: Record<CliFailure["kind"], number> = {
  usage: ExitCode.invalid,
  "not-found": ExitCode.notFound,
  conflict: ExitCode.conflict,
  unavailable: ExitCode.unavailable,
  failure: ExitCode.failure,
  "command-not-found": ExitCode.commandNotFound,
  "command-not-executable": ExitCode.commandNotExecutable
}

/**
 * The exit code for a failure, and the one line to print for it (never a value: the errors of
 * secretgate carry none).
 *
 * @since 0.1.0
 */
export const describe = (error: unknown): { readonly code: number; readonly message: string } => {
  if (ValidationError.isValidationError(error)) return { code: ExitCode.invalid, message: "" }
  const tag = typeof error === "object" && error !== null && "_tag" in error ? String((error as { _tag: unknown })._tag) : undefined
  const message = typeof error === "object" && error !== null && "message" in error ? String((error as { message: unknown }).message) : String(error)
  if (tag === "CliFailure") return { code: BY_KIND[(error as CliFailure).kind], message }
  if (tag !== undefined && tag in BY_TAG) return { code: BY_TAG[tag]!, message }
  return { code: ExitCode.failure, message: message === "" ? "unexpected failure" : message }
}
