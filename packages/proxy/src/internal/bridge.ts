/**
 * The request bridge: a decrypted (or plain-HTTP) request becomes dispatch options for the
 * sandbox's egress agent, with the CONNECT target (or the absolute-form URL's origin) as the origin;
 * the agent's handler events become `writeHead` / `write` / `end` on the client's response, with
 * backpressure both ways. No substitution or scrubbing here: that is the agent's job.
 */
import { Buffer } from "node:buffer"
import type { IncomingMessage, ServerResponse } from "node:http"
import type { Duplex } from "node:stream"
import type { Dispatcher } from "undici"
import { requestHeaders, responseHeaders, trailerPairs } from "./headers.js"
import { auditedMessage, PRIVATE_DESTINATION } from "./destinations.js"
import { kindOf, refuseOn, statusFor } from "./refusal.js"
import type { Sandbox } from "./sandbox.js"

/**
 * Bodies of known length up to this size are read whole and sent with their exact (possibly
 * rewritten) `Content-Length`; longer or chunked bodies stream, re-framed as chunked upstream.
 */
export const WHOLE_BODY_LIMIT = 256 * 1024

/** Why the client's side went away, for the upstream request it aborts. */
const clientGone = () => new Error("the client closed the connection")

/** A failure the proxy itself decided (a refused destination) is audited as a refusal. */
const reportFailure = (sandbox: Sandbox, origin: string, error: Error): void => {
  if ((error as { code?: unknown }).code !== PRIVATE_DESTINATION) return
  sandbox.report({ type: "refused", sandbox: sandbox.id, host: new URL(origin).hostname.replace(/^\[(.*)\]$/, "$1"), reason: "private-destination", status: 403, message: auditedMessage(error) })
}

/** Relays the agent's response events to the client's `ServerResponse`. */
class ResponseRelay implements Dispatcher.DispatchHandler {
  private controller: Dispatcher.DispatchController | undefined
  private closed = false

  constructor(private readonly res: ServerResponse, private readonly sandbox: Sandbox, private readonly origin: string) {
    res.once("close", () => {
      if (res.writableFinished) return
      this.closed = true
      this.controller?.abort(clientGone())
    })
  }

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.controller = controller
    if (this.closed) controller.abort(clientGone())
  }

  onResponseStart(_controller: Dispatcher.DispatchController, statusCode: number, headers: Record<string, string | Array<string> | undefined>, statusMessage?: string): void {
    if (this.closed) return
    const flat = responseHeaders(headers as never)
    if (statusMessage !== undefined && statusMessage !== "") this.res.writeHead(statusCode, statusMessage, flat)
    else this.res.writeHead(statusCode, flat)
    // A body chunk read with the headers takes them along (one write); if none comes in this turn
    // of the event loop, the headers go out alone, so a slow stream's client sees its status at once.
    setImmediate(() => {
      if (!this.res.headersSent && !this.res.destroyed) this.res.flushHeaders()
    })
  }

  onResponseData(controller: Dispatcher.DispatchController, chunk: Buffer): void {
    if (this.closed) return
    if (!this.res.write(chunk) && !controller.paused) {
      controller.pause()
      this.res.once("drain", () => controller.resume())
    }
  }

  onResponseEnd(_controller: Dispatcher.DispatchController, trailers: Record<string, string | Array<string> | undefined>): void {
    if (this.closed) return
    const pairs = trailerPairs(trailers as never)
    if (pairs.length > 0) this.res.addTrailers(pairs)
    this.res.end()
  }

  onResponseError(_controller: Dispatcher.DispatchController, error: Error): void {
    reportFailure(this.sandbox, this.origin, error)
    if (this.closed) return
    if (this.res.headersSent) {
      // the response began: all that can be said is that it did not end
      this.res.destroy(error)
      return
    }
    const body = `secretgate proxy: ${error.message}\n`
    this.res.writeHead(statusFor(error), {
      "content-type": "text/plain; charset=utf-8",
      "content-length": String(Buffer.byteLength(body)),
      "x-secretgate-error": kindOf(error)
    })
    this.res.end(body)
  }
}

const declaredLength = (req: IncomingMessage): number | undefined => {
  const header = req.headers["content-length"]
  if (header === undefined || req.headers["transfer-encoding"] !== undefined) return undefined
  const length = Number(header)
  return Number.isSafeInteger(length) && length >= 0 ? length : undefined
}

