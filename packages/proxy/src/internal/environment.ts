/**
 * What a sandbox is given: the files it needs (the CA alone; the CA plus the system's roots; a
 * preload that routes Node 20's `fetch` through the proxy) and the environment variables naming
 * them, with the proxy URL carrying its token.
 */
import { existsSync, readFileSync } from "node:fs"
import { chmod, writeFile } from "node:fs/promises"
import { createRequire } from "node:module"
import { join } from "node:path"
import * as tls from "node:tls"

export interface Bundle {
  /** The proxy's CA certificate alone (for variables that add to a trust store). */
  readonly caFile: string
  /** The CA followed by the system's roots (for variables that replace the trust store). */
  readonly bundleFile: string
  /** A CommonJS file for `node --require`: sets undici's `EnvHttpProxyAgent` as the global dispatcher. */
  readonly nodePreload: string
}

/** Where distributions keep the system's roots; the first one present is used. */
const SYSTEM_BUNDLES = [
  "/etc/ssl/certs/ca-certificates.crt", // Debian, Ubuntu, Alpine, Arch
  "/etc/pki/tls/certs/ca-bundle.crt", // Fedora, RHEL
  "/etc/ssl/ca-bundle.pem", // openSUSE
  "/etc/ssl/cert.pem", // macOS, BSD
  "/usr/local/etc/openssl/cert.pem"
]

/** The roots a replacing variable takes the place of: the system's, else Node's bundled ones. */
export const systemRoots = (): string => {
  for (const file of SYSTEM_BUNDLES) {
    if (!existsSync(file)) continue
    try {
      const text = readFileSync(file, "utf8")
      if (text.includes("-----BEGIN CERTIFICATE-----")) return text.endsWith("\n") ? text : `${text}\n`
    } catch {
      // unreadable: try the next
    }
  }
  return `${tls.rootCertificates.join("\n")}\n`
}

const preloadSource = (undiciPath: string): string => `"use strict";
// secretgate: Node 20's fetch ignores HTTPS_PROXY; route it (and undici) through the proxy.
try {
  const undici = require(${JSON.stringify(undiciPath)});
  undici.setGlobalDispatcher(new undici.EnvHttpProxyAgent());
} catch (error) {
  process.emitWarning("secretgate: fetch could not be routed through the proxy: " + (error && error.message), "SecretgateWarning");
}
`

/** Writes the bundle files into `directory` (readable by the sandbox: they hold no secret). */
export const writeBundle = async (directory: string, caPem: string): Promise<Bundle> => {
  const bundle: Bundle = {
    caFile: join(directory, "ca.pem"),
    bundleFile: join(directory, "ca-bundle.pem"),
    nodePreload: join(directory, "node-preload.cjs")
  }
  const undiciPath = createRequire(import.meta.url).resolve("undici")
  const files: ReadonlyArray<readonly [string, string]> = [
    [bundle.caFile, caPem],
    [bundle.bundleFile, `${caPem}${systemRoots()}`],
    [bundle.nodePreload, preloadSource(undiciPath)]
  ]
  for (const [file, text] of files) {
    await writeFile(file, text, { mode: 0o644 })
    await chmod(file, 0o644)
  }
  return bundle
}

/** Variables that add a CA file to the client's trust store. */
export const ADDITIVE_CA_VARIABLES = ["NODE_EXTRA_CA_CERTS", "DENO_CERT"] as const
/** Variables that replace the client's trust store with a file. */
export const REPLACING_CA_VARIABLES = [
  "SSL_CERT_FILE", // OpenSSL, Python's ssl, Go, Ruby, Rust (openssl-probe)
  "REQUESTS_CA_BUNDLE", // Python requests
  "CURL_CA_BUNDLE", // curl
  "GIT_SSL_CAINFO", // git
  "AWS_CA_BUNDLE", // AWS CLI and SDKs
  "PIP_CERT", // pip
  "CARGO_HTTP_CAINFO", // cargo
  "NIX_SSL_CERT_FILE",
  "HTTPLIB2_CA_CERTS",
  "npm_config_cafile" // npm
] as const
/** Variables that name the proxy. */
export const PROXY_VARIABLES = ["HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy"] as const
export const NO_PROXY_VARIABLES = ["NO_PROXY", "no_proxy"] as const
/** Loopback only: a wider NO_PROXY (a parent's, say) could route an allowed host around the proxy. */
export const NO_PROXY = "localhost,127.0.0.1,::1"

/** The environment for one sandbox. */
export const environmentFor = (proxyUrl: string, bundle: Bundle, placeholders: Readonly<Record<string, string>>): Record<string, string> => {
  const env: Record<string, string> = { ...placeholders }
  for (const name of PROXY_VARIABLES) env[name] = proxyUrl
  for (const name of NO_PROXY_VARIABLES) env[name] = NO_PROXY
  for (const name of ADDITIVE_CA_VARIABLES) env[name] = bundle.caFile
  for (const name of REPLACING_CA_VARIABLES) env[name] = bundle.bundleFile
  // Node 22.21+/24.5+ honour the proxy variables natively with this; Node 20 needs the preload
  env["NODE_USE_ENV_PROXY"] = "1"
  env["NODE_OPTIONS"] = `--require ${JSON.stringify(bundle.nodePreload)}`
  return env
}
