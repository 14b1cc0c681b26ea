/**
 * `vif install` and `vif connect --context vif-sim` end to end through the
 * simulated cluster's API server: discovery of the manager, its CA from its
 * ConfigMap, one WebSocket port-forward carrying the gRPC connection, CIDR
 * discovery in the manager (with RBAC as installed), and the whole
 * workstation suite of the tunnel test over that path; then the errors a
 * user meets on the way (not installed, not allowed, unreachable).
 *
 * ```
 *  vif-ws: vif connect ──WebSocket──► 198.19.200.1:6443 (API server) ──► pod traffic-manager: localhost:8081
 *          routes 198.18.0.0/24, 198.19.0.0/18 → vif0            (vif --serve as uid 65532,
 *          resolv.conf → 240.0.0.2                                  discovering through its SA token)
 * ```
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "../_assert.ts";
import { DENO, Env, iperfGbits, must, ROOT, run, waitUntil } from "./_env.ts";
import { workstationSuite } from "./_suite.ts";
import type { KubeObject } from "../sim/apiserver/mod.ts";
import { API_IP, Sim, SIM_LIMITED_CONTEXT } from "../sim/sim.ts";
import { debianKubectl } from "../sim/apiserver/_testing.ts";

const VIF = [DENO, "run", "-A", "--config", `${ROOT}/deno.json`, `${ROOT}/main.ts`];
const MANAGER = "app.kubernetes.io/name=traffic-manager";

interface PodStatus {
  podIP?: string;
  hostIP?: string;
}

function ipOf(o: KubeObject | undefined): string {
  const ip = (o?.status as PodStatus | undefined)?.podIP;
  if (!ip) throw new Error(`no pod IP: ${JSON.stringify(o)}`);
  return ip;
}

function clusterIpOf(sim: Sim, namespace: string, name: string): string {
  const s = sim.store.get({ resource: "services", namespace, name });
  return (s?.spec as { clusterIP: string }).clusterIP;
}

Deno.test({
  name: "vif install, then vif connect --context reaches the cluster through the API server",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const env = await new Env().init();
    try {
      const sim = await Sim.start(env, { samples: true });
      const ws = sim.ws;

      await t.step("vif install makes the manager; a second install changes nothing", async () => {
        // --direct: the manager also serves clients with a certificate (the last steps use it).
        const first = await sim.exec([...VIF, "install", "--context", "vif-sim", "--direct"]);
        assertEquals(first.code, 0, first.stderr);
        assertMatch(first.stdout, /deployment\.apps\/traffic-manager created/);
        assertMatch(first.stdout, /clusterrolebinding\.rbac\.authorization\.k8s\.io\/\S+ created/);
        await sim.waitReady("vif-system", MANAGER, 1, 90_000);
        const second = await sim.exec([...VIF, "install", "--context", "vif-sim", "--direct"]);
        assertEquals(second.code, 0, second.stderr);
        assertMatch(second.stdout, /deployment\.apps\/traffic-manager unchanged/);
        assert(!/ created| configured/.test(second.stdout), second.stdout);
      });

      const resolvConf = `/etc/netns/${ws}/resolv.conf`;
      const originalResolv = await Deno.readFile(resolvConf);
      const connect = sim.spawn([
        ...VIF,
        "connect",
        "--foreground",
        "--context",
        "vif-sim",
        "--state-dir",
        `${env.dir}/state`,
      ]);
      await connect.waitFor(/^connected to the traffic-manager/, 60_000);
      assert(
        connect.lines.some((l) => /^port-forwarding to vif-system\/traffic-manager-/.test(l)),
        connect.lines.join("\n"),
      );

      const pods = (ns: string, selector: string) =>
        sim.store.list("pods", { namespace: ns, labelSelector: selector });
      const web = pods("default", "app=web")[0]!;
      const webOther = pods("other", "app=web")[0]!;
      const db = ["db-0", "db-1"].map((n) =>
        ipOf(sim.store.get({ resource: "pods", namespace: "default", name: n }))
      ) as [string, string];
      const large = {
        path: `${sim.net.dir}/files/100m`,
        urlPath: "/100m",
        size: 100 * 1048576,
      };
      const escape = (s: string) => s.replaceAll(".", "\\.");

      await workstationSuite(t, {
        ws,
        via: "the port-forward",
        webIp: clusterIpOf(sim, "default", "web"),
        webPodIp: ipOf(web),
        webDefault: new RegExp(`^pod ${web.metadata.name} ${escape(ipOf(web))}$`, "m"),
        webOther: new RegExp(`^pod ${webOther.metadata.name} ${escape(ipOf(webOther))}$`, "m"),
        dbIps: db,
        echoIp: clusterIpOf(sim, "default", "echo"),
        iperfIp: ipOf(pods("default", "app=iperf")[0]),
        large,
        dir: env.dir,
        managerPings: false,
        expose: (ip) => sim.net.exposeToWorkstation(ip),
        unexpose: (ip) => sim.net.unexposeFromWorkstation(ip),
      });

      await t.step("kubectl sees what vif sees, through the same API server", async () => {
        const kubectl = await debianKubectl();
        const out = await sim.exec([kubectl, "get", "pods", "-n", "vif-system", "-o", "wide"]);
        assertEquals(out.code, 0, out.stderr);
        assertMatch(out.stdout, /traffic-manager-\S+\s+1\/1\s+Running/);
      });

      await t.step(
        "a new node's subnet is pushed to the workstation, and its pods answer",
        async () => {
          const node = await sim.addNode();
          const probe = node.gateway.replace(/\.1$/, ".200");
          await waitUntil(
            async () =>
              (await run(["ip", "route", "get", probe], { ns: ws })).stdout.includes("dev vif0"),
            30_000,
            `a route to ${node.podCIDR} through vif0`,
            200,
          );
          const kubectl = await debianKubectl();
          const patch = await sim.exec([
            kubectl,
            "patch",
            "deployment",
            "web",
            "-n",
            "default",
            "-p",
            '{"spec":{"replicas":2}}',
          ]);
          assertEquals(patch.code, 0, patch.stderr);
          const ready = await sim.waitReady("default", "app=web", 2);
          const fresh = ready.find((p) => (p.spec as { nodeName?: string }).nodeName === node.name);
          assert(fresh, `no web pod on ${node.name}: ${JSON.stringify(ready.map((p) => p.spec))}`);
          assertMatch(
            await must(["curl", "-sS", "--max-time", "10", `http://${ipOf(fresh)}/`], { ns: ws }),
            new RegExp(`^pod ${fresh.metadata.name} ${escape(ipOf(fresh))}$`, "m"),
          );
          const routes = await must(["ip", "route", "show", "dev", "vif0"], { ns: ws });
          console.log(`e2e: routes after node2 joined: ${routes.trim().replaceAll("\n", "; ")}`);
        },
      );

      await t.step(
        "iperf3, one flow: through the port-forward, next to the manager's port directly",
        async () => {
          const iperfIp = ipOf(pods("default", "app=iperf")[0]);
          const viaApi = iperfGbits(
            await must(["iperf3", "-J", "-t", "5", "-c", iperfIp], { ns: ws }),
          );
          await connect.stop(10_000);
          // The direct-manager path of the tunnel test: the manager pod's /32 routed to ws,
          // its direct listener, a client certificate issued by the admin.
          const manager = (await sim.waitReady("vif-system", MANAGER))[0]!;
          await sim.net.exposeToWorkstation(ipOf(manager));
          const certs = `${env.dir}/client`;
          const issued = await sim.exec([...VIF, "client-cert", "e2e", "--out", certs]);
          assertEquals(issued.code, 0, issued.stderr);
          const direct = sim.spawn([
            ...VIF,
            "connect",
            "--foreground",
            "--manager-address",
            `${ipOf(manager)}:8443`,
            "--manager-ca",
            `${certs}/ca.crt`,
            "--client-cert",
            `${certs}/client.crt`,
            "--client-key",
            `${certs}/client.key`,
            "--state-dir",
            `${env.dir}/state-direct`,
          ]);
          await direct.waitFor(/^connected to the traffic-manager/, 60_000);
          const viaManager = iperfGbits(
            await must(["iperf3", "-J", "-t", "5", "-c", iperfIp], { ns: ws }),
          );
          await direct.stop(10_000);
          await sim.net.unexposeFromWorkstation(ipOf(manager));
          console.log(
            `e2e: iperf3 single flow: through the API server's port-forward ${
              viaApi.toFixed(2)
            } Gbit/s; to the manager's port directly ${viaManager.toFixed(2)} Gbit/s`,
          );
          assert(viaApi > 0.01 && viaManager > 0.01);
        },
      );

      await t.step("after quit: no TUN, no routes, resolv.conf as it was", async () => {
        await connect.stop(10_000);
        assert(
          connect.lines.some((l) => /disconnected/.test(l)),
          [...connect.lines.slice(-5), ...connect.errLines.slice(-20)].join("\n"),
        );
        assertEquals(
          (await must(["ip", "-o", "link", "show", "type", "tun"], { ns: ws })).trim(),
          "",
        );
        const routes = await must(["ip", "route", "show"], { ns: ws });
        assert(!/ dev vif0/.test(routes), routes);
        assertEquals(await Deno.readFile(resolvConf), originalResolv);
      });

      await t.step(
        "the manager gone past --grace ends connect --foreground with a clear error, all put back",
        async () => {
          await sim.waitReady("vif-system", MANAGER);
          const again = sim.spawn([
            ...VIF,
            "connect",
            "--foreground",
            "--context",
            "vif-sim",
            "--grace",
            "3",
            "--state-dir",
            `${env.dir}/state-drop`,
          ]);
          await again.waitFor(/^connected to the traffic-manager/, 60_000);
          const scale = (n: number) => sim.scale("vif-system", "traffic-manager", n);
          assertEquals((await scale(0)).code, 0);
          try {
            const status = await Promise.race([
              again.child.status,
              new Promise<undefined>((r) => setTimeout(() => r(undefined), 40_000)),
            ]);
            assert(status, "vif connect kept running with no manager past its grace period");
            assertEquals(status.code, 1);
            await again.stop();
            const err = again.errLines.join("\n");
            assertMatch(
              err,
              /vif: lost the traffic-manager \(vif-system\/traffic-manager-\S+\) for more than 3 s: disconnected, and everything put back/,
            );
            assertMatch(
              err,
              /^Check it with `kubectl -n vif-system get pods`, then run `vif connect` again\.$/m,
            );
            assertEquals(
              (await must(["ip", "-o", "link", "show", "type", "tun"], { ns: ws })).trim(),
              "",
            );
            assertEquals(await Deno.readFile(resolvConf), originalResolv);
          } finally {
            assertEquals((await scale(1)).code, 0);
          }
        },
      );
    } finally {
      await env.cleanup();
    }
  },
});

Deno.test({
  name: "vif connect --context says what went wrong and what to do",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const env = await new Env().init();
    try {
      const sim = await Sim.start(env);
      const connect = async (args: string[], kubeconfig = sim.kubeconfig) => {
        const t0 = performance.now();
        const out = await sim.exec(
          [...VIF, "connect", "--foreground", "--state-dir", `${env.dir}/state`, ...args],
          { env: { KUBECONFIG: kubeconfig } },
        );
        return { ...out, ms: performance.now() - t0 };
      };

      await t.step("no manager: it says to run vif install", async () => {
        const r = await connect(["--context", "vif-sim"]);
        assertEquals(r.code, 1, r.stderr);
        assertMatch(r.stderr, /the traffic-manager is not installed in namespace "vif-system"/);
        assertMatch(r.stderr, /vif install/);
        assert(!/\n\s+at /.test(r.stderr), `a stack trace: ${r.stderr}`);
      });

      // The admin lets sessions route the LAN's 198.19.200.0/24 through the manager (--also-proxy).
      const install = await sim.exec([
        ...VIF,
        "install",
        "--context",
        "vif-sim",
        "--allow-also-proxy",
        "198.19.200.0/24",
      ]);
      assertEquals(install.code, 0, install.stderr);
      await sim.waitReady("vif-system", MANAGER, 1, 90_000);

      await t.step(
        "vif list shows the manager's Service and Deployment with addresses",
        async () => {
          const json = await sim.exec([...VIF, "list", "-n", "vif-system", "-o", "json"]);
          assertEquals(json.code, 0, json.stderr);
          const l = JSON.parse(json.stdout);
          const svc = l.services.find((s: { name: string }) => s.name === "traffic-manager");
          assertEquals(svc.ports, [
            { name: "grpc", port: 8081, protocol: "TCP" },
            { name: "agent", port: 8083, protocol: "TCP" },
          ]);
          assertMatch(svc.clusterIP, /^198\.19\./);
          assertEquals(svc.ready, 1);
          const [w] = l.workloads;
          assertEquals([w.kind, w.name, w.desired, w.pods[0].ready], [
            "Deployment",
            "traffic-manager",
            1,
            true,
          ]);
          const text = await sim.exec([...VIF, "list", "-n", "kube-system"]);
          assertMatch(
            text.stdout,
            /kube-dns\s+ClusterIP\s+198\.19\.0\.10\s+53\/UDP \(dns\), 53\/TCP \(dns-tcp\)\s+1/,
          );
        },
      );

      await t.step("a user without pods/portforward: it names the permission", async () => {
        const r = await connect(["--context", SIM_LIMITED_CONTEXT]);
        assertEquals(r.code, 1, r.stderr);
        assertMatch(r.stderr, /not allowed to port-forward to pods in namespace "vif-system"/);
        assertMatch(r.stderr, /pods\/portforward/);
      });

      await t.step(
        "an API server nobody answers for: a bounded wait, the address named",
        async () => {
          const text = await Deno.readTextFile(sim.kubeconfig);
          const dead = `${env.dir}/dead-kubeconfig`;
          // An address on the workstation's LAN where nothing lives: ARP gets no answer.
          await Deno.writeTextFile(
            dead,
            text.replace(`https://${API_IP}:6443`, "https://198.19.200.99:6443"),
          );
          const r = await connect(["--context", "vif-sim"], dead);
          assertEquals(r.code, 1, r.stderr);
          assertMatch(r.stderr, /cannot reach the API server at "https:\/\/198\.19\.200\.99:6443"/);
          assert(r.ms < 30_000, `took ${r.ms} ms`);
          console.log(`e2e: unreachable API server reported after ${(r.ms / 1000).toFixed(1)} s`);
        },
      );

      await t.step("a closed port on the API server's address: refused, at once", async () => {
        const text = await Deno.readTextFile(sim.kubeconfig);
        const closed = `${env.dir}/closed-kubeconfig`;
        await Deno.writeTextFile(closed, text.replace(`:6443`, ":6444"));
        const r = await connect(["--context", "vif-sim"], closed);
        assertEquals(r.code, 1, r.stderr);
        assertMatch(
          r.stderr,
          /cannot reach the API server at "https:\/\/198\.19\.200\.1:6444".*refused/i,
        );
      });

      await t.step("a route over a cluster subnet fails the connect, naming both", async () => {
        // A "VPN" route into the pods' subnet, as a corporate VPN might add.
        await must(["ip", "route", "add", "198.18.0.128/25", "via", API_IP], { ns: sim.ws });
        const r = await connect(["--context", "vif-sim"]);
        assertEquals(r.code, 1, r.stderr);
        assertMatch(
          r.stderr,
          /the cluster's pod subnet 198\.18\.0\.0\/24 overlaps the route "198\.18\.0\.128\/25 via 198\.19\.200\.1 dev eth0" on this machine/,
        );
        assertMatch(r.stderr, /--never-proxy 198\.18\.0\.128\/25/);
        assertMatch(r.stderr, /--allow-conflicting-subnets 198\.18\.0\.128\/25/);
        assertEquals(
          (await must(["ip", "-o", "link", "show", "type", "tun"], { ns: sim.ws })).trim(),
          "",
        );
      });

      const connected = async (flags: string[], check: () => Promise<void>) => {
        const p = sim.spawn([
          ...VIF,
          "connect",
          "--foreground",
          "--context",
          "vif-sim",
          ...flags,
          "--state-dir",
          `${env.dir}/state-flags`,
        ]);
        try {
          await p.waitFor(/^connected to the traffic-manager/, 60_000);
          await check();
        } finally {
          await p.stop(10_000);
        }
      };
      const via = async (ip: string) =>
        (await must(["ip", "route", "get", ip], { ns: sim.ws })).trim();

      await t.step("--never-proxy keeps that route and routes the rest of the subnet", async () => {
        await connected(["--never-proxy", "198.18.0.128/25"], async () => {
          assertMatch(await via("198.18.0.130"), /via 198\.19\.200\.1 dev eth0/);
          assertMatch(await via("198.18.0.5"), /dev vif0/);
          assertMatch(await via("198.19.1.1"), /dev vif0/);
        });
      });

      await t.step("--allow-conflicting-subnets routes the subnet over it", async () => {
        await connected(["--allow-conflicting-subnets", "198.18.0.128/25"], async () => {
          assertMatch(await via("198.18.0.5"), /dev vif0/);
          // The machine's more specific route still holds its part (longest prefix wins).
          assertMatch(await via("198.18.0.130"), /dev eth0/);
        });
        await must(["ip", "route", "del", "198.18.0.128/25"], { ns: sim.ws });
      });

      await t.step("--also-proxy sends a subnet outside the cluster through it", async () => {
        await connected(["--also-proxy", "198.19.200.80/32"], async () => {
          // More specific than the LAN's own route: the outside host is now reached from the pod.
          assertMatch(await via("198.19.200.80"), /dev vif0/);
          assertEquals(
            await must(["curl", "-sS", "--max-time", "10", "http://198.19.200.80/"], {
              ns: sim.ws,
            }),
            "outside\n",
          );
        });
        assertMatch(await via("198.19.200.80"), /dev eth0/);
      });

      await t.step("connect -- CMD runs it connected and exits with its code", async () => {
        const r = await connect([
          "--context",
          "vif-sim",
          "--",
          "sh",
          "-c",
          "curl -sk --max-time 10 -o /dev/null -w 'api %{http_code}\\n' https://kubernetes.default.svc/version; exit 7",
        ]);
        assertEquals(r.code, 7, r.stderr);
        // The API server through its ClusterIP, through the tunnel: it wants a token.
        assertMatch(r.stdout, /^api 401$/m);
        assertMatch(r.stdout, /exited with 7: disconnecting/);
        const missing = await connect(["--context", "vif-sim", "--", "/nonexistent/program"]);
        assertEquals(missing.code, 127, missing.stderr);
        assertMatch(missing.stderr, /cannot run "\/nonexistent\/program"/);
        const ok = await connect([
          "--context",
          "vif-sim",
          "--",
          "getent",
          "hosts",
          "kube-dns.kube-system",
        ]);
        assertEquals(ok.code, 0, ok.stderr);
        assertMatch(ok.stdout, /^198\.19\.0\.10\s/m);
      });

      await t.step(
        "after kill -9: the kernel takes the TUN, the next start puts resolv.conf back",
        async () => {
          const resolvConf = `/etc/netns/${sim.ws}/resolv.conf`;
          const original = await Deno.readFile(resolvConf);
          const state = `${env.dir}/state-crash`;
          const p = sim.spawn([
            ...VIF,
            "connect",
            "--foreground",
            "--context",
            "vif-sim",
            "--state-dir",
            state,
          ]);
          await p.waitFor(/^connected to the traffic-manager/, 60_000);
          Deno.kill(p.pid, "SIGKILL");
          await p.stop();
          // The TUN is not persistent: closing its file took it and its routes away.
          assertEquals(
            (await must(["ip", "-o", "link", "show", "type", "tun"], { ns: sim.ws })).trim(),
            "",
          );
          assert(!/ dev vif0/.test(await must(["ip", "route"], { ns: sim.ws })));
          // resolv.conf still names vif's DNS: only vif can know what it was.
          assertMatch(await Deno.readTextFile(resolvConf), /240\.0\.0\.2/);
          const next = await sim.exec([
            ...VIF,
            "connect",
            "--foreground",
            "--state-dir",
            state,
            "--context",
            "vif-sim",
            "--",
            "true",
          ]);
          assertEquals(next.code, 0, next.stderr);
          assertMatch(next.stdout + next.stderr, /restored/);
          assertEquals(await Deno.readFile(resolvConf), original);
        },
      );

      await t.step("nothing is left on the workstation after the failures", async () => {
        assertEquals(
          (await must(["ip", "-o", "link", "show", "type", "tun"], { ns: sim.ws })).trim(),
          "",
        );
      });
    } finally {
      await env.cleanup();
    }
  },
});
