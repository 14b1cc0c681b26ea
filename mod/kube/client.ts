/**
 * Loading a kubeconfig as kubectl does, into a `@kubernetes/client-node`
 * `KubeConfig`: `--kubeconfig FILE`, else the files listed in `KUBECONFIG`
 * (merged, the first definition of a name winning, missing files skipped),
 * else `~/.kube/config`; then `--context`, else the current context. Every
 * way this can fail is a {@linkcode KubeError} with a hint.
 *
 * The environment is passed in (`env`), so tests use temporary kubeconfig
 * files and never read `~/.kube`.
 *
 * @example Load a kubeconfig file and pick a context
 * ```ts ignore
 * import { loadKubeConfig } from "./client.ts";
 *
 * const { kubeConfig, context, server } = loadKubeConfig({ kubeconfig: "./kubeconfig", context: "dev" });
 * console.log(`kube: using context "${context}" at ${server}`);
 * ```
 *
 * @module
 */

import { type Cluster, type Context, KubeConfig, type User } from "@kubernetes/client-node";
import { load as loadYaml } from "js-yaml";
import { delimiter, dirname, resolve } from "node:path";
import { isNamespaceName } from "../net/dns_name.ts";
import type { ApiAccess } from "./api.ts";
import { KubeError } from "./errors.ts";

/** Options of {@linkcode loadKubeConfig}. */
export interface LoadKubeConfigOptions {
  /** A kubeconfig file to use alone (`--kubeconfig`); `KUBECONFIG` and `~/.kube/config` are then not read. */
  kubeconfig?: string;
  /** The context to use (`--context`); the kubeconfig's current context when absent. */
  context?: string;
  /** Reads an environment variable (`KUBECONFIG`, `HOME`). Default: the process's environment. */
  env?: (name: string) => string | undefined;
  /**
   * `--as`: act as this user (the `Impersonate-User` header); the
   * kubeconfig's user must be allowed to `impersonate` it. Replaces the
   * user's own `as`, as kubectl's flag does.
   */
  as?: string;
  /**
   * `--request-timeout`: how long one API request may take, in ms; `0` is no
   * limit. Absent: each caller's own default.
   */
  requestTimeoutMs?: number;
}

/** A kubeconfig ready for API calls. */
export interface LoadedKubeConfig {
  /** The merged kubeconfig, its current context set to {@linkcode LoadedKubeConfig.context}. */
  kubeConfig: KubeConfig;
  /** The context in use. */
  context: string;
  /** The API server's URL. */
  server: string;
  /** The context's namespace, as kubectl uses it when no -n is given; `default` when it names none. */
  namespace: string;
  /** The files it was read from, in order. */
  files: string[];
  /** The user it acts as (`--as`, else the kubeconfig user's `as`), if any. */
  as?: string;
  /** {@linkcode LoadKubeConfigOptions.requestTimeoutMs}, when given. */
  requestTimeoutMs?: number;
}

/**
 * Loads the kubeconfig and picks the context, as kubectl does.
 *
 * @param options The file, the context and the environment.
 * @returns The kubeconfig and what it points at.
 * @throws {KubeError} When no kubeconfig exists, a file cannot be read or
 * parsed, the context does not exist, or it names an undefined cluster or user.
 */
