/** `vif status`, `quit` and `loglevel` with no daemon, and the status table's rendering. */

import { assert, assertEquals, assertMatch } from "../../tests/_assert.ts";
import { schemaProblems } from "../../tests/e2e/_status_schema.ts";
import type { StatusDocument } from "../daemon/daemon.ts";
import { main, memoryIo } from "./mod.ts";
import { formatStatus, notRunning } from "./status.ts";
import { palette } from "./terminal.ts";

async function vif(args: string[]) {
  const dir = await Deno.makeTempDir({ prefix: "vif-status-" });
  try {
    const io = memoryIo({ VIF_STATE_DIR: dir });
    const code = await main(args, { io });
    return { code, out: io.out, err: io.err };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("status, quit and loglevel with no daemon", async () => {
  const text = await vif(["status"]);
  assertEquals([text.code, text.out], [
    1,
    "Daemon:     not running\nConnected:  no\n\nConnect with `vif connect`.\n",
  ]);
  const json = await vif(["status", "-o", "json"]);
  assertEquals(json.code, 1);
  assertEquals(schemaProblems(JSON.parse(json.out)), []);
  const quit = await vif(["quit"]);
  assertEquals([quit.code, quit.out], [0, "not connected; nothing to do\n"]);
  const disconnect = await vif(["disconnect"]);
  assertEquals(disconnect.code, 0);
  const level = await vif(["loglevel", "debug"]);
  assertEquals([level.code, level.err.split("\n")[0]], [1, "vif: the vif daemon is not running"]);
});

Deno.test("formatStatus: an aligned table with routes, exclusions, DNS and counters", () => {
  const doc: StatusDocument = {
    ...notRunning(),
    daemon: {
      running: true,
      version: "0.1.0",
      pid: 42,
      uptimeSeconds: 3725,
      logFile: "/var/lib/vif/daemon.log",
      logLevel: "info",
      memory: { rssMb: 80.5, heapUsedMb: 20.1, heapTotalMb: 30, externalMb: 4.2 },
    },
    connected: true,
    connection: {
      state: "connected",
      since: "2026-11-24T06:00:00.000Z",
      uptimeSeconds: 65,
      context: "dev",
      cluster: "https://198.19.200.1:6443",
      namespace: "shop",
      manager: {
        namespace: "vif-system",
        version: "0.1.0",
        address: "traffic-manager-abc:8081",
        pod: "traffic-manager-abc",
        via: "port-forward",
        tunnel: "mux",
      },
      sessionId: "s1",
      tun: { name: "vif0", mtu: 65535, addresses: ["240.0.0.1/24", "240.0.0.2/32"] },
      subnets: {
        routed: [{ cidr: "198.18.0.0/24", source: "pods" }, {
          cidr: "198.19.0.0/18",
          source: "services",
        }],
        excluded: [{ cidr: "198.18.0.128/25", reason: "never-proxy" }],
      },
      dns: {
        mode: "resolv.conf",
        address: "240.0.0.2",
        domains: ["cluster.local", "svc", "shop", "0.18.198.in-addr.arpa"],
        search: ["shop.svc.cluster.local", "svc.cluster.local", "cluster.local"],
        description: null,
      },
      counters: {
        connectionsOpen: 2,
        connectionsTotal: 10,
        udpFlowsOpen: 0,
        udpFlowsTotal: 3,
        dnsQueries: 7,
        dnsCacheHits: 4,
        bytesToCluster: 2048,
        bytesFromCluster: 3 * 1048576,
        dialFailures: 1,
        packetsDropped: 1,
      },
      intercepts: [{
        id: "default/web:80",
        namespace: "default",
        workload: "web",
        port: 80,
        local: "127.0.0.1:8080",
        holder: "alice@laptop",
        mountPoint: null,
        pods: ["web-5d8f-abcde"],
        connections: 3,
        variables: 12,
      }],
    },
  };
  assertEquals(schemaProblems(doc), []);
  const lines = formatStatus(doc);
  assertEquals(lines[0], "Daemon:      running (vif 0.1.0, pid 42, up 1h02m)");
  assertEquals(lines[2], "Memory:      80.5 MiB resident; JS heap 20.1 of 30 MiB, buffers 4.2 MiB");
  assertEquals(lines[3], "Connected:   yes, for 1m05s");
  for (
    const want of [
      "Routed:      198.18.0.0/24      pods",
      "             198.19.0.0/18      services",
      "Not routed:  198.18.0.128/25    --never-proxy",
      "Domains:     cluster.local svc shop",
      "Tunnel:      one gRPC stream for every flow (mux)",
      "Traffic:     2.0 KiB to the cluster, 3.0 MiB back; 1 packet dropped",
      "Intercepts:  default/web port 80 → 127.0.0.1:8080 (1 pod, 3 connections)",
    ]
  ) assert(lines.includes(want), `no line "${want}" in:\n${lines.join("\n")}`);
  // Every value starts in the same column.
  for (const l of lines) assertMatch(l, /^(\S[^:]*:\s+|\s{13})\S/);
});

Deno.test("formatStatus() colours the state only when asked, and the words stay the same", () => {
  const doc = {
    schema: 1,
    connected: false,
    daemon: { running: false },
    connection: null,
  } as unknown as Parameters<typeof formatStatus>[0];
  const plain = formatStatus(doc);
  const coloured = formatStatus(doc, palette(true));
  assertEquals(plain.join("\n").includes("\x1b["), false);
  assertEquals(coloured[1], "Connected:  \x1b[31mno\x1b[39m");
  assertEquals(coloured.map((l) => l.replaceAll("\x1b[31m", "").replaceAll("\x1b[39m", "")), plain);
});
