/**
 * The cluster's part of `vif gather-logs`, read through the API server with
 * the user's own credentials: the traffic-manager's Deployment and pods (as
 * JSON, without `managedFields`), its container's log (and the run before a
 * restart), and the logs of the traffic-agents (pods with a `vif-agent`
 * container) in the namespaces the user may list pods in. Secrets are never
 * asked for. Everything is bounded: the lines and bytes of each log, the
 * pods looked at, the agents read, and the time the whole takes.
 *
 * A failure is a line in {@linkcode ClusterGathering.errors} and the rest
 * goes on; an API server that does not answer at all, or refuses the
 * credentials (401), ends it at once.
 *
 * @module
 */

import { type ApiAccess, kubeApi, KubeApiError } from "../kube/api.ts";
import { AGENT_CONTAINER } from "../kube/agent_config.ts";
import { MANAGER_NAME, managerSelector } from "../kube/manifests.ts";
import { readPodLog } from "../kube/pod_logs.ts";
import type { NameKind } from "./anonymize.ts";

/** One file of the archive, before it is written. */
export interface GatheredFile {
  /** Its path under the archive's folder. */
  path: string;
  /** A JSON document (written indented). */
  json?: unknown;
  /** Or a text. */
  text?: string;
  /**
   * Identifies nobody (vif's and Deno's versions), so `--anonymize` leaves it
   * as it is; its secrets would still be redacted.
   */
  plain?: boolean;
}

/** Options of {@linkcode gatherCluster}. */
export interface GatherClusterOptions {
  /** The manager's namespace. */
  managerNamespace: string;
  /**
   * Where to look for agents when the user may not list pods in every
   * namespace (the connected namespace, the intercepts', the context's).
   */
  namespaces: readonly string[];
  /** Also list the namespaces' names (to anonymize them wherever they occur). */
  listNamespaces?: boolean;
  /** The most agents whose log is read. Default 20. */
  maxAgents?: number;
  /** The most pods looked at to find agents. Default 5000. */
  maxPods?: number;
  /** The last lines of the manager's log. Default 10,000. */
  managerTailLines?: number;
  /** The most bytes of each of the manager's logs. Default 4 MiB. */
  managerLimitBytes?: number;
  /** The last lines of each agent's log. Default 2,000. */
  agentTailLines?: number;
  /** The most bytes of each agent's log. Default 1 MiB. */
  agentLimitBytes?: number;
  /** How long the whole may take, in ms; what is left then is skipped. Default 90 s. */
  deadlineMs?: number;
  /** The clock, in ms. */
  now?: () => number;
}

/** What {@linkcode gatherCluster} found. */
export interface ClusterGathering {
  /** The files, under `cluster/`. */
  files: GatheredFile[];
  /** What failed, one line each. */
  errors: string[];
  /** The names seen (pods, namespaces, nodes, workloads…), to anonymize them. */
  names: Array<[string, NameKind]>;
  /** One line per part for the summary (`the manager's log (2 pods)`). */
  collected: string[];
}

/** The fields of an object's `metadata` read here. */
export interface ObjectMetaView {
  /** `metadata.name`. */
  name?: string;
  /** `metadata.namespace`. */
  namespace?: string;
  /** `metadata.labels`. */
  labels?: Record<string, string>;
  /** `metadata.annotations`. */
  annotations?: Record<string, string>;
  /** `metadata.ownerReferences`: the owners' kinds and names. */
  ownerReferences?: Array<{ kind?: string; name?: string }>;
  /** `metadata.creationTimestamp`. */
  creationTimestamp?: string;
  /** `metadata.managedFields`, which the archive leaves out. */
  managedFields?: unknown;
}

/** The fields of a pod's `containerStatuses[]` read here. */
export interface ContainerStatusView {
  /** The container's name. */
  name: string;
  /** Whether it is ready. */
  ready?: boolean;
  /** How often it was restarted. */
  restartCount?: number;
  /** Its image. */
  image?: string;
  /** Its state now (`running`, `waiting`, `terminated`). */
  state?: Record<string, unknown>;
  /** The state of the run before (`terminated` after a restart). */
  lastState?: { terminated?: unknown } & Record<string, unknown>;
}

