/**
 * `vif install` and `vif uninstall`: put the traffic-manager in a cluster
 * (namespace, service account, RBAC, TLS Secret, the CA's ConfigMap, the
 * users' Role, Deployment, Service), or take it out. `--grant-user` and
 * `--grant-group` say who may use it, `--direct` adds the mutual-TLS
 * listener, `--allow-also-proxy` the subnets outside the cluster sessions may
 * reach through it. The work is in `mod/kube/`; this module reads flags and prints,
 * kubectl's way (`deployment.apps/traffic-manager configured`).
 *
 * `mod/kube/` (and with it @kubernetes/client-node) is imported when a command
 * runs, so that other commands do not load it.
 *
 * @module
 */

import { type Command, InvalidArgumentError, Option } from "commander";
import type {
  AppliedObject,
  ClientCaOutcome,
  DeletedObject,
  InstallResult,
  TlsOutcome,
  UserSubject,
} from "../kube/mod.ts";
import { Cidr } from "../net/address.ts";
import { isNamespaceName } from "../net/dns_name.ts";
import { DEFAULT_DIRECT_PORT, DEFAULT_MANAGER_NAMESPACE, managerServerName } from "../rpc/names.ts";
import { VERSION } from "../version.ts";
import type { CliContext } from "./context.ts";
import { asUserError, ExitCode, UserError } from "./errors.ts";
import { addKubeFlags, type KubeFlags, kubeLoadOptions } from "./kube_flags.ts";
import {
  formatStructured,
  formatStructuredList,
  type OutputFormat,
  outputOption,
} from "./output.ts";

/** The options of `vif install`, as commander parses them. */
interface InstallFlags extends KubeFlags {
  managerNamespace: string;
  namespace?: string;
  image?: string;
  rotateTls?: boolean;
  direct?: boolean;
  grantUser: string[];
  grantGroup: string[];
  allowAlsoProxy: string[];
  dryRun?: DryRun;
  output?: OutputFormat;
  wait: boolean;
  timeout: number;
}

/** The options of `vif uninstall`, as commander parses them. */
interface UninstallFlags extends KubeFlags {
  managerNamespace: string;
  namespace?: string;
  output: OutputFormat;
  agents?: boolean;
  dryRun?: DryRun;
}

/** `--dry-run` as kubectl takes it: `client` only (and the bare flag, which means it). */
type DryRun = "client";

const INSTALL_HELP = `
It applies, in order: the namespace, the service account "traffic-manager", the
cluster role and binding that let it read pods, services, nodes and namespaces,
the TLS secret "traffic-manager-tls" (only the manager's pod mounts it), with
--direct the client CA's secret "traffic-manager-client-ca", the config map
"traffic-manager-ca" (the CA users verify the manager with), the role
"vif-user" and its binding, the deployment and the service "traffic-manager".
Running it again updates what changed and nothing else. An install made by an
older vif is upgraded: its certificate is kept and its CA published.

Who may use vif: the manager listens on loopback in its pod, reached only
through the API server's port-forward, so Kubernetes RBAC decides. The role
"vif-user" holds what "vif connect" needs (read pods and services,
port-forward, read the CA's config map; no secret). --grant-user and
--grant-group bind it: they add to who is bound, and an install without them
revokes nobody (take someone out with "kubectl -n <namespace> edit rolebinding
vif-user"). Cluster admins need no grant.

The TLS secret holds a CA and a certificate for traffic-manager.<namespace>,
made on this machine. An existing one is kept (connected clients keep trusting
it) unless --rotate-tls is given or it expires within 30 days.

--direct also serves mutual TLS on port ${DEFAULT_DIRECT_PORT} of the manager's pod (and its
service), for clients that reach the pod without the API server: only
certificates from a client CA that the manager alone trusts get in. The client
CA is made the first time and kept; an install without --direct turns the
listener off and keeps the CA. An admin who may read secrets issues client
certificates with "vif client-cert NAME".

--allow-also-proxy lets sessions route a subnet outside the cluster through the
manager ("vif connect --also-proxy"); the manager allows none unless given.
Like --image and --direct, it says what the deployment runs with: give it again
on every install.

Examples:
  # Install into the cluster of the current kubectl context, for two people
  vif install --grant-user alice@example.com --grant-user bob@example.com

  # Let a whole group connect
  vif install --grant-group developers

  # Another context, another namespace, a locally built image
  vif install --context kind-dev --manager-namespace vif-dev --image localhost:5000/vif:dev

  # The direct listener too, and a database subnet next to the cluster
  vif install --direct --allow-also-proxy 198.18.64.0/24

  # Print the objects instead, for review or for "kubectl apply -f -"
  vif install --dry-run=client -o yaml
  vif install --dry-run=client -o json | jq '.items[].kind'

  # Make a new CA and certificate (clients must connect again)
  vif install --rotate-tls`;

