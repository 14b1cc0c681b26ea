/**
 * The router, end to end, on a real TUN device and real kernel TCP.
 *
 * ```
 *  ┌─────────── netns vif-ws-XXXX ───────────┐          ┌────────── netns vif-srv-XXXX ──────────┐
 *  │ curl, iperf3 -c, socat, ping             │          │ lo 198.18.1.2/32                       │
 *  │   │ route 198.18.0.0/16 dev vif0          │          │   nginx :80   iperf3 -s :5201          │
 *  │   ▼                                      │          │   socat UDP echo :7                    │
 *  │ vif0 (TUN) 240.0.0.1/24                  │          │ route 198.18.3.0/24 dev srv0 (a black  │
 *  │   ▲▼                                     │  unix    │   hole: SYNs die in ws, dials time out)│
 *  │ router (_router_proc.ts) ── dialer ──────┼─ socket ─┼─► dial server (_dial_server.ts)        │
 *  │                                          │ (in /tmp)│                                        │
 *  │ ws0 198.19.255.1/30 ─────────── veth: the direct path, for comparison ── srv0 198.19.255.2/30 │
 *  └──────────────────────────────────────────┘          └────────────────────────────────────────┘
 * ```
 *
 * Nothing leaves the namespaces; they, the processes and the files are
 * removed at the end, even when a step fails.
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "../_assert.ts";
import { DENO, Env, iperfGbits, must, ROOT, run, suffix } from "./_env.ts";

const SERVER = "198.18.1.2";
const NGINX_CONF = (dir: string) => `
user root;
worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/nginx-error.log;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  sendfile on;
  keepalive_requests 100000;
  server {
    listen ${SERVER}:80;
    listen 198.19.255.2:80;
    root ${dir}/www;
  }
}
`;

async function sha256File(path: string): Promise<string> {
  return (await must(["sha256sum", path])).split(" ")[0]!;
}

async function linkCounters(
  ns: string,
  dev: string,
): Promise<{ rx: number; tx: number; rxBytes: number; txBytes: number }> {
  const j = JSON.parse(await must(["ip", "-s", "-j", "link", "show", dev], { ns }));
  const s = j[0].stats64;
  return { rx: s.rx.packets, tx: s.tx.packets, rxBytes: s.rx.bytes, txBytes: s.tx.bytes };
}

Deno.test({
  name: "router carries real TCP, UDP and ICMP between namespaces through a TUN",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const env = await new Env().init();
    try {
      const id = suffix();
      const ws = await env.netns(`vif-ws-${id}`);
      const srv = await env.netns(`vif-srv-${id}`);
      // The direct path: a veth pair, for the comparison figure only.
      await must([
        "ip",
        "link",
        "add",
        "ws0",
        "netns",
        ws,
        "type",
        "veth",
        "peer",
        "name",
        "srv0",
        "netns",
        srv,
      ]);
      await must(["ip", "addr", "add", "198.19.255.1/30", "dev", "ws0"], { ns: ws });
      await must(["ip", "link", "set", "ws0", "up"], { ns: ws });
      await must(["ip", "addr", "add", "198.19.255.2/30", "dev", "srv0"], { ns: srv });
      await must(["ip", "link", "set", "srv0", "up"], { ns: srv });
      await must(["ip", "addr", "add", `${SERVER}/32`, "dev", "lo"], { ns: srv });
      await must(["ip", "route", "add", "198.18.3.0/24", "via", "198.19.255.1"], { ns: srv });

      // Content and servers in srv.
      const www = `${env.dir}/www`;
      await Deno.mkdir(www);
      await must([
        "sh",
        "-c",
        `head -c 1048576 /dev/urandom > ${www}/1m && head -c 104857600 /dev/urandom > ${www}/100m`,
      ]);
      await Deno.writeTextFile(`${env.dir}/nginx.conf`, NGINX_CONF(env.dir));
      const nginx = env.spawn([
        "nginx",
        "-c",
        `${env.dir}/nginx.conf`,
        "-e",
        `${env.dir}/nginx-error.log`,
      ], { ns: srv });
      const iperf = env.spawn(["iperf3", "-s", "-1", "--forceflush"], { ns: srv });
      const echo = env.spawn([
        "socat",
        "-T",
        "10",
        "UDP4-RECVFROM:7,bind=" + SERVER + ",fork",
        "PIPE",
      ], { ns: srv });
      const sock = `${env.dir}/dial.sock`;
      const dialServer = env.spawn([DENO, "run", "-A", `${ROOT}/tests/e2e/_dial_server.ts`, sock], {
        ns: srv,
      });
      await dialServer.waitFor(/ready/);
      const router = env.spawn([
        DENO,
        "run",
        "-A",
        `${ROOT}/tests/e2e/_router_proc.ts`,
        sock,
        "198.18.0.0/16",
      ], { ns: ws });
      const ready = await router.waitFor(/^ready /);
      const dev = ready.split(" ")[1]!;
      await waitTcp(ws, "198.19.255.2", 80);
      void nginx, void echo, void iperf;

      await t.step("the TUN and its route exist in the workstation namespace", async () => {
        const route = await must(["ip", "route", "show", "198.18.0.0/16"], { ns: ws });
        assertMatch(route, new RegExp(`dev ${dev}`));
        const link = await must(["ip", "link", "show", dev], { ns: ws });
        assertMatch(link, /mtu 65535/);
      });

      await t.step("curl fetches 1 MiB and 100 MiB with matching sha256", async () => {
        for (const name of ["1m", "100m"]) {
          const out = `${env.dir}/got-${name}`;
          await must(["curl", "-sS", "--fail", "-o", out, `http://${SERVER}/${name}`], { ns: ws });
          assertEquals(await sha256File(out), await sha256File(`${www}/${name}`));
          await Deno.remove(out);
        }
      });

      await t.step("200 concurrent curls all succeed", async () => {
        const out = await must([
          "sh",
          "-c",
          `seq 200 | xargs -P 200 -I{} curl -sS -o /dev/null -w '%{http_code} %{size_download}\\n' http://${SERVER}/1m`,
        ], { ns: ws });
        const lines = out.trim().split("\n");
        assertEquals(lines.length, 200);
        assert(
          lines.every((l) => l === "200 1048576"),
          `not all 200: ${lines.filter((l) => l !== "200 1048576").slice(0, 5)}`,
        );
      });

      await t.step("iperf3 through the router, next to the direct path", async () => {
        const direct = iperfGbits(
          await must(["iperf3", "-J", "-t", "5", "-c", "198.19.255.2"], { ns: ws }),
        );
        // iperf3 -s -1 serves one test then exits: start another for the router run.
        await iperf.stop();
        const iperf2 = env.spawn(["iperf3", "-s", "-1"], { ns: srv });
        await new Promise((r) => setTimeout(r, 300));
        const before = await linkCounters(ws, dev);
        const t0 = performance.now();
        const routed = iperfGbits(
          await must(["iperf3", "-J", "-t", "5", "-c", SERVER], { ns: ws }),
        );
        const secs = (performance.now() - t0) / 1000;
        const after = await linkCounters(ws, dev);
        const pkts = after.rx - before.rx + after.tx - before.tx;
        const bytes = after.rxBytes - before.rxBytes + after.txBytes - before.txBytes;
        console.log(
          `e2e: iperf3 single flow: direct ${direct.toFixed(2)} Gbit/s, through the router ${
            routed.toFixed(2)
          } Gbit/s; ` +
            `router moved ${(pkts / secs / 1000).toFixed(1)} kpackets/s, ${
              (bytes * 8 / secs / 1e9).toFixed(2)
            } Gbit/s ` +
            `(both directions, mtu 65535)`,
        );
        assert(routed > 0.05, `throughput through the router is implausibly low: ${routed} Gbit/s`);
        await iperf2.stop();
      });

      await t.step("a UDP datagram makes the round trip through socat", async () => {
        const out = await must(["socat", "-t", "3", "-", `UDP4:${SERVER}:7`], {
          ns: ws,
          stdin: "hello over udp\n",
        });
        assertEquals(out, "hello over udp\n");
      });

      await t.step("ping gets an echo reply through the dialer", async () => {
        await must(["ping", "-c", "1", "-W", "3", SERVER], { ns: ws });
      });

      await t.step("a closed port fails fast with connection refused", async () => {
        const t0 = performance.now();
        const r = await run(["socat", "-", `TCP4:${SERVER}:81`], { ns: ws, stdin: "" });
        const ms = performance.now() - t0;
        assert(r.code !== 0);
        assertMatch(r.stderr, /Connection refused/);
        assert(ms < 2000, `refusal took ${ms} ms`);
      });

      await t.step("an unroutable destination fails with no route to host", async () => {
        const r = await run(["socat", "-", "TCP4:198.18.9.9:80"], { ns: ws, stdin: "" });
        assert(r.code !== 0);
        assertMatch(r.stderr, /No route to host/);
      });

      await t.step("a destination that never answers times out, not refused", async () => {
        const r = await run(["curl", "-sS", "--connect-timeout", "4", "http://198.18.3.3/"], {
          ns: ws,
        });
        assertEquals(r.code, 28, `curl exit ${r.code}: ${r.stderr}`);
      });

      await t.step("the router counted what it dropped and never crashed", async () => {
        assert(router.lines.length >= 1);
        await router.stop();
        const stats = JSON.parse(router.lines.find((l) => l.startsWith("{"))!);
        assert(stats.router.tcpTotal >= 202, `tcpTotal ${stats.router.tcpTotal}`);
        assert(stats.router.dialFailures.refused >= 1);
        const links = await run(["ip", "link", "show", dev], { ns: ws });
        assert(links.code !== 0, "the TUN is still there after the router stopped");
      });
    } finally {
      await env.cleanup();
    }
  },
});

async function waitTcp(ns: string, host: string, port: number): Promise<void> {
  for (let i = 0; i < 50; i++) {
    const r = await run(["bash", "-c", `exec 3<>/dev/tcp/${host}/${port}`], { ns });
    if (r.code === 0) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`Timed out waiting for ${host}:${port} in ${ns}`);
}
