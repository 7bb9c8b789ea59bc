/**
 * The REST API as one `HttpApi` definition: the six `/secret` routes of Daytona's Secret API (same
 * paths, fields, status codes and error body `{ statusCode, message, error }`) and the egress
 * resolve route. The server (`SecretServer`), the client (`HttpSecrets`) and the OpenAPI document
 * are all derived from it.
 *
 * Error bodies carry, besides `statusCode`, `message` and `error` (the HTTP reason phrase, as
 * Daytona's API sends it), a `code` naming the typed error and that error's own fields (`field`,
 * `secretId`, ...), so that a client re-creates the same error class.
 *
 * @since 0.1.0
 */
import {
  HttpApi,
  HttpApiEndpoint,
  HttpApiGroup,
  HttpApiMiddleware,
  HttpApiSchema,
  HttpApiSecurity,
  OpenApi
} from "@effect/platform"
import {
  DecryptionFailed,
  Forbidden,
  InvalidSecretInput,
  QuotaExceeded,
  Secret,
  SecretNameTaken,
  SecretNotFound,
  StoreCorrupted,
  StoreUnavailable,
  Unauthorized
} from "@secretgate/core"
import { Context, JSONSchema, Schema } from "effect"
import { createRequire } from "node:module"
import type { ApiKey } from "./ApiKeys.js"

/**
 * The version of this package, as its `package.json` says (and so the OpenAPI document).
 *
 * @since 0.1.0
 */
export const VERSION: string = (createRequire(import.meta.url)("../package.json") as { readonly version: string }).version

/**
 * The request body was larger than the server accepts.
 *
 * @since 0.1.0
 */
export class PayloadTooLarge extends Schema.TaggedError<PayloadTooLarge>()("PayloadTooLarge", {
  message: Schema.String,
  limit: Schema.Number
}) {
  /** @since 0.1.0 */
  static readonly status = 413
}

/**
 * An unexpected failure inside the server. Its message is generic on purpose: details (and stack
 * traces) stay in the server's log.
 *
 * @since 0.1.0
 */
export class InternalServerError extends Schema.TaggedError<InternalServerError>()("InternalServerError", {
  message: Schema.String
}) {
  /** @since 0.1.0 */
  static readonly status = 500
}

/**
 * No route matches the request's method and path.
 *
 * @since 0.1.0
 */
export class RouteNotFound extends Schema.TaggedError<RouteNotFound>()("RouteNotFound", {
  message: Schema.String
}) {
  /** @since 0.1.0 */
  static readonly status = 404
}

/**
 * A known route asked with a method it does not have (e.g. `PUT /secret/{id}`). The answer carries
 * an `Allow` header, and `allowed` lists the same methods.
 *
 * @since 0.1.0
 */
export class MethodNotAllowed extends Schema.TaggedError<MethodNotAllowed>()("MethodNotAllowed", {
  message: Schema.String,
  allowed: Schema.Array(Schema.String)
}) {
  /** @since 0.1.0 */
  static readonly status = 405
}

/**
 * A key (or its organization) already holds as many open watch streams as the server allows.
 * Close one, or poll `POST /secret/resolve` instead.
 *
 * @since 0.1.0
 */
export class TooManyWatchStreams extends Schema.TaggedError<TooManyWatchStreams>()("TooManyWatchStreams", {
  message: Schema.String,
  limit: Schema.Number
}) {
  /** @since 0.1.0 */
  static readonly status = 429
}

/**
 * The HTTP reason phrase sent as `error` in error bodies.
 *
 * @since 0.1.0
 */
export const reasonPhrase = (status: number): string => REASONS[status] ?? "Error"

const REASONS: Record<number, string> = {
  400: "Bad Request",
  401: "Unauthorized",
  403: "Forbidden",
  404: "Not Found",
  405: "Method Not Allowed",
  409: "Conflict",
  413: "Payload Too Large",
  429: "Too Many Requests",
  500: "Internal Server Error",
  503: "Service Unavailable"
}

