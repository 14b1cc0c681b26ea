/**
 * `vif agent-init`: the nftables script it writes, its failures, and the
 * real thing in a pod's network namespace, run as the init container runs
 * (`vif agent-init` with `VIF_AGENT_CONFIG`, as root):
 *
 * ```
 * ┌ vif-ai-client-… ─────┐  veth   ┌ vif-ai-pod-… ─────────────────────────────────────┐
 * │ c0 198.18.0.1/30     ├─────────┤ p0 198.18.0.2/30                                  │
 * │ socat → 198.18.0.2:… │         │ nft table inet vif_agent (iif != lo):             │
 * └──────────────────────┘         │   tcp 8080 → 9900 (redirect); 8081 taken by name  │
 *                                  │ socat "app" :8080, "app2" :8081, "agent" :9900    │
 *                                  └───────────────────────────────────────────────────┘
 * ```
 *
 * @module
 */

import { assert, assertEquals, assertRejects } from "../tests/_assert.ts";
import { canMakeNetns, withNetns } from "../tests/_netns.ts";
import { type AgentConfig, encodeAgentConfig } from "../mod/kube/agent_config.ts";
import { AgentInitError, installRedirects, NFT_TABLE, redirectRuleset } from "./init.ts";

const CONFIG: AgentConfig = {
  version: 1,
  manager: {
    host: "traffic-manager.vif-system",
    port: 8083,
    serverName: "traffic-manager.vif-system",
    caPem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
  },
  workload: { kind: "Deployment", name: "web" },
  container: "web",
  ports: [
    { containerPort: 8080, agentPort: 9900, takeover: "redirect" },
    { name: "metrics", containerPort: 8081, agentPort: 9901, takeover: "name" },
  ],
  mounts: [],
};

Deno.test("redirectRuleset() replaces the agent's table with a redirect per port taken by number", () => {
  assertEquals(
    redirectRuleset([
      ...CONFIG.ports,
      { containerPort: 443, agentPort: 9902, takeover: "redirect" },
    ]),
    [
      "table inet vif_agent",
      "delete table inet vif_agent",
      "table inet vif_agent {",
      "  chain prerouting {",
      "    type nat hook prerouting priority -100; policy accept;",
      '    iifname != "lo" tcp dport 8080 redirect to :9900',
      '    iifname != "lo" tcp dport 443 redirect to :9902',
      "  }",
      "}",
      "",
    ].join("\n"),
  );
  assertEquals(redirectRuleset([CONFIG.ports[1]!]), undefined);
});

Deno.test("installRedirects() needs no nft when no port is taken by number", async () => {
  const lines: string[] = [];
  const n = await installRedirects(
    { ...CONFIG, ports: [CONFIG.ports[1]!] },
    { nft: ["/nonexistent/nft"], log: (line) => lines.push(line) },
  );
  assertEquals(n, 0);
  assertEquals(lines, ["agent-init: no port is taken by number; nothing to redirect"]);
});

Deno.test("installRedirects() says what to do when nft is missing or fails", async () => {
  const missing = await assertRejects(
    () => installRedirects(CONFIG, { nft: ["/nonexistent/nft"] }),
    AgentInitError,
    'the "/nonexistent/nft" program is not in the image',
  );
  assert((missing as AgentInitError).hint.includes("nftables"));
  const failed = await assertRejects(
    () =>
      installRedirects(CONFIG, {
        nft: ["sh", "-c", "echo 'Operation not permitted' >&2; exit 1", "nft"],
      }),
    AgentInitError,
    "nft failed (exit code 1): Operation not permitted",
  );
  assert((failed as AgentInitError).hint.includes("NET_ADMIN"));
});

// --- in a network namespace ---------------------------------------------------------

const POD_IP = "198.18.0.2";

