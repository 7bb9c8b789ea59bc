/**
 * `secretgate keys ...` on a PostgreSQL store, as a user runs them (the CLI as a child process),
 * against the real server when `SECRETGATE_TEST_DATABASE_URL` names one, each run in a schema of
 * its own (`--schema`, or `SECRETGATE_SCHEMA`). Without a server, only what needs none: a
 * malformed key ring or schema name is refused before connecting.
 */
import { randomBytes } from "node:crypto"
import { createRequire } from "node:module"
import { afterAll, describe, expect, it } from "vitest"
import { secretgate } from "./support/cli.js"

const DATABASE = process.env["SECRETGATE_TEST_DATABASE_URL"]
const VALUE = "sk-postgres-keys-Zq9xV2bN7"
const OLD = randomBytes(32).toString("base64")
const NEW = randomBytes(32).toString("base64")
const schema = `sg_cli_keys_${randomBytes(5).toString("hex")}`

afterAll(async () => {
  if (DATABASE === undefined) return
  // pg comes with the SQL package (a dependency of the CLI)
  const require = createRequire(import.meta.url)
  const pg = createRequire(require.resolve("@secretgate/sql"))("pg") as {
    Client: new(options: { connectionString: string }) => {
      connect(): Promise<void>
      query(text: string): Promise<unknown>
      end(): Promise<void>
    }
  }
  const client = new pg.Client({ connectionString: DATABASE })
  await client.connect()
  await client.query(`DROP SCHEMA IF EXISTS ${schema} CASCADE`)
  await client.end()
})

describe("secretgate keys on a PostgreSQL store", () => {
  it.skipIf(DATABASE === undefined)(
    "lists keys; retire is refused for a key in use, an unknown id and the current key (4); reseal shows progress; then the old key retires",
    async () => {
      const org = `cli-${randomBytes(6).toString("hex")}`
      const base = { SECRETGATE_STORE: DATABASE, SECRETGATE_ORGANIZATION: org }
      const oldOnly = { ...base, SECRETGATE_KEY: `old:${OLD}` }
      const ring = { ...base, SECRETGATE_KEY: `old:${OLD},new:${NEW}`, SECRETGATE_SCHEMA: schema }
      const outputs: Array<string> = []
      const run = async (args: ReadonlyArray<string>, env: Record<string, string | undefined>, input?: string) => {
        const result = await secretgate(args, { env, ...(input === undefined ? {} : { input }) })
        outputs.push(result.stdout, result.stderr, ...result.argv)
        return result
      }
      for (const name of ["one", "two", "three"]) {
        const created = await run(["secret", "create", name, "--host", "api.example.com", "--schema", schema], oldOnly, `${VALUE}-${name}`)
        expect({ code: created.code, stderr: created.stderr }).toEqual({ code: 0, stderr: "" })
      }
      const before = await run(["keys", "list", "--json", "--schema", schema], oldOnly)
      expect(JSON.parse(before.stdout)).toEqual([{ id: "old", current: true, records: 3, held: true }])

      // the key ring (old, then new: new seals) from SECRETGATE_KEY, the schema from SECRETGATE_SCHEMA
      const inUse = await run(["keys", "retire", "old"], ring)
      expect(inUse.code).toBe(4)
      expect(inUse.stderr.trim()).toBe(`secretgate: 3 record(s) are still sealed with key "old": run reseal first`)
      const unknown = await run(["keys", "retire", "no-such-key"], ring)
      expect(unknown.code).toBe(4)
      expect(unknown.stderr).toContain(`key "no-such-key" is not known to this store`)
      const current = await run(["keys", "retire", "new"], ring)
      expect(current.code).toBe(4)
      expect(current.stderr).toContain(`key "new" is current and cannot be retired`)

      const resealed = await run(["keys", "reseal"], ring)
      expect(resealed.code).toBe(0)
      expect(resealed.stderr).toMatch(/^re-sealing: 0\/3 records \(0%\)$/m)
      expect(resealed.stderr).toMatch(/^re-sealing: 3\/3 records \(100%\)$/m)
      expect(resealed.stderr).toContain("re-sealed 3 record(s) with the current key")

      const retired = await run(["keys", "retire", "old"], ring)
      expect({ code: retired.code, stderr: retired.stderr.trim() }).toEqual({ code: 0, stderr: "retired key old" })
      const after = await run(["keys", "list", "--json"], ring)
      expect(JSON.parse(after.stdout)).toEqual([{ id: "new", current: true, records: 3, held: true }])

      // the new key alone opens every record; the old one alone is refused (its key is retired)
      const list = await run(["secret", "list", "--json"], { ...base, SECRETGATE_KEY: `new:${NEW}`, SECRETGATE_SCHEMA: schema })
      expect((JSON.parse(list.stdout) as Array<{ name: string }>).map((secret) => secret.name).sort()).toEqual(["one", "three", "two"])
      const stale = await run(["secret", "list", "--schema", schema], oldOnly)
      expect(stale.code).toBe(7)
      expect(stale.stderr).toContain(`the sealing key "old" has been retired from this store`)

      const rotate = await run(["keys", "rotate"], ring)
      expect(rotate.code).toBe(2)
      expect(rotate.stderr).toContain("a PostgreSQL store's keys come from configuration: put the new key last in SECRETGATE_KEY")

      for (const text of outputs) {
        expect(text).not.toContain(VALUE)
        expect(text).not.toContain(OLD)
        expect(text).not.toContain(NEW)
      }
    },
    300_000
  )

  it("refuses a malformed key ring and a bad schema name before connecting (2), without echoing a key", async () => {
    const store = "postgres://nobody@127.0.0.1:1/none"
    const short = randomBytes(16).toString("base64")
    const ring = await secretgate(["keys", "list", "--store", store], { env: { SECRETGATE_KEY: `old:${OLD},new:${short}` } })
    expect(ring.code).toBe(2)
    expect(ring.stderr.trim()).toBe(
      `secretgate: SECRETGATE_KEY is not one key (32 bytes, base64) nor a key ring (id:base64,id:base64, oldest first): key "new" must be 32 bytes of base64 (got 16 bytes)`
    )
    expect(ring.stderr).not.toContain(short)
    expect(ring.stderr).not.toContain(OLD)
    const badSchema = await secretgate(["keys", "list", "--store", store, "--schema", "Bad-Name"], { env: { SECRETGATE_KEY: OLD } })
    expect(badSchema.code).toBe(2)
    expect(badSchema.stderr).toContain(`--schema "Bad-Name" must be 1-48 characters of a-z, 0-9 and _`)
  }, 300_000)
})
