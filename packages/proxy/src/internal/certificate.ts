/**
 * X.509 v3 certificates in the profile strict verifiers accept (RFC 5280; OpenSSL's
 * `-x509_strict`, Python 3.13's `VERIFY_X509_STRICT`): a positive random serial, ECDSA P-256 with
 * SHA-256, critical basicConstraints and keyUsage, subject and authority key identifiers, and for a
 * leaf a subjectAltName and the serverAuth extended key usage. Keys and signatures come from Node's
 * crypto; the structure from our DER writer.
 */
import { Buffer } from "node:buffer"
import { createHash, type KeyObject, randomBytes, sign } from "node:crypto"
import { isIPv4, isIPv6 } from "node:net"
import * as der from "./der.js"

const ECDSA_WITH_SHA256 = der.sequence(der.oid("1.2.840.10045.4.3.2"))
const COMMON_NAME = "2.5.4.3"
const ORGANIZATION = "2.5.4.10"

const SUBJECT_KEY_IDENTIFIER = "2.5.29.14"
const KEY_USAGE = "2.5.29.15"
const SUBJECT_ALT_NAME = "2.5.29.17"
const BASIC_CONSTRAINTS = "2.5.29.19"
const AUTHORITY_KEY_IDENTIFIER = "2.5.29.35"
const EXT_KEY_USAGE = "2.5.29.37"
const SERVER_AUTH = "1.3.6.1.5.5.7.3.1"

/** A distinguished name of (type, value) pairs, one per RDN. */
const name = (attributes: ReadonlyArray<readonly [type: string, value: string]>): Buffer =>
  der.sequence(...attributes.map(([type, value]) => der.set(der.sequence(der.oid(type), der.utf8String(value)))))

const extension = (id: string, critical: boolean, value: Buffer): Buffer =>
  der.sequence(der.oid(id), ...(critical ? [der.boolean(true)] : []), der.octetString(value))

/** A serial number: 16 random bytes, positive and non-zero (RFC 5280 4.1.2.2). */
const serial = (): Buffer => {
  const bytes = randomBytes(16)
  bytes[0] = (bytes[0]! & 0x7f) | 0x01
  return der.unsignedInteger(bytes)
}

/**
 * The key identifier of a public key (RFC 5280 4.2.1.2, method 1): SHA-1 of the subjectPublicKey
 * bits — for a P-256 key, the 65-byte uncompressed point that ends its SPKI encoding.
 */
export const keyIdentifier = (publicKey: KeyObject): Buffer => {
  const spki = publicKey.export({ type: "spki", format: "der" })
  return createHash("sha1").update(spki.subarray(spki.length - 65)).digest()
}

/** An IPv6 address as its 16 bytes. */
const ipv6Bytes = (address: string): Buffer => {
  let text = address
  const tail: Array<number> = []
  const lastColon = text.lastIndexOf(":")
  if (text.includes(".", lastColon)) {
    // an embedded IPv4 address (`::ffff:1.2.3.4`) is its last 4 bytes
    tail.push(...text.slice(lastColon + 1).split(".").map(Number))
    text = `${text.slice(0, lastColon)}:0:0`
  }
  const [head, rest] = text.includes("::") ? text.split("::") as [string, string] : [text, undefined]
  const groups = (part: string | undefined) => (part === undefined || part === "" ? [] : part.split(":").map((g) => parseInt(g, 16)))
  const before = groups(head)
  const after = groups(rest)
  const all = rest === undefined ? before : [...before, ...new Array<number>(8 - before.length - after.length).fill(0), ...after]
  const bytes = Buffer.alloc(16)
  all.forEach((group, i) => bytes.writeUInt16BE(group, i * 2))
  if (tail.length === 4) Buffer.from(tail).copy(bytes, 12)
  return bytes
}

/** The subjectAltName entry for a host: an iPAddress for IP literals, a dNSName otherwise. */
const altName = (host: string): Buffer =>
  isIPv4(host)
    ? der.implicit(7, Buffer.from(host.split(".").map(Number)))
    : isIPv6(host)
    ? der.implicit(7, ipv6Bytes(host))
    : der.implicit(2, Buffer.from(host, "ascii"))

interface Signed {
  readonly tbs: Buffer
  readonly signer: KeyObject
}

const signed = ({ tbs, signer }: Signed): Buffer =>
  der.sequence(tbs, ECDSA_WITH_SHA256, der.bitString(sign("sha256", tbs, { key: signer, dsaEncoding: "der" })))

