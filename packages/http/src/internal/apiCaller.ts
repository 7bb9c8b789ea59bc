/**
 * A lean client of an `HttpApi`, derived from its definition the way `HttpApiClient` derives one
 * (`HttpApi.reflect`: each endpoint's method and path, its payload schema, and its success and
 * error schemas by status), but sending each request with one undici `dispatch` and decoding the
 * answer with one decode (a plain decoder compiled from the schema for plain JSON answers, the
 * schema's own decode for the rest and for any answer the plain one does not accept), all inside
 * one `Effect.async`: no per-request `HttpClient`
 * pipeline, tracing span, racing timeout fiber, `AbortController` or body stream. `HttpSecrets`
 * uses it for every call.
 *
 * A call fails with the endpoint's own (decoded) error, or with a `CallFailure` saying why there
 * is no API answer: the server could not be reached, took too long, answered too much, or answered
 * something that is not this API. The caller may map either (`input.failure`) before the failure
 * reaches the fiber, so that a call is one step of the caller's fiber, not three.
 */
import { HttpApi, type HttpApiGroup } from "@effect/platform"
import type * as Undici from "@effect/platform-node/Undici"
import { Data, Effect, Either, Option, Schema, type SchemaAST } from "effect"
import { Buffer } from "node:buffer"
import * as PlainDecoder from "./plainDecoder.js"

/**
 * Why a call has no API answer.
 */
export class CallFailure extends Data.TaggedError("CallFailure")<{
  readonly reason: "unreachable" | "timeout" | "too large" | "not this API"
  readonly status?: number
  readonly limit?: number
  readonly cause?: unknown
}> {}

/**
 * One request: path parameters (encoded already), query, payload, headers (the call's own: it adds
 * `content-type` to them), and the largest answer read.
 */
export interface CallInput {
  readonly path?: Readonly<Record<string, string>> | undefined
  readonly urlParams?: Readonly<Record<string, string>> | undefined
  readonly payload?: unknown
  readonly headers: Record<string, string>
  readonly responseLimit: number
  /** Maps the endpoint's decoded error or a `CallFailure` to the error the call fails with. */
  readonly failure?: ((error: unknown) => unknown) | undefined
  /**
   * Coalescing: a call of the same endpoint with the same `share` key while one is in flight
   * joins it instead of sending a request of its own, and gets the same answer. The key must
   * determine the whole request (path, query, payload, headers); undefined: never shared.
   */
  readonly share?: string | undefined
}

/** A call of one endpoint. */
export type Call = (input: CallInput) => Effect.Effect<any, unknown>

/** One endpoint as derived from the API. */
export interface Endpoint {
  readonly method: string
  /** The path template, `:name` for each parameter. */
  readonly path: string
  /** The answer's decoder by status, and whether that status is an error. */
  readonly decoders: ReadonlyMap<number, { readonly decode: Decoder; readonly error: boolean }>
  /** Encodes a payload to its JSON text (undefined for an endpoint without payload). */
  readonly encodePayload: ((payload: unknown) => string) | undefined
}

type Decoder = (body: unknown) => Either.Either<unknown, unknown>

// The schema's decode, with a plain decoder compiled from the same schema in front of it when the
// schema is plain JSON (a secret, a page, a list): an input the plain decoder does not accept is
// decoded by the schema, which gives the same answer for it (or its error).
const decoderOf = (ast: Option.Option<SchemaAST.AST>): Decoder =>
  Option.match(ast, {
    onNone: () => () => Either.right(undefined),
    onSome: (ast) => {
      const decode = Schema.decodeUnknownEither(Schema.make(ast)) as Decoder
      const plain = PlainDecoder.compile(ast)
      if (plain === undefined) return decode
      return (body) => {
        const decoded = plain(body)
        return decoded === PlainDecoder.MISMATCH ? decode(body) : Either.right(decoded)
      }
    }
  })

const PARAM = /:(\w+)/g

