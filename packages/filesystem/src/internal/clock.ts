/**
 * The clocks the store reads. Durations, deadlines and ages this process measures itself use the
 * monotonic clock, which a step of the wall clock (an NTP correction, an operator's `date -s`)
 * does not move; the wall clock is used only where a time is written down for another process or
 * compared with a file's modification time. Injected, so tests can step the wall clock both ways.
 */
import { Effect } from "effect"

/** The clocks of one open store. */
export interface StoreClock {
  /** Milliseconds since the epoch: only for times stored in files or compared with file times. */
  readonly wallMillis: () => number
  /** Milliseconds from an arbitrary origin, never going back: every duration and deadline. */
  readonly monotonicMillis: () => number
  /**
   * Sleeps on the real clock. The store's lock must keep polling even where the `Clock` service is
   * a `TestClock` that does not move by itself (tests, `@effect/vitest` layers).
   */
  readonly sleep: (millis: number) => Effect.Effect<void>
}

/** The system's clocks: `Date.now`, `performance.now`, and a timer. */
export const live: StoreClock = {
  wallMillis: () => Date.now(),
  monotonicMillis: () => performance.now(),
  sleep: (millis) =>
    Effect.async<void>((resume) => {
      const timer = setTimeout(() => resume(Effect.void), Math.max(0, millis))
      return Effect.sync(() => clearTimeout(timer))
    })
}