const UNINSTALL_HELP = `
It deletes the deployment, service, TLS secret, client CA secret, the CA's
config map, the role "vif-user" and its binding, the service account, cluster
role binding and cluster role, then the namespace if vif created it. What is
already gone is reported "not found".

With --agents it takes vif's traffic-agent out of every workload that has one
instead (the template as it was before, from the workload's annotation), and
leaves the traffic-manager installed; -n limits that to one namespace.

--dry-run=client lists what it would delete (or, with --agents, the workloads
that have the agent) and changes nothing.

Examples:
  vif uninstall
  vif uninstall --context kind-dev --manager-namespace vif-dev
  vif uninstall --agents -n shop
  vif uninstall --dry-run=client`;

/**
 * Adds `vif install` and `vif uninstall` to the program.
 *
 * @param program The root command.
 * @param context The run's shared state.
 */
export function registerInstall(program: Command, context: CliContext): void {
  const out = (line: string) => context.io.stdout(line + "\n");

  const install = program
    .command("install")
    .description("install the traffic-manager in the cluster (or print it with --dry-run)");
  addKubeFlags(install)
    .addOption(managerNamespaceOption())
    .addOption(userNamespaceRefused())
    .option(
      "--image <image>",
      `the manager's container image (default: ghcr.io/vif-dev/vif:${VERSION})`,
      image,
    )
    .option("--rotate-tls", "make a new CA and certificate even if the current ones are good")
    .addOption(
      repeatable(
        "--grant-user <name>",
        "let this user connect: bind the role vif-user to them (repeatable; adds, never revokes)",
        collectName,
      ),
    )
    .addOption(
      repeatable(
        "--grant-group <name>",
        "let this group connect: bind the role vif-user to it (repeatable; adds, never revokes)",
        collectName,
      ),
    )
    .option(
      "--direct",
      `also serve mutual TLS on port ${DEFAULT_DIRECT_PORT} of the manager's pod (client certificates: vif client-cert)`,
    )
    .addOption(
      repeatable(
        "--allow-also-proxy <cidr>",
        "let sessions route this subnet outside the cluster through the manager (repeatable)",
        collectCidr,
      ),
    )
    .addOption(dryRunOption("print the objects instead of applying them (YAML unless -o json)"))
    .option(
      "--wait [bool]",
      "wait until the traffic-manager is ready (--wait=false: return once the objects are applied)",
      waitFlag,
      true,
    )
    .option(
      "--timeout <duration>",
      'how long to wait for the traffic-manager ("90s", "5m"; default 5m)',
      timeoutFlag,
      300,
    )
    .addOption(
      new Option("-o, --output <format>", "text, json or yaml (with --dry-run: yaml or json)")
        .choices(["text", "json", "yaml"]),
    )
    .addHelpText("after", INSTALL_HELP)
    .action(async (flags: InstallFlags) => {
      const kube = await import("../kube/mod.ts");
      const namespace = flags.managerNamespace;
      if (flags.dryRun) {
        if (flags.output === "text") {
          throw new UserError("--dry-run prints YAML or JSON, not text", {
            hint: 'Use "--dry-run -o yaml" or "--dry-run -o json".',
            exitCode: 2,
          });
        }
        const x509 = await import("../kube/x509.ts");
        const tls = await x509.createManagerTls(namespace);
        const clientCa = flags.direct ? await x509.createClientCa(namespace) : undefined;
        const objects = kube.managerManifests({
          namespace,
          tls,
          allowAlsoProxy: flags.allowAlsoProxy,
          userSubjects: kube.grantSubjects(flags.grantUser, flags.grantGroup),
          ...(clientCa ? { clientCa } : {}),
          ...(flags.image ? { image: flags.image } : {}),
        });
        if (flags.output === "json") {
          context.io.stdout(formatStructuredList(objects, "json"));
        } else {
          context.io.stdout(
            `# vif ${VERSION}: the traffic-manager in namespace "${namespace}", with a new CA and certificate${
              clientCa ? " and a new client CA" : ""
            }.\n` +
              "# Apply with: kubectl apply -f -\n" + formatStructuredList(objects, "yaml"),
          );
        }
        return;
      }

      const loaded = loadKubeConfig(kube, flags, context);
      const output = flags.output ?? "text";
      let result: InstallResult;
      try {
        result = await kube.install(loaded.kubeConfig, {
          namespace,
          rotateTls: flags.rotateTls ?? false,
          direct: flags.direct ?? false,
          grantUsers: flags.grantUser,
          grantGroups: flags.grantGroup,
          allowAlsoProxy: flags.allowAlsoProxy,
          ...(flags.image ? { image: flags.image } : {}),
          ...(output === "text"
            ? { onApplied: (step: AppliedObject) => out(`${step.name} ${step.action}`) }
            : {}),
        });
      } catch (error) {
        throw asUserError(error);
      }
      if (flags.wait) {
        await waitForManager(loaded.kubeConfig, namespace, flags.timeout, context, output);
      }
      const summary = { context: loaded.context, server: loaded.server, ...result };
      if (output !== "text") {
        context.io.stdout(formatStructured(summary, output));
      } else {
        out(tlsLine(result.tls, namespace));
        if (result.clientCa) out(directLine(result.clientCa, namespace));
        else if (result.clientCaUnused) {
          out(
            'Direct: off (the client CA in secret "traffic-manager-client-ca" is kept; ' +
              '"vif install --direct" turns the listener on again)',
          );
        }
        if (result.allowAlsoProxy.length > 0) {
          out(
            `Also-proxy: sessions may route ${
              result.allowAlsoProxy.join(", ")
            } through the manager`,
          );
        }
        if (result.migrated) {
          out(
            "Upgraded an install of an older vif: users now read the CA from configmap " +
              '"traffic-manager-ca" and need the role vif-user, no longer the TLS secret; ' +
              "the manager is reached by port-forward only",
          );
        }
        out(usersLine(result.userSubjects, namespace));
        out(`Run "${connectCommand(loaded.context, namespace)}" to connect to the cluster.`);
      }
    });

  const uninstall = program
    .command("uninstall")
    .description("remove the traffic-manager from the cluster");
  addKubeFlags(uninstall)
    .addOption(managerNamespaceOption())
    .option(
      "-n, --namespace <ns>",
      "with --agents: only this namespace's workloads (default: every namespace)",
      namespaceName,
    )
    .addOption(outputOption())
    .option("--agents", "take the traffic-agent out of every workload instead (the manager stays)")
    .addOption(dryRunOption("say what would be deleted, and delete nothing"))
    .addHelpText("after", UNINSTALL_HELP)
    .action(async (flags: UninstallFlags) => {
      if (flags.namespace !== undefined && !flags.agents) {
        throw new UserError("uninstall -n only goes with --agents", {
          hint: "The traffic-manager's namespace is --manager-namespace.",
          exitCode: ExitCode.Usage,
        });
      }
      const kube = await import("../kube/mod.ts");
      const loaded = loadKubeConfig(kube, flags, context);
      if (flags.agents) return await uninstallAgents(loaded, flags, context);
      if (flags.dryRun) return uninstallDryRun(kube, loaded.context, flags, context);
      let results: DeletedObject[];
      try {
        results = await kube.uninstall(loaded.kubeConfig, {
          namespace: flags.managerNamespace,
          ...(flags.output === "text"
            ? { onDeleted: (step: DeletedObject) => out(deletedLine(step)) }
            : {}),
        });
      } catch (error) {
        throw asUserError(error);
      }
      if (flags.output !== "text") {
        context.io.stdout(formatStructured(
          { context: loaded.context, namespace: flags.managerNamespace, deleted: results },
          flags.output,
        ));
      } else {
        out(`The traffic-manager is uninstalled from context "${loaded.context}".`);
      }
    });
}

