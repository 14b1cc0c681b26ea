/**
 * Finding the traffic-manager through the Kubernetes API: its Service, a
 * Ready pod behind it, its client port, and its CA from the ConfigMap
 * `traffic-manager-ca` (never from a Secret: users may not read those).
 * Plain REST through {@linkcode KubeApi}, so the daemon needs no Kubernetes
 * client library for it.
 *
 * What a user may do is what the Role `vif-user` grants; when the API server
 * refuses one of its permissions, the error names the verb and resource and
 * the `vif install --grant-user` that grants it, with the user's name as the
 * API server knows it (a SelfSubjectReview, what `kubectl auth whoami` asks)
 * when it says.
 *
 * {@linkcode discoverDirectListener} reads what an admin needs to issue a
 * client certificate for the direct listener.
 *
 * @module
 */

import {
  DEFAULT_DIRECT_PORT,
  DEFAULT_MANAGER_NAMESPACE,
  DEFAULT_MANAGER_PORT,
} from "../rpc/names.ts";
import type { V1Pod } from "@kubernetes/client-node";
import type { KubeApi } from "./api.ts";
import { podProblem } from "./pod_problem.ts";
import { readCaBundle } from "./ca_bundle.ts";
import {
  CA_CONFIGMAP_KEY,
  CA_CONFIGMAP_NAME,
  CLIENT_CA_KEYS,
  CLIENT_CA_SECRET_NAME,
  DIRECT_PORT_NAME,
  GRPC_PORT_NAME,
  MANAGER_NAME,
  USER_ROLE_NAME,
} from "./manifests.ts";
import type { PemKeyPair } from "./pem.ts";

/** What the client needs to reach the manager. */
export interface ManagerLocation {
  namespace: string;
  pod: string;
  podIP: string;
  port: number;
  /** The CA certificate (PEM) from the ConfigMap `traffic-manager-ca`. */
  caPem: string;
  /** The manager's version, from its pod's labels, if it has one. */
  version?: string;
}

/** A discovery failure a person can act on. */
export class DiscoveryError extends Error {
  /** What to do about it. */
  readonly hint: string;
  /**
   * The manager is there but its pod is not ready yet (starting, pulling its
   * image): worth waiting for, unlike the other failures.
   */
  readonly starting: boolean;
  /**
   * @param message what happened
   * @param hint what to do
   * @param options the cause, and whether the manager is only starting
   */
  constructor(message: string, hint: string, options?: ErrorOptions & { starting?: boolean }) {
    super(message, options);
    this.name = "DiscoveryError";
    this.hint = hint;
    this.starting = options?.starting ?? false;
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

/**
 * The hint for a permission of the Role `vif-user` that is missing: the
 * install that grants it, with the user's name when it is known.
 */
function grantCommand(namespace: string, user: string | undefined): string {
  const ns = namespace === DEFAULT_MANAGER_NAMESPACE ? "" : ` --namespace ${namespace}`;
  return `vif install${ns} --grant-user ${user === undefined ? "<you>" : shellWord(user)}`;
}

function grantHint(namespace: string, user: string | undefined): string {
  return `Ask a cluster admin to run \`${grantCommand(namespace, user)}\`, which grants the Role ` +
    `${USER_ROLE_NAME} in "${namespace}".`;
}

/** A user name as one shell word: as it is when it is plain, else in single quotes. */
function shellWord(text: string): string {
  return /^[\w@%+=:,./-]+$/.test(text) ? text : `'${text.replaceAll("'", "'\\''")}'`;
}

/**
 * The user the API server took the request for: from a 403's message
 * (`User "alice" cannot …`), else from a SelfSubjectReview; undefined when
 * neither says (an old server, or not allowed to ask).
 */
async function whoAmI(api: KubeApi, refusal?: unknown): Promise<string | undefined> {
  const said = /User "([^"]{1,256})"/.exec(String((refusal as Error | undefined)?.message))?.[1];
  if (plainName(said)) return said;
  try {
    const review = await api.post<{ status?: { userInfo?: { username?: unknown } } }>(
      "/apis/authentication.k8s.io/v1/selfsubjectreviews",
      { apiVersion: "authentication.k8s.io/v1", kind: "SelfSubjectReview" },
    );
    return plainName(review?.status?.userInfo?.username);
  } catch {
    return undefined;
  }
}

