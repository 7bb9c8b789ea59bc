/**
 * The escape syntaxes scrubbing sees through, as lenient streaming decoders with a position map,
 * and as encoders that write every variant of each syntax (for tests and the fuzzer).
 *
 * What the scrubber claims to recognise (`docs/security.md`, guarantee 2): a value, as UTF-8 or
 * Latin-1 bytes, written under at most `MAX_DEPTH` nested layers of these syntaxes, where within
 * each layer every character may independently be written literally or escaped:
 * - `json`: JSON string escapes: `\uXXXX` in either hex case (UTF-16, surrogate pairs for
 *   characters beyond the BMP) and the short escapes `\" \\ \/ \b \f \n \r \t` (and `\'`);
 * - `percent`: `%XX` in either hex case for any byte of the UTF-8 (or Latin-1) form, and `+` for
 *   a space (a `+` in the text also matches a `+` of the value);
 * - `html`: character references: decimal `&#N;` or hex `&#xN;`/`&#XN;` with up to
 *   `MAX_REFERENCE_DIGITS` digits (leading zeros included), the `;` optional, and the named
 *   references of `NAMED_REFERENCES` (with `;`; those HTML also reads without it, without).
 * Not recognised: changed case, base64 or any other encoding, a value split across fields, a
 * numeric reference longer than `MAX_REFERENCE_DIGITS` digits, or more than `MAX_DEPTH` layers.
 *
 * Each decoder is the identity except at its introducer byte (`\`, `%` or `+`, `&`), which is found
 * with a native `indexOf`: a stretch without one costs a copy.
 */
import { Buffer } from "node:buffer"

/** An escape syntax. */
export type Syntax = "json" | "percent" | "html"

/** Every syntax, in the order stacks of them are tried. */
export const SYNTAXES: ReadonlyArray<Syntax> = ["json", "percent", "html"]

/** How many layers deep a value is recognised (a JSON body echoed inside a JSON response is two). */
export const MAX_DEPTH = 2

/** The most digits (leading zeros included) a numeric character reference may have. */
export const MAX_REFERENCE_DIGITS = 8

/** The most bytes one escape of any syntax spans (`\\uD83D\\uDE00`, `&#x0001F600;`). */
export const LONGEST_ESCAPE = 12

/** The most bytes one escape writes per byte it stands for, per syntax (`&#x00000026;` is 12). */
export const MAX_EXPANSION: Readonly<Record<Syntax, number>> = { json: 6, percent: 3, html: 12 }

/** HTML 4's names for U+00A0..U+00FF, in order; HTML reads these (and amp, lt, gt, quot) without `;` too. */
const LATIN1_NAMES = (
  "nbsp iexcl cent pound curren yen brvbar sect uml copy ordf laquo not shy reg macr deg plusmn sup2 sup3 acute " +
  "micro para middot cedil sup1 ordm raquo frac14 frac12 frac34 iquest Agrave Aacute Acirc Atilde Auml Aring AElig " +
  "Ccedil Egrave Eacute Ecirc Euml Igrave Iacute Icirc Iuml ETH Ntilde Ograve Oacute Ocirc Otilde Ouml times Oslash " +
  "Ugrave Uacute Ucirc Uuml Yacute THORN szlig agrave aacute acirc atilde auml aring aelig ccedil egrave eacute ecirc " +
  "euml igrave iacute icirc iuml eth ntilde ograve oacute ocirc otilde ouml divide oslash ugrave uacute ucirc uuml " +
  "yacute thorn yuml"
).split(" ")

/**
 * The named character references recognised: those that can stand for ASCII punctuation, the
 * Latin-1 letters and signs of HTML 4 (which HTML also reads without `;`), and a few common ones.
 */
