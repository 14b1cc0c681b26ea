/**
 * The traffic-agents that have arrived and the intercepts sessions hold: the
 * manager's memory of who takes which port of which workload, and for whom.
 * The workloads' `vif.dev/intercepts` annotations are the record a user
 * writes with their own credentials; an intercept exists here only while its
 * session lives and the claim is on the workload (checked when it is made).
 *
 * Bounded: {@linkcode MAX_AGENTS} agents, {@linkcode MAX_INTERCEPTS_PER_SESSION}
 * intercepts per session, and an arriving agent's report (environment,
 * mounts, ports) is checked and cut to sizes here before it is kept.
 *
 * @module
 */

import { create } from "@bufbuild/protobuf";
import type { MuxEnd } from "../mod/rpc/mux_end.ts";
import {
  type ActiveIntercept,
  ActiveInterceptSchema,
  type AgentArriveRequest,
  type AgentInfo,
  AgentInfoSchema,
  type AgentMount,
  AgentMountSchema,
  type AgentPort,
  AgentPortSchema,
  type InterceptInfo,
  InterceptInfoSchema,
} from "../mod/rpc/service.ts";
import type { AgentIdentity } from "./agent_auth.ts";
import type { Session } from "./sessions.ts";

/** The most agents the manager keeps. */
export const MAX_AGENTS = 4096;
/** The most intercepts one session holds. */
export const MAX_INTERCEPTS_PER_SESSION = 16;
/** The most variables of an agent's report kept, and their total size in bytes. */
export const MAX_ENV_VARIABLES = 1024;
export const MAX_ENV_BYTES = 256 * 1024;
/** The most ports and mounts of an agent's report. */
export const MAX_AGENT_PORTS = 64;
export const MAX_AGENT_MOUNTS = 64;

/** A report that cannot be kept: the message says which part. */
export class AgentReportError extends Error {
  /** @param message what is wrong */
  constructor(message: string) {
    super(message);
    this.name = "AgentReportError";
  }
}

/** An agent that arrived. */
export class Agent {
  /** Its id: random, given at arrival. */
  readonly id: string;
  /** Who its token says it is. */
  readonly identity: AgentIdentity;
  /** What it reported, checked. */
  readonly report: Readonly<AgentArriveRequest>;
  /** Its `AgentMux` call, once it has one. */
  end: MuxEnd | undefined;
  /** Its `WatchIntercepts` streams. */
  readonly watchers = new Set<(intercepts: ActiveIntercept[]) => void>();
  /** Called once when it departs or expires. */
  readonly closers = new Set<(reason: string) => void>();
  lastSeen: number;
  #ended = false;

  constructor(id: string, identity: AgentIdentity, report: AgentArriveRequest, now: number) {
    this.id = id;
    this.identity = identity;
    this.report = report;
    this.lastSeen = now;
  }

  /** `namespace/pod`, for logs. */
  get name(): string {
    return `${this.report.namespace}/${this.report.podName}`;
  }

  get ended(): boolean {
    return this.#ended;
  }

  /** Whether it takes `containerPort`. */
  takes(containerPort: number): boolean {
    return this.report.ports.some((p) => p.containerPort === containerPort);
  }

  /** @internal */
  finish(reason: string): void {
    if (this.#ended) return;
    this.#ended = true;
    for (const close of [...this.closers]) close(reason);
    this.closers.clear();
    this.watchers.clear();
  }
}

/** An intercept a session holds. */
export interface Intercept {
  /** `namespace/workload:port`. */
  id: string;
  namespace: string;
  workloadKind: string;
  workloadName: string;
  containerPort: number;
  session: Session;
  /** `alice@laptop`. */
  holder: string;
}

/** Options of {@linkcode AgentRegistry}. */
export interface AgentRegistryOptions {
  /** How long an agent lives without a heartbeat, in ms. */
  ttlMs: number;
  /** The clock, in ms. */
  now?: () => number;
  /** Log lines. */
  log?: (line: string) => void;
}

/** The agents and the intercepts: see the module documentation. */
export class AgentRegistry {
  readonly #agents = new Map<string, Agent>();
  readonly #intercepts = new Map<string, Intercept>();
  readonly #ttlMs: number;
  readonly #now: () => number;
  readonly #log: (line: string) => void;

