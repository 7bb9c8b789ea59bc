/**
 * The egress interceptor: `(dispatch) => (options, handler) => ...`, for `Dispatcher.compose`.
 *
 * For every dispatch it loads the sandbox's current values from its `SecretResolver`, replaces the
 * placeholders of mounted secrets allowed for the **dispatch origin** (never a `Host` header) over
 * `https:` in header values, path, query and body, and scrubs the values back out of the response
 * (with `webSockets: true`, also in WebSocket handshakes and messages, scrubbing every frame that
 * comes back).
 * It never mutates the caller's options: a redirect interceptor composed *outside* it replays the
 * caller's original request (placeholders), and each hop is decided afresh for its own destination.
 *
 * Prefer `SecretgateAgent`, which composes it the one safe way.
 *
 * @since 0.1.0
 */
import { HostPattern, Placeholder, type SecretResolver, type Secrets } from "@secretgate/core"
import { Duration } from "effect"
import type { Dispatcher } from "undici"
import type { AuditSink } from "./AuditEvent.js"
import { ResolutionFailed } from "./EgressError.js"
import { Targets } from "./internal/destination.js"
import { plan, type Settings } from "./internal/plan.js"
import { sanitizeError, scrubbing } from "./internal/ScrubHandler.js"
import { DEFAULT_RETENTION_MS, Retention } from "./internal/retention.js"
import { NOTHING_TO_SCRUB, type Scrubber } from "./internal/scrubber.js"

/**
 * @since 0.1.0
 */
export interface Options {
  /** The sandbox's secrets: `gate.resolver(mount)` or `SecretResolver.make(mount)`. */
  readonly resolver: SecretResolver.SecretResolver
  /**
   * Hosts to which values may also go over plain `http:` (e.g. `["127.0.0.1"]` in tests). Default:
   * none; values only ever travel over `https:`.
   */
  readonly allowHttp?: ReadonlyArray<string>
  /**
   * What to do with a placeholder that may not be substituted for the destination: `"forward"` it
   * unchanged (default, as Daytona does) or `"block"` the request with `SubstitutionBlocked`.
   */
  readonly onDisallowed?: "forward" | "block"
  /**
   * What to do with a secret that has no hosts (created without `hosts`: on the wire, "unrestricted",
   * may go to any host). `"allow"`: substitute it for every `https:` host, with an audit event
   * (`substituted`, `unrestricted: true`) each time. `"deny"`: never substitute it (`withheld`, or
   * `blocked` under `block`, reason `unrestricted`) until it is given hosts.
   *
   * Default: `"deny"`, under `forward` as under `block`: a secret nobody scoped to a host goes
   * nowhere until the embedder says it may go everywhere (the API keeps "no hosts" meaning "any
   * host" on the wire; it is the egress that asks to be told).
   */
  readonly unrestricted?: "allow" | "deny"
  /** Names the sandbox in audit events (`sandbox`); the proxy passes its registration's id. */
  readonly sandbox?: string
  /**
   * Receives `substituted` / `withheld` / `blocked` events: time, sandbox, method, host, port, path
   * without the query, surface, secret, decision and reason (never a value, never a query). Write
   * them to a file with `AuditFile.open`.
   */
  readonly audit?: AuditSink
  /**
   * Substitute values into WebSocket connections (`upgrade: "websocket"`, e.g. undici's `WebSocket`
   * with this dispatcher): into the opening handshake like any request, and into the messages the
   * client sends. The handshake then offers no extension (no compression), and every frame the
   * server sends is scrubbed like a response body: re-framed, with each value replaced by its
   * placeholder. Default `false`: upgraded connections carry placeholders only.
   */
  readonly webSockets?: boolean
  /**
   * How long a value this agent has held stays scrubbed after it stopped being current: after the
   * secret's value was updated, its hosts narrowed or the secret deleted, an upstream that kept the
   * earlier value can still send it back. Such a value is replaced by its placeholder in responses
   * from the hosts it was allowed for, and a request whose URL holds it is refused
   * (`DisallowedValue`). Default 1 day; `0` keeps none. At most 1,024 past values are kept (the
   * oldest go first), in memory only.
   */
  readonly retainValuesFor?: Duration.DurationInput
}

const PLACEHOLDER_TAIL = Placeholder.TOKEN_LENGTH

/**
 * Builds the interceptor.
 *
 * @since 0.1.0
 * @example
 * ```ts
 * import { Agent, interceptors } from "undici"
 * import { Interceptor } from "@secretgate/undici"
 * // redirect must be outside (after) the secretgate interceptor:
 * const dispatcher = new Agent().compose(Interceptor.make({ resolver }), interceptors.redirect({ maxRedirections: 5 }))
 * ```
 */
