/**
 * `vif install` and `vif uninstall`: put the traffic-manager in a cluster
 * (namespace, service account, RBAC, TLS Secret, Deployment, Service), or
 * take it out. The work is in `mod/kube/`; this module reads flags and prints,
 * kubectl's way (`deployment.apps/traffic-manager configured`).
 *
 * `mod/kube/` (and with it @kubernetes/client-node) is imported when a command
 * runs, so that other commands do not load it.
 *
 * @module
 */

import { type Command, InvalidArgumentError, Option } from "commander";
import type { AppliedObject, DeletedObject, InstallResult, TlsOutcome } from "../kube/mod.ts";
import { DEFAULT_MANAGER_NAMESPACE, managerServerName } from "../rpc/service.ts";
import { VERSION } from "../version.ts";
import type { CliContext } from "./context.ts";
import { asUserError, UserError } from "./errors.ts";

/** The options of `vif install`, as commander parses them. */
interface InstallFlags {
  kubeconfig?: string;
  context?: string;
  namespace: string;
  image?: string;
  rotateTls?: boolean;
  dryRun?: boolean;
  output?: "text" | "yaml" | "json";
}

/** The options of `vif uninstall`, as commander parses them. */
interface UninstallFlags {
  kubeconfig?: string;
  context?: string;
  namespace: string;
  output: "text" | "json";
}

const INSTALL_HELP = `
It applies, in order: the namespace, the service account "traffic-manager", the
cluster role and binding that let it read pods, services, nodes and namespaces,
the TLS secret "traffic-manager-tls", the deployment and the service
"traffic-manager". Running it again updates what changed and nothing else.

The TLS secret holds a CA and a certificate for traffic-manager.<namespace>,
made on this machine. An existing one is kept (connected clients keep trusting
it) unless --rotate-tls is given or it expires within 30 days.

Examples:
  # Install into the cluster of the current kubectl context
  vif install

  # Another context, another namespace, a locally built image
  vif install --context kind-dev --namespace vif-dev --image localhost:5000/vif:dev

  # Print the objects instead, for review or for "kubectl apply -f -"
  vif install --dry-run -o yaml
  vif install --dry-run -o json | jq '.items[].kind'

  # Make a new CA and certificate (clients must connect again)
  vif install --rotate-tls`;

const UNINSTALL_HELP = `
It deletes the deployment, service, TLS secret, service account, cluster role
binding and cluster role, then the namespace if vif created it. What is already
gone is reported "not found".

Examples:
  vif uninstall
  vif uninstall --context kind-dev --namespace vif-dev`;

/**
 * Adds `vif install` and `vif uninstall` to the program.
 *
 * @param program The root command.
 * @param context The run's shared state.
 */
