/** Version ordering, for the manager's minimum version. */

import { assert, assertEquals } from "../tests/_assert.ts";
import { compareVersions, MIN_MANAGER_VERSION, VERSION } from "./version.ts";

Deno.test("compareVersions: numeric parts, pre-releases first, junk oldest", () => {
  assert(compareVersions("0.10.0", "0.9.9") > 0);
  assert(compareVersions("1.0.0", "1.0.0-rc.2") > 0);
  assert(compareVersions("1.0.0-rc.1", "1.0.0-rc.2") < 0);
  assert(compareVersions("v1.2.3", "1.2.3") === 0);
  assert(compareVersions("1.2.3+build.5", "1.2.3") === 0);
  assert(compareVersions("", "0.0.1") < 0);
  assert(compareVersions("latest", "0.0.1") < 0);
  assertEquals(compareVersions("x", "y"), 0);
});

Deno.test("this client works with a manager of its own version", () => {
  assert(compareVersions(VERSION, MIN_MANAGER_VERSION) >= 0);
});