/**
 * The common shape of every error body.
 *
 * @since 0.1.0
 */
export interface ErrorBody {
  readonly statusCode: number
  readonly message: string
  readonly error: string
  readonly code: string
}

interface ErrorClass<Self> extends Schema.Schema<Self, any, never> {
  readonly _tag: string
  readonly status: number
  readonly fields: Schema.Struct.Fields
}

/**
 * The wire form of a typed error: `{ statusCode, message, error, code, ...fields }` on the wire,
 * the error class itself in code, answered with the class's `status`.
 *
 * @since 0.1.0
 */
export const wireError = <Self>(klass: ErrorClass<Self>, description: string): Schema.Schema<Self, ErrorBody> => {
  const { _tag: _, ...fields } = klass.fields
  const tag = klass._tag
  const status = klass.status
  const body = Schema.Struct({
    statusCode: Schema.Literal(status),
    message: Schema.String,
    error: Schema.String,
    code: Schema.Literal(tag),
    ...fields
  }).annotations({ identifier: tag, description })
  const schema: Schema.Schema<Self, any> = Schema.transform(body, klass as Schema.Schema<Self, any>, {
    strict: false,
    decode: ({ code: _code, error: _error, statusCode: _statusCode, ...rest }: any) => ({ ...rest, _tag: tag }),
    encode: ({ _tag: _tag2, ...rest }: any) => ({ statusCode: status, error: reasonPhrase(status), code: tag, ...rest })
  })
  return schema.annotations(HttpApiSchema.annotations({ status, description }))
}

/**
 * The error schemas of the API, by class.
 *
 * @since 0.1.0
 */
export const Errors = {
  SecretNotFound: wireError(SecretNotFound, "No secret with that id exists in the organization"),
  SecretNameTaken: wireError(SecretNameTaken, "A secret with that name already exists in the organization"),
  InvalidSecretInput: wireError(InvalidSecretInput, "The input broke a rule; `field` says which and `message` why"),
  QuotaExceeded: wireError(QuotaExceeded, "The organization holds as many secrets as its quota allows"),
  Unauthorized: wireError(Unauthorized, "Missing, malformed or unknown API key"),
  Forbidden: wireError(Forbidden, "The API key lacks the scope of this route, or belongs to another organization"),
  StoreCorrupted: wireError(StoreCorrupted, "Stored data could not be read back"),
  DecryptionFailed: wireError(DecryptionFailed, "A stored value failed to open"),
  StoreUnavailable: wireError(StoreUnavailable, "The storage backend is unavailable"),
  PayloadTooLarge: wireError(PayloadTooLarge, "The request body is larger than the server accepts"),
  InternalServerError: wireError(InternalServerError, "An unexpected failure inside the server"),
  RouteNotFound: wireError(RouteNotFound, "No route matches the path"),
  MethodNotAllowed: wireError(MethodNotAllowed, "The route exists, but not with this method; the `Allow` header and `allowed` list its methods"),
  TooManyWatchStreams: wireError(
    TooManyWatchStreams,
    "The API key or its organization holds as many open watch streams as the server allows"
  )
} as const

/**
 * The authenticated caller, provided to every handler by the auth middleware.
 *
 * @since 0.1.0
 */
export class Caller extends Context.Tag("@secretgate/http/Caller")<Caller, ApiKey>() {}

const authFailure = Schema.Union(Errors.Unauthorized, Errors.Forbidden)

const bearer = HttpApiSecurity.bearer.pipe(
  HttpApiSecurity.annotate(OpenApi.Description, "An API key: `Authorization: Bearer <key>`")
)

/**
 * Authentication of the management routes: a key with the `secrets:manage` scope.
 *
 * @since 0.1.0
 */
export class ManageAuth extends HttpApiMiddleware.Tag<ManageAuth>()("@secretgate/http/ManageAuth", {
  failure: authFailure,
  provides: Caller,
  security: { apiKey: bearer }
}) {}

