/**
 * The REST server: `SecretApi` served over any `Secrets` (memory, filesystem, or even a remote
 * one), on `@effect/platform-node`'s HTTP server, with API-key authentication.
 *
 * Every failure is answered with a JSON error body `{ statusCode, message, error, code }`: unknown
 * routes (404), malformed JSON (400), bodies over the limit (413), unexpected failures (500, with a
 * generic message; the cause is logged, never sent). On shutdown the server stops accepting
 * connections and finishes the requests in flight before the backend is released.
 *
 * @since 0.1.0
 */
import {
  type HttpApi,
  HttpApiBuilder,
  type HttpApp,
  HttpMiddleware,
  HttpRouter,
  HttpServer,
  HttpServerError,
  HttpServerRequest,
  HttpServerResponse
} from "@effect/platform"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import { Forbidden, InvalidSecretInput, Secret, SecretAudit, Secrets, StoreUnavailable, Unauthorized, UnreadBody } from "@secretgate/core"
import { Cause, Context, Duration, Effect, Layer, ManagedRuntime, Option, Redacted, Schema } from "effect"
import { randomUUID } from "node:crypto"
import * as Http from "node:http"
import * as ApiKeys from "./ApiKeys.js"
import * as Telemetry from "./Telemetry.js"
import * as AccessLog from "./internal/accessLog.js"
import * as AuditLog from "./internal/auditLog.js"
import * as RequestSpan from "./internal/requestSpan.js"
import { readJson, refuseUnknownFields } from "./internal/body.js"
import * as FastLane from "./internal/fastLane.js"
import * as ResolveLane from "./internal/resolveLane.js"
import * as Routes from "./internal/routes.js"
import * as WatchStream from "./internal/watchStream.js"
import {
  Caller,
  CreateSecretBody,
  type ErrorBody,
  InternalServerError,
  MAX_RESOLVE_PLACEHOLDERS,
  ManageAuth,
  MethodNotAllowed,
  normalizeBasePath,
  ORGANIZATION_HEADER,
  reasonPhrase,
  ResolveAuth,
  ResolveRequest,
  RouteNotFound,
  type SecretApi,
  UpdateSecretBody,
  withBasePath
} from "./SecretApi.js"

/**
 * Settings of the API itself, whatever server it runs on.
 *
 * @since 0.1.0
 */
export interface ApiOptions {
  /** Path the routes live under, e.g. `/api` for `/api/secret`. Default `/`. */
  readonly basePath?: string
  /** Largest accepted request body, in bytes; larger ones get 413. Default 1 MiB. */
  readonly maxBodyBytes?: number
  /**
   * How often an open watch stream (`GET /secret/watch`) carries a keep-alive comment, so that
   * clients and proxies notice a dead connection. Default 15 seconds.
   */
  readonly watchHeartbeat?: Duration.DurationInput
  /**
   * Most watch streams open at once per API key and per organization; one more is answered 429
   * (`TooManyWatchStreams`). Defaults: 16 per key, 64 per organization.
   */
  readonly maxWatchStreams?: { readonly perKey?: number; readonly perOrganization?: number }
  /**
   * Receives the management audit trail: one event per create, update or delete through the API,
   * done or refused (see `SecretAudit`), with the API key's id as the actor. Never a value.
   */
  readonly audit?: SecretAudit.Sink
  /**
   * Traces and metrics (see `Telemetry`): a span per `Secrets` operation, the request and
   * operation durations, and every request through the application (so that each has its span),
   * for whatever tracer and metrics exporter the program provides (`Telemetry.layerOtlp`).
   * Default off. `layerApi` instruments the `Secrets` operations only; the request spans and
   * durations come with `layer` and `serve`. When embedding `layerApi` with a tracer, turn the
   * platform's own request span off (`HttpMiddleware.withTracerDisabledWhen(() => true)`): it
   * records the query string and the headers.
   */
  readonly telemetry?: boolean
}

/**
 * One access log entry: method, route template, status, duration and API key id. Never a raw
 * path, a query string, a header or a body.
 *
 * @since 0.1.0
 */
export type AccessLogEntry = AccessLog.Entry

/**
 * Settings of the Node server.
 *
 * @since 0.1.0
 */
