/**
 * The index snapshot (`snapshot`): the metadata of every record (never a sealed value, never a
 * plaintext) as one process's index held it at a journal position, authenticated with a key
 * derived from a store key. An open that trusts it reads only the record files that the journal
 * lines after that position name, instead of every record file. See docs/filesystem.md.
 *
 *     {"format":"secretgate-snapshot","version":1,"keyId":"…","mac":"<base64>"}
 *     {"generation":"…","offset":123,"damaged":["<fileKey>",…],"records":[[id, organizationId, name,
 *      description or null, hosts, placeholder, keyId, createdAt ms, updatedAt ms],…]}
 *
 * The MAC is `HMAC-SHA256(snapshotMacKey(key), "secretgate-snapshot 1\n" + second line)`.
 */
import { KeyRing } from "@secretgate/core"
import { createHmac } from "node:crypto"
import { snapshotMacKey } from "./keys.js"
import { isFileKey } from "./layout.js"
import type { Meta } from "./recordIndex.js"

const FORMAT = "secretgate-snapshot"
const VERSION = 1
const GENERATION = /^[0-9a-f]{16}$/

/**
 * Largest snapshot read (or written). About 200 bytes per record with short names and no hosts;
 * a store whose metadata outgrows this simply opens by reading every record file.
 */
export const MAX_BYTES = 256 * 1024 * 1024

/** What a snapshot says. */
export interface Snapshot {
  /** The journal generation and the offset (at the end of a complete line) the index reflects. */
  readonly generation: string
  readonly offset: number
  /** Every record the index held, oldest first. */
  readonly records: ReadonlyArray<Meta>
  /** File keys of damaged record files: the index keeps no trusted metadata of them, so they are re-read. */
  readonly damaged: ReadonlyArray<string>
}

const macOf = (key: KeyRing.Key, payload: string): Buffer =>
  createHmac("sha256", snapshotMacKey(key)).update(`${FORMAT} ${VERSION}\n`).update(payload).digest()

type Row = readonly [string, string, string, string | null, ReadonlyArray<string>, string, string, number, number]

const rowOf = (meta: Meta): Row => [
  meta.id,
  meta.organizationId,
  meta.name,
  meta.description ?? null,
  meta.hosts,
  meta.placeholder,
  meta.keyId,
  meta.createdAt.getTime(),
  meta.updatedAt.getTime()
]

const isString = (value: unknown): value is string => typeof value === "string"
const isTime = (value: unknown): value is number => typeof value === "number" && Number.isFinite(value)

const metaOfRow = (row: unknown): Meta | undefined => {
  if (!Array.isArray(row) || row.length !== 9) return undefined
  const [id, organizationId, name, description, hosts, placeholder, keyId, createdAt, updatedAt] = row
  if (
    !isString(id) || !isString(organizationId) || !isString(name) || !(description === null || isString(description)) ||
    !Array.isArray(hosts) || !hosts.every(isString) || !isString(placeholder) || !isString(keyId) ||
    !isTime(createdAt) || !isTime(updatedAt)
  ) return undefined
  const meta: { -readonly [K in keyof Meta]: Meta[K] } = {
    id,
    organizationId,
    name,
    hosts,
    placeholder,
    createdAt: new Date(createdAt),
    updatedAt: new Date(updatedAt),
    keyId
  }
  if (description !== null) meta.description = description
  return meta
}

/**
 * The file content of `snapshot`, authenticated with `key`. Throws `RangeError` when the text
 * would be larger than a string can be (the caller then writes no snapshot).
 */
export const encode = (snapshot: Snapshot, key: KeyRing.Key): string => {
  const payload = JSON.stringify({
    generation: snapshot.generation,
    offset: snapshot.offset,
    damaged: snapshot.damaged,
    records: snapshot.records.map(rowOf)
  })
  const header = JSON.stringify({ format: FORMAT, version: VERSION, keyId: key.id, mac: macOf(key, payload).toString("base64") })
  return `${header}\n${payload}\n`
}

/** The outcome of reading a snapshot: usable, or why not (the store then reads every record file). */
export type Decoded =
  | { readonly _tag: "Valid"; readonly snapshot: Snapshot }
  | { readonly _tag: "Invalid"; readonly why: string }

const invalid = (why: string): Decoded => ({ _tag: "Invalid", why })

/**
 * Reads a snapshot's text. `keyFor` returns the key of an id only when this process holds it and
 * the store accepts it (listed in the manifest, not retired); any other key id, a failed MAC, a
 * truncated or foreign file, or another format version makes the snapshot unusable.
 */
export const decode = (text: string, keyFor: (keyId: string) => KeyRing.Key | undefined): Decoded => {
  const newline = text.indexOf("\n")
  if (newline < 0 || !text.endsWith("\n")) return invalid("truncated")
  let header: unknown
  try {
    header = JSON.parse(text.slice(0, newline))
  } catch {
    return invalid("its header is not JSON")
  }
  if (typeof header !== "object" || header === null) return invalid("not a snapshot")
  const { format, keyId, mac, version } = header as Record<string, unknown>
  if (format !== FORMAT) return invalid("not a snapshot")
  if (version !== VERSION) return invalid(`format version ${JSON.stringify(version)}`)
  if (!isString(keyId) || !isString(mac)) return invalid("no key id or MAC")
  const key = keyFor(keyId)
  if (key === undefined) return invalid(`written under key ${JSON.stringify(keyId)}, which this process cannot use`)
  const payload = text.slice(newline + 1, -1)
  if (!KeyRing.macMatches(macOf(key, payload), mac)) return invalid("it fails its MAC")
  let body: unknown
  try {
    body = JSON.parse(payload)
  } catch {
    return invalid("its body is not JSON")
  }
  if (typeof body !== "object" || body === null) return invalid("malformed")
  const { damaged, generation, offset, records } = body as Record<string, unknown>
  if (
    !isString(generation) || !GENERATION.test(generation) || typeof offset !== "number" || !Number.isSafeInteger(offset) ||
    offset < 0 || !Array.isArray(damaged) || !damaged.every((fileKey) => isString(fileKey) && isFileKey(fileKey)) ||
    !Array.isArray(records)
  ) return invalid("malformed")
  const metas: Array<Meta> = []
  for (const row of records) {
    const meta = metaOfRow(row)
    if (meta === undefined) return invalid("a malformed record")
    metas.push(meta)
  }
  return { _tag: "Valid", snapshot: { generation, offset, damaged, records: metas } }
}
