import { Effect, Exit } from "effect"
import fc from "fast-check"
import { Buffer } from "node:buffer"
import { describe, expect, it } from "vitest"
import { InvalidSecretInput } from "../src/SecretError.js"
import * as SecretStore from "../src/SecretStore.js"

type Sort = SecretStore.PageQuery["sort"]
type Order = SecretStore.PageQuery["order"]
const SORTS: ReadonlyArray<Sort> = ["name", "createdAt", "updatedAt"]
const ORDERS: ReadonlyArray<Order> = ["asc", "desc"]

const record = (id: string, name: string, createdAt: number, updatedAt = createdAt): SecretStore.SecretRecord => ({
  id,
  organizationId: "org",
  name,
  hosts: [],
  placeholder: `sg_secret_${id}`,
  sealed: { keyId: "k", nonce: "", ciphertext: "" },
  createdAt: new Date(createdAt),
  updatedAt: new Date(updatedAt)
})

const page = (records: Iterable<SecretStore.SecretRecord>, query: Partial<SecretStore.PageQuery>) =>
  Effect.runSync(SecretStore.paginate(records, { ...SecretStore.pageQuery(), ...query }))

const pageFailure = (records: Iterable<SecretStore.SecretRecord>, query: Partial<SecretStore.PageQuery>) => {
  const exit = Effect.runSyncExit(SecretStore.paginate(records, { ...SecretStore.pageQuery(), ...query }))
  if (Exit.isSuccess(exit) || exit.cause._tag !== "Fail") throw new Error("expected a typed failure")
  return exit.cause.error
}

const keyOf = (r: SecretStore.SecretRecord, sort: Sort): string | number =>
  sort === "name" ? r.name : sort === "createdAt" ? r.createdAt.getTime() : r.updatedAt.getTime()

/** The full order a walk must follow: by the sort field, ties by id, both in the query's direction. */
const sorted = (records: ReadonlyArray<SecretStore.SecretRecord>, sort: Sort, order: Order) =>
  [...records].sort((a, b) => {
    const [x, y] = [keyOf(a, sort), keyOf(b, sort)]
    const byKey = x < y ? -1 : x > y ? 1 : a.id < b.id ? -1 : a.id > b.id ? 1 : 0
    return order === "asc" ? byKey : -byKey
  })

/** Every page of a walk, following nextCursor. */
const walk = (records: ReadonlyArray<SecretStore.SecretRecord>, query: Partial<SecretStore.PageQuery>) => {
  const pages: Array<SecretStore.Page<SecretStore.SecretRecord>> = []
  let cursor: string | undefined
  do {
    const next = page(records, { ...query, cursor })
    pages.push(next)
    cursor = next.nextCursor ?? undefined
  } while (cursor !== undefined && pages.length < 1_000)
  return pages
}

// 20 records with many ties: 4 creation times, 3 update times, unique names.
const records = Array.from({ length: 20 }, (_, i) =>
  record(`id-${String((i * 7) % 20).padStart(2, "0")}`, `secret-${String.fromCharCode(97 + ((i * 3) % 20))}`, 1_000 + (i % 4), 5_000 + (i % 3)))

