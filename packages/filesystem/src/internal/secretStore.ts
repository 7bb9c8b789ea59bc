/**
 * The `SecretStore` over an open store: reads answer from the index (after `sync`) and read the one
 * record file they found; writes run in `Writer.transact`, checked against an index caught up with
 * every process's writes.
 */
import {
  QuotaExceeded,
  SecretNameTaken,
  SecretNotFound,
  SecretStore,
  type StoreError
} from "@secretgate/core"
import { Effect, Option } from "effect"
import { fileKeyOf } from "./layout.js"
import type { LiveIndex } from "./liveIndex.js"
import type * as RecordFile from "./recordFile.js"
import { type Meta, type RecordIndex, sameIdentity } from "./recordIndex.js"
import type { Writer } from "./writer.js"

type SecretRecord = SecretStore.SecretRecord

const owned = (organizationId: string, record: Meta | undefined) =>
  record !== undefined && record.organizationId === organizationId ? record : undefined

/** The `SecretStore` of an open store. */
export const make = (live: LiveIndex, writer: Writer): SecretStore.SecretStore => {
  const view = <A, E>(f: (index: RecordIndex) => Effect.Effect<A, E>): Effect.Effect<A, E | StoreError> =>
    Effect.flatMap(writer.sync, () => Effect.suspend(() => f(live.index())))

  /** One lookup: the index finds the record, its file (one read) supplies the sealed value. */
  const lookup = (
    record: Meta | undefined,
    damage: () => RecordFile.Damage | undefined
  ): Effect.Effect<Option.Option<SecretRecord>, StoreError> => {
    if (record !== undefined) return Effect.map(live.load(record), Option.fromNullable)
    const damaged = damage()
    return damaged === undefined ? Effect.succeed(Option.none()) : Effect.fail(damaged.error)
  }

  const complete = (index: RecordIndex, organizationId: string) =>
    Effect.suspend(() => {
      const damage = index.damageOfOrganization(organizationId)
      return damage === undefined ? Effect.void : Effect.fail(damage.error)
    })

  return SecretStore.SecretStore.of({
    insert: (record, { quota }) =>
      writer.transact(Effect.suspend((): Effect.Effect<
        void,
        SecretNameTaken | SecretStore.PlaceholderTaken | QuotaExceeded | StoreError
      > => {
        const index = live.index()
        const names = index.byOrganization.get(record.organizationId)
        const sameName = names?.get(record.name)
        if (sameName !== undefined) {
          // its file says whether the name is taken by a record or by damage (one read, only here)
          return Effect.zipRight(live.load(sameName), Effect.fail(SecretNameTaken.of(record.name)))
        }
        const damagedName = index.damageOfName(record.organizationId, record.name)
        if (damagedName !== undefined) return Effect.fail(damagedName.error)
        if (
          index.byPlaceholder.has(record.placeholder) ||
          [...index.damaged.values()].some((damage) => damage.claim.placeholder === record.placeholder)
        ) {
          return Effect.fail(new SecretStore.PlaceholderTaken())
        }
        if ((names?.size ?? 0) >= quota) return Effect.fail(QuotaExceeded.of(quota))
        if (index.get(fileKeyOf(record.id)) !== undefined) {
          return Effect.dieMessage(`a record with id ${JSON.stringify(record.id)} already exists`)
        }
        return Effect.asVoid(writer.put(record))
      })),
    findById: (organizationId, id) =>
      view((index) =>
        lookup(owned(organizationId, index.byId.get(id)), () =>
          index.damaged.size === 0 ? undefined : index.damageOfFile(organizationId, fileKeyOf(id)))
      ),
    findByName: (organizationId, name) =>
      view((index) =>
        lookup(index.byOrganization.get(organizationId)?.get(name), () => index.damageOfName(organizationId, name))
      ),
    findByPlaceholder: (organizationId, placeholder) =>
      view((index) =>
        lookup(
          owned(organizationId, index.byPlaceholder.get(placeholder)),
          () => index.damageOfPlaceholder(organizationId, placeholder)
        )
      ),
    // Listing reads no record file: the index holds every record's metadata (authenticated when
    // its file was read), and a listing never shows a value.
    listAll: (organizationId) =>
      view((index) =>
        Effect.as(
          complete(index, organizationId),
          [...(index.byOrganization.get(organizationId)?.values() ?? [])].sort(SecretStore.byName)
        )
      ),
    list: (organizationId, query) =>
      view((index) =>
        Effect.zipRight(
          complete(index, organizationId),
          SecretStore.paginate(index.byOrganization.get(organizationId)?.values() ?? [], query)
        )
      ),
    update: (organizationId, id, changeRecord) =>
      writer.transact(Effect.suspend((): Effect.Effect<SecretRecord, SecretNotFound | StoreError> => {
        const meta = owned(organizationId, live.index().byId.get(id))
        if (meta === undefined) {
          const damage = live.index().damageOfFile(organizationId, fileKeyOf(id))
          return Effect.fail(damage?.error ?? SecretNotFound.byId(id))
        }
        return Effect.flatMap(live.load(meta), (current): Effect.Effect<SecretRecord, SecretNotFound | StoreError> => {
          // under the lock and caught up: the file is what the index says
          if (current === undefined) return Effect.fail(SecretNotFound.byId(id))
          const next = changeRecord(current)
          if (!sameIdentity(current, next)) {
            return Effect.dieMessage("SecretStore.update must not change id, organizationId, name, placeholder or createdAt")
          }
          return writer.put(next)
        })
      })),
    delete: (organizationId, id) =>
      writer.transact(Effect.suspend((): Effect.Effect<void, SecretNotFound | StoreError> => {
        const fileKey = fileKeyOf(id)
        const current = owned(organizationId, live.index().byId.get(id))
        const damage = live.index().damaged.get(fileKey)
        // a damaged record may be deleted by the organization it claims to belong to
        if (current === undefined && damage?.claim.organizationId !== organizationId) {
          return Effect.fail(SecretNotFound.byId(id))
        }
        return writer.remove(fileKey)
      }))
  })
}
