/**
 * The leak suite: a secret's value, once given, never comes back out of anything but the
 * egress resolver's `Redacted` — not in results, errors, logs, `inspect`, `JSON` or `String`.
 */
import { Effect, Layer, Option, Redacted, Runtime } from "effect"
import { Buffer } from "node:buffer"
import { inspect } from "node:util"
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest"
import { MemorySecretStore } from "../../memory/src/index.js"
import * as KeyRing from "../src/KeyRing.js"
import * as SecretCipher from "../src/SecretCipher.js"
import { InvalidSecretInput, QuotaExceeded, SecretNameTaken, SecretNotFound } from "../src/SecretError.js"
import { Secretgate } from "../src/Secretgate.js"
import * as Secrets from "../src/Secrets.js"
import * as SecretStore from "../src/SecretStore.js"
import { newOrganization, rejection } from "./support/gate.js"

const MARK = globalThis.crypto.randomUUID().replaceAll("-", "")
const VALUE = `sk-live-CANARY-${MARK}`
const NEW_VALUE = `sk-live-ROTATED-${MARK}`
/** Every form of the values that must never be shown. */
const FORBIDDEN = [VALUE, NEW_VALUE, MARK, Buffer.from(VALUE).toString("base64"), Buffer.from(NEW_VALUE).toString("base64")]

/** Every way a value could be turned into text by a careless caller or logger. */
const renderings = (thing: unknown): Array<string> => {
  const shown = [
    inspect(thing, { depth: Infinity }),
    inspect(thing, { depth: Infinity, showHidden: true, getters: true }),
    String(thing),
    `${thing as string}`
  ]
  try {
    shown.push(JSON.stringify(thing) ?? "")
  } catch {
    // a cycle: inspect covers it
  }
  if (thing instanceof Error) shown.push(thing.message, thing.stack ?? "", thing.toString())
  return shown
}

const expectNoValue = (thing: unknown, what: string) => {
  for (const text of renderings(thing)) {
    for (const forbidden of FORBIDDEN) {
      if (text.includes(forbidden)) expect.fail(`${what} shows the value:\n${text}`)
    }
  }
}

/** The error a rejected facade call throws: the typed class itself, never a FiberFailure. */
const typedRejection = async <E>(promise: Promise<unknown>, type: abstract new(...args: never) => E): Promise<E> => {
  const error = await rejection(promise)
  expect(Runtime.isFiberFailure(error)).toBe(false)
  expect(error).toBeInstanceOf(type)
  expect(Object.getPrototypeOf(error)).toBe(type.prototype)
  expect(error).toBeInstanceOf(Error)
  return error as E
}

// Everything written to the console or the process streams while a test runs.
let output: Array<string> = []
beforeEach(() => {
  output = []
  const record = (...args: Array<unknown>) => {
    output.push(args.map((arg) => (typeof arg === "string" ? arg : inspect(arg, { depth: Infinity }))).join(" "))
  }
  for (const method of ["log", "info", "warn", "error", "debug", "trace"] as const) {
    vi.spyOn(console, method).mockImplementation(record)
  }
  for (const stream of [process.stdout, process.stderr]) {
    const write = stream.write.bind(stream)
    vi.spyOn(stream, "write").mockImplementation(((chunk: unknown, ...rest: Array<never>) => {
      record(Buffer.isBuffer(chunk) ? chunk.toString("utf8") : chunk)
      return write(chunk as string, ...rest)
    }) as typeof stream.write)
  }
})
afterEach(() => {
  vi.restoreAllMocks()
  for (const line of output) {
    for (const forbidden of FORBIDDEN) expect(line).not.toContain(forbidden)
  }
})

/** A gate over a memory store the test can also look into. */
const setup = async (options: Secrets.Options = {}) => {
  const store = MemorySecretStore.make()
  const layer = Secrets.layer(options).pipe(
    Layer.provide(Layer.succeed(SecretStore.SecretStore, store)),
    Layer.provide(SecretCipher.layer(KeyRing.ephemeral()))
  )
  const organizationId = newOrganization()
  const gate = new Secretgate({ layer, organizationId })
  const secret = await gate.secret.create({ name: "canary", value: VALUE, description: "leak test", hosts: ["api.example.com"] })
  return { gate, store, organizationId, secret, layer }
}

/** Gates opened (or tracked) inside a `describe`, each disposed after its test. */
const gatesDisposedAfterEach = () => {
  const gates: Array<Secretgate> = []
  afterEach(async () => {
    await Promise.all(gates.splice(0).map((gate) => gate.dispose()))
  })
  return {
    open: async (options: Secrets.Options = {}) => {
      const context = await setup(options)
      gates.push(context.gate)
      return context
    },
    track: (gate: Secretgate) => {
      gates.push(gate)
      return gate
    }
  }
}

