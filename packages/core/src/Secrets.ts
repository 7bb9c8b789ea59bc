/**
 * `Secrets`: the domain service. Validation, placeholders, sealing, organization scoping, quota,
 * and `resolve` (placeholders → values, for egress only). Everything above this seam (the Promise
 * facade, egress, the REST server) works with any implementation: the one here over `SecretStore` +
 * `SecretCipher`, or `@secretgate/http`'s over a remote server.
 *
 * @since 0.1.0
 */
import { Clock, Context, Effect, Layer, Option, type Redacted } from "effect"
import * as Placeholder from "./Placeholder.js"
import {
  CreateSecretParams,
  decodeInput,
  ListQuery,
  SecretName,
  type Secret,
  type SecretPage,
  UpdateSecretParams
} from "./Secret.js"
import * as SecretChanges from "./SecretChanges.js"
import { SecretCipher } from "./SecretCipher.js"
import {
  InvalidSecretInput,
  type QuotaExceeded,
  type SecretNameTaken,
  SecretNotFound,
  type StoreError
} from "./SecretError.js"
import { pageQuery, type SecretMetadata, type SecretRecord, SecretStore } from "./SecretStore.js"

/**
 * A mounted secret with its value, as egress needs it. Only `resolve` produces these.
 *
 * @since 0.1.0
 */
export interface ResolvedSecret {
  readonly id: string
  readonly name: string
  readonly placeholder: string
  readonly hosts: ReadonlyArray<string>
  readonly value: Redacted.Redacted<string>
}

/**
 * The domain service. Every operation runs for one organization; another organization's secret is
 * reported exactly like a missing one.
 *
 * @since 0.1.0
 */
export interface Secrets {
  readonly create: (
    organizationId: string,
    params: CreateSecretParams
  ) => Effect.Effect<Secret, InvalidSecretInput | SecretNameTaken | QuotaExceeded | StoreError>
  /** Every secret of the organization, sorted by name. */
  readonly list: (organizationId: string) => Effect.Effect<ReadonlyArray<Secret>, StoreError>
  readonly listPage: (organizationId: string, query?: ListQuery) => Effect.Effect<SecretPage, InvalidSecretInput | StoreError>
  readonly get: (organizationId: string, id: string) => Effect.Effect<Secret, SecretNotFound | StoreError>
  readonly getByName: (organizationId: string, name: string) => Effect.Effect<Secret, SecretNotFound | InvalidSecretInput | StoreError>
  readonly update: (
    organizationId: string,
    id: string,
    params: UpdateSecretParams
  ) => Effect.Effect<Secret, InvalidSecretInput | SecretNotFound | StoreError>
  readonly delete: (organizationId: string, id: string) => Effect.Effect<void, SecretNotFound | StoreError>
  /**
   * The current values behind `placeholders`, for the egress layer only. Placeholders that match
   * no secret of the organization are left out of the result.
   */
  readonly resolve: (
    organizationId: string,
    placeholders: ReadonlyArray<string>
  ) => Effect.Effect<ReadonlyArray<ResolvedSecret>, StoreError>
  /**
   * A number that changes whenever a secret of the organization is created, updated or deleted
   * through this service, or announced as changed by `changes`. With `placeholders`, a number that
   * changes whenever one of those secrets does (and may change at other times too). It lets the
   * egress resolver keep decrypted values between requests and still see every such change on the
   * very next request. Implementations that cannot know leave it out; the resolver then relies on
   * its TTL alone.
   */
  readonly revision?: (organizationId: string, placeholders?: ReadonlyArray<string>) => number
  /**
   * Announcements of changes, as they become known (see `SecretChanges`); `revision` has moved by
   * the time a listener hears of a change. While `changes.live(organizationId)` is true, every
   * change is announced, and the egress resolver keeps values until one is.
   */
  readonly changes?: SecretChanges.SecretChanges
}

/**
 * @since 0.1.0
 */
export const Secrets = Context.GenericTag<Secrets>("@secretgate/core/Secrets")

/**
 * Settings of the core implementation.
 *
 * @since 0.1.0
 */
export interface Options {
  /** Most secrets one organization may hold. Default 10,000. */
  readonly quota?: number
  /** Prefix of generated placeholders. Default `sg_secret_`. */
  readonly placeholderPrefix?: string
  /**
   * Refuse secrets without hosts (which may go to any host): `create` without `hosts` (or with
   * `[]`) and an `update` that would leave a secret without hosts fail with `InvalidSecretInput`
   * on `hosts`. Default `false`: omitted hosts mean "unrestricted", as the API says. See
   * `requireHosts` to apply it to any `Secrets` (a remote one, a backend's layer).
   */
  readonly requireHosts?: boolean
}

