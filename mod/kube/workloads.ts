/**
 * The workloads `vif intercept` works on, as the user's credentials see them:
 * finding one by name ({@linkcode findWorkload}: a Deployment, else a
 * StatefulSet, else a ReplicaSet no Deployment owns), the Services that
 * select its pods and the container ports they reach
 * ({@linkcode servicePortsFor}, {@linkcode portTargets}), and choosing the
 * one a user names ({@linkcode resolveServicePort}).
 *
 * A Service port reaches a container port as the endpoints controller
 * resolves it: a named `targetPort` names the first container port of that
 * name and protocol in `spec.containers`; a numeric one is the pod's port of
 * that number, whichever container declares it (or none).
 *
 * Every call goes through a {@linkcode WorkloadApi} (the user's credentials),
 * and every failure is a {@linkcode KubeError} of two lines: what was refused
 * or is missing, and what to do.
 *
 * @module
 */

import type {
  V1Container,
  V1LabelSelector,
  V1ObjectMeta,
  V1PodTemplateSpec,
  V1Service,
} from "@kubernetes/client-node";
import { type ApiAccess, type KubeApi, kubeApi, KubeApiError } from "./api.ts";
import type { PortTakeover } from "./agent_config.ts";
import { KubeError } from "./errors.ts";

/** The kinds of workload an agent can be injected into. */
export type WorkloadKind = "Deployment" | "StatefulSet" | "ReplicaSet";

/** Names a workload. */
export interface WorkloadRef {
  /** Its namespace. */
  namespace: string;
  /** Its kind. */
  kind: WorkloadKind;
  /** Its name. */
  name: string;
}

/** A pod template as the API server returns it. */
export type PodTemplate = V1PodTemplateSpec;

/** A Deployment, StatefulSet or ReplicaSet as the API server returns it (fields vif reads are typed). */
export interface Workload {
  /** `apps/v1`. */
  apiVersion: string;
  /** The kind. */
  kind: WorkloadKind;
  /** Name, namespace, uid, resourceVersion, generation, annotations, owners. */
  metadata: V1ObjectMeta & { name: string; namespace: string };
  /** The fields all three kinds share, and what else the server sent. */
  spec: {
    replicas?: number;
    selector: V1LabelSelector;
    template: PodTemplate;
    paused?: boolean;
    [field: string]: unknown;
  };
  /** The controller's view: generations, replica counts, revisions, conditions. */
  status?: WorkloadStatus;
}

/** The status fields of the three kinds that tell how a rollout goes. */
export interface WorkloadStatus {
  observedGeneration?: number;
  replicas?: number;
  updatedReplicas?: number;
  readyReplicas?: number;
  availableReplicas?: number;
  /** StatefulSet: the revision new pods get (their `controller-revision-hash` label). */
  updateRevision?: string;
  conditions?: { type: string; status: string; reason?: string; message?: string }[];
}

/**
 * The calls the injector makes with the user's credentials: those of
 * {@linkcode KubeApi}, with its JSON merge patch, and DELETE.
 */
export interface WorkloadApi extends KubeApi {
  /**
   * PATCHes an object with a JSON merge patch (RFC 7386).
   *
   * @throws {KubeApiError} for an error status or no answer
   */
  patch<T>(path: string, body: unknown): Promise<T>;
  /**
   * DELETEs a path and parses the JSON answer.
   *
   * @throws {KubeApiError} for an error status or no answer
   */
  delete<T>(path: string): Promise<T>;
}

/**
 * Makes a {@linkcode WorkloadApi} for `access`: {@linkcode kubeApi}'s calls,
 * and DELETE beside them.
 *
 * @param access the API server and the user's credentials
 * @param options how long one request may take, in ms (default 10 s)
 * @returns the client
 * @throws {TypeError} when the server is not an http(s) URL
 * @example
 * ```ts ignore
 * import { workloadApi } from "./workloads.ts";
 * const api = workloadApi(access);
 * await api.patch("/apis/apps/v1/namespaces/default/deployments/web", { spec: { paused: false } });
 * ```
 */
