/**
 * Who may use the traffic-manager, in the simulated cluster: only those
 * Kubernetes lets port-forward to it, or who hold a client certificate for
 * its direct listener. Nothing in the pod network reaches its client port,
 * `also_proxy` stays within what the admin allowed, the manager never dials
 * cloud metadata, and a manager whose event loop is stuck is restarted.
 *
 * ```
 *  vif-ws ──WebSocket──► API server ── pods/portforward (RBAC) ──► pod traffic-manager: localhost:8081
 *  vif-ws ──mTLS (client certificate)────────────────────────────► pod IP:8443 (--direct)
 *  a pod, the node ──────────────────────────────────────────────► pod IP:8081, ClusterIP:8081: refused
 *  the kubelet (node) ── GET /livez, /readyz ────────────────────► pod IP:8082
 * ```
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "../_assert.ts";
import { DENO, Env, must, ROOT, run, waitUntil } from "./_env.ts";
import type { KubeObject } from "../sim/apiserver/mod.ts";
import { Sim, SIM_DEV_CONTEXT, SIM_LIMITED_CONTEXT } from "../sim/sim.ts";
import { debianKubectl } from "../sim/apiserver/_testing.ts";

const VIF = [DENO, "run", "-A", "--config", `${ROOT}/deno.json`, `${ROOT}/main.ts`];
const MANAGER = "app.kubernetes.io/name=traffic-manager";
/** What `vif install` is asked for in every step (its flags say the state wanted). */
const INSTALL = [
  "install",
  "--context",
  "vif-sim",
  "--direct",
  "--allow-also-proxy",
  "198.19.200.0/24",
  "--allow-also-proxy",
  "169.254.169.254/32",
];

function podIp(o: KubeObject | undefined): string {
  const ip = (o?.status as { podIP?: string } | undefined)?.podIP;
  if (!ip) throw new Error(`no pod IP: ${JSON.stringify(o)}`);
  return ip;
}

/** Checks that an error is the two lines the CLI promises: what happened, what to do. */
function twoLines(stderr: string): [string, string] {
  const lines = stderr.trimEnd().split("\n");
  assertEquals(lines.length, 2, stderr);
  return lines as [string, string];
}

