/**
 * A `SecretStore` in memory: for tests, demos and single-process embedders that keep nothing across
 * restarts. Every operation is one synchronous step, so it is atomic under any number of concurrent
 * fibers. Values are still sealed, as in every backend. Every write is announced (`SecretChanges`)
 * as it happens: nothing else can write the store, so the announcements are always complete.
 *
 * @since 0.1.0
 */
import { KeyRing, SecretChanges, SecretCipher, Secrets, SecretStore } from "@secretgate/core"
import { QuotaExceeded, SecretNameTaken, SecretNotFound } from "@secretgate/core"
import { Context, Effect, Layer } from "effect"

type SecretRecord = SecretStore.SecretRecord

/**
 * A fresh, empty in-memory store; its writes are published to `changes` when given.
 *
 * @since 0.1.0
 */
export const make = (changes?: SecretChanges.Hub): SecretStore.SecretStore => {
  const announce = (organizationId: string, placeholder: string) => changes?.publish({ organizationId, placeholders: [placeholder] })
  const byId = new Map<string, SecretRecord>()
  const byPlaceholder = new Map<string, SecretRecord>()
  const byOrganization = new Map<string, Map<string, SecretRecord>>()

  const namesOf = (organizationId: string) => {
    let names = byOrganization.get(organizationId)
    if (names === undefined) {
      names = new Map()
      byOrganization.set(organizationId, names)
    }
    return names
  }
  const owned = (organizationId: string, record: SecretRecord | undefined) =>
    record !== undefined && record.organizationId === organizationId ? record : undefined

  return SecretStore.SecretStore.of({
    insert: (record, { quota }) =>
      Effect.suspend((): Effect.Effect<void, SecretNameTaken | SecretStore.PlaceholderTaken | QuotaExceeded> => {
        const names = namesOf(record.organizationId)
        if (names.has(record.name)) return Effect.fail(SecretNameTaken.of(record.name))
        if (byPlaceholder.has(record.placeholder)) return Effect.fail(new SecretStore.PlaceholderTaken())
        if (names.size >= quota) return Effect.fail(QuotaExceeded.of(quota))
        names.set(record.name, record)
        byId.set(record.id, record)
        byPlaceholder.set(record.placeholder, record)
        announce(record.organizationId, record.placeholder)
        return Effect.void
      }),
    findById: (organizationId, id) => Effect.sync(() => SecretStore.found(owned(organizationId, byId.get(id)))),
    findByName: (organizationId, name) =>
      Effect.sync(() => SecretStore.found(byOrganization.get(organizationId)?.get(name))),
    findByPlaceholder: (organizationId, placeholder) =>
      Effect.sync(() => SecretStore.found(owned(organizationId, byPlaceholder.get(placeholder)))),
    listAll: (organizationId) =>
      Effect.sync(() => [...(byOrganization.get(organizationId)?.values() ?? [])].sort(SecretStore.byName)),
    list: (organizationId, query) =>
      Effect.suspend(() => SecretStore.paginate(byOrganization.get(organizationId)?.values() ?? [], query)),
    update: (organizationId, id, change) =>
      Effect.suspend((): Effect.Effect<SecretRecord, SecretNotFound> => {
        const current = owned(organizationId, byId.get(id))
        if (current === undefined) return Effect.fail(SecretNotFound.byId(id))
        const next = change(current)
        byId.set(id, next)
        byPlaceholder.set(next.placeholder, next)
        namesOf(organizationId).set(next.name, next)
        announce(organizationId, next.placeholder)
        return Effect.succeed(next)
      }),
    delete: (organizationId, id) =>
      Effect.suspend((): Effect.Effect<void, SecretNotFound> => {
        const current = owned(organizationId, byId.get(id))
        if (current === undefined) return Effect.fail(SecretNotFound.byId(id))
        byId.delete(id)
        byPlaceholder.delete(current.placeholder)
        namesOf(organizationId).delete(current.name)
        announce(organizationId, current.placeholder)
        return Effect.void
      })
  })
}

/**
 * Provides the `SecretStore` and its `SecretChanges`.
 *
 * @since 0.1.0
 */
export const layerStore: Layer.Layer<SecretStore.SecretStore | SecretChanges.SecretChanges> = Layer.effectContext(
  Effect.sync(() => {
    const changes = SecretChanges.makeHub(() => true)
    return Context.make(SecretStore.SecretStore, make(changes)).pipe(Context.add(SecretChanges.SecretChanges, changes))
  })
)

/**
 * Settings of the in-memory backend.
 *
 * @since 0.1.0
 */
export interface Options extends Secrets.Options {
  /** Keys to seal with; a fresh random key when omitted (the data dies with the process anyway). */
  readonly keyRing?: KeyRing.KeyRing
}

/**
 * Provides `Secrets` (and its `SecretStore`) in memory: the one layer a test or demo needs.
 *
 * @since 0.1.0
 * @example
 * ```ts
 * import { Secretgate } from "@secretgate/core"
 * import { MemorySecretStore } from "@secretgate/memory"
 * const gate = new Secretgate({ layer: MemorySecretStore.layer(), organizationId: "acme" })
 * ```
 */
export const layer = (options: Options = {}): Layer.Layer<Secrets.Secrets | SecretStore.SecretStore | SecretChanges.SecretChanges> =>
  Secrets.layer(options).pipe(
    Layer.provideMerge(layerStore),
    Layer.provide(SecretCipher.layer(options.keyRing ?? KeyRing.ephemeral()))
  )
