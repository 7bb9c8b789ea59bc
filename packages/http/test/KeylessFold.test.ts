/**
 * The folding of keyless (`unauthenticated`) audit events, on the TestClock: at most one event a
 * second reaches the sink, stripped of what the caller chose; `attempts` counts every attempt
 * exactly once, whether written at once, a second later, or when the scope closes. Other
 * outcomes pass through unchanged.
 */
import { it } from "@effect/vitest"
import type { SecretAudit } from "@secretgate/core"
import { Duration, Effect, TestClock } from "effect"
import { describe, expect } from "vitest"
import { foldKeyless } from "../src/internal/auditLog.js"

const attempt = (outcome: SecretAudit.Outcome, secretId = "caller-chosen"): SecretAudit.ManagementEvent => ({
  time: new Date(0),
  organizationId: outcome === "unauthenticated" ? undefined : "acme",
  actor: outcome === "unauthenticated" ? undefined : "ops-key",
  action: "delete",
  outcome,
  secretId,
  secretName: "CHOSEN_NAME",
  fields: ["name"],
  error: outcome === "ok" ? undefined : "Unauthorized"
})

describe("foldKeyless", () => {
  it.effect("writes at most one keyless event a second, counting the folded ones, and flushes at close", () =>
    Effect.gen(function*() {
      const written: Array<SecretAudit.ManagementEvent> = []
      const record: SecretAudit.Sink = (event) => Effect.sync(() => void written.push(event))
      yield* Effect.scoped(Effect.gen(function*() {
        const sink = yield* foldKeyless(record)
        for (let i = 0; i < 5; i++) yield* sink(attempt("unauthenticated"))
        expect(written.map((event) => event.attempts)).toEqual([1])
        // another outcome passes at once, as it is
        yield* sink(attempt("ok", "sec_1"))
        expect(written[1]).toEqual(attempt("ok", "sec_1"))
        // the four folded ones are written a second after the first line
        yield* TestClock.adjust(Duration.millis(999))
        expect(written).toHaveLength(2)
        yield* TestClock.adjust(Duration.millis(1))
        expect(written.map((event) => event.attempts)).toEqual([1, undefined, 4])
        // within the second after that flush: folded, then written when the scope closes
        yield* TestClock.adjust(Duration.millis(500))
        yield* sink(attempt("unauthenticated"))
        yield* sink(attempt("unauthenticated"))
        expect(written).toHaveLength(3)
      }))
      expect(written.map((event) => event.attempts)).toEqual([1, undefined, 4, 2])
      for (const event of written.filter((event) => event.outcome === "unauthenticated")) {
        expect(event).toMatchObject({
          organizationId: undefined, actor: undefined, action: "delete", secretId: undefined, secretName: undefined, fields: [], error: "Unauthorized"
        })
      }
    }))

  it.effect("a keyless attempt after a quiet second is written at once, with the ones folded before it", () =>
    Effect.gen(function*() {
      const written: Array<SecretAudit.ManagementEvent> = []
      yield* Effect.scoped(Effect.gen(function*() {
        const sink = yield* foldKeyless((event) => Effect.sync(() => void written.push(event)))
        yield* sink(attempt("unauthenticated"))
        yield* TestClock.adjust(Duration.seconds(5))
        yield* sink(attempt("unauthenticated"))
        expect(written.map((event) => event.attempts)).toEqual([1, 1])
      }))
      expect(written).toHaveLength(2)
    }))
})
