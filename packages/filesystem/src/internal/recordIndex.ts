/**
 * The in-memory index of one process: the metadata of every record (never its sealed value) by
 * id, by (organization, name) and by placeholder, plus the damaged record files. Lookups never
 * touch the disk; the store reads the one record file a lookup found when it needs the sealed
 * value. The journal tells the store which entries to reload.
 */
import type { SecretStore } from "@secretgate/core"
import { type Claim, damaged, type Damage } from "./recordFile.js"

type SecretRecord = SecretStore.SecretRecord

/**
 * What the index keeps of a record: every field but the sealed value (only its key id). Its
 * shape is that of a record for sorting and paging (`sortValue`, cursors), never for `sealed`.
 */
export interface Meta {
  readonly id: string
  readonly organizationId: string
  readonly name: string
  readonly description?: string | undefined
  readonly hosts: ReadonlyArray<string>
  readonly placeholder: string
  readonly createdAt: Date
  readonly updatedAt: Date
  /** The id of the key that sealed the value (and authenticates the file). */
  readonly keyId: string
}

/** The metadata of `record`: drops the ciphertext and nonce. */
export const metaOf = (record: SecretRecord): Meta => {
  const meta: { -readonly [K in keyof Meta]: Meta[K] } = {
    id: record.id,
    organizationId: record.organizationId,
    name: record.name,
    hosts: record.hosts,
    placeholder: record.placeholder,
    createdAt: record.createdAt,
    updatedAt: record.updatedAt,
    keyId: record.sealed.keyId
  }
  if (record.description !== undefined) meta.description = record.description
  return meta
}

/** The fields an update never changes: records that differ in one of them are different records. */
export const sameIdentity = (a: Meta | SecretRecord, b: Meta | SecretRecord): boolean =>
  a.id === b.id && a.organizationId === b.organizationId && a.name === b.name && a.placeholder === b.placeholder &&
  a.createdAt.getTime() === b.createdAt.getTime()

const sameHosts = (a: ReadonlyArray<string>, b: ReadonlyArray<string>): boolean =>
  a.length === b.length && a.every((host, i) => host === b[i])

/** Whether the index's `meta` says what the authentic `record` (read from its file) says. */
export const sameMeta = (meta: Meta, record: SecretRecord | undefined): boolean =>
  record !== undefined && sameIdentity(meta, record) && meta.description === record.description &&
  sameHosts(meta.hosts, record.hosts) && meta.keyId === record.sealed.keyId &&
  meta.updatedAt.getTime() === record.updatedAt.getTime()

/** The claim fields of a record's metadata or of another claim. */
const claimOf = (known: Claim): Claim => {
  const claim: { -readonly [K in keyof Claim]: Claim[K] } = {}
  if (known.id !== undefined) claim.id = known.id
  if (known.organizationId !== undefined) claim.organizationId = known.organizationId
  if (known.name !== undefined) claim.name = known.name
  if (known.placeholder !== undefined) claim.placeholder = known.placeholder
  return claim
}

/** What one record file currently is. */
export type Entry =
  | { readonly _tag: "Record"; readonly record: Meta; readonly path: string }
  | { readonly _tag: "Damaged"; readonly damage: Damage }

/** The index. Mutated only by the store, one change at a time. */
export class RecordIndex {
  private readonly entries = new Map<string, Entry>()
  readonly byId = new Map<string, Meta>()
  readonly byOrganization = new Map<string, Map<string, Meta>>()
  readonly byPlaceholder = new Map<string, Meta>()
  readonly damaged = new Map<string, Damage>()
  readonly keyUsage = new Map<string, number>()

  get(fileKey: string): Entry | undefined {
    return this.entries.get(fileKey)
  }

  /** Every record, in no particular order. */
  records(): IterableIterator<Meta> {
    return this.byId.values()
  }

