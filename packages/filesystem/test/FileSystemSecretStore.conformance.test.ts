import { conformance } from "@secretgate/core/testing"
import { FileSystemSecretStore } from "@secretgate/filesystem"
import { Effect, Layer } from "effect"
import * as FileSystem from "@effect/platform/FileSystem"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"

// a fresh temporary directory per layer, removed when the layer is released
conformance("filesystem", ({ quota }) =>
  Layer.unwrapScoped(
    Effect.map(
      Effect.flatMap(FileSystem.FileSystem, (fs) => fs.makeTempDirectoryScoped({ prefix: "secretgate-conformance-" })),
      (directory) => FileSystemSecretStore.layer({ directory, quota })
    )
  ).pipe(Layer.provide(NodeFileSystem.layer)))
