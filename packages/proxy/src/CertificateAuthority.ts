/**
 * The proxy's certificate authority: an ECDSA P-256 key and a self-signed CA certificate, and the
 * leaf certificates it mints per host for intercepted connections.
 *
 * Ephemeral by default (`generate()`: the key lives in memory only and dies with the proxy); with
 * `loadOrCreate(directory)` it is kept in `ca.pem` (the certificate) and `ca-key.pem` (the key,
 * mode `0600`), so that long-lived sandboxes keep trusting it across restarts.
 *
 * @since 0.1.0
 */
import { Buffer } from "node:buffer"
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject, randomBytes, X509Certificate } from "node:crypto"
import { constants } from "node:fs"
import { chmod, mkdir, open, readFile, rename, stat, unlink } from "node:fs/promises"
import { join } from "node:path"
import { authorityCertificate, keyIdentifier, leafCertificate, pem, subjectOf } from "./internal/certificate.js"
import { CertificateAuthorityError } from "./ProxyError.js"

const DAY = 24 * 60 * 60 * 1000
/** Clocks of the sandbox and the proxy may disagree: certificates start a day in the past. */
const BACKDATE = DAY
/** Leaf certificates live at most this long (under the 398 days some clients enforce). */
const LEAF_LIFETIME = 365 * DAY
const EPHEMERAL_LIFETIME = 365 * DAY
const PERSISTED_LIFETIME = 10 * 365 * DAY

/** The file names in a CA directory. @since 0.1.0 */
export const CERTIFICATE_FILE = "ca.pem"
/** @since 0.1.0 */
export const KEY_FILE = "ca-key.pem"

/**
 * A leaf certificate minted for one host, with its key (shared by every leaf of one authority).
 *
 * @since 0.1.0
 */
export interface Leaf {
  readonly host: string
  readonly certificatePem: string
  readonly keyPem: string
}

/**
 * @since 0.1.0
 */
export class CertificateAuthority {
  /** The CA certificate, PEM: what a sandbox is told to trust. */
  readonly certificatePem: string
  /** The CA certificate, parsed. */
  readonly certificate: X509Certificate
  readonly #key: KeyObject
  readonly #subject: Buffer
  readonly #keyId: Buffer
  /** One key pair for every leaf: minting a leaf then costs one signature, no key generation. */
  readonly #leafPublicKey: KeyObject
  readonly #leafKeyPem: string

  /** @internal use `generate` or `loadOrCreate` */
  constructor(certificateDer: Buffer, key: KeyObject) {
    this.certificatePem = pem("CERTIFICATE", certificateDer)
    this.certificate = new X509Certificate(certificateDer)
    this.#key = key
    this.#subject = subjectOf(certificateDer)
    this.#keyId = keyIdentifier(createPublicKey(key))
    const leafKeys = generateKeyPairSync("ec", { namedCurve: "P-256" })
    this.#leafPublicKey = leafKeys.publicKey
    this.#leafKeyPem = leafKeys.privateKey.export({ type: "pkcs8", format: "pem" }) as string
  }

