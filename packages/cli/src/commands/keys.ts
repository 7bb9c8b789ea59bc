/**
 * `secretgate keys list|rotate|reseal|retire`: the encryption keys of a filesystem store or a
 * PostgreSQL store.
 *
 * Progress is a bar on a terminal and a line per step otherwise. A filesystem store is read while
 * the work runs (records sealed with the current key out of all); the SQL store reports after each
 * batch it re-seals.
 *
 * @since 0.1.0
 */
import { Args, Command } from "@effect/cli"
import type { KeyRing, StoreError } from "@secretgate/core"
import type { FileSystemSecretStore } from "@secretgate/filesystem"
import type { SqlSecretStore } from "@secretgate/sql"
import { Console, Duration, Effect, Fiber, Schedule } from "effect"
import { CliFailure } from "../CliFailure.js"
import * as Output from "../Output.js"
import * as Store from "../Store.js"
import type { StoreArgs } from "../Backend.js"

/** One key of a store, as both backends report it. */
type KeyStatus = FileSystemSecretStore.KeyStatus

/** What the commands need of a store's key management, whichever the backend. */
interface KeyStore {
  readonly keys: Effect.Effect<ReadonlyArray<KeyStatus>, StoreError>
  /** Re-seals every record not sealed with the current key, drawing progress under `label`. */
  readonly reseal: (label: string) => Effect.Effect<number, StoreError>
  readonly rotate: (label: string) => Effect.Effect<KeyStatus, KeyRing.KeyManagementError | StoreError | CliFailure>
  readonly retire: (keyId: string) => Effect.Effect<void, KeyRing.KeyManagementError | StoreError>
}

const fileSystemKeys = (store: FileSystemSecretStore.FileSystemSecretStore): KeyStore => {
  const polled = <A, E>(label: string, work: Effect.Effect<A, E>) =>
    withProgress(label, (show) =>
      Effect.gen(function*() {
        // the share of records sealed with the current key, read while the work runs
        const draw = Effect.flatMap(Effect.either(store.keys), (result) =>
          Effect.sync(() => {
            if (result._tag === "Left") return
            show(result.right.find((key) => key.current)?.records ?? 0, result.right.reduce((sum, key) => sum + key.records, 0))
          }))
        const drawing = yield* Effect.fork(Effect.repeat(draw, Schedule.spaced(Duration.millis(200))))
        const result = yield* Effect.ensuring(work, Fiber.interrupt(drawing))
        yield* draw
        return result
      }))
  return {
    keys: store.keys,
    reseal: (label) => polled(label, store.reseal),
    rotate: (label) => polled(label, store.rotateKey),
    retire: store.retireKey
  }
}

const sqlKeys = (store: SqlSecretStore.SqlSecretStore): KeyStore => ({
  keys: store.keys,
  reseal: (label) =>
    withProgress(label, (show) => store.reseal({ onProgress: ({ resealed, total }) => show(resealed, total) })),
  rotate: () =>
    Effect.fail(
      CliFailure.usage(
        "a PostgreSQL store's keys come from configuration: put the new key last in SECRETGATE_KEY (id:base64,id:base64, oldest first), " +
          "restart the servers with it, then run secretgate keys reseal and secretgate keys retire <old-id>"
      )
    ),
  retire: store.retireKey
})

const withKeyStore = <A, E>(args: StoreArgs, work: (store: KeyStore) => Effect.Effect<A, E>): Effect.Effect<A, E | CliFailure | unknown> =>
  Effect.gen(function*() {
    const location = yield* Store.parse(args.store, args.schema)
    if (location._tag === "Directory") {
      const layer = yield* Store.layer(location)
      const { FileSystemSecretStore } = yield* Effect.promise(() => import("@secretgate/filesystem"))
      return yield* Effect.flatMap(FileSystemSecretStore.FileSystemSecretStore, (store) => work(fileSystemKeys(store))).pipe(
        Effect.provide(layer as never),
        Effect.scoped
      ) as Effect.Effect<A, E>
    }
    if (location._tag === "Postgres") {
      const layer = yield* Store.layer(location)
      const { SqlSecretStore } = yield* Effect.promise(() => import("@secretgate/sql"))
      return yield* Effect.flatMap(SqlSecretStore.SqlSecretStore, (store) => work(sqlKeys(store))).pipe(
        Effect.provide(layer as never),
        Effect.scoped
      ) as Effect.Effect<A, E>
    }
    return yield* CliFailure.usage(
      `keys: ${args.store} is not a filesystem store nor a PostgreSQL one; key management works on a store directory or a postgres:// store`
    )
  })