describe("the value never shows", () => {
  const { open } = gatesDisposedAfterEach()

  it("in any facade result", async () => {
    const { gate, secret } = await open()
    expectNoValue(secret, "create")
    expect(Object.keys(secret)).not.toContain("value")
    expectNoValue(await gate.secret.get(secret.id), "get")
    expectNoValue(await gate.secret.list(), "list")
    expectNoValue(await gate.secret.listPaginated(), "listPaginated")
    expectNoValue(await gate.secret.listPaginated({ name: "canary", sort: "name", order: "asc", limit: 1 }), "listPaginated by name")
    const updated = await gate.secret.update(secret.id, { value: NEW_VALUE })
    expectNoValue(updated, "update of the value")
    expectNoValue(await gate.secret.update(secret.id, { value: NEW_VALUE, hosts: ["*.example.com"], description: null }), "update of everything")
    const mount = await gate.mount({ API_KEY: "canary" })
    expectNoValue(mount, "mount")
    expectNoValue(await gate.resolver(mount), "resolver")
    expectNoValue(await gate.secret.delete(secret.id), "delete")
  })

  it("in the client itself, whatever it holds", async () => {
    const { gate } = await open()
    await gate.mount({ API_KEY: "canary" })
    expectNoValue(gate, "the Secretgate instance")
    expectNoValue(await gate.runtime.runtime(), "its runtime")
  })

  it("in what the store holds: only the sealed value", async () => {
    const { store, organizationId } = await open()
    const listed = await Effect.runPromise(store.listAll(organizationId))
    expect(listed.length).toBe(1)
    const record = Option.getOrThrow(await Effect.runPromise(store.findById(organizationId, listed[0]!.id)))
    expectNoValue([listed, record], "the stored records")
    expect(Object.keys(record.sealed).sort()).toEqual(["ciphertext", "keyId", "nonce"])
  })

  it("in the resolver's resolved secrets, where the value is Redacted", async () => {
    const { gate, secret } = await open()
    const resolver = await gate.resolver(await gate.mount({ API_KEY: "canary" }))
    const current = await resolver.current()
    expectNoValue(current, "the resolved map")
    const resolved = current.get(secret.placeholder)!
    expectNoValue(resolved, "a resolved secret")
    expect(Redacted.isRedacted(resolved.value)).toBe(true)
    expectNoValue(resolved.value, "the Redacted value")
    expect(String(resolved.value)).toBe("<redacted>")
    expect(`${resolved.value}`).toBe("<redacted>")
    expect(JSON.stringify(resolved.value)).toBe(`"<redacted>"`)
    expect(inspect(resolved.value)).toBe("<redacted>")
    expect(JSON.stringify(resolved)).toContain(`"value":"<redacted>"`)
    expectNoValue([...current.values()], "the resolved list")
    // and yet it is there for egress
    expect(Redacted.value(resolved.value)).toBe(VALUE)
  })

  it("in the Secrets service's results over the Effect API", async () => {
    const { gate, organizationId, secret } = await open()
    const all = await gate.run(Effect.flatMap(Secrets.Secrets, (s) => s.list(organizationId)))
    expectNoValue(all, "Secrets.list")
    const resolved = await gate.run(Effect.flatMap(Secrets.Secrets, (s) => s.resolve(organizationId, [secret.placeholder])))
    expectNoValue(resolved, "Secrets.resolve")
  })
})

