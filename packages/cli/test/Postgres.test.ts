/**
 * `secretgate secret ...` on a PostgreSQL store (`--store postgres://…`), against the real server
 * when `SECRETGATE_TEST_DATABASE_URL` names one; without it, only the refusal of a store key that
 * is missing (which needs no server).
 */
import { createHash, randomBytes } from "node:crypto"
import { describe, expect, it } from "vitest"
import { secretgate } from "./support/cli.js"

const DATABASE = process.env["SECRETGATE_TEST_DATABASE_URL"]
const VALUE = "sk-postgres-cli-Zq9xV2bN7"
/** One store key for every run: the server keeps the default schema (and its key check) between runs. */
const STORE_KEY = createHash("sha256").update("secretgate cli test store key").digest("base64")

describe("secretgate on a PostgreSQL store", () => {
  it("refuses to open one without a store key, saying which variable", async () => {
    const result = await secretgate(["secret", "list", "--store", "postgres://nobody@127.0.0.1:1/none"], {})
    expect(result.code).toBe(2)
    expect(result.stderr.trim()).toBe("secretgate: a PostgreSQL store needs its store key in SECRETGATE_KEY (32 bytes, base64), the same for every replica")
  }, 300_000)

  it.skipIf(DATABASE === undefined)("creates and lists a secret; the value is in no output; another key is refused as damage (7)", async () => {
    const env = { SECRETGATE_STORE: DATABASE, SECRETGATE_KEY: STORE_KEY, SECRETGATE_ORGANIZATION: `cli-${randomBytes(6).toString("hex")}` }
    const created = await secretgate(["secret", "create", "pg", "--host", "api.example.com", "--json"], { env, input: VALUE })
    expect({ code: created.code, stderr: created.stderr }).toEqual({ code: 0, stderr: "" })
    const list = await secretgate(["secret", "list", "--json"], { env })
    expect(JSON.parse(list.stdout)).toEqual([JSON.parse(created.stdout)])
    for (const text of [created.stdout, list.stdout, list.stderr]) expect(text).not.toContain(VALUE)
    const wrongKey = await secretgate(["secret", "list"], { env: { ...env, SECRETGATE_KEY: randomBytes(32).toString("base64") } })
    expect(wrongKey.code).toBe(7)
    expect(wrongKey.stderr).toContain(`the key configured as "primary" is not the key this database knows`)
  }, 300_000)
})
