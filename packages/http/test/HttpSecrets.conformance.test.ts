import * as FileSystem from "@effect/platform/FileSystem"
import * as NodeFileSystem from "@effect/platform-node/NodeFileSystem"
import { conformance } from "@secretgate/core/testing"
import { FileSystemSecretStore } from "@secretgate/filesystem"
import { MemorySecretStore } from "@secretgate/memory"
import { Effect, Layer } from "effect"
import { remoteSecrets } from "./support.js"

conformance("http over memory", ({ quota }) => remoteSecrets(MemorySecretStore.layer({ quota })))

conformance("http over memory, base path /api/v1", ({ quota }) =>
  remoteSecrets(MemorySecretStore.layer({ quota }), { basePath: "/api/v1" }))

// a fresh temporary store directory per layer, removed when the layer is released
conformance("http over filesystem", ({ quota }) =>
  remoteSecrets(
    Layer.unwrapScoped(
      Effect.map(
        Effect.flatMap(FileSystem.FileSystem, (fs) => fs.makeTempDirectoryScoped({ prefix: "secretgate-http-conformance-" })),
        (directory) => FileSystemSecretStore.layer({ directory, quota })
      )
    ).pipe(Layer.provide(NodeFileSystem.layer))
  ))
