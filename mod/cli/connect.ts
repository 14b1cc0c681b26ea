/**
 * `vif connect`: connect this machine to a cluster's network. By default the
 * daemon holds the connection (started in the background, through sudo when
 * needed) and `vif connect` returns once it is up; `--foreground` holds it in
 * this process until Ctrl-C. With `-- CMD`, the command runs while connected
 * and vif exits with its code.
 *
 * @module
 */

import type { Command } from "commander";
import { type ConnectParams, type ControlClient, kubeconfigSource } from "../daemon/control.ts";
import type { StatusDocument } from "../daemon/daemon.ts";
import type { CliContext } from "./context.ts";
import { asUserError, ExitCode, UserError } from "./errors.ts";
import { asOption, requestTimeoutOption } from "./kube_flags.ts";
import { type ProgressLine, progressLine } from "./terminal.ts";
import { formatStructured, type OutputFormat, outputOption } from "./output.ts";
import {
  daemonClient,
  quitDaemon,
  startDaemon,
  STATE_DIR_HELP,
  stateDirOf,
} from "./daemon_client.ts";
import { connectedSummary } from "./status.ts";
import { readCaBundle } from "../kube/ca_bundle.ts";
import {
  addSettingOptions,
  type ConfigFile,
  configLocation,
  configOption,
  type ConnectSettings,
  readConfigFile,
  resolveSettings,
  sectionContext,
  typedSettings,
} from "./config.ts";

/** The options of `vif connect`. */
interface ConnectOptions {
  context?: string;
  kubeconfig?: string;
  managerAddress?: string;
  managerCa?: string;
  clientCert?: string;
  clientKey?: string;
  as?: string;
  requestTimeout?: number;
  config?: string;
  stateDir?: string;
  foreground?: boolean;
  quiet?: boolean;
  output: OutputFormat;
}

const EXAMPLES = `
Examples:
  # Through the Kubernetes API server (one port-forward to the traffic-manager)
  vif connect --context dev

  # Reach the manager's direct (mutual TLS) listener, with what "vif client-cert" wrote
  vif connect --manager-address 198.18.0.5:8443 --manager-ca ca.crt \\
    --client-cert client.crt --client-key client.key

  # Run one command while connected; vif exits with its exit code
  vif connect --context dev -- curl -sS http://web.default/

  # A VPN routes 198.18.5.0/24: keep it, route the rest of the cluster
  vif connect --context dev --never-proxy 198.18.5.0/24

  # Reach a database next to the cluster through the cluster's network
  vif connect --context dev --also-proxy 198.19.200.80/32

  # Then, from any program on this machine
  curl http://web.default/
  dig SRV _http._tcp.web.default.svc.cluster.local

  # In a container or CI job: hold the connection in this process
  vif connect --foreground --context dev

The settings from --manager-namespace to --grace may be kept in a config file
(~/.config/vif/config.yaml), for every context or per context; a flag beats the
file, and a list flag replaces the file's list. "vif config view" shows them.

Exit codes: 0 connected (or the command's own code after --), 1 failed (the
message says why and what to do), 2 bad flags, 127 the command cannot be run.`;

/**
 * Adds `vif connect` to the program.
 *
 * @param program the root command
 * @param context the run's shared state
 */
