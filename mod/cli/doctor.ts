/**
 * `vif doctor`: checks, one by one, what `vif connect` needs (the TUN device,
 * privileges, the DNS mode, the daemon, the kubeconfig, the API server, the
 * traffic-manager and its version, the cluster's subnets against this
 * machine's routes; and, as a warning only, what `vif intercept --mount` needs)
 * and says what to do about each that fails.
 *
 * @module
 */

import type { Command } from "commander";
import { VERSION } from "../version.ts";
import { DEFAULT_MANAGER_NAMESPACE } from "../rpc/names.ts";
import type { CliContext } from "./context.ts";
import { STATE_DIR_HELP, stateDirOf } from "./daemon_client.ts";
import { addKubeFlags, type KubeFlags, kubeLoadOptions } from "./kube_flags.ts";
import { formatStructured, type OutputFormat, outputOption } from "./output.ts";
import { palette } from "./terminal.ts";

/** One check's outcome. */
interface Check {
  name: string;
  /** ok, a warning (works, but), a failure (connect will fail), or skipped. */
  result: "ok" | "warn" | "fail" | "skip";
  detail: string;
  /** What to do (warn, fail). */
  fix?: string;
}

interface DoctorOptions extends KubeFlags {
  managerNamespace: string;
  stateDir?: string;
  output: OutputFormat;
}

const MARK = { ok: "ok  ", warn: "warn", fail: "FAIL", skip: "skip" } as const;

function message(error: unknown): string {
  return String((error as Error)?.message ?? error);
}

/** Whether `vif intercept --mount` can work for this user: sshfs on PATH, /dev/fuse openable. */
function mountCheck(path: string): Check {
  const sshfs = path.split(":").some((d) => {
    try {
      return Deno.statSync(`${d}/sshfs`).isFile;
    } catch {
      return false;
    }
  });
  if (!sshfs) {
    return {
      name: "mounts",
      result: "warn",
      detail: "sshfs is not installed: vif intercept --mount cannot mount a pod's volumes",
      fix: "Install sshfs (Debian: apt install sshfs) to use --mount.",
    };
  }
  try {
    Deno.openSync("/dev/fuse", { read: true, write: true }).close();
  } catch (error) {
    const denied = error instanceof Deno.errors.PermissionDenied;
    return {
      name: "mounts",
      result: "warn",
      detail: denied
        ? `uid ${Deno.uid()} may not open /dev/fuse: vif intercept --mount will fail`
        : `no usable /dev/fuse (${message(error)}): vif intercept --mount will fail`,
      fix: denied
        ? "Most systems make /dev/fuse mode 0666 (a udev rule); ask for that, or for a group " +
          "that may open it."
        : "Load the fuse module (modprobe fuse); in a container, pass /dev/fuse in.",
    };
  }
  return { name: "mounts", result: "ok", detail: "sshfs and /dev/fuse are usable for --mount" };
}

function hintOf(error: unknown, fallback: string): string {
  const hint = (error as { hint?: unknown })?.hint;
  return typeof hint === "string" ? hint : fallback;
}

