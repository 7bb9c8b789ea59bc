import { conformance } from "@secretgate/core/testing"
import { MemorySecretStore } from "@secretgate/memory"
import { remoteSecrets } from "./support.js"

conformance("http over memory", ({ quota }) => remoteSecrets(MemorySecretStore.layer({ quota })))

conformance("http over memory, base path /api/v1", ({ quota }) =>
  remoteSecrets(MemorySecretStore.layer({ quota }), { basePath: "/api/v1" }))
