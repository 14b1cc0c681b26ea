/**
 * `vif intercept NAME --port LOCAL[:SERVICE_PORT]` and `vif leave NAME`: the
 * cluster's connections to a workload's port come to a program on this
 * machine. The work is split where the credentials are: this process (the
 * user) puts the traffic-agent into the workload with the user's own
 * Kubernetes credentials (`mod/kube/agent_inject.ts`) and follows the
 * rollout; the daemon claims the port on the workload, asks the manager for
 * the intercept and serves its connections (`mod/daemon/intercepts.ts`).
 * The app container's environment is written out (`--env-file`,
 * `--env-json`) and given to `-- CMD`, with `VIF_ROOT` the mount point of its
 * volumes (`--mount`).
 *
 * @module
 */

import { type Command, Option } from "commander";
import type { InterceptStatus } from "../daemon/intercepts.ts";
import type { StatusDocument } from "../daemon/daemon.ts";
import type { CliContext } from "./context.ts";
import { daemonClient, STATE_DIR_HELP, stateDirOf } from "./daemon_client.ts";
import { asUserError, ExitCode, UserError } from "./errors.ts";
import { addKubeFlags, type KubeFlags, kubeLoadOptions } from "./kube_flags.ts";
import { formatStructured, type OutputFormat, outputOption } from "./output.ts";

/** The syntaxes `--env-syntax` writes. */
export const ENV_SYNTAXES = ["sh", "docker", "compose", "json"] as const;
/** One of {@linkcode ENV_SYNTAXES}. */
export type EnvSyntax = typeof ENV_SYNTAXES[number];

interface InterceptFlags extends KubeFlags {
  namespace?: string;
  port: string;
  address: string;
  envFile?: string;
  envSyntax: EnvSyntax;
  envJson?: string;
  mount: string;
  timeout: number;
  managerNamespace?: string;
  stateDir?: string;
  output: OutputFormat;
}

const EXAMPLES = `
Examples:
  vif intercept web --port 8080                 # web's one port → localhost:8080
  vif intercept web -n shop --port 8080:http    # the Service port named http
  vif intercept web --port 8080 --env-file web.env --mount /tmp/web
  vif intercept web --port 8080 --mount true -- ./server   # VIF_ROOT=<mount>, the pod's env

The first intercept of a workload adds vif's traffic-agent to its pods (a
rollout, with your credentials: you need patch on the workload); later ones
are instant. "vif leave NAME" gives the port back; "vif leave NAME
--remove-agent" (or "vif uninstall --agents") puts the workload back as it
was. Connections reach the local port while the program runs; a refused one
is a reset for the cluster's client, not a hang.`;

/**
 * Parses `--port LOCAL[:SERVICE_PORT]`.
 *
 * @param text the flag's value
 * @returns the local port and the Service port (a name or number), if given
 * @throws {UserError} a usage error when it is not that
 *
 * @example
 * ```ts
 * import { parsePortFlag } from "./intercept.ts";
 *
 * const p = parsePortFlag("8080:http");
 * if (p.local !== 8080 || p.service !== "http") throw new Error("parsed wrong");
 * ```
 */
