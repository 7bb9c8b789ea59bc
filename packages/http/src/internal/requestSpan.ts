/**
 * The server span of each request, with safe attributes only: the method, the route's template
 * and the status. It replaces the platform's own request span, which records the full URL (query
 * string included) and every request header.
 */
import { type HttpApp, HttpServerError, HttpServerRequest, HttpTraceContext } from "@effect/platform"
import { Effect, Exit, Option } from "effect"

/** `app`, in a span named `http.server <METHOD> <route>`; `route` names a request's route template. */
export const make = (route: (method: string, url: string) => string | undefined) => (app: HttpApp.Default): HttpApp.Default =>
  Effect.flatMap(HttpServerRequest.HttpServerRequest, (request) => {
    const template = route(request.method, request.url)
    return Effect.useSpan(
      template === undefined ? `http.server ${request.method}` : `http.server ${request.method} ${template}`,
      {
        kind: "server",
        captureStackTrace: false,
        parent: Option.getOrUndefined(HttpTraceContext.fromHeaders(request.headers)),
        attributes: { "http.request.method": request.method, ...(template === undefined ? {} : { "http.route": template }) }
      },
      (span) =>
        Effect.withParentSpan(app, span).pipe(
          Effect.onExit((exit) =>
            Effect.sync(() => {
              const response = Exit.isSuccess(exit) ? exit.value : HttpServerError.exitResponse(exit)
              span.attribute("http.response.status_code", response.status)
            })
          )
        )
    )
  })
