/**
 * The workstation's view of a connected cluster, checked the same way
 * whichever path vif took (the manager's port directly, or a port-forward
 * through the API server): names and the search path, SRV/PTR/headless
 * records, a name outside the cluster, a 100 MiB download, iperf3 next to the
 * direct path, DNS latency, UDP, a refused port, an unused pod IP, ping.
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "../_assert.ts";
import { DENO, iperfGbits, must, ROOT, run } from "./_env.ts";
import { OUTSIDE_HOST_IP } from "../sim/cluster_net.ts";
import type { LargeFile } from "../sim/workloads.ts";

/** What the suite needs to know about the cluster and the workstation. */
export interface WorkstationSuite {
  /** The workstation's namespace (connected). */
  ws: string;
  /** What the figures say the traffic went through ("the manager", "the port-forward"). */
  via: string;
  /** The ClusterIP of `default/web`. */
  webIp: string;
  /** An address of a pod behind `default/web`. */
  webPodIp: string;
  /** What `default/web`'s and `other/web`'s `/` say. */
  webDefault: RegExp;
  webOther: RegExp;
  /** `db-0` and `db-1` of the headless `default/db`. */
  dbIps: [string, string];
  /** The ClusterIP of the UDP echo service. */
  echoIp: string;
  /** The iperf3 server pod's address. */
  iperfIp: string;
  /** The large file the web pods serve. */
  large: LargeFile;
  /** A scratch directory. */
  dir: string;
  /**
   * Whether the manager can ping: as root in a namespace it can; in a pod
   * that drops every capability, iputils' ping (file capability
   * cap_net_raw) cannot start, and a ping is answered unreachable.
   */
  managerPings: boolean;
  /** Route a pod's /32 to the workstation directly (the direct path), and back. */
  expose(ip: string): Promise<unknown>;
  unexpose(ip: string): Promise<unknown>;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

/**
 * Runs the checks as steps of `t`.
 *
 * @param t the test
 * @param s the cluster and workstation
 */
export async function workstationSuite(t: Deno.TestContext, s: WorkstationSuite): Promise<void> {
  const ws = s.ws;
  const webIp = s.webIp;
  await t.step("curl reaches services by short name and by FQDN", async () => {
    assertMatch(
      await must(["curl", "-sS", "--max-time", "10", "http://web.default/"], { ns: ws }),
      s.webDefault,
    );
    assertMatch(
      await must(["curl", "-sS", "--max-time", "10", "http://web.other.svc.cluster.local/"], {
        ns: ws,
      }),
      s.webOther,
    );
    assertMatch(
      await must(["curl", "-sS", "--max-time", "10", "http://web/"], { ns: ws }),
      s.webDefault,
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
    assertEquals(headless, [s.dbIps[0], s.dbIps[1]].sort());
    assertMatch(
      await must(["dig", "+short", "db-0.db.default.svc.cluster.local"], { ns: ws }),
      new RegExp(s.dbIps[0]),
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
    const out = `${s.dir}/100m`;
    await must([
      "curl",
      "-sS",
      "--fail",
      "-o",
      out,
      `http://web.default${s.large.urlPath}`,
    ], { ns: ws });
    const [got, want] = await Promise.all([
      must(["sha256sum", out]),
      must(["sha256sum", s.large.path]),
    ]);
    assertEquals(got.split(" ")[0], want.split(" ")[0]);
    await Deno.remove(out);
  });

  await t.step(`iperf3 through ${s.via}, next to the direct path`, async () => {
    const iperfIp = s.iperfIp;
    const one = iperfGbits(await must(["iperf3", "-J", "-t", "5", "-c", iperfIp], { ns: ws }));
    const eight = iperfGbits(
      await must(["iperf3", "-J", "-t", "5", "-P", "8", "-c", iperfIp], { ns: ws }),
    );
    // The direct path: the pod's /32 routed over the LAN, more specific than the TUN's route.
    await s.expose(iperfIp);
    const direct1 = iperfGbits(
      await must(["iperf3", "-J", "-t", "5", "-c", iperfIp], { ns: ws }),
    );
    const direct8 = iperfGbits(
      await must(["iperf3", "-J", "-t", "5", "-P", "8", "-c", iperfIp], { ns: ws }),
    );
    await s.unexpose(iperfIp);
    console.log(
      `e2e: iperf3 through ${s.via}: 1 flow ${one.toFixed(2)} Gbit/s, 8 flows ${
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
      `UDP4:${s.echoIp}:7`,
    ], {
      ns: ws,
      stdin: "over the tunnel\n",
    });
    assertEquals(out, "over the tunnel\n");
  });

  await t.step("a closed port is refused at once", async () => {
    const r = await run(["socat", "-", `TCP4:${s.webPodIp}:81`], { ns: ws, stdin: "" });
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

  if (s.managerPings) {
    await t.step("ping reaches a pod through the manager", async () => {
      await must(["ping", "-c", "1", "-W", "5", s.webPodIp], { ns: ws });
    });
  } else {
    await t.step("ping through a manager that cannot ping: unreachable, at once", async () => {
      const t0 = performance.now();
      const r = await run(["ping", "-n", "-c", "1", "-W", "5", s.webPodIp], { ns: ws });
      const ms = performance.now() - t0;
      assertEquals(r.code, 1, r.stdout + r.stderr);
      assertMatch(r.stdout, /Destination Host Unreachable/);
      assert(ms < 4000, `the answer took ${ms.toFixed(0)} ms`);
    });
  }
}
