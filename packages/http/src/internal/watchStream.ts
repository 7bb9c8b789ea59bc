/**
 * The server side of the watch route: an organization's change announcements (`Secrets.changes`,
 * fed by the backend through core's `SecretChanges`) written as server-sent events.
 *
 * Events are written to the Node response synchronously from the announcement, so that an event
 * is on its way before the answer to the write that caused it: a watching egress proxy on the same
 * host hears of a change before the writer hears that it is done.
 */
import type { Secrets } from "@secretgate/core"
import { Context, Effect, Option, type Redacted, Schema } from "effect"
import type * as Http from "node:http"
import type { ApiKey, ApiKeys } from "../ApiKeys.js"
import { ChangeEvent, TooManyWatchStreams } from "../SecretApi.js"

const encodeEvent = Schema.encodeSync(ChangeEvent)

/** Most streams open at once, per API key and per organization. */
export interface Limits {
  readonly perKey: number
  readonly perOrganization: number
}

/**
 * The watch streams open on a server: counted per key and organization (for the limits), ended by
 * key when the key is revoked, and all ended by a shutdown rather than waited for.
 */
export interface OpenStreams {
  readonly all: Set<Http.ServerResponse>
  readonly byKey: Map<string, Set<Http.ServerResponse>>
  readonly byOrganization: Map<string, Set<Http.ServerResponse>>
}

/** The open streams of a server. */
export const OpenStreams = Context.GenericTag<OpenStreams>("@secretgate/http/OpenStreams")

/** No stream open yet. */
export const makeOpenStreams = (): OpenStreams => ({ all: new Set(), byKey: new Map(), byOrganization: new Map() })

/**
 * How long an ended stream's client has to read the end before its connection is destroyed (a
 * client that stopped reading would otherwise keep the connection, and its place under the limits,
 * forever).
 */
const GRACE_MILLIS = 2_000

/**
 * The most bytes a stream may hold unsent: a client that stops reading while changes go on is cut
 * off (it falls back to polling), rather than buffered for without bound.
 */
const MAX_UNSENT_BYTES = 1024 * 1024

/** How each open stream is finished: its subscription and heartbeat stopped first, then ended. */
const finishers = new WeakMap<Http.ServerResponse, () => void>()

const finish = (response: Http.ServerResponse) => (finishers.get(response) ?? (() => response.end()))()

/** Ends every open stream (their clients fall back to polling and reconnect elsewhere). */
export const endAll = (streams: OpenStreams): void => {
  for (const response of [...streams.all]) finish(response)
  streams.all.clear()
  streams.byKey.clear()
  streams.byOrganization.clear()
}

/** Ends the streams opened with the key `keyId` (it was revoked). */
export const endForKey = (streams: OpenStreams, keyId: string): void => {
  for (const response of [...(streams.byKey.get(keyId) ?? [])]) finish(response)
}

const add = (index: Map<string, Set<Http.ServerResponse>>, id: string, response: Http.ServerResponse) => {
  let set = index.get(id)
  if (set === undefined) index.set(id, set = new Set())
  set.add(response)
}

const remove = (index: Map<string, Set<Http.ServerResponse>>, id: string, response: Http.ServerResponse) => {
  const set = index.get(id)
  if (set === undefined) return
  set.delete(response)
  if (set.size === 0) index.delete(id)
}

// `TooManyWatchStreams` when `caller` may open no more streams.
const refusal = (streams: OpenStreams, caller: ApiKey, limits: Limits): TooManyWatchStreams | undefined => {
  const byKey = streams.byKey.get(caller.id)?.size ?? 0
  if (byKey >= limits.perKey) {
    return (
      new TooManyWatchStreams({
        message: `this API key already holds ${byKey} open watch streams, the most the server allows (${limits.perKey}); ` +
          "close one, or poll POST /secret/resolve",
        limit: limits.perKey
      })
    )
  }
  const byOrganization = streams.byOrganization.get(caller.organizationId)?.size ?? 0
  if (byOrganization >= limits.perOrganization) {
    return (
      new TooManyWatchStreams({
        message: `organization ${JSON.stringify(caller.organizationId)} already holds ${byOrganization} open watch streams, ` +
          `the most the server allows (${limits.perOrganization}); close one, or poll POST /secret/resolve`,
        limit: limits.perOrganization
      })
    )
  }
  return undefined
}

