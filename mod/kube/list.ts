/**
 * What a namespace offers a connected workstation: its services (ClusterIP or
 * headless, ports, ready endpoints) and its workloads (Deployments, and pods
 * no controller owns) with their pods' addresses. `vif list` prints it.
 *
 * @module
 */

import { AppsV1Api, CoreV1Api, type KubeConfig, type V1Pod } from "@kubernetes/client-node";
import { explainApiError } from "./install.ts";
import { AGENT_ANNOTATION } from "./agent_config.ts";

/** A service port. */
export interface ListedPort {
  name?: string;
  port: number;
  protocol: string;
}

/** A service. */
export interface ListedService {
  name: string;
  /** `ClusterIP`, `NodePort`, `LoadBalancer`, `ExternalName`, or `Headless` (ClusterIP None). */
  type: string;
  /** The ClusterIP, `None` for a headless service. */
  clusterIP: string;
  ports: ListedPort[];
  /** Ready endpoint addresses. */
  ready: number;
}

/** A pod of a workload. */
export interface ListedPod {
  name: string;
  ip?: string;
  ready: boolean;
}

/** A workload. */
export interface ListedWorkload {
  /** `Deployment`, or `Pod` for a pod no controller owns. */
  kind: string;
  name: string;
  /** Wanted replicas (1 for a pod). */
  desired: number;
  pods: ListedPod[];
  /** The vif version whose traffic-agent the workload carries; absent without one. */
  agent?: string;
  /** Its intercepts, when `vif list` could ask a connected daemon. */
  intercepts?: Array<{ port: number; holder: string }>;
}

/** What {@linkcode listNamespace} returns: stable, for `--output json`. */
export interface NamespaceListing {
  namespace: string;
  services: ListedService[];
  workloads: ListedWorkload[];
}

function podReady(p: V1Pod): boolean {
  return (p.status?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True");
}

function matches(selector: Record<string, string>, labels: Record<string, string> = {}): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

/**
 * Lists a namespace's services and workloads.
 *
 * @param kc the kubeconfig, context chosen
 * @param namespace the namespace
 * @returns the listing, sorted by name
 * @throws {KubeError} when the API server refuses or cannot be reached
 */
export async function listNamespace(kc: KubeConfig, namespace: string): Promise<NamespaceListing> {
  const core = kc.makeApiClient(CoreV1Api);
  const apps = kc.makeApiClient(AppsV1Api);
  const req = (verb: string, resource: string) => ({
    server: kc.getCurrentCluster()?.server ?? "(no server)",
    context: kc.getCurrentContext(),
    command: "list",
    verb,
    resource,
    object: { apiVersion: "v1", kind: "List", metadata: { name: resource, namespace } },
  });
  const call = async <T>(resource: string, fn: () => Promise<T>): Promise<T> => {
    try {
      return await fn();
    } catch (error) {
      throw explainApiError(error, req("list", resource));
    }
  };
  const [services, endpoints, pods, deployments] = await Promise.all([
    call("services", () => core.listNamespacedService({ namespace })),
    call("endpoints", () => core.listNamespacedEndpoints({ namespace })),
    call("pods", () => core.listNamespacedPod({ namespace })),
    call("deployments.apps", () => apps.listNamespacedDeployment({ namespace })),
  ]);
  const readyOf = (name: string) =>
    (endpoints.items.find((e) => e.metadata?.name === name)?.subsets ?? [])
      .reduce((n, s) => n + (s.addresses?.length ?? 0), 0);
  const listedServices = services.items.map((s): ListedService => {
    const clusterIP = s.spec?.clusterIP ?? "";
    return {
      name: s.metadata?.name ?? "",
      type: clusterIP === "None" ? "Headless" : s.spec?.type ?? "ClusterIP",
      clusterIP,
      ports: (s.spec?.ports ?? []).map((p) => ({
        ...(p.name ? { name: p.name } : {}),
        port: p.port,
        protocol: p.protocol ?? "TCP",
      })),
      ready: readyOf(s.metadata?.name ?? ""),
    };
  });
  const asPod = (p: V1Pod): ListedPod => ({
    name: p.metadata?.name ?? "",
    ...(p.status?.podIP ? { ip: p.status.podIP } : {}),
    ready: podReady(p),
  });
  const workloads: ListedWorkload[] = deployments.items.map((d) => {
    const uid = d.metadata?.uid;
    const selector = d.spec?.selector?.matchLabels ?? {};
    const owned = pods.items.filter((p) =>
      (p.metadata?.ownerReferences ?? []).some((r) => r.uid === uid) ||
      (Object.keys(selector).length > 0 && matches(selector, p.metadata?.labels))
    );
    const agent = d.metadata?.annotations?.[AGENT_ANNOTATION.agent];
    return {
      kind: "Deployment",
      name: d.metadata?.name ?? "",
      desired: d.spec?.replicas ?? 1,
      pods: owned.map(asPod),
      ...(agent ? { agent } : {}),
    };
  });
  const claimed = new Set(workloads.flatMap((w) => w.pods.map((p) => p.name)));
  for (const p of pods.items) {
    const name = p.metadata?.name ?? "";
    if (claimed.has(name) || (p.metadata?.ownerReferences ?? []).length > 0) continue;
    workloads.push({ kind: "Pod", name, desired: 1, pods: [asPod(p)] });
  }
  const byName = <T extends { name: string }>(a: T, b: T) => a.name.localeCompare(b.name);
  return {
    namespace,
    services: listedServices.sort(byName),
    workloads: workloads.sort(byName),
  };
}
