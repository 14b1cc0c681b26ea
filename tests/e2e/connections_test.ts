/**
 * Seeing what flows, against the simulated cluster: `vif connections` (JSON,
 * text, `-w`, `status --connections`) listing a live, rate-limited download
 * from a Service with its name, state and bytes both ways, and a UDP flow;
 * `vif capture` writing a pcap that tcpdump reads, with the SYN and the HTTP
 * request to the Service's address, to a file and to a pipe.
 *
 * ```
 *  vif-ws (the workstation)                          the cluster (tests/sim)
 *  curl --limit-rate ──► vif0 ══ port-forward ══► manager ──► web.default:80 (nginx)
 *  socat udp ──────────► vif0 ══════════════════► manager ──► echo.default:7 (udp echo)
 *  vif connections / vif capture ──► daemon.sock ──► the daemon (router flows, tap)
 * ```
 *
 * Needs tcpdump (scripts/setup.sh installs it).
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "../_assert.ts";
import { DENO, Env, must, ROOT, run, waitUntil } from "./_env.ts";
import { Sim } from "../sim/sim.ts";
import type { ConnectionEntry } from "../../mod/daemon/flows.ts";

const VIF = [DENO, "run", "-A", "--config", `${ROOT}/deno.json`, `${ROOT}/main.ts`];
const MANAGER = "app.kubernetes.io/name=traffic-manager";

/** What the test reads of `vif connections -o json`: the daemon's own type. */
type Flow = ConnectionEntry;

