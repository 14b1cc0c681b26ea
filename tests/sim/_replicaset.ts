/**
 * The ReplicaSet controller of the simulated cluster: each ReplicaSet keeps
 * `spec.replicas` active pods of its template, named `<replicaset>-<random>`
 * and owned by it; extra ones go in the order the real controller picks
 * (unscheduled, pending, not ready, most restarted, newest first); its
 * status counts them (`replicas`, `fullyLabeledReplicas`, `readyReplicas`,
 * `availableReplicas`, `observedGeneration`).
 *
 * @module
 */

import type { KubeObject, ObjectMeta, Store } from "./apiserver/mod.ts";
import { controllerRef, isActive, isReady, type Obj, ownedBy, sameJson } from "./_owners.ts";
import { labelSelectorText, matchLabels, parseLabelSelector } from "./apiserver/selectors.ts";

interface ReplicaSetSpec {
  replicas?: number;
  selector?: unknown;
  template: { metadata?: ObjectMeta; spec: Record<string, unknown> };
}

/** How many pods one pass creates at most (the real controller's burst). */
const BURST = 500;

function restarts(pod: KubeObject): number {
  const statuses = ((pod as Obj).status as { containerStatuses?: { restartCount?: number }[] })
    ?.containerStatuses ?? [];
  return statuses.reduce((n, s) => n + (s.restartCount ?? 0), 0);
}

/**
 * The order in which a controller deletes pods: unscheduled before
 * scheduled, pending before running, not ready before ready, more restarts
 * before fewer, newer before older.
 *
 * @param a a pod
 * @param b another
 * @returns negative when `a` goes first
 */
export function deletionOrder(a: KubeObject, b: KubeObject): number {
  const node = (p: KubeObject) => ((p as Obj).spec as { nodeName?: string })?.nodeName ? 1 : 0;
  const phase = (p: KubeObject) => {
    const ph = ((p as Obj).status as { phase?: string } | undefined)?.phase;
    return ph === "Pending" ? 0 : ph === "Running" ? 2 : 1;
  };
  return node(a) - node(b) || phase(a) - phase(b) ||
    Number(isReady(a)) - Number(isReady(b)) || restarts(b) - restarts(a) ||
    String(b.metadata.creationTimestamp).localeCompare(String(a.metadata.creationTimestamp));
}

/**
 * One pass of the ReplicaSet controller over every ReplicaSet.
 *
 * @param store the objects
 * @param log where failures go
 */
export function reconcileReplicaSets(store: Store, log: (line: string) => void): void {
  const pods = store.list("pods");
  for (const rs of store.list("replicasets")) {
    if (rs.metadata.deletionTimestamp) continue;
    const spec = (rs as Obj).spec as ReplicaSetSpec;
    const ns = rs.metadata.namespace!;
    const active = ownedBy(rs, pods).filter(isActive);
    const want = spec.replicas ?? 1;
    if (active.length < want) {
      const meta = spec.template.metadata ?? {};
      for (let i = active.length; i < Math.min(want, active.length + BURST); i++) {
        try {
          store.create({
            apiVersion: "v1",
            kind: "Pod",
            metadata: {
              generateName: `${rs.metadata.name}-`,
              namespace: ns,
              labels: { ...meta.labels },
              ...(meta.annotations ? { annotations: { ...meta.annotations } } : {}),
              ownerReferences: [controllerRef(rs, "apps/v1", "ReplicaSet")],
            } as ObjectMeta,
            spec: structuredClone(spec.template.spec),
          } as KubeObject);
        } catch (error) {
          log(
            `replicaset-controller: ${ns}/${rs.metadata.name}: FailedCreate: ${
              (error as Error).message
            }`,
          );
          break;
        }
      }
    } else if (active.length > want) {
      for (const p of [...active].sort(deletionOrder).slice(0, active.length - want)) {
        try {
          store.delete({ resource: "pods", namespace: ns, name: p.metadata.name! });
        } catch { /* gone already */ }
      }
    }
    writeStatus(store, rs);
  }
}

function writeStatus(store: Store, rs: KubeObject): void {
  const ref = {
    resource: "replicasets",
    namespace: rs.metadata.namespace!,
    name: rs.metadata.name!,
  };
  const now = store.get(ref);
  if (!now) return;
  const spec = (now as Obj).spec as ReplicaSetSpec;
  const active = ownedBy(now, store.list("pods", { namespace: now.metadata.namespace! }))
    .filter(isActive);
  const selector = parseLabelSelector(labelSelectorText(spec.selector));
  const ready = active.filter(isReady).length;
  const status: Record<string, unknown> = {
    replicas: active.length,
    ...(active.length
      ? {
        fullyLabeledReplicas: active.filter((p) => matchLabels(selector, p.metadata.labels)).length,
      }
      : {}),
    ...(ready ? { readyReplicas: ready, availableReplicas: ready } : {}),
    observedGeneration: now.metadata.generation ?? 1,
  };
  if (sameJson((now as Obj).status, status)) return;
  try {
    store.modify(ref, (o) => {
      (o as Obj).status = status;
    });
  } catch { /* deleted meanwhile */ }
}
