/**
 * `HttpSecrets`: the `Secrets` service over a remote secretgate server, through the client derived
 * from `SecretApi`. Swap it in for an in-process backend and the Promise facade, sandbox mounts
 * and the egress resolver work against the remote server unchanged.
 *
 * - Remote failures come back as the same typed errors (`SecretNotFound`, `SecretNameTaken`, ...).
 * - A server that cannot be reached, does not answer in time, or answers something that is not
 *   this API, fails with `StoreUnavailable` and a message saying which.
 * - A rejected API key (401) or a key of another organization or scope (403) fails with
 *   `Unauthorized` / `Forbidden` (part of `StoreError`: any operation of a remote backend may meet
 *   them).
 * - Values leave this process only in create and update bodies, and come back only from the
 *   resolve route, where they are wrapped in `Redacted` while decoding.
 *
 * @since 0.1.0
 */
import * as NodeHttpClient from "@effect/platform-node/NodeHttpClient"
import * as Undici from "@effect/platform-node/Undici"
import {
  type InvalidSecretInput,
  type QuotaExceeded,
  Secret,
  SecretChanges,
  type SecretNameTaken,
  SecretNotFound,
  Secrets,
  type StoreError,
  StoreUnavailable,
  Unauthorized
} from "@secretgate/core"
import { Duration, Effect, Layer, Redacted, Runtime, type Scope } from "effect"
import { checkKeyCharacters } from "./ApiKeys.js"
import * as ApiCaller from "./internal/apiCaller.js"
import * as WatchClient from "./internal/watchClient.js"
import { MAX_RESOLVE_PLACEHOLDERS, ORGANIZATION_HEADER, SecretApi } from "./SecretApi.js"

/**
 * An API key, or a function giving the key to use for an organization (for a client acting for
 * several organizations).
 *
 * @since 0.1.0
 */
export type Credential =
  | string
  | Redacted.Redacted<string>
  | ((organizationId: string) => string | Redacted.Redacted<string>)

/**
 * @since 0.1.0
 */
export interface Options {
  /**
   * Where the server's API lives, base path included: `https://secrets.internal:8443/api`. Plain
   * `http:` is accepted only for a loopback host (`localhost`, `127.0.0.0/8`, `::1`) unless
   * `allowInsecure` is set: API keys and values would cross the network in cleartext.
   */
  readonly baseUrl: string | URL
  /**
   * Allows a plain `http:` `baseUrl` to a host that is not loopback (e.g. behind a TLS-terminating
   * sidecar on a private network). Default false.
   */
  readonly allowInsecure?: boolean
  /** A key with the `secrets:manage` scope, for create, list, get, update and delete. */
  readonly apiKey: Credential
  /**
   * A key with the `secrets:resolve` scope, for `resolve` (the egress resolver). Default:
   * `apiKey`, which is right only for a client that does nothing but resolve.
   */
  readonly resolveApiKey?: Credential | undefined
  /** How long one request may take before it fails with `StoreUnavailable`. Default 10 seconds. */
  readonly timeout?: Duration.DurationInput
  /**
   * Largest answer body read, in bytes; a larger one fails with `StoreUnavailable` ("answer too
   * large") without being buffered. A resolve answer may be larger, up to what its batch of
   * placeholders can legitimately hold (512 KiB each). Default 8 MiB.
   */
  readonly maxResponseBytes?: number
  /**
   * Whether to watch the server's changes (`GET /secret/watch`, with `resolveApiKey`) for the
   * organizations whose values are resolved, so that the egress resolver keeps values until a
   * change is announced and refreshes them on the next request after one. While a stream is down
   * (or the server offers none) the resolver reloads every TTL, and a log line says so. Default true.
   */
  readonly watch?: boolean
  /**
   * Most connections `layer`'s own connection pool opens to the server; further requests wait
   * for one. Keeps a process with many resolvers from opening a socket per resolver. Default 32.
   */
  readonly maxConnections?: number
  /**
   * A watch stream that carries nothing, not even the server's heartbeat, for this long is given
   * up and reopened. Default 45 seconds (three of the server's default heartbeats).
   */
  readonly watchIdleTimeout?: Duration.DurationInput
}

/**
 * Default largest answer body: 8 MiB.
 *
 * @since 0.1.0
 */