export function registerConnect(program: Command, context: CliContext): void {
  const connect = program
    .command("connect")
    .description(
      "connect this machine to the cluster's network (in the background, via the daemon)",
    )
    .option("--context <name>", "the kubeconfig context to use (default: the current one)")
    .option(
      "--kubeconfig <file>",
      "the kubeconfig file (default: $KUBECONFIG, then ~/.kube/config)",
    )
    .addOption(asOption())
    .addOption(requestTimeoutOption())
    .option(
      "--manager-address <host:port>",
      "reach the manager's gRPC port directly, not through the API server",
    )
    .option("--manager-ca <file>", "the CA certificate (PEM) that signed the manager's certificate")
    .option(
      "--client-cert <file>",
      "with --manager-address: the client certificate (PEM) for the manager's direct listener",
    )
    .option("--client-key <file>", "with --client-cert: its private key (PEM)")
    .addOption(configOption());
  addSettingOptions(connect)
    .option("--foreground", "hold the connection in this process until Ctrl-C (containers, CI)")
    .option("-q, --quiet", "print nothing but errors")
    .addOption(
      outputOption("the status once connected"),
    )
    .option("--state-dir <dir>", STATE_DIR_HELP)
    .addHelpText("after", EXAMPLES)
    .argument("[command...]", "a command to run while connected (after --); its exit code is vif's")
    .action(async (command: string[], options: ConnectOptions, self: Command) => {
      const stateDir = stateDirOf(options.stateDir, context.io.env);
      // Before any daemon starts: a wrong config file is the user's to fix first.
      const config = {
        file: await readConfigFile(configLocation(options.config, context.io.env)),
        typed: typedSettings(self),
      };
      if (options.foreground) {
        const params = await connectParams(options, config, context);
        context.exitCode = await connectForeground(params, command, stateDir, options, context);
        return;
      }
      // As root, the daemon boots while the flags and the kubeconfig are checked
      // (each takes about half a second); through sudo, only once they are good,
      // so that nobody types a password for a connect that cannot work.
      const early = Deno.uid() === 0
        ? openDaemon(stateDir, context).catch((e) => e as Error)
        : null;
      let params: ConnectParams;
      try {
        params = await connectParams(options, config, context);
      } catch (error) {
        const d = await early;
        if (d && !(d instanceof Error)) {
          if (d.started) await quitDaemon(d.client).catch(() => {});
          d.client.close();
        }
        throw error;
      }
      const daemon = await (early ?? openDaemon(stateDir, context));
      if (daemon instanceof Error) throw daemon;
      context.exitCode = await connectThroughDaemon(daemon, params, command, options, context);
    });
}

/** The config file and the settings typed on the command line. */
interface ConnectConfig {
  file: ConfigFile | undefined;
  typed: Partial<ConnectSettings>;
}

/** The settings as the daemon takes them; the namespace falls back to the kubeconfig's. */
function settingParams(settings: ConnectSettings, kubeNamespace = "default") {
  return {
    managerNamespace: settings.managerNamespace,
    namespace: settings.namespace ?? kubeNamespace,
    alsoProxy: settings.alsoProxy,
    neverProxy: settings.neverProxy,
    allowConflicting: settings.allowConflictingSubnets,
    dnsInclude: settings.dnsInclude,
    dnsExclude: settings.dnsExclude,
    graceSeconds: settings.grace,
  };
}

/**
 * Checks the flags and gathers what the daemon needs to connect. A setting
 * not typed comes from the config file's section for the context in use,
 * else its top level, else vif's default (see config.ts).
 */
