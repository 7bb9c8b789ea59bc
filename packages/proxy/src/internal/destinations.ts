/**
 * Which addresses the proxy connects sandboxes to. By default none that belong to the machine or
 * its network: loopback, RFC 1918, link-local (cloud metadata at 169.254.169.254), shared address
 * space, "this network" (0.0.0.0/8), multicast and reserved ranges, and their IPv6 counterparts
 * (unspecified, loopback, unique-local, link-local, site-local, multicast; IPv4-mapped addresses
 * count as the IPv4 address they carry). The embedder opts in with `allowPrivateDestinations`
 * (`true`, or CIDRs); names it pinned with `upstream.resolve` are trusted (an explicit statement).
 *
 * The check runs on the address the connection is actually made to: inside the `lookup` that
 * `net.connect`/`tls.connect` call (so a name that resolves to a public address for a check and a
 * private one for the connection — DNS rebinding — has no second resolution to slip through), and
 * at CONNECT/absolute-form entry for IP literals, which are never looked up.
 */
import { BlockList, isIP } from "node:net"

/** The error a refused destination fails a connection with (tunnels and the upstream agent). */
export const PRIVATE_DESTINATION = "SECRETGATE_PRIVATE_DESTINATION"

/** An `Error` carrying the code above; its message says what to do. */
export class PrivateDestinationError extends Error {
  readonly code = "SECRETGATE_PRIVATE_DESTINATION"
  constructor(message: string) {
    super(message)
    this.name = "PrivateDestination"
  }
}

const RANGES: ReadonlyArray<readonly [label: string, ranges: ReadonlyArray<readonly [string, number]>]> = [
  ["loopback", [["127.0.0.0", 8], ["::1", 128]]],
  ["private (RFC 1918)", [["10.0.0.0", 8], ["172.16.0.0", 12], ["192.168.0.0", 16]]],
  ["link-local (where cloud metadata services answer)", [["169.254.0.0", 16], ["fe80::", 10]]],
  ["unique-local", [["fc00::", 7], ["fec0::", 10]]],
  ["unspecified (\"this host\")", [["0.0.0.0", 8], ["::", 128]]],
  ["shared (carrier-grade NAT)", [["100.64.0.0", 10]]],
  ["IETF-reserved", [["192.0.0.0", 24], ["198.18.0.0", 15], ["240.0.0.0", 4], ["::", 96]]],
  ["multicast", [["224.0.0.0", 4], ["ff00::", 8]]]
]

const familyOf = (address: string): "ipv4" | "ipv6" => (isIP(address) === 6 ? "ipv6" : "ipv4")

const KINDS: ReadonlyArray<readonly [string, BlockList]> = RANGES.map(([label, ranges]) => {
  const list = new BlockList()
  for (const [network, prefix] of ranges) list.addSubnet(network, prefix, familyOf(network))
  return [label, list] as const
})

/** What kind of non-public address `address` is, or `undefined` for a public one. */
export const kindOf = (address: string): string | undefined => {
  const family = familyOf(address)
  for (const [label, list] of KINDS) if (list.check(address, family)) return label
  return undefined
}

/** `10.0.0.0/8`, `fd00::/8`, `192.168.1.5` → a subnet; `undefined` when malformed. */
export const parseCidr = (text: string): { readonly network: string; readonly prefix: number; readonly family: "ipv4" | "ipv6" } | undefined => {
  if (typeof text !== "string") return undefined
  const slash = text.indexOf("/")
  const network = (slash === -1 ? text : text.slice(0, slash)).trim().replace(/^\[(.*)\]$/, "$1")
  const version = isIP(network)
  if (version === 0) return undefined
  const max = version === 4 ? 32 : 128
  const prefixText = slash === -1 ? String(max) : text.slice(slash + 1).trim()
  if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > max) return undefined
  return { network, prefix: Number(prefixText), family: version === 4 ? "ipv4" : "ipv6" }
}

export class Destinations {
  private readonly allowed: BlockList | undefined

  /** `allowAll`: every address; `cidrs`: these besides the public ones. */
  constructor(private readonly allowAll: boolean, cidrs: ReadonlyArray<ReturnType<typeof parseCidr> & object>) {
    if (cidrs.length > 0) {
      this.allowed = new BlockList()
      for (const cidr of cidrs) this.allowed.addSubnet(cidr.network, cidr.prefix, cidr.family)
    }
  }

  /** Why the proxy may not connect to `address` (an IP), or `undefined` when it may. */
  refusalOf(address: string): string | undefined {
    if (this.allowAll) return undefined
    const kind = kindOf(address)
    if (kind === undefined) return undefined
    if (this.allowed !== undefined && this.allowed.check(address, familyOf(address))) return undefined
    return kind
  }

  /** The error for a refused address `address` that `host` named or resolved to. */
  error(host: string, address: string, kind: string): PrivateDestinationError {
    const named = host === address ? address : `${host} resolves to ${address}, which`
    const cidr = `${address}/${familyOf(address) === "ipv4" ? 32 : 128}`
    return new PrivateDestinationError(
      `${named} is a ${kind} address: the proxy does not connect sandboxes to loopback, private, link-local or metadata addresses. ` +
        `If this destination is intended, start the proxy with allowPrivateDestinations: [${JSON.stringify(cidr)}] ` +
        `(secretgate run/proxy: --allow-private ${cidr}), or pin the name to the address with upstream.resolve (--resolve ${host === address ? "<name>" : host}:${address})`
    )
  }

  /** The error for an IP-literal destination, or `undefined` when it is a name or may be reached. */
  literal(host: string): PrivateDestinationError | undefined {
    if (isIP(host) === 0) return undefined
    const kind = this.refusalOf(host)
    return kind === undefined ? undefined : this.error(host, host, kind)
  }
}
