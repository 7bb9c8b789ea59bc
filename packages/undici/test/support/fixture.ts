/**
 * The world of an egress test: one organization in an in-memory backend, a real HTTPS upstream on
 * 127.0.0.1 (and a plain-HTTP one), and helpers to mount secrets and build agents.
 */
import { type SandboxMount, Secretgate } from "@secretgate/core"
import { MemorySecretStore } from "@secretgate/memory"
import { type AuditEvent, SecretgateAgent } from "@secretgate/undici"
import type { SecretgateAgentOptions } from "@secretgate/undici"
import { startUpstream, testAgentOptions, type Upstream } from "./upstream.js"

export interface World {
  readonly gate: Secretgate
  readonly https: Upstream
  readonly http: Upstream
  /** Creates secrets (name → [value, hosts]) and mounts them all under their upper-cased names. */
  sandbox(
    secrets: Record<string, readonly [value: string, hosts?: ReadonlyArray<string>]>,
    options?: Partial<SecretgateAgentOptions>
  ): Promise<Sandbox>
  close(): Promise<void>
}

export interface Sandbox {
  readonly mount: SandboxMount.SandboxMount
  /** env var (upper-cased secret name) → placeholder */
  readonly env: Readonly<Record<string, string>>
  readonly agent: SecretgateAgent
  readonly events: Array<AuditEvent.AuditEvent>
  /** Secret ids by name */
  readonly ids: Readonly<Record<string, string>>
}

let counter = 0

export const makeWorld = async (): Promise<World> => {
  const gate = new Secretgate({ layer: MemorySecretStore.layer(), organizationId: "acme" })
  const https = await startUpstream()
  const http = await startUpstream({ secure: false })
  const agents: Array<SecretgateAgent> = []
  return {
    gate,
    https,
    http,
    async sandbox(secrets, options = {}) {
      const suffix = `_${++counter}`
      const ids: Record<string, string> = {}
      const spec: Record<string, string> = {}
      for (const [name, [value, hosts]] of Object.entries(secrets)) {
        const created = await gate.secret.create({ name: name + suffix, value, ...(hosts === undefined ? {} : { hosts }) })
        ids[name] = created.id
        spec[name.toUpperCase()] = created.name
      }
      const mount = await gate.mount(spec)
      const events: Array<AuditEvent.AuditEvent> = []
      const agent = new SecretgateAgent({
        resolver: await gate.resolver(mount),
        agentOptions: testAgentOptions,
        audit: (event) => events.push({ ...event, ...(event.secret === undefined ? {} : { secret: event.secret.replace(suffix, "") }) }),
        ...options
      })
      agents.push(agent)
      return { mount, env: mount.env, agent, events, ids }
    },
    async close() {
      await Promise.all(agents.map((agent) => agent.close()))
      await https.close()
      await http.close()
      await gate.dispose()
    }
  }
}

/** Everything the upstream received, as one string (to search for values). */
export const everything = (upstream: Upstream): string =>
  upstream.received.map((r) => `${r.method} ${r.url}\n${r.rawHeaders.join("\n")}\n\n${r.body.toString("latin1")}`).join("\n---\n")

/** The last request the upstream received. */
export const last = (upstream: Upstream) => {
  const received = upstream.received[upstream.received.length - 1]
  if (received === undefined) throw new Error("the upstream received nothing")
  return received
}