export interface ServerOptions extends ApiOptions {
  /** Port to listen on; 0 picks a free one. Default 0. */
  readonly port?: number
  /** Interface to listen on. Default `127.0.0.1`. */
  readonly host?: string
  /**
   * On shutdown, how long requests in flight may take to finish before their connections are
   * cut. Default 10 seconds.
   */
  readonly shutdownTimeout?: Duration.DurationInput
  /**
   * Access logs, one entry per request once its answer has ended: `true` writes each as a JSON
   * line to standard output, a function receives each entry. Default off.
   */
  readonly accessLog?: boolean | ((entry: AccessLogEntry) => void)
  /**
   * A file the management audit trail is appended to, one JSON object per line (see
   * `docs/operating.md`); created with mode 0600. Beside `audit`, if both are given.
   */
  readonly auditLog?: string
}

/**
 * Default largest request body: 1 MiB, ample for a 64 KiB value however it is escaped.
 *
 * @since 0.1.0
 */
export const DEFAULT_MAX_BODY_BYTES = 1024 * 1024

/**
 * Default most watch streams open at once per API key.
 *
 * @since 0.1.0
 */
export const DEFAULT_MAX_WATCH_STREAMS_PER_KEY = 16

/**
 * Default most watch streams open at once per organization.
 *
 * @since 0.1.0
 */
export const DEFAULT_MAX_WATCH_STREAMS_PER_ORGANIZATION = 64

/**
 * How long `GET /ready` waits for the backend before answering 503.
 *
 * @since 0.1.0
 */
export const READINESS_TIMEOUT = Duration.seconds(5)

// How long one readiness answer serves the probes that follow it.
const READINESS_CACHE = Duration.seconds(1)

// The fields each body may hold, from the API's definition: anything else is refused (400).
const CREATE_FIELDS = Object.keys(CreateSecretBody.fields)
const UPDATE_FIELDS = Object.keys(UpdateSecretBody.fields)
const RESOLVE_FIELDS = Object.keys(ResolveRequest.fields)

// What readiness reads: a secret no organization can hold (ids are UUIDs), so the answer is
// `SecretNotFound` from a backend that works.
const PROBE_ORGANIZATION = "secretgate-readiness-probe"
const PROBE_ID = "readiness-probe"

const decodeCreate = Secret.decodeInput(Secret.CreateSecretBody, "body")
const decodeUpdate = Secret.decodeInput(Secret.UpdateSecretBody, "body")
const decodeQuery = Secret.decodeInput(Secret.ListQuery, "query")
const decodeResolve = Secret.decodeInput(
  Schema.Struct({
    placeholders: Schema.Array(Schema.String.annotations({ message: () => "must be a string" })).annotations({
      message: () => "must be an array of strings"
    }).pipe(
      Schema.filter((all) =>
        all.length <= MAX_RESOLVE_PLACEHOLDERS ||
        `must have at most ${MAX_RESOLVE_PLACEHOLDERS} entries (got ${all.length})`
      )
    )
  }),
  "body"
)

type QueryValue = string | ReadonlyArray<string> | undefined

// Query strings carry text; the domain's `limit` is a number. Anything but digits is handed on
// as text, so the domain's own message ("must be a whole number from 1 to 200") answers it.
const queryInput = (params: Record<string, QueryValue>): Effect.Effect<Record<string, unknown>, InvalidSecretInput> => {
  const input: Record<string, unknown> = {}
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined) continue
    if (typeof value !== "string") {
      if (value.length > 1) return Effect.fail(InvalidSecretInput.of(key, "must be given at most once"))
      if (value.length === 0) continue
    }
    const text = typeof value === "string" ? value : value[0]!
    input[key] = key === "limit" && /^\d{1,6}$/.test(text) ? Number(text) : text
  }
  return Effect.succeed(input)
}

// The handler of `GET /secret/{id}`, shared by the route and its fast lane.
const getSecret = (secrets: Secrets.Secrets, caller: ApiKeys.ApiKey, path: { readonly secretId: string }) =>
  secrets.get(caller.organizationId, path.secretId)

