/**
 * The traffic-agent: a sidecar in an intercepted workload's pods (non-root,
 * no capabilities) that takes the app's ports, and the manager's side of
 * them.
 *
 * - **Ports.** From the start, each configured port is listened on
 *   (`ports.ts`): passed through to the app, or, while intercepted, sent to
 *   the manager as a flow on the agent's mux call.
 * - **The manager.** The agent arrives (`ArriveAgent`: its pod, workload,
 *   ports, the app's environment and mounts), follows which ports are
 *   intercepted (`WatchIntercepts`), sends heartbeats (`RemainAgent`) and
 *   holds one `AgentMux` call. When any of them fails, or the manager goes
 *   away, it says so in one line, forgets the intercepts (every connection
 *   passes through again) and arrives again after a bounded, jittered wait.
 * - **What the manager opens toward it** on the mux call: sftp streams
 *   (`sftp.ts`) and DNS queries, answered by the pod's own DNS server so that
 *   names resolve as they do in the pod. Anything else is refused.
 * - **Stopping** (SIGTERM, the pod is going): the listeners closed, open
 *   connections given a short time to end (intercepted ones too, the mux
 *   call held for them), then `DepartAgent`.
 *
 * The setup, the token file and the randomness of the waits are given.
 *
 * @module
 */

import {
  type AgentPortConfig,
  APP_MOUNT_PREFIX,
  MAX_AGENT_PORTS,
} from "../mod/kube/agent_config.ts";
import { DnsForwarder } from "../mod/kube/dns_forwarder.ts";
import { MAX_OPEN_TAG, MuxProtocol } from "../mod/rpc/mux.ts";
import { type Accepted, MuxEnd, MuxRefusal } from "../mod/rpc/mux_end.ts";
import {
  AGENT_ID_HEADER,
  AgentArriveRequestSchema,
  type AgentArriveResponse,
  type AgentIntercepts,
  AgentMountSchema,
  AgentPortSchema,
  AgentRefSchema,
  create,
  DialResult_Code,
} from "../mod/rpc/service.ts";
import { VERSION } from "../mod/version.ts";
import { type Backoff, backoffDelay, DEFAULT_BACKOFF } from "./backoff.ts";
import { type AgentClient, callProblem, createAgentClient, grpc, unary } from "./client.ts";
import type { AgentLog } from "./log.ts";
import { type PortStats, PortTaker } from "./ports.ts";
import type { AgentSetup } from "./setup.ts";
import { SftpServers } from "./sftp.ts";
import type { TokenFile } from "./token.ts";

/** Options of {@linkcode Agent.start}. */
export interface AgentOptions {
  /** The checked configuration, pod, environment and resolver. */
  setup: AgentSetup;
  /** The token every call presents. */
  token: TokenFile;
  /** Log sink. */
  log?: AgentLog;
  /** The waits between attempts to arrive. Default {@linkcode DEFAULT_BACKOFF}. */
  backoff?: Backoff;
  /** A number in [0, 1) for the jitter. Default `Math.random`. */
  random?: () => number;
  /** The deadline of each unary call to the manager, in ms. Default 10,000. */
  callTimeoutMs?: number;
  /** Where the ports listen. Default `0.0.0.0`, or `::` when the pod IP is IPv6. */
  listenHost?: string;
  /** Where the app is. Default `127.0.0.1`, or `::1` when the pod IP is IPv6. */
  appHost?: string;
  /** The most connections open at once per port. */
  maxConnectionsPerPort?: number;
  /** The DNS server that answers the manager's DNS frames (`host[:port]`). Default: the pod's first nameserver. */
  dnsServer?: string;
  /** The sftp servers: program, start directory, bound. */
  sftp?: { program?: string; root?: string; max?: number; path?: string };
  /** How long open connections may take to end when the agent stops, in ms. Default 5,000. */
  drainMs?: number;
}

/** The agent's counters. */
export interface AgentStats {
  /** Times the agent arrived. */
  arrivals: number;
  /** Attempts that failed before arriving. */
  failedAttempts: number;
  /** Each port's counters, by container port. */
  ports: Map<number, PortStats>;
  /** sftp servers running now. */
  readonly sftpRunning: number;
  /** sftp servers started since the start. */
  readonly sftpStarted: number;
  /** DNS queries from the manager answered. */
  dnsAnswered: number;
  /** DNS queries from the manager that failed. */
  dnsFailed: number;
}

/** The heartbeat used when the manager gives none, and the bounds of what it may give. */
const HEARTBEAT = { defaultMs: 5000, minMs: 100, maxMs: 60_000 } as const;

