/**
 * Where a request goes, and what that means for a snapshot of values: which secrets may be sent
 * there and how to scrub the response. Both are cached, so a request to a known destination costs
 * a few map lookups whatever the number of secrets.
 */
import { HostPattern, type Secrets } from "@secretgate/core"
import { Redacted } from "effect"
import type { Dispatcher } from "undici"
import { EgressRefused } from "../EgressError.js"
import { headerSafe } from "./encoding.js"
import { makeScrubber, type Scrubber } from "./scrubber.js"

type ResolvedSecret = Secrets.ResolvedSecret

/** The destination of a dispatch, from its origin (never from a Host header). */
export interface Target {
  /** The origin as undici will connect to it (`https://host:port`): what goes downstream. */
  readonly origin: string
  /** The normalised host, as audit events name it and other names of the request are compared to. */
  readonly host: string
  /** The port connected to, for audit events. */
  readonly port: number
  /** The host to match secrets' patterns against, or `undefined` when it cannot be parsed. */
  readonly matchable: string | undefined
  /** `https:`, or `http:` to a host opted in with `allowHttp`. */
  readonly secure: boolean
}

const MAX_CACHED = 1024

/**
 * The text of an origin. A `URL` is read through `URL.prototype`'s own `href`, so a subclass that
 * overrides `toString` cannot make the decision look at one host while undici connects to another.
 */
const originText = (origin: string | URL): string => typeof origin === "string" ? origin : URL.prototype.toString.call(origin)

/** Reads targets from origins, remembering the answers (bounded). */
export class Targets {
  private readonly known = new Map<string, Target>()

  constructor(private readonly allowHttp: ReadonlySet<string>) {}

  of(origin: Dispatcher.DispatchOptions["origin"]): Target {
    if (origin === undefined || origin === null) {
      throw new EgressRefused({ message: "the request has no origin; dispatch through an Agent, not a bare Client" })
    }
    const key = originText(origin)
    let target = this.known.get(key)
    if (target === undefined) {
      const url = new URL(key)
      const normal = HostPattern.normalizeDestination(url.hostname)
      target = {
        origin: url.origin,
        host: normal?.host ?? url.hostname,
        port: url.port !== "" ? Number(url.port) : url.protocol === "http:" ? 80 : 443,
        matchable: normal === undefined ? undefined : url.hostname,
        secure: url.protocol === "https:" || (url.protocol === "http:" && normal !== undefined && this.allowHttp.has(normal.host))
      }
      if (this.known.size >= MAX_CACHED) this.known.clear()
      this.known.set(key, target)
    }
    return target
  }
}

/** Whether `name` (a Host header, a TLS server name) names the target's host; ports are ignored. */
export const namesTarget = (target: Target, name: string): boolean => {
  const normal = HostPattern.normalizeDestination(name.trim())
  return normal !== undefined && normal.host === target.host
}

/** What one snapshot of values allows for one destination. */
export interface Allowance {
  readonly allowed: ReadonlySet<ResolvedSecret>
  /** The allowed secrets whose value may not go into a header (a control or non-Latin-1 character). */
  readonly unsafeInHeader: ReadonlySet<ResolvedSecret>
  /**
   * `undefined` when nothing may go there (then there is nothing to scrub either); otherwise the
   * snapshot's scrubber, which looks for every value of the snapshot (one automaton for all hosts).
   */
  readonly scrub: Scrubber | undefined
}

/** Nothing allowed: insecure or unparseable destinations. */
export const NOTHING: Allowance = { allowed: new Set(), unsafeInHeader: new Set(), scrub: undefined }

interface Snapshot {
  readonly index: HostPattern.HostIndex<ResolvedSecret>
  /** The past values (see `retention.ts`) the cached answers below were made with. */
  past: ReadonlyArray<ResolvedSecret>
  /** Past values by the hosts they were allowed for. */
  pastIndex: HostPattern.HostIndex<ResolvedSecret> | undefined
  readonly hosts: Map<string, Allowance>
  /** Scrubbers by the set of secrets they look for (hosts that allow the same secrets share one). */
  readonly scrubbers: Map<string, Scrubber>
  /** The scrubber for every value of the snapshot, once asked for. */
  everyValue: Scrubber | undefined
}