Deno.test({
  name:
    "vif connections lists a live download and a UDP flow; vif capture writes a pcap tcpdump reads",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const tcpdump = await run(["sh", "-c", "command -v tcpdump"]);
    assertEquals(
      tcpdump.code,
      0,
      "tcpdump is missing: apt-get install -y tcpdump (scripts/setup.sh)",
    );
    const env = await new Env().init();
    const state = `${env.dir}/state`;
    env.killDaemonOnCleanup(state);
    try {
      const sim = await Sim.start(env, { samples: true, largeFileMiB: 20 });
      const ws = sim.ws;
      const vif = ([command, ...args]: string[]) =>
        sim.exec([...VIF, command!, "--state-dir", state, ...args]);
      const vifArgv = (
        args: string[],
      ) => [...VIF, args[0]!, "--state-dir", state, ...args.slice(1)];
      const flows = async (): Promise<Flow[]> => {
        const r = await vif(["connections", "-o", "json"]);
        assertEquals(r.code, 0, r.stderr);
        const doc = JSON.parse(r.stdout);
        assertEquals([doc.schema, doc.truncated], [1, 0]);
        return doc.flows;
      };

      const install = await sim.exec([...VIF, "install", "--context", "vif-sim"]);
      assertEquals(install.code, 0, install.stderr);
      await sim.waitReady("vif-system", MANAGER, 1, 90_000);
      const connect = await vif(["connect", "--context", "vif-sim"]);
      assertEquals(connect.code, 0, connect.stderr);
      const webIp = (await must(["dig", "+short", "web.default.svc.cluster.local"], { ns: ws }))
        .trim();
      assertMatch(webIp, /^198\.19\.\d+\.\d+$/);

      // 20 MiB at 200 KiB/s: open for the whole test.
      const download = env.spawn([
        "curl",
        "-sS",
        "-o",
        "/dev/null",
        "--limit-rate",
        "200k",
        "http://web.default/20m",
      ], { ns: ws });

      await t.step(
        "the download is listed with its name, ESTABLISHED, bytes both ways, a rate",
        async () => {
          let web: Flow | undefined;
          await waitUntil(
            async () => {
              web = (await flows()).find((f) =>
                f.protocol === "tcp" && f.destination.port === 80 && f.bytesReceived > 300_000
              );
              // Past the first burst into the socket buffers: by then the rate is curl's.
              return web !== undefined && web.ageSeconds >= 4;
            },
            30_000,
            "the download in vif connections",
            500,
          );
          console.log(`e2e: connections: ${JSON.stringify(web)}`);
          assertEquals([web!.kind, web!.name, web!.state], [
            "outbound",
            "web.default",
            "ESTABLISHED",
          ]);
          assertEquals(web!.destination.address, webIp);
          assertEquals(web!.source.address, "240.0.0.1");
          assert(web!.bytesSent > 50, "the request went out");
          // The rate is the last second or two, of the order of curl's limit: curl catches up in
          // bursts and the machine is busy, so the bounds are wide, yet far below an unlimited
          // download here (hundreds of MB/s).
          assert(
            web!.rateReceived > 50_000 && web!.rateReceived < 4_000_000,
            `rate ${web!.rateReceived} near 200 KiB/s`,
          );
        },
      );

      await t.step("a UDP flow is listed too, with its name and bytes", async () => {
        const echoed = await must(
          ["sh", "-c", "printf 'hello vif' | socat -t 2 - UDP4:echo.default:7"],
          { ns: ws },
        );
        assertEquals(echoed, "hello vif");
        const udp = (await flows()).find((f) => f.protocol === "udp" && f.destination.port === 7);
        assert(udp, "the UDP flow");
        assertEquals([udp.name, udp.state, udp.bytesSent, udp.bytesReceived], [
          "echo.default",
          "OPEN",
          9,
          9,
        ]);
      });

      await t.step("text: vif connections and vif status --connections", async () => {
        const text = await vif(["connections"]);
        assertEquals(text.code, 0, text.stderr);
        assertMatch(text.stdout, /^PROTO\s+STATE\s+SOURCE\s+DESTINATION\s+NAME\s+AGE/m);
        assertMatch(
          text.stdout,
          new RegExp(
            `^tcp\\s+ESTABLISHED\\s+240\\.0\\.0\\.1:\\d+\\s+${
              webIp.replaceAll(".", "\\.")
            }:80\\s+web\\.default\\s`,
            "m",
          ),
        );
        const status = await vif(["status", "--connections"]);
        assertEquals(status.code, 0, status.stderr);
        assertMatch(status.stdout, /^Connected:\s+yes/m);
        assertMatch(status.stdout, /^udp\s+OPEN\s.*echo\.default/m);
        const json = await vif(["status", "--connections", "-o", "json"]);
        assert(JSON.parse(json.stdout).connections.flows.length >= 2);
      });

      await t.step("-w redraws until Ctrl-C, then exits cleanly", async () => {
        const watch = env.spawn(vifArgv(["connections", "-w", "--interval", "0.5"]), { ns: ws });
        await waitUntil(
          () => watch.lines.filter((l) => l.startsWith("vif connections: ")).length >= 3,
          20_000,
          "three redraws",
        );
        watch.child.kill("SIGINT");
        const status = await watch.child.status;
        await watch.output;
        assertEquals(status.code, 0, watch.errLines.join("\n"));
        assert(!watch.lines.join("\n").includes("\x1b"), "no escapes in a pipe");
        assert(watch.lines.some((l) => /web\.default/.test(l)));
      });

      await t.step("vif capture writes a pcap with the SYN and the HTTP request", async () => {
        const file = `${env.dir}/web.pcap`;
        const capture = env.spawn(
          vifArgv(["capture", "-o", file, "--port", "80", "--duration", "3"]),
          {
            ns: ws,
          },
        );
        await waitUntil(
          async () => (await Deno.stat(file).catch(() => null))?.size !== undefined,
          20_000,
          "the capture's file",
        );
        // The capture is asked for once the file exists; give the daemon a moment to start it.
        await new Promise((r) => setTimeout(r, 500));
        for (let i = 0; i < 2; i++) {
          assertMatch(
            await must(["curl", "-sS", "--max-time", "5", "http://web.default/"], { ns: ws }),
            /^pod web-/,
          );
        }
        const status = await capture.child.status;
        await capture.output;
        assertEquals(status.code, 0, capture.errLines.join("\n"));
        const summary = capture.errLines.at(-1) ?? "";
        assertMatch(summary, /^\d+ packets written to .*web\.pcap, 0 dropped \(time up\)$/);
        assertEquals((await Deno.stat(file)).mode! & 0o777, 0o600);
        const read = await run(["tcpdump", "-n", "-A", "-r", file]);
        assertEquals(read.code, 0, read.stderr);
        assertMatch(read.stderr, /link-type RAW/);
        const ip = webIp.replaceAll(".", "\\.");
        assertMatch(
          read.stdout,
          new RegExp(`IP 240\\.0\\.0\\.1\\.\\d+ > ${ip}\\.80: Flags \\[S\\]`),
        );
        assertMatch(
          read.stdout,
          new RegExp(`IP ${ip}\\.80 > 240\\.0\\.0\\.1\\.\\d+: Flags \\[S\\.\\]`),
        );
        assertMatch(read.stdout, /GET \/ HTTP\/1\.1/);
        assertMatch(read.stdout, /HTTP\/1\.1 200 OK/);
        const packets = read.stdout.split("\n").filter((l) => /^\d\d:\d\d:\d\d\.\d+ IP /.test(l));
        assertEquals(String(packets.length), /^(\d+) packets/.exec(summary)![1]);
        console.log(`e2e: capture: ${summary}; tcpdump read ${packets.length} packets`);
      });

      await t.step("vif capture -o - into tcpdump, ending after --count", async () => {
        const capture = vifArgv([
          "capture",
          "-o",
          "-",
          "--host",
          "web.default",
          "--count",
          "5",
          "--duration",
          "30", // a bound, should no packet come
        ]).map((a) => `'${a}'`).join(" ");
        // A request of its own once the capture runs, besides the download's packets.
        const r = await sim.exec([
          "sh",
          "-c",
          `(${capture} | tcpdump -n -r - 2>/dev/null) & sleep 2; ` +
          "curl -sS -o /dev/null --max-time 5 http://web.default/; wait",
        ]);
        assertEquals(r.code, 0, r.stderr);
        const lines = r.stdout.trim().split("\n");
        assertEquals(lines.length, 5, r.stdout);
        for (const l of lines) assert(l.includes(webIp), l);
        assertMatch(r.stderr, /^5 packets written to stdout, 0 dropped \(count reached\)$/m);
      });

      await download.stop();
      const quit = await vif(["quit"]);
      assertEquals(quit.code, 0, quit.stderr);
    } finally {
      await env.cleanup();
    }
  },
});