/** The fields of a Pod read here. */
export interface PodView {
  /** Its metadata. */
  metadata: ObjectMetaView;
  /** Where it runs and what it runs. */
  spec?: {
    nodeName?: string;
    serviceAccountName?: string;
    containers?: Array<{ name: string; image?: string }>;
    initContainers?: Array<{ name: string; image?: string }>;
  };
  /** How it fares. */
  status?: {
    phase?: string;
    podIP?: string;
    conditions?: Array<{ type: string; status: string; reason?: string }>;
    containerStatuses?: ContainerStatusView[];
    initContainerStatuses?: ContainerStatusView[];
  };
}

interface List<T> {
  items?: T[];
  metadata?: { continue?: string };
}

/** The API server did not answer at all, or refused who is asking: nothing more is asked. */
class Unreachable extends Error {}

/** The time is up: what is left is skipped. */
class OutOfTime extends Error {}

/**
 * Reads the manager's objects and logs and the agents' logs.
 *
 * @param access the API server and the user's credentials
 * @param options where and how much
 * @returns the files, the failures, the names seen
 * @example
 * ```ts ignore
 * const { files, errors } = await gatherCluster(access, { managerNamespace: "vif-system", namespaces: ["default"] });
 * ```
 */
export async function gatherCluster(
  access: ApiAccess,
  options: GatherClusterOptions,
): Promise<ClusterGathering> {
  const now = options.now ?? Date.now;
  const deadline = now() + (options.deadlineMs ?? 90_000);
  const api = kubeApi(access);
  const out: ClusterGathering = { files: [], errors: [], names: [], collected: [] };
  const ns = options.managerNamespace;
  const note = (what: string, error: unknown) => {
    if (error instanceof KubeApiError && error.statusCode === undefined) {
      throw new Unreachable(`cannot reach the API server ${access.server}: ${error.message}`, {
        cause: error,
      });
    }
    if (error instanceof KubeApiError && error.statusCode === 401) {
      throw new Unreachable(
        `the API server ${access.server} refused the credentials: ${error.message}`,
        { cause: error },
      );
    }
    if (error instanceof OutOfTime) throw error;
    out.errors.push(`${what}: ${errorText(error)}`);
  };
  const checkTime = () => {
    if (now() > deadline) {
      throw new OutOfTime(
        `gave up after ${
          Math.round((options.deadlineMs ?? 90_000) / 1000)
        } s; the rest is left out`,
      );
    }
  };
  const get = <T>(path: string) => {
    checkTime();
    return api.get<T>(path);
  };
  const log = async (
    pod: PodView,
    container: string,
    file: string,
    bounds: { tailLines: number; limitBytes: number },
    previous: boolean,
  ) => {
    checkTime();
    try {
      const r = await readPodLog(
        access,
        { namespace: pod.metadata.namespace ?? "", name: pod.metadata.name ?? "" },
        { container, ...bounds, ...(previous ? { previous: true } : {}) },
      );
      out.files.push({
        path: file,
        text: r.text + (r.truncated ? `\n[vif: cut at ${bounds.limitBytes} bytes]\n` : ""),
      });
      return true;
    } catch (error) {
      note(
        `the ${
          previous ? "previous " : ""
        }log of container "${container}" of pod ${pod.metadata.namespace}/${pod.metadata.name}`,
        error,
      );
      return false;
    }
  };

  try {
    out.names.push([ns, "namespace"]);
    // The manager: its Deployment, its pods, their logs.
    try {
      const d = await get<{ metadata: ObjectMetaView }>(
        `/apis/apps/v1/namespaces/${ns}/deployments/${MANAGER_NAME}`,
      );
      out.files.push({ path: "cluster/manager/deployment.json", json: cleaned(d) });
      out.collected.push("the manager's Deployment");
    } catch (error) {
      note(`the manager's Deployment in namespace "${ns}"`, error);
    }
    let managerPods: PodView[] = [];
    try {
      const selector = Object.entries(managerSelector()).map(([k, v]) => `${k}=${v}`).join(",");
      const list = await get<List<PodView>>(
        `/api/v1/namespaces/${ns}/pods?labelSelector=${encodeURIComponent(selector)}&limit=10`,
      );
      managerPods = sortPods(list.items ?? []).slice(0, 5);
      if (managerPods.length === 0) out.errors.push(`no traffic-manager pod in namespace "${ns}"`);
    } catch (error) {
      note(`the manager's pods in namespace "${ns}"`, error);
    }
    let managerLogs = 0;
    for (const pod of managerPods) {
      const name = safe(pod.metadata.name);
      out.names.push(...namesOf(pod));
      out.files.push({ path: `cluster/manager/pod-${name}.json`, json: cleaned(pod) });
      for (const c of pod.spec?.containers ?? []) {
        const bounds = {
          tailLines: options.managerTailLines ?? 10_000,
          limitBytes: options.managerLimitBytes ?? 4 << 20,
        };
        const base = `cluster/manager/${name}.${safe(c.name)}`;
        if (await log(pod, c.name, `${base}.log`, bounds, false)) managerLogs++;
        if (restarted(pod, c.name)) await log(pod, c.name, `${base}.previous.log`, bounds, true);
      }
    }
    if (managerPods.length > 0) {
      out.collected.push(
        `the manager's pod${managerPods.length === 1 ? "" : "s"}${
          managerLogs > 0 ? " and log" : ""
        }`,
      );
    }

    // The agents: pods with the agent's container, wherever the user may list pods.
    const scan = await scanPods(get, options.namespaces, options.maxPods ?? 5000);
    for (const e of scan.errors) note(e.what, e.error);
    if (scan.cut) {
      out.errors.push(
        `looked for traffic-agents in the first ${scan.pods.length} pods only; some may be left out`,
      );
    }
    for (const p of scan.pods) out.names.push(...namesOf(p));
    const agents = sortPods(
      scan.pods.filter((p) => (p.spec?.containers ?? []).some((c) => c.name === AGENT_CONTAINER)),
    );
    const max = options.maxAgents ?? 20;
    if (agents.length > max) {
      out.errors.push(
        `${agents.length} pods have a traffic-agent; the logs of ${max} are included`,
      );
    }
    let agentLogs = 0;
    for (const pod of agents.slice(0, max)) {
      const dir = `cluster/agents/${safe(pod.metadata.namespace)}`;
      const name = safe(pod.metadata.name);
      out.files.push({ path: `${dir}/pod-${name}.json`, json: podSummary(pod) });
      const bounds = {
        tailLines: options.agentTailLines ?? 2000,
        limitBytes: options.agentLimitBytes ?? 1 << 20,
      };
      if (await log(pod, AGENT_CONTAINER, `${dir}/${name}.${AGENT_CONTAINER}.log`, bounds, false)) {
        agentLogs++;
      }
      if (restarted(pod, AGENT_CONTAINER)) {
        await log(
          pod,
          AGENT_CONTAINER,
          `${dir}/${name}.${AGENT_CONTAINER}.previous.log`,
          bounds,
          true,
        );
      }
    }
    if (agentLogs > 0) out.collected.push(`${agentLogs} agent log${agentLogs === 1 ? "" : "s"}`);

    if (options.listNamespaces) {
      try {
        const list = await get<List<{ metadata: ObjectMetaView }>>("/api/v1/namespaces?limit=1000");
        for (const n of list.items ?? []) out.names.push([n.metadata.name ?? "", "namespace"]);
      } catch (error) {
        note("the namespaces' names (to anonymize them)", error);
      }
    }
  } catch (error) {
    if (!(error instanceof Unreachable) && !(error instanceof OutOfTime)) throw error;
    out.errors.push(error.message);
  }
  return out;
}

