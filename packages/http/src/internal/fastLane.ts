/**
 * A fast lane for a hot, safe route of the `HttpApi`: the request is answered straight from the
 * Node request, without the router, the middleware stack and the per-request fibers of the full
 * application, using what the endpoint's definition says: its method and path, its path and header
 * schemas, its success schema, status and content type. The handler is the route's own.
 *
 * Only a success is answered here. Anything else (a path this lane does not recognise exactly, a
 * failed authentication, a missing secret, a defect) is handed to the full application, which
 * answers as if the lane did not exist. That is sound only for a route whose handler can run
 * twice without effect, so the lane takes `GET` routes only.
 */
import { type HttpApi, type HttpApiEndpoint, HttpApiSchema } from "@effect/platform"
import { type Effect, Either, type Exit, FiberId, Runtime, Schema } from "effect"
import { Buffer } from "node:buffer"
import type * as Http from "node:http"

type Segment = { readonly literal: string } | { readonly param: string }

const template = (path: string): ReadonlyArray<Segment> =>
  path.split("/").slice(1).map((segment) => (segment.startsWith(":") ? { param: segment.slice(1) } : { literal: segment }))

// Unreserved characters only: nothing the router would decode or normalise, so the parameter is
// exactly what the full application would see. Anything else takes the full path.
const PLAIN_SEGMENT = /^[A-Za-z0-9_~-][A-Za-z0-9._~-]*$/

const match = (segments: ReadonlyArray<Segment>, parts: ReadonlyArray<string>): Record<string, string> | undefined => {
  if (segments.length !== parts.length) return undefined
  const params: Record<string, string> = {}
  for (let i = 0; i < parts.length; i++) {
    const segment = segments[i]!
    const part = parts[i]!
    if ("literal" in segment) {
      if (segment.literal !== part) return undefined
    } else {
      if (!PLAIN_SEGMENT.test(part)) return undefined
      params[segment.param] = part
    }
  }
  return params
}

/**
 * Writes an endpoint's success answer as the platform would: its status, its JSON encoding and the
 * same headers in the same order. Returns false, having written nothing, when the value does not
 * encode (the caller then hands the request to the full application). Throws at build time for an
 * endpoint whose success is not a JSON body. Shared by the lanes.
 */
export const jsonAnswer = <A>(endpoint: HttpApiEndpoint.HttpApiEndpoint.AnyWithProps, lane: string) => {
  const success = endpoint.successSchema as Schema.Schema<any, unknown>
  const encode = Schema.encodeEither(success as Schema.Schema<A, unknown>)
  const status = HttpApiSchema.getStatusSuccess(success)
  const encoding = HttpApiSchema.getEncoding(success.ast)
  if (encoding.kind !== "Json" || HttpApiSchema.isVoid(success.ast)) {
    throw new Error(`${lane}: ${endpoint.name} does not answer with a JSON body`)
  }
  const contentType = encoding.contentType
  return (response: Http.ServerResponse, value: A): boolean => {
    const encoded = encode(value)
    if (Either.isLeft(encoded)) return false
    let body: string
    try {
      body = JSON.stringify(encoded.right)
    } catch {
      return false
    }
    response.writeHead(status, { "content-type": contentType, "content-length": String(Buffer.byteLength(body)) })
    response.end(body)
    return true
  }
}

/**
 * What the lane asks of the route: its handler, given the decoded path and the request headers
 * (authentication included: the handler runs the same check as the route's middleware).
 */
export type Handler<A, E> = (request: {
  readonly path: unknown
  readonly headers: Http.IncomingHttpHeaders
  readonly request: Http.IncomingMessage
}) => Effect.Effect<A, E>

/**
 * A lane: `serve(request, response, next)` answers the request, or calls `next()` (at once, or
 * once the handler failed) for the full application to answer it.
 */
export interface Lane {
  readonly serve: (request: Http.IncomingMessage, response: Http.ServerResponse, next: () => void) => void
}

/**
 * The lane of `endpoint` in `api` (the API as served, base path included).
 */
export const make = <A, E>(
  api: HttpApi.HttpApi.Any,
  route: HttpApiEndpoint.HttpApiEndpoint.Any,
  handler: Handler<A, E>,
  runtime: Runtime.Runtime<never>
): Lane => {
  const endpoint = route as unknown as HttpApiEndpoint.HttpApiEndpoint.AnyWithProps
  if (endpoint.method !== "GET") throw new Error(`fast lane: ${endpoint.name} is not a GET route`)
  const own = template(endpoint.path)
  // other routes of the same method that could claim the same path (a literal beats a parameter
  // in the router): a path any of them matches takes the full path
  const others: Array<ReadonlyArray<Segment>> = []
  for (const group of Object.values((api as unknown as HttpApi.HttpApi.AnyWithProps).groups)) {
    for (const other of Object.values(group.endpoints)) {
      if (other !== endpoint && other.method === endpoint.method) {
        const segments = template(other.path)
        if (segments.length === own.length) others.push(segments)
      }
    }
  }
  const decoder = (schema: Schema.Schema<any, unknown, any>) => Schema.decodeUnknownEither(schema as Schema.Schema<unknown>)
  const decodePath = endpoint.pathSchema._tag === "Some" ? decoder(endpoint.pathSchema.value) : undefined
  const decodeHeaders = endpoint.headersSchema._tag === "Some" ? decoder(endpoint.headersSchema.value) : undefined
  const answer = jsonAnswer<A>(endpoint, "fast lane")
  const runFork = Runtime.runFork(runtime)

  return {
    serve: (request, response, next) => {
      const url = request.url
      if (
        request.method !== endpoint.method || url === undefined || url.includes("?") ||
        request.headers["content-length"] !== undefined || request.headers["transfer-encoding"] !== undefined
      ) return next()
      const parts = url.split("/").slice(1)
      const params = match(own, parts)
      if (params === undefined || others.some((other) => match(other, parts) !== undefined)) return next()
      let path: unknown = params
      if (decodePath !== undefined) {
        const decoded = decodePath(params)
        if (Either.isLeft(decoded)) return next()
        path = decoded.right
      }
      if (decodeHeaders !== undefined && Either.isLeft(decodeHeaders(request.headers))) return next()
      const fiber = runFork(handler({ path, headers: request.headers, request }))
      const settle = (exit: Exit.Exit<A, E>) => {
        if (response.writableEnded || response.destroyed) return
        if (exit._tag === "Failure" || !answer(response, exit.value)) next()
      }
      fiber.addObserver(settle)
      if (!response.writableEnded) {
        response.once("close", () => {
          if (!response.writableEnded) fiber.unsafeInterruptAsFork(FiberId.none)
        })
      }
    }
  }
}