/** `name` when it is a user name fit for a hint (1 to 256 characters, no control character). */
function plainName(name: unknown): string | undefined {
  // deno-lint-ignore no-control-regex
  const control = /[\x00-\x1f\x7f]/;
  return typeof name === "string" && name.length > 0 && name.length <= 256 && !control.test(name)
    ? name
    : undefined;
}

/**
 * The error for a permission of the Role `vif-user` the API server refused:
 * `not allowed to <what> in namespace "<ns>" (<verb> <resource>)`, and the
 * install that grants it.
 */
async function notGranted(
  api: KubeApi,
  namespace: string,
  what: string,
  permission: string,
  refusal?: unknown,
): Promise<DiscoveryError> {
  return new DiscoveryError(
    `not allowed to ${what} in namespace "${namespace}" (${permission})`,
    grantHint(namespace, await whoAmI(api, refusal)),
    refusal === undefined ? undefined : { cause: refusal },
  );
}

/** The parts of the API objects discovery reads. */
interface Service {
  spec?: {
    selector?: Record<string, string>;
    clusterIP?: string;
    ports?: Array<{ name?: string; port?: number; targetPort?: number | string }>;
  };
  status?: { loadBalancer?: { ingress?: Array<{ ip?: string; hostname?: string }> } };
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
interface ConfigMap {
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
 * Asks the API server which of the verbs vif's port-forward needs on
 * `pods/portforward` in `namespace` this user lacks (SelfSubjectAccessReviews,
 * what `kubectl auth can-i` sends), so that a missing permission is named
 * before anything else fails on it. vif's port-forward is a WebSocket, an
 * HTTP GET: API servers authorize it as `get`, and from Kubernetes 1.35 on
 * as `create` too.
 *
 * @param api the API server, as the user
 * @param namespace the manager's namespace
 * @returns the verbs refused (`create`, `get`); empty when all are allowed,
 *   or when the server could not say (the port-forward itself will tell)
 */
export async function portForwardVerbsDenied(api: KubeApi, namespace: string): Promise<string[]> {
  const verbs = ["create", "get"];
  const answers = await Promise.all(verbs.map(async (verb) => {
    try {
      const review = await api.post<{ status?: { allowed?: boolean } }>(
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews",
        {
          apiVersion: "authorization.k8s.io/v1",
          kind: "SelfSubjectAccessReview",
          spec: {
            resourceAttributes: { namespace, verb, resource: "pods", subresource: "portforward" },
          },
        },
      );
      return review?.status?.allowed;
    } catch {
      return undefined; // Not allowed to ask, or an old server.
    }
  }));
  return verbs.filter((_, i) => answers[i] === false);
}

/**
 * Reads the manager's CA certificate from the ConfigMap `traffic-manager-ca`.
 *
 * @param api the API server, as the user
 * @param namespace the manager's namespace
 * @returns the CA certificate (PEM)
 * @throws {DiscoveryError} when the ConfigMap is missing (an install by an
 *   older vif), may not be read, or holds no certificate
 */
export async function readManagerCa(api: KubeApi, namespace: string): Promise<string> {
  const ns = `/api/v1/namespaces/${encodeURIComponent(namespace)}`;
  let configMap: ConfigMap;
  try {
    configMap = await api.get<ConfigMap>(`${ns}/configmaps/${CA_CONFIGMAP_NAME}`);
  } catch (error) {
    if (statusOf(error) === 404) {
      throw new DiscoveryError(
        `the traffic-manager in "${namespace}" was installed by an older vif ` +
          `(no ConfigMap "${CA_CONFIGMAP_NAME}")`,
        "Run `vif install` again to upgrade it.",
        { cause: error },
      );
    }
    if (statusOf(error) === 403) {
      const user = await whoAmI(api, error);
      throw new DiscoveryError(
        `not allowed to read the ConfigMap "${CA_CONFIGMAP_NAME}" in "${namespace}"`,
        `Ask a cluster admin to run \`${grantCommand(namespace, user)}\` ` +
          `(Role ${USER_ROLE_NAME} in ${namespace}).`,
        { cause: error },
      );
    }
    throw apiError(error, `read the ConfigMap "${CA_CONFIGMAP_NAME}"`, api.server, namespace);
  }
  const text = configMap?.data?.[CA_CONFIGMAP_KEY];
  try {
    return readCaBundle(typeof text === "string" ? text : "");
  } catch (cause) {
    throw new DiscoveryError(
      `the ConfigMap "${namespace}/${CA_CONFIGMAP_NAME}" holds no usable CA in ${CA_CONFIGMAP_KEY}: ${
        (cause as Error).message
      }`,
      "Run `vif install` again: it rewrites the ConfigMap.",
      { cause },
    );
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
    throw await serviceError(api, error, namespace);
  }
  const selector = service.spec?.selector ?? {};
  const labelSelector = Object.entries(selector).map(([k, v]) => `${k}=${v}`).join(",");
  const svcPort = service.spec?.ports?.find((p) => p.name === GRPC_PORT_NAME) ??
    service.spec?.ports?.[0];
  let pods: { items: Pod[] };
  try {
    pods = await api.get<{ items: Pod[] }>(
      `${ns}/pods?labelSelector=${encodeURIComponent(labelSelector)}`,
    );
    pods.items ??= [];
  } catch (error) {
    if (statusOf(error) === 403) {
      throw await notGranted(
        api,
        namespace,
        "list the traffic-manager's pods",
        "list pods",
        error,
      );
    }
    throw apiError(error, "list the traffic-manager's pods", server, namespace);
  }
  const pod = pods.items.find(isReady);
  if (!pod?.metadata?.name || !pod.status?.podIP) {
    const live = pods.items.filter((p) => !p.metadata?.deletionTimestamp);
    // What holds the first pod up (an image pull, a crash loop, the scheduler), as kubectl describes it.
    const problem = live.map((p) => podProblem(p as V1Pod)).find((x) => x !== undefined);
    throw new DiscoveryError(
      `the traffic-manager in namespace "${namespace}" has no ready pod (${pods.items.length} found)${
        problem ? `: ${problem.text}` : live.length > 0 ? ": starting" : ""
      }`,
      problem?.hint ??
        `Check it with: kubectl -n ${namespace} get pods -l ${
          labelSelector || "app=traffic-manager"
        }`,
      { starting: live.length > 0 },
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
  const denied = await portForwardVerbsDenied(api, namespace);
  if (denied.length > 0) {
    throw await notGranted(
      api,
      namespace,
      "port-forward to pods",
      `${denied.join(", ")} pods/portforward`,
    );
  }
  const caPem = await readManagerCa(api, namespace);
  const version = pod.metadata.labels?.["app.kubernetes.io/version"];
  return {
    namespace,
    pod: pod.metadata.name,
    podIP: pod.status.podIP,
    port,
    caPem,
    ...(version ? { version } : {}),
  };
}

/** The error for a failed GET of the manager's Service: not installed, not allowed, or else. */
async function serviceError(
  api: KubeApi,
  error: unknown,
  namespace: string,
): Promise<DiscoveryError> {
  if (statusOf(error) === 404) {
    return new DiscoveryError(
      `the traffic-manager is not installed in namespace "${namespace}"`,
      "Run `vif install` (or pass --manager-namespace if it lives elsewhere).",
      { cause: error },
    );
  }
  if (statusOf(error) === 403) {
    return await notGranted(
      api,
      namespace,
      "read the traffic-manager's Service",
      "get services",
      error,
    );
  }
  return apiError(error, "read the traffic-manager's Service", api.server, namespace);
}

/** What an admin needs to issue a client certificate for the direct listener. */
export interface DirectListener {
  /** The manager's namespace. */
  namespace: string;
  /** The manager's CA certificate (PEM), which clients verify it with. */
  caPem: string;
  /** The client CA's certificate and key, which sign client certificates. */
  clientCa: PemKeyPair;
  /** The Service's `direct` port. */
  port: number;
  /** The Service's ClusterIP, if it has one. */
  clusterIP?: string;
  /** The Service's load-balancer address (IP or host name), if it has one. */
  loadBalancer?: string;
}

/**
 * Reads what issuing a client certificate for the direct listener takes: the
 * client CA from its Secret (which only admins may read), the manager's CA
 * from the ConfigMap, and the `direct` port of the Service.
 *
 * @param api the API server, as an admin
 * @param namespace the manager's namespace
 * @returns the CAs and where the listener is
 * @throws {DiscoveryError} when the manager has no direct listener, the
 *   Secret may not be read, or the API refuses
 */
export async function discoverDirectListener(
  api: KubeApi,
  namespace: string,
): Promise<DirectListener> {
  const ns = `/api/v1/namespaces/${encodeURIComponent(namespace)}`;
  const noDirect = (why: string, cause?: unknown) =>
    new DiscoveryError(
      `the traffic-manager in "${namespace}" has no direct listener (${why})`,
      `Install it with \`vif install --direct${
        namespace === DEFAULT_MANAGER_NAMESPACE ? "" : ` --namespace ${namespace}`
      }\`.`,
      cause === undefined ? undefined : { cause },
    );
  let service: Service;
  try {
    service = await api.get<Service>(`${ns}/services/${MANAGER_NAME}`);
  } catch (error) {
    throw await serviceError(api, error, namespace);
  }
  let secret: Secret;
  try {
    secret = await api.get<Secret>(`${ns}/secrets/${CLIENT_CA_SECRET_NAME}`);
  } catch (error) {
    if (statusOf(error) === 404) {
      throw noDirect(`no Secret "${CLIENT_CA_SECRET_NAME}"`, error);
    }
    if (statusOf(error) === 403) {
      throw new DiscoveryError(
        `not allowed to read the Secret "${CLIENT_CA_SECRET_NAME}" in "${namespace}"`,
        `Only an admin who may read Secrets in "${namespace}" can issue client certificates ` +
          `(check with: kubectl auth can-i get secrets -n ${namespace}).`,
        { cause: error },
      );
    }
    throw apiError(error, `read the Secret "${CLIENT_CA_SECRET_NAME}"`, api.server, namespace);
  }
  const pair: Partial<PemKeyPair> = {};
  for (const [field, key] of Object.entries(CLIENT_CA_KEYS) as [keyof PemKeyPair, string][]) {
    const text = decodeSecretValue(secret?.data?.[key]);
    if (text === undefined) {
      throw new DiscoveryError(
        `the Secret "${namespace}/${CLIENT_CA_SECRET_NAME}" has no readable ${key}`,
        "Run `vif install --direct` again: it makes a new client CA when the old one cannot sign.",
      );
    }
    pair[field] = text;
  }
  const directPort = service.spec?.ports?.find((p) => p.name === DIRECT_PORT_NAME);
  if (directPort === undefined) {
    throw noDirect(`its Service has no port "${DIRECT_PORT_NAME}"`);
  }
  const caPem = await readManagerCa(api, namespace);
  const ingress = service.status?.loadBalancer?.ingress?.[0];
  const loadBalancer = ingress?.ip || ingress?.hostname;
  const clusterIP = service.spec?.clusterIP;
  return {
    namespace,
    caPem,
    clientCa: pair as PemKeyPair,
    port: typeof directPort.port === "number" ? directPort.port : DEFAULT_DIRECT_PORT,
    ...(clusterIP && clusterIP !== "None" ? { clusterIP } : {}),
    ...(loadBalancer ? { loadBalancer } : {}),
  };
}

/** A Secret's value as text: base64 of UTF-8, at most 64 KiB; undefined when it is not. */
function decodeSecretValue(value: unknown): string | undefined {
  if (typeof value !== "string" || value.length === 0 || value.length > 65_536) return undefined;
  try {
    const bytes = Uint8Array.from(atob(value), (c) => c.charCodeAt(0));
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
}
