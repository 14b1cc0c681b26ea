/**
 * `vif status`: whether this machine is connected, to what, through what,
 * and the counters; a short aligned table, or the JSON document of
 * docs/daemon.md (`--output json`, schema 1).
 *
 * @module
 */

import type { Command } from "commander";
import { VERSION } from "../version.ts";
import type { ConnectionStatus } from "../daemon/connection.ts";
import type { StatusDocument } from "../daemon/daemon.ts";
import type { CliContext } from "./context.ts";
import { daemonClient, STATE_DIR_HELP, stateDirOf } from "./daemon_client.ts";
import { asUserError } from "./errors.ts";
import { fetchConnections, formatAge, formatBytes, formatConnections } from "./connections.ts";
import { formatStructured, type OutputFormat, outputOption } from "./output.ts";
import { type Palette, palette } from "./terminal.ts";

/** The document when no daemon runs. */
export function notRunning(): StatusDocument {
  return {
    schema: 1,
    client: { version: VERSION },
    daemon: {
      running: false,
      version: null,
      pid: null,
      uptimeSeconds: null,
      logFile: null,
      logLevel: null,
      memory: null,
    },
    connected: false,
    connection: null,
    lastError: null,
  };
}

/**
 * Asks the daemon for its status.
 *
 * @param stateDir the state directory
 * @returns the status, or {@linkcode notRunning} when no daemon answers
 */
export async function fetchStatus(stateDir: string): Promise<StatusDocument> {
  const client = await daemonClient(stateDir);
  if (!client) {
    const { daemonAlive, readDaemonState } = await import("../daemon/state.ts");
    const state = await readDaemonState(stateDir);
    const dead = state !== null && !await daemonAlive(state.pid);
    return {
      ...notRunning(),
      lastError: dead
        ? {
          message: `the daemon (pid ${state.pid}) died and left its changes in ${stateDir}`,
          hint: "Run `sudo vif quit --force` to put them back (the next `vif connect` does too).",
        }
        : null,
    };
  }
  try {
    const status = await client.request("status", {}) as StatusDocument;
    return { ...status, client: { version: VERSION } };
  } catch (error) {
    throw asUserError(error);
  } finally {
    client.close();
  }
}

function where(c: ConnectionStatus): string {
  return c.manager.via === "port-forward"
    ? `${c.manager.namespace}/${c.manager.pod} through the API server`
    : c.manager.address;
}

/**
 * The lines `vif connect` prints once connected.
 *
 * @param c the connection's status
 * @returns three lines: the manager, the routes, DNS
 */
export function connectedSummary(c: ConnectionStatus): string[] {
  return [
    `connected to the traffic-manager at ${where(c)} (manager ${c.manager.version}); ` +
    `${c.context ? `context "${c.context}", ` : ""}namespace ${c.namespace}`,
    `routes: ${c.subnets.routed.map((r) => `${r.cidr} (${r.source})`).join(", ")} via ${
      c.tun?.name ?? "?"
    }`,
    `dns: ${c.dns.address} (${c.dns.mode ?? "not set up"}), search ${c.dns.search.join(" ")}`,
  ];
}

/**
 * Renders the status as a short aligned table.
 *
 * @param s the status
 * @param p colours for a terminal (none by default): the state green, yellow or red
 * @returns the lines
 */
