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
  Server,
  type ServerUnaryCall,
  type ServerWritableStream,
  status,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";
import type { EventEmitter } from "node:events";
import { Cidr, parseAddress } from "../mod/net/address.ts";
import {
  type ArriveRequest,
  ArriveResponseSchema,
  CHANNEL_OPTIONS,
  type ClusterInfo,
  create,
  DEFAULT_MANAGER_NAMESPACE,
  DEFAULT_MANAGER_PORT,
  DepartResponseSchema,
  type DNSRequest,
  DNSResponseSchema,
  FEATURE_MUX,
  managerServerName,
  ManagerService,
  RemainResponseSchema,
  type SessionRef,
  VersionInfoSchema,
} from "../mod/rpc/service.ts";
import { VERSION } from "../mod/version.ts";
import { ClusterInfoSource, type ClusterInfoValue, toClusterInfoMessage } from "./cluster_info.ts";
import { type Discovery, type DiscoveryOptions, startDiscovery } from "./discovery.ts";
import { DnsForwarder, DnsForwardError } from "./dns_forwarder.ts";
import { ManagerSetupError } from "./errors.ts";
import { commandPinger, findPingProgram } from "./ping.ts";
import { DestinationPolicy } from "./policy.ts";
import { clusterDomainFromSearch, parseResolvConf, type ResolvConf } from "./resolv_conf.ts";
import { type Session, SessionTable, shortId } from "./sessions.ts";
import { ManagerStats } from "./stats.ts";
import { checkTls, readTlsDir, serverCredentials, type TlsMaterial } from "./tls.ts";
import { handleTunnel, type TunnelCall, type TunnelContext } from "./tunnel.ts";
import { handleMux, type MuxCall } from "./mux.ts";

/** The name `Version` answers with. */
export const MANAGER_NAME = "vif-traffic-manager";

/** Options of {@linkcode serve}. Only the TLS material is required. */
export interface ServeOptions {
  /** A directory with `tls.crt`, `tls.key` and `ca.crt` (a mounted `kubernetes.io/tls` Secret). */
  tlsDir?: string;
  /** The TLS material itself, instead of {@linkcode ServeOptions.tlsDir}. */
  tls?: TlsMaterial;
  /** `HOST:PORT` to listen on (`[v6]:PORT`, `:PORT` and `PORT` too). Default `0.0.0.0:8081`; port 0 picks one. */
  listen?: string;
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
  /** Dial any destination but the manager's own port, not only the cluster's subnets. */
  allowAnyDestination?: boolean;
  /** The dial timeout when a tunnel asks for none, in ms. Default 5000. */
  dialTimeoutMs?: number;
  /** How often clients should send a heartbeat, in ms. Default 5000. */
  heartbeatIntervalMs?: number;
  /** How long a session lives without a heartbeat, in ms. Default 30000. */
  sessionTtlMs?: number;
  /** How often expired sessions are swept, in ms; 0 for never (tests call `sweep()`). Default 1000. */
  sweepIntervalMs?: number;
  /** How long a UDP tunnel lives without a datagram, in ms. Default 60000. */
  udpIdleTimeoutMs?: number;
  /**
   * Serve the `Mux` call (every flow of a session on one stream) and announce
   * it in `ArriveResponse.features`. Default true; false leaves clients to one
   * `Tunnel` call per flow.
   */
  mux?: boolean;
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
  /** The address it listens on, `host:port` (`[v6]:port` for IPv6). */
  readonly address: string;
  /** The host part of the listen address. */
  readonly hostname: string;
  /** The port it listens on (the real one when 0 was asked). */
  readonly port: number;
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
  /** Ends every session and tunnel and stops serving. Safe to call twice. */
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
  const listen = parseListen(options.listen ?? `0.0.0.0:${DEFAULT_MANAGER_PORT}`);
  const podSubnets = parseSubnets(options.podSubnets ?? [], "pod", "--pod-cidr");
  const serviceSubnets = parseSubnets(options.serviceSubnets ?? [], "service", "--service-cidr");
  const podIp = checkAddress(options.podIp, "pod IP", "--pod-ip");
  const dnsServer = checkAddress(options.dnsServer, "DNS server", "--dns-server");
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
      forwarder = new DnsForwarder(upstream, { timeoutMs: durations.dnsTimeoutMs });
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
  const sessions = new SessionTable({
    ttlMs: durations.sessionTtlMs,
    log,
    ...(options.now ? { now: options.now } : {}),
  });

