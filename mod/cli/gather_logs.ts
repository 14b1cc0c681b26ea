/**
 * `vif gather-logs`: one `.tar.gz` for a bug report. From this machine: the
 * daemon's status, the versions, the daemon's log files and state file.
 * From the cluster, through the API server as the user (`gather_cluster.ts`):
 * the traffic-manager's Deployment, pods and log, and the traffic-agents'
 * logs. Secrets are redacted always; `--anonymize` replaces names and
 * addresses too (`anonymize.ts`). The archive is written here (`tar.ts`),
 * with no external `tar`.
 *
 * The kubeconfig context and the manager's namespace are the flags', else
 * the connected daemon's, else the kubeconfig's current context and
 * `vif-system`. It is often run with sudo, to read the root daemon's log:
 * then the user's credentials are resolved as that user (`SUDO_UID`), by
 * `vif kube-credentials` run through `setpriv` as the daemon does
 * (`mod/daemon/credentials.ts`), so that no exec plugin of theirs runs and
 * none of their files is read as root. Whatever fails is written to
 * `errors.txt` in the archive and one line each on stderr, and the rest is
 * still written.
 *
 * @module
 */

import type { Command } from "commander";
import { DEFAULT_MANAGER_NAMESPACE } from "../rpc/names.ts";
import { VERSION } from "../version.ts";
import type { StatusDocument } from "../daemon/daemon.ts";
import type { ApiAccess } from "../kube/api.ts";
import type { CliContext } from "./context.ts";
import { UserError } from "./errors.ts";
import { STATE_DIR_HELP, stateDirOf } from "./daemon_client.ts";
import { addKubeFlags, type KubeFlags } from "./kube_flags.ts";
import type { GatheredFile } from "./gather_cluster.ts";
import type { NameKind } from "./anonymize.ts";

/** The parsed flags of `vif gather-logs`. */
export interface GatherLogsFlags extends KubeFlags {
  /** `-o FILE`: the archive. */
  output?: string;
  /** `--state-dir DIR`: where the daemon's log is. */
  stateDir?: string;
  /** `--manager-namespace NS`. */
  managerNamespace?: string;
  /** False with `--no-cluster`. */
  cluster: boolean;
  /** `--anonymize`. */
  anonymize?: boolean;
}

/** How the cluster's part gets the user's credentials. */
export type CredentialsPlan =
  /** In this process: it runs as the user (or as root for root's own kubeconfig). */
  | { how: "here" }
  /** Through `vif kube-credentials` run as the user sudo was called by. */
  | { how: "as-user"; uid: number; gid: number };

/**
 * How to get the user's credentials: as this process, unless it is root
 * through sudo, when `SUDO_UID` and `SUDO_GID` name the user to be.
 *
 * @param uid this process's uid
 * @param env reads the environment
 * @returns the plan
 * @example
 * ```ts
 * import { credentialsPlan } from "./gather_logs.ts";
 *
 * const env = (n: string) => ({ SUDO_UID: "1000", SUDO_GID: "1000" } as Record<string, string>)[n];
 * const plan = credentialsPlan(0, env);
 * if (plan.how !== "as-user" || plan.uid !== 1000) throw new Error(JSON.stringify(plan));
 * ```
 */
export function credentialsPlan(
  uid: number,
  env: (name: string) => string | undefined,
): CredentialsPlan {
  if (uid !== 0) return { how: "here" };
  const id = (s: string | undefined) => /^\d{1,10}$/.test(s ?? "") ? Number(s) : undefined;
  const sudoUid = id(env("SUDO_UID")), sudoGid = id(env("SUDO_GID"));
  if (sudoUid === undefined || sudoUid === 0 || sudoGid === undefined) return { how: "here" };
  return { how: "as-user", uid: sudoUid, gid: sudoGid };
}