export const DEFAULT_MAX_RESPONSE_BYTES = 8 * 1024 * 1024

// Most bytes one resolved secret can take in an answer: a 64 KiB value escaped at 6 bytes a byte,
// 100 hosts of 253 characters, a 255-character name, and the rest.
const RESOLVED_SECRET_BYTES = 512 * 1024

// The `Authorization` header for an organization's key, or why there is none.
const authorizationOf = (credential: Credential, organizationId: string): string | Unauthorized => {
  const given = typeof credential === "function" ? credential(organizationId) : credential
  const key = typeof given === "string" ? given : Redacted.value(given)
  try {
    checkKeyCharacters(key, `the API key for organization ${JSON.stringify(organizationId)}`)
  } catch (error) {
    return new Unauthorized({ message: (error as Error).message })
  }
  return `Bearer ${key}`
}

// A fixed key is checked once (by `make`); a function is asked on every call.
const authorizer = (credential: Credential): (organizationId: string) => string | Unauthorized => {
  if (typeof credential === "function") return (organizationId) => authorizationOf(credential, organizationId)
  const header = `Bearer ${typeof credential === "string" ? credential : Redacted.value(credential)}`
  return () => header
}

// `URL` has already normalised the host: IPv4 in dotted decimal (`127.1` → `127.0.0.1`), IPv6 in
// brackets and compressed, names in lower case.
const isLoopback = (hostname: string): boolean => {
  const host = hostname.replace(/\.$/, "")
  if (host === "localhost") return true
  if (/^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)) return true
  // ::1, and IPv4-mapped 127.0.0.0/8 (`[::ffff:7f00:1]`)
  return host === "[::1]" || /^\[::ffff:7f[0-9a-f]{2}:[0-9a-f]{1,4}\]$/.test(host)
}

const decodeCreate = Secret.decodeInput(Secret.CreateSecretParams)
const decodeUpdate = Secret.decodeInput(Secret.UpdateSecretParams)
const decodeQuery = Secret.decodeInput(Secret.ListQuery, "query")
const decodeName = Secret.decodeInput(Secret.SecretName, "name")

type Tag = { readonly _tag: string }

const hasTag = (error: unknown): error is Tag =>
  typeof error === "object" && error !== null && typeof (error as Partial<Tag>)._tag === "string"

const describeCause = (cause: unknown): string => {
  if (typeof cause === "object" && cause !== null) {
    const nested = (cause as { cause?: unknown }).cause
    const code = (cause as { code?: unknown }).code ?? (nested as { code?: unknown } | undefined)?.code
    if (typeof code === "string") return code
    const message = (cause as { message?: unknown }).message
    if (typeof message === "string" && message !== "") return message
  }
  return String(cause)
}

/**
 * A `Secrets` over the server at `options.baseUrl`, sending its requests through the undici
 * `Dispatcher` in context (`NodeHttpClient.Dispatcher`).
 *
 * @since 0.1.0
 */