Deno.test({
  name: "the traffic-manager serves only those Kubernetes allows, and dials only where it may",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const env = await new Env().init();
    try {
      const sim = await Sim.start(env, { samples: true });
      const install = await sim.exec([...VIF, ...INSTALL]);
      assertEquals(install.code, 0, install.stderr);
      const manager = (await sim.waitReady("vif-system", MANAGER, 1, 90_000))[0]!;
      const managerIp = podIp(manager);
      const serviceIp = (sim.store.get({
        resource: "services",
        namespace: "vif-system",
        name: "traffic-manager",
      })?.spec as { clusterIP: string }).clusterIP;
      const web = sim.store.list("pods", { namespace: "default", labelSelector: "app=web" })[0]!;
      const webNetns = sim.pod("default", web.metadata.name!)!.netns;
      const nodeNetns = sim.net.nodes[0]!.netns;
      const ca = `${env.dir}/manager-ca.crt`;
      const configMap = sim.store.get({
        resource: "configmaps",
        namespace: "vif-system",
        name: "traffic-manager-ca",
      }) as KubeObject & { data: Record<string, string> };
      await Deno.writeTextFile(ca, configMap.data["ca.crt"]!);

      const connectFails = async (args: string[]) => {
        const r = await sim.exec([
          ...VIF,
          "connect",
          "--foreground",
          "--state-dir",
          `${env.dir}/state-fail`,
          ...args,
        ]);
        assertEquals(r.code, 1, r.stdout + r.stderr);
        assertEquals(
          (await must(["ip", "-o", "link", "show", "type", "tun"], { ns: sim.ws })).trim(),
          "",
        );
        return twoLines(r.stderr);
      };
      const connected = async (args: string[], check: (lines: string[]) => Promise<void>) => {
        const p = sim.spawn([
          ...VIF,
          "connect",
          "--foreground",
          "--state-dir",
          `${env.dir}/state`,
          ...args,
        ]);
        try {
          await p.waitFor(/^connected to the traffic-manager/, 60_000);
          await check(p.lines);
        } finally {
          await p.stop(10_000);
        }
      };
      const curlWeb = () =>
        must(["curl", "-sS", "--max-time", "10", "http://web.default/"], { ns: sim.ws });

      await t.step("a pod and the node get nothing on the manager's client port", async () => {
        for (const ns of [webNetns, nodeNetns]) {
          for (const ip of [managerIp, serviceIp]) {
            const r = await run(
              ["socat", "-u", "/dev/null", `TCP:${ip}:8081,connect-timeout=3`],
              { ns },
            );
            assert(r.code !== 0, `${ns} reached ${ip}:8081`);
            // Closed, not just filtered: nothing listens there on the pod network. (The node
            // has no route to ClusterIPs of its own; kube-proxy's rules serve the pods.)
            assertMatch(
              `${ns} → ${ip}:8081: ${r.stderr}`,
              ns === nodeNetns && ip === serviceIp
                ? /Connection refused|Network is unreachable/
                : /Connection refused/,
            );
          }
          // The kubelet's probes reach the health port, which says only that.
          const live = await must(
            ["curl", "-sS", "--max-time", "5", `http://${managerIp}:8082/livez`],
            { ns },
          );
          assertEquals(live, "ok\n");
          // The direct port asks for a client certificate before anything else.
          const direct = await run([
            "curl",
            "-sS",
            "--max-time",
            "5",
            "--cacert",
            ca,
            "--connect-to",
            `traffic-manager.vif-system:8443:${managerIp}:8443`,
            "https://traffic-manager.vif-system:8443/",
          ], { ns });
          // TLS 1.3: the server checks the (missing) certificate after its Finished, then
          // sends an alert or just closes; either way not a byte of HTTP comes back.
          assert(direct.code !== 0, direct.stdout);
          assertEquals(direct.stdout, "");
        }
      });

      await t.step(
        "a user without pods/portforward in vif-system gets two lines naming it",
        async () => {
          const [what, todo] = await connectFails(["--context", SIM_LIMITED_CONTEXT]);
          assertMatch(
            what,
            /^vif: not allowed to port-forward to pods in namespace "vif-system" \(create, get pods\/portforward\)$/,
          );
          assertMatch(todo, /vif install --grant-user limited/);
        },
      );

      await t.step("a user with nothing granted yet is told what to ask for", async () => {
        const [what, todo] = await connectFails(["--context", SIM_DEV_CONTEXT]);
        assertMatch(what, /^vif: not allowed to .* in (namespace )?"vif-system"/);
        assertMatch(todo, /vif install --grant-user dev/);
      });

      await t.step(
        "with the vif-user Role (no Secret access) that user connects and works",
        async () => {
          const grant = await sim.exec([...VIF, ...INSTALL, "--grant-user", "dev"]);
          assertEquals(grant.code, 0, grant.stderr);
          assertMatch(grant.stdout, /rolebinding\.rbac\.authorization\.k8s\.io\/vif-user created/);
          const kubectl = await debianKubectl();
          const secrets = await sim.exec([
            kubectl,
            "--context",
            SIM_DEV_CONTEXT,
            "-n",
            "vif-system",
            "get",
            "secrets",
          ]);
          assertEquals(secrets.code, 1);
          assertMatch(secrets.stderr, /User "dev" cannot list resource "secrets"/);
          await connected(["--context", SIM_DEV_CONTEXT], async () => {
            assertMatch(await curlWeb(), /^pod web-\S+ 198\.18\./);
          });
        },
      );

      await t.step(
        "--also-proxy outside what the admin allows is refused, naming the setting",
        async () => {
          const [what, todo] = await connectFails([
            "--context",
            "vif-sim",
            "--also-proxy",
            "198.19.201.0/24",
          ]);
          assertEquals(
            what,
            'vif: the traffic-manager refused --also-proxy: also_proxy "198.19.201.0/24" is outside ' +
              "the subnets the cluster admin allows (--allow-also-proxy of the traffic-manager: " +
              "198.19.200.0/24, 169.254.169.254/32)",
          );
          assertMatch(todo, /vif install --allow-also-proxy CIDR/);
        },
      );

      await t.step(
        "cloud metadata is never dialed, even routed by an allowed --also-proxy",
        async () => {
          await connected(
            ["--context", "vif-sim", "--also-proxy", "169.254.169.254/32"],
            async (lines) => {
              const route = await must(["ip", "route", "get", "169.254.169.254"], { ns: sim.ws });
              assertMatch(route, /dev vif0/);
              const t0 = performance.now();
              const r = await run(
                ["curl", "-sS", "--max-time", "10", "http://169.254.169.254/latest/meta-data/"],
                { ns: sim.ws },
              );
              assert(r.code !== 0, r.stdout);
              assert(performance.now() - t0 < 5000, "refused at once, not timed out");
              await waitUntil(
                () =>
                  lines.some((l) =>
                    /the traffic-manager refused tcp 169\.254\.169\.254:80/.test(l)
                  ),
                10_000,
                "the refusal in the log",
              );
              assertMatch(
                lines.find((l) => /refused tcp 169\.254\.169\.254:80/.test(l))!,
                /^mux: the traffic-manager refused tcp 169\.254\.169\.254:80: destination "169\.254\.169\.254" is a link-local address \(cloud metadata lives there\)$/,
              );
              // The session goes on.
              assertMatch(await curlWeb(), /^pod web-/);
            },
          );
        },
      );

      await t.step(
        "a direct client without a client certificate is refused; with one it connects",
        async () => {
          await sim.net.exposeToWorkstation(managerIp);
          try {
            const certs = `${env.dir}/client`;
            const issued = await sim.exec([...VIF, "client-cert", "trust-test", "--out", certs]);
            assertEquals(issued.code, 0, issued.stderr);
            const direct = [
              "--manager-address",
              `${managerIp}:8443`,
              "--manager-ca",
              `${certs}/ca.crt`,
            ];
            const [what, todo] = await connectFails(direct);
            const at = `"${managerIp.replaceAll(".", "\\.")}:8443"`;
            assertMatch(
              what,
              new RegExp(
                `^vif: (the traffic-manager at ${at} refused this client's certificate|cannot reach the traffic-manager at ${at}): `,
                "i",
              ),
            );
            assertMatch(todo, /pass --client-cert and --client-key/);
            await connected([
              ...direct,
              "--client-cert",
              `${certs}/client.crt`,
              "--client-key",
              `${certs}/client.key`,
            ], async () => {
              assertMatch(await curlWeb(), /^pod web-/);
            });
          } finally {
            await sim.net.unexposeFromWorkstation(managerIp);
          }
        },
      );

      await t.step(
        "a manager whose event loop is stuck fails its liveness probe and is restarted",
        async () => {
          const name = manager.metadata.name!;
          const netns = sim.pod("vif-system", name)!.netns;
          const pids = (await must(["ip", "netns", "pids", netns])).trim().split(/\s+/);
          // SIGSTOP holds the whole process still, as a loop that never yields would.
          for (const pid of pids) await run(["kill", "-STOP", pid]);
          try {
            const stuck = await run(
              ["curl", "-sS", "--max-time", "3", `http://${managerIp}:8082/livez`],
              { ns: nodeNetns },
            );
            assert(stuck.code !== 0, `a stuck manager answered: ${stuck.stdout}`);
            await waitUntil(
              () => {
                const status = sim.store.get({ resource: "pods", namespace: "vif-system", name })
                  ?.status as { containerStatuses?: Array<{ restartCount?: number }> } | undefined;
                return (status?.containerStatuses?.[0]?.restartCount ?? 0) >= 1;
              },
              120_000,
              "the manager's container restarted",
              500,
            );
          } finally {
            for (const pid of pids) await run(["kill", "-CONT", pid]);
          }
          assert(
            sim.kubelet.events("vif-system", name).some((e) =>
              e.reason === "Unhealthy" && /^Liveness probe failed/.test(e.message)
            ),
            JSON.stringify(sim.kubelet.events("vif-system", name)),
          );
          await sim.waitReady("vif-system", MANAGER, 1, 90_000);
          await connected(["--context", "vif-sim"], async () => {
            assertMatch(await curlWeb(), /^pod web-/);
          });
        },
      );
    } finally {
      await env.cleanup();
    }
  },
});
