/**
 * A kubeconfig context's API access, resolved quickly: what `loadKubeConfig`
 * and `resolveAccess` of `client.ts` give, read with js-yaml instead of
 * `@kubernetes/client-node`, whose load alone takes most of a second. For
 * what must answer within a second, such as shell completion on every Tab;
 * everything else uses `client.ts`. A test holds the two to the same answer
 * for every kind of user (mod/cli/completion_test.ts).
 *
 * Nothing here throws: a missing or broken kubeconfig, an unknown context,
 * or a credential plugin that does not answer in time all give `undefined`.
 *
 * @module
 */

import { load } from "js-yaml";
import { Buffer } from "node:buffer";
import { delimiter, dirname, isAbsolute, join, resolve } from "node:path";
import { isNamespaceName } from "../net/dns_name.ts";
import type { ApiAccess } from "./api.ts";

type Env = (name: string) => string | undefined;

/** The longest kubeconfig file read. */
const MAX_KUBECONFIG_BYTES = 4 << 20;

/** The most an exec credential plugin may print. */
const MAX_EXEC_OUTPUT_BYTES = 1 << 20;

/**
 * The contexts of the kubeconfig (`explicit`, else `KUBECONFIG`, else
 * `~/.kube/config`, merged as kubectl merges them), with their cluster and
 * namespace.
 *
 * @param explicit `--kubeconfig`, if given
 * @param env reads `KUBECONFIG` and `HOME`
 * @returns the contexts, in file order
 */
export function kubeconfigContexts(
  explicit: string | undefined,
  env: Env,
): Array<{ name: string; cluster?: string; namespace?: string }> {
  return readKubeconfig(explicit, env).contexts.map(({ name, body }) => ({
    name,
    ...(typeof body.cluster === "string" ? { cluster: body.cluster } : {}),
    ...(typeof body.namespace === "string" ? { namespace: body.namespace } : {}),
  }));
}

/** The parts of a kubeconfig completion reads, checked for shape. */
interface Kubeconfig {
  clusters: Named<Record<string, unknown>>[];
  users: Named<Record<string, unknown>>[];
  contexts: Named<Record<string, unknown>>[];
  currentContext: string;
}

interface Named<T> {
  name: string;
  /** The file it came from: relative paths in it are relative to that file's folder. */
  file: string;
  body: T;
}

/**
 * The files to read, as kubectl picks them: `--kubeconfig`, else the files
 * of `KUBECONFIG` that exist, else `~/.kube/config`.
 */
function kubeconfigFiles(explicit: string | undefined, env: Env): string[] {
  if (explicit !== undefined) return [resolve(explicit)];
  const list = env("KUBECONFIG");
  if (list !== undefined && list.trim() !== "") {
    return list.split(delimiter).filter((name) => name.trim() !== "").map((n) => resolve(n));
  }
  const home = env("HOME");
  return home ? [join(home, ".kube", "config")] : [];
}

/** Reads and merges the kubeconfig files as kubectl does: the first definition of a name wins. */
function readKubeconfig(explicit: string | undefined, env: Env): Kubeconfig {
  const merged: Kubeconfig = { clusters: [], users: [], contexts: [], currentContext: "" };
  for (const file of kubeconfigFiles(explicit, env)) {
    let doc: unknown;
    try {
      if (Deno.statSync(file).size > MAX_KUBECONFIG_BYTES) continue;
      doc = load(Deno.readTextFileSync(file));
    } catch {
      continue; // Missing, unreadable or not YAML: as if absent.
    }
    if (!isRecord(doc)) continue;
    const add = (list: Named<Record<string, unknown>>[], entries: unknown, key: string) => {
      if (!Array.isArray(entries)) return;
      for (const entry of entries) {
        if (!isRecord(entry) || typeof entry.name !== "string" || entry.name === "") continue;
        if (list.some((e) => e.name === entry.name)) continue;
        const body = entry[key];
        list.push({ name: entry.name, file, body: isRecord(body) ? body : {} });
      }
    };
    add(merged.clusters, doc.clusters, "cluster");
    add(merged.users, doc.users, "user");
    add(merged.contexts, doc.contexts, "context");
    const current = doc["current-context"];
    if (merged.currentContext === "" && typeof current === "string") {
      merged.currentContext = current;
    }
  }
  return merged;
}