// A mutation's handler: run as the caller (the audit trail's actor); a body that never reaches
// `Secrets` is reported to the audit trail here.
const mutation = <P, EP, RP, A, E, R>(
  audit: SecretAudit.Sink | undefined,
  attempt: Omit<SecretAudit.Attempt, "organizationId">,
  input: Effect.Effect<P, EP, RP>,
  run: (caller: ApiKeys.ApiKey, params: P) => Effect.Effect<A, E, R>
) =>
  Effect.flatMap(Caller, (caller) =>
    SecretAudit.withActor(
      Effect.flatMap(
        audit === undefined
          ? input
          : Effect.tapError(input, (error) => SecretAudit.rejected(audit, { ...attempt, organizationId: caller.organizationId }, error)),
        (params) => run(caller, params)
      ),
      caller.id
    ))


// The backend answers a read (any answer but a failure of the store itself), within the timeout.
const readiness = (secrets: Secrets.Secrets) =>
  secrets.get(PROBE_ORGANIZATION, PROBE_ID).pipe(
    Effect.catchTag("SecretNotFound", () => Effect.void),
    Effect.timeoutFail({
      duration: READINESS_TIMEOUT,
      onTimeout: () => ({ _tag: "Timeout" as const, message: `no answer within ${Duration.format(READINESS_TIMEOUT)}` })
    }),
    Effect.catchAllDefect((defect) => Effect.fail({ _tag: "Defect" as const, message: String(defect) })),
    Effect.as({ status: "ready" as const }),
    // the probe needs no key, so the answer names the kind of failure only; the details go to the log
    Effect.catchAll((error) =>
      Effect.zipRight(
        Effect.logWarning(`secretgate: not ready: the backend failed a read (${error._tag}: ${error.message})`),
        Effect.fail(
          new StoreUnavailable({
            message: error._tag === "Timeout"
              ? `not ready: the backend did not answer a read within ${Duration.format(READINESS_TIMEOUT)}`
              : `not ready: the backend failed a read (${error._tag}; details in the server's log)`
          })
        )
      )
    )
  )

interface HandlerSettings {
  readonly maxBodyBytes: number
  readonly heartbeatMillis: number
  readonly watchLimits: WatchStream.Limits
  readonly audit: SecretAudit.Sink | undefined
}

// The handler of `POST /secret/resolve` once the body is parsed (and its fields checked), shared
// by the route and its fast lane.
const resolveSecrets = (secrets: Secrets.Secrets, caller: ApiKeys.ApiKey, body: unknown) =>
  Effect.flatMap(decodeResolve(body), ({ placeholders }) =>
    Effect.map(secrets.resolve(caller.organizationId, placeholders), (resolved) => ({ secrets: resolved })))

