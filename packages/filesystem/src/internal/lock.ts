/**
 * The write lock: a file named `lock` that one process at a time holds while it writes.
 *
 * - Taking it is `link(2)` of a complete temp file onto `lock`: atomic, fails if it exists, and
 *   the lock file always has its full content (pid, host, process start time, a random token).
 * - A lock whose holder died is stale: on the same host, the lock was taken in another boot (its
 *   boot id differs), or its pid is gone or now belongs to a process started at another time;
 *   from another host, it is older than a minute. These are facts a step of the wall clock cannot
 *   change (only a lock without a boot id, written by an older version, falls back to comparing
 *   its time with the boot time). It is removed while holding `lock.break`, after checking again
 *   that it is still the same stale lock, so two processes recovering at once cannot remove a lock
 *   a third has just taken.
 * - Waiting for the lock, and the age of a `lock.break`, are measured on the monotonic clock.
 * - Release removes `lock` only if it still carries the holder's token.
 */
import type { FileSystem } from "@effect/platform"
import { StoreUnavailable } from "@secretgate/core"
import { Effect, Option } from "effect"
import { readFileSync } from "node:fs"
import { hostname, uptime } from "node:os"
import type { StoreClock } from "./clock.js"
import { FILE_MODE, isAlreadyExists, isNotFound, token, unavailable } from "./io.js"

interface Owner {
  readonly pid: number
  readonly host: string
  readonly token: string
  /** Wall-clock time the lock was taken: shown to people, and compared only for foreign hosts and old locks. */
  readonly since: number
  /** `/proc/<pid>/stat` start time, where there is one: tells a reused pid from the holder. */
  readonly start: string | null
  /** The host's boot id (`/proc/sys/kernel/random/boot_id`), where there is one: a lock of another boot is stale. */
  readonly boot: string | null
}

interface Holder {
  readonly raw: string
  readonly owner: Owner | undefined
}

/** A holder on another host is presumed dead after this long (its pid cannot be checked). */
const FOREIGN_STALE_MS = 60_000
/** Temp files of lock attempts older than this are litter from a killed process. */
export const LOCK_TEMP_STALE_MS = 60_000

const HOST = hostname()

/** The boot id of this host (Linux), read once: changes at every boot, never with the clock. */
const BOOT_ID: string | null = (() => {
  if (process.platform !== "linux") return null
  try {
    return readFileSync("/proc/sys/kernel/random/boot_id", "utf8").trim() || null
  } catch {
    return null
  }
})()

/** When this host booted (ms since the epoch), from the wall clock and the uptime: only for locks without a boot id. */
const bootTime = (clock: StoreClock): number => clock.wallMillis() - uptime() * 1000
/** Margin for wall-clock adjustments since boot: a lock must predate the boot by this much to count. */
const BOOT_SLACK_MS = 10_000

const processStart = (fs: FileSystem.FileSystem, pid: number): Effect.Effect<string | null> =>
  process.platform === "linux"
    ? fs.readFileString(`/proc/${pid}/stat`).pipe(
      Effect.map((stat) => stat.slice(stat.lastIndexOf(")") + 2).split(" ")[19] ?? null),
      Effect.orElseSucceed(() => null)
    )
    : Effect.succeed(null)

let selfStart: string | null | undefined

const ownStart = (fs: FileSystem.FileSystem): Effect.Effect<string | null> =>
  selfStart !== undefined
    ? Effect.succeed(selfStart)
    : Effect.tap(processStart(fs, process.pid), (start) => {
      selfStart = start
    })

const parseOwner = (raw: string): Owner | undefined => {
  try {
    const value = JSON.parse(raw) as Partial<Owner>
    if (
      typeof value.pid === "number" && typeof value.host === "string" && typeof value.token === "string" &&
      typeof value.since === "number"
    ) {
      return {
        pid: value.pid,
        host: value.host,
        token: value.token,
        since: value.since,
        start: typeof value.start === "string" ? value.start : null,
        boot: typeof value.boot === "string" ? value.boot : null
      }
    }
  } catch {
    // a damaged lock file has no owner
  }
  return undefined
}

const readHolder = (fs: FileSystem.FileSystem, path: string): Effect.Effect<Holder | undefined, StoreUnavailable> =>
  Effect.gen(function*() {
    const raw = yield* fs.readFileString(path).pipe(
      Effect.map((text): string | undefined => text),
      Effect.catchIf(isNotFound, () => Effect.succeed(undefined)),
      Effect.mapError(unavailable("read", path))
    )
    return raw === undefined ? undefined : { raw, owner: parseOwner(raw) }
  })

const isAlive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === "EPERM"
  }
}

