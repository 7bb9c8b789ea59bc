/**
 * What a Node HTTP server (the REST server of `@secretgate/http`, the proxy of `@secretgate/proxy`)
 * reads of a request body it answers without reading. Node reads the rest of such a body and drops
 * it, for as long as the client sends, to keep the connection for the next request: a body without
 * end would be read without end (the proxy sets no request timeout; a 401 needs no key). And an
 * answer that closes the connection while the client still sends its body makes the kernel reset
 * it, which may reach the client before the answer: it sees EPIPE or ECONNRESET, not why.
 *
 * @since 0.1.0
 */
import type * as Http from "node:http"

/**
 * How much of an unread body is read, and dropped, after (or before) an answer: Go's net/http
 * draining bound.
 *
 * @since 0.1.0
 */
export const DRAIN_BYTES = 256 * 1024

/** How long a connection cut off after an answer stays open for the client to read it. */
const LINGER_MS = 500

/**
 * Bounds what is read of `request`'s body once `response` is answered without reading it: the body
 * is read and dropped from the answer's end; more than `DRAIN_BYTES` of it closes the connection, a
 * body that ends sooner leaves it open for the next request. A body the handler reads (or read and
 * stopped reading) is the handler's.
 *
 * @since 0.1.0
 */
export const bound = (request: Http.IncomingMessage, response: Http.ServerResponse): void => {
  // a request that declares no body has none (the common case: a GET, answered on a hot path)
  const { headers } = request
  if (headers["transfer-encoding"] === undefined && (headers["content-length"] === undefined || headers["content-length"] === "0")) return
  // (before the answer's end, where Node would take the body to drop it itself, without a bound)
  response.once("prefinish", () => {
    if (request.complete || request.readableFlowing !== null) return
    let read = 0
    const stop = () => {
      request.off("data", onData)
      request.off("end", stop)
    }
    const onData = (chunk: Uint8Array) => {
      read += chunk.length
      if (read <= DRAIN_BYTES) return
      stop()
      // No more is read. Closed at once, the connection would be reset by the kernel as the client
      // goes on sending, and the reset can overtake the answer: the answer is followed by the end
      // of what the server sends, and the connection closed `LINGER_MS` later (Go's lingering close).
      request.pause()
      request.socket.end()
      setTimeout(() => request.socket.destroy(), LINGER_MS).unref()
    }
    request.on("data", onData)
    request.once("end", stop)
  })
}

/**
 * Calls `then` once `request`'s body has ended, read and dropped, or `DRAIN_BYTES` of it were, or
 * it failed, or `waitMs` passed (a client that declares a body and sends none is not waited for
 * without end): for an answer that closes the connection, so that a client still sending its body
 * reads the answer rather than a reset.
 *
 * @since 0.1.0
 */
export const after = (request: Http.IncomingMessage, waitMs: number, then: () => void): void => {
  if (request.complete) return then()
  let read = 0
  const done = () => {
    clearTimeout(timer)
    request.off("data", onData)
    request.off("end", done)
    request.off("error", done)
    request.pause()
    then()
  }
  const onData = (chunk: Uint8Array) => {
    read += chunk.length
    if (read > DRAIN_BYTES) done()
  }
  const timer = setTimeout(done, waitMs)
  request.on("data", onData)
  request.once("end", done)
  request.once("error", done)
}

/**
 * Node's answer to an `Expect` header it does not know (417), with the body bounded as `bound`
 * bounds it: for a server's `checkExpectation` event, which otherwise leaves the body to Node's
 * unbounded drop.
 *
 * @since 0.1.0
 */
export const expectationFailed = (request: Http.IncomingMessage, response: Http.ServerResponse): void => {
  bound(request, response)
  response.writeHead(417)
  response.end()
}
