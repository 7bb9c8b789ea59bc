/**
 * How a value is written into each request surface, and every form in which an echoing upstream
 * could send it back (which scrubbing must catch).
 */
import { Buffer } from "node:buffer"

/** A value as it goes into a URL path or query: percent-encoded, like `encodeURIComponent`. */
export const forUrl = (value: string): string => encodeURIComponent(value)

/** A value as it goes into a body of this content type. */
export const bodyEncoder = (contentType: string | undefined): ((value: string) => string) => {
  const type = contentType?.split(";")[0]?.trim().toLowerCase() ?? ""
  if (type === "application/json" || type.endsWith("+json")) return forJson
  if (type === "application/x-www-form-urlencoded") return forForm
  return (value) => value
}

/** Inside a JSON string literal. */
const forJson = (value: string): string => JSON.stringify(value).slice(1, -1)

/** As `URLSearchParams` writes a form field. */
const forForm = (value: string): string => new URLSearchParams([["", value]]).toString().slice(1)

const ECHO_ENCODINGS: ReadonlyArray<(value: string) => string> = [
  (value) => forJson(value),
  (value) => asciiJson(value),
  (value) => forJson(value).replaceAll("/", "\\/"),
  forUrl,
  forForm,
  (value) => forHtml(value, "&#39;"),
  (value) => forHtml(value, "&#x27;")
]

/** As an HTML page reflects text (e.g. in an error page). */
const forHtml = (value: string, apostrophe: string): string =>
  value.replaceAll("&", "&amp;").replaceAll("<", "&lt;").replaceAll(">", "&gt;").replaceAll('"', "&quot;").replaceAll("'", apostrophe)

/**
 * The ways an echo may write a string: as it is, and each of JSON string escaping (plain, ASCII-only
 * `\uXXXX`, `\/`), percent-encoding, form-encoding and HTML escaping applied once or twice (an echo of a JSON body
 * inside a JSON response escapes the value twice).
 */
export const ECHO_TRANSFORMS: ReadonlyArray<(value: string) => string> = [
  (value) => value,
  ...ECHO_ENCODINGS,
  ...ECHO_ENCODINGS.flatMap((outer) => ECHO_ENCODINGS.map((inner) => (value: string) => outer(inner(value))))
]

/** Every distinct echo form of a value. */
export const echoForms = (value: string): ReadonlyArray<string> =>
  [...new Set(ECHO_TRANSFORMS.map((transform) => transform(value)))].filter((form) => form.length > 0)

const asciiJson = (value: string): string =>
  forJson(value).replace(/[\u007f-\uffff]/g, (char) => `\\u${char.charCodeAt(0).toString(16).padStart(4, "0")}`)

/**
 * Whether a value may be written into a header value: no control characters (CR, LF and NUL would
 * split or truncate the request) and nothing outside Latin-1.
 */
export const headerSafe = (value: string): boolean => {
  for (let i = 0; i < value.length; i++) {
    const code = value.charCodeAt(i)
    if ((code < 0x20 && code !== 0x09) || code === 0x7f || code > 0xff) return false
  }
  return true
}

const BASIC = /^(\s*basic\s+)([A-Za-z0-9+/=_-]+)(\s*)$/i

/**
 * Splits an `Authorization: Basic` value into its prefix and decoded `user:password`, or
 * `undefined` when the header is not Basic.
 */
export const decodeBasic = (header: string): { readonly scheme: string; readonly credentials: string; readonly tail: string } | undefined => {
  const match = BASIC.exec(header)
  if (match === null) return undefined
  return { scheme: match[1]!, credentials: Buffer.from(match[2]!, "base64").toString("utf8"), tail: match[3]! }
}

/** Re-encodes Basic credentials. */
export const encodeBasic = (scheme: string, credentials: string, tail: string): string =>
  `${scheme}${Buffer.from(credentials, "utf8").toString("base64")}${tail}`
