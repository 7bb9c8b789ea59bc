/**
 * `secretgate serve --require-hosts`, as a child process on a memory store: a secret without hosts
 * is refused over HTTP (400 on `hosts`) and by the `secret` commands pointed at the server (exit 2,
 * one line saying what to do); one with hosts is created. Without the flag, the same request works.
 */
import { afterAll, describe, expect, it } from "vitest"
import { secretgate, start } from "./support/cli.js"

const KEY = "sgk_test_require_hosts_0123456789abcdefghij"
const children: Array<{ readonly child: { kill: () => boolean }; readonly exited: Promise<number | null> }> = []
afterAll(async () => {
  for (const served of children) {
    served.child.kill()
    await served.exited
  }
})

const serve = async (flags: ReadonlyArray<string>) => {
  const served = await start(["serve", "--store", "memory:", "--port", "0", "--org", "acme", ...flags], /"event":"listening","url":"([^"]+)"/, { env: { SECRETGATE_API_KEY: KEY } })
  children.push(served)
  return served.match[1]!
}

const create = (url: string, body: unknown) =>
  fetch(`${url}/secret`, { method: "POST", headers: { authorization: `Bearer ${KEY}`, "content-type": "application/json" }, body: JSON.stringify(body) })

describe("secretgate serve --require-hosts", () => {
  it("refuses a secret without hosts over HTTP and through the secret commands; accepts one with hosts", async () => {
    const url = await serve(["--require-hosts"])
    const refused = await create(url, { name: "open", value: "v" })
    expect(refused.status).toBe(400)
    expect(await refused.json()).toMatchObject({ field: "hosts" })
    const env = { SECRETGATE_STORE: url, SECRETGATE_API_KEY: KEY, SECRETGATE_ORGANIZATION: "acme" }
    const command = await secretgate(["secret", "create", "open"], { env, input: "v" })
    expect(command.code).toBe(2)
    expect(command.stderr).toMatch(/requires every secret to name the hosts/)
    expect((await create(url, { name: "closed", value: "v", hosts: ["api.example.com"] })).status).toBe(201)
    const open = await serve([])
    expect((await create(open, { name: "open", value: "v" })).status).toBe(201)
  }, 300_000)
})