/** The longest agent id accepted from the manager (it goes into a header). */
const MAX_AGENT_ID = 256;

/** The traffic-agent: see the module documentation. */
export class Agent {
  /** The counters. */
  readonly stats: AgentStats;
  #options: AgentOptions;
  #log: AgentLog;
  #takers: PortTaker[] = [];
  #ports: Map<number, AgentPortConfig>;
  #sftp: SftpServers;
  #dns: DnsForwarder | undefined;
  /** The intercepted container ports now, with their intercept ids. */
  #intercepts = new Map<number, string>();
  #end: MuxEnd | null = null;
  #client: AgentClient | null = null;
  #agentId: string | undefined;
  /** Ends the current connection to the manager, with the reason. */
  #lose: ((reason: string) => void) | null = null;
  #stopping = false;
  #wake: (() => void) | null = null;
  #loop: Promise<void> = Promise.resolve();
  #lastProblem = "";

  private constructor(options: AgentOptions) {
    this.#options = options;
    this.#log = options.log ?? (() => {});
    this.#ports = new Map(options.setup.config.ports.map((port) => [port.containerPort, port]));
    this.#sftp = new SftpServers({
      ...options.sftp,
      log: this.#log,
    });
    const sftp = this.#sftp;
    this.stats = {
      arrivals: 0,
      failedAttempts: 0,
      ports: new Map(),
      get sftpRunning() {
        return sftp.running;
      },
      get sftpStarted() {
        return sftp.started;
      },
      dnsAnswered: 0,
      dnsFailed: 0,
    };
  }

  /**
   * Takes the ports and starts arriving at the manager.
   *
   * @param options the setup, the token, the log and the knobs
   * @returns the agent, running
   * @throws {AgentSetupError} when a port cannot be listened on
   */
  static start(options: AgentOptions): Agent {
    const agent = new Agent(options);
    agent.#listen();
    agent.#loop = agent.#run();
    return agent;
  }

  /** The agent id the manager gave, while arrived. */
  get agentId(): string | undefined {
    return this.#agentId;
  }

  /** The intercepted container ports now, with their intercept ids. */
  get intercepts(): ReadonlyMap<number, string> {
    return this.#intercepts;
  }

  /**
   * Stops: stops listening, gives open connections
   * {@linkcode AgentOptions.drainMs} to end, departs from the manager, then
   * closes everything.
   *
   * @param reason for the log
   */
  async stop(reason = "stopping"): Promise<void> {
    if (this.#stopping) return await this.#loop;
    this.#stopping = true;
    this.#log("info", `agent: ${reason}`);
    // Connections under way end first, intercepted ones included: the mux call stays up for them.
    const left = await Promise.all(
      this.#takers.map((taker) => taker.drain(this.#options.drainMs ?? 5000)),
    );
    const unfinished = left.reduce((a, b) => a + b, 0);
    if (unfinished > 0) this.#log("info", `agent: closed ${unfinished} unfinished connections`);
    const client = this.#client;
    const id = this.#agentId;
    if (client && id !== undefined) {
      try {
        await unary(client, "departAgent", create(AgentRefSchema, { agentId: id }), 2000);
        this.#log("info", `agent: departed (${id})`);
      } catch (error) {
        this.#log("info", `agent: cannot depart: ${callProblem(error)}`);
      }
    }
    this.#lose?.("the agent is stopping");
    this.#wake?.();
    await this.#loop;
    this.#sftp.closeAll();
    this.#dns?.close();
  }

  // --- the ports -------------------------------------------------------------

  #listen(): void {
    const { setup } = this.#options;
    const v6 = setup.pod.ip.includes(":");
    const listenHost = this.#options.listenHost ?? (v6 ? "::" : "0.0.0.0");
    const appHost = this.#options.appHost ?? (v6 ? "::1" : "127.0.0.1");
    try {
      for (const port of setup.config.ports.slice(0, MAX_AGENT_PORTS)) {
        const taker = PortTaker.listen({
          port,
          podIp: setup.pod.ip,
          listenHost,
          appHost,
          ...(this.#options.maxConnectionsPerPort !== undefined
            ? { maxConnections: this.#options.maxConnectionsPerPort }
            : {}),
          route: (containerPort) => {
            const id = this.#intercepts.get(containerPort);
            const end = this.#end;
            return id !== undefined && end !== null && end.over === undefined
              ? { id, end }
              : undefined;
          },
          log: this.#log,
        });
        this.#takers.push(taker);
        this.stats.ports.set(port.containerPort, taker.stats);
      }
    } catch (error) {
      for (const taker of this.#takers) taker.close();
      throw error;
    }
  }

  // --- the manager -----------------------------------------------------------

  async #run(): Promise<void> {
    let failures = 0;
    while (!this.#stopping) {
      const arrived = await this.#connect();
      if (this.#stopping) break;
      if (arrived) failures = 0;
      else this.stats.failedAttempts++;
      const wait = backoffDelay(
        failures++,
        this.#options.backoff ?? DEFAULT_BACKOFF,
        this.#options.random ?? Math.random,
      );
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, wait);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = null;
    }
  }

  /** One connection to the manager: arrive, then hold it until it is lost. Whether it arrived. */
  async #connect(): Promise<boolean> {
    const { manager } = this.#options.setup.config;
    const address = manager.host.includes(":")
      ? `[${manager.host}]:${manager.port}`
      : `${manager.host}:${manager.port}`;
    const client = createAgentClient({
      address,
      caPem: manager.caPem,
      serverName: manager.serverName,
      token: this.#options.token,
    });
    this.#client = client;
    let arrived = false;
    try {
      const response = await unary<AgentArriveResponse>(
        client,
        "arriveAgent",
        this.#arriveRequest(),
        this.#options.callTimeoutMs ?? 10_000,
      );
      const id = response.agentId;
      if (id === "" || id.length > MAX_AGENT_ID || !/^[\x21-\x7e]+$/.test(id)) {
        throw new Error(`the traffic-manager gave an agent id that is not one: "${clean(id)}"`);
      }
      arrived = true;
      if (this.#stopping) {
        // Stopped while arriving: the manager forgets the agent now rather than at its TTL.
        await unary(client, "departAgent", create(AgentRefSchema, { agentId: id }), 2000)
          .catch(() => {});
        return arrived;
      }
      this.#agentId = id;
      this.#lastProblem = "";
      this.stats.arrivals++;
      this.#log("info", `agent: arrived as ${id}: ${this.#describe()}`);
      const reason = await this.#hold(client, id, response);
      if (!this.#stopping) {
        this.#log("info", `agent: lost the traffic-manager at ${address}: ${reason}`);
      }
    } catch (error) {
      const problem = `agent: cannot arrive at the traffic-manager at ${address}: ${
        callProblem(error)
      }`;
      // The same failure again and again (the manager is down) is logged once.
      this.#log(problem === this.#lastProblem ? "debug" : "info", problem);
      this.#lastProblem = problem;
    } finally {
      this.#agentId = undefined;
      this.#client = null;
      client.close();
    }
    return arrived;
  }

  /** Follows the intercepts, sends heartbeats and holds the mux call until one fails. */
  #hold(client: AgentClient, id: string, response: AgentArriveResponse): Promise<string> {
    const ref = create(AgentRefSchema, { agentId: id });
    const interval = response.heartbeatIntervalMs === 0
      ? HEARTBEAT.defaultMs
      : Math.min(Math.max(response.heartbeatIntervalMs, HEARTBEAT.minMs), HEARTBEAT.maxMs);
    const timeout = Math.max(interval * 2, this.#options.callTimeoutMs ?? 10_000);
    return new Promise<string>((resolve) => {
      let over = false;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const watch = client.watchIntercepts(ref);
      const metadata = new grpc.Metadata();
      metadata.set(AGENT_ID_HEADER, id);
      const call = client.agentMux(metadata);
      const lose = (reason: string) => {
        if (over) return;
        over = true;
        this.#lose = null;
        clearTimeout(timer);
        // Passing through from now on: no new connection waits for a call that is gone.
        this.#setIntercepts(new Map());
        this.#end = null;
        end.end(reason);
        watch.cancel();
        resolve(reason);
      };
      this.#lose = lose;
      const end = new MuxEnd(call, {
        role: "client",
        peer: "the traffic-manager",
        names: { me: "the traffic-agent", peer: "the traffic-manager" },
        log: (level, line) => this.#log(level, `agent: ${line}`),
        accept: (open, signal) => this.#accept(open.protocol, signal),
        resolve: (query) => this.#resolve(query),
        finish: (reason) => {
          if (reason === undefined) call.end();
          call.cancel();
        },
        onEnd: (reason) => lose(`the mux call ended: ${reason}`),
      });
      this.#end = end;
      call.on("error", (e: grpc.ServiceError) => end.lost(callProblem(e)));
      call.on("end", () => end.lost("the traffic-manager ended it"));
      call.on("close", () => end.lost("the traffic-manager closed it"));
      watch.on("data", (message: AgentIntercepts) => {
        if (!over) this.#setIntercepts(this.#interceptsOf(message));
      });
      watch.on(
        "error",
        (e: grpc.ServiceError) => lose(`the intercept watch failed: ${callProblem(e)}`),
      );
      watch.on("end", () => lose("the traffic-manager ended the intercept watch"));
      const beat = () => {
        timer = setTimeout(() => {
          unary(client, "remainAgent", ref, timeout).then(
            () => !over && beat(),
            (error) => lose(`the heartbeat failed: ${callProblem(error)}`),
          );
        }, interval);
      };
      beat();
    });
  }

  #arriveRequest() {
    const { setup } = this.#options;
    const { config, pod } = setup;
    return create(AgentArriveRequestSchema, {
      podName: pod.name,
      namespace: pod.namespace,
      podIp: pod.ip,
      workloadKind: config.workload.kind,
      workloadName: config.workload.name,
      container: config.container,
      ports: config.ports.map((port) =>
        create(AgentPortSchema, {
          name: port.name ?? "",
          containerPort: port.containerPort,
          agentPort: port.agentPort,
          protocol: "TCP",
        })
      ),
      environment: setup.environment,
      mounts: config.mounts.map((mount) =>
        create(AgentMountSchema, {
          name: mount.name,
          mountPath: mount.mountPath,
          readOnly: mount.readOnly,
          agentPath: APP_MOUNT_PREFIX + mount.mountPath,
        })
      ),
      version: VERSION,
      searchPath: setup.search,
    });
  }

  /** `ports http 80→9900, 3 variables, 2 mounts`. */
  #describe(): string {
    const { config, environment } = this.#options.setup;
    const ports = config.ports.map((p) =>
      `${p.name ? `${p.name} ` : ""}${p.containerPort}→${p.agentPort}`
    );
    const variables = Object.keys(environment).length;
    const mounts = config.mounts.length;
    return `ports ${ports.join(", ")}, ${variables} ${
      variables === 1 ? "variable" : "variables"
    }, ${mounts} ${mounts === 1 ? "mount" : "mounts"}`;
  }

  // --- intercepts --------------------------------------------------------------

  /** The manager's list, as the agent keeps it: only its own ports, with usable ids. */
  #interceptsOf(message: AgentIntercepts): Map<number, string> {
    const next = new Map<number, string>();
    for (const intercept of message.intercepts) {
      const port = intercept.containerPort;
      if (!this.#ports.has(port)) {
        this.#log("debug", `agent: an intercept of port ${port}, which this agent does not take`);
        continue;
      }
      const bytes = new TextEncoder().encode(intercept.id).length;
      if (bytes === 0 || bytes > MAX_OPEN_TAG) {
        this.#log(
          "warn",
          `agent: an intercept of port ${port} with an id of ${bytes} bytes: ignored`,
        );
        continue;
      }
      if (!next.has(port)) next.set(port, intercept.id);
    }
    const holders = new Map(message.intercepts.map((i) => [i.id, i.holder]));
    for (const [port, id] of next) {
      if (this.#intercepts.get(port) !== id) {
        this.#log(
          "info",
          `agent: port ${port} intercepted by ${clean(holders.get(id) || "a session")} (${
            clean(id)
          })`,
        );
      }
    }
    return next;
  }

  #setIntercepts(next: Map<number, string>): void {
    for (const port of this.#intercepts.keys()) {
      if (!next.has(port)) this.#log("info", `agent: port ${port} passes through to the app again`);
    }
    this.#intercepts = next;
  }

  // --- what the manager opens ----------------------------------------------------

  #accept(protocol: number, signal: AbortSignal): Promise<Accepted> {
    if (protocol === MuxProtocol.Sftp) return this.#sftp.accept(signal);
    return Promise.resolve({
      code: DialResult_Code.PROHIBITED,
      message: `the traffic-agent accepts no flows of protocol ${protocol}`,
    });
  }

  async #resolve(query: Uint8Array): Promise<Uint8Array> {
    const server = this.#options.dnsServer ?? this.#options.setup.nameservers[0];
    if (server === undefined) {
      this.stats.dnsFailed++;
      throw new MuxRefusal("the pod has no nameserver", DialResult_Code.UNREACHABLE);
    }
    this.#dns ??= new DnsForwarder(server, { maxInFlight: 1024 });
    try {
      const answer = await this.#dns.resolve(query);
      this.stats.dnsAnswered++;
      return answer;
    } catch (error) {
      this.stats.dnsFailed++;
      throw error;
    }
  }
}

/** Text from the manager, safe for one log line. */
function clean(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/[\x00-\x1f\x7f]/g, "?").slice(0, 100);
}
