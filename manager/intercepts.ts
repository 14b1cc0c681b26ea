/**
 * The manager's half of intercepts (DESIGN.md §10): the `Agent` service on
 * the agent listener (arrival, heartbeats, the intercepts each agent serves,
 * the agent's `AgentMux` call), the intercept calls of the `Manager` service
 * (`CreateIntercept`, `RemoveIntercept`, `ListAgents`), and the routing
 * between the two kinds of calls:
 *
 * ```
 *   agent ──OPEN intercepted (tag: id)──► manager ──OPEN intercepted──► holding session's Mux ──► daemon ──► 127.0.0.1:LOCAL
 *   daemon ──OPEN sftp (tag: id)────────► manager ──OPEN sftp─────────► one of the workload's agents ──► sftp-server
 *   daemon ──DNS──► manager ──DNS──► the intercepted workload's agent (the pod's resolver), else the cluster's DNS server
 * ```
 *
 * Each pair of flows is spliced (`mod/rpc/mux_splice.ts`): the same credit
 * and bounds as every flow, hop by hop.
 *
 * Who may do what: an agent is who its projected token and its pod say it is
 * (`agent_auth.ts`); a session may intercept a port of a workload only when
 * the workload's `vif.dev/intercepts` annotation (which only those allowed
 * to change the workload can write) holds its claim.
 *
 * @module
 */