/** `true` when the holder is certainly gone. */
const isStale = (fs: FileSystem.FileSystem, holder: Holder, clock: StoreClock): Effect.Effect<boolean> => {
  const owner = holder.owner
  // lock files are linked into place complete, so one without an owner is damage, not a lock being written
  if (owner === undefined) return Effect.succeed(true)
  // another host's pid cannot be checked; its time is the only fact there is (see docs/filesystem.md)
  if (owner.host !== HOST) return Effect.succeed(clock.wallMillis() - owner.since > FOREIGN_STALE_MS)
  // taken in another boot of this host: whatever process has that pid now is not the holder
  // (where the start time is unknown, this is what tells a reused pid after a reboot)
  if (owner.boot !== null && BOOT_ID !== null) {
    if (owner.boot !== BOOT_ID) return Effect.succeed(true)
  } else if (owner.since < bootTime(clock) - BOOT_SLACK_MS) {
    // no boot id to compare (a lock written by an older version, or an OS without one)
    return Effect.succeed(true)
  }
  if (!isAlive(owner.pid)) return Effect.succeed(true)
  if (owner.start === null) return Effect.succeed(false)
  return Effect.map(processStart(fs, owner.pid), (start) => start !== null && start !== owner.start)
}

const describe = (holder: Holder): string =>
  holder.owner === undefined
    ? "an unreadable lock file"
    : `process ${holder.owner.pid} on ${holder.owner.host} since ${new Date(holder.owner.since).toISOString()}`

/** Writes a complete lock file under a temp name and links it to `path`: `true` if taken. */
const tryLink = (
  fs: FileSystem.FileSystem,
  path: string,
  content: string
): Effect.Effect<boolean, StoreUnavailable> => {
  const temp = `${path}.${token()}.tmp`
  return fs.writeFileString(temp, content, { flag: "wx", mode: FILE_MODE }).pipe(
    Effect.mapError(unavailable("write", temp)),
    Effect.zipRight(
      fs.link(temp, path).pipe(
        Effect.as(true),
        Effect.catchIf(isAlreadyExists, () => Effect.succeed(false)),
        Effect.mapError(unavailable("create lock", path))
      )
    ),
    Effect.ensuring(fs.remove(temp).pipe(Effect.ignore))
  )
}

/**
 * Removes `path` if it holds `raw`: read it; if it matches, `rename(2)` it aside to a unique name
 * (atomic: this process now owns whatever file was at `path`, and nobody else can remove it),
 * read that again, and unlink it if it is still `raw`. If another process replaced the file in
 * between (it removed the same stale file and took the lock or breaker itself), the grabbed file
 * is not `raw`: it is linked back to `path` and left alone. A plain read-then-unlink would have
 * removed it. Residual risk (see docs/filesystem.md): a third process that takes `path` in the
 * microseconds between the rename and the link back. Uninterruptible, so nothing is left aside.
 */
export const removeIfSame = (
  fs: FileSystem.FileSystem,
  path: string,
  raw: string
): Effect.Effect<void, StoreUnavailable> =>
  Effect.uninterruptible(Effect.gen(function*() {
    const current = yield* readHolder(fs, path)
    if (current === undefined || current.raw !== raw) return
    const aside = `${path}.${token()}.gone`
    const moved = yield* fs.rename(path, aside).pipe(
      Effect.as(true),
      Effect.catchIf(isNotFound, () => Effect.succeed(false)),
      Effect.mapError(unavailable("rename aside", path))
    )
    if (!moved) return // removed meanwhile by someone else
    const grabbed = yield* fs.readFileString(aside).pipe(Effect.option)
    if (grabbed._tag === "None" || grabbed.value !== raw) {
      // not the file we meant to remove: give it back
      yield* fs.link(aside, path).pipe(
        Effect.catchIf(isAlreadyExists, () => Effect.void),
        Effect.mapError(unavailable("put back", path)),
        Effect.ensuring(fs.remove(aside).pipe(Effect.ignore))
      )
      return
    }
    yield* fs.remove(aside).pipe(Effect.catchIf(isNotFound, () => Effect.void), Effect.mapError(unavailable("remove", aside)))
  }))

/**
 * Breaking a stale lock takes a few file operations; a `lock.break` older than this is an orphan
 * (its process died, or it was put back after its owner had finished) even if its pid is alive.
 */
const BREAKER_STALE_MS = 2_000

/**
 * When this process first saw each `lock.break` it found held (by content), on the monotonic
 * clock: a breaker's age is how long this process has watched it, which no clock step changes.
 */
const breakersSeen = new Map<string, number>()

const heldFor = (raw: string, clock: StoreClock): number => {
  const now = clock.monotonicMillis()
  const first = breakersSeen.get(raw)
  if (first !== undefined) return now - first
  if (breakersSeen.size >= 64) breakersSeen.clear() // only ever a few; never let it grow
  breakersSeen.set(raw, now)
  return 0
}

/**
 * Removes the stale lock `holder`, holding `breaker` meanwhile: `false` when another live
 * process is breaking it right now (the caller waits a little), `true` otherwise.
 */
