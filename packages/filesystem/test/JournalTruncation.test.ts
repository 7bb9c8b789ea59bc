import { describe, expect, it } from "@effect/vitest"
import { KeyRing, Secrets } from "@secretgate/core"
import { Effect, Redacted } from "effect"
import { execFileSync } from "node:child_process"
import { statSync } from "node:fs"
import * as Path from "node:path"
import { type Session, startSession, tempStore, withStore } from "./support.js"

const ORG = "acme"

/** `truncate -s <size> <journal>`, as an operator's tool (or logrotate's copytruncate) does it. */
const truncateJournal = (directory: string, size: number) =>
  execFileSync("truncate", ["-s", String(size), Path.join(directory, "journal")])

const journalSize = (directory: string) => statSync(Path.join(directory, "journal")).size

/** Creates the store, runs `body` with two processes holding it open, and reopens it to list. */
const withTwoProcesses = (body: (directory: string, a: Session, b: Session) => Promise<void>) =>
  Effect.gen(function*() {
    const directory = tempStore()
    const key = Redacted.value(KeyRing.keyToBase64(KeyRing.generateKey()))
    yield* withStore({ directory, key: Redacted.make(key) }, Effect.void)
    yield* Effect.promise(async () => {
      const [a, b] = await Promise.all([startSession(directory, ORG, key), startSession(directory, ORG, key)])
      try {
        await body(directory, a, b)
      } finally {
        await Promise.all([a.quit(), b.quit()])
      }
    })
    // a fresh open (every record file read) agrees, and listing does not fail over a duplicate
    return yield* withStore(
      { directory, key: Redacted.make(key) },
      Effect.map(Effect.flatMap(Secrets.Secrets, (s) => s.list(ORG)), (all) => all.map((secret) => secret.name).sort())
    )
  })

describe("a journal shortened in place while two processes hold the store open", () => {
  it.live("below the writer's position: the writer starts a new generation, the other process sees every write", () =>
    Effect.gen(function*() {
      const names = yield* withTwoProcesses(async (directory, a, b) => {
        for (let i = 0; i < 5; i++) expect(await a.ask(`create a${i} v`)).toEqual({ ok: `a${i}` })
        expect(await b.ask("list")).toEqual({ ok: ["a0", "a1", "a2", "a3", "a4"] })
        const size = journalSize(directory)
        // keep the header and two writes' lines (B and C of 39 bytes each): the cut is at a line boundary
        truncateJournal(directory, size - 3 * 78)
        expect(await a.ask("create dup v")).toEqual({ ok: "dup" })
        // enough writes that a process resuming at its old offset would find lines there again
        for (let i = 0; i < 10; i++) expect(await a.ask(`create f${i} v`)).toEqual({ ok: `f${i}` })
        expect(journalSize(directory)).toBeGreaterThan(size)
        const again = await b.ask("create dup other")
        expect(again.error).toBe("SecretNameTaken")
        expect((await b.ask("list")).ok).toEqual(expect.arrayContaining(["a0", "a4", "dup", "f0", "f9"]))
        expect(await b.ask("get dup")).toEqual({ ok: "dup" })
      })
      expect(names).toEqual(["a0", "a1", "a2", "a3", "a4", "dup", ...Array.from({ length: 10 }, (_, i) => `f${i}`)].sort())
    }), 60_000)

  it.live("above a process that was behind: its next write notices before writing, so a name cut from the journal stays taken", () =>
    Effect.gen(function*() {
      const names = yield* withTwoProcesses(async (directory, a, b) => {
        expect(await a.ask("create a0 v")).toEqual({ ok: "a0" })
        expect(await b.ask("list")).toEqual({ ok: ["a0"] })
        const behind = journalSize(directory) // where b is in the journal
        expect(await a.ask("create dup v")).toEqual({ ok: "dup" })
        for (let i = 1; i < 5; i++) expect(await a.ask(`create a${i} v`)).toEqual({ ok: `a${i}` })
        // cut exactly where b stopped reading: what b has not read yet is gone, b's own offset is intact
        truncateJournal(directory, behind)
        expect((await b.ask("create dup other")).error).toBe("SecretNameTaken")
        expect((await b.ask("list")).ok).toEqual(["a0", "a1", "a2", "a3", "a4", "dup"])
        expect((await a.ask("create dup again")).error).toBe("SecretNameTaken")
      })
      expect(names).toEqual(["a0", "a1", "a2", "a3", "a4", "dup"])
    }), 60_000)

  it.live("emptied (copytruncate) and then written by both: nothing lost, names unique", () =>
    Effect.gen(function*() {
      const names = yield* withTwoProcesses(async (directory, a, b) => {
        for (let i = 0; i < 3; i++) expect(await a.ask(`create a${i} v`)).toEqual({ ok: `a${i}` })
        expect((await b.ask("list")).ok).toEqual(["a0", "a1", "a2"])
        truncateJournal(directory, 0)
        expect(await b.ask("create b0 v")).toEqual({ ok: "b0" })
        expect((await a.ask("create b0 other")).error).toBe("SecretNameTaken")
        expect((await a.ask("list")).ok).toEqual(["a0", "a1", "a2", "b0"])
      })
      expect(names).toEqual(["a0", "a1", "a2", "b0"])
    }), 60_000)
})
