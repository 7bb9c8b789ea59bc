/**
 * One name per meaning: every `SECRETGATE_*` environment variable that the packages, examples or
 * docs mention is one of those the README's "Environment variables" table defines (error codes,
 * which share the prefix, are told apart by where they are declared).
 */
import { readdirSync, readFileSync, statSync } from "node:fs"
import { join, relative } from "node:path"
import { fileURLToPath } from "node:url"
import { describe, expect, it } from "vitest"

const ROOT = fileURLToPath(new URL("..", import.meta.url))
const SKIP = new Set(["node_modules", "dist", "build", ".tmp", "bench"])

const filesUnder = (directory: string): Array<string> =>
  readdirSync(directory).flatMap((name) => {
    if (SKIP.has(name) || name.startsWith(".")) return []
    const path = join(directory, name)
    if (statSync(path).isDirectory()) return filesUnder(path)
    return /\.(ts|md|json|sh)$/.test(name) ? [path] : []
  })

const FILES = ["README.md", "docs", "examples", "packages", "test", ".ci"].flatMap((entry) => {
  const path = join(ROOT, entry)
  return statSync(path, { throwIfNoEntry: false })?.isDirectory() ? filesUnder(path) : [path]
})

const readme = readFileSync(join(ROOT, "README.md"), "utf8")
const table = readme.slice(readme.indexOf("## Environment variables"), readme.indexOf("## Documentation"))
const DEFINED = new Set([...table.matchAll(/^\| `(SECRETGATE_[A-Z_]+)` \|/gm)].map((match) => match[1]!))

const ERROR_CODES = new Set(
  FILES.filter((file) => file.endsWith(".ts")).flatMap((file) =>
    [...readFileSync(file, "utf8").matchAll(/code(?: =|:) "(SECRETGATE_[A-Z_]+)"/g)].map((match) => match[1]!)
  )
)

describe("environment variable names", () => {
  it("the README defines the names", () => {
    expect([...DEFINED]).toEqual(expect.arrayContaining(["SECRETGATE_STORE", "SECRETGATE_KEY", "SECRETGATE_API_KEY", "SECRETGATE_RESOLVE_KEY"]))
    expect(ERROR_CODES.size).toBeGreaterThan(0)
  })

  it("every SECRETGATE_* name used anywhere is defined in the README's table (add it there, or reuse one)", () => {
    const undefinedNames: Array<string> = []
    for (const file of FILES) {
      for (const match of readFileSync(file, "utf8").matchAll(/\bSECRETGATE_[A-Z][A-Z_]*\b/g)) {
        const name = match[0].replace(/_+$/, "")
        if (!DEFINED.has(name) && !ERROR_CODES.has(name) && name !== "SECRETGATE_") undefinedNames.push(`${relative(ROOT, file)}: ${name}`)
      }
    }
    expect([...new Set(undefinedNames)]).toEqual([])
  })
})
