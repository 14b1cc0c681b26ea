/**
 * The workload controllers of the simulated cluster, run against a store
 * without namespaces or processes (pods are made Ready by writing their
 * status, as a kubelet would): the rolling update's arithmetic, a template
 * change rolled out within `maxSurge` and `maxUnavailable`, the status
 * `kubectl rollout status` reads, the progress deadline, Recreate, and
 * StatefulSet pods made in order and rolled from the highest ordinal.
 *
 * @module
 */

import { assert, assertEquals } from "../_assert.ts";
import { type KubeObject, Store } from "./apiserver/mod.ts";
import { reconcileDeployments, rollingStep, surgeAndUnavailable } from "./_deployment.ts";
import { reconcileReplicaSets } from "./_replicaset.ts";
import { reconcileStatefulSets } from "./_statefulset.ts";
import { isReady, type Obj } from "./_owners.ts";

Deno.test("surgeAndUnavailable() rounds surge up and unavailability down, never both 0", () => {
  assertEquals(surgeAndUnavailable(undefined, 1), { maxSurge: 1, maxUnavailable: 0 });
  assertEquals(surgeAndUnavailable(undefined, 4), { maxSurge: 1, maxUnavailable: 1 });
  assertEquals(surgeAndUnavailable({ maxSurge: 0, maxUnavailable: "10%" }, 3), {
    maxSurge: 0,
    maxUnavailable: 1,
  });
  assertEquals(surgeAndUnavailable({ maxSurge: "50%", maxUnavailable: 2 }, 3), {
    maxSurge: 2,
    maxUnavailable: 2,
  });
});

Deno.test("rollingStep() grows the new ReplicaSet within the surge, then shrinks the old within availability", () => {
  const limits = { maxSurge: 1, maxUnavailable: 0 };
  // Three old pods, all available: one new may come.
  let step = rollingStep(3, limits, { name: "new", replicas: 0, available: 0 }, [
    { name: "old", replicas: 3, available: 3 },
  ]);
  assertEquals([...step], [["new", 1]]);
  // The new one not yet available: nothing may go.
  step = rollingStep(3, limits, { name: "new", replicas: 1, available: 0 }, [
    { name: "old", replicas: 3, available: 3 },
  ]);
  assertEquals([...step], []);
  // Available: one old one goes.
  step = rollingStep(3, limits, { name: "new", replicas: 1, available: 1 }, [
    { name: "old", replicas: 3, available: 3 },
  ]);
  assertEquals([...step], [["old", 2]]);
  // Unavailable old pods go first, beyond what availability alone would allow.
  step = rollingStep(3, { maxSurge: 1, maxUnavailable: 1 }, {
    name: "new",
    replicas: 1,
    available: 0,
  }, [
    { name: "older", replicas: 1, available: 0 },
    { name: "old", replicas: 2, available: 2 },
  ]);
  assertEquals([...step], [["older", 0]]);
  // Scaling down a finished rollout.
  assertEquals([...rollingStep(1, limits, { name: "new", replicas: 3, available: 3 }, [])], [[
    "new",
    1,
  ]]);
});

function deployment(image: string, extra: Record<string, unknown> = {}): KubeObject {
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name: "web", namespace: "default" },
    spec: {
      replicas: 3,
      selector: { matchLabels: { app: "web" } },
      template: {
        metadata: { labels: { app: "web" } },
        spec: { containers: [{ name: "web", image }] },
      },
      ...extra,
    },
  } as KubeObject;
}

/** Plays the kubelet: every pod that exists is Running and Ready. */
function readyAll(store: Store): void {
  for (const p of store.list("pods")) {
    if (isReady(p)) continue;
    store.modify({ resource: "pods", namespace: "default", name: p.metadata.name! }, (o) => {
      (o as Obj).status = { phase: "Running", conditions: [{ type: "Ready", status: "True" }] };
    });
  }
}

function pass(store: Store, now = new Date()): number | undefined {
  const wake = reconcileDeployments(store, now, () => {});
  reconcileReplicaSets(store, () => {});
  reconcileStatefulSets(store, () => {});
  return wake;
}