async function connectParams(
  options: ConnectOptions,
  config: ConnectConfig,
  context: CliContext,
): Promise<ConnectParams> {
  const env = context.io.env;
  const absolute = (p: string) => p.startsWith("/") ? p : `${Deno.cwd()}/${p}`;
  // The flags alone until the context, and so the file's section, is known.
  const params: ConnectParams = settingParams(resolveSettings(config.typed).values);
  // Checked first: they are wrong whichever way the connection goes.
  const identity = await clientIdentity(options);
  if (options.context) params.context = options.context;
  if (options.kubeconfig) params.kubeconfig = absolute(options.kubeconfig);
  if (options.as !== undefined) params.as = options.as;
  if (options.requestTimeout !== undefined) params.requestTimeoutMs = options.requestTimeout;
  const list = env("KUBECONFIG");
  if (list) params.kubeconfigEnv = list.split(":").filter((p) => p).map(absolute).join(":");
  const home = env("HOME");
  if (home) params.home = home;
  const path = env("PATH");
  if (path) params.path = path;
  if (!options.managerAddress) {
    // Fail here, with kubectl's wording, before a daemon is started for nothing;
    // and get the credentials as this user (an exec plugin runs as the user,
    // not as root in the daemon), so the daemon needs no Kubernetes client.
    const { loadKubeConfig, resolveAccess } = await import("../kube/client.ts");
    try {
      const loaded = loadKubeConfig(kubeconfigSource(params));
      params.resolved = {
        context: loaded.context,
        access: await resolveAccess(loaded.kubeConfig),
      };
      const settings = resolveSettings(config.typed, {
        file: config.file,
        context: loaded.context,
      });
      // As kubectl: no -n (nor a namespace in the file) means the context's namespace.
      Object.assign(params, settingParams(settings.values, loaded.namespace));
    } catch (error) {
      throw asUserError(error);
    }
    return params;
  }
  if (!/^(\[[^\]]+\]|[^:\s]+):\d{1,5}$/.test(options.managerAddress)) {
    throw new UserError(`bad manager address "${options.managerAddress}"`, {
      hint: 'Give it as HOST:PORT, e.g. "198.18.0.5:8443".',
      exitCode: ExitCode.Usage,
    });
  }
  if (!options.managerCa) {
    throw new UserError("no CA to verify the traffic-manager with", {
      hint: "Pass --manager-ca FILE: the ca.crt that `vif client-cert` writes " +
        '(the ConfigMap "traffic-manager-ca" holds it too).',
      exitCode: ExitCode.Usage,
    });
  }
  let caPem: string;
  try {
    caPem = await Deno.readTextFile(options.managerCa);
  } catch (cause) {
    throw new UserError(
      `cannot read the manager's CA "${options.managerCa}": ${(cause as Error).message}`,
      { hint: "Check the path given to --manager-ca.", cause },
    );
  }
  try {
    caPem = readCaBundle(caPem);
  } catch (cause) {
    throw new UserError(
      `"${options.managerCa}" is not a CA certificate: ${(cause as Error).message}`,
      {
        hint: "Pass the ca.crt that `vif client-cert` writes to --manager-ca.",
        cause,
      },
    );
  }
  const section = await sectionContext(config.file, {
    context: options.context,
    kubeconfig: params.kubeconfig,
    env,
  });
  Object.assign(
    params,
    settingParams(resolveSettings(config.typed, { file: config.file, context: section }).values),
  );
  params.managerAddress = options.managerAddress;
  params.managerCaPem = caPem;
  if (identity) {
    params.clientCertPem = identity.certPem;
    params.clientKeyPem = identity.keyPem;
  }
  return params;
}

/**
 * Reads `--client-cert` and `--client-key` as this user (the daemon, as
 * root, never opens the user's paths) and checks them: both or neither, only
 * with `--manager-address`, a certificate that is valid now and the key that
 * belongs to it.
 *
 * @returns the PEM texts, or undefined when neither flag is given
 * @throws {UserError} when the flags or the files are wrong
 */
async function clientIdentity(
  options: ConnectOptions,
): Promise<{ certPem: string; keyPem: string } | undefined> {
  const { clientCert, clientKey } = options;
  if (clientCert === undefined && clientKey === undefined) return undefined;
  if (clientCert === undefined || clientKey === undefined) {
    throw new UserError("--client-cert and --client-key go together", {
      hint: "Pass both: the client.crt and client.key that `vif client-cert` wrote.",
      exitCode: ExitCode.Usage,
    });
  }
  if (!options.managerAddress) {
    throw new UserError("--client-cert is for the manager's direct listener only", {
      hint: "Add --manager-address HOST:PORT, or leave out --client-cert and --client-key " +
        "to connect through the API server.",
      exitCode: ExitCode.Usage,
    });
  }
  const read = async (path: string, what: string, flag: string) => {
    try {
      return await Deno.readTextFile(path);
    } catch (cause) {
      throw new UserError(`cannot read the ${what} "${path}": ${(cause as Error).message}`, {
        hint: `Check the path given to ${flag}.`,
        cause,
      });
    }
  };
  const certPem = await read(clientCert, "client certificate", "--client-cert");
  const keyPem = await read(clientKey, "client key", "--client-key");
  const { X509Certificate, createPrivateKey } = await import("node:crypto");
  let cert: InstanceType<typeof X509Certificate>;
  try {
    cert = new X509Certificate(certPem);
  } catch (cause) {
    throw new UserError(`"${clientCert}" holds no PEM certificate`, {
      hint: "Pass the client.crt that `vif client-cert` wrote to --client-cert.",
      cause,
    });
  }
  let key: ReturnType<typeof createPrivateKey>;
  try {
    key = createPrivateKey(keyPem);
  } catch (cause) {
    throw new UserError(`"${clientKey}" holds no PEM private key`, {
      hint: "Pass the client.key that `vif client-cert` wrote to --client-key.",
      cause,
    });
  }
  if (!cert.checkPrivateKey(key)) {
    throw new UserError(
      `the key "${clientKey}" does not belong to the certificate "${clientCert}"`,
      {
        hint: "Pass the client.key that `vif client-cert` wrote with that certificate.",
      },
    );
  }
  const notAfter = new Date(cert.validTo);
  if (notAfter.getTime() <= Date.now()) {
    throw new UserError(
      `the client certificate "${clientCert}" expired on ${notAfter.toISOString().slice(0, 10)}`,
      { hint: "Ask an admin for a new one (`vif client-cert NAME`)." },
    );
  }
  return { certPem, keyPem };
}