async function runChecks(options: DoctorOptions, context: CliContext): Promise<Check[]> {
  const checks: Check[] = [];
  const add = (c: Check) => checks.push(c);
  const env = context.io.env;

  // The TUN device and the right to make one.
  const { checkTunPermission } = await import("../daemon/connection.ts");
  try {
    await checkTunPermission();
    add({ name: "TUN", result: "ok", detail: "/dev/net/tun is there and this process may use it" });
  } catch (error) {
    const noDevice = /no TUN device/.test(message(error));
    const sudo = (env("PATH") ?? "/usr/bin:/bin").split(":").some((d) => {
      try {
        return Deno.statSync(`${d}/sudo`).isFile;
      } catch {
        return false;
      }
    });
    if (!noDevice && sudo) {
      add({
        name: "TUN",
        result: "ok",
        detail:
          `uid ${Deno.uid()} may not make TUN devices; vif connect starts its daemon with sudo`,
      });
    } else add({ name: "TUN", result: "fail", detail: message(error), fix: hintOf(error, "") });
  }

  // How DNS would be set up.
  const dns = await import("../daemon/dns_config.ts");
  try {
    const choice = dns.chooseConfigurator(await dns.detectDnsEnvironment());
    add({
      name: "DNS",
      result: "ok",
      detail: `${choice.kind}: ${choice.log.replace(/^dns: /, "")}`,
    });
  } catch (error) {
    add({
      name: "DNS",
      result: "fail",
      detail: message(error),
      fix: "Check /etc/resolv.conf and systemd-resolved.",
    });
  }

  // What `vif intercept --mount` needs: sshfs, and a /dev/fuse this user may open (fusermount3
  // opens it as the user). Optional, so a warning at most.
  add(mountCheck(env("PATH") ?? "/usr/bin:/bin"));

  // The daemon.
  const stateDir = stateDirOf(options.stateDir, env);
  const { fetchStatus } = await import("./status.ts");
  const { daemonAlive, readDaemonState } = await import("../daemon/state.ts");
  const status = await fetchStatus(stateDir).catch(() => null);
  const state = await readDaemonState(stateDir);
  if (status?.daemon.running) {
    const same = status.daemon.version === VERSION;
    add({
      name: "daemon",
      result: same ? "ok" : "warn",
      detail: `running, vif ${status.daemon.version}, pid ${status.daemon.pid}, ${
        status.connected ? "connected" : "not connected"
      }`,
      ...(same
        ? {}
        : { fix: "Run `vif quit`, then `vif connect`: the daemon is another version." }),
    });
  } else if (state && !await daemonAlive(state.pid)) {
    add({
      name: "daemon",
      result: "fail",
      detail: `a daemon (pid ${state.pid}) died and left its state in ${stateDir}`,
      fix: "Run `sudo vif quit --force` to put back what it changed.",
    });
  } else add({ name: "daemon", result: "ok", detail: "not running (vif connect starts it)" });

  // The cluster.
  const kube = await import("../kube/mod.ts");
  let loaded;
  try {
    loaded = kube.loadKubeConfig(kubeLoadOptions(options, env));
    add({
      name: "kubeconfig",
      result: "ok",
      detail: `context "${loaded.context}" from ${loaded.files.join(", ")}`,
    });
  } catch (error) {
    add({ name: "kubeconfig", result: "fail", detail: message(error), fix: hintOf(error, "") });
    return checks;
  }
  const { discoverManager, reachApiServer } = await import("../kube/discovery.ts");
  try {
    await reachApiServer(loaded.server, 5000);
    add({ name: "API server", result: "ok", detail: `${loaded.server} answers` });
  } catch (error) {
    add({ name: "API server", result: "fail", detail: message(error), fix: hintOf(error, "") });
    return checks;
  }
  let manager;
  let access;
  try {
    access = await kube.resolveAccess(loaded.kubeConfig);
    const { kubeApi } = await import("../kube/api.ts");
    manager = await discoverManager(kubeApi(access), options.managerNamespace);
    const version = manager.version ?? "(unlabelled)";
    const same = manager.version === VERSION;
    add({
      name: "traffic-manager",
      result: same ? "ok" : "warn",
      detail: `${manager.namespace}/${manager.pod}, version ${version}`,
      ...(same ? {} : {
        fix: `Run \`vif install --context ${loaded.context}\` to bring it to ${VERSION}.`,
      }),
    });
  } catch (error) {
    add({
      name: "traffic-manager",
      result: "fail",
      detail: message(error),
      fix: hintOf(error, ""),
    });
    return checks;
  }

  // The cluster's subnets against this machine's routes.
  if (status?.connection) {
    const conflicts = status.connection.subnets.excluded.filter((e) => e.reason === "conflict");
    add({
      name: "subnets",
      result: conflicts.length ? "warn" : "ok",
      detail: conflicts.length
        ? `connected; not routed for a conflict: ${
          conflicts.map((c) => `${c.cidr} (${c.route})`).join(", ")
        }`
        : `connected; routed ${status.connection.subnets.routed.map((r) => r.cidr).join(" ")}`,
    });
    return checks;
  }
  add(await subnetCheck(access, manager, options.managerNamespace));
  return checks;
}

