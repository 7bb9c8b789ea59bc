/**
 * The manifest (`store.json`), the generated key file (`keys.json`) and what is derived from keys:
 * a key check (to recognise a wrong key at open) and a record MAC key (to authenticate records).
 */
import type { FileSystem } from "@effect/platform"
import { DecryptionFailed, KeyRing, StoreCorrupted, type StoreUnavailable } from "@secretgate/core"
import { Effect, Redacted } from "effect"
import { Buffer } from "node:buffer"
import { FILE_MODE, readIfExists, unavailable, writeAtomic } from "./io.js"
import { FORMAT_VERSION, type Layout, STORE_FORMAT } from "./layout.js"

const KEY_FILE_FORMAT = "secretgate-keys"

/** One key the store knows, by id, with its check value. */
export interface ManifestKey {
  readonly id: string
  readonly check: string
}

/** The contents of `store.json`. */
export interface Manifest {
  readonly format: typeof STORE_FORMAT
  readonly version: number
  readonly createdAt: string
  /** Keys that may seal records, oldest first. Retiring a key removes it. */
  readonly keys: ReadonlyArray<ManifestKey>
  /**
   * Ids of retired keys: never registered again, and a record sealed (and MAC'd) under one is
   * refused even by a process that still holds the key. Absent in manifests written before it
   * existed (read as `[]`).
   */
  readonly retired: ReadonlyArray<string>
}

/** What each derived value is for: core's `KeyRing.keyCheck` under a purpose of this format. */
const purpose = (name: string): string => `secretgate/filesystem/v${FORMAT_VERSION}/${name}`

const derive = (key: KeyRing.Key, name: string): Buffer => Buffer.from(KeyRing.keyCheck(key, purpose(name)), "base64")

/** A value that tells whether a key is the one the store was written with, revealing nothing of it. */
export const keyCheck = (key: KeyRing.Key): string => KeyRing.keyCheck(key, purpose("key-check"))

/** `true` when `key` matches the stored check, compared in constant time. */
export const checkMatches = (key: KeyRing.Key, check: string): boolean =>
  KeyRing.keyCheckMatches(key, purpose("key-check"), check)

/** `derive(key, purpose)`, computed once per key. */
const derivedFor = (purpose: string) => {
  const cache = new WeakMap<KeyRing.Key, Buffer>()
  return (key: KeyRing.Key): Buffer => {
    let derived = cache.get(key)
    if (derived === undefined) {
      derived = derive(key, purpose)
      cache.set(key, derived)
    }
    return derived
  }
}

/** The key that authenticates record files sealed with `key`. */
export const recordMacKey: (key: KeyRing.Key) => Buffer = derivedFor("record-mac")

/** The key that authenticates an index snapshot written under `key` (never the record MAC key). */
export const snapshotMacKey: (key: KeyRing.Key) => Buffer = derivedFor("snapshot-mac")

const corrupted = (path: string, why: string) =>
  new StoreCorrupted({ message: `${path} ${why}; restore it from a backup`, location: path })

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === "object" && value !== null && !Array.isArray(value)

/** A fresh manifest. */
export const newManifest = (keys: ReadonlyArray<KeyRing.Key>): Manifest => ({
  format: STORE_FORMAT,
  version: FORMAT_VERSION,
  createdAt: new Date().toISOString(),
  keys: keys.map((key) => ({ id: key.id, check: keyCheck(key) })),
  retired: []
})

/** Parses `store.json`. */
export const parseManifest = (path: string, text: string): Effect.Effect<Manifest, StoreCorrupted> => {
  let parsed: unknown
  try {
    parsed = JSON.parse(text)
  } catch {
    return Effect.fail(corrupted(path, "is not valid JSON (truncated or damaged)"))
  }
  if (!isObject(parsed) || parsed["format"] !== STORE_FORMAT) {
    return Effect.fail(corrupted(path, `is not a secretgate store manifest (no "format": "${STORE_FORMAT}")`))
  }
  const version = parsed["version"]
  if (typeof version !== "number" || !Number.isInteger(version) || version < 1) {
    return Effect.fail(corrupted(path, "has no valid format version"))
  }
  if (version > FORMAT_VERSION) {
    return Effect.fail(
      new StoreCorrupted({
        message:
          `${path} has format version ${version}, newer than this @secretgate/filesystem reads (${FORMAT_VERSION}); upgrade the library`,
        location: path
      })
    )
  }
  const keys = parsed["keys"]
  if (
    !Array.isArray(keys) ||
    !keys.every((key) => isObject(key) && typeof key["id"] === "string" && typeof key["check"] === "string")
  ) {
    return Effect.fail(corrupted(path, `has a malformed "keys" list`))
  }
  const retired = parsed["retired"] ?? []
  if (!Array.isArray(retired) || !retired.every((id) => typeof id === "string")) {
    return Effect.fail(corrupted(path, `has a malformed "retired" list`))
  }
  return Effect.succeed({
    format: STORE_FORMAT,
    version,
    createdAt: typeof parsed["createdAt"] === "string" ? parsed["createdAt"] : "",
    keys: keys.map((key: Record<string, string>) => ({ id: key["id"]!, check: key["check"]! })),
    retired: retired as ReadonlyArray<string>
  })
}