/**
 * `vif uninstall --dry-run=client`: the objects `uninstall` deletes, from the
 * manifests this version installs, without asking the API server, as
 * kubectl's client dry run does.
 */
function uninstallDryRun(
  kube: Kube,
  kubeContext: string,
  flags: UninstallFlags,
  context: CliContext,
): void {
  const objects = kube.uninstallTargets(flags.managerNamespace);
  if (flags.output !== "text") {
    context.io.stdout(formatStructured(
      {
        context: kubeContext,
        namespace: flags.managerNamespace,
        dryRun: "client",
        deleted: objects.map((o) => ({ ...o, action: "deleted (dry run)" })),
      },
      flags.output,
    ));
    return;
  }
  for (const o of objects) context.io.stdout(`${o.name} deleted (dry run)\n`);
}

/** `--dry-run[=client]`: kubectl's spelling; `server` and `none` are refused with a hint. */
function dryRunOption(description: string): Option {
  return new Option("--dry-run [strategy]", `${description}; only "client"`)
    .argParser((value: string): DryRun => {
      if (value === "client" || value === "true") return "client";
      throw new InvalidArgumentError(
        value === "server"
          ? "vif has no server-side dry run; use --dry-run=client."
          : 'Only "client" is supported: --dry-run or --dry-run=client.',
      );
    })
    .preset("client");
}

