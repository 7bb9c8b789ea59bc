/**
 * The world of a proxy test: one organization in memory, the egress tests' real HTTPS upstream on
 * 127.0.0.1 (test CA), a real proxy whose upstream resolver pins the test names to 127.0.0.1 and
 * trusts the test CA, helpers to register sandboxes, and real clients run as child processes.
 */
import { type SandboxMount, Secretgate } from "@secretgate/core"
import { MemorySecretStore } from "@secretgate/memory"
import { spawn, spawnSync } from "node:child_process"
import { CA, startUpstream, type Upstream } from "../../../undici/test/support/upstream.js"
import { SecretgateProxy, type Registration, type RegisterOptions, type SecretgateProxyOptions } from "../../src/index.js"
import type { ProxyAuditEvent } from "../../src/index.js"

/** The names the tests use; the proxy's upstream resolver sends them all to 127.0.0.1. */
export const NAMES = ["api.allowed.test", "allowed.test", "deep.sub.allowed.test", "evil.test", "other.test", "upstream.test", "example.com", "badexample.com", "git.allowed.test"]

export interface World {
  readonly gate: Secretgate
  readonly https: Upstream
  readonly http: Upstream
  readonly proxy: SecretgateProxy
  /** Every event the proxy reported. */
  readonly events: Array<ProxyAuditEvent.ProxyAuditEvent>
  /** Creates secrets (name → [value, hosts]), mounts them under their upper-cased names, registers the sandbox. */
  sandbox(
    secrets: Record<string, readonly [value: string, hosts?: ReadonlyArray<string>]>,
    options?: Partial<Omit<RegisterOptions, "resolver">>
  ): Promise<Sandbox>
  close(): Promise<void>
}

export interface Sandbox {
  readonly mount: SandboxMount.SandboxMount
  readonly registration: Registration
  /** The registration's environment on top of this process's (PATH, HOME, ...). */
  readonly env: NodeJS.ProcessEnv
  /** This sandbox's events, secret names without the test's suffix. */
  readonly events: Array<ProxyAuditEvent.ProxyAuditEvent>
}

let counter = 0

export const makeWorld = async (options: Partial<SecretgateProxyOptions> = {}): Promise<World> => {
  const gate = new Secretgate({ layer: MemorySecretStore.layer(), organizationId: "acme" })
  const https = await startUpstream()
  const http = await startUpstream({ secure: false })
  const events: Array<ProxyAuditEvent.ProxyAuditEvent> = []
  const proxy = await SecretgateProxy.start({
    upstream: { resolve: Object.fromEntries(NAMES.map((name) => [name, "127.0.0.1"])), ca: CA.toString("utf8") },
    audit: (event) => events.push(event),
    ...options
  })
  return {
    gate,
    https,
    http,
    proxy,
    events,
    async sandbox(secrets, registerOptions = {}) {
      const suffix = `_${++counter}`
      const spec: Record<string, string> = {}
      for (const [name, [value, hosts]] of Object.entries(secrets)) {
        const created = await gate.secret.create({ name: name + suffix, value, ...(hosts === undefined ? {} : { hosts }) })
        spec[name.toUpperCase()] = created.name
      }
      const mount = await gate.mount(spec)
      const sandboxEvents: Array<ProxyAuditEvent.ProxyAuditEvent> = []
      const registration = proxy.register({
        resolver: await gate.resolver(mount),
        audit: (event) =>
          sandboxEvents.push("secret" in event && event.secret !== undefined ? { ...event, secret: event.secret.replace(suffix, "") } : event),
        ...registerOptions
      })
      return { mount, registration, env: { ...process.env, ...registration.env }, events: sandboxEvents }
    },
    async close() {
      await proxy.close()
      await https.close()
      await http.close()
      await gate.dispose()
    }
  }
}

export interface Ran {
  readonly code: number | null
  readonly stdout: string
  readonly stderr: string
}

/** Runs a real program as a child process and collects what it printed. */
export const run = (command: string, args: ReadonlyArray<string>, env: NodeJS.ProcessEnv, input?: string): Promise<Ran> =>
  new Promise((resolve, reject) => {
    const child = spawn(command, args, { env, stdio: ["pipe", "pipe", "pipe"] })
    const out: Array<Buffer> = []
    const err: Array<Buffer> = []
    child.stdout.on("data", (chunk: Buffer) => out.push(chunk))
    child.stderr.on("data", (chunk: Buffer) => err.push(chunk))
    child.once("error", reject)
    child.once("close", (code) => resolve({ code, stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") }))
    child.stdin.end(input ?? "")
  })

/** Whether a program is installed (the tests that need it skip, saying so, when it is not). */
export const installed = (command: string, args: ReadonlyArray<string> = ["--version"]): boolean =>
  spawnSync(command, args, { stdio: "ignore" }).status === 0