/** Options of {@linkcode quickAccess}. */
export interface QuickAccessOptions {
  /** `--kubeconfig`; else `KUBECONFIG`, else `~/.kube/config`. */
  kubeconfig?: string;
  /** `--context`; else the kubeconfig's current context. */
  context?: string;
  /** `--as`: the `Impersonate-User` header; else the kubeconfig user's `as`. */
  as?: string;
  /** When to give up on an exec credential plugin (`Date.now()` ms). Default: 1 s from now. */
  deadline?: number;
}

/** What {@linkcode quickAccess} resolved. */
export interface QuickAccess {
  /** How to reach the API server as the user; holds credentials. */
  access: ApiAccess;
  /** The context's namespace, `default` when it names none (as `loadKubeConfig` has it). */
  namespace: string;
}

/**
 * Resolves the API access of a kubeconfig context quickly: the same
 * {@linkcode ApiAccess} as `loadKubeConfig` and `resolveAccess` of
 * `mod/kube/client.ts` give, read with js-yaml instead of
 * `@kubernetes/client-node` (which takes most of a second to load). Tokens,
 * token files, client certificates and keys (data or files), CA, basic
 * auth, `insecure-skip-tls-verify`, `tls-server-name`, impersonation and
 * exec plugins (run as the calling user, with no stdin) are read here; only
 * a user with a legacy `auth-provider` goes through client-node.
 *
 * @param env Reads `KUBECONFIG`, `HOME` and what an exec plugin needs.
 * @param options The file, context and user, and the deadline.
 * @returns The access and the context's namespace; undefined when there is
 *   no kubeconfig, no such context, or no credentials to be had in time.
 *
 * @example
 * ```ts ignore
 * import { quickAccess } from "./quick_access.ts";
 * const found = await quickAccess((n) => Deno.env.get(n), { context: "dev" });
 * if (found) console.log(found.access.server, found.namespace);
 * ```
 */
export async function quickAccess(
  env: Env,
  options: QuickAccessOptions = {},
): Promise<QuickAccess | undefined> {
  const deadline = options.deadline ?? Date.now() + 1000;
  const config = readKubeconfig(options.kubeconfig, env);
  const contextName = options.context || config.currentContext;
  const context = config.contexts.find((c) => c.name === contextName);
  const cluster = config.clusters.find((c) => c.name === context?.body.cluster);
  const server = cluster?.body.server;
  if (context === undefined || cluster === undefined || typeof server !== "string") return;
  const user = config.users.find((u) => u.name === context.body.user);
  const ns = context.body.namespace;
  const namespace = typeof ns === "string" && isNamespaceName(ns) ? ns : "default";
  if (user !== undefined && user.body["auth-provider"] != null) {
    return await viaClientNode(env, { ...options, context: context.name }, deadline);
  }

  const access: ApiAccess = { server: server.replace(/\/$/, ""), headers: {} };
  const c = cluster.body;
  if (c["insecure-skip-tls-verify"] === true) access.insecure = true;
  if (typeof c["tls-server-name"] === "string") access.serverName = c["tls-server-name"];
  const ca = pemOf(cluster.file, c["certificate-authority"], c["certificate-authority-data"]);
  if (ca) access.caPem = ca;
  const u = user?.body ?? {};
  const cert = pemOf(user?.file, u["client-certificate"], u["client-certificate-data"]);
  const key = pemOf(user?.file, u["client-key"], u["client-key-data"]);
  if (cert) access.certPem = cert;
  if (key) access.keyPem = key;
  const as = options.as ?? (typeof u.as === "string" ? u.as : undefined);
  if (as) access.headers["Impersonate-User"] = as;
  if (isRecord(u.exec)) {
    const credential = await execCredential(u.exec, deadline);
    if (credential === undefined) return;
    if (credential.cert) access.certPem = credential.cert;
    if (credential.key) access.keyPem = credential.key;
    if (credential.token) access.headers.Authorization = `Bearer ${credential.token}`;
  }
  const token = typeof u.token === "string" && u.token !== ""
    ? u.token
    : tokenFrom(user?.file, u.tokenFile ?? u["token-file"]);
  if (token) access.headers.Authorization = `Bearer ${token}`;
  if (typeof u.username === "string" && u.username !== "") {
    const password = typeof u.password === "string" ? u.password : "";
    access.headers.Authorization = `Basic ${
      Buffer.from(`${u.username}:${password}`).toString("base64")
    }`;
  }
  return { access, namespace };
}