export const NAMED_REFERENCES: ReadonlyMap<string, string> = (() => {
  const names = new Map<string, string>([
    ["Tab", "\t"], ["NewLine", "\n"], ["excl", "!"], ["quot", '"'], ["QUOT", '"'], ["num", "#"], ["dollar", "$"],
    ["percnt", "%"], ["amp", "&"], ["AMP", "&"], ["apos", "'"], ["lpar", "("], ["rpar", ")"], ["ast", "*"],
    ["midast", "*"], ["plus", "+"], ["comma", ","], ["period", "."], ["sol", "/"], ["colon", ":"], ["semi", ";"],
    ["lt", "<"], ["LT", "<"], ["equals", "="], ["gt", ">"], ["GT", ">"], ["quest", "?"], ["commat", "@"],
    ["lsqb", "["], ["lbrack", "["], ["bsol", "\\"], ["rsqb", "]"], ["rbrack", "]"], ["Hat", "^"], ["lowbar", "_"],
    ["UnderBar", "_"], ["grave", "`"], ["lcub", "{"], ["lbrace", "{"], ["verbar", "|"], ["vert", "|"], ["rcub", "}"],
    ["rbrace", "}"], ["hyphen", "\u2010"], ["dash", "\u2010"], ["ndash", "\u2013"], ["mdash", "\u2014"],
    ["lsquo", "\u2018"], ["rsquo", "\u2019"], ["ldquo", "\u201c"], ["rdquo", "\u201d"], ["bull", "\u2022"],
    ["hellip", "\u2026"], ["euro", "\u20ac"], ["trade", "\u2122"]
  ])
  LATIN1_NAMES.forEach((name, i) => names.set(name, String.fromCharCode(0xa0 + i)))
  return names
})()

const LEGACY = new Set(["amp", "AMP", "lt", "LT", "gt", "GT", "quot", "QUOT", ...LATIN1_NAMES])
const LONGEST_NAME = 8

/**
 * The names' trie, flat: node 1 is the root (0: no node), `NEXT[node * 64 + SYMBOL[byte]]` its child
 * along a letter or digit, `TEXT[node]` what the name so far stands for (with `;`), `LEGACY[node]`
 * whether HTML also reads it without `;`.
 */
const SYMBOL = new Uint8Array(256).fill(0xff)
for (const [i, c] of [..."0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"].entries()) SYMBOL[c.charCodeAt(0)] = i
const TEXT: Array<Buffer | undefined> = [undefined, undefined]
const LEGACY_NODE: Array<boolean> = [false, false]
const NEXT = (() => {
  let next = new Uint16Array(64 * 512)
  for (const [name, text] of NAMED_REFERENCES) {
    let node = 1
    for (let i = 0; i < name.length; i++) {
      const at = node * 64 + SYMBOL[name.charCodeAt(i)]!
      if (next[at] === 0) {
        next[at] = TEXT.length
        TEXT.push(undefined)
        LEGACY_NODE.push(false)
        if (TEXT.length * 64 > next.length) {
          const grown = new Uint16Array(next.length * 2)
          grown.set(next)
          next = grown
        }
      }
      node = next[at]!
    }
    TEXT[node] = Buffer.from(text, "utf8")
    LEGACY_NODE[node] = LEGACY.has(name)
  }
  return next.slice(0, TEXT.length * 64)
})()

/** The names' trie, for readers of their own (`readings.ts`): the root, a node's child along a byte (0: none). */
export const NAME_ROOT = 1
export const nameChild = (node: number, byte: number): number => {
  const symbol = SYMBOL[byte]!
  return symbol === 0xff ? 0 : NEXT[node * 64 + symbol]!
}
/** What the name at `node` stands for (with `;`), if it is a name. */
export const nameText = (node: number): Buffer | undefined => TEXT[node]
/** Whether HTML also reads the name at `node` without `;`. */
export const nameIsLegacy = (node: number): boolean => LEGACY_NODE[node] === true
/** The names' trie as flat tables, for the compiled clean check (`clean.ts`): `NEXT` is indexed by `node * 64 + SYMBOL[byte]`. */
export const NAMES = { SYMBOL, NEXT, nodes: TEXT.length, LONGEST_NAME } as const

/**
 * A decoded stream and where each of its escapes came from. Output bytes outside an escape map
 * one to one onto input bytes.
 */
export interface Decoded {
  readonly bytes: Buffer
  /** Input index of output byte 0. */
  readonly base: number
  /** Per escape: where its output starts, how many bytes it wrote, where it was in the input and how long. */
  readonly outAt: Array<number>
  readonly outLength: Array<number>
  readonly inAt: Array<number>
  readonly inLength: Array<number>
  /**
   * Input index of an escape cut off by the end of the input (more input could complete it), or
   * -1. The decoded stream then ends where that escape begins.
   */
  readonly cut: number
}

/** The byte that may start an escape of the syntax (besides `+` for percent). */
export const INTRODUCER: Readonly<Record<Syntax, number>> = { json: 0x5c, percent: 0x25, html: 0x26 }

