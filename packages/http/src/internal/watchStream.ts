/**
 * The server side of the watch route: an organization's change announcements (`Secrets.changes`,
 * fed by the backend through core's `SecretChanges`) written as server-sent events.
 *
 * Events are written to the Node response synchronously from the announcement, so that an event
 * is on its way before the answer to the write that caused it: a watching egress proxy on the same
 * host hears of a change before the writer hears that it is done.
 */
import type { Secrets } from "@secretgate/core"
import { Context, Effect, Schema } from "effect"
import type * as Http from "node:http"
import { ChangeEvent } from "../SecretApi.js"

const encodeEvent = Schema.encodeSync(ChangeEvent)

/**
 * The watch streams open on a server, so that a shutdown ends them rather than waiting for them.
 */
export class OpenStreams extends Context.Tag("@secretgate/http/OpenStreams")<OpenStreams, Set<Http.ServerResponse>>() {}

/** Ends every open stream (their clients fall back to polling and reconnect elsewhere). */
export const endAll = (streams: Set<Http.ServerResponse>): void => {
  for (const response of streams) response.end()
  streams.clear()
}

/**
 * Streams the changes of `organizationId` to `response` until the client goes away, the stream is
 * ended by a shutdown, or the announcements stop being live.
 */
export const serve = (options: {
  readonly response: Http.ServerResponse
  readonly secrets: Secrets.Secrets
  readonly changes: NonNullable<Secrets.Secrets["changes"]>
  readonly revision: NonNullable<Secrets.Secrets["revision"]>
  readonly organizationId: string
  /** Distinguishes this server's revisions from another's (or an earlier run's). */
  readonly instance: string
  readonly heartbeatMillis: number
  readonly open: Set<Http.ServerResponse> | undefined
}): Effect.Effect<void> =>
  Effect.async<void>((resume) => {
    const { changes, organizationId, response } = options
    const send = (placeholders?: ReadonlyArray<string>) => {
      const data = encodeEvent({
        revision: `${options.instance}.${options.revision(organizationId)}`,
        ...(placeholders === undefined ? {} : { placeholders })
      })
      response.write(`event: change\ndata: ${JSON.stringify(data)}\n\n`)
      // Node corks a response's socket until the next tick after a write; the event must leave now,
      // before the answer to the write that caused it
      response.socket?.uncork()
    }
    response.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-store", "x-accel-buffering": "no" })
    send()
    const stop = changes.subscribe((change) => {
      if (change.organizationId !== undefined && change.organizationId !== organizationId) return
      // announcements that are no longer complete: end, so that the client polls instead
      if (!changes.live(organizationId)) return response.end()
      send(change.organizationId === undefined ? undefined : change.placeholders)
    })
    const heartbeat = setInterval(() => response.write(": keep-alive\n\n"), options.heartbeatMillis)
    options.open?.add(response)
    const release = () => {
      stop()
      clearInterval(heartbeat)
      options.open?.delete(response)
      if (!response.writableEnded) response.end()
    }
    response.once("close", () => {
      release()
      resume(Effect.void)
    })
    return Effect.sync(release)
  })
