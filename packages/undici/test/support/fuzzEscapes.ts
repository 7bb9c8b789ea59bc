/**
 * Escape syntaxes for the egress fuzzer, written independently of the scrubber:
 *
 * - escapers: how servers in various languages write a string into JSON, a URL or HTML; a fuzzed
 *   upstream echoes what it received through one or two of them;
 * - decoders: the inverse syntaxes (JSON string escapes, percent-encoding with or without `+` for
 *   space, HTML character references), tolerant of every spelling. The oracle says a value reached
 *   the sandbox when decoding what it saw, up to two layers deep, yields the value.
 *
 * `CURRENT_ESCAPERS` are the forms the scrubber has claimed since 0.1 (JavaScript's own encoders);
 * `SYNTAX_ESCAPERS` the other languages' spellings of the same syntaxes.
 */
import { Buffer } from "node:buffer"

/** How one server writes a string into one syntax. */
export interface Escaper {
  readonly name: string
  readonly escape: (text: string) => string
}

const hex2 = (byte: number, upper = true) => {
  const digits = byte.toString(16).padStart(2, "0")
  return upper ? digits.toUpperCase() : digits
}
const hex4 = (code: number, upper: boolean) => {
  const digits = code.toString(16).padStart(4, "0")
  return upper ? digits.toUpperCase() : digits
}

/** Percent-encodes every UTF-8 byte of the characters `keep` does not keep. */
const percent = (text: string, keep: (char: string) => boolean, upper: boolean, space?: string): string => {
  let out = ""
  for (const char of text) {
    if (space !== undefined && char === " ") out += space
    else if (keep(char)) out += char
    else for (const byte of Buffer.from(char, "utf8")) out += `%${hex2(byte, upper)}`
  }
  return out
}

/** A JSON string body (no quotes) where `escapeChar` picks characters to write as `\uXXXX`. */
const json = (text: string, escapeChar: (code: number) => boolean, upper: boolean, slash = false): string => {
  let out = ""
  for (let i = 0; i < text.length; i++) {
    const code = text.charCodeAt(i)
    const char = text[i]!
    if (char === "\"") out += escapeChar(code) ? `\\u${hex4(code, upper)}` : "\\\""
    else if (char === "\\") out += "\\\\"
    else if (char === "/" && slash) out += "\\/"
    else if (code === 0x0a) out += "\\n"
    else if (code === 0x0d) out += "\\r"
    else if (code === 0x09) out += "\\t"
    else if (code === 0x08) out += "\\b"
    else if (code === 0x0c) out += "\\f"
    else if (code < 0x20 || escapeChar(code)) out += `\\u${hex4(code, upper)}`
    else out += char
  }
  return out
}

const html = (text: string, table: Readonly<Record<string, string>>): string => {
  let out = ""
  for (const char of text) out += table[char] ?? char
  return out
}

const UNRESERVED = /^[A-Za-z0-9_.~-]$/

/** The encoders the scrubber has always claimed (JavaScript's own, and one HTML escaper, with two apostrophes). */
export const CURRENT_ESCAPERS: ReadonlyArray<Escaper> = [
  { name: "JSON.stringify", escape: (text) => JSON.stringify(text).slice(1, -1) },
  { name: "JSON ascii", escape: (text) => JSON.stringify(text).slice(1, -1).replace(/[\u007f-\uffff]/g, (c) => `\\u${hex4(c.charCodeAt(0), false)}`) },
  { name: "JSON \\/", escape: (text) => JSON.stringify(text).slice(1, -1).replaceAll("/", "\\/") },
  { name: "encodeURIComponent", escape: encodeURIComponent },
  { name: "URLSearchParams", escape: (text) => new URLSearchParams([["", text]]).toString().slice(1) },
  { name: "HTML &#39;", escape: (text) => html(text, { "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;" }) },
  { name: "HTML &#x27;", escape: (text) => html(text, { "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#x27;" }) }
]

/** Other languages' spellings of the same three syntaxes. */
export const SYNTAX_ESCAPERS: ReadonlyArray<Escaper> = [
  // Go's encoding/json: <, >, & as \u003c \u003e \u0026; U+2028/2029 too
  { name: "Go JSON", escape: (text) => json(text, (c) => c === 0x3c || c === 0x3e || c === 0x26 || c === 0x2028 || c === 0x2029, false) },
  // .NET's System.Text.Json default encoder: HTML-sensitive characters and everything non-ASCII, upper-case hex
  { name: ".NET JSON", escape: (text) => json(text, (c) => c === 0x22 || c === 0x27 || c === 0x2b || c === 0x26 || c === 0x3c || c === 0x3e || c === 0x60 || c > 0x7e, true) },
  // PHP json_encode: \/ and non-ASCII as \u lower-case
  { name: "PHP JSON", escape: (text) => json(text, (c) => c > 0x7e, false, true) },
  // a JSON writer escaping every non-alphanumeric character, upper-case hex
  { name: "JSON all \\u", escape: (text) => json(text, (c) => !/[A-Za-z0-9]/.test(String.fromCharCode(c)), true) },
  // Python's urllib.parse.quote(s, safe="") and quote_plus
  { name: "Python quote", escape: (text) => percent(text, (c) => UNRESERVED.test(c), true) },
  { name: "Python quote_plus", escape: (text) => percent(text, (c) => UNRESERVED.test(c), true, "+") },
  { name: "lower-case percent", escape: (text) => percent(text, (c) => UNRESERVED.test(c), false) },
  { name: "every byte percent", escape: (text) => percent(text, () => false, true) },
  // PHP htmlspecialchars(ENT_QUOTES), Go's html.EscapeString, XML's &apos;
  { name: "PHP HTML", escape: (text) => html(text, { "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#039;" }) },
  { name: "Go HTML", escape: (text) => html(text, { "&": "&amp;", "'": "&#39;", "<": "&lt;", ">": "&gt;", "\"": "&#34;" }) },
  { name: "XML &apos;", escape: (text) => html(text, { "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&apos;" }) },
  { name: "HTML \" only", escape: (text) => html(text, { "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;" }) },
  {
    name: "HTML numeric, hex with zeros",
    escape: (text) => {
      let out = ""
      for (const char of text) out += /[A-Za-z0-9]/.test(char) ? char : `&#x${char.codePointAt(0)!.toString(16).padStart(6, "0")};`
      return out
    }
  },
  {
    name: "HTML numeric without ;",
    escape: (text) => {
      const chars = [...text]
      let out = ""
      chars.forEach((char, i) => {
        if (/[A-Za-z0-9]/.test(char)) out += char
        else out += `&#${char.codePointAt(0)!}${/^[A-Za-z0-9;]$/.test(chars[i + 1] ?? "") || i + 1 === chars.length ? ";" : ""}`
      })
      return out
    }
  }
]

