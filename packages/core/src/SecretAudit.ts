/**
 * `SecretAudit`: the management audit trail. Every create, update and delete of a secret, and
 * every attempt at one that failed, becomes one `ManagementEvent`: who (an API key id, or `local`
 * for the library and the CLI), when, which organization, which secret (id and name), which
 * fields the request wrote, and the outcome. An event never holds a value, nor anything derived
 * from one (no hash, no length).
 *
 * `audited` wraps any `Secrets` (the core implementation, a remote `HttpSecrets`, …) so that its
 * mutations are reported to a `Sink`; `layer` does the same for the `Secrets` in context. The REST
 * server sets the actor of each request with `withActor` and reports the attempts that never reach
 * `Secrets` (a refused key, an unreadable body) with `rejected`.
 *
 * @since 0.1.0
 */
import { Cause, Clock, Effect, Exit, FiberRef, Layer, Option, PubSub } from "effect"
import { dual } from "effect/Function"
import { Secrets } from "./Secrets.js"

/**
 * What was attempted.
 *
 * @since 0.1.0
 */
export type Action = "create" | "update" | "delete"

/**
 * How it ended.
 *
 * - `ok`: done
 * - `invalid`: the input was refused (400, 413)
 * - `not-found`: no such secret in the organization (404)
 * - `conflict`: the name is taken (409)
 * - `quota-exceeded`: the organization holds as many secrets as it may
 * - `unauthenticated`: no API key, or an unknown one (401)
 * - `denied`: a known key without the right scope or organization (403)
 * - `unavailable`: the store could not be reached (503)
 * - `error`: anything else (a defect, a corrupted store, an interrupted request)
 *
 * @since 0.1.0
 */
export type Outcome =
  | "ok"
  | "invalid"
  | "not-found"
  | "conflict"
  | "quota-exceeded"
  | "unauthenticated"
  | "denied"
  | "unavailable"
  | "error"

/**
 * A field a create or update wrote. `value` says the value was set, never what it is.
 *
 * @since 0.1.0
 */
export type Field = "name" | "value" | "description" | "hosts"

/**
 * One entry of the audit trail.
 *
 * @since 0.1.0
 */
export interface ManagementEvent {
  readonly time: Date
  /** The organization acted on; `undefined` only when no API key was recognized. */
  readonly organizationId: string | undefined
  /** Who: the API key's id, `local` (the library, the CLI), or `undefined` when no key was recognized. */
  readonly actor: string | undefined
  readonly action: Action
  readonly outcome: Outcome
  /** The secret's id: the created one's, or the one named by the update or delete. */
  readonly secretId: string | undefined
  /** The secret's name, when known (never for `invalid` input, which is not echoed). */
  readonly secretName: string | undefined
  /** The fields the request wrote (create, update), whether or not their content differs. */
  readonly fields: ReadonlyArray<Field>
  /** The failure's tag (`SecretNotFound`, `Forbidden`, …); `undefined` when `ok`. */
  readonly error: string | undefined
  /**
   * How many attempts this event stands for, when a writer folds several into one (the REST
   * server writes at most one `unauthenticated` event a second: this one and those before it
   * that got no event of their own); `undefined` for an event that stands for itself alone.
   *
   * @since 0.2.0
   */
  readonly attempts?: number | undefined
}

/**
 * Receives the events. It runs on the request's fiber, before the caller gets its answer: an
 * event is recorded before anyone hears of the change. It must not fail.
 *
 * @since 0.1.0
 */
export type Sink = (event: ManagementEvent) => Effect.Effect<void>

/**
 * The actor of library and CLI use: the default.
 *
 * @since 0.1.0
 */
export const LOCAL = "local"

/**
 * The actor of management operations run on this fiber: `local` unless set with `withActor`.
 *
 * @since 0.1.0
 */
export const currentActor: FiberRef.FiberRef<string | undefined> = FiberRef.unsafeMake<string | undefined>(LOCAL)

