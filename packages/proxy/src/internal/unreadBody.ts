/**
 * What the proxy reads of a request body it does not forward. Node reads the rest of a body nobody
 * read (a refusal answered before it) and drops it, for as long as the client sends, to keep the
 * connection for the next request; the proxy sets no request timeout (uploads may be long), so a
 * body without end to a refused host would be read without end. And a refusal that closes the
 * connection while the client still sends its body makes the kernel reset it, which may reach the
 * client before the refusal does. (`@secretgate/http` bounds its server's bodies the same way.)
 */
import type * as http from "node:http"

/** How much of a body is read, and dropped, after (or before) a refusal. */
export const DRAIN_BYTES = 256 * 1024

/** Once `res` is out, more than `DRAIN_BYTES` of `req`'s body closes the connection. */
export const boundUnreadBody = (req: http.IncomingMessage, res: http.ServerResponse): void => {
  // (before the answer's end, where Node would take the body to drop it itself, without a bound)
  res.once("prefinish", () => {
    if (req.complete || req.readableFlowing !== null) return
    let read = 0
    const stop = () => {
      req.off("data", onData)
      req.off("end", stop)
    }
    const onData = (chunk: Buffer) => {
      read += chunk.length
      if (read <= DRAIN_BYTES) return
      stop()
      req.socket.destroy()
    }
    req.on("data", onData)
    req.once("end", stop)
  })
}

/**
 * Calls `then` once `req`'s body has ended, read and dropped, or `DRAIN_BYTES` of it were: for a
 * refusal that closes the connection, so that a client still sending reads it rather than a reset.
 */
export const afterBody = (req: http.IncomingMessage, then: () => void): void => {
  if (req.complete) return then()
  let read = 0
  const done = () => {
    req.off("data", onData)
    req.off("end", done)
    req.off("error", done)
    then()
  }
  const onData = (chunk: Buffer) => {
    read += chunk.length
    if (read > DRAIN_BYTES) {
      done()
      req.pause()
    }
  }
  req.on("data", onData)
  req.once("end", done)
  req.once("error", done)
}
