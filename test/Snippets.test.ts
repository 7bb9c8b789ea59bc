/**
 * Every TypeScript snippet in `README.md` and `docs/*.md` type-checks against the packages as they
 * are: each ```ts block becomes a module of its own, compiled by the workspace's `tsc` (strict, as
 * the packages are). A snippet may use a few names the text around it has introduced (`gate`,
 * `mount`, `resolver`, ...): those it does not declare itself are declared for it, with their real
 * types, by the preludes below. A block that is not meant to compile must not be fenced as `ts`.
 */
import { execFile } from "node:child_process"
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const run = promisify(execFile)
const ROOT = fileURLToPath(new URL("..", import.meta.url))

interface Snippet {
  readonly file: string
  readonly line: number
  readonly code: string
}

/** The ```ts blocks of a Markdown file, with the line each starts on. */
const snippetsOf = (file: string): Array<Snippet> => {
  const lines = readFileSync(join(ROOT, file), "utf8").split("\n")
  const snippets: Array<Snippet> = []
  let start: number | undefined
  for (const [index, line] of lines.entries()) {
    if (start === undefined && /^```(ts|typescript)\s*$/.test(line)) start = index + 1
    else if (start !== undefined && /^```\s*$/.test(line)) {
      snippets.push({ file, line: start + 1, code: lines.slice(start, index).join("\n") })
      start = undefined
    }
  }
  return snippets
}

const DOCUMENTS = ["README.md", ...readdirSync(join(ROOT, "docs")).filter((name) => name.endsWith(".md")).map((name) => `docs/${name}`)]
const SNIPPETS = DOCUMENTS.flatMap(snippetsOf)

/**
 * Names a snippet may take from the text around it, each declared with its real type when the
 * snippet uses the name without declaring or importing it.
 */
const PRELUDES: Record<string, string> = {
  gate: `declare const gate: import("@secretgate/core").Secretgate`,
  mount: `declare const mount: import("@secretgate/core").SandboxMount.SandboxMount`,
  resolver: `declare const resolver: import("@secretgate/core").SecretResolver.SecretResolver`,
  log: `declare const log: { info(event: unknown): void }`,
  server: `declare const server: import("@secretgate/http").SecretServer.RunningServer`,
  agent: `declare const agent: import("@secretgate/undici").SecretgateAgent`,
  MyBackend: `declare const MyBackend: { layer(options: { quota: number }): import("effect").Layer.Layer<import("@secretgate/core").Secrets.Secrets> }`
}

const declares = (code: string, name: string): boolean =>
  new RegExp(`(?:const|let|var|function\\*?|class|type|interface)\\s+${name}\\b|^import .*\\b${name}\\b.* from `, "m").test(code)

const moduleOf = (snippet: Snippet): string => {
  const preludes = Object.entries(PRELUDES)
    .filter(([name]) => new RegExp(`\\b${name}\\b`).test(snippet.code) && !declares(snippet.code, name))
    .map(([, declaration]) => declaration)
  // `export {}` keeps a snippet without imports a module (top-level await, no global clashes)
  return [...preludes, snippet.code, "export {}", ""].join("\n")
}

/** A snippet that must fail: proves the harness reports errors at all. */
const BROKEN: Snippet = { file: "(harness)", line: 1, code: `import { Secretgate } from "@secretgate/core"\nconst n: number = Secretgate.name` }

let directory: string
let errors: Map<string, Array<string>>
const fileName = (index: number) => `snippet-${String(index).padStart(3, "0")}.ts`

beforeAll(async () => {
  // inside the examples package, so that the workspace packages resolve as they do for a user
  mkdirSync(join(ROOT, "examples"), { recursive: true })
  directory = mkdtempSync(join(ROOT, "examples", ".snippets-"))
  const all = [...SNIPPETS, BROKEN]
  all.forEach((snippet, index) => writeFileSync(join(directory, fileName(index)), moduleOf(snippet)))
  writeFileSync(join(directory, "tsconfig.json"), JSON.stringify({
    extends: "../../tsconfig.base.json",
    compilerOptions: { composite: false, declaration: false, emitDeclarationOnly: false, noEmit: true, noUnusedLocals: false, noUnusedParameters: false, skipLibCheck: true },
    include: ["*.ts"]
  }))
  const output = await run(join(ROOT, "node_modules", ".bin", "tsc"), ["-p", directory, "--pretty", "false"], { cwd: ROOT })
    .then(({ stdout }) => stdout, (error: { stdout?: string }) => error.stdout ?? String(error))
  errors = new Map()
  for (const line of output.split("\n")) {
    const match = /(snippet-\d{3}\.ts)\((\d+),\d+\): (error .*)$/.exec(line)
    if (match !== null) errors.set(match[1]!, [...(errors.get(match[1]!) ?? []), `line ${match[2]}: ${match[3]}`])
    else if (line.trim() !== "" && !/^\s/.test(line)) errors.set("(other)", [...(errors.get("(other)") ?? []), line])
  }
}, 180_000)

afterAll(() => {
  if (directory !== undefined) rmSync(directory, { recursive: true, force: true })
})

describe("the documentation's TypeScript snippets type-check", () => {
  it("finds the snippets, and the harness reports a broken one", () => {
    expect(SNIPPETS.length).toBeGreaterThanOrEqual(15)
    expect(errors.get(fileName(SNIPPETS.length))?.join("\n")).toMatch(/not assignable to type 'number'/)
    expect(errors.get("(other)")).toBeUndefined()
  })

  it.each(SNIPPETS.map((snippet, index) => [`${snippet.file}:${snippet.line}`, index] as const))("%s", (_, index) => {
    expect((errors.get(fileName(index)) ?? []).join("\n")).toBe("")
  })
})
