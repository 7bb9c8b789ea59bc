/**
 * The route table of an `HttpApi`, derived from its endpoints: which route template a request path
 * falls under, and which methods that path has. It answers a known path with a wrong method (405
 * with `Allow`) and names the route in access logs by its template, never by the raw path (which
 * may carry an id or, by mistake, anything else).
 *
 * Matching follows the router's rules where they matter here: a literal segment beats a parameter
 * (`/secret/paginated` is not `/secret/:secretId`), a parameter matches one non-empty segment, and
 * `HEAD` is answered by a `GET` route.
 */
import type { HttpApi } from "@effect/platform"

type Segment = { readonly literal: string } | { readonly param: true }

interface Route {
  readonly method: string
  /** As the OpenAPI document writes it: `/secret/{secretId}`. */
  readonly template: string
  readonly segments: ReadonlyArray<Segment>
  /** Literal segments count: the router prefers the route with more of them. */
  readonly literals: number
}

const parse = (method: string, path: string): Route => {
  const segments: Array<Segment> = path.split("/").slice(1).map((segment) =>
    segment.startsWith(":") ? { param: true } : { literal: segment }
  )
  return {
    method,
    template: path.replace(/:([^/]+)/g, "{$1}"),
    segments,
    literals: segments.filter((segment) => "literal" in segment).length
  }
}

const matches = (route: Route, parts: ReadonlyArray<string>): boolean => {
  if (route.segments.length !== parts.length) return false
  for (let i = 0; i < parts.length; i++) {
    const segment = route.segments[i]!
    const part = parts[i]!
    if ("literal" in segment ? segment.literal !== part : part === "") return false
  }
  return true
}

/** What the table knows of a path. */
export interface Lookup {
  /** The template of the route that serves this method and path, if any. */
  readonly template: string | undefined
  /** Every method some route answers on this path (with `HEAD` where `GET` is), sorted. */
  readonly allowed: ReadonlyArray<string>
}

/** The route table. */
export interface RouteTable {
  readonly lookup: (method: string, url: string) => Lookup
}

/**
 * The table of `api` (as served, base path included), plus `extra` routes served beside it (the
 * OpenAPI document).
 */
export const make = (
  api: HttpApi.HttpApi.Any,
  extra: ReadonlyArray<readonly [method: string, path: string]> = []
): RouteTable => {
  const routes: Array<Route> = []
  for (const group of Object.values((api as unknown as HttpApi.HttpApi.AnyWithProps).groups)) {
    for (const endpoint of Object.values(group.endpoints)) routes.push(parse(endpoint.method, endpoint.path))
  }
  for (const [method, path] of extra) routes.push(parse(method, path))
  // most literal segments first, so that the first match of a method is the router's choice
  routes.sort((a, b) => b.literals - a.literals)
  return {
    lookup: (method, url) => {
      const query = url.indexOf("?")
      const parts = (query === -1 ? url : url.slice(0, query)).split("/").slice(1)
      const wanted = method === "HEAD" ? ["HEAD", "GET"] : [method]
      let template: string | undefined
      const allowed = new Set<string>()
      for (const route of routes) {
        if (!matches(route, parts)) continue
        if (template === undefined && wanted.includes(route.method)) template = route.template
        allowed.add(route.method)
        if (route.method === "GET") allowed.add("HEAD")
      }
      return { template, allowed: [...allowed].sort() }
    }
  }
}