  /** @param options the agents' TTL, the clock, the log */
  constructor(options: AgentRegistryOptions) {
    this.#ttlMs = options.ttlMs;
    this.#now = options.now ?? Date.now;
    this.#log = options.log ?? (() => {});
  }

  /** How long an agent lives without a heartbeat, in ms. */
  get ttlMs(): number {
    return this.#ttlMs;
  }

  /** How many agents there are. */
  get size(): number {
    return this.#agents.size;
  }

  /** Every agent. */
  agents(): Agent[] {
    return [...this.#agents.values()];
  }

  /** Every intercept. */
  intercepts(): Intercept[] {
    return [...this.#intercepts.values()];
  }

  /**
   * An agent arrives; one of the same pod that was there before is replaced.
   *
   * @param identity who its token is
   * @param report what it says, checked here
   * @returns the agent
   * @throws {AgentReportError} when the report is malformed or too large, or there are too many agents
   */
  arrive(identity: AgentIdentity, report: AgentArriveRequest): Agent {
    const checked = checkReport(report);
    for (const old of this.#agents.values()) {
      if (old.identity.podUid === identity.podUid) this.depart(old.id, "the agent arrived again");
    }
    if (this.#agents.size >= MAX_AGENTS) this.sweep();
    if (this.#agents.size >= MAX_AGENTS) {
      throw new AgentReportError(`the traffic-manager has ${MAX_AGENTS} agents already`);
    }
    const agent = new Agent(crypto.randomUUID(), identity, checked, this.#now());
    this.#agents.set(agent.id, agent);
    const ports = checked.ports.map((p) => `${p.name || p.containerPort}→${p.agentPort}`);
    this.#log(
      `manager: agent ${agent.name} arrived (${checked.workloadKind} ${checked.workloadName}, ` +
        `ports ${ports.join(" ")})`,
    );
    return agent;
  }

  /** The agent of `id`, if it lives. */
  get(id: string): Agent | undefined {
    const agent = this.#agents.get(id);
    if (agent === undefined) return undefined;
    if (this.#now() - agent.lastSeen > this.#ttlMs) {
      this.#expire(agent);
      return undefined;
    }
    return agent;
  }

  /** A heartbeat. */
  remain(id: string): Agent | undefined {
    const agent = this.get(id);
    if (agent !== undefined) agent.lastSeen = this.#now();
    return agent;
  }

  /** The agent leaves; its flows end. */
  depart(id: string, reason = "the agent departed"): boolean {
    const agent = this.#agents.get(id);
    if (agent === undefined) return false;
    this.#agents.delete(id);
    agent.finish(reason);
    this.#log(`manager: agent ${agent.name} gone: ${reason}`);
    return true;
  }

  /** Ends the agents whose heartbeat is older than the TTL; returns how many. */
  sweep(): number {
    let n = 0;
    const now = this.#now();
    for (const agent of [...this.#agents.values()]) {
      if (now - agent.lastSeen > this.#ttlMs) {
        this.#expire(agent);
        n++;
      }
    }
    return n;
  }

  /** The live agents of a workload. */
  agentsOf(namespace: string, kind: string, name: string): Agent[] {
    return this.agents().filter((a) =>
      a.report.namespace === namespace && a.report.workloadKind === kind &&
      a.report.workloadName === name && this.get(a.id) !== undefined
    );
  }

  /** The intercept of `id`. */
  intercept(id: string): Intercept | undefined {
    return this.#intercepts.get(id);
  }

  /** The session's intercepts. */
  interceptsOf(session: Session): Intercept[] {
    return this.intercepts().filter((i) => i.session === session);
  }

  /**
   * Records an intercept and tells the workload's agents. A second call by
   * the same session returns the one it holds.
   *
   * @param intercept what to intercept, for whom
   * @returns the intercept, or who holds the port already
   */
  add(intercept: Intercept): { ok: true; intercept: Intercept } | { ok: false; holder: string } {
    const held = this.#intercepts.get(intercept.id);
    if (held !== undefined && !held.session.ended) {
      if (held.session === intercept.session) return { ok: true, intercept: held };
      return { ok: false, holder: held.holder };
    }
    this.#intercepts.set(intercept.id, intercept);
    this.#log(`manager: ${intercept.holder} intercepts ${intercept.id}`);
    this.#tell(intercept.namespace, intercept.workloadKind, intercept.workloadName);
    return { ok: true, intercept };
  }

  /**
   * Ends an intercept of the session's.
   *
   * @returns whether it held it
   */
  remove(session: Session, id: string, reason = "left"): boolean {
    const intercept = this.#intercepts.get(id);
    if (intercept === undefined || intercept.session !== session) return false;
    this.#intercepts.delete(id);
    this.#log(`manager: ${intercept.holder} no longer intercepts ${id} (${reason})`);
    this.#tell(intercept.namespace, intercept.workloadKind, intercept.workloadName);
    return true;
  }

  /** Ends every intercept of the session (it ended). */
  removeAll(session: Session, reason: string): void {
    for (const intercept of this.interceptsOf(session)) this.remove(session, intercept.id, reason);
  }

  /** The intercepts an agent serves now. */
  activeFor(agent: Agent): ActiveIntercept[] {
    return this.intercepts()
      .filter((i) =>
        !i.session.ended && i.namespace === agent.report.namespace &&
        i.workloadKind === agent.report.workloadKind &&
        i.workloadName === agent.report.workloadName && agent.takes(i.containerPort)
      )
      .map((i) =>
        create(ActiveInterceptSchema, {
          id: i.id,
          containerPort: i.containerPort,
          holder: i.holder,
        })
      );
  }

  /** An agent as clients see it. */
  info(agent: Agent): AgentInfo {
    const r = agent.report;
    return create(AgentInfoSchema, {
      podName: r.podName,
      namespace: r.namespace,
      podIp: r.podIp,
      workloadKind: r.workloadKind,
      workloadName: r.workloadName,
      container: r.container,
      ports: r.ports,
      intercepts: this.activeFor(agent),
      version: r.version,
    });
  }

  /** An intercept as its holder sees it, with what the workload's first agent reported. */
  interceptInfo(intercept: Intercept): InterceptInfo {
    const agents = this.agentsOf(
      intercept.namespace,
      intercept.workloadKind,
      intercept.workloadName,
    );
    const first = agents[0]?.report;
    return create(InterceptInfoSchema, {
      id: intercept.id,
      namespace: intercept.namespace,
      workloadName: intercept.workloadName,
      containerPort: intercept.containerPort,
      holder: intercept.holder,
      agents: agents.map((a) => this.info(a)),
      environment: first?.environment ?? {},
      mounts: first?.mounts ?? [],
      searchPath: first?.searchPath ?? [],
    });
  }

  /** Ends everything (the manager stops). */
  close(reason: string): void {
    for (const agent of this.agents()) this.depart(agent.id, reason);
    this.#intercepts.clear();
  }

  #expire(agent: Agent): void {
    if (this.#agents.get(agent.id) !== agent) return;
    this.#agents.delete(agent.id);
    agent.finish("the agent stopped sending heartbeats");
    this.#log(`manager: agent ${agent.name} expired`);
  }

  /** Sends the workload's agents their intercepts now. */
  #tell(namespace: string, kind: string, name: string): void {
    for (const agent of this.agentsOf(namespace, kind, name)) {
      const active = this.activeFor(agent);
      for (const watcher of agent.watchers) watcher(active);
    }
  }
}

const NAME = /^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$/;
const LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const PORT_NAME = /^[a-z0-9-]{1,15}$/;
const KINDS = new Set(["Deployment", "StatefulSet", "ReplicaSet"]);

/**
 * Checks an agent's report and keeps only what is well-formed and within the
 * bounds.
 *
 * @param r the report
 * @returns a copy fit to keep
 * @throws {AgentReportError} naming the first thing wrong
 */
export function checkReport(r: AgentArriveRequest): AgentArriveRequest {
  if (!NAME.test(r.podName)) throw new AgentReportError(`pod name "${clip(r.podName)}"`);
  if (!LABEL.test(r.namespace)) throw new AgentReportError(`namespace "${clip(r.namespace)}"`);
  if (!KINDS.has(r.workloadKind)) {
    throw new AgentReportError(`workload kind "${clip(r.workloadKind)}"`);
  }
  if (!NAME.test(r.workloadName)) {
    throw new AgentReportError(`workload name "${clip(r.workloadName)}"`);
  }
  if (!LABEL.test(r.container)) throw new AgentReportError(`container "${clip(r.container)}"`);
  if (!/^[0-9a-fA-F:.]{2,45}$/.test(r.podIp)) {
    throw new AgentReportError(`pod IP "${clip(r.podIp)}"`);
  }
  if (r.ports.length === 0 || r.ports.length > MAX_AGENT_PORTS) {
    throw new AgentReportError(`${r.ports.length} ports (1 to ${MAX_AGENT_PORTS})`);
  }
  const ports: AgentPort[] = r.ports.map((p) => {
    const valid = (n: number) => Number.isInteger(n) && n >= 1 && n <= 65535;
    if (!valid(p.containerPort) || !valid(p.agentPort)) {
      throw new AgentReportError(`port ${p.containerPort}→${p.agentPort}`);
    }
    if (p.name !== "" && !PORT_NAME.test(p.name)) {
      throw new AgentReportError(`port name "${clip(p.name)}"`);
    }
    return create(AgentPortSchema, {
      name: p.name,
      containerPort: p.containerPort,
      agentPort: p.agentPort,
      protocol: "TCP",
    });
  });
  const entries = Object.entries(r.environment);
  if (entries.length > MAX_ENV_VARIABLES) {
    throw new AgentReportError(`${entries.length} variables (at most ${MAX_ENV_VARIABLES})`);
  }
  let bytes = 0;
  const environment: Record<string, string> = {};
  for (const [name, value] of entries) {
    bytes += name.length + value.length;
    // deno-lint-ignore no-control-regex
    if (name === "" || name.includes("=") || /[\u0000]/.test(name + value)) {
      throw new AgentReportError(`variable "${clip(name)}"`);
    }
    environment[name] = value;
  }
  if (bytes > MAX_ENV_BYTES) {
    throw new AgentReportError(`the environment holds ${bytes} bytes (at most ${MAX_ENV_BYTES})`);
  }
  if (r.mounts.length > MAX_AGENT_MOUNTS) {
    throw new AgentReportError(`${r.mounts.length} mounts (at most ${MAX_AGENT_MOUNTS})`);
  }
  const mounts: AgentMount[] = r.mounts.map((m) => {
    const clean = (p: string) =>
      p.startsWith("/") && p.length <= 1024 && !p.split("/").some((s) => s === "..");
    if (!clean(m.mountPath) || !clean(m.agentPath) || !LABEL.test(m.name)) {
      throw new AgentReportError(`mount "${clip(m.name)}" at "${clip(m.mountPath)}"`);
    }
    return create(AgentMountSchema, {
      name: m.name,
      mountPath: m.mountPath,
      readOnly: m.readOnly,
      agentPath: m.agentPath,
    });
  });
  const searchPath = r.searchPath.slice(0, 8).filter((s) => /^[a-z0-9.-]{1,253}$/i.test(s));
  return {
    ...r,
    ports,
    environment,
    mounts,
    searchPath,
    version: clip(r.version),
  };
}

function clip(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.slice(0, 64).replace(/[\u0000-\u001f\u007f]/g, "?");
}