/**
 * The public model of a record: everything but the sealed value and the organization. A copy: a
 * caller that changes what it got (pushes a host, sets a date) changes nothing a backend holds.
 *
 * @since 0.1.0
 */
export const toSecret = (record: SecretMetadata): Secret => ({
  id: record.id,
  name: record.name,
  ...(record.description === undefined ? {} : { description: record.description }),
  placeholder: record.placeholder,
  hosts: [...record.hosts],
  createdAt: new Date(record.createdAt.getTime()),
  updatedAt: new Date(record.updatedAt.getTime())
})

const decodeCreate = decodeInput(CreateSecretParams)
const decodeUpdate = decodeInput(UpdateSecretParams)
const decodeQuery = decodeInput(ListQuery, "query")
const decodeName = decodeInput(SecretName, "name")

/**
 * The core implementation over a `SecretStore` and a `SecretCipher`.
 *
 * @since 0.1.0
 */
export const make = (options: Options = {}): Effect.Effect<Secrets, never, SecretStore | SecretCipher> =>
  Effect.gen(function*() {
    const store = yield* SecretStore
    const cipher = yield* SecretCipher
    const quota = options.quota ?? 10_000
    const prefix = options.placeholderPrefix ?? Placeholder.DEFAULT_PREFIX
    const problem = Placeholder.checkPrefix(prefix)
    if (problem !== undefined) return yield* Effect.dieMessage(problem)

    const now = Effect.map(Clock.currentTimeMillis, (millis) => new Date(millis))

    const insert = (record: SecretRecord): Effect.Effect<SecretRecord, SecretNameTaken | QuotaExceeded | StoreError> =>
      store.insert(record, { quota }).pipe(
        Effect.as(record),
        Effect.catchTag("PlaceholderTaken", () => insert({ ...record, placeholder: Placeholder.generate(prefix) }))
      )

    const get = (organizationId: string, id: string) =>
      store.findById(organizationId, id).pipe(
        Effect.flatMap(Option.match({
          onNone: () => Effect.fail(SecretNotFound.byId(id)),
          onSome: (record) => Effect.succeed(toSecret(record))
        }))
      )

    // A backend that announces its writes is relied on for all of them (this process's included);
    // otherwise the writes made through this service are announced here, and that is not all.
    const announced = yield* Effect.serviceOption(SecretChanges.SecretChanges)
    const own = SecretChanges.makeHub(() => false)
    const changes: SecretChanges.SecretChanges = Option.getOrElse(announced, () => own)
    const revisions = new Map<string, number>()
    let everything = 0
    changes.subscribe((change) => {
      if (change.organizationId === undefined) everything++
      else revisions.set(change.organizationId, (revisions.get(change.organizationId) ?? 0) + 1)
    })
    const changed = (organizationId: string, placeholder?: string) =>
      Effect.sync(() => {
        if (Option.isNone(announced)) own.publish({ organizationId, ...(placeholder === undefined ? {} : { placeholders: [placeholder] }) })
      })

    return Secrets.of({
      revision: (organizationId) => (revisions.get(organizationId) ?? 0) + everything,
      changes,
      create: (organizationId, input) =>
        Effect.gen(function*() {
          const params = yield* decodeCreate(input)
          const id = globalThis.crypto.randomUUID()
          const at = yield* now
          const record: SecretRecord = {
            id,
            organizationId,
            name: params.name,
            ...(params.description === undefined || params.description === "" ? {} : { description: params.description }),
            hosts: params.hosts ?? [],
            placeholder: Placeholder.generate(prefix),
            sealed: cipher.seal(params.value, { organizationId, secretId: id }),
            createdAt: at,
            updatedAt: at
          }
          const inserted = yield* insert(record)
          yield* changed(organizationId, inserted.placeholder)
          return toSecret(inserted)
        }),
      list: (organizationId) => Effect.map(store.listAll(organizationId), (records) => records.map(toSecret)),
      listPage: (organizationId, input = {}) =>
        Effect.gen(function*() {
          const query = yield* decodeQuery(input)
          const page = yield* store.list(organizationId, pageQuery(query))
          return { items: page.items.map(toSecret), total: page.total, nextCursor: page.nextCursor }
        }),
      get,
      getByName: (organizationId, input) =>
        Effect.gen(function*() {
          const name = yield* decodeName(input)
          const record = yield* store.findByName(organizationId, name)
          if (Option.isNone(record)) return yield* Effect.fail(SecretNotFound.byNames([name]))
          return toSecret(record.value)
        }),
      update: (organizationId, id, input) =>
        Effect.gen(function*() {
          const params = yield* decodeUpdate(input)
          const at = yield* now
          const sealed = params.value === undefined ? undefined : cipher.seal(params.value, { organizationId, secretId: id })
          const record = yield* store.update(organizationId, id, (current) => {
            const { description: _, ...rest } = current
            const description = params.description === undefined ? current.description : params.description
            return {
              ...rest,
              ...(description === null || description === undefined || description === "" ? {} : { description }),
              hosts: params.hosts ?? current.hosts,
              sealed: sealed ?? current.sealed,
              // a wall clock stepped back must not make a record updated before it was created (or last updated)
              updatedAt: new Date(Math.max(at.getTime(), current.createdAt.getTime(), current.updatedAt.getTime()))
            }
          })
          yield* changed(organizationId, record.placeholder)
          return toSecret(record)
        }),
      delete: (organizationId, id) => Effect.zipRight(store.delete(organizationId, id), changed(organizationId)),
      resolve: (organizationId, placeholders) =>
        Effect.forEach(
          new Set(placeholders),
          (placeholder) =>
            store.findByPlaceholder(organizationId, placeholder).pipe(
              Effect.flatMap(Option.match({
                onNone: () => Effect.succeed(Option.none<ResolvedSecret>()),
                onSome: (record) =>
                  Effect.map(
                    cipher.open(record.sealed, { organizationId, secretId: record.id }),
                    (value) =>
                      Option.some<ResolvedSecret>({
                        id: record.id,
                        name: record.name,
                        placeholder: record.placeholder,
                        hosts: [...record.hosts],
                        value
                      })
                  )
              }))
            )
        ).pipe(Effect.map((all) => all.flatMap((option) => (Option.isSome(option) ? [option.value] : []))))
    })
  })

