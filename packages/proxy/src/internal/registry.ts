/**
 * Sandbox tokens. A client names its sandbox with the token in the proxy URL's userinfo
 * (`http://sg:<token>@host:port`), which curl, Python, Go, git and undici send as
 * `Proxy-Authorization: Basic base64(sg:<token>)`. Tokens are kept as SHA-256 digests, looked up by
 * digest and compared in constant time, so neither the lookup nor the comparison tells a client
 * how close a guess came.
 */
import { Buffer } from "node:buffer"
import { createHash, randomBytes, timingSafeEqual } from "node:crypto"
import type { Sandbox } from "./sandbox.js"

/** The user name in proxy URLs; any name is accepted, the password is the token. */
export const USER = "sg"

const digestOf = (token: string): Buffer => createHash("sha256").update(token, "utf8").digest()

export class Registry {
  private readonly byDigest = new Map<string, { readonly digest: Buffer; readonly sandbox: Sandbox }>()
  private readonly tokens = new WeakMap<Sandbox, string>()

  get size(): number {
    return this.byDigest.size
  }

  /** Registers a sandbox; returns its new token (256 random bits, URL-safe). */
  add(sandbox: Sandbox): string {
    const token = randomBytes(32).toString("base64url")
    const digest = digestOf(token)
    this.byDigest.set(digest.toString("hex"), { digest, sandbox })
    this.tokens.set(sandbox, digest.toString("hex"))
    return token
  }

  remove(sandbox: Sandbox): boolean {
    const key = this.tokens.get(sandbox)
    if (key === undefined) return false
    this.tokens.delete(sandbox)
    return this.byDigest.delete(key)
  }

  sandboxes(): Array<Sandbox> {
    return [...this.byDigest.values()].map((entry) => entry.sandbox)
  }

  /** The sandbox a `Proxy-Authorization` header names, or `undefined`. */
  authenticate(header: string | ReadonlyArray<string> | undefined): Sandbox | undefined {
    if (typeof header !== "string") return undefined
    // canonical base64 only: a decoder that skips stray characters must not make two headers one
    const match = /^basic[ \t]+((?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?)[ \t]*$/i.exec(header)
    if (match === null || match[1] === "") return undefined
    const credentials = Buffer.from(match[1]!, "base64").toString("utf8")
    const colon = credentials.indexOf(":")
    const token = colon === -1 ? credentials : credentials.slice(colon + 1)
    if (token.length === 0 || token.length > 256) return undefined
    const presented = digestOf(token)
    const entry = this.byDigest.get(presented.toString("hex"))
    // the map found a digest equal to this one; the comparison still runs in constant time
    return entry !== undefined && timingSafeEqual(entry.digest, presented) ? entry.sandbox : undefined
  }
}
