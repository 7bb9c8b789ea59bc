/**
 * One registered sandbox as the proxy sees it: its egress agent (the undici package's, over the
 * proxy's shared upstream dispatcher), whether a host is intercepted or tunnelled, its audit
 * sink, and the connections it holds open.
 */
import { HostPattern, type SecretResolver, type Secrets } from "@secretgate/core"
import { SecretgateAgent } from "@secretgate/undici"
import type { Socket } from "node:net"
import type { Dispatcher } from "undici"
import type { AuditSink, ProxyAuditEvent, UntimedConnectionEvent } from "../ProxyAuditEvent.js"

export interface SandboxSettings {
  readonly id: string
  readonly resolver: SecretResolver.SecretResolver
  readonly onDisallowed: "forward" | "block"
  readonly unrestricted: "allow" | "deny"
  readonly allowHttp: ReadonlyArray<string>
  readonly webSockets: boolean
  /** Normalised patterns; `undefined` lets every host through. */
  readonly allowedHosts: ReadonlyArray<string> | undefined
  readonly maxConnections: number
  readonly audit: AuditSink | undefined
}

type Values = ReadonlyMap<string, Secrets.ResolvedSecret>

/**
 * Host indexes per snapshot of values (a resolver hands out a new map after every change), with
 * secrets without hosts and without them (those are never substituted under `unrestricted: "deny"`,
 * so they make no host intercepted).
 */
const indexes = { allow: new WeakMap<Values, HostPattern.HostIndex<true>>(), deny: new WeakMap<Values, HostPattern.HostIndex<true>>() }

const indexOf = (values: Values, unrestricted: "allow" | "deny"): HostPattern.HostIndex<true> => {
  let index = indexes[unrestricted].get(values)
  if (index === undefined) {
    const secrets = [...values.values()].filter((secret) => unrestricted === "allow" || secret.hosts.length > 0)
    index = new HostPattern.HostIndex(secrets.map((secret) => ({ hosts: secret.hosts, value: true as const })))
    indexes[unrestricted].set(values, index)
  }
  return index
}

export class Sandbox {
  readonly agent: SecretgateAgent
  readonly sockets = new Set<Socket>()
  private readonly allowed: HostPattern.HostIndex<true> | undefined

  constructor(readonly settings: SandboxSettings, upstream: Dispatcher, private readonly proxyAudit: AuditSink | undefined) {
    this.allowed = settings.allowedHosts === undefined ? undefined : new HostPattern.HostIndex([{ hosts: settings.allowedHosts, value: true as const }])
    this.agent = new SecretgateAgent({
      resolver: settings.resolver,
      onDisallowed: settings.onDisallowed,
      unrestricted: settings.unrestricted,
      sandbox: settings.id,
      allowHttp: settings.allowHttp,
      webSockets: settings.webSockets,
      dispatcher: upstream,
      audit: (event) => this.report({ ...event, sandbox: settings.id })
    })
  }

  get id(): string {
    return this.settings.id
  }

  /** Whether the sandbox may reach `host` at all (its `allowedHosts`). */
  mayReach(host: string): boolean {
    return this.allowed === undefined || this.allowed.match(host).length > 0
  }

  /**
   * Whether connections to `host` must be decrypted: a mounted secret may be substituted there,
   * or `block` must see every request to stop placeholders going where they may not.
   */
  intercepts(host: string): boolean | Promise<boolean> {
    if (this.settings.onDisallowed === "block") return true
    let current: ReturnType<SecretResolver.SecretResolver["current"]>
    try {
      current = this.settings.resolver.current()
    } catch (error) {
      // a resolver that throws (disposed, custom) must fail this connection, not the whole proxy
      return Promise.reject(error)
    }
    const unrestricted = this.settings.unrestricted
    if (current instanceof Promise) return current.then((values) => indexOf(values, unrestricted).match(host).length > 0)
    return indexOf(current, unrestricted).match(host).length > 0
  }

  /** Counts a client connection against the limit; `false` when the limit is reached. */
  admit(socket: Socket): boolean {
    if (this.sockets.has(socket)) return true
    if (this.sockets.size >= this.settings.maxConnections) return false
    this.sockets.add(socket)
    socket.once("close", () => this.sockets.delete(socket))
    return true
  }

  report(untimed: ProxyAuditEvent | UntimedConnectionEvent): void {
    const event = timed(untimed)
    for (const sink of [this.settings.audit, this.proxyAudit]) {
      if (sink === undefined) continue
      try {
        sink(event)
      } catch {
        // an audit sink must not break the proxy
      }
    }
  }

  /** Revoked or closing: every connection of the sandbox ends now. */
  async close(): Promise<void> {
    for (const socket of this.sockets) socket.destroy()
    await this.agent.close()
  }
}

/** The event with its time (the agent's events have theirs). */
export const timed = (event: ProxyAuditEvent | UntimedConnectionEvent): ProxyAuditEvent =>
  "time" in event ? event : ({ time: new Date().toISOString(), ...event } as ProxyAuditEvent)
