/**
 * The store's keys as this process holds them: the manifest's key list and retired ids, the key
 * ring (configured, or read from the generated key file) and a cipher over it. Loaded at open and
 * again whenever the journal says the manifest or key file changed (`K`). Everything that decides
 * which key may seal, open or authenticate asks here; the files themselves are read and written
 * by `keys.ts`.
 */
import type { FileSystem } from "@effect/platform"
import { DecryptionFailed, KeyRing, SecretCipher, type SecretStore, StoreCorrupted, type StoreError } from "@secretgate/core"
import { Effect } from "effect"
import * as Keys from "./keys.js"
import type { Layout } from "./layout.js"
import * as RecordFile from "./recordFile.js"

type SecretRecord = SecretStore.SecretRecord

/** Where the keys come from. */
export type KeySource =
  | { readonly _tag: "Configured"; readonly ring: KeyRing.KeyRing }
  | { readonly _tag: "File" }

/** The keys of one open store, current as of the last `load`. */
export interface StoreKeys {
  readonly source: KeySource
  /** The manifest as last read. */
  readonly manifest: () => Keys.Manifest
  /** The usable keys (retired ones dropped); the last one seals. */
  readonly ring: () => KeyRing.KeyRing
  /** A cipher that always uses the current ring. */
  readonly cipher: SecretCipher.SecretCipher
  /** `true` when the manifest lists `keyId` (so it may seal records). */
  readonly isKnown: (keyId: string) => boolean
  /** Every key id the manifest lists or has retired: a new key id must be none of them. */
  readonly takenIds: () => ReadonlySet<string>
  /** (Re)reads the manifest and, for generated keys, the key file; refuses a wrong or retired sealing key. */
  readonly load: Effect.Effect<void, StoreError>
  /** A key that may authenticate a snapshot: held by this process, listed in the manifest, not retired. */
  readonly snapshotKey: (keyId: string) => KeyRing.Key | undefined
  /** Decodes a record file's text with the keys this process holds and the manifest's key lists. */
  readonly decode: (fileKey: string, path: string, text: string) => RecordFile.Decoded
  /**
   * The record to write and the key that authenticates it. A record this process sealed with a key
   * another process has retired meanwhile (this process's ring was behind) is re-sealed with the
   * current key first.
   */
  readonly forWrite: (record: SecretRecord) => Effect.Effect<
    { readonly record: SecretRecord; readonly key: KeyRing.Key },
    StoreError
  >
  /** The error for a generated key file that is missing. */
  readonly missingKeyFile: () => DecryptionFailed
  /** The error for a missing manifest. */
  readonly missingManifest: () => StoreCorrupted
}

/** The keys of the store at `paths`; nothing is read until `load`. */
export const make = (fs: FileSystem.FileSystem, paths: Layout, source: KeySource): StoreKeys => {
  let manifest: Keys.Manifest | undefined
  let knownKeyIds: ReadonlySet<string> = new Set()
  let retiredKeyIds: ReadonlySet<string> = new Set()
  let ring: KeyRing.KeyRing | undefined
  let cipher: SecretCipher.SecretCipher | undefined
  /** Keys this process held before another process retired them: only to re-seal a late write. */
  const previousKeys = new Map<string, KeyRing.Key>()

  const loaded = <A>(value: A | undefined): A => {
    if (value === undefined) throw new Error("the store's keys are used before they were loaded")
    return value
  }

  const missingKeyFile = () =>
    new DecryptionFailed({
      message: `the store's key file ${paths.keyFile} is missing: restore it from a backup, or configure the store's key`
    })

  const missingManifest = () =>
    new StoreCorrupted({ message: `${paths.manifest} is missing: restore it from a backup`, location: paths.manifest })

  const retiredCurrentKey = (keyId: string) =>
    new DecryptionFailed({
      message: `key ${
        JSON.stringify(keyId)
      } was retired from the store in ${paths.manifest} and cannot seal again: configure a newer key last in the key ring`
    })

  const load = Effect.gen(function*() {
    const read = yield* Keys.readManifest(fs, paths)
    if (read === undefined) return yield* Effect.fail(missingManifest())
    let nextRing: KeyRing.KeyRing
    if (source._tag === "Configured") {
      nextRing = source.ring
    } else {
      const keys = yield* Keys.readKeyFile(fs, paths)
      if (keys === undefined) return yield* Effect.fail(missingKeyFile())
      nextRing = KeyRing.make(keys)
    }
    yield* Keys.verifyRing(paths, read, nextRing)
    const retired = new Set(read.retired)
    if ([...nextRing.keys.keys()].some((id) => retired.has(id))) {
      // a retired key is never used again, even if still configured
      if (retired.has(nextRing.current.id)) return yield* Effect.fail(retiredCurrentKey(nextRing.current.id))
      nextRing = KeyRing.make([...nextRing.keys.values()].filter((key) => !retired.has(key.id)))
    }
    manifest = read
    knownKeyIds = new Set(read.keys.map((key) => key.id))
    retiredKeyIds = retired
    for (const key of ring === undefined ? [] : ring.keys.values()) {
      if (!nextRing.keys.has(key.id)) previousKeys.set(key.id, key)
    }
    ring = nextRing
    cipher = SecretCipher.make(nextRing)
  })

  const forWrite = (record: SecretRecord) =>
    Effect.gen(function*() {
      const current = loaded(ring)
      const key = knownKeyIds.has(record.sealed.keyId) ? current.keys.get(record.sealed.keyId) : undefined
      if (key !== undefined) return { record, key }
      const retired = previousKeys.get(record.sealed.keyId)
      if (retired === undefined) {
        return yield* Effect.fail(
          new DecryptionFailed({
            message: `secret ${JSON.stringify(record.id)} is sealed with key ${
              JSON.stringify(record.sealed.keyId)
            }, which this store does not accept (never configured, or retired)`,
            secretId: record.id
          })
        )
      }
      const binding = { organizationId: record.organizationId, secretId: record.id }
      const value = yield* SecretCipher.make(KeyRing.make([retired])).open(record.sealed, binding)
      return { record: { ...record, sealed: loaded(cipher).seal(value, binding) }, key: current.current }
    })

  return {
    source,
    manifest: () => loaded(manifest),
    ring: () => loaded(ring),
    cipher: {
      get currentKeyId() {
        return loaded(cipher).currentKeyId
      },
      seal: (value, binding) => loaded(cipher).seal(value, binding),
      open: (sealed, binding) => loaded(cipher).open(sealed, binding)
    },
    isKnown: (keyId) => knownKeyIds.has(keyId),
    takenIds: () => new Set([...knownKeyIds, ...retiredKeyIds]),
    load,
    snapshotKey: (keyId) =>
      knownKeyIds.has(keyId) && !retiredKeyIds.has(keyId) ? loaded(ring).keys.get(keyId) : undefined,
    decode: (fileKey, path, text) =>
      RecordFile.decode(fileKey, path, text, loaded(ring).keys, knownKeyIds, retiredKeyIds),
    forWrite,
    missingKeyFile,
    missingManifest
  }
}