type Kube = typeof import("../kube/mod.ts");

function loadKubeConfig(
  kube: Kube,
  flags: KubeFlags,
  context: CliContext,
) {
  try {
    return kube.loadKubeConfig(kubeLoadOptions(flags, context.io.env));
  } catch (error) {
    throw asUserError(error);
  }
}

/**
 * Waits until the traffic-manager's Deployment has rolled out and its pod is
 * ready, so that the `vif connect` printed next works at once; progress on
 * stderr while it waits (text output only), and an error naming the pod's
 * state (an image pull, a crash loop, the scheduler) when it does not come.
 */
async function waitForManager(
  kubeConfig: import("@kubernetes/client-node").KubeConfig,
  namespace: string,
  timeoutSeconds: number,
  context: CliContext,
  output: string,
): Promise<void> {
  const [{ resolveAccess }, { workloadApi }, { waitForAgents }, { MANAGER_NAME }] = await Promise
    .all([
      import("../kube/client.ts"),
      import("../kube/workloads.ts"),
      import("../kube/agent_inject.ts"),
      import("../kube/manifests.ts"),
    ]);
  const progress = output === "text"
    ? (line: string) => context.io.stderr(`  ${line}\n`)
    : undefined;
  progress?.("waiting for the traffic-manager to be ready");
  try {
    await waitForAgents(
      workloadApi(await resolveAccess(kubeConfig)),
      { kind: "Deployment", namespace, name: MANAGER_NAME },
      {
        timeoutMs: timeoutSeconds * 1000,
        rolloutOnly: true,
        intervalMs: 500,
        ...(progress ? { onProgress: progress } : {}),
      },
    );
  } catch (error) {
    const e = asUserError(error) as Error & { hint?: string };
    throw new UserError(`installed, but ${e.message}`, {
      hint: `${e.hint ?? ""} "vif install --wait=false" returns without waiting.`.trim(),
      cause: error,
    });
  }
}

function waitFlag(value: string): boolean {
  if (value === "true" || value === "") return true;
  if (value === "false") return false;
  throw new UserError(`bad --wait "${value}"`, {
    hint: "Use --wait (or --wait=true) or --wait=false.",
    exitCode: ExitCode.Usage,
  });
}

function timeoutFlag(value: string): number {
  const m = /^(\d+(?:\.\d+)?)(s|m)?$/.exec(value.trim());
  const n = m ? Number(m[1]) * (m[2] === "m" ? 60 : 1) : NaN;
  if (!(n > 0 && n <= 3600)) {
    throw new UserError(`bad --timeout "${value}"`, {
      hint: 'Give seconds or minutes, up to an hour: "90s", "5m", "120".',
      exitCode: ExitCode.Usage,
    });
  }
  return n;
}