/**
 * Runs `effect` with `actor` (an API key id; `undefined` for a caller no key identified) as the
 * actor of its management operations.
 *
 * @since 0.1.0
 */
export const withActor: {
  (actor: string | undefined): <A, E, R>(effect: Effect.Effect<A, E, R>) => Effect.Effect<A, E, R>
  <A, E, R>(effect: Effect.Effect<A, E, R>, actor: string | undefined): Effect.Effect<A, E, R>
} = dual(2, <A, E, R>(effect: Effect.Effect<A, E, R>, actor: string | undefined) => Effect.locally(effect, currentActor, actor))

const OUTCOMES: Readonly<Record<string, Outcome>> = {
  InvalidSecretInput: "invalid",
  PayloadTooLarge: "invalid",
  SecretNotFound: "not-found",
  SecretNameTaken: "conflict",
  QuotaExceeded: "quota-exceeded",
  Unauthorized: "unauthenticated",
  Forbidden: "denied",
  StoreUnavailable: "unavailable"
}

const tagOf = (error: unknown): string =>
  typeof error === "object" && error !== null && typeof (error as { _tag?: unknown })._tag === "string"
    ? (error as { _tag: string })._tag
    : "Error"

/**
 * The outcome a failure stands for.
 *
 * @since 0.1.0
 */
export const outcomeOf = (error: unknown): Outcome => OUTCOMES[tagOf(error)] ?? "error"

const failureOf = (cause: Cause.Cause<unknown>): { readonly outcome: Outcome; readonly error: string } => {
  const failure = Cause.failureOption(cause)
  if (Option.isSome(failure)) return { outcome: outcomeOf(failure.value), error: tagOf(failure.value) }
  return { outcome: "error", error: Cause.isInterruptedOnly(cause) ? "Interrupted" : "Defect" }
}

const WRITABLE: ReadonlyArray<Field> = ["name", "value", "description", "hosts"]

// The known fields present in an input; anything else it holds is neither named nor echoed.
const fieldsOf = (input: unknown): ReadonlyArray<Field> =>
  typeof input === "object" && input !== null
    ? WRITABLE.filter((field) => (input as Record<string, unknown>)[field] !== undefined)
    : []

/**
 * What is known of an attempt before it ran.
 *
 * @since 0.1.0
 */
export interface Attempt {
  readonly action: Action
  readonly organizationId: string | undefined
  readonly secretId?: string | undefined
  readonly secretName?: string | undefined
  readonly fields?: ReadonlyArray<Field> | undefined
}

// Ids and names come from the request (a path segment may be 64 KiB long): an over-long one is
// cut, marked with an ellipsis, so that one line stays one readable line.
const MAX_TEXT = 256
const capped = (text: string | undefined): string | undefined =>
  text === undefined || text.length <= MAX_TEXT ? text : `${text.slice(0, MAX_TEXT)}…`

const emit = (sink: Sink, attempt: Attempt, ending: { readonly outcome: Outcome; readonly error: string | undefined }) =>
  Effect.gen(function*() {
    const millis = yield* Clock.currentTimeMillis
    const actor = yield* FiberRef.get(currentActor)
    yield* sink({
      time: new Date(millis),
      organizationId: attempt.organizationId,
      actor,
      action: attempt.action,
      outcome: ending.outcome,
      secretId: capped(attempt.secretId),
      secretName: ending.outcome === "invalid" ? undefined : capped(attempt.secretName),
      fields: attempt.fields ?? [],
      error: ending.error
    })
  })

/**
 * Reports an attempt that failed before reaching `Secrets` (a refused API key, an unreadable or
 * invalid body), with the actor of the current fiber.
 *
 * @since 0.1.0
 */
export const rejected = (sink: Sink, attempt: Attempt, error: unknown): Effect.Effect<void> =>
  emit(sink, attempt, { outcome: outcomeOf(error), error: tagOf(error) })

