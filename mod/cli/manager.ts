/**
 * `vif manager` (also `vif --serve`, the container entrypoint): run the
 * traffic-manager until SIGTERM or SIGINT. The work is in `manager/`; this
 * module only reads flags and the environment and prints.
 *
 * `--serve` is a root flag followed by the manager's own flags, so
 * {@linkcode serveAlias} turns `vif [--debug] --serve [flags]` into
 * `vif manager [--debug] [flags]` before commander parses anything.
 *
 * @module
 */

import { DEFAULT_AGENT_LISTENER_PORT } from "../kube/agent_config.ts";
import { type Command, InvalidArgumentError, Option } from "commander";
import {
  DEFAULT_HEALTH_PORT,
  DEFAULT_MANAGER_NAMESPACE,
  DEFAULT_MANAGER_PORT,
} from "../rpc/names.ts";
import { DEFAULT_LIMITS, LIMIT_FLAGS, type LimitName, type Limits } from "../../manager/limits.ts";
import type { CliContext } from "./context.ts";
import { ExitCode, UserError } from "./errors.ts";
import { lowerFirst, untilSignal } from "./_server.ts";

/** The options of `vif manager`, as commander parses them. */
interface ManagerFlags {
  tlsDir?: string;
  listen?: string[];
  directListen?: string;
  clientCa?: string;
  healthListen: string | false;
  agentListen: string | false;
  allowAlsoProxy?: string[];
  serviceIp?: string[];
  managerNamespace?: string;
  podCidr?: string[];
  serviceCidr?: string[];
  clusterDomain?: string;
  dnsServer?: string;
  dnsUpstream?: string;
  namespaces?: string[];
  podIp?: string;
  resolvConf: string;
  allowAnyDestination?: boolean;
  dialTimeout: number;
  sessionTtl: number;
  heartbeatInterval: number;
  udpIdleTimeout: number;
  discover?: boolean;
  kubeconfig?: string;
  serviceAccountDir?: string;
  /** The `--max-…` limits, by commander's name for each flag. */
  [limit: string]: unknown;
}

const EXAMPLES = `
Listeners:
  --listen          clients, through the API server's pods/portforward: loopback
                    only (the kubelet dials localhost in the pod), so Kubernetes
                    RBAC on pods/portforward decides who is a client
  --direct-listen   clients that dial the manager (benchmarks, a LoadBalancer):
                    mutual TLS, a certificate signed by the client CA required
  --health-listen   plain HTTP /livez and /readyz for the kubelet's probes
  --agent-listen    the traffic-agents of intercepted pods (TLS; each checked with a
                    TokenReview of its projected token): with Kubernetes access only

Environment (used when the flag is absent):
  POD_IP                        the manager pod's IP (--pod-ip)
  POD_NAMESPACE                 the manager's namespace (--manager-namespace)
  VIF_POD_CIDRS                 pod subnets, comma-separated (--pod-cidr)
  VIF_SERVICE_CIDRS             service subnets, comma-separated (--service-cidr)
  VIF_ALLOW_ALSO_PROXY          --allow-also-proxy subnets, comma-separated
  TRAFFIC_MANAGER_SERVICE_HOST  its own Service's ClusterIP (--service-ip), as
                                the kubelet sets it

Discovery: in a pod (KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT set,
the service-account token mounted) and given neither --pod-cidr nor
--service-cidr, the manager reads the pod and service subnets and the
namespaces from the Kubernetes API and follows their changes. --discover turns
it on anyway (a subnet given by a flag still wins), --no-discover off, and
--kubeconfig FILE reads the API from outside a cluster.

Durations are milliseconds, or a number with ms, s or m ("5s", "1m").

Examples:
  # In the manager's container, with the TLS Secret mounted at /var/run/vif/tls
  vif --serve --tls-dir /var/run/vif/tls --pod-cidr 198.18.64.0/18 --service-cidr 198.18.128.0/20

  # Also for clients that dial it, with a client certificate (client-ca.crt in the TLS dir)
  vif --serve --tls-dir /var/run/vif/tls --direct-listen 0.0.0.0:8443

  # On this machine, for a test: any destination, a short session TTL
  vif manager --tls-dir ./tls --listen 127.0.0.1:8081 --allow-any-destination --session-ttl 5s

  # On this machine, discovering a cluster through a kubeconfig
  vif manager --tls-dir ./tls --listen 127.0.0.1:8081 --kubeconfig ~/.kube/config`;