const REQUIRE_HOSTS =
  "this server requires every secret to name the hosts its value may be sent to (a secret without hosts may go to any host); give hosts, e.g. [\"api.example.com\"]"

/**
 * `secrets` refusing secrets without hosts: a `create` whose `hosts` is missing or empty, and an
 * `update` that sets `hosts: []` or leaves a secret that has none without any, fail with
 * `InvalidSecretInput` (field `hosts`, `400` on the wire) before anything is stored. Every other
 * operation is `secrets`' own. One wrapper for every backend (and `SecretServer` over it): see
 * `withRequiredHosts` for a layer.
 *
 * @since 0.2.0
 */
export const requireHosts = (secrets: Secrets): Secrets => {
  const lacksHosts = (hosts: unknown) => hosts === undefined || (Array.isArray(hosts) && hosts.length === 0)
  const refuse = Effect.fail(InvalidSecretInput.of("hosts", REQUIRE_HOSTS))
  return Secrets.of({
    ...secrets,
    create: (organizationId, params) =>
      typeof params === "object" && params !== null && lacksHosts((params as { hosts?: unknown }).hosts) ? refuse : secrets.create(organizationId, params),
    update: (organizationId, id, params) => {
      const hosts = typeof params === "object" && params !== null ? (params as { hosts?: unknown }).hosts : undefined
      if (Array.isArray(hosts)) return hosts.length === 0 ? refuse : secrets.update(organizationId, id, params)
      if (hosts !== undefined) return secrets.update(organizationId, id, params) // not a list: the service says what is wrong
      // no hosts given: the secret keeps its own, which must not be none
      return Effect.flatMap(secrets.get(organizationId, id), (current) => current.hosts.length === 0 ? refuse : secrets.update(organizationId, id, params))
    }
  })
}

/**
 * A layer whose `Secrets` refuses secrets without hosts (`requireHosts`), over any layer that
 * provides `Secrets` (a backend's, `HttpSecrets`'); the layer's other services pass through.
 *
 * @since 0.2.0
 * @example
 * ```ts
 * import { Secrets } from "@secretgate/core"
 * import { MemorySecretStore } from "@secretgate/memory"
 * const backend = Secrets.withRequiredHosts(MemorySecretStore.layer())
 * ```
 */
export const withRequiredHosts = <ROut, E, RIn>(layer: Layer.Layer<ROut | Secrets, E, RIn>): Layer.Layer<ROut | Secrets, E, RIn> =>
  Layer.map(layer, (context) => Context.add(context, Secrets, requireHosts(Context.get(context, Secrets))))

/**
 * Provides `Secrets` over whatever `SecretStore` and `SecretCipher` are provided.
 *
 * @since 0.1.0
 */
export const layer = (options: Options = {}): Layer.Layer<Secrets, never, SecretStore | SecretCipher> =>
  Layer.effect(Secrets, options.requireHosts === true ? Effect.map(make(options), requireHosts) : make(options))
