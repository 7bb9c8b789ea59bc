/**
 * The process signals a command handles. A handler goes in before the command says it is ready:
 * a signal that arrives before its handler gets the system's default, which for SIGTERM, SIGINT
 * and SIGHUP ends the process on the spot, with no clean stop. Whoever reads "listening" and
 * signals at once must find the handler there.
 *
 * @since 0.1.0
 */
import { Deferred, Effect, Exit, type Scope } from "effect"

/**
 * Calls `handler` on each of `signals` while the scope is open.
 *
 * @since 0.1.0
 */
export const on = (
  signals: ReadonlyArray<NodeJS.Signals>,
  handler: (signal: NodeJS.Signals) => void
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const handlers = signals.map((signal) => [signal, () => handler(signal)] as const)
      for (const [signal, listener] of handlers) process.on(signal, listener)
      return handlers
    }),
    (handlers) =>
      Effect.sync(() => {
        for (const [signal, listener] of handlers) process.removeListener(signal, listener)
      })
  )

/**
 * Listens now for the first of `signals` (while the scope is open); the effect it gives waits for
 * that signal, however long before the wait it came.
 *
 * @since 0.1.0
 */
export const first = (signals: ReadonlyArray<NodeJS.Signals>): Effect.Effect<Effect.Effect<NodeJS.Signals>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const received = yield* Deferred.make<NodeJS.Signals>()
    yield* on(signals, (signal) => Deferred.unsafeDone(received, Exit.succeed(signal)))
    return Deferred.await(received)
  })
