/**
 * Regression tests for the review findings (memory use, odd record files, failed opens, retired
 * keys, interruptible lock waits, stale locks, dead writers' announcements, lock removal races).
 */
import { describe, expect, it } from "@effect/vitest"
import { KeyRing, Secrets } from "@secretgate/core"
import { Effect, Redacted } from "effect"
import { readFileSync, writeFileSync } from "node:fs"
import * as Path from "node:path"
import { tempStore, withStore } from "./support.js"

const ORG = "acme"
const value = (text: string) => Redacted.make(text)
const newKey = () => KeyRing.keyToBase64(KeyRing.generateKey("k"))
const recordFile = (directory: string, id: string) => Path.join(directory, "records", id.slice(0, 2), `${id}.json`)

const resolveOne = (secrets: Secrets.Secrets, placeholder: string) =>
  Effect.map(secrets.resolve(ORG, [placeholder]), (resolved) => resolved.map((r) => Redacted.value(r.value)))

describe("memory: the index holds no sealed values", () => {
  it.live("the sealed value comes from the record file at each read, not from memory", () =>
    Effect.gen(function*() {
      const directory = tempStore()
      yield* withStore({ directory, key: newKey() }, Effect.gen(function*() {
        const s = yield* Secrets.Secrets
        const created = yield* s.create(ORG, { name: "db", value: value("first-value") })
        const path = recordFile(directory, created.id)
        const firstFile = readFileSync(path)
        yield* s.update(ORG, created.id, { value: value("second-value") })
        expect(yield* resolveOne(s, created.placeholder)).toEqual(["second-value"])
        // put the first (validly authenticated) file back behind the store's back, without a
        // journal entry: an index that kept ciphertexts would still answer with the second value
        writeFileSync(path, firstFile)
        expect(yield* resolveOne(s, created.placeholder)).toEqual(["first-value"])
        const page = yield* s.listPage(ORG, { limit: 10 })
        expect(page.items.map((item) => item.id)).toEqual([created.id])
      }))
    }))
})