/** `vif connect --context C`, with `--manager-namespace` when it is not the default. */
function connectCommand(kubeContext: string, namespace: string): string {
  const quoted = /^[\w@%+=:,./-]+$/.test(kubeContext)
    ? kubeContext
    : `'${kubeContext.replaceAll("'", "'\\''")}'`;
  const ns = namespace === DEFAULT_MANAGER_NAMESPACE ? "" : ` --manager-namespace ${namespace}`;
  return `vif connect --context ${quoted}${ns}`;
}

function tlsLine(tls: TlsOutcome, namespace: string): string {
  const until = tls.notAfter.toISOString().slice(0, 10);
  const name = managerServerName(namespace);
  switch (tls.action) {
    case "kept":
      return `TLS: kept the certificate for ${name} (valid until ${until}; --rotate-tls makes a new one)`;
    case "created":
      return `TLS: made a CA and a certificate for ${name}, valid until ${until}`;
    case "rotated":
      return `TLS: made a new CA and certificate for ${name}, valid until ${until}; connected clients must connect again`;
    case "replaced":
      return `TLS: replaced the certificate for ${name} (${
        tls.reason ?? "it could not serve"
      }); valid until ${until}`;
  }
}

function directLine(clientCa: ClientCaOutcome, namespace: string): string {
  const until = clientCa.notAfter.toISOString().slice(0, 10);
  const ns = namespace === DEFAULT_MANAGER_NAMESPACE ? "" : ` --manager-namespace ${namespace}`;
  const issue = `issue client certificates with "vif client-cert NAME${ns}"`;
  const where = `mutual TLS on port ${DEFAULT_DIRECT_PORT} of the manager's pod`;
  switch (clientCa.action) {
    case "kept":
      return `Direct: ${where}, client CA kept (valid until ${until}); ${issue}`;
    case "created":
      return `Direct: ${where}, with a new client CA valid until ${until}; ${issue}`;
    case "replaced":
      return `Direct: ${where}; replaced the client CA (${
        clientCa.reason ?? "it could not sign"
      }), valid until ${until}: certificates from the old one no longer work; ${issue}`;
  }
}

/** Who holds the role vif-user: a few names, then how many more. */
function usersLine(subjects: readonly UserSubject[], namespace: string): string {
  const where = `the role vif-user in "${namespace}"`;
  if (subjects.length === 0) {
    return `Users: nobody is granted ${where} yet; grant it with "vif install --grant-user NAME" ` +
      'or "--grant-group NAME" (cluster admins need no grant)';
  }
  const shown = subjects.slice(0, 8).map((s) =>
    `${s.kind === "ServiceAccount" ? "service account" : s.kind.toLowerCase()} ${
      s.namespace ? `${s.namespace}/` : ""
    }${s.name}`
  );
  const more = subjects.length > shown.length ? ` and ${subjects.length - shown.length} more` : "";
  return `Users: ${where} is granted to ${shown.join(", ")}${more}`;
}

/** kubectl's words: `deployment.apps "traffic-manager" deleted`. */
function deletedLine(step: DeletedObject): string {
  const name = step.name.replace(/\/(.*)$/, ' "$1"');
  if (step.action === "kept") return `${name} kept: ${step.reason}`;
  if (step.action === "deleting") return `${name} is already being deleted`;
  return `${name} ${step.action}`;
}

/** A repeatable option that collects its values, empty ("none") when not given. */
function repeatable(
  flags: string,
  description: string,
  collect: (value: string, previous: string[]) => string[],
): Option {
  return new Option(flags, description).argParser(collect).default([], "none");
}

function managerNamespaceOption(): Option {
  return new Option("--manager-namespace <ns>", "the traffic-manager's namespace")
    .default(DEFAULT_MANAGER_NAMESPACE)
    .argParser(namespaceName);
}

/**
 * `-n` on install names the user's namespace everywhere else in vif; the
 * manager's is `--manager-namespace`. Hidden, and refused with that hint,
 * so kubectl's and helm's muscle memory gets an answer, not a manager in the
 * wrong namespace.
 */
function userNamespaceRefused(): Option {
  return new Option("-n, --namespace <ns>").hideHelp().argParser((): never => {
    throw new InvalidArgumentError(
      "In vif, -n is your namespace; name the traffic-manager's with --manager-namespace.",
    );
  });
}