export function workloadApi(access: ApiAccess, options: { timeoutMs?: number } = {}): WorkloadApi {
  const base = kubeApi(access, options);
  const { patch, delete: remove } = base;
  if (patch === undefined || remove === undefined) {
    throw new TypeError("Cannot change workloads: the API client has no PATCH or DELETE");
  }
  return { ...base, patch, delete: remove };
}

/** The plural resource of each kind, in the `apps/v1` API. */
export const WORKLOAD_RESOURCES: Record<WorkloadKind, string> = {
  Deployment: "deployments",
  StatefulSet: "statefulsets",
  ReplicaSet: "replicasets",
};

/** The order {@linkcode findWorkload} looks in. */
const SEARCH_ORDER: WorkloadKind[] = ["Deployment", "StatefulSet", "ReplicaSet"];

/** `deploy/web`, `sts/db`: the kinds a name may be prefixed with, as kubectl spells them. */
const KIND_PREFIXES: Record<string, WorkloadKind> = {
  deployment: "Deployment",
  deployments: "Deployment",
  deploy: "Deployment",
  statefulset: "StatefulSet",
  statefulsets: "StatefulSet",
  sts: "StatefulSet",
  replicaset: "ReplicaSet",
  replicasets: "ReplicaSet",
  rs: "ReplicaSet",
};

const DNS_SUBDOMAIN =
  /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/**
 * The API path of a workload, or of its kind's collection in a namespace (no
 * name), or in all namespaces (no namespace either).
 *
 * @param ref the kind, and the namespace and name when given
 * @returns the path
 *
 * @example
 * ```ts
 * import { workloadPath } from "./workloads.ts";
 *
 * const path = workloadPath({ namespace: "shop", kind: "StatefulSet", name: "db" });
 * if (path !== "/apis/apps/v1/namespaces/shop/statefulsets/db") throw new Error(path);
 * ```
 */
export function workloadPath(
  ref: { kind: WorkloadKind; namespace?: string; name?: string },
): string {
  const ns = ref.namespace ? `/namespaces/${encodeURIComponent(ref.namespace)}` : "";
  const name = ref.name ? `/${encodeURIComponent(ref.name)}` : "";
  return `/apis/apps/v1${ns}/${WORKLOAD_RESOURCES[ref.kind]}${name}`;
}

/** What a request was, to name it in a {@linkcode KubeError}. */
export interface RequestInfo {
  /** The verb as RBAC names it: `get`, `list`, `patch`, `delete`. */
  verb: string;
  /** The plural resource: `deployments`, `pods`. */
  resource: string;
  /** The object's name, for a request about one object. */
  name?: string;
  /** The namespace, for a namespaced request. */
  namespace?: string;
}

/**
 * A failed request as a {@linkcode KubeError} of two lines: what was refused
 * (`you may not patch deployments "web" in namespace "default"`) and what to
 * do about it.
 *
 * @param error what the request threw
 * @param req what the request was
 * @param server the API server's URL, for errors without an answer
 * @returns the error to show; a {@linkcode KubeError} is returned as it is
 *
 * @example
 * ```ts
 * import { KubeApiError } from "./api.ts";
 * import { requestFailure } from "./workloads.ts";
 *
 * const error = requestFailure(new KubeApiError("HTTP 403: forbidden", 403), {
 *   verb: "patch", resource: "deployments", name: "web", namespace: "default",
 * }, "https://198.19.200.1:6443");
 * if (error.message !== 'you may not patch deployments "web" in namespace "default"') {
 *   throw new Error(error.message);
 * }
 * ```
 */