export function loadKubeConfig(options: LoadKubeConfigOptions = {}): LoadedKubeConfig {
  const env = options.env ?? processEnv;
  const files = kubeconfigFiles(options.kubeconfig, env);
  const configs = files.map(readKubeconfig);

  // kubectl's merge: the first file that defines a name wins, and the first
  // current-context set wins.
  const merged = {
    clusters: firstByName(configs.flatMap((c) => c.clusters)),
    users: firstByName(configs.flatMap((c) => c.users)),
    contexts: firstByName(configs.flatMap((c) => c.contexts)),
    currentContext: configs.map((c) => c.currentContext).find((name) => !!name) ?? "",
  };
  const where = files.length === 1 ? `kubeconfig "${files[0]}"` : "kubeconfig";
  const known = merged.contexts.map((c) => `"${c.name}"`).join(", ");
  const choose = merged.contexts.length === 0
    ? `The ${where} defines no context: point KUBECONFIG or --kubeconfig at one that does.`
    : `Use one of: ${known}.`;

  let contextName = options.context;
  if (contextName === undefined || contextName === "") {
    contextName = merged.currentContext;
    if (contextName === "") {
      throw new KubeError(`the ${where} has no current context`, {
        hint: merged.contexts.length === 0
          ? choose
          : `Pass --context NAME (one of: ${known}), or run "kubectl config use-context NAME".`,
      });
    }
  }
  const context = merged.contexts.find((c) => c.name === contextName);
  if (context === undefined) {
    const asked = options.context ? "" : " (its current context)";
    throw new KubeError(`no context "${contextName}" in the ${where}${asked}`, { hint: choose });
  }
  const cluster = merged.clusters.find((c) => c.name === context.cluster);
  if (cluster === undefined) {
    throw new KubeError(
      `context "${context.name}" names cluster "${context.cluster}", which the ${where} does not define`,
      { hint: `Add the cluster to the kubeconfig, or use another context.` },
    );
  }
  if (context.user && !merged.users.some((u) => u.name === context.user)) {
    throw new KubeError(
      `context "${context.name}" names user "${context.user}", which the ${where} does not define`,
      { hint: `Add the user to the kubeconfig, or use another context.` },
    );
  }

  if (options.as !== undefined) checkImpersonation(options.as);
  const users = merged.users.map((u) => {
    if (u.name !== context.user) return u;
    const chosen = readTokenFile(u);
    return options.as === undefined ? chosen : { ...chosen, impersonateUser: options.as };
  });
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromOptions({ ...merged, users, currentContext: context.name });
  if (options.requestTimeoutMs !== undefined) limitRequests(kubeConfig, options.requestTimeoutMs);
  const namespace = context.namespace && isNamespaceName(context.namespace)
    ? context.namespace
    : "default";
  const as = options.as ?? users.find((u) => u.name === context.user)?.impersonateUser ?? undefined;
  return {
    kubeConfig,
    context: context.name,
    server: cluster.server,
    namespace,
    files,
    ...(as ? { as } : {}),
    ...(options.requestTimeoutMs !== undefined
      ? { requestTimeoutMs: options.requestTimeoutMs }
      : {}),
  };
}

/** A user name for `Impersonate-User`: a header value, so one line of printable text. */
function checkImpersonation(name: string): void {
  // deno-lint-ignore no-control-regex
  if (name === "" || name.length > 512 || /[\x00-\x1f\x7f]/.test(name)) {
    throw new KubeError(`cannot act as "${name.slice(0, 64)}": not a user name`, {
      hint: 'Give --as the name the API server knows the user by, e.g. "--as alice@example.com".',
    });
  }
}

/**
 * Gives every request client-node makes with this kubeconfig a deadline, as
 * kubectl's `--request-timeout` does (`0`: none). Requests made through
 * {@linkcode resolveAccess}'s access carry it as `timeoutMs`.
 */
function limitRequests(kubeConfig: KubeConfig, timeoutMs: number): void {
  if (timeoutMs <= 0) return;
  const apply = kubeConfig.applySecurityAuthentication.bind(kubeConfig);
  kubeConfig.applySecurityAuthentication = async (context) => {
    await apply(context);
    context.setSignal(AbortSignal.timeout(timeoutMs));
  };
  REQUEST_TIMEOUTS.set(kubeConfig, timeoutMs);
}

/** The `--request-timeout` of each kubeconfig loaded with one. */
const REQUEST_TIMEOUTS = new WeakMap<KubeConfig, number>();

interface ParsedKubeconfig {
  clusters: Cluster[];
  users: User[];
  contexts: Context[];
  currentContext: string;
}

