/**
 * The store's `SecretChanges`: announcements of every committed write, this process's and other
 * processes' on the same directory, read from the journal every process appends to (`B`/`C`
 * lines naming the record files it changes). The design of the SQL backend's LISTEN + revision
 * (packages/sql/src/internal/freshness.ts), on files:
 *
 * - this process's writes are announced as soon as they are done (the store's write effects run
 *   a check of the journal before they complete);
 * - other processes' writes are noticed by `fs.watch` on the store directory (the journal is
 *   appended to, or replaced by a new generation): the fast path. While the watcher runs the store
 *   is `live`; when it fails, `live` turns false (resolvers fall back to their TTL) and it is
 *   restarted with backoff, announcing a change of every organization once it is back;
 * - the guarantee behind both: every `pollInterval` the journal's identity (inode, size, mtime)
 *   is compared with the position checked last, and any lines since are announced (this covers
 *   file systems and events `fs.watch` does not report).
 *
 * A check reads the journal lines after its own position (not the index's: a read of the store
 * catches the index up without announcing), reads the record files the lines name (without
 * touching the index: the store catches up on its next read, as always), and announces, by
 * organization, their placeholders as they were before (a deleted secret) and are now (a created
 * one). A file neither known before nor readable after, a journal it cannot
 * follow (rewritten, too far behind, unreadable), or a check that fails announces a change of
 * every organization instead: an extra reload, never a missed one.
 */
import type { FileSystem } from "@effect/platform"
import { SecretChanges, type StoreError } from "@secretgate/core"
import { Duration, Effect, Runtime, type Scope } from "effect"
import * as Fs from "node:fs"
import { basename } from "node:path"
import type * as Journal from "./journal.js"
import { fileKeyOf, type Layout } from "./layout.js"
import type { LiveIndex } from "./liveIndex.js"
import type { RecordFiles } from "./recordFiles.js"

/** Settings of the feed. */
export interface Options {
  /** How often the journal is compared with the last check: the guarantee. 0 turns polling off. */
  readonly pollInterval: Duration.Duration
  /** Whether to watch the directory (`fs.watch`): the fast path. */
  readonly watch: boolean
}

/** The feed of one open store. */
export interface Feed {
  readonly changes: SecretChanges.SecretChanges
  /** Announces what the journal holds since the last check (run after each write of this process). */
  readonly check: Effect.Effect<void>
}

type Known = { readonly organizationId: string; readonly placeholder: string }

