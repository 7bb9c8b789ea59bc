/**
 * The certificate authority: certificates strict verifiers accept (OpenSSL's `-x509_strict` as a
 * real child process; Node's parser for the fields), leaves for names, IP literals and long names,
 * the CA kept on disk with a 0600 key, and every kind of bad CA directory refused with a clear error.
 */
import { X509Certificate } from "node:crypto"
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { inspect } from "node:util"
import { afterEach, describe, expect, it } from "vitest"
import { CertificateAuthority, CertificateAuthorityError, InvalidProxyOptions, SecretgateProxy } from "../src/index.js"
import { installed, run } from "./support/world.js"

const directories: Array<string> = []
const tempDir = () => {
  const directory = mkdtempSync(join(tmpdir(), "secretgate-ca-test-"))
  directories.push(directory)
  return directory
}
afterEach(() => {
  for (const directory of directories.splice(0)) rmSync(directory, { recursive: true, force: true })
})

describe("certificates", () => {
  it("the CA: self-signed, CA:TRUE, P-256, valid now; a leaf: issued by it, for its host only, serverAuth, under 398 days", () => {
    const ca = CertificateAuthority.generate()
    expect(ca.certificate.ca).toBe(true)
    expect(ca.certificate.checkIssued(ca.certificate)).toBe(true)
    expect(ca.certificate.publicKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1")
    const leaf = new X509Certificate(ca.issue("api.example.com").certificatePem)
    expect(leaf.ca).toBe(false)
    expect(leaf.checkIssued(ca.certificate)).toBe(true)
    expect(leaf.verify(ca.certificate.publicKey)).toBe(true)
    expect(leaf.checkHost("api.example.com")).toBe("api.example.com")
    expect(leaf.checkHost("other.example.com")).toBeUndefined()
    expect(leaf.keyUsage).toEqual(["1.3.6.1.5.5.7.3.1"])
    const lifetime = new Date(leaf.validTo).getTime() - new Date(leaf.validFrom).getTime()
    expect(lifetime).toBeLessThan(398 * 24 * 3600 * 1000)
    expect(new Date(leaf.validFrom).getTime()).toBeLessThan(Date.now())
    // serials are random and positive
    const serials = new Set(Array.from({ length: 20 }, () => new X509Certificate(ca.issue("a.example").certificatePem).serialNumber))
    expect(serials.size).toBe(20)
  })

  it("IP literals get iPAddress names; a name over 64 characters gets an empty subject and a critical subjectAltName", () => {
    const ca = CertificateAuthority.generate()
    expect(new X509Certificate(ca.issue("127.0.0.1").certificatePem).checkIP("127.0.0.1")).toBe("127.0.0.1")
    expect(new X509Certificate(ca.issue("::ffff:10.1.2.3").certificatePem).checkIP("::ffff:10.1.2.3")).toBe("::ffff:10.1.2.3")
    expect(new X509Certificate(ca.issue("2001:db8::1").certificatePem).checkIP("2001:db8::1")).toBe("2001:db8::1")
    const long = `${"a".repeat(60)}.${"b".repeat(60)}.example`
    const leaf = new X509Certificate(ca.issue(long).certificatePem)
    expect(leaf.subject ?? "").toBe("")
    expect(leaf.checkHost(long)).toBe(long)
  })

  const hasOpenssl = installed("openssl", ["version"])
  if (!hasOpenssl) console.warn("openssl is not installed: the -x509_strict check is skipped")
  it.skipIf(!hasOpenssl)("openssl verify -x509_strict accepts the CA and its leaves (names, IPv4, IPv6)", async () => {
    const ca = CertificateAuthority.generate()
    const directory = tempDir()
    writeFileSync(join(directory, "ca.pem"), ca.certificatePem)
    const files = ["api.example.com", "127.0.0.1", "::1", `${"x".repeat(63)}.${"y".repeat(10)}.example`].map((host, i) => {
      const file = join(directory, `leaf-${i}.pem`)
      writeFileSync(file, ca.issue(host).certificatePem)
      return file
    })
    const ran = await run("openssl", ["verify", "-x509_strict", "-purpose", "sslserver", "-CAfile", join(directory, "ca.pem"), join(directory, "ca.pem"), ...files], process.env)
    expect(ran.stderr).toBe("")
    expect(ran.code).toBe(0)
    expect(ran.stdout.trim().split("\n").every((line) => line.endsWith(": OK"))).toBe(true)
  })

  it("inspect, String and JSON show the certificate, never the key", () => {
    const ca = CertificateAuthority.generate()
    for (const text of [inspect(ca), String(ca), JSON.stringify(ca)]) expect(text).not.toContain("PRIVATE KEY")
    expect(inspect(ca)).toContain("secretgate proxy CA")
  })
})

describe("a CA kept on disk", () => {
  it("is created with a 0600 key in a 0700 directory, and loaded back the same", async () => {
    const directory = join(tempDir(), "ca")
    const created = await CertificateAuthority.loadOrCreate(directory)
    expect(statSync(join(directory, CertificateAuthority.KEY_FILE)).mode & 0o777).toBe(0o600)
    expect(statSync(directory).mode & 0o777).toBe(0o700)
    const loaded = await CertificateAuthority.loadOrCreate(directory)
    expect(loaded.certificatePem).toBe(created.certificatePem)
    // a leaf of the loaded CA verifies against the created one's certificate
    expect(new X509Certificate(loaded.issue("a.example").certificatePem).verify(created.certificate.publicKey)).toBe(true)
    // valid for years, unlike the ephemeral default
    expect(new Date(created.certificate.validTo).getFullYear()).toBeGreaterThan(new Date().getFullYear() + 5)
  })

  it("refuses, saying what to do: a half pair, a key readable by others, garbage, a key of another type, a mismatched pair, an expired CA", async () => {
    const expectRefusal = async (directory: string, message: RegExp) => {
      const error = await CertificateAuthority.loadOrCreate(directory).then(() => undefined, (e: unknown) => e)
      expect(error).toBeInstanceOf(CertificateAuthorityError)
      expect((error as Error).message).toMatch(message)
    }
    const source = join(tempDir(), "ca")
    await CertificateAuthority.loadOrCreate(source)
    const keyText = readFileSync(join(source, CertificateAuthority.KEY_FILE), "utf8")
    const certificateText = readFileSync(join(source, CertificateAuthority.CERTIFICATE_FILE), "utf8")
    const pair = (certificate: string | undefined, key: string | undefined, mode = 0o600) => {
      const directory = tempDir()
      if (certificate !== undefined) writeFileSync(join(directory, CertificateAuthority.CERTIFICATE_FILE), certificate)
      if (key !== undefined) {
        writeFileSync(join(directory, CertificateAuthority.KEY_FILE), key)
        chmodSync(join(directory, CertificateAuthority.KEY_FILE), mode)
      }
      return directory
    }
    await expectRefusal(pair(certificateText, undefined), /holds ca\.pem but not ca-key\.pem; restore the missing file/)
    await expectRefusal(pair(undefined, keyText), /holds ca-key\.pem but not ca\.pem/)
    await expectRefusal(pair(certificateText, keyText, 0o644), /readable by other users \(mode 0644\); run chmod 600/)
    await expectRefusal(pair(certificateText, "not a key"), /is not a PEM private key/)
    await expectRefusal(pair("not a certificate", keyText), /is not a PEM certificate/)
    const { generateKeyPairSync } = await import("node:crypto")
    const rsa = generateKeyPairSync("rsa", { modulusLength: 1024 }).privateKey.export({ type: "pkcs8", format: "pem" }) as string
    await expectRefusal(pair(certificateText, rsa), /not an ECDSA P-256 key/)
    const otherKey = generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "pkcs8", format: "pem" }) as string
    await expectRefusal(pair(certificateText, otherKey), /is not the CA certificate of/)
    // created in 2000: expired by now
    const old = join(tempDir(), "old")
    await CertificateAuthority.loadOrCreate(old, new Date("2000-01-01T00:00:00Z"))
    await expectRefusal(old, /expires .*; remove both files to create a new CA/)
    // nothing was changed by a refusal
    expect(readFileSync(join(source, CertificateAuthority.KEY_FILE), "utf8")).toBe(keyText)
  })
})

