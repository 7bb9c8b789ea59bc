/**
 * `PrivateFile.openAppend` on real files in a temp dir: a fresh file is created 0600, an existing
 * one is narrowed to 0600 and appended to; a symbolic link (its target untouched), a FIFO (refused
 * without blocking, run in a child process under a timeout), a directory, a hard-linked file and
 * another user's file are refused with a `PrivateFileError` naming the path.
 */
import { PrivateFile } from "@secretgate/core"
import { spawnSync } from "node:child_process"
import {
  chmodSync,
  chownSync,
  closeSync,
  existsSync,
  linkSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
  writeSync
} from "node:fs"
import { tmpdir } from "node:os"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { afterAll, describe, expect, it } from "vitest"

const dir = mkdtempSync(join(tmpdir(), "secretgate-private-file-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const refusal = (path: string): PrivateFile.PrivateFileError => {
  try {
    closeSync(PrivateFile.openAppend(path, "the audit log"))
  } catch (error) {
    expect(error).toBeInstanceOf(PrivateFile.PrivateFileError)
    const refused = error as PrivateFile.PrivateFileError
    expect(refused.path).toBe(path)
    expect(refused.message).toContain(`the audit log ${path}`)
    return refused
  }
  throw new Error(`${path} was opened`)
}

const ROOT = process.getuid?.() === 0

describe("PrivateFile.openAppend", () => {
  it("creates a fresh file 0600", () => {
    const path = join(dir, "fresh.jsonl")
    const fd = PrivateFile.openAppend(path)
    writeSync(fd, "one\n")
    closeSync(fd)
    expect(statSync(path).mode & 0o777).toBe(0o600)
    expect(readFileSync(path, "utf8")).toBe("one\n")
  })

  it("narrows an existing 0644 file to 0600 and appends to it", () => {
    const path = join(dir, "wide.jsonl")
    writeFileSync(path, "earlier\n")
    chmodSync(path, 0o644)
    const fd = PrivateFile.openAppend(path)
    writeSync(fd, "later\n")
    closeSync(fd)
    expect(statSync(path).mode & 0o777).toBe(0o600)
    expect(readFileSync(path, "utf8")).toBe("earlier\nlater\n")
  })

  it("refuses a symbolic link at the path, leaving its target untouched", () => {
    const target = join(dir, "target")
    writeFileSync(target, "theirs\n")
    chmodSync(target, 0o644)
    const link = join(dir, "link.jsonl")
    symlinkSync(target, link)
    const refused = refusal(link)
    expect(refused.reason).toBe("symlink")
    expect(refused.message).toMatch(/symbolic link; give the path of a regular file/)
    expect(readFileSync(target, "utf8")).toBe("theirs\n")
    expect(statSync(target).mode & 0o777).toBe(0o644)
    // a dangling link does not create its target either
    const dangling = join(dir, "dangling.jsonl")
    symlinkSync(join(dir, "nowhere"), dangling)
    expect(refusal(dangling).reason).toBe("symlink")
    expect(existsSync(join(dir, "nowhere"))).toBe(false)
  })

  it("refuses a directory", () => {
    const sub = join(dir, "sub")
    mkdirSync(sub)
    expect(refusal(sub).reason).toBe("not-regular")
  })

  it("refuses a FIFO without blocking, with and without a reader", () => {
    const fifo = join(dir, "audit.fifo")
    expect(spawnSync("mkfifo", [fifo]).status).toBe(0)
    // a child process, so that an opening that blocks is killed by the timeout instead of hanging the tests
    const module = resolve(dirname(fileURLToPath(import.meta.url)), "../src/PrivateFile.ts")
    const script = `
      const { openSync, constants } = require("node:fs")
      import(${JSON.stringify(module)}).then((PrivateFile) => {
        const outcomes = []
        for (const withReader of [false, true]) {
          const reader = withReader ? openSync(${JSON.stringify(fifo)}, constants.O_RDONLY | constants.O_NONBLOCK) : undefined
          try {
            PrivateFile.openAppend(${JSON.stringify(fifo)})
            outcomes.push("opened")
          } catch (error) {
            outcomes.push(error.reason)
          }
        }
        console.log(JSON.stringify(outcomes))
        process.exit(0)
      })
    `
    const child = spawnSync(process.execPath, ["--import", "tsx", "-e", script], {
      cwd: resolve(dirname(fileURLToPath(import.meta.url)), "../../.."),
      timeout: 20_000,
      encoding: "utf8"
    })
    expect(child.signal, child.stderr).toBeNull()
    expect(JSON.parse(child.stdout.trim())).toEqual(["not-regular", "not-regular"])
  })

  it("refuses a hard-linked file", () => {
    const path = join(dir, "linked.jsonl")
    writeFileSync(path, "")
    chmodSync(path, 0o600)
    linkSync(path, join(dir, "elsewhere"))
    const refused = refusal(path)
    expect(refused.reason).toBe("hard-linked")
    expect(refused.message).toMatch(/has 2 links/)
  })

  it.skipIf(!ROOT)("refuses a file another user owns (needs root to chown; skipped otherwise)", () => {
    const path = join(dir, "planted.jsonl")
    writeFileSync(path, "")
    chmodSync(path, 0o600)
    chownSync(path, 65534, 65534)
    const refused = refusal(path)
    expect(refused.reason).toBe("other-owner")
    expect(refused.message).toMatch(/belongs to another user \(uid 65534/)
    expect(statSync(path).uid).toBe(65534)
    expect(readFileSync(path, "utf8")).toBe("")
  })

  it("says what the file system said when it cannot open", () => {
    const refused = refusal(join(dir, "missing", "audit.jsonl"))
    expect(refused.reason).toBe("io")
    expect(refused.message).toMatch(/cannot be opened: ENOENT/)
  })
})