/**
 * Rewrites `vif --serve …` as `vif manager …`: when `--serve` comes before any
 * command word (and before `--`), it is removed and `manager` put first.
 *
 * @param args The command-line arguments.
 * @returns The arguments commander should parse.
 *
 * @example
 * ```ts
 * import { serveAlias } from "./manager.ts";
 *
 * const args = serveAlias(["--debug", "--serve", "--listen", ":8081"]);
 * if (args.join(" ") !== "manager --debug --listen :8081") throw new Error(args.join(" "));
 * ```
 */
export function serveAlias(args: readonly string[]): string[] {
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === "--serve") return ["manager", ...args.slice(0, i), ...args.slice(i + 1)];
    if (arg === "--" || !arg.startsWith("-")) break; // A command word, or the end of options.
  }
  return [...args];
}

/**
 * Adds `vif manager` to the program.
 *
 * @param program The root command.
 * @param context The run's shared state.
 */
export function registerManager(program: Command, context: CliContext): void {
  const env = (name: string) => context.io.env(name)?.trim() || undefined;
  const command = program
    .command("manager")
    .description('run the traffic-manager, in the cluster (also "vif --serve")')
    .option("--tls-dir <dir>", "directory with tls.crt, tls.key and ca.crt (a mounted TLS Secret)")
    .option(
      "--listen <host:port>",
      `the client listener, on loopback only (repeatable; default: 127.0.0.1:${DEFAULT_MANAGER_PORT} and [::1]:${DEFAULT_MANAGER_PORT})`,
      collectOne,
    )
    .option(
      "--direct-listen <host:port>",
      "also serve clients that dial the manager, with mutual TLS (default: off)",
    )
    .option(
      "--client-ca <file>",
      "the CA of the direct listener's client certificates (default: client-ca.crt in --tls-dir)",
    )
    .option(
      "--health-listen <host:port>",
      "the HTTP health listener (/livez, /readyz)",
      `0.0.0.0:${DEFAULT_HEALTH_PORT}`,
    )
    .option("--no-health-listen", "no health listener")
    .option(
      "--agent-listen <host:port>",
      "the traffic-agents' listener, when the manager has Kubernetes access",
      `0.0.0.0:${DEFAULT_AGENT_LISTENER_PORT}`,
    )
    .option("--no-agent-listen", "no agent listener (no intercepts)")
    .option(
      "--allow-also-proxy <cidr>",
      "a subnet sessions may add with --also-proxy (repeatable; default: $VIF_ALLOW_ALSO_PROXY, else none)",
      collect,
    )
    .option(
      "--service-ip <ip>",
      "its own Service's ClusterIP, never dialed (repeatable; default: $TRAFFIC_MANAGER_SERVICE_HOST; discovery finds it too)",
      collect,
    )
    .option(
      "--manager-namespace <ns>",
      `the manager's namespace; its certificate names traffic-manager.<ns> (default: $POD_NAMESPACE, else "${DEFAULT_MANAGER_NAMESPACE}")`,
    )
    .option("--pod-cidr <cidr>", "a pod subnet (repeatable; default: $VIF_POD_CIDRS)", collect)
    .option(
      "--service-cidr <cidr>",
      "a service subnet (repeatable; default: $VIF_SERVICE_CIDRS)",
      collect,
    )
    .option(
      "--cluster-domain <domain>",
      "the cluster domain (default: from the resolv.conf search list, else cluster.local)",
    )
    .option(
      "--dns-server <ip>",
      "the cluster DNS address announced (default: the resolv.conf nameserver)",
    )
    .option(
      "--dns-upstream <host[:port]>",
      "where DNS queries are forwarded (default: the resolv.conf nameserver)",
    )
    .option("--namespaces <a,b>", "namespaces clients treat as top-level names", commaList)
    .option("--pod-ip <ip>", "this pod's IP (default: $POD_IP)")
    .option("--resolv-conf <file>", "the resolv.conf to read", "/etc/resolv.conf")
    .option(
      "--allow-any-destination",
      "dial any destination, not only the cluster's subnets (never this port)",
    )
    .option(
      "--discover",
      "discover the subnets and namespaces from the Kubernetes API (default: in a pod, when no --pod-cidr or --service-cidr is given)",
    )
    .option("--no-discover", "do not read the Kubernetes API")
    .option(
      "--kubeconfig <file>",
      "read the Kubernetes API through this kubeconfig (implies --discover)",
    )
    .option(
      "--service-account-dir <dir>",
      "where the pod's service-account token, ca.crt and namespace are (default: /var/run/secrets/kubernetes.io/serviceaccount)",
    )
    .addOption(durationOption("--dial-timeout", "dial timeout when a tunnel asks for none", 5000))
    .addOption(
      durationOption("--session-ttl", "how long a session lives without a heartbeat", 30_000),
    )
    .addOption(durationOption("--heartbeat-interval", "how often clients send heartbeats", 5000))
    .addOption(durationOption("--udp-idle-timeout", "how long an idle UDP flow lives", 60_000));
  for (
    const [name, { flag, what }] of Object.entries(LIMIT_FLAGS) as [
      LimitName,
      { flag: string; what: string },
    ][]
  ) {
    command.addOption(limitOption(name, flag, what));
  }
  command
    .addHelpText("after", EXAMPLES)
    .action(async (flags: ManagerFlags) => {
      if (flags.tlsDir === undefined) {
        throw new UserError("no TLS certificate for the traffic-manager", {
          hint: "Pass --tls-dir DIR, a directory holding tls.crt, tls.key and ca.crt.",
          exitCode: ExitCode.Usage,
        });
      }
      const fromEnv = (name: string) => env(name)?.split(",").map((s) => s.trim()).filter(Boolean);
      const limits: Partial<Limits> = {};
      for (
        const [name, { flag }] of Object.entries(LIMIT_FLAGS) as [LimitName, { flag: string }][]
      ) {
        const value = flags[new Option(flag).attributeName()];
        if (typeof value === "number") limits[name] = value;
      }
      const serviceIps = flags.serviceIp ?? fromEnv("TRAFFIC_MANAGER_SERVICE_HOST") ?? [];
      const { serve, ManagerSetupError } = await import("../../manager/mod.ts");
      const { inClusterConfigAvailable } = await import("../kube/in_cluster.ts");
      const log = (line: string) => context.io.stderr(line + "\n");
      const podSubnets = flags.podCidr ?? fromEnv("VIF_POD_CIDRS") ?? [];
      const serviceSubnets = flags.serviceCidr ?? fromEnv("VIF_SERVICE_CIDRS") ?? [];
      const access = {
        ...(flags.serviceAccountDir ? { serviceAccountDir: flags.serviceAccountDir } : {}),
        env: (name: string) => context.io.env(name),
      };
      // --kubeconfig and --discover ask for it; in a pod it is the default,
      // unless subnets were given.
      const discover = flags.discover === false ? false : flags.kubeconfig !== undefined ||
        flags.discover === true ||
        (podSubnets.length === 0 && serviceSubnets.length === 0 &&
          inClusterConfigAvailable(access));
      let manager;
      try {
        manager = await serve({
          tlsDir: flags.tlsDir,
          ...(flags.listen ? { listen: flags.listen } : {}),
          ...(flags.directListen ? { directListen: flags.directListen } : {}),
          ...(flags.clientCa ? { clientCaPath: flags.clientCa } : {}),
          ...(flags.healthListen !== false ? { healthListen: flags.healthListen } : {}),
          ...(flags.agentListen !== false && discover ? { agentListen: flags.agentListen } : {}),
          allowAlsoProxy: flags.allowAlsoProxy ?? fromEnv("VIF_ALLOW_ALSO_PROXY") ?? [],
          serviceIps,
          limits,
          managerNamespace: flags.managerNamespace ?? env("POD_NAMESPACE") ??
            DEFAULT_MANAGER_NAMESPACE,
          podSubnets,
          serviceSubnets,
          ...(flags.clusterDomain ? { clusterDomain: flags.clusterDomain } : {}),
          ...(flags.dnsServer ? { dnsServer: flags.dnsServer } : {}),
          ...(flags.dnsUpstream ? { dnsUpstream: flags.dnsUpstream } : {}),
          namespaces: flags.namespaces ?? [],
          ...((flags.podIp ?? env("POD_IP")) ? { podIp: flags.podIp ?? env("POD_IP") } : {}),
          resolvConfPath: flags.resolvConf,
          allowAnyDestination: flags.allowAnyDestination ?? false,
          dialTimeoutMs: flags.dialTimeout,
          sessionTtlMs: flags.sessionTtl,
          heartbeatIntervalMs: flags.heartbeatInterval,
          udpIdleTimeoutMs: flags.udpIdleTimeout,
          log,
          ...(discover
            ? {
              discovery: flags.kubeconfig !== undefined
                ? { kubeconfig: flags.kubeconfig }
                : { inCluster: true, ...access },
            }
            : {}),
        });
      } catch (error) {
        if (error instanceof ManagerSetupError) {
          throw new UserError(lowerFirst(error.message), {
            hint: error.hint,
            exitCode: error.usage ? ExitCode.Usage : ExitCode.Failure,
            cause: error,
          });
        }
        throw error;
      }
      const signal = await untilSignal(["SIGTERM", "SIGINT"]);
      log(`manager: ${signal}: stopping`);
      await manager.close();
    });
}

