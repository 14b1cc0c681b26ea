/**
 * `vif agent` and `vif agent-init` as the command line runs them, in-process:
 * a bad configuration is two lines (what is wrong, what to do) and exit 2;
 * neither command is in the main help.
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "../tests/_assert.ts";
import { main, memoryIo } from "../mod/cli/mod.ts";

const POD = { VIF_POD_NAME: "web-1", VIF_POD_NAMESPACE: "shop", VIF_POD_IP: "198.18.64.7" };

Deno.test("vif agent refuses a missing or bad configuration with the field named, exit 2", async () => {
  const cases: [Record<string, string>, RegExp][] = [
    [POD, /^vif: VIF_AGENT_CONFIG is not set$/],
    [
      { ...POD, VIF_AGENT_CONFIG: '{"version":1}' },
      /^vif: VIF_AGENT_CONFIG: manager is not an object$/,
    ],
    [
      { ...POD, VIF_AGENT_CONFIG: "not json" },
      /^vif: VIF_AGENT_CONFIG: the configuration is not JSON/,
    ],
  ];
  for (const [env, first] of cases) {
    const io = memoryIo(env);
    const code = await main(["agent", "--resolv-conf", "/nonexistent/resolv.conf"], { io });
    assertEquals(code, 2, io.err);
    const lines = io.err.trimEnd().split("\n");
    assertEquals(lines.length, 2, io.err);
    assertMatch(lines[0]!, first);
    assertMatch(lines[1]!, /vif intercept/);
  }
});

Deno.test("vif agent-init refuses a missing or bad configuration, exit 2", async () => {
  for (const env of [{}, { VIF_AGENT_CONFIG: '{"version":2}' }] as Record<string, string>[]) {
    const io = memoryIo(env);
    assertEquals(await main(["agent-init"], { io }), 2, io.err);
    assertEquals(io.err.trimEnd().split("\n").length, 2, io.err);
    assertMatch(io.err, /^vif: VIF_AGENT_CONFIG/);
  }
});

Deno.test("vif --help does not list the agent's commands", async () => {
  const io = memoryIo();
  assertEquals(await main(["--help"], { io }), 0);
  assert(!/^\s+agent/m.test(io.out), io.out);
});