const bySnapshot = new WeakMap<ReadonlyMap<string, ResolvedSecret>, Snapshot>()

const snapshotOf = (values: ReadonlyMap<string, ResolvedSecret>, past: ReadonlyArray<ResolvedSecret>): Snapshot => {
  let snapshot = bySnapshot.get(values)
  if (snapshot === undefined) {
    snapshot = {
      index: new HostPattern.HostIndex([...values.values()].map((secret) => ({ hosts: secret.hosts, value: secret }))),
      past: NO_PAST,
      pastIndex: undefined,
      hosts: new Map(),
      scrubbers: new Map(),
      everyValue: undefined
    }
    bySnapshot.set(values, snapshot)
  }
  if (snapshot.past !== past) {
    // other past values: the answers that included the earlier ones are rebuilt
    snapshot.past = past
    snapshot.pastIndex = past.length === 0 ? undefined : new HostPattern.HostIndex(past.map((secret) => ({ hosts: secret.hosts, value: secret })))
    snapshot.hosts.clear()
    snapshot.everyValue = undefined
  }
  return snapshot
}

const NO_PAST: ReadonlyArray<ResolvedSecret> = Object.freeze([])

/** A number per secret object (a past value is another object than the current one of the same secret). */
const ids = new WeakMap<ResolvedSecret, number>()
let nextId = 0
const idOf = (secret: ResolvedSecret): number => {
  let id = ids.get(secret)
  if (id === undefined) ids.set(secret, (id = nextId++))
  return id
}

/**
 * The scrubber for these secrets of a snapshot, built once per snapshot (a resolver hands out a new
 * map after every change) and set of secrets, and shared by every host that allows that set.
 */
const scrubberFor = (snapshot: Snapshot, secrets: ReadonlyArray<ResolvedSecret>): Scrubber => {
  const key = secrets.map(idOf).join(" ")
  let scrubber = snapshot.scrubbers.get(key)
  if (scrubber === undefined) {
    scrubber = makeScrubber(secrets)
    if (snapshot.scrubbers.size >= MAX_CACHED) snapshot.scrubbers.clear()
    snapshot.scrubbers.set(key, scrubber)
  }
  return scrubber
}

/**
 * The scrubber for every value of the snapshot and every past value (to check where a value may not
 * go: a past value goes nowhere; one that equals a current value counts as that one).
 */
export const valuesScrubber = (values: ReadonlyMap<string, ResolvedSecret>, past: ReadonlyArray<ResolvedSecret> = NO_PAST): Scrubber => {
  const snapshot = snapshotOf(values, past)
  return (snapshot.everyValue ??= scrubberFor(snapshot, [...values.values(), ...past]))
}

/**
 * The secrets of `values` whose hosts admit `host` (and how to scrub their values, and those of past
 * values `host` was allowed, from its responses). Cached per snapshot (a resolver hands out a new
 * map after every change: see `SecretResolver`) and host; the host index keeps a first lookup
 * independent of the number of secrets.
 */
export const allowanceFor = (
  values: ReadonlyMap<string, ResolvedSecret>,
  host: string,
  past: ReadonlyArray<ResolvedSecret> = NO_PAST
): Allowance => {
  const snapshot = snapshotOf(values, past)
  let allowance = snapshot.hosts.get(host)
  if (allowance === undefined) {
    const allowed = snapshot.index.match(host)
    // past values this host was allowed: scrubbed from its responses, never substituted
    const pastHere = snapshot.pastIndex?.match(host) ?? []
    allowance = allowed.length === 0 && pastHere.length === 0 ? NOTHING : {
      allowed: new Set(allowed),
      unsafeInHeader: new Set(allowed.filter((secret) => !headerSafe(Redacted.value(secret.value)))),
      scrub: scrubberFor(snapshot, [...allowed, ...pastHere])
    }
    if (snapshot.hosts.size >= MAX_CACHED) snapshot.hosts.clear()
    snapshot.hosts.set(host, allowance)
  }
  return allowance
}
