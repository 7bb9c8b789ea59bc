/**
 * `SecretgateAgent`: a ready undici dispatcher for a sandbox's egress. It composes the egress
 * interceptor with undici's redirect interceptor in the safe order (redirects outside, so each hop
 * is re-evaluated from the caller's original request), over an `Agent` of its own or any dispatcher
 * you pass (e.g. a `ProxyAgent`).
 *
 * Use it with `undici.request`/`fetch` (`{ dispatcher }`), Node's global `fetch`
 * (`setGlobalDispatcher`), or `@effect/platform`'s undici `HttpClient` (see `HttpClient`).
 *
 * @since 0.1.0
 */
import { Agent, Dispatcher, interceptors } from "undici"
import * as Interceptor from "./Interceptor.js"

/**
 * @since 0.1.0
 */
export interface Options extends Interceptor.Options {
  /**
   * The dispatcher requests finally go through. Default: a new `Agent` with `agentOptions`, which
   * `close()`/`destroy()` close. A dispatcher passed here stays yours: the agent never closes it.
   */
  readonly dispatcher?: Dispatcher
  /** Options of the default `Agent` (TLS `connect` settings, timeouts, ...). */
  readonly agentOptions?: Agent.Options
  /** Redirects to follow for `undici.request` (fetch follows its own). Default 0: none. */
  readonly maxRedirections?: number
}

/**
 * The ready dispatcher.
 *
 * @since 0.1.0
 * @example
 * ```ts
 * import { SecretgateAgent } from "@secretgate/undici"
 * const mount = await gate.mount({ GITHUB_TOKEN: "github" })
 * const agent = new SecretgateAgent({ resolver: await gate.resolver(mount) })
 * await fetch("https://api.github.com/user", {
 *   headers: { authorization: `Bearer ${mount.env.GITHUB_TOKEN}` },
 *   dispatcher: agent
 * })
 * ```
 */
export class SecretgateAgent extends Dispatcher {
  private readonly inner: Dispatcher
  /** Whether `inner` was made here, and so is closed here. */
  private readonly ownsInner: boolean
  private readonly dispatchThrough: (options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler) => boolean

  constructor(options: Options) {
    super()
    const inner = options.dispatcher ?? new Agent(options.agentOptions)
    this.inner = inner
    this.ownsInner = options.dispatcher === undefined
    const secretgate = Interceptor.make(options)
    if (options.maxRedirections !== undefined && options.maxRedirections > 0) {
      // compose: the first interceptor is innermost. Substitution must sit inside redirect
      // handling, so that every hop is planned afresh from the caller's original request.
      const composed = inner.compose(secretgate, interceptors.redirect({ maxRedirections: options.maxRedirections }))
      this.dispatchThrough = (opts, handler) => composed.dispatch(opts, handler)
    } else {
      // Without redirects, no adapter layer is needed: the interceptor takes handlers of either
      // undici API and hands them to the inner dispatcher as they are.
      this.dispatchThrough = secretgate((opts, handler) => inner.dispatch(opts, handler))
    }
  }

  /** @since 0.1.0 */
  override dispatch(options: Dispatcher.DispatchOptions, handler: Dispatcher.DispatchHandler): boolean {
    return this.dispatchThrough(options, handler)
  }

  /** @since 0.1.0 */
  override close(): Promise<void>
  override close(callback: () => void): void
  override close(callback?: () => void): Promise<void> | void {
    const closing = this.ownsInner ? this.inner.close() : Promise.resolve()
    if (callback === undefined) return closing
    closing.then(() => callback(), () => callback())
  }

  /** @since 0.1.0 */
  override destroy(): Promise<void>
  override destroy(error: Error | null): Promise<void>
  override destroy(callback: () => void): void
  override destroy(error: Error | null, callback: () => void): void
  override destroy(first?: Error | null | (() => void), second?: () => void): Promise<void> | void {
    const error = typeof first === "function" ? null : first ?? null
    const callback = typeof first === "function" ? first : second
    const destroying = this.ownsInner ? this.inner.destroy(error) : Promise.resolve()
    if (callback === undefined) return destroying
    destroying.then(() => callback(), () => callback())
  }
}