export const make = (options: Options): Effect.Effect<Secrets.Secrets, never, NodeHttpClient.Dispatcher | Scope.Scope> =>
  Effect.gen(function*() {
    const baseUrl = String(options.baseUrl).replace(/\/+$/, "")
    const url = /^https?:\/\/[^/]/i.test(baseUrl) && URL.canParse(baseUrl) ? new URL(baseUrl) : undefined
    if (url === undefined) {
      return yield* Effect.dieMessage(`HttpSecrets: baseUrl ${JSON.stringify(baseUrl)} must be an http:// or https:// URL`)
    }
    if (url.protocol === "http:" && options.allowInsecure !== true && !isLoopback(url.hostname)) {
      return yield* Effect.dieMessage(
        `HttpSecrets: baseUrl ${JSON.stringify(baseUrl)} is plain http to a host that is not loopback: API keys and ` +
          "values would cross the network in cleartext. Use https://, or set allowInsecure: true if the network is trusted"
      )
    }
    // A fixed key that no Authorization header can carry (a newline read from a file) is refused
    // here rather than failing every request.
    for (const [name, credential] of [["apiKey", options.apiKey], ["resolveApiKey", options.resolveApiKey]] as const) {
      if (credential === undefined || typeof credential === "function") continue
      try {
        checkKeyCharacters(typeof credential === "string" ? credential : Redacted.value(credential), `HttpSecrets: ${name}`)
      } catch (error) {
        return yield* Effect.die(error)
      }
    }
    const timeout = Duration.decode(options.timeout ?? "10 seconds")
    const maxResponseBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES
    if (!Number.isSafeInteger(maxResponseBytes) || maxResponseBytes < 1) {
      return yield* Effect.dieMessage(`HttpSecrets: maxResponseBytes must be a positive whole number (got ${maxResponseBytes})`)
    }
    const manageKey = authorizer(options.apiKey)
    const resolveKey = authorizer(options.resolveApiKey ?? options.apiKey)
    const dispatcher = yield* NodeHttpClient.Dispatcher
    const { abortAll, calls } = ApiCaller.make(SecretApi, { baseUrl: url, dispatcher, timeoutMillis: Duration.toMillis(timeout) })
    // requests still in flight when the service closes end with it
    yield* Effect.addFinalizer(() => Effect.sync(abortAll))

    const unavailable = (error: unknown): StoreUnavailable => {
      const server = `the secretgate server at ${baseUrl}`
      if (error instanceof ApiCaller.CallFailure) {
        switch (error.reason) {
          case "unreachable":
            return new StoreUnavailable({ message: `cannot reach ${server} (${describeCause(error.cause)})` })
          case "timeout":
            return new StoreUnavailable({ message: `no answer from ${server} within ${Duration.format(timeout)}` })
          case "too large":
            return new StoreUnavailable({
              message: `${server} sent an answer too large (over ${error.limit} bytes); is baseUrl right?`
            })
          case "not this API":
            return new StoreUnavailable({
              message: `${server} answered ${error.status} with a body that is not a secretgate API answer; is baseUrl right?`
            })
        }
      }
      const message = hasTag(error) ? (error as { readonly message?: unknown }).message : undefined
      if (typeof message === "string") return new StoreUnavailable({ message: `${server} failed: ${message}` })
      return new StoreUnavailable({ message: `${server} failed unexpectedly` })
    }

    // Runs one request: with the key and organization header, bounded by the timeout; the errors
    // the operation declares (kept by `failure`) and the store errors (auth errors included: `Unauthorized`,
    // `Forbidden`) pass through, everything else becomes `StoreUnavailable`. One `Effect.async`
    // per call: the error is mapped before it reaches the fiber.
    const remote = <A, E>(
      organizationId: string,
      authorization: (organizationId: string) => string | Unauthorized,
      failure: (error: unknown) => unknown,
      call: ApiCaller.Call,
      path: ApiCaller.CallInput["path"],
      urlParams: ApiCaller.CallInput["urlParams"],
      payload: unknown,
      responseLimit = maxResponseBytes,
      share?: string
    ): Effect.Effect<A, E | StoreError> => {
      const header = authorization(organizationId)
      if (typeof header !== "string") return Effect.fail(header)
      const headers: Record<string, string> = { authorization: header }
      headers[ORGANIZATION_HEADER] = organizationId
      return call({ path, urlParams, payload, headers, responseLimit, failure, share }) as Effect.Effect<A, E | StoreError>
    }
    // Coalescing of resolves: a resolve of the same placeholders for the same organization joins
    // one in flight, unless something of the organization may have changed since that one was
    // sent: a write answered through this client, or a change announced by the watch. Each moves
    // the organization's epoch, which is part of the sharing key.
    const written = new Map<string, number>()
    // (also a write that failed: it may have reached the server)
    const wrote = <A, E>(organizationId: string, write: Effect.Effect<A, E>) =>
      Effect.ensuring(
        write,
        Effect.sync(() => {
          written.set(organizationId, (written.get(organizationId) ?? 0) + 1)
        })
      )
    const epochOf = (organizationId: string) =>
      `${written.get(organizationId) ?? 0}.${watches?.peek(organizationId)?.revision ?? 0}`
    const failureOf = (error: unknown): StoreError =>
      hasTag(error) && !(error instanceof ApiCaller.CallFailure) && STORE_ERRORS.includes(error._tag)
        ? error as StoreError
        : unavailable(error)
    // The failure mapping of an operation that declares the errors `keep`.
    const keeping = (...keep: ReadonlyArray<string>) => (error: unknown): unknown =>
      hasTag(error) && !(error instanceof ApiCaller.CallFailure) && keep.includes(error._tag) ? error : failureOf(error)
    const createFailure = keeping("InvalidSecretInput", "SecretNameTaken", "QuotaExceeded")
    const inputFailure = keeping("InvalidSecretInput")
    const notFoundFailure = keeping("SecretNotFound")
    const updateFailure = keeping("InvalidSecretInput", "SecretNotFound")

    // Ids that cannot travel as one path segment are answered here: "", "." and ".." (URL
    // normalisation turns `/secret/..` into `/`, and `%2E%2E` is a dot segment too) and ids too
    // long for a request line. No backend makes such ids (they are UUIDs), so none exists.
    const withId = <A, E>(id: string, use: (path: { readonly secretId: string }) => Effect.Effect<A, E | StoreError>) => {
      const encoded = encodeURIComponent(id)
      return id === "" || id === "." || id === ".." || encoded.length > MAX_ENCODED_ID_LENGTH
        ? Effect.fail(SecretNotFound.byId(id.length > 200 ? `${id.slice(0, 200)}…` : id))
        : use({ secretId: encoded })
    }

    const listPage = (organizationId: string, query: Secret.ListQuery) =>
      remote<Secret.SecretPage, InvalidSecretInput>(
        organizationId,
        manageKey,
        inputFailure,
        calls.secret!.listPaginated!,
        undefined,
        {
            ...(query.cursor === undefined ? {} : { cursor: query.cursor }),
            ...(query.limit === undefined ? {} : { limit: String(query.limit) }),
            ...(query.name === undefined ? {} : { name: query.name }),
            ...(query.sort === undefined ? {} : { sort: query.sort }),
            ...(query.order === undefined ? {} : { order: query.order })
        },
        undefined
      )

    // The watches start with the first resolver of each organization and end with this service.
    const runtime = yield* Effect.runtime<never>()
    const log = (level: "info" | "warning", message: string) =>
      Runtime.runFork(runtime)(level === "info" ? Effect.logInfo(message) : Effect.logWarning(message))
    const changes = SecretChanges.makeHub((organizationId) => watches?.live(organizationId) === true)
    const watches = options.watch === false ? undefined : WatchClient.make({
      url: new URL(`${baseUrl}${SecretApi.groups.egress.endpoints.watch.path}`),
      authorization: (organizationId) => {
        const header = resolveKey(organizationId)
        return typeof header === "string"
          ? { header }
          : { problem: `no usable API key for organization ${JSON.stringify(organizationId)}` }
      },
      idleMillis: Duration.toMillis(Duration.decode(options.watchIdleTimeout ?? "45 seconds")),
      maxBackoffMillis: 30_000,
      onChange: (organizationId, placeholders) => changes.publish({ organizationId, placeholders }),
      log
    })
    yield* Effect.addFinalizer(() => Effect.sync(() => watches?.close()))

    return Secrets.Secrets.of({
      ...(watches === undefined ? {} : {
        changes,
        revision: (organizationId, placeholders) => {
          const watch = watches.of(organizationId)
          if (placeholders === undefined) return watch.revision
          let revision = watch.everything
          for (const placeholder of placeholders) {
            const at = watch.byPlaceholder.get(placeholder)
            if (at !== undefined && at > revision) revision = at
          }
          return revision
        }
      }),
      create: (organizationId, input) =>
        Effect.flatMap(decodeCreate(input), (payload) =>
          wrote(organizationId, remote<Secret.Secret, InvalidSecretInput | SecretNameTaken | QuotaExceeded>(
            organizationId,
            manageKey,
            createFailure,
            calls.secret!.create!,
            undefined,
            undefined,
            payload
          ))),
      list: (organizationId) =>
        remote<ReadonlyArray<Secret.Secret>, never>(
          organizationId,
          manageKey,
          failureOf,
          calls.secret!.list!,
          undefined,
          undefined,
          undefined
        ),
      listPage: (organizationId, input = {}) => Effect.flatMap(decodeQuery(input), (query) => listPage(organizationId, query)),
      get: (organizationId, id) =>
        withId(id, (path) =>
          remote<Secret.Secret, SecretNotFound>(
            organizationId,
            manageKey,
            notFoundFailure,
            calls.secret!.get!,
            path,
            undefined,
            undefined
          )),
      // The API has no lookup by name (Daytona's has none either): walk the pages filtered by the
      // name, which the first page nearly always settles.
      getByName: (organizationId, input) =>
        Effect.gen(function*() {
          const name = yield* decodeName(input)
          let cursor: string | undefined
          do {
            const page = yield* listPage(organizationId, {
              name,
              sort: "name",
              order: "asc",
              limit: 200,
              ...(cursor === undefined ? {} : { cursor })
            })
            const found = page.items.find((secret) => secret.name === name)
            if (found !== undefined) return found
            cursor = page.nextCursor ?? undefined
          } while (cursor !== undefined)
          return yield* Effect.fail(SecretNotFound.byNames([name]))
        }),
      update: (organizationId, id, input) =>
        Effect.flatMap(decodeUpdate(input), (payload) =>
          withId(id, (path) =>
            wrote(
              organizationId,
              remote<Secret.Secret, InvalidSecretInput | SecretNotFound>(
                organizationId,
                manageKey,
                updateFailure,
                calls.secret!.update!,
                path,
                undefined,
                payload
              )
            ))),
      delete: (organizationId, id) =>
        withId(id, (path) =>
          wrote(
            organizationId,
            remote<void, SecretNotFound>(
              organizationId,
              manageKey,
              notFoundFailure,
              calls.secret!.delete!,
              path,
              undefined,
              undefined
            )
          )),
      resolve: (organizationId, placeholders) => {
        const unique = [...new Set(placeholders)]
        const batches: Array<Array<string>> = []
        for (let i = 0; i < unique.length; i += MAX_RESOLVE_PLACEHOLDERS) {
          batches.push(unique.slice(i, i + MAX_RESOLVE_PLACEHOLDERS))
        }
        const epoch = epochOf(organizationId)
        return Effect.forEach(batches, (batch) =>
          remote<{ readonly secrets: ReadonlyArray<Secrets.ResolvedSecret> }, never>(
            organizationId,
            resolveKey,
            failureOf,
            calls.egress!.resolve!,
            undefined,
            undefined,
            { placeholders: batch },
            Math.max(maxResponseBytes, batch.length * RESOLVED_SECRET_BYTES),
            // JSON: no placeholder can make two different keys equal
            JSON.stringify([organizationId, epoch, batch])
          )).pipe(Effect.map((all) => all.flatMap((answer) => answer.secrets)))
      }
    })
  })

