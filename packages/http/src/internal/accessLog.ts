/**
 * Access logs: one structured entry per request, taken at the Node server's `request` event so
 * that every answer is seen (the fast lane's, the application's, a watch stream's when it ends).
 * An entry names the route by its template and the caller by its key id; it never holds a raw
 * path, a query string, a header or a body, which may carry an id, a key or a value.
 */
import type * as Http from "node:http"
import type { RouteTable } from "./routes.js"

/** One request, as logged. */
export interface Entry {
  /** When the answer ended (ISO-8601). */
  readonly time: string
  readonly method: string
  /** The route template (`/secret/{secretId}`); `null` when no route has this path. */
  readonly route: string | null
  /** The status sent; `null` when the connection closed before an answer was sent. */
  readonly status: number | null
  /** From the request's arrival to the answer's end (or the connection's close), in milliseconds. */
  readonly durationMs: number
  /** The id of the API key that authenticated the request, when one did. */
  readonly keyId?: string
  /** Present (true) when the connection closed before the answer was complete. */
  readonly aborted?: true
}

const callers = new WeakMap<Http.IncomingMessage, string>()

/** Notes the key that authenticated `request`, for its log entry. */
export const noteCaller = (request: Http.IncomingMessage, keyId: string): void => {
  callers.set(request, keyId)
}

type Listener = (request: Http.IncomingMessage, response: Http.ServerResponse) => void

/** `listener`, with an entry handed to `sink` once each answer has ended. */
export const wrap = (routes: RouteTable, sink: (entry: Entry) => void, listener: Listener): Listener => (request, response) => {
  const start = performance.now()
  response.once("close", () => {
    const method = request.method ?? "GET"
    const keyId = callers.get(request)
    const entry: Entry = {
      time: new Date().toISOString(),
      method,
      route: routes.lookup(method, request.url ?? "/").template ?? null,
      status: response.headersSent ? response.statusCode : null,
      durationMs: Math.round((performance.now() - start) * 10) / 10,
      ...(keyId === undefined ? {} : { keyId }),
      ...(response.writableFinished ? {} : { aborted: true as const })
    }
    try {
      sink(entry)
    } catch {
      // a failing sink must not take the server down; the entry is lost
    }
  })
  listener(request, response)
}

/** The default sink: one JSON line per entry on standard output. */
export const stdout = (entry: Entry): void => {
  process.stdout.write(`${JSON.stringify(entry)}\n`)
}
