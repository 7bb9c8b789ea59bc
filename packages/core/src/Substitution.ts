/**
 * The substitution engine: pure, streaming find-and-replace over bytes.
 *
 * Egress uses it twice: placeholders → values on the way out, values → placeholders (scrubbing) on
 * the way back. A stream is rewritten chunk by chunk; the last `maxLength - 1` bytes of each chunk
 * are carried over to the next, so a token split across chunks at any offset is still found and
 * nothing but that carry is ever held.
 *
 * @since 0.1.0
 */
import { Buffer } from "node:buffer"
import { Automaton } from "./Automaton.js"
import type { Scanner } from "./Placeholder.js"

/**
 * One match: where it starts, how long it is, and what replaces it (`undefined`: leave as is).
 *
 * @since 0.1.0
 */
export interface Match {
  readonly index: number
  readonly length: number
  readonly replacement: Uint8Array | undefined
}

/**
 * Finds the leftmost match in `bytes[from, end)`. `maxLength` bounds how many bytes decide a match
 * (its length plus any look-ahead), which is what the stream must carry between chunks.
 *
 * @since 0.1.0
 */
export interface Matcher {
  readonly maxLength: number
  find(bytes: Buffer, from: number, end: number, atEnd: boolean): Match | undefined
  /**
   * The first position at or after `from` where a match could still begin once more bytes
   * arrive (`bytes.length` when none can). Lets a stream hold back only a real partial match
   * instead of its last `maxLength - 1` bytes. Optional.
   */
  pendingFrom?(bytes: Buffer, from: number): number
  /**
   * Optional, and preferred by `StreamRewriter` when present: every match of the whole buffer at
   * once (in order, not overlapping, each with a replacement), and from where the bytes must be
   * held back because more bytes could still make or extend a match (`bytes.length` when none;
   * ignored when `atEnd`). A matcher that scans once per buffer this way stays linear however
   * many matches there are. What it returns may be reused by its next call (or `find`): read it
   * before calling again.
   *
   * `resume` is what the scan of the stream's previous chunk returned as its `resume` (`undefined`
   * for a stream's first chunk, and for a whole buffer): a matcher whose reading of a chunk depends
   * on how it read the bytes before (where it held back from) keeps that there. `bytes` then start
   * with what that scan held back.
   *
   * @since 0.2.0
   */
  scan?(bytes: Buffer, atEnd: boolean, resume?: unknown): Scan
}

/**
 * What a whole-buffer `scan` found.
 *
 * @since 0.2.0
 */
export interface Scan {
  readonly matches: ReadonlyArray<Match>
  readonly holdFrom: number
  /** What the scan of the stream's next chunk is to be given back (see `Matcher.scan`). @since 0.2.0 */
  readonly resume?: unknown
}

/**
 * Matches the placeholders a scanner recognises; `decide` says what each one becomes (it may also
 * throw, to refuse the whole request).
 *
 * @since 0.1.0
 */
export const placeholderMatcher = (
  scanner: Scanner,
  decide: (placeholder: string) => Uint8Array | undefined
): Matcher => ({
  maxLength: scanner.length,
  find(bytes, from, end) {
    const index = scanner.indexIn(bytes, from, end)
    if (index === -1) return undefined
    const placeholder = bytes.toString("latin1", index, index + scanner.length)
    return { index, length: scanner.length, replacement: decide(placeholder) }
  },
  pendingFrom(bytes, from) {
    for (let at = from; at < bytes.length; at++) if (scanner.couldStartAt(bytes, at)) return at
    return bytes.length
  }
})

/**
 * Matches literal byte strings (longest first where two start at the same place), each replaced by
 * its paired bytes. One automaton over all of them: the work per byte is bounded by the longest
 * literal, whatever their number.
 *
 * @since 0.1.0
 */
