/**
 * The examples are programs a newcomer runs first: each is run here as its own Node process (with
 * `tsx`, as the README says) and must show its substitution end to end.
 */
import { execFile } from "node:child_process"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { describe, expect, it } from "vitest"

const run = promisify(execFile)
const ROOT = fileURLToPath(new URL("..", import.meta.url))
const TSX = join(ROOT, "node_modules", ".bin", "tsx")

const example = async (name: string, extra: Record<string, string> = {}) => {
  // the remote client starts a server of its own unless these point at one
  const env = { ...Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith("SECRETGATE_"))), ...extra }
  const { stdout } = await run(TSX, [join(ROOT, "examples", name)], { cwd: ROOT, env })
  return stdout
}

describe("examples", () => {
  it("quickstart (pnpm demo): a separate process behind the proxy; the allowed host gets the value, evil.test the placeholder, the echo is scrubbed", async () => {
    const out = await example("quickstart.ts")
    expect(out).toMatch(/the sandbox's env +GITHUB_TOKEN=sg_secret_[a-z2-7]{32}/)
    expect(out).toMatch(/api\.allowed\.test received +Authorization: Bearer ghp_demo_R3al/)
    expect(out).toMatch(/evil\.test received +body: stolen=sg_secret_[a-z2-7]{32}/)
    expect(out).toMatch(/the sandbox saw the echo +Bearer sg_secret_[a-z2-7]{32}/)
    expect(out).toContain("end to end: OK")
  }, 60_000)

  it("effect: the same through Secrets, SandboxMount and SecretgateHttpClient.layer", async () => {
    const out = await example("effect.ts")
    expect(out).toMatch(/api\.allowed\.test received +Bearer sk_live_billing_42/)
    expect(out).toContain("end to end: OK")
  }, 60_000)

  it("remote-client: the facade and the egress over a secretgate server", async () => {
    const out = await example("remote-client.ts")
    expect(out).toContain("creating it twice: SecretNameTaken")
    expect(out).toContain("upstream received: Bearer tok_remote_R3al")
    expect(out).toMatch(/sandbox read back: \{"youSent":"Bearer sg_secret_[a-z2-7]{32}"\}/)
  }, 60_000)

  const database = process.env.SECRETGATE_TEST_DATABASE_URL
  it.skipIf(database === undefined)(
    database === undefined
      ? "postgres: skipped (SECRETGATE_TEST_DATABASE_URL is not set)"
      : "postgres: a server and an egress host in two processes share one database; an update reaches the egress",
    async () => {
      const out = await example("postgres.ts", { DATABASE_URL: database! })
      expect(out).toMatch(/egress: api\.allowed\.test received Bearer ghp_first_value\n/)
      expect(out).toMatch(/egress: api\.allowed\.test received Bearer ghp_second_value \(\d+ ms after the update\)/)
      expect(out).toContain("two processes, one database: OK")
    },
    120_000
  )
})
