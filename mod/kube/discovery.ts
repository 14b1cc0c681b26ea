/**
 * Finding the traffic-manager through the Kubernetes API: its Service, a
 * Ready pod behind it, its gRPC port, and the CA in its TLS Secret. Plain
 * REST through {@linkcode KubeApi}, so the daemon needs no Kubernetes client
 * library for it.
 *
 * @module
 */

import { DEFAULT_MANAGER_PORT } from "../rpc/service.ts";
import type { KubeApi } from "./api.ts";
import { MANAGER_NAME, TLS_SECRET_NAME } from "./manifests.ts";

/** What the client needs to reach the manager. */
export interface ManagerLocation {
  namespace: string;
  pod: string;
  podIP: string;
  port: number;
  /** The CA certificate (PEM) from the Secret. */
  caPem: string;
  /** The manager's version, from its pod's labels, if it has one. */
  version?: string;
}

/** A discovery failure a person can act on. */
export class DiscoveryError extends Error {
  /** What to do about it. */
  readonly hint: string;
  /**
   * @param message what happened
   * @param hint what to do
   * @param options the cause
   */
  constructor(message: string, hint: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "DiscoveryError";
    this.hint = hint;
  }
}

function statusOf(error: unknown): number | undefined {
  const e = error as { code?: unknown; statusCode?: unknown; response?: { statusCode?: unknown } };
  const code = e?.code ?? e?.statusCode ?? e?.response?.statusCode;
  return typeof code === "number" ? code : undefined;
}

/** The first line of an error and of its causes ("fetch failed: connect ECONNREFUSED …"). */
function describeCause(error: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = error, depth = 0; e && depth < 4; depth++) {
    const line = String((e as Error)?.message ?? e).split("\n")[0]!;
    if (line && !parts.includes(line)) parts.push(line);
    e = (e as { cause?: unknown })?.cause;
  }
  return parts.join(": ");
}

function gerund(doing: string): string {
  const forms: Record<string, string> = { read: "reading", list: "listing" };
  return doing.replace(/^(\w+)/, (verb) => forms[verb] ?? verb);
}

function apiError(
  error: unknown,
  doing: string,
  server: string,
  namespace: string,
): DiscoveryError {
  const status = statusOf(error);
  const whileDoing = gerund(doing);
  const text = describeCause(error);
  if (status === 401) {
    return new DiscoveryError(
      `the API server at "${server}" did not accept the credentials while ${whileDoing}`,
      "Log in again (your token may have expired) or check the kubeconfig's user.",
      { cause: error },
    );
  }
  if (status === 403) {
    return new DiscoveryError(
      `not allowed to ${doing} in namespace "${namespace}"`,
      `Ask a cluster admin for read access to the traffic-manager's objects in "${namespace}".`,
      { cause: error },
    );
  }
  if (status === undefined) {
    return new DiscoveryError(
      `cannot reach the API server at "${server}" while ${whileDoing}: ${text}`,
      "Check the kubeconfig's server address and that the cluster is up (kubectl get ns).",
      { cause: error },
    );
  }
  return new DiscoveryError(
    `the API server answered ${status} while ${doing}: ${text}`,
    "Run the command again with --debug and check the API server's log.",
    { cause: error },
  );
}

/** The parts of the API objects discovery reads. */
interface Service {
  spec?: {
    selector?: Record<string, string>;
    ports?: Array<{ name?: string; port?: number; targetPort?: number | string }>;
  };
}
interface Pod {
  metadata?: { name?: string; labels?: Record<string, string>; deletionTimestamp?: string };
  spec?: { containers?: Array<{ ports?: Array<{ name?: string; containerPort: number }> }> };
  status?: {
    phase?: string;
    podIP?: string;
    conditions?: Array<{ type: string; status: string }>;
  };
}
interface Secret {
  data?: Record<string, string>;
}

