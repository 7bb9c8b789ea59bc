/**
 * How the proxy reaches upstreams: one shared undici `Agent` for decrypted requests (every sandbox's
 * egress agent dispatches through it) and plain TCP for tunnels, both resolving names the same way —
 * the system resolver, except for names the embedder pinned to an address (as curl's `--resolve`).
 */
import { lookup as systemLookup, type LookupAddress, type LookupOptions } from "node:dns"
import { isIP } from "node:net"
import * as tls from "node:tls"
import { Agent } from "undici"
import type { Destinations } from "./destinations.js"

export interface UpstreamSettings {
  /** host name (normalised) → IP address */
  readonly resolve: ReadonlyMap<string, string>
  /** Extra certificate authorities trusted for upstream TLS, besides Node's roots. */
  readonly ca: ReadonlyArray<string> | undefined
  readonly connectTimeout: number
  /** Longest wait for an upstream's response headers, and between two body chunks. */
  readonly responseTimeout: number
  readonly maxHeaderSize: number
  /** Which addresses may be connected to (names pinned in `resolve` are trusted). */
  readonly destinations: Destinations
}

type LookupCallback = (error: NodeJS.ErrnoException | null, address: string | Array<LookupAddress>, family?: number) => void

/**
 * A `lookup` for `net.connect`/`tls.connect` that answers pinned names itself (trusted: the
 * embedder named the address) and hands on only the system's answers that `destinations` allows:
 * the connection is made to one of those, so the address checked is the address connected to.
 */
export const lookupWith = (resolve: ReadonlyMap<string, string>, destinations: Destinations) =>
  (hostname: string, options: LookupOptions, callback: LookupCallback): void => {
    const pinned = resolve.get(hostname.toLowerCase().replace(/\.$/, ""))
    if (pinned !== undefined) {
      const family = isIP(pinned)
      if (options.all === true) callback(null, [{ address: pinned, family }])
      else callback(null, pinned, family)
      return
    }
    systemLookup(hostname, { ...options, all: true }, (error, addresses) => {
      if (error !== null) return callback(error, options.all === true ? [] : "")
      const usable = addresses.filter((entry) => destinations.refusalOf(entry.address) === undefined)
      if (usable.length === 0) {
        const first = addresses[0]
        if (first === undefined) return callback(Object.assign(new Error(`${hostname} has no address`), { code: "ENOTFOUND" }), "")
        return callback(destinations.error(hostname, first.address, destinations.refusalOf(first.address)!), options.all === true ? [] : "")
      }
      if (options.all === true) callback(null, usable)
      else callback(null, usable[0]!.address, usable[0]!.family)
    })
  }

/** The dispatcher decrypted requests finally go through. */
export const makeUpstreamAgent = (settings: UpstreamSettings): Agent =>
  new Agent({
    connect: {
      lookup: lookupWith(settings.resolve, settings.destinations) as never,
      timeout: settings.connectTimeout,
      ...(settings.ca === undefined ? {} : { ca: [...tls.rootCertificates, ...settings.ca] })
    },
    headersTimeout: settings.responseTimeout,
    bodyTimeout: settings.responseTimeout,
    maxHeaderSize: settings.maxHeaderSize
  })