export function registerInstall(program: Command, context: CliContext): void {
  const out = (line: string) => context.io.stdout(line + "\n");

  program
    .command("install")
    .description("install the traffic-manager in the cluster (or print it with --dry-run)")
    .option(
      "--kubeconfig <file>",
      "the kubeconfig to use (default: $KUBECONFIG, else ~/.kube/config)",
    )
    .option("--context <name>", "the kubeconfig context (default: the current context)")
    .addOption(namespaceOption())
    .option(
      "--image <image>",
      `the manager's container image (default: ghcr.io/vif-dev/vif:${VERSION})`,
      image,
    )
    .option("--rotate-tls", "make a new CA and certificate even if the current ones are good")
    .option("--dry-run", "print the objects instead of applying them (YAML unless -o json)")
    .addOption(
      new Option("-o, --output <format>", "output format (with --dry-run: yaml or json)").choices([
        "text",
        "yaml",
        "json",
      ]),
    )
    .addHelpText("after", INSTALL_HELP)
    .action(async (flags: InstallFlags) => {
      const kube = await import("../kube/mod.ts");
      const namespace = flags.namespace;
      if (flags.dryRun) {
        if (flags.output === "text") {
          throw new UserError("--dry-run prints YAML or JSON, not text", {
            hint: 'Use "--dry-run -o yaml" or "--dry-run -o json".',
            exitCode: 2,
          });
        }
        const tls = await kube.createManagerTls(namespace);
        const objects = kube.managerManifests({
          namespace,
          tls,
          ...(flags.image ? { image: flags.image } : {}),
        });
        if (flags.output === "json") {
          context.io.stdout(
            JSON.stringify({ apiVersion: "v1", kind: "List", items: objects }, null, 2) + "\n",
          );
        } else {
          context.io.stdout(
            `# vif ${VERSION}: the traffic-manager in namespace "${namespace}", with a new CA and certificate.\n` +
              "# Apply with: kubectl apply -f -\n" + kube.toYamlStream(objects),
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
          ...(flags.image ? { image: flags.image } : {}),
          ...(output === "text"
            ? { onApplied: (step: AppliedObject) => out(`${step.name} ${step.action}`) }
            : {}),
        });
      } catch (error) {
        throw asUserError(error);
      }
      const summary = { context: loaded.context, server: loaded.server, ...result };
      if (output === "json") {
        context.io.stdout(JSON.stringify(summary, null, 2) + "\n");
      } else if (output === "yaml") {
        context.io.stdout(kube.toYaml(summary));
      } else {
        out(tlsLine(result.tls, namespace));
        out(`Run "${connectCommand(loaded.context, namespace)}" to connect to the cluster.`);
      }
    });

  program
    .command("uninstall")
    .description("remove the traffic-manager from the cluster")
    .option(
      "--kubeconfig <file>",
      "the kubeconfig to use (default: $KUBECONFIG, else ~/.kube/config)",
    )
    .option("--context <name>", "the kubeconfig context (default: the current context)")
    .addOption(namespaceOption())
    .addOption(
      new Option("-o, --output <format>", "output format").choices(["text", "json"]).default(
        "text",
      ),
    )
    .addHelpText("after", UNINSTALL_HELP)
    .action(async (flags: UninstallFlags) => {
      const kube = await import("../kube/mod.ts");
      const loaded = loadKubeConfig(kube, flags, context);
      let results: DeletedObject[];
      try {
        results = await kube.uninstall(loaded.kubeConfig, {
          namespace: flags.namespace,
          ...(flags.output === "text"
            ? { onDeleted: (step: DeletedObject) => out(deletedLine(step)) }
            : {}),
        });
      } catch (error) {
        throw asUserError(error);
      }
      if (flags.output === "json") {
        context.io.stdout(
          JSON.stringify(
            { context: loaded.context, namespace: flags.namespace, deleted: results },
            null,
            2,
          ) +
            "\n",
        );
      } else {
        out(`The traffic-manager is uninstalled from context "${loaded.context}".`);
      }
    });
}

type Kube = typeof import("../kube/mod.ts");

function loadKubeConfig(
  kube: Kube,
  flags: { kubeconfig?: string; context?: string },
  context: CliContext,
) {
  try {
    return kube.loadKubeConfig({
      ...(flags.kubeconfig !== undefined ? { kubeconfig: flags.kubeconfig } : {}),
      ...(flags.context !== undefined ? { context: flags.context } : {}),
      env: context.io.env,
    });
  } catch (error) {
    throw asUserError(error);
  }
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

/** kubectl's words: `deployment.apps "traffic-manager" deleted`. */
function deletedLine(step: DeletedObject): string {
  const name = step.name.replace(/\/(.*)$/, ' "$1"');
  if (step.action === "kept") return `${name} kept: ${step.reason}`;
  if (step.action === "deleting") return `${name} is already being deleted`;
  return `${name} ${step.action}`;
}

function namespaceOption(): Option {
  return new Option("-n, --namespace <ns>", "the traffic-manager's namespace")
    .default(DEFAULT_MANAGER_NAMESPACE)
    .argParser(namespaceName);
}

/**
 * Checks a namespace name: a DNS label (RFC 1123), as Kubernetes requires.
 *
 * @throws {InvalidArgumentError} When it is not one.
 */
function namespaceName(value: string): string {
  if (!/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(value)) {
    throw new InvalidArgumentError(
      "A namespace is up to 63 lower-case letters, digits and '-', starting and ending with a letter or digit.",
    );
  }
  return value;
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
