/**
 * Test helpers for backend authors: run `conformance` from your backend's test file.
 *
 * @since 0.1.0
 */
export { conformance, type MakeLayer } from "./Conformance.js"
export { rawExchange, type RawExchange } from "./RawExchange.js"
