/**
 * Reading a secret's value: from a file (`--value-file`), from standard input when it is a pipe or a
 * file, or from a hidden prompt on a terminal. Never from an argument: arguments are visible to every
 * user of the machine in `ps`.
 *
 * @since 0.1.0
 */
import { Options, Prompt } from "@effect/cli"
import { Effect, Option, Redacted } from "effect"
import { readFile } from "node:fs/promises"
import { CliFailure } from "./CliFailure.js"

/** Generous: a value is at most 64 KiB, however it is written. */
const MAX_INPUT_BYTES = 1024 * 1024

/**
 * `--value-file <path>`: read the value from a file.
 *
 * @since 0.1.0
 */
export const valueFile = Options.file("value-file", { exists: "yes" }).pipe(
  Options.optional,
  Options.withDescription("Read the value from this file (default: standard input; a terminal is prompted without echo)")
)

/** One trailing line break is what `echo` and editors add, not part of a value. */
const withoutFinalNewline = (text: string): string => text.replace(/\r?\n$/, "")

const readStdin = (): Promise<string> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    let size = 0
    process.stdin.on("data", (chunk: Buffer) => {
      size += chunk.length
      if (size > MAX_INPUT_BYTES) {
        process.stdin.destroy()
        reject(new Error(`standard input holds more than ${MAX_INPUT_BYTES} bytes`))
      } else chunks.push(chunk)
    })
    process.stdin.once("end", () => resolve(Buffer.concat(chunks).toString("utf8")))
    process.stdin.once("error", reject)
  })

/**
 * The value, from `--value-file`, standard input, or a prompt for `name` on a terminal.
 *
 * @since 0.1.0
 */
export const read = (file: Option.Option<string>, name: string) =>
  Effect.gen(function*() {
    if (Option.isSome(file)) {
      const text = yield* Effect.tryPromise({
        try: () => readFile(file.value, "utf8"),
        catch: (error) => CliFailure.usage(`could not read --value-file ${file.value}: ${(error as Error).message}`)
      })
      return yield* nonEmpty(Redacted.make(withoutFinalNewline(text)), `--value-file ${file.value} is empty`)
    }
    if (process.stdin.isTTY === true) {
      const value = yield* Prompt.run(Prompt.password({ message: `value of ${name}`, validate: (text) => text === "" ? Effect.fail("the value may not be empty") : Effect.succeed(text) }))
      return value
    }
    const text = yield* Effect.tryPromise({
      try: readStdin,
      catch: (error) => CliFailure.usage(`could not read the value from standard input: ${(error as Error).message}`)
    })
    return yield* nonEmpty(Redacted.make(withoutFinalNewline(text)), "standard input is empty: pipe the value in, or use --value-file")
  })

const nonEmpty = (value: Redacted.Redacted<string>, message: string) =>
  Redacted.value(value) === "" ? Effect.fail(CliFailure.usage(message)) : Effect.succeed(value)
