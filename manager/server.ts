/**
 * The traffic-manager's gRPC server: TLS only, the `vif.v1.Manager` service,
 * the session table with its expiry sweep, the cluster info and the policy
 * that follows it, the DNS forwarder. {@linkcode serve} starts it all and
 * returns a handle to stop it.
 *
 * @module
 */

import {
  type sendUnaryData,
  type Server,
  type ServerUnaryCall,
  type ServerWritableStream,
  status,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import { Cidr, parseAddress } from "../mod/net/address.ts";
import {
  AgentService,
  type ArriveRequest,
  ArriveResponseSchema,
  type ClusterInfo,
  create,
  DEFAULT_MANAGER_NAMESPACE,
  DEFAULT_MANAGER_PORT,
  DepartResponseSchema,
  FEATURE_INTERCEPT,
  FEATURE_MUX,
  managerServerName,
  ManagerService,
  RemainResponseSchema,
  type SessionRef,
  VersionInfoSchema,
} from "../mod/rpc/service.ts";
import { VERSION } from "../mod/version.ts";
import { ClusterInfoSource, type ClusterInfoValue, toClusterInfoMessage } from "./cluster_info.ts";
import {
  type Discovery,
  type DiscoveryOptions,
  managerKubeAccess,
  startDiscovery,
} from "./discovery.ts";
import { type AgentAuthenticator, kubeAgentAuthenticator } from "./agent_auth.ts";
import { AgentRegistry } from "./agents.ts";
import {
  agentImplementation,
  type ClaimReader,
  type InterceptContext,
  interceptMethods,
  kubeClaimReader,
} from "./intercepts.ts";
import { DnsForwarder, DnsForwardError } from "../mod/kube/dns_forwarder.ts";
import { ManagerSetupError } from "./errors.ts";
import {
  bindProblem,
  bindServer,
  grpcServer,
  type Listen,
  parseListen,
  requireLoopback,
  shutdownServer,
} from "../mod/rpc/serve.ts";
import { commandPinger, findPingProgram } from "./ping.ts";
import { DestinationPolicy, hostPort } from "./policy.ts";
import {
  clusterDomainFromSearch,
  parseResolvConf,
  type ResolvConf,
} from "../mod/net/resolv_conf.ts";
import { type Session, SessionTable, shortId } from "./sessions.ts";
import { ManagerStats } from "./stats.ts";
import {
  checkTls,
  directCredentials,
  readClientCa,
  readTlsDir,
  serverCredentials,
  type TlsMaterial,
} from "../mod/rpc/tls.ts";
import { Admission, type Limits, resolveLimits } from "./limits.ts";
import { type Health, startHealth } from "./health.ts";
import type { FlowContext } from "./dial.ts";
import { handleMux, type MuxCall } from "./mux.ts";

/** The name `Version` answers with. */
export const MANAGER_NAME = "vif-traffic-manager";

/** Options of {@linkcode serve}. Only the TLS material is required. */
export interface ServeOptions {
  /** A directory with `tls.crt`, `tls.key` and `ca.crt` (a mounted `kubernetes.io/tls` Secret). */
  tlsDir?: string;
  /** The TLS material itself, instead of {@linkcode ServeOptions.tlsDir}. */
  tls?: TlsMaterial;
  /**
   * Where the client listener listens, `HOST:PORT` (`[v6]:PORT` too): on
   * loopback only, so that clients come through the API server's
   * `pods/portforward` (the kubelet dials localhost in the pod) and
   * Kubernetes RBAC decides who they are. Default `127.0.0.1:8081` and
   * `[::1]:8081` (the latter skipped where the pod has no IPv6 loopback);
   * port 0 picks one.
   */
  listen?: string | readonly string[];
  /**
   * Where the direct listener listens (`HOST:PORT`), for clients that dial
   * the manager without the API server: mutual TLS, a client certificate
   * signed by the client CA required. Off when absent.
   */
  directListen?: string;
  /** The client CA (PEM) of the direct listener. Default: `client-ca.crt` in {@linkcode ServeOptions.tlsDir}. */
  clientCaPem?: string;
  /** A file holding the client CA, instead of {@linkcode ServeOptions.clientCaPem}. */
  clientCaPath?: string;
  /** Where the HTTP health listener (`/livez`, `/readyz`) listens, `HOST:PORT`. Off when absent. */
  healthListen?: string;
  /**
   * Where the agent listener listens (`HOST:PORT`, on the pod network): the
   * traffic-agents' `Agent` service, TLS with the manager's certificate,
   * each call authenticated by the agent's projected token. Off when absent.
   */
  agentListen?: string;
  /**
   * How agents are checked and intercept claims read. Default: with the
   * Kubernetes access of {@linkcode ServeOptions.discovery} (TokenReview, the
   * pods and workloads); without it, intercepts are off.
   */
  agents?: { auth: AgentAuthenticator; claims: ClaimReader };
  /** Subnets a session may add with `also_proxy` (`--allow-also-proxy`). Default none. */
  allowAlsoProxy?: readonly string[];
  /** The ClusterIPs of the manager's own Service, never dialed (also learned through discovery). */
  serviceIps?: readonly string[];
  /** The manager's bounds; the rest are `DEFAULT_LIMITS` (limits.ts). */
  limits?: Partial<Limits>;
  /**
   * Dial loopback destinations the other rules allow: only for a manager run
   * in-process by tests (see `DestinationPolicyOptions.allowLoopback`); no
   * flag sets it.
   */
  allowLoopback?: boolean;
  /** The manager's namespace: its certificate should name `traffic-manager.<namespace>`. Default `vif-system`. */
  managerNamespace?: string;
  /** Pod subnets (CIDRs). */
  podSubnets?: readonly string[];
  /** Service subnets (CIDRs). */
  serviceSubnets?: readonly string[];
  /** The cluster domain. Default: from the resolv.conf search list, else `cluster.local`. */
  clusterDomain?: string;
  /** The cluster DNS server announced to clients. Default: the resolv.conf nameserver. */
  dnsServer?: string;
  /** Namespaces the workstation treats as top-level names. */
  namespaces?: readonly string[];
  /** The manager pod's IP (announced, and refused as a destination of its own port). */
  podIp?: string;
  /** The resolv.conf to read. Default `/etc/resolv.conf`. */
  resolvConfPath?: string;
  /** Where DNS queries go, `HOST[:PORT]`. Default: the resolv.conf nameserver, else the DNS server. */
  dnsUpstream?: string;
  /** The wait for each DNS attempt, in ms. Default 2000. */
  dnsTimeoutMs?: number;
  /** Dial any destination, not only the cluster's subnets (never the refused ranges: policy.ts). */
  allowAnyDestination?: boolean;
  /** The dial timeout when an OPEN asks for none, in ms. Default 5000. */
  dialTimeoutMs?: number;
  /** How often clients should send a heartbeat, in ms. Default 5000. */
  heartbeatIntervalMs?: number;
  /** How long a session lives without a heartbeat, in ms. Default 30000. */
  sessionTtlMs?: number;
  /** How often expired sessions are swept, in ms; 0 for never (tests call `sweep()`). Default 1000. */
  sweepIntervalMs?: number;
  /** How long a UDP flow lives without a datagram, in ms. Default 60000. */
  udpIdleTimeoutMs?: number;
  /** The ping program; `null` for none; looked up on `PATH` when absent. */
  pingProgram?: string | null;
  /** The clock for sessions, in ms. Default `Date.now`. */
  now?: () => number;
  /** Where log lines go (each starts with `manager: `). Default: standard error. */
  log?: (line: string) => void;
  /**
   * Discover the pod and service subnets and the namespaces from the
   * Kubernetes API (DESIGN.md §6), keeping them up to date. A field given
   * above (non-empty) is not discovered. Absent: no discovery.
   */
  discovery?: ServeDiscoveryOptions;
}

/** How {@linkcode serve} discovers the cluster: see {@linkcode DiscoveryOptions}. */
export interface ServeDiscoveryOptions
  extends
    Pick<DiscoveryOptions, "kubeconfig" | "inCluster" | "serviceAccountDir" | "env" | "retry"> {
  /** How long `serve` waits for a first answer before it serves anyway, in ms. Default 5000. */
  startWaitMs?: number;
}

/** A running manager. */
export interface ManagerHandle {
  /** The client listener's first address, `host:port` (`[v6]:port` for IPv6). */
  readonly address: string;
  /** The host part of {@linkcode ManagerHandle.address}. */
  readonly hostname: string;
  /** The client listener's port (the real one when 0 was asked). */
  readonly port: number;
  /** Every address the client listener listens on. */
  readonly addresses: readonly string[];
  /** The direct (mutual TLS) listener's address, when it runs. */
  readonly directAddress: string | undefined;
  /** The agent listener's address, when it runs. */
  readonly agentAddress: string | undefined;
  /** The agents and intercepts. */
  readonly agents: AgentRegistry;
  /** The health listener, when it runs. */
  readonly health: Health | undefined;
  /** What every session holds against the limits, and the limits. */
  readonly admission: Admission;
  /** The cluster info; {@linkcode ClusterInfoSource.set} pushes a change to every watcher. */
  readonly clusterInfo: ClusterInfoSource;
  /** The discovery that keeps {@linkcode ManagerHandle.clusterInfo} up to date, when asked for. */
  readonly discovery: Discovery | undefined;
  /** Counters, including the bytes held in buffers. */
  readonly stats: ManagerStats;
  /** The session table. */
  readonly sessions: SessionTable;
  /**
   * Ends the sessions whose heartbeat is older than the TTL, now.
   *
   * @returns How many expired.
   */
  sweep(): number;
  /** Ends every session and flow and stops serving. Safe to call twice. */
  close(): Promise<void>;
}

/**
 * Starts the traffic-manager.
 *
 * @param options TLS, listen address, cluster info and limits.
 * @returns The running manager.
 * @throws {ManagerSetupError} When an option is bad, the TLS files are missing or wrong, or the address cannot be bound.
 *
 * @example Serve on a random local port
 * ```ts ignore
 * import { serve } from "./server.ts";
 *
 * const manager = await serve({
 *   tlsDir: "/var/run/secrets/vif/tls",
 *   listen: "127.0.0.1:0",
 *   podSubnets: ["198.18.64.0/18"],
 *   serviceSubnets: ["198.18.128.0/20"],
 * });
 * console.log(manager.port);
 * await manager.close();
 * ```
 */
export async function serve(options: ServeOptions): Promise<ManagerHandle> {
  const log = options.log ?? ((line: string) => console.error(line));
  const namespace = options.managerNamespace ?? DEFAULT_MANAGER_NAMESPACE;
  const serverName = managerServerName(namespace);
  const explicitListen = options.listen !== undefined;
  const listens = (typeof options.listen === "string" ? [options.listen] : options.listen ?? [
    `127.0.0.1:${DEFAULT_MANAGER_PORT}`,
    `[::1]:${DEFAULT_MANAGER_PORT}`,
  ]).map((text) => clientListen(parseListen(text)));
  const direct = options.directListen === undefined
    ? undefined
    : parseListen(options.directListen, "--direct-listen");
  const healthAt = options.healthListen === undefined
    ? undefined
    : parseListen(options.healthListen, "--health-listen");
  const agentAt = options.agentListen === undefined
    ? undefined
    : parseListen(options.agentListen, "--agent-listen");
  const podSubnets = parseSubnets(options.podSubnets ?? [], "pod", "--pod-cidr");
  const serviceSubnets = parseSubnets(options.serviceSubnets ?? [], "service", "--service-cidr");
  const allowAlsoProxy = parseSubnets(
    options.allowAlsoProxy ?? [],
    "also-proxy",
    "--allow-also-proxy",
  );
  const podIp = checkAddress(options.podIp, "pod IP", "--pod-ip");
  const dnsServer = checkAddress(options.dnsServer, "DNS server", "--dns-server");
  const serviceIps = new Set(
    (options.serviceIps ?? []).map((ip) => checkAddress(ip, "Service IP", "--service-ip")!),
  );
  let limits: Limits;
  try {
    limits = resolveLimits(options.limits);
  } catch (cause) {
    throw new ManagerSetupError((cause as Error).message, {
      hint:
        "Pass each --max-… limit as a positive whole number, a per-session one at most its total.",
      usage: true,
      cause,
    });
  }
  const durations = {
    dialTimeoutMs: positive(options.dialTimeoutMs, 5000, "dial timeout", "--dial-timeout"),
    heartbeatIntervalMs: positive(
      options.heartbeatIntervalMs,
      5000,
      "heartbeat interval",
      "--heartbeat-interval",
    ),
    sessionTtlMs: positive(options.sessionTtlMs, 30_000, "session TTL", "--session-ttl"),
    udpIdleTimeoutMs: positive(
      options.udpIdleTimeoutMs,
      60_000,
      "UDP idle timeout",
      "--udp-idle-timeout",
    ),
    dnsTimeoutMs: positive(options.dnsTimeoutMs, 2000, "DNS timeout", "dnsTimeoutMs"),
  };

  const tls = options.tls ?? await readTls(options.tlsDir);
  const tlsCheck = checkTls(tls, serverName);
  const credentials = serverCredentials(tls);
  let directCreds: ReturnType<typeof directCredentials> | undefined;
  if (direct !== undefined) {
    const clientCa = options.clientCaPem ?? await readClientCa(
      options.clientCaPath ?? `${(options.tlsDir ?? ".").replace(/\/$/, "")}/client-ca.crt`,
    );
    directCreds = directCredentials(tls, clientCa);
  }

  const resolvConfPath = options.resolvConfPath ?? "/etc/resolv.conf";
  const resolvConf = await readResolvConf(resolvConfPath, log);
  const clusterInfo = new ClusterInfoSource({
    podSubnets: podSubnets.map(String),
    serviceSubnets: serviceSubnets.map(String),
    clusterDomain: options.clusterDomain ?? clusterDomainFromSearch(resolvConf.search) ??
      "cluster.local",
    dnsServer: dnsServer ?? resolvConf.nameservers[0] ?? "",
    managerPodIp: podIp ?? "",
    searchPath: resolvConf.search,
    namespaces: [...(options.namespaces ?? [])],
  });
  // Started before binding: a bad kubeconfig fails the start like a bad flag.
  const discovery = options.discovery === undefined ? undefined : startDiscovery(clusterInfo, {
    ...options.discovery,
    ...(podIp ? { podIp } : {}),
    fields: [
      ...(podSubnets.length === 0 ? ["podSubnets" as const] : []),
      ...(serviceSubnets.length === 0 ? ["serviceSubnets" as const] : []),
      ...((options.namespaces ?? []).length === 0 ? ["namespaces" as const] : []),
    ],
    log,
  });
  if (discovery !== undefined) {
    log(`manager: discovery: reading the cluster at ${discovery.server} (${discovery.source})`);
  }

  const upstream = options.dnsUpstream ?? resolvConf.nameservers[0] ?? dnsServer;
  let forwarder: DnsForwarder | undefined;
  if (upstream !== undefined) {
    try {
      forwarder = new DnsForwarder(upstream, {
        timeoutMs: durations.dnsTimeoutMs,
        maxInFlight: limits.dnsInFlight,
      });
    } catch (cause) {
      await discovery?.close();
      throw new ManagerSetupError(`Cannot use DNS upstream "${upstream}"`, {
        hint:
          'Pass --dns-upstream as an IP address with an optional port, like "198.18.128.10:53".',
        usage: true,
        cause,
      });
    }
  }

  const pingProgram = options.pingProgram === null
    ? undefined
    : options.pingProgram ?? findPingProgram();
  const stats = new ManagerStats();
  const admission = new Admission(limits);
  const sessions = new SessionTable({
    ttlMs: durations.sessionTtlMs,
    log,
    ...(options.now ? { now: options.now } : {}),
  });

  let agentChecks = options.agents;
  if (agentChecks === undefined && options.discovery !== undefined) {
    const access = managerKubeAccess(options.discovery);
    agentChecks = {
      auth: kubeAgentAuthenticator(access.kubeConfig),
      claims: kubeClaimReader(access.kubeConfig),
    };
  }
  const registry = new AgentRegistry({
    ttlMs: durations.sessionTtlMs,
    log,
    ...(options.now ? { now: options.now } : {}),
  });
  const open = new Set<{ abort(reason: string): void }>();
  const intercepts: InterceptContext | undefined = agentChecks === undefined ? undefined : {
    sessions,
    registry,
    auth: agentChecks.auth,
    claims: agentChecks.claims,
    admission,
    stats,
    heartbeatIntervalMs: durations.heartbeatIntervalMs,
    log,
    open,
  };

  const ownAddresses = ownAddressesOf(podIp);
  const makePolicy = (info: Readonly<ClusterInfoValue>) =>
    new DestinationPolicy({
      podSubnets: info.podSubnets,
      serviceSubnets: info.serviceSubnets,
      ...(info.dnsServer ? { dnsServer: info.dnsServer } : {}),
      ownAddresses: [...ownAddresses, ...(info.managerPodIp ? [info.managerPodIp] : [])],
      serviceIps: [...serviceIps],
      allowAlsoProxy,
      allowAnyDestination: options.allowAnyDestination ?? false,
      allowLoopback: options.allowLoopback ?? false,
    });
  let policy = makePolicy(clusterInfo.current);
  const state: ServerState = {
    sessions,
    clusterInfo,
    stats,
    forwarder,
    heartbeatIntervalMs: durations.heartbeatIntervalMs,
    policy: () => policy,
    flows: {
      sessions,
      policy: () => policy,
      stats,
      admission,
      log,
      dialTimeoutMs: durations.dialTimeoutMs,
      udpIdleTimeoutMs: durations.udpIdleTimeoutMs,
      ping: commandPinger(pingProgram),
      open,
      ...(intercepts ? { intercepts } : {}),
      resolveDns: (query) => {
        const forwarder = state.forwarder;
        if (forwarder === undefined) {
          stats.dnsFailed++;
          return Promise.reject(new DnsForwardError(NO_DNS_SERVER));
        }
        return forwarder.resolve(query).then((answer) => {
          stats.dnsAnswered++;
          return answer;
        }, (error) => {
          stats.dnsFailed++;
          throw error;
        });
      },
    },
  };
  const unsubscribe = clusterInfo.subscribe((info) => {
    try {
      policy = makePolicy(info);
    } catch (error) {
      log(`manager: cluster info change ignored by the policy: ${(error as Error).message}`);
    }
  });

  const servers: Server[] = [];
  let health: Health | undefined;
  let serving = false;
  let closing: Promise<void> | undefined;
  const stopAll = async () => {
    forwarder?.close();
    for (const server of servers) server.forceShutdown();
    await health?.close();
    unsubscribe();
    await discovery?.close();
  };
  const addresses: string[] = [];
  let directAddress: string | undefined;
  let agentAddress: string | undefined;
  let port = 0;
  try {
    // One server per listener kind, so that a call's listener is its server's.
    const client = newServer(state);
    servers.push(client);
    for (const [i, listen] of listens.entries()) {
      // The second loopback listener takes the port the first one got (0 asks for any).
      const at = i > 0 && listen.port === 0 && port !== 0
        ? parseListen(hostPort(listen.host, port))
        : listen;
      try {
        const bound = await bindServer(client, at, credentials);
        if (port === 0) port = bound;
        addresses.push(hostPort(at.host, bound));
      } catch (error) {
        // The pod may have no IPv6 loopback: the default ::1 is a wish, not a need.
        if (explicitListen || i === 0) throw error;
        log(`manager: not listening on ${at.text}: ${(error as ManagerSetupError).message}`);
      }
    }
    if (agentAt !== undefined && intercepts !== undefined) {
      const server = grpcServer();
      server.addService(AgentService, agentImplementation(intercepts));
      servers.push(server);
      const bound = await bindServer(server, agentAt, credentials);
      agentAddress = hostPort(agentAt.host, bound);
    } else if (agentAt !== undefined) {
      log(
        "manager: warning: no agent listener: checking agents needs Kubernetes access " +
          "(--kubeconfig or running in a pod)",
      );
    }
    if (direct !== undefined && directCreds !== undefined) {
      const server = newServer(state);
      servers.push(server);
      const bound = await bindServer(server, direct, directCreds);
      directAddress = hostPort(direct.host, bound);
    }
    if (healthAt !== undefined) {
      try {
        health = startHealth({
          hostname: healthAt.host,
          port: healthAt.port,
          ready: () => serving && closing === undefined,
          log,
        });
      } catch (cause) {
        throw new ManagerSetupError(
          `Cannot listen on "${healthAt.text}" for health: ${bindProblem(cause)}`,
          { hint: "Stop what uses that address, or pass another with --health-listen.", cause },
        );
      }
    }
  } catch (error) {
    await stopAll();
    throw error;
  }

  const findOwnService = discovery === undefined
    ? undefined
    : watchOwnService(discovery, namespace, (ips) => {
      const before = [...serviceIps].join(" ");
      for (const ip of ips) serviceIps.add(ip);
      if ([...serviceIps].join(" ") !== before) {
        log(`manager: never dialing its own Service's ClusterIPs ${[...serviceIps].join(" ")}`);
        policy = makePolicy(clusterInfo.current);
      }
    });

  const sweepIntervalMs = options.sweepIntervalMs ?? 1000;
  const sweeper = sweepIntervalMs > 0
    ? setInterval(() => {
      sessions.sweep();
      registry.sweep();
    }, sweepIntervalMs)
    : undefined;

  if (discovery !== undefined) {
    const waitMs = options.discovery?.startWaitMs ?? 5000;
    if (!await settledWithin(discovery, waitMs)) {
      log(
        `manager: warning: discovery has no answer from ${discovery.server} after ${waitMs} ms: ` +
          "serving what it has, and announcing the rest when it comes",
      );
    }
  }
  const info = clusterInfo.current;
  for (const warning of tlsCheck.warnings) log(`manager: warning: ${warning}`);
  log(
    `manager: serving clients on ${addresses.join(" ")} (TLS, ${serverName}; through ` +
      `pods/portforward), pods ${list(info.podSubnets)}, services ${list(info.serviceSubnets)}, ` +
      `domain ${info.clusterDomain}, DNS ${forwarder?.server ?? "none"}`,
  );
  if (directAddress !== undefined) {
    log(`manager: serving direct clients on ${directAddress} (mutual TLS: a client certificate)`);
  }
  if (health !== undefined) log(`manager: health on http://${health.address} (/livez, /readyz)`);
  if (agentAddress !== undefined) {
    log(`manager: serving traffic-agents on ${agentAddress} (TLS; their projected tokens)`);
  }
  if (allowAlsoProxy.length > 0) {
    log(`manager: sessions may also proxy within ${allowAlsoProxy.join(" ")}`);
  }
  if (options.allowAnyDestination) {
    log(
      "manager: warning: --allow-any-destination: flows may go anywhere but the refused ranges",
    );
  } else if (info.podSubnets.length + info.serviceSubnets.length === 0) {
    log(
      discovery === undefined
        ? "manager: warning: no pod or service subnets: every flow but to the DNS server is " +
          "refused (pass --pod-cidr and --service-cidr)"
        : "manager: warning: no pod or service subnets yet: every flow but to the DNS server " +
          "is refused until discovery finds them",
    );
  }
  if (pingProgram === undefined) log("manager: no ping program: pings are answered unreachable");

  serving = true;
  return {
    address: addresses[0]!,
    hostname: listens[0]!.host,
    port,
    addresses,
    directAddress,
    agentAddress,
    health,
    agents: registry,
    admission,
    clusterInfo,
    discovery,
    stats,
    sessions,
    sweep: () => sessions.sweep(),
    close() {
      closing ??= (async () => {
        clearInterval(sweeper);
        findOwnService?.stop();
        await discovery?.close();
        unsubscribe();
        const count = sessions.endAll("the traffic-manager is stopping");
        registry.close("the traffic-manager is stopping");
        for (const call of [...state.flows.open]) {
          call.abort("the traffic-manager is stopping");
        }
        forwarder?.close();
        await Promise.all(servers.map((server) => shutdownServer(server, 1000)));
        await health?.close();
        log(
          `manager: stopped${
            count === 0 ? "" : ` (${count} session${count === 1 ? "" : "s"} ended)`
          }`,
        );
      })();
      return closing;
    },
  };
}

/** A gRPC server of the Manager service with the manager's channel settings. */
function newServer(state: ServerState): Server {
  const server = grpcServer();
  server.addService(ManagerService, implementation(state));
  return server;
}

/** The client listener must be on loopback: else it would skip the API server's RBAC. */
function clientListen(listen: Listen): Listen {
  return requireLoopback(
    listen,
    "clients",
    "client listener",
    "Clients reach it through the API server's pods/portforward, where Kubernetes " +
      "RBAC decides who they are; to let clients dial the manager, use --direct-listen " +
      "HOST:PORT, which asks them for a client certificate.",
  );
}

/**
 * Learns the ClusterIPs of the manager's own Service (`traffic-manager` in
 * its namespace) through discovery, at once and then every minute: kube-proxy
 * sends those addresses back to the manager's own ports, so they are never
 * dialed.
 */
function watchOwnService(
  discovery: Discovery,
  namespace: string,
  found: (ips: string[]) => void,
): { stop(): void } {
  let stopped = false;
  const look = () =>
    discovery.serviceIps(namespace, MANAGER_SERVICE).then((ips) => {
      if (!stopped && ips.length > 0) found(ips);
    }, () => {});
  look();
  const timer = setInterval(look, 60_000);
  return {
    stop() {
      stopped = true;
      clearInterval(timer);
    },
  };
}

/** The name of the manager's Service (and Deployment) in its namespace. */
const MANAGER_SERVICE = "traffic-manager";

interface ServerState {
  sessions: SessionTable;
  clusterInfo: ClusterInfoSource;
  stats: ManagerStats;
  forwarder: DnsForwarder | undefined;
  heartbeatIntervalMs: number;
  flows: FlowContext;
  /** The destination policy as of now: it also decides what `also_proxy` may ask. */
  policy(): DestinationPolicy;
}

const NO_DNS_SERVER = "the traffic-manager has no DNS server (no nameserver in its resolv.conf)";

/** The most `also_proxy` subnets one session may ask for. */
const MAX_ALSO_PROXY = 64;

/** The most cluster-info streams one session may hold (a client needs one). */
const MAX_WATCHES_PER_SESSION = 4;

/** The most characters of a client's own words kept (its name, host, version) for the log. */
const MAX_CLIENT_TEXT = 256;

/** A client's text, cut to {@linkcode MAX_CLIENT_TEXT} and without control characters. */
function clip(text: string): string {
  // deno-lint-ignore no-control-regex
  return text.slice(0, MAX_CLIENT_TEXT).replace(/[\u0000-\u001f\u007f]/g, "?");
}

function implementation(state: ServerState): UntypedServiceImplementation {
  const { sessions, clusterInfo } = state;
  const noSession = (id: string) => ({
    code: status.NOT_FOUND,
    details: `session "${shortId(id) || "(none)"}" is unknown or expired: arrive again`,
  });
  return {
    version(_call: ServerUnaryCall<unknown, unknown>, callback: sendUnaryData<unknown>) {
      callback(null, create(VersionInfoSchema, { name: MANAGER_NAME, version: VERSION }));
    },

    arrive(call: ServerUnaryCall<ArriveRequest, unknown>, callback: sendUnaryData<unknown>) {
      const client = call.request.client;
      const alsoProxy: Cidr[] = [];
      for (const text of call.request.alsoProxy.slice(0, MAX_ALSO_PROXY + 1)) {
        if (alsoProxy.length === MAX_ALSO_PROXY) {
          callback({
            code: status.INVALID_ARGUMENT,
            details: `also_proxy: more than ${MAX_ALSO_PROXY} subnets`,
          });
          return;
        }
        let subnet: Cidr;
        try {
          subnet = Cidr.parse(text);
        } catch {
          callback({
            code: status.INVALID_ARGUMENT,
            details: `also_proxy: "${clip(text)}" is not a subnet (ADDRESS/PREFIX)`,
          });
          return;
        }
        const refused = state.policy().checkAlsoProxy(subnet);
        if (refused !== undefined) {
          callback({ code: status.PERMISSION_DENIED, details: refused });
          return;
        }
        alsoProxy.push(subnet);
      }
      // Sessions past their TTL that no sweep has removed yet do not count.
      const { admission } = state.flows;
      if (sessions.size >= admission.limits.sessions) sessions.sweep();
      const full = admission.takeSession(sessions.size);
      if (full !== undefined) {
        callback({ code: status.RESOURCE_EXHAUSTED, details: full });
        return;
      }
      const session = sessions.arrive({
        ...(alsoProxy.length > 0 ? { alsoProxy } : {}),
        name: clip(client?.name ?? ""),
        hostname: clip(client?.hostname ?? ""),
        version: clip(client?.version ?? ""),
        namespace: clip(client?.namespace ?? ""),
        os: clip(client?.os ?? ""),
      });
      callback(
        null,
        create(ArriveResponseSchema, {
          sessionId: session.id,
          managerVersion: VERSION,
          clusterInfo: toClusterInfoMessage(clusterInfo.current),
          heartbeatIntervalMs: state.heartbeatIntervalMs,
          sessionTtlMs: sessions.ttlMs,
          features: state.flows.intercepts ? [FEATURE_MUX, FEATURE_INTERCEPT] : [FEATURE_MUX],
        }),
      );
    },

    watchClusterInfo(call: ServerWritableStream<SessionRef, ClusterInfo>) {
      const session = sessions.get(call.request.sessionId);
      if (session === undefined) {
        call.emit("error", noSession(call.request.sessionId));
        return;
      }
      if (session.watches >= MAX_WATCHES_PER_SESSION) {
        call.emit("error", {
          code: status.RESOURCE_EXHAUSTED,
          details: `the session watches the cluster info ${MAX_WATCHES_PER_SESSION} times already`,
        });
        return;
      }
      watch(call, session, clusterInfo);
    },

    remain(call: ServerUnaryCall<SessionRef, unknown>, callback: sendUnaryData<unknown>) {
      if (sessions.remain(call.request.sessionId) === undefined) {
        callback(noSession(call.request.sessionId));
      } else callback(null, create(RemainResponseSchema, {}));
    },

    depart(call: ServerUnaryCall<SessionRef, unknown>, callback: sendUnaryData<unknown>) {
      // Departing twice, or after expiry, is not an error: the session is gone either way.
      sessions.depart(call.request.sessionId);
      callback(null, create(DepartResponseSchema, {}));
    },

    mux(call: MuxCall) {
      handleMux(call, state.flows);
    },

    ...(state.flows.intercepts ? interceptMethods(state.flows.intercepts) : {
      createIntercept(_call: unknown, callback: sendUnaryData<unknown>) {
        callback({
          code: status.UNIMPLEMENTED,
          details: "this traffic-manager has no Kubernetes access: it serves no intercepts",
        });
      },
    }),
  };
}

function watch(
  call: ServerWritableStream<SessionRef, ClusterInfo>,
  session: Session,
  source: ClusterInfoSource,
): void {
  call.write(toClusterInfoMessage(source.current));
  session.watches++;
  let counted = true;
  const uncount = () => {
    if (counted) session.watches--;
    counted = false;
  };
  const unsubscribe = source.subscribe((info) => call.write(toClusterInfoMessage(info)));
  const unregister = session.onEnd((end, reason) => {
    uncount();
    unsubscribe();
    if (end === "expired") {
      call.emit("error", { code: status.NOT_FOUND, details: `${reason}: arrive again` });
    } else call.end();
  }, "stream");
  call.on("cancelled", () => {
    uncount();
    unsubscribe();
    unregister();
  });
}

/** Whether `discovery` settles within `ms`. */
async function settledWithin(discovery: Discovery, ms: number): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const settled = await Promise.race([
    discovery.settled.then(() => true),
    new Promise<boolean>((resolve) => timer = setTimeout(() => resolve(false), ms)),
  ]);
  clearTimeout(timer);
  return settled;
}

