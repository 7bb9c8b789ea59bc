/**
 * `--user`: the account a child program runs as. A program running as the same user as
 * `secretgate` can read what that user can: this process's environment (`/proc/<pid>/environ`, with
 * the store key or API keys it was started with) and a filesystem store's files. Another account,
 * without those rights, makes the process boundary real.
 *
 * @since 0.1.0
 */
import { Options } from "@effect/cli"
import { Effect, Option } from "effect"
import { spawnSync } from "node:child_process"
import { CliFailure } from "./CliFailure.js"

/**
 * @since 0.1.0
 */
export const option = Options.text("user").pipe(
  Options.optional,
  Options.withDescription("Run the program as this user (name or uid; needs root): it then cannot read secretgate's environment or store")
)

/**
 * The uid and gid to run as, if `--user` was given.
 *
 * @since 0.1.0
 */
export const resolve = (user: Option.Option<string>): Effect.Effect<{ readonly uid: number; readonly gid: number } | undefined, CliFailure> => {
  if (Option.isNone(user)) return Effect.succeed(undefined)
  const name = user.value
  const id = (flag: "-u" | "-g") => {
    const result = spawnSync("id", [flag, name], { encoding: "utf8" })
    const value = Number(result.stdout.trim())
    return result.status === 0 && Number.isInteger(value) ? value : undefined
  }
  const uid = id("-u")
  const gid = id("-g")
  if (uid === undefined || gid === undefined) return Effect.fail(CliFailure.usage(`--user ${JSON.stringify(name)}: no such user on this machine`))
  if (typeof process.getuid === "function" && process.getuid() !== 0 && process.getuid() !== uid) {
    return Effect.fail(CliFailure.usage(`--user ${JSON.stringify(name)} needs secretgate to run as root (it runs as uid ${process.getuid()})`))
  }
  return Effect.succeed({ uid, gid })
}