const EXAMPLES = `
Examples:
  vif loglevel debug && <reproduce the problem> && sudo vif gather-logs
  vif gather-logs -o /tmp/vif-bug.tar.gz --anonymize
  vif gather-logs --context prod --manager-namespace vif-dev
  vif gather-logs --no-cluster          # this machine only, no API requests

With --anonymize, names (namespaces, pods, services, workloads, nodes, users,
hosts, the kubeconfig's cluster, context and user) become namespace-1, pod-3,
…; IPv4 addresses 250.0.0.1 onwards; IPv6 addresses 2001:db8::1 onwards; the
same name or address the same way in every file. Loopback, 0.0.0.0, vif's own
240.0.0.0/24 and Kubernetes' and vif's own names stay. Secrets (tokens, keys,
passwords) are redacted with or without it.`;

/**
 * Adds `vif gather-logs` to the program.
 *
 * @param program the root command
 * @param context the run's shared state
 */
export function registerGatherLogs(program: Command, context: CliContext): void {
  const command = program
    .command("gather-logs")
    .description(
      "write the daemon's, the traffic-manager's and the agents' logs, status and versions to one archive for a bug report",
    )
    .option("-o, --output <file>", "the archive to write (default: vif-logs-<time>.tar.gz)")
    .option("--state-dir <dir>", STATE_DIR_HELP);
  addKubeFlags(command, "the connected one, else the current one")
    .option(
      "--manager-namespace <ns>",
      `the traffic-manager's namespace (default: the connected one, else ${DEFAULT_MANAGER_NAMESPACE})`,
    )
    .option("--anonymize", "replace names and addresses, the same way in every file")
    .option("--no-cluster", "leave the cluster out: no request to the API server")
    .addHelpText("after", EXAMPLES)
    .action((flags: GatherLogsFlags) => gatherLogs(flags, context));
}

