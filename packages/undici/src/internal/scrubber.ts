/**
 * What scrubbing looks for: every echo form of each value a destination may receive (raw,
 * JSON-escaped, URL- and form-encoded, HTML-escaped; as UTF-8 and as Latin-1 bytes) and of
 * re-encoded Basic credentials, each with what replaces it. Used by the response handlers
 * (`ScrubHandler.ts`) and the WebSocket frames (`WebSocketScrub.ts`).
 */
import { type Secrets, Substitution } from "@secretgate/core"
import { Redacted } from "effect"
import { Buffer } from "node:buffer"
import { ECHO_TRANSFORMS, echoForms } from "./encoding.js"

/** How to scrub one response. */
export interface Scrubber {
  /** Byte patterns → their replacements, longest first. */
  readonly patterns: ReadonlyArray<readonly [from: Buffer, to: Buffer]>
  /** Length of the shortest pattern: shorter bytes cannot hold any. */
  readonly shortest: number
  readonly matcher: Substitution.Matcher
  /** Patterns as lower-case Latin-1 text, for header names (undici lower-cases them). */
  readonly lowerPatterns: ReadonlyArray<readonly [from: string, to: string]>
}

export const isLatin1 = (text: string): boolean => {
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) > 0xff) return false
  return true
}

/**
 * The scrubber for these secrets: every echo form of each value → its placeholder, and every echo
 * form of re-encoded Basic credentials → the same form of the caller's original ones.
 */
export const makeScrubber = (
  secrets: ReadonlyArray<Secrets.ResolvedSecret>,
  basicEchoes: ReadonlyArray<readonly [sent: string, original: string]>
): Scrubber => {
  const strings = new Map<string, string>()
  for (const [sent, original] of basicEchoes) {
    const token = (header: string) => header.trim().split(/\s+/)[1] ?? ""
    for (const [from, to] of [[sent, original], [token(sent), token(original)]] as const) {
      for (const transform of ECHO_TRANSFORMS) {
        const form = transform(from)
        if (form.length > 0 && !strings.has(form)) strings.set(form, transform(to))
      }
    }
  }
  for (const secret of secrets) {
    for (const form of echoForms(Redacted.value(secret.value))) if (!strings.has(form)) strings.set(form, secret.placeholder)
  }
  // Bytes: UTF-8 always; Latin-1 too, since header values travel as Latin-1 and Node echoes either.
  const bytes = new Map<string, readonly [Buffer, Buffer]>()
  for (const [from, to] of strings) {
    const utf8 = Buffer.from(from, "utf8")
    bytes.set(utf8.toString("latin1"), [utf8, Buffer.from(to, "utf8")])
    if (isLatin1(from) && isLatin1(to)) {
      const latin1 = Buffer.from(from, "latin1")
      if (!bytes.has(from)) bytes.set(from, [latin1, Buffer.from(to, "latin1")])
    }
  }
  const patterns = [...bytes.values()].sort((a, b) => b[0].length - a[0].length)
  return {
    patterns,
    shortest: patterns.reduce((min, [from]) => Math.min(min, from.length), Infinity),
    matcher: Substitution.literalMatcher(patterns),
    lowerPatterns: patterns.map(([from, to]) => [from.toString("latin1").toLowerCase(), to.toString("latin1").toLowerCase()] as const)
  }
}

/**
 * Nothing to scrub: for a WebSocket connection to a host no mounted secret is allowed for, whose
 * outgoing messages are still checked for placeholders (audit, `block`).
 */
export const NOTHING_TO_SCRUB: Scrubber = makeScrubber([], [])

/** Whether the bytes hold any pattern. */
export const holds = (scrubber: Scrubber, bytes: Buffer): boolean => {
  if (bytes.length < scrubber.shortest) return false
  for (const [from] of scrubber.patterns) if (bytes.includes(from)) return true
  return false
}
