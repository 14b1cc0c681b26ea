/**
 * `vif connect` end to end: the workstation reaches a simulated cluster's
 * pods and services by IP and by name, through the traffic-manager.
 *
 * ```
 *  ┌──── ws ───────────────────────┐   LAN 198.19.200.0/24   ┌──── node1 ──────────────────────────┐
 *  │ curl, dig, getent, iperf3,    │                          │ nftables ClusterIP DNAT (kube-proxy)│
 *  │ socat                         │                          │   │ routed /32 veths to each pod    │
 *  │  │ 198.18.0.0/16, 198.19.0.0/18 ─► vif0 (TUN)            │   ▼                                 │
 *  │  ▼                            │                          │ pods: web (default, other), iperf,  │
 *  │ vif connect (router, DNS on   │── gRPC/TLS :8081 ───────►│ echo, db-0/1 (headless), kube-dns   │
 *  │ 240.0.0.2, resolv.conf)       │  (only the manager pod's │ (dnsmasq 198.19.0.10), and          │
 *  │ resolv.conf → 198.19.200.53   │   /32 is routed to ws)   │ traffic-manager (vif --serve, nobody)│
 *  └───────────────────────────────┘                          └─────────────────────────────────────┘
 *                 outside DNS 198.19.200.53 (outside.example) on the LAN: the workstation's old resolver
 * ```
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "../_assert.ts";
import { DENO, Env, iperfGbits, must, ROOT, run } from "./_env.ts";
import { ClusterNet, OUTSIDE_HOST_IP, POD_CIDR, SERVICE_CIDR } from "../sim/cluster_net.ts";
import { deploySamples } from "../sim/workloads.ts";
import { denoForNobody } from "../sim/deno_nobody.ts";
import { makeTestTls } from "../_tls.ts";

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

Deno.test({
  name: "vif connect reaches cluster pods and services by IP and name through the manager",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const env = await new Env().init();
    try {
      const [c, tls, nobody] = await Promise.all([
        ClusterNet.create(env),
        makeTestTls(),
        denoForNobody(env),
      ]);
      env.defer(() => tls.cleanup());
      // The pod runs as nobody: it must read the mounted secret.
      await must(["chmod", "-R", "a+rX", tls.dir.replace(/\/main$/, "")]);
      const samples = await deploySamples(c);
      const manager = await c.addPod({
        namespace: "vif-system",
        name: "traffic-manager-1",
        labels: { app: "traffic-manager" },
        run: {
          cmd: nobody.run(
            `${ROOT}/main.ts`,
            "--serve",
            "--tls-dir",
            tls.dir,
            "--pod-cidr",
            POD_CIDR,
            "--service-cidr",
            SERVICE_CIDR,
            "--namespaces",
            "default,other,kube-system,vif-system",
          ),
          env: nobody.env,
        },
        readiness: { port: 8081, timeoutMs: 30_000 },
      });
      await manager.whenReady;
      await c.exposeToWorkstation(manager.ip);
      const resolvConf = `/etc/netns/${c.ws}/resolv.conf`;
      const originalResolv = await Deno.readFile(resolvConf);
      const state = `${env.dir}/state`;
      const connect = env.spawn([
        DENO,
        "run",
        "-A",
        `${ROOT}/main.ts`,
        "connect",
        "--manager-address",
        `${manager.ip}:8081`,
        "--manager-ca",
        tls.caCertPath,
        "--state-dir",
        state,
      ], { ns: c.ws });
      await connect.waitFor(/^connected to the traffic-manager/, 30_000);
      const ws = c.ws;
      const webIp = samples.services.web.clusterIP;

      await t.step("curl reaches services by short name and by FQDN", async () => {
        assertMatch(
          await must(["curl", "-sS", "--max-time", "10", "http://web.default/"], { ns: ws }),
          /default\/web-1/,
        );
        assertMatch(
          await must(["curl", "-sS", "--max-time", "10", "http://web.other.svc.cluster.local/"], {
            ns: ws,
          }),
          /other\/web-1/,
        );
        assertMatch(
          await must(["curl", "-sS", "--max-time", "10", "http://web/"], { ns: ws }),
          /default\/web-1/,
        );
      });

      await t.step("getent and dig resolve through the search path", async () => {
        assertMatch(
          await must(["getent", "hosts", "web"], { ns: ws }),
          new RegExp(`^${webIp.replaceAll(".", "\\.")}\\s`),
        );
        assertMatch(
          await must(["dig", "+short", "+search", "web"], { ns: ws }),
          new RegExp(webIp.replaceAll(".", "\\.")),
        );
      });

      await t.step("SRV, PTR and headless records come from the cluster DNS", async () => {
        const srv = await must(
          ["dig", "+short", "SRV", "_http._tcp.web.default.svc.cluster.local"],
          { ns: ws },
        );
        assertMatch(srv, /80 web\.default\.svc\.cluster\.local\./);
        const ptr = await must(["dig", "+short", "-x", webIp], { ns: ws });
        assertMatch(ptr, /web\.default\.svc\.cluster\.local\./);
        const headless = (await must(["dig", "+short", "db.default.svc.cluster.local"], { ns: ws }))
          .trim().split("\n").sort();
        assertEquals(headless, [samples.db[0].ip, samples.db[1].ip].sort());
        assertMatch(
          await must(["dig", "+short", "db-0.db.default.svc.cluster.local"], { ns: ws }),
          new RegExp(samples.db[0].ip),
        );
      });

      await t.step(
        "a name outside the cluster resolves through the previous resolver",
        async () => {
          assertEquals(
            (await must(["dig", "+short", "outside.example"], { ns: ws })).trim(),
            OUTSIDE_HOST_IP,
          );
        },
      );

      await t.step("a 100 MiB download arrives intact", async () => {
        const out = `${env.dir}/100m`;
        await must([
          "curl",
          "-sS",
          "--fail",
          "-o",
          out,
          `http://web.default${samples.large.urlPath}`,
        ], { ns: ws });
        const [got, want] = await Promise.all([
          must(["sha256sum", out]),
          must(["sha256sum", samples.large.path]),
        ]);
        assertEquals(got.split(" ")[0], want.split(" ")[0]);
        await Deno.remove(out);
      });

      await t.step("iperf3 through the manager, next to the direct path", async () => {
        const iperfIp = samples.iperf.ip;
        const one = iperfGbits(await must(["iperf3", "-J", "-t", "5", "-c", iperfIp], { ns: ws }));
        const eight = iperfGbits(
          await must(["iperf3", "-J", "-t", "5", "-P", "8", "-c", iperfIp], { ns: ws }),
        );
        // The direct path: the pod's /32 routed over the LAN, more specific than the TUN's route.
        await c.exposeToWorkstation(iperfIp);
        const direct1 = iperfGbits(
          await must(["iperf3", "-J", "-t", "5", "-c", iperfIp], { ns: ws }),
        );
        const direct8 = iperfGbits(
          await must(["iperf3", "-J", "-t", "5", "-P", "8", "-c", iperfIp], { ns: ws }),
        );
        await c.unexposeFromWorkstation(iperfIp);
        console.log(
          `e2e: iperf3 through the manager: 1 flow ${one.toFixed(2)} Gbit/s, 8 flows ${
            eight.toFixed(2)
          } Gbit/s; ` +
            `direct: 1 flow ${direct1.toFixed(2)} Gbit/s, 8 flows ${direct8.toFixed(2)} Gbit/s`,
        );
        assert(one > 0.01 && eight > 0.01);
      });

      await t.step("DNS latency for a cluster name", async () => {
        const times: number[] = [];
        for (let i = 0; i < 11; i++) {
          const out = await must(["dig", "+tries=1", "web.default.svc.cluster.local"], { ns: ws });
          times.push(Number(/Query time: (\d+) msec/.exec(out)?.[1] ?? NaN));
        }
        assert(times.every((x) => Number.isFinite(x)));
        const fine = JSON.parse(
          await must([
            DENO,
            "run",
            "-A",
            `${ROOT}/scripts/dns_latency.ts`,
            "240.0.0.2",
            "db.default.svc.cluster.local",
            "200",
          ], { ns: ws }),
        );
        console.log(
          `e2e: dig web.default.svc.cluster.local median ${
            median(times)
          } ms (dig's resolution is 1 ms); ` +
            `200 queries for db.default.svc.cluster.local: first ${fine.first_ms} ms (uncached), ` +
            `p50 ${fine.p50_ms} ms, p99 ${fine.p99_ms} ms`,
        );
      });

      await t.step("UDP echo through a ClusterIP", async () => {
        const out = await must([
          "socat",
          "-t",
          "3",
          "-",
          `UDP4:${samples.services.echo.clusterIP}:7`,
        ], {
          ns: ws,
          stdin: "over the tunnel\n",
        });
        assertEquals(out, "over the tunnel\n");
      });

      await t.step("a closed port is refused at once", async () => {
        const r = await run(["socat", "-", `TCP4:${samples.web.ip}:81`], { ns: ws, stdin: "" });
        assert(r.code !== 0);
        assertMatch(r.stderr, /Connection refused/);
      });

      await t.step(
        "a pod IP nobody has fails with a clear error, not an accepted connection",
        async () => {
          const t0 = performance.now();
          const r = await run(["socat", "-", "TCP4:198.18.0.250:80,connect-timeout=8"], {
            ns: ws,
            stdin: "",
          });
          const ms = performance.now() - t0;
          console.log(
            `e2e: connect to an unused pod IP: exit ${r.code} after ${
              ms.toFixed(0)
            } ms: ${r.stderr.trim()}`,
          );
          assert(r.code !== 0);
          assertMatch(r.stderr, /No route to host|timed out/);
        },
      );

      await t.step("ping reaches a pod through the manager", async () => {
        await must(["ping", "-c", "1", "-W", "5", samples.web.ip], { ns: ws });
      });

      await t.step(
        "quit removes the TUN and routes and restores resolv.conf byte for byte",
        async () => {
          await connect.stop(10_000);
          assert(
            connect.lines.some((l) => /disconnected/.test(l)),
            [...connect.lines.slice(-5), ...connect.errLines.slice(-20)].join("\n"),
          );
          const links = await must(["ip", "-o", "link", "show", "type", "tun"], { ns: ws });
          assertEquals(links.trim(), "");
          const routes = await must(["ip", "route", "show"], { ns: ws });
          assert(!routes.includes("198.18.0.0/16 dev"), routes);
          assertEquals(await Deno.readFile(resolvConf), originalResolv);
        },
      );
    } finally {
      await env.cleanup();
    }
  },
});