/** The files to read, in order; the error says which places were looked at. */
function kubeconfigFiles(
  explicit: string | undefined,
  env: (name: string) => string | undefined,
): string[] {
  if (explicit !== undefined && explicit !== "") {
    const path = resolve(explicit);
    if (!isFile(path)) {
      throw new KubeError(`kubeconfig "${explicit}" does not exist`, {
        hint: "Check the path given to --kubeconfig.",
      });
    }
    return [path];
  }
  const list = env("KUBECONFIG");
  if (list !== undefined && list.trim() !== "") {
    const listed = list.split(delimiter).filter((name) => name.trim() !== "");
    const present = listed.map((name) => resolve(name)).filter(isFile);
    if (present.length === 0) {
      throw new KubeError(
        `no kubeconfig: none of the files in KUBECONFIG exists (${
          listed.map((n) => `"${n}"`).join(", ")
        })`,
        { hint: "Set KUBECONFIG to existing files, or pass --kubeconfig FILE." },
      );
    }
    return present;
  }
  const home = env("HOME") ?? env("USERPROFILE");
  const fallback = home ? resolve(home, ".kube", "config") : undefined;
  if (fallback === undefined || !isFile(fallback)) {
    throw new KubeError(
      `no kubeconfig: ${
        fallback ? `"${fallback}" does not exist` : "HOME is not set"
      } and KUBECONFIG is not set`,
      { hint: "Set KUBECONFIG or pass --kubeconfig FILE." },
    );
  }
  return [fallback];
}

/** Reads and parses one kubeconfig file; relative paths in it are made absolute to its folder. */
function readKubeconfig(path: string): ParsedKubeconfig {
  let text: string;
  try {
    text = Deno.readTextFileSync(path);
  } catch (cause) {
    throw new KubeError(`kubeconfig "${path}" cannot be read: ${errorText(cause)}`, {
      hint: "Check the file's permissions, or point KUBECONFIG or --kubeconfig at another one.",
      cause,
    });
  }
  if (text.trim() === "") return { clusters: [], users: [], contexts: [], currentContext: "" };
  const config = new KubeConfig();
  try {
    config.loadFromString(text);
  } catch (cause) {
    throw new KubeError(`kubeconfig "${path}" does not parse: ${parseProblem(cause)}`, {
      hint: "Fix the file, or point KUBECONFIG or --kubeconfig at another one.",
      cause,
    });
  }
  config.makePathsAbsolute(dirname(path));
  return {
    clusters: config.clusters,
    users: withTokenFiles(config.users, text, dirname(path)),
    contexts: config.contexts,
    currentContext: config.currentContext ?? "",
  };
}

/**
 * kubectl's `tokenFile` (client-go reads it; client-node looks for
 * `token-file` instead, so a user with only `tokenFile` would send no token):
 * read here, relative to the kubeconfig's directory, trimmed as client-go
 * trims it. `token` wins when both are set, as in client-go.
 */
function withTokenFiles(users: User[], text: string, dir: string): User[] {
  let raw: unknown;
  try {
    raw = loadYaml(text);
  } catch {
    return users; // client-node parsed it; nothing more to find.
  }
  const listed = (raw as { users?: unknown })?.users;
  if (!Array.isArray(listed)) return users;
  const files = new Map<string, string>();
  for (const entry of listed) {
    const name = (entry as { name?: unknown })?.name;
    const file = (entry as { user?: { tokenFile?: unknown } })?.user?.tokenFile;
    if (typeof name === "string" && typeof file === "string" && file !== "") files.set(name, file);
  }
  if (files.size === 0) return users;
  return users.map((u) => {
    const file = files.get(u.name);
    return file === undefined || u.token ? u : { ...u, [TOKEN_FILE]: resolve(dir, file) };
  });
}

/** Where a user's `tokenFile` is, until the context that uses it is chosen. */
const TOKEN_FILE = Symbol("tokenFile");

/** The chosen user's `tokenFile` read (only that user's: another's missing file is no error). */
function readTokenFile(user: User): User {
  const path = (user as User & { [TOKEN_FILE]?: string })[TOKEN_FILE];
  if (path === undefined) return user;
  let token: string;
  try {
    const bytes = Deno.readFileSync(path);
    if (bytes.length > 64 * 1024) throw new Error("larger than 64 KiB");
    token = new TextDecoder().decode(bytes).trim();
  } catch (cause) {
    throw new KubeError(
      `user "${user.name}"'s token file "${path}" cannot be read: ${errorText(cause)}`,
      { hint: "Check the file (the kubeconfig's tokenFile), or log in again.", cause },
    );
  }
  return { ...user, token };
}

