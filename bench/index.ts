/**
 * Runs the benchmarks: `pnpm bench` runs all of them, `pnpm bench egress` only those whose file
 * name contains "egress". Each `bench/*.bench.ts` exports a default `async () => void` that prints
 * its own table; figures are ratios against a baseline measured in the same process. They run the
 * packages as published: `pnpm bench` builds them (`tsc -b tsconfig.build.json`) and loads each
 * package's `dist/` in place of its `src/` (`published.mjs`).
 */
import { readdirSync } from "node:fs"
import { fileURLToPath, pathToFileURL } from "node:url"

const dir = fileURLToPath(new URL(".", import.meta.url))
const filter = process.argv[2]
const files = readdirSync(dir)
  .filter((file) => file.endsWith(".bench.ts") && (filter === undefined || file.includes(filter)))
  .sort()
if (files.length === 0) {
  console.error(`no benchmark matches ${JSON.stringify(filter)}`)
  process.exit(1)
}
for (const file of files) {
  console.log(`\n## ${file.replace(".bench.ts", "")}\n`)
  const module = (await import(pathToFileURL(`${dir}/${file}`).href)) as { default: () => Promise<void> }
  await module.default()
}
