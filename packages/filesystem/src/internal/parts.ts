/**
 * The parts of an open store that the write path, snapshots and key management are built on.
 */
import type { FileSystem } from "@effect/platform"
import type { Layout } from "./layout.js"
import type { LiveIndex } from "./liveIndex.js"
import type { RecordFiles } from "./recordFiles.js"
import type { StoreKeys } from "./storeKeys.js"

/** The file system, the paths, the keys, the record files and the index of one open store. */
export interface Parts {
  readonly fs: FileSystem.FileSystem
  readonly paths: Layout
  readonly keys: StoreKeys
  readonly files: RecordFiles
  readonly live: LiveIndex
}