async function readTls(dir: string | undefined): Promise<TlsMaterial> {
  if (dir === undefined) {
    throw new ManagerSetupError("No TLS certificate for the traffic-manager", {
      hint: "Pass --tls-dir DIR, a directory holding tls.crt, tls.key and ca.crt.",
      usage: true,
    });
  }
  return await readTlsDir(dir);
}

async function readResolvConf(path: string, log: (line: string) => void): Promise<ResolvConf> {
  try {
    return parseResolvConf(await Deno.readTextFile(path));
  } catch (error) {
    log(`manager: warning: cannot read "${path}": ${(error as Error).message}`);
    return { nameservers: [], search: [] };
  }
}

function parseSubnets(texts: readonly string[], what: string, flag: string): Cidr[] {
  return texts.map((text) => {
    try {
      return Cidr.parse(text.trim());
    } catch (cause) {
      throw new ManagerSetupError(`Cannot parse ${what} subnet "${text}"`, {
        hint: `Pass ${flag} as a CIDR like "198.18.64.0/18" (repeat it for more).`,
        usage: true,
        cause,
      });
    }
  });
}

function checkAddress(text: string | undefined, what: string, flag: string): string | undefined {
  if (text === undefined || text === "") return undefined;
  if (parseAddress(text) === undefined) {
    throw new ManagerSetupError(`The ${what} "${text}" is not an IP address`, {
      hint: `Pass ${flag} as an IPv4 or IPv6 address.`,
      usage: true,
    });
  }
  return text;
}

function positive(
  value: number | undefined,
  fallback: number,
  what: string,
  flag: string,
): number {
  if (value === undefined) return fallback;
  if (!Number.isFinite(value) || value <= 0 || value > 2 ** 31) {
    throw new ManagerSetupError(`The ${what} "${value}" is not a positive number of milliseconds`, {
      hint: `Pass ${flag} as a duration, like "5000" or "5s".`,
      usage: true,
    });
  }
  return Math.round(value);
}

/**
 * The manager's own addresses: its pod IP and every interface's address but
 * loopback's (the policy refuses loopback as a whole).
 */
function ownAddressesOf(podIp: string | undefined): string[] {
  const own = new Set<string>();
  if (podIp) own.add(podIp);
  try {
    for (const nic of Deno.networkInterfaces()) {
      if (nic.name !== "lo" && !/^(127\.|::1$)/.test(nic.address)) own.add(nic.address);
    }
  } catch {
    // No --allow-sys: the pod IP still counts, and loopback is refused anyway.
  }
  return [...own];
}

function list(items: readonly string[]): string {
  return items.length === 0 ? "none" : items.join(" ");
}
