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
 *  │ vif connect (router, DNS on   │── gRPC/mTLS :8443 ──────►│ echo, db-0/1 (headless), kube-dns   │
 *  │ 240.0.0.2, resolv.conf)       │  (only the manager pod's │ (dnsmasq 198.19.0.10), and          │
 *  │ resolv.conf → 198.19.200.53   │   /32 is routed to ws)   │ traffic-manager (vif --serve, nobody)│
 *  └───────────────────────────────┘                          └─────────────────────────────────────┘
 *                 outside DNS 198.19.200.53 (outside.example) on the LAN: the workstation's old resolver
 * ```
 *
 * @module
 */

import { assert, assertEquals } from "../_assert.ts";
import { DENO, Env, must, ROOT } from "./_env.ts";
import { workstationSuite } from "./_suite.ts";
import { ClusterNet, POD_CIDR, SERVICE_CIDR } from "../sim/cluster_net.ts";
import { deploySamples } from "../sim/workloads.ts";
import { denoForNobody } from "../sim/deno_nobody.ts";
import { makeTestTls } from "../_tls.ts";

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
            // Clients dial it here, with a certificate of the client CA (client-ca.crt in the TLS dir).
            "--direct-listen",
            "0.0.0.0:8443",
          ),
          env: nobody.env,
        },
        readiness: { port: 8443, timeoutMs: 30_000 },
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
        "--foreground",
        "--manager-address",
        `${manager.ip}:8443`,
        "--manager-ca",
        tls.caCertPath,
        "--client-cert",
        tls.client.certPath,
        "--client-key",
        tls.client.keyPath,
        "--state-dir",
        state,
      ], { ns: c.ws });
      await connect.waitFor(/^connected to the traffic-manager/, 30_000);
      const ws = c.ws;
      const webIp = samples.services.web.clusterIP;

      await workstationSuite(t, {
        ws,
        via: "the manager",
        webIp,
        webPodIp: samples.web.ip,
        webDefault: /default\/web-1/,
        webOther: /other\/web-1/,
        dbIps: [samples.db[0].ip, samples.db[1].ip],
        echoIp: samples.services.echo.clusterIP,
        iperfIp: samples.iperf.ip,
        large: samples.large,
        dir: env.dir,
        managerPings: true,
        expose: (ip) => c.exposeToWorkstation(ip),
        unexpose: (ip) => c.unexposeFromWorkstation(ip),
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
