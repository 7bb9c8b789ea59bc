/**
 * Placeholders: the opaque tokens a sandbox sees instead of secret values.
 *
 * A placeholder is `<prefix><32 chars of [a-z2-7]>`: 160 random bits in lower-case base32. That
 * alphabet (and the prefix's `[a-z0-9_]`) passes JSON, URL, form and header encoding unchanged, so a
 * placeholder is found by a plain byte scan of any request surface.
 *
 * @since 0.1.0
 */
import { Buffer } from "node:buffer"

/**
 * The prefix used unless configured otherwise.
 *
 * @since 0.1.0
 */
export const DEFAULT_PREFIX = "sg_secret_"

/**
 * Characters after the prefix.
 *
 * @since 0.1.0
 */
export const TOKEN_LENGTH = 32

const ALPHABET = "abcdefghijklmnopqrstuvwxyz234567"
const PREFIX_PATTERN = /^[a-z][a-z0-9_]{0,31}$/

/** byte -> is it in the token alphabet */
const IN_ALPHABET = new Uint8Array(256)
for (const char of ALPHABET) IN_ALPHABET[char.charCodeAt(0)] = 1

/**
 * Why a prefix is unusable, or `undefined` when it is fine. A prefix is 1–32 characters of
 * `[a-z0-9_]` starting with a letter, so that it needs no escaping anywhere.
 *
 * @since 0.1.0
 */
export const checkPrefix = (prefix: string): string | undefined =>
  PREFIX_PATTERN.test(prefix)
    ? undefined
    : `placeholder prefix ${JSON.stringify(prefix)} must be 1-32 characters of [a-z0-9_] starting with a letter`

/**
 * A fresh placeholder: the prefix plus 160 bits from the platform's CSPRNG. Not derived from the
 * secret's id or value.
 *
 * @since 0.1.0
 * @example
 * ```ts
 * import { Placeholder } from "@secretgate/core"
 * Placeholder.generate() // "sg_secret_k3v7..." (32 chars after the prefix)
 * ```
 */
export const generate = (prefix: string = DEFAULT_PREFIX): string => {
  const bytes = new Uint8Array(20)
  globalThis.crypto.getRandomValues(bytes)
  // 20 bytes = 160 bits = 32 base32 characters, 5 bits each
  let out = prefix
  let buffer = 0
  let bits = 0
  for (const byte of bytes) {
    buffer = (buffer << 8) | byte
    bits += 8
    while (bits >= 5) {
      bits -= 5
      out += ALPHABET[(buffer >>> bits) & 31]
    }
  }
  return out
}

/**
 * Whether `text` is exactly one placeholder of this prefix.
 *
 * @since 0.1.0
 */
export const isPlaceholder = (text: string, prefix: string = DEFAULT_PREFIX): boolean => {
  if (text.length !== prefix.length + TOKEN_LENGTH || !text.startsWith(prefix)) return false
  for (let i = prefix.length; i < text.length; i++) {
    if (IN_ALPHABET[text.charCodeAt(i)] !== 1) return false
  }
  return true
}

/**
 * Finds placeholders of one prefix in text or bytes. A match is the prefix followed by 32 token
 * characters; what comes after does not matter, so placeholders written back to back, or glued
 * to other text (`${A}${B}`, `key-${A}abc`), are all found. Only an exact, mounted placeholder is
 * ever substituted, and 160 random bits do not turn up in other data by chance.
 *
 * @since 0.1.0
 */
export class Scanner {
  /** Length of every placeholder this scanner finds. @since 0.1.0 */
  readonly length: number
  private readonly prefixBytes: Buffer

  constructor(readonly prefix: string = DEFAULT_PREFIX) {
    const problem = checkPrefix(prefix)
    if (problem !== undefined) throw new TypeError(problem)
    this.prefixBytes = Buffer.from(prefix, "latin1")
    this.length = prefix.length + TOKEN_LENGTH
  }

  /**
   * Start index of the first placeholder in `bytes[from, end)`, or -1.
   *
   * @since 0.1.0
   */
  indexIn(bytes: Uint8Array, from: number, end: number = bytes.length): number {
    const buffer = Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    let at = from
    while (at <= end - this.length) {
      const found = buffer.indexOf(this.prefixBytes, at)
      if (found === -1 || found > end - this.length) return -1
      if (this.tokenAt(buffer, found)) return found
      at = found + 1
    }
    return -1
  }

  /**
   * Every placeholder in `text`, in order of appearance (duplicates kept).
   *
   * @since 0.1.0
   */
  findAll(text: string): Array<string> {
    const found: Array<string> = []
    let at = text.indexOf(this.prefix)
    while (at !== -1) {
      if (this.tokenAtString(text, at)) {
        found.push(text.slice(at, at + this.length))
        at = text.indexOf(this.prefix, at + this.length)
      } else {
        at = text.indexOf(this.prefix, at + 1)
      }
    }
    return found
  }

  /**
   * Replaces each placeholder in `text` with what `replace` returns for it (`undefined` keeps it).
   *
   * @since 0.1.0
   */
  replaceIn(text: string, replace: (placeholder: string) => string | undefined): string {
    let at = text.indexOf(this.prefix)
    if (at === -1) return text
    let out = ""
    let copied = 0
    while (at !== -1) {
      if (this.tokenAtString(text, at)) {
        const placeholder = text.slice(at, at + this.length)
        const replacement = replace(placeholder)
        if (replacement !== undefined) {
          out += text.slice(copied, at) + replacement
          copied = at + this.length
          at = text.indexOf(this.prefix, at + this.length)
        } else {
          at = text.indexOf(this.prefix, at + 1)
        }
      } else {
        at = text.indexOf(this.prefix, at + 1)
      }
    }
    return copied === 0 ? text : out + text.slice(copied)
  }

  /**
   * Whether the bytes from `start` to the end are the beginning of a placeholder (so that more
   * bytes could complete one).
   *
   * @since 0.1.0
   */
  couldStartAt(bytes: Uint8Array, start: number): boolean {
    const stop = Math.min(bytes.length, start + this.length)
    const prefixLength = this.prefixBytes.length
    for (let i = start; i < stop; i++) {
      const offset = i - start
      if (offset < prefixLength ? bytes[i] !== this.prefixBytes[offset] : IN_ALPHABET[bytes[i]!] !== 1) return false
    }
    return true
  }

  private tokenAt(bytes: Uint8Array, start: number): boolean {
    const stop = start + this.length
    for (let i = start + this.prefix.length; i < stop; i++) {
      if (IN_ALPHABET[bytes[i]!] !== 1) return false
    }
    return true
  }

  private tokenAtString(text: string, start: number): boolean {
    const stop = start + this.length
    if (stop > text.length) return false
    for (let i = start + this.prefix.length; i < stop; i++) {
      const code = text.charCodeAt(i)
      if (code > 255 || IN_ALPHABET[code] !== 1) return false
    }
    return true
  }
}