export function requestFailure(error: unknown, req: RequestInfo, server: string): KubeError {
  if (error instanceof KubeError) return error;
  const status = error instanceof KubeApiError ? error.statusCode : undefined;
  const detail = error instanceof Error ? error.message.replace(/^HTTP \d+: /, "") : String(error);
  const what = `${req.resource}${req.name ? ` "${req.name}"` : ""}`;
  const where = req.namespace ? ` in namespace "${req.namespace}"` : " in any namespace";
  const nsFlag = req.namespace ? ` -n ${req.namespace}` : " --all-namespaces";
  if (status === undefined) {
    return new KubeError(`cannot reach the API server at ${server}: ${detail}`, {
      hint:
        'Check that the cluster is up and that the context points at it ("kubectl cluster-info").',
      cause: error,
    });
  }
  if (status === 401) {
    return new KubeError(`the API server at ${server} refused your credentials`, {
      hint: "Log in to the cluster again (the token or certificate may have expired).",
      cause: error,
      status,
    });
  }
  if (status === 403 && /being terminated/.test(detail)) {
    return new KubeError(`namespace "${req.namespace}" is being deleted`, {
      hint: "Use another namespace.",
      cause: error,
      status,
    });
  }
  if (status === 403) {
    return new KubeError(`you may not ${req.verb} ${what}${where}`, {
      hint: `Ask a cluster admin for vif's intercept permissions in that namespace; ` +
        `check with "kubectl auth can-i ${req.verb} ${req.resource}${nsFlag}".`,
      cause: error,
      status,
    });
  }
  if (status === 400 || status === 422) {
    return new KubeError(`the API server rejected the ${req.verb} of ${what}${where}: ${detail}`, {
      hint: "An admission policy of the cluster may forbid it; " +
        'otherwise this is a bug in vif (run with "--debug" and report it).',
      cause: error,
      status,
    });
  }
  return new KubeError(`cannot ${req.verb} ${what}${where}: ${detail}`, {
    hint: 'Check the cluster\'s health ("kubectl get --raw /readyz") and try again.',
    cause: error,
    status,
  });
}

/**
 * Runs one request, turning a failure into a {@linkcode KubeError}.
 *
 * @param api the client, for its server
 * @param req what the request is
 * @param run the request
 * @returns its answer
 * @throws {KubeError} when it fails
 */
export async function request<T>(
  api: KubeApi,
  req: RequestInfo,
  run: () => Promise<T>,
): Promise<T> {
  try {
    return await run();
  } catch (error) {
    throw requestFailure(error, req, api.server);
  }
}

function statusOf(error: unknown): number | undefined {
  if (error instanceof KubeApiError) return error.statusCode;
  if (error instanceof KubeError) return error.status;
  return undefined;
}

/**
 * Reads one workload.
 *
 * @param api the user's client
 * @param ref which
 * @returns the workload, or undefined when there is none
 * @throws {KubeError} when the request fails otherwise (403: two lines)
 */
export async function readWorkload(api: KubeApi, ref: WorkloadRef): Promise<Workload | undefined> {
  try {
    const found = await api.get<Workload>(workloadPath(ref));
    return checkWorkload(found, ref.kind);
  } catch (error) {
    if (statusOf(error) === 404) return undefined;
    throw requestFailure(error, {
      verb: "get",
      resource: WORKLOAD_RESOURCES[ref.kind],
      name: ref.name,
      namespace: ref.namespace,
    }, api.server);
  }
}

/** A workload from the API, with what vif relies on checked. */
function checkWorkload(value: unknown, kind: WorkloadKind): Workload {
  const w = value as Partial<Workload> | undefined;
  const template = w?.spec?.template;
  if (
    typeof w !== "object" || w === null || typeof w.metadata?.name !== "string" ||
    typeof w.metadata.namespace !== "string" || typeof template !== "object" ||
    template === null || !Array.isArray(template.spec?.containers)
  ) {
    throw new KubeError(`the API server sent a ${kind} without a pod template`, {
      hint: 'This is a bug in vif or the API server (run with "--debug" and report it).',
    });
  }
  return { ...w, kind } as Workload;
}

