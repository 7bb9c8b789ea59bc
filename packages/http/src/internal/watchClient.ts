/**
 * The client side of the watch route: one server-sent-event stream per organization, kept open
 * (and reopened with backoff when it drops), turning each announced change into a revision that
 * the egress resolver compares.
 *
 * The stream is read with `node:http(s)` directly: its events are handled as soon as their bytes
 * arrive, in the same turn of the event loop, so a change the server announced before answering a
 * write is counted before that answer reaches its caller.
 */
import { Either, Schema } from "effect"
import * as Http from "node:http"
import * as Https from "node:https"
import { ChangeEvent, ORGANIZATION_HEADER } from "../SecretApi.js"

const decodeEvent = Schema.decodeUnknownEither(Schema.parseJson(ChangeEvent))

/** What the watch knows of one organization. */
export interface Watch {
  /** Every change stream event is being received. */
  live: boolean
  /** Moves whenever something of the organization may have changed. */
  revision: number
  /** The revision at which everything last may have changed. */
  everything: number
  /** The revision at which each changed placeholder last changed (cleared when everything did). */
  readonly byPlaceholder: Map<string, number>
  /** The server's revision of the last event, to tell after a reconnection whether anything changed. */
  serverRevision: string | undefined
}

/**
 * Settings of the watches of one client.
 */
export interface Options {
  /** The watch route's URL. */
  readonly url: URL
  /** The `Authorization` header for an organization; a string to log when no key can be had. */
  readonly authorization: (organizationId: string) => { readonly header: string } | { readonly problem: string }
  /** A connection that carries nothing (not even a heartbeat) for this long is given up. */
  readonly idleMillis: number
  /** Longest wait between reconnection attempts. */
  readonly maxBackoffMillis: number
  /** Called after each change, once the revision moved. */
  readonly onChange: (organizationId: string, placeholders: ReadonlyArray<string> | undefined) => void
  /** A log line: the stream went down (`warning`) or is back (`info`). */
  readonly log: (level: "info" | "warning", message: string) => void
}

/**
 * The watches of a client: `of(organizationId)` starts one on first use; `close()` ends them all.
 */
export const make = (options: Options) => {
  const watches = new Map<string, Watch>()
  const stops = new Set<() => void>()
  let closed = false
  const transport = options.url.protocol === "https:" ? Https : Http

  const start = (organizationId: string, watch: Watch) => {
    let backoff = 1000
    let request: Http.ClientRequest | undefined
    let timer: ReturnType<typeof setTimeout> | undefined
    let down: string | undefined
    const stop = () => {
      if (timer !== undefined) clearTimeout(timer)
      request?.destroy()
    }
    stops.add(stop)

    const lost = (reason: string) => {
      request = undefined
      if (closed) return
      watch.live = false
      // one line per outage, not per attempt
      if (down === undefined) {
        options.log(
          "warning",
          `secretgate: the change stream of organization ${JSON.stringify(organizationId)} from ${options.url.origin} is down ` +
            `(${reason}); resolvers poll every TTL until it is back`
        )
      }
      down = reason
      timer = setTimeout(connect, backoff)
      timer.unref()
      backoff = Math.min(backoff * 2, options.maxBackoffMillis)
    }

    const apply = (event: ChangeEvent, first: boolean) => {
      if (first) {
        // after a (re)connection: anything may have changed unless the server's revision says not
        if (event.revision !== watch.serverRevision) everything()
        watch.live = true
        backoff = 1000
        if (down !== undefined) {
          options.log("info", `secretgate: the change stream of organization ${JSON.stringify(organizationId)} is back`)
        }
        down = undefined
      } else if (event.placeholders === undefined) {
        everything()
      } else {
        watch.revision++
        for (const placeholder of event.placeholders) watch.byPlaceholder.set(placeholder, watch.revision)
        options.onChange(organizationId, event.placeholders)
      }
      watch.serverRevision = event.revision
    }
    const everything = () => {
      watch.revision++
      watch.everything = watch.revision
      watch.byPlaceholder.clear()
      options.onChange(organizationId, undefined)
    }

    const connect = () => {
      timer = undefined
      if (closed) return
      const authorization = options.authorization(organizationId)
      if ("problem" in authorization) return lost(authorization.problem)
      const current = transport.request(options.url, {
        method: "GET",
        headers: { accept: "text/event-stream", authorization: authorization.header, [ORGANIZATION_HEADER]: organizationId }
      })
      request = current
      current.setTimeout(options.idleMillis, () => current.destroy(new Error(`nothing received for ${options.idleMillis} ms`)))
      current.on("error", (error) => {
        if (request === current) lost(describe(error))
      })
      current.on("response", (response) => {
        if (response.statusCode !== 200 || !String(response.headers["content-type"]).startsWith("text/event-stream")) {
          response.resume()
          current.destroy()
          if (request === current) lost(`the server answered ${response.statusCode}`)
          return
        }
        response.setEncoding("utf8")
        let buffer = ""
        let first = true
        response.on("data", (text: string) => {
          buffer += text
          let end: number
          while ((end = buffer.indexOf("\n\n")) !== -1) {
            const block = buffer.slice(0, end)
            buffer = buffer.slice(end + 2)
            const data = eventData(block)
            if (data === undefined) continue
            const event = decodeEvent(data)
            if (Either.isLeft(event)) {
              current.destroy()
              if (request === current) lost("the server sent an event that is not a change event")
              return
            }
            apply(event.right, first)
            first = false
          }
        })
        response.on("end", () => {
          if (request === current) lost("the server ended the stream")
        })
        response.on("error", (error) => {
          if (request === current) lost(describe(error))
        })
      })
      current.end()
    }
    connect()
  }

  return {
    of: (organizationId: string): Watch => {
      let watch = watches.get(organizationId)
      if (watch === undefined) {
        watch = { live: false, revision: 0, everything: 0, byPlaceholder: new Map(), serverRevision: undefined }
        watches.set(organizationId, watch)
        if (!closed) start(organizationId, watch)
      }
      return watch
    },
    /** The organization's watch if one was started (without starting one). */
    peek: (organizationId: string): Watch | undefined => watches.get(organizationId),
    /** Whether the organization's stream is up (without starting one). */
    live: (organizationId: string): boolean => watches.get(organizationId)?.live === true,
    close: () => {
      closed = true
      for (const stop of stops) stop()
      stops.clear()
      for (const watch of watches.values()) watch.live = false
    }
  }
}

// The `data` of an `event: change` block (comments, other events and fields ignored).
const eventData = (block: string): string | undefined => {
  let event = "message"
  const data: Array<string> = []
  for (const line of block.split("\n")) {
    if (line.startsWith(":")) continue
    const colon = line.indexOf(":")
    const field = colon === -1 ? line : line.slice(0, colon)
    const value = colon === -1 ? "" : line.slice(colon + 1).replace(/^ /, "")
    if (field === "event") event = value
    else if (field === "data") data.push(value)
  }
  return event === "change" && data.length > 0 ? data.join("\n") : undefined
}

const describe = (error: Error): string => (error as { code?: unknown }).code as string | undefined ?? error.message

type ChangeEvent = typeof ChangeEvent.Type
