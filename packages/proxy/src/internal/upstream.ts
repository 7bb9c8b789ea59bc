/**
 * How the proxy reaches upstreams: one shared undici `Agent` for decrypted requests (every sandbox's
 * egress agent dispatches through it) and plain TCP for tunnels, both resolving names the same way —
 * the system resolver, except for names the embedder pinned to an address (as curl's `--resolve`).
 */
import { lookup as systemLookup, type LookupAddress, type LookupOptions } from "node:dns"
import { isIP } from "node:net"
import * as tls from "node:tls"
import { Agent } from "undici"

export interface UpstreamSettings {
  /** host name (normalised) → IP address */
  readonly resolve: ReadonlyMap<string, string>
  /** Extra certificate authorities trusted for upstream TLS, besides Node's roots. */
  readonly ca: ReadonlyArray<string> | undefined
  readonly connectTimeout: number
  /** Longest wait for an upstream's response headers, and between two body chunks. */
  readonly responseTimeout: number
  readonly maxHeaderSize: number
}

type LookupCallback = (error: NodeJS.ErrnoException | null, address: string | Array<LookupAddress>, family?: number) => void

/** A `lookup` for `net.connect`/`tls.connect` that answers pinned names itself. */
export const lookupWith = (resolve: ReadonlyMap<string, string>) =>
  (hostname: string, options: LookupOptions, callback: LookupCallback): void => {
    const pinned = resolve.get(hostname.toLowerCase().replace(/\.$/, ""))
    if (pinned === undefined) {
      systemLookup(hostname, options, callback as never)
      return
    }
    const family = isIP(pinned)
    if (options.all === true) callback(null, [{ address: pinned, family }])
    else callback(null, pinned, family)
  }

/** The dispatcher decrypted requests finally go through. */
export const makeUpstreamAgent = (settings: UpstreamSettings): Agent =>
  new Agent({
    connect: {
      lookup: lookupWith(settings.resolve) as never,
      timeout: settings.connectTimeout,
      ...(settings.ca === undefined ? {} : { ca: [...tls.rootCertificates, ...settings.ca] })
    },
    headersTimeout: settings.responseTimeout,
    bodyTimeout: settings.responseTimeout,
    maxHeaderSize: settings.maxHeaderSize
  })