/**
 * Finds what to intercept: a Deployment named `name`, else a StatefulSet,
 * else a ReplicaSet (one a Deployment owns is refused: its Deployment is
 * what to intercept). `deploy/NAME`, `sts/NAME`, `rs/NAME` (and kubectl's
 * other spellings) look for that kind only.
 *
 * @param api the user's client
 * @param namespace the namespace
 * @param name the workload's name, optionally `KIND/NAME`
 * @returns the workload
 * @throws {KubeError} when none is found (the hint says `vif list -n NS`),
 *   the ReplicaSet belongs to a Deployment, or a request fails
 *
 * @example
 * ```ts ignore
 * import { findWorkload, workloadApi } from "./workloads.ts";
 * const web = await findWorkload(workloadApi(access), "default", "web");
 * console.log(web.kind); // "Deployment"
 * ```
 */
export async function findWorkload(
  api: KubeApi,
  namespace: string,
  name: string,
): Promise<Workload> {
  let kinds = SEARCH_ORDER;
  let bare = name;
  const slash = name.indexOf("/");
  if (slash >= 0) {
    const kind = KIND_PREFIXES[name.slice(0, slash).toLowerCase()];
    if (kind === undefined) {
      throw new KubeError(
        `cannot intercept "${name}": "${name.slice(0, slash)}" is not a kind vif intercepts`,
        {
          hint:
            "Name a Deployment, a StatefulSet or a ReplicaSet (deploy/NAME, sts/NAME, rs/NAME).",
        },
      );
    }
    kinds = [kind];
    bare = name.slice(slash + 1);
  }
  if (!DNS_SUBDOMAIN.test(bare)) {
    throw new KubeError(`"${bare}" is not a Kubernetes object name`, {
      hint: `See what there is with "vif list -n ${namespace}".`,
    });
  }
  for (const kind of kinds) {
    const found = await readWorkload(api, { namespace, kind, name: bare });
    if (found === undefined) continue;
    const owner = found.metadata.ownerReferences?.find((o) => o.controller);
    if (kind === "ReplicaSet" && owner?.kind === "Deployment") {
      throw new KubeError(
        `replicaset "${bare}" in namespace "${namespace}" belongs to deployment "${owner.name}"`,
        { hint: `Intercept the Deployment: "vif intercept ${owner.name}".` },
      );
    }
    return found;
  }
  const what = kinds.map((k) => k.toLowerCase()).join(", ").replace(/, ([^,]*)$/, " or $1");
  throw new KubeError(`no ${what} "${bare}" in namespace "${namespace}"`, {
    hint: `See what there is with "vif list -n ${namespace}".`,
    status: 404,
  });
}

/** A Service port and the container port of the workload it reaches. */
export interface PortTarget {
  /** The Service's name. */
  service: string;
  /** The Service port's name, if it has one. */
  portName?: string;
  /** The Service port. */
  port: number;
  /** `TCP`, `UDP` or `SCTP`. */
  protocol: string;
  /** The Service port's `targetPort`: a name or a number. */
  targetPort: string | number;
  /** The container it reaches; undefined when a number no container declares. */
  container?: string;
  /** The container port it reaches; undefined when a name no container has. */
  containerPort?: number;
  /** The container port's name, if it has one. */
  containerPortName?: string;
  /** How the agent takes it: a named `targetPort` by name, a numeric one by a redirect. */
  takeover: PortTakeover;
}

/** A target whose container and container port are known: the port to intercept. */
export type ResolvedTarget = PortTarget & { container: string; containerPort: number };

/** What {@linkcode servicePortsFor} found. */
export interface ServicePorts {
  /** Every Service of the namespace (the plan needs them all for the environment's names). */
  services: V1Service[];
  /** The ports of the Services that select the workload's pods. */
  targets: PortTarget[];
}

/** The most Services read from one namespace. */
const MAX_SERVICES = 5000;

/**
 * Lists a namespace's Services, following pages.
 *
 * @param api the user's client
 * @param namespace the namespace
 * @returns the Services
 * @throws {KubeError} when the list fails or the namespace holds more than 5000
 */