/** Whether `bytes[start, end)` holds an introducer of the syntax (`plus`: `+` counts for percent). */
export const hasIntroducer = (syntax: Syntax, bytes: Buffer, start: number, end: number, plus: boolean): boolean => {
  const at = bytes.indexOf(INTRODUCER[syntax], start)
  if (at !== -1 && at < end) return true
  if (syntax !== "percent" || !plus) return false
  const p = bytes.indexOf(0x2b, start)
  return p !== -1 && p < end
}

/** Index of the last escape whose output starts at or before `d`, or -1. */
const lastEscapeAt = (decoded: Decoded, d: number): number => {
  const outAt = decoded.outAt
  let low = 0
  let high = outAt.length - 1
  let found = -1
  while (low <= high) {
    const mid = (low + high) >>> 1
    if (outAt[mid]! <= d) {
      found = mid
      low = mid + 1
    } else high = mid - 1
  }
  return found
}

/** Input index where output byte `d` comes from (the start of its escape); `d` may be the output's length. */
export const startOf = (decoded: Decoded, d: number): number => {
  const k = lastEscapeAt(decoded, d)
  if (k === -1) return decoded.base + d
  const after = decoded.outAt[k]! + decoded.outLength[k]!
  return d < after ? decoded.inAt[k]! : decoded.inAt[k]! + decoded.inLength[k]! + (d - after)
}

/** Input index just past where output byte `d - 1` comes from. */
export const endOf = (decoded: Decoded, d: number): number => {
  if (d === 0) return decoded.base
  const k = lastEscapeAt(decoded, d - 1)
  if (k === -1) return decoded.base + d
  const after = decoded.outAt[k]! + decoded.outLength[k]!
  return d - 1 < after ? decoded.inAt[k]! + decoded.inLength[k]! : decoded.inAt[k]! + decoded.inLength[k]! + (d - after)
}