/** Starts the feed in the scope; it stops with it. */
export const make = (
  parts: {
    readonly fs: FileSystem.FileSystem
    readonly paths: Layout
    readonly live: LiveIndex
    readonly files: RecordFiles
    /** What a read does first: catches the index up with the journal. */
    readonly sync: Effect.Effect<void, StoreError>
  },
  options: Options
): Effect.Effect<Feed, never, Scope.Scope> =>
  Effect.gen(function*() {
    const { live, paths } = parts
    let watching = false
    const hub = SecretChanges.makeHub(() => watching)

    // where the last check got to, and what each record file held then
    let position: Journal.Position = live.position()
    const known = new Map<string, Known>()
    const learnAll = () => {
      known.clear()
      for (const meta of live.index().records()) {
        known.set(fileKeyOf(meta.id), { organizationId: meta.organizationId, placeholder: meta.placeholder })
      }
    }
    learnAll()

    const everything = Effect.gen(function*() {
      yield* parts.sync
      learnAll()
      position = live.position()
      hub.publish({})
    })

    const follow: Effect.Effect<void, StoreError> = Effect.gen(function*() {
      const since = yield* live.linesSince(position)
      if (since._tag !== "Lines") return yield* everything
      const fileKeys = new Set<string>()
      for (const entry of since.entries) if (entry.op !== "K") fileKeys.add(entry.fileKey)
      if (fileKeys.size === 0) {
        position = since.next
        return
      }
      // each named record file as it is now, read without touching the index (this process's
      // reads catch it up as they always do: a check changes nothing the store holds)
      const list = [...fileKeys]
      const read = yield* Effect.forEach(list, (fileKey) => parts.files.readEntry(fileKey), { concurrency: 8 })
      const byOrganization = new Map<string, Set<string>>()
      const add = ({ organizationId, placeholder }: Known) => {
        const set = byOrganization.get(organizationId) ?? new Set<string>()
        set.add(placeholder)
        byOrganization.set(organizationId, set)
      }
      let unknown = false
      for (const [i, fileKey] of list.entries()) {
        const before = known.get(fileKey)
        const entry = read[i]?.entry
        const after = entry?._tag === "Record"
          ? { organizationId: entry.record.organizationId, placeholder: entry.record.placeholder }
          : undefined
        if (before !== undefined) add(before)
        if (after !== undefined) {
          add(after)
          known.set(fileKey, after)
        } else {
          known.delete(fileKey)
          if (before === undefined) unknown = true
        }
      }
      position = since.next
      if (unknown) return hub.publish({})
      for (const [organizationId, placeholders] of byOrganization) hub.publish({ organizationId, placeholders: [...placeholders] })
    })

    // one check at a time; a failed one announces everything (as soon as it can)
    const mutex = yield* Effect.makeSemaphore(1)
    const check: Effect.Effect<void> = mutex.withPermits(1)(
      follow.pipe(
        Effect.catchAll((error) =>
          Effect.zipRight(
            Effect.logWarning(`secretgate: could not read the changes of ${paths.root} (${error.message}); announcing a change of everything`),
            Effect.ignore(everything)
          )
        )
      )
    )

    // the guarantee: compare the journal's identity with the last check's
    const changedSinceCheck = Effect.map(
      parts.fs.stat(paths.journal).pipe(Effect.option),
      (stat) => {
        if (stat._tag === "None") return true
        const info = stat.value
        const ino = info.ino._tag === "Some" ? info.ino.value : 0
        const mtimeMs = info.mtime._tag === "Some" ? info.mtime.value.getTime() : 0
        return ino !== position.ino || Number(info.size) !== position.size || mtimeMs !== position.mtimeMs
      }
    )
    // checks started by timers and events: one at a time, and one more if asked meanwhile
    const runtime = yield* Effect.runtime<never>()
    const runPromise = Runtime.runPromise(runtime)
    let running = false
    let again: Effect.Effect<void> | undefined
    const start = (task: Effect.Effect<void>) => {
      if (running) {
        again = again === check ? check : task
        return
      }
      running = true
      again = undefined
      void runPromise(task).finally(() => {
        running = false
        if (again !== undefined) start(again)
      })
    }

    const pollMillis = Duration.toMillis(options.pollInterval)
    if (pollMillis > 0) {
      const polled = Effect.flatMap(changedSinceCheck, (changed) => changed ? check : Effect.void)
      // a plain timer, unref'd: a store left open does not keep the process alive
      yield* Effect.acquireRelease(
        Effect.sync(() => setInterval(() => start(polled), pollMillis).unref()),
        (timer) => Effect.sync(() => clearInterval(timer))
      )
    }

    // the fast path: events on the directory's journal files run a check
    if (options.watch) {
      const run = () => start(check)
      const journalName = basename(paths.journal)
      const previousName = basename(paths.journalPrevious)
      let failures = 0
      const session = Effect.acquireUseRelease(
        Effect.async<Fs.FSWatcher, Error>((resume) => {
          try {
            const watcher = Fs.watch(paths.root, { persistent: false }, (_, name) => {
              if (name === null || name === journalName || name === previousName) run()
            })
            resume(Effect.succeed(watcher))
          } catch (error) {
            resume(Effect.fail(error as Error))
          }
        }),
        (watcher) =>
          Effect.async<never, Error>((resume) => {
            // anything may have changed while no one watched (first start or restart)
            watching = true
            failures = 0
            run()
            hub.publish({})
            watcher.once("error", (error) => resume(Effect.fail(error)))
          }),
        (watcher) =>
          Effect.sync(() => {
            watching = false
            watcher.close()
          })
      ).pipe(
        Effect.catchAll((error) =>
          Effect.zipRight(
            Effect.logWarning(
              `secretgate: cannot watch ${paths.root} for other processes' changes (${error.message}); ` +
                "they are seen by polling every pollInterval"
            ),
            Effect.suspend(() => Effect.sleep(Duration.millis(Math.min(30_000, 100 * 2 ** failures++))))
          )
        )
      )
      yield* Effect.forkScoped(Effect.forever(session))
    }

    return { changes: hub, check }
  })
