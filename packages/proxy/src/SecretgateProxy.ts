/**
 * `SecretgateProxy`: an HTTPS forward proxy in front of `@secretgate/undici`'s egress agent — the
 * same substitution and scrubbing for any process (curl, Python, git, Go, Node) that honours
 * `HTTPS_PROXY` and a CA file.
 *
 * Many sandboxes share one proxy. `register` gives each a token, carried in the proxy URL's
 * userinfo, and the environment to start it with. A `CONNECT` is intercepted (TLS terminated with a
 * leaf certificate minted for the CONNECT host by the proxy's CA) only when the sandbox has a
 * secret that may be substituted for that host, or when `onDisallowed: "block"` must inspect every
 * request; every other connection is tunnelled byte for byte. Decrypted requests are dispatched
 * through the sandbox's egress agent with the CONNECT target as the origin, over one shared
 * upstream `Agent`; redirects are not followed (the client follows them, each hop coming back
 * through the proxy).
 *
 * @since 0.1.0
 */
import { HostPattern, type SecretResolver, UnreadBody } from "@secretgate/core"
import { randomBytes } from "node:crypto"
import { mkdtemp, rm } from "node:fs/promises"
import * as http from "node:http"
import type { AddressInfo } from "node:net"
import type * as net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Interceptor } from "@secretgate/undici"
import type { Agent } from "undici"
import * as CertificateAuthorityModule from "./CertificateAuthority.js"
import type { CertificateAuthority } from "./CertificateAuthority.js"
import { forward } from "./internal/bridge.js"
import { Destinations, parseCidr } from "./internal/destinations.js"
import { type ConnectContext, onConnect, parseTarget, PROXY_AUTHENTICATE, refuse, report } from "./internal/connect.js"
import { type Bundle, environmentFor, writeBundle } from "./internal/environment.js"
import { LeafCache } from "./internal/leafCache.js"
import { makeInnerServer } from "./internal/innerServer.js"
import { isWithin, realPathOf } from "./internal/paths.js"
import { onClientError, quoteTarget } from "./internal/refusal.js"
import { Registry, USER } from "./internal/registry.js"
import { Sandbox } from "./internal/sandbox.js"
import { lookupWith, makeUpstreamAgent } from "./internal/upstream.js"
import type { AuditSink } from "./ProxyAuditEvent.js"
import { InvalidProxyOptions } from "./ProxyError.js"

/**
 * Limits, each with a clear refusal when reached.
 *
 * @since 0.1.0
 */
export interface Limits {
  /** Open client connections (CONNECT tunnels, intercepted connections and plain-HTTP proxy connections) per sandbox. Default 512. */
  readonly connectionsPerSandbox: number
  /** Milliseconds for a client to send its request head, and to complete a TLS handshake. Default 10 s. */
  readonly handshakeTimeout: number
  /** Milliseconds a connection may be idle (no byte either way) before it is closed. Default 5 min. */
  readonly idleTimeout: number
  /** Bytes of request (and upstream response) headers. Default 16 KiB. */
  readonly maxHeaderSize: number
  /** Milliseconds to connect to an upstream. Default 10 s. */
  readonly connectTimeout: number
  /** Leaf certificates (with their TLS contexts) kept in memory. Default 1,000. */
  readonly cachedCertificates: number
}

const DEFAULT_LIMITS: Limits = {
  connectionsPerSandbox: 512,
  handshakeTimeout: 10_000,
  idleTimeout: 300_000,
  maxHeaderSize: 16 * 1024,
  connectTimeout: 10_000,
  cachedCertificates: 1000
}

/**
 * @since 0.1.0
 */