const breakStale = (
  fs: FileSystem.FileSystem,
  path: string,
  breaker: string,
  holder: Holder,
  owner: Owner,
  clock: StoreClock
): Effect.Effect<boolean, StoreUnavailable> =>
  Effect.gen(function*() {
    // its own token, so that its content differs from every other breaker's
    const content = JSON.stringify({ ...owner, token: token(16), since: clock.wallMillis() })
    if (yield* tryLink(fs, breaker, content)) {
      yield* removeIfSame(fs, path, holder.raw).pipe(
        Effect.ensuring(removeIfSame(fs, breaker, content).pipe(Effect.ignore))
      )
      return true
    }
    // another process is breaking it; if that one died too (or left an orphan), clear its breaker
    const other = yield* readHolder(fs, breaker)
    if (other === undefined) return true
    const orphan = other.owner !== undefined && heldFor(other.raw, clock) > BREAKER_STALE_MS
    if (orphan || (yield* isStale(fs, other, clock))) {
      breakersSeen.delete(other.raw)
      yield* removeIfSame(fs, breaker, other.raw)
      return true
    }
    return false
  })

/** Where the lock lives, and how long to wait for it. */
export interface LockOptions {
  readonly path: string
  readonly breaker: string
  readonly timeoutMillis: number
  readonly clock: StoreClock
}

/**
 * Takes the lock, waiting (polling with jittered back-off) for a live holder and breaking a stale
 * one. Fails with `StoreUnavailable` naming the holder after `timeoutMillis`. The wait is
 * interruptible; only each atomic step is not: the `link(2)` that takes the lock (which calls
 * `onTaken` in the same uninterruptible step, so a lock taken is always known to the caller) and
 * the breaking of a stale lock (so no `lock.break` of ours is left behind).
 */
const acquireInterruptibly = (
  fs: FileSystem.FileSystem,
  options: LockOptions,
  onTaken: (content: string) => void,
  wait = true
): Effect.Effect<boolean, StoreUnavailable> =>
  Effect.gen(function*() {
    const clock = options.clock
    const owner: Owner = {
      pid: process.pid,
      host: HOST,
      token: token(16),
      since: clock.wallMillis(),
      start: yield* ownStart(fs),
      boot: BOOT_ID
    }
    const content = JSON.stringify(owner)
    const deadline = clock.monotonicMillis() + options.timeoutMillis
    const take = Effect.uninterruptible(Effect.tap(tryLink(fs, options.path, content), (taken) => {
      if (taken) onTaken(content)
    }))
    let delay = 1
    // without waiting: a few attempts, only to get past a stale lock or one released meanwhile
    for (let attempts = 0;; attempts++) {
      if (yield* take) return true
      if (!wait && attempts >= 3) return false
      const holder = yield* readHolder(fs, options.path)
      if (holder === undefined) continue // released between our attempt and the read
      const stale = yield* isStale(fs, holder, clock)
      if (stale && (yield* Effect.uninterruptible(breakStale(fs, options.path, options.breaker, holder, owner, clock)))) {
        continue
      }
      if (!wait) return false
      if (clock.monotonicMillis() > deadline) {
        return yield* Effect.fail(
          new StoreUnavailable({
            message: `timed out after ${options.timeoutMillis} ms waiting for the store lock ${options.path}, held by ${
              describe(holder)
            }`
          })
        )
      }
      if (stale) {
        yield* clock.sleep(2) // another process is breaking it
        continue
      }
      yield* clock.sleep(delay * (0.5 + Math.random()))
      delay = Math.min(delay * 2, 20)
    }
  })

/**
 * Runs `body` holding the lock (see `acquireInterruptibly`), and releases it afterwards whatever
 * happens: success, failure, or an interruption at any point after the lock was taken.
 */
export const withLock = (fs: FileSystem.FileSystem, options: LockOptions) =>
<A, E, R>(body: Effect.Effect<A, E, R>): Effect.Effect<A, E | StoreUnavailable, R> =>
  Effect.uninterruptibleMask((restore) => {
    let held: string | undefined
    return restore(acquireInterruptibly(fs, options, (content) => {
      held = content
    })).pipe(
      Effect.zipRight(restore(body)),
      Effect.ensuring(Effect.suspend(() =>
        held === undefined ? Effect.void : removeIfSame(fs, options.path, held).pipe(Effect.ignore)
      ))
    )
  })

/**
 * Runs `body` holding the lock if it can be taken without waiting for a live holder (a stale lock
 * is broken): `Option.some` of its result, or `Option.none` when another process holds the lock.
 */
export const tryWithLock = (fs: FileSystem.FileSystem, options: LockOptions) =>
<A, E, R>(body: Effect.Effect<A, E, R>): Effect.Effect<Option.Option<A>, E | StoreUnavailable, R> =>
  Effect.uninterruptibleMask((restore) => {
    let held: string | undefined
    return restore(acquireInterruptibly(fs, options, (content) => {
      held = content
    }, false)).pipe(
      Effect.flatMap((taken) => taken ? Effect.asSome(restore(body)) : Effect.succeedNone),
      Effect.ensuring(Effect.suspend(() =>
        held === undefined ? Effect.void : removeIfSame(fs, options.path, held).pipe(Effect.ignore)
      ))
    )
  })
