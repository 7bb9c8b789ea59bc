import { conformance } from "@secretgate/core/testing"
import { engines } from "./support.js"

for (const engine of engines) conformance(`sql (${engine.name})`, ({ quota }) => engine.layer({ quota }))
