/**
 * `Telemetry`: secretgate's traces and metrics, written with effect's own `Metric` and spans (so
 * they cost next to nothing and go nowhere until an exporter is provided), and `layerOtlp`, the
 * opt-in exporter to an OpenTelemetry collector over OTLP/HTTP (JSON).
 *
 * What is measured (names and attributes in `docs/operating.md`):
 * - the REST server's requests: one span each, and the `http.server.request.duration` histogram by
 *   method, route template and status (its count is the request rate);
 * - `Secrets` operations (`instrument`): one span each, and `secretgate.secrets.operation.duration`
 *   by operation and outcome; each `resolve` is a resolver's refresh, also counted in
 *   `secretgate.resolver.refreshes`;
 * - the egress (`egressAudit`, an adapter over the agent's and the proxy's audit events):
 *   `secretgate.egress.decisions` by decision (substituted, withheld, blocked, and the proxy's
 *   connection decisions), surface and reason.
 *
 * No attribute ever holds a value, a placeholder, a key, a raw path or a query string: a route is
 * named by its template (`/secret/{secretId}`).
 *
 * @since 0.1.0
 */
import { FetchHttpClient } from "@effect/platform"
import { SecretAudit, Secrets } from "@secretgate/core"
import { Cause, type Duration, Effect, Exit, Layer, Metric, MetricBoundaries, MetricLabel, Option } from "effect"

// Seconds, as OpenTelemetry's semantic conventions recommend for HTTP durations.
const SECONDS = MetricBoundaries.fromIterable([0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 10])

/**
 * The REST server's request durations, in seconds, by `http.request.method`, `http.route` and
 * `http.response.status_code`; its count is the request rate.
 *
 * @since 0.1.0
 */
export const requestDuration = Metric.histogram(
  "http.server.request.duration",
  SECONDS,
  "Duration of HTTP server requests, in seconds"
)

/**
 * Durations of `Secrets` operations, in seconds, by `secretgate.operation` and
 * `secretgate.outcome` (`ok`, `not-found`, `conflict`, `invalid`, `unavailable`, …).
 *
 * @since 0.1.0
 */
export const operationDuration = Metric.histogram(
  "secretgate.secrets.operation.duration",
  SECONDS,
  "Duration of secretgate Secrets operations (create, update, delete, get, list, resolve, …), in seconds"
)

/**
 * Refreshes of egress resolvers (each `resolve` call), by `secretgate.outcome`.
 *
 * @since 0.1.0
 */
export const resolverRefreshes = Metric.counter("secretgate.resolver.refreshes", {
  description: "Values loaded for an egress resolver (one per resolve call)",
  incremental: true
})

/**
 * What the egress did with each placeholder it met (and, behind the proxy, with each connection),
 * by `secretgate.egress.decision` (the event's type: `substituted`, `withheld`, `blocked`;
 * `intercepted`, `tunnelled`, `refused` from the proxy), `secretgate.egress.surface` and
 * `secretgate.egress.reason`.
 *
 * @since 0.1.0
 */
export const egressDecisions = Metric.counter("secretgate.egress.decisions", {
  description: "Placeholders the egress substituted, withheld or blocked",
  incremental: true
})

const label = MetricLabel.make

/**
 * One answered request, as the server's access log sees it.
 *
 * @since 0.1.0
 */
export interface Request {
  readonly method: string
  /** The route template; `null` when no route has the path. */
  readonly route: string | null
  /** The status sent; `null` when the connection closed first. */
  readonly status: number | null
  readonly durationMs: number
}

/**
 * Records one answered request in `requestDuration`. Synchronous, for the server's request path.
 *
 * @since 0.1.0
 */
export const recordRequest = (request: Request): void => {
  requestDuration.unsafeUpdate(request.durationMs / 1000, [
    label("http.request.method", request.method),
    label("http.route", request.route ?? "unmatched"),
    label("http.response.status_code", request.status === null ? "aborted" : String(request.status))
  ])
}

const outcomeOf = (exit: Exit.Exit<unknown, unknown>): SecretAudit.Outcome => {
  if (Exit.isSuccess(exit)) return "ok"
  const failure = Cause.failureOption(exit.cause)
  return Option.isSome(failure) ? SecretAudit.outcomeOf(failure.value) : "error"
}

// One operation: a span named after it, and its duration by outcome.
const operation = <A, E>(name: string, organizationId: string, effect: Effect.Effect<A, E>): Effect.Effect<A, E> =>
  Effect.suspend(() => {
    const started = performance.now()
    return effect.pipe(
      Effect.onExit((exit) =>
        Effect.sync(() => {
          const outcome = outcomeOf(exit)
          const tags = [label("secretgate.operation", name), label("secretgate.outcome", outcome)]
          operationDuration.unsafeUpdate((performance.now() - started) / 1000, tags)
          if (name === "resolve") resolverRefreshes.unsafeUpdate(1, [label("secretgate.outcome", outcome)])
        })
      ),
      Effect.withSpan(`secretgate.secrets.${name}`, {
        kind: "internal",
        captureStackTrace: false,
        attributes: { "secretgate.operation": name, "secretgate.organization": organizationId }
      })
    )
  })

/**
 * `secrets`, with a span and a duration per operation. Arguments other than the organization (a
 * name, an id, a value, placeholders) are not recorded.
 *
 * @since 0.1.0
 */
