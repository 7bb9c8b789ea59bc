/**
 * Leaf certificates per host, kept with their `SecureContext` (what `SNICallback` hands to TLS), so
 * that a host's certificate is minted once and a connection to a known host costs a map lookup.
 * Bounded (least recently used goes first) and renewed well before a certificate expires.
 */
import * as tls from "node:tls"
import type { CertificateAuthority } from "../CertificateAuthority.js"

/** A context older than this is minted afresh (leaves live a year). */
const RENEW_AFTER = 30 * 24 * 60 * 60 * 1000

interface Entry {
  readonly context: tls.SecureContext
  readonly mintedAt: number
}

export class LeafCache {
  private readonly entries = new Map<string, Entry>()

  constructor(private readonly authority: CertificateAuthority, private readonly capacity: number) {}

  /**
   * Mints one throwaway leaf, so that the first host a sandbox connects to does not also pay for
   * warming up the code that mints (a few ms once per process).
   */
  warm(): void {
    const leaf = this.authority.issue("warm-up.invalid")
    tls.createSecureContext({ key: leaf.keyPem, cert: leaf.certificatePem, minVersion: "TLSv1.2" })
  }

  get size(): number {
    return this.entries.size
  }

  /** The context for a normalised host (lower-case ASCII name or IP literal). */
  contextFor(host: string): tls.SecureContext {
    const now = Date.now()
    const entry = this.entries.get(host)
    if (entry !== undefined && now - entry.mintedAt < RENEW_AFTER) {
      // most recently used last: a Map keeps insertion order
      this.entries.delete(host)
      this.entries.set(host, entry)
      return entry.context
    }
    const leaf = this.authority.issue(host, new Date(now))
    const context = tls.createSecureContext({ key: leaf.keyPem, cert: leaf.certificatePem, minVersion: "TLSv1.2" })
    this.entries.delete(host)
    if (this.entries.size >= this.capacity) this.entries.delete(this.entries.keys().next().value!)
    this.entries.set(host, { context, mintedAt: now })
    return context
  }
}
