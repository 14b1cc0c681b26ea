/** Unit tests of the object store (no network). */

import { assert, assertEquals, assertThrows } from "../../_assert.ts";
import { ApiError } from "./status.ts";
import { type KubeObject, Store, type StoreEvent } from "./store.ts";

const T0 = new Date("2025-01-02T03:04:05.678Z");

function store(options: { historySize?: number; namespaceDeletionDelayMs?: number } = {}): Store {
  return new Store({ serviceCidr: "198.19.0.0/18", now: () => T0, ...options });
}

function cm(name: string, namespace = "default", extra: Partial<KubeObject> = {}): KubeObject {
  return { apiVersion: "v1", kind: "ConfigMap", metadata: { name, namespace }, ...extra };
}

function deployment(name: string, replicas = 1): KubeObject {
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name, namespace: "default" },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: { containers: [{ name: "c", image: "nginx:1" }] },
      },
    },
  };
}

function apiError(fn: () => unknown): ApiError {
  try {
    fn();
  } catch (error) {
    assert(error instanceof ApiError, `expected an ApiError, got ${error}`);
    return error;
  }
  throw new Error("expected an ApiError, got none");
}

Deno.test("Store() holds what a new cluster has", () => {
  const s = store();
  assertEquals(
    s.list("namespaces").map((n) => n.metadata.name),
    ["default", "kube-node-lease", "kube-public", "kube-system"],
  );
  assertEquals(s.list("serviceaccounts").map((a) => `${a.metadata.namespace}/${a.metadata.name}`), [
    "default/default",
    "kube-node-lease/default",
    "kube-public/default",
    "kube-system/default",
  ]);
  const k = s.get({ resource: "services", namespace: "default", name: "kubernetes" })!;
  assertEquals((k.spec as { clusterIP: string }).clusterIP, "198.19.0.1");
  const cidr = s.get({ resource: "servicecidrs", name: "kubernetes" })!;
  assertEquals(cidr.spec, { cidrs: ["198.19.0.0/18"] });
  assertEquals(s.serviceCidr, "198.19.0.0/18");
});

Deno.test("Store.create() fills metadata and defaults and refuses a duplicate", () => {
  const s = store();
  const before = Number(s.resourceVersion);
  const c = s.create(cm("a"));
  assertEquals(c.metadata.resourceVersion, String(before + 1));
  assertEquals(c.metadata.creationTimestamp, "2025-01-02T03:04:05Z");
  assert(/^[0-9a-f-]{36}$/.test(c.metadata.uid!), c.metadata.uid);
  assertEquals(c.metadata.generation, undefined);
  const d = s.create(deployment("web"));
  assertEquals(d.metadata.generation, 1);
  const spec = d.spec as Record<string, unknown>;
  assertEquals(spec.revisionHistoryLimit, 10);
  assertEquals(spec.strategy, {
    type: "RollingUpdate",
    rollingUpdate: { maxUnavailable: "25%", maxSurge: "25%" },
  });
  const e = apiError(() => s.create(cm("a")));
  assertEquals(e.code, 409);
  assertEquals(e.message, `configmaps "a" already exists`);
  const g = s.create(
    cm("", "default", { metadata: { generateName: "gen-", namespace: "default" } }),
  );
  assert(/^gen-[bcdfghjklmnpqrstvwxz2456789]{5}$/.test(g.metadata.name!), g.metadata.name);
});

Deno.test("Store.create() refuses an object in a missing namespace", () => {
  const s = store();
  const e = apiError(() => s.create(cm("a", "nowhere")));
  assertEquals(e.code, 404);
  assertEquals(e.message, `namespaces "nowhere" not found`);
});

