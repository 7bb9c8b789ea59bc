/**
 * `SecretStore`: persistence of secret *records*. A store never sees a plaintext value, only the
 * sealed form. Backends (`@secretgate/memory`, `@secretgate/filesystem`, ...) implement this one
 * interface; everything else (validation, placeholders, crypto) lives in `Secrets`.
 *
 * @since 0.1.0
 */
import { Context, Effect, Option, Schema } from "effect"
import { Buffer } from "node:buffer"
import type { ListQuery } from "./Secret.js"
import { SealedValue } from "./SecretCipher.js"
import { InvalidSecretInput, type QuotaExceeded, type SecretNameTaken, type SecretNotFound, type StoreError } from "./SecretError.js"

/**
 * A stored secret.
 *
 * @since 0.1.0
 */
export const SecretRecord = Schema.Struct({
  id: Schema.String,
  organizationId: Schema.String,
  name: Schema.String,
  description: Schema.optional(Schema.String),
  hosts: Schema.Array(Schema.String),
  placeholder: Schema.String,
  sealed: SealedValue,
  createdAt: Schema.Date,
  updatedAt: Schema.Date
})

/**
 * @since 0.1.0
 */
export type SecretRecord = typeof SecretRecord.Type

/**
 * A record without its sealed value: what listing needs, so that a backend can list from an index
 * without reading (or holding) every ciphertext.
 *
 * @since 0.1.0
 */
export type SecretMetadata = Omit<SecretRecord, "sealed">

/**
 * A list query with every default filled in.
 *
 * @since 0.1.0
 */
export interface PageQuery {
  readonly cursor?: string | undefined
  readonly limit: number
  readonly name?: string | undefined
  readonly sort: "name" | "createdAt" | "updatedAt"
  readonly order: "asc" | "desc"
}

/**
 * @since 0.1.0
 */
export interface Page<A> {
  readonly items: ReadonlyArray<A>
  readonly total: number
  readonly nextCursor: string | null
}

/**
 * Another record already holds this placeholder. With 160 random bits this does not happen by
 * chance; `Secrets` answers it by drawing a new placeholder.
 *
 * @since 0.1.0
 */
export class PlaceholderTaken extends Schema.TaggedError<PlaceholderTaken>()("PlaceholderTaken", {}) {}

/**
 * The persistence seam.
 *
 * @since 0.1.0
 */
export interface SecretStore {
  /**
   * Adds a record. Atomically checks that `(organizationId, name)` and `placeholder` are free and
   * that the organization holds fewer than `quota` records.
   */
  readonly insert: (
    record: SecretRecord,
    options: { readonly quota: number }
  ) => Effect.Effect<void, SecretNameTaken | PlaceholderTaken | QuotaExceeded | StoreError>
  readonly findById: (organizationId: string, id: string) => Effect.Effect<Option.Option<SecretRecord>, StoreError>
  readonly findByName: (organizationId: string, name: string) => Effect.Effect<Option.Option<SecretRecord>, StoreError>
  readonly findByPlaceholder: (
    organizationId: string,
    placeholder: string
  ) => Effect.Effect<Option.Option<SecretRecord>, StoreError>
  /**
   * Every record of the organization, sorted by name. Metadata suffices (listing never shows a
   * value); a backend may return whole records.
   */
  readonly listAll: (organizationId: string) => Effect.Effect<ReadonlyArray<SecretMetadata>, StoreError>
  /** One page, see `paginate` for the rules every backend follows; metadata suffices, as for `listAll`. */
  readonly list: (
    organizationId: string,
    query: PageQuery
  ) => Effect.Effect<Page<SecretMetadata>, InvalidSecretInput | StoreError>
  /**
   * Replaces a record with `change(current)`, atomically with respect to other writers. `id`,
   * `organizationId`, `name`, `placeholder` and `createdAt` must not change.
   */
  readonly update: (
    organizationId: string,
    id: string,
    change: (current: SecretRecord) => SecretRecord
  ) => Effect.Effect<SecretRecord, SecretNotFound | StoreError>
  readonly delete: (organizationId: string, id: string) => Effect.Effect<void, SecretNotFound | StoreError>
}

/**
 * @since 0.1.0
 */
export const SecretStore = Context.GenericTag<SecretStore>("@secretgate/core/SecretStore")

/**
 * Fills in the defaults of a list query: 100 items, newest first.
 *
 * @since 0.1.0
 */
export const pageQuery = (query: ListQuery = {}): PageQuery => ({
  cursor: query.cursor,
  limit: query.limit ?? 100,
  name: query.name,
  sort: query.sort ?? "createdAt",
  order: query.order ?? "desc"
})

type SortValue = string | number

const sortValue = (record: SecretMetadata, sort: PageQuery["sort"]): SortValue =>
  sort === "name" ? record.name : sort === "createdAt" ? record.createdAt.getTime() : record.updatedAt.getTime()

