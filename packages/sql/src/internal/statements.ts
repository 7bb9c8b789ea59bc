/**
 * Every statement the store issues, as text with positional parameters, built once per schema.
 * Writes are single statements (data-modifying CTEs): each is atomic on its own, costs one round
 * trip, and bumps the organization's `revision` and sends the notification in the same statement.
 * The benchmark issues these very texts through the bare `pg` driver.
 */
import type { SecretStore } from "@secretgate/core"

type PageQuery = SecretStore.PageQuery

const RECORD = `organization_id, id, name, description, hosts, placeholder, key_id, nonce, ciphertext, mac, created_at, updated_at, version`
const METADATA = `organization_id, id, name, description, hosts, placeholder, created_at, updated_at`

const SORT_COLUMN = { name: "name", createdAt: "created_at", updatedAt: "updated_at" } as const

/** The statements over one schema. */
export const make = (s: string) => ({
  /** $1 organization, $2 id */
  findById: `SELECT ${RECORD} FROM ${s}.secrets WHERE organization_id = $1 AND id = $2`,
  /** $1 organization, $2 name */
  findByName: `SELECT ${RECORD} FROM ${s}.secrets WHERE organization_id = $1 AND name = $2`,
  /** $1 organization, $2 placeholder */
  findByPlaceholder: `SELECT ${RECORD} FROM ${s}.secrets WHERE placeholder = $2 AND organization_id = $1`,
  /** $1 organization */
  listAll: `SELECT ${METADATA} FROM ${s}.secrets WHERE organization_id = $1 ORDER BY name`,
  /**
   * $1 organization, $2 quota, $3 id, $4 name, $5 description, $6 hosts, $7 placeholder, $8 key id,
   * $9 nonce, $10 ciphertext, $11 mac, $12 created, $13 updated, $14 channel. One row when
   * inserted; none when the quota is reached. The organization row is locked first, so creates in
   * one organization queue there and the count check is exact.
   */
  insert: `WITH org_row AS (
      INSERT INTO ${s}.organizations AS o (id, secret_count, revision) VALUES ($1::text, 1, 1)
      ON CONFLICT (id) DO UPDATE SET secret_count = o.secret_count + 1, revision = o.revision + 1
      WHERE o.secret_count < $2::integer
      RETURNING o.revision
    ), inserted AS (
      INSERT INTO ${s}.secrets (organization_id, id, name, description, hosts, placeholder, key_id, nonce, ciphertext, mac, created_at, updated_at)
      SELECT $1::text, $3::text, $4::text, $5::text, $6::text[], $7::text, $8::text, $9::text, $10::text, $11::text, $12::timestamptz, $13::timestamptz FROM org_row
      RETURNING 1
    )
    SELECT org_row.revision, pg_notify($14::text, json_build_array(org_row.revision, $1::text, $7::text)::text) AS notified
    FROM org_row, inserted`,
  /** $1 organization, $2 name: whether the name is taken (to tell it from a full quota). */
  nameTaken: `SELECT 1 AS taken FROM ${s}.secrets WHERE organization_id = $1 AND name = $2`,
  /**
   * $1 organization, $2 id, $3 description, $4 hosts, $5 key id, $6 nonce, $7 ciphertext, $8 mac,
   * $9 updated, $10 the version read, $11 channel. One row when updated; none when the record is
   * gone or changed since it was read (compare-and-set on `version`).
   */
  update: `WITH updated AS (
      UPDATE ${s}.secrets SET description = $3::text, hosts = $4::text[], key_id = $5::text, nonce = $6::text,
        ciphertext = $7::text, mac = $8::text, updated_at = $9::timestamptz, version = version + 1
      WHERE organization_id = $1::text AND id = $2::text AND version = $10::bigint
      RETURNING organization_id, placeholder
    ), org_row AS (
      UPDATE ${s}.organizations SET revision = revision + 1 WHERE id IN (SELECT organization_id FROM updated) RETURNING revision
    )
    SELECT org_row.revision, pg_notify($11::text, json_build_array(org_row.revision, $1::text, updated.placeholder)::text) AS notified
    FROM org_row, updated`,
  /** $1 organization, $2 id, $3 channel. One row when deleted. */
  delete: `WITH deleted AS (
      DELETE FROM ${s}.secrets WHERE organization_id = $1::text AND id = $2::text RETURNING organization_id, placeholder
    ), org_row AS (
      UPDATE ${s}.organizations SET secret_count = secret_count - 1, revision = revision + 1
      WHERE id IN (SELECT organization_id FROM deleted) RETURNING revision
    )
    SELECT org_row.revision, deleted.placeholder, pg_notify($3::text, json_build_array(org_row.revision, $1::text, deleted.placeholder)::text) AS notified
    FROM org_row, deleted`,
  /** $1 organizations (text[]) */
  revisions: `SELECT id, revision FROM ${s}.organizations WHERE id = ANY($1::text[])`,
  /** $1 key ids of the ring (text[]), $2 checks (text[]): registers those not retired. */
  registerKeys: `INSERT INTO ${s}.keys (id, "check")
      SELECT k.id, k.check FROM unnest($1::text[], $2::text[]) AS k(id, "check")
      WHERE NOT EXISTS (SELECT 1 FROM ${s}.retired_keys r WHERE r.id = k.id)
      ON CONFLICT (id) DO NOTHING`,
  /** Every known key, retired or not, with how many records each seals. */
  keys: `SELECT k.id, k."check", (SELECT count(*) FROM ${s}.secrets WHERE key_id = k.id) AS records, false AS retired
      FROM ${s}.keys k
    UNION ALL SELECT id, NULL, 0, true FROM ${s}.retired_keys ORDER BY 1`,
  /** $1 current key id */
  countToReseal: `SELECT count(*) AS n FROM ${s}.secrets WHERE key_id <> $1`,
  /** $1 current key id, $2 organization after, $3 id after, $4 batch size */
  toReseal: `SELECT ${RECORD} FROM ${s}.secrets WHERE key_id <> $1 AND (organization_id, id) > ($2::text, $3::text)
      ORDER BY organization_id, id LIMIT $4`,
  /** $1 organizations, $2 ids, $3 versions, $4 key id, $5 nonces, $6 ciphertexts, $7 macs */
  resealBatch: `UPDATE ${s}.secrets AS s SET key_id = $4::text, nonce = u.nonce, ciphertext = u.ciphertext, mac = u.mac, version = s.version + 1
      FROM unnest($1::text[], $2::text[], $3::bigint[], $5::text[], $6::text[], $7::text[]) AS u(organization_id, id, version, nonce, ciphertext, mac)
      WHERE s.organization_id = u.organization_id AND s.id = u.id AND s.version = u.version
      RETURNING s.id`,
  /** $1 key id: forgets a key (fails on the foreign key while a record uses it). */
  deleteKey: `DELETE FROM ${s}.keys WHERE id = $1 RETURNING id`,
  /** $1 key id */
  retireKey: `INSERT INTO ${s}.retired_keys (id) VALUES ($1) ON CONFLICT (id) DO NOTHING`,
  /** $1 key id */
  countSealedWith: `SELECT count(*) AS n FROM ${s}.secrets WHERE key_id = $1`,
  page: (query: PageQuery, after: readonly [string | number, string] | undefined): {
    readonly text: string
    readonly params: (organizationId: string) => Array<unknown>
  } => {
    const params: Array<(organizationId: string) => unknown> = [(o) => o]
    const param = (value: (organizationId: string) => unknown) => {
      params.push(value)
      return `$${params.length}`
    }
    const needle = query.name === undefined ? undefined : param(() => query.name!.toLowerCase())
    const filter = needle === undefined ? "" : ` AND strpos(lower(name), ${needle}) > 0`
    const total = needle === undefined
      ? `coalesce((SELECT secret_count FROM ${s}.organizations WHERE id = $1), 0)`
      : `(SELECT count(*) FROM ${s}.secrets WHERE organization_id = $1${filter})`
    const column = SORT_COLUMN[query.sort]
    const direction = query.order === "asc" ? "ASC" : "DESC"
    const past = query.order === "asc" ? ">" : "<"
    let keyset = ""
    if (after !== undefined) {
      const [value, id] = after
      // names are unique in an organization, so the id never breaks a tie there
      keyset = query.sort === "name"
        ? ` AND name ${past} ${param(() => value)}::text`
        : ` AND (${column}, id) ${past} (${param(() => new Date(value as number))}::timestamptz, ${param(() => id)}::text)`
    }
    const limit = param(() => query.limit + 1)
    return {
      text: `SELECT t.total, p.* FROM (SELECT ${total} AS total) t LEFT JOIN LATERAL (
        SELECT ${METADATA} FROM ${s}.secrets WHERE organization_id = $1${filter}${keyset}
        ORDER BY ${column} ${direction}, id ${direction} LIMIT ${limit}::integer
      ) p ON true`,
      params: (organizationId) => params.map((value) => value(organizationId))
    }
  }
})

/** The statements of one schema. */
export type Statements = ReturnType<typeof make>
