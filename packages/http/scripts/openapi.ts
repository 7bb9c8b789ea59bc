/**
 * Writes the OpenAPI document of `SecretApi` to `docs/openapi.json` at the repository root:
 * `npx tsx packages/http/scripts/openapi.ts`. `test/OpenApi.test.ts` fails while the committed file
 * differs from what this writes.
 */
import { writeFileSync } from "node:fs"
import { fileURLToPath } from "node:url"
import { SecretApi } from "../src/index.js"

/** The document as committed: the API under `/`, two-space indented, with a final newline. */
export const render = (): string => `${JSON.stringify(SecretApi.openApi(), null, 2)}\n`

/** Where it is committed. */
export const target = fileURLToPath(new URL("../../../docs/openapi.json", import.meta.url))

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  writeFileSync(target, render())
  console.log(`wrote ${target}`)
}