export const literalMatcher = (
  pairs: ReadonlyArray<readonly [from: Uint8Array, to: Uint8Array]>
): Matcher => {
  const kept = pairs.filter(([from]) => from.length > 0)
  const automaton = new Automaton(kept.map(([from]) => from))
  const maxLength = Math.max(1, automaton.longest)
  return {
    maxLength,
    find(bytes, from, end) {
      for (let at = from; at < end; at++) {
        const { pattern } = automaton.longestAt(bytes, at, Math.min(end, at + maxLength))
        if (pattern !== -1) return { index: at, length: automaton.lengthOf(pattern), replacement: kept[pattern]![1] }
      }
      return undefined
    },
    pendingFrom(bytes, from) {
      // a partial match, or a whole one that starts too late to have been taken yet
      for (let at = from; at < bytes.length; at++) {
        const { open, pattern } = automaton.longestAt(bytes, at, bytes.length)
        if (open || pattern !== -1) return at
      }
      return bytes.length
    }
  }
}

/**
 * The leftmost match of any of several matchers (the first given wins a tie). Each matcher's last
 * answer is remembered while the search moves forward through the same buffer, so that a matcher
 * whose next match lies far ahead is not asked again at every match of the others.
 *
 * @since 0.2.0
 */
export const firstOf = (matchers: ReadonlyArray<Matcher>): Matcher => {
  if (matchers.length === 1) return matchers[0]!
  let buffer: Buffer | undefined
  let bufferEnd = -1
  const last: Array<{ from: number; match: Match | undefined } | undefined> = matchers.map(() => undefined)
  const pending = matchers.every((m) => m.pendingFrom !== undefined)
  return {
    maxLength: Math.max(...matchers.map((m) => m.maxLength)),
    find(bytes, from, end, atEnd) {
      if (bytes !== buffer || end !== bufferEnd) {
        buffer = bytes
        bufferEnd = end
        last.fill(undefined)
      }
      let best: Match | undefined
      for (let i = 0; i < matchers.length; i++) {
        const known = last[i]
        // an earlier answer still holds if it was asked from no later and found nothing before `from`
        const reuse = known !== undefined && known.from <= from && (known.match === undefined || known.match.index >= from)
        const found = reuse ? known.match : matchers[i]!.find(bytes, from, end, atEnd)
        if (!reuse) last[i] = { from, match: found }
        if (found !== undefined && (best === undefined || found.index < best.index)) best = found
      }
      return best
    },
    ...(pending
      ? { pendingFrom: (bytes: Buffer, from: number) => Math.min(...matchers.map((m) => m.pendingFrom!(bytes, from))) }
      : {})
  }
}

const EMPTY = Buffer.alloc(0)

const asBuffer = (bytes: Uint8Array): Buffer =>
  Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)

/**
 * Copies `from[start, end)` into `out` at `o`; returns where it ended. Short runs by hand: the
 * native copy costs some 50 ns a call, a byte by hand 3 to 4, and a part of a buffer needs a view
 * made first, which costs as much again (a whole buffer, such as a replacement, does not).
 */
const copyInto = (out: Buffer, o: number, from: Uint8Array, start: number, end: number): number => {
  const whole = start === 0 && end === from.length
  if (end - start > (whole ? 12 : 64)) {
    out.set(whole ? from : from.subarray(start, end), o)
    return o + end - start
  }
  for (let i = start; i < end; i++) out[o++] = from[i]!
  return o
}

/**
 * A copy of what a rewriter holds back, in memory of its own: never Node's shared pool (a small
 * `Buffer.from`), which any other pooled buffer's `buffer` reaches, since the start of a value may
 * be what is held back.
 */
const privately = (bytes: Uint8Array): Buffer => {
  const copy = Buffer.allocUnsafeSlow(bytes.length)
  copy.set(bytes)
  return copy
}

/** The size of a `StreamRewriter`'s slab (see `space`). */
const SLAB = 128 * 1024

/** A carry at least this long makes short chunks wait (see `StreamRewriter.deferred`). */
const DEFER_FROM = 64

const join = (pieces: ReadonlyArray<Buffer>): Buffer =>
  pieces.length === 0 ? EMPTY : pieces.length === 1 ? pieces[0]! : Buffer.concat(pieces)

