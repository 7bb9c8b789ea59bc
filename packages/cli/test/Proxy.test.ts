/**
 * `secretgate proxy` as an operator runs it: a child process serving sandboxes declared in a file,
 * each given an env file; curl started with that env file's variables gets its placeholder
 * substituted upstream; SIGHUP issues new tokens (the old one is refused); SIGTERM stops it.
 */
import { spawn, spawnSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startUpstream, type Upstream } from "../../undici/test/support/upstream.js"
import { secretgate, start } from "./support/cli.js"

const VALUE = "sk-proxy-cmd-Zq9xV2bN7"
const CA_FILE = fileURLToPath(new URL("../../undici/test/fixtures/tls/ca.pem", import.meta.url))
const CURL = spawnSync("curl", ["--version"], { stdio: "ignore" }).status === 0

let root: string
let upstream: Upstream

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "secretgate-proxy-cmd-"))
  upstream = await startUpstream()
}, 300_000)
afterAll(async () => {
  await upstream?.close()
  rmSync(root, { recursive: true, force: true })
})

const readEnvFile = (file: string): Record<string, string> =>
  Object.fromEntries(readFileSync(file, "utf8").trim().split("\n").map((line) => {
    const at = line.indexOf("=")
    const raw = line.slice(at + 1)
    return [line.slice(0, at), raw.startsWith("\"") ? JSON.parse(raw) as string : raw]
  }))

/** curl, asynchronously: the upstream lives in this process and must go on answering. */
const curl = (args: ReadonlyArray<string>, env: Record<string, string> = {}) =>
  new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
    const child = spawn("curl", ["-sS", ...args], { env: { PATH: process.env.PATH ?? "", ...env } })
    let stdout = ""
    let stderr = ""
    child.stdout.on("data", (chunk: Buffer) => (stdout += chunk.toString()))
    child.stderr.on("data", (chunk: Buffer) => (stderr += chunk.toString()))
    child.once("close", (status) => resolve({ status, stdout, stderr }))
  })

describe.skipIf(!CURL)("secretgate proxy", () => {
  it("serves the sandboxes of its file through env files; SIGHUP renews tokens; SIGTERM stops", async () => {
    const store = join(root, "store")
    expect((await secretgate(["secret", "create", "openai", "--host", "api.allowed.test"], { env: { SECRETGATE_STORE: store }, input: VALUE })).code).toBe(0)
    const sandboxes = join(root, "sandboxes.json")
    writeFileSync(sandboxes, JSON.stringify([{ id: "agent-1", mount: { OPENAI_API_KEY: "openai" } }]))
    const envDir = join(root, "env")
    const proxy = await start(
      ["proxy", "--store", store, "--listen", "127.0.0.1:0", "--sandboxes", sandboxes, "--env-dir", envDir, "--resolve", "api.allowed.test:127.0.0.1", "--upstream-ca", CA_FILE],
      /"event":"listening"/
    )
    try {
      const envFile = join(envDir, "agent-1.env")
      expect(statSync(envFile).mode & 0o777).toBe(0o600)
      const env = readEnvFile(envFile)
      expect(env["OPENAI_API_KEY"]).toMatch(/^sg_secret_/)
      expect(readFileSync(envFile, "utf8")).not.toContain(VALUE)

      const url = `https://api.allowed.test:${upstream.port}/echo`
      const first = await curl(["--fail", "-H", `Authorization: Bearer ${env["OPENAI_API_KEY"]}`, url], env)
      expect({ status: first.status, stderr: first.stderr, received: upstream.received.length }).toEqual({ status: 0, stderr: "", received: 1 })
      expect(upstream.received.at(-1)!.headers["authorization"]).toBe(`Bearer ${VALUE}`)
      expect(first.stdout).toContain(env["OPENAI_API_KEY"]!)
      expect(first.stdout).not.toContain(VALUE)

      const reloaded = new Promise<void>((resolve) => {
        const check = () => (proxy.output().split("\"event\":\"registered\"").length > 2 ? resolve() : setTimeout(check, 50))
        check()
      })
      proxy.child.kill("SIGHUP")
      await reloaded
      const renewed = readEnvFile(envFile)
      expect(renewed["HTTPS_PROXY"]).not.toBe(env["HTTPS_PROXY"])
      const stale = await curl(["-o", "/dev/null", "-w", "%{http_code}", "-x", env["HTTPS_PROXY"]!, `http://api.allowed.test:${upstream.port}/`])
      expect(stale.stdout).toBe("407")
      expect((await curl(["--fail", "-H", `Authorization: Bearer ${renewed["OPENAI_API_KEY"]}`, url], renewed)).status).toBe(0)
      expect(upstream.received.at(-1)!.headers["authorization"]).toBe(`Bearer ${VALUE}`)
    } finally {
      proxy.child.kill("SIGTERM")
    }
    expect(await proxy.exited).toBe(0)
    expect(proxy.output()).not.toContain(VALUE)
  }, 300_000)

  it("refuses a sandboxes file that is not what it should be, naming the fields", async () => {
    const bad = join(root, "bad.json")
    writeFileSync(bad, JSON.stringify([{ mount: "nope" }]))
    const result = await secretgate(["proxy", "--store", "memory:", "--listen", "127.0.0.1:0", "--sandboxes", bad, "--env-dir", join(root, "env-bad")], {})
    expect(result.code).toBe(2)
    expect(result.stderr).toContain("is not a JSON array of { id, mount")
  }, 300_000)
})

