/**
 * The process signals a command handles. A handler goes in before the command says it is ready:
 * a signal that arrives before its handler gets the system's default, which for SIGTERM, SIGINT
 * and SIGHUP ends the process on the spot, with no clean stop. Whoever reads "listening" and
 * signals at once must find the handler there.
 *
 * @since 0.1.0
 */
import { Deferred, Effect, Exit, type Scope } from "effect"

type Listeners = ReadonlyArray<readonly [NodeJS.Signals, () => void]>

const remove = (listeners: Listeners) => {
  for (const [signal, listener] of listeners) process.removeListener(signal, listener)
}

/** `handler` on each of `signals`, from now until the scope closes (or `handler` removes them). */
const listen = (
  signals: ReadonlyArray<NodeJS.Signals>,
  handler: (signal: NodeJS.Signals, listeners: Listeners) => void
): Effect.Effect<void, never, Scope.Scope> =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const listeners: Listeners = signals.map((signal) => [signal, () => handler(signal, listeners)] as const)
      for (const [signal, listener] of listeners) process.on(signal, listener)
      return listeners
    }),
    (listeners) => Effect.sync(() => remove(listeners))
  )

/**
 * Calls `handler` on each of `signals` while the scope is open.
 *
 * @since 0.1.0
 */
export const on: (signals: ReadonlyArray<NodeJS.Signals>, handler: (signal: NodeJS.Signals) => void) => Effect.Effect<void, never, Scope.Scope> = listen

/**
 * Listens now for the first of `signals` (while the scope is open); the effect it gives waits for
 * that signal, however long before the wait it came. Once one came, none of them is listened for
 * any more: a second one does what the system does (ends the process), so a stop that hangs can
 * still be forced, as a second Ctrl-C does.
 *
 * @since 0.1.0
 */
export const first = (signals: ReadonlyArray<NodeJS.Signals>): Effect.Effect<Effect.Effect<NodeJS.Signals>, never, Scope.Scope> =>
  Effect.gen(function*() {
    const received = yield* Deferred.make<NodeJS.Signals>()
    yield* listen(signals, (signal, listeners) => {
      remove(listeners)
      Deferred.unsafeDone(received, Exit.succeed(signal))
    })
    return Deferred.await(received)
  })
