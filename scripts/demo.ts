/**
 * `deno task demo`: vif against the simulated cluster, as a user would run it.
 *
 * 1. `deno task sim up`: the cluster (API server, nodes, pods, ClusterIPs,
 *    cluster DNS) in network namespaces, and a workstation `vif-ws` that can
 *    reach only the API server.
 * 2. `vif install`: the traffic-manager, through the API server.
 * 3. `vif connect --context vif-sim`: starts the daemon, which holds one
 *    port-forward through the API server; the command returns once connected.
 * 4. From the workstation: `curl http://web.default/`, `dig web.other.svc.cluster.local`,
 *    the routes vif made, and `vif status`.
 * 5. `vif quit`, then `deno task sim down`.
 *
 * A cluster that was already up (from `deno task sim up`) is used and left up.
 *
 * @module
 */

import { DENO, ROOT } from "../tests/e2e/_env.ts";

const SIM = [DENO, "run", "-A", "--config", `${ROOT}/deno.json`, `${ROOT}/scripts/sim.ts`];
const BOLD = Deno.stdout.isTerminal() ? (s: string) => `\x1b[1m${s}\x1b[0m` : (s: string) => s;

function say(line: string): void {
  console.log(BOLD(line));
}

async function sh(
  shown: string,
  cmd: string[],
  options: { quiet?: boolean } = {},
): Promise<number> {
  console.log(`  $ ${shown}`);
  const out = await new Deno.Command(cmd[0]!, {
    args: cmd.slice(1),
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!options.quiet || out.code !== 0) {
    for (const l of text.trimEnd().split("\n")) if (l) console.log(`    ${l}`);
  }
  return out.code;
}

async function isUp(): Promise<boolean> {
  const out = await new Deno.Command(SIM[0]!, {
    args: [...SIM.slice(1), "status"],
    stdout: "null",
    stderr: "null",
  }).output();
  return out.code === 0;
}

async function main(): Promise<number> {
  if (Deno.uid() !== 0) {
    console.error("vif demo: the simulated cluster and the TUN device need root");
    console.error("Run it as root: sudo scripts/demo.sh");
    return 1;
  }
  const wasUp = await isUp();
  const vif = (...args: string[]) => [...SIM, "exec", "--", "vif", ...args];
  let connected = false;
  try {
    say("1. A simulated cluster in network namespaces");
    if (wasUp) console.log("  (already up: using it, and leaving it up)");
    else if (await sh("deno task sim up", [...SIM, "up"]) !== 0) return 1;
    await sh("kubectl get pods -A", [...SIM, "exec", "--", "kubectl", "get", "pods", "-A"]);
    await sh(
      "ip route   # the workstation reaches the LAN (and so the API server), not the cluster",
      [...SIM, "exec", "--", "ip", "route"],
    );

    say("2. vif install: the traffic-manager, through the API server");
    // It returns once the traffic-manager is ready: connect can follow at once.
    if (await sh("vif install", vif("install")) !== 0) return 1;

    say("3. vif connect: the daemon starts and connects; the command returns when it is up");
    connected = true;
    if (await sh("vif connect --context vif-sim", vif("connect", "--context", "vif-sim")) !== 0) {
      return 1;
    }

    say("4. The cluster's names and addresses, from the workstation");
    await sh("curl http://web.default/", [
      ...SIM,
      "exec",
      "--",
      "curl",
      "-sS",
      "http://web.default/",
    ]);
    await sh("curl http://web.other/", [...SIM, "exec", "--", "curl", "-sS", "http://web.other/"]);
    await sh("dig +short web.other.svc.cluster.local", [
      ...SIM,
      "exec",
      "--",
      "dig",
      "+short",
      "web.other.svc.cluster.local",
    ]);
    await sh("dig +short SRV _http._tcp.web.default.svc.cluster.local", [
      ...SIM,
      "exec",
      "--",
      "dig",
      "+short",
      "SRV",
      "_http._tcp.web.default.svc.cluster.local",
    ]);
    await sh("ip route show dev vif0", [
      ...SIM,
      "exec",
      "--",
      "ip",
      "route",
      "show",
      "dev",
      "vif0",
    ]);
    await sh("vif status", vif("status"));

    say("5. vif quit: routes, TUN and resolv.conf put back, the daemon stopped");
    connected = false;
    if (await sh("vif quit", vif("quit")) !== 0) return 1;
    await sh("ip route", [...SIM, "exec", "--", "ip", "route"]);
    return 0;
  } finally {
    if (connected) await sh("vif quit --force", vif("quit", "--force"), { quiet: true });
    if (!wasUp) {
      say("6. deno task sim down");
      await sh("deno task sim down", [...SIM, "down"]);
    }
  }
}

if (import.meta.main) Deno.exit(await main());