describe("paginate", () => {
  it("fills in the defaults: 100 items, by createdAt, newest first", () => {
    expect(SecretStore.pageQuery()).toEqual({ cursor: undefined, limit: 100, name: undefined, sort: "createdAt", order: "desc" })
    const many = Array.from({ length: 150 }, (_, i) => record(`id-${String(i).padStart(3, "0")}`, `n${i}`, i))
    const first = page(many, {})
    expect(first.items.length).toBe(100)
    expect(first.items[0]!.name).toBe("n149")
    expect(first.total).toBe(150)
    expect(first.nextCursor).not.toBeNull()
  })

  for (const sort of SORTS) {
    for (const order of ORDERS) {
      for (const limit of [1, 3, 7, 20, 21]) {
        it(`walks every item once, in order: sort ${sort}, order ${order}, limit ${limit}`, () => {
          const pages = walk(records, { sort, order, limit })
          const seen = pages.flatMap((p) => p.items.map((r) => r.id))
          expect(seen).toEqual(sorted(records, sort, order).map((r) => r.id))
          for (const p of pages) expect(p.total).toBe(20)
          for (const p of pages.slice(0, -1)) expect(p.items.length).toBe(limit)
          // no empty trailing page: the last page is the one whose nextCursor is null
          expect(pages.at(-1)!.items.length).toBeGreaterThan(0)
          expect(pages.at(-1)!.nextCursor).toBeNull()
          expect(pages.length).toBe(Math.ceil(20 / limit))
        })
      }
    }
  }

  it("breaks ties of the sort field by id, in the query's direction", () => {
    const tied = ["c", "a", "e", "b", "d"].map((id) => record(id, `name-${id}`, 42))
    expect(page(tied, { sort: "createdAt", order: "asc" }).items.map((r) => r.id)).toEqual(["a", "b", "c", "d", "e"])
    expect(page(tied, { sort: "createdAt", order: "desc" }).items.map((r) => r.id)).toEqual(["e", "d", "c", "b", "a"])
    // a cursor in the middle of a tie continues within the tie
    const first = page(tied, { sort: "updatedAt", order: "asc", limit: 2 })
    expect(first.items.map((r) => r.id)).toEqual(["a", "b"])
    const second = page(tied, { sort: "updatedAt", order: "asc", limit: 2, cursor: first.nextCursor! })
    expect(second.items.map((r) => r.id)).toEqual(["c", "d"])
  })

  it("filters by case-insensitive name substring; total counts the matches", () => {
    const named = ["Anthropic-Prod", "anthropic_dev", "github", "OPENAI", "my-ANTHROPIC"].map((name, i) => record(`id-${i}`, name, i))
    const result = page(named, { name: "AnThRoPiC", sort: "name", order: "asc", limit: 2 })
    expect(result.items.map((r) => r.name)).toEqual(["Anthropic-Prod", "anthropic_dev"])
    expect(result.total).toBe(3)
    const rest = page(named, { name: "AnThRoPiC", sort: "name", order: "asc", limit: 2, cursor: result.nextCursor! })
    expect(rest.items.map((r) => r.name)).toEqual(["my-ANTHROPIC"])
    expect(rest.nextCursor).toBeNull()
    expect(page(named, { name: "nothing" })).toEqual({ items: [], total: 0, nextCursor: null })
    expect(page([], {})).toEqual({ items: [], total: 0, nextCursor: null })
  })

  it("continues after a cursor whose own item was deleted", () => {
    const first = page(records, { sort: "name", order: "asc", limit: 5 })
    const last = first.items.at(-1)!
    const remaining = records.filter((r) => r.id !== last.id)
    const second = page(remaining, { sort: "name", order: "asc", limit: 5, cursor: first.nextCursor! })
    expect(second.items.map((r) => r.id)).toEqual(sorted(records, "name", "asc").slice(5, 10).map((r) => r.id))
  })

  it("never skips or repeats an item that exists throughout the walk, whatever is inserted or deleted between pages", () => {
    const recordArb = (prefix: string) =>
      fc.record({
        id: fc.string({ unit: fc.constantFrom("a", "b", "c", "d"), minLength: 1, maxLength: 4 }).map((s) => `${prefix}${s}`),
        name: fc.string({ unit: fc.constantFrom("x", "y", "z"), minLength: 1, maxLength: 3 }),
        createdAt: fc.integer({ min: 0, max: 5 }),
        updatedAt: fc.integer({ min: 0, max: 5 })
      }).map((r) => record(r.id, `${r.name}-${r.id}`, r.createdAt, r.updatedAt))
    const change = fc.oneof(
      fc.record({ insert: recordArb("new-") }),
      fc.record({ delete: fc.nat() })
    )
    fc.assert(
      fc.property(
        fc.uniqueArray(recordArb("old-"), { selector: (r) => r.id, maxLength: 25 }),
        fc.constantFrom(...SORTS),
        fc.constantFrom(...ORDERS),
        fc.integer({ min: 1, max: 6 }),
        fc.array(fc.array(change, { maxLength: 4 }), { maxLength: 30 }),
        (initial, sort, order, limit, changesBetweenPages) => {
          const live = new Map(initial.map((r) => [r.id, r]))
          const deleted = new Set<string>()
          const seen: Array<SecretStore.SecretRecord> = []
          let cursor: string | undefined
          let round = 0
          do {
            const next = page(live.values(), { sort, order, limit, cursor })
            seen.push(...next.items)
            cursor = next.nextCursor ?? undefined
            for (const c of changesBetweenPages[round++] ?? []) {
              if ("insert" in c) {
                // ids are never reused (they are UUIDs): a deleted id does not come back
                if (!live.has(c.insert.id) && !deleted.has(c.insert.id)) live.set(c.insert.id, c.insert)
              } else if (live.size > 0) {
                const victim = [...live.keys()][c.delete % live.size]!
                live.delete(victim)
                deleted.add(victim)
              }
            }
          } while (cursor !== undefined)

          const ids = seen.map((r) => r.id)
          expect(new Set(ids).size).toBe(ids.length) // nothing repeated
          const throughout = initial.filter((r) => !deleted.has(r.id)).map((r) => r.id)
          for (const id of throughout) expect(ids).toContain(id) // nothing skipped
          // and the walk moves in one direction only
          expect(ids).toEqual(sorted(seen, sort, order).map((r) => r.id))
        }
      ),
      { numRuns: 500 }
    )
  })

  describe("cursor", () => {
    const cursorOf = (parts: unknown) => Buffer.from(JSON.stringify(parts)).toString("base64url")
    const real = page(records, { sort: "createdAt", order: "desc", limit: 3 }).nextCursor!

    const expectCursorError = (error: unknown, reason: string) => {
      expect(error).toBeInstanceOf(InvalidSecretInput)
      expect((error as InvalidSecretInput).field).toBe("cursor")
      expect((error as InvalidSecretInput).message).toBe(`cursor: ${reason}`)
    }

    it.each([
      ["garbage", "!!!not a cursor!!!"],
      ["empty", ""],
      ["truncated", real.slice(0, real.length - 5)],
      ["with a character removed from the middle", real.slice(0, 10) + real.slice(11)],
      ["base64 of something else", Buffer.from("hello").toString("base64url")],
      ["a JSON object", cursorOf({ sort: "createdAt", order: "desc", value: 1, id: "x" })],
      ["a JSON string", cursorOf("createdAt")],
      ["a short array", cursorOf(["createdAt", "desc", 1])],
      ["a long array", cursorOf(["createdAt", "desc", 1, "x", "extra"])],
      ["a numeric id", cursorOf(["createdAt", "desc", 1, 7])],
      ["a null sort value", cursorOf(["createdAt", "desc", null, "x"])],
      ["an object sort value", cursorOf(["createdAt", "desc", { valueOf: 1 }, "x"])],
      ["a string sort value for a date sort", cursorOf(["createdAt", "desc", "1001", "x"])],
      ["a number sort value for the name sort", cursorOf(["name", "desc", 5, "x"])]
    ])("rejects a cursor that is %s", (_, cursor) => {
      const sort: Sort = cursor === cursorOf(["name", "desc", 5, "x"]) ? "name" : "createdAt"
      expectCursorError(pageFailure(records, { sort, order: "desc", limit: 3, cursor }), "is not a cursor returned by this API")
    })

    it("rejects a cursor of another sort or order", () => {
      for (const [sort, order] of [["name", "desc"], ["updatedAt", "desc"], ["createdAt", "asc"]] as const) {
        expectCursorError(
          pageFailure(records, { sort, order, limit: 3, cursor: real }),
          "belongs to a different sort or order; start again without a cursor"
        )
      }
    })

    it("accepts the cursor it issued", () => {
      expect(page(records, { sort: "createdAt", order: "desc", limit: 3, cursor: real }).items.length).toBe(3)
    })

    it("is URL-safe, so it goes into a query string as it is", () => {
      for (const sort of SORTS) {
        const cursor = page(records, { sort, order: "asc", limit: 1 }).nextCursor!
        expect(encodeURIComponent(cursor)).toBe(cursor)
      }
    })
  })
})
