import { Context, Effect, Layer, Redacted } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import { MemorySecretStore } from "../../memory/src/index.js"
import * as Placeholder from "../src/Placeholder.js"
import { InvalidSecretInput, QuotaExceeded, SecretNameTaken, SecretNotFound, StoreUnavailable } from "../src/SecretError.js"
import { Secretgate, SecretService } from "../src/Secretgate.js"
import { Secrets } from "../src/Secrets.js"
import { memoryGate, newOrganization, rejection, sharedBackend } from "./support/gate.js"

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/

const gates: Array<Secretgate> = []
const track = (gate: Secretgate) => {
  gates.push(gate)
  return gate
}
afterEach(async () => {
  await Promise.all(gates.splice(0).map((gate) => gate.dispose()))
})
const gate = (options: MemorySecretStore.Options = {}) => track(memoryGate(options))

/** Polls `check` until it passes; no timing is asserted beyond "eventually". */
const eventually = async (check: () => Promise<void>, attempts = 200) => {
  for (let i = 1; ; i++) {
    try {
      return await check()
    } catch (error) {
      if (i >= attempts) throw error
      await new Promise((resolve) => setTimeout(resolve, 25))
    }
  }
}

type Current = ReadonlyMap<string, { value: Redacted.Redacted<string> }>
const valueOf = async (resolver: { current: () => Current | Promise<Current> }, placeholder: string) => {
  const resolved = (await resolver.current()).get(placeholder)
  return resolved === undefined ? undefined : Redacted.value(resolved.value)
}

