/**
 * A Pod's `status` as the kubelet writes it, from what its containers do:
 * the phase (`getPhase`), the conditions (`PodReadyToStartContainers`,
 * `Initialized`, `Ready`, `ContainersReady`, `PodScheduled`, each keeping
 * its transition time while it stays), `initContainerStatuses` in the
 * spec's order and `containerStatuses` sorted by name, as the kubelet sorts
 * them. Pure.
 *
 * @module
 */

import type { ContainerLifeStatus, RestartPolicy } from "./_container.ts";

/** One container as the status shows it. */
export interface ContainerView {
  name: string;
  image: string;
  /** Its life's status; a container not started yet is waiting with no container id. */
  status: ContainerLifeStatus | { state: { waiting: { reason: string; message?: string } } };
}

/** What a pod's status is made from. */
export interface PodStatusInput {
  /** The status stored now (its start time, its conditions' transition times). */
  old: Record<string, unknown>;
  /** The pod's and its node's addresses, once its network exists. */
  network?: { podIP: string; hostIP: string } | undefined;
  /** Every init container, in the spec's order. */
  init: ContainerView[];
  /** Every app container. */
  app: ContainerView[];
  restartPolicy: RestartPolicy;
  now: Date;
}

type Condition = {
  type: string;
  status: string;
  reason?: string;
  message?: string;
  lastProbeTime: null;
  lastTransitionTime: string;
};

function rfc3339(d: Date): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

function state(v: ContainerView): Record<string, Record<string, unknown>> {
  return v.status.state as Record<string, Record<string, unknown>>;
}

function lastTerminated(v: ContainerView): Record<string, unknown> | undefined {
  return ("lastState" in v.status
    ? v.status.lastState as Record<string, Record<string, unknown>>
    : {})
    .terminated;
}

/** Whether every init container has ended with 0 (a pod without any is initialized). */
export function initialized(init: readonly ContainerView[]): boolean {
  return init.every((v) => state(v).terminated?.exitCode === 0);
}

/**
 * The pod's phase, as the kubelet's `getPhase` decides it.
 *
 * @param input the containers and the restart policy
 * @returns `Pending`, `Running`, `Succeeded` or `Failed`
 */
export function podPhase(input: Pick<PodStatusInput, "init" | "app" | "restartPolicy">): string {
  let pendingInit = 0, failedInit = 0;
  for (const v of input.init) {
    const s = state(v);
    if (s.running) pendingInit++;
    else if (s.terminated) {
      if (s.terminated.exitCode !== 0) failedInit++;
    } else {
      const last = lastTerminated(v);
      if (last && last.exitCode !== 0) failedInit++;
      else if (!last) pendingInit++;
    }
  }
  if (failedInit > 0 && input.restartPolicy === "Never") return "Failed";
  if (!initialized(input.init)) return "Pending";
  let running = 0, waiting = 0, stopped = 0, succeeded = 0;
  for (const v of input.app) {
    const s = state(v);
    if (s.running) running++;
    else if (s.terminated) {
      stopped++;
      if (s.terminated.exitCode === 0) succeeded++;
    } else if (lastTerminated(v)) stopped++;
    else waiting++;
  }
  if (waiting > 0 || pendingInit > 0) return "Pending";
  if (running > 0) return "Running";
  if (stopped > 0) {
    if (input.restartPolicy === "Always") return "Running";
    if (stopped === succeeded) return "Succeeded";
    if (input.restartPolicy === "Never") return "Failed";
    return "Running";
  }
  return "Pending";
}

function containerStatus(v: ContainerView): Record<string, unknown> {
  const s = v.status;
  if (!("containerID" in s)) {
    return {
      name: v.name,
      image: v.image,
      imageID: "",
      ready: false,
      restartCount: 0,
      started: false,
      state: structuredClone(s.state),
      lastState: {},
    };
  }
  return {
    name: v.name,
    image: v.image,
    imageID: `sim://sha256:${"0".repeat(64)}`,
    containerID: s.containerID,
    ready: s.ready,
    started: s.started,
    restartCount: s.restartCount,
    state: structuredClone(s.state),
    lastState: structuredClone(s.lastState),
  };
}

/**
 * The Pod's status.
 *
 * @param input the containers, the network, the stored status, now
 * @returns the status to store
 */
export function podStatus(input: PodStatusInput): Record<string, unknown> {
  const phase = podPhase(input);
  const old = (input.old.conditions ?? []) as Condition[];
  const now = rfc3339(input.now);
  const condition = (type: string, ok: boolean, reason?: string, message?: string): Condition => {
    const status = ok ? "True" : "False";
    const was = old.find((c) => c.type === type);
    return {
      type,
      status,
      ...(reason ? { reason } : {}),
      ...(message ? { message } : {}),
      lastProbeTime: null,
      lastTransitionTime: was?.status === status && was.lastTransitionTime
        ? was.lastTransitionTime
        : now,
    };
  };
  const done = phase === "Succeeded" || phase === "Failed";
  const incomplete = input.init.filter((v) => state(v).terminated?.exitCode !== 0)
    .map((v) => v.name);
  const unready = input.app.filter((v) => !("ready" in v.status && v.status.ready))
    .map((v) => v.name);
  const ready = unready.length === 0;
  const why = (names: string[], what: string) =>
    done ? ["PodCompleted", undefined] as const : [
      what === "incomplete" ? "ContainersNotInitialized" : "ContainersNotReady",
      `containers with ${what} status: [${names.join(" ")}]`,
    ] as const;
  const [initReason, initMessage] = incomplete.length ? why(incomplete, "incomplete") : [];
  const [readyReason, readyMessage] = !ready || done ? why(unready, "unready") : [];
  const sorted = [...input.app].sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
  const net = input.network;
  return {
    phase,
    conditions: [
      condition("PodReadyToStartContainers", net !== undefined),
      condition("Initialized", incomplete.length === 0, initReason, initMessage),
      condition("Ready", ready && !done, readyReason, readyMessage),
      condition("ContainersReady", ready && !done, readyReason, readyMessage),
      condition("PodScheduled", true),
    ],
    ...(net
      ? {
        hostIP: net.hostIP,
        hostIPs: [{ ip: net.hostIP }],
        podIP: net.podIP,
        podIPs: [{ ip: net.podIP }],
      }
      : {}),
    qosClass: "Burstable",
    startTime: (input.old.startTime as string | undefined) ?? now,
    ...(input.init.length ? { initContainerStatuses: input.init.map(containerStatus) } : {}),
    containerStatuses: sorted.map(containerStatus),
  };
}
