/**
 * Values an agent has held, kept for scrubbing after they stopped being current: an upstream that
 * kept an earlier value (a cache, a log, an echo of an old request) can still send it back after the
 * secret was updated, its hosts narrowed, or it was deleted. Each such value is scrubbed, by its
 * placeholder, from responses of the hosts it was allowed for, for a window the embedder sets
 * (`retainValuesFor`), and never goes out again (a URL holding it is refused).
 *
 * Memory is bounded: at most `MAX_RETAINED` values (the oldest go first) and none past its window.
 */
import type { Secrets } from "@secretgate/core"
import { Redacted } from "effect"

type ResolvedSecret = Secrets.ResolvedSecret

/** The most past values one agent keeps. */
export const MAX_RETAINED = 1024

/** The window used unless the embedder sets one: a day. */
export const DEFAULT_RETENTION_MS = 24 * 60 * 60 * 1000

/** No past values: what `Retention.current` returns while nothing was retained. */
export const NONE: ReadonlyArray<ResolvedSecret> = Object.freeze([])

const sameHosts = (a: ResolvedSecret, b: ResolvedSecret): boolean =>
  a.hosts.length === b.hosts.length && a.hosts.every((host, i) => host === b.hosts[i])

/** The past values of one agent. */
export class Retention {
  private last: ReadonlyMap<string, ResolvedSecret> | undefined
  private kept: Array<{ readonly secret: ResolvedSecret; until: number }> = []
  private view: ReadonlyArray<ResolvedSecret> = NONE
  private nextExpiry = Infinity

  constructor(private readonly windowMs: number) {}

  /**
   * Notes the snapshot a request uses, and returns the past values still in their window (the same
   * array while nothing changed, so that callers can cache by it).
   */
  observe(values: ReadonlyMap<string, ResolvedSecret>, now: number): ReadonlyArray<ResolvedSecret> {
    if (this.windowMs <= 0) return NONE
    let changed = false
    if (values !== this.last) {
      const previous = this.last
      this.last = values
      if (previous !== undefined) {
        for (const [placeholder, before] of previous) {
          const after = values.get(placeholder)
          const same = after !== undefined && Redacted.value(after.value) === Redacted.value(before.value) && sameHosts(after, before)
          if (!same) {
            this.retain(before, now + this.windowMs)
            changed = true
          }
        }
      }
    }
    if (now >= this.nextExpiry) {
      this.kept = this.kept.filter((entry) => entry.until > now)
      changed = true
    }
    if (changed) {
      this.nextExpiry = this.kept.reduce((min, entry) => Math.min(min, entry.until), Infinity)
      this.view = this.kept.length === 0 ? NONE : this.kept.map((entry) => entry.secret)
    }
    return this.view
  }

  private retain(secret: ResolvedSecret, until: number): void {
    const value = Redacted.value(secret.value)
    const known = this.kept.findIndex((entry) =>
      entry.secret.placeholder === secret.placeholder && Redacted.value(entry.secret.value) === value && sameHosts(entry.secret, secret)
    )
    if (known !== -1) this.kept.splice(known, 1)
    this.kept.push({ secret, until })
    if (this.kept.length > MAX_RETAINED) this.kept.splice(0, this.kept.length - MAX_RETAINED)
  }
}
