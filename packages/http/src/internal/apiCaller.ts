/**
 * A lean client of an `HttpApi`, derived from its definition the way `HttpApiClient` derives one
 * (`HttpApi.reflect`: each endpoint's method and path, its payload schema, and its success and
 * error schemas by status), but sending each request with one undici `request` and decoding the
 * answer with one schema decode: no per-request `HttpClient` pipeline, tracing span or racing
 * timeout fiber. `HttpSecrets` uses it for every call.
 *
 * A call fails with the endpoint's own (decoded) error, or with a `CallFailure` saying why there
 * is no API answer: the server could not be reached, took too long, answered too much, or answered
 * something that is not this API.
 */
import { HttpApi, type HttpApiGroup } from "@effect/platform"
import type * as Undici from "@effect/platform-node/Undici"
import { Data, Effect, Either, Option, Schema, type SchemaAST } from "effect"
import { Buffer } from "node:buffer"

/**
 * Why a call has no API answer.
 */
export class CallFailure extends Data.TaggedError("CallFailure")<{
  readonly reason: "unreachable" | "timeout" | "too large" | "not this API"
  readonly status?: number
  readonly limit?: number
  readonly cause?: unknown
}> {}

/** One request: path parameters (encoded already), headers, payload, and the largest answer read. */
export interface CallInput {
  readonly path?: Readonly<Record<string, string>>
  readonly urlParams?: Readonly<Record<string, string>>
  readonly payload?: unknown
  readonly headers: Readonly<Record<string, string>>
  readonly responseLimit: number
}

/** A call of one endpoint. */
export type Call = (input: CallInput) => Effect.Effect<any, unknown>

type Decoder = (body: unknown) => Either.Either<unknown, unknown>

const decoderOf = (ast: Option.Option<SchemaAST.AST>): Decoder =>
  Option.match(ast, {
    onNone: () => () => Either.right(undefined),
    onSome: (ast) => Schema.decodeUnknownEither(Schema.make(ast)) as Decoder
  })

const PARAM = /:(\w+)/g

/**
 * Calls for every endpoint of `api`, by group and endpoint name, against `baseUrl` through
 * `dispatcher`, each bounded by `timeoutMillis`.
 */
export const make = <Groups extends HttpApiGroup.HttpApiGroup.Any>(
  api: HttpApi.HttpApi<string, Groups, any, any>,
  options: { readonly baseUrl: URL; readonly dispatcher: Undici.Dispatcher; readonly timeoutMillis: number }
): Record<string, Record<string, Call>> => {
  const calls: Record<string, Record<string, Call>> = {}
  const origin = options.baseUrl.origin
  const prefix = options.baseUrl.pathname.replace(/\/+$/, "")
  HttpApi.reflect(api as unknown as HttpApi.HttpApi<string, HttpApiGroup.HttpApiGroup.Any, unknown, unknown>, {
    onGroup: ({ group }) => {
      calls[group.identifier] = {}
    },
    onEndpoint: ({ endpoint, errors, group, successes }) => {
      const decoders = new Map<number, { readonly decode: Decoder; readonly error: boolean }>()
      successes.forEach(({ ast }, status) => decoders.set(status, { decode: decoderOf(ast), error: false }))
      errors.forEach(({ ast }, status) => decoders.set(status, { decode: decoderOf(ast), error: true }))
      const encodePayload = Option.map(
        endpoint.payloadSchema,
        (schema) => Schema.encodeUnknownEither(schema as unknown as Schema.Schema<unknown, unknown>)
      )
      const method = endpoint.method
      const template = endpoint.path
      calls[group.identifier]![endpoint.name] = (input) =>
        Effect.suspend(() => {
          let body: string | undefined
          if (Option.isSome(encodePayload)) {
            const encoded = encodePayload.value(input.payload)
            if (Either.isLeft(encoded)) return Effect.die(encoded.left)
            body = JSON.stringify(encoded.right)
          }
          let path = prefix + (input.path === undefined ? template : template.replace(PARAM, (_, name: string) => input.path![name]!))
          if (input.urlParams !== undefined) {
            const query = new URLSearchParams(input.urlParams).toString()
            if (query !== "") path += `?${query}`
          }
          const headers: Record<string, string> = { ...input.headers }
          if (body !== undefined) headers["content-type"] = "application/json"
          return Effect.flatMap(send(options, { origin, path, method, headers, body }, input.responseLimit), ({ status, text }) => {
            const decoder = decoders.get(status)
            if (decoder === undefined) return Effect.fail(new CallFailure({ reason: "not this API", status }))
            let json: unknown
            try {
              json = text === "" ? undefined : JSON.parse(text)
            } catch {
              return Effect.fail(new CallFailure({ reason: "not this API", status }))
            }
            const decoded = decoder.decode(json)
            if (Either.isLeft(decoded)) return Effect.fail(new CallFailure({ reason: "not this API", status }))
            return decoder.error ? Effect.fail(decoded.right) : Effect.succeed(decoded.right)
          })
        })
    }
  })
  return calls
}

// One request, its answer read whole (up to `limit` bytes) as text.
const send = (
  options: { readonly dispatcher: Undici.Dispatcher; readonly timeoutMillis: number },
  request: {
    readonly origin: string
    readonly path: string
    readonly method: string
    readonly headers: Record<string, string>
    readonly body: string | undefined
  },
  limit: number
): Effect.Effect<{ readonly status: number; readonly text: string }, CallFailure> =>
  Effect.async((resume, interrupted) => {
    const controller = new AbortController()
    let settled = false
    const settle = (result: Effect.Effect<{ readonly status: number; readonly text: string }, CallFailure>) => {
      if (settled) return
      settled = true
      clearTimeout(timer)
      resume(result)
    }
    const fail = (failure: CallFailure) => {
      settle(Effect.fail(failure))
      controller.abort()
    }
    const timer = setTimeout(() => fail(new CallFailure({ reason: "timeout" })), options.timeoutMillis)
    const onInterrupt = () => {
      settled = true
      clearTimeout(timer)
      controller.abort()
    }
    interrupted.addEventListener("abort", onInterrupt, { once: true })
    options.dispatcher.request({
      origin: request.origin,
      path: request.path,
      method: request.method as Undici.Dispatcher.HttpMethod,
      headers: request.headers,
      body: request.body ?? null,
      signal: controller.signal
    }).then(
      (response) => {
        const declared = Number(response.headers["content-length"])
        if (Number.isFinite(declared) && declared > limit) {
          response.body.destroy()
          return fail(new CallFailure({ reason: "too large", limit }))
        }
        const chunks: Array<Buffer> = []
        let size = 0
        response.body.on("data", (chunk: Buffer) => {
          size += chunk.length
          if (size > limit) {
            response.body.destroy()
            return fail(new CallFailure({ reason: "too large", limit }))
          }
          chunks.push(chunk)
        })
        response.body.on("error", (cause) => fail(new CallFailure({ reason: "unreachable", cause })))
        response.body.on("end", () => {
          interrupted.removeEventListener("abort", onInterrupt)
          settle(Effect.succeed({ status: response.statusCode, text: Buffer.concat(chunks, size).toString("utf8") }))
        })
      },
      (cause: unknown) => {
        interrupted.removeEventListener("abort", onInterrupt)
        fail(new CallFailure({ reason: "unreachable", cause }))
      }
    )
  })