const handlers = (api: typeof SecretApi, settings: HandlerSettings) =>
  Layer.mergeAll(
    HttpApiBuilder.group(api, "secret", (handlers) =>
      Effect.gen(function*() {
        const backend = yield* Secrets.Secrets
        const secrets = settings.audit === undefined ? backend : SecretAudit.audited(backend, settings.audit)
        return handlers
          .handleRaw("create", ({ request }) =>
            mutation(
              settings.audit,
              { action: "create" },
              Effect.flatMap(readJson(request, settings.maxBodyBytes, CREATE_FIELDS), decodeCreate),
              (caller, params) => secrets.create(caller.organizationId, params)
            ))
          .handle("list", () => Effect.flatMap(Caller, (caller) => secrets.list(caller.organizationId)))
          .handle("listPaginated", ({ urlParams }) =>
            Effect.gen(function*() {
              const caller = yield* Caller
              const query = yield* Effect.flatMap(queryInput(urlParams), decodeQuery)
              return yield* secrets.listPage(caller.organizationId, query)
            }))
          .handle("get", ({ path }) => Effect.flatMap(Caller, (caller) => getSecret(secrets, caller, path)))
          .handleRaw("update", ({ path, request }) =>
            mutation(
              settings.audit,
              { action: "update", secretId: path.secretId },
              Effect.flatMap(readJson(request, settings.maxBodyBytes, UPDATE_FIELDS), decodeUpdate),
              (caller, params) => secrets.update(caller.organizationId, path.secretId, params)
            ))
          .handle("delete", ({ path }) =>
            mutation(settings.audit, { action: "delete", secretId: path.secretId }, Effect.void, (caller) =>
              secrets.delete(caller.organizationId, path.secretId)))
      })),
    HttpApiBuilder.group(api, "egress", (handlers) =>
      Effect.gen(function*() {
        const secrets = yield* Secrets.Secrets
        const keys = yield* ApiKeys.ApiKeys
        const open = Option.getOrElse(yield* Effect.serviceOption(WatchStream.OpenStreams), WatchStream.makeOpenStreams)
        const { onRevoke } = keys
        if (onRevoke !== undefined) {
          yield* Effect.acquireRelease(
            Effect.sync(() => onRevoke((apiKey) => WatchStream.endForKey(open, apiKey.id))),
            (unsubscribe) => Effect.sync(unsubscribe)
          )
        }
        const instance = randomUUID()
        return handlers
          .handleRaw("resolve", ({ request }) =>
            Effect.gen(function*() {
              const caller = yield* Caller
              return yield* Effect.flatMap(
                readJson(request, settings.maxBodyBytes, RESOLVE_FIELDS),
                (body) => resolveSecrets(secrets, caller, body)
              )
            }))
          .handleRaw("watch", ({ request }) =>
            Effect.gen(function*() {
              const caller = yield* Caller
              const { changes, revision } = secrets
              if (changes === undefined || revision === undefined || !changes.live(caller.organizationId)) {
                return yield* new StoreUnavailable({
                  message: "this server's backend does not announce every change, so it offers no watch: " +
                    "resolve with POST /secret/resolve every TTL instead"
                })
              }
              yield* WatchStream.serve({
                response: NodeHttpServerRequest.toServerResponse(request),
                secrets,
                changes,
                revision,
                caller,
                token: Redacted.make(BEARER.exec(String(request.headers.authorization))?.[1] ?? ""),
                keys,
                instance,
                heartbeatMillis: settings.heartbeatMillis,
                open,
                limits: settings.watchLimits
              })
              // the stream has ended the response itself
              return HttpServerResponse.empty()
            }))
      })),
    HttpApiBuilder.group(api, "operations", (handlers) =>
      Effect.gen(function*() {
        const secrets = yield* Secrets.Secrets
        // anyone may ask (no key), so probes share one read a second rather than each reaching the backend
        const ready = yield* Effect.cachedWithTTL(readiness(secrets), READINESS_CACHE)
        return handlers
          .handle("health", () => Effect.succeed({ status: "ok" as const }))
          .handle("ready", () => ready)
      }))
  )

const BEARER = /^Bearer +([^\s]+) *$/i

// Checks the `Authorization` and organization headers of a request against `scope`.
const authenticate = (
  keys: ApiKeys.ApiKeys,
  scope: ApiKeys.Scope,
  headers: Readonly<Record<string, string | ReadonlyArray<string> | undefined>>,
  refused?: (error: Unauthorized | Forbidden, key: ApiKeys.ApiKey | undefined) => Effect.Effect<void>
): Effect.Effect<ApiKeys.ApiKey, Unauthorized | Forbidden> =>
  Effect.gen(function*() {
    const refuse = (error: Unauthorized | Forbidden, key?: ApiKeys.ApiKey) =>
      refused === undefined ? Effect.fail(error) : Effect.zipRight(refused(error, key), Effect.fail(error))
    const header = headers.authorization
    if (header === undefined || header === "") {
      return yield* refuse(new Unauthorized({ message: "missing API key: send the header `Authorization: Bearer <api key>`" }))
    }
    const match = typeof header === "string" ? BEARER.exec(header) : null
    if (match === null) {
      return yield* refuse(new Unauthorized({ message: "malformed Authorization header: expected `Bearer <api key>`" }))
    }
    const key = yield* keys.authenticate(Redacted.make(match[1]!))
    if (Option.isNone(key)) return yield* refuse(new Unauthorized({ message: "unknown or revoked API key" }))
    if (!key.value.scopes.includes(scope)) {
      return yield* refuse(
        new Forbidden({
          message: scope === ApiKeys.RESOLVE
            ? `this route needs an API key with the "${ApiKeys.RESOLVE}" scope; management keys cannot read values`
            : `this route needs an API key with the "${ApiKeys.MANAGE}" scope`
        }),
        key.value
      )
    }
    const organization = headers[ORGANIZATION_HEADER]
    if (organization !== undefined && organization !== key.value.organizationId) {
      return yield* refuse(
        new Forbidden({
          message: `the API key does not belong to organization ${JSON.stringify(organization)} (header X-Daytona-Organization-ID)`
        }),
        key.value
      )
    }
    return key.value
  })