/** Reads a small body whole; `undefined` when the client went away first. */
const readWhole = (req: IncomingMessage, length: number): Promise<Buffer | undefined> =>
  new Promise((resolve) => {
    const chunks: Array<Buffer> = []
    req.on("data", (chunk: Buffer) => chunks.push(chunk))
    req.once("end", () => resolve(Buffer.concat(chunks, length)))
    req.once("error", () => resolve(undefined))
    req.once("close", () => {
      if (!req.complete) resolve(undefined)
    })
  })

/**
 * Forwards one request to `origin` through the sandbox's agent. `path` is the origin-form target
 * (`/path?query`).
 */
export const forward = (sandbox: Sandbox, origin: string, path: string, req: IncomingMessage, res: ServerResponse): void => {
  const length = declaredLength(req)
  const chunked = req.headers["transfer-encoding"] !== undefined
  const streamed = chunked || (length !== undefined && length > WHOLE_BODY_LIMIT)
  const headers = requestHeaders(req.rawHeaders, { streamed })
  const relay = new ResponseRelay(res, sandbox, origin)
  const dispatch = (body: Buffer | IncomingMessage | null) =>
    sandbox.agent.dispatch({ origin, path, method: req.method as Dispatcher.HttpMethod, headers, body }, relay)
  if (streamed) return void dispatch(req)
  if (length === undefined || length === 0) {
    req.resume()
    return void dispatch(null)
  }
  void readWhole(req, length).then((body) => {
    if (body !== undefined) dispatch(body)
  })
}

/**
 * Forwards a WebSocket opening handshake through the sandbox's agent (`upgrade: "websocket"`):
 * with `webSockets: true` values go into it and into the client's messages and every frame coming
 * back is scrubbed; otherwise it carries placeholders only. Other upgrades are refused.
 */
export const forwardUpgrade = (sandbox: Sandbox, origin: string, path: string, req: IncomingMessage, socket: Duplex, head: Buffer): boolean => {
  const protocol = String(req.headers.upgrade ?? "").trim().toLowerCase()
  if (protocol !== "websocket" || req.method !== "GET") return false
  let controller: Dispatcher.DispatchController | undefined
  socket.once("close", () => controller?.abort(clientGone()))
  socket.on("error", () => socket.destroy())
  sandbox.agent.dispatch(
    {
      origin,
      path,
      method: "GET",
      headers: requestHeaders(req.rawHeaders, { streamed: false }),
      body: null,
      upgrade: "websocket"
    },
    {
      onRequestStart(started) {
        controller = started
      },
      onRequestUpgrade(_controller, statusCode, headers, upstream) {
        const lines = [`HTTP/1.1 ${statusCode} Switching Protocols`, "connection: Upgrade", "upgrade: websocket"]
        const flat = responseHeaders(headers)
        for (let i = 0; i < flat.length; i += 2) lines.push(`${flat[i]}: ${flat[i + 1]}`)
        socket.write(`${lines.join("\r\n")}\r\n\r\n`)
        if (head.length > 0) upstream.write(head)
        upstream.on("error", () => socket.destroy())
        socket.on("error", () => upstream.destroy())
        socket.once("close", () => upstream.destroy())
        upstream.once("close", () => socket.destroy())
        socket.pipe(upstream)
        upstream.pipe(socket)
      },
      onResponseStart(_controller, statusCode, headers, statusMessage) {
        // the upstream declined the upgrade: its answer goes back as it is, and the connection ends
        const lines = [`HTTP/1.1 ${statusCode} ${statusMessage ?? ""}`.trimEnd(), "connection: close"]
        const flat = responseHeaders(headers)
        for (let i = 0; i < flat.length; i += 2) if (flat[i] !== "content-length") lines.push(`${flat[i]}: ${flat[i + 1]}`)
        socket.write(`${lines.join("\r\n")}\r\n\r\n`)
      },
      onResponseData(_controller, chunk) {
        socket.write(chunk)
      },
      onResponseEnd() {
        socket.end()
      },
      onResponseError(_controller, error) {
        reportFailure(sandbox, origin, error)
        if (socket.destroyed) return
        if (socket.writable && (socket as { bytesWritten?: number }).bytesWritten === 0) refuseOn(socket, statusFor(error), error.message, { "x-secretgate-error": kindOf(error) })
        else socket.destroy()
      }
    }
  )
  return true
}
