/**
 * The version of vif, as a constant so that a compiled binary needs no file to
 * know it. `tests/architecture_test.ts` checks that it equals the `version` in
 * `deno.json`; change both together.
 *
 * @module
 */

/**
 * The version of vif, in semver form.
 *
 * @example Print it
 * ```ts
 * import { VERSION } from "./version.ts";
 *
 * console.log(`vif ${VERSION}`);
 * ```
 */
export const VERSION = "0.1.0";
