/**
 * `vif connect`: connect this machine to a cluster's network and stay
 * connected until interrupted (Ctrl-C or SIGTERM), then put everything back.
 *
 * This is the foreground form; the background daemon that `vif connect`
 * starts by default, with `vif status` and `vif quit`, comes with the daemon.
 *
 * @module
 */

import { type Command, InvalidArgumentError } from "commander";
import { Cidr } from "../net/address.ts";
import { DEFAULT_MANAGER_NAMESPACE } from "../rpc/service.ts";
import type { CliContext } from "./context.ts";
import { ExitCode, UserError } from "./errors.ts";

/** The options of `vif connect`. */
interface ConnectOptions {
  context?: string;
  kubeconfig?: string;
  managerAddress?: string;
  managerCa?: string;
  managerNamespace: string;
  namespace: string;
  stateDir: string;
  alsoProxy: string[];
  neverProxy: string[];
  allowConflictingSubnets: string[];
  /** `vif connect -- CMD ARGS…`. */
  command?: string[];
}

/** Commander's parser for a repeatable CIDR flag: checks it and collects it. */
function collectCidr(value: string, previous: string[]): string[] {
  try {
    return [...previous, Cidr.parse(value).toString()];
  } catch {
    throw new InvalidArgumentError(
      `"${value}" is not a subnet; give it as ADDRESS/PREFIX, e.g. 198.18.5.0/24.`,
    );
  }
}

const EXAMPLES = `
Examples:
  # Through the Kubernetes API server (one port-forward to the traffic-manager)
  vif connect --context dev

  # Reach a manager whose gRPC port is reachable directly
  vif connect --manager-address 198.18.0.5:8081 --manager-ca ca.crt

  # Run one command while connected; vif exits with its exit code
  vif connect --context dev -- curl -sS http://web.default/

  # A VPN routes 198.18.5.0/24: keep it, route the rest of the cluster
  vif connect --context dev --never-proxy 198.18.5.0/24

  # Reach a database next to the cluster through the cluster's network
  vif connect --context dev --also-proxy 198.19.200.80/32

  # Then, from any program on this machine
  curl http://web.default/
  dig SRV _http._tcp.web.default.svc.cluster.local`;

/**
 * Adds `vif connect` to the program.
 *
 * @param program the root command
 * @param context the run's shared state
 */
export function registerConnect(program: Command, context: CliContext): void {
  program
    .command("connect")
    .description(
      "connect this machine to the cluster's network (until Ctrl-C, or while a command runs)",
    )
    .option("--context <name>", "the kubeconfig context to use (default: the current one)")
    .option(
      "--kubeconfig <file>",
      "the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)",
    )
    .option(
      "--manager-address <host:port>",
      "reach the manager's gRPC port directly, not through the API server",
    )
    .option("--manager-ca <file>", "the CA certificate (PEM) that signed the manager's certificate")
    .option(
      "--manager-namespace <ns>",
      "the manager's namespace; its certificate names traffic-manager.<ns>",
      DEFAULT_MANAGER_NAMESPACE,
    )
    .option("-n, --namespace <ns>", "the namespace short names resolve in", "default")
    .option("--state-dir <dir>", "where vif keeps what it must restore", "/var/lib/vif")
    .option(
      "--also-proxy <cidr>",
      "send this subnet to the cluster too, though outside its subnets (repeatable)",
      collectCidr,
      [],
    )
    .option(
      "--never-proxy <cidr>",
      "keep this subnet out of the TUN, on the route it had (repeatable)",
      collectCidr,
      [],
    )
    .option(
      "--allow-conflicting-subnets <cidr>",
      "route this part of the cluster's subnets even over an existing route (repeatable)",
      collectCidr,
      [],
    )
    .addHelpText("after", EXAMPLES)
    .argument("[command...]", "a command to run while connected (after --); its exit code is vif's")
    .action(async (command: string[], options: ConnectOptions) => {
      options.command = command;
      if (!options.managerAddress) {
        context.exitCode = await connectThroughKube(options, context);
        return;
      }
      if (!/^(\[[^\]]+\]|[^:\s]+):\d{1,5}$/.test(options.managerAddress)) {
        throw new UserError(`bad manager address "${options.managerAddress}"`, {
          hint: 'Give it as HOST:PORT, e.g. "198.18.0.5:8081".',
          exitCode: ExitCode.Usage,
        });
      }
      if (!options.managerCa) {
        throw new UserError("no CA to verify the traffic-manager with", {
          hint: "Pass --manager-ca FILE: the ca.crt of the manager's TLS secret.",
          exitCode: ExitCode.Usage,
        });
      }
      let caPem: string;
      try {
        caPem = await Deno.readTextFile(options.managerCa);
      } catch (cause) {
        throw new UserError(
          `cannot read the manager's CA "${options.managerCa}": ${(cause as Error).message}`,
          {
            hint: "Check the path given to --manager-ca.",
            cause,
          },
        );
      }
      if (!caPem.includes("BEGIN CERTIFICATE")) {
        throw new UserError(`"${options.managerCa}" holds no PEM certificate`, {
          hint: "Pass the ca.crt of the manager's TLS secret to --manager-ca.",
        });
      }
      const { runForeground } = await import("../daemon/foreground.ts");
      context.exitCode = await runForeground({
        managerAddress: options.managerAddress,
        managerCaPem: caPem,
        managerNamespace: options.managerNamespace,
        namespace: options.namespace,
        stateDir: options.stateDir,
        alsoProxy: options.alsoProxy,
        neverProxy: options.neverProxy,
        command: options.command ?? [],
        allowConflicting: options.allowConflictingSubnets,
        debug: context.debug,
        out: (line) => context.io.stdout(line + "\n"),
        err: (line) => context.io.stderr(line + "\n"),
      }).catch(rethrowWithHint);
    });
}

