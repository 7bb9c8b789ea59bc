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
  HttpRouter,
  HttpServer,
  HttpServerError,
  HttpServerRequest,
  HttpServerResponse
} from "@effect/platform"
import * as NodeHttpServer from "@effect/platform-node/NodeHttpServer"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import { Forbidden, InvalidSecretInput, Secret, SecretAudit, Secrets, StoreUnavailable, Unauthorized } from "@secretgate/core"
import { Cause, Context, Duration, Effect, Layer, ManagedRuntime, Option, Redacted, Schema } from "effect"
import { randomUUID } from "node:crypto"
import * as Http from "node:http"
import * as ApiKeys from "./ApiKeys.js"
import * as AuditLog from "./internal/auditLog.js"
import { readJson } from "./internal/body.js"
import * as FastLane from "./internal/fastLane.js"
import * as WatchStream from "./internal/watchStream.js"
import {
  Caller,
  type ErrorBody,
  InternalServerError,
  MAX_RESOLVE_PLACEHOLDERS,
  ManageAuth,
  normalizeBasePath,
  ORGANIZATION_HEADER,
  reasonPhrase,
  ResolveAuth,
  RouteNotFound,
  type SecretApi,
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
   * Receives the management audit trail: one event per create, update or delete through the API,
   * done or refused (see `SecretAudit`), with the API key's id as the actor. Never a value.
   */
  readonly audit?: SecretAudit.Sink
}

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

const handlers = (api: typeof SecretApi, maxBodyBytes: number, heartbeatMillis: number, audit: SecretAudit.Sink | undefined) =>
  Layer.mergeAll(
    HttpApiBuilder.group(api, "secret", (handlers) =>
      Effect.gen(function*() {
        const backend = yield* Secrets.Secrets
        const secrets = audit === undefined ? backend : SecretAudit.audited(backend, audit)
        return handlers
          .handleRaw("create", ({ request }) =>
            mutation(
              audit,
              { action: "create" },
              Effect.flatMap(readJson(request, maxBodyBytes), decodeCreate),
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
              audit,
              { action: "update", secretId: path.secretId },
              Effect.flatMap(readJson(request, maxBodyBytes), decodeUpdate),
              (caller, params) => secrets.update(caller.organizationId, path.secretId, params)
            ))
          .handle("delete", ({ path }) =>
            mutation(audit, { action: "delete", secretId: path.secretId }, Effect.void, (caller) =>
              secrets.delete(caller.organizationId, path.secretId)))
      })),
    HttpApiBuilder.group(api, "egress", (handlers) =>
      Effect.gen(function*() {
        const secrets = yield* Secrets.Secrets
        const open = Option.getOrUndefined(yield* Effect.serviceOption(WatchStream.OpenStreams))
        const instance = randomUUID()
        return handlers
          .handleRaw("resolve", ({ request }) =>
            Effect.gen(function*() {
              const caller = yield* Caller
              const { placeholders } = yield* Effect.flatMap(readJson(request, maxBodyBytes), decodeResolve)
              return { secrets: yield* secrets.resolve(caller.organizationId, placeholders) }
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
                organizationId: caller.organizationId,
                instance,
                heartbeatMillis,
                open
              })
              // the stream has ended the response itself
              return HttpServerResponse.empty()
            }))
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

const authenticateRequest = (keys: ApiKeys.ApiKeys, scope: ApiKeys.Scope) => () =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => authenticate(keys, scope, request.headers))

// A refused management request that attempted a mutation goes to the audit trail, as the key
// that was refused (when it is a known one).
const authenticateAudited = (keys: ApiKeys.ApiKeys, audit: SecretAudit.Sink) => () =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    const attempt = AuditLog.attemptOf(request.method, request.url)
    return authenticate(
      keys,
      ApiKeys.MANAGE,
      request.headers,
      attempt === undefined ? undefined : (error, key) =>
        SecretAudit.withActor(SecretAudit.rejected(audit, { ...attempt, organizationId: key?.organizationId }, error), key?.id)
    )
  })

const authLayers = (audit: SecretAudit.Sink | undefined) =>
  Layer.mergeAll(
    Layer.effect(
      ManageAuth,
      Effect.map(ApiKeys.ApiKeys, (keys) => ({
        apiKey: audit === undefined ? authenticateRequest(keys, ApiKeys.MANAGE) : authenticateAudited(keys, audit)
      }))
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
const errorBodies = (app: HttpApp.Default): HttpApp.Default =>
  Effect.catchAllCause(app, (cause) => {
    if (Cause.isInterruptedOnly(cause)) return Effect.failCause(cause)
    const error = Cause.squash(cause)
    if (HttpServerError.isServerError(error)) {
      if (error._tag === "RouteNotFound") {
        const request = error.request
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
  const apiLayer = HttpApiBuilder.api(api).pipe(
    Layer.provide(handlers(api, maxBodyBytes, heartbeatMillis, options.audit)),
    Layer.provide(authLayers(options.audit))
  )
  const openApiLayer = HttpApiBuilder.middlewareOpenApi({
    path: `${basePath}/openapi.json` as `/${string}`,
    additionalPropertiesStrategy: "allow"
  })
  return Layer.mergeAll(apiLayer, Layer.provide(openApiLayer, apiLayer), HttpApiBuilder.middleware(errorBodies))
}

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
const drain = (server: Http.Server, timeout: Duration.Duration, streams: Set<Http.ServerResponse>) =>
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
// server and hands whatever it does not answer to the application's own handler.
const fastLane = (api: typeof SecretApi) =>
  Layer.scopedDiscard(Effect.gen(function*() {
    const server = yield* NodeServer
    const secrets = yield* Secrets.Secrets
    const keys = yield* ApiKeys.ApiKeys
    const runtime = yield* Effect.runtime<never>()
    const lane = FastLane.make(
      api,
      api.groups.secret.endpoints.get,
      ({ headers, path }) =>
        Effect.flatMap(authenticate(keys, ApiKeys.MANAGE, headers), (caller) => getSecret(secrets, caller, path as { readonly secretId: string })),
      runtime
    )
    const [app, ...more] = server.listeners("request") as Array<(request: Http.IncomingMessage, response: Http.ServerResponse) => void>
    if (app === undefined || more.length > 0) return yield* Effect.dieMessage("secretgate: expected the API to be the server's one request handler")
    const handler = (request: Http.IncomingMessage, response: Http.ServerResponse) => lane.serve(request, response, () => app(request, response))
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
  const nodeServer = Layer.sync(NodeServer, () => Http.createServer())
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
  const openStreams = Layer.sync(WatchStream.OpenStreams, () => new Set<Http.ServerResponse>())
  // the router is built while this layer is, reading its config from the building fiber
  const apiLayer = layerApi(options)
  const auditLog = options.auditLog
  const served = HttpApiBuilder.serve().pipe(
    Layer.provide(
      auditLog === undefined ? apiLayer : Layer.unwrapScoped(
        Effect.map(Effect.orDie(AuditLog.jsonLinesFile(auditLog)), (file) =>
          layerApi({ ...options, audit: AuditLog.both(options.audit, file) }))
      )
    ),
    Layer.provideMerge(httpServer),
    Layer.locally(HttpRouter.currentRouterConfig, routerConfig)
  )
  return Layer.mergeAll(graceful, fastLane(withBasePath(normalizeBasePath(options.basePath ?? "/")))).pipe(
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
  const { backend, keys, ...serverOptions } = options
  const runtime = ManagedRuntime.make(
    layer(serverOptions).pipe(Layer.provide(backend), Layer.provide(ApiKeys.layer(keys)))
  )
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