const tbsCertificate = (fields: {
  readonly issuer: Buffer
  readonly subject: Buffer
  readonly notBefore: Date
  readonly notAfter: Date
  readonly publicKey: KeyObject
  readonly extensions: ReadonlyArray<Buffer>
}): Buffer =>
  der.sequence(
    der.explicit(0, der.smallInteger(2)), // v3
    serial(),
    ECDSA_WITH_SHA256,
    fields.issuer,
    der.sequence(der.time(fields.notBefore), der.time(fields.notAfter)),
    fields.subject,
    fields.publicKey.export({ type: "spki", format: "der" }),
    der.explicit(3, der.sequence(...fields.extensions))
  )

/** The DER of a self-signed CA certificate for `key` (a P-256 key pair). */
export const authorityCertificate = (options: {
  readonly commonName: string
  readonly publicKey: KeyObject
  readonly privateKey: KeyObject
  readonly notBefore: Date
  readonly notAfter: Date
}): Buffer => {
  const subject = name([[ORGANIZATION, "secretgate"], [COMMON_NAME, options.commonName]])
  const id = keyIdentifier(options.publicKey)
  return signed({
    signer: options.privateKey,
    tbs: tbsCertificate({
      issuer: subject,
      subject,
      notBefore: options.notBefore,
      notAfter: options.notAfter,
      publicKey: options.publicKey,
      extensions: [
        // CA, and no CA below it
        extension(BASIC_CONSTRAINTS, true, der.sequence(der.boolean(true), der.smallInteger(0))),
        // digitalSignature (bit 0), keyCertSign (5), cRLSign (6): 1000 0110, 1 unused bit
        extension(KEY_USAGE, true, der.bitString(Buffer.from([0x86]), 1)),
        extension(SUBJECT_KEY_IDENTIFIER, false, der.octetString(id)),
        extension(AUTHORITY_KEY_IDENTIFIER, false, der.sequence(der.implicit(0, id)))
      ]
    })
  })
}

/** The DER of a leaf certificate for `host` (normalised: lower-case ASCII name or IP literal). */
export const leafCertificate = (options: {
  readonly host: string
  readonly publicKey: KeyObject
  readonly issuer: Buffer
  readonly issuerKeyId: Buffer
  readonly issuerKey: KeyObject
  readonly notBefore: Date
  readonly notAfter: Date
}): Buffer => {
  // a common name holds at most 64 characters; without one, the subject is empty and the
  // subjectAltName must then be critical (RFC 5280 4.2.1.6)
  const withName = options.host.length <= 64
  return signed({
    signer: options.issuerKey,
    tbs: tbsCertificate({
      issuer: options.issuer,
      subject: name(withName ? [[COMMON_NAME, options.host]] : []),
      notBefore: options.notBefore,
      notAfter: options.notAfter,
      publicKey: options.publicKey,
      extensions: [
        extension(BASIC_CONSTRAINTS, true, der.sequence()),
        // digitalSignature (bit 0): 1000 0000, 7 unused bits
        extension(KEY_USAGE, true, der.bitString(Buffer.from([0x80]), 7)),
        extension(EXT_KEY_USAGE, false, der.sequence(der.oid(SERVER_AUTH))),
        extension(SUBJECT_ALT_NAME, !withName, der.sequence(altName(options.host))),
        extension(SUBJECT_KEY_IDENTIFIER, false, der.octetString(keyIdentifier(options.publicKey))),
        extension(AUTHORITY_KEY_IDENTIFIER, false, der.sequence(der.implicit(0, options.issuerKeyId)))
      ]
    })
  })
}

/** The subject of a certificate, as DER, for the issuer field of the certificates it signs. */
export const subjectOf = (certificate: Buffer): Buffer => {
  // Certificate ::= SEQUENCE { tbs SEQUENCE { [0] version, serial, alg, issuer, validity, subject, ...
  const elements = children(children(certificate)[0]!)
  return elements[5]!
}

/** The DER elements inside a constructed element. */
const children = (element: Buffer): Array<Buffer> => {
  const { start, end } = contentOf(element, 0)
  const out: Array<Buffer> = []
  for (let at = start; at < end;) {
    const inner = contentOf(element, at)
    out.push(element.subarray(at, inner.end))
    at = inner.end
  }
  return out
}

const contentOf = (bytes: Buffer, at: number): { start: number; end: number } => {
  const first = bytes[at + 1]!
  if (first < 0x80) return { start: at + 2, end: at + 2 + first }
  const count = first & 0x7f
  let length = 0
  for (let i = 0; i < count; i++) length = length * 256 + bytes[at + 2 + i]!
  return { start: at + 2 + count, end: at + 2 + count + length }
}

/** PEM armour. */
export const pem = (label: string, bytes: Buffer): string =>
  `-----BEGIN ${label}-----\n${bytes.toString("base64").replace(/.{64}/g, "$&\n").replace(/\n$/, "")}\n-----END ${label}-----\n`
