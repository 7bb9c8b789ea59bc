/**
 * `secretgate keys list|rotate|reseal|retire`: the filesystem store's encryption keys.
 *
 * Progress is read from the store while the work runs (records sealed with the current key out of
 * all): a bar on a terminal, a line per step otherwise.
 *
 * @since 0.1.0
 */
import { Args, Command } from "@effect/cli"
import type { FileSystemSecretStore } from "@secretgate/filesystem"
import { Console, Duration, Effect, Fiber, Schedule } from "effect"
import { CliFailure } from "../CliFailure.js"
import * as Output from "../Output.js"
import * as Store from "../Store.js"
import type { StoreArgs } from "../Backend.js"

const withKeyStore = <A, E>(args: StoreArgs, work: (store: FileSystemSecretStore.FileSystemSecretStore) => Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const location = yield* Store.parse(args.store)
    if (location._tag !== "Directory") {
      return yield* CliFailure.usage(`keys: ${args.store} is not a filesystem store; key management works on a store directory`)
    }
    const layer = yield* Store.layer(location)
    const { FileSystemSecretStore } = yield* Effect.promise(() => import("@secretgate/filesystem"))
    return yield* Effect.flatMap(FileSystemSecretStore.FileSystemSecretStore, work).pipe(Effect.provide(layer as never), Effect.scoped) as Effect.Effect<A, E>
  })

const statusRows = (keys: ReadonlyArray<FileSystemSecretStore.KeyStatus>) =>
  keys.map((key) => [key.id, key.current ? "yes" : "", String(key.records), key.held ? "yes" : "no"])

const list = Command.make("list", { ...Store.options, json: Output.json }, (args) =>
  withKeyStore(args, (store) =>
    Effect.flatMap(store.keys, (keys) =>
      Console.log(args.json ? JSON.stringify(keys, null, 2) : Output.table(["KEY", "CURRENT", "RECORDS", "HELD"], statusRows(keys))))))
  .pipe(Command.withDescription("The store's keys and how many records each seals. Example: secretgate keys list --store /var/lib/secretgate"))

/** Draws progress while `work` runs, from the share of records sealed with the current key. */
const withProgress = <A, E>(store: FileSystemSecretStore.FileSystemSecretStore, label: string, work: Effect.Effect<A, E>) =>
  Effect.gen(function*() {
    const terminal = process.stderr.isTTY === true
    let last = ""
    const draw = Effect.flatMap(Effect.either(store.keys), (result) =>
      Effect.sync(() => {
        if (result._tag === "Left") return
        const total = result.right.reduce((sum, key) => sum + key.records, 0)
        const done = result.right.find((key) => key.current)?.records ?? 0
        const line = progressLine(label, done, total, terminal)
        if (line === last) return
        last = line
        if (terminal) process.stderr.write(`\r${line}`)
        else process.stderr.write(`${line}\n`)
      }))
    const drawing = yield* Effect.fork(Effect.repeat(draw, Schedule.spaced(Duration.millis(200))))
    const result = yield* Effect.ensuring(work, Fiber.interrupt(drawing))
    yield* draw
    if (terminal) process.stderr.write("\n")
    return result
  })

/**
 * A progress line: a bar on a terminal, plain text otherwise.
 *
 * @since 0.1.0
 */
export const progressLine = (label: string, done: number, total: number, bar: boolean): string => {
  const share = total === 0 ? 1 : done / total
  const percent = `${Math.floor(share * 100)}%`.padStart(4)
  if (!bar) return `${label}: ${done}/${total} records (${percent.trim()})`
  const width = 30
  const filled = Math.round(share * width)
  return `${label} [${"#".repeat(filled)}${"-".repeat(width - filled)}] ${percent} ${done}/${total}`
}

const rotate = Command.make("rotate", { ...Store.options }, (args) =>
  withKeyStore(args, (store) =>
    Effect.flatMap(withProgress(store, "re-sealing", store.rotateKey), (key) =>
      Output.note(`new current key ${key.id}; retire the old one with: secretgate keys retire <id>`))))
  .pipe(Command.withDescription(
    "Add a new key to the store's generated key file, make it current, and re-seal every record with it.\n" +
      "Example: secretgate keys rotate --store /var/lib/secretgate"
  ))

const reseal = Command.make("reseal", { ...Store.options }, (args) =>
  withKeyStore(args, (store) =>
    Effect.flatMap(withProgress(store, "re-sealing", store.reseal), (count) => Output.note(`re-sealed ${count} record(s) with the current key`))))
  .pipe(Command.withDescription(
    "Re-seal every record not sealed with the current key (after adding a key to a configured ring); safe to re-run.\n" +
      "Example: secretgate keys reseal --store /var/lib/secretgate"
  ))

const retire = Command.make("retire", { ...Store.options, keyId: Args.text({ name: "key-id" }) }, (args) =>
  withKeyStore(args, (store) => Effect.zipRight(store.retireKey(args.keyId), Output.note(`retired key ${args.keyId}`))))
  .pipe(Command.withDescription(
    "Forget a key no record uses any more (refused while one does). Example: secretgate keys retire primary --store /var/lib/secretgate"
  ))

/**
 * @since 0.1.0
 */
export const command = Command.make("keys").pipe(
  Command.withDescription("The filesystem store's encryption keys: list, rotate, reseal, retire"),
  Command.withSubcommands([list, rotate, reseal, retire])
)
