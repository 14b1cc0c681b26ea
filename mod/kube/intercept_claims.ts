/**
 * Claims of intercepts, written on the workload with the user's own
 * credentials: the `vif.dev/intercepts` annotation
 * ({@linkcode AGENT_ANNOTATION}). The traffic-manager sends a port's
 * connections to a session only while the workload holds that session's
 * claim, so only someone Kubernetes lets change the workload can intercept
 * it. Writing an annotation changes no pod: nothing rolls out.
 *
 * @module
 */

import {
  AGENT_ANNOTATION,
  type InterceptClaim,
  type InterceptClaims,
  MAX_INTERCEPT_CLAIMS,
  parseInterceptClaims,
} from "./agent_config.ts";
import { type KubeApi, KubeApiError } from "./api.ts";
import { KubeError } from "./errors.ts";
import { type WorkloadKind, workloadPath } from "./workloads.ts";

export type { WorkloadKind };

const PLURAL: Record<WorkloadKind, string> = {
  Deployment: "deployments",
  StatefulSet: "statefulsets",
  ReplicaSet: "replicasets",
};

interface Workload {
  metadata?: { resourceVersion?: string; annotations?: Record<string, string> };
}

/**
 * Writes the session's claim on a port of the workload (replacing an older
 * claim on that port: the manager refuses the port while another live
 * session holds it, whatever the annotation says).
 *
 * @param api the API, with the user's credentials
 * @param target the workload and the container port
 * @param claim the session's claim
 * @returns the claim it replaced, another session's: to put back (with
 *   {@linkcode releaseIntercept}) when the manager refuses this one
 * @throws {KubeError} when the user may not change the workload, or it is gone
 */
export async function claimIntercept(
  api: KubeApi,
  target: { namespace: string; kind: WorkloadKind; name: string; port: number },
  claim: InterceptClaim,
): Promise<InterceptClaim | undefined> {
  let previous: InterceptClaim | undefined;
  await updateClaims(api, target, (claims) => {
    const before = claims[String(target.port)];
    previous = before !== undefined && before.session !== claim.session ? before : undefined;
    claims[String(target.port)] = claim;
    return true;
  });
  return previous;
}

/**
 * Takes the session's claim off a port, if it is still the session's.
 *
 * @param api the API, with the user's credentials
 * @param target the workload and the container port
 * @param session the session's claim hash
 * @param restore the claim to put back in its place (the one it replaced), if any
 * @throws {KubeError} when the user may not change the workload
 */
export async function releaseIntercept(
  api: KubeApi,
  target: { namespace: string; kind: WorkloadKind; name: string; port: number },
  session: string,
  restore?: InterceptClaim,
): Promise<void> {
  await updateClaims(api, target, (claims) => {
    if (claims[String(target.port)]?.session !== session) return false;
    if (restore !== undefined) claims[String(target.port)] = restore;
    else delete claims[String(target.port)];
    return true;
  });
}

async function updateClaims(
  api: KubeApi,
  target: { namespace: string; kind: WorkloadKind; name: string },
  change: (claims: InterceptClaims) => boolean,
): Promise<void> {
  const path = workloadPath(target);
  const what = `${target.kind.toLowerCase()}s "${target.name}" in namespace "${target.namespace}"`;
  if (api.patch === undefined) throw new Error("this API client cannot patch");
  for (let attempt = 0;; attempt++) {
    let workload: Workload;
    try {
      workload = await api.get<Workload>(path);
    } catch (error) {
      throw kubeError(error, "get", what, target);
    }
    const annotations = workload.metadata?.annotations ?? {};
    const claims = parseInterceptClaims(annotations[AGENT_ANNOTATION.intercepts]);
    if (!change(claims)) return;
    const ports = Object.keys(claims);
    if (ports.length > MAX_INTERCEPT_CLAIMS) {
      throw new KubeError(`${what} holds ${ports.length} intercept claims already`, {
        hint: "Leave some intercepts of it (vif leave), then try again.",
      });
    }
    const value = ports.length === 0 ? null : JSON.stringify(claims);
    try {
      await api.patch(path, {
        metadata: {
          // A merge patch with the version read: a change since is a 409, and read again.
          resourceVersion: workload.metadata?.resourceVersion,
          annotations: { [AGENT_ANNOTATION.intercepts]: value },
        },
      });
      return;
    } catch (error) {
      if (error instanceof KubeApiError && error.statusCode === 409 && attempt < 4) continue;
      throw kubeError(error, "patch", what, target);
    }
  }
}

function kubeError(
  error: unknown,
  verb: string,
  what: string,
  target: { namespace: string; kind: WorkloadKind },
): Error {
  if (!(error instanceof KubeApiError)) return error as Error;
  const resource = PLURAL[target.kind];
  if (error.statusCode === 403) {
    return new KubeError(`you may not ${verb} ${what}`, {
      hint:
        `Ask the cluster admin for that (check: kubectl auth can-i ${verb} ${resource} -n ${target.namespace}).`,
      status: 403,
      cause: error,
    });
  }
  if (error.statusCode === 404) {
    return new KubeError(`There are no ${what}`, {
      hint: `Check the name: vif list -n ${target.namespace}.`,
      status: 404,
      cause: error,
    });
  }
  return new KubeError(`Cannot ${verb} ${what}: ${error.message}`, {
    hint: "Check the cluster with `kubectl get` and try again.",
    ...(error.statusCode !== undefined ? { status: error.statusCode } : {}),
    cause: error,
  });
}