/** A code point as UTF-8 into `out` at `o`; returns how many bytes, or 0 when it is not a character. */
export const putUtf8 = (out: Buffer, o: number, cp: number): number => {
  if (cp < 0 || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0
  if (cp < 0x80) {
    out[o] = cp
    return 1
  }
  if (cp < 0x800) {
    out[o] = 0xc0 | (cp >> 6)
    out[o + 1] = 0x80 | (cp & 63)
    return 2
  }
  if (cp < 0x10000) {
    out[o] = 0xe0 | (cp >> 12)
    out[o + 1] = 0x80 | ((cp >> 6) & 63)
    out[o + 2] = 0x80 | (cp & 63)
    return 3
  }
  out[o] = 0xf0 | (cp >> 18)
  out[o + 1] = 0x80 | ((cp >> 12) & 63)
  out[o + 2] = 0x80 | ((cp >> 6) & 63)
  out[o + 3] = 0x80 | (cp & 63)
  return 4
}

/** The value of a hex digit (either case), or -1. */
export const hexValue = (byte: number): number =>
  byte >= 0x30 && byte <= 0x39 ? byte - 0x30 : byte >= 0x61 && byte <= 0x66 ? byte - 0x57 : byte >= 0x41 && byte <= 0x46 ? byte - 0x37 : -1

const hex = (bytes: Buffer, at: number, digits: number): number => {
  let value = 0
  for (let i = at; i < at + digits; i++) {
    const h = hexValue(bytes[i]!)
    if (h === -1) return -1
    value = value * 16 + h
  }
  return value
}

/** The decimal number written by the digits `bytes[at, end)`. */
const decimal = (bytes: Buffer, at: number, end: number): number => {
  let value = 0
  for (let i = at; i < end; i++) value = value * 10 + (bytes[i]! - 0x30)
  return value
}

/** Whether `bytes[at, end)` are all hex digits (a cut-off escape that more bytes could complete). */
const hexPrefix = (bytes: Buffer, at: number, end: number): boolean => {
  for (let i = at; i < end; i++) if (hexValue(bytes[i]!) === -1) return false
  return true
}

/** Per byte after a backslash: the byte its JSON short escape stands for, or -1. */
export const SHORT_ESCAPES = new Int16Array(256).fill(-1)
for (const [char, byte] of [['"', 0x22], ["\\", 0x5c], ["/", 0x2f], ["b", 8], ["f", 12], ["n", 10], ["r", 13], ["t", 9], ["'", 0x27]] as const) {
  SHORT_ESCAPES[char.charCodeAt(0)] = byte
}

const isDigit = (byte: number, hexadecimal: boolean): boolean => (hexadecimal ? hexValue(byte) !== -1 : byte >= 0x30 && byte <= 0x39)

/**
 * Reused output space, one per layer: a decoded stream lives only while its chunk is scanned, and
 * scanning is synchronous. Streams larger than `SCRATCH_LIMIT` get space of their own.
 */
const scratch: Array<Buffer> = [Buffer.allocUnsafeSlow(64 * 1024), Buffer.allocUnsafeSlow(64 * 1024)]
const SCRATCH_LIMIT = 1024 * 1024

const space = (layer: number, size: number): Buffer => {
  if (size > SCRATCH_LIMIT) return Buffer.allocUnsafe(size)
  if (scratch[layer]!.length < size) scratch[layer] = Buffer.allocUnsafeSlow(Math.max(size, scratch[layer]!.length * 2))
  return scratch[layer]!
}

/** One decoding in progress: literal stretches copied, escapes recorded. */
class Output implements Decoded {
  readonly bytes: Buffer
  readonly outAt: Array<number> = []
  readonly outLength: Array<number> = []
  readonly inAt: Array<number> = []
  readonly inLength: Array<number> = []
  cut = -1
  length = 0
  constructor(private readonly input: Buffer, readonly base: number, end: number, layer: number) {
    this.bytes = space(layer, end - base)
  }
  literal(from: number, to: number): void {
    const count = to - from
    if (count <= 0) return
    const { bytes, input } = this
    let o = this.length
    // short stretches (between escapes) are copied here: a native copy costs more to call
    if (count <= 48) for (let i = from; i < to; i++) bytes[o++] = input[i]!
    else {
      bytes.set(input.subarray(from, to), o)
      o += count
    }
    this.length = o
  }
  escape(inAt: number, inLength: number, written: number): void {
    this.outAt.push(this.length)
    this.outLength.push(written)
    this.inAt.push(inAt)
    this.inLength.push(inLength)
    this.length += written
  }
  done(): Decoded {
    return { bytes: this.bytes.subarray(0, this.length), base: this.base, outAt: this.outAt, outLength: this.outLength, inAt: this.inAt, inLength: this.inLength, cut: this.cut }
  }
}

/** What `escapeAt` answers for an introducer that stands for itself. */
export const LITERAL = 0
/** What `escapeAt` answers for an escape cut off by the end of the input (more input could complete it). */
export const CUT = -1
/** How many bytes the last escape `escapeAt` recognised wrote (one object, reused: no allocation per escape). */
export const PARSED = { written: 0 }

/**
 * The escape of `syntax` whose introducer is `input[i]`, as every decoding reads it: how many input
 * bytes it spans (its decoded bytes written to `into` at `o`, their count in `PARSED.written`), or
 * `LITERAL` (the introducer stands for itself, and reading goes on at the next byte), or `CUT`
 * (the input ends inside what may be an escape and `atEnd` is false). `into` has room for 4 bytes.
 */
export const escapeAt = (syntax: Syntax, input: Buffer, i: number, end: number, atEnd: boolean, into: Buffer, o: number): number =>
  syntax === "json" ? jsonEscape(input, i, end, atEnd, into, o) : syntax === "percent" ? percentEscape(input, i, end, atEnd, into, o) : reference(input, i, end, atEnd, into, o)

const written = (count: number, length: number): number => {
  PARSED.written = count
  return count === 0 ? LITERAL : length
}

/** A JSON string escape: `\uXXXX` (a surrogate pair as one), or a short escape. */
const jsonEscape = (input: Buffer, i: number, end: number, atEnd: boolean, into: Buffer, o: number): number => {
  if (i + 1 >= end) return atEnd ? LITERAL : CUT
  const c = input[i + 1]!
  const short = SHORT_ESCAPES[c]!
  if (short !== -1) {
    into[o] = short
    return written(1, 2)
  }
  if (c !== 0x75) return LITERAL
  const available = Math.min(end, i + 6)
  if (available < i + 6) return !atEnd && hexPrefix(input, i + 2, available) ? CUT : LITERAL
  const unit = hex(input, i + 2, 4)
  if (unit >= 0xd800 && unit <= 0xdbff) {
    // a high surrogate: a character only with the low one after it
    const low = i + 12 <= end && input[i + 6] === 0x5c && input[i + 7] === 0x75 ? hex(input, i + 8, 4) : -1
    if (low >= 0xdc00 && low <= 0xdfff) return written(putUtf8(into, o, 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00)), 12)
    return i + 12 > end && !atEnd ? CUT : LITERAL
  }
  return unit === -1 ? LITERAL : written(putUtf8(into, o, unit), 6)
}