Deno.test("Store.update() bumps generation on a spec change only and refuses a stale resourceVersion", () => {
  const s = store();
  const d = s.create(deployment("web"));
  const same = s.update(structuredClone(d));
  assertEquals(same.metadata.resourceVersion, d.metadata.resourceVersion, "a no-op keeps the RV");
  const labelled = structuredClone(d);
  labelled.metadata.labels = { x: "y" };
  const l = s.update(labelled);
  assertEquals(l.metadata.generation, 1);
  const scaled = structuredClone(l);
  (scaled.spec as { replicas: number }).replicas = 3;
  const sc = s.update(scaled);
  assertEquals(sc.metadata.generation, 2);
  const e = apiError(() => s.update(scaled)); // scaled still carries l's RV
  assertEquals(e.code, 409);
  assertEquals(e.reason, "Conflict");
});

Deno.test("Store.modify() writes a deployment's status and watchers see MODIFIED", () => {
  const s = store();
  s.create(deployment("web", 2));
  const seen: StoreEvent[] = [];
  const stop = s.watch((e) => seen.push(e), { resource: "deployments" });
  s.create(cm("not-a-deployment"));
  s.modify({ resource: "deployments", namespace: "default", name: "web" }, (d) => {
    d.status = { replicas: 2, readyReplicas: 2, availableReplicas: 2, observedGeneration: 1 };
  });
  stop();
  s.modify({ resource: "deploy", namespace: "default", name: "web" }, (d) => {
    (d.status as Record<string, number>).readyReplicas = 1;
  });
  assertEquals(seen.map((e) => e.type), ["MODIFIED"]);
  assertEquals((seen[0]!.object.status as { readyReplicas: number }).readyReplicas, 2);
  assertEquals(seen[0]!.oldObject!.status as unknown, undefined);
  assertEquals(
    (s.get({ resource: "deployments.apps", namespace: "default", name: "web" })!.status as {
      readyReplicas: number;
    }).readyReplicas,
    1,
  );
});

Deno.test("Store.delete() removes dependents by owner reference unless told to orphan them", () => {
  const s = store();
  const owner = s.create(deployment("web"));
  const ref = { apiVersion: "apps/v1", kind: "Deployment", name: "web", uid: owner.metadata.uid! };
  s.create(
    cm("dep", "default", {
      metadata: { name: "dep", namespace: "default", ownerReferences: [ref] },
    }),
  );
  const r = s.delete({ resource: "deployments", namespace: "default", name: "web" });
  assertEquals(r.deleted, true);
  assertEquals(s.get({ resource: "configmaps", namespace: "default", name: "dep" }), undefined);

  const owner2 = s.create(deployment("web2"));
  const ref2 = { ...ref, name: "web2", uid: owner2.metadata.uid! };
  s.create(
    cm("kept", "default", {
      metadata: { name: "kept", namespace: "default", ownerReferences: [ref2] },
    }),
  );
  s.delete({ resource: "deployments", namespace: "default", name: "web2" }, {
    propagationPolicy: "Orphan",
  });
  const kept = s.get({ resource: "configmaps", namespace: "default", name: "kept" })!;
  assertEquals(kept.metadata.ownerReferences, undefined);
});

Deno.test("Store.delete() keeps an object with finalizers until they are removed", () => {
  const s = store();
  s.create(
    cm("f", "default", { metadata: { name: "f", namespace: "default", finalizers: ["x/y"] } }),
  );
  const r = s.delete({ resource: "configmaps", namespace: "default", name: "f" });
  assertEquals(r.deleted, false);
  assertEquals(r.object.metadata.deletionTimestamp, "2025-01-02T03:04:05Z");
  const types: string[] = [];
  s.watch((e) => types.push(e.type));
  s.modify({ resource: "configmaps", namespace: "default", name: "f" }, (o) => {
    o.metadata.finalizers = [];
  });
  assertEquals(types, ["MODIFIED", "DELETED"]);
  assertEquals(s.get({ resource: "configmaps", namespace: "default", name: "f" }), undefined);
});