/**
 * Rewrites a byte stream. Feed chunks to `push`, then call `end`; each returns the bytes that are
 * final so far. Holds at most `maxLength - 1` bytes between calls (with a matcher's `scan`, what it
 * says to hold back; after a long one, also up to a quarter of its length that arrived since).
 *
 * @since 0.1.0
 * @example
 * ```ts
 * import { Substitution } from "@secretgate/core"
 * const rewriter = new Substitution.StreamRewriter(
 *   Substitution.literalMatcher([[Buffer.from("secret"), Buffer.from("******")]])
 * )
 * Buffer.concat([rewriter.push(Buffer.from("a sec")), rewriter.push(Buffer.from("ret!")), rewriter.end()])
 * // "a ******!"
 * ```
 */
export class StreamRewriter {
  private carry: Buffer = EMPTY
  /** How many matches were found so far (replaced or not). @since 0.1.0 */
  matches = 0
  /** Where `push` writes what it joins or rewrites (see `space`), how much of it is taken, and how many it wrote. */
  private slab: Buffer = EMPTY
  private slabUsed = 0
  private spaces = 0
  /** What the matcher's last scan asked to be given back with the next chunk. */
  private resume: unknown = undefined
  /** Bytes that arrived after the carry and wait to be scanned with it (see `deferred`), and how many. */
  private waiting: Buffer = EMPTY
  private waited = 0

  constructor(private readonly matcher: Matcher) {}

  /** Rewrites the next chunk; returns the bytes now final. @since 0.1.0 */
  push(chunk: Uint8Array): Buffer {
    if (this.matcher.scan === undefined) return join(this.write(chunk))
    // a whole-buffer scan: the final bytes written into one buffer, no piece per match
    const input = asBuffer(chunk)
    if (this.carry.length === 0) return this.scannedInto(input, false, false)
    if (this.deferred(input)) return EMPTY
    return this.scannedInto(this.joined(input, this.space(this.carry.length + this.waited + input.length)), false, true)
  }

  /**
   * Whether `input` only joins what waits for the next scan. A carry far longer than what arrives
   * is scanned again only once a quarter of its length has arrived since (or the stream ends): each
   * scan reads the carry again, and chunks of a few bytes after a long carry (a sender can choose
   * them) would otherwise cost its length each. A short carry, the common case, never waits.
   */
  private deferred(input: Buffer): boolean {
    const carry = this.carry.length
    if (carry < DEFER_FROM || this.waited + input.length >= carry / 4) return false
    // (memory of its own: what waits may be part of a value)
    if (this.waiting.length === 0) this.waiting = Buffer.allocUnsafeSlow(Math.ceil(carry / 4))
    this.waiting.set(input, this.waited)
    this.waited += input.length
    return true
  }

  /** The carry, what waits and `input`, written into `out` (which fits them); nothing waits any more. */
  private joined(input: Buffer, out: Buffer): Buffer {
    out.set(this.carry, 0)
    if (this.waited > 0) out.set(this.waiting.subarray(0, this.waited), this.carry.length)
    out.set(input, this.carry.length + this.waited)
    this.waiting = EMPTY
    this.waited = 0
    return out
  }

  /**
   * Space for `size` bytes that `push` hands on. The first is its own allocation, of that size (a
   * rewriter's first chunk may be its only one: a message, a small body); later ones are cut from
   * a slab of this rewriter's own, up to four chunks long: a fresh allocation per chunk costs more
   * than the copy. Large ones get their own. What is handed on is a view, whose `buffer` reaches
   * the whole slab: so every byte of it that is not handed on (a value in a joint, bytes held back)
   * is wiped before `push` returns.
   */
  private space(size: number): Buffer {
    if (this.spaces++ === 0 || size > SLAB / 2) return Buffer.allocUnsafeSlow(size)
    if (this.slabUsed + size > this.slab.length) {
      // zeroed: uninitialised memory may hold what freed buffers held
      this.slab = Buffer.alloc(Math.min(SLAB, 4 * size))
      this.slabUsed = 0
    }
    const out = this.slab.subarray(this.slabUsed, this.slabUsed + size)
    this.slabUsed += size
    return out
  }

