import { HttpApp, type HttpServerRequest, HttpServerResponse } from "@effect/platform"
import * as NodeHttpServerRequest from "@effect/platform-node/NodeHttpServerRequest"
import { InvalidSecretInput, UnreadBody } from "@secretgate/core"
import { Effect } from "effect"
import { Buffer } from "node:buffer"
import { PayloadTooLarge } from "../SecretApi.js"

const utf8 = new TextDecoder("utf-8", { fatal: true })

const tooLarge = (limit: number) =>
  new PayloadTooLarge({ message: `the request body is larger than the limit of ${limit} bytes`, limit })

// The rest of an oversized body is not worth reading: the connection closes after the answer.
const closeAfterResponse = HttpApp.appendPreResponseHandler((_, response) =>
  Effect.succeed(HttpServerResponse.setHeader(response, "connection", "close"))
)

// A field name is echoed in the error only when it looks like one (a short identifier), so that
// a value pasted in the wrong place is not sent back.
const ECHOABLE_FIELD = /^[A-Za-z_$][A-Za-z0-9_$]{0,31}$/

/**
 * Fails with `InvalidSecretInput` naming the first field of `input` (a JSON object) that is not
 * one of `known`. Anything that is not an object passes: the body's decoder answers it.
 */
export const refuseUnknownFields = (input: unknown, known: ReadonlyArray<string>): Effect.Effect<unknown, InvalidSecretInput> => {
  if (typeof input !== "object" || input === null || Array.isArray(input)) return Effect.succeed(input)
  for (const field of Object.keys(input)) {
    if (known.includes(field)) continue
    const expected = `this route takes ${known.map((name) => `\`${name}\``).join(", ")}`
    return Effect.fail(
      ECHOABLE_FIELD.test(field)
        ? InvalidSecretInput.of(field, `is not a field of this request; ${expected}`)
        : InvalidSecretInput.of("body", `has a field that is not one of this request; ${expected}`)
    )
  }
  return Effect.succeed(input)
}

// How much of an oversized body is still read, and dropped, before the 413 goes out (see
// `UnreadBody`): a body that ends within it past the limit is read to its end, so that the close is
// clean and the client reads the 413; a longer one is cut off.
const { DRAIN_BYTES } = UnreadBody

/**
 * Reads a JSON request body of at most `limit` bytes. The platform's own reader destroys the
 * connection when a body is too large; this one answers 413 (after reading up to `UnreadBody.DRAIN_BYTES`
 * more) and closes the connection after the answer. A parse error never quotes the
 * body (it may hold a value). With `knownFields`, a JSON object holding any other field is refused
 * (400 naming it), so that a misspelt or unsupported field is never silently ignored.
 */
export const readJson = (
  request: HttpServerRequest.HttpServerRequest,
  limit: number,
  knownFields?: ReadonlyArray<string>
): Effect.Effect<unknown, InvalidSecretInput | PayloadTooLarge> =>
  Effect.async<string, InvalidSecretInput | PayloadTooLarge>((resume) => {
    const source = NodeHttpServerRequest.toIncomingMessage(request)
    const declared = Number(source.headers["content-length"])
    if (Number.isFinite(declared) && declared > limit + DRAIN_BYTES) return resume(Effect.fail(tooLarge(limit)))
    const chunks: Array<Buffer> = []
    let size = 0
    const cleanup = () => {
      source.off("data", onData)
      source.off("end", onEnd)
      source.off("error", onError)
    }
    const onData = (chunk: Buffer) => {
      size += chunk.length
      if (size <= limit) return void chunks.push(chunk)
      // over the limit: what was kept goes, and the rest is only counted
      chunks.length = 0
      if (size > limit + DRAIN_BYTES) {
        cleanup()
        source.pause()
        resume(Effect.fail(tooLarge(limit)))
      }
    }
    const onEnd = () => {
      cleanup()
      if (size > limit) return resume(Effect.fail(tooLarge(limit)))
      // Invalid UTF-8 is refused, not replaced with U+FFFD: a value must be stored exactly as sent.
      let text: string
      try {
        text = utf8.decode(Buffer.concat(chunks))
      } catch {
        return resume(Effect.fail(InvalidSecretInput.of("body", "must be valid UTF-8")))
      }
      resume(Effect.succeed(text))
    }
    const onError = () => {
      cleanup()
      resume(Effect.fail(InvalidSecretInput.of("body", "could not be read")))
    }
    source.on("data", onData)
    source.once("end", onEnd)
    source.once("error", onError)
    return Effect.sync(cleanup)
  }).pipe(
    Effect.tapErrorTag("PayloadTooLarge", () => closeAfterResponse),
    Effect.flatMap((text) =>
      Effect.try({
        try: () => (text.trim() === "" ? undefined : JSON.parse(text) as unknown),
        catch: () => InvalidSecretInput.of("body", "must be valid JSON")
      })
    ),
    Effect.flatMap((input) => knownFields === undefined ? Effect.succeed(input) : refuseUnknownFields(input, knownFields))
  )
