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

/**
 * The oldest traffic-manager this client works with: the first with the
 * `vif.v1` protocol as this client speaks it. A manager older than this fails
 * `vif connect` with the upgrade to make; a newer or older one that is still
 * compatible gets a warning when it differs from {@linkcode VERSION}.
 */
export const MIN_MANAGER_VERSION = "0.1.0";

/**
 * Compares two semver versions by major, minor and patch; a pre-release
 * (`1.2.0-rc.1`) sorts before its release. Text that is not a version sorts
 * before every version.
 *
 * @param a a version
 * @param b another
 * @returns negative when `a` is older, 0 when equal, positive when newer
 *
 * @example
 * ```ts
 * import { compareVersions } from "./version.ts";
 *
 * if (compareVersions("0.10.0", "0.9.3") <= 0) throw new Error("0.10 is newer");
 * if (compareVersions("1.0.0-rc.1", "1.0.0") >= 0) throw new Error("rc is older");
 * ```
 */
export function compareVersions(a: string, b: string): number {
  const parse = (v: string) => {
    const m = /^v?(\d+)\.(\d+)\.(\d+)(-[0-9A-Za-z.-]+)?(\+.*)?$/.exec(v.trim());
    return m ? { parts: [Number(m[1]), Number(m[2]), Number(m[3])], pre: m[4] ?? "" } : null;
  };
  const x = parse(a);
  const y = parse(b);
  if (!x || !y) return x ? 1 : y ? -1 : 0;
  for (let i = 0; i < 3; i++) {
    const d = x.parts[i]! - y.parts[i]!;
    if (d !== 0) return d;
  }
  if (x.pre === y.pre) return 0;
  if (!x.pre) return 1;
  if (!y.pre) return -1;
  return x.pre < y.pre ? -1 : 1;
}
