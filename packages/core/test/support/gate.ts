/**
 * Helpers shared by the facade tests: gates over the real memory backend, and a way to catch a
 * rejection as a value.
 */
import { Layer } from "effect"
import { MemorySecretStore } from "../../../memory/src/index.js"
import * as KeyRing from "../../src/KeyRing.js"
import * as SecretCipher from "../../src/SecretCipher.js"
import { Secretgate } from "../../src/Secretgate.js"
import * as Secrets from "../../src/Secrets.js"
import * as SecretStore from "../../src/SecretStore.js"

export const newOrganization = () => `org-${globalThis.crypto.randomUUID()}`

/** A client over a fresh memory backend of its own. */
export const memoryGate = (options: MemorySecretStore.Options = {}, organizationId = newOrganization()) =>
  new Secretgate({ layer: MemorySecretStore.layer(options), organizationId })

/**
 * A factory of clients for different organizations over one shared memory store and key ring, as
 * a server hosting several organizations would have.
 */
export const sharedBackend = (options: Secrets.Options = {}) => {
  const store = Layer.succeed(SecretStore.SecretStore, MemorySecretStore.make())
  const cipher = SecretCipher.layer(KeyRing.ephemeral())
  const layer = Secrets.layer(options).pipe(Layer.provide(store), Layer.provide(cipher))
  return (organizationId = newOrganization()) => new Secretgate({ layer, organizationId })
}

/** What a promise rejects with; fails the test when it resolves. */
export const rejection = async (promise: Promise<unknown>): Promise<unknown> => {
  let value: unknown
  try {
    value = await promise
  } catch (error) {
    return error
  }
  throw new Error(`expected a rejection, got ${JSON.stringify(value)}`)
}
