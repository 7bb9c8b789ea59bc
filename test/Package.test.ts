/**
 * The packages as they are published: built (`pnpm build`), packed by `pnpm pack` (which swaps in
 * `publishConfig`: exports to `dist/`, workspace versions), installed into a project outside the
 * workspace, type-checked by that project's own `tsc` without `skipLibCheck`, and run by plain Node.
 * Catches what the workspace cannot: exports pointing at TypeScript, a missing file or dependency,
 * declarations that do not resolve.
 */
import { execFile } from "node:child_process"
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { join } from "node:path"
import { fileURLToPath } from "node:url"
import { promisify } from "node:util"
import { afterAll, beforeAll, describe, expect, it } from "vitest"

const run = promisify(execFile)
const ROOT = fileURLToPath(new URL("..", import.meta.url))
const PACKAGES = ["core", "memory", "filesystem", "http", "undici", "sql"] as const
const VALUE = "sk-published-Zq9xV2bN7"

let project: string
let output: {
  received: Array<string>
  echoAllowed: string
  echoEvil: string
  placeholder: string
  storedNames: Array<string>
  remote: { name: string; hosts: Array<string>; json: string }
  embedded: { name: string; hosts: Array<string>; json: string; keyManagementError: string }
}

beforeAll(async () => {
  // inside the repository (ignored by git), so that pnpm finds its store on the same disk
  mkdirSync(join(ROOT, ".tmp"), { recursive: true })
  project = mkdtempSync(join(ROOT, ".tmp", "published-"))
  await run("pnpm", ["build"], { cwd: ROOT })
  const tarballs = join(project, "tarballs")
  for (const name of PACKAGES) await run("pnpm", ["pack", "--pack-destination", tarballs], { cwd: join(ROOT, "packages", name) })
  const tarball = (name: string) => `file:${join(tarballs, readdirSync(tarballs).find((file) => file.startsWith(`secretgate-${name}-`))!)}`
  const workspace = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { devDependencies: Record<string, string> }
  // the SQL package's peers, at the versions it is developed against
  const sql = JSON.parse(readFileSync(join(ROOT, "packages", "sql", "package.json"), "utf8")) as { devDependencies: Record<string, string> }
  const pinned = (name: string) => workspace.devDependencies[name] ?? sql.devDependencies[name]!
  const ours = Object.fromEntries(PACKAGES.map((name) => [`@secretgate/${name}`, tarball(name)]))
  writeFileSync(join(project, "package.json"), JSON.stringify({
    name: "published-consumer",
    private: true,
    type: "module",
    dependencies: {
      ...ours,
      ...Object.fromEntries(
        ["effect", "@effect/platform", "@effect/platform-node", "undici", "typescript", "@types/node", "@effect/sql", "@effect/sql-pg", "@effect/experimental"]
          .map((name) => [name, pinned(name)])
      )
    },
    // one package's dependency on another resolves to its tarball too, not to the registry
    pnpm: { overrides: ours }
  }))
  cpSync(join(ROOT, "test", "fixtures", "consumer"), project, { recursive: true })
  await run("pnpm", ["install", "--ignore-workspace", "--prefer-offline", "--reporter=silent"], { cwd: project })
  // tsc reports on stdout: say what it found
  await run(join(project, "node_modules", ".bin", "tsc"), ["-p", "."], { cwd: project }).catch((error: { stdout?: string }) => {
    throw new Error(`the consumer does not type-check against the packed declarations:\n${error.stdout ?? String(error)}`)
  })
  const result = await run(process.execPath, [join(project, "out", "main.js")], {
    cwd: project,
    env: { ...process.env, TLS_DIR: join(ROOT, "packages", "undici", "test", "fixtures", "tls"), STORE_DIR: join(project, "store") }
  })
  output = JSON.parse(result.stdout) as typeof output
}, 240_000)

afterAll(() => {
  if (project !== undefined) rmSync(project, { recursive: true, force: true })
})

describe("the published packages, installed outside the workspace and run by plain Node", () => {
  it("export compiled JavaScript and declarations, not TypeScript source", () => {
    for (const name of PACKAGES) {
      const manifest = JSON.parse(readFileSync(join(project, "node_modules", "@secretgate", name, "package.json"), "utf8")) as {
        exports: Record<string, { types: string; default: string }>
        dependencies?: Record<string, string>
      }
      for (const entry of Object.values(manifest.exports)) {
        expect(entry.default).toMatch(/^\.\/dist\/.*\.js$/)
        expect(entry.types).toMatch(/^\.\/dist\/.*\.d\.ts$/)
        expect(() => readFileSync(join(project, "node_modules", "@secretgate", name, entry.default))).not.toThrow()
      }
      expect(JSON.stringify(manifest.dependencies ?? {})).not.toContain("workspace:")
    }
  })

  it("carry the repository's LICENSE, as every package's manifest promises", async () => {
    const root = readFileSync(join(ROOT, "LICENSE"), "utf8")
    for (const name of PACKAGES) {
      expect(readFileSync(join(project, "node_modules", "@secretgate", name, "LICENSE"), "utf8")).toBe(root)
    }
    // every package of the workspace, packed here or not, copies it in when packed
    for (const name of readdirSync(join(ROOT, "packages"))) {
      const manifest = JSON.parse(readFileSync(join(ROOT, "packages", name, "package.json"), "utf8")) as {
        license?: string
        scripts?: Record<string, string>
      }
      expect({ name, license: manifest.license, prepack: manifest.scripts?.["prepack"] })
        .toEqual({ name, license: "MIT", prepack: "node ../../scripts/license.mjs" })
    }
  })

  it("substitute the value for the allowed host only, and scrub its echo", () => {
    expect(output.received).toEqual([`Bearer ${VALUE}`, `Bearer ${output.placeholder}`])
    expect(output.echoAllowed).toBe(`you sent Bearer ${output.placeholder}`)
    expect(output.echoEvil).toBe(`you sent Bearer ${output.placeholder}`)
  })

  it("keep secrets on disk across gates (filesystem) and serve them over HTTP without their values", () => {
    expect(output.storedNames).toEqual(["stored"])
    expect(output.remote.name).toBe("remote")
    expect(output.remote.hosts).toEqual(["api.allowed.test"])
    expect(output.remote.json).not.toContain(VALUE)
  })

  it("create and read a secret on the SQL backend, embedded (PGlite), with its errors exported", () => {
    expect(output.embedded.name).toBe("embedded")
    expect(output.embedded.hosts).toEqual(["api.allowed.test"])
    expect(output.embedded.json).not.toContain(VALUE)
    expect(output.embedded.keyManagementError).toBe("KeyManagementError")
  })
})