export async function listServices(api: KubeApi, namespace: string): Promise<V1Service[]> {
  const base = `/api/v1/namespaces/${encodeURIComponent(namespace)}/services?limit=500`;
  const out: V1Service[] = [];
  let next: string | undefined;
  do {
    const path = next ? `${base}&continue=${encodeURIComponent(next)}` : base;
    const page = await request(
      api,
      { verb: "list", resource: "services", namespace },
      () => api.get<{ items?: V1Service[]; metadata?: { continue?: string } }>(path),
    );
    out.push(...(page.items ?? []));
    if (out.length > MAX_SERVICES) {
      throw new KubeError(`namespace "${namespace}" has more than ${MAX_SERVICES} services`, {
        hint:
          "vif cannot tell which of them select the workload; intercept in a smaller namespace.",
      });
    }
    next = page.metadata?.continue || undefined;
  } while (next);
  return out;
}

/**
 * The Services of `namespace` and the ports of those that select
 * `workload`'s pods. For a workload that carries the agent, the ports are
 * resolved against the template it had before (`original`), since the
 * agent's container holds the port names then.
 *
 * @param api the user's client
 * @param namespace the namespace
 * @param workload the workload
 * @param original the template to resolve against, when not the workload's own
 * @returns the Services, and the selecting ones' ports with their containers
 * @throws {KubeError} when the Services cannot be listed
 */
export async function servicePortsFor(
  api: KubeApi,
  namespace: string,
  workload: Workload,
  original?: PodTemplate,
): Promise<ServicePorts> {
  const services = await listServices(api, namespace);
  return { services, targets: portTargets(original ?? workload.spec.template, services) };
}

/**
 * Whether a Service selects pods of a template: it has a selector, every
 * label of which the template carries. A Service without a selector (its
 * endpoints written by hand) selects none, and neither does an ExternalName.
 *
 * @param service the Service
 * @param template the pod template
 * @returns true when it selects them
 */
export function selects(service: V1Service, template: PodTemplate): boolean {
  const selector = service.spec?.selector ?? {};
  const labels = template.metadata?.labels ?? {};
  if (service.spec?.type === "ExternalName") return false;
  const entries = Object.entries(selector);
  return entries.length > 0 && entries.every(([k, v]) => labels[k] === v);
}

/**
 * The ports of the Services that select a template's pods, each resolved to
 * the container port it reaches, as the endpoints controller resolves it.
 * Pure.
 *
 * @param template the pod template
 * @param services the namespace's Services
 * @returns one entry per Service port, in the Services' order
 *
 * @example
 * ```ts
 * import { portTargets } from "./workloads.ts";
 *
 * const [target] = portTargets(
 *   { metadata: { labels: { app: "web" } }, spec: { containers: [
 *     { name: "web", image: "nginx", ports: [{ name: "http", containerPort: 8080 }] },
 *   ] } },
 *   [{ metadata: { name: "web" }, spec: { selector: { app: "web" }, ports: [
 *     { name: "http", port: 80, targetPort: "http" },
 *   ] } }],
 * );
 * if (target?.containerPort !== 8080 || target.takeover !== "name") throw new Error();
 * ```
 */
export function portTargets(template: PodTemplate, services: readonly V1Service[]): PortTarget[] {
  const containers = template.spec?.containers ?? [];
  const out: PortTarget[] = [];
  for (const service of services) {
    if (!selects(service, template)) continue;
    for (const p of service.spec?.ports ?? []) {
      const protocol = p.protocol ?? "TCP";
      const targetPort: string | number = p.targetPort ?? p.port;
      const numeric = typeof targetPort === "number" || /^\d+$/.test(targetPort);
      const base = {
        service: service.metadata?.name ?? "",
        ...(p.name ? { portName: p.name } : {}),
        port: p.port,
        protocol,
        targetPort: numeric ? Number(targetPort) : targetPort,
        takeover: (numeric ? "redirect" : "name") as PortTakeover,
      };
      const found = findContainerPort(
        containers,
        numeric ? Number(targetPort) : targetPort,
        protocol,
      );
      out.push(
        found
          ? {
            ...base,
            container: found.container.name,
            containerPort: found.containerPort,
            ...(found.name ? { containerPortName: found.name } : {}),
          }
          : numeric
          ? { ...base, containerPort: Number(targetPort) }
          : base,
      );
    }
  }
  return out;
}

