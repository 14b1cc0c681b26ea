/**
 * Kubernetes from inside the cluster: the client configuration of a process
 * that runs in a pod (the traffic-manager, the traffic-agent), from its
 * service account, with a token read again whenever the kubelet rotates it;
 * or from a kubeconfig file, for development and tests.
 *
 * @module
 */

import { type Cluster, type Context, KubeConfig, type User } from "@kubernetes/client-node";
import { KubeError, type KubeErrorOptions } from "./errors.ts";

/** Which part of the access could not be set up. */
export type KubeAccessFailure = "kubeconfig" | "not-in-cluster" | "no-service-account";

/**
 * In-cluster access could not be set up; {@linkcode KubeAccessError.failure}
 * says which part, so that each role can say what to do in its own terms.
 */
export class KubeAccessError extends KubeError {
  /** What could not be set up. */
  readonly failure: KubeAccessFailure;

  /**
   * @param failure which part failed
   * @param message what happened
   * @param options the hint and the cause
   */
  constructor(failure: KubeAccessFailure, message: string, options: KubeErrorOptions) {
    super(message, options);
    this.name = "KubeAccessError";
    this.failure = failure;
  }
}

/** Where Kubernetes mounts a pod's service-account token, CA and namespace. */
export const SERVICE_ACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";

/** How a process in the cluster (the manager, the agent) reaches the API server. */
export interface KubeAccessOptions {
  /** A kubeconfig file (out of a cluster: tests, development). Wins over {@linkcode KubeAccessOptions.inCluster}. */
  kubeconfig?: string;
  /** Use the pod's service account (the default when no kubeconfig is given). */
  inCluster?: boolean;
  /** Where the service account's `token`, `ca.crt` and `namespace` are. Default {@linkcode SERVICE_ACCOUNT_DIR}. */
  serviceAccountDir?: string;
  /** Reads `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT`. Default `Deno.env.get`. */
  env?: (name: string) => string | undefined;
}

/** What {@linkcode loadKubeAccess} made. */
export interface KubeAccess {
  /** The client configuration. */
  kubeConfig: KubeConfig;
  /** The API server's URL. */
  server: string;
  /** The namespace to work in: the service account's, the context's, else `default`. */
  namespace: string;
  /** Where the configuration came from, for logs: `in-cluster` or `kubeconfig FILE`. */
  source: string;
}

/**
 * Tells whether this process runs in a pod with a service account: the
 * `KUBERNETES_SERVICE_HOST` and `KUBERNETES_SERVICE_PORT` variables are set
 * and the token, CA and namespace files exist.
 *
 * @param options The service-account directory and the environment.
 * @returns Whether in-cluster configuration can be loaded.
 *
 * @example
 * ```ts
 * import { inClusterConfigAvailable } from "./in_cluster.ts";
 *
 * if (inClusterConfigAvailable({ env: () => undefined })) throw new Error("no variables, no cluster");
 * ```
 */
export function inClusterConfigAvailable(
  options: Pick<KubeAccessOptions, "serviceAccountDir" | "env"> = {},
): boolean {
  const env = options.env ?? ((name: string) => Deno.env.get(name));
  if (!env("KUBERNETES_SERVICE_HOST") || !env("KUBERNETES_SERVICE_PORT")) return false;
  const dir = options.serviceAccountDir ?? SERVICE_ACCOUNT_DIR;
  return ["token", "ca.crt", "namespace"].every((name) => {
    try {
      return Deno.statSync(`${dir}/${name}`).isFile;
    } catch {
      return false;
    }
  });
}

/**
 * Loads the client configuration: the kubeconfig file when one is given,
 * else the pod's service account, built by hand (client-node's
 * `loadFromCluster` only takes a prefix to the standard path) with a token
 * that is read again whenever its file changes, as projected tokens rotate.
 *
 * @param options The kubeconfig, or the service-account directory and environment.
 * @returns The configuration, the server, the namespace.
 * @throws {KubeAccessError} When the kubeconfig cannot be read, or the service account is missing.
 *
 * @example
 * ```ts ignore
 * import { loadKubeAccess } from "./in_cluster.ts";
 *
 * const access = loadKubeAccess({ inCluster: true });
 * console.log(access.server, access.namespace);
 * ```
 */
