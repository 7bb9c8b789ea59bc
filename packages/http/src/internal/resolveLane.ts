/**
 * A fast lane for `POST /secret/resolve`, the route every egress resolver calls: the request is
 * answered straight from the Node request, without the router, the middleware stack and the
 * per-request fibers of the full application, using what the endpoint's definition says: its
 * method and path, its header schema, its success schema, status and content type. Authentication
 * and the handler are the route's own.
 *
 * Only a success is answered here, and everything else by the full application, as if the lane did
 * not exist (the route only reads, so running its handler twice is without effect):
 * - a request the lane does not take whole (another method or path, a query, a body without a
 *   declared length or over the limit, headers the endpoint's schema refuses) goes on untouched;
 * - a failed authentication goes on before the body is read;
 * - a body that is not UTF-8 JSON, a payload the handler refuses, a backend failure or a defect
 *   goes on with the body read so far handed over as it came (a stream of the same bytes, with the
 *   request's method, URL, headers and socket).
 */
import type { HttpApiEndpoint } from "@effect/platform"
import { Effect, Either, type Exit, FiberId, Runtime, Schema } from "effect"
import { Buffer } from "node:buffer"
import type * as Http from "node:http"
import { Readable } from "node:stream"
import { jsonAnswer } from "./fastLane.js"

/**
 * What the lane asks of the route: authentication of the request (from its headers), and the
 * handler given the authenticated caller and the parsed JSON body.
 */
export interface Route<C, A> {
  readonly authenticate: (request: Http.IncomingMessage) => Effect.Effect<C, unknown>
  readonly handle: (caller: C, body: unknown) => Effect.Effect<A, unknown>
}

/**
 * A lane: `serve(request, response, next)` answers the request, or calls `next(request)` (at
 * once, or once it failed) for the full application to answer it: with the request itself when its
 * body was not read, with a stand-in carrying the same bytes when it was.
 */
export interface Lane {
  readonly serve: (
    request: Http.IncomingMessage,
    response: Http.ServerResponse,
    next: (request: Http.IncomingMessage) => void
  ) => void
}

const utf8 = new TextDecoder("utf-8", { fatal: true })

/** The body's JSON, or undefined when it is not UTF-8 JSON (the full application says why). */
const parse = (bytes: Buffer): { readonly value: unknown } | undefined => {
  let text: string
  try {
    text = utf8.decode(bytes)
  } catch {
    return undefined
  }
  if (text.trim() === "") return undefined
  try {
    return { value: JSON.parse(text) as unknown }
  } catch {
    return undefined
  }
}

/** A stand-in for a request whose body was read: the same method, URL, headers, socket and bytes. */
const replay = (request: Http.IncomingMessage, body: Buffer): Http.IncomingMessage => {
  const stream = new Readable({ read() {} })
  if (body.length > 0) stream.push(body)
  stream.push(null)
  return Object.assign(stream, {
    method: request.method,
    url: request.url,
    headers: request.headers,
    rawHeaders: request.rawHeaders,
    httpVersion: request.httpVersion,
    httpVersionMajor: request.httpVersionMajor,
    httpVersionMinor: request.httpVersionMinor,
    socket: request.socket,
    connection: request.socket,
    complete: true,
    aborted: false,
    trailers: {},
    rawTrailers: []
  }) as unknown as Http.IncomingMessage
}

/**
 * The lane of `route` (a `POST` endpoint of the API as served, base path included, with a JSON
 * payload and no path parameters), reading bodies of at most `maxBodyBytes`.
 */
export const make = <C, A>(
  route: HttpApiEndpoint.HttpApiEndpoint.Any,
  handlers: Route<C, A>,
  runtime: Runtime.Runtime<never>,
  maxBodyBytes: number
): Lane => {
  const endpoint = route as unknown as HttpApiEndpoint.HttpApiEndpoint.AnyWithProps
  if (endpoint.method !== "POST" || endpoint.path.includes(":")) {
    throw new Error(`resolve lane: ${endpoint.name} is not a POST route without path parameters`)
  }
  const path = endpoint.path
  const decodeHeaders = endpoint.headersSchema._tag === "Some"
    ? Schema.decodeUnknownEither(endpoint.headersSchema.value as Schema.Schema<unknown>)
    : undefined
  const answer = jsonAnswer<A>(endpoint, "resolve lane")
  const runFork = Runtime.runFork(runtime)

  // Reads the whole body (its length is declared and within the limit).
  const readBody = (request: Http.IncomingMessage, length: number) =>
    Effect.async<Buffer, Buffer>((resume) => {
      const chunks: Array<Buffer> = []
      let size = 0
      const onData = (chunk: Buffer) => {
        chunks.push(chunk)
        size += chunk.length
      }
      const onEnd = () => {
        cleanup()
        const body = Buffer.concat(chunks, size)
        resume(size === length ? Effect.succeed(body) : Effect.fail(body))
      }
      const onError = () => {
        cleanup()
        resume(Effect.fail(Buffer.concat(chunks, size)))
      }
      const cleanup = () => {
        request.off("data", onData)
        request.off("end", onEnd)
        request.off("error", onError)
      }
      request.on("data", onData)
      request.once("end", onEnd)
      request.once("error", onError)
    })

  return {
    serve: (request, response, next) => {
      const length = Number(request.headers["content-length"])
      if (
        request.method !== "POST" || request.url !== path || request.headers["transfer-encoding"] !== undefined ||
        !(Number.isSafeInteger(length) && length >= 0 && length <= maxBodyBytes) ||
        (decodeHeaders !== undefined && Either.isLeft(decodeHeaders(request.headers)))
      ) return next(request)
      // what the full application gets if the lane does not answer: the request untouched until
      // its body is read, a stand-in of the same bytes after
      let handOver: () => Http.IncomingMessage = () => request
      const work = Effect.flatMap(handlers.authenticate(request), (caller) =>
        Effect.flatMap(
          Effect.tapError(readBody(request, length), (body) =>
            Effect.sync(() => {
              handOver = () => replay(request, body)
            })),
          (body) => {
            handOver = () => replay(request, body)
            const parsed = parse(body)
            return parsed === undefined ? Effect.fail(undefined) : handlers.handle(caller, parsed.value)
          }
        ))
      const fiber = runFork(work)
      fiber.addObserver((exit: Exit.Exit<A, unknown>) => {
        if (response.writableEnded || response.destroyed) return
        if (exit._tag === "Failure" || !answer(response, exit.value)) next(handOver())
      })
      response.once("close", () => {
        if (!response.writableEnded) fiber.unsafeInterruptAsFork(FiberId.none)
      })
    }
  }
}