// Runs `effect` and reports how it ended; `after` adds what only the result tells.
const reporting = <A, E>(
  sink: Sink,
  attempt: Attempt,
  effect: Effect.Effect<A, E>,
  after: (value: A) => Partial<Attempt> = () => ({})
): Effect.Effect<A, E> =>
  Effect.uninterruptibleMask((restore) =>
    Effect.flatMap(Effect.exit(restore(effect)), (exit) =>
      Effect.zipRight(
        Exit.isSuccess(exit)
          ? emit(sink, { ...attempt, ...after(exit.value) }, { outcome: "ok", error: undefined })
          : emit(sink, attempt, failureOf(exit.cause)),
        exit
      ))
  )

/**
 * `secrets`, reporting each create, update and delete (done or failed) to `sink`. A delete first
 * reads the secret, to name it in the event. Reads and `resolve` are not reported.
 *
 * @since 0.1.0
 * @example
 * ```ts
 * import { SecretAudit, Secrets } from "@secretgate/core"
 * import { Effect } from "effect"
 *
 * declare const secrets: Secrets.Secrets
 * const audited = SecretAudit.audited(secrets, (event) =>
 *   Effect.sync(() => console.log(event.actor, event.action, event.secretName, event.outcome)))
 * ```
 */
export const audited = (secrets: Secrets, sink: Sink): Secrets =>
  Secrets.of({
    ...secrets,
    create: (organizationId, params) =>
      reporting(
        sink,
        {
          action: "create",
          organizationId,
          secretName: typeof params?.name === "string" ? params.name : undefined,
          fields: fieldsOf(params)
        },
        secrets.create(organizationId, params),
        (secret) => ({ secretId: secret.id, secretName: secret.name })
      ),
    update: (organizationId, id, params) =>
      reporting(
        sink,
        { action: "update", organizationId, secretId: id, fields: fieldsOf(params) },
        secrets.update(organizationId, id, params),
        (secret) => ({ secretName: secret.name })
      ),
    delete: (organizationId, id) =>
      Effect.flatMap(
        Effect.option(secrets.get(organizationId, id)),
        (before) =>
          reporting(
            sink,
            {
              action: "delete",
              organizationId,
              secretId: id,
              secretName: Option.getOrUndefined(Option.map(before, (secret) => secret.name))
            },
            secrets.delete(organizationId, id)
          )
      )
  })

/**
 * Wraps the `Secrets` in context with `audited`.
 *
 * @since 0.1.0
 * @example
 * ```ts
 * import { SecretAudit } from "@secretgate/core"
 * import { MemorySecretStore } from "@secretgate/memory"
 * import { Effect, Layer } from "effect"
 *
 * const secrets = SecretAudit.layer((event) => Effect.log(SecretAudit.toJsonLine(event))).pipe(
 *   Layer.provide(MemorySecretStore.layer())
 * )
 * ```
 */
export const layer = (sink: Sink): Layer.Layer<Secrets, never, Secrets> =>
  Layer.effect(Secrets, Effect.map(Secrets, (secrets) => audited(secrets, sink)))

/**
 * A sink that publishes every event to `pubsub`, for any number of subscribers.
 *
 * @since 0.1.0
 */
export const toPubSub = (pubsub: PubSub.PubSub<ManagementEvent>): Sink => (event) => Effect.asVoid(PubSub.publish(pubsub, event))

/**
 * The event as one JSON line (no trailing newline): every field present, `null` when unknown,
 * `time` in ISO 8601; `attempts` only on an event that stands for several.
 *
 * @since 0.1.0
 */
export const toJsonLine = (event: ManagementEvent): string =>
  JSON.stringify({
    time: event.time.toISOString(),
    organizationId: event.organizationId ?? null,
    actor: event.actor ?? null,
    action: event.action,
    outcome: event.outcome,
    secretId: event.secretId ?? null,
    secretName: event.secretName ?? null,
    fields: event.fields,
    error: event.error ?? null,
    ...(event.attempts === undefined ? {} : { attempts: event.attempts })
  })
