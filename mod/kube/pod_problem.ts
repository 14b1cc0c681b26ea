/**
 * Why a pod is not ready, said as a person would check it with `kubectl
 * describe`: for the rollouts vif waits on (the agent's, the traffic-manager's).
 *
 * @module
 */

import type { V1Pod } from "@kubernetes/client-node";

/** A pod's trouble: what to print, and what to do. */
export interface PodProblem {
  /** `container "vif-agent" cannot pull image "…": ImagePullBackOff`. */
  text: string;
  /** What to do. */
  hint: string;
}

/**
 * Why a pod is not ready, from its status: not scheduled (with the
 * scheduler's reason), an init container that failed or waits, a container
 * that cannot pull its image, crashes (with the last exit), waits for another
 * reason, or runs without being ready. Pure.
 *
 * @param pod the pod
 * @returns the trouble, or undefined when the pod is ready or has none to tell
 *
 * @example
 * ```ts
 * import { podProblem } from "./pod_problem.ts";
 *
 * const problem = podProblem({
 *   metadata: { name: "web-1", namespace: "default" },
 *   spec: { containers: [{ name: "vif-agent", image: "ghcr.io/vif-dev/vif:0.1.0" }] },
 *   status: { phase: "Pending", containerStatuses: [{
 *     name: "vif-agent", image: "ghcr.io/vif-dev/vif:0.1.0", imageID: "", ready: false, restartCount: 0,
 *     state: { waiting: { reason: "ImagePullBackOff", message: "Back-off pulling image" } },
 *   }] },
 * });
 * if (!problem?.text.includes("ImagePullBackOff")) throw new Error(problem?.text);
 * ```
 */
export function podProblem(pod: V1Pod): PodProblem | undefined {
  const name = pod.metadata?.name ?? "";
  const ns = pod.metadata?.namespace ?? "";
  const describePod = `See "kubectl describe pod ${name} -n ${ns}".`;
  const status = pod.status;
  if (!status) return undefined;
  const scheduled = status.conditions?.find((c) => c.type === "PodScheduled");
  if (scheduled?.status === "False") {
    return {
      text: `Pending: ${scheduled.reason ?? "not scheduled"}${
        scheduled.message ? `: ${scheduled.message}` : ""
      }`,
      hint: "The cluster has no room for the pod with the agent: free resources or add a node. " +
        describePod,
    };
  }
  const images = new Map<string, string>();
  for (const c of [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])]) {
    if (c.image) images.set(c.name, c.image);
  }
  const look = (
    s: NonNullable<NonNullable<V1Pod["status"]>["containerStatuses"]>[number],
    init: boolean,
  ) => {
    const what = `${init ? "init container" : "container"} "${s.name}"`;
    const waiting = s.state?.waiting;
    const terminated = s.state?.terminated;
    const lastExit = s.lastState?.terminated;
    const image = images.get(s.name) ?? s.image;
    if (
      waiting?.reason === "ImagePullBackOff" || waiting?.reason === "ErrImagePull" ||
      waiting?.reason === "InvalidImageName"
    ) {
      return {
        text: `${what} cannot pull image "${image}": ${waiting.reason}${
          waiting.message ? `: ${waiting.message}` : ""
        }`,
        hint:
          `Check that the cluster can pull "${image}" (a private registry needs an imagePullSecret). ` +
          describePod,
      };
    }
    if (
      waiting?.reason === "CrashLoopBackOff" || (init && terminated && terminated.exitCode !== 0)
    ) {
      const exit = terminated ?? lastExit;
      const how = exit
        ? `exit code ${exit.exitCode}${exit.reason ? ` (${exit.reason})` : ""}${
          exit.message ? `: ${exit.message.trim().split("\n").at(-1)}` : ""
        }`
        : "no exit recorded";
      return {
        text: init
          ? `${what} failed: ${how}${waiting?.reason ? `, ${waiting.reason}` : ""}`
          : `${what} keeps crashing (CrashLoopBackOff): last ${how}`,
        hint: `See why with "kubectl logs ${name} -n ${ns} -c ${s.name} --previous".`,
      };
    }
    if (
      waiting?.reason && waiting.reason !== "PodInitializing" &&
      waiting.reason !== "ContainerCreating"
    ) {
      return {
        text: `${what} is waiting: ${waiting.reason}${
          waiting.message ? `: ${waiting.message}` : ""
        }`,
        hint: describePod,
      };
    }
    if (!init && s.state?.running && !s.ready) {
      return { text: `${what} is running but not ready`, hint: describePod };
    }
    return undefined;
  };
  // A container that waits or failed tells more than one that runs unready.
  const found = [
    ...(status.initContainerStatuses ?? []).map((s) => look(s, true)),
    ...(status.containerStatuses ?? []).map((s) => look(s, false)),
  ].filter((p) => p !== undefined);
  const telling = found.find((p) => !p.text.endsWith("is running but not ready"));
  if (telling ?? found[0]) return telling ?? found[0];
  if (status.phase === "Failed") {
    return {
      text: `Failed${status.reason ? `: ${status.reason}` : ""}${
        status.message ? `: ${status.message}` : ""
      }`,
      hint: describePod,
    };
  }
  return undefined;
}