const statusRows = (keys: ReadonlyArray<KeyStatus>) =>
  keys.map((key) => [key.id, key.current ? "yes" : "", String(key.records), key.held ? "yes" : "no"])

const list = Command.make("list", { ...Store.options, json: Output.json }, (args) =>
  withKeyStore(args, (store) =>
    Effect.flatMap(store.keys, (keys) =>
      Console.log(args.json ? JSON.stringify(keys, null, 2) : Output.table(["KEY", "CURRENT", "RECORDS", "HELD"], statusRows(keys))))))
  .pipe(Command.withDescription(
    "The store's keys and how many records each seals.\n" +
      "Example: secretgate keys list --store /var/lib/secretgate   (or --store postgres://db.internal/secrets)"
  ))

/**
 * Runs `work`, which reports progress through `show(done, total)`: a bar redrawn in place on a
 * terminal, a line per change otherwise (on stderr).
 */
const withProgress = <A, E>(label: string, work: (show: (done: number, total: number) => void) => Effect.Effect<A, E>) =>
  Effect.suspend(() => {
    const terminal = process.stderr.isTTY === true
    let last = ""
    const show = (done: number, total: number) => {
      const line = progressLine(label, done, total, terminal)
      if (line === last) return
      last = line
      if (terminal) process.stderr.write(`\r${line}`)
      else process.stderr.write(`${line}\n`)
    }
    return Effect.ensuring(
      work(show),
      Effect.sync(() => {
        if (terminal && last !== "") process.stderr.write("\n")
      })
    )
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
    Effect.flatMap(store.rotate("re-sealing"), (key) =>
      Output.note(`new current key ${key.id}; retire the old one with: secretgate keys retire <id>`))))
  .pipe(Command.withDescription(
    "Add a new key to a filesystem store's generated key file, make it current, and re-seal every record with it\n" +
      "(a PostgreSQL store's keys come from SECRETGATE_KEY: add the key there, then run reseal).\n" +
      "Example: secretgate keys rotate --store /var/lib/secretgate"
  ))

const reseal = Command.make("reseal", { ...Store.options }, (args) =>
  withKeyStore(args, (store) =>
    Effect.flatMap(store.reseal("re-sealing"), (count) => Output.note(`re-sealed ${count} record(s) with the current key`))))
  .pipe(Command.withDescription(
    "Re-seal every record not sealed with the current key (after adding a key last to SECRETGATE_KEY, id:base64,id:base64); safe to re-run.\n" +
      "Example: SECRETGATE_KEY=old:…,new:… secretgate keys reseal --store postgres://db.internal/secrets"
  ))

const retire = Command.make("retire", { ...Store.options, keyId: Args.text({ name: "key-id" }) }, (args) =>
  withKeyStore(args, (store) => Effect.zipRight(store.retire(args.keyId), Output.note(`retired key ${args.keyId}`))))
  .pipe(Command.withDescription(
    "Forget a key no record uses any more (refused while one does, or for the current key). Example: secretgate keys retire primary --store /var/lib/secretgate"
  ))

/**
 * @since 0.1.0
 */
export const command = Command.make("keys").pipe(
  Command.withDescription("A filesystem or PostgreSQL store's encryption keys: list, rotate, reseal, retire"),
  Command.withSubcommands([list, rotate, reseal, retire])
)