/** The first container port of that name (or number) and protocol, as `podutil.FindPort` looks. */
function findContainerPort(
  containers: readonly V1Container[],
  port: string | number,
  protocol: string,
): { container: V1Container; containerPort: number; name?: string } | undefined {
  for (const container of containers) {
    for (const p of container.ports ?? []) {
      if ((p.protocol ?? "TCP") !== protocol) continue;
      if (typeof port === "string" ? p.name === port : p.containerPort === port) {
        return { container, containerPort: p.containerPort, ...(p.name ? { name: p.name } : {}) };
      }
    }
  }
  return undefined;
}

/**
 * How a target is shown in a list of choices:
 * `service "web" port "http" (80 → container "web" port 8080)`.
 *
 * @param t the target
 * @returns the text
 */
export function describeTarget(t: PortTarget): string {
  const port = t.portName ? `port "${t.portName}" (${t.port}` : `port ${t.port} (`;
  const sep = t.portName ? " → " : "→ ";
  const to = t.container !== undefined
    ? `container "${t.container}" port ${t.containerPort}`
    : t.containerPort !== undefined
    ? `pod port ${t.containerPort}, declared by no container`
    : `"${t.targetPort}", which no container has`;
  const proto = t.protocol === "TCP" ? "" : `/${t.protocol}`;
  return `service "${t.service}" ${port}${proto}${sep}${to})`;
}

/** Options of {@linkcode resolveServicePort}. */
export interface ResolvePortOptions {
  /** The workload, for messages. */
  workload?: { kind: WorkloadKind; name: string; namespace: string };
  /**
   * The containers of the pod template: a numeric port that no container
   * declares goes to the only one, or to {@linkcode ResolvePortOptions.container}.
   */
  containers?: readonly string[];
  /** The app container, when the port does not say which it is. */
  container?: string;
}

/**
 * Chooses the port a user names (`SERVICE_PORT` of `--port LOCAL:SERVICE_PORT`)
 * among the targets: a Service port's name or number (or, failing that, a
 * container port's), optional when the Services reach one container port
 * only. Only TCP ports can be intercepted. Pure.
 *
 * @param targets the workload's Service ports ({@linkcode portTargets})
 * @param wanted the name or number the user gave, if any
 * @param options the workload and its containers, for messages and numeric ports
 * @returns the target, with its container and container port known
 * @throws {KubeError} listing the choices when none or several match, the
 *   match is UDP or SCTP only, or no container can be told
 *
 * @example
 * ```ts
 * import { resolveServicePort } from "./workloads.ts";
 *
 * const t = resolveServicePort([
 *   { service: "web", portName: "http", port: 80, protocol: "TCP", targetPort: "http",
 *     container: "web", containerPort: 8080, takeover: "name" },
 * ], undefined);
 * if (t.containerPort !== 8080) throw new Error();
 * ```
 */