/**
 * What is wrong with a kubeconfig's text: js-yaml's reason and 1-based line
 * (`YAMLException.mark.line` counts from 0), or client-node's complaint about
 * an entry (`clusters[0].cluster.server is missing`).
 */
function parseProblem(error: unknown): string {
  const yaml = error as { name?: string; reason?: string; mark?: { line?: number } };
  if (yaml?.name === "YAMLException" && typeof yaml.mark?.line === "number") {
    return `${yaml.reason ?? "not YAML"} at line ${yaml.mark.line + 1}`;
  }
  if (error instanceof TypeError) {
    return "not a kubeconfig (expected a mapping of clusters, users, contexts)";
  }
  return errorText(error);
}

function firstByName<T extends { name: string }>(items: T[]): T[] {
  const seen = new Set<string>();
  return items.filter((item) => !seen.has(item.name) && seen.add(item.name));
}

function isFile(path: string): boolean {
  try {
    return Deno.statSync(path).isFile;
  } catch {
    return false;
  }
}

function processEnv(name: string): string | undefined {
  try {
    return Deno.env.get(name);
  } catch {
    return undefined; // No --allow-env: behave as if unset.
  }
}

function errorText(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  return text.split("\n", 1)[0] ?? text;
}

/**
 * Resolves what requests to the chosen context's API server need: its CA,
 * the client certificate, and the headers of the user's credentials (a
 * token, a token file, an exec credential plugin's token, basic auth), as
 * `@kubernetes/client-node` applies them. An exec plugin runs now, as the
 * calling user.
 *
 * @param kubeConfig a kubeconfig with its context chosen ({@linkcode loadKubeConfig})
 * @returns the access; it holds credentials
 * @throws {KubeError} when the credentials cannot be had (an exec plugin failed)
 */
export async function resolveAccess(kubeConfig: KubeConfig): Promise<ApiAccess> {
  const cluster = kubeConfig.getCurrentCluster();
  const opts: {
    ca?: Uint8Array | string;
    cert?: Uint8Array | string;
    key?: Uint8Array | string;
    rejectUnauthorized?: boolean;
    servername?: string;
    auth?: string;
    headers?: Record<string, string | number | string[]>;
  } = {};
  try {
    await kubeConfig.applyToHTTPSOptions(opts as Parameters<KubeConfig["applyToHTTPSOptions"]>[0]);
  } catch (cause) {
    throw new KubeError(
      `cannot get credentials for context "${kubeConfig.getCurrentContext()}": ${errorText(cause)}`,
      {
        hint: "Check the kubeconfig's user (its exec plugin or token file), or log in again.",
        cause,
      },
    );
  }
  const pem = (v: Uint8Array | string | undefined) =>
    v === undefined ? undefined : typeof v === "string" ? v : new TextDecoder().decode(v);
  const headers: Record<string, string> = {};
  for (const [k, v] of Object.entries(opts.headers ?? {})) {
    headers[k] = Array.isArray(v) ? v.join(", ") : String(v);
  }
  if (opts.auth) headers.Authorization = `Basic ${btoa(opts.auth)}`;
  const access: ApiAccess = { server: cluster?.server ?? "", headers };
  const ca = pem(opts.ca), cert = pem(opts.cert), key = pem(opts.key);
  if (ca) access.caPem = ca;
  if (cert) access.certPem = cert;
  if (key) access.keyPem = key;
  if (opts.rejectUnauthorized === false) access.insecure = true;
  if (opts.servername) access.serverName = opts.servername;
  const timeoutMs = REQUEST_TIMEOUTS.get(kubeConfig);
  if (timeoutMs !== undefined) access.timeoutMs = timeoutMs;
  return access;
}
