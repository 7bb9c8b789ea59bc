/**
 * The store's `SecretChanges`: this process's writes are announced before the write completes,
 * and another process's writes on the same directory (real child processes) are announced without
 * any read here, with their organization and placeholder: by watching the directory, and, with the
 * watch off, by polling the journal (the guarantee).
 */
import { describe, expect, it } from "@effect/vitest"
import { spawn } from "node:child_process"
import * as Path from "node:path"
import { fileURLToPath } from "node:url"
import { KeyRing, SecretChanges, Secrets } from "@secretgate/core"
import { Cause, type Duration, Effect, type Exit, Redacted } from "effect"
import { open, runChild, tempStore } from "./support.js"

const ORG = "acme"
const packageDir = Path.join(Path.dirname(fileURLToPath(import.meta.url)), "..")

/** Waits until `check` holds (polling every 20 ms, for at most 20 s). */
const eventually = (check: () => boolean) =>
  Effect.promise(async () => {
    const deadline = Date.now() + 20_000
    while (!check()) {
      if (Date.now() > deadline) throw new Error("timed out waiting")
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  })

describe("changes", () => {
  it.scopedLive("this process's writes are announced before the write's effect completes", () =>
    Effect.gen(function*() {
      const context = yield* open({ directory: tempStore(), key: KeyRing.keyToBase64(KeyRing.generateKey()) })
      const secrets = Effect.runSync(Effect.provide(Secrets.Secrets, context))
      const changes = Effect.runSync(Effect.provide(SecretChanges.SecretChanges, context))
      const heard: Array<SecretChanges.Change> = []
      changes.subscribe((change) => heard.push(change))
      const created = yield* secrets.create(ORG, { name: "own", value: Redacted.make("v1") })
      expect(heard).toContainEqual({ organizationId: ORG, placeholders: [created.placeholder] })
      heard.length = 0
      yield* secrets.update(ORG, created.id, { value: Redacted.make("v2") })
      expect(heard).toContainEqual({ organizationId: ORG, placeholders: [created.placeholder] })
      heard.length = 0
      yield* secrets.delete(ORG, created.id)
      expect(heard).toContainEqual({ organizationId: ORG, placeholders: [created.placeholder] })
    }))

  it("a store left open (never disposed) does not keep its process alive", async () => {
    const script = [
      `import { Secretgate } from "@secretgate/core"`,
      `import { FileSystemSecretStore } from "@secretgate/filesystem"`,
      `const gate = new Secretgate({ layer: FileSystemSecretStore.layer({ directory: process.argv[1] }), organizationId: "acme" })`,
      `await gate.secret.create({ name: "left_open", value: "v" })`,
      `console.log("created")`
    ].join("\n")
    const child = spawn(process.execPath, ["--import", "tsx", "--input-type=module", "-e", script, tempStore()], {
      cwd: packageDir,
      stdio: ["ignore", "pipe", "pipe"]
    })
    let output = ""
    child.stdout.setEncoding("utf8").on("data", (chunk: string) => output += chunk)
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => output += chunk)
    const code = await new Promise<number | null>((resolve) => child.on("exit", resolve))
    expect(output).toContain("created")
    expect(code).toBe(0)
  }, 60_000)

  it.scopedLive("a pollInterval that is not a duration from 0 to 24 days is refused at open, saying which", () =>
    Effect.gen(function*() {
      for (const pollInterval of [-1, Number.NaN, "soon", 2 ** 31] as Array<Duration.DurationInput>) {
        const exit = yield* Effect.exit(open({ directory: tempStore(), pollInterval }))
        expect(exit._tag).toBe("Failure")
        expect(String(Cause.squash((exit as Exit.Failure<unknown, unknown>).cause))).toMatch(/pollInterval must be a duration from 0/)
      }
    }))

  for (const watchDirectory of [true, false]) {
    it.scopedLive(
      `another process's create, update and delete are announced without a read here (${watchDirectory ? "watching the directory" : "polling the journal"})`,
      () =>
        Effect.gen(function*() {
          const directory = tempStore()
          const key = KeyRing.keyToBase64(KeyRing.generateKey())
          const context = yield* open({ directory, key, watchDirectory, pollInterval: "100 millis" })
          const secrets = Effect.runSync(Effect.provide(Secrets.Secrets, context))
          const changes = Effect.runSync(Effect.provide(SecretChanges.SecretChanges, context))
          if (watchDirectory) yield* eventually(() => changes.live(ORG))
          else expect(changes.live(ORG)).toBe(false)
          const heard: Array<SecretChanges.Change> = []
          changes.subscribe((change) => heard.push(change))
          const env = { SG_KEY: Redacted.value(key) }
          const run = (...args: Array<string>) => Effect.promise(() => runChild("command", [directory, ORG, ...args], env))
          const concerning = (placeholder: string) => () =>
            heard.some((change) => change.organizationId === ORG && change.placeholders?.includes(placeholder) === true)

          yield* run("create", "from-child", "first")
          // the placeholder is learnt from the announcement itself: no read of the store here yet
          yield* eventually(() => heard.some((change) => change.organizationId === ORG && change.placeholders?.length === 1))
          const placeholder = heard.find((change) => change.organizationId === ORG)!.placeholders![0]!
          const before = secrets.revision!(ORG, [placeholder])
          const [resolved] = yield* secrets.resolve(ORG, [placeholder])
          expect(Redacted.value(resolved!.value)).toBe("first")

          heard.length = 0
          yield* run("update", "from-child", "second")
          yield* eventually(concerning(placeholder))
          expect(secrets.revision!(ORG, [placeholder])).not.toBe(before)
          const [updated] = yield* secrets.resolve(ORG, [placeholder])
          expect(Redacted.value(updated!.value)).toBe("second")

          heard.length = 0
          yield* run("delete", "from-child")
          // a deleted secret's placeholder is known from before the delete
          yield* eventually(concerning(placeholder))
          expect(yield* secrets.resolve(ORG, [placeholder])).toEqual([])
          expect(JSON.stringify(heard)).not.toMatch(/first|second/)
        }),
      60_000
    )
  }
})