const compareKeys = (a: readonly [SortValue, string], b: readonly [SortValue, string]): number =>
  a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : a[1] < b[1] ? -1 : a[1] > b[1] ? 1 : 0

/**
 * The cursor is the last item's sort key (`[sort, order, value, id]`, base64url JSON): keyset
 * pagination, so concurrent writes never make a page skip or repeat an item that existed
 * throughout the walk. Exported for backends that page in their query language (SQL): the same
 * cursors, so the same rules.
 *
 * @since 0.1.0
 */
export const encodeCursor = (query: PageQuery, record: SecretMetadata): string =>
  Buffer.from(JSON.stringify([query.sort, query.order, sortValue(record, query.sort), record.id])).toString("base64url")

/**
 * The sort key a cursor of `encodeCursor` holds: the value of the sort field (a name, or a time in
 * milliseconds) and the id that breaks ties. Items strictly past it come next.
 *
 * @since 0.1.0
 */
export const decodeCursor = (query: PageQuery, cursor: string): Effect.Effect<readonly [string | number, string], InvalidSecretInput> => {
  try {
    const parsed: unknown = JSON.parse(Buffer.from(cursor, "base64url").toString("utf8"))
    if (
      Array.isArray(parsed) && parsed.length === 4 && typeof parsed[3] === "string" &&
      (typeof parsed[2] === "string" || typeof parsed[2] === "number")
    ) {
      if (parsed[0] !== query.sort || parsed[1] !== query.order) {
        return Effect.fail(InvalidSecretInput.of("cursor", "belongs to a different sort or order; start again without a cursor"))
      }
      // A value of the wrong type would compare as equal to every key (NaN) and give a wrong page.
      const value: SortValue = parsed[2]
      if (query.sort === "name" ? typeof value === "string" : typeof value === "number" && Number.isFinite(value)) {
        return Effect.succeed([value, parsed[3]] as const)
      }
    }
  } catch {
    // fall through
  }
  return Effect.fail(InvalidSecretInput.of("cursor", "is not a cursor returned by this API"))
}

/**
 * One page of `records` (all of one organization) under the list rules shared by every backend:
 * `name` filters by case-insensitive substring, ties of the sort field are broken by id, `total`
 * counts every match, `nextCursor` is `null` on the last page.
 *
 * @since 0.1.0
 */
export const paginate = <A extends SecretMetadata>(
  records: Iterable<A>,
  query: PageQuery
): Effect.Effect<Page<A>, InvalidSecretInput> =>
  Effect.gen(function*() {
    const after = query.cursor === undefined ? undefined : yield* decodeCursor(query, query.cursor)
    const needle = query.name?.toLowerCase()
    const direction = query.order === "asc" ? 1 : -1
    const matching: Array<readonly [readonly [SortValue, string], A]> = []
    for (const record of records) {
      if (needle !== undefined && !record.name.toLowerCase().includes(needle)) continue
      matching.push([[sortValue(record, query.sort), record.id], record])
    }
    matching.sort((a, b) => direction * compareKeys(a[0], b[0]))
    let start = 0
    if (after !== undefined) {
      // first item strictly past the cursor in this direction
      let low = 0
      let high = matching.length
      while (low < high) {
        const mid = (low + high) >>> 1
        if (direction * compareKeys(matching[mid]![0], after) <= 0) low = mid + 1
        else high = mid
      }
      start = low
    }
    const items = matching.slice(start, start + query.limit).map(([, record]) => record)
    const hasMore = start + query.limit < matching.length
    return {
      items,
      total: matching.length,
      nextCursor: hasMore && items.length > 0 ? encodeCursor(query, items[items.length - 1]!) : null
    }
  })

/**
 * Every field of a record, in a fixed order and plain JSON types (times in ms): what a backend
 * authenticates (a MAC over `JSON.stringify([format, version, ...authenticatedFields(record)])`),
 * so that no field can be changed or moved without the key.
 *
 * @since 0.1.0
 */
export const authenticatedFields = (record: SecretRecord): ReadonlyArray<unknown> => [
  record.id,
  record.organizationId,
  record.name,
  record.description ?? null,
  record.hosts,
  record.placeholder,
  record.sealed.keyId,
  record.sealed.nonce,
  record.sealed.ciphertext,
  record.createdAt.getTime(),
  record.updatedAt.getTime()
]

/**
 * Sorts records by name, the order of `listAll`.
 *
 * @since 0.1.0
 */
export const byName = (a: SecretMetadata, b: SecretMetadata): number => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0)

/**
 * `Option` of the record, for backends that look up by key.
 *
 * @since 0.1.0
 */
export const found = (record: SecretRecord | undefined): Option.Option<SecretRecord> => Option.fromNullable(record)