/** Every endpoint of `api`, by group and endpoint name, as `HttpApi.reflect` describes it. */
export const endpoints = <Groups extends HttpApiGroup.HttpApiGroup.Any>(
  api: HttpApi.HttpApi<string, Groups, any, any>
): Record<string, Record<string, Endpoint>> => {
  const all: Record<string, Record<string, Endpoint>> = {}
  HttpApi.reflect(api as unknown as HttpApi.HttpApi<string, HttpApiGroup.HttpApiGroup.Any, unknown, unknown>, {
    onGroup: ({ group }) => {
      all[group.identifier] = {}
    },
    onEndpoint: ({ endpoint, errors, group, successes }) => {
      const decoders = new Map<number, { readonly decode: Decoder; readonly error: boolean }>()
      successes.forEach(({ ast }, status) => decoders.set(status, { decode: decoderOf(ast), error: false }))
      errors.forEach(({ ast }, status) => decoders.set(status, { decode: decoderOf(ast), error: true }))
      const encode = Option.map(
        endpoint.payloadSchema,
        (schema) => Schema.encodeUnknownSync(schema as unknown as Schema.Schema<unknown, unknown>)
      )
      all[group.identifier]![endpoint.name] = {
        method: endpoint.method,
        path: endpoint.path,
        decoders,
        encodePayload: Option.isSome(encode) ? (payload) => JSON.stringify(encode.value(payload)) : undefined
      }
    }
  })
  return all
}

/** The calls of an API, and a way to end every request still in flight. */
export interface Calls {
  readonly calls: Record<string, Record<string, Call>>
  /** Aborts every request in flight (their calls fail with `CallFailure` "unreachable"). */
  readonly abortAll: () => void
}

/**
 * Calls for every endpoint of `api`, by group and endpoint name, against `baseUrl` through
 * `dispatcher`, each bounded by `timeoutMillis`.
 *
 * A call does not abort its request when its fiber is interrupted (a canceler would wrap every
 * call in `onInterrupt`, which costs more than the rest of the call): the answer of an interrupted
 * call is dropped when it comes, and the request ends at the latest with the timeout or with
 * `abortAll` (which the owner runs when it closes).
 */
export const make = <Groups extends HttpApiGroup.HttpApiGroup.Any>(
  api: HttpApi.HttpApi<string, Groups, any, any>,
  options: { readonly baseUrl: URL; readonly dispatcher: Undici.Dispatcher; readonly timeoutMillis: number }
): Calls => {
  const calls: Record<string, Record<string, Call>> = {}
  const origin = options.baseUrl.origin
  const prefix = options.baseUrl.pathname.replace(/\/+$/, "")
  const inFlight = new Set<AnswerHandler>()
  for (const [group, byName] of Object.entries(endpoints(api))) {
    calls[group] = {}
    for (const [name, endpoint] of Object.entries(byName)) {
      calls[group]![name] = callOf(endpoint, origin, prefix, inFlight, options)
    }
  }
  return {
    calls,
    abortAll: () => {
      for (const handler of [...inFlight]) handler.fail(new CallFailure({ reason: "unreachable", cause: "the client was closed" }))
    }
  }
}

const identity = (error: unknown) => error

// `/secret/:secretId` as ["/secret/", "secretId"]: literal text at even indexes, names at odd ones.
const segmentsOf = (template: string): ReadonlyArray<string> => template.split(PARAM)

const callOf = (
  endpoint: Endpoint,
  origin: string,
  prefix: string,
  inFlight: Set<AnswerHandler>,
  options: { readonly dispatcher: Undici.Dispatcher; readonly timeoutMillis: number }
): Call => {
  const segments = segmentsOf(endpoint.path)
  const method = endpoint.method as Undici.Dispatcher.HttpMethod
  const shared = new Map<string, AnswerHandler>()
  return (input) =>
    Effect.async<unknown, unknown>((resume) => {
      if (input.share !== undefined) {
        const joined = shared.get(input.share)
        if (joined !== undefined) return joined.join(resume, input.failure ?? identity)
      }
      let body: string | null = null
      const headers = input.headers
      if (endpoint.encodePayload !== undefined) {
        try {
          body = endpoint.encodePayload(input.payload)
        } catch (error) {
          return resume(Effect.die(error))
        }
        headers["content-type"] = "application/json"
      }
      let path = prefix
      for (let i = 0; i < segments.length; i++) path += i % 2 === 0 ? segments[i]! : input.path![segments[i]!]!
      if (input.urlParams !== undefined) {
        const query = new URLSearchParams(input.urlParams).toString()
        if (query !== "") path += `?${query}`
      }
      const handler = new AnswerHandler(endpoint, input.responseLimit, input.failure ?? identity, resume, inFlight)
      handler.timer = setTimeout(timedOut, options.timeoutMillis, handler)
      inFlight.add(handler)
      if (input.share !== undefined) {
        const key = input.share
        shared.set(key, handler)
        handler.unshare = () => {
          if (shared.get(key) === handler) shared.delete(key)
        }
      }
      options.dispatcher.dispatch({ origin, path, method, headers, body }, handler)
    })
}