async function gatherLogs(flags: GatherLogsFlags, context: CliContext): Promise<void> {
  const env = context.io.env;
  const stateDir = stateDirOf(flags.stateDir, env);
  const stamp = new Date().toISOString().replace(/[:.]/g, "-");
  const output = flags.output ?? `vif-logs-${stamp}.tar.gz`;
  const files: GatheredFile[] = [];
  const errors: string[] = [];
  const included: string[] = [];
  const plan = credentialsPlan(Deno.uid() ?? 0, env);

  const { fetchStatus } = await import("./status.ts");
  const { versionInfo } = await import("./version.ts");
  let status: StatusDocument | undefined;
  try {
    status = await fetchStatus(stateDir);
    files.push({ path: "status.json", json: status });
  } catch (error) {
    errors.push(`the daemon's status: ${errorText(error)}`);
    files.push({ path: "status.json", json: { error: errorText(error) } });
  }
  // V8's version (13.4.114.21) would pass for an address.
  files.push({ path: "version.json", json: versionInfo(), plain: true });
  included.push("status", "versions");

  const local = await daemonFiles(stateDir);
  files.push(...local.files);
  errors.push(...local.errors);
  included.push(...local.files.map((f) => f.path));

  let kube: KubeFacts | undefined;
  let names: Array<[string, NameKind]> = [];
  let managerNamespace: string | undefined;
  if (flags.cluster) {
    const connection = status?.connection ?? null;
    managerNamespace = flags.managerNamespace ?? connection?.manager.namespace ??
      DEFAULT_MANAGER_NAMESPACE;
    try {
      kube = await userAccess(flags, connection?.context ?? undefined, plan, env);
    } catch (error) {
      errors.push(`the cluster: ${errorText(error)}`);
    }
    if (kube) {
      const { gatherCluster } = await import("./gather_cluster.ts");
      const namespaces = [
        connection?.namespace,
        ...(connection?.intercepts ?? []).map((i) => i.namespace),
        kube.namespace,
      ].filter((n): n is string => typeof n === "string" && n !== "");
      const g = await gatherCluster(kube.access, {
        managerNamespace,
        namespaces,
        listNamespaces: flags.anonymize ?? false,
      });
      files.push(...g.files);
      errors.push(...g.errors);
      included.push(...g.collected);
      names = g.names;
    }
  }

  if (errors.length > 0) {
    files.push({ path: "errors.txt", text: errors.map((e) => e + "\n").join("") });
  }
  const summary = [
    `vif gather-logs, vif ${VERSION}, ${new Date().toISOString()}`,
    `included: ${included.join(", ")}`,
  ];
  if (flags.cluster) {
    summary.push(
      `context: ${kube ? `${kube.context} at ${kube.access.server}` : "(none)"}`,
      `manager namespace: ${managerNamespace}`,
      `credentials: ${
        plan.how === "as-user" ? `resolved as uid ${plan.uid} (through sudo)` : "this user's"
      }`,
    );
  } else summary.push("cluster: left out (--no-cluster)");
  summary.push(
    flags.anonymize
      ? "anonymized: names and addresses replaced (vif gather-logs --help says how); secrets redacted"
      : "secrets redacted; names and addresses as they are (--anonymize replaces them)",
  );
  if (errors.length > 0) summary.push(`left out: ${errors.length} (errors.txt says what and why)`);
  files.push({ path: "summary.txt", text: summary.join("\n") + "\n" });

  const { Anonymizer, redactJson, redactSecrets } = await import("./anonymize.ts");
  let transform: { json(v: unknown): unknown; text(t: string): string; path(p: string): string };
  if (flags.anonymize) {
    const a = new Anonymizer();
    for (const [name, kind] of machineNames(env, plan)) a.addName(name, kind);
    if (kube) {
      a.addName(kube.context, "context");
      a.addName(kube.cluster, "cluster");
      a.addName(kube.user, "user");
      a.addName(hostOf(kube.access.server), "host");
    }
    for (const [name, kind] of statusNames(status)) a.addName(name, kind);
    for (const [name, kind] of names) a.addName(name, kind);
    for (const f of files) if (f.text !== undefined) a.learnFromText(f.text);
    transform = {
      json: (v) => a.json(v),
      text: (t) => a.text(t),
      path: (p) => p.split("/").map((part) => a.text(part)).join("/"),
    };
  } else {
    transform = { json: redactJson, text: redactSecrets, path: (p) => p };
  }

  const { tarGz } = await import("./tar.ts");
  const root = `vif-logs-${stamp}`;
  const mtime = new Date();
  const encoder = new TextEncoder();
  const entries = [
    { path: root, type: "directory" as const, mtime },
    ...dirsOf(files.map((f) => transform.path(f.path))).map((d) => ({
      path: `${root}/${d}`,
      type: "directory" as const,
      mtime,
    })),
    ...files.map((f) => ({
      path: `${root}/${transform.path(f.path)}`,
      data: encoder.encode(
        f.json !== undefined
          ? JSON.stringify((f.plain ? redactJson : transform.json)(f.json), null, 2) + "\n"
          : (f.plain ? redactSecrets : transform.text)(f.text ?? ""),
      ),
      mode: 0o644,
      mtime,
    })),
  ];
  await writeArchive(output, tarGz(entries), plan, flags.output === undefined);

  context.io.stdout(`wrote ${output}: ${included.join(", ")}\n`);
  // Names as they are here: this terminal is the user's own.
  const shown = errors.slice(0, 8);
  for (const e of shown) context.io.stderr(`vif: gather-logs: ${oneLine(redactSecrets(e))}\n`);
  if (errors.length > shown.length) {
    context.io.stderr(
      `vif: gather-logs: ${errors.length - shown.length} more in errors.txt in the archive\n`,
    );
  }
}

/** What the cluster's part knows of the kubeconfig. */
interface KubeFacts {
  context: string;
  cluster?: string;
  user?: string;
  /** The context's namespace (only when resolved here). */
  namespace?: string;
  access: ApiAccess;
}

