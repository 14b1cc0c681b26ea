/**
 * The simulated cluster network, checked with real clients against real
 * servers in pods.
 *
 * ```
 * ┌─ ws 198.19.200.2 ──┐  ┌─ out ───────────────────────┐   LAN 198.19.200.0/24: bridge br0
 * │ curl, dig, socat   │  │ .53 dnsmasq outside.example │   in netns lan
 * │ route: LAN only    │  │ .80 python http "outside"   │
 * │ + exposed /32s     │  └──────────────┬──────────────┘
 * └─────────┬──────────┘                 │
 * ══════════╪════════════════════════════╪═══════════╤═══════════════════════╤════════════
 *                                                    │ .1                    │ .11 (added mid-test)
 * ┌─ node1 ──────────────────────────────────────────┴───────┐  ┌─ node2 ────┴────────────────┐
 * │ nft vif_sim: ClusterIPs in 198.19.0.0/18 → pod IPs       │  │ the same nft table          │
 * │ socat :6443 (stands for the API server, `kubernetes`)    │  │ route 198.18.0.0/24 via .1  │
 * └──┬───────────────────────────────────────────────────────┘  └──┬──────────────────────────┘
 *    │ one routed veth per pod, 198.18.0.0/24                      │ 198.18.1.0/24
 *    ├─ kube-system/kube-dns  dnsmasq (ClusterIP 198.19.0.10)      └─ default/web-2  nginx
 *    ├─ default/web-1, other/web-1  nginx (service web)               (scaled up, then removed)
 *    ├─ default/iperf-1  iperf3 -s, nobody (service iperf)
 *    ├─ default/echo-1  socat UDP echo, nobody (service echo)
 *    ├─ default/db-0, db-1  socat TCP echo, nobody (headless db)
 *    ├─ default/client  curl, dig, socat
 *    └─ vif-system/manager  deno as nobody
 * ```
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "../_assert.ts";
import { Env, ROOT, run } from "../e2e/_env.ts";
import {
  CLUSTER_DNS_IP,
  type ClusterEvent,
  ClusterNet,
  KUBERNETES_SERVICE_IP,
  OUTSIDE_HOST_IP,
  WS_IP,
} from "./cluster_net.ts";
import { addWebPod, deploySamples } from "./workloads.ts";
import { denoForNobody } from "./deno_nobody.ts";

async function ok(
  c: ClusterNet,
  where: string | { netns: string },
  cmd: string[],
  stdin?: string,
  env?: Record<string, string>,
): Promise<string> {
  const ns = typeof where === "string" ? where : where.netns;
  const out = await c.exec(ns, cmd, {
    ...(stdin === undefined ? {} : { stdin }),
    ...(env ? { env } : {}),
  });
  if (out.code !== 0) {
    throw new Error(
      `"${cmd.join(" ")}" in ${ns} failed (${out.code}): ${out.stderr} ${out.stdout}`,
    );
  }
  return out.stdout;
}

function dig(...args: string[]): string[] {
  return ["dig", "+short", "+time=2", "+tries=1", ...args];
}

Deno.test({
  name: "ClusterNet routes pods, DNATs ClusterIPs, serves cluster DNS and isolates the workstation",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const env = await new Env().init();
    let base = "";
    try {
      const c = await ClusterNet.create(env);
      base = c.base;
      const events: ClusterEvent[] = [];
      c.watch((e) => events.push(e));
      const [s, nobody, client, manager] = await Promise.all([
        deploySamples(c),
        denoForNobody(env),
        c.addPod({ namespace: "default", name: "client" }),
        c.addPod({ namespace: "vif-system", name: "manager", labels: { app: "vif-manager" } }),
      ]);
      await Promise.all([client.whenReady, manager.whenReady]);
      const webIP = s.services.web.clusterIP;

      await t.step("a pod has a Kubernetes resolv.conf and a routed /32", async () => {
        const resolv = await ok(c, client, ["cat", "/etc/resolv.conf"]);
        assertEquals(
          resolv,
          "search default.svc.cluster.local svc.cluster.local cluster.local\n" +
            `nameserver ${CLUSTER_DNS_IP}\noptions ndots:5\n`,
        );
        assertMatch(
          await ok(c, client, ["ip", "-4", "addr", "show", "eth0"]),
          /inet 198\.18\.0\.\d+\/32/,
        );
        assertMatch(await ok(c, client, ["ip", "route"]), /default via 198\.18\.0\.1 dev eth0/);
      });

      await t.step("a pod reaches a service by full name, search path and ClusterIP", async () => {
        const full = await ok(c, client, [
          "curl",
          "-sS",
          "--max-time",
          "5",
          "http://web.default.svc.cluster.local/",
        ]);
        assertEquals(full, `pod default/web-1 on node1 ${s.web.ip}\n`);
        assertEquals(await ok(c, client, ["curl", "-sS", "--max-time", "5", "http://web/"]), full);
        assertEquals(
          await ok(c, client, ["curl", "-sS", "--max-time", "5", `http://${webIP}/`]),
          full,
        );
        assertMatch(
          await ok(c, client, ["curl", "-sS", "--max-time", "5", "http://web.other/"]),
          /^pod other\/web-1 /,
        );
        // Hairpin: the only endpoint reaches itself through its own service.
        assertEquals(await ok(c, s.web, ["curl", "-sS", "--max-time", "5", "http://web/"]), full);
      });

      await t.step("a ClusterIP port without a service port is refused at once", async () => {
        const out = await c.exec(client, ["curl", "-sS", "--max-time", "5", `http://${webIP}:81/`]);
        assertEquals(out.code, 7, `curl: ${out.stderr}`); // "Failed to connect"
      });

      await t.step("cluster DNS answers SRV, PTR, headless and pod records", async () => {
        assertEquals(
          await ok(
            c,
            client,
            dig(`@${CLUSTER_DNS_IP}`, "SRV", "_http._tcp.web.default.svc.cluster.local"),
          ),
          "0 100 80 web.default.svc.cluster.local.\n",
        );
        assertEquals(await ok(c, client, dig("-x", webIP)), "web.default.svc.cluster.local.\n");
        assertEquals(
          await ok(c, client, dig("-x", CLUSTER_DNS_IP)),
          "kube-dns.kube-system.svc.cluster.local.\n",
        );
        const dbIPs = s.db.map((p) => p.ip).sort();
        const headless = (await ok(c, client, dig("db.default.svc.cluster.local"))).trim().split(
          "\n",
        );
        assertEquals(headless.sort(), dbIPs);
        assertEquals(
          await ok(c, client, dig("db-0.db.default.svc.cluster.local")),
          `${s.db[0].ip}\n`,
        );
        assertEquals(
          await ok(c, client, dig("-x", s.db[1].ip)),
          "db-1.db.default.svc.cluster.local.\n",
        );
        const srv = (await ok(c, client, dig("SRV", "_postgres._tcp.db.default.svc.cluster.local")))
          .trim().split("\n").sort();
        assertEquals(srv, [
          "0 50 5432 db-0.db.default.svc.cluster.local.",
          "0 50 5432 db-1.db.default.svc.cluster.local.",
        ]);
        const dashed = s.web.ip.replaceAll(".", "-");
        assertEquals(
          await ok(c, client, dig(`${dashed}.default.pod.cluster.local`)),
          `${s.web.ip}\n`,
        );
        assertEquals(
          await ok(c, client, dig("-x", s.web.ip)),
          `${dashed}.web.default.svc.cluster.local.\n`,
        );
        const missing = await ok(c, client, [
          "dig",
          "+time=2",
          "+tries=1",
          "nope.default.svc.cluster.local",
        ]);
        assertMatch(missing, /status: NXDOMAIN/);
      });

      await t.step("headless pods answer by name through the search path", async () => {
        assertEquals(
          await ok(c, client, ["socat", "-t", "2", "-", "TCP:db-0.db:5432"], "ping\n"),
          "ping\n",
        );
        assertEquals(
          await ok(c, client, ["socat", "-t", "2", "-", "TCP:db-1.db:5432"], "pong\n"),
          "pong\n",
        );
      });

      await t.step("UDP echo answers through its ClusterIP and name", async () => {
        const echoIP = s.services.echo.clusterIP;
        assertEquals(
          await ok(c, client, ["socat", "-t", "0.5", "-", `UDP4:${echoIP}:7`], "hello\n"),
          "hello\n",
        );
        assertEquals(
          await ok(c, client, ["socat", "-t", "0.5", "-", "UDP4:echo:7"], "again\n"),
          "again\n",
        );
      });

      await t.step(
        "a pod resolves and reaches outside names (upstream DNS, egress NAT)",
        async () => {
          assertEquals(await ok(c, client, dig("outside.example")), `${OUTSIDE_HOST_IP}\n`);
          assertEquals(
            await ok(c, client, ["curl", "-sS", "--max-time", "5", "http://outside.example/"]),
            "outside\n",
          );
        },
      );

      await t.step(
        "the workstation reaches the cluster only through exposed addresses",
        async () => {
          assertEquals(
            await ok(c, c.ws, ["cat", "/etc/resolv.conf"]),
            "nameserver 198.19.200.53\n",
          );
          assertEquals(await ok(c, c.ws, dig("outside.example")), `${OUTSIDE_HOST_IP}\n`);
          assertEquals(
            await ok(c, c.ws, ["curl", "-sS", "--max-time", "5", "http://outside.example/"]),
            "outside\n",
          );
          assertEquals(await ok(c, c.ws, dig("web.default.svc.cluster.local")), "");
          for (const ip of [s.web.ip, webIP, manager.ip, CLUSTER_DNS_IP]) {
            const r = await c.exec(c.ws, ["ip", "route", "get", ip]);
            assert(
              r.code !== 0 && /unreachable/i.test(r.stderr),
              `ws has a route to ${ip}: ${r.stdout}`,
            );
          }
          await c.exposeToWorkstation(s.web.ip);
          assertMatch(await ok(c, c.ws, ["ip", "route", "get", s.web.ip]), /via 198\.19\.200\.1 /);
          assertEquals(
            await ok(c, c.ws, ["curl", "-sS", "--max-time", "5", `http://${s.web.ip}/`]),
            `pod default/web-1 on node1 ${s.web.ip}\n`,
          );
          const other = await c.exec(c.ws, [
            "curl",
            "-sS",
            "--max-time",
            "2",
            `http://${s.webOther.ip}/`,
          ]);
          assertEquals(other.code, 7, "an unexposed pod must be unreachable");
          const routes = (await ok(c, c.ws, ["ip", "-4", "route"])).trim().split("\n")
            .map((l) => l.trim()).sort();
          assertEquals(routes, [
            `${s.web.ip} via 198.19.200.1 dev eth0`,
            `198.19.200.0/24 dev eth0 proto kernel scope link src ${WS_IP}`,
          ]);
          await c.unexposeFromWorkstation(s.web.ip);
        },
      );

      await t.step(
        "an exposed ClusterIP and a selector-less service reach their targets",
        async () => {
          await c.exposeToWorkstation(webIP);
          assertMatch(
            await ok(c, c.ws, ["curl", "-sS", "--max-time", "5", `http://${webIP}/`]),
            /^pod default\/web-1 /,
          );
          await c.unexposeFromWorkstation(webIP);
          // The shape the fake API server will take: a process on node1, behind `kubernetes`.
          const node1 = c.nodes[0]!;
          const api = c.spawn(node1.netns, [
            "socat",
            `TCP-LISTEN:6443,bind=${node1.ip},fork,reuseaddr`,
            "SYSTEM:echo api",
          ]);
          const svc = await c.addService({
            namespace: "default",
            name: "kubernetes",
            clusterIP: KUBERNETES_SERVICE_IP,
            ports: [{ name: "https", port: 443, targetPort: 6443 }],
            endpoints: [node1.ip],
          });
          assertEquals(svc.clusterIP, KUBERNETES_SERVICE_IP);
          for (let i = 0; i < 100; i++) {
            if ((await ok(c, node1.netns, ["ss", "-Hlnt"])).includes(":6443")) break;
            await new Promise((r) => setTimeout(r, 20));
          }
          assertEquals(
            await ok(c, manager, ["socat", "-t", "2", "-", "TCP:kubernetes.default:443"], ""),
            "api\n",
          );
          assertEquals(
            await ok(c, c.ws, ["socat", "-t", "2", "-", `TCP:${node1.ip}:6443`], ""),
            "api\n",
          );
          await c.removeService("default", "kubernetes");
          await api.stop();
        },
      );

      await t.step(
        "a second node's pod joins the service: endpoints, DNAT and DNS follow",
        async () => {
          const node2 = await c.addNode();
          assertEquals([node2.name, node2.ip, node2.podCIDR], [
            "node2",
            "198.19.200.11",
            "198.18.1.0/24",
          ]);
          const web2 = await addWebPod(c, { namespace: "default", name: "web-2", node: "node2" });
          await web2.whenReady;
          assertMatch(web2.ip, /^198\.18\.1\./);
          assertEquals(c.endpoints("default", "web").map((e) => e.pod), ["web-1", "web-2"]);
          assert(
            events.some((e) => e.kind === "Endpoints" && e.type === "MODIFIED" && e.name === "web"),
            "no Endpoints event for web",
          );
          for (const node of ["node1", "node2"]) {
            assertMatch(await c.nftRuleset(node), /numgen random mod 2 vmap/);
          }
          const seen = await ok(c, client, [
            "sh",
            "-c",
            "for i in $(seq 30); do curl -sS --max-time 5 http://web/; done | sort | uniq -c",
          ]);
          assertMatch(seen, /pod default\/web-1 on node1/);
          assertMatch(seen, /pod default\/web-2 on node2/);
          assertEquals(
            await ok(c, client, dig("-x", web2.ip)),
            `${web2.ip.replaceAll(".", "-")}.web.default.svc.cluster.local.\n`,
          );
          await c.removePod("default", "web-2");
          assertEquals(c.endpoints("default", "web").map((e) => e.pod), ["web-1"]);
          assert(!/numgen/.test(await c.nftRuleset()), "DNAT still balances over a removed pod");
          assertEquals(await ok(c, client, dig("-x", web2.ip)), "");
        },
      );

      await t.step("removing a service removes its DNAT and DNS records", async () => {
        const tmp = await c.addService({
          namespace: "default",
          name: "tmp",
          selector: { app: "web" },
          ports: [{ name: "http", port: 8080, targetPort: 80 }],
        });
        assertMatch(
          await ok(c, client, ["curl", "-sS", "--max-time", "5", "http://tmp:8080/"]),
          /web-1/,
        );
        assertEquals(
          await ok(c, client, dig("tmp.default.svc.cluster.local")),
          `${tmp.clusterIP}\n`,
        );
        assert((await c.nftRuleset()).includes(tmp.clusterIP), "no rule for the new service");
        await c.removeService("default", "tmp");
        assert(!(await c.nftRuleset()).includes(tmp.clusterIP), "the rule outlived its service");
        assertMatch(
          await ok(c, client, ["dig", "+time=2", "+tries=1", "tmp.default.svc.cluster.local"]),
          /status: NXDOMAIN/,
        );
        assertEquals(
          await ok(c, client, dig("SRV", "_http._tcp.tmp.default.svc.cluster.local")),
          "",
        );
        const gone = await c.exec(client, [
          "curl",
          "-sS",
          "--max-time",
          "3",
          `http://${tmp.clusterIP}:8080/`,
        ]);
        assert(gone.code !== 0, "the ClusterIP still answers");
      });

      await t.step("deno runs this repository as nobody in a pod", async () => {
        const version = await ok(
          c,
          manager,
          nobody.run(`${ROOT}/main.ts`, "version"),
          undefined,
          nobody.env,
        );
        assertMatch(version, /^vif \d+\.\d+\.\d+/);
        const uid = await ok(
          c,
          manager,
          [...nobody.cmd, "eval", "console.log(Deno.uid(), Deno.gid())"],
          undefined,
          nobody.env,
        );
        assertEquals(uid, "65534 65534\n");
      });
    } finally {
      await env.cleanup();
    }
    const left = (await run(["ip", "netns", "list"])).stdout.split("\n").filter((l) =>
      base && l.startsWith(base)
    );
    assertEquals(left, [], "namespaces left behind");
    const dirs = (await run(["sh", "-c", `ls -d /etc/netns/${base}-* 2>/dev/null || true`])).stdout
      .trim();
    assertEquals(dirs, "", "/etc/netns directories left behind");
  },
});