export function loadKubeAccess(options: KubeAccessOptions = {}): KubeAccess {
  return options.kubeconfig !== undefined
    ? fromKubeconfig(options.kubeconfig)
    : fromServiceAccount(options);
}

function fromKubeconfig(path: string): KubeAccess {
  const kubeConfig = new KubeConfig();
  try {
    kubeConfig.loadFromFile(path);
  } catch (cause) {
    throw new KubeAccessError(
      "kubeconfig",
      `Cannot read kubeconfig "${path}": ${(cause as Error).message ?? cause}`,
      { hint: "Pass --kubeconfig a readable kubeconfig file.", cause },
    );
  }
  const cluster = kubeConfig.getCurrentCluster();
  if (cluster === null || kubeConfig.getCurrentUser() === null) {
    throw new KubeAccessError(
      "kubeconfig",
      `Cannot use kubeconfig "${path}": its current context names no cluster or user`,
      { hint: "Set current-context in the file to a context with a cluster and a user." },
    );
  }
  const context = kubeConfig.getContextObject(kubeConfig.getCurrentContext());
  return {
    kubeConfig,
    server: cluster.server,
    namespace: context?.namespace || "default",
    source: `kubeconfig ${path}`,
  };
}

function fromServiceAccount(options: KubeAccessOptions): KubeAccess {
  const env = options.env ?? ((name: string) => Deno.env.get(name));
  const dir = (options.serviceAccountDir ?? SERVICE_ACCOUNT_DIR).replace(/\/+$/, "");
  const host = env("KUBERNETES_SERVICE_HOST")?.trim();
  const port = env("KUBERNETES_SERVICE_PORT")?.trim();
  if (!host || !port) {
    throw new KubeAccessError(
      "not-in-cluster",
      "Cannot reach the Kubernetes API: KUBERNETES_SERVICE_HOST or KUBERNETES_SERVICE_PORT is not set",
      { hint: "Run it in a pod, or pass --kubeconfig FILE." },
    );
  }
  let namespace: string;
  try {
    for (const name of ["token", "ca.crt"]) Deno.statSync(`${dir}/${name}`);
    namespace = Deno.readTextFileSync(`${dir}/namespace`).trim();
  } catch (cause) {
    throw new KubeAccessError(
      "no-service-account",
      `Cannot read the service account in "${dir}": ${(cause as Error).message}`,
      { hint: "Mount the service-account token (automountServiceAccountToken: true).", cause },
    );
  }
  const server = `https://${host.includes(":") ? `[${host}]` : host}:${port}`;
  const cluster: Cluster = {
    name: "in-cluster",
    server,
    caFile: `${dir}/ca.crt`,
    skipTLSVerify: false,
  };
  const user: User = {
    name: "service-account",
    authProvider: { name: TOKEN_FILE_PROVIDER, config: { path: `${dir}/token` } },
  };
  const context: Context = {
    name: "in-cluster",
    cluster: cluster.name,
    user: user.name,
    namespace,
  };
  const kubeConfig = new KubeConfig();
  kubeConfig.addAuthenticator(new TokenFileAuthenticator());
  kubeConfig.loadFromOptions({
    clusters: [cluster],
    users: [user],
    contexts: [context],
    currentContext: context.name,
  });
  return { kubeConfig, server, namespace: namespace || "default", source: "in-cluster" };
}

const TOKEN_FILE_PROVIDER = "vif-token-file";

/**
 * Sends the token of a file, read again whenever the file changes (its
 * inode, size or modification time: kubelet swaps a projected token in with
 * a symlink). client-node's own `tokenFile` provider reads it every minute.
 */
class TokenFileAuthenticator {
  #token = "";
  #stamp = "";

  isAuthProvider(user: User): boolean {
    return (user.authProvider as { name?: string } | undefined)?.name === TOKEN_FILE_PROVIDER;
  }

  async applyAuthentication(
    user: User,
    opts: { headers?: Record<string, unknown> },
  ): Promise<void> {
    const path = (user.authProvider as { config: { path: string } }).config.path;
    const info = await Deno.stat(path);
    const stamp = `${info.ino}:${info.size}:${info.mtime?.getTime()}`;
    if (stamp !== this.#stamp) {
      this.#token = (await Deno.readTextFile(path)).trim();
      this.#stamp = stamp;
    }
    opts.headers ??= {};
    opts.headers["Authorization"] = `Bearer ${this.#token}`;
  }
}