// A refused management request that attempted a mutation goes to the audit trail (when there is
// one), as the key that was refused if it is a known one.
const authenticateRequest = (keys: ApiKeys.ApiKeys, scope: ApiKeys.Scope, audit?: SecretAudit.Sink) => () =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    const attempt = audit === undefined ? undefined : AuditLog.attemptOf(request.method, request.url)
    const refused = audit === undefined || attempt === undefined ? undefined : (error: Unauthorized | Forbidden, key: ApiKeys.ApiKey | undefined) =>
      SecretAudit.withActor(SecretAudit.rejected(audit, { ...attempt, organizationId: key?.organizationId }, error), key?.id)
    return Effect.tap(authenticate(keys, scope, request.headers, refused), (caller) =>
      AccessLog.noteCaller(NodeHttpServerRequest.toIncomingMessage(request), caller.id))
  })

// refusals of keyless callers are folded (no caller-chosen text, at most one line a second): anyone
// can send them, and they must not fill the disk
const authLayers = (audit: SecretAudit.Sink | undefined) =>
  Layer.mergeAll(
    Layer.scoped(
      ManageAuth,
      Effect.gen(function*() {
        const keys = yield* ApiKeys.ApiKeys
        const refusals = audit === undefined ? undefined : yield* AuditLog.foldKeyless(audit)
        return { apiKey: authenticateRequest(keys, ApiKeys.MANAGE, refusals) }
      })
    ),
    Layer.effect(ResolveAuth, Effect.map(ApiKeys.ApiKeys, (keys) => ({ apiKey: authenticateRequest(keys, ApiKeys.RESOLVE) })))
  )

const errorResponse = (status: number, code: string, message: string) =>
  HttpServerResponse.unsafeJson(
    { statusCode: status, message, error: reasonPhrase(status), code } satisfies ErrorBody,
    { status }
  )

/**
 * The last line of defence: whatever the API does not answer itself (unknown routes, unreadable
 * requests, defects) still gets a JSON error body, and never a stack trace. Typed failures pass
 * through: the API encodes them.
 */
const errorBodies = (routes: Routes.RouteTable) => (app: HttpApp.Default): HttpApp.Default =>
  Effect.catchAllCause(app, (cause) => {
    if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause)
    const error = Cause.squash(cause)
    if (HttpServerError.isServerError(error)) {
      if (error._tag === "RouteNotFound") {
        const request = error.request
        const { allowed } = routes.lookup(request.method, request.url)
        if (allowed.length > 0) {
          const path = routes.lookup(allowed.includes("GET") ? "GET" : allowed[0]!, request.url).template
          return Effect.succeed(HttpServerResponse.unsafeJson(
            {
              statusCode: MethodNotAllowed.status,
              message: `${request.method} is not allowed on ${path}; it takes ${allowed.join(", ")}`,
              error: reasonPhrase(MethodNotAllowed.status),
              code: "MethodNotAllowed",
              allowed
            } satisfies ErrorBody & { readonly allowed: ReadonlyArray<string> },
            { status: MethodNotAllowed.status, headers: { allow: allowed.join(", ") } }
          ))
        }
        return Effect.succeed(errorResponse(
          RouteNotFound.status,
          "RouteNotFound",
          `no route for ${request.method} ${request.url.split("?")[0]}`
        ))
      }
      if (error._tag === "RequestError") {
        return Effect.succeed(errorResponse(400, "InvalidSecretInput", "body: could not be read"))
      }
    }
    if (Option.isSome(Cause.failureOption(cause))) return Effect.failCause(cause)
    return Effect.as(
      Effect.logError("secretgate: request failed unexpectedly", cause),
      errorResponse(InternalServerError.status, "InternalServerError", "internal server error")
    )
  })

/**
 * The API's `HttpApi.Api` layer (routes, auth, and `openapi.json`), for embedding into an
 * existing `@effect/platform` server with `HttpApiBuilder.serve`.
 *
 * @since 0.1.0
 */