export function parsePortFlag(text: string): { local: number; service?: string } {
  const m = /^(\d{1,5})(?::([a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?))?$/.exec(text);
  const local = m ? Number(m[1]) : NaN;
  if (!m || !(local >= 1 && local <= 65535)) {
    throw new UserError(`bad --port "${text}"`, {
      hint: 'Pass --port LOCAL or LOCAL:SERVICE_PORT, like "8080" or "8080:http".',
      exitCode: ExitCode.Usage,
    });
  }
  return m[2] ? { local, service: m[2] } : { local };
}

/**
 * Writes an environment in one of {@linkcode ENV_SYNTAXES}. Variables the
 * syntax cannot hold (a name `sh` cannot export; a value with a newline in a
 * Docker env file) are left out and named.
 *
 * @param env the variables
 * @param syntax the syntax
 * @returns the file's text and what was left out
 *
 * @example
 * ```ts
 * import { formatEnv } from "./intercept.ts";
 *
 * const { text } = formatEnv({ GREETING: "it's me" }, "sh");
 * if (text !== "export GREETING='it'\\''s me'\n") throw new Error(text);
 * ```
 */
export function formatEnv(
  env: Record<string, string>,
  syntax: EnvSyntax,
): { text: string; skipped: string[] } {
  const names = Object.keys(env).sort();
  const skipped: string[] = [];
  if (syntax === "json") {
    const sorted = Object.fromEntries(names.map((n) => [n, env[n]!]));
    return { text: JSON.stringify(sorted, null, 2) + "\n", skipped };
  }
  const lines: string[] = [];
  for (const name of names) {
    const value = env[name]!;
    if (syntax === "sh") {
      if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
        skipped.push(name);
        continue;
      }
      lines.push(`export ${name}='${value.replaceAll("'", "'\\''")}'`);
    } else if (syntax === "docker") {
      // docker run --env-file: NAME=value to the end of the line, no quoting.
      if (/[\n\r]/.test(value) || /[=\s]/.test(name)) {
        skipped.push(name);
        continue;
      }
      lines.push(`${name}=${value}`);
    } else {
      // Compose's .env: double quotes, with \\, \" and \n escaped; $ doubled (no interpolation).
      if (!/^[A-Za-z_][A-Za-z0-9_.-]*$/.test(name)) {
        skipped.push(name);
        continue;
      }
      const quoted = value.replaceAll("\\", "\\\\").replaceAll('"', '\\"')
        .replaceAll("\n", "\\n").replaceAll("\r", "\\r").replaceAll("$", "$$");
      lines.push(`${name}="${quoted}"`);
    }
  }
  return { text: lines.map((l) => l + "\n").join(""), skipped };
}

/**
 * Adds `vif intercept` and `vif leave` to the program.
 *
 * @param program the root command
 * @param context the run's shared state
 */