/** Resolves the user's access to the API server, as the user (see {@linkcode CredentialsPlan}). */
async function userAccess(
  flags: GatherLogsFlags,
  connectedContext: string | undefined,
  plan: CredentialsPlan,
  env: (name: string) => string | undefined,
): Promise<KubeFacts> {
  const contextName = flags.context ?? connectedContext;
  if (plan.how === "here") {
    const { loadKubeConfig, resolveAccess } = await import("../kube/client.ts");
    const { kubeLoadOptions } = await import("./kube_flags.ts");
    const loaded = loadKubeConfig({
      ...kubeLoadOptions(flags, env),
      ...(contextName ? { context: contextName } : {}),
    });
    const access = await resolveAccess(loaded.kubeConfig);
    return {
      context: loaded.context,
      ...(loaded.kubeConfig.getCurrentCluster()?.name
        ? { cluster: loaded.kubeConfig.getCurrentCluster()!.name }
        : {}),
      ...(loaded.kubeConfig.getCurrentUser()?.name
        ? { user: loaded.kubeConfig.getCurrentUser()!.name }
        : {}),
      namespace: loaded.namespace,
      access,
    };
  }
  // Root through sudo: the user's kubeconfig, exec plugin and token file are
  // theirs to run and read, as the daemon has them (mod/daemon/credentials.ts).
  const [{ credentialsHelper }, { self }] = await Promise.all([
    import("../daemon/credentials.ts"),
    import("../daemon/self.ts"),
  ]);
  const user = await passwd(plan.uid);
  const absolute = (p: string) => p.startsWith("/") ? p : `${Deno.cwd()}/${p}`;
  const kubeconfigEnv = env("KUBECONFIG")?.split(":").filter((p) => p !== "").map(absolute)
    .join(":");
  const params = {
    ...(flags.kubeconfig ? { kubeconfig: absolute(flags.kubeconfig) } : {}),
    ...(kubeconfigEnv ? { kubeconfigEnv } : {}),
    ...(user?.home ? { home: user.home } : {}),
    ...(env("PATH") ? { path: env("PATH")! } : {}),
    ...(flags.as ? { as: flags.as } : {}),
    ...(flags.requestTimeout !== undefined ? { requestTimeoutMs: flags.requestTimeout } : {}),
  };
  const resolve = credentialsHelper({ self: self(env), user: { uid: plan.uid, gid: plan.gid } });
  // The helper reads only the kubeconfig's part of a connect request.
  const resolved = await resolve(
    params as Parameters<typeof resolve>[0],
    contextName,
  );
  return { context: resolved.context, access: resolved.access };
}

/** The daemon's log files and state file, never through a link, and what could not be read. */
async function daemonFiles(stateDir: string): Promise<{ files: GatheredFile[]; errors: string[] }> {
  const files: GatheredFile[] = [];
  const errors: string[] = [];
  let names: string[];
  try {
    names = await Array.fromAsync(Deno.readDir(stateDir), (e) => e.name);
  } catch (error) {
    errors.push(
      error instanceof Deno.errors.NotFound
        ? `the daemon's log: no state directory "${stateDir}" (the daemon has not run there)`
        : `the daemon's log: cannot read "${stateDir}": ${errorText(error)} (run it with sudo)`,
    );
    return { files, errors };
  }
  const { readOwnFile } = await import("../daemon/state_dir.ts");
  for (const name of names.sort()) {
    if (!/^daemon\.log(\.\d{1,3})?$|^daemon\.json$/.test(name)) continue;
    const path = `${stateDir}/${name}`;
    try {
      // Often run with sudo: a link or a FIFO here must not hand root's files over, or hang.
      if (!(await Deno.lstat(path)).isFile) throw new Error("not a regular file");
      const bytes = readOwnFile(path, 32 << 20);
      if (bytes === undefined) continue;
      const text = new TextDecoder().decode(bytes);
      if (name.endsWith(".json")) {
        try {
          files.push({ path: name, json: JSON.parse(text) });
          continue;
        } catch {
          // Not JSON after all: kept as text.
        }
      }
      files.push({ path: name, text });
    } catch (error) {
      errors.push(
        `${name}: ${errorText(error)}${
          error instanceof Deno.errors.PermissionDenied ? " (run it with sudo)" : ""
        }`,
      );
    }
  }
  if (!files.some((f) => f.path.startsWith("daemon.log"))) {
    errors.push(`the daemon's log: none in "${stateDir}" (the daemon has not run there)`);
  }
  return { files, errors };
}

