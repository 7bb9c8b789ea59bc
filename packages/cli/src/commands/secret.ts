/**
 * `secretgate secret create|list|get|update|delete`: manage secrets in any store.
 *
 * @since 0.1.0
 */
import { Args, Command, Options } from "@effect/cli"
import { Effect, Option } from "effect"
import { find, withSecrets } from "../Backend.js"
import * as Output from "../Output.js"
import * as Store from "../Store.js"
import * as Value from "../Value.js"

const hosts = Options.text("host").pipe(
  Options.repeated,
  Options.withDescription("A host the value may be sent to (api.example.com, *.example.com); repeat for more")
)
const description = Options.text("description").pipe(Options.optional, Options.withDescription("A description"))
const idOrName = Args.text({ name: "id-or-name" }).pipe(Args.withDescription("The secret's id, or its name"))

const create = Command.make(
  "create",
  { ...Store.options, name: Args.text({ name: "name" }), hosts, description, valueFile: Value.valueFile, json: Output.json },
  (args) =>
    Effect.gen(function*() {
      if (args.hosts.length === 0) {
        yield* Output.note(
          `warning: ${args.name} has no --host: an egress told --unrestricted allow substitutes it for EVERY host, attackers' included; by default it substitutes it nowhere`
        )
      }
      const value = yield* Value.read(args.valueFile, args.name)
      const created = yield* withSecrets(args, (secrets, org) =>
        secrets.create(org, {
          name: args.name,
          value,
          hosts: args.hosts,
          ...(Option.isSome(args.description) ? { description: args.description.value } : {})
        }))
      yield* Output.secret(created, args.json)
    })
).pipe(Command.withDescription(
  "Create a secret; its value is read from standard input or --value-file, never from an argument.\n" +
    "Example: printf %s \"$TOKEN\" | secretgate secret create github --host api.github.com"
))

const list = Command.make(
  "list",
  { ...Store.options, json: Output.json },
  (args) => Effect.flatMap(withSecrets(args, (secrets, org) => secrets.list(org)), (all) => Output.secrets(all, args.json))
).pipe(Command.withDescription("List the organization's secrets (never their values). Example: secretgate secret list --json"))

const get = Command.make(
  "get",
  { ...Store.options, idOrName, json: Output.json },
  (args) => Effect.flatMap(withSecrets(args, (secrets, org) => find(secrets, org, args.idOrName)), (one) => Output.secret(one, args.json))
).pipe(Command.withDescription("Show one secret (never its value). Example: secretgate secret get github"))

const update = Command.make(
  "update",
  {
    ...Store.options,
    idOrName,
    value: Options.boolean("value").pipe(Options.withDescription("Read a new value from standard input (or a prompt on a terminal)")),
    valueFile: Value.valueFile,
    hosts: hosts.pipe(Options.withDescription("Replace the hosts with these; repeat for more")),
    description,
    clearDescription: Options.boolean("clear-description").pipe(Options.withDescription("Remove the description")),
    json: Output.json
  },
  (args) =>
    Effect.gen(function*() {
      const value = args.value || Option.isSome(args.valueFile) ? Option.some(yield* Value.read(args.valueFile, args.idOrName)) : Option.none()
      const updated = yield* withSecrets(args, (secrets, org) =>
        Effect.flatMap(find(secrets, org, args.idOrName), (secret) =>
          secrets.update(org, secret.id, {
            ...(Option.isSome(value) ? { value: value.value } : {}),
            ...(args.hosts.length > 0 ? { hosts: args.hosts } : {}),
            ...(Option.isSome(args.description) ? { description: args.description.value } : args.clearDescription ? { description: null } : {})
          })))
      yield* Output.secret(updated, args.json)
    })
).pipe(Command.withDescription(
  "Update a secret: a new value (--value reads standard input, or --value-file), hosts, description; the placeholder stays.\n" +
    "Example: printf %s \"$NEW_TOKEN\" | secretgate secret update github --value"
))

const remove = Command.make(
  "delete",
  { ...Store.options, idOrName },
  (args) =>
    Effect.flatMap(
      withSecrets(args, (secrets, org) => Effect.flatMap(find(secrets, org, args.idOrName), (secret) => Effect.as(secrets.delete(org, secret.id), secret))),
      (secret) => Output.note(`deleted ${secret.name} (${secret.id})`)
    )
).pipe(Command.withDescription("Delete a secret; a secret created again under its name gets a new placeholder. Example: secretgate secret delete github"))

/**
 * @since 0.1.0
 */
export const command = Command.make("secret").pipe(
  Command.withDescription("Manage secrets: create, list, get, update, delete"),
  Command.withSubcommands([create, list, get, update, remove])
)