async function run(args: string[], env: Record<string, string> = {}): Promise<Deno.CommandOutput> {
  return await new Deno.Command(args[0]!, {
    args: args.slice(1),
    env,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
}

async function must(args: string[]): Promise<string> {
  const out = await run(args);
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`"${args.join(" ")}" failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return text;
}

/** What a TCP server at `host:port` says, seen from `netns`; "" when nothing answers. */
async function ask(netns: string, host: string, port: number): Promise<string> {
  const out = await run([
    "ip",
    "netns",
    "exec",
    netns,
    "socat",
    "-T",
    "2",
    "-",
    `TCP:${host}:${port},connect-timeout=2`,
  ]);
  return new TextDecoder().decode(out.stdout).trim();
}

Deno.test({
  name: "vif agent-init redirects a port taken by number to the agent, from outside the pod only",
  ignore: !canMakeNetns(),
  fn: async () => {
    await withNetns("vif-ai-client", (client) =>
      withNetns("vif-ai-pod", async (pod) => {
        await must([
          "ip",
          "-n",
          client,
          "link",
          "add",
          "c0",
          "type",
          "veth",
          "peer",
          "name",
          "p0",
          "netns",
          pod,
        ]);
        await must(["ip", "-n", client, "addr", "add", "198.18.0.1/30", "dev", "c0"]);
        await must(["ip", "-n", pod, "addr", "add", `${POD_IP}/30`, "dev", "p0"]);
        await must(["ip", "-n", client, "link", "set", "c0", "up"]);
        await must(["ip", "-n", pod, "link", "set", "p0", "up"]);
        const servers = [
          [8080, "app"],
          [8081, "app2"],
          [9900, "agent"],
        ].map(([port, says]) =>
          new Deno.Command("ip", {
            args: [
              "netns",
              "exec",
              pod,
              "socat",
              `TCP-LISTEN:${port},fork,reuseaddr`,
              `SYSTEM:echo ${says}`,
            ],
            stdin: "null",
            stdout: "null",
            stderr: "null",
          }).spawn()
        );
        try {
          for (const port of [8080, 8081, 9900]) {
            for (let i = 0; (await ask(pod, "127.0.0.1", port)) === ""; i++) {
              if (i > 50) throw new Error(`Nothing listens on ${port} in the pod`);
              await new Promise((resolve) => setTimeout(resolve, 20));
            }
          }
          assertEquals(await ask(client, POD_IP, 8080), "app", "before agent-init");

          // As the init container runs it, twice (a restarted pod): the same table.
          for (let i = 0; i < 2; i++) {
            const out = await run([
              "ip",
              "netns",
              "exec",
              pod,
              Deno.execPath(),
              "run",
              "-A",
              "--no-check",
              new URL("../main.ts", import.meta.url).pathname,
              "agent-init",
            ], {
              VIF_AGENT_CONFIG: encodeAgentConfig(CONFIG),
              PATH: Deno.env.get("PATH") ?? "/usr/sbin:/usr/bin",
            });
            const stderr = new TextDecoder().decode(out.stderr);
            assert(out.success, `agent-init failed: ${stderr}`);
            assertEquals(
              stderr,
              `agent-init: redirected 8080→9900 (nftables table inet ${NFT_TABLE})\n`,
            );
          }
          const table = await must([
            "ip",
            "netns",
            "exec",
            pod,
            "nft",
            "list",
            "table",
            "inet",
            NFT_TABLE,
          ]);
          assertEquals(
            table.split("\n").filter((l) => l.includes("redirect")).map((l) => l.trim()),
            [
              'iifname != "lo" tcp dport 8080 redirect to :9900',
            ],
          );

          // From outside the pod: the agent. From inside, on loopback or the pod's own IP: the app.
          assertEquals(await ask(client, POD_IP, 8080), "agent");
          assertEquals(await ask(pod, "127.0.0.1", 8080), "app");
          assertEquals(await ask(pod, POD_IP, 8080), "app");
          // The port taken by name is left alone.
          assertEquals(await ask(client, POD_IP, 8081), "app2");
        } finally {
          for (const server of servers) {
            try {
              server.kill("SIGKILL");
            } catch {
              // Exited already.
            }
            await server.status;
          }
        }
      }));
  },
});