export function registerIntercept(program: Command, context: CliContext): void {
  const interceptCmd = program
    .command("intercept")
    .description("send the cluster's connections to a workload's port to this machine")
    .argument("<name>", "the workload (Deployment, StatefulSet or ReplicaSet; kind/NAME to choose)")
    .argument(
      "[command...]",
      "a command to run while intercepting (after --); its exit code is vif's",
    )
    .option("-n, --namespace <ns>", "the workload's namespace (default: the connected one)")
    .requiredOption(
      "-p, --port <local[:service-port]>",
      "the local port, and the Service port to take",
    )
    .option("--address <host>", "where the connections go on this machine", "127.0.0.1")
    .option("--env-file <file>", "write the app container's environment there (mode 0600)")
    .addOption(
      new Option("--env-syntax <syntax>", "the env file's syntax").choices([...ENV_SYNTAXES])
        .default("sh"),
    )
    .option("--env-json <file>", "write the environment as JSON there too (mode 0600)")
    .option(
      "--mount <dir|true|false>",
      "mount the app container's volumes there (true: a new temporary directory)",
      "false",
    )
    .option("--timeout <seconds>", "how long to wait for the agents", (v) => seconds(v), 120);
  addKubeFlags(interceptCmd, "the connected one")
    .option(
      "--manager-namespace <ns>",
      "the traffic-manager's namespace (default: the connected one)",
    )
    .option("--state-dir <dir>", STATE_DIR_HELP)
    .addOption(outputOption("the intercept"))
    .addHelpText("after", EXAMPLES)
    .action(async (name: string, command: string[], flags: InterceptFlags) => {
      context.exitCode = await intercept(name, command, flags, context);
    });

  const leave = program
    .command("leave")
    .description("stop intercepting a workload; the agent stays unless --remove-agent")
    .argument("<name>", "the workload")
    .option("-n, --namespace <ns>", "its namespace (default: the connected one)")
    .option("--remove-agent", "also put the workload back as it was before vif's agent")
    .option("--timeout <seconds>", "how long to wait for the rollout", (v) => seconds(v), 120);
  addKubeFlags(leave, "the connected one")
    .option("--state-dir <dir>", STATE_DIR_HELP)
    .action(async (
      name: string,
      flags: KubeFlags & {
        namespace?: string;
        removeAgent?: boolean;
        timeout: number;
        stateDir?: string;
      },
    ) => {
      const stateDir = stateDirOf(flags.stateDir, context.io.env);
      const client = await daemonClient(stateDir);
      if (client === null) throw notConnected();
      try {
        const status = await client.request("status", {}) as StatusDocument;
        const c = status.connection;
        if (c === null) throw notConnected();
        const namespace = flags.namespace ?? c.namespace;
        const workload = name.replace(/^[a-z]+\//, "");
        try {
          const r = await client.request("leave", { id: `${namespace}/${workload}` });
          context.io.stdout(`left ${r.ended.join(", ")}\n`);
        } catch (error) {
          if (!flags.removeAgent) throw asUserError(error);
        }
        if (flags.removeAgent) {
          const api = await userApi(flags, c.context, context);
          const { findWorkload } = await import("../kube/workloads.ts");
          const { removeAgent, waitForAgents } = await import("../kube/agent_inject.ts");
          try {
            const found = await findWorkload(api, namespace, name);
            const ref = { namespace, kind: found.kind, name: found.metadata.name };
            const removed = await removeAgent(api, ref);
            if (removed.action === "absent") {
              context.io.stdout(`${describe(ref)} has no agent\n`);
            } else {
              context.io.stdout(`${describe(ref)}: agent removed, rolling out\n`);
              await waitForAgents(api, ref, {
                timeoutMs: flags.timeout * 1000,
                absent: true,
                onProgress: (line) => context.io.stdout(`  ${line}\n`),
              });
              context.io.stdout(`${describe(ref)} is as it was before vif\n`);
            }
          } catch (error) {
            throw asUserError(error);
          }
        }
      } finally {
        client.close();
      }
    });
}

async function intercept(
  name: string,
  command: string[],
  flags: InterceptFlags,
  context: CliContext,
): Promise<number> {
  const port = parsePortFlag(flags.port);
  const mount = mountFlag(flags.mount);
  const out = (line: string) => flags.output === "text" && context.io.stdout(line + "\n");
  const progress = (line: string) => flags.output === "text" && context.io.stderr(`  ${line}\n`);
  const stateDir = stateDirOf(flags.stateDir, context.io.env);
  const client = await daemonClient(stateDir);
  if (client === null) throw notConnected();
  let status: InterceptStatus;
  let madeMount: string | undefined;
  try {
    const doc = await client.request("status", {}) as StatusDocument;
    const c = doc.connection;
    if (c === null) throw notConnected();
    if (c.manager.via !== "port-forward") {
      throw new UserError("intercepts need a connection through the Kubernetes API", {
        hint: "Connect with --context (vif connect --context NAME), then intercept.",
      });
    }
    const namespace = flags.namespace ?? c.namespace;
    const api = await userApi(flags, c.context, context);
    const { managerForAgents, injectAgent, waitForAgents } = await import(
      "../kube/agent_inject.ts"
    );
    let injected;
    try {
      const manager = await managerForAgents(api, flags.managerNamespace ?? c.manager.namespace);
      injected = await injectAgent(api, { namespace, name }, {
        ...(port.service ? { port: port.service } : {}),
        manager,
        onProgress: progress,
      });
      for (const warning of injected.warnings) progress(`warning: ${warning}`);
      if (injected.action === "injected") {
        await waitForAgents(api, injected.workload, {
          timeoutMs: flags.timeout * 1000,
          onProgress: progress,
        });
      }
    } catch (error) {
      throw asUserError(error);
    }
    let mountPoint: string | undefined;
    if (mount === "temporary") {
      mountPoint = madeMount = await Deno.makeTempDir({ prefix: `vif-${injected.workload.name}-` });
    } else if (mount !== undefined) {
      mountPoint = await emptyDirectory(mount);
    }
    const w = injected.wanted;
    try {
      status = await client.request("intercept", {
        namespace,
        workloadKind: injected.workload.kind,
        workloadName: injected.workload.name,
        containerPort: w.containerPort,
        localHost: flags.address,
        localPort: port.local,
        ...(mountPoint ? { mountPoint } : {}),
        timeoutMs: flags.timeout * 1000,
      }, progress);
    } catch (error) {
      if (madeMount) await Deno.remove(madeMount).catch(() => {});
      throw asUserError(error);
    }
    const what = `${injected.workload.kind.toLowerCase()}/${injected.workload.name}`;
    const env = status.environment;
    if (flags.envFile) await writeEnv(flags.envFile, env, flags.envSyntax, progress);
    if (flags.envJson) await writeEnv(flags.envJson, env, "json", progress);
    if (flags.output !== "text") {
      const { environment: _secret, ...shown } = status;
      context.io.stdout(
        formatStructured({ ...shown, variables: Object.keys(env).length }, flags.output),
      );
    }
    out(
      `intercepting ${what} in ${namespace}: ${w.service} port ${w.portName ?? w.port} ` +
        `(container ${w.container} port ${w.containerPort}) → ${status.local}`,
    );
    out(`  pods: ${status.agents.map((a) => `${a.pod} ${a.ip}`).join(", ")}`);
    out(
      `  environment: ${Object.keys(env).length} variable${
        Object.keys(env).length === 1 ? "" : "s"
      }` +
        `${flags.envFile ? ` in ${flags.envFile}` : ""}${
          flags.envJson ? ` and ${flags.envJson}` : ""
        }`,
    );
    if (status.mountPoint) out(`  volumes: mounted on ${status.mountPoint}`);
    if (command.length === 0) {
      out(`stop with "vif leave ${injected.workload.name}"`);
      return ExitCode.Ok;
    }
    const { runCommand } = await import("../daemon/foreground.ts");
    const code = await runCommand(
      command,
      (_level, message) => context.io.stderr(message + "\n"),
      {
        holdSignals: true,
        env: { ...Deno.env.toObject(), ...env, VIF_ROOT: status.mountPoint ?? "" },
      },
    );
    await client.request("leave", { id: status.id }).catch(() => {});
    if (madeMount) await Deno.remove(madeMount).catch(() => {});
    out(`"${command.join(" ")}" exited with ${code}: left ${what}`);
    return code;
  } finally {
    client.close();
  }
}

function seconds(value: string): number {
  const n = Number(value.replace(/s$/, ""));
  if (!(n > 0 && n <= 3600)) {
    throw new UserError(`bad --timeout "${value}"`, {
      hint: "Pass a number of seconds, 1 to 3600.",
      exitCode: ExitCode.Usage,
    });
  }
  return n;
}

function mountFlag(value: string): string | "temporary" | undefined {
  if (value === "false" || value === "") return undefined;
  if (value === "true") return "temporary";
  if (!value.startsWith("/")) return `${Deno.cwd()}/${value}`;
  return value;
}

async function emptyDirectory(path: string): Promise<string> {
  await Deno.mkdir(path, { recursive: true, mode: 0o700 }).catch(() => {});
  try {
    for await (const _ of Deno.readDir(path)) {
      throw new UserError(`the mount point "${path}" is not empty`, {
        hint: "Give --mount an empty directory, or --mount true for a new one.",
        exitCode: ExitCode.Usage,
      });
    }
  } catch (error) {
    if (error instanceof UserError) throw error;
    throw new UserError(`cannot use "${path}" as the mount point: ${(error as Error).message}`, {
      hint: "Give --mount a directory of yours.",
    });
  }
  return path;
}

async function writeEnv(
  path: string,
  env: Record<string, string>,
  syntax: EnvSyntax,
  progress: (line: string) => void,
): Promise<void> {
  const { text, skipped } = formatEnv(env, syntax);
  // The environment holds the pod's secrets: only the user may read the file.
  await Deno.writeTextFile(path, text, { mode: 0o600 });
  await Deno.chmod(path, 0o600);
  if (skipped.length > 0) {
    progress(`${path}: left out ${skipped.join(", ")} (not expressible in ${syntax} syntax)`);
  }
}

/** The workload API as the user, in the flags' context, else the connected one. */
async function userApi(
  flags: KubeFlags,
  connected: string | null | undefined,
  context: CliContext,
) {
  const { loadKubeConfig, resolveAccess } = await import("../kube/client.ts");
  const { workloadApi } = await import("../kube/workloads.ts");
  const kubeContext = flags.context ?? connected ?? undefined;
  try {
    const loaded = loadKubeConfig(
      kubeLoadOptions(
        { ...flags, ...(kubeContext ? { context: kubeContext } : {}) },
        context.io.env,
      ),
    );
    return workloadApi(await resolveAccess(loaded.kubeConfig));
  } catch (error) {
    throw asUserError(error);
  }
}

function describe(ref: { kind: string; name: string; namespace: string }): string {
  return `${ref.kind.toLowerCase()}/${ref.name} in ${ref.namespace}`;
}

function notConnected(): UserError {
  return new UserError("vif is not connected", {
    hint: "Run `vif connect --context NAME` first.",
  });
}
