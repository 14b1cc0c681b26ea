/**
 * The Deployment controller of the simulated cluster, as the real one rolls
 * a template out: a Deployment owns ReplicaSets named
 * `<deployment>-<pod-template-hash>` (the template with that label, the
 * selector with it too, `deployment.kubernetes.io/revision` counting up), and
 * moves pods from the old ones to the new one.
 *
 * - `RollingUpdate` (the default): the new ReplicaSet grows while all of
 *   them hold no more than `replicas + maxSurge` pods; the old ones shrink
 *   while at least `replicas - maxUnavailable` pods are available (25 % and
 *   25 % by default, surge rounded up, unavailability down, never both 0).
 *   One step per pass, as the controller takes one per sync.
 * - `Recreate`: the old ReplicaSets go to 0, and once their pods are gone
 *   the new one comes up.
 *
 * The status is what `kubectl rollout status` reads: `observedGeneration`,
 * `replicas`, `updatedReplicas`, `readyReplicas`, `availableReplicas`,
 * `unavailableReplicas`, and the conditions `Available`
 * (`MinimumReplicasAvailable`) and `Progressing` (`NewReplicaSetCreated`,
 * `ReplicaSetUpdated` while pods move, `NewReplicaSetAvailable` when done,
 * `ProgressDeadlineExceeded` once `progressDeadlineSeconds` pass without
 * progress). Old ReplicaSets scaled to 0 beyond `revisionHistoryLimit` are
 * deleted.
 *
 * @module
 */

import type { KubeObject, ObjectMeta, Store } from "./apiserver/mod.ts";
import {
  controllerRef,
  isActive,
  type Obj,
  ownedBy,
  rfc3339,
  sameJson,
  templateHash,
} from "./_owners.ts";

/** The label that names a ReplicaSet's template. */
export const HASH_LABEL = "pod-template-hash";
const REVISION = "deployment.kubernetes.io/revision";
const DESIRED = "deployment.kubernetes.io/desired-replicas";
const MAX = "deployment.kubernetes.io/max-replicas";

interface DeploymentSpec {
  replicas?: number;
  selector: { matchLabels?: Record<string, string>; matchExpressions?: unknown[] };
  template: { metadata?: ObjectMeta; spec: Record<string, unknown> };
  strategy?: {
    type?: string;
    rollingUpdate?: { maxSurge?: number | string; maxUnavailable?: number | string };
  };
  progressDeadlineSeconds?: number;
  revisionHistoryLimit?: number;
}

interface Condition {
  type: string;
  status: string;
  reason: string;
  message: string;
  lastUpdateTime: string;
  lastTransitionTime: string;
}

/**
 * An `IntOrString` of a rolling update scaled to a replica count: a number
 * as it is, a percentage of `total` rounded up or down.
 *
 * @param v the value (`1`, `"25%"`)
 * @param total the replicas
 * @param roundUp whether to round up
 * @returns the count
 */
export function scaledValue(
  v: number | string | undefined,
  total: number,
  roundUp: boolean,
): number {
  if (v === undefined) return 0;
  if (typeof v === "number") return v;
  const m = /^(\d+)%$/.exec(v);
  if (!m) return Number(v) || 0;
  const x = (Number(m[1]) * total) / 100;
  return roundUp ? Math.ceil(x) : Math.floor(x);
}

/**
 * `maxSurge` and `maxUnavailable` of a Deployment, as counts (unavailable
 * becomes 1 when both are 0).
 *
 * @param strategy the rolling update parameters
 * @param replicas the desired replicas
 * @returns the counts
 */
export function surgeAndUnavailable(
  strategy: { maxSurge?: number | string; maxUnavailable?: number | string } | undefined,
  replicas: number,
): { maxSurge: number; maxUnavailable: number } {
  const maxSurge = scaledValue(strategy?.maxSurge ?? "25%", replicas, true);
  let maxUnavailable = scaledValue(strategy?.maxUnavailable ?? "25%", replicas, false);
  if (maxSurge === 0 && maxUnavailable === 0) maxUnavailable = 1;
  return { maxSurge, maxUnavailable };
}

/** A ReplicaSet as the rolling update sees it. */
export interface RolloutSet {
  name: string;
  /** `spec.replicas`. */
  replicas: number;
  /** `status.availableReplicas`. */
  available: number;
}

/**
 * One step of a rolling update, as the controller's `rolloutRolling` takes
 * it: scale the new ReplicaSet up (or down to `replicas`) if it can; else
 * scale old ones down, first their unavailable pods, then the oldest first,
 * keeping `replicas - maxUnavailable` available.
 *
 * @param replicas the Deployment's replicas
 * @param limits `maxSurge` and `maxUnavailable` as counts
 * @param next the new ReplicaSet
 * @param old the old ones, oldest first
 * @returns the new `spec.replicas` of each ReplicaSet that changes, by name
 */
