/**
 * The watch over a filesystem store: a server over a store directory that another process writes
 * too (a real child process) announces that process's update on `GET /secret/watch`, and a remote
 * resolver (TTL 10 minutes, so only an announcement explains a refresh) serves the new value on
 * its next request after the announcement.
 */
import { KeyRing, Secretgate, SecretResolver, Secrets } from "@secretgate/core"
import { FileSystemSecretStore } from "@secretgate/filesystem"
import { ApiKeys, HttpSecrets, SecretServer } from "@secretgate/http"
import { Effect, Logger, LogLevel, Layer, ManagedRuntime, Redacted } from "effect"
import { spawn } from "node:child_process"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"

const ORG = "acme"
const registry = ApiKeys.makeRegistry()
const manage = Redacted.value(registry.issue({ organizationId: ORG, scopes: ["secrets:manage"] }).key)
const resolveKey = Redacted.value(registry.issue({ organizationId: ORG, scopes: ["secrets:resolve"] }).key)

const filesystemPackage = join(dirname(fileURLToPath(import.meta.url)), "..", "..", "filesystem")

/** The filesystem package's `command` fixture in a process of its own: one write, then exit. */
const otherProcess = (directory: string, key: string, ...args: Array<string>) =>
  new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, ["--import", "tsx", join(filesystemPackage, "test", "fixtures", "command.ts"), directory, ORG, ...args], {
      cwd: filesystemPackage,
      env: { ...process.env, SG_KEY: key },
      stdio: ["ignore", "ignore", "pipe"]
    })
    let stderr = ""
    child.stderr.setEncoding("utf8").on("data", (chunk: string) => stderr += chunk)
    child.on("exit", (code) => code === 0 ? resolve() : reject(new Error(`command exited with ${code}: ${stderr}`)))
  })

const eventually = async (check: () => unknown | Promise<unknown>, timeout = 20_000) => {
  const deadline = Date.now() + timeout
  for (;;) {
    try {
      return await check()
    } catch (error) {
      if (Date.now() > deadline) throw error
      await new Promise((resolve) => setTimeout(resolve, 20))
    }
  }
}

describe("the watch over a filesystem store", () => {
  it("a remote resolver sees an update made by another process on the store directory before its next request", async () => {
    const directory = join(mkdtempSync(join(tmpdir(), "secretgate-fs-watch-")), "store")
    const key = KeyRing.keyToBase64(KeyRing.generateKey())
    const server = await SecretServer.serve({ backend: FileSystemSecretStore.layer({ directory, key }), keys: registry })
    const gate = new Secretgate({ layer: HttpSecrets.layer({ baseUrl: server.url, apiKey: manage, watch: false }), organizationId: ORG })
    const egress = ManagedRuntime.make(
      HttpSecrets.layer({ baseUrl: server.url, apiKey: resolveKey }).pipe(Layer.provide(Logger.minimumLogLevel(LogLevel.Error)))
    )
    try {
      const secret = await gate.secret.create({ name: "shared", value: "v1" })
      const secrets = await egress.runPromise(Secrets.Secrets)
      const resolver = await egress.runPromise(
        SecretResolver.make(await gate.mount({ S: "shared" }), { ttl: "10 minutes" }).pipe(Effect.provideService(Secrets.Secrets, secrets))
      )
      const valueOf = async () => Redacted.value((await resolver.current()).get(secret.placeholder)!.value)
      expect(await valueOf()).toBe("v1")
      // the server offers the watch: the stream is up
      await eventually(() => expect(secrets.changes!.live(ORG)).toBe(true))
      const before = secrets.revision!(ORG, [secret.placeholder])

      await otherProcess(directory, Redacted.value(key), "update", "shared", "v2")
      // the announcement reaches the remote resolver's process (within the poll interval at worst)
      await eventually(() => expect(secrets.revision!(ORG, [secret.placeholder])).not.toBe(before))
      // and its very next request serves the new value
      expect(await valueOf()).toBe("v2")
    } finally {
      await egress.dispose()
      await gate.dispose()
      await server.close()
      rmSync(dirname(directory), { recursive: true, force: true })
    }
  }, 60_000)
})