export interface Options {
  /** Address to listen on. Default `127.0.0.1`. */
  readonly host?: string
  /** Port to listen on. Default 0: any free port (see `url`). */
  readonly port?: number
  /**
   * The certificate authority: a `CertificateAuthority`, or `{ directory }` to keep one there
   * (created on first use, key `0600`). Default: a new one whose key lives in memory only.
   */
  readonly ca?: CertificateAuthority | { readonly directory: string }
  /**
   * Where the files given to sandboxes go (`ca.pem`, `ca-bundle.pem`, `node-preload.cjs`).
   * Default: a new temporary directory, removed by `close()`.
   */
  readonly directory?: string
  /** How upstreams are reached. */
  readonly upstream?: {
    /** Host names pinned to addresses (as curl's `--resolve`): `{ "api.example.com": "10.0.0.5" }`. */
    readonly resolve?: Readonly<Record<string, string>>
    /** Extra CA certificates (PEM) trusted for upstream TLS, besides Node's roots. */
    readonly ca?: string | ReadonlyArray<string>
  }
  /**
   * Private destinations sandboxes may reach. By default the proxy refuses (`403`, `refused` with
   * reason `private-destination`) to connect to loopback, RFC 1918, link-local (cloud metadata at
   * 169.254.169.254), shared (100.64.0.0/10), unspecified (`0.0.0.0`), multicast and reserved
   * addresses and their IPv6 counterparts (`::1`, `fc00::/7`, `fe80::/10`, ...), checked on the
   * address each connection is made to, after name resolution. `true` allows them all; a list of
   * CIDRs (`["10.1.0.0/16", "fd00::/8", "192.168.1.5"]`) allows those. Names pinned in
   * `upstream.resolve` are trusted whatever their address.
   */
  readonly allowPrivateDestinations?: boolean | ReadonlyArray<string>
  /** Receives every event of every sandbox, and the events no sandbox can be named for. */
  readonly audit?: AuditSink
  readonly limits?: Partial<Limits>
}

/**
 * A sandbox to register.
 *
 * @since 0.1.0
 */
export interface RegisterOptions {
  /** The sandbox's secrets: `gate.resolver(mount)`. Its mount's env becomes part of `env`. */
  readonly resolver: SecretResolver.SecretResolver
  /** Names the sandbox in audit events. Default: random. */
  readonly id?: string
  /** As the egress agent's: `"forward"` (default) or `"block"`. Under `block` every host is intercepted. */
  readonly onDisallowed?: "forward" | "block"
  /**
   * As the egress agent's: whether a secret without hosts may be substituted for any host
   * (`"allow"`, audited each time) or never (`"deny"`, the default). Under `deny` such secrets make
   * no host intercepted.
   */
  readonly unrestricted?: "allow" | "deny"
  /** Hosts whose plain-HTTP requests may carry values (loopback tests only). */
  readonly allowHttp?: ReadonlyArray<string>
  /** Values in WebSocket handshakes and messages on intercepted hosts (frames scrubbed). Default false. */
  readonly webSockets?: boolean
  /**
   * When set, the only hosts this sandbox may reach (`api.example.com`, `*.example.com`); others are
   * refused with `403` before any connection is made.
   */
  readonly allowedHosts?: ReadonlyArray<string>
  /** This sandbox's events (also sent to the proxy's `audit`). */
  readonly audit?: AuditSink
}

/**
 * A registered sandbox: what to start it with.
 *
 * @since 0.1.0
 */
export interface Registration {
  readonly id: string
  /** `http://sg:<token>@host:port`: the proxy for this sandbox (the token names it). */
  readonly proxyUrl: string
  /**
   * Every variable the sandbox needs: its placeholders; `HTTPS_PROXY`/`HTTP_PROXY` (both cases) with
   * the token; `NO_PROXY` for loopback only; the CA variables (`NODE_EXTRA_CA_CERTS` with the CA,
   * `SSL_CERT_FILE`, `REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE`, `GIT_SSL_CAINFO`, ... with the CA plus
   * the system roots); `NODE_USE_ENV_PROXY=1` and `NODE_OPTIONS=--require <preload>` for Node's
   * `fetch`. Remove inherited copies of these first; append to an existing `NODE_OPTIONS`.
   */
  readonly env: Readonly<Record<string, string>>
  /** Ends the registration: its token stops working and its open connections are closed. */
  revoke(): Promise<void>
}

const positive = (name: string, value: number): number => {
  if (!Number.isFinite(value) || value <= 0) throw InvalidProxyOptions.of(`limits.${name}`, `must be a positive number, got ${String(value)}`)
  return value
}

/**
 * The running proxy.
 *
 * @since 0.1.0
 */
export class SecretgateProxy {
  readonly #server: http.Server
  readonly #inner: http.Server
  readonly #registry: Registry
  readonly #upstream: Agent
  readonly #ownsDirectory: boolean
  readonly #directory: string
  readonly #audit: AuditSink | undefined
  #closed = false

  /** The proxy's certificate authority (what sandboxes trust). */
  readonly ca: CertificateAuthority
  /** The files given to sandboxes. */
  readonly bundle: Bundle
  /** `http://host:port` (no token). */
  readonly url: string
  readonly limits: Limits

