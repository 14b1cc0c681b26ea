/**
 * Server-side printing as kube-apiserver's printers do it, for the rows
 * `kubectl get` shows: a pod's READY and STATUS through its init
 * containers (`Init:1/2`, `Init:Error`, `Init:CrashLoopBackOff`), its
 * RESTARTS with the time of the last one, and the ReplicaSet and
 * StatefulSet columns.
 *
 * @module
 */

import { assertEquals } from "../../_assert.ts";
import { toTable } from "./_table.ts";
import { findResource } from "./resources.ts";
import type { KubeObject } from "./store.ts";

const now = new Date("2025-06-01T12:00:00Z");

function cells(kind: string, o: Record<string, unknown>): unknown[] {
  const table = toTable(findResource(kind)!, [{
    metadata: { name: "x", creationTimestamp: "2025-06-01T11:59:00Z" },
    ...o,
  } as KubeObject], { apiVersion: "meta.k8s.io/v1", includeObject: "None", metadata: {}, now });
  return (table.rows as Array<{ cells: unknown[] }>)[0]!.cells;
}

function pod(initStates: unknown[], appStates: unknown[], extra: Record<string, unknown> = {}) {
  return {
    spec: {
      initContainers: initStates.map((_, i) => ({ name: `i${i}` })),
      containers: appStates.map((_, i) => ({ name: `c${i}` })),
    },
    status: {
      phase: "Pending",
      initContainerStatuses: initStates.map((state, i) => ({
        name: `i${i}`,
        restartCount: 0,
        state,
      })),
      containerStatuses: appStates.map((state, i) => ({
        name: `c${i}`,
        restartCount: 0,
        ready: "running" in (state as object),
        state,
      })),
      ...extra,
    },
  };
}

const done = { terminated: { exitCode: 0, reason: "Completed" } };
const init = { waiting: { reason: "PodInitializing" } };

Deno.test("toTable() prints a pod's init progress and failures as kubectl shows them", () => {
  const row = (p: Record<string, unknown>) => cells("Pod", p).slice(1, 4);
  assertEquals(row(pod([{ running: {} }], [init])), ["0/1", "Init:0/1", "0"]);
  assertEquals(row(pod([done, init], [init, init])), ["0/2", "Init:1/2", "0"]);
  assertEquals(row(pod([{ terminated: { exitCode: 3, reason: "Error" } }], [init])), [
    "0/1",
    "Init:Error",
    "0",
  ]);
  const looping = pod([{ waiting: { reason: "CrashLoopBackOff" } }], [init]);
  (looping.status.initContainerStatuses[0] as Record<string, unknown>).restartCount = 2;
  (looping.status.initContainerStatuses[0] as Record<string, unknown>).lastState = {
    terminated: { exitCode: 1, finishedAt: "2025-06-01T11:59:50Z" },
  };
  assertEquals(row(looping), ["0/1", "Init:CrashLoopBackOff", "2 (10s ago)"]);
  const up = pod([done], [{ running: {} }, { running: {} }], {
    phase: "Running",
    conditions: [{ type: "Initialized", status: "True" }, { type: "Ready", status: "True" }],
  });
  assertEquals(row(up), ["2/2", "Running", "0"]);
  const half = pod([], [{ running: {} }, { waiting: { reason: "CreateContainerConfigError" } }]);
  assertEquals(row(half), ["1/2", "CreateContainerConfigError", "0"]);
});

Deno.test("toTable() prints ReplicaSets and StatefulSets with the real columns", () => {
  const template = {
    spec: { containers: [{ name: "web", image: "nginx:1" }, { name: "agent", image: "vif:1" }] },
  };
  assertEquals(
    cells("ReplicaSet", {
      spec: { replicas: 3, selector: { matchLabels: { app: "web" } }, template },
      status: { replicas: 3, readyReplicas: 2 },
    }),
    ["x", 3, 3, 2, "60s", "web,agent", "nginx:1,vif:1", "app=web"],
  );
  assertEquals(
    cells("StatefulSet", { spec: { replicas: 2, template }, status: { readyReplicas: 1 } }),
    ["x", "1/2", "60s", "web,agent", "nginx:1,vif:1"],
  );
});