/**
 * Authentication of the egress resolve route: a key with the `secrets:resolve` scope.
 *
 * @since 0.1.0
 */
export class ResolveAuth extends HttpApiMiddleware.Tag<ResolveAuth>()("@secretgate/http/ResolveAuth", {
  failure: authFailure,
  provides: Caller,
  security: { apiKey: bearer }
}) {}

/**
 * The optional organization header of Daytona's API. When present it must name the key's
 * organization.
 *
 * @since 0.1.0
 */
export const ORGANIZATION_HEADER = "x-daytona-organization-id"

/**
 * @since 0.1.0
 */
export const OrganizationHeader = Schema.Struct({
  [ORGANIZATION_HEADER]: Schema.optional(
    Schema.String.annotations({ description: "Organization to act for; must be the API key's organization" })
  )
})

// Query parameters are checked by the handler (which answers with field-specific messages), so
// their schema accepts a repeated parameter too; the document shows them as plain strings.
const queryParam = (description: string) =>
  Schema.optional(Schema.Union(Schema.String, Schema.Array(Schema.String)).annotations({
    jsonSchema: { type: "string", description },
    description
  }))

/**
 * The query of `GET /secret/paginated`.
 *
 * @since 0.1.0
 */
export const PaginatedQuery = Schema.Struct({
  cursor: queryParam("Opaque cursor: the `nextCursor` of the previous page"),
  limit: queryParam("Page size, 1–200 (default 100)"),
  name: queryParam("Case-insensitive substring of the name"),
  sort: queryParam("`name`, `createdAt` (default) or `updatedAt`"),
  order: queryParam("`asc` or `desc` (default)")
})

const SecretIdPath = Schema.Struct({ secretId: Schema.String })

/**
 * The wire form of the create body: `value` is a plain string (redacted once decoded).
 *
 * @since 0.1.0
 */
export const CreateSecretBody = Schema.Struct({
  name: Schema.String.annotations({ description: "`^[a-zA-Z_][a-zA-Z0-9_-]*$`, 1–255 characters, unique in the organization" }),
  value: Schema.Redacted(Schema.String).annotations({ description: "The plaintext value, 1 byte to 64 KiB of UTF-8; never returned" }),
  description: Schema.optional(Schema.String.annotations({ description: "At most 1,024 characters" })),
  hosts: Schema.optional(Schema.Array(Schema.String).annotations({
    description: "Hosts the value may be sent to: `api.example.com` or `*.example.com`, at most 100; omit or [] for every host"
  }))
}).annotations({ identifier: "CreateSecret" })

/**
 * The wire form of the update body. Omitted fields stay; `description: null` clears it.
 *
 * @since 0.1.0
 */
export const UpdateSecretBody = Schema.Struct({
  value: Schema.optional(Schema.Redacted(Schema.String).annotations({ description: "Replaces the value; the placeholder stays" })),
  description: Schema.optional(Schema.NullOr(Schema.String)),
  hosts: Schema.optional(Schema.Array(Schema.String).annotations({ description: "Replaces the allowed hosts" }))
}).annotations({ identifier: "UpdateSecret" })

/**
 * The body of the egress resolve route.
 *
 * @since 0.1.0
 */
export const ResolveRequest = Schema.Struct({
  placeholders: Schema.Array(Schema.String).annotations({ description: "Placeholders to resolve, at most 1,000" })
}).annotations({ identifier: "ResolveRequest" })

/**
 * Most placeholders one resolve request may carry.
 *
 * @since 0.1.0
 */
export const MAX_RESOLVE_PLACEHOLDERS = 1000

/**
 * A resolved secret. `value` is a plain string on the wire (this route only) and a `Redacted`
 * once decoded.
 *
 * @since 0.1.0
 */