  private constructor(parts: {
    server: http.Server
    inner: http.Server
    registry: Registry
    upstream: Agent
    ca: CertificateAuthority
    bundle: Bundle
    directory: string
    ownsDirectory: boolean
    url: string
    limits: Limits
    audit: AuditSink | undefined
  }) {
    this.#audit = parts.audit
    this.#server = parts.server
    this.#inner = parts.inner
    this.#registry = parts.registry
    this.#upstream = parts.upstream
    this.#directory = parts.directory
    this.#ownsDirectory = parts.ownsDirectory
    this.ca = parts.ca
    this.bundle = parts.bundle
    this.url = parts.url
    this.limits = parts.limits
  }

  /**
   * Starts a proxy.
   *
   * @since 0.1.0
   * @example
   * ```ts
   * import { SecretgateProxy } from "@secretgate/proxy"
   * const proxy = await SecretgateProxy.start()
   * const mount = await gate.mount({ GITHUB_TOKEN: "github" })
   * const sandbox = await proxy.register({ resolver: await gate.resolver(mount) })
   * spawn("curl", ["-H", "Authorization: Bearer $GITHUB_TOKEN", "https://api.github.com/user"], { env: { ...process.env, ...sandbox.env } })
   * ```
   */
  static async start(options: Options = {}): Promise<SecretgateProxy> {
    const limits: Limits = { ...DEFAULT_LIMITS, ...options.limits }
    for (const [name, value] of Object.entries(limits)) positive(name, value)
    const resolve = new Map<string, string>()
    for (const [name, address] of Object.entries(options.upstream?.resolve ?? {})) {
      const host = HostPattern.normalizeDestination(name)
      const ip = HostPattern.normalizeDestination(address)
      if (host === undefined || host.kind !== "name") throw InvalidProxyOptions.of(`upstream.resolve[${JSON.stringify(name)}]`, "is not a host name")
      if (ip === undefined || ip.kind !== "ip") throw InvalidProxyOptions.of(`upstream.resolve[${JSON.stringify(name)}]`, `maps to ${JSON.stringify(address)}, which is not an IP address`)
      resolve.set(host.host, ip.host)
    }
    const extraCa = options.upstream?.ca === undefined ? undefined : typeof options.upstream.ca === "string" ? [options.upstream.ca] : [...options.upstream.ca]
    if (extraCa !== undefined && extraCa.some((pem) => typeof pem !== "string" || !pem.includes("-----BEGIN CERTIFICATE-----"))) {
      throw InvalidProxyOptions.of("upstream.ca", "must be PEM certificates (-----BEGIN CERTIFICATE-----)")
    }

    const allowPrivate = options.allowPrivateDestinations ?? false
    if (typeof allowPrivate !== "boolean" && !Array.isArray(allowPrivate)) {
      throw InvalidProxyOptions.of("allowPrivateDestinations", "must be true, false or a list of CIDRs (\"10.0.0.0/8\", \"fd00::/8\")")
    }
    const cidrs = typeof allowPrivate === "boolean" ? [] : allowPrivate.map((entry, i) => {
      const cidr = parseCidr(entry)
      if (cidr === undefined) throw InvalidProxyOptions.of(`allowPrivateDestinations[${i}]`, `${JSON.stringify(entry)} is not an IP address or CIDR (e.g. "10.0.0.0/8", "fd00::/8")`)
      return cidr
    })
    const destinations = new Destinations(allowPrivate === true, cidrs)

    if (options.ca !== undefined && !(options.ca instanceof CertificateAuthorityModule.CertificateAuthority) && options.directory !== undefined) {
      // real paths: a symbolic link to the bundle directory (or into it) is the bundle directory
      const caDirectory = realPathOf(options.ca.directory)
      const bundleDirectory = realPathOf(options.directory)
      if (isWithin(caDirectory, bundleDirectory)) {
        throw InvalidProxyOptions.of(
          "ca.directory",
          `${options.ca.directory} is ${caDirectory === bundleDirectory ? "" : "inside "}the directory given to sandboxes (directory: ${options.directory}): they would read the CA's private key; keep the CA elsewhere`
        )
      }
    }
    const ca = options.ca === undefined
      ? CertificateAuthorityModule.generate()
      : options.ca instanceof CertificateAuthorityModule.CertificateAuthority
      ? options.ca
      : await CertificateAuthorityModule.loadOrCreate(options.ca.directory)
    const ownsDirectory = options.directory === undefined
    const directory = options.directory ?? (await mkdtemp(join(tmpdir(), "secretgate-proxy-")))
    const bundle = await writeBundle(directory, ca.certificatePem)

    const registry = new Registry()
    const upstream = makeUpstreamAgent({
      resolve,
      destinations,
      ca: extraCa,
      connectTimeout: limits.connectTimeout,
      responseTimeout: limits.idleTimeout,
      maxHeaderSize: limits.maxHeaderSize
    })
    const serverOptions: http.ServerOptions = {
      maxHeaderSize: limits.maxHeaderSize,
      headersTimeout: limits.handshakeTimeout,
      requestTimeout: 0,
      keepAliveTimeout: Math.min(limits.idleTimeout, 60_000),
      connectionsCheckingInterval: Math.max(100, Math.min(limits.handshakeTimeout / 4, 30_000)),
      noDelay: true
    }
    const server = http.createServer(serverOptions)
    const leaves = new LeafCache(ca, limits.cachedCertificates)
    leaves.warm()
    const context: ConnectContext = {
      registry,
      leaves,
      inner: makeInnerServer(serverOptions, limits, (socket, session, reason, status, message) => refuse(context, socket, session.sandbox, session.host, reason, status, message)),
      limits,
      lookup: lookupWith(resolve, destinations),
      destinations,
      audit: options.audit
    }
    const inner = context.inner.server

    // plain-HTTP proxy requests (absolute-form)
    // (a body an answer leaves unread, a refusal's or a failed forward's, is read no further than
    // UnreadBody.DRAIN_BYTES: the proxy has no request timeout)
    server.on("request", (req: http.IncomingMessage, res: http.ServerResponse) => {
      UnreadBody.bound(req, res)
      plainRequest(context, req, res)
    })
    server.on("checkExpectation", UnreadBody.expectationFailed)
    server.on("connect", onConnect(context))
    server.on("upgrade", (req: http.IncomingMessage, socket: net.Socket) => {
      socket.on("error", () => socket.destroy())
      const sandbox = registry.authenticate(req.headers["proxy-authorization"])
      refuse(context, socket, sandbox, undefined, "upgrade-not-supported", 501, "upgrades are supported only inside CONNECT tunnels (wss://), not on plain-HTTP proxy requests")
    })
    server.on("clientError", onClientError(limits))

    await new Promise<void>((resolveListen, reject) => {
      server.once("error", reject)
      server.listen(options.port ?? 0, options.host ?? "127.0.0.1", () => {
        server.off("error", reject)
        resolveListen()
      })
    })
    const address = server.address() as AddressInfo
    const hostInUrl = address.family === "IPv6" ? `[${address.address}]` : address.address
    return new SecretgateProxy({
      server,
      inner,
      registry,
      upstream,
      ca,
      bundle,
      directory,
      ownsDirectory,
      url: `http://${hostInUrl}:${address.port}`,
      limits,
      audit: options.audit
    })
  }