/** A percent escape `%XX`, or a `+` (recorded as an escape: it may stand for a space). */
const percentEscape = (input: Buffer, i: number, end: number, atEnd: boolean, into: Buffer, o: number): number => {
  if (input[i] === 0x2b) {
    into[o] = 0x2b
    return written(1, 1)
  }
  const byte = i + 3 <= end ? hex(input, i + 1, 2) : -1
  if (byte !== -1) {
    into[o] = byte
    return written(1, 3)
  }
  return i + 3 > end && !atEnd && hexPrefix(input, i + 1, end) ? CUT : LITERAL
}

/** An HTML character reference at `input[i]` (an `&`). */
const reference = (input: Buffer, i: number, end: number, atEnd: boolean, into: Buffer, o: number): number => {
  if (i + 1 >= end) return atEnd ? LITERAL : CUT
  if (input[i + 1] === 0x23) {
    let j = i + 2
    const hexadecimal = j < end && (input[j]! | 0x20) === 0x78
    if (hexadecimal) j++
    const digitsFrom = j
    while (j < end && j - digitsFrom <= MAX_REFERENCE_DIGITS && isDigit(input[j]!, hexadecimal)) j++
    const digits = j - digitsFrom
    if (j >= end && !atEnd && digits <= MAX_REFERENCE_DIGITS) return CUT
    if (digits === 0 || digits > MAX_REFERENCE_DIGITS) return LITERAL
    const cp = hexadecimal ? hex(input, digitsFrom, digits) : decimal(input, digitsFrom, j)
    return written(putUtf8(into, o, cp), j - i + (input[j] === 0x3b ? 1 : 0))
  }
  let j = i + 1
  // walk the names' trie along the run of letters and digits, keeping the longest legacy name
  let node = 1
  let legacy = 0
  let legacyEnd = 0
  while (j < end && j - i - 1 < LONGEST_NAME) {
    const symbol = SYMBOL[input[j]!]!
    if (symbol === 0xff) break
    if (node !== 0) node = NEXT[node * 64 + symbol]!
    j++
    if (node !== 0 && LEGACY_NODE[node] === true) {
      legacy = node
      legacyEnd = j
    }
  }
  if (j === i + 1) return LITERAL
  if (j < end && input[j] === 0x3b && node !== 0 && TEXT[node] !== undefined) return named(TEXT[node]!, j - i + 1, into, o)
  if (j >= end && !atEnd) return CUT
  // without `;`: the longest legacy name the run starts with, as HTML reads it
  return legacy === 0 ? LITERAL : named(TEXT[legacy]!, legacyEnd - i, into, o)
}

const named = (text: Buffer, length: number, into: Buffer, o: number): number => {
  for (let k = 0; k < text.length; k++) into[o + k] = text[k]!
  return written(text.length, length)
}

/**
 * Where the next introducer of `syntax` is at or after `from` (`plus`: a `+` counts for percent),
 * or -1. `cursor` keeps, for percent, where the next `%` and `+` are, so that each is searched once.
 */
export const nextIntroducer = (syntax: Syntax, input: Buffer, from: number, plus: boolean, cursor: { percent: number; plus: number }): number => {
  if (syntax !== "percent") return input.indexOf(INTRODUCER[syntax], from)
  if (cursor.percent !== -1 && cursor.percent < from) cursor.percent = input.indexOf(0x25, from)
  if (plus && cursor.plus !== -1 && cursor.plus < from) cursor.plus = input.indexOf(0x2b, from)
  const { percent, plus: p } = cursor
  return !plus || p === -1 ? percent : percent === -1 ? p : Math.min(percent, p)
}

/** One layer of `syntax` over `input[start, end)`. */
const decodeLayer = (syntax: Syntax, input: Buffer, start: number, end: number, atEnd: boolean, plus: boolean, layer: number): Decoded => {
  const out = new Output(input, start, end, layer)
  // -2: not searched yet; -1: none left
  const cursor = { percent: -2, plus: -2 }
  let pos = start
  for (let i = nextIntroducer(syntax, input, pos, plus, cursor); i !== -1 && i < end; i = nextIntroducer(syntax, input, pos, plus, cursor)) {
    out.literal(pos, i)
    const length = escapeAt(syntax, input, i, end, atEnd, out.bytes, out.length)
    if (length === CUT) {
      // cut off by the end: the stream ends before it (more input decides it)
      out.cut = i
      return out.done()
    }
    if (length === LITERAL) {
      out.bytes[out.length++] = input[i]!
      pos = i + 1
    } else {
      out.escape(i, length, PARSED.written)
      pos = i + length
    }
  }
  out.literal(pos, end)
  return out.done()
}

