import { Data } from "effect"

/**
 * A key management request that cannot be carried out: rotating keys that come from configuration,
 * retiring the current key, a key still in use, or an unknown key id. Not a wire error: key
 * management is an operator's act on one store.
 *
 * @since 0.1.0
 */
export class KeyManagementError extends Data.TaggedError("KeyManagementError")<{
  readonly message: string
}> {}