export const ResolvedSecret = Schema.Struct({
  id: Schema.String,
  name: Schema.String,
  placeholder: Schema.String,
  hosts: Schema.Array(Schema.String),
  value: Schema.Redacted(Schema.String)
}).annotations({ identifier: "ResolvedSecret" })

/**
 * The answer of the egress resolve route: the secrets behind the known placeholders.
 *
 * @since 0.1.0
 */
export const ResolveResponse = Schema.Struct({
  secrets: Schema.Array(ResolvedSecret)
}).annotations({ identifier: "ResolveResponse" })

/**
 * One event of the watch stream (the `data` of an `event: change`): the organization's revision
 * after the change, and the placeholders of the secrets that changed when the server knows them
 * (absent: any secret of the organization may have changed). The first event of a stream carries
 * the current revision and no placeholders.
 *
 * @since 0.1.0
 */
export const ChangeEvent = Schema.Struct({
  revision: Schema.String.annotations({
    description: "Opaque; equal revisions (from the same server) mean nothing changed in between"
  }),
  placeholders: Schema.optional(Schema.Array(Schema.String).annotations({ description: "Placeholders of the secrets that changed" }))
}).annotations({ identifier: "ChangeEvent" })

/**
 * The body of the watch route: server-sent events.
 *
 * @since 0.1.0
 */
export const ChangeStream = Schema.String.pipe(
  HttpApiSchema.withEncoding({ kind: "Text", contentType: "text/event-stream" })
).annotations({
  identifier: "ChangeStream",
  description: "Server-sent events, each `event: change` with a JSON `ChangeEvent` as `data`, the first one at once; " +
    "a comment line every heartbeat keeps the connection alive. The stream ends when the server stops or can no longer " +
    "announce every change; the client then falls back to polling and reconnects."
})

const secretEndpoints = HttpApiGroup.make("secret")
  .add(
    HttpApiEndpoint.post("create", "/secret")
      .setHeaders(OrganizationHeader)
      .setPayload(CreateSecretBody)
      .addSuccess(Secret.Secret, { status: 201 })
      .addError(Errors.InvalidSecretInput)
      .addError(Errors.QuotaExceeded)
      .addError(Errors.SecretNameTaken)
      .addError(Errors.PayloadTooLarge)
      .annotate(OpenApi.Summary, "Create a secret")
  )
  .add(
    HttpApiEndpoint.get("list", "/secret")
      .setHeaders(OrganizationHeader)
      .addSuccess(Schema.Array(Secret.Secret))
      .annotate(OpenApi.Summary, "List every secret of the organization, sorted by name")
  )
  .add(
    HttpApiEndpoint.get("listPaginated", "/secret/paginated")
      .setHeaders(OrganizationHeader)
      .setUrlParams(PaginatedQuery)
      .addSuccess(Secret.SecretPage)
      .addError(Errors.InvalidSecretInput)
      .annotate(OpenApi.Summary, "List secrets page by page")
  )
  .add(
    HttpApiEndpoint.get("get", "/secret/:secretId")
      .setHeaders(OrganizationHeader)
      .setPath(SecretIdPath)
      .addSuccess(Secret.Secret)
      .addError(Errors.SecretNotFound)
      .annotate(OpenApi.Summary, "Get a secret")
  )
  .add(
    HttpApiEndpoint.patch("update", "/secret/:secretId")
      .setHeaders(OrganizationHeader)
      .setPath(SecretIdPath)
      .setPayload(UpdateSecretBody)
      .addSuccess(Secret.Secret)
      .addError(Errors.InvalidSecretInput)
      .addError(Errors.SecretNotFound)
      .addError(Errors.PayloadTooLarge)
      .annotate(OpenApi.Summary, "Update a secret; omitted fields are left unchanged")
  )
  .add(
    HttpApiEndpoint.del("delete", "/secret/:secretId")
      .setHeaders(OrganizationHeader)
      .setPath(SecretIdPath)
      .addSuccess(HttpApiSchema.NoContent)
      .addError(Errors.SecretNotFound)
      .annotate(OpenApi.Summary, "Delete a secret")
  )
  .middleware(ManageAuth)
  .annotate(OpenApi.Title, "Secret")
  .annotate(OpenApi.Description, "Organization-scoped secrets; needs a key with the `secrets:manage` scope")