/** A PEM from a file (relative to the kubeconfig's folder) or from base64 data. */
function pemOf(kubeconfig: string | undefined, file: unknown, data: unknown): string | undefined {
  try {
    if (typeof file === "string" && file !== "") {
      const path = isAbsolute(file) || !kubeconfig ? file : join(dirname(kubeconfig), file);
      return Deno.readTextFileSync(path);
    }
    if (typeof data === "string" && data !== "") return Buffer.from(data, "base64").toString();
  } catch {
    return undefined;
  }
  return undefined;
}

function tokenFrom(kubeconfig: string | undefined, file: unknown): string | undefined {
  if (typeof file !== "string" || file === "") return undefined;
  const path = isAbsolute(file) || !kubeconfig ? file : join(dirname(kubeconfig), file);
  try {
    return Deno.readTextFileSync(path).trim() || undefined;
  } catch {
    return undefined;
  }
}

/**
 * Runs an exec credential plugin as client-go does, in this process's
 * environment plus the plugin's own variables, with no stdin (it must not
 * prompt during a Tab) and its stderr dropped, and reads the ExecCredential
 * it prints.
 */
async function execCredential(
  exec: Record<string, unknown>,
  deadline: number,
): Promise<{ token?: string; cert?: string; key?: string } | undefined> {
  if (typeof exec.command !== "string" || exec.command === "") return undefined;
  const args = Array.isArray(exec.args) ? exec.args.filter((a) => typeof a === "string") : [];
  const extra: Record<string, string> = {};
  for (const e of Array.isArray(exec.env) ? exec.env : []) {
    if (isRecord(e) && typeof e.name === "string" && typeof e.value === "string") {
      extra[e.name] = e.value;
    }
  }
  const apiVersion = typeof exec.apiVersion === "string"
    ? exec.apiVersion
    : "client.authentication.k8s.io/v1";
  extra.KUBERNETES_EXEC_INFO = JSON.stringify({
    apiVersion,
    kind: "ExecCredential",
    spec: { interactive: false },
  });
  const ms = deadline - Date.now();
  if (ms <= 0) return undefined;
  try {
    const out = await new Deno.Command(exec.command, {
      args,
      env: extra,
      stdin: "null",
      stdout: "piped",
      stderr: "null",
      signal: AbortSignal.timeout(ms),
    }).output();
    if (!out.success || out.stdout.length > MAX_EXEC_OUTPUT_BYTES) return undefined;
    const doc: unknown = JSON.parse(new TextDecoder().decode(out.stdout));
    const status = isRecord(doc) && isRecord(doc.status) ? doc.status : {};
    const text = (v: unknown) => typeof v === "string" && v !== "" ? v : undefined;
    const found = {
      token: text(status.token),
      cert: text(status.clientCertificateData),
      key: text(status.clientKeyData),
    };
    return Object.fromEntries(Object.entries(found).filter(([, v]) => v !== undefined));
  } catch {
    return undefined; // Not found, killed at the deadline, or not JSON.
  }
}

/** The slow, complete path: `loadKubeConfig` and `resolveAccess` of mod/kube/client.ts. */
async function viaClientNode(
  env: Env,
  options: QuickAccessOptions,
  deadline: number,
): Promise<QuickAccess | undefined> {
  const work = (async () => {
    const { loadKubeConfig, resolveAccess } = await import("../kube/client.ts");
    const loaded = loadKubeConfig({
      env,
      ...(options.kubeconfig !== undefined ? { kubeconfig: options.kubeconfig } : {}),
      ...(options.context !== undefined ? { context: options.context } : {}),
      ...(options.as !== undefined ? { as: options.as } : {}),
    });
    return { access: await resolveAccess(loaded.kubeConfig), namespace: loaded.namespace };
  })();
  let timer: ReturnType<typeof setTimeout> | undefined;
  const late = new Promise<undefined>((done) => {
    timer = setTimeout(() => done(undefined), Math.max(0, deadline - Date.now()));
  });
  try {
    return await Promise.race([work.catch(() => undefined), late]);
  } finally {
    clearTimeout(timer);
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}