export const layerApi = (options: ApiOptions = {}): Layer.Layer<HttpApi.Api, never, Secrets.Secrets | ApiKeys.ApiKeys> => {
  const basePath = normalizeBasePath(options.basePath ?? "/")
  const api = withBasePath(basePath)
  const maxBodyBytes = options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES
  if (!Number.isInteger(maxBodyBytes) || maxBodyBytes < 1) {
    throw new Error(`maxBodyBytes must be a positive whole number (got ${maxBodyBytes})`)
  }
  const heartbeatMillis = Duration.toMillis(Duration.decode(options.watchHeartbeat ?? "15 seconds"))
  if (!(heartbeatMillis >= 1 && heartbeatMillis < 2 ** 31)) {
    throw new Error(`watchHeartbeat must be between 1 millisecond and 24 days (got ${heartbeatMillis} ms)`)
  }
  const watchLimits: WatchStream.Limits = {
    perKey: positiveLimit("maxWatchStreams.perKey", options.maxWatchStreams?.perKey ?? DEFAULT_MAX_WATCH_STREAMS_PER_KEY),
    perOrganization: positiveLimit(
      "maxWatchStreams.perOrganization",
      options.maxWatchStreams?.perOrganization ?? DEFAULT_MAX_WATCH_STREAMS_PER_ORGANIZATION
    )
  }
  const handlerLayer = handlers(api, { maxBodyBytes, heartbeatMillis, watchLimits, audit: options.audit })
  const apiLayer = HttpApiBuilder.api(api).pipe(
    Layer.provide(options.telemetry === true ? Layer.provide(handlerLayer, Telemetry.layerSecrets) : handlerLayer),
    Layer.provide(authLayers(options.audit))
  )
  const openApiLayer = HttpApiBuilder.middlewareOpenApi({
    path: openApiPath(basePath),
    additionalPropertiesStrategy: "allow"
  })
  return Layer.mergeAll(
    apiLayer,
    Layer.provide(openApiLayer, apiLayer),
    HttpApiBuilder.middleware(errorBodies(routeTable(api, basePath)))
  )
}

const positiveLimit = (name: string, value: number): number => {
  if (!Number.isInteger(value) || value < 1) throw new Error(`${name} must be a positive whole number (got ${value})`)
  return value
}

const openApiPath = (basePath: string) => `${basePath}/openapi.json` as `/${string}`

// Every route served: the API's and the OpenAPI document.
const routeTable = (api: typeof SecretApi, basePath: string) => Routes.make(api, [["GET", openApiPath(basePath)]])

/**
 * The router settings the API needs: a path parameter (a secret id) may be as long as a request
 * line can be, so that an over-long id is answered by the route (404 `SecretNotFound`, after
 * authentication) rather than by the router's default limit of 100 characters (404
 * `RouteNotFound`). `layer` and `serve` apply it; when embedding `layerApi`, provide
 * `HttpRouter.setRouterConfig(SecretServer.routerConfig)` to the layer that serves it.
 *
 * @since 0.1.0
 */
export const routerConfig = { maxParamLength: 64 * 1024 } as const

class NodeServer extends Context.Tag("@secretgate/http/SecretServer/NodeServer")<NodeServer, Http.Server>() {}

// Stops accepting connections, lets the requests in flight finish (also those arriving on open
// keep-alive connections), closing each connection as soon as it is idle; after `timeout` the
// remaining connections are cut.
const drain = (server: Http.Server, timeout: Duration.Duration, streams: WatchStream.OpenStreams) =>
  Effect.async<void>((resume) => {
    // watch streams never finish by themselves: end them, their clients reconnect elsewhere
    WatchStream.endAll(streams)
    if (!server.listening) return resume(Effect.void)
    // monotonic: a step of the wall clock neither stretches nor cuts the drain
    const deadline = performance.now() + Duration.toMillis(timeout)
    const timer = setInterval(() => {
      server.closeIdleConnections()
      if (performance.now() >= deadline) server.closeAllConnections()
    }, 20)
    server.close(() => {
      clearInterval(timer)
      resume(Effect.void)
    })
  })