const egressEndpoints = HttpApiGroup.make("egress")
  .add(
    HttpApiEndpoint.post("resolve", "/secret/resolve")
      .setHeaders(OrganizationHeader)
      .setPayload(ResolveRequest)
      .addSuccess(ResolveResponse)
      .addError(Errors.InvalidSecretInput)
      .addError(Errors.PayloadTooLarge)
      .annotate(OpenApi.Summary, "Resolve placeholders to values (egress proxies only)")
  )
  .add(
    HttpApiEndpoint.get("watch", "/secret/watch")
      .setHeaders(OrganizationHeader)
      .addSuccess(ChangeStream)
      .addError(Errors.TooManyWatchStreams)
      .annotate(OpenApi.Summary, "Stream the organization's changes as server-sent events (egress proxies only)")
      .annotate(
        OpenApi.Description,
        "Lets an egress proxy keep resolved values until a change is announced instead of polling. Answers 503 when the " +
          "server's backend does not announce every change (then poll `POST /secret/resolve`), and 429 when the key or " +
          "its organization holds as many open streams as the server allows. A stream ends when its key is revoked."
      )
  )
  .middleware(ResolveAuth)
  .annotate(OpenApi.Title, "Egress")
  .annotate(
    OpenApi.Description,
    "The values behind placeholders, for an egress proxy; needs a key with the `secrets:resolve` scope, never a management key"
  )

/**
 * The answer of `GET /health`.
 *
 * @since 0.1.0
 */
export const Health = Schema.Struct({
  status: Schema.Literal("ok")
}).annotations({ identifier: "Health" })

/**
 * The answer of `GET /ready` when the backend answers.
 *
 * @since 0.1.0
 */
export const Readiness = Schema.Struct({
  status: Schema.Literal("ready")
}).annotations({ identifier: "Readiness" })

const operationEndpoints = HttpApiGroup.make("operations")
  .add(
    HttpApiEndpoint.get("health", "/health")
      .addSuccess(Health)
      .annotate(OpenApi.Summary, "Liveness: the server answers requests (no API key needed)")
  )
  .add(
    HttpApiEndpoint.get("ready", "/ready")
      .addSuccess(Readiness)
      .addError(Errors.StoreUnavailable)
      .annotate(OpenApi.Summary, "Readiness: the backend answers a read (no API key needed); 503 with the reason when not")
  )
  .annotate(OpenApi.Title, "Operations")
  .annotate(OpenApi.Description, "Probes for an orchestrator or a load balancer; they never touch a secret's data")

// The builder declares its own decode error on every route. The handlers here decode requests
// themselves (answering with `InvalidSecretInput`), so it never occurs; it is left out of the
// document.
const withoutDecodeError = (spec: OpenApi.OpenAPISpec): OpenApi.OpenAPISpec => {
  const isDecodeError = (schema: unknown) =>
    typeof schema === "object" && schema !== null && (schema as { $ref?: unknown }).$ref === "#/components/schemas/HttpApiDecodeError"
  for (const item of Object.values(spec.paths)) {
    for (const operation of Object.values(item) as Array<OpenApi.OpenAPISpecOperation>) {
      const response = operation.responses[400]
      const media = response?.content?.["application/json"]
      if (response === undefined || media === undefined) continue
      const schema = media.schema as { anyOf?: Array<unknown> }
      if (isDecodeError(schema)) {
        delete operation.responses[400]
      } else if (Array.isArray(schema.anyOf)) {
        const rest = schema.anyOf.filter((member) => !isDecodeError(member))
        media.schema = (rest.length === 1 ? rest[0] : { ...schema, anyOf: rest }) as typeof media.schema
        response.description = "Invalid input: `field` says which and `message` why"
      }
    }
  }
  const { HttpApiDecodeError: _, Issue: __, PropertyKey: ___, ...schemas } = spec.components.schemas
  spec.components.schemas = schemas
  return spec
}