import { createHash } from "node:crypto";
import {
  type Metadata,
  type sendUnaryData,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type ServerWritableStream,
  status,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { AppsV1Api, type KubeConfig, type V1ObjectMeta } from "@kubernetes/client-node";
import {
  AGENT_ANNOTATION,
  type InterceptClaims,
  parseInterceptClaims,
} from "../mod/kube/agent_config.ts";
import { callOptions, describeFailure, withTimeout } from "../mod/kube/informer.ts";
import { FLOW_WINDOW, MuxProtocol, type OpenFrame } from "../mod/rpc/mux.ts";
import { type Accepted, MuxEnd } from "../mod/rpc/mux_end.ts";
import { spliceFlows } from "../mod/rpc/mux_splice.ts";
import {
  type AgentArriveRequest,
  AgentArriveResponseSchema,
  type AgentIntercepts,
  AgentInterceptsSchema,
  AgentListSchema,
  type AgentRef,
  create,
  type CreateInterceptRequest,
  DepartResponseSchema,
  DialResult_Code,
  type InterceptRef,
  type ListAgentsRequest,
  RemainResponseSchema,
  RemoveInterceptResponseSchema,
} from "../mod/rpc/service.ts";
import { AGENT_ID_HEADER } from "../mod/rpc/service.ts";
import { type AgentAuthenticator, AgentAuthError, type AgentIdentity } from "./agent_auth.ts";
import {
  type Agent,
  AgentRegistry,
  AgentReportError,
  type Intercept,
  MAX_INTERCEPTS_PER_SESSION,
} from "./agents.ts";
import type { Admission } from "./limits.ts";
import type { Session, SessionTable } from "./sessions.ts";
import type { ManagerStats } from "./stats.ts";

/** Reads a workload's intercept claims (its `vif.dev/intercepts` annotation). */
export interface ClaimReader {
  /**
   * @param namespace the workload's namespace
   * @param kind Deployment, StatefulSet or ReplicaSet
   * @param name its name
   * @returns its claims (none when it has no annotation)
   * @throws {Error} when it cannot be read (the message says why)
   */
  claims(namespace: string, kind: string, name: string): Promise<InterceptClaims>;
}

/**
 * The claim reader that asks the API server, with the manager's service
 * account (`get` on the workloads).
 *
 * @param kubeConfig the manager's client configuration
 * @returns the reader
 */
export function kubeClaimReader(kubeConfig: KubeConfig): ClaimReader {
  const apps = kubeConfig.makeApiClient(AppsV1Api);
  const never = new AbortController().signal;
  return {
    async claims(namespace, kind, name) {
      const read = (signal: AbortSignal): Promise<{ metadata?: V1ObjectMeta }> => {
        const o = callOptions(signal);
        switch (kind) {
          case "Deployment":
            return apps.readNamespacedDeployment({ namespace, name }, o);
          case "StatefulSet":
            return apps.readNamespacedStatefulSet({ namespace, name }, o);
          case "ReplicaSet":
            return apps.readNamespacedReplicaSet({ namespace, name }, o);
          default:
            throw new Error(`"${kind}" is not a workload kind vif intercepts`);
        }
      };
      try {
        const workload = await withTimeout(10_000, never, read);
        return parseInterceptClaims(workload.metadata?.annotations?.[AGENT_ANNOTATION.intercepts]);
      } catch (error) {
        throw new Error(
          `cannot read ${kind} ${namespace}/${name}: ${describeFailure(error).message}`,
        );
      }
    },
  };
}

/**
 * The hex SHA-256 of a session id: what a claim names (the id itself lets
 * whoever has it use the session, and the workload is readable by many).
 *
 * @param sessionId the id
 * @returns its hash
 */
export function sessionClaimHash(sessionId: string): string {
  return createHash("sha256").update(sessionId).digest("hex");
}

/** What the intercept side of the manager needs. */
export interface InterceptContext {
  sessions: SessionTable;
  registry: AgentRegistry;
  auth: AgentAuthenticator | undefined;
  claims: ClaimReader | undefined;
  admission: Admission;
  stats: ManagerStats;
  heartbeatIntervalMs: number;
  log: (line: string) => void;
  /** Every call open, to end them when the manager stops. */
  open: Set<{ abort(reason: string): void }>;
}

/** How long a DNS query through an agent may take before the cluster's DNS server is asked. */
const AGENT_DNS_TIMEOUT_MS = 3000;
/** The most `WatchIntercepts` streams one agent holds. */
const MAX_WATCHES_PER_AGENT = 4;

const NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;

// --- the Agent service ---------------------------------------------------------

/**
 * The `Agent` service's implementation: every call is authenticated first.
 *
 * @param context the registry, the authenticator, the limits
 * @returns the grpc-js implementation
 */
export function agentImplementation(context: InterceptContext): UntypedServiceImplementation {
  const { registry } = context;
  const unauthenticated = (error: unknown) => ({
    code: error instanceof AgentAuthError && error.unavailable
      ? status.UNAVAILABLE
      : status.UNAUTHENTICATED,
    details: `the traffic-manager does not accept this agent: ${(error as Error).message}`,
  });
  const who = async (metadata: Metadata): Promise<AgentIdentity> => {
    if (context.auth === undefined) {
      throw new AgentAuthError("the traffic-manager has no Kubernetes access to check agents");
    }
    const header = String(metadata.get("authorization")[0] ?? "");
    const token = /^Bearer (\S+)$/i.exec(header)?.[1] ?? "";
    return await context.auth.authenticate(token);
  };
  /** The agent of the call's reference, if its token is that agent's pod. */
  const agentOf = async (metadata: Metadata, id: string): Promise<Agent> => {
    const identity = await who(metadata);
    const agent = registry.get(id);
    if (agent === undefined || agent.identity.podUid !== identity.podUid) {
      throw new NoAgent(id);
    }
    return agent;
  };
  const fail = (error: unknown) =>
    error instanceof NoAgent
      ? { code: status.NOT_FOUND, details: error.message }
      : unauthenticated(error);

  return {
    async arriveAgent(
      call: ServerUnaryCall<AgentArriveRequest, unknown>,
      callback: sendUnaryData<unknown>,
    ) {
      let identity: AgentIdentity;
      try {
        identity = await who(call.metadata);
        await context.auth!.verify(identity, {
          podName: call.request.podName,
          namespace: call.request.namespace,
          podIp: call.request.podIp,
          workloadKind: call.request.workloadKind,
          workloadName: call.request.workloadName,
        });
      } catch (error) {
        context.log(`manager: an agent was refused: ${(error as Error).message}`);
        return callback(unauthenticated(error));
      }
      try {
        const agent = registry.arrive(identity, call.request);
        callback(
          null,
          create(AgentArriveResponseSchema, {
            agentId: agent.id,
            heartbeatIntervalMs: context.heartbeatIntervalMs,
            agentTtlMs: registry.ttlMs,
          }),
        );
      } catch (error) {
        if (!(error instanceof AgentReportError)) throw error;
        callback({
          code: status.INVALID_ARGUMENT,
          details: `the agent's report cannot be used: ${error.message}`,
        });
      }
    },

    async watchIntercepts(call: ServerWritableStream<AgentRef, AgentIntercepts>) {
      let agent: Agent;
      try {
        agent = await agentOf(call.metadata, call.request.agentId);
      } catch (error) {
        call.emit("error", fail(error));
        return;
      }
      if (agent.watchers.size >= MAX_WATCHES_PER_AGENT) {
        call.emit("error", {
          code: status.RESOURCE_EXHAUSTED,
          details: `the agent watches ${MAX_WATCHES_PER_AGENT} times already`,
        });
        return;
      }
      const send = (intercepts: AgentIntercepts["intercepts"]) =>
        call.write(create(AgentInterceptsSchema, { intercepts }));
      agent.watchers.add(send);
      const end = (reason: string) => {
        agent.watchers.delete(send);
        agent.closers.delete(end);
        if (!call.cancelled) call.emit("error", { code: status.NOT_FOUND, details: reason });
      };
      agent.closers.add(end);
      call.on("cancelled", () => {
        agent.watchers.delete(send);
        agent.closers.delete(end);
      });
      send(registry.activeFor(agent));
    },

    async remainAgent(call: ServerUnaryCall<AgentRef, unknown>, callback: sendUnaryData<unknown>) {
      try {
        await agentOf(call.metadata, call.request.agentId);
      } catch (error) {
        return callback(fail(error));
      }
      registry.remain(call.request.agentId);
      callback(null, create(RemainResponseSchema, {}));
    },

    async departAgent(call: ServerUnaryCall<AgentRef, unknown>, callback: sendUnaryData<unknown>) {
      try {
        await agentOf(call.metadata, call.request.agentId);
      } catch (error) {
        // An agent that is gone already has nothing to depart.
        if (error instanceof NoAgent) return callback(null, create(DepartResponseSchema, {}));
        return callback(fail(error));
      }
      registry.depart(call.request.agentId);
      callback(null, create(DepartResponseSchema, {}));
    },

    async agentMux(call: ServerDuplexStream<Uint8Array, Uint8Array>) {
      // Frames that come while the agent is checked wait in grpc-js's stream.
      call.pause();
      const id = String(call.metadata.get(AGENT_ID_HEADER)[0] ?? "");
      let agent: Agent;
      try {
        agent = await agentOf(call.metadata, id);
      } catch (error) {
        call.emit("error", fail(error));
        return;
      }
      if (agent.end !== undefined && agent.end.over === undefined) {
        agent.end.end("the agent opened another AgentMux call");
      }
      serveAgentMux(call, agent, context);
      call.resume();
    },
  };
}

class NoAgent extends Error {
  constructor(id: string) {
    super(`agent "${id.slice(0, 36)}" is unknown or expired: arrive again`);
  }
}

function serveAgentMux(
  call: ServerDuplexStream<Uint8Array, Uint8Array>,
  agent: Agent,
  context: InterceptContext,
): void {
  const handle = { abort: (reason: string) => end.end(reason) };
  const end: MuxEnd = new MuxEnd(call, {
    role: "server",
    peer: `agent ${agent.name}`,
    names: { me: "the traffic-manager", peer: "the traffic-agent" },
    stats: context.stats.mux,
    log: (_level, line) => context.log(`manager: ${line}`),
    accept: (open, signal) => acceptFromAgent(context, agent, open, signal),
    finish: (reason) => {
      if (reason !== undefined) {
        call.emit("error", { code: status.INVALID_ARGUMENT, details: reason });
      } else if (!call.cancelled) call.end();
    },
    onEnd: () => {
      if (agent.end === end) agent.end = undefined;
      agent.closers.delete(closer);
      context.open.delete(handle);
    },
  });
  const closer = (reason: string) => end.end(reason);
  agent.end = end;
  agent.closers.add(closer);
  context.open.add(handle);
  call.on("end", () => end.end("the agent ended the call", false));
  const gone = () => end.lost("the agent went away");
  call.on("cancelled", gone);
  call.on("error", gone);
}

/** An OPEN from an agent: an intercepted connection, for the session that holds it. */
async function acceptFromAgent(
  context: InterceptContext,
  agent: Agent,
  open: OpenFrame,
  signal: AbortSignal,
): Promise<Accepted> {
  if (open.protocol !== MuxProtocol.Intercepted) {
    return {
      code: DialResult_Code.PROHIBITED,
      message: "an agent opens intercepted connections only",
    };
  }
  const intercept = context.registry.intercept(open.tag ?? "");
  const r = agent.report;
  if (
    intercept === undefined || intercept.session.ended || intercept.namespace !== r.namespace ||
    intercept.workloadKind !== r.workloadKind || intercept.workloadName !== r.workloadName ||
    intercept.containerPort !== open.destinationPort
  ) {
    // The intercept ended while the connection came: the agent passes it through.
    return { code: DialResult_Code.NO_SESSION, message: `no intercept "${open.tag ?? ""}" now` };
  }
  context.stats.interceptedConnections++;
  return await spliceTo(
    context,
    intercept.session,
    sessionEnd(intercept.session),
    { ...open, window: FLOW_WINDOW },
    signal,
    `intercepted for ${intercept.holder}`,
  );
}

/** The session's live `Mux` call, the newest. */
function sessionEnd(session: Session): MuxEnd | undefined {
  return [...session.muxEnds].reverse().find((end) => end.over === undefined);
}

/**
 * Opens `open` on `to` and, when it is accepted, answers the flow being
 * accepted with the other end of a splice. The flow counts against the
 * session's TCP flows and the bytes it holds against its limit.
 */
async function spliceTo(
  context: InterceptContext,
  session: Session,
  to: MuxEnd | undefined,
  open: OpenFrame,
  signal: AbortSignal,
  message: string,
): Promise<Accepted> {
  if (to === undefined) {
    return { code: DialResult_Code.UNREACHABLE, message: "the other end has no Mux call now" };
  }
  const { admission } = context;
  const refused = admission.take("tcp", session.usage);
  if (refused !== undefined) return { code: DialResult_Code.UNREACHABLE, message: refused };
  let released = false;
  const release = () => {
    if (!released) admission.give("tcp", session.usage);
    released = true;
  };
  const splice = spliceFlows();
  let ends = 0;
  const ended = () => {
    if (++ends === 2) release();
  };
  const hold = (bytes: number) => admission.hold(session.usage, bytes);
  const opened = await to.openTcp(open, (flow) => {
    splice.b.attach(flow);
    return splice.b;
  }, { onEnd: ended, hold });
  if (!opened.ok) {
    release();
    return { code: opened.code, message: opened.message };
  }
  if (signal.aborted) {
    opened.value.abort("the connection was given up");
    // The flow being accepted never comes, so its end is never told: give the count back now.
    release();
    return { code: DialResult_Code.UNREACHABLE, message: "given up" };
  }
  return {
    message,
    tcp: (flow) => {
      splice.a.attach(flow);
      return splice.a;
    },
    hold,
    onEnd: ended,
  };
}

// --- what sessions open toward agents --------------------------------------------

/**
 * An OPEN from a session that is not a dial: an sftp stream to one of the
 * agents of an intercept the session holds.
 *
 * @param context the registry and limits
 * @param session the session
 * @param open the OPEN (protocol {@linkcode MuxProtocol.Sftp}, tag: the intercept id)
 * @param signal aborted when the session gives up
 * @returns the flow's serving, or the refusal
 */
export function acceptSftp(
  context: InterceptContext,
  session: Session,
  open: OpenFrame,
  signal: AbortSignal,
): Promise<Accepted> {
  const intercept = context.registry.intercept(open.tag ?? "");
  if (intercept === undefined || intercept.session !== session) {
    return Promise.resolve({
      code: DialResult_Code.PROHIBITED,
      message: `the session holds no intercept "${open.tag ?? ""}"`,
    });
  }
  const agent = context.registry
    .agentsOf(intercept.namespace, intercept.workloadKind, intercept.workloadName)
    .find((a) => a.end?.over === undefined && a.end !== undefined);
  if (agent === undefined) {
    return Promise.resolve({
      code: DialResult_Code.UNREACHABLE,
      message: `no agent of ${intercept.workloadName} is connected now`,
    });
  }
  return spliceTo(
    context,
    session,
    agent.end,
    { ...open, window: FLOW_WINDOW },
    signal,
    `sftp in ${agent.name}`,
  );
}

/**
 * Where a session's DNS queries go: while it intercepts a workload, to an
 * agent of it (the pod's resolver and search path); when that fails, or
 * otherwise, `fallback` (the cluster's DNS server).
 *
 * @param context the registry
 * @param session the session
 * @param query the query
 * @param fallback the manager's own resolver
 * @returns the answer
 */
export async function resolveForSession(
  context: InterceptContext,
  session: Session,
  query: Uint8Array,
  fallback: (query: Uint8Array) => Promise<Uint8Array>,
): Promise<Uint8Array> {
  for (const intercept of context.registry.interceptsOf(session)) {
    const agent = context.registry
      .agentsOf(intercept.namespace, intercept.workloadKind, intercept.workloadName)
      .find((a) => a.end !== undefined && a.end.over === undefined);
    if (agent?.end === undefined) continue;
    // Within the session's DNS limit, as the cluster's DNS server's queries are.
    const refused = context.admission.take("dns", session.usage);
    if (refused !== undefined) throw new Error(`refused: ${refused}`);
    try {
      const answer = await agent.end.resolve(query, AGENT_DNS_TIMEOUT_MS);
      context.stats.dnsByAgents++;
      return answer;
    } catch {
      break; // The cluster's DNS server answers instead.
    } finally {
      context.admission.give("dns", session.usage);
    }
  }
  return await fallback(query);
}

// --- the Manager service's intercept calls ----------------------------------------

/**
 * `CreateIntercept`, `RemoveIntercept` and `ListAgents`, for the Manager
 * service's implementation.
 *
 * @param context the registry, the claim reader
 * @returns the three methods
 */
export function interceptMethods(context: InterceptContext): UntypedServiceImplementation {
  const { sessions, registry } = context;
  const noSession = (id: string) => ({
    code: status.NOT_FOUND,
    details: `session is unknown or expired: arrive again (${id.slice(0, 8)}…)`,
  });
  return {
    async createIntercept(
      call: ServerUnaryCall<CreateInterceptRequest, unknown>,
      callback: sendUnaryData<unknown>,
    ) {
      const r = call.request;
      const session = sessions.get(r.sessionId);
      if (session === undefined) return callback(noSession(r.sessionId));
      if (
        !LABEL.test(r.namespace) || !NAME.test(r.workloadName) ||
        !["Deployment", "StatefulSet", "ReplicaSet"].includes(r.workloadKind) ||
        !(r.containerPort >= 1 && r.containerPort <= 65535)
      ) {
        return callback({
          code: status.INVALID_ARGUMENT,
          details: "CreateIntercept needs a namespace, a workload kind and name, and a port",
        });
      }
      const id = `${r.namespace}/${r.workloadName}:${r.containerPort}`;
      const what = `${r.workloadKind} ${r.namespace}/${r.workloadName}`;
      if (
        registry.interceptsOf(session).length >= MAX_INTERCEPTS_PER_SESSION &&
        registry.intercept(id)?.session !== session
      ) {
        return callback({
          code: status.RESOURCE_EXHAUSTED,
          details: `the session holds ${MAX_INTERCEPTS_PER_SESSION} intercepts already`,
        });
      }
      const agents = registry.agentsOf(r.namespace, r.workloadKind, r.workloadName);
      if (agents.length === 0) {
        return callback({
          code: status.FAILED_PRECONDITION,
          details: `no traffic-agent of ${what} has arrived`,
        });
      }
      if (!agents.some((a) => a.takes(r.containerPort))) {
        return callback({
          code: status.FAILED_PRECONDITION,
          details: `the traffic-agents of ${what} do not take port ${r.containerPort}`,
        });
      }
      if (context.claims === undefined) {
        return callback({
          code: status.FAILED_PRECONDITION,
          details: "the traffic-manager has no Kubernetes access to check the workload's claims",
        });
      }
      let claims: InterceptClaims;
      try {
        claims = await context.claims.claims(r.namespace, r.workloadKind, r.workloadName);
      } catch (error) {
        return callback({ code: status.UNAVAILABLE, details: (error as Error).message });
      }
      const claim = claims[String(r.containerPort)];
      if (claim === undefined || claim.session !== sessionClaimHash(session.id)) {
        return callback({
          code: status.PERMISSION_DENIED,
          details: `${what} does not hold this session's claim on port ${r.containerPort} ` +
            `(its ${AGENT_ANNOTATION.intercepts} annotation, written with the user's credentials)`,
        });
      }
      if (session.ended) return callback(noSession(r.sessionId));
      const holder = `${session.client.name || "someone"}@${session.client.hostname || "?"}`;
      const intercept: Intercept = {
        id,
        namespace: r.namespace,
        workloadKind: r.workloadKind,
        workloadName: r.workloadName,
        containerPort: r.containerPort,
        session,
        holder,
      };
      const added = registry.add(intercept);
      if (!added.ok) {
        return callback({
          code: status.ALREADY_EXISTS,
          details: `port ${r.containerPort} of ${what} is intercepted by ${added.holder}`,
        });
      }
      if (added.intercept === intercept) {
        session.onEnd((_end, reason) => registry.remove(session, id, reason), "stream");
      }
      callback(null, registry.interceptInfo(added.intercept));
    },

    removeIntercept(
      call: ServerUnaryCall<InterceptRef, unknown>,
      callback: sendUnaryData<unknown>,
    ) {
      const session = sessions.get(call.request.sessionId);
      if (session === undefined) return callback(noSession(call.request.sessionId));
      // Removing one the session does not hold is not an error: it is gone either way.
      registry.remove(session, call.request.id);
      callback(null, create(RemoveInterceptResponseSchema, {}));
    },

    listAgents(
      call: ServerUnaryCall<ListAgentsRequest, unknown>,
      callback: sendUnaryData<unknown>,
    ) {
      const session = sessions.get(call.request.sessionId);
      if (session === undefined) return callback(noSession(call.request.sessionId));
      const ns = call.request.namespace;
      const agents = registry.agents().filter((a) =>
        (ns === "" || a.report.namespace === ns) && registry.get(a.id) !== undefined
      );
      const intercepts = registry.intercepts().filter((i) =>
        !i.session.ended && (ns === "" || i.namespace === ns)
      );
      callback(
        null,
        create(AgentListSchema, {
          agents: agents.map((a) => registry.info(a)),
          intercepts: intercepts.map((i) => registry.interceptInfo(i)),
        }),
      );
    },
  };
}

export { AgentRegistry };
