/**
 * `SecretResolver`: how the egress layer gets the values of a sandbox's mounted secrets. Defined
 * here so that any `Secrets` (in process or remote) plugs into `@secretgate/undici` the same way.
 *
 * Values are loaded once and kept, decrypted, until something may have changed:
 * - when the `Secrets` service reports a `revision` (the in-process implementation does), any
 *   create, update or delete through it is seen by the very next request, and so is any change its
 *   `changes` announce (a backend's notifications, a remote server's watch stream); the values are
 *   reloaded only when one of the mounted secrets changed;
 * - while those announcements are `live` (every change is announced), nothing else causes a reload;
 * - otherwise, changes nobody announced are picked up within `ttl` (default 1 second). `ttl: 0`
 *   reloads for every request.
 *
 * @since 0.1.0
 */
import { Duration, Effect, Exit, Redacted, Runtime } from "effect"
import type { SandboxMount } from "./SandboxMount.js"
import type { StoreError } from "./SecretError.js"
import { type ResolvedSecret, Secrets } from "./Secrets.js"

/**
 * The values a sandbox's egress may substitute, looked up by placeholder.
 *
 * @since 0.1.0
 */
export interface SecretResolver {
  /** The mount it serves. */
  readonly mount: SandboxMount
  /**
   * The current values of the mounted secrets (deleted ones absent): the kept map itself when it
   * is still current, so that a request pays nothing; a promise when values must be loaded.
   *
   * Contract for implementations: a map is never changed once handed out; any change yields a new
   * map, and a reload that finds nothing changed may hand out the same one again. The egress layer
   * caches per-destination decisions by map identity.
   */
  readonly current: () => ReadonlyMap<string, ResolvedSecret> | Promise<ReadonlyMap<string, ResolvedSecret>>
}

/**
 * @since 0.1.0
 */
export interface Options {
  /**
   * The longest time kept values are served without reloading, bounding how stale they can be
   * after a change this process did not see. Default 1 second; 0 reloads on every request.
   */
  readonly ttl?: Duration.DurationInput
}

interface Kept {
  /** The organization's revision when last checked. */
  readonly revision: number
  /** The revision of the mounted secrets when loaded. */
  readonly mine: number
  readonly loadedAt: number
  readonly values: ReadonlyMap<string, ResolvedSecret>
}

/**
 * A resolver over the `Secrets` in context.
 *
 * @since 0.1.0
 */
export const make = (mount: SandboxMount, options: Options = {}): Effect.Effect<SecretResolver, never, Secrets> =>
  Effect.gen(function*() {
    const secrets = yield* Secrets
    const runtime = yield* Effect.runtime<never>()
    const run = Runtime.runPromiseExit(runtime)
    const ttl = Duration.toMillis(Duration.decode(options.ttl ?? "1 second"))
    const placeholders = mount.secrets.map((secret) => secret.placeholder)
    const organizationId = mount.organizationId
    const revision = secrets.revision === undefined ? () => 0 : () => secrets.revision!(organizationId)
    const mine = secrets.revision === undefined ? () => 0 : () => secrets.revision!(organizationId, placeholders)
    const changes = secrets.changes
    // announcements are worth relying on only when the revision shows them
    const live = changes === undefined || secrets.revision === undefined ? () => false : () => changes.live(organizationId)

    let kept: Kept | undefined
    let loading: { readonly revision: number; readonly startedAt: number; readonly values: Promise<ReadonlyMap<string, ResolvedSecret>> } | undefined

    const load = (atRevision: number, now: number): Promise<ReadonlyMap<string, ResolvedSecret>> => {
      const atMine = mine()
      const values = run(secrets.resolve(organizationId, placeholders)).then((exit) => {
        const settled = loading?.values === values
        if (settled) loading = undefined
        // a failure is not kept: the next request tries again
        if (Exit.isFailure(exit)) throw failureOf(exit)
        const loaded: ReadonlyMap<string, ResolvedSecret> = new Map(exit.value.map((secret) => [secret.placeholder, secret]))
        // nothing changed (a reload at the end of the ttl, say): the map handed out before, so that
        // what callers cache by its identity (scrubbers, per-host decisions) stays
        const map = kept !== undefined && sameSecrets(kept.values, loaded) ? kept.values : loaded
        // keep it unless a newer load has started meanwhile
        if (settled) kept = { revision: atRevision, mine: atMine, loadedAt: now, values: map }
        return map
      })
      loading = { revision: atRevision, startedAt: now, values }
      return values
    }

    return {
      mount,
      current: () => {
        const now = performance.now() // monotonic: a step of the wall clock neither stretches nor cuts the ttl
        const atRevision = revision()
        // while every change is announced, kept values stay until one is; otherwise for the ttl
        const fresh = (since: number) => ttl > 0 && (now - since < ttl || live())
        if (kept !== undefined && fresh(kept.loadedAt)) {
          if (kept.revision === atRevision) return kept.values
          // the organization changed: the values stay if none of the mounted secrets did
          if (kept.mine === mine()) {
            kept = { ...kept, revision: atRevision }
            return kept.values
          }
        }
        // a load already under way for the same revision is joined, however long it takes (the
        // backend's own timeout bounds it): starting another would only add to a slow server's load
        if (ttl > 0 && loading !== undefined && loading.revision === atRevision) return loading.values
        return load(atRevision, now)
      }
    }
  })

/** Whether two maps of resolved secrets hold the same secrets: ids, names, placeholders, hosts and values. */
const sameSecrets = (a: ReadonlyMap<string, ResolvedSecret>, b: ReadonlyMap<string, ResolvedSecret>): boolean => {
  if (a.size !== b.size) return false
  for (const [placeholder, secret] of b) {
    const other = a.get(placeholder)
    if (
      other === undefined || other.id !== secret.id || other.name !== secret.name || other.hosts.length !== secret.hosts.length ||
      other.hosts.some((host, i) => host !== secret.hosts[i]) || Redacted.value(other.value) !== Redacted.value(secret.value)
    ) return false
  }
  return true
}

const failureOf = (exit: Exit.Exit<unknown, StoreError>): unknown =>
  Exit.isFailure(exit) && exit.cause._tag === "Fail" ? exit.cause.error : new Error("secret resolution failed")
