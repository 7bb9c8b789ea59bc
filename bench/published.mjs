// Makes the benchmarks run the packages as they are published: each module of a workspace
// package's `src/` (resolved through its `exports`, or imported by path) is loaded from the
// JavaScript `tsc` built into its `dist/` (`pnpm bench` builds it first). Under tsx the sources
// are transformed on the fly, with a helper call that names every function as it is made, which
// costs a closure made per call (the agent's plumbing, the scrubber's per-chunk work) several
// times what the built code does, and a plain undici `Agent`, the baseline, runs built code.
import { register } from "node:module"

register(
  "data:text/javascript," +
    encodeURIComponent(`
import { existsSync } from "node:fs"
import { fileURLToPath } from "node:url"
const SOURCE = /\\/packages\\/([^/]+)\\/src\\/(.*)\\.ts$/
export async function resolve(specifier, context, next) {
  const resolved = await next(specifier, context)
  const match = SOURCE.exec(resolved.url)
  if (match === null) return resolved
  const built = resolved.url.replace(SOURCE, "/packages/$1/dist/$2.js")
  if (!existsSync(fileURLToPath(built))) throw new Error("bench: " + built + " is not built: run pnpm build (pnpm bench builds what changed, not what was deleted)")
  return { ...resolved, url: built, format: "module" }
}`)
)