describe("no error shows the value, and errors are the typed classes themselves", () => {
  const { open, track } = gatesDisposedAfterEach()
  const tooLong = VALUE + "x".repeat(64 * 1024)

  const badCreates: ReadonlyArray<readonly [string, Record<string, unknown>, string]> = [
    ["a bad name", { name: "9 lives", value: VALUE }, "name"],
    ["an empty name", { name: "", value: VALUE }, "name"],
    ["a missing name", { value: VALUE }, "name"],
    ["a name that is not a string", { name: 42, value: VALUE }, "name"],
    ["a too-long name", { name: "n".repeat(256), value: VALUE }, "name"],
    ["a value over 64 KiB", { name: "big", value: tooLong }, "value"],
    ["a value in an array", { name: "arr", value: [VALUE] }, "value"],
    ["a value in an object", { name: "obj", value: { secret: VALUE } }, "value"],
    ["a value that is a boxed string", { name: "boxed", value: new String(VALUE) }, "value"],
    ["a host with a port", { name: "h", value: VALUE, hosts: ["api.example.com:443"] }, "hosts[0]"],
    ["a host with a scheme", { name: "h", value: VALUE, hosts: ["ok.example.com", "https://api.example.com"] }, "hosts[1]"],
    ["a host with a path", { name: "h", value: VALUE, hosts: ["api.example.com/v1"] }, "hosts[0]"],
    ["an IP host", { name: "h", value: VALUE, hosts: ["10.0.0.1"] }, "hosts[0]"],
    ["a wildcard over a single label", { name: "h", value: VALUE, hosts: ["*.com"] }, "hosts[0]"],
    ["a lone wildcard", { name: "h", value: VALUE, hosts: ["*"] }, "hosts[0]"],
    ["a host that is not a string", { name: "h", value: VALUE, hosts: [7] }, "hosts[0]"],
    ["hosts that are not an array", { name: "h", value: VALUE, hosts: "api.example.com" }, "hosts"],
    ["101 hosts", { name: "h", value: VALUE, hosts: Array.from({ length: 101 }, (_, i) => `h${i}.example.com`) }, "hosts"],
    ["a too-long description", { name: "d", value: VALUE, description: "d".repeat(1025) }, "description"],
    ["a description that is not a string", { name: "d", value: VALUE, description: 5 }, "description"]
  ]

  it.each(badCreates)("create with %s", async (_, params, field) => {
    const { gate } = await open()
    const error = await typedRejection(gate.secret.create(params as never), InvalidSecretInput)
    expect(error.field).toBe(field)
    expectNoValue(error, "the error")
    expect((await gate.secret.list()).length).toBe(1)
  })

  it("create with a taken name while the value is given", async () => {
    const { gate } = await open()
    const error = await typedRejection(gate.secret.create({ name: "canary", value: VALUE }), SecretNameTaken)
    expectNoValue(error, "the error")
    const again = await typedRejection(gate.secret.create({ name: "canary", value: NEW_VALUE, hosts: ["a.example.com"] }), SecretNameTaken)
    expectNoValue(again, "the error")
  })

  it("create over the quota while the value is given", async () => {
    const { gate } = await open({ quota: 1 })
    const error = await typedRejection(gate.secret.create({ name: "second", value: VALUE }), QuotaExceeded)
    expectNoValue(error, "the error")
  })

  const badUpdates: ReadonlyArray<readonly [string, Record<string, unknown>, string]> = [
    ["a bad host next to a value", { value: NEW_VALUE, hosts: ["api.example.com:8443"] }, "hosts[0]"],
    ["bad hosts next to a value", { value: NEW_VALUE, hosts: "nope" }, "hosts"],
    ["null hosts next to a value", { value: NEW_VALUE, hosts: null }, "hosts"],
    ["a value over 64 KiB", { value: tooLong }, "value"],
    ["a value in an array", { value: [NEW_VALUE] }, "value"],
    ["a value in an object", { value: { secret: NEW_VALUE } }, "value"],
    ["an empty value", { value: "" }, "value"],
    ["a null value", { value: null }, "value"],
    ["a too-long description next to a value", { value: NEW_VALUE, description: "d".repeat(1025) }, "description"]
  ]

  it.each(badUpdates)("update with %s", async (_, params, field) => {
    const { gate, secret } = await open()
    const error = await typedRejection(gate.secret.update(secret.id, params as never), InvalidSecretInput)
    expect(error.field).toBe(field)
    expectNoValue(error, "the error")
    expect(await gate.secret.get(secret.id)).toEqual(secret)
  })

  it("update of a missing secret, or another organization's, while the value is given", async () => {
    const { gate, secret, layer } = await open()
    expectNoValue(await typedRejection(gate.secret.update("no-such-id", { value: NEW_VALUE }), SecretNotFound), "the error")
    const other = track(new Secretgate({ layer, organizationId: newOrganization() }))
    const error = await typedRejection(other.secret.update(secret.id, { value: NEW_VALUE }), SecretNotFound)
    expectNoValue(error, "the error")
  })

  it("get, delete and mount of missing secrets; a bad mount; a bad query", async () => {
    const { gate } = await open()
    expectNoValue(await typedRejection(gate.secret.get("no-such-id"), SecretNotFound), "get")
    expectNoValue(await typedRejection(gate.secret.delete("no-such-id"), SecretNotFound), "delete")
    expectNoValue(await typedRejection(gate.mount({ A: "canary", B: "missing" }), SecretNotFound), "mount")
    expectNoValue(await typedRejection(gate.mount({ "A-B": "canary" }), InvalidSecretInput), "bad mount")
    expectNoValue(await typedRejection(gate.secret.listPaginated({ cursor: VALUE }), InvalidSecretInput), "bad cursor")
  })

  it("the rejections of the facade are exactly the wire error classes", async () => {
    const { gate, secret } = await open({ quota: 1 })
    const errors = [
      await typedRejection(gate.secret.get("missing"), SecretNotFound),
      await typedRejection(gate.secret.create({ name: "canary", value: VALUE }), SecretNameTaken),
      await typedRejection(gate.secret.create({ name: "x y", value: VALUE }), InvalidSecretInput),
      await typedRejection(gate.secret.create({ name: "other", value: VALUE }), QuotaExceeded),
      await typedRejection(gate.secret.update(secret.id, { hosts: ["*"] }), InvalidSecretInput)
    ]
    expect(errors.map((e) => e._tag)).toEqual([
      "SecretNotFound",
      "SecretNameTaken",
      "InvalidSecretInput",
      "QuotaExceeded",
      "InvalidSecretInput"
    ])
  })
})