export function formatStatus(s: StatusDocument, p: Palette = palette(false)): string[] {
  const rows: Array<[string, string]> = [];
  const add = (k: string, v: string) => rows.push([k, v]);
  if (!s.daemon.running) {
    return s.lastError
      ? [
        "Daemon:     not running",
        `Connected:  ${p.red("no")}`,
        `Last error: ${p.red(s.lastError.message)}`,
        "",
        s.lastError.hint,
      ]
      : [
        "Daemon:     not running",
        `Connected:  ${p.red("no")}`,
        "",
        "Connect with `vif connect`.",
      ];
  }
  add(
    "Daemon",
    `running (vif ${s.daemon.version}, pid ${s.daemon.pid}, up ${
      formatAge(s.daemon.uptimeSeconds ?? 0)
    })`,
  );
  add("Log", `${s.daemon.logFile} (level ${s.daemon.logLevel})`);
  const m = s.daemon.memory;
  if (m) {
    add(
      "Memory",
      `${m.rssMb} MiB resident; JS heap ${m.heapUsedMb} of ${m.heapTotalMb} MiB, buffers ${m.externalMb} MiB`,
    );
  }
  const c = s.connection;
  if (!c) {
    add("Connected", p.red("no"));
    if (s.lastError) add("Last error", p.red(s.lastError.message));
    const lines = table(rows);
    lines.push("", s.lastError ? s.lastError.hint : "Connect with `vif connect`.");
    return lines;
  }
  add(
    "Connected",
    c.state === "connected"
      ? `${p.green("yes")}, for ${formatAge(c.uptimeSeconds)}`
      : p.yellow("reconnecting: the traffic-manager does not answer"),
  );
  if (c.context) add("Context", `${c.context} (${c.cluster})`);
  add("Namespace", c.namespace);
  add("Manager", `${c.manager.version} at ${where(c)}`);
  add("Tunnel", "one gRPC stream for every flow (mux)");
  if (c.tun) add("TUN", `${c.tun.name}, MTU ${c.tun.mtu}, ${c.tun.addresses.join(" ")}`);
  for (const [i, r] of c.subnets.routed.entries()) {
    add(i === 0 ? "Routed" : "", `${r.cidr.padEnd(18)} ${r.source}`);
  }
  for (const [i, e] of c.subnets.excluded.entries()) {
    add(
      i === 0 ? "Not routed" : "",
      `${e.cidr.padEnd(18)} ${
        e.reason === "conflict" ? `conflicts with ${e.route}` : "--never-proxy"
      }`,
    );
  }
  add("DNS", `${c.dns.address} via ${c.dns.mode ?? "(not set up)"}`);
  add("Search", c.dns.search.join(" "));
  add("Domains", c.dns.domains.filter((d) => !d.endsWith(".arpa")).join(" "));
  const k = c.counters;
  add(
    "Connections",
    `${k.connectionsOpen} open, ${k.connectionsTotal} total, ${k.dialFailures} failed to dial`,
  );
  add("UDP flows", `${k.udpFlowsOpen} open, ${k.udpFlowsTotal} total`);
  add("DNS queries", `${k.dnsQueries} (${k.dnsCacheHits} from cache)`);
  add(
    "Traffic",
    `${formatBytes(k.bytesToCluster)} to the cluster, ${
      formatBytes(k.bytesFromCluster)
    } back; ${k.packetsDropped} ${k.packetsDropped === 1 ? "packet" : "packets"} dropped`,
  );
  for (const [n, i] of (c.intercepts ?? []).entries()) {
    add(
      n === 0 ? "Intercepts" : "",
      `${i.namespace}/${i.workload} port ${i.port} → ${i.local} (${i.pods.length} pod${
        i.pods.length === 1 ? "" : "s"
      }, ${i.connections} connection${i.connections === 1 ? "" : "s"}` +
        `${i.mountPoint ? `, volumes on ${i.mountPoint}` : ""})`,
    );
  }
  return table(rows);
}

function table(rows: Array<[string, string]>): string[] {
  const width = Math.max(...rows.map(([k]) => k.length)) + 2;
  return rows.map(([k, v]) => `${(k ? `${k}:` : "").padEnd(width)}${v}`);
}

const EXAMPLES = `
Examples:
  vif status
  vif status --output json | jq .connection.subnets.routed
  vif status --connections           # and every open connection (vif connections)

Exit codes: 0 connected, 1 not connected (or no daemon), 2 bad flags.
The JSON document is described in docs/daemon.md (schema 1).`;

/**
 * Adds `vif status` to the program.
 *
 * @param program the root command
 * @param context the run's shared state
 */
export function registerStatus(program: Command, context: CliContext): void {
  program
    .command("status")
    .description("show whether this machine is connected, to what, and the traffic so far")
    .addOption(outputOption())
    .option("--state-dir <dir>", STATE_DIR_HELP)
    .option("--connections", "also list the open connections and flows (as `vif connections`)")
    .addHelpText("after", EXAMPLES)
    .action(async (
      options: { output: OutputFormat; stateDir?: string; connections?: boolean },
    ) => {
      const stateDir = stateDirOf(options.stateDir, context.io.env);
      const status = await fetchStatus(stateDir);
      // With --connections, JSON gains a "connections" member (the `connections` document).
      let connections: Awaited<ReturnType<typeof fetchConnections>> | undefined;
      if (options.connections && status.connected) {
        const client = await daemonClient(stateDir);
        try {
          if (client) connections = await fetchConnections(client);
        } finally {
          client?.close();
        }
      }
      context.io.stdout(
        options.output !== "text"
          ? formatStructured(connections ? { ...status, connections } : status, options.output)
          : [
            ...formatStatus(status, palette(context.color ?? false)),
            ...(connections ? ["", ...formatConnections(connections)] : []),
          ]
            .join("\n") + "\n",
      );
      context.exitCode = status.connected ? 0 : 1;
    });
}