function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), ...commaList(value)];
}

function collectOne(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}

/** A `--max-…` option: a count, or for bytes a size (`64Mi`, `1Gi`, `512k`). */
function limitOption(name: LimitName, flag: string, what: string): Option {
  const bytes = name === "buffered" || name === "bufferedPerSession";
  const fallback = DEFAULT_LIMITS[name];
  const shown = bytes ? `${fallback / 1024 / 1024}Mi` : String(fallback);
  return new Option(`${flag} <${bytes ? "size" : "count"}>`, `the most ${what}`)
    .argParser(bytes ? size : count)
    .default(undefined, shown);
}

function count(text: string): number {
  const value = /^\d+$/.test(text.trim()) ? Number(text) : NaN;
  if (!(Number.isSafeInteger(value) && value > 0)) {
    throw new InvalidArgumentError("Expected a positive whole number.");
  }
  return value;
}

/** Parses a size: bytes, or a number with k, M, G (powers of 1000) or Ki, Mi, Gi (of 1024). */
function size(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*([kMG]i?)?$/.exec(text.trim());
  const units: Record<string, number> = {
    k: 1e3,
    M: 1e6,
    G: 1e9,
    ki: 1024,
    Ki: 1024,
    Mi: 1024 ** 2,
    Gi: 1024 ** 3,
  };
  const value = match ? Math.round(Number(match[1]) * (units[match[2] ?? ""] ?? 1)) : NaN;
  if (!(Number.isSafeInteger(value) && value > 0)) {
    throw new InvalidArgumentError('Expected a size like "64Mi", "1Gi" or "500000".');
  }
  return value;
}

function durationOption(flag: string, description: string, fallback: number): Option {
  const shown = fallback % 1000 === 0 ? `${fallback / 1000}s` : `${fallback}ms`;
  return new Option(`${flag} <duration>`, description).argParser(duration).default(fallback, shown);
}

function commaList(value: string): string[] {
  return value.split(",").map((s) => s.trim()).filter(Boolean);
}

/**
 * Parses a duration: milliseconds, or a number with `ms`, `s` or `m`.
 *
 * @param text The flag's value.
 * @returns Milliseconds.
 * @throws {InvalidArgumentError} When it is not a positive duration.
 */
function duration(text: string): number {
  const match = /^(\d+(?:\.\d+)?)\s*(ms|s|m)?$/.exec(text.trim());
  const unit = { ms: 1, s: 1000, m: 60_000 }[(match?.[2] ?? "ms") as "ms" | "s" | "m"];
  const value = match ? Math.round(Number(match[1]) * unit) : NaN;
  if (!(value > 0)) {
    throw new InvalidArgumentError('Expected a duration like "5000", "5s" or "1m".');
  }
  return value;
}
