/**
 * The StatefulSet controller of the simulated cluster, with the default
 * `OrderedReady` pod management and `RollingUpdate` strategy: pods
 * `<name>-0`, `<name>-1`, … are made one at a time, each once the one before
 * is Running and Ready, with the pod's name as its hostname and
 * `serviceName` as its subdomain (so `<pod>.<service>` resolves through a
 * headless Service), and the labels `controller-revision-hash`,
 * `statefulset.kubernetes.io/pod-name` and `apps.kubernetes.io/pod-index`.
 * Scaling down removes the highest ordinal first, one at a time. A changed
 * template rolls the pods from the highest ordinal down to `partition`, one
 * at a time, each once all are ready. The status counts `replicas`,
 * `readyReplicas`, `currentReplicas`, `updatedReplicas` and names
 * `currentRevision` and `updateRevision`. (No ControllerRevision objects
 * and no volume claim templates.)
 *
 * @module
 */

import type { KubeObject, ObjectMeta, Store } from "./apiserver/mod.ts";
import {
  controllerRef,
  isActive,
  isReady,
  type Obj,
  ownedBy,
  sameJson,
  templateHash,
} from "./_owners.ts";

const REVISION_LABEL = "controller-revision-hash";
const POD_NAME_LABEL = "statefulset.kubernetes.io/pod-name";
const POD_INDEX_LABEL = "apps.kubernetes.io/pod-index";

interface StatefulSetSpec {
  replicas?: number;
  serviceName?: string;
  template: { metadata?: ObjectMeta; spec: Record<string, unknown> };
  updateStrategy?: { type?: string; rollingUpdate?: { partition?: number } };
}

function ordinal(set: KubeObject, pod: KubeObject): number {
  const prefix = `${set.metadata.name}-`;
  const name = pod.metadata.name ?? "";
  const rest = name.slice(prefix.length);
  return name.startsWith(prefix) && /^\d+$/.test(rest) ? Number(rest) : -1;
}

function running(pod: KubeObject): boolean {
  return ((pod as Obj).status as { phase?: string } | undefined)?.phase === "Running";
}

/**
 * One pass of the StatefulSet controller over every StatefulSet.
 *
 * @param store the objects
 * @param log where failures go
 */
export function reconcileStatefulSets(store: Store, log: (line: string) => void): void {
  const pods = store.list("pods");
  for (const set of store.list("statefulsets")) {
    if (set.metadata.deletionTimestamp) continue;
    try {
      sync(store, set, ownedBy(set, pods).filter((p) => ordinal(set, p) >= 0));
    } catch (error) {
      log(
        `statefulset-controller: ${set.metadata.namespace}/${set.metadata.name}: ${
          (error as Error).message
        }`,
      );
    }
  }
}

function sync(store: Store, set: KubeObject, owned: KubeObject[]): void {
  const spec = (set as Obj).spec as StatefulSetSpec;
  const ns = set.metadata.namespace!;
  const replicas = spec.replicas ?? 1;
  const update = `${set.metadata.name}-${templateHash(spec.template)}`;
  const byOrdinal = new Map(owned.map((p) => [ordinal(set, p), p]));
  const revision = (p: KubeObject) => p.metadata.labels?.[REVISION_LABEL];
  const del = (p: KubeObject) => {
    try {
      store.delete({ resource: "pods", namespace: ns, name: p.metadata.name! });
    } catch { /* gone */ }
  };
  let acted = false;
  // A pod that finished is replaced, as the controller does.
  for (const p of owned) {
    if (!isActive(p)) {
      del(p);
      acted = true;
    }
  }
  for (let i = 0; i < replicas && !acted; i++) {
    const p = byOrdinal.get(i);
    if (!p) {
      const meta = spec.template.metadata ?? {};
      const name = `${set.metadata.name}-${i}`;
      store.create({
        apiVersion: "v1",
        kind: "Pod",
        metadata: {
          name,
          namespace: ns,
          labels: {
            ...meta.labels,
            [REVISION_LABEL]: update,
            [POD_NAME_LABEL]: name,
            [POD_INDEX_LABEL]: String(i),
          },
          ...(meta.annotations ? { annotations: { ...meta.annotations } } : {}),
          ownerReferences: [controllerRef(set, "apps/v1", "StatefulSet")],
        } as ObjectMeta,
        spec: {
          ...structuredClone(spec.template.spec),
          hostname: name,
          ...(spec.serviceName ? { subdomain: spec.serviceName } : {}),
        },
      } as KubeObject);
      acted = true;
    } else if (!running(p) || !isReady(p)) {
      acted = true; // OrderedReady: wait for it
    }
  }
  if (!acted) {
    const extra = [...byOrdinal.keys()].filter((i) => i >= replicas).sort((a, b) => b - a);
    if (extra.length > 0) {
      del(byOrdinal.get(extra[0]!)!);
      acted = true;
    }
  }
  const rolling = (spec.updateStrategy?.type ?? "RollingUpdate") === "RollingUpdate";
  if (!acted && rolling) {
    const partition = spec.updateStrategy?.rollingUpdate?.partition ?? 0;
    for (let i = replicas - 1; i >= partition; i--) {
      const p = byOrdinal.get(i);
      if (p && revision(p) !== update) {
        del(p);
        break;
      }
    }
  }
  writeStatus(store, set, update);
}

function writeStatus(store: Store, set0: KubeObject, update: string): void {
  const ref = {
    resource: "statefulsets",
    namespace: set0.metadata.namespace!,
    name: set0.metadata.name!,
  };
  const set = store.get(ref);
  if (!set) return;
  const spec = (set as Obj).spec as StatefulSetSpec;
  const pods = ownedBy(set, store.list("pods", { namespace: set.metadata.namespace! }))
    .filter((p) => ordinal(set, p) >= 0 && isActive(p));
  const old = ((set as Obj).status ?? {}) as Record<string, unknown>;
  let current = String(old.currentRevision ?? update);
  const updated = pods.filter((p) => p.metadata.labels?.[REVISION_LABEL] === update).length;
  const ready = pods.filter(isReady).length;
  const replicas = spec.replicas ?? 1;
  if (updated === replicas && ready === replicas && pods.length === replicas) current = update;
  const atCurrent = pods.filter((p) => p.metadata.labels?.[REVISION_LABEL] === current).length;
  const status: Record<string, unknown> = {
    observedGeneration: set.metadata.generation ?? 1,
    replicas: pods.length,
    ...(ready ? { readyReplicas: ready } : {}),
    ...(atCurrent ? { currentReplicas: atCurrent } : {}),
    ...(updated ? { updatedReplicas: updated } : {}),
    currentRevision: current,
    updateRevision: update,
    collisionCount: 0,
    availableReplicas: ready,
  };
  if (sameJson(old, status)) return;
  try {
    store.modify(ref, (o) => {
      (o as Obj).status = status;
    });
  } catch { /* deleted meanwhile */ }
}