  /**
   * Mints a leaf certificate for `host`: a normalised (lower-case, ASCII) host name, or an IP
   * literal, as the CONNECT request named it.
   *
   * @since 0.1.0
   */
  issue(host: string, now: Date = new Date()): Leaf {
    const notAfter = Math.min(now.getTime() + LEAF_LIFETIME, new Date(this.certificate.validTo).getTime())
    const der = leafCertificate({
      host,
      publicKey: this.#leafPublicKey,
      issuer: this.#subject,
      issuerKeyId: this.#keyId,
      issuerKey: this.#key,
      notBefore: new Date(now.getTime() - BACKDATE),
      notAfter: new Date(notAfter)
    })
    return { host, certificatePem: pem("CERTIFICATE", der), keyPem: this.#leafKeyPem }
  }

  /** @since 0.1.0 */
  toString(): string {
    return `CertificateAuthority(${this.certificate.subject.replace(/\n/g, ", ")}, fingerprint ${this.certificate.fingerprint256})`
  }

  /** Never shows the key. @since 0.1.0 */
  [Symbol.for("nodejs.util.inspect.custom")](): string {
    return this.toString()
  }

  /** @since 0.1.0 */
  toJSON(): { readonly certificatePem: string } {
    return { certificatePem: this.certificatePem }
  }
}

const create = (lifetime: number, now: Date): { readonly der: Buffer; readonly key: KeyObject } => {
  const { publicKey, privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" })
  const der = authorityCertificate({
    commonName: `secretgate proxy CA ${randomBytes(4).toString("hex")}`,
    publicKey,
    privateKey,
    notBefore: new Date(now.getTime() - BACKDATE),
    notAfter: new Date(now.getTime() + lifetime)
  })
  return { der, key: privateKey }
}

/**
 * A new CA whose key lives in memory only (valid one year).
 *
 * @since 0.1.0
 */
export const generate = (now: Date = new Date()): CertificateAuthority => {
  const { der, key } = create(EPHEMERAL_LIFETIME, now)
  return new CertificateAuthority(der, key)
}

/**
 * The CA kept in `directory` (`ca.pem`, `ca-key.pem`), created there (valid ten years; the
 * directory `0700`, the key `0600`) when the directory holds neither file. Fails with
 * `CertificateAuthorityError` when the directory is not this user's own (owned by another user, or
 * writable by its group or others: someone else could swap the CA), the key is a symbolic link or
 * readable by other users, only one file is there, a file is not what it should be, or the
 * certificate has expired.
 *
 * @since 0.1.0
 * @example
 * ```ts
 * const ca = await CertificateAuthority.loadOrCreate("/var/lib/secretgate/ca")
 * ```
 */
export const loadOrCreate = async (directory: string, now: Date = new Date()): Promise<CertificateAuthority> => {
  const certificateFile = join(directory, CERTIFICATE_FILE)
  const keyFile = join(directory, KEY_FILE)
  await mkdir(directory, { recursive: true, mode: 0o700 }).catch((error: Error) => {
    throw new CertificateAuthorityError({ message: `cannot create the CA directory ${directory}: ${error.message}` })
  })
  await checkDirectory(directory)
  const [certificateText, keyText] = await Promise.all([readIfThere(certificateFile), readKey(keyFile)])
  if (certificateText === undefined && keyText === undefined) {
    const { der, key } = create(PERSISTED_LIFETIME, now)
    await writeAtomically(keyFile, key.export({ type: "pkcs8", format: "pem" }) as string, 0o600)
    await writeAtomically(certificateFile, pem("CERTIFICATE", der), 0o644)
    return new CertificateAuthority(der, key)
  }
  if (certificateText === undefined || keyText === undefined) {
    throw new CertificateAuthorityError({
      message: `${directory} holds ${certificateText === undefined ? KEY_FILE : CERTIFICATE_FILE} but not ${
        certificateText === undefined ? CERTIFICATE_FILE : KEY_FILE
      }; restore the missing file, or remove both to create a new CA (sandboxes must then trust the new one)`
    })
  }
  let key: KeyObject
  let certificate: X509Certificate
  try {
    key = createPrivateKey(keyText)
  } catch {
    throw new CertificateAuthorityError({ message: `${keyFile} is not a PEM private key` })
  }
  try {
    certificate = new X509Certificate(certificateText)
  } catch {
    throw new CertificateAuthorityError({ message: `${certificateFile} is not a PEM certificate` })
  }
  if (key.asymmetricKeyType !== "ec" || key.asymmetricKeyDetails?.namedCurve !== "prime256v1") {
    throw new CertificateAuthorityError({ message: `${keyFile} is not an ECDSA P-256 key (secretgate's CAs are); remove both files to create a new CA` })
  }
  if (!certificate.ca || !certificate.checkPrivateKey(key)) {
    throw new CertificateAuthorityError({ message: `${certificateFile} is not the CA certificate of ${keyFile}; restore the pair, or remove both to create a new CA` })
  }
  if (new Date(certificate.validTo).getTime() <= now.getTime() + DAY) {
    throw new CertificateAuthorityError({ message: `the CA in ${certificateFile} expires ${certificate.validTo}; remove both files to create a new CA` })
  }
  return new CertificateAuthority(certificate.raw, key)
}

const octal = (mode: number) => (mode & 0o777).toString(8).padStart(4, "0")

/**
 * The directory must be this user's own: a directory of another user, or one its group or others
 * may write to, lets someone else replace the CA (and so read every intercepted request).
 */
const checkDirectory = async (directory: string): Promise<void> => {
  const info = await stat(directory).catch((error: Error) => {
    throw new CertificateAuthorityError({ message: `cannot read the CA directory ${directory}: ${error.message}` })
  })
  if (!info.isDirectory()) throw new CertificateAuthorityError({ message: `${directory} is not a directory; give the CA a directory of its own` })
  const uid = process.getuid?.()
  if (uid !== undefined && info.uid !== uid) {
    throw new CertificateAuthorityError({
      message: `the CA directory ${directory} is owned by uid ${info.uid}, not by this user (uid ${uid}): its owner could replace the CA; use a directory of your own (or chown it)`
    })
  }
  if ((info.mode & 0o022) !== 0) {
    throw new CertificateAuthorityError({
      message: `the CA directory ${directory} is writable by its group or other users (mode ${octal(info.mode)}): they could replace the CA; run chmod 700 on it`
    })
  }
}

/**
 * The key file's text, read without following a symbolic link (`O_NOFOLLOW`: a link planted at the
 * name could point the proxy at another key), from a regular file of this user readable by no one
 * else; `undefined` when there is none.
 */
const readKey = async (file: string): Promise<string | undefined> => {
  let handle: Awaited<ReturnType<typeof open>>
  try {
    handle = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW)
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code
    if (code === "ENOENT") return undefined
    if (code === "ELOOP") {
      throw new CertificateAuthorityError({ message: `${file} is a symbolic link; the CA key must be a regular file in the CA directory (copy the key there, mode 0600)` })
    }
    throw new CertificateAuthorityError({ message: `cannot read ${file}: ${(error as Error).message}` })
  }
  try {
    const info = await handle.stat()
    if (!info.isFile()) throw new CertificateAuthorityError({ message: `${file} is not a regular file` })
    const uid = process.getuid?.()
    if (uid !== undefined && info.uid !== uid) {
      throw new CertificateAuthorityError({ message: `${file} is owned by uid ${info.uid}, not by this user (uid ${uid}); the CA key must be this user's own` })
    }
    if ((info.mode & 0o077) !== 0) {
      throw new CertificateAuthorityError({ message: `${file} is readable by other users (mode ${octal(info.mode)}); run chmod 600 on it` })
    }
    return await handle.readFile("utf8")
  } finally {
    await handle.close()
  }
}

const readIfThere = async (file: string): Promise<string | undefined> => {
  try {
    return await readFile(file, "utf8")
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return undefined
    throw new CertificateAuthorityError({ message: `cannot read ${file}: ${(error as Error).message}` })
  }
}

/** Writes through a temporary file created with `mode`, so the key is never briefly readable. */
const writeAtomically = async (file: string, text: string, mode: number): Promise<void> => {
  const temporary = `${file}.${randomBytes(6).toString("hex")}.tmp`
  const handle = await open(temporary, "wx", mode)
  try {
    await handle.writeFile(text)
    await handle.sync()
  } finally {
    await handle.close()
  }
  try {
    await chmod(temporary, mode) // the umask may have narrowed a 0644 certificate; never widens the key
    await rename(temporary, file)
  } catch (error) {
    await unlink(temporary).catch(() => {})
    throw error
  }
}