function status(store: Store, resource = "deployments", name = "web"): Record<string, unknown> {
  return ((store.get({ resource, namespace: "default", name }) as Obj).status ?? {}) as Record<
    string,
    unknown
  >;
}

function progressing(store: Store): Record<string, string> | undefined {
  return (status(store).conditions as Record<string, string>[] | undefined)?.find((c) =>
    c.type === "Progressing"
  );
}

Deno.test("the Deployment controller rolls a new template out through ReplicaSets within the limits", () => {
  const store = new Store({ serviceCidr: "198.19.0.0/18" });
  store.create(deployment("web:1"));
  for (let i = 0; i < 6; i++) {
    pass(store);
    readyAll(store);
  }
  const [first] = store.list("replicasets");
  assertEquals(first!.metadata.name, `web-${first!.metadata.labels!["pod-template-hash"]}`);
  assertEquals(first!.metadata.annotations!["deployment.kubernetes.io/revision"], "1");
  assertEquals(store.list("pods").length, 3);
  assert(store.list("pods").every((p) => p.metadata.name!.startsWith(`${first!.metadata.name}-`)));
  assertEquals(progressing(store)?.reason, "NewReplicaSetAvailable");

  store.modify({ resource: "deployments", namespace: "default", name: "web" }, (d) => {
    ((d as Obj).spec as { template: { spec: { containers: unknown[] } } }).template.spec
      .containers = [{ name: "web", image: "web:1" }, { name: "agent", image: "vif:1" }];
  });
  const seen: Array<[number, number]> = [];
  for (let i = 0; i < 40; i++) {
    pass(store);
    const pods = store.list("pods");
    const ready = pods.filter(isReady).length;
    seen.push([pods.length, ready]);
    // maxSurge 1 (25 % of 3, up), maxUnavailable 0 (25 % of 3, down).
    assert(pods.length <= 4, `${pods.length} pods`);
    assert(ready >= 3 || i === 0, JSON.stringify(seen));
    readyAll(store);
  }
  const sets = store.list("replicasets");
  assertEquals(sets.length, 2);
  const next = sets.find((rs) => rs.metadata.name !== first!.metadata.name)!;
  assertEquals(next.metadata.annotations!["deployment.kubernetes.io/revision"], "2");
  assertEquals(((next as Obj).spec as { replicas: number }).replicas, 3);
  assertEquals(
    ((store.get({
      resource: "replicasets",
      namespace: "default",
      name: first!.metadata.name!,
    }) as Obj).spec as { replicas: number }).replicas,
    0,
  );
  assert(
    store.list("pods").every((p) => p.metadata.ownerReferences![0]!.uid === next.metadata.uid),
  );
  const s = status(store);
  assertEquals(
    [s.observedGeneration, s.replicas, s.updatedReplicas, s.readyReplicas, s.availableReplicas],
    [2, 3, 3, 3, 3],
  );
  assertEquals(progressing(store)?.reason, "NewReplicaSetAvailable");
  assertEquals(
    progressing(store)?.message,
    `ReplicaSet "${next.metadata.name}" has successfully progressed.`,
  );
  assertEquals(
    store.get({ resource: "deployments", namespace: "default", name: "web" })!.metadata
      .annotations!["deployment.kubernetes.io/revision"],
    "2",
  );
});

Deno.test("a rollout that makes no progress for progressDeadlineSeconds is ProgressDeadlineExceeded", () => {
  const store = new Store({ serviceCidr: "198.19.0.0/18" });
  store.create(deployment("web:1", { progressDeadlineSeconds: 60 }));
  const t0 = Date.now();
  let wake: number | undefined;
  for (let i = 0; i < 3; i++) wake = pass(store, new Date(t0));
  assertEquals(progressing(store)?.reason, "ReplicaSetUpdated");
  assert(wake !== undefined && wake - t0 <= 61_000 && wake - t0 >= 58_000, String(wake! - t0));
  pass(store, new Date(t0 + 30_000));
  assertEquals(progressing(store)?.status, "True");
  pass(store, new Date(t0 + 62_000));
  const c = progressing(store)!;
  assertEquals([c.status, c.reason], ["False", "ProgressDeadlineExceeded"]);
  assertEquals(
    c.message,
    `ReplicaSet "${store.list("replicasets")[0]!.metadata.name}" has timed out progressing.`,
  );
  // Progress again: the deadline counts from then.
  readyAll(store);
  pass(store, new Date(t0 + 63_000));
  pass(store, new Date(t0 + 63_000));
  assertEquals(progressing(store)?.reason, "NewReplicaSetAvailable");
});

