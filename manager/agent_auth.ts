/**
 * Who a traffic-agent is. Every call on the agent listener carries the
 * agent's projected service-account token (audience
 * {@linkcode AGENT_TOKEN_AUDIENCE}); the manager asks the API server about it
 * with a TokenReview, which says the service account and, for a token bound
 * to a pod, the pod's name and uid. Then the pod itself is read: the agent's
 * claims (its IP, its workload) must be the pod's, and the pod must carry
 * the agent's container, so that no other pod, even one in the same
 * namespace with a token of the right audience, can pass for an agent of a
 * workload and be sent its intercepted traffic, DNS or files.
 *
 * Answers are kept a short while (bounded in number), and the reviews in
 * flight are bounded, so a flood of made-up tokens costs the API server a
 * bounded rate.
 *
 * @module
 */

import { createHash } from "node:crypto";
import {
  AppsV1Api,
  AuthenticationV1Api,
  CoreV1Api,
  type KubeConfig,
  type V1Pod,
} from "@kubernetes/client-node";
import { AGENT_CONTAINER, AGENT_TOKEN_AUDIENCE } from "../mod/kube/agent_config.ts";
import { callOptions, describeFailure, withTimeout } from "../mod/kube/informer.ts";

/** Who a token says the agent is. */
export interface AgentIdentity {
  /** `system:serviceaccount:NS:NAME`. */
  username: string;
  /** The service account's namespace. */
  namespace: string;
  /** The pod the token is bound to. */
  podName: string;
  /** Its uid. */
  podUid: string;
}

/** What an agent claims when it arrives, to be checked against its pod. */
export interface AgentClaims {
  podName: string;
  namespace: string;
  podIp: string;
  workloadKind: string;
  workloadName: string;
}

/** A token or a claim the manager does not accept: the message says why, for the agent's log. */
export class AgentAuthError extends Error {
  /** Whether the API server could not be asked (the agent should retry), rather than said no. */
  readonly unavailable: boolean;

  /**
   * @param message why
   * @param unavailable the API could not be asked
   */
  constructor(message: string, unavailable = false) {
    super(message);
    this.name = "AgentAuthError";
    this.unavailable = unavailable;
  }
}

/** Checks agents: see the module documentation. */
export interface AgentAuthenticator {
  /**
   * Who the token is.
   *
   * @param token the bearer token
   * @returns the identity
   * @throws {AgentAuthError} when the token is not an agent's
   */
  authenticate(token: string): Promise<AgentIdentity>;
  /**
   * Checks an arriving agent's claims against its pod.
   *
   * @param identity who the token is
   * @param claims what the agent says
   * @throws {AgentAuthError} when they do not match
   */
  verify(identity: AgentIdentity, claims: AgentClaims): Promise<void>;
}

/** How long an answer about a token is kept, in ms. */
const CACHE_MS = 60_000;
/** The most answers kept. */
const CACHE_SIZE = 4096;
/** The most reviews asked at once; more wait for one to end, then fail. */
const MAX_IN_FLIGHT = 16;
/** A token longer than this is not a service-account token. */
const MAX_TOKEN_LENGTH = 16 * 1024;
/** The limit of each API call, in ms. */
const REQUEST_TIMEOUT_MS = 10_000;

const SERVICE_ACCOUNT_USER = /^system:serviceaccount:([a-z0-9-]{1,63}):([a-z0-9.-]{1,253})$/;

/**
 * The authenticator that asks the API server (TokenReview, then the pod and
 * its owners), with the manager's service account.
 *
 * @param kubeConfig the manager's client configuration
 * @param now the clock, in ms
 * @returns the authenticator
 */