export const make = (options: Options): Dispatcher.DispatcherComposeInterceptor => {
  const mount = options.resolver.mount
  const prefixes = new Set(mount.secrets.map((secret) => secret.placeholder.slice(0, -PLACEHOLDER_TAIL)))
  const settings: Settings = {
    scanners: [...(prefixes.size === 0 ? [Placeholder.DEFAULT_PREFIX] : prefixes)].map((prefix) => new Placeholder.Scanner(prefix)),
    mounted: new Map(mount.secrets.map((secret) => [secret.placeholder, secret.name])),
    targets: new Targets(new Set((options.allowHttp ?? []).map(allowHttpHost))),
    onDisallowed: options.onDisallowed ?? "forward",
    unrestricted: unrestrictedPolicy(options),
    audit: options.audit,
    sandbox: options.sandbox,
    webSockets: options.webSockets === true,
    retention: new Retention(options.retainValuesFor === undefined ? DEFAULT_RETENTION_MS : Duration.toMillis(Duration.decode(options.retainValuesFor)))
  }

  return (dispatch) =>
    function secretgateDispatch(opts, handler) {
      const unavailable = (cause: unknown) =>
        failHandler(handler, new ResolutionFailed({ message: `could not load the sandbox's secret values: ${describe(cause)}`, cause }))
      let current: ReturnType<SecretResolver.SecretResolver["current"]>
      try {
        current = options.resolver.current()
      } catch (cause) {
        // a resolver that throws (disposed, an embedder's own) fails this request, not its caller
        unavailable(cause)
        return true
      }
      // kept values are handed over synchronously: a request pays no extra turn of the event loop
      if (!(current instanceof Promise)) return send(settings, dispatch, opts, handler, current)
      current.then((values) => send(settings, dispatch, opts, handler, values), unavailable)
      return true
    }
}

/** Plans the request against these values and dispatches it, scrubbing the response when needed. */
const send = (
  settings: Settings,
  dispatch: Dispatcher.Dispatch,
  opts: Dispatcher.DispatchOptions,
  handler: Dispatcher.DispatchHandler,
  values: ReadonlyMap<string, Secrets.ResolvedSecret>
): boolean => {
  let scrub: Scrubber | undefined
  try {
    const planned = plan(settings, values, opts)
    scrub = planned.scrub
    const webSocket = planned.webSocket
    return dispatch(
      planned.options,
      scrub === undefined && webSocket === undefined ? handler : scrubbing(handler, scrub ?? NOTHING_TO_SCRUB, webSocket)
    )
  } catch (error) {
    // undici may throw synchronously while reading the substituted request: no value in that
    failHandler(handler, error instanceof Error ? sanitizeError(scrub, error) : new Error(String(error)))
    return true
  }
}

/**
 * The `unrestricted` policy options ask for: as given, else `"deny"` (a secret nobody scoped to a
 * host goes nowhere until the embedder says it may go everywhere). Throws a `TypeError` for
 * anything but `"allow"` or `"deny"`.
 *
 * @since 0.2.0
 */
export const unrestrictedPolicy = (options: Pick<Options, "unrestricted" | "onDisallowed">): "allow" | "deny" => {
  const policy = options.unrestricted ?? "deny"
  if (policy !== "allow" && policy !== "deny") throw new TypeError(`unrestricted must be "allow" or "deny", got ${JSON.stringify(policy)}`)
  return policy
}

/** An `allowHttp` entry as a normalised host; anything else is a mistake worth stopping for. */
const allowHttpHost = (entry: string): string => {
  const host = typeof entry === "string" ? HostPattern.normalizeDestination(entry) : undefined
  if (host === undefined || entry.includes("*") || entry.includes("/")) {
    throw new TypeError(`allowHttp entry ${JSON.stringify(entry)} is not a host name or IP address (wildcards, schemes and paths are not supported)`)
  }
  return host.host
}

/** Fails a handler of either undici API before anything was dispatched. */
const failHandler = (handler: Dispatcher.DispatchHandler, error: Error): void => {
  if (typeof handler.onResponseError === "function") handler.onResponseError(null as never, error)
  else (handler as { onError?: (error: Error) => void }).onError?.(error)
}

const describe = (cause: unknown): string =>
  typeof cause === "object" && cause !== null && "message" in cause ? String((cause as Error).message) : "unknown error"