Deno.test("Store.delete() of a namespace makes it Terminating, then removes its content and it", async () => {
  const s = store({ namespaceDeletionDelayMs: 0 });
  s.create({ apiVersion: "v1", kind: "Namespace", metadata: { name: "shop" } });
  s.create(cm("c", "shop"));
  const r = s.delete({ resource: "namespaces", name: "shop" });
  assertEquals(r.deleted, false);
  assertEquals((r.object.status as { phase: string }).phase, "Terminating");
  const e = apiError(() => s.create(cm("late", "shop")));
  assertEquals(e.code, 403);
  assertEquals(
    e.message,
    `configmaps "late" is forbidden: unable to create new content in namespace shop because it is being terminated`,
  );
  const gone = new Promise<void>((resolve) => {
    const stop = s.watch((ev) => {
      if (ev.type === "DELETED" && ev.object.kind === "Namespace") {
        stop();
        resolve();
      }
    });
  });
  await gone;
  assertEquals(s.get({ resource: "namespaces", name: "shop" }), undefined);
  assertEquals(s.list("configmaps", { namespace: "shop" }), []);
  assertEquals(s.list("serviceaccounts", { namespace: "shop" }), []);
  s.close();
});

Deno.test("Store allocates ClusterIPs above the static band, releases them, and dry runs keep none", () => {
  const s = store();
  const svc = (name: string, clusterIP?: string): KubeObject => ({
    apiVersion: "v1",
    kind: "Service",
    metadata: { name, namespace: "default" },
    spec: { ...(clusterIP ? { clusterIP } : {}), ports: [{ port: 80 }] },
  });
  const ip = (o: KubeObject) => (o.spec as { clusterIP: string }).clusterIP;
  assertEquals(ip(s.create(svc("dry"), { dryRun: true })), "198.19.1.1");
  assertEquals(ip(s.create(svc("a"))), "198.19.1.1");
  assertEquals(ip(s.create(svc("b"))), "198.19.1.2");
  s.delete({ resource: "services", namespace: "default", name: "a" });
  assertEquals(ip(s.create(svc("c", "198.19.1.1"))), "198.19.1.1");
  const e = apiError(() => s.create(svc("d", "198.19.63.255")));
  assertEquals(
    e.message,
    `Service "d" is invalid: spec.clusterIPs: Invalid value: []string{"198.19.63.255"}: failed to allocate IP 198.19.63.255: provided IP is not in the valid range. The range of valid IPs is 198.19.0.0/18`,
  );
  const np = s.create({ ...svc("np"), spec: { type: "NodePort", ports: [{ port: 80 }] } });
  assertEquals((np.spec as { ports: { nodePort: number }[] }).ports[0]!.nodePort, 30000);
});

Deno.test("Store.eventsSince() returns later events and throws 410 past the history", () => {
  const s = store({ historySize: 3 });
  const rv = Number(s.resourceVersion);
  s.create(cm("a"));
  s.create(cm("b"));
  assertEquals(s.eventsSince(rv).map((e) => e.object.metadata.name), ["a", "b"]);
  s.create(cm("c"));
  s.create(cm("d"));
  const e = apiError(() => s.eventsSince(rv));
  assertEquals(e.code, 410);
  assertEquals(e.reason, "Expired");
  assertEquals(e.message, `too old resource version: ${rv} (${rv + 1})`);
});

Deno.test("Store.list() filters by namespace, labels and fields", () => {
  const s = store();
  s.create(
    cm("a", "default", { metadata: { name: "a", namespace: "default", labels: { app: "x" } } }),
  );
  s.create(
    cm("b", "kube-system", {
      metadata: { name: "b", namespace: "kube-system", labels: { app: "y" } },
    }),
  );
  assertEquals(s.list("cm", { labelSelector: "app in (x,y)" }).map((o) => o.metadata.name), [
    "a",
    "b",
  ]);
  assertEquals(s.list("cm", { namespace: "kube-system" }).map((o) => o.metadata.name), ["b"]);
  assertEquals(s.list("cm", { fieldSelector: "metadata.name!=a" }).map((o) => o.metadata.name), [
    "b",
  ]);
  assertThrows(() => s.list("pods", { fieldSelector: "spec.nope=1" }));
  assertThrows(() => s.resolve("widgets"), RangeError);
});