function isReady(pod: Pod): boolean {
  return pod.status?.phase === "Running" &&
    (pod.status?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True") &&
    !pod.metadata?.deletionTimestamp;
}

/**
 * Opens (and closes) a TCP connection to the API server's address, so that
 * an unreachable server fails within `timeoutMs` with its address in the
 * message, instead of after the kernel's connect time-out (two minutes) deep
 * inside a client library.
 *
 * @param server the API server's URL (`https://host:port`)
 * @param timeoutMs how long to wait for the connection; default 10 s
 * @throws {DiscoveryError} when it cannot be reached in time
 */
export async function reachApiServer(server: string, timeoutMs = 10_000): Promise<void> {
  let url: URL;
  try {
    url = new URL(server);
  } catch (cause) {
    throw new DiscoveryError(
      `the kubeconfig's server address "${server}" is not a URL`,
      "Fix the cluster's server field in the kubeconfig (e.g. https://host:6443).",
      { cause },
    );
  }
  const hostname = url.hostname.replace(/^\[|\]$/g, "");
  const port = Number(url.port || (url.protocol === "http:" ? 80 : 443));
  let timer: ReturnType<typeof setTimeout> | undefined;
  const attempt = Deno.connect({ hostname, port });
  try {
    const conn = await Promise.race([
      attempt,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no answer within ${Math.round(timeoutMs / 1000)} s`)),
          timeoutMs,
        );
      }),
    ]);
    conn.close();
  } catch (error) {
    attempt.then((c) => c.close(), () => {});
    throw new DiscoveryError(
      `cannot reach the API server at "${server}": ${describeCause(error)}`,
      "Check the kubeconfig's server address, your network or VPN, and that the cluster is up (kubectl get ns).",
      { cause: error },
    );
  } finally {
    clearTimeout(timer);
  }
}

/**
 * Asks the API server whether this user may port-forward to pods in
 * `namespace` (a SelfSubjectAccessReview, what `kubectl auth can-i` sends),
 * so that a missing permission is named before anything else fails on it.
 *
 * @param api the API server, as the user
 * @param namespace the manager's namespace
 * @returns the answer, or undefined when the server could not say
 */
export async function mayPortForward(
  api: KubeApi,
  namespace: string,
): Promise<boolean | undefined> {
  try {
    const review = await api.post<{ status?: { allowed?: boolean } }>(
      "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
      {
        apiVersion: "authorization.k8s.io/v1",
        kind: "SelfSubjectAccessReview",
        spec: {
          resourceAttributes: {
            namespace,
            verb: "create",
            resource: "pods",
            subresource: "portforward",
          },
        },
      },
    );
    return review?.status?.allowed;
  } catch {
    return undefined; // Not allowed to ask, or an old server: the port-forward itself will tell.
  }
}

/**
 * Finds the manager in `namespace`.
 *
 * @param api the API server, as the user
 * @param namespace the manager's namespace
 * @returns where it is and its CA
 * @throws {DiscoveryError} when it is not installed, has no ready pod, may not be
 *   port-forwarded to, or the API refuses
 */
export async function discoverManager(api: KubeApi, namespace: string): Promise<ManagerLocation> {
  const server = api.server;
  const ns = `/api/v1/namespaces/${encodeURIComponent(namespace)}`;
  let service: Service;
  try {
    service = await api.get<Service>(`${ns}/services/${MANAGER_NAME}`);
  } catch (error) {
    if (statusOf(error) === 404) {
      throw new DiscoveryError(
        `the traffic-manager is not installed in namespace "${namespace}"`,
        "Run `vif install` (or pass --manager-namespace if it lives elsewhere).",
        { cause: error },
      );
    }
    throw apiError(error, "read the traffic-manager's Service", server, namespace);
  }
  const selector = service.spec?.selector ?? {};
  const labelSelector = Object.entries(selector).map(([k, v]) => `${k}=${v}`).join(",");
  const svcPort = service.spec?.ports?.find((p) => p.name === "grpc") ?? service.spec?.ports?.[0];
  let pods: { items: Pod[] };
  try {
    pods = await api.get<{ items: Pod[] }>(
      `${ns}/pods?labelSelector=${encodeURIComponent(labelSelector)}`,
    );
    pods.items ??= [];
  } catch (error) {
    throw apiError(error, "list the traffic-manager's pods", server, namespace);
  }
  const pod = pods.items.find(isReady);
  if (!pod?.metadata?.name || !pod.status?.podIP) {
    throw new DiscoveryError(
      `the traffic-manager in namespace "${namespace}" has no ready pod (${pods.items.length} found)`,
      `Check it with: kubectl -n ${namespace} get pods -l ${
        labelSelector || "app=traffic-manager"
      }`,
    );
  }
  const target = svcPort?.targetPort;
  let port = typeof target === "number" ? target : svcPort?.port ?? DEFAULT_MANAGER_PORT;
  if (typeof target === "string") {
    for (const c of pod.spec?.containers ?? []) {
      const named = c.ports?.find((p) => p.name === target);
      if (named) port = named.containerPort;
    }
  }
  if (await mayPortForward(api, namespace) === false) {
    throw new DiscoveryError(
      `not allowed to port-forward to pods in namespace "${namespace}"`,
      `Ask a cluster admin for "create" on "pods/portforward" in "${namespace}" ` +
        `(check with: kubectl auth can-i create pods/portforward -n ${namespace}).`,
    );
  }
  let secret: Secret;
  try {
    secret = await api.get<Secret>(`${ns}/secrets/${TLS_SECRET_NAME}`);
  } catch (error) {
    if (statusOf(error) === 404) {
      throw new DiscoveryError(
        `the traffic-manager's TLS secret "${TLS_SECRET_NAME}" is missing in "${namespace}"`,
        "Run `vif install` again: it recreates the secret.",
        { cause: error },
      );
    }
    throw apiError(error, `read the secret "${TLS_SECRET_NAME}"`, server, namespace);
  }
  const ca = secret.data?.["ca.crt"];
  if (!ca) {
    throw new DiscoveryError(
      `the secret "${namespace}/${TLS_SECRET_NAME}" has no ca.crt`,
      "Run `vif install --rotate-tls` to make new TLS material.",
    );
  }
  const version = pod.metadata.labels?.["app.kubernetes.io/version"];
  return {
    namespace,
    pod: pod.metadata.name,
    podIP: pod.status.podIP,
    port,
    caPem: new TextDecoder().decode(Uint8Array.from(atob(ca), (c) => c.charCodeAt(0))),
    ...(version ? { version } : {}),
  };
}