// Well under Node's default limit of 16 KiB for the request line and headers.
const MAX_ENCODED_ID_LENGTH = 8 * 1024

const STORE_ERRORS: ReadonlyArray<string> = ["StoreCorrupted", "DecryptionFailed", "StoreUnavailable", "Unauthorized", "Forbidden"]

/**
 * Provides `Secrets` over the server at `options.baseUrl`, with its own undici connection pool (at
 * most `maxConnections` sockets).
 *
 * @since 0.1.0
 * @example
 * ```ts
 * import { Secretgate } from "@secretgate/core"
 * import { HttpSecrets } from "@secretgate/http"
 *
 * const gate = new Secretgate({
 *   layer: HttpSecrets.layer({ baseUrl: "http://127.0.0.1:8080", apiKey: process.env.SECRETGATE_API_KEY! }),
 *   organizationId: "acme"
 * })
 * console.log(await gate.secret.list())
 * ```
 */
export const layer = (options: Options): Layer.Layer<Secrets.Secrets> =>
  layerWithoutClient(options).pipe(
    Layer.provide(Layer.scoped(
      NodeHttpClient.Dispatcher,
      Effect.acquireRelease(
        Effect.sync(() => new Undici.Agent({ connections: options.maxConnections ?? 32 })),
        (agent) => Effect.promise(() => agent.destroy())
      )
    ))
  )

/**
 * Provides `Secrets` over the server at `options.baseUrl`, sending its requests through the undici
 * `Dispatcher` in context (`NodeHttpClient.Dispatcher`): e.g. a `ProxyAgent`, or an `Agent` with
 * TLS settings of its own. (The watch stream is read with `node:http(s)` and does not use it.)
 *
 * @since 0.1.0
 */
export const layerWithoutClient = (options: Options): Layer.Layer<Secrets.Secrets, never, NodeHttpClient.Dispatcher> =>
  Layer.scoped(Secrets.Secrets, make(options))