// `GET /secret/{id}`, the route a platform calls most, answered without the full application's
// router and middleware stack (see internal/fastLane.ts); it takes the request events of the
// server and hands whatever it does not answer to the application's own handler. Access logs, when
// on, wrap both.
const requestListener = (
  api: typeof SecretApi,
  basePath: string,
  accessLog: ((entry: AccessLogEntry) => void) | undefined,
  maxBodyBytes: number,
  telemetry: boolean
) =>
  Layer.scopedDiscard(Effect.gen(function*() {
    const server = yield* NodeServer
    const secrets = yield* Secrets.Secrets
    const keys = yield* ApiKeys.ApiKeys
    const runtime = yield* Effect.runtime<never>()
    const lane = FastLane.make(
      api,
      api.groups.secret.endpoints.get,
      ({ headers, path, request }) =>
        Effect.flatMap(authenticate(keys, ApiKeys.MANAGE, headers), (caller) => {
          AccessLog.noteCaller(request, caller.id)
          return getSecret(secrets, caller, path as { readonly secretId: string })
        }),
      runtime
    )
    const [app, ...more] = server.listeners("request") as Array<(request: Http.IncomingMessage, response: Http.ServerResponse) => void>
    if (app === undefined || more.length > 0) return yield* Effect.dieMessage("secretgate: expected the API to be the server's one request handler")
    // `POST /secret/resolve`, the route every egress resolver calls (see internal/resolveLane.ts)
    const resolveLane = ResolveLane.make(
      api.groups.egress.endpoints.resolve,
      {
        authenticate: (request) =>
          Effect.map(authenticate(keys, ApiKeys.RESOLVE, request.headers), (caller) => {
            AccessLog.noteCaller(request, caller.id)
            return caller
          }),
        handle: (caller, body) => Effect.flatMap(refuseUnknownFields(body, RESOLVE_FIELDS), (known) => resolveSecrets(secrets, caller, known))
      },
      runtime,
      maxBodyBytes
    )
    // with telemetry, every request takes the application's path, so that each is traced alike
    const laned = telemetry ? app : (request: Http.IncomingMessage, response: Http.ServerResponse) =>
      resolveLane.serve(request, response, (request) => lane.serve(request, response, () => app(request, response)))
    const answered = accessLog === undefined ? laned : AccessLog.wrap(routeTable(api, basePath), accessLog, laned)
    const handler = (request: Http.IncomingMessage, response: Http.ServerResponse) => {
      UnreadBody.bound(request, response)
      answered(request, response)
    }
    server.off("request", app)
    server.on("request", handler)
    yield* Effect.addFinalizer(() => Effect.sync(() => server.off("request", handler)))
  }))

/**
 * The server: `SecretApi` on a Node HTTP server, over the `Secrets` and `ApiKeys` in context.
 * Provides the `HttpServer` (for its address).
 *
 * @since 0.1.0
 * @example
 * ```ts
 * import { NodeRuntime } from "@effect/platform-node"
 * import { ApiKeys, SecretServer } from "@secretgate/http"
 * import { MemorySecretStore } from "@secretgate/memory"
 * import { Layer } from "effect"
 *
 * SecretServer.layer({ port: 8080 }).pipe(
 *   Layer.provide(MemorySecretStore.layer()),
 *   Layer.provide(ApiKeys.layer([{ key: process.env.KEY!, organizationId: "acme", scopes: ["secrets:manage"] }])),
 *   Layer.launch,
 *   NodeRuntime.runMain
 * )
 * ```
 */
export const layer = (
  options: ServerOptions = {}
): Layer.Layer<HttpServer.HttpServer, HttpServerError.ServeError, Secrets.Secrets | ApiKeys.ApiKeys> => {
  const nodeServer = Layer.sync(NodeServer, () => {
    const server = Http.createServer()
    // (an `Expect` Node does not know is answered 417 with the body bounded, as every other answer)
    server.on("checkExpectation", UnreadBody.expectationFailed)
    return server
  })
  const httpServer = Layer.unwrapEffect(
    Effect.map(NodeServer, (server) =>
      NodeHttpServer.layer(() => server, { port: options.port ?? 0, host: options.host ?? "127.0.0.1" }))
  )
  const timeout = Duration.decode(options.shutdownTimeout ?? "10 seconds")
  const graceful = Layer.scopedDiscard(
    Effect.flatMap(
      Effect.zip(NodeServer, WatchStream.OpenStreams),
      ([server, streams]) => Effect.addFinalizer(() => drain(server, timeout, streams))
    )
  )
  const openStreams = Layer.sync(WatchStream.OpenStreams, WatchStream.makeOpenStreams)
  // the router is built while this layer is, reading its config from the building fiber
  const apiLayer = layerApi(options)
  const auditLog = options.auditLog
  const basePath = normalizeBasePath(options.basePath ?? "/")
  const routes = routeTable(withBasePath(basePath), basePath)
  // the request span, in place of the platform's (which records the query string and the
  // headers); around the whole application, so that it sees the status of the encoded answer
  const served = HttpApiBuilder.serve(RequestSpan.make((method, url) => routes.lookup(method, url).template)).pipe(
    Layer.provide(
      auditLog === undefined ? apiLayer : Layer.unwrapScoped(
        Effect.map(Effect.orDie(AuditLog.jsonLinesFile(auditLog)), (file) =>
          layerApi({ ...options, audit: AuditLog.both(options.audit, file) }))
      )
    ),
    Layer.provideMerge(httpServer),
    Layer.locally(HttpRouter.currentRouterConfig, routerConfig),
    HttpMiddleware.withTracerDisabledWhen(() => true)
  )
  const logged = options.accessLog === true
    ? AccessLog.stdout
    : typeof options.accessLog === "function"
    ? options.accessLog
    : undefined
  const telemetry = options.telemetry === true
  // request metrics are taken where the access log's entries are
  const accessLog = !telemetry ? logged : logged === undefined ? Telemetry.recordRequest : (entry: AccessLogEntry) => {
    Telemetry.recordRequest(entry)
    logged(entry)
  }
  return Layer.mergeAll(
    graceful,
    requestListener(withBasePath(basePath), basePath, accessLog, options.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES, telemetry)
  ).pipe(
    Layer.provideMerge(served),
    Layer.provideMerge(nodeServer),
    Layer.provideMerge(openStreams),
    Layer.map((context) => Context.pick(HttpServer.HttpServer)(context))
  )
}

