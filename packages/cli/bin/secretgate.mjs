#!/usr/bin/env node
// The `secretgate` binary. Published, it runs the compiled CLI; inside the repository (where the
// TypeScript sources and their tsconfig live), the sources through tsx, so no build is needed.
import { existsSync } from "node:fs"

const here = (path) => new URL(path, import.meta.url)
if (existsSync(here("../tsconfig.json"))) {
  const { register } = await import("tsx/esm/api")
  register()
  await import(here("../src/bin.ts").href)
} else {
  await import(here("../dist/bin.js").href)
}
