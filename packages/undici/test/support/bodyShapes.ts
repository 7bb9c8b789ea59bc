/**
 * Request bodies in every shape undici's `request` and `stream` accept (enumerated from undici
 * 7.30's `core/request.js` and `dispatcher/client-h1.js`), each made from a text: for the body
 * tests and the egress fuzzer.
 */
import { Buffer } from "node:buffer"
import { Readable, Stream } from "node:stream"
import { FormData as UndiciFormData } from "undici"

/** A body shape: how to make it from text, and what plain undici does with it through `request`. */
export interface Shape {
  readonly name: string
  readonly make: (text: string) => unknown
  /** Whether plain undici sends it (`false`: it fails; secretgate sends what `fetch` would). */
  readonly plainSends: boolean
  /** Whether its bytes are all known before it is sent (checked whole, under `block`). */
  readonly known: boolean
  /** Whether `fetch` takes it as a body too. */
  readonly fetch?: boolean
}

const bytesOf = (text: string) => Buffer.from(text, "utf8")

/** An `ArrayBuffer` holding exactly the text's bytes (`even`: and a space if they are odd). */
export const arrayBufferOf = (text: string, even = false): ArrayBuffer => {
  const bytes = bytesOf(even && bytesOf(text).length % 2 === 1 ? `${text} ` : text)
  const buffer = new ArrayBuffer(bytes.length)
  new Uint8Array(buffer).set(bytes)
  return buffer
}

/** A legacy stream (`pipe`/`on`, no async iterator) that emits its chunks once someone listens. */
const legacyStream = (chunks: ReadonlyArray<string>): Stream => {
  const legacy = new Stream() as Stream & { readable: boolean }
  legacy.readable = true
  let started = false
  legacy.on("newListener", (event: string) => {
    if (event !== "data" || started) return
    started = true
    setImmediate(() => {
      for (const chunk of chunks) legacy.emit("data", Buffer.from(chunk))
      legacy.emit("end")
      legacy.emit("close")
    })
  })
  return legacy
}

const halves = (text: string): [string, string] => [text.slice(0, 11), text.slice(11)]

export const SHAPES: ReadonlyArray<Shape> = [
  { name: "string", make: (text) => text, plainSends: true, known: true, fetch: true },
  { name: "Buffer", make: bytesOf, plainSends: true, known: true, fetch: true },
  { name: "Uint8Array", make: (text) => new Uint8Array(bytesOf(text)), plainSends: true, known: true, fetch: true },
  { name: "Uint16Array", make: (text) => new Uint16Array(arrayBufferOf(text, true)), plainSends: true, known: true },
  { name: "DataView", make: (text) => new DataView(arrayBufferOf(text)), plainSends: true, known: true, fetch: true },
  { name: "ArrayBuffer", make: arrayBufferOf, plainSends: true, known: true, fetch: true },
  { name: "Readable", make: (text) => Readable.from(halves(text).map(bytesOf)), plainSends: true, known: false },
  { name: "legacy stream (pipe/on, no async iterator)", make: (text) => legacyStream(halves(text)), plainSends: true, known: false },
  { name: "Blob", make: (text) => new Blob([text]), plainSends: true, known: true, fetch: true },
  { name: "File", make: (text) => new File([text], "upload.txt"), plainSends: true, known: true, fetch: true },
  {
    name: "Blob-like with only arrayBuffer()",
    make: (text) => ({ [Symbol.toStringTag]: "Blob", size: bytesOf(text).length, type: "", arrayBuffer: () => Promise.resolve(arrayBufferOf(text)) }),
    plainSends: true,
    known: true
  },
  {
    name: "Blob-like with only stream()",
    make: (text) => ({ [Symbol.toStringTag]: "Blob", size: bytesOf(text).length, type: "", stream: () => Readable.from(halves(text).map(bytesOf)) }),
    plainSends: true,
    known: true
  },
  {
    name: "undici FormData",
    make: (text) => {
      const form = new UndiciFormData()
      form.append("field", text)
      form.append("file", new File([text], "f.txt", { type: "text/plain" }))
      return form
    },
    plainSends: true,
    known: true, fetch: true
  },
  {
    name: "Node's global FormData",
    make: (text) => {
      const form = new FormData()
      form.append("field", text)
      form.append("file", new Blob([text], { type: "text/plain" }), "f.txt")
      return form
    },
    plainSends: false,
    known: true
  },
  { name: "URLSearchParams", make: (text) => new URLSearchParams({ field: text }), plainSends: false, known: true, fetch: true },
  {
    name: "async generator",
    make: (text) => (async function*() {
      for (const part of halves(text)) yield bytesOf(part)
    })(),
    plainSends: true,
    known: false, fetch: true
  },
  {
    name: "sync generator of strings",
    make: (text) => (function*() {
      yield* halves(text)
    })(),
    plainSends: true,
    known: false
  },
  { name: "array of a string and bytes", make: (text) => [halves(text)[0], bytesOf(halves(text)[1])], plainSends: true, known: false },
  { name: "array of promises", make: (text) => halves(text).map((part) => Promise.resolve(bytesOf(part))), plainSends: true, known: false },
  {
    name: "web ReadableStream",
    make: (text) => new ReadableStream({
      start(controller) {
        for (const part of halves(text)) controller.enqueue(bytesOf(part))
        controller.close()
      }
    }),
    plainSends: true,
    known: false, fetch: true
  },
  {
    name: "function with an async iterator",
    make: (text) => Object.assign(() => undefined, {
      async *[Symbol.asyncIterator]() {
        yield* halves(text).map(bytesOf)
      }
    }),
    plainSends: true,
    known: false
  }
]

