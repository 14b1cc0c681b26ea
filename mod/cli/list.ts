/**
 * `vif list`: what a namespace offers once connected: its services (with
 * ClusterIPs, ports and ready endpoints) and its workloads (with their pods'
 * addresses), read from the Kubernetes API.
 *
 * @module
 */

import type { Command } from "commander";
import type { NamespaceListing } from "../kube/list.ts";
import { configOption, configuredNamespace } from "./config.ts";
import type { CliContext } from "./context.ts";
import { asUserError } from "./errors.ts";
import { daemonClient, STATE_DIR_HELP, stateDirOf } from "./daemon_client.ts";
import { addKubeFlags, type KubeFlags, kubeLoadOptions } from "./kube_flags.ts";
import { formatStructured, type OutputFormat, outputOption } from "./output.ts";

interface ListFlags extends KubeFlags {
  stateDir?: string;
  namespace?: string;
  config?: string;
  output: OutputFormat;
}

const EXAMPLES = `
Examples:
  vif list                       # the current context's namespace
  vif list -n shop --context dev
  vif list -o json | jq -r '.services[].clusterIP'

Once connected, every service listed is reachable by name (web, web.shop,
web.shop.svc.cluster.local) and every ClusterIP and pod IP by address.`;

/**
 * Renders rows as columns two spaces apart.
 *
 * @param rows the cells, the first row the header
 * @returns the lines
 */
export function table(rows: string[][]): string[] {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => widths[i] = Math.max(widths[i] ?? 0, c.length));
  return rows.map((r) => r.map((c, i) => i === r.length - 1 ? c : c.padEnd(widths[i]!)).join("  "));
}

/**
 * The text form of a listing.
 *
 * @param l the listing
 * @returns the lines
 */
export function formatListing(l: NamespaceListing): string[] {
  const out: string[] = [];
  if (l.services.length === 0) out.push(`No services in namespace "${l.namespace}".`);
  else {
    out.push(`Services in namespace "${l.namespace}":`);
    out.push(
      ...table([
        ["NAME", "TYPE", "CLUSTER-IP", "PORTS", "READY"],
        ...l.services.map((s) => [
          s.name,
          s.type,
          s.clusterIP,
          s.ports.map((p) => `${p.port}/${p.protocol}${p.name ? ` (${p.name})` : ""}`).join(", ") ||
          "-",
          String(s.ready),
        ]),
      ]).map((line) => `  ${line}`),
    );
  }
  if (l.workloads.length > 0) {
    const agents = l.workloads.some((w) => w.agent !== undefined);
    const agentCell = (w: NamespaceListing["workloads"][number]) =>
      w.agent === undefined ? "-" : [
        `vif ${w.agent}`,
        ...(w.intercepts ?? []).map((i) => `port ${i.port} → ${i.holder}`),
      ].join(", ");
    out.push(`Workloads:`);
    out.push(
      ...table([
        ["NAME", "KIND", "READY", ...(agents ? ["AGENT"] : []), "PODS"],
        ...l.workloads.map((w) => [
          w.name,
          w.kind,
          `${w.pods.filter((p) => p.ready).length}/${w.desired}`,
          ...(agents ? [agentCell(w)] : []),
          w.pods.map((p) => `${p.name} ${p.ip ?? "(no IP)"}`).join(", ") || "-",
        ]),
      ]).map((line) => `  ${line}`),
    );
  }
  return out;
}

/**
 * Adds `vif list` to the program.
 *
 * @param program the root command
 * @param context the run's shared state
 */
export function registerList(program: Command, context: CliContext): void {
  const list = program
    .command("list")
    .description("list a namespace's services and workloads, with their addresses");
  addKubeFlags(list)
    .option(
      "-n, --namespace <ns>",
      "the namespace (default: the config file's for the context, else the context's, else default)",
    )
    .addOption(configOption())
    .option("--state-dir <dir>", STATE_DIR_HELP)
    .addOption(outputOption())
    .addHelpText("after", EXAMPLES)
    .action(async (flags: ListFlags) => {
      const kube = await import("../kube/mod.ts");
      const { listNamespace } = await import("../kube/list.ts");
      let listing: NamespaceListing;
      try {
        const loaded = kube.loadKubeConfig(kubeLoadOptions(flags, context.io.env));
        // As vif connect: -n, else the config file's namespace, else the context's.
        const namespace = flags.namespace ??
          await configuredNamespace(loaded.context, {
            config: flags.config,
            env: context.io.env,
          }) ??
          loaded.namespace;
        listing = await listNamespace(loaded.kubeConfig, namespace);
      } catch (error) {
        throw asUserError(error);
      }
      await addIntercepts(listing, stateDirOf(flags.stateDir, context.io.env));
      if (flags.output !== "text") context.io.stdout(formatStructured(listing, flags.output));
      else context.io.stdout(formatListing(listing).join("\n") + "\n");
    });
}

/**
 * Adds who intercepts what, when a daemon here is connected to a manager
 * that knows (best effort: `vif list` works without a connection).
 */
async function addIntercepts(listing: NamespaceListing, stateDir: string): Promise<void> {
  const client = await daemonClient(stateDir).catch(() => null);
  if (client === null) return;
  try {
    const { intercepts } = await client.request("agents", { namespace: listing.namespace });
    for (const w of listing.workloads) {
      if (w.agent === undefined) continue;
      w.intercepts = intercepts.filter((i) => i.workload === w.name).map((i) => ({
        port: i.port,
        holder: i.holder,
      }));
    }
  } catch {
    // Not connected, or an older daemon: the listing stands without them.
  } finally {
    client.close();
  }
}