  let policy = new DestinationPolicy({ podSubnets, serviceSubnets, ownPort: 0 });
  const state: ServerState = {
    sessions,
    clusterInfo,
    stats,
    forwarder,
    heartbeatIntervalMs: durations.heartbeatIntervalMs,
    mux: options.mux ?? true,
    tunnels: {
      sessions,
      policy: () => policy, // Replaced below once the port is known, and on cluster changes.
      stats,
      dialTimeoutMs: durations.dialTimeoutMs,
      udpIdleTimeoutMs: durations.udpIdleTimeoutMs,
      ping: commandPinger(pingProgram),
      open: new Set(),
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
  const server = new Server(CHANNEL_OPTIONS);
  widenReceiveWindows(server, RECEIVE_WINDOW);
  server.addService(ManagerService, implementation(state));

  let port: number;
  try {
    port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(
        listen.bind,
        credentials,
        (error, port) => error ? reject(error) : resolve(port),
      )
    );
  } catch (cause) {
    forwarder?.close();
    server.forceShutdown();
    await discovery?.close();
    throw new ManagerSetupError(`Cannot listen on "${listen.text}": ${bindProblem(cause)}`, {
      hint: "Stop what uses that address, or pass another with --listen HOST:PORT.",
      cause,
    });
  }

  const ownAddresses = ownAddressesOf(listen.host, podIp);
  const makePolicy = (info: Readonly<ClusterInfoValue>) =>
    new DestinationPolicy({
      podSubnets: info.podSubnets,
      serviceSubnets: info.serviceSubnets,
      ...(info.dnsServer ? { dnsServer: info.dnsServer } : {}),
      ownAddresses: [...ownAddresses, ...(info.managerPodIp ? [info.managerPodIp] : [])],
      ownPort: port,
      allowAnyDestination: options.allowAnyDestination ?? false,
    });
  policy = makePolicy(clusterInfo.current);
  const unsubscribe = clusterInfo.subscribe((info) => {
    try {
      policy = makePolicy(info);
    } catch (error) {
      log(`manager: cluster info change ignored by the policy: ${(error as Error).message}`);
    }
  });

  const sweepIntervalMs = options.sweepIntervalMs ?? 1000;
  const sweeper = sweepIntervalMs > 0
    ? setInterval(() => sessions.sweep(), sweepIntervalMs)
    : undefined;

  const address = listen.host.includes(":") ? `[${listen.host}]:${port}` : `${listen.host}:${port}`;
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
    `manager: serving on ${address} (TLS, ${serverName}), pods ${list(info.podSubnets)}, ` +
      `services ${list(info.serviceSubnets)}, domain ${info.clusterDomain}, ` +
      `DNS ${forwarder?.server ?? "none"}`,
  );
  if (options.allowAnyDestination) {
    log("manager: warning: --allow-any-destination: tunnels may go anywhere but this port");
  } else if (info.podSubnets.length + info.serviceSubnets.length === 0) {
    log(
      discovery === undefined
        ? "manager: warning: no pod or service subnets: every tunnel but to the DNS server is " +
          "refused (pass --pod-cidr and --service-cidr)"
        : "manager: warning: no pod or service subnets yet: every tunnel but to the DNS server " +
          "is refused until discovery finds them",
    );
  }
  if (pingProgram === undefined) log("manager: no ping program: pings are answered unreachable");