/** Reads `store.json`, `undefined` when there is none yet. */
export const readManifest = (
  fs: FileSystem.FileSystem,
  paths: Layout
): Effect.Effect<Manifest | undefined, StoreCorrupted | StoreUnavailable> =>
  Effect.flatMap(readIfExists(fs, paths.manifest), (text) =>
    text === undefined ? Effect.succeed(undefined) : parseManifest(paths.manifest, text))

/** Writes `store.json` atomically. */
export const writeManifest = (fs: FileSystem.FileSystem, paths: Layout, manifest: Manifest) =>
  writeAtomic(fs, paths.manifest, `${JSON.stringify(manifest, null, 2)}\n`)

/**
 * Reads the generated key file, `undefined` when there is none. Refuses a key file that others
 * than its owner may read, as ssh does.
 */
export const readKeyFile = (
  fs: FileSystem.FileSystem,
  paths: Layout
): Effect.Effect<ReadonlyArray<KeyRing.Key> | undefined, StoreCorrupted | StoreUnavailable | DecryptionFailed> =>
  Effect.gen(function*() {
    const path = paths.keyFile
    const text = yield* readIfExists(fs, path)
    if (text === undefined) return undefined
    if (process.platform !== "win32") {
      const info = yield* fs.stat(path).pipe(Effect.mapError(unavailable("stat", path)))
      if ((info.mode & 0o077) !== 0) {
        return yield* Effect.fail(
          new DecryptionFailed({
            message: `key file ${path} is accessible to other users (mode ${(info.mode & 0o777).toString(8)}); run chmod 600 on it`
          })
        )
      }
    }
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch {
      return yield* Effect.fail(corrupted(path, "is not valid JSON (truncated or damaged)"))
    }
    if (!isObject(parsed) || parsed["format"] !== KEY_FILE_FORMAT || parsed["version"] !== 1) {
      return yield* Effect.fail(corrupted(path, `is not a secretgate key file (version 1)`))
    }
    const entries = parsed["keys"]
    if (
      !Array.isArray(entries) || entries.length === 0 ||
      !entries.every((entry) => isObject(entry) && typeof entry["id"] === "string" && typeof entry["key"] === "string")
    ) {
      return yield* Effect.fail(corrupted(path, `has a malformed "keys" list`))
    }
    try {
      const keys = entries.map((entry: Record<string, string>) => KeyRing.keyFromBase64(entry["id"]!, entry["key"]!))
      KeyRing.make(keys) // validates ids and duplicates
      return keys
    } catch (error) {
      return yield* Effect.fail(corrupted(path, `holds an invalid key: ${(error as Error).message}`))
    }
  })

/** Writes the generated key file atomically, mode 0600. */
export const writeKeyFile = (fs: FileSystem.FileSystem, paths: Layout, keys: ReadonlyArray<KeyRing.Key>) =>
  writeAtomic(
    fs,
    paths.keyFile,
    `${
      JSON.stringify(
        {
          format: KEY_FILE_FORMAT,
          version: 1,
          keys: keys.map((key) => ({ id: key.id, key: Redacted.value(KeyRing.keyToBase64(key)) }))
        },
        null,
        2
      )
    }\n`
  ).pipe(Effect.tap(() => fs.chmod(paths.keyFile, FILE_MODE).pipe(Effect.ignore)))

/** A new key id, distinct from `taken`. */
export const newKeyId = (taken: ReadonlySet<string>): string => {
  for (;;) {
    const id = `k${Date.now().toString(36)}${Math.floor(Math.random() * 36 ** 4).toString(36).padStart(4, "0")}`
    if (!taken.has(id)) return id
  }
}

/**
 * Checks every key of `ring` that the manifest knows against its check: a configured key with a
 * known id and other bytes is the wrong key, and the store refuses to open.
 */
export const verifyRing = (
  paths: Layout,
  manifest: Manifest,
  ring: KeyRing.KeyRing
): Effect.Effect<void, DecryptionFailed> => {
  for (const known of manifest.keys) {
    const key = ring.keys.get(known.id)
    if (key !== undefined && !checkMatches(key, known.check)) {
      return Effect.fail(
        new DecryptionFailed({
          message:
            `the key configured as ${JSON.stringify(known.id)} is not the key this store was written with (${paths.manifest}); check the key configuration`
        })
      )
    }
  }
  return Effect.void
}
