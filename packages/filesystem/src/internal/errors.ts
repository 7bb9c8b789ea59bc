import { KeyRing } from "@secretgate/core"

/**
 * Core's `KeyRing.KeyManagementError` (one class for every backend with key management): rotating
 * keys that come from configuration, retiring the current key, a key still in use, or an unknown
 * key id.
 *
 * @since 0.1.0
 */
export const KeyManagementError = KeyRing.KeyManagementError

/**
 * @since 0.1.0
 */
export type KeyManagementError = KeyRing.KeyManagementError
