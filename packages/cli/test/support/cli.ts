/**
 * Runs `secretgate` as a user does: a real child process of the package's binary, with its own
 * environment, standard input and arguments.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { fileURLToPath } from "node:url"

export const BIN = fileURLToPath(new URL("../../bin/secretgate.mjs", import.meta.url))

export interface Result {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: string
  readonly stderr: string
  /** The arguments the process was started with (to check that no value is among them). */
  readonly argv: ReadonlyArray<string>
}

/** The parent's environment without any SECRETGATE_* variable, plus `env`. */
export const cleanEnv = (env: Record<string, string | undefined> = {}): NodeJS.ProcessEnv => {
  const base = Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("SECRETGATE_")))
  return Object.fromEntries(Object.entries({ ...base, ...env }).filter(([, value]) => value !== undefined)) as NodeJS.ProcessEnv
}

export const secretgate = (
  args: ReadonlyArray<string>,
  options: { readonly env?: Record<string, string | undefined>; readonly input?: string; readonly cwd?: string } = {}
): Promise<Result> =>
  new Promise((resolve, reject) => {
    const argv = [BIN, ...args]
    const child = spawn(process.execPath, argv, { env: cleanEnv(options.env), cwd: options.cwd, stdio: ["pipe", "pipe", "pipe"] })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString("utf8")))
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString("utf8")))
    child.once("error", reject)
    child.once("close", (code, signal) => resolve({ code, signal, stdout, stderr, argv }))
    child.stdin.end(options.input ?? "")
  })

/** Starts a long-running `secretgate` (serve, proxy) and waits for a stderr line matching `ready`. */
export const start = (
  args: ReadonlyArray<string>,
  ready: RegExp,
  options: { readonly env?: Record<string, string | undefined> } = {}
): Promise<{ readonly child: ChildProcess; readonly match: RegExpExecArray; readonly output: () => string; readonly exited: Promise<number | null> }> =>
  new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: cleanEnv(options.env), stdio: ["ignore", "pipe", "pipe"] })
    let output = ""
    const exited = new Promise<number | null>((done) => child.once("exit", (code) => done(code)))
    const onData = (chunk: Buffer) => {
      output += chunk.toString("utf8")
      const match = ready.exec(output)
      if (match !== null) resolve({ child, match, output: () => output, exited })
    }
    child.stdout!.on("data", onData)
    child.stderr!.on("data", onData)
    child.once("exit", (code) => reject(new Error(`secretgate ${args.join(" ")} exited (${code}) before it was ready:\n${output}`)))
  })