export function rollingStep(
  replicas: number,
  limits: { maxSurge: number; maxUnavailable: number },
  next: RolloutSet,
  old: readonly RolloutSet[],
): Map<string, number> {
  const out = new Map<string, number>();
  const all = [next, ...old];
  const sum = (list: readonly RolloutSet[], f: (s: RolloutSet) => number) =>
    list.reduce((n, s) => n + f(s), 0);
  if (next.replicas > replicas) {
    out.set(next.name, replicas);
    return out;
  }
  if (next.replicas < replicas) {
    const maxTotal = replicas + limits.maxSurge;
    const current = sum(all, (s) => s.replicas);
    if (current < maxTotal) {
      out.set(next.name, next.replicas + Math.min(maxTotal - current, replicas - next.replicas));
      return out;
    }
  }
  if (sum(old, (s) => s.replicas) === 0) return out;
  const minAvailable = replicas - limits.maxUnavailable;
  const newUnavailable = next.replicas - next.available;
  let maxScaledDown = sum(all, (s) => s.replicas) - minAvailable - newUnavailable;
  if (maxScaledDown <= 0) return out;
  const current = new Map(old.map((s) => [s.name, s.replicas]));
  let cleaned = 0;
  for (const s of old) {
    if (cleaned >= maxScaledDown) break;
    const unhealthy = s.replicas - s.available;
    if (s.replicas === 0 || unhealthy <= 0) continue;
    const down = Math.min(maxScaledDown - cleaned, unhealthy);
    current.set(s.name, s.replicas - down);
    cleaned += down;
  }
  maxScaledDown -= cleaned;
  const available = sum(all, (s) => s.available);
  let scaled = 0;
  if (available > minAvailable) {
    const total = Math.min(available - minAvailable, maxScaledDown);
    for (const s of old) {
      if (scaled >= total) break;
      const now = current.get(s.name)!;
      if (now === 0) continue;
      const down = Math.min(now, total - scaled);
      current.set(s.name, now - down);
      scaled += down;
    }
  }
  for (const s of old) {
    if (current.get(s.name) !== s.replicas) out.set(s.name, current.get(s.name)!);
  }
  return out;
}

function revisionOf(rs: KubeObject): number {
  return Number(rs.metadata.annotations?.[REVISION] ?? 0) || 0;
}

function rsStatus(rs: KubeObject): { replicas: number; ready: number; available: number } {
  const s = ((rs as Obj).status ?? {}) as Record<string, number | undefined>;
  return {
    replicas: s.replicas ?? 0,
    ready: s.readyReplicas ?? 0,
    available: s.availableReplicas ?? 0,
  };
}

function rsReplicas(rs: KubeObject): number {
  return (((rs as Obj).spec ?? {}) as { replicas?: number }).replicas ?? 0;
}

/**
 * One pass of the Deployment controller over every Deployment.
 *
 * @param store the objects
 * @param now the time (progress deadlines)
 * @param log where failures go
 * @returns when a progress deadline falls next (ms since the epoch), if any
 */
export function reconcileDeployments(
  store: Store,
  now: Date,
  log: (line: string) => void,
): number | undefined {
  let wake: number | undefined;
  const sets = store.list("replicasets");
  const pods = store.list("pods");
  for (const d of store.list("deployments")) {
    if (d.metadata.deletionTimestamp) continue;
    try {
      const next = syncDeployment(store, d, ownedBy(d, sets), pods, now);
      if (next !== undefined) wake = Math.min(wake ?? Infinity, next);
    } catch (error) {
      log(
        `deployment-controller: ${d.metadata.namespace}/${d.metadata.name}: ${
          (error as Error).message
        }`,
      );
    }
  }
  return wake;
}

function setReplicas(store: Store, rs: KubeObject, replicas: number, max: number): void {
  store.modify({
    resource: "replicasets",
    namespace: rs.metadata.namespace!,
    name: rs.metadata.name!,
  }, (o) => {
    ((o as Obj).spec as { replicas: number }).replicas = replicas;
    o.metadata.annotations = { ...o.metadata.annotations, [MAX]: String(max) };
  });
}

