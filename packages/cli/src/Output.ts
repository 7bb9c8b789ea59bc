/**
 * The one place that prints results: a table for people, JSON (`--json`) for programs. Never
 * given a value: commands print secrets as the store returns them, which is without one.
 *
 * @since 0.1.0
 */
import { Options } from "@effect/cli"
import type { Secret } from "@secretgate/core"
import { Console, Effect } from "effect"

/**
 * `--json`: print JSON instead of a table.
 *
 * @since 0.1.0
 */
export const json = Options.boolean("json").pipe(Options.withDescription("Print JSON instead of a table"))

/** A secret as printed by `--json`: the API's shape, dates as ISO strings. */
const toJson = (secret: Secret.Secret) => ({
  id: secret.id,
  name: secret.name,
  ...(secret.description === undefined ? {} : { description: secret.description }),
  placeholder: secret.placeholder,
  hosts: secret.hosts,
  createdAt: secret.createdAt.toISOString(),
  updatedAt: secret.updatedAt.toISOString()
})

/**
 * Aligned columns, a header row first.
 *
 * @since 0.1.0
 */
export const table = (header: ReadonlyArray<string>, rows: ReadonlyArray<ReadonlyArray<string>>): string => {
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]?.length ?? 0)))
  const line = (cells: ReadonlyArray<string>) => cells.map((cell, column) => cell.padEnd(widths[column]!)).join("  ").trimEnd()
  return [line(header), ...rows.map(line)].join("\n")
}

const hostsOf = (secret: Secret.Secret) => secret.hosts.length === 0 ? "(any host)" : secret.hosts.join(",")

/**
 * Prints secrets: a table, or a JSON array.
 *
 * @since 0.1.0
 */
export const secrets = (list: ReadonlyArray<Secret.Secret>, asJson: boolean): Effect.Effect<void> =>
  asJson
    ? Console.log(JSON.stringify(list.map(toJson), null, 2))
    : list.length === 0
    ? Console.log("no secrets")
    : Console.log(table(
      ["NAME", "HOSTS", "PLACEHOLDER", "UPDATED", "ID"],
      list.map((secret) => [secret.name, hostsOf(secret), secret.placeholder, secret.updatedAt.toISOString(), secret.id])
    ))

/**
 * Prints one secret: `field  value` lines, or a JSON object.
 *
 * @since 0.1.0
 */
export const secret = (one: Secret.Secret, asJson: boolean): Effect.Effect<void> =>
  asJson
    ? Console.log(JSON.stringify(toJson(one), null, 2))
    : Console.log(table(["FIELD", "VALUE"], [
      ["name", one.name],
      ["id", one.id],
      ["placeholder", one.placeholder],
      ["hosts", hostsOf(one)],
      ...(one.description === undefined ? [] : [["description", one.description]]),
      ["created", one.createdAt.toISOString()],
      ["updated", one.updatedAt.toISOString()]
    ]).split("\n").slice(1).join("\n"))

/**
 * A line for people on stderr (progress, warnings), so stdout stays the result.
 *
 * @since 0.1.0
 */
export const note = (message: string): Effect.Effect<void> => Console.error(message)