const timedOut = (handler: AnswerHandler) => handler.fail(new CallFailure({ reason: "timeout" }))

// undici's own handler interface (`onConnect` … `onComplete`), which its dispatchers call
// directly: the answer's bytes are gathered and decoded here, without a body stream, and the
// call's fiber resumed once.
class AnswerHandler {
  timer: ReturnType<typeof setTimeout> | undefined
  /** Ends the sharing of this request (set for a shared call). */
  unshare: (() => void) | undefined
  private settled = false
  // calls that joined this one's request: their resume and failure mapping
  private joined: Array<{ readonly resume: (effect: Effect.Effect<unknown, unknown>) => void; readonly failure: (error: unknown) => unknown }> | undefined
  private abort: ((error?: Error) => void) | undefined
  private reason: Error | undefined
  private status = 0
  private chunks: Array<Buffer> = []
  private size = 0

  constructor(
    private readonly endpoint: Endpoint,
    private readonly limit: number,
    private readonly failure: (error: unknown) => unknown,
    private readonly resume: (effect: Effect.Effect<unknown, unknown>) => void,
    private readonly inFlight: Set<AnswerHandler>
  ) {}

  /** Another call with the same answer: it gets this request's outcome too. */
  join(resume: (effect: Effect.Effect<unknown, unknown>) => void, failure: (error: unknown) => unknown) {
    ;(this.joined ??= []).push({ resume, failure })
  }

  /** Ends the request: the call failed (timeout, too large, closed). */
  fail(failure: CallFailure) {
    if (this.settled) return
    this.finish()
    this.failWith(failure)
    if (this.abort !== undefined) this.abort(failure)
    else this.reason = failure
  }

  private finish() {
    this.settled = true
    clearTimeout(this.timer)
    this.inFlight.delete(this)
    this.unshare?.()
    this.chunks = []
  }

  private succeed(value: unknown) {
    this.resume(Effect.succeed(value))
    if (this.joined !== undefined) for (const { resume } of this.joined) resume(Effect.succeed(value))
  }

  private failWith(error: unknown) {
    this.resume(Effect.fail(this.failure(error)))
    if (this.joined !== undefined) for (const { failure, resume } of this.joined) resume(Effect.fail(failure(error)))
  }

  private answer(status: number, text: string) {
    const decoder = this.endpoint.decoders.get(status)
    if (decoder === undefined) return this.failWith(new CallFailure({ reason: "not this API", status }))
    let json: unknown
    try {
      json = text === "" ? undefined : JSON.parse(text)
    } catch {
      return this.failWith(new CallFailure({ reason: "not this API", status }))
    }
    const decoded = decoder.decode(json)
    if (Either.isLeft(decoded)) return this.failWith(new CallFailure({ reason: "not this API", status }))
    if (decoder.error) this.failWith(decoded.right)
    else this.succeed(decoded.right)
  }

  onConnect(abort: (error?: Error) => void) {
    if (this.reason !== undefined) abort(this.reason)
    else this.abort = abort
  }

  onHeaders(status: number, rawHeaders: Array<Buffer>): boolean {
    if (this.settled) return false
    this.status = status
    for (let i = 0; i < rawHeaders.length; i += 2) {
      if (rawHeaders[i]!.length === 14 && rawHeaders[i]!.toString("latin1").toLowerCase() === "content-length") {
        if (Number(rawHeaders[i + 1]!.toString("latin1")) > this.limit) {
          this.fail(new CallFailure({ reason: "too large", limit: this.limit }))
          return false
        }
        break
      }
    }
    return true
  }

  onData(chunk: Buffer): boolean {
    if (this.settled) return false
    this.size += chunk.length
    if (this.size > this.limit) {
      this.fail(new CallFailure({ reason: "too large", limit: this.limit }))
      return false
    }
    this.chunks.push(chunk)
    return true
  }

  onComplete() {
    if (this.settled) return
    const chunks = this.chunks
    const text = chunks.length === 1 ? chunks[0]!.toString("utf8") : Buffer.concat(chunks, this.size).toString("utf8")
    this.finish()
    this.answer(this.status, text)
  }

  onError(cause: Error) {
    if (this.settled) return
    this.finish()
    this.failWith(new CallFailure({ reason: "unreachable", cause }))
  }
}
