/**
 * A DER writer for the few ASN.1 types an X.509 certificate needs (X.690). Writing, never parsing:
 * Node's `crypto.X509Certificate` reads certificates; this only builds them.
 */
import { Buffer } from "node:buffer"

const lengthOf = (length: number): Buffer => {
  if (length < 0x80) return Buffer.from([length])
  const bytes: Array<number> = []
  for (let rest = length; rest > 0; rest = Math.floor(rest / 256)) bytes.unshift(rest & 0xff)
  return Buffer.from([0x80 | bytes.length, ...bytes])
}

/** A tag-length-value element. */
export const tlv = (tag: number, ...content: ReadonlyArray<Buffer>): Buffer => {
  const body = content.length === 1 ? content[0]! : Buffer.concat(content)
  return Buffer.concat([Buffer.from([tag]), lengthOf(body.length), body])
}

export const sequence = (...items: ReadonlyArray<Buffer>): Buffer => tlv(0x30, ...items)
export const set = (...items: ReadonlyArray<Buffer>): Buffer => tlv(0x31, ...items)
export const boolean = (value: boolean): Buffer => tlv(0x01, Buffer.from([value ? 0xff : 0x00]))
export const octetString = (bytes: Buffer): Buffer => tlv(0x04, bytes)
export const utf8String = (text: string): Buffer => tlv(0x0c, Buffer.from(text, "utf8"))
export const ia5String = (text: string): Buffer => tlv(0x16, Buffer.from(text, "ascii"))

/** A non-negative INTEGER from big-endian magnitude bytes (minimal: no redundant leading zeros). */
export const unsignedInteger = (magnitude: Buffer): Buffer => {
  let start = 0
  while (start < magnitude.length - 1 && magnitude[start] === 0) start++
  const bytes = magnitude.subarray(start)
  return tlv(0x02, (bytes[0]! & 0x80) !== 0 ? Buffer.concat([Buffer.from([0]), bytes]) : bytes)
}

export const smallInteger = (value: number): Buffer => unsignedInteger(Buffer.from([value]))

/** A BIT STRING of whole bytes. */
export const bitString = (bytes: Buffer, unusedBits = 0): Buffer => tlv(0x03, Buffer.from([unusedBits]), bytes)

/** An OBJECT IDENTIFIER from its dotted form. */
export const oid = (dotted: string): Buffer => {
  const arcs = dotted.split(".").map(Number)
  const bytes: Array<number> = [arcs[0]! * 40 + arcs[1]!]
  for (const arc of arcs.slice(2)) {
    const base128: Array<number> = [arc & 0x7f]
    for (let rest = Math.floor(arc / 128); rest > 0; rest = Math.floor(rest / 128)) base128.unshift(0x80 | (rest & 0x7f))
    bytes.push(...base128)
  }
  return tlv(0x06, Buffer.from(bytes))
}

/** A time as RFC 5280 wants it: UTCTime through 2049, GeneralizedTime from 2050, whole seconds, UTC. */
export const time = (date: Date): Buffer => {
  const iso = date.toISOString() // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = iso.slice(0, 19).replace(/[-:T]/g, "")
  return date.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(`${digits.slice(2)}Z`)) : tlv(0x18, Buffer.from(`${digits}Z`))
}

/** `[n] EXPLICIT`: a constructed context-specific tag around an element. */
export const explicit = (n: number, inner: Buffer): Buffer => tlv(0xa0 | n, inner)

/** `[n] IMPLICIT` of a primitive type: the element's content under a context-specific tag. */
export const implicit = (n: number, content: Buffer): Buffer => tlv(0x80 | n, content)
