/**
 * The management audit trail in process: `SecretAudit.layer` over a real (memory) backend reports
 * each create, update and delete, done or failed, as the `local` actor (or the one set with
 * `withActor`), naming fields but never holding a value.
 */
import { Effect, Exit, Layer, PubSub, Queue, Redacted } from "effect"
import { describe, expect, it } from "vitest"
import { MemorySecretStore } from "../../memory/src/index.js"
import * as SecretAudit from "../src/SecretAudit.js"
import { Secrets } from "../src/Secrets.js"

const VALUE = "sk-audit-\"quoted\"\\slash-ünï-Zq9"

const run = <A, E>(effect: Effect.Effect<A, E, Secrets>) => {
  const events: Array<SecretAudit.ManagementEvent> = []
  const layer = SecretAudit.layer((event) => Effect.sync(() => events.push(event))).pipe(
    Layer.provide(MemorySecretStore.layer())
  )
  return Effect.runPromise(Effect.map(Effect.exit(Effect.provide(effect, layer)), (exit) => ({ exit, events })))
}

describe("SecretAudit", () => {
  it("reports create, update and delete as the local actor, with the fields written and the secret's name", async () => {
    const { events, exit } = await run(Effect.gen(function*() {
      const secrets = yield* Secrets
      const created = yield* secrets.create("acme", { name: "STRIPE_KEY", value: Redacted.make(VALUE), hosts: ["api.stripe.com"] })
      yield* secrets.update("acme", created.id, { value: Redacted.make(`${VALUE}-2`) })
      yield* secrets.update("acme", created.id, { description: "billing", hosts: [] })
      yield* secrets.list("acme")
      yield* secrets.get("acme", created.id)
      yield* secrets.delete("acme", created.id)
      return created.id
    }))
    expect(Exit.isSuccess(exit)).toBe(true)
    const id = Exit.isSuccess(exit) ? exit.value : ""
    expect(events.map(({ time: _, ...rest }) => rest)).toEqual([
      {
        organizationId: "acme",
        actor: "local",
        action: "create",
        outcome: "ok",
        secretId: id,
        secretName: "STRIPE_KEY",
        fields: ["name", "value", "hosts"],
        error: undefined
      },
      { organizationId: "acme", actor: "local", action: "update", outcome: "ok", secretId: id, secretName: "STRIPE_KEY", fields: ["value"], error: undefined },
      {
        organizationId: "acme",
        actor: "local",
        action: "update",
        outcome: "ok",
        secretId: id,
        secretName: "STRIPE_KEY",
        fields: ["description", "hosts"],
        error: undefined
      },
      { organizationId: "acme", actor: "local", action: "delete", outcome: "ok", secretId: id, secretName: "STRIPE_KEY", fields: [], error: undefined }
    ])
    for (const event of events) expect(event.time).toBeInstanceOf(Date)
    expect(JSON.stringify(events)).not.toContain("sk-audit")
  })

  it("reports failed attempts with their outcome, and the actor set with withActor", async () => {
    const { events } = await run(SecretAudit.withActor(
      Effect.gen(function*() {
        const secrets = yield* Secrets
        yield* secrets.create("acme", { name: "TAKEN", value: Redacted.make(VALUE) })
        yield* Effect.exit(secrets.create("acme", { name: "TAKEN", value: Redacted.make(VALUE) }))
        yield* Effect.exit(secrets.create("acme", { name: "bad name!", value: Redacted.make(VALUE) }))
        yield* Effect.exit(secrets.update("acme", "no-such-id", { value: Redacted.make(VALUE) }))
        yield* Effect.exit(secrets.delete("acme", "no-such-id"))
      }),
      "key-7"
    ))
    expect(events.map((event) => [event.actor, event.action, event.outcome, event.error, event.secretName ?? null, event.secretId ?? null])).toEqual([
      ["key-7", "create", "ok", undefined, "TAKEN", events[0]!.secretId],
      ["key-7", "create", "conflict", "SecretNameTaken", "TAKEN", null],
      // invalid input is not echoed
      ["key-7", "create", "invalid", "InvalidSecretInput", null, null],
      ["key-7", "update", "not-found", "SecretNotFound", null, "no-such-id"],
      ["key-7", "delete", "not-found", "SecretNotFound", null, "no-such-id"]
    ])
    expect(JSON.stringify(events)).not.toContain("sk-audit")
  })

  it("publishes to a PubSub, and renders a JSON line with every field present", async () => {
    const lines = await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
      const pubsub = yield* PubSub.unbounded<SecretAudit.ManagementEvent>()
      const subscription = yield* PubSub.subscribe(pubsub)
      const layer = SecretAudit.layer(SecretAudit.toPubSub(pubsub)).pipe(Layer.provide(MemorySecretStore.layer()))
      yield* Effect.provide(
        Effect.flatMap(Secrets, (secrets) => Effect.exit(secrets.delete("acme", "missing"))),
        layer
      )
      const events = yield* Queue.takeAll(subscription)
      return [...events].map(SecretAudit.toJsonLine)
    })))
    expect(lines).toHaveLength(1)
    const line = JSON.parse(lines[0]!)
    expect(Object.keys(line)).toEqual(["time", "organizationId", "actor", "action", "outcome", "secretId", "secretName", "fields", "error"])
    expect(line).toMatchObject({ organizationId: "acme", actor: "local", action: "delete", outcome: "not-found", secretId: "missing", secretName: null, fields: [], error: "SecretNotFound" })
    expect(line.time).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$/)
  })

  it("cuts an over-long id from a request to one readable length", async () => {
    const { events } = await run(Effect.flatMap(Secrets, (secrets) => Effect.exit(secrets.delete("acme", "x".repeat(70_000)))))
    expect(events[0]!.secretId!.length).toBeLessThan(300)
    expect(events[0]!.secretId!.endsWith("…")).toBe(true)
  })
})
