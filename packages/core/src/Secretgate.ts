/**
 * The Promise facade, mirroring the `SecretService` of Daytona's SDK: `new Secretgate(...)` is the
 * counterpart of `new Daytona()`, and `gate.secret` has the same `create`, `list`, `get`, `update` and
 * `delete`. Built from any layer that provides `Secrets` (memory, filesystem, remote HTTP).
 *
 * Rejections are the typed error classes themselves, so `err instanceof SecretNotFound` works.
 *
 * @since 0.1.0
 */
import { Cause, Effect, Exit, type Layer, ManagedRuntime } from "effect"
import * as SandboxMount from "./SandboxMount.js"
import { CreateSecretBody, decodeInput, type ListQuery, type Secret, type SecretPage, UpdateSecretBody } from "./Secret.js"
import * as SecretResolver from "./SecretResolver.js"
import { Secrets } from "./Secrets.js"

/**
 * Parameters for creating a secret (the seed's `CreateSecretParams`).
 *
 * @since 0.1.0
 */
export interface CreateSecretParams {
  /** Name, `^[a-zA-Z_][a-zA-Z0-9_-]*$`, unique within the organization. */
  readonly name: string
  /** The plaintext value. Stored encrypted and never returned. */
  readonly value: string
  readonly description?: string
  /** Hosts the value may be sent to (`api.example.com`, `*.example.com`); omit for every host. */
  readonly hosts?: ReadonlyArray<string>
}

/**
 * Parameters for updating a secret; omitted fields are left unchanged.
 *
 * @since 0.1.0
 */
export interface UpdateSecretParams {
  readonly value?: string
  readonly description?: string | null
  readonly hosts?: ReadonlyArray<string>
}

/**
 * @since 0.1.0
 */
export interface Options<R = Secrets, E = unknown> {
  /**
   * A layer providing `Secrets`, e.g. `MemorySecretStore.layer()`. What else it provides (such as
   * `FileSystemSecretStore` for key rotation) is available to `run`.
   */
  readonly layer: Layer.Layer<R, E>
  /** The organization every call of this client runs for. */
  readonly organizationId: string
}

type Run<R> = <A, E>(effect: Effect.Effect<A, E, R>) => Promise<A>

/** A layer whose output lacks `Secrets` makes the options unsatisfiable, with this as the reason. */
type ProvidesSecrets<R> = [Secrets] extends [R] ? unknown : { readonly layer: "the layer must provide Secrets" }

const decodeCreate = decodeInput(CreateSecretBody)
const decodeUpdate = decodeInput(UpdateSecretBody)

/**
 * Secret management for one organization (the seed's `SecretService`).
 *
 * @since 0.1.0
 */
export class SecretService {
  /** @internal */
  constructor(private readonly run: Run<Secrets>, private readonly organizationId: string) {}

  /**
   * Creates a secret; resolves to it without its value.
   *
   * @since 0.1.0
   * @example
   * ```ts
   * const secret = await gate.secret.create({ name: "anthropic-prod", value: "sk-ant-...", hosts: ["api.anthropic.com"] })
   * console.log(`Created secret ${secret.name} with placeholder ${secret.placeholder}`)
   * ```
   */
  create(params: CreateSecretParams): Promise<Secret> {
    return this.run(Effect.flatMap(decodeCreate(params), (input) => Effect.flatMap(Secrets, (s) => s.create(this.organizationId, input))))
  }

  /** Every secret of the organization, sorted by name. @since 0.1.0 */
  list(): Promise<Array<Secret>> {
    return this.run(Effect.flatMap(Secrets, (s) => Effect.map(s.list(this.organizationId), (all) => [...all])))
  }

  /**
   * One page of secrets: `limit` 1–200 (100), `sort` by `name | createdAt | updatedAt` (createdAt),
   * `order` (desc), `name` substring filter, `cursor` from the previous page's `nextCursor`.
   *
   * @since 0.1.0
   */
  listPaginated(query: ListQuery = {}): Promise<SecretPage> {
    return this.run(Effect.flatMap(Secrets, (s) => s.listPage(this.organizationId, query)))
  }

  /** The secret with this id. @since 0.1.0 */
  get(secretId: string): Promise<Secret> {
    return this.run(Effect.flatMap(Secrets, (s) => s.get(this.organizationId, secretId)))
  }

  /**
   * The secret with this name (names are unique within the organization).
   *
   * @since 0.1.0
   * @example
   * ```ts
   * const github = await gate.secret.getByName("github")
   * await gate.secret.update(github.id, { hosts: ["api.github.com"] })
   * ```
   */
  getByName(name: string): Promise<Secret> {
    return this.run(Effect.flatMap(Secrets, (s) => s.getByName(this.organizationId, name)))
  }