Deno.test("Recreate takes every old pod down before the new ReplicaSet comes up", () => {
  const store = new Store({ serviceCidr: "198.19.0.0/18" });
  store.create(deployment("web:1", { strategy: { type: "Recreate" } }));
  for (let i = 0; i < 4; i++) {
    pass(store);
    readyAll(store);
  }
  store.modify({ resource: "deployments", namespace: "default", name: "web" }, (d) => {
    ((d as Obj).spec as { template: { spec: { containers: { image: string }[] } } }).template.spec
      .containers[0]!.image = "web:2";
  });
  pass(store);
  pass(store);
  const images = () =>
    store.list("pods").map((p) =>
      ((p as Obj).spec as { containers: { image: string }[] }).containers[0]!.image
    );
  assert(!images().includes("web:1") || !images().includes("web:2"), images().join());
  for (let i = 0; i < 4; i++) {
    pass(store);
    readyAll(store);
  }
  assertEquals(images(), ["web:2", "web:2", "web:2"]);
});

Deno.test("the StatefulSet controller makes pods in order and rolls them from the highest ordinal", () => {
  const store = new Store({ serviceCidr: "198.19.0.0/18" });
  store.create({
    apiVersion: "apps/v1",
    kind: "StatefulSet",
    metadata: { name: "db", namespace: "default" },
    spec: {
      replicas: 3,
      serviceName: "db",
      selector: { matchLabels: { app: "db" } },
      template: {
        metadata: { labels: { app: "db" } },
        spec: { containers: [{ name: "db", image: "db:1" }] },
      },
    },
  } as KubeObject);
  const names = () => store.list("pods").map((p) => p.metadata.name);
  pass(store);
  assertEquals(names(), ["db-0"]);
  pass(store);
  assertEquals(names(), ["db-0"]); // not ready yet
  readyAll(store);
  pass(store);
  assertEquals(names(), ["db-0", "db-1"]);
  const pod = store.get({ resource: "pods", namespace: "default", name: "db-1" })!;
  assertEquals(((pod as Obj).spec as { hostname: string; subdomain: string }).hostname, "db-1");
  assertEquals(((pod as Obj).spec as { subdomain: string }).subdomain, "db");
  assertEquals(pod.metadata.labels!["statefulset.kubernetes.io/pod-name"], "db-1");
  for (let i = 0; i < 4; i++) {
    readyAll(store);
    pass(store);
  }
  assertEquals(names(), ["db-0", "db-1", "db-2"]);
  const before = status(store, "statefulsets", "db");
  assertEquals(before.currentRevision, before.updateRevision);
  store.modify({ resource: "statefulsets", namespace: "default", name: "db" }, (s) => {
    ((s as Obj).spec as { template: { spec: { containers: { image: string }[] } } }).template.spec
      .containers[0]!.image = "db:2";
  });
  pass(store);
  assertEquals(names(), ["db-0", "db-1"]); // db-2 goes first
  const order: string[] = [];
  for (let i = 0; i < 12; i++) {
    for (const p of store.list("pods")) {
      const image = ((p as Obj).spec as { containers: { image: string }[] }).containers[0]!.image;
      if (image === "db:2" && !order.includes(p.metadata.name!)) order.push(p.metadata.name!);
    }
    readyAll(store);
    pass(store);
  }
  assertEquals(order, ["db-2", "db-1", "db-0"]);
  const after = status(store, "statefulsets", "db");
  assertEquals(after.currentRevision, after.updateRevision);
  assertEquals([after.updatedReplicas, after.readyReplicas], [3, 3]);
});