describe("Secretgate facade (the seed's SecretService)", () => {
  it("exposes a SecretService on .secret and the organization it acts for", () => {
    const g = track(memoryGate({}, "acme"))
    expect(g.secret).toBeInstanceOf(SecretService)
    expect(g.organizationId).toBe("acme")
  })

  describe("create", () => {
    it("resolves to the secret without its value (the seed's example)", async () => {
      const g = gate()
      const secret = await g.secret.create({ name: "anthropic-prod", value: "sk-ant-...", hosts: ["api.anthropic.com"] })
      expect(`Created secret ${secret.name} with placeholder ${secret.placeholder}`).toMatch(
        /^Created secret anthropic-prod with placeholder sg_secret_[a-z2-7]{32}$/
      )
      expect(Object.keys(secret).sort()).toEqual(["createdAt", "hosts", "id", "name", "placeholder", "updatedAt"])
      expect(secret.id).toMatch(UUID)
      expect(secret.hosts).toEqual(["api.anthropic.com"])
      expect(secret.createdAt).toBeInstanceOf(Date)
      expect(secret.updatedAt).toEqual(secret.createdAt)
    })

    it("normalises hosts, keeps a description, and shows an unrestricted secret as hosts []", async () => {
      const g = gate()
      const restricted = await g.secret.create({
        name: "a",
        value: "v",
        description: "the prod key",
        hosts: ["API.Example.com", "*.bücher.example", "api.example.com"]
      })
      expect(restricted.hosts).toEqual(["api.example.com", "*.xn--bcher-kva.example"])
      expect(restricted.description).toBe("the prod key")
      const open = await g.secret.create({ name: "b", value: "v" })
      expect(open.hosts).toEqual([])
      expect("description" in open).toBe(false)
      const emptyHosts = await g.secret.create({ name: "c", value: "v", hosts: [], description: "" })
      expect(emptyHosts.hosts).toEqual([])
      expect("description" in emptyHosts).toBe(false)
    })

    it("rejects a taken name with SecretNameTaken, names being case-sensitive", async () => {
      const g = gate()
      await g.secret.create({ name: "token", value: "v1" })
      const error = await rejection(g.secret.create({ name: "token", value: "v2" }))
      expect(error).toBeInstanceOf(SecretNameTaken)
      expect((error as SecretNameTaken).message).toBe(`a secret named "token" already exists in this organization`)
      await expect(g.secret.create({ name: "Token", value: "v3" })).resolves.toMatchObject({ name: "Token" })
      expect((await g.secret.list()).map((s) => s.name)).toEqual(["Token", "token"])
    })

    it.each([
      ["a bad name", { name: "9lives", value: "v" }, "name"],
      ["an empty name", { name: "", value: "v" }, "name"],
      ["a missing name", { value: "v" }, "name"],
      ["an empty value", { name: "n", value: "" }, "value"],
      ["a missing value", { name: "n" }, "value"],
      ["a value over 64 KiB", { name: "n", value: "x".repeat(64 * 1024 + 1) }, "value"],
      ["a description over 1,024 characters", { name: "n", value: "v", description: "d".repeat(1025) }, "description"],
      ["a host with a port", { name: "n", value: "v", hosts: ["ok.example.com", "api.example.com:443"] }, "hosts[1]"],
      ["hosts that are not an array", { name: "n", value: "v", hosts: "api.example.com" }, "hosts"],
      ["101 hosts", { name: "n", value: "v", hosts: Array.from({ length: 101 }, (_, i) => `h${i}.example.com`) }, "hosts"],
      ["no object at all", null, "input"]
    ])("rejects %s with InvalidSecretInput naming the field, storing nothing", async (_, params, field) => {
      const g = gate()
      const error = await rejection(g.secret.create(params as never))
      expect(error).toBeInstanceOf(InvalidSecretInput)
      expect((error as InvalidSecretInput).field).toBe(field)
      expect((error as InvalidSecretInput).message.startsWith(field)).toBe(true)
      expect(await g.secret.list()).toEqual([])
    })

    it("says which host is wrong and why", async () => {
      const error = await rejection(gate().secret.create({ name: "n", value: "v", hosts: ["a.example.com", "api.example.com:443"] }))
      expect((error as InvalidSecretInput).message).toBe(`hosts[1] "api.example.com:443": ports are not supported`)
    })

    it("enforces the organization's quota with QuotaExceeded", async () => {
      const g = gate({ quota: 2 })
      await g.secret.create({ name: "a", value: "v" })
      await g.secret.create({ name: "b", value: "v" })
      const error = await rejection(g.secret.create({ name: "c", value: "v" }))
      expect(error).toBeInstanceOf(QuotaExceeded)
      expect((error as QuotaExceeded).limit).toBe(2)
      const [first] = await g.secret.list()
      await g.secret.delete(first!.id)
      await expect(g.secret.create({ name: "c", value: "v" })).resolves.toMatchObject({ name: "c" })
    })
  })

  describe("list, get", () => {
    it("lists every secret sorted by name (the seed's example)", async () => {
      const g = gate()
      for (const name of ["charlie", "alpha", "Bravo"]) await g.secret.create({ name, value: `value-${name}` })
      const secrets = await g.secret.list()
      expect(`Found ${secrets.length} secrets`).toBe("Found 3 secrets")
      expect(secrets.map((s) => s.name)).toEqual(["Bravo", "alpha", "charlie"])
      expect(Array.isArray(secrets)).toBe(true)
    })

    it("gets a secret by id (the seed's example)", async () => {
      const g = gate()
      const created = await g.secret.create({ name: "gh", value: "ghp_x", hosts: ["api.github.com", "*.github.com"] })
      const secret = await g.secret.get(created.id)
      expect(secret).toEqual(created)
      expect(`Secret ${secret.name} can be used on ${secret.hosts.join(", ")}`).toBe(
        "Secret gh can be used on api.github.com, *.github.com"
      )
    })

    it("gets a secret by name; an unknown or malformed name rejects with a typed error", async () => {
      const g = gate()
      const created = await g.secret.create({ name: "gh", value: "ghp_x", hosts: ["api.github.com"] })
      expect(await g.secret.getByName("gh")).toEqual(created)
      expect(await rejection(g.secret.getByName("GH"))).toBeInstanceOf(SecretNotFound)
      const invalid = await rejection(g.secret.getByName("not a name"))
      expect(invalid).toBeInstanceOf(InvalidSecretInput)
    })

    it("rejects an unknown id with SecretNotFound", async () => {
      const error = await rejection(gate().secret.get("secret-id"))
      expect(error).toBeInstanceOf(SecretNotFound)
      expect((error as SecretNotFound).secretId).toBe("secret-id")
      expect((error as SecretNotFound).message).toBe(`secret "secret-id" not found`)
    })
  })

  describe("update", () => {
    it("replaces the value, keeps the placeholder and everything omitted (the seed's example)", async () => {
      const g = gate()
      const created = await g.secret.create({ name: "anthropic", value: "sk-ant-old", description: "d", hosts: ["api.anthropic.com"] })
      const mount = await g.mount({ KEY: "anthropic" })
      const resolver = await g.resolver(mount)
      const updated = await g.secret.update(created.id, { value: "sk-ant-new-value", hosts: ["api.anthropic.com", "*.anthropic.com"] })
      expect(updated.placeholder).toBe(created.placeholder)
      expect(updated.id).toBe(created.id)
      expect(updated.name).toBe("anthropic")
      expect(updated.description).toBe("d")
      expect(updated.hosts).toEqual(["api.anthropic.com", "*.anthropic.com"])
      expect(updated.createdAt).toEqual(created.createdAt)
      expect(updated.updatedAt.getTime()).toBeGreaterThanOrEqual(created.updatedAt.getTime())
      expect(await g.secret.get(created.id)).toEqual(updated)
      expect(await valueOf(resolver, created.placeholder)).toBe("sk-ant-new-value")
    })

    it("leaves the value alone when it is omitted", async () => {
      const g = gate()
      const created = await g.secret.create({ name: "n", value: "keep-me" })
      const resolver = await g.resolver(await g.mount({ N: "n" }))
      await g.secret.update(created.id, { description: "now described" })
      expect(await valueOf(resolver, created.placeholder)).toBe("keep-me")
      expect((await g.secret.get(created.id)).description).toBe("now described")
    })

    it("clears the description with null and the host restriction with []", async () => {
      const g = gate()
      const created = await g.secret.create({ name: "n", value: "v", description: "d", hosts: ["a.example.com"] })
      const updated = await g.secret.update(created.id, { description: null, hosts: [] })
      expect("description" in updated).toBe(false)
      expect(updated.hosts).toEqual([])
    })

    it.each([
      ["a null value", { value: null }, "value"],
      ["an empty value", { value: "" }, "value"],
      ["a value over 64 KiB", { value: "x".repeat(64 * 1024 + 1) }, "value"],
      ["null hosts", { hosts: null }, "hosts"],
      ["a bad host", { hosts: ["*"] }, "hosts[0]"],
      ["a bad host next to a new value", { value: "new", hosts: ["ok.example.com", "https://x.example.com"] }, "hosts[1]"],
      ["a description over 1,024 characters", { description: "d".repeat(1025) }, "description"]
    ])("rejects %s with InvalidSecretInput and changes nothing", async (_, params, field) => {
      const g = gate()
      const created = await g.secret.create({ name: "n", value: "original", hosts: ["a.example.com"] })
      const resolver = await g.resolver(await g.mount({ N: "n" }))
      const error = await rejection(g.secret.update(created.id, params as never))
      expect(error).toBeInstanceOf(InvalidSecretInput)
      expect((error as InvalidSecretInput).field).toBe(field)
      expect(await g.secret.get(created.id)).toEqual(created)
      expect(await valueOf(resolver, created.placeholder)).toBe("original")
    })

    it("rejects an unknown id with SecretNotFound", async () => {
      const error = await rejection(gate().secret.update("secret-id", { value: "v" }))
      expect(error).toBeInstanceOf(SecretNotFound)
    })
  })

  describe("delete", () => {
    it("deletes; then get, update and delete say not found (the seed's example)", async () => {
      const g = gate()
      const created = await g.secret.create({ name: "n", value: "v" })
      await expect(g.secret.delete(created.id)).resolves.toBeUndefined()
      expect(await rejection(g.secret.get(created.id))).toBeInstanceOf(SecretNotFound)
      expect(await rejection(g.secret.update(created.id, { value: "x" }))).toBeInstanceOf(SecretNotFound)
      expect(await rejection(g.secret.delete(created.id))).toBeInstanceOf(SecretNotFound)
      expect(await g.secret.list()).toEqual([])
    })

    it("gives a re-created secret of the same name a new id and a new placeholder", async () => {
      const g = gate()
      const first = await g.secret.create({ name: "n", value: "v" })
      await g.secret.delete(first.id)
      const second = await g.secret.create({ name: "n", value: "v" })
      expect(second.id).not.toBe(first.id)
      expect(second.placeholder).not.toBe(first.placeholder)
    })
  })

  describe("listPaginated", () => {
    it("walks pages with a cursor, sorted and filtered as asked", async () => {
      const g = gate()
      const names = ["delta", "alpha", "echo", "bravo", "charlie", "other"]
      for (const name of names) await g.secret.create({ name: `key-${name}`, value: "v" })
      const seen: Array<string> = []
      let cursor: string | undefined
      do {
        const page = await g.secret.listPaginated({ limit: 2, sort: "name", order: "asc", name: "KEY-", ...(cursor ? { cursor } : {}) })
        expect(page.total).toBe(6)
        expect(page.items.length).toBeLessThanOrEqual(2)
        seen.push(...page.items.map((s) => s.name))
        cursor = page.nextCursor ?? undefined
      } while (cursor !== undefined)
      expect(seen).toEqual([...names].sort().map((n) => `key-${n}`))
      const filtered = await g.secret.listPaginated({ name: "HAR" })
      expect(filtered.items.map((s) => s.name)).toEqual(["key-charlie"])
      expect(filtered).toMatchObject({ total: 1, nextCursor: null })
    })

    it("defaults to newest first", async () => {
      const g = gate()
      const created = []
      for (const name of ["a", "b", "c"]) created.push(await g.secret.create({ name, value: "v" }))
      const page = await g.secret.listPaginated()
      expect(page.total).toBe(3)
      expect(page.nextCursor).toBeNull()
      const expected = [...created].sort((x, y) => y.createdAt.getTime() - x.createdAt.getTime() || (y.id < x.id ? -1 : 1))
      expect(page.items.map((s) => s.id)).toEqual(expected.map((s) => s.id))
    })

    it.each([
      [{ limit: 0 }, "limit"],
      [{ limit: 201 }, "limit"],
      [{ limit: 1.5 }, "limit"],
      [{ sort: "size" }, "sort"],
      [{ order: "up" }, "order"],
      [{ cursor: "not-a-cursor" }, "cursor"],
      [{ name: 5 }, "name"]
    ])("rejects %j with InvalidSecretInput on field %s", async (query, field) => {
      const error = await rejection(gate().secret.listPaginated(query as never))
      expect(error).toBeInstanceOf(InvalidSecretInput)
      expect((error as InvalidSecretInput).field).toBe(field)
    })
  })

  describe("organization scoping", () => {
    it("makes another organization's secret indistinguishable from a missing one", async () => {
      const open = sharedBackend()
      const acme = track(open("acme"))
      const other = track(open("other"))
      const secret = await acme.secret.create({ name: "shared-name", value: "acme-value" })
      for (const attempt of [
        other.secret.get(secret.id),
        other.secret.update(secret.id, { value: "hijacked" }),
        other.secret.delete(secret.id)
      ]) {
        const error = await rejection(attempt)
        expect(error).toBeInstanceOf(SecretNotFound)
        expect((error as SecretNotFound).message).toBe(`secret "${secret.id}" not found`)
      }
      expect(await other.secret.list()).toEqual([])
      expect((await other.secret.listPaginated()).total).toBe(0)
      expect(await rejection(other.mount({ K: "shared-name" }))).toBeInstanceOf(SecretNotFound)
      // the same name is free in the other organization
      await other.secret.create({ name: "shared-name", value: "other-value" })
      // and nothing of acme's changed
      expect(await acme.secret.get(secret.id)).toEqual(secret)
      expect(await valueOf(await acme.resolver(await acme.mount({ K: "shared-name" })), secret.placeholder)).toBe("acme-value")
    })

    it("counts the quota per organization", async () => {
      const open = sharedBackend({ quota: 1 })
      const acme = track(open("acme"))
      const other = track(open("other"))
      await acme.secret.create({ name: "a", value: "v" })
      await expect(other.secret.create({ name: "a", value: "v" })).resolves.toMatchObject({ name: "a" })
      expect(await rejection(acme.secret.create({ name: "b", value: "v" }))).toBeInstanceOf(QuotaExceeded)
      expect(await rejection(other.secret.create({ name: "b", value: "v" }))).toBeInstanceOf(QuotaExceeded)
    })
  })

  describe("mount", () => {
    it("maps env vars to placeholders and lists what egress may substitute", async () => {
      const g = gate()
      const gh = await g.secret.create({ name: "github", value: "ghp_x", hosts: ["api.github.com"] })
      const ant = await g.secret.create({ name: "anthropic", value: "sk-ant" })
      await g.secret.create({ name: "unmounted", value: "nope" })
      const mount = await g.mount({ GITHUB_TOKEN: "github", ANTHROPIC_API_KEY: "anthropic", ALSO_GITHUB: "github" })
      expect(mount.organizationId).toBe(g.organizationId)
      expect(mount.env).toEqual({ GITHUB_TOKEN: gh.placeholder, ANTHROPIC_API_KEY: ant.placeholder, ALSO_GITHUB: gh.placeholder })
      expect(mount.secrets).toEqual([
        { envVar: "GITHUB_TOKEN", id: gh.id, name: "github", placeholder: gh.placeholder, hosts: ["api.github.com"] },
        { envVar: "ANTHROPIC_API_KEY", id: ant.id, name: "anthropic", placeholder: ant.placeholder, hosts: [] },
        { envVar: "ALSO_GITHUB", id: gh.id, name: "github", placeholder: gh.placeholder, hosts: ["api.github.com"] }
      ])
      for (const placeholder of Object.values(mount.env)) expect(Placeholder.isPlaceholder(placeholder)).toBe(true)
      expect(await g.mount([["A", "github"], ["B", "anthropic"]])).toMatchObject({ env: { A: gh.placeholder, B: ant.placeholder } })
      expect(await g.mount({})).toEqual({ organizationId: g.organizationId, env: {}, secrets: [] })
    })

    it("reports every missing name at once", async () => {
      const g = gate()
      await g.secret.create({ name: "present", value: "v" })
      const error = await rejection(g.mount({ A: "missing-one", B: "present", C: "missing-two", D: "missing-one" }))
      expect(error).toBeInstanceOf(SecretNotFound)
      expect((error as SecretNotFound).names).toEqual(["missing-one", "missing-two"])
      expect((error as SecretNotFound).message).toBe(`secrets "missing-one", "missing-two" not found`)
    })

    it.each([
      ["a duplicate env var", [["A", "s"], ["A", "s"]], `mount["A"]`, "appears more than once"],
      ["an invalid env var", { "1A": "s" }, `mount["1A"]`, "is not a valid environment variable name"],
      ["an env var with a dash", { "MY-VAR": "s" }, `mount["MY-VAR"]`, "is not a valid environment variable name"],
      ["an empty env var", { "": "s" }, `mount[""]`, "is not a valid environment variable name"],
      ["a non-string secret name", { A: 5 }, `mount["A"]`, "is not a valid secret name"],
      ["65 entries", Object.fromEntries(Array.from({ length: 65 }, (_, i) => [`V${i}`, "s"])), "mount", "at most 64"],
      ["no object", null, "mount", "must map environment variables to secret names"]
    ])("rejects %s with InvalidSecretInput", async (_, spec, field, reason) => {
      const g = gate()
      await g.secret.create({ name: "s", value: "v" })
      const error = await rejection(g.mount(spec as never))
      expect(error).toBeInstanceOf(InvalidSecretInput)
      expect((error as InvalidSecretInput).field).toBe(field)
      expect((error as InvalidSecretInput).message).toContain(reason)
    })

    it("accepts exactly 64 entries", async () => {
      const g = gate()
      await g.secret.create({ name: "s", value: "v" })
      const mount = await g.mount(Object.fromEntries(Array.from({ length: 64 }, (_, i) => [`V${i}`, "s"])))
      expect(Object.keys(mount.env).length).toBe(64)
    })
  })

  describe("resolver", () => {
    it("resolves only the mounted secrets, with their values redacted", async () => {
      const g = gate()
      const mounted = await g.secret.create({ name: "mounted", value: "mounted-value", hosts: ["api.example.com"] })
      const other = await g.secret.create({ name: "other", value: "other-value" })
      const resolver = await g.resolver(await g.mount({ M: "mounted" }))
      const current = await resolver.current()
      expect([...current.keys()]).toEqual([mounted.placeholder])
      const resolved = current.get(mounted.placeholder)!
      expect(resolved).toMatchObject({ id: mounted.id, name: "mounted", placeholder: mounted.placeholder, hosts: ["api.example.com"] })
      expect(Redacted.isRedacted(resolved.value)).toBe(true)
      expect(Redacted.value(resolved.value)).toBe("mounted-value")
      expect(current.has(other.placeholder)).toBe(false)
    })

    for (const ttl of [undefined, 0, "10 minutes"] as const) {
      it(`sees every update and delete made through the service on the next call (ttl ${String(ttl)})`, async () => {
        const g = gate()
        const secret = await g.secret.create({ name: "n", value: "v1" })
        const resolver = await g.resolver(await g.mount({ N: "n" }), ttl === undefined ? {} : { ttl })
        expect(await valueOf(resolver, secret.placeholder)).toBe("v1")
        await g.secret.update(secret.id, { value: "v2" })
        expect(await valueOf(resolver, secret.placeholder)).toBe("v2")
        await g.secret.update(secret.id, { value: "v3" })
        expect(await valueOf(resolver, secret.placeholder)).toBe("v3")
        await g.secret.delete(secret.id)
        expect(await valueOf(resolver, secret.placeholder)).toBeUndefined()
        // a re-created secret of that name has another placeholder: the old mount does not reach it
        await g.secret.create({ name: "n", value: "v4" })
        expect((await resolver.current()).size).toBe(0)
      })
    }

    it("keeps loaded values (the same map, synchronously) while nothing changed", async () => {
      const g = gate()
      await g.secret.create({ name: "n", value: "v1" })
      const resolver = await g.resolver(await g.mount({ N: "n" }), { ttl: "10 minutes" })
      const first = await resolver.current()
      const again = resolver.current()
      expect(again).toBe(first)
      const reloadEveryTime = await g.resolver(await g.mount({ N: "n" }), { ttl: 0 })
      expect(reloadEveryTime.current()).toBeInstanceOf(Promise)
    })

    it("hands out the same map again when a reload finds nothing changed, and a new one for any change", async () => {
      const g = gate()
      const secret = await g.secret.create({ name: "n", value: "v1", hosts: ["a.example.com"] })
      // ttl 0: every call loads the values again
      const resolver = await g.resolver(await g.mount({ N: "n" }), { ttl: 0 })
      const first = await resolver.current()
      expect(await resolver.current()).toBe(first)
      await g.secret.update(secret.id, { value: "v2" })
      const second = await resolver.current()
      expect(second).not.toBe(first)
      expect(Redacted.value(second.get(secret.placeholder)!.value)).toBe("v2")
      expect(await resolver.current()).toBe(second)
      await g.secret.update(secret.id, { hosts: ["a.example.com", "b.example.com"] })
      const third = await resolver.current()
      expect(third).not.toBe(second)
      expect(third.get(secret.placeholder)!.hosts).toEqual(["a.example.com", "b.example.com"])
      await g.secret.delete(secret.id)
      expect((await resolver.current()).size).toBe(0)
    })

    it("without a revision (changes it cannot see), serves kept values until the ttl expires", async () => {
      // a Secrets without `revision`: like a remote server, or another process writing the store
      const blind = Layer.effect(
        Secrets,
        Effect.map(Secrets, ({ revision: _, ...secrets }) => Secrets.of(secrets))
      ).pipe(Layer.provide(MemorySecretStore.layer()))
      const g = track(new Secretgate({ layer: blind, organizationId: "acme" }))
      const secret = await g.secret.create({ name: "n", value: "v1" })
      const mount = await g.mount({ N: "n" })
      const longLived = await g.resolver(mount, { ttl: "10 minutes" })
      const shortLived = await g.resolver(mount, { ttl: "50 millis" })
      const cached = await longLived.current()
      expect(await valueOf(shortLived, secret.placeholder)).toBe("v1")

      await g.secret.update(secret.id, { value: "v2" })
      expect(await longLived.current()).toBe(cached)
      expect(await valueOf(longLived, secret.placeholder)).toBe("v1")
      await eventually(async () => {
        expect(await valueOf(shortLived, secret.placeholder)).toBe("v2")
      })

      await g.secret.delete(secret.id)
      await eventually(async () => {
        expect(await valueOf(shortLived, secret.placeholder)).toBeUndefined()
      })
      expect(await valueOf(longLived, secret.placeholder)).toBe("v1")
    })

    it("resolves nothing for a mount presented under another organization", async () => {
      const g = gate()
      await g.secret.create({ name: "n", value: "v1" })
      const mount = await g.mount({ N: "n" })
      const forged = await g.resolver({ ...mount, organizationId: newOrganization() })
      expect((await forged.current()).size).toBe(0)
    })

    it("rejects with the typed error when values cannot be loaded, and does not cache the failure", async () => {
      let failures = 1
      const flaky = Layer.effect(
        Secrets,
        Effect.map(Secrets, (secrets) =>
          Secrets.of({
            ...secrets,
            resolve: (organizationId, placeholders) =>
              failures-- > 0 ? Effect.fail(new StoreUnavailable({ message: "store down" })) : secrets.resolve(organizationId, placeholders)
          }))
      ).pipe(Layer.provide(MemorySecretStore.layer()))
      const g = track(new Secretgate({ layer: flaky, organizationId: "acme" }))
      const secret = await g.secret.create({ name: "n", value: "v1" })
      const resolver = await g.resolver(await g.mount({ N: "n" }), { ttl: "10 minutes" })
      const error = await rejection(Promise.resolve().then(() => resolver.current()))
      expect(error).toBeInstanceOf(StoreUnavailable)
      expect(await valueOf(resolver, secret.placeholder)).toBe("v1")
    })
  })

  describe("run", () => {
    it("runs your own effects against the same backend, rejecting with typed errors", async () => {
      const g = gate()
      const secret = await g.secret.create({ name: "n", value: "v" })
      const byName = await g.run(Effect.flatMap(Secrets, (s) => s.getByName(g.organizationId, "n")))
      expect(byName).toEqual(secret)
      expect(await rejection(g.run(Effect.flatMap(Secrets, (s) => s.getByName(g.organizationId, "nope"))))).toBeInstanceOf(SecretNotFound)
    })

    it("runs effects needing anything else the backend's layer provides (its type says so)", async () => {
      class Rotation extends Context.Tag("test/Rotation")<Rotation, { readonly rotate: Effect.Effect<string> }>() {}
      const layer = Layer.merge(MemorySecretStore.layer(), Layer.succeed(Rotation, { rotate: Effect.succeed("key-2") }))
      const g = new Secretgate({ layer, organizationId: "acme" })
      try {
        expect(await g.run(Effect.flatMap(Rotation, (r) => r.rotate))).toBe("key-2")
        expect(await g.secret.list()).toEqual([])
      } finally {
        await g.dispose()
      }
    })

    it("refuses, when type-checked, a layer that does not provide Secrets", async () => {
      class Other extends Context.Tag("test/Other")<Other, number>() {}
      // @ts-expect-error the layer must provide Secrets
      const g = new Secretgate({ layer: Layer.succeed(Other, 1), organizationId: "acme" })
      await g.dispose()
    })

    it("rejects with an Error for a defect, even one that is not an Error", async () => {
      const error = await rejection(gate().run(Effect.die(new RangeError("boom"))))
      expect(error).toBeInstanceOf(RangeError)
      const fromString = await rejection(gate().run(Effect.die("broken")))
      expect(fromString).toBeInstanceOf(Error)
      expect((fromString as Error).message).toBe("broken")
    })
  })

  describe("dispose", () => {
    const withFinalizer = () => {
      const events: Array<string> = []
      const layer = Layer.merge(
        MemorySecretStore.layer(),
        Layer.scopedDiscard(Effect.acquireRelease(Effect.sync(() => events.push("acquired")), () => Effect.sync(() => events.push("released"))))
      )
      return { events, layer }
    }

    it("frees the backend's resources; later calls reject with an Error", async () => {
      const { events, layer } = withFinalizer()
      const g = new Secretgate({ layer, organizationId: "acme" })
      await g.secret.create({ name: "n", value: "v" })
      expect(events).toEqual(["acquired"])
      await g.dispose()
      expect(events).toEqual(["acquired", "released"])
      const error = await rejection(g.secret.list())
      expect(error).toBeInstanceOf(Error)
      await expect(g.dispose()).resolves.toBeUndefined()
      expect(events).toEqual(["acquired", "released"])
    })

    it("works with `await using`", async () => {
      const { events, layer } = withFinalizer()
      {
        await using g = new Secretgate({ layer, organizationId: "acme" })
        await g.secret.create({ name: "n", value: "v" })
        expect(events).toEqual(["acquired"])
      }
      expect(events).toEqual(["acquired", "released"])
    })
  })
})