  /** Updates a secret; omitted fields stay, the placeholder never changes. @since 0.1.0 */
  update(secretId: string, params: UpdateSecretParams): Promise<Secret> {
    return this.run(
      Effect.flatMap(decodeUpdate(params), (input) => Effect.flatMap(Secrets, (s) => s.update(this.organizationId, secretId, input)))
    )
  }

  /** Deletes a secret; a re-created secret of the same name gets a new placeholder. @since 0.1.0 */
  delete(secretId: string): Promise<void> {
    return this.run(Effect.flatMap(Secrets, (s) => s.delete(this.organizationId, secretId)))
  }
}

/**
 * The client: an organization's secrets over one backend. `R` is what the backend's layer provides
 * (at least `Secrets`): `run` accepts effects needing any of it, e.g. the filesystem backend's key
 * rotation.
 *
 * @since 0.1.0
 * @example
 * ```ts
 * import { Secretgate } from "@secretgate/core"
 * import { MemorySecretStore } from "@secretgate/memory"
 *
 * const gate = new Secretgate({ layer: MemorySecretStore.layer(), organizationId: "acme" })
 * await gate.secret.create({ name: "github", value: "ghp_...", hosts: ["api.github.com"] })
 * const { env } = await gate.mount({ GITHUB_TOKEN: "github" })
 * await gate.dispose()
 * ```
 */
export class Secretgate<R = Secrets> {
  /** Create, list, get, update and delete secrets. @since 0.1.0 */
  readonly secret: SecretService
  /** The organization this client acts for. @since 0.1.0 */
  readonly organizationId: string
  /** The Effect runtime behind the facade, to run your own effects against the same backend. @since 0.1.0 */
  readonly runtime: ManagedRuntime.ManagedRuntime<R, unknown>

  constructor(options: Options<R, unknown> & ProvidesSecrets<R>) {
    this.organizationId = options.organizationId
    this.runtime = ManagedRuntime.make(options.layer)
    this.secret = new SecretService(this.runSecrets, options.organizationId)
  }

  /**
   * Runs an effect needing what the backend's layer provides, rejecting with its typed error itself.
   *
   * @since 0.1.0
   * @example
   * ```ts
   * import { Secretgate } from "@secretgate/core"
   * import { FileSystemSecretStore } from "@secretgate/filesystem"
   * import { Effect } from "effect"
   *
   * const gate = new Secretgate({ layer: FileSystemSecretStore.layer({ directory: "/var/lib/secretgate" }), organizationId: "acme" })
   * const status = await gate.run(Effect.flatMap(FileSystemSecretStore.FileSystemSecretStore, (store) => store.rotateKey))
   * ```
   */
  readonly run: Run<R> = (effect) =>
    // One fiber observed straight into one promise: no intermediate promise of the exit
    new Promise((resolve, reject) => {
      this.runtime.runFork(effect).addObserver((exit) => {
        if (Exit.isSuccess(exit)) resolve(exit.value)
        else reject(failureOf(exit.cause))
      })
    })

  /** The constructor's `ProvidesSecrets` check is what makes an effect needing `Secrets` runnable here. */
  private readonly runSecrets: Run<Secrets> = (effect) => this.run(effect as Effect.Effect<never, never, never>)

  /**
   * Mounts secrets into a sandbox: `{ ENV_VAR: "secret-name" }` → the env map of placeholders and
   * the set of secrets its egress may substitute. All missing names are reported at once.
   *
   * @since 0.1.0
   */
  mount(spec: SandboxMount.MountSpec): Promise<SandboxMount.SandboxMount> {
    return this.runSecrets(SandboxMount.make(this.organizationId, spec))
  }

  /**
   * A resolver of the mount's values for the egress layer (`@secretgate/undici`).
   *
   * @since 0.1.0
   */
  resolver(mount: SandboxMount.SandboxMount, options?: SecretResolver.Options): Promise<SecretResolver.SecretResolver> {
    return this.runSecrets(SecretResolver.make(mount, options))
  }

  /** Frees the backend's resources. @since 0.1.0 */
  dispose(): Promise<void> {
    return this.runtime.dispose()
  }

  /** @since 0.1.0 */
  [Symbol.asyncDispose](): Promise<void> {
    return this.dispose()
  }
}

/**
 * The value of an exit, or its typed error thrown as itself (not wrapped in a `FiberFailure`).
 *
 * @since 0.1.0
 */
export const unwrap = <A, E>(exit: Exit.Exit<A, E>): A => {
  if (Exit.isSuccess(exit)) return exit.value
  throw failureOf(exit.cause)
}

// What a failed exit rejects with: its typed error itself, or its defect as an `Error`.
const failureOf = (cause: Cause.Cause<unknown>): unknown => {
  const failure = Cause.failureOption(cause)
  if (failure._tag === "Some") return failure.value
  // A defect need not be an Error (a disposed runtime dies with a string); reject with one anyway.
  const defect = Cause.squash(cause)
  return defect instanceof Error ? defect : new Error(typeof defect === "string" ? defect : Cause.pretty(cause))
}