  let closing: Promise<void> | undefined;
  return {
    address,
    hostname: listen.host,
    port,
    clusterInfo,
    discovery,
    stats,
    sessions,
    sweep: () => sessions.sweep(),
    close() {
      closing ??= (async () => {
        clearInterval(sweeper);
        await discovery?.close();
        unsubscribe();
        const count = sessions.endAll("the traffic-manager is stopping");
        for (const tunnel of [...state.tunnels.open]) {
          tunnel.abort("the traffic-manager is stopping");
        }
        forwarder?.close();
        await shutdown(server, 1000);
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

interface ServerState {
  sessions: SessionTable;
  clusterInfo: ClusterInfoSource;
  stats: ManagerStats;
  forwarder: DnsForwarder | undefined;
  heartbeatIntervalMs: number;
  tunnels: TunnelContext;
  /** Serve the Mux call and announce it. */
  mux: boolean;
}

const NO_DNS_SERVER = "the traffic-manager has no DNS server (no nameserver in its resolv.conf)";

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
      for (const text of call.request.alsoProxy) {
        try {
          alsoProxy.push(Cidr.parse(text));
        } catch {
          callback({
            code: status.INVALID_ARGUMENT,
            details: `also_proxy: "${text}" is not a subnet (ADDRESS/PREFIX)`,
          });
          return;
        }
      }
      const session = sessions.arrive({
        ...(alsoProxy.length > 0 ? { alsoProxy } : {}),
        name: client?.name ?? "",
        hostname: client?.hostname ?? "",
        version: client?.version ?? "",
        namespace: client?.namespace ?? "",
        os: client?.os ?? "",
      });
      callback(
        null,
        create(ArriveResponseSchema, {
          sessionId: session.id,
          managerVersion: VERSION,
          clusterInfo: toClusterInfoMessage(clusterInfo.current),
          heartbeatIntervalMs: state.heartbeatIntervalMs,
          sessionTtlMs: sessions.ttlMs,
          features: state.mux ? [FEATURE_MUX] : [],
        }),
      );
    },

    watchClusterInfo(call: ServerWritableStream<SessionRef, ClusterInfo>) {
      const session = sessions.get(call.request.sessionId);
      if (session === undefined) {
        call.emit("error", noSession(call.request.sessionId));
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

    tunnel(call: TunnelCall) {
      handleTunnel(call, state.tunnels);
    },

    mux(call: MuxCall) {
      if (state.mux) handleMux(call, state.tunnels);
      else call.emit("error", { code: status.UNIMPLEMENTED, details: "Mux is turned off" });
    },

    resolveDNS(call: ServerUnaryCall<DNSRequest, unknown>, callback: sendUnaryData<unknown>) {
      if (sessions.get(call.request.sessionId) === undefined) {
        return callback(noSession(call.request.sessionId));
      }
      state.tunnels.resolveDns(call.request.message).then(
        (message) => callback(null, create(DNSResponseSchema, { message })),
        (error: Error) => {
          const code = error instanceof RangeError
            ? status.INVALID_ARGUMENT
            : error instanceof DnsForwardError
            ? status.UNAVAILABLE
            : status.INTERNAL;
          callback({ code, details: error.message });
        },
      );
    },
  };
}

function watch(
  call: ServerWritableStream<SessionRef, ClusterInfo>,
  session: Session,
  source: ClusterInfoSource,
): void {
  call.write(toClusterInfoMessage(source.current));
  const unsubscribe = source.subscribe((info) => call.write(toClusterInfoMessage(info)));
  const unregister = session.onEnd((end, reason) => {
    unsubscribe();
    if (end === "expired") {
      call.emit("error", { code: status.NOT_FOUND, details: `${reason}: arrive again` });
    } else call.end();
  }, "stream");
  call.on("cancelled", () => {
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

async function shutdown(server: Server, graceMs: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
    new Promise<void>((resolve) => timer = setTimeout(resolve, graceMs)),
  ]);
  clearTimeout(timer);
  server.forceShutdown();
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

interface Listen {
  host: string;
  port: number;
  /** What grpc-js binds: `host:port`, `[v6]:port`. */
  bind: string;
  text: string;
}

/**
 * Parses a listen address: `HOST:PORT`, `[V6]:PORT`, `:PORT` or `PORT`.
 *
 * @param text The address.
 * @returns The host, the port and the form grpc-js binds.
 * @throws {ManagerSetupError} When it is not an IP address and a port.
 */
export function parseListen(text: string): Listen {
  let host = "0.0.0.0";
  let portText = text;
  const bracket = /^\[([^\]]+)\]:(\d+)$/.exec(text);
  if (bracket !== null) [host, portText] = [bracket[1]!, bracket[2]!];
  else if (text.includes(":")) {
    const colon = text.lastIndexOf(":");
    if (colon > 0) host = text.slice(0, colon);
    portText = text.slice(colon + 1);
  }
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (parseAddress(host) === undefined || !(port >= 0 && port <= 65535)) {
    throw new ManagerSetupError(
      `Cannot listen on "${text}": expected HOST:PORT with an IP address`,
      {
        hint: 'Pass --listen like "0.0.0.0:8081", "[::]:8081" or ":8081".',
        usage: true,
      },
    );
  }
  const bind = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
  return { host, port, bind, text };
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

/** The addresses a destination counts as "the manager itself" at. */
function ownAddressesOf(listenHost: string, podIp: string | undefined): string[] {
  const own = new Set<string>();
  if (podIp) own.add(podIp);
  if (listenHost !== "0.0.0.0" && listenHost !== "::") {
    own.add(listenHost);
    return [...own];
  }
  // Bound to every interface: every interface address reaches the API port.
  try {
    for (const nic of Deno.networkInterfaces()) own.add(nic.address);
  } catch {
    // No --allow-sys: loopback and the pod IP still count.
  }
  return [...own];
}

/**
 * The HTTP/2 receive window the manager advertises, per stream and per
 * connection: the same as the client's (`grpc-node.flow_control_window`).
 */
export const RECEIVE_WINDOW = CHANNEL_OPTIONS["grpc-node.flow_control_window"];

/**
 * Makes the server advertise `window` bytes of HTTP/2 receive window per
 * stream (SETTINGS_INITIAL_WINDOW_SIZE, RFC 9113 6.5.2) and per connection
 * (a WINDOW_UPDATE on stream 0, RFC 9113 6.9).
 *
 * grpc-js's server ignores `grpc-node.flow_control_window` (only its client
 * reads it) and keeps Node's 65,535-byte default, which caps each tunnel's
 * client-to-cluster direction at one window per round trip: 2 MB/s over a
 * 20 ms port-forward. It has no option for this, so this reaches into two of
 * its internals (grpc-js is pinned to an exact version in deno.json; the
 * manager's tests check the advertised window): the options it passes to
 * `http2.createSecureServer`, and the method that makes the HTTP/2 server, to
 * widen each new session's connection window.
 *
 * @param server A grpc-js server, before `bindAsync`.
 * @param window The window in bytes.
 */
function widenReceiveWindows(server: Server, window: number): void {
  const internals = server as unknown as {
    commonServerOptions?: { settings?: Record<string, unknown> };
    createHttp2Server?: (credentials: unknown) => EventEmitter;
  };
  if (internals.commonServerOptions === undefined || internals.createHttp2Server === undefined) {
    return; // Another grpc-js: the defaults stand (slower, not wrong).
  }
  internals.commonServerOptions.settings = {
    ...internals.commonServerOptions.settings,
    initialWindowSize: window,
  };
  const create = internals.createHttp2Server.bind(server);
  internals.createHttp2Server = (credentials) => {
    const http2Server = create(credentials);
    http2Server.on("session", (session: { setLocalWindowSize?(size: number): void }) => {
      try {
        session.setLocalWindowSize?.(window);
      } catch {
        // A session already closing.
      }
    });
    return http2Server;
  };
}

/** What grpc-js's bind error ("No address added … errors: [listen EADDRINUSE: …]") comes to. */
function bindProblem(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  if (text.includes("EADDRINUSE")) return "the address is already in use";
  if (text.includes("EADDRNOTAVAIL")) return "no interface has that address";
  if (text.includes("EACCES")) return "permission denied (ports below 1024 need privileges)";
  return /\[(.*)\]/.exec(text)?.[1] ?? text;
}

function list(items: readonly string[]): string {
  return items.length === 0 ? "none" : items.join(" ");
}
