/**
 * A pod's status as the simulated kubelet writes it from its containers:
 * the phase through initialization, running, failing and finishing, the
 * conditions with the kubelet's reasons, and the order of the statuses.
 *
 * @module
 */

import { assertEquals } from "../_assert.ts";
import { type ContainerView, podPhase, podStatus } from "./_pod_status.ts";

const at = "2025-06-01T12:00:00Z";
const running = (name: string, ready = true): ContainerView => ({
  name,
  image: "x",
  status: {
    ready,
    started: true,
    restartCount: 0,
    containerID: `sim://${name}`,
    state: { running: { startedAt: at } },
    lastState: {},
  },
});
const waiting = (name: string, reason = "PodInitializing"): ContainerView => ({
  name,
  image: "x",
  status: { state: { waiting: { reason } } },
});
const ended = (name: string, exitCode: number): ContainerView => ({
  name,
  image: "x",
  status: {
    ready: exitCode === 0,
    started: false,
    restartCount: 0,
    containerID: `sim://${name}`,
    state: {
      terminated: {
        exitCode,
        reason: exitCode === 0 ? "Completed" : "Error",
        startedAt: at,
        finishedAt: at,
        containerID: `sim://${name}`,
      },
    },
    lastState: {},
  },
});

Deno.test("podPhase() follows the kubelet's getPhase through init, run and end", () => {
  const p = (init: ContainerView[], app: ContainerView[], restartPolicy = "Always" as const) =>
    podPhase({ init, app, restartPolicy });
  assertEquals(p([running("init")], [waiting("app")]), "Pending");
  assertEquals(
    p([ended("init", 0)], [running("app"), waiting("side", "ContainerCreating")]),
    "Pending",
  );
  assertEquals(p([ended("init", 0)], [running("app"), running("side")]), "Running");
  assertEquals(p([ended("init", 1)], [waiting("app")]), "Pending");
  assertEquals(
    podPhase({ init: [ended("init", 1)], app: [waiting("app")], restartPolicy: "Never" }),
    "Failed",
  );
  assertEquals(
    podPhase({ init: [], app: [ended("a", 0), ended("b", 0)], restartPolicy: "Never" }),
    "Succeeded",
  );
  assertEquals(
    podPhase({ init: [], app: [ended("a", 0), ended("b", 2)], restartPolicy: "Never" }),
    "Failed",
  );
});

Deno.test("podStatus() writes the conditions with reasons and sorts the app containers by name", () => {
  const initializing = podStatus({
    old: {},
    network: { podIP: "198.18.0.3", hostIP: "198.19.200.1" },
    init: [ended("setup", 0), running("nft", false)],
    app: [waiting("web"), waiting("agent")],
    restartPolicy: "Always",
    now: new Date(at),
  });
  const conditions = initializing.conditions as Array<Record<string, string>>;
  const initialized = conditions.find((c) => c.type === "Initialized")!;
  assertEquals([initialized.status, initialized.reason, initialized.message], [
    "False",
    "ContainersNotInitialized",
    "containers with incomplete status: [nft]",
  ]);
  const ready = conditions.find((c) => c.type === "Ready")!;
  assertEquals(ready.message, "containers with unready status: [web agent]");
  assertEquals(
    (initializing.containerStatuses as Array<{ name: string }>).map((s) => s.name),
    ["agent", "web"],
  );
  assertEquals(
    (initializing.initContainerStatuses as Array<{ name: string; ready: boolean }>).map((
      s,
    ) => [s.name, s.ready]),
    [["setup", true], ["nft", false]],
  );
  const up = podStatus({
    old: initializing,
    network: { podIP: "198.18.0.3", hostIP: "198.19.200.1" },
    init: [ended("setup", 0), ended("nft", 0)],
    app: [running("web"), running("agent")],
    restartPolicy: "Always",
    now: new Date("2025-06-01T12:01:00Z"),
  });
  assertEquals(up.phase, "Running");
  const after = up.conditions as Array<Record<string, string>>;
  assertEquals(after.map((c) => [c.type, c.status]), [
    ["PodReadyToStartContainers", "True"],
    ["Initialized", "True"],
    ["Ready", "True"],
    ["ContainersReady", "True"],
    ["PodScheduled", "True"],
  ]);
  // A condition that stays keeps its transition time; one that changes gets now.
  assertEquals(after[0]!.lastTransitionTime, at);
  assertEquals(after[2]!.lastTransitionTime, "2025-06-01T12:01:00Z");
  assertEquals(up.startTime, at);
});