/**
 * Decodes one layer of `syntax` in `input[start, end)`. `atEnd`: no more input follows (otherwise
 * an escape cut off by `end` is reported in `cut`); `plus`: record `+` as a percent escape. `layer`
 * (0 or 1, below `MAX_DEPTH`): the decoded bytes are valid until the next decoding of that layer.
 */
export const decode = (syntax: Syntax, input: Buffer, start: number, end: number, atEnd: boolean, plus: boolean, layer = 0): Decoded =>
  decodeLayer(syntax, input, start, end, atEnd, plus, layer)

// --- the encoding side: every variant the decoders accept, for replacements, tests and the fuzzer

/** One canonical writer per syntax (what a replacement under that syntax is written as). */
export const CANONICAL: Readonly<Record<Syntax, (text: string) => string>> = {
  json: (text) => JSON.stringify(text).slice(1, -1),
  percent: (text) => encodeURIComponent(text),
  html: (text) => text.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;").replaceAll("'", "&#39;")
}

/**
 * Picks one of `n` choices (0..n-1). Tests drive it from a random source, so that one function
 * writes any of the forms the decoders accept.
 */
export type Pick = (n: number) => number

const NAMES_OF = new Map<string, Array<string>>()
for (const [name, text] of NAMED_REFERENCES) NAMES_OF.set(text, [...(NAMES_OF.get(text) ?? []), name])

const hexOf = (n: number, upper: boolean, pad: number) => {
  const digits = n.toString(16).padStart(pad, "0")
  return upper ? digits.toUpperCase() : digits
}

/**
 * Writes `text` in one layer of `syntax`, each character chosen by `pick`: literally (where the
 * syntax lets it stand; `"` and `\` never do in JSON, nor `%` in percent-encoding, nor `&` and `<`
 * in HTML) or as any of the escapes the decoder accepts.
 */
export const encodeWith = (syntax: Syntax, text: string, pick: Pick): string => {
  let out = ""
  for (const char of text) {
    const cp = char.codePointAt(0)!
    if (syntax === "json") {
      const mustEscape = char === '"' || char === "\\" || cp < 0x20
      const short = ({ '"': '\\"', "\\": "\\\\", "/": "\\/", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "'": "\\'" } as Record<string, string>)[char]
      const choice = pick(mustEscape ? 2 : 3)
      if (choice === 2) out += char
      else if (choice === 1 && short !== undefined) out += short
      else {
        const upper = pick(2) === 1
        out += cp > 0xffff
          ? `\\u${hexOf(0xd800 + ((cp - 0x10000) >> 10), upper, 4)}\\u${hexOf(0xdc00 + ((cp - 0x10000) & 0x3ff), upper, 4)}`
          : `\\u${hexOf(cp, upper, 4)}`
      }
    } else if (syntax === "percent") {
      const choice = pick(char === "%" ? 2 : 3)
      if (choice === 2) out += char
      else if (choice === 1 && char === " ") out += "+"
      else {
        const upper = pick(2) === 1
        for (const byte of Buffer.from(char, "utf8")) out += `%${hexOf(byte, upper, 2)}`
      }
    } else {
      const mustEscape = char === "&" || char === "<"
      const names = NAMES_OF.get(char) ?? []
      const choice = pick(mustEscape ? 3 : 4)
      if (choice === 3) out += char
      else if (choice === 2 && names.length > 0) out += `&${names[pick(names.length)]!};`
      else {
        const hexadecimal = pick(2) === 1
        const digits = hexadecimal ? hexOf(cp, pick(2) === 1, 0) : String(cp)
        const padded = digits.padStart(Math.min(MAX_REFERENCE_DIGITS, digits.length + pick(3)), "0")
        // (always with `;`: whether one may be left out depends on the next character)
        out += `&#${hexadecimal ? (pick(2) === 1 ? "X" : "x") : ""}${padded};`
      }
    }
  }
  return out
}

/** `text` under layers of syntaxes (the first is applied first, the innermost), variants chosen by `pick`. */
export const encodeLayers = (text: string, layers: ReadonlyArray<Syntax>, pick: Pick): string =>
  layers.reduce((inner, syntax) => encodeWith(syntax, inner, pick), text)
