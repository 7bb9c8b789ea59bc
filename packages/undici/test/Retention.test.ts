/**
 * A value rotated away is still a value: after an update, a narrowing of hosts or a delete, an
 * upstream that kept the earlier value can send it back, and the agent keeps scrubbing it (for the
 * `retainValuesFor` window, bounded in memory) and refuses to send it anywhere.
 */
import { Placeholder } from "@secretgate/core"
import { request } from "undici"
import { Redacted } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { MAX_RETAINED, Retention } from "../src/internal/retention.js"
import { makeWorld, type Sandbox, type World } from "./support/fixture.js"

let world: World
beforeAll(async () => {
  world = await makeWorld()
})
afterAll(() => world.close())

const OLD = `old-value&"'<>-${"1".repeat(8)}`
const NEW = `new-value-${"2".repeat(8)}`

/** The upstream echoes the body it got; the body carries the old value as an upstream that kept it would. */
const echoOld = async (box: Sandbox, host: string) => {
  const response = await request(world.https.url(host, "/echo"), {
    method: "POST",
    headers: { "content-type": "application/json", "x-key": box.env.KEY! },
    body: JSON.stringify({ kept: OLD }),
    dispatcher: box.agent
  })
  const echoed = JSON.parse(await response.body.text()) as { body: string }
  return (JSON.parse(echoed.body) as { kept: string }).kept
}

/** Makes the agent hold the current snapshot (a request through it). */
const touch = async (box: Sandbox, host = "api.allowed.test") => {
  const response = await request(world.https.url(host, "/"), { dispatcher: box.agent })
  await response.body.text()
}

describe("a value the agent held stays scrubbed after it stops being current", () => {
  it("after an update", async () => {
    const box = await world.sandbox({ key: [OLD, ["api.allowed.test"]] })
    await touch(box)
    await world.gate.secret.update(box.ids.key!, { value: NEW })
    const echoed = await echoOld(box, "api.allowed.test")
    expect(echoed).toBe(box.env.KEY)
  })

  it("after its hosts were narrowed: still scrubbed from the host it was allowed for", async () => {
    const box = await world.sandbox({ key: [OLD, ["api.allowed.test", "other.allowed.test"]] })
    await touch(box, "other.allowed.test")
    await world.gate.secret.update(box.ids.key!, { hosts: ["api.allowed.test"] })
    const echoed = await echoOld(box, "other.allowed.test")
    expect(echoed).toBe(box.env.KEY)
  })

  it("after a delete, although no secret is allowed for the host any more", async () => {
    const box = await world.sandbox({ key: [OLD, ["api.allowed.test"]] })
    await touch(box)
    await world.gate.secret.delete(box.ids.key!)
    const echoed = await echoOld(box, "api.allowed.test")
    expect(echoed).toBe(box.env.KEY)
  })

  it("a URL holding a past value is refused, for every host", async () => {
    const box = await world.sandbox({ key: [OLD, ["api.allowed.test"]] })
    await touch(box)
    await world.gate.secret.update(box.ids.key!, { value: NEW })
    const attempt = request(world.https.url("api.allowed.test", `/?k=${encodeURIComponent(OLD)}`), { dispatcher: box.agent })
    await expect(attempt).rejects.toMatchObject({ code: "SECRETGATE_DISALLOWED_VALUE" })
  })

  it("with retainValuesFor: 0, nothing is kept (and the echo comes back: what the window prevents)", async () => {
    const box = await world.sandbox({ key: [OLD, ["api.allowed.test"]] }, { retainValuesFor: 0 })
    await touch(box)
    await world.gate.secret.update(box.ids.key!, { value: NEW })
    expect(await echoOld(box, "api.allowed.test")).toBe(OLD)
  })
})

describe("Retention", () => {
  const secret = (value: string, hosts: ReadonlyArray<string>, placeholder = "sg_secret_x") =>
    ({ id: placeholder, name: placeholder, placeholder, hosts, value: Redacted.make(value) }) as const
  const snapshot = (...secrets: ReadonlyArray<ReturnType<typeof secret>>) => new Map(secrets.map((s) => [s.placeholder, s]))

  it("keeps a changed value for its window, then lets it go", () => {
    const retention = new Retention(1000)
    const before = snapshot(secret("a", ["h"]))
    expect(retention.observe(before, 0)).toEqual([])
    const after = snapshot(secret("b", ["h"]))
    const kept = retention.observe(after, 10)
    expect(kept.map((s) => Redacted.value(s.value))).toEqual(["a"])
    // the same array while nothing changes (callers cache by it)
    expect(retention.observe(after, 500)).toBe(kept)
    expect(retention.observe(after, 1010)).toEqual([])
  })

  it("keeps a value whose hosts changed or that was deleted; not one that stayed the same", () => {
    const retention = new Retention(1000)
    retention.observe(snapshot(secret("a", ["h"], "p1"), secret("b", ["h"], "p2"), secret("c", ["h"], "p3")), 0)
    const kept = retention.observe(snapshot(secret("a", ["h", "g"], "p1"), secret("c", ["h"], "p3")), 1)
    expect(kept.map((s) => Redacted.value(s.value)).sort()).toEqual(["a", "b"])
  })

  it("holds at most MAX_RETAINED values, the oldest going first", () => {
    const retention = new Retention(60_000)
    let kept: ReadonlyArray<{ readonly value: Redacted.Redacted<string> }> = []
    for (let i = 0; i <= MAX_RETAINED + 100; i++) kept = retention.observe(snapshot(secret(`v${i}`, ["h"], Placeholder.DEFAULT_PREFIX)), i)
    expect(kept.length).toBe(MAX_RETAINED)
    expect(Redacted.value(kept[0]!.value)).toBe("v100")
  })
})
