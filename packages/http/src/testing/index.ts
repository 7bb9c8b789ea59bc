/**
 * Test helpers for server authors and deployers: run `wireSuite` against any running secretgate
 * (or Daytona-compatible) server to check its wire format.
 *
 * @since 0.1.0
 */
export { type Answer, expectError, send, WIRE_KEYS, wireSuite, type WireTarget } from "./WireSuite.js"
