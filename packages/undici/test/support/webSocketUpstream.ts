/**
 * A WebSocket upstream over HTTPS (test CA) that writes its frames byte by byte as scripted, so the
 * tests control fragmentation, interleaved control frames, TCP boundaries and protocol errors.
 *
 * After the handshake it sends, as the path says:
 * - `/ws/echo`: `you sent <authorization>` (one frame), then every text message back;
 * - `/ws/fragments?size=N`: `{"token":"<authorization>"}` in fragments of N payload bytes, with a
 *   ping holding the authorization between the first two, each frame written a few bytes at a time;
 * - `/ws/mixed`: in one write, 50 messages with the authorization in the 26th and a ping among them;
 * - `/ws/ping-long`, `/ws/close-long`: control frames that, scrubbed, would exceed 125 bytes;
 * - `/ws/close`: a close frame whose reason is the authorization;
 * - `/ws/big`: a 200 KiB binary message with the authorization in the middle (64-bit length);
 * - `/ws/bad?kind=rsv|masked|opcode|continuation`: one frame that breaks the protocol, then the
 *   authorization in a text frame;
 * - `/ws/deflate`: accepts permessage-deflate though the client may not have offered it.
 *
 * A CONNECT request is recorded among the handshakes (path `CONNECT <target>`) and answered 200.
 */
import { createHash } from "node:crypto"
import * as https from "node:https"
import type { AddressInfo, Socket } from "node:net"
import { tls } from "./upstream.js"

export interface WebSocketUpstream {
  readonly port: number
  /** The handshakes received: path and request headers. */
  readonly handshakes: Array<{ readonly path: string; readonly headers: Record<string, string | Array<string> | undefined> }>
  /** Text messages received from clients (unmasked). */
  readonly messages: Array<string>
  url(host: string, path: string): string
  close(): Promise<void>
}

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

/** A server frame (unmasked). */
export const frame = (fin: boolean, opcode: number, payload: Buffer, rsv = 0, mask = false): Buffer => {
  const first = (fin ? 0x80 : 0) | rsv | opcode
  const length = payload.length
  const head = length < 126
    ? Buffer.from([first, (mask ? 0x80 : 0) | length])
    : length < 0x10000
    ? Buffer.from([first, (mask ? 0x80 : 0) | 126, length >> 8, length & 0xff])
    : Buffer.concat([Buffer.from([first, (mask ? 0x80 : 0) | 127, 0, 0, 0, 0]), Buffer.from([length >>> 24, (length >> 16) & 0xff, (length >> 8) & 0xff, length & 0xff])])
  return Buffer.concat([head, mask ? Buffer.from([0, 0, 0, 0]) : Buffer.alloc(0), payload])
}

/** Writes bytes a few at a time, a turn of the event loop apart. */
const trickle = async (socket: Socket, bytes: Buffer, step: number) => {
  for (let at = 0; at < bytes.length; at += step) {
    socket.write(bytes.subarray(at, at + step))
    await new Promise((resolve) => setImmediate(resolve))
  }
}

/** Text messages from the client's (masked) frames, reassembled from fragments; a close is answered. */
const readClientFrames = (socket: Socket, onText: (text: string) => void) => {
  let buffered = Buffer.alloc(0)
  let message: Array<Buffer> = []
  socket.on("data", (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk])
    for (;;) {
      if (buffered.length < 2) return
      const fin = (buffered[0]! & 0x80) !== 0
      const opcode = buffered[0]! & 0x0f
      let length = buffered[1]! & 0x7f
      let at = 2
      if (length === 126) {
        if (buffered.length < 4) return
        length = buffered.readUInt16BE(2)
        at = 4
      } else if (length === 127) {
        if (buffered.length < 10) return
        length = Number(buffered.readBigUInt64BE(2))
        at = 10
      }
      if (buffered.length < at + 4 + length) return
      const mask = buffered.subarray(at, at + 4)
      const payload = Buffer.from(buffered.subarray(at + 4, at + 4 + length))
      for (let i = 0; i < payload.length; i++) payload[i] = payload[i]! ^ mask[i % 4]!
      buffered = buffered.subarray(at + 4 + length)
      if (opcode === 0x8) {
        socket.end(frame(true, 0x8, payload.subarray(0, 2)))
        continue
      }
      if (opcode === 0x1 || opcode === 0x0) message.push(payload)
      if (fin && (opcode === 0x1 || opcode === 0x0)) {
        onText(Buffer.concat(message).toString("utf8"))
        message = []
      }
    }
  })
}