// The watch route's body is text (server-sent events); the JSON of each event is documented as a
// schema of its own, which the stream's description names.
const withChangeEvent = (spec: OpenApi.OpenAPISpec): OpenApi.OpenAPISpec => {
  const document = JSONSchema.make(ChangeEvent) as { readonly $defs: Record<string, unknown> }
  spec.components.schemas = { ...spec.components.schemas, ChangeEvent: document.$defs.ChangeEvent as never }
  return spec
}

// The server refuses unknown fields in request bodies (400 naming the field); the document says so.
const withClosedRequestBodies = (spec: OpenApi.OpenAPISpec): OpenApi.OpenAPISpec => {
  for (const item of Object.values(spec.paths)) {
    for (const operation of Object.values(item) as Array<OpenApi.OpenAPISpecOperation>) {
      const ref = (operation.requestBody?.content["application/json"]?.schema as { $ref?: string } | undefined)?.$ref
      const name = ref?.startsWith("#/components/schemas/") ? ref.slice("#/components/schemas/".length) : undefined
      const schema = name === undefined ? undefined : spec.components.schemas[name] as { additionalProperties?: boolean } | undefined
      if (schema !== undefined) schema.additionalProperties = false
    }
  }
  return spec
}

/**
 * The API: the `secret` group (management), the `egress` group (resolve and watch) and the
 * `operations` group (health and readiness, without authentication).
 *
 * @since 0.1.0
 */
export class SecretApi extends HttpApi.make("secretgate")
  .add(secretEndpoints)
  .add(egressEndpoints)
  .add(operationEndpoints)
  .addError(Errors.InternalServerError)
  .addError(Errors.StoreCorrupted)
  .addError(Errors.DecryptionFailed)
  .addError(Errors.StoreUnavailable)
  .annotate(OpenApi.Title, "secretgate")
  .annotate(OpenApi.Version, VERSION)
  .annotate(
    OpenApi.Description,
    "Organization-scoped secrets that a sandbox never sees. Wire-compatible with Daytona's Secret REST API. " +
      "A request body holding a field its route does not take is refused (400 `InvalidSecretInput` naming the field); " +
      "a known path asked with a method it does not have gets 405 `MethodNotAllowed` with an `Allow` header."
  )
  .annotate(OpenApi.Transform, (spec) =>
    withClosedRequestBodies(withChangeEvent(withoutDecodeError(spec as OpenApi.OpenAPISpec))))
{}

/**
 * The API under a base path (`"/"` for none), e.g. `/api` serves `/api/secret`.
 *
 * @since 0.1.0
 */
export const withBasePath = (basePath: string): typeof SecretApi => {
  const prefix = normalizeBasePath(basePath)
  return (prefix === "" ? SecretApi : SecretApi.prefix(prefix as `/${string}`)) as typeof SecretApi
}

/**
 * `"/api/"` → `"/api"`, `"/"` (or `""`) → `""`. Throws on a base path that is not an absolute path.
 *
 * @since 0.1.0
 */
export const normalizeBasePath = (basePath: string): string => {
  if (basePath === "") return ""
  if (!basePath.startsWith("/") || /[?#\s:]/.test(basePath)) {
    throw new Error(`base path ${JSON.stringify(basePath)} must be an absolute path such as "/" or "/api"`)
  }
  return basePath.replace(/\/+$/, "")
}

/**
 * The OpenAPI document of the API (under `basePath`, default `/`).
 *
 * @since 0.1.0
 */
export const openApi = (basePath = "/"): OpenApi.OpenAPISpec =>
  OpenApi.fromApi(withBasePath(basePath), { additionalPropertiesStrategy: "allow" })