/** Lists pods everywhere, or in `namespaces` when the user may not; at most `max`. */
async function scanPods(
  get: <T>(path: string) => Promise<T>,
  namespaces: readonly string[],
  max: number,
): Promise<{ pods: PodView[]; cut: boolean; errors: Array<{ what: string; error: unknown }> }> {
  const pods: PodView[] = [];
  const errors: Array<{ what: string; error: unknown }> = [];
  let cut = false;
  const list = async (base: string) => {
    let token: string | undefined;
    do {
      const page = await get<List<PodView>>(
        `${base}?limit=500${token ? `&continue=${encodeURIComponent(token)}` : ""}`,
      );
      for (const p of page.items ?? []) {
        if (pods.length >= max) {
          cut = true;
          return;
        }
        pods.push(p);
      }
      token = page.metadata?.continue || undefined;
      if (token && pods.length >= max) cut = true;
    } while (token && !cut);
  };
  try {
    await list("/api/v1/pods");
    return { pods, cut, errors };
  } catch (error) {
    if (!(error instanceof KubeApiError && error.statusCode === 403)) {
      errors.push({ what: "the pods of every namespace", error });
      return { pods, cut, errors };
    }
  }
  // Not allowed everywhere: the namespaces the user works in.
  for (const ns of [...new Set(namespaces)].filter((n) => n !== "")) {
    if (cut) break;
    try {
      await list(`/api/v1/namespaces/${encodeURIComponent(ns)}/pods`);
    } catch (error) {
      errors.push({ what: `the pods of namespace "${ns}"`, error });
    }
  }
  return { pods, cut, errors };
}

