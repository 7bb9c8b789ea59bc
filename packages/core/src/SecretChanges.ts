/**
 * `SecretChanges`: announcements that an organization's secrets changed, wherever the change was
 * made (this process, another process sharing the store, another replica of a server). It is the
 * one interface through which a backend's change notifications reach the layers that keep values
 * (the egress resolver) and pass changes on (the REST server's watch route).
 *
 * A backend that can announce every committed write provides this service next to its
 * `SecretStore`; `Secrets` then relies on it. A backend that cannot leaves it out: `Secrets` then
 * announces the writes made through itself, and says it is not `live`, so that the resolver keeps
 * reloading every TTL and the server offers no watch.
 *
 * The contract for a backend:
 * - every committed create, update and delete is announced, those made through this process at
 *   once (before the write's effect completes), those made elsewhere as soon as they are known;
 * - an announcement may come more than once, and may name no placeholder (any secret of the
 *   organization may have changed) or no organization (any organization's secrets may have);
 * - `live(organizationId)` is true only while the backend is sure to announce every change of that
 *   organization; when it stops being sure (a lost notification channel) it says so, and when it is
 *   sure again it announces a change of every organization, since some may have been missed.
 *
 * @since 0.1.0
 */
import { Context } from "effect"

/**
 * One announcement.
 *
 * @since 0.1.0
 */
export interface Change {
  /** The organization whose secrets changed; absent: any organization's may have changed. */
  readonly organizationId?: string | undefined
  /** Placeholders of the secrets that changed, when known; absent: any secret of the organization may have. */
  readonly placeholders?: ReadonlyArray<string> | undefined
}

/**
 * A source of change announcements.
 *
 * @since 0.1.0
 */
export interface SecretChanges {
  /**
   * Calls `listener` with each announcement, synchronously and in order, until the returned
   * function is called. A listener must be quick and must not throw.
   */
  readonly subscribe: (listener: (change: Change) => void) => () => void
  /** Whether every change of the organization is being announced right now. */
  readonly live: (organizationId: string) => boolean
}

/**
 * @since 0.1.0
 */
export const SecretChanges = Context.GenericTag<SecretChanges>("@secretgate/core/SecretChanges")

/**
 * An in-process `SecretChanges` that announces what is published to it: the building block of a
 * backend's announcements.
 *
 * @since 0.1.0
 */
export interface Hub extends SecretChanges {
  /** Announces `change` to every listener, in the order they subscribed. */
  readonly publish: (change: Change) => void
}

/**
 * A hub; `live` tells whether the changes published to it are all the changes there are (true for
 * a store that only this process can write).
 *
 * @since 0.1.0
 * @example
 * ```ts
 * import { SecretChanges } from "@secretgate/core"
 * const hub = SecretChanges.makeHub(() => true)
 * const stop = hub.subscribe((change) => console.log("changed:", change.organizationId))
 * hub.publish({ organizationId: "acme" })
 * stop()
 * ```
 */
export const makeHub = (live: (organizationId: string) => boolean): Hub => {
  let listeners: ReadonlyArray<(change: Change) => void> = []
  return {
    live,
    publish: (change) => {
      // a snapshot: a listener that unsubscribes (or subscribes) while called changes the next round
      for (const listener of listeners) listener(change)
    },
    subscribe: (listener) => {
      // each subscription is its own entry, so that the same function subscribed twice is called twice
      const entry = (change: Change) => listener(change)
      listeners = [...listeners, entry]
      return () => {
        listeners = listeners.filter((other) => other !== entry)
      }
    }
  }
}

/**
 * Whether `change` may concern the secrets behind `placeholders` in `organizationId`.
 *
 * @since 0.1.0
 */
export const concerns = (change: Change, organizationId: string, placeholders: ReadonlySet<string>): boolean =>
  (change.organizationId === undefined || change.organizationId === organizationId) &&
  (change.placeholders === undefined || change.placeholders.some((placeholder) => placeholders.has(placeholder)))