export const instrument = (secrets: Secrets.Secrets): Secrets.Secrets =>
  Secrets.Secrets.of({
    ...secrets,
    create: (organizationId, params) => operation("create", organizationId, secrets.create(organizationId, params)),
    list: (organizationId) => operation("list", organizationId, secrets.list(organizationId)),
    listPage: (organizationId, query) => operation("listPage", organizationId, secrets.listPage(organizationId, query)),
    get: (organizationId, id) => operation("get", organizationId, secrets.get(organizationId, id)),
    getByName: (organizationId, name) => operation("getByName", organizationId, secrets.getByName(organizationId, name)),
    update: (organizationId, id, params) => operation("update", organizationId, secrets.update(organizationId, id, params)),
    delete: (organizationId, id) => operation("delete", organizationId, secrets.delete(organizationId, id)),
    resolve: (organizationId, placeholders) => operation("resolve", organizationId, secrets.resolve(organizationId, placeholders))
  })

/**
 * Wraps the `Secrets` in context with `instrument`.
 *
 * @since 0.1.0
 */
export const layerSecrets: Layer.Layer<Secrets.Secrets, never, Secrets.Secrets> = Layer.effect(
  Secrets.Secrets,
  Effect.map(Secrets.Secrets, instrument)
)

/**
 * The part of an egress audit event the metrics read: the agent's (`@secretgate/undici`) and the
 * proxy's events (`@secretgate/proxy`, whose connection events have no surface) both have it.
 *
 * @since 0.1.0
 */
export interface EgressEvent {
  readonly type: string
  readonly surface?: string | undefined
  readonly reason?: string | undefined
}

/**
 * An audit sink for the egress agent or the proxy that counts each event in `egressDecisions`,
 * then hands it to `next` (if any). Cheap and synchronous, as a sink must be.
 *
 * @since 0.1.0
 * @example
 * ```ts
 * import { Telemetry } from "@secretgate/http"
 * import { SecretgateAgent } from "@secretgate/undici"
 *
 * declare const resolver: ConstructorParameters<typeof SecretgateAgent>[0]["resolver"]
 * const agent = new SecretgateAgent({ resolver, audit: Telemetry.egressAudit((event) => console.log(event)) })
 * ```
 */
export const egressAudit = <Event extends EgressEvent>(next?: (event: Event) => void) => (event: Event): void => {
  egressDecisions.unsafeUpdate(1, [
    label("secretgate.egress.decision", event.type),
    label("secretgate.egress.surface", event.surface ?? "none"),
    label("secretgate.egress.reason", event.reason ?? "none")
  ])
  next?.(event)
}

/**
 * Settings of the OTLP exporter.
 *
 * @since 0.1.0
 */
export interface OtlpOptions {
  /**
   * The collector's base URL, as `OTEL_EXPORTER_OTLP_ENDPOINT` holds it (e.g.
   * `http://127.0.0.1:4318`): traces go to `/v1/traces`, metrics to `/v1/metrics`.
   */
  readonly endpoint: string
  /** `service.name` of the resource. Default `secretgate` (or `OTEL_SERVICE_NAME`). */
  readonly serviceName?: string
  /** Headers sent with every export (e.g. a collector's API key). */
  readonly headers?: Readonly<Record<string, string>>
  /** How often spans and metrics are sent. Default 10 seconds; whatever is left is sent on shutdown. */
  readonly exportInterval?: Duration.DurationInput
}

const checkEndpoint = (endpoint: string): string => {
  let url: URL
  try {
    url = new URL(endpoint)
  } catch {
    throw new TypeError(`the OTLP endpoint must be an http(s) URL such as http://127.0.0.1:4318 (got ${JSON.stringify(endpoint)})`)
  }
  if (url.protocol !== "http:" && url.protocol !== "https:") {
    throw new TypeError(`the OTLP endpoint must be an http(s) URL such as http://127.0.0.1:4318 (got ${JSON.stringify(endpoint)})`)
  }
  return endpoint.replace(/\/+$/, "")
}

/**
 * Exports the spans and metrics of whatever runs with it to an OpenTelemetry collector over
 * OTLP/HTTP with JSON bodies. Throws a `TypeError` for an endpoint that is not an http(s) URL.
 * Needs `@effect/opentelemetry` installed (an optional peer dependency).
 *
 * @since 0.1.0
 * @example
 * ```ts
 * import { Telemetry } from "@secretgate/http"
 *
 * const otlp = Telemetry.layerOtlp({ endpoint: process.env.OTEL_EXPORTER_OTLP_ENDPOINT ?? "http://127.0.0.1:4318" })
 * ```
 */
export const layerOtlp = (options: OtlpOptions): Layer.Layer<never> => {
  const base = checkEndpoint(options.endpoint)
  const exportInterval = options.exportInterval ?? "10 seconds"
  const resource = { serviceName: options.serviceName ?? process.env.OTEL_SERVICE_NAME ?? "secretgate" }
  const headers = options.headers
  return Layer.unwrapEffect(Effect.map(
    Effect.orDieWith(
      Effect.tryPromise(() =>
        Promise.all([
          import("@effect/opentelemetry/OtlpTracer"),
          import("@effect/opentelemetry/OtlpMetrics"),
          import("@effect/opentelemetry/OtlpSerialization")
        ])
      ),
      (error) => new Error(`exporting telemetry needs the package @effect/opentelemetry (0.64): install it (${String(error.cause)})`)
    ),
    ([OtlpTracer, OtlpMetrics, OtlpSerialization]) =>
      Layer.mergeAll(
        OtlpTracer.layer({ url: `${base}/v1/traces`, resource, exportInterval, ...(headers === undefined ? {} : { headers }) }),
        OtlpMetrics.layer({ url: `${base}/v1/metrics`, resource, exportInterval, ...(headers === undefined ? {} : { headers }) })
      ).pipe(Layer.provide(OtlpSerialization.layerJson), Layer.provide(FetchHttpClient.layer))
  ))
}