/**
 * Checks a namespace name: a DNS label (RFC 1123), as Kubernetes requires.
 *
 * @throws {InvalidArgumentError} When it is not one.
 */
function namespaceName(value: string): string {
  if (!isNamespaceName(value)) {
    throw new InvalidArgumentError(
      "A namespace is up to 63 lower-case letters, digits and '-', starting and ending with a letter or digit.",
    );
  }
  return value;
}

/**
 * Commander's parser for a repeatable user or group name: not empty, no
 * control character (RBAC takes any other text).
 *
 * @throws {InvalidArgumentError} When it cannot be one.
 */
function collectName(value: string, previous: string[]): string[] {
  // deno-lint-ignore no-control-regex
  if (value === "" || /[\x00-\x1f\x7f]/.test(value)) {
    throw new InvalidArgumentError("Give a user or group name as the API server knows it.");
  }
  return previous.includes(value) ? previous : [...previous, value];
}

/**
 * Commander's parser for a repeatable CIDR: checks it and collects it in
 * network form.
 *
 * @throws {InvalidArgumentError} When it is not a CIDR.
 */
function collectCidr(value: string, previous: string[]): string[] {
  let cidr: string;
  try {
    cidr = Cidr.parse(value).toString();
  } catch {
    throw new InvalidArgumentError(
      `"${value}" is not a subnet; give it as ADDRESS/PREFIX, e.g. 198.18.64.0/24.`,
    );
  }
  return previous.includes(cidr) ? previous : [...previous, cidr];
}

/**
 * Checks an image reference: no spaces, not empty.
 *
 * @throws {InvalidArgumentError} When it cannot be one.
 */
function image(value: string): string {
  if (value.trim() === "" || /\s/.test(value)) {
    throw new InvalidArgumentError('Expected an image reference like "ghcr.io/vif-dev/vif:0.1.0".');
  }
  return value;
}

/** `vif uninstall --agents`: every workload with vif's agent is put back. */
async function uninstallAgents(
  loaded: { kubeConfig: import("@kubernetes/client-node").KubeConfig; context: string },
  flags: UninstallFlags,
  context: CliContext,
): Promise<void> {
  const { resolveAccess } = await import("../kube/client.ts");
  const { workloadApi } = await import("../kube/workloads.ts");
  const { listInjected, removeAgent } = await import("../kube/agent_inject.ts");
  const out = (line: string) => flags.output === "text" && context.io.stdout(line + "\n");
  const removed: Array<{ workload: string; action: string; differences: string[] }> = [];
  try {
    const api = workloadApi(await resolveAccess(loaded.kubeConfig));
    const scope = flags.namespace !== undefined ? { namespaces: [flags.namespace] } : {};
    for (const found of await listInjected(api, scope)) {
      const name = `${found.workload.kind.toLowerCase()}.apps/${found.workload.name}`;
      if (flags.dryRun) {
        removed.push({
          workload: `${found.workload.namespace}/${name}`,
          action: "would remove",
          differences: [],
        });
        out(`${name} in ${found.workload.namespace}: agent removed (dry run)`);
        continue;
      }
      const r = await removeAgent(api, found.workload);
      removed.push({
        workload: `${found.workload.namespace}/${name}`,
        action: r.action,
        differences: r.differences,
      });
      out(
        `${name} in ${found.workload.namespace}: ${
          r.action === "removed"
            ? "agent removed"
            : r.action === "cleaned"
            ? "annotations removed"
            : "no agent"
        }${r.changedSince ? ` (changes made since were kept: ${r.differences.join(", ")})` : ""}`,
      );
    }
  } catch (error) {
    throw asUserError(error);
  }
  if (flags.output !== "text") {
    context.io.stdout(formatStructured(
      { context: loaded.context, ...(flags.dryRun ? { dryRun: "client" } : {}), agents: removed },
      flags.output,
    ));
  } else if (removed.length === 0) {
    const where = flags.namespace !== undefined ? `namespace "${flags.namespace}" of ` : "";
    out(`No workload has vif's agent in ${where}context "${loaded.context}".`);
  }
}