describe("a CA directory that is not this user's own", () => {
  const expectRefusal = async (directory: string, message: RegExp) => {
    const error = await CertificateAuthority.loadOrCreate(directory).then(() => undefined, (e: unknown) => e)
    expect(error).toBeInstanceOf(CertificateAuthorityError)
    expect((error as Error).message).toMatch(message)
  }

  it("refuses a directory writable by its group or others, existing CA or not, and changes nothing", async () => {
    const empty = tempDir()
    chmodSync(empty, 0o777)
    await expectRefusal(empty, /writable by its group or other users \(mode 0777\): they could replace the CA; run chmod 700/)
    expect(readdirSync(empty)).toEqual([])
    const kept = join(tempDir(), "ca")
    await CertificateAuthority.loadOrCreate(kept)
    chmodSync(kept, 0o770)
    await expectRefusal(kept, /mode 0770/)
    chmodSync(kept, 0o700)
    await expect(CertificateAuthority.loadOrCreate(kept)).resolves.toBeInstanceOf(CertificateAuthority.CertificateAuthority)
  })

  it.skipIf(process.getuid?.() !== 0)("refuses a directory, or a key, owned by another user (run as root: chowned to nobody)", async () => {
    const kept = join(tempDir(), "ca")
    await CertificateAuthority.loadOrCreate(kept)
    chownSync(kept, 65534, 65534)
    await expectRefusal(kept, /owned by uid 65534, not by this user \(uid 0\)/)
    chownSync(kept, 0, 0)
    chownSync(join(kept, CertificateAuthority.KEY_FILE), 65534, 65534)
    await expectRefusal(kept, /ca-key\.pem is owned by uid 65534/)
  })

  it("refuses a key file that is a symbolic link (to a key that would otherwise load)", async () => {
    const source = join(tempDir(), "ca")
    await CertificateAuthority.loadOrCreate(source)
    const linked = tempDir()
    writeFileSync(join(linked, CertificateAuthority.CERTIFICATE_FILE), readFileSync(join(source, CertificateAuthority.CERTIFICATE_FILE)))
    symlinkSync(join(source, CertificateAuthority.KEY_FILE), join(linked, CertificateAuthority.KEY_FILE))
    await expectRefusal(linked, /ca-key\.pem is a symbolic link/)
    // a dangling link is not taken for "no key": nothing is created over it
    const dangling = tempDir()
    symlinkSync(join(dangling, "elsewhere.pem"), join(dangling, CertificateAuthority.KEY_FILE))
    await expectRefusal(dangling, /is a symbolic link/)
    expect(readdirSync(dangling)).toEqual([CertificateAuthority.KEY_FILE])
  })

  it("the proxy refuses ca.directory equal to, or inside, the directory it gives sandboxes", async () => {
    const bundle = tempDir()
    for (const caDirectory of [bundle, join(bundle, "ca"), `${bundle}/./`]) {
      const error = await SecretgateProxy.start({ ca: { directory: caDirectory }, directory: bundle }).then((proxy) => proxy.close(), (e: unknown) => e)
      expect(error).toBeInstanceOf(InvalidProxyOptions)
      expect((error as InvalidProxyOptions).option).toBe("ca.directory")
      expect((error as Error).message).toMatch(/they would read the CA's private key/)
    }
    expect(readdirSync(bundle)).toEqual([])
  })

  it("the proxy compares real paths: a symbolic link to the sandboxes' directory (or into it) is that directory", async () => {
    const root = tempDir()
    const bundle = join(root, "bundle")
    mkdirSync(bundle)
    symlinkSync(bundle, join(root, "alias"))
    // the CA through the alias (existing or not yet), and the bundle through the alias
    for (const [caDirectory, directory] of [[join(root, "alias", "ca"), bundle], [join(root, "alias"), bundle], [join(root, "alias", "new", "ca"), bundle], [join(bundle, "ca"), join(root, "alias")]] as const) {
      const error = await SecretgateProxy.start({ ca: { directory: caDirectory }, directory }).then((proxy) => proxy.close(), (e: unknown) => e)
      expect(error).toBeInstanceOf(InvalidProxyOptions)
      expect((error as InvalidProxyOptions).option).toBe("ca.directory")
    }
    expect(readdirSync(bundle)).toEqual([])
    // a CA beside the bundle, named through a link, is still fine
    mkdirSync(join(root, "keys"))
    symlinkSync(join(root, "keys"), join(root, "keys-alias"))
    const proxy = await SecretgateProxy.start({ ca: { directory: join(root, "keys-alias", "ca") }, directory: join(root, "alias") })
    await proxy.close()
    expect(readdirSync(bundle)).not.toContain(CertificateAuthority.KEY_FILE)
    expect(readdirSync(join(root, "keys", "ca"))).toContain(CertificateAuthority.KEY_FILE)
  })
})