/**
 * Settings of {@link serve}.
 *
 * @since 0.1.0
 */
export interface ServeOptions<E> extends ServerOptions {
  /** The backend, e.g. `MemorySecretStore.layer()` or `FileSystemSecretStore.layer(...)`. */
  readonly backend: Layer.Layer<Secrets.Secrets, E>
  /** The API keys: configured entries, or a registry to issue and revoke keys at run time. */
  readonly keys: Iterable<ApiKeys.KeyEntry> | ApiKeys.ApiKeys
  /**
   * Exports traces and metrics to an OpenTelemetry collector over OTLP/HTTP (and turns
   * `telemetry` on). Default: no export.
   */
  readonly otlp?: Telemetry.OtlpOptions
}

/**
 * A running server.
 *
 * @since 0.1.0
 */
export interface RunningServer {
  /** `http://host:port` plus the base path, ready to be an `HttpSecrets` `baseUrl`. */
  readonly url: string
  readonly host: string
  readonly port: number
  /** Stops accepting connections, finishes the requests in flight, then releases the backend. */
  readonly close: () => Promise<void>
}

/**
 * Starts a server for Promise users; resolves once it listens.
 *
 * @since 0.1.0
 * @example
 * ```ts
 * import { ApiKeys, SecretServer } from "@secretgate/http"
 * import { MemorySecretStore } from "@secretgate/memory"
 *
 * const key = ApiKeys.generate()
 * const server = await SecretServer.serve({
 *   port: 8080,
 *   backend: MemorySecretStore.layer(),
 *   keys: [{ key, organizationId: "acme", scopes: ["secrets:manage"] }]
 * })
 * console.log(`listening on ${server.url}`)
 * await server.close()
 * ```
 */
export const serve = async <E>(options: ServeOptions<E>): Promise<RunningServer> => {
  const { backend, keys, otlp, ...serverOptions } = options
  const server = layer(otlp === undefined ? serverOptions : { ...serverOptions, telemetry: true }).pipe(
    Layer.provide(backend),
    Layer.provide(ApiKeys.layer(keys))
  )
  // the exporter starts first and stops last, sending what the server's shutdown still recorded
  const runtime = ManagedRuntime.make(otlp === undefined ? server : Layer.provide(server, Telemetry.layerOtlp(otlp)))
  try {
    const server = await runtime.runPromise(HttpServer.HttpServer)
    const address = server.address
    if (address._tag !== "TcpAddress") throw new Error("secretgate: the server did not bind a TCP address")
    const base = normalizeBasePath(options.basePath ?? "/")
    const hostname = address.hostname.includes(":") ? `[${address.hostname}]` : address.hostname
    return {
      url: `http://${hostname}:${address.port}${base}`,
      host: address.hostname,
      port: address.port,
      close: () => runtime.dispose()
    }
  } catch (error) {
    await runtime.dispose()
    throw error
  }
}
