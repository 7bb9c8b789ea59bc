/**
 * Helpers shared by the filesystem tests: temp directories, opening a store as a scoped context,
 * walking the directory, and running fixture scripts as real child processes.
 */
import { type SecretChanges, type Secrets, type SecretStore, type StoreError } from "@secretgate/core"
import { FileSystemSecretStore } from "@secretgate/filesystem"
import { Effect, Either, Layer, type Scope } from "effect"
import { type ChildProcess, spawn, spawnSync } from "node:child_process"
import { mkdtempSync, readdirSync, rmSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, expect } from "vitest"

const created: Array<string> = []
afterAll(() => {
  for (const dir of created) rmSync(dir, { recursive: true, force: true })
})

/** A fresh directory, removed after the test file. The store goes in `<dir>/store` (not yet created). */
export const tempStore = (): string => {
  const dir = mkdtempSync(Path.join(tmpdir(), "secretgate-fs-test-"))
  created.push(dir)
  return Path.join(dir, "store")
}

/** What a test gets from an open store. */
export type Opened =
  | Secrets.Secrets
  | SecretStore.SecretStore
  | FileSystemSecretStore.FileSystemSecretStore
  | SecretChanges.SecretChanges

/** Opens the store for the duration of the scope. */
export const open = (options: FileSystemSecretStore.Options): Effect.Effect<
  import("effect").Context.Context<Opened>,
  StoreError,
  Scope.Scope
> => Layer.build(FileSystemSecretStore.layer(options))

/** Opens, runs `f`, closes. */
export const withStore = <A, E>(
  options: FileSystemSecretStore.Options,
  f: Effect.Effect<A, E, Opened>
): Effect.Effect<A, E | StoreError> => Effect.scoped(Effect.flatMap(open(options), (context) => Effect.provide(f, context)))

/** The failure of an effect that must fail. */
export const failure = <A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<E, never, R> =>
  Effect.flatMap(Effect.either(effect), (result) =>
    Either.isLeft(result) ? Effect.succeed(result.left) : Effect.dieMessage("expected a failure, got a success"))

/** The pid of a process that has exited (a child run to its end). */
export const deadPid = (): number =>
  Number(spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" }).stdout)

/** Every file under `dir`, recursively. */
export const filesUnder = (dir: string): Array<string> =>
  readdirSync(dir, { recursive: true, encoding: "utf8" })
    .map((name) => Path.join(dir, name))
    .filter((path) => statSync(path).isFile())

const here = Path.dirname(fileURLToPath(import.meta.url))
const packageDir = Path.resolve(here, "..")

/** A running fixture script (`test/fixtures/<name>.ts`) in its own Node process. */
export interface Child {
  readonly process: ChildProcess
  /** Everything written to stdout so far. */
  readonly output: () => string
  /** Resolves when stdout has a line equal to `line`. */
  readonly waitFor: (line: string) => Promise<void>
  /** Resolves with the exit code (or signal) when the process ends. */
  readonly exited: Promise<{ readonly code: number | null; readonly signal: NodeJS.Signals | null; readonly stderr: string }>
}

/** Starts `node --import tsx test/fixtures/<name>.ts ...args` (one process: no tsx wrapper to outlive a SIGKILL). */
export const startChild = (name: string, args: ReadonlyArray<string>, env: Record<string, string> = {}): Child => {
  const child = spawn(process.execPath, ["--import", "tsx", Path.join(here, "fixtures", `${name}.ts`), ...args], {
    cwd: packageDir,
    env: { ...process.env, ...env },
    stdio: ["pipe", "pipe", "pipe"]
  })
  let stdout = ""
  let stderr = ""
  const waiters: Array<{ line: string; resolve: () => void }> = []
  child.stdout!.setEncoding("utf8").on("data", (chunk: string) => {
    stdout += chunk
    const lines = stdout.split("\n")
    for (const waiter of [...waiters]) {
      if (lines.includes(waiter.line)) {
        waiters.splice(waiters.indexOf(waiter), 1)
        waiter.resolve()
      }
    }
  })
  child.stderr!.setEncoding("utf8").on("data", (chunk: string) => {
    stderr += chunk
  })
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>((resolve) => {
    child.on("exit", (code, signal) => resolve({ code, signal, stderr }))
  })
  return {
    process: child,
    output: () => stdout,
    waitFor: (line) =>
      stdout.split("\n").includes(line)
        ? Promise.resolve()
        : new Promise<void>((resolve, reject) => {
          waiters.push({ line, resolve })
          void exited.then(({ code, signal, stderr }) =>
            reject(new Error(`fixture ${name} ended (${code ?? signal}) before printing ${JSON.stringify(line)}: ${stderr}`))
          )
        }),
    exited
  }
}

/** Runs a fixture to its end and returns its stdout; fails if it exits non-zero. */
export const runChild = async (name: string, args: ReadonlyArray<string>, env: Record<string, string> = {}) => {
  const child = startChild(name, args, env)
  const { code, signal, stderr } = await child.exited
  if (code !== 0) throw new Error(`fixture ${name} exited with ${code ?? signal}: ${stderr}`)
  return child.output()
}

/**
 * Reads the `{ won, lost }` line each "creator" child printed last, and checks that every shared
 * name was won by exactly one of them. Returns name → the worker that won it.
 */
export const winnersOf = (workers: ReadonlyArray<Child>, sharedCount: number): Map<string, number> => {
  const results = workers.map((child) =>
    JSON.parse(child.output().trim().split("\n").pop()!) as { won: Array<string>; lost: Array<string> }
  )
  const shared = Array.from({ length: sharedCount }, (_, i) => `shared-${i}`)
  const winners = new Map<string, number>()
  results.forEach((result, worker) => {
    for (const name of result.won) {
      expect(winners.has(name), `${name} created twice`).toBe(false)
      winners.set(name, worker)
    }
    expect([...result.won, ...result.lost].sort()).toEqual([...shared].sort())
  })
  return winners
}

/** A running `session` fixture: a store held open by another process, one operation per request. */
export interface Session {
  readonly child: Child
  /** Sends one operation line and resolves with its JSON answer. */
  readonly ask: (line: string) => Promise<{ readonly ok?: unknown; readonly error?: string; readonly message?: string }>
  /** Ends the process and waits for it. */
  readonly quit: () => Promise<void>
}

/** Starts `test/fixtures/session.ts` on `directory` and waits until the store is open. */
export const startSession = async (directory: string, organization: string, key: string): Promise<Session> => {
  const child = startChild("session", [directory, organization], { SG_KEY: key })
  await child.waitFor("ready")
  let answered = 0
  const ask = (line: string) =>
    new Promise<{ ok?: unknown; error?: string; message?: string }>((resolve, reject) => {
      const index = ++answered
      child.process.stdin!.write(`${line}\n`)
      const poll = () => {
        // answers follow the "ready" line, one per request, in order
        const lines = child.output().split("\n").slice(1).filter((l) => l !== "")
        if (lines.length >= index) return resolve(JSON.parse(lines[index - 1]!))
        if (child.process.exitCode !== null) return reject(new Error(`session ended before answering ${line}`))
        setTimeout(poll, 5)
      }
      poll()
    })
  const quit = async () => {
    child.process.stdin!.write("quit\n")
    const exit = await child.exited
    if (exit.code !== 0) throw new Error(`session exited with ${exit.code ?? exit.signal}: ${exit.stderr}`)
  }
  return { child, ask, quit }
}