/** Asks the manager for the cluster's subnets (Arrive, then Depart) and plans them. */
async function subnetCheck(
  access: import("../kube/api.ts").ApiAccess,
  manager: { namespace: string; pod: string; port: number; caPem: string },
  managerNamespace: string,
): Promise<Check> {
  const { startPortForwardProxy } = await import("../kube/portforward.ts");
  const { create, createManagerClient, unary } = await import("../daemon/manager_client.ts");
  const { ArriveRequestSchema, SessionRefSchema } = await import("../rpc/service.ts");
  const { planSubnets, describeRoute } = await import("../daemon/subnets.ts");
  const { listRoutes } = await import("../tun/mod.ts");
  let proxy;
  try {
    proxy = await startPortForwardProxy(access, manager);
  } catch (error) {
    return { name: "subnets", result: "fail", detail: message(error), fix: hintOf(error, "") };
  }
  const client = createManagerClient({
    address: proxy.address,
    caPem: manager.caPem,
    managerNamespace,
  });
  try {
    const arrive = await unary<import("../rpc/service.ts").ArriveResponse>(
      client,
      "arrive",
      create(ArriveRequestSchema, {
        client: { name: "vif doctor", hostname: Deno.hostname(), version: VERSION, os: "linux" },
      }),
      10_000,
    );
    await unary(client, "depart", create(SessionRefSchema, { sessionId: arrive.sessionId }), 2000)
      .catch(() => {});
    const info = arrive.clusterInfo;
    const plan = planSubnets({
      cluster: [
        ...(info?.podSubnets ?? []).map((cidr) => ({ cidr, source: "pods" as const })),
        ...(info?.serviceSubnets ?? []).map((cidr) => ({ cidr, source: "services" as const })),
      ],
      system: await listRoutes(),
      protectedHosts: [new URL(access.server).hostname.replace(/^\[|\]$/g, "")],
    });
    if (plan.conflicts.length === 0) {
      return {
        name: "subnets",
        result: "ok",
        detail: `${
          plan.routes.map((r) => r.cidr).join(" ")
        }: no overlap with this machine's routes`,
      };
    }
    const c = plan.conflicts[0]!;
    return {
      name: "subnets",
      result: "fail",
      detail: plan.conflicts.map((x) => `${x.subnet} overlaps "${describeRoute(x.route)}"`).join(
        "; ",
      ),
      fix: `Connect with --never-proxy ${c.overlap} (keep that route) or ` +
        `--allow-conflicting-subnets ${c.overlap} (route it to the cluster anyway).`,
    };
  } catch (error) {
    return {
      name: "subnets",
      result: "fail",
      detail: `cannot ask the traffic-manager: ${message(error)}`,
      fix: "Check the manager's log: kubectl -n " + manager.namespace + " logs " + manager.pod,
    };
  } finally {
    client.close();
    await proxy.close();
  }
}

const EXAMPLES = `
Examples:
  vif doctor
  vif doctor --context dev --output json

Exit codes: 0 every check passed (warnings allowed), 1 a check failed.`;

/**
 * Adds `vif doctor` to the program.
 *
 * @param program the root command
 * @param context the run's shared state
 */
export function registerDoctor(program: Command, context: CliContext): void {
  const doctor = program
    .command("doctor")
    .description("check what vif connect needs, and say what to do about each problem");
  addKubeFlags(doctor)
    .option("--manager-namespace <ns>", "the manager's namespace", DEFAULT_MANAGER_NAMESPACE)
    .option("--state-dir <dir>", STATE_DIR_HELP)
    .addOption(outputOption())
    .addHelpText("after", EXAMPLES)
    .action(async (options: DoctorOptions) => {
      const checks = await runChecks(options, context);
      if (options.output !== "text") {
        context.io.stdout(formatStructured({ checks }, options.output));
      } else {
        const p = palette(context.color ?? false);
        const mark = {
          ok: p.green(MARK.ok),
          warn: p.yellow(MARK.warn),
          fail: p.red(p.bold(MARK.fail)),
          skip: p.dim(MARK.skip),
        };
        const width = Math.max(...checks.map((c) => c.name.length));
        for (const c of checks) {
          context.io.stdout(`${mark[c.result]}  ${c.name.padEnd(width)}  ${c.detail}\n`);
          if (c.fix && c.result !== "ok") {
            context.io.stdout(`${" ".repeat(width + 8)}${p.bold("→")} ${c.fix}\n`);
          }
        }
      }
      context.exitCode = checks.some((c) => c.result === "fail") ? 1 : 0;
    });
}
