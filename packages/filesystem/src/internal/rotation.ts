/**
 * Key management on an open store: key statuses, registering newly configured keys, rotating the
 * generated key file, re-sealing records with the current key, and retiring a key. Every decision
 * that a key may go is taken from the record files themselves, read under the lock.
 */
import { KeyRing, type StoreError } from "@secretgate/core"
import { Effect } from "effect"
import { KeyManagementError } from "./errors.js"
import * as Keys from "./keys.js"
import type { Parts } from "./parts.js"
import type { Scan } from "./recordFiles.js"
import type { Meta } from "./recordIndex.js"
import type { Snapshots } from "./snapshotting.js"
import type { Writer } from "./writer.js"

const RESEAL_BATCH = 64

/** One key of the store, as key management sees it. */
export interface KeyStatus {
  readonly id: string
  /** New seals use this key. */
  readonly current: boolean
  /** Records sealed with it. */
  readonly records: number
  /** This process holds the key's bytes. */
  readonly held: boolean
}

/** Key management of one open store. */
export interface Rotation {
  readonly keys: Effect.Effect<ReadonlyArray<KeyStatus>, StoreError>
  /**
   * Registers the keys of this process's ring that store.json does not list yet (a new key
   * configured for rotation, or a generated key whose registration a crash interrupted). Runs
   * only at the end of a successful open, under the lock, against a freshly read manifest.
   */
  readonly registerKeys: Effect.Effect<void, StoreError>
  readonly rotateKey: Effect.Effect<KeyStatus, KeyManagementError | StoreError>
  readonly reseal: Effect.Effect<number, StoreError>
  readonly retireKey: (keyId: string) => Effect.Effect<void, KeyManagementError | StoreError>
}

/** Key management over the parts of an open store. */
export const make = ({ files, fs, keys, live, paths }: Parts, writer: Writer, snapshots: Snapshots): Rotation => {
  const view = <A>(f: () => A) => Effect.map(writer.sync, f)

  const statusOf = (id: string): KeyStatus => ({
    id,
    current: keys.ring().current.id === id,
    records: live.index().keyUsage.get(id) ?? 0,
    held: keys.ring().keys.has(id)
  })

  /**
   * Holding the lock, caught up: replaces the index with one read from every record file, and
   * writes a snapshot of it. Key decisions start from this, not from the index, which may hold
   * what the snapshot said of a file put back behind the store's back (an older copy, sealed with
   * a key the index no longer counts). Slow on a large store, but keys are rarely managed.
   */
  const rescan: Effect.Effect<Scan, StoreError> = Effect.gen(function*() {
    const scanned = yield* files.scan
    live.replace(scanned.index)
    yield* snapshots.save
    return scanned
  })

  const registerKeys: Effect.Effect<void, StoreError> = Effect.suspend(() =>
    [...keys.ring().keys.keys()].every(keys.isKnown) ? Effect.void : writer.transact(Effect.gen(function*() {
      const current = yield* Keys.readManifest(fs, paths)
      if (current === undefined) return yield* Effect.fail(keys.missingManifest())
      const ring = keys.ring()
      yield* Keys.verifyRing(paths, current, ring)
      const added = [...ring.keys.values()].filter((key) =>
        !current.keys.some((k) => k.id === key.id) && !current.retired.includes(key.id)
      )
      if (added.length === 0) return
      yield* Keys.writeManifest(fs, paths, {
        ...current,
        keys: [...current.keys, ...added.map((key) => ({ id: key.id, check: Keys.keyCheck(key) }))]
      })
      yield* live.append("K\n")
      yield* keys.load
    }))
  )

  const reseal: Effect.Effect<number, StoreError> = Effect.gen(function*() {
    yield* writer.transact(rescan)
    let total = 0
    for (;;) {
      const batch = yield* view(() => {
        const stale: Array<Meta> = []
        for (const record of live.index().records()) {
          if (record.keyId !== keys.ring().current.id) stale.push(record)
          if (stale.length === RESEAL_BATCH) break
        }
        return stale
      })
      if (batch.length === 0) return total
      yield* writer.transact(Effect.forEach(batch, (stale) =>
        Effect.gen(function*() {
          const meta = live.index().byId.get(stale.id)
          if (meta === undefined || meta.keyId === keys.ring().current.id) return
          const record = yield* live.load(meta)
          // the file may say otherwise than the index did (load has corrected the index then)
          if (record === undefined || record.sealed.keyId === keys.ring().current.id) return
          const binding = { organizationId: record.organizationId, secretId: record.id }
          const value = yield* keys.cipher.open(record.sealed, binding)
          yield* writer.put({ ...record, sealed: keys.cipher.seal(value, binding) })
          total++
        }), { discard: true }))
    }
  })

  const rotateKey: Effect.Effect<KeyStatus, KeyManagementError | StoreError> = Effect.gen(function*() {
    if (keys.source._tag === "Configured") {
      return yield* Effect.fail(
        new KeyManagementError({
          message:
            "this store's keys come from configuration: add the new key to the configured key ring (newest last), reopen, then run reseal"
        })
      )
    }
    const id = yield* writer.transact(Effect.gen(function*() {
      const inFile = yield* Keys.readKeyFile(fs, paths)
      if (inFile === undefined) return yield* Effect.fail(keys.missingKeyFile())
      const key = KeyRing.generateKey(Keys.newKeyId(new Set([...keys.takenIds(), ...inFile.map((k) => k.id)])))
      // key file first: a crash before the manifest is written is repaired at the next open
      yield* Keys.writeKeyFile(fs, paths, [...inFile, key])
      const manifest = keys.manifest()
      yield* Keys.writeManifest(fs, paths, { ...manifest, keys: [...manifest.keys, { id: key.id, check: Keys.keyCheck(key) }] })
      yield* live.append("K\n")
      yield* keys.load
      return key.id
    }))
    yield* reseal
    return yield* view(() => statusOf(id))
  })

  const retireKey = (keyId: string): Effect.Effect<void, KeyManagementError | StoreError> =>
    writer.transact(Effect.gen(function*() {
      const refuse = (message: string) => Effect.fail(new KeyManagementError({ message }))
      if (!keys.isKnown(keyId)) return yield* refuse(`this store has no key ${JSON.stringify(keyId)}`)
      if (keyId === keys.ring().current.id) {
        return yield* refuse(`key ${JSON.stringify(keyId)} is the current key: rotate to a new key first`)
      }
      // from the files, not the index: a key must not go while any file is still sealed with it
      const scanned = yield* rescan
      const used = (live.index().keyUsage.get(keyId) ?? 0) + (scanned.missingKeys.get(keyId) ?? 0)
      if (used > 0) {
        return yield* refuse(`key ${JSON.stringify(keyId)} still seals ${used} record(s): run reseal first`)
      }
      const manifest = keys.manifest()
      yield* Keys.writeManifest(fs, paths, {
        ...manifest,
        keys: manifest.keys.filter((key) => key.id !== keyId),
        retired: [...manifest.retired.filter((id) => id !== keyId), keyId]
      })
      if (keys.source._tag === "File") {
        const inFile = yield* Keys.readKeyFile(fs, paths)
        if (inFile !== undefined) yield* Keys.writeKeyFile(fs, paths, inFile.filter((key) => key.id !== keyId))
      }
      yield* live.append("K\n")
      yield* keys.load
    }))

  return {
    keys: view(() => keys.manifest().keys.map((key) => statusOf(key.id))),
    registerKeys,
    rotateKey,
    reseal,
    retireKey
  }
}
