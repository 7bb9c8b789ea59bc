/**
 * `secretgate proxy` as an operator runs it: a child process serving sandboxes declared in a file,
 * each given an env file; curl started with that env file's variables gets its placeholder
 * substituted upstream; SIGHUP issues new tokens (the old one is refused); SIGTERM stops it.
 */
import { spawn, spawnSync } from "node:child_process"
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs"
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

/** As Docker's --env-file reads it: NAME=value, the value taken literally. */
const readEnvFile = (file: string): Record<string, string> =>
  Object.fromEntries(readFileSync(file, "utf8").trim().split("\n").map((line) => {
    const at = line.indexOf("=")
    return [line.slice(0, at), line.slice(at + 1)]
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
    const bundleDir = join(root, "bundle")
    const auditFile = join(root, "proxy-audit.jsonl")
    const proxy = await start(
      ["proxy", "--store", store, "--listen", "127.0.0.1:0", "--sandboxes", sandboxes, "--env-dir", envDir, "--bundle-dir", bundleDir, "--resolve", "api.allowed.test:127.0.0.1", "--upstream-ca", CA_FILE, "--audit", auditFile],
      /"event":"listening"/
    )
    try {
      const envFile = join(envDir, "agent-1.env")
      expect(statSync(envFile).mode & 0o777).toBe(0o600)
      expect(statSync(envDir).mode & 0o777).toBe(0o700)
      const env = readEnvFile(envFile)
      expect(env["OPENAI_API_KEY"]).toMatch(/^sg_secret_/)
      // the files a sandbox reads are in the bundle directory, nothing else of the proxy's is
      expect(env["CURL_CA_BUNDLE"]!.startsWith(`${bundleDir}/`)).toBe(true)
      expect(readdirSync(bundleDir).sort()).toEqual(["ca-bundle.pem", "ca.pem", "node-preload.cjs"])
      // a Node program started with the file's NODE_OPTIONS, as Docker passes it, starts
      const node = spawnSync(process.execPath, ["-e", "process.exit(0)"], { env: { NODE_OPTIONS: env["NODE_OPTIONS"]! } })
      expect(node.status).toBe(0)
      expect(readFileSync(envFile, "utf8")).not.toContain(VALUE)

      const url = `https://api.allowed.test:${upstream.port}/echo`
      const first = await curl(["--fail", "-H", `Authorization: Bearer ${env["OPENAI_API_KEY"]}`, url], env)
      expect({ status: first.status, stderr: first.stderr, received: upstream.received.length }).toEqual({ status: 0, stderr: "", received: 1 })
      expect(upstream.received.at(-1)!.headers["authorization"]).toBe(`Bearer ${VALUE}`)
      expect(first.stdout).toContain(env["OPENAI_API_KEY"]!)
      expect(first.stdout).not.toContain(VALUE)

      const logged = (event: string, count: number) =>
        new Promise<void>((resolve) => {
          const check = () => (proxy.output().split(`"event":"${event}"`).length > count ? resolve() : setTimeout(check, 50))
          check()
        })
      // a reload that fails (a secret missing) changes nothing: the old token and file stay good
      writeFileSync(sandboxes, JSON.stringify([{ id: "agent-1", mount: { OPENAI_API_KEY: "openai" } }, { id: "agent-2", mount: { X: "missing" } }]))
      proxy.child.kill("SIGHUP")
      await logged("reload-failed", 1)
      expect(readEnvFile(envFile)).toEqual(env)
      expect((await curl(["--fail", "-H", `Authorization: Bearer ${env["OPENAI_API_KEY"]}`, url], env)).status).toBe(0)

      writeFileSync(sandboxes, JSON.stringify([{ id: "agent-1", mount: { OPENAI_API_KEY: "openai" } }]))
      proxy.child.kill("SIGHUP")
      await logged("registered", 2)
      const renewed = readEnvFile(envFile)
      expect(renewed["HTTPS_PROXY"]).not.toBe(env["HTTPS_PROXY"])
      const stale = await curl(["-o", "/dev/null", "-w", "%{http_code}", "-x", env["HTTPS_PROXY"]!, `http://api.allowed.test:${upstream.port}/`])
      expect(stale.stdout).toBe("407")
      expect((await curl(["--fail", "-H", `Authorization: Bearer ${renewed["OPENAI_API_KEY"]}`, url], renewed)).status).toBe(0)
      expect(upstream.received.at(-1)!.headers["authorization"]).toBe(`Bearer ${VALUE}`)

      // a reload that cannot put a file in place (a directory where agent-2's goes) fails and the
      // proxy goes on: agent-1's new file and its previous one both work
      const blocked = join(envDir, "agent-2.env")
      mkdirSync(join(blocked, "in-the-way"), { recursive: true })
      writeFileSync(sandboxes, JSON.stringify([{ id: "agent-1", mount: { OPENAI_API_KEY: "openai" } }, { id: "agent-2", mount: { OPENAI_API_KEY: "openai" } }]))
      proxy.child.kill("SIGHUP")
      await logged("reload-failed", 2)
      expect(proxy.output()).toMatch(/"event":"reload-failed","message":"could not put [^"]*agent-2\.env in place/)
      const partly = readEnvFile(envFile)
      expect(partly["HTTPS_PROXY"]).not.toBe(renewed["HTTPS_PROXY"])
      for (const each of [renewed, partly]) expect((await curl(["--fail", "-H", `Authorization: Bearer ${each["OPENAI_API_KEY"]}`, url], each)).status).toBe(0)
      expect(readdirSync(envDir).filter((name) => name.endsWith(".tmp"))).toEqual([])
      // once it can, a reload puts both in place and revokes every earlier token
      rmSync(blocked, { recursive: true })
      proxy.child.kill("SIGHUP")
      await logged("registered", 5)
      const whole = readEnvFile(envFile)
      expect(readEnvFile(blocked)["OPENAI_API_KEY"]).toMatch(/^sg_secret_/)
      for (const each of [renewed, partly]) {
        expect((await curl(["-o", "/dev/null", "-w", "%{http_code}", "-x", each["HTTPS_PROXY"]!, `http://api.allowed.test:${upstream.port}/`])).stdout).toBe("407")
      }
      expect((await curl(["--fail", "-H", `Authorization: Bearer ${whole["OPENAI_API_KEY"]}`, url], whole)).status).toBe(0)
    } finally {
      proxy.child.kill("SIGTERM")
    }
    expect(await proxy.exited).toBe(0)
    expect(proxy.output()).not.toContain(VALUE)
    // --audit: the events went to the file (0600, JSON lines, no value), not to stderr
    expect(statSync(auditFile).mode & 0o777).toBe(0o600)
    const audit = readFileSync(auditFile, "utf8")
    expect(audit).not.toContain(VALUE)
    expect(proxy.output()).not.toContain(`"event":"audit"`)
    expect(audit.trim().split("\n").map((line) => JSON.parse(line) as Record<string, unknown>)).toContainEqual(
      expect.objectContaining({ type: "substituted", sandbox: "agent-1", secret: "openai", method: "GET", host: "api.allowed.test", port: upstream.port, path: "/echo", time: expect.any(String) })
    )
  }, 300_000)

  it("refuses a sandboxes file that is not what it should be (fields, duplicate ids), and an env dir that sandboxes read", async () => {
    const proxyWith = (file: string, more: ReadonlyArray<string> = []) =>
      secretgate(["proxy", "--store", "memory:", "--listen", "127.0.0.1:0", "--sandboxes", file, "--env-dir", join(root, "env-bad"), "--bundle-dir", join(root, "bundle-bad"), ...more], {})
    const bad = join(root, "bad.json")
    writeFileSync(bad, JSON.stringify([{ mount: "nope" }]))
    const malformed = await proxyWith(bad)
    expect(malformed.code).toBe(2)
    expect(malformed.stderr).toContain("is not a JSON array of { id, mount")
    const twice = join(root, "twice.json")
    writeFileSync(twice, JSON.stringify([{ id: "a", mount: {} }, { id: "a", mount: {} }]))
    const duplicate = await proxyWith(twice)
    expect(duplicate.code).toBe(2)
    expect(duplicate.stderr).toContain(`sandbox id "a" appears twice`)
    const shared = await secretgate(["proxy", "--store", "memory:", "--sandboxes", twice, "--env-dir", join(root, "same"), "--bundle-dir", join(root, "same")], {})
    expect(shared.code).toBe(2)
    expect(shared.stderr).toContain("--env-dir holds every sandbox's token: it must not be (or be inside) the --bundle-dir")
    const caInBundle = await secretgate(["proxy", "--store", "memory:", "--sandboxes", twice, "--env-dir", join(root, "env-c"), "--bundle-dir", join(root, "bundle-c"), "--ca-dir", join(root, "bundle-c", "ca")], {})
    expect(caInBundle.code).toBe(2)
    expect(caInBundle.stderr).toContain("--ca-dir holds the CA's private key: it must not be (or be inside) the --bundle-dir")
    const caIsEnv = await secretgate(["proxy", "--store", "memory:", "--sandboxes", twice, "--env-dir", join(root, "env-d"), "--bundle-dir", join(root, "bundle-d"), "--ca-dir", join(root, "env-d")], {})
    expect(caIsEnv.code).toBe(2)
    expect(caIsEnv.stderr).toContain("keep them in separate directories")
    // paths compare as real paths: a link to the bundle directory is the bundle directory
    mkdirSync(join(root, "bundle-e"))
    symlinkSync(join(root, "bundle-e"), join(root, "alias-e"))
    const caViaAlias = await secretgate(["proxy", "--store", "memory:", "--sandboxes", twice, "--env-dir", join(root, "env-e"), "--bundle-dir", join(root, "bundle-e"), "--ca-dir", join(root, "alias-e", "ca")], {})
    expect(caViaAlias.code).toBe(2)
    expect(caViaAlias.stderr).toContain("--ca-dir holds the CA's private key: it must not be (or be inside) the --bundle-dir")
    const envViaAlias = await secretgate(["proxy", "--store", "memory:", "--sandboxes", twice, "--env-dir", join(root, "alias-e", "env"), "--bundle-dir", join(root, "bundle-e")], {})
    expect(envViaAlias.code).toBe(2)
    expect(envViaAlias.stderr).toContain("--env-dir holds every sandbox's token: it must not be (or be inside) the --bundle-dir")
    const bundleViaAlias = await secretgate(["proxy", "--store", "memory:", "--sandboxes", twice, "--env-dir", join(root, "env-f"), "--bundle-dir", join(root, "alias-e"), "--ca-dir", join(root, "bundle-e", "ca")], {})
    expect(bundleViaAlias.code).toBe(2)
    expect(bundleViaAlias.stderr).toContain("--ca-dir holds the CA's private key")
    expect(readdirSync(join(root, "bundle-e"))).toEqual([])
  }, 300_000)
})

