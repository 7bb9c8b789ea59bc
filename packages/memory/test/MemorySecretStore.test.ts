import { conformance } from "@secretgate/core/testing"
import { MemorySecretStore } from "@secretgate/memory"

conformance("memory", ({ quota }) => MemorySecretStore.layer({ quota }))
