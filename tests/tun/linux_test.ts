/**
 * Runs the Linux TUN device's tests (`_linux_probe.ts`: the shared suite plus
 * Linux checks) in a child `deno test` inside a network namespace made here,
 * so nothing touches the root namespace:
 *
 * ```
 *   root namespace: untouched; runs this test, which makes and deletes
 *        │
 *        ▼ ip netns exec
 *   vif-tuntest-XXXXXXXX (lo up, no uplink)
 *        deno test _linux_probe.ts ──► TUN vifN, 240.0.0.1/24, 2001:2::1/64,
 *                                      routes 198.18.77.0/24, 2001:2:77::/64
 * ```
 *
 * Ignored unless root with `ip` and `/dev/net/tun`.
 */

import { canMakeNetns, withNetns } from "../_netns.ts";

const PROBE = new URL("./_linux_probe.ts", import.meta.url).pathname;
const CHILD_TIMEOUT_MS = 120_000;

function hasTun(): boolean {
  try {
    return Deno.statSync("/dev/net/tun").isCharDevice === true;
  } catch {
    return false;
  }
}

Deno.test({
  name: "LinuxTun passes the shared suite and the Linux checks inside a network namespace",
  ignore: !canMakeNetns() || !hasTun(),
  async fn() {
    await withNetns("vif-tuntest", async (netns) => {
      const child = new Deno.Command("ip", {
        args: ["netns", "exec", netns, Deno.execPath(), "test", "-A", "--no-check", PROBE],
        env: { VIF_TUN_PROBE_NETNS: netns, NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      // `ip netns exec` execs deno in place, so this pid is the child test run.
      const timer = setTimeout(() => child.kill("SIGKILL"), CHILD_TIMEOUT_MS);
      try {
        const out = await child.output();
        const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
        if (!out.success) {
          throw new Error(`Cannot pass the Linux TUN probe in "${netns}":\n${text}`);
        }
        const summary = text.split("\n").filter((l) => / passed \| /.test(l) || / \.\.\. /.test(l));
        console.log(summary.join("\n"));
        if (!/ok \| \d+ passed \| 0 failed/.test(text) || / 0 passed/.test(text)) {
          throw new Error(`Cannot find a passing summary in the probe's output:\n${text}`);
        }
      } finally {
        clearTimeout(timer);
      }
    });
  },
});