/**
 * Shows progress: on a terminal one line redrawn in place, else one plain
 * line per step; nothing with `--quiet` or `--output json|yaml`.
 */
function progressPrinter(options: ConnectOptions, context: CliContext): ProgressLine {
  return progressLine(context.io, options.quiet || options.output !== "text");
}

async function connectForeground(
  params: ConnectParams,
  command: string[],
  stateDir: string,
  options: ConnectOptions,
  context: CliContext,
): Promise<number> {
  const { runForeground } = await import("../daemon/foreground.ts");
  const progress = progressPrinter(options, context);
  try {
    return await runForeground({
      params,
      stateDir,
      command,
      debug: context.debug,
      progress: (line) => progress.step(line),
      connected: (status) => {
        progress.done();
        if (!options.quiet) context.io.stdout(connectedSummary(status).join("\n") + "\n");
      },
      out: (line) => {
        progress.done();
        if (!options.quiet) context.io.stdout(line + "\n");
      },
      err: (line) => {
        progress.done();
        context.io.stderr(line + "\n");
      },
    });
  } catch (error) {
    progress.done();
    throw asUserError(error);
  }
}

/** The running daemon, or one started now. */
async function openDaemon(
  stateDir: string,
  context: CliContext,
): Promise<{ client: ControlClient; started: boolean }> {
  const client = await daemonClient(stateDir);
  if (client) return { client, started: false };
  return {
    client: await startDaemon({ stateDir, io: context.io, debug: context.debug }),
    started: true,
  };
}

async function connectThroughDaemon(
  { client, started }: { client: ControlClient; started: boolean },
  params: ConnectParams,
  command: string[],
  options: ConnectOptions,
  context: CliContext,
): Promise<number> {
  const progress = progressPrinter(options, context);
  try {
    let status: StatusDocument & { alreadyConnected?: boolean };
    try {
      status = await client.request("connect", params, (line) => progress.step(line)) as
        & StatusDocument
        & { alreadyConnected?: boolean };
    } catch (error) {
      progress.done();
      if (started) await quitDaemon(client).catch(() => {});
      throw asUserError(error);
    }
    progress.done();
    const out = (text: string) => !options.quiet && context.io.stdout(text);
    if (options.output !== "text") context.io.stdout(formatStructured(status, options.output));
    else if (status.connection) {
      const lines = connectedSummary(status.connection);
      if (status.alreadyConnected) {
        out(`already connected (since ${status.connection.since}); nothing changed\n`);
      }
      out(lines.join("\n") + "\n");
      if (!command.length && !status.alreadyConnected) {
        out("run `vif status` for details, `vif quit` to disconnect\n");
      }
    }
    if (!command.length) return ExitCode.Ok;
    const { runCommand } = await import("../daemon/foreground.ts");
    // This process outlives the command (Ctrl-C, SIGTERM) to disconnect after it.
    const code = await runCommand(
      command,
      (_level, message) => context.io.stderr(message + "\n"),
      { holdSignals: true },
    );
    if (!status.alreadyConnected) {
      // This run made the connection: it ends with the command.
      await (started ? quitDaemon(client) : client.request("disconnect", {})).catch(() => {});
      out(`"${command.join(" ")}" exited with ${code}: disconnected\n`);
    }
    return code;
  } finally {
    client.close();
  }
}