export const startWebSocketUpstream = async (): Promise<WebSocketUpstream> => {
  const handshakes: Array<{ path: string; headers: Record<string, string | Array<string> | undefined> }> = []
  const messages: Array<string> = []
  const server = https.createServer({ key: tls("server.key"), cert: tls("server.pem") }, (_req, res) => {
    res.writeHead(426).end()
  })
  server.on("connect", (req, socket: Socket) => {
    handshakes.push({ path: `CONNECT ${req.url ?? ""}`, headers: req.headers })
    socket.end("HTTP/1.1 200 Connection Established\r\n\r\n")
  })
  server.on("upgrade", (req, socket: Socket) => {
    const url = new URL(req.url ?? "/", "https://x")
    handshakes.push({ path: url.pathname, headers: req.headers })
    const accept = createHash("sha1").update(`${String(req.headers["sec-websocket-key"])}${GUID}`).digest("base64")
    const extension = url.pathname === "/ws/deflate" ? "Sec-WebSocket-Extensions: permessage-deflate\r\n" : ""
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n${extension}\r\n`)
    const auth = String(req.headers.authorization ?? "")
    readClientFrames(socket, (text) => {
      messages.push(text)
      if (url.pathname === "/ws/echo") socket.write(frame(true, 0x1, Buffer.from(text)))
    })
    socket.on("error", () => {})
    void (async () => {
      switch (url.pathname) {
        case "/ws/echo":
          socket.write(frame(true, 0x1, Buffer.from(`you sent ${auth}`)))
          return
        case "/ws/fragments": {
          const size = Number(url.searchParams.get("size") ?? 3)
          const payload = Buffer.from(JSON.stringify({ token: auth }))
          const frames: Array<Buffer> = []
          for (let at = 0; at < payload.length; at += size) {
            frames.push(frame(at + size >= payload.length, at === 0 ? 0x1 : 0x0, payload.subarray(at, at + size)))
            if (at === 0) frames.push(frame(true, 0x9, Buffer.from(auth)))
          }
          await trickle(socket, Buffer.concat(frames), 5)
          return
        }
        case "/ws/mixed": {
          // in one write: 50 messages, the 26th holding the authorization, and a ping after the 10th
          const frames = Array.from({ length: 50 }, (_, i) => frame(true, 0x1, Buffer.from(i === 25 ? `token ${auth}` : `message ${i}`)))
          frames.splice(10, 0, frame(true, 0x9, Buffer.from("are you there")))
          socket.write(Buffer.concat(frames))
          return
        }
        case "/ws/ping-long": {
          // 118 bytes; with the placeholder (longer than the value) more than a control frame holds
          socket.write(frame(true, 0x9, Buffer.from(`${"x".repeat(98)}${auth.replace(/^Bearer /, "")}`)))
          return
        }
        case "/ws/close-long": {
          // 4000, the value, then 2-byte characters: the cut after scrubbing falls inside one
          const payload = Buffer.concat([Buffer.from([0x0f, 0xa0]), Buffer.from(`${auth.replace(/^Bearer /, "")}${"é".repeat(50)}`)])
          socket.write(frame(true, 0x8, payload))
          return
        }
        case "/ws/close": {
          const payload = Buffer.concat([Buffer.from([0x0f, 0xa0]), Buffer.from(auth)]) // 4000
          socket.write(frame(true, 0x8, payload))
          return
        }
        case "/ws/big": {
          const half = Buffer.alloc(100 * 1024, "x")
          socket.write(frame(true, 0x2, Buffer.concat([half, Buffer.from(auth), half])))
          return
        }
        case "/ws/bad": {
          const kind = url.searchParams.get("kind")
          const bad = kind === "rsv"
            ? frame(true, 0x1, Buffer.from("compressed?"), 0x40)
            : kind === "masked"
            ? frame(true, 0x1, Buffer.from("masked"), 0, true)
            : kind === "opcode"
            ? frame(true, 0x3, Buffer.from("what"))
            : frame(true, 0x0, Buffer.from("orphan"))
          socket.write(Buffer.concat([bad, frame(true, 0x1, Buffer.from(`you sent ${auth}`))]))
          return
        }
        case "/ws/deflate":
          socket.write(frame(true, 0x1, Buffer.from(`you sent ${auth}`)))
          return
      }
    })()
  })
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve))
  const port = (server.address() as AddressInfo).port
  return {
    port,
    handshakes,
    messages,
    url: (host, path) => `wss://${host}:${port}${path}`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections()
        server.close(() => resolve())
      })
  }
}