function syncDeployment(
  store: Store,
  d: KubeObject,
  sets: KubeObject[],
  pods: KubeObject[],
  now: Date,
): number | undefined {
  const spec = (d as Obj).spec as DeploymentSpec;
  const ns = d.metadata.namespace!;
  const replicas = spec.replicas ?? 1;
  const hash = templateHash(spec.template);
  const recreate = spec.strategy?.type === "Recreate";
  const limits = recreate
    ? { maxSurge: 0, maxUnavailable: replicas }
    : surgeAndUnavailable(spec.strategy?.rollingUpdate, replicas);
  let created: string | undefined;
  let next = sets.find((rs) => rs.metadata.labels?.[HASH_LABEL] === hash);
  const old = sets.filter((rs) => rs !== next).sort((a, b) =>
    String(a.metadata.creationTimestamp).localeCompare(String(b.metadata.creationTimestamp)) ||
    revisionOf(a) - revisionOf(b)
  );
  const maxRevision = Math.max(0, ...sets.map(revisionOf));
  if (!next) {
    const name = `${d.metadata.name}-${hash}`;
    const meta = spec.template.metadata ?? {};
    const labels = { ...meta.labels, [HASH_LABEL]: hash };
    const oldActive = old.reduce((n, rs) => n + rsReplicas(rs), 0);
    // Recreate and a first rollout start at once; a rolling one grows in the steps below.
    const initial = recreate ? 0 : oldActive === 0 ? replicas : 0;
    next = store.create({
      apiVersion: "apps/v1",
      kind: "ReplicaSet",
      metadata: {
        name,
        namespace: ns,
        labels,
        annotations: {
          [DESIRED]: String(replicas),
          [MAX]: String(replicas + limits.maxSurge),
          [REVISION]: String(maxRevision + 1),
        },
        ownerReferences: [controllerRef(d, "apps/v1", "Deployment")],
      },
      spec: {
        replicas: initial,
        selector: {
          ...spec.selector,
          matchLabels: { ...spec.selector.matchLabels, [HASH_LABEL]: hash },
        },
        template: {
          metadata: { ...structuredClone(meta), labels },
          spec: structuredClone(spec.template.spec),
        },
      },
    } as KubeObject);
    created = name;
  } else if (revisionOf(next) < maxRevision) {
    // Rolled back to an old template: it becomes the newest revision again.
    next = store.modify(
      { resource: "replicasets", namespace: ns, name: next.metadata.name! },
      (o) => {
        o.metadata.annotations = { ...o.metadata.annotations, [REVISION]: String(maxRevision + 1) };
      },
    );
  }
  if (d.metadata.annotations?.[REVISION] !== next.metadata.annotations?.[REVISION]) {
    store.modify({ resource: "deployments", namespace: ns, name: d.metadata.name! }, (o) => {
      o.metadata.annotations = {
        ...o.metadata.annotations,
        [REVISION]: next!.metadata.annotations![REVISION]!,
      };
    });
  }

  if (!created) {
    if (recreate) {
      const oldUp = old.filter((rs) => rsReplicas(rs) > 0);
      for (const rs of oldUp) setReplicas(store, rs, 0, replicas);
      const oldPods = old.some((rs) => ownedBy(rs, pods).some(isActive));
      if (oldUp.length === 0 && !oldPods && rsReplicas(next) !== replicas) {
        setReplicas(store, next, replicas, replicas);
      }
    } else {
      const view = (rs: KubeObject): RolloutSet => ({
        name: rs.metadata.name!,
        replicas: rsReplicas(rs),
        available: rsStatus(rs).available,
      });
      const step = rollingStep(replicas, limits, view(next), old.map(view));
      for (const rs of [next, ...old]) {
        const n = step.get(rs.metadata.name!);
        if (n !== undefined) setReplicas(store, rs, n, replicas + limits.maxSurge);
      }
    }
  }
  cleanupHistory(store, old, spec.revisionHistoryLimit ?? 10);
  return writeStatus(store, d, now, created);
}

/** Deletes the oldest ReplicaSets at 0 beyond the history limit. */
function cleanupHistory(store: Store, old: KubeObject[], limit: number): void {
  const idle = old.filter((rs) => rsReplicas(rs) === 0 && rsStatus(rs).replicas === 0);
  for (const rs of idle.slice(0, Math.max(0, idle.length - limit))) {
    try {
      store.delete({
        resource: "replicasets",
        namespace: rs.metadata.namespace!,
        name: rs.metadata.name!,
      });
    } catch { /* gone */ }
  }
}

