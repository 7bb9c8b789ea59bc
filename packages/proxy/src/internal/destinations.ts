/**
 * Which addresses the proxy connects sandboxes to. By default none that belong to the machine or
 * its network: loopback, RFC 1918, link-local (cloud metadata at 169.254.169.254), shared address
 * space, "this network" (0.0.0.0/8), multicast and reserved ranges, and their IPv6 counterparts
 * (unspecified, loopback, unique-local, link-local, site-local, multicast; IPv4-mapped, NAT64,
 * 6to4, Teredo and IPv4-translated addresses count as the IPv4 address they carry). The embedder opts in with `allowPrivateDestinations`
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

/**
 * An `Error` carrying the code above. Its `message` is what the sandbox is answered with: it names
 * the host and what to do, never the address a name resolved to (the sandbox would learn the
 * internal network's layout by asking); `audited` says the same with the address, for the operator.
 */
export class PrivateDestinationError extends Error {
  readonly code = "SECRETGATE_PRIVATE_DESTINATION"
  constructor(message: string, readonly audited: string = message) {
    super(message)
    this.name = "PrivateDestination"
  }
}

/** The message of a refusal for its audit event: with the resolved address where there is one. */
export const auditedMessage = (error: Error): string =>
  error instanceof PrivateDestinationError ? error.audited : error.message

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

/** The 16 bytes of an IPv6 address (a zone `%eth0` dropped), or `undefined` when it is not one. */
const ipv6Bytes = (address: string): Uint8Array | undefined => {
  const text = address.replace(/%.*$/, "")
  if (isIP(text) !== 6) return undefined
  const [head = "", tail] = text.split("::") as [string, string | undefined]
  const groups = (part: string): Array<number> =>
    part === "" ? [] : part.split(":").flatMap((group) =>
      group.includes(".") ? ((q) => [(q[0]! << 8) | q[1]!, (q[2]! << 8) | q[3]!])(group.split(".").map(Number)) : [parseInt(group, 16)]
    )
  const left = groups(head)
  const right = tail === undefined ? [] : groups(tail)
  const words = [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right]
  const bytes = new Uint8Array(16)
  words.forEach((word, i) => {
    bytes[2 * i] = word >> 8
    bytes[2 * i + 1] = word & 0xff
  })
  return bytes
}

const startsWith = (bytes: Uint8Array, prefix: ReadonlyArray<number>): boolean => prefix.every((byte, i) => bytes[i] === byte)

const dotted = (bytes: Uint8Array, at: number, invert = false): string =>
  Array.from(bytes.subarray(at, at + 4), (byte) => (invert ? byte ^ 0xff : byte)).join(".")

/**
 * The IPv4 address an IPv6 address carries by a translation or tunnelling convention, which is
 * where a connection to it ends up: NAT64 (`64:ff9b::/96`, RFC 6052; `64:ff9b:1::/48`, RFC 8215,
 * in the `/96` layout), IPv4-translated (`::ffff:0:0:0/96`, RFC 2765), 6to4 (`2002::/16`, RFC 3056)
 * and Teredo's client (`2001::/32`, RFC 4380, stored inverted). IPv4-mapped (`::ffff:0:0/96`) and
 * IPv4-compatible (`::/96`) addresses are classified by `BlockList` and the reserved `::/96` range.
 */
export const embeddedIpv4 = (address: string): string | undefined => {
  const bytes = ipv6Bytes(address)
  if (bytes === undefined) return undefined
  if (startsWith(bytes, [0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0])) return dotted(bytes, 12)
  if (startsWith(bytes, [0x00, 0x64, 0xff, 0x9b, 0x00, 0x01])) return dotted(bytes, 12)
  if (startsWith(bytes, [0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0])) return dotted(bytes, 12)
  if (startsWith(bytes, [0x20, 0x02])) return dotted(bytes, 2)
  if (startsWith(bytes, [0x20, 0x01, 0x00, 0x00])) return dotted(bytes, 12, true)
  return undefined
}

const kindByRanges = (address: string): string | undefined => {
  const family = familyOf(address)
  for (const [label, list] of KINDS) if (list.check(address, family)) return label
  return undefined
}

/**
 * What kind of non-public address `address` is, or `undefined` for a public one. An IPv6 address
 * that carries an IPv4 address (NAT64, 6to4, Teredo, IPv4-translated) is the kind of that address.
 */
export const kindOf = (address: string): string | undefined => {
  const own = kindByRanges(address)
  if (own !== undefined) return own
  const embedded = embeddedIpv4(address)
  return embedded === undefined ? undefined : kindByRanges(embedded)
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
    if (this.allowed === undefined) return kind
    if (this.allowed.check(address, familyOf(address))) return undefined
    const embedded = embeddedIpv4(address)
    if (embedded !== undefined && this.allowed.check(embedded, "ipv4")) return undefined
    return kind
  }

  /** The error for a refused address `address` that `host` named or resolved to. */
  error(host: string, address: string, kind: string): PrivateDestinationError {
    const named = host === address ? address : `${host} resolves to ${address}, which`
    const cidr = `${address}/${familyOf(address) === "ipv4" ? 32 : 128}`
    const audited = `${named} is a ${kind} address: the proxy does not connect sandboxes to loopback, private, link-local or metadata addresses. ` +
      `If this destination is intended, start the proxy with allowPrivateDestinations: [${JSON.stringify(cidr)}] ` +
      `(secretgate run/proxy: --allow-private ${cidr}), or pin the name to the address with upstream.resolve (--resolve ${host === address ? "<name>" : host}:${address})`
    if (host === address) return new PrivateDestinationError(audited)
    return new PrivateDestinationError(
      `${host} resolves to a non-public address: the proxy does not connect sandboxes to loopback, private, link-local or metadata addresses. ` +
        `If this destination is intended, start the proxy with allowPrivateDestinations (secretgate run/proxy: --allow-private <CIDR>), ` +
        `or pin the name with upstream.resolve (--resolve ${host}:<address>); the proxy's audit log names the address`,
      audited
    )
  }

  /** The error for an IP-literal destination, or `undefined` when it is a name or may be reached. */
  literal(host: string): PrivateDestinationError | undefined {
    if (isIP(host) === 0) return undefined
    const kind = this.refusalOf(host)
    return kind === undefined ? undefined : this.error(host, host, kind)
  }
}