// ---------------------------------------------------------------------------------------------
// decoders (the oracle)

/** JSON string escapes, any hex case, in any text. */
const decodeJson = (text: string): string =>
  text.replace(/\\(u[0-9a-fA-F]{4}|["\\/bfnrt])/g, (_, escape: string) => {
    switch (escape[0]) {
      case "u":
        return String.fromCharCode(parseInt(escape.slice(1), 16))
      case "b":
        return "\b"
      case "f":
        return "\f"
      case "n":
        return "\n"
      case "r":
        return "\r"
      case "t":
        return "\t"
      default:
        return escape
    }
  })

/** Percent-escapes (any case) as UTF-8 bytes, run by run; with `plus`, `+` is a space. */
const decodePercent = (text: string, plus: boolean): string => {
  const spaced = plus && text.includes("+") ? text.replaceAll("+", " ") : text
  if (!spaced.includes("%")) return spaced
  return spaced.replace(/(?:%[0-9a-fA-F]{2})+/g, (run) => {
    const bytes = Buffer.alloc(run.length / 3)
    for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(run.slice(i * 3 + 1, i * 3 + 3), 16)
    return bytes.toString("utf8")
  })
}

const NAMED: Readonly<Record<string, string>> = { amp: "&", lt: "<", gt: ">", quot: "\"", apos: "'", nbsp: "\u00a0" }

/** HTML character references: decimal or hex (any zeros, `;` optional), and the common names. */
const decodeHtml = (text: string): string =>
  !text.includes("&") ? text : text.replace(/&(#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[a-zA-Z]+;)/g, (whole, body: string) => {
    if (body[0] === "#") {
      const digits = body.replace(";", "")
      const code = digits[1] === "x" || digits[1] === "X" ? parseInt(digits.slice(2), 16) : parseInt(digits.slice(1), 10)
      return code <= 0x10ffff ? String.fromCodePoint(code) : whole
    }
    return NAMED[body.slice(0, -1)] ?? whole
  })

const DECODERS: ReadonlyArray<readonly [name: string, decode: (text: string) => string]> = [
  ["JSON", decodeJson],
  ["percent", (text) => decodePercent(text, false)],
  ["form", (text) => decodePercent(text, true)],
  ["HTML", decodeHtml]
]

/** Every way to decode: as is, one layer, two layers. */
const CHAINS: ReadonlyArray<readonly [name: string, decode: (text: string) => string]> = [
  ["raw", (text) => text],
  ...DECODERS,
  ...DECODERS.flatMap(([outerName, outer]) => DECODERS.map(([innerName, inner]) => [`${innerName} of ${outerName}`, (text: string) => inner(outer(text))] as const))
]

/** The value, and its UTF-8 bytes read as Latin-1 (how a UTF-8 echo looks in a Latin-1 header). */
const spellings = (value: string): ReadonlyArray<string> => {
  const latin1 = Buffer.from(value, "utf8").toString("latin1")
  return latin1 === value ? [value] : [value, latin1]
}

/**
 * Which of `values` can be recovered from `seen` (text, or bytes read as UTF-8 and as Latin-1) by
 * at most two layers of JSON, percent/form or HTML decoding: `[index, chain, excerpt]` triples.
 */
export const recoverAll = (seen: string | Uint8Array, values: ReadonlyArray<string>): Array<readonly [index: number, how: string, excerpt: string]> => {
  const views = typeof seen === "string" ? [seen] : [Buffer.from(seen).toString("utf8"), Buffer.from(seen).toString("latin1")]
  const forms = values.map(spellings)
  const found: Array<readonly [number, string, string]> = []
  const left = new Set(values.keys())
  for (const view of views) {
    for (const [name, decode] of CHAINS) {
      if (left.size === 0) return found
      const decoded = decode(view)
      for (const index of left) {
        const form = forms[index]!.find((form) => decoded.includes(form))
        if (form !== undefined) {
          // where it was, in what was seen (decoded), for the report
          const at = decoded.indexOf(form)
          found.push([index, name, JSON.stringify(decoded.slice(Math.max(0, at - 60), at + form.length + 60))])
          left.delete(index)
        }
      }
    }
  }
  return found
}