  /**
   * Registers a sandbox: its token, proxy URL and environment.
   *
   * @since 0.1.0
   */
  register(options: RegisterOptions): Registration {
    if (this.#closed) throw InvalidProxyOptions.of("register", "was called after close()")
    if (options === null || typeof options !== "object" || typeof options.resolver?.current !== "function") {
      throw InvalidProxyOptions.of("resolver", "is required: the sandbox's SecretResolver (gate.resolver(mount))")
    }
    if (options.onDisallowed !== undefined && options.onDisallowed !== "forward" && options.onDisallowed !== "block") {
      throw InvalidProxyOptions.of("onDisallowed", `must be "forward" or "block", got ${JSON.stringify(options.onDisallowed)}`)
    }
    if (options.unrestricted !== undefined && options.unrestricted !== "allow" && options.unrestricted !== "deny") {
      throw InvalidProxyOptions.of("unrestricted", `must be "allow" or "deny", got ${JSON.stringify(options.unrestricted)}`)
    }
    let allowedHosts: Array<string> | undefined
    if (options.allowedHosts !== undefined) {
      allowedHosts = options.allowedHosts.map((entry, i) => {
        const parsed = HostPattern.parse(entry)
        if (!parsed.ok) throw InvalidProxyOptions.of(`allowedHosts[${i}]`, parsed.reason)
        return parsed.pattern
      })
    }
    const id = options.id ?? randomBytes(6).toString("hex")
    const sandbox = new Sandbox(
      {
        id,
        resolver: options.resolver,
        onDisallowed: options.onDisallowed ?? "forward",
        unrestricted: Interceptor.unrestrictedPolicy(options),
        allowHttp: options.allowHttp ?? [],
        webSockets: options.webSockets === true,
        allowedHosts,
        maxConnections: this.limits.connectionsPerSandbox,
        audit: options.audit
      },
      this.#upstream,
      this.#audit
    )
    const token = this.#registry.add(sandbox)
    const proxyUrl = this.url.replace("http://", `http://${USER}:${token}@`)
    return {
      id,
      proxyUrl,
      env: environmentFor(proxyUrl, this.bundle, options.resolver.mount.env),
      revoke: async () => {
        this.#registry.remove(sandbox)
        await sandbox.close()
      }
    }
  }

  /**
   * Stops listening, closes every connection and the upstream agent, and removes the bundle
   * directory if the proxy made it.
   *
   * @since 0.1.0
   */
  async close(): Promise<void> {
    if (this.#closed) return
    this.#closed = true
    const closed = new Promise<void>((resolve) => this.#server.close(() => resolve()))
    this.#server.closeAllConnections()
    this.#inner.closeAllConnections()
    await Promise.all(this.#registry.sandboxes().map((sandbox) => sandbox.close()))
    await closed
    await this.#upstream.close()
    if (this.#ownsDirectory) await rm(this.#directory, { recursive: true, force: true })
  }
}

/** A plain-HTTP proxy request (`GET http://host/path`): forwarded without values unless `allowHttp` names the host. */
const plainRequest = (context: ConnectContext, req: http.IncomingMessage, res: http.ServerResponse): void => {
  const sandbox = context.registry.authenticate(req.headers["proxy-authorization"])
  const answer = (status: number, message: string, headers: Record<string, string> = {}) => {
    res.writeHead(status, { "content-type": "text/plain; charset=utf-8", ...headers })
    res.end(`secretgate proxy: ${message}\n`)
  }
  const refusePlain = (reason: import("./ProxyAuditEvent.js").RefusedReason, status: number, message: string, host?: string, headers?: Record<string, string>) => {
    report(context, sandbox, { type: "refused", sandbox: sandbox?.id, host, reason, status, message })
    answer(status, message, headers)
  }
  if (sandbox === undefined) {
    return refusePlain("unauthenticated", 407, "this proxy needs the sandbox's token: use the proxy URL that register() returned (http://sg:<token>@host:port)", undefined, PROXY_AUTHENTICATE)
  }
  const url = URL.canParse(req.url ?? "") ? new URL(req.url!) : undefined
  if (url === undefined || (url.protocol !== "http:" && url.protocol !== "https:")) {
    return refusePlain("bad-request", 400, `this is a proxy: send absolute-form http:// requests (http_proxy) or CONNECT (https_proxy), not ${quoteTarget(req.url)}`)
  }
  if (url.protocol === "https:") {
    return refusePlain(
      "https-absolute-form",
      400,
      `https:// requests must go through CONNECT (set HTTPS_PROXY), so that TLS is kept to ${url.hostname}; the proxy does not downgrade them to plain HTTP`,
      url.hostname
    )
  }
  const target = parseTarget(url.host, "http", 80)
  if (target === undefined) return refusePlain("bad-request", 400, `${quoteTarget(url.host)} is not a valid host`)
  if (!sandbox.mayReach(target.host)) return refusePlain("host-not-allowed", 403, `${target.host} is not among this sandbox's allowed hosts`, target.host)
  const literal = context.destinations.literal(target.host)
  if (literal !== undefined) return refusePlain("private-destination", 403, literal.message, target.host)
  // a plain-HTTP connection counts against the limit like a CONNECT (once, for its first request)
  if (!sandbox.admit(req.socket)) {
    // (the connection closes after this answer: a body still coming is read first, UnreadBody.after)
    return UnreadBody.after(req, context.limits.handshakeTimeout, () =>
      refusePlain("too-many-connections", 429, `this sandbox already has ${sandbox.settings.maxConnections} open connections (the proxy's limits.connectionsPerSandbox)`, target.host, { connection: "close" })
    )
  }
  forward(sandbox, target.origin, `${url.pathname}${url.search}`, req, res)
}