  /** Replaces what is known of `fileKey` (`undefined`: the file is gone). */
  set(fileKey: string, next: Entry | undefined): void {
    const previous = this.entries.get(fileKey)
    if (previous !== undefined) this.forget(fileKey, previous)
    if (next === undefined) return
    if (next._tag === "Damaged" && previous !== undefined) {
      // what the file said while it was whole still names the record it holds: a garbled file
      // tells nothing of itself, but its name, organization and placeholder stay taken
      const known: Claim = previous._tag === "Record" ? previous.record : previous.damage.claim
      const claim = { ...claimOf(known), ...next.damage.claim }
      next = { _tag: "Damaged", damage: { ...next.damage, claim } }
    }
    if (next._tag === "Record") {
      const { record } = next
      const names = this.namesOf(record.organizationId)
      const sameName = names.get(record.name)
      const samePlaceholder = this.byPlaceholder.get(record.placeholder)
      // only a record file restored from an old copy can collide: neither copy can be trusted
      const clash = sameName ?? samePlaceholder
      if (clash !== undefined) {
        next = {
          _tag: "Damaged",
          damage: damaged(
            fileKey,
            next.path,
            `it has the ${sameName !== undefined ? "name" : "placeholder"} of secret ${JSON.stringify(clash.id)}`,
            record
          )
        }
      } else {
        names.set(record.name, record)
        this.byId.set(record.id, record)
        this.byPlaceholder.set(record.placeholder, record)
        this.keyUsage.set(record.keyId, (this.keyUsage.get(record.keyId) ?? 0) + 1)
      }
    }
    if (next._tag === "Damaged") this.damaged.set(fileKey, next.damage)
    this.entries.set(fileKey, next)
  }

  private forget(fileKey: string, entry: Entry): void {
    this.entries.delete(fileKey)
    if (entry._tag === "Damaged") {
      this.damaged.delete(fileKey)
      return
    }
    const { record } = entry
    this.byId.delete(record.id)
    this.byPlaceholder.delete(record.placeholder)
    const names = this.byOrganization.get(record.organizationId)
    names?.delete(record.name)
    if (names !== undefined && names.size === 0) this.byOrganization.delete(record.organizationId)
    const used = (this.keyUsage.get(record.keyId) ?? 1) - 1
    if (used === 0) this.keyUsage.delete(record.keyId)
    else this.keyUsage.set(record.keyId, used)
  }

  private namesOf(organizationId: string): Map<string, Meta> {
    let names = this.byOrganization.get(organizationId)
    if (names === undefined) {
      names = new Map()
      this.byOrganization.set(organizationId, names)
    }
    return names
  }

  /**
   * Damage that concerns a lookup in `organizationId`. A damaged file that claims another
   * organization is not reported (it would reveal that the id exists there).
   */
  private firstDamage(organizationId: string, matches: (damage: Damage) => boolean): Damage | undefined {
    for (const damage of this.damaged.values()) {
      const owner = damage.claim.organizationId
      if ((owner === undefined || owner === organizationId) && matches(damage)) return damage
    }
    return undefined
  }

  damageOfFile(organizationId: string, fileKey: string): Damage | undefined {
    const damage = this.damaged.get(fileKey)
    return damage === undefined ? undefined : this.firstDamage(organizationId, (d) => d === damage)
  }

  /** Damage that may hold the secret `name`: a damaged file whose name cannot be read may hold any. */
  damageOfName(organizationId: string, name: string): Damage | undefined {
    return this.damaged.size === 0
      ? undefined
      : this.firstDamage(organizationId, (d) => d.claim.name === undefined || d.claim.name === name)
  }

  damageOfPlaceholder(organizationId: string, placeholder: string): Damage | undefined {
    return this.damaged.size === 0
      ? undefined
      : this.firstDamage(organizationId, (d) => d.claim.placeholder === placeholder)
  }

  /** Damaged files that may belong to `organizationId`: a listing cannot be complete without them. */
  damageOfOrganization(organizationId: string): Damage | undefined {
    return this.damaged.size === 0 ? undefined : this.firstDamage(organizationId, () => true)
  }
}
