/**
 * `secretgate secret ...` and `secretgate keys ...` as a user runs them: real child processes on a
 * real filesystem store, then against a real `secretgate serve`. A value goes in on standard input
 * or in a file, and never comes out: not on stdout or stderr, not in argv, not in a store file.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Result, secretgate, start } from "./support/cli.js"

const VALUE = "ghp_cli-Zq9xV2bN7-never-printed"
const NEW_VALUE = "ghp_cli-rotated-Kw3eR8"

let root: string
beforeAll(() => {
  root = mkdtempSync(join(tmpdir(), "secretgate-cli-"))
})
afterAll(() => rmSync(root, { recursive: true, force: true }))

const noValueIn = (result: Result, ...values: Array<string>) => {
  for (const value of values) {
    expect(result.stdout).not.toContain(value)
    expect(result.stderr).not.toContain(value)
    expect(result.argv.join(" ")).not.toContain(value)
  }
}

const filesUnder = (directory: string): Array<string> =>
  readdirSync(directory).flatMap((name) => {
    const path = join(directory, name)
    return statSync(path).isDirectory() ? filesUnder(path) : [path]
  })

describe("secretgate secret, on a filesystem store", () => {
  it("creates from standard input, lists, gets by name and id, updates, deletes; the value never comes out", async () => {
    const env = { SECRETGATE_STORE: join(root, "store"), SECRETGATE_ORGANIZATION: "acme" }
    const created = await secretgate(["secret", "create", "github", "--host", "api.github.com", "--description", "CI token", "--json"], {
      env,
      input: `${VALUE}\n`
    })
    expect({ code: created.code, stderr: created.stderr }).toEqual({ code: 0, stderr: "" })
    noValueIn(created, VALUE)
    const secret = JSON.parse(created.stdout) as { id: string; name: string; placeholder: string; hosts: Array<string>; description: string }
    expect(secret).toMatchObject({ name: "github", hosts: ["api.github.com"], description: "CI token" })
    expect(secret.placeholder).toMatch(/^sg_secret_[a-z2-7]{32}$/)

    const list = await secretgate(["secret", "list"], { env })
    expect(list.code).toBe(0)
    expect(list.stdout.split("\n")[0]).toMatch(/^NAME\s+HOSTS\s+PLACEHOLDER\s+UPDATED\s+ID$/)
    expect(list.stdout).toContain(`github  api.github.com  ${secret.placeholder}`)

    const byId = await secretgate(["secret", "get", secret.id, "--json"], { env })
    expect(JSON.parse(byId.stdout)).toEqual(JSON.parse(created.stdout))
    const byName = await secretgate(["secret", "get", "github"], { env })
    expect(byName.stdout).toMatch(new RegExp(`^placeholder\\s+${secret.placeholder}$`, "m"))

    const valueFile = join(root, "new-value")
    writeFileSync(valueFile, NEW_VALUE, { mode: 0o600 })
    const updated = await secretgate(["secret", "update", "github", "--value-file", valueFile, "--host", "api.github.com", "--host", "uploads.github.com", "--clear-description", "--json"], { env })
    expect(updated.code).toBe(0)
    noValueIn(updated, VALUE, NEW_VALUE)
    expect(JSON.parse(updated.stdout)).toMatchObject({ id: secret.id, placeholder: secret.placeholder, hosts: ["api.github.com", "uploads.github.com"] })
    expect(JSON.parse(updated.stdout).description).toBeUndefined()

    // the store holds the values sealed: no file under it has either in plaintext
    for (const file of filesUnder(join(root, "store"))) {
      const bytes = readFileSync(file)
      expect(bytes.includes(VALUE)).toBe(false)
      expect(bytes.includes(NEW_VALUE)).toBe(false)
    }

    const deleted = await secretgate(["secret", "delete", "github"], { env })
    expect(deleted.code).toBe(0)
    expect(deleted.stderr).toContain(`deleted github (${secret.id})`)
    const empty = await secretgate(["secret", "list", "--json"], { env })
    expect(JSON.parse(empty.stdout)).toEqual([])
  }, 300_000)

  it("exits with a distinct code and one clear line for each kind of failure, and leaves the store as it was", async () => {
    const env = { SECRETGATE_STORE: join(root, "failures") }
    expect((await secretgate(["secret", "create", "taken", "--host", "a.example"], { env, input: VALUE })).code).toBe(0)

    const taken = await secretgate(["secret", "create", "taken", "--host", "a.example"], { env, input: "other" })
    expect({ code: taken.code, stderr: taken.stderr.trim() }).toEqual({ code: 4, stderr: `secretgate: a secret named "taken" already exists in this organization` })

    const missing = await secretgate(["secret", "get", "nope"], { env })
    expect({ code: missing.code, stderr: missing.stderr.trim() }).toEqual({ code: 3, stderr: `secretgate: secret "nope" not found` })

    const invalid = await secretgate(["secret", "create", "bad name", "--host", "a.example"], { env, input: VALUE })
    expect(invalid.code).toBe(2)
    expect(invalid.stderr).toMatch(/^secretgate: name "bad name" must start with a letter/m)
    noValueIn(invalid, VALUE)

    const badHost = await secretgate(["secret", "create", "ok", "--host", "https://a.example/path"], { env, input: VALUE })
    expect(badHost.code).toBe(2)
    noValueIn(badHost, VALUE)

    const noInput = await secretgate(["secret", "create", "empty", "--host", "a.example"], { env, input: "" })
    expect({ code: noInput.code, stderr: noInput.stderr.trim() }).toEqual({
      code: 2,
      stderr: "secretgate: standard input is empty: pipe the value in, or use --value-file"
    })

    const noStore = await secretgate(["secret", "list"], { env: {} })
    expect(noStore.code).toBe(2)
    expect(noStore.stderr).toContain("--store")

    const scheme = await secretgate(["secret", "list", "--store", "ftp://example.com"], {})
    expect({ code: scheme.code, stderr: scheme.stderr.trim() }).toEqual({
      code: 2,
      stderr: `secretgate: --store "ftp://example.com": unknown scheme "ftp:" (a directory, http(s)://, postgres://, file: or memory:)`
    })

    const list = await secretgate(["secret", "list", "--json"], { env })
    expect((JSON.parse(list.stdout) as Array<{ name: string }>).map((secret) => secret.name)).toEqual(["taken"])
  }, 300_000)

  it("warns on stderr when a secret has no host (it would be substituted for every host)", async () => {
    const result = await secretgate(["secret", "create", "anywhere"], { env: { SECRETGATE_STORE: join(root, "unrestricted") }, input: VALUE })
    expect(result.code).toBe(0)
    expect(result.stderr).toContain("anywhere has no --host: an egress told --unrestricted allow substitutes it for EVERY host")
  }, 300_000)
})

describe("secretgate keys, on a filesystem store with a generated key file", () => {
  it("lists, rotates with progress lines (not a terminal), and retires the old key", async () => {
    const env = { SECRETGATE_STORE: join(root, "keys") }
    for (const name of ["one", "two", "three"]) {
      expect((await secretgate(["secret", "create", name, "--host", "a.example"], { env, input: `${VALUE}-${name}` })).code).toBe(0)
    }
    const before = await secretgate(["keys", "list", "--json"], { env })
    const [old] = JSON.parse(before.stdout) as Array<{ id: string; current: boolean; records: number }>
    expect(old).toMatchObject({ current: true, records: 3 })

    const rotated = await secretgate(["keys", "rotate"], { env })
    expect(rotated.code).toBe(0)
    expect(rotated.stderr).toMatch(/^re-sealing: 3\/3 records \(100%\)$/m)
    const current = /new current key (\S+);/.exec(rotated.stderr)?.[1]
    expect(current).toBeDefined()
    expect(current).not.toBe(old!.id)

    const retired = await secretgate(["keys", "retire", old!.id], { env })
    expect(retired.code).toBe(0)
    const after = await secretgate(["keys", "list"], { env })
    expect(after.stdout).toMatch(new RegExp(`^${current}\\s+yes\\s+3\\s+yes$`, "m"))
    expect(after.stdout).not.toContain(old!.id)

    const list = await secretgate(["secret", "list", "--json"], { env })
    expect((JSON.parse(list.stdout) as Array<unknown>).length).toBe(3)
  }, 300_000)

  it("refuses key management on a store that is not a directory", async () => {
    const result = await secretgate(["keys", "list", "--store", "memory:"], {})
    expect(result.code).toBe(2)
    expect(result.stderr).toContain("is not a filesystem store")
  }, 300_000)
})

describe("secretgate serve, and secret commands against it", () => {
  it("serves the API over a store with a keys file of hashes; a client manages secrets over HTTP; SIGTERM stops it", async () => {
    const manageKey = await secretgate(["api-key", "new", "--id", "ci", "--org", "acme", "--scope", "secrets:manage"], {})
    expect(manageKey.code).toBe(0)
    const key = manageKey.stdout.trim()
    const entry = manageKey.stderr.trim().split("\n").at(-1)!
    expect(JSON.parse(entry)).toMatchObject({ id: "ci", organizationId: "acme", scopes: ["secrets:manage"], hash: expect.stringMatching(/^sha256:[0-9a-f]{64}$/) })
    expect(entry).not.toContain(key)
    const keysFile = join(root, "keys.json")
    writeFileSync(keysFile, `[${entry}]`)

    const served = await start(["serve", "--store", join(root, "served"), "--port", "0", "--keys-file", keysFile], /"event":"listening","url":"([^"]+)"/)
    try {
      const url = served.match[1]!
      const env = { SECRETGATE_STORE: url, SECRETGATE_API_KEY: key, SECRETGATE_ORGANIZATION: "acme" }
      const created = await secretgate(["secret", "create", "remote", "--host", "api.example.com", "--json"], { env, input: VALUE })
      expect(created.code).toBe(0)
      noValueIn(created, VALUE)
      const got = await secretgate(["secret", "get", "remote", "--json"], { env })
      expect(JSON.parse(got.stdout)).toEqual(JSON.parse(created.stdout))

      // the Daytona wire: a plain HTTP client sees the secret, never the value
      const response = await fetch(`${url}/secret`, { headers: { authorization: `Bearer ${key}` } })
      expect(response.status).toBe(200)
      const body = await response.text()
      expect(JSON.parse(body)).toMatchObject([{ name: "remote", hosts: ["api.example.com"] }])
      expect(body).not.toContain(VALUE)

      const wrongKey = await secretgate(["secret", "list"], { env: { ...env, SECRETGATE_API_KEY: "sg_wrong_key_0000000000000000000000" } })
      expect(wrongKey.code).toBe(6)
      const otherOrg = await secretgate(["secret", "list", "--json"], { env: { ...env, SECRETGATE_ORGANIZATION: "other" } })
      expect(otherOrg.code).toBe(6)
    } finally {
      served.child.kill("SIGTERM")
    }
    expect(await served.exited).toBe(0)
    expect(served.output()).toContain(`"event":"stopped"`)
    expect(served.output()).not.toContain(key)
  }, 300_000)

  it("a server that cannot be reached is 'unavailable' (exit code 5)", async () => {
    const result = await secretgate(["secret", "list"], { env: { SECRETGATE_STORE: "http://127.0.0.1:9", SECRETGATE_API_KEY: "sg_x" } })
    expect(result.code).toBe(5)
    expect(result.stderr).toMatch(/^secretgate: /)
  }, 300_000)
})