/**
 * The names a pod holds, with what they name: its own, its namespace, its
 * node, its owners, its containers, its service account.
 *
 * @param p the pod
 * @returns the names
 */
export function namesOf(p: PodView): Array<[string, NameKind]> {
  const out: Array<[string, NameKind]> = [];
  const m = p.metadata ?? {};
  if (m.namespace) out.push([m.namespace, "namespace"]);
  // The workload before the pod: a pod named after it is then replaced whole
  // and the workload's name inside it too.
  for (const o of m.ownerReferences ?? []) {
    if (!o.name) continue;
    if (o.kind === "ReplicaSet") {
      const hash = m.labels?.["pod-template-hash"];
      if (hash && o.name.endsWith(`-${hash}`)) {
        out.push([o.name.slice(0, -hash.length - 1), "workload"]);
      }
    }
    out.push([o.name, "workload"]);
  }
  if (m.name) out.push([m.name, "pod"]);
  if (p.spec?.nodeName) out.push([p.spec.nodeName, "node"]);
  if (p.spec?.serviceAccountName) out.push([p.spec.serviceAccountName, "serviceaccount"]);
  for (const c of [...p.spec?.containers ?? [], ...p.spec?.initContainers ?? []]) {
    out.push([c.name, "container"]);
  }
  return out;
}

/**
 * An object as the archive holds it: without `managedFields` and kubectl's
 * `last-applied-configuration` (a second copy of the spec).
 *
 * @param o the object
 * @returns a copy
 */
export function cleaned<T extends { metadata: ObjectMetaView }>(o: T): T {
  const copy = structuredClone(o);
  delete copy.metadata.managedFields;
  if (copy.metadata.annotations) {
    delete copy.metadata.annotations["kubectl.kubernetes.io/last-applied-configuration"];
  }
  return copy;
}

/**
 * What the archive keeps of an agent's pod: where it runs and how its
 * containers fare, not its spec (the agent's container carries the app's
 * environment, which may hold secrets).
 *
 * @param pod the pod
 * @returns the summary
 */
export function podSummary(pod: PodView): unknown {
  const m = pod.metadata;
  const st = pod.status ?? {};
  const container = (s: ContainerStatusView) => ({
    name: s.name,
    image: s.image,
    ready: s.ready,
    restartCount: s.restartCount,
    state: s.state,
    lastState: s.lastState,
  });
  return {
    metadata: {
      name: m.name,
      namespace: m.namespace,
      labels: m.labels,
      ownerReferences: (m.ownerReferences ?? []).map((o) => ({ kind: o.kind, name: o.name })),
      creationTimestamp: m.creationTimestamp,
    },
    spec: {
      nodeName: pod.spec?.nodeName,
      containers: (pod.spec?.containers ?? []).map((c) => ({ name: c.name, image: c.image })),
    },
    status: {
      phase: st.phase,
      podIP: st.podIP,
      conditions: st.conditions?.map((c) => ({ type: c.type, status: c.status, reason: c.reason })),
      containerStatuses: st.containerStatuses?.map(container),
      initContainerStatuses: st.initContainerStatuses?.map(container),
    },
  };
}

function restarted(pod: PodView, container: string): boolean {
  const s = (pod.status?.containerStatuses ?? []).find((c) => c.name === container);
  return (s?.restartCount ?? 0) > 0 || s?.lastState?.terminated !== undefined;
}

function sortPods(pods: PodView[]): PodView[] {
  const key = (p: PodView) => `${p.metadata.namespace ?? ""}/${p.metadata.name ?? ""}`;
  return [...pods].sort((a, b) => key(a).localeCompare(key(b)));
}

/** A name as a path part: Kubernetes names already are; anything else is made one. */
function safe(name: string | undefined): string {
  const n = (name ?? "").replace(/[^A-Za-z0-9._-]/g, "_").replace(/^\.+/, "_");
  return n === "" ? "_" : n.slice(0, 200);
}

function errorText(error: unknown): string {
  return (error instanceof Error ? error.message : String(error)).split("\n", 1)[0] ?? "";
}