/** Writes the Deployment's status; returns when its progress deadline falls, while it has one. */
function writeStatus(
  store: Store,
  d0: KubeObject,
  now: Date,
  created: string | undefined,
): number | undefined {
  const ref = {
    resource: "deployments",
    namespace: d0.metadata.namespace!,
    name: d0.metadata.name!,
  };
  const d = store.get(ref);
  if (!d) return undefined;
  const spec = (d as Obj).spec as DeploymentSpec;
  const replicas = spec.replicas ?? 1;
  const hash = templateHash(spec.template);
  const sets = ownedBy(d, store.list("replicasets", { namespace: d.metadata.namespace! }));
  const next = sets.find((rs) => rs.metadata.labels?.[HASH_LABEL] === hash);
  const sum = (f: (rs: KubeObject) => number) => sets.reduce((n, rs) => n + f(rs), 0);
  const actual = sum((rs) => rsStatus(rs).replicas);
  const updated = next ? rsStatus(next).replicas : 0;
  const ready = sum((rs) => rsStatus(rs).ready);
  const available = sum((rs) => rsStatus(rs).available);
  const unavailable = Math.max(0, sum(rsReplicas) - available);
  const old = ((d as Obj).status ?? {}) as Record<string, unknown> & { conditions?: Condition[] };
  const conditions = structuredClone(old.conditions ?? []);
  const stamp = rfc3339(now);
  const set = (c: Omit<Condition, "lastUpdateTime" | "lastTransitionTime">, touch = false) => {
    const i = conditions.findIndex((x) => x.type === c.type);
    const was = conditions[i];
    if (was && was.status === c.status && was.reason === c.reason && !touch) return;
    const fresh: Condition = {
      ...c,
      lastUpdateTime: stamp,
      lastTransitionTime: was && was.status === c.status ? was.lastTransitionTime : stamp,
    };
    if (i >= 0) conditions[i] = fresh;
    else conditions.push(fresh);
  };
  const { maxUnavailable } = spec.strategy?.type === "Recreate"
    ? { maxUnavailable: replicas }
    : surgeAndUnavailable(spec.strategy?.rollingUpdate, replicas);
  const minimum = available >= replicas - maxUnavailable;
  set({
    type: "Available",
    status: minimum ? "True" : "False",
    reason: minimum ? "MinimumReplicasAvailable" : "MinimumReplicasUnavailable",
    message: minimum
      ? "Deployment has minimum availability."
      : "Deployment does not have minimum availability.",
  });
  const generation = d.metadata.generation ?? 1;
  const complete = updated === replicas && actual === replicas && available === replicas;
  const progressed = updated > Number(old.updatedReplicas ?? 0) ||
    actual - updated < Number(old.replicas ?? 0) - Number(old.updatedReplicas ?? 0) ||
    ready > Number(old.readyReplicas ?? 0) || available > Number(old.availableReplicas ?? 0);
  const rsName = next?.metadata.name;
  const progressing = conditions.find((c) => c.type === "Progressing");
  const deadlineMs = (spec.progressDeadlineSeconds ?? 600) * 1000;
  if (created) {
    set({
      type: "Progressing",
      status: "True",
      reason: "NewReplicaSetCreated",
      message: `Created new replica set "${created}"`,
    }, true);
  } else if (complete) {
    set({
      type: "Progressing",
      status: "True",
      reason: "NewReplicaSetAvailable",
      message: `ReplicaSet "${rsName}" has successfully progressed.`,
    });
  } else if (progressed || !progressing) {
    set({
      type: "Progressing",
      status: "True",
      reason: "ReplicaSetUpdated",
      message: `ReplicaSet "${rsName}" is progressing.`,
    }, true);
  } else if (
    progressing.reason !== "ProgressDeadlineExceeded" &&
    Date.parse(progressing.lastUpdateTime) + deadlineMs <= now.getTime()
  ) {
    set({
      type: "Progressing",
      status: "False",
      reason: "ProgressDeadlineExceeded",
      message: `ReplicaSet "${rsName}" has timed out progressing.`,
    });
  }
  const status: Record<string, unknown> = {
    observedGeneration: generation,
    ...(actual ? { replicas: actual } : {}),
    ...(updated ? { updatedReplicas: updated } : {}),
    ...(ready ? { readyReplicas: ready } : {}),
    ...(available ? { availableReplicas: available } : {}),
    ...(unavailable ? { unavailableReplicas: unavailable } : {}),
    conditions,
  };
  if (!sameJson(old, status)) {
    store.modify(ref, (o) => {
      (o as Obj).status = status;
    });
  }
  const p = conditions.find((c) => c.type === "Progressing");
  if (!p || p.reason === "NewReplicaSetAvailable" || p.reason === "ProgressDeadlineExceeded") {
    return undefined;
  }
  return Date.parse(p.lastUpdateTime) + deadlineMs;
}
