/**
 * `SECRETGATE_KEY` as a key ring (`id:base64,id:base64`, oldest first) on a filesystem store with
 * configured keys, as a user rotates them: the CLI as a child process on a real directory.
 */
import { randomBytes } from "node:crypto"
import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { secretgate } from "./support/cli.js"

const root = mkdtempSync(join(tmpdir(), "secretgate-cli-ring-"))
afterAll(() => rmSync(root, { recursive: true, force: true }))

const VALUE = "sk-ring-Zq9xV2bN7"
const A = randomBytes(32).toString("base64")
const B = randomBytes(32).toString("base64")

describe("SECRETGATE_KEY as a key ring, on a filesystem store with configured keys", () => {
  it("adds a key last, re-seals with it, retires the old one; the new key alone then opens every record", async () => {
    const store = { SECRETGATE_STORE: join(root, "store") }
    const outputs: Array<string> = []
    const run = async (args: ReadonlyArray<string>, key: string, input?: string) => {
      const result = await secretgate(args, { env: { ...store, SECRETGATE_KEY: key }, ...(input === undefined ? {} : { input }) })
      outputs.push(result.stdout, result.stderr)
      return result
    }
    for (const name of ["one", "two"]) {
      expect((await run(["secret", "create", name, "--host", "a.example"], `a:${A}`, `${VALUE}-${name}`)).code).toBe(0)
    }
    const resealed = await run(["keys", "reseal"], `a:${A},b:${B}`)
    expect(resealed.code).toBe(0)
    expect(resealed.stderr).toMatch(/^re-sealing: 2\/2 records \(100%\)$/m)
    expect((await run(["keys", "retire", "a"], `a:${A},b:${B}`)).code).toBe(0)
    const list = await run(["keys", "list", "--json"], `b:${B}`)
    expect(JSON.parse(list.stdout)).toEqual([{ id: "b", current: true, records: 2, held: true }])
    const secrets = await run(["secret", "list", "--json"], `b:${B}`)
    expect((JSON.parse(secrets.stdout) as Array<{ name: string }>).map((secret) => secret.name)).toEqual(["one", "two"])
    for (const text of outputs) {
      expect(text).not.toContain(VALUE)
      expect(text).not.toContain(A)
      expect(text).not.toContain(B)
    }
  }, 300_000)
})