/**
 * Streams the changes of the caller's organization to `response` until the client goes away, the
 * stream is ended by a shutdown or the revocation of the caller's key, or the announcements stop
 * being live. Fails with `TooManyWatchStreams`, before anything is written, when the caller's key or
 * organization holds `limits` streams already.
 */
export const serve = (options: {
  readonly response: Http.ServerResponse
  readonly secrets: Secrets.Secrets
  readonly changes: NonNullable<Secrets.Secrets["changes"]>
  readonly revision: NonNullable<Secrets.Secrets["revision"]>
  readonly caller: ApiKey
  /** The key as presented, re-checked at every heartbeat (for an `ApiKeys` that announces no revocation). */
  readonly token: Redacted.Redacted<string>
  readonly keys: ApiKeys
  /** Distinguishes this server's revisions from another's (or an earlier run's). */
  readonly instance: string
  readonly heartbeatMillis: number
  readonly open: OpenStreams
  readonly limits: Limits
}): Effect.Effect<void, TooManyWatchStreams> =>
  Effect.async<void, TooManyWatchStreams>((resume) => {
    const { caller, changes, open, response } = options
    const refused = refusal(open, caller, options.limits)
    if (refused !== undefined) return resume(Effect.fail(refused))
    const organizationId = caller.organizationId
    // nothing is written once the stream is ended (by a revocation, a shutdown or announcements no
    // longer complete): a write after the end would fail the response, and the process with it
    let ended = false
    const write = (text: string) => {
      if (ended || response.writableEnded || response.destroyed) return
      if (response.writableLength > MAX_UNSENT_BYTES) {
        end()
        return void response.destroy()
      }
      response.write(text)
    }
    const send = (placeholders?: ReadonlyArray<string>) => {
      const data = encodeEvent({
        revision: `${options.instance}.${options.revision(organizationId)}`,
        ...(placeholders === undefined ? {} : { placeholders })
      })
      write(`event: change\ndata: ${JSON.stringify(data)}\n\n`)
      // Node corks a response's socket until the next tick after a write; the event must leave now,
      // before the answer to the write that caused it
      response.socket?.uncork()
    }
    // a socket error after the client went away is the end of the stream, not the server's
    response.on("error", () => {})
    response.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store", "x-accel-buffering": "no" })
    send()
    const stop = changes.subscribe((change) => {
      if (change.organizationId !== undefined && change.organizationId !== organizationId) return
      // announcements that are no longer complete: end, so that the client polls instead
      if (!changes.live(organizationId)) return end()
      send(change.organizationId === undefined ? undefined : change.placeholders)
    })
    // a key revoked since the stream opened ends it (a registry announces revocations at once;
    // any other `ApiKeys` is asked again at each heartbeat)
    const stillValid = (key: Option.Option<ApiKey>) => Option.isSome(key) && key.value.id === caller.id
    const heartbeat = setInterval(() => {
      if (ended) return
      write(": keep-alive\n\n")
      Effect.runCallback(options.keys.authenticate(options.token), {
        onExit: (exit) => {
          if (exit._tag === "Success" && !stillValid(exit.value)) end()
        }
      })
    }, options.heartbeatMillis)
    // the one way a stream is ended from here: subscription and heartbeat stopped, then the end
    // sent, and the connection destroyed if the client has not read it within the grace period
    function end() {
      if (ended) return
      ended = true
      stop()
      clearInterval(heartbeat)
      if (!response.writableEnded && !response.destroyed) response.end()
      setTimeout(() => response.destroy(), GRACE_MILLIS).unref()
    }
    finishers.set(response, end)
    open.all.add(response)
    add(open.byKey, caller.id, response)
    add(open.byOrganization, organizationId, response)
    const release = () => {
      end()
      open.all.delete(response)
      remove(open.byKey, caller.id, response)
      remove(open.byOrganization, organizationId, response)
    }
    response.once("close", () => {
      release()
      resume(Effect.void)
    })
    return Effect.sync(release)
  })