export function resolveServicePort(
  targets: readonly PortTarget[],
  wanted: string | undefined,
  options: ResolvePortOptions = {},
): ResolvedTarget {
  const w = options.workload;
  const of = w ? ` of ${w.kind.toLowerCase()} "${w.name}" in namespace "${w.namespace}"` : "";
  const choices = (list: readonly PortTarget[]) =>
    `Choose one of: ${list.map(describeTarget).join("; ")}.`;
  if (targets.length === 0) {
    throw new KubeError(`no service selects the pods${of}`, {
      hint: "An intercept takes a Service's port: create a Service that selects the pods" +
        (w
          ? ` ("kubectl expose ${w.kind.toLowerCase()} ${w.name} -n ${w.namespace} --port PORT")`
          : "") +
        ".",
    });
  }
  let matches: PortTarget[];
  const trimmed = wanted?.trim();
  if (trimmed === undefined || trimmed === "") matches = [...targets];
  else if (/^\d+$/.test(trimmed)) {
    const n = Number(trimmed);
    matches = targets.filter((t) => t.port === n);
    if (matches.length === 0) matches = targets.filter((t) => t.containerPort === n);
  } else {
    matches = targets.filter((t) => t.portName === trimmed);
    if (matches.length === 0) matches = targets.filter((t) => t.containerPortName === trimmed);
  }
  if (matches.length === 0) {
    throw new KubeError(`no service port "${trimmed}"${of}`, { hint: choices(targets) });
  }
  const tcp = matches.filter((t) => t.protocol === "TCP");
  if (tcp.length === 0) {
    const tcpAll = targets.filter((t) => t.protocol === "TCP");
    throw new KubeError(
      `${trimmed ? `service port "${trimmed}"` : "the service port"}${of} is ${
        [...new Set(matches.map((t) => t.protocol))].join(" and ")
      } only: vif intercepts TCP`,
      { hint: tcpAll.length > 0 ? choices(tcpAll) : "Intercept a workload that serves TCP." },
    );
  }
  const resolved = tcp.map((t) => withContainer(t, options));
  const distinct = new Map<string, PortTarget>();
  for (const t of resolved) distinct.set(`${t.container}\0${t.containerPort}`, t);
  if (distinct.size > 1) {
    throw new KubeError(
      `${
        trimmed ? `service port "${trimmed}"` : "the services"
      }${of} reach ${distinct.size} container ports`,
      { hint: `Name the port with --port LOCAL:SERVICE_PORT. ${choices(tcp)}` },
    );
  }
  const [chosen] = resolved;
  if (chosen?.container === undefined || chosen.containerPort === undefined) {
    const t = tcp[0]!;
    if (t.containerPort === undefined) {
      throw new KubeError(`${describeTarget(t)} reaches no container${of}`, {
        hint: `No container has a port named "${t.targetPort}"; fix the Service's targetPort.`,
      });
    }
    throw new KubeError(`cannot tell which container serves ${describeTarget(t)}`, {
      hint: `Declare the port in the container's "ports", or name the container (one of: ${
        (options.containers ?? []).map((c) => `"${c}"`).join(", ")
      }).`,
    });
  }
  return chosen as ResolvedTarget;
}

/** A target with its container settled: the declared one, the given one, or the only one. */
function withContainer(t: PortTarget, options: ResolvePortOptions): PortTarget {
  if (t.container !== undefined || t.containerPort === undefined) return t;
  const containers = options.containers ?? [];
  const container = options.container ??
    (containers.length === 1 ? containers[0] : undefined);
  if (container === undefined) return t;
  if (containers.length > 0 && !containers.includes(container)) {
    throw new KubeError(`no container "${container}" in the pod template`, {
      hint: `Name one of: ${containers.map((c) => `"${c}"`).join(", ")}.`,
    });
  }
  return { ...t, container };
}

/**
 * The label selector of a workload as the `labelSelector` query parameter
 * writes it (`app=web,tier in (a,b),!legacy`).
 *
 * @param selector the selector
 * @returns the text (empty for an empty selector)
 *
 * @example
 * ```ts
 * import { selectorText } from "./workloads.ts";
 *
 * const text = selectorText({
 *   matchLabels: { app: "web" },
 *   matchExpressions: [{ key: "tier", operator: "In", values: ["a", "b"] }],
 * });
 * if (text !== "app=web,tier in (a,b)") throw new Error(text);
 * ```
 */
export function selectorText(selector: V1LabelSelector | undefined): string {
  const parts = Object.entries(selector?.matchLabels ?? {}).map(([k, v]) => `${k}=${v}`);
  for (const e of selector?.matchExpressions ?? []) {
    const values = (e.values ?? []).join(",");
    switch (e.operator) {
      case "In":
        parts.push(`${e.key} in (${values})`);
        break;
      case "NotIn":
        parts.push(`${e.key} notin (${values})`);
        break;
      case "Exists":
        parts.push(e.key);
        break;
      case "DoesNotExist":
        parts.push(`!${e.key}`);
        break;
    }
  }
  return parts.join(",");
}