/** Writes the archive: a new file unless `-o` named one, mode 0600, the sudo user's. */
async function writeArchive(
  output: string,
  stream: ReadableStream<Uint8Array>,
  plan: CredentialsPlan,
  createNew: boolean,
): Promise<void> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(output, {
      write: true,
      create: true,
      truncate: true,
      ...(createNew ? { createNew: true } : {}),
      mode: 0o600,
    });
  } catch (cause) {
    await stream.cancel().catch(() => {});
    throw new UserError(`cannot write "${output}": ${errorText(cause)}`, {
      hint: "Pass -o FILE in a directory you can write to.",
      cause,
    });
  }
  try {
    await stream.pipeTo(file.writable);
  } catch (cause) {
    await Deno.remove(output).catch(() => {});
    throw new UserError(`cannot write "${output}": ${errorText(cause)}`, {
      hint: "Check that the disk has room, or pass -o FILE elsewhere.",
      cause,
    });
  }
  // Through sudo the archive is for the user who asked for it.
  if (plan.how === "as-user") await Deno.chown(output, plan.uid, plan.gid).catch(() => {});
}

/** The user's name and home, from the system's user database. */
async function passwd(uid: number): Promise<{ name: string; home: string } | undefined> {
  try {
    const out = await new Deno.Command("getent", {
      args: ["passwd", String(uid)],
      stdin: "null",
      stdout: "piped",
      stderr: "null",
    }).output();
    if (!out.success) return undefined;
    const fields = new TextDecoder().decode(out.stdout).trim().split(":");
    return fields.length >= 6 ? { name: fields[0]!, home: fields[5]! } : undefined;
  } catch {
    return undefined;
  }
}

/** This machine's name and the names of the users involved, to anonymize. */
function machineNames(
  env: (name: string) => string | undefined,
  plan: CredentialsPlan,
): Array<[string, "host" | "user"]> {
  const out: Array<[string, "host" | "user"]> = [];
  try {
    out.push([Deno.hostname(), "host"]);
  } catch {
    // No --allow-sys: the name stays unknown.
  }
  for (const v of ["SUDO_USER", "USER", "LOGNAME"]) {
    const name = env(v);
    if (name) out.push([name, "user"]);
  }
  const home = env("HOME")?.split("/").at(-1);
  if (home && plan.how === "here") out.push([home, "user"]);
  return out;
}

/** The names the daemon's status holds, with what they name. */
function statusNames(
  status: StatusDocument | undefined,
): Array<[string, "namespace" | "pod" | "workload" | "context" | "cluster" | "user" | "host"]> {
  const c = status?.connection;
  if (!c) return [];
  const out: Array<
    [string, "namespace" | "pod" | "workload" | "context" | "cluster" | "user" | "host"]
  > = [];
  if (c.context) out.push([c.context, "context"]);
  if (c.cluster) out.push([c.cluster, "cluster"]);
  out.push([c.namespace, "namespace"], [c.manager.namespace, "namespace"]);
  if (c.manager.pod) out.push([c.manager.pod, "pod"]);
  for (const i of c.intercepts ?? []) {
    out.push([i.namespace, "namespace"], [i.workload, "workload"]);
    for (const p of i.pods) out.push([p, "pod"]);
    const [who, where] = i.holder.split("@");
    if (who) out.push([who, "user"]);
    if (where) out.push([where, "host"]);
  }
  return out;
}

function hostOf(server: string): string | undefined {
  try {
    return new URL(server).hostname.replace(/^\[|\]$/g, "");
  } catch {
    return undefined;
  }
}

/** The folders the paths lie in, parents first. */
function dirsOf(paths: string[]): string[] {
  const dirs = new Set<string>();
  for (const p of paths) {
    const parts = p.split("/").slice(0, -1);
    for (let i = 1; i <= parts.length; i++) dirs.add(parts.slice(0, i).join("/"));
  }
  return [...dirs].sort();
}

function oneLine(text: string): string {
  return text.replace(/\s*\n\s*/g, " ").slice(0, 400);
}

function errorText(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split("\n", 1)[0] ?? "";
}
