/**
 * `deno task demo`: vif against the simulated cluster, as a user would run it.
 *
 * 1. `deno task sim up`: the cluster (API server, nodes, pods, ClusterIPs,
 *    cluster DNS) in network namespaces, and a workstation `vif-ws` that can
 *    reach only the API server.
 * 2. `vif install`: the traffic-manager, through the API server.
 * 3. `vif connect --context vif-sim`: one port-forward through the API server.
 * 4. From the workstation: `curl http://web.default/`, `dig web.other.svc.cluster.local`,
 *    and the routes vif made.
 * 5. Ctrl-C on `vif connect` (what `vif quit` will do), then `deno task sim down`.
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
  let connect: Deno.ChildProcess | undefined;
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
    if (await sh("vif install", [...SIM, "exec", "--", "vif", "install"]) !== 0) return 1;
    await sh(
      "kubectl -n vif-system wait --for=condition=Available deployment/traffic-manager",
      [
        ...SIM,
        "exec",
        "--",
        "kubectl",
        "-n",
        "vif-system",
        "wait",
        "--for=condition=Available",
        "--timeout=90s",
        "deployment/traffic-manager",
      ],
    );

    say("3. vif connect --context vif-sim (in the background of this demo)");
    console.log("  $ vif connect --context vif-sim &");
    connect = new Deno.Command(SIM[0]!, {
      args: [
        ...SIM.slice(1),
        "exec",
        "--",
        "vif",
        "connect",
        "--foreground",
        "--context",
        "vif-sim",
        "--state-dir",
        "/run/vif-sim/state",
      ],
      stdin: "null",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const lines = connect.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let buffered = "";
    const deadline = Date.now() + 90_000;
    for (;;) {
      const { value, done } = await lines.read();
      if (done || Date.now() > deadline) {
        console.error("vif demo: vif connect did not connect");
        return 1;
      }
      buffered += value;
      let nl;
      let connected = false;
      while ((nl = buffered.indexOf("\n")) >= 0) {
        const line = buffered.slice(0, nl);
        buffered = buffered.slice(nl + 1);
        console.log(`    ${line}`);
        if (/^connected to the traffic-manager/.test(line)) connected = true;
      }
      if (connected) break;
    }
    // Keep echoing what vif says (its teardown, at the end).
    const echo = (async () => {
      for (;;) {
        const { value, done } = await lines.read();
        if (done) break;
        for (const l of value.trimEnd().split("\n")) if (l) console.log(`    ${l}`);
      }
    })();

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

    say("5. Disconnect (Ctrl-C): routes, TUN and resolv.conf put back");
    console.log("  $ kill -INT %1");
    connect.kill("SIGINT");
    await connect.status;
    await echo;
    connect = undefined;
    await sh("ip route", [...SIM, "exec", "--", "ip", "route"]);
    return 0;
  } finally {
    if (connect) {
      try {
        connect.kill("SIGINT");
      } catch { /* ended */ }
      await connect.status;
    }
    if (!wasUp) {
      say("6. deno task sim down");
      await sh("deno task sim down", [...SIM, "down"]);
    }
  }
}

if (import.meta.main) Deno.exit(await main());