export function kubeAgentAuthenticator(
  kubeConfig: KubeConfig,
  now: () => number = Date.now,
): AgentAuthenticator {
  const reviews = kubeConfig.makeApiClient(AuthenticationV1Api);
  const core = kubeConfig.makeApiClient(CoreV1Api);
  const apps = kubeConfig.makeApiClient(AppsV1Api);
  const cache = new Map<string, { at: number; identity?: AgentIdentity; error?: string }>();
  let inFlight = 0;
  const never = new AbortController().signal;
  const call = <T>(fn: (options: ReturnType<typeof callOptions>) => Promise<T>) =>
    withTimeout(REQUEST_TIMEOUT_MS, never, (signal) => fn(callOptions(signal)));

  async function review(token: string): Promise<AgentIdentity> {
    if (inFlight >= MAX_IN_FLIGHT) {
      throw new AgentAuthError("the traffic-manager is checking too many tokens: retry", true);
    }
    inFlight++;
    let status;
    try {
      const answer = await call((o) =>
        reviews.createTokenReview({
          body: {
            apiVersion: "authentication.k8s.io/v1",
            kind: "TokenReview",
            spec: { token, audiences: [AGENT_TOKEN_AUDIENCE] },
          },
        }, o)
      );
      status = answer.status;
    } catch (error) {
      throw new AgentAuthError(
        `cannot check the token with the API server: ${describeFailure(error).message}`,
        true,
      );
    } finally {
      inFlight--;
    }
    if (!status?.authenticated) {
      throw new AgentAuthError(`the token was refused: ${status?.error || "not authenticated"}`);
    }
    if (!(status.audiences ?? []).includes(AGENT_TOKEN_AUDIENCE)) {
      throw new AgentAuthError(`the token is not for audience "${AGENT_TOKEN_AUDIENCE}"`);
    }
    const username = status.user?.username ?? "";
    const match = SERVICE_ACCOUNT_USER.exec(username);
    if (match === null) {
      throw new AgentAuthError(`"${username.slice(0, 128)}" is not a service account`);
    }
    const extra = status.user?.extra ?? {};
    const podName = extra["authentication.kubernetes.io/pod-name"]?.[0] ?? "";
    const podUid = extra["authentication.kubernetes.io/pod-uid"]?.[0] ?? "";
    if (podName === "" || podUid === "") {
      throw new AgentAuthError("the token is not bound to a pod (use a projected token)");
    }
    return { username, namespace: match[1]!, podName, podUid };
  }

  return {
    async authenticate(token) {
      if (token === "" || token.length > MAX_TOKEN_LENGTH || /\s/.test(token)) {
        throw new AgentAuthError("no bearer token, or not one a service account has");
      }
      const key = createHash("sha256").update(token).digest("hex");
      const t = now();
      const known = cache.get(key);
      if (known !== undefined && t - known.at < CACHE_MS) {
        if (known.identity) return known.identity;
        throw new AgentAuthError(known.error!);
      }
      try {
        const identity = await review(token);
        remember(key, { at: t, identity });
        return identity;
      } catch (error) {
        const e = error as AgentAuthError;
        // A refusal is remembered too (a flood of one bad token asks once); an outage is not.
        if (!e.unavailable) remember(key, { at: t, error: e.message });
        throw error;
      }
    },

    async verify(identity, claims) {
      if (claims.namespace !== identity.namespace || claims.podName !== identity.podName) {
        throw new AgentAuthError(
          `the agent says it is pod ${claims.namespace}/${claims.podName}, ` +
            `its token is pod ${identity.namespace}/${identity.podName}`,
        );
      }
      let pod: V1Pod;
      try {
        pod = await call((o) =>
          core.readNamespacedPod({ namespace: identity.namespace, name: identity.podName }, o)
        );
      } catch (error) {
        const failure = describeFailure(error);
        throw new AgentAuthError(
          `cannot read pod ${identity.namespace}/${identity.podName}: ${failure.message}`,
          failure.code === undefined || failure.code >= 500 || failure.code === 429,
        );
      }
      if (pod.metadata?.uid !== identity.podUid) {
        throw new AgentAuthError(`pod ${identity.podName} is not the one the token was made for`);
      }
      const ips = (pod.status?.podIPs ?? []).map((p) => p.ip).concat(pod.status?.podIP ?? []);
      if (!ips.includes(claims.podIp)) {
        throw new AgentAuthError(`pod ${identity.podName} does not have IP ${claims.podIp}`);
      }
      if (!(pod.spec?.containers ?? []).some((c) => c.name === AGENT_CONTAINER)) {
        throw new AgentAuthError(`pod ${identity.podName} has no ${AGENT_CONTAINER} container`);
      }
      const owner = await ownerWorkload(pod);
      if (owner.kind !== claims.workloadKind || owner.name !== claims.workloadName) {
        throw new AgentAuthError(
          `pod ${identity.podName} belongs to ${owner.kind} ${owner.name}, ` +
            `not ${claims.workloadKind} ${claims.workloadName}`,
        );
      }
    },
  };

  function remember(key: string, entry: { at: number; identity?: AgentIdentity; error?: string }) {
    if (cache.size >= CACHE_SIZE) {
      // The oldest entry goes (a Map keeps insertion order).
      cache.delete(cache.keys().next().value!);
    }
    cache.set(key, entry);
  }

  /** The workload a pod belongs to: its controller, or the ReplicaSet's Deployment. */
  async function ownerWorkload(pod: V1Pod): Promise<{ kind: string; name: string }> {
    const controller = pod.metadata?.ownerReferences?.find((o) => o.controller);
    if (controller === undefined) return { kind: "Pod", name: pod.metadata?.name ?? "" };
    if (controller.kind !== "ReplicaSet") return { kind: controller.kind, name: controller.name };
    try {
      const rs = await call((o) =>
        apps.readNamespacedReplicaSet(
          { namespace: pod.metadata!.namespace!, name: controller.name },
          o,
        )
      );
      const up = rs.metadata?.ownerReferences?.find((o) => o.controller);
      return up?.kind === "Deployment"
        ? { kind: "Deployment", name: up.name }
        : { kind: "ReplicaSet", name: controller.name };
    } catch (error) {
      throw new AgentAuthError(
        `cannot read ReplicaSet ${controller.name}: ${describeFailure(error).message}`,
        true,
      );
    }
  }
}