  /**
   * Like `push`, but returns the final bytes as the pieces they are made of: no copy of the chunk
   * is ever made to join them. Feed them on one after the other, and do not write into them: a
   * piece may be a view of the chunk, or a replacement the matcher hands out again.
   *
   * @since 0.1.0
   */
  write(chunk: Uint8Array): Array<Buffer> {
    const input = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength)
    const carry = this.carry
    if (this.matcher.scan !== undefined) {
      if (carry.length === 0) return this.scanned(input, false)
      return this.deferred(input) ? [] : this.scanned(this.joined(input, Buffer.allocUnsafeSlow(carry.length + this.waited + input.length)), false)
    }
    const lookahead = this.matcher.maxLength - 1
    if (carry.length === 0) return this.run(input, false)
    if (input.length <= lookahead) return this.run(Buffer.concat([carry, input]), false)
    // Only matches that start in the carry need the carry and the chunk side by side, and the
    // chunk's first `lookahead` bytes decide them all: join just that much, not the whole chunk.
    const joint = Buffer.concat([carry, input.subarray(0, lookahead)])
    const pieces: Array<Buffer> = []
    const { emitted } = this.replaceIn(joint, carry.length, false, pieces)
    if (emitted < carry.length) pieces.push(joint.subarray(emitted, carry.length))
    // every start in the carry is decided: go on in the chunk itself, where nothing was consumed
    for (const piece of this.run(input.subarray(Math.max(0, emitted - carry.length)), false)) pieces.push(piece)
    return pieces
  }

  /** Flushes what was carried; the stream is over. @since 0.1.0 */
  end(): Buffer {
    const bytes = this.waited === 0 ? this.carry : this.joined(EMPTY, Buffer.allocUnsafeSlow(this.carry.length + this.waited))
    this.carry = EMPTY
    if (bytes.length === 0) return EMPTY
    return this.matcher.scan !== undefined ? this.scannedInto(bytes, true, false) : join(this.run(bytes, true))
  }

  /**
   * `scanned`, its pieces written into one buffer (the chunk itself when nothing is replaced);
   * `own`: `bytes` were cut from the slab, and what of them is not handed on is wiped.
   */
  private scannedInto(bytes: Buffer, atEnd: boolean, own: boolean): Buffer {
    const { matches, holdFrom, resume } = this.scan(bytes, atEnd, own)
    this.resume = resume
    const keepFrom = atEnd ? bytes.length : holdFrom
    let size = 0
    let emitted = 0
    let count = 0
    for (let k = 0; k < matches.length; k++) {
      const match = matches[k]!
      if (match.index >= keepFrom) break
      size += match.index - emitted + (match.replacement === undefined ? match.length : match.replacement.length)
      emitted = match.index + match.length
      count++
    }
    const holdAt = Math.max(emitted, keepFrom)
    this.carry = holdAt < bytes.length ? privately(bytes.subarray(holdAt)) : EMPTY
    this.matches += count
    if (count === 0) {
      if (own) bytes.fill(0, holdAt)
      return holdAt === bytes.length ? bytes : bytes.subarray(0, holdAt)
    }
    const out = this.space(size + holdAt - emitted)
    let o = 0
    emitted = 0
    for (let k = 0; k < count; k++) {
      const match = matches[k]!
      o = copyInto(out, o, bytes, emitted, match.index)
      o = match.replacement === undefined ? copyInto(out, o, bytes, match.index, match.index + match.length) : copyInto(out, o, match.replacement, 0, match.replacement.length)
      emitted = match.index + match.length
    }
    copyInto(out, o, bytes, emitted, holdAt)
    if (own) bytes.fill(0)
    return out
  }

  /**
   * The matcher's scan. A matcher may refuse to go on (throw): then what was held back is dropped,
   * and a joint in the slab is wiped first, since chunks handed on are views of that memory.
   */
  private scan(bytes: Buffer, atEnd: boolean, own: boolean): Scan {
    try {
      return this.matcher.scan!(bytes, atEnd, this.resume)
    } catch (error) {
      if (own) bytes.fill(0)
      this.carry = EMPTY
      throw error
    }
  }

  /** A whole-buffer scan: the matches replaced, the bytes from `holdFrom` on carried. */
  private scanned(bytes: Buffer, atEnd: boolean): Array<Buffer> {
    const { matches, holdFrom, resume } = this.scan(bytes, atEnd, false)
    this.resume = resume
    const keepFrom = atEnd ? bytes.length : holdFrom
    const pieces: Array<Buffer> = []
    let emitted = 0
    for (const match of matches) {
      if (match.index >= keepFrom) break
      this.matches++
      if (match.index > emitted) pieces.push(bytes.subarray(emitted, match.index))
      if (match.replacement !== undefined) pieces.push(asBuffer(match.replacement))
      else pieces.push(bytes.subarray(match.index, match.index + match.length))
      emitted = match.index + match.length
    }
    const holdAt = Math.max(emitted, keepFrom)
    if (holdAt > emitted) pieces.push(emitted === 0 && holdAt === bytes.length ? bytes : bytes.subarray(emitted, holdAt))
    this.carry = holdAt < bytes.length ? privately(bytes.subarray(holdAt)) : EMPTY
    return pieces
  }

  /**
   * Appends to `pieces` the bytes of `bytes` up to each match starting before `until`, and the
   * match's replacement; returns how far bytes were emitted and where the search stopped.
   */
  private replaceIn(bytes: Buffer, until: number, atEnd: boolean, pieces: Array<Buffer>): { emitted: number; searchFrom: number } {
    let emitted = 0
    let searchFrom = 0
    while (searchFrom < until) {
      const match = this.matcher.find(bytes, searchFrom, bytes.length, atEnd)
      if (match === undefined || match.index >= until) break
      this.matches++
      if (match.replacement !== undefined) {
        if (match.index > emitted) pieces.push(bytes.subarray(emitted, match.index))
        pieces.push(asBuffer(match.replacement))
        emitted = match.index + match.length
      }
      // A match left in place may overlap a real one starting inside it (a custom prefix of
      // token characters glued before a placeholder): look again from the next byte.
      searchFrom = match.replacement === undefined ? match.index + 1 : match.index + match.length
    }
    return { emitted, searchFrom }
  }

  private run(bytes: Buffer, atEnd: boolean): Array<Buffer> {
    // A match may only start where enough bytes follow to decide it; later starts wait for more.
    const decidable = atEnd ? bytes.length : bytes.length - (this.matcher.maxLength - 1)
    const pieces: Array<Buffer> = []
    const { emitted, searchFrom } = this.replaceIn(bytes, decidable, atEnd, pieces)
    const tail = Math.max(emitted, decidable, searchFrom)
    // of the undecided tail, hold back only from where a match could really begin
    const keepFrom = atEnd || this.matcher.pendingFrom === undefined ? tail : this.matcher.pendingFrom(bytes, tail)
    // (the common case, a chunk with nothing to replace or hold back, passes as it is)
    if (keepFrom > emitted) pieces.push(emitted === 0 && keepFrom === bytes.length ? bytes : bytes.subarray(emitted, keepFrom))
    // Copy the carry so it never pins the caller's (possibly large) chunk.
    this.carry = keepFrom < bytes.length ? privately(bytes.subarray(keepFrom)) : EMPTY
    return pieces
  }
}

/**
 * Rewrites a whole buffer at once.
 *
 * @since 0.1.0
 */
export const rewriteBytes = (matcher: Matcher, bytes: Uint8Array): Buffer => {
  const rewriter = new StreamRewriter(matcher)
  const head = rewriter.push(bytes)
  const tail = rewriter.end()
  return tail.length === 0 ? head : Buffer.concat([head, tail])
}
