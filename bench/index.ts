/**
 * Runs the benchmarks: `pnpm bench` runs all of them, `pnpm bench egress` only those whose file
 * name contains "egress". Each `bench/*.bench.ts` exports a default `async () => void` that prints
 * its own table; figures are ratios against a baseline measured in the same process. They run the
 * packages as published: `pnpm bench` builds them (`tsc -b tsconfig.build.json`) and loads each
 * package's `dist/` in place of its `src/` (`published.mjs`).
 */
import { readdirSync } from "node:fs"
import { fileURLToPath, pathToFileURL } from "node:url"

/*
 * `pnpm bench` runs this with glibc's allocator steadied (`MALLOC_MMAP_THRESHOLD_` and
 * `MALLOC_TRIM_THRESHOLD_` fixed, in the script of `package.json`: they are read when the process
 * starts). By default the thresholds move with what the process frees, so whether each 1 MiB
 * response body lands in memory already mapped or in fresh pages (a page fault per 4 KiB, costly in
 * a virtual machine) depends on the order of earlier allocations: a plain undici `Agent` read the
 * clean 1 MB JSON at 1.3 ms of client CPU per MiB in one process and at 4-7 ms in the next, half of
 * it in the kernel, and a ratio of two dispatchers measured in one process moved with it (a second
 * plain `Agent` read 0.71 of the first). With the thresholds fixed, both dispatchers of a ratio
 * allocate the same way, run after run. (Elsewhere than glibc the variables do nothing.)
 */
if (process.env.MALLOC_MMAP_THRESHOLD_ === undefined) {
  console.error("bench: the allocator is not steadied (MALLOC_MMAP_THRESHOLD_ is unset): run the benchmarks with pnpm bench, or ratios may move by tenths from run to run")
}

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