/** Errors of the daemon and Kubernetes layers carry a `hint`: show them as a user error. */
function rethrowWithHint(e: unknown): never {
  const hint = (e as { hint?: unknown })?.hint;
  if (e instanceof Error && typeof hint === "string") {
    throw new UserError(e.message, { hint, cause: e });
  }
  throw e;
}

/** `vif connect [--context C] [--kubeconfig F]`: find the manager and port-forward to it. */
async function connectThroughKube(options: ConnectOptions, context: CliContext): Promise<number> {
  const out = (line: string) => context.io.stdout(line + "\n");
  const [
    { loadKubeConfig },
    { discoverManager, reachApiServer },
    { startPortForwardProxy },
    { runForeground },
  ] = await Promise.all([
    import("../kube/client.ts"),
    import("../kube/discovery.ts"),
    import("../kube/portforward.ts"),
    import("../daemon/foreground.ts"),
  ]);
  try {
    const loaded = loadKubeConfig({
      ...(options.kubeconfig ? { kubeconfig: options.kubeconfig } : {}),
      ...(options.context ? { context: options.context } : {}),
    });
    out(`contacting the API server at ${loaded.server} (context "${loaded.context}")`);
    await reachApiServer(loaded.server);
    const manager = await discoverManager(loaded.kubeConfig, options.managerNamespace);
    out(`port-forwarding to ${manager.namespace}/${manager.pod}:${manager.port}`);
    const proxy = await startPortForwardProxy(loaded.kubeConfig, {
      namespace: manager.namespace,
      pod: manager.pod,
      port: manager.port,
    });
    try {
      const apiHost = new URL(loaded.server).hostname.replace(/^\[|\]$/g, "");
      return await runForeground({
        managerAddress: proxy.address,
        managerCaPem: manager.caPem,
        managerNamespace: options.managerNamespace,
        namespace: options.namespace,
        stateDir: options.stateDir,
        alsoProxy: options.alsoProxy,
        neverProxy: options.neverProxy,
        command: options.command ?? [],
        allowConflicting: options.allowConflictingSubnets,
        protectedHosts: [apiHost],
        via: `${manager.namespace}/${manager.pod} through the API server`,
        lost: proxy.dropped,
        debug: context.debug,
        out,
        err: (line) => context.io.stderr(line + "\n"),
      });
    } finally {
      await proxy.close();
    }
  } catch (e) {
    rethrowWithHint(e);
  }
}
