/**
 * One connection to a cluster, as the daemon (and `vif connect --foreground`)
 * holds it: find the traffic-manager through the Kubernetes API (or take its
 * address), port-forward to it, open the {@linkcode Session} with DNS, and keep
 * it up. When the manager is lost (its pod replaced, the port-forward cut), the
 * connection looks for the manager's current pod and carries on; only when it
 * has heard nothing for the grace period does it tear everything down and
 * report why through {@linkcode Connection.ended}.
 *
 * The port-forward's local end is a Unix socket in the state directory;
 * credentials that expire are renewed through the caller's resolver (the
 * daemon's runs as the user); in resolv.conf mode a DNS watchdog process
 * puts the original back should this process die or hang.
 *
 * @module
 */

import { compareVersions, MIN_MANAGER_VERSION, VERSION } from "../version.ts";
import type { ConnectParams } from "./control.ts";
import type { CredentialsResolver } from "./credentials.ts";
import { sessionDns, setupDns } from "./dns_setup.ts";
import { type DnsWatchdog, startDnsWatchdog } from "./dns_watchdog.ts";
import type { SelfCommand } from "./self.ts";
import { ConnectError, type Log, Session } from "./session.ts";
import type { PortForwardProxy } from "../kube/portforward.ts";
import { type ApiAccess, kubeApi } from "../kube/api.ts";

/** The DNS address inside the VIF block (DESIGN.md §3). */
export const DNS_ADDRESS = "240.0.0.2";

/** The port-forward's local socket inside the state directory (see `startPortForwardProxy`). */
export const PORT_FORWARD_SOCKET = "portforward.sock";

/** Options of {@linkcode Connection.open}. */
export interface ConnectionOptions {
  /** Where the original resolv.conf and the port-forward's socket are kept. */
  stateDir: string;
  /** How long to wait for a traffic-manager whose pod is starting, in ms. Default 120 s. */
  managerWaitMs?: number;
  /**
   * Resolves the kubeconfig when the request carries no credentials, and
   * again when the API server refuses them (they expired). The daemon's
   * resolver runs `vif kube-credentials` as the user it serves
   * (`credentials.ts`): never the user's code as root.
   */
  credentials: CredentialsResolver;
  /**
   * How to run this program: for the DNS watchdog (`dns_watchdog.ts`),
   * which puts resolv.conf back when this process dies or hangs. None
   * without it.
   */
  self?: SelfCommand;
  log: Log;
  /** Told of each step, for the caller's progress display. */
  progress?: (step: string) => void;
  /** Hosts never to route into the TUN, besides the manager and API server. */
  protectedHosts?: string[];
  /** The user the daemon serves: intercept mounts run as them. */
  user?: { uid: number; gid: number };
  /** Told when the intercepts or their mounts change. */
  onInterceptsChanged?: () => void;
}

/** The connection part of `vif status --output json` (docs/daemon.md). */
export interface ConnectionStatus {
  state: "connected" | "reconnecting";
  /** ISO 8601. */
  since: string;
  uptimeSeconds: number;
  context: string | null;
  cluster: string | null;
  namespace: string;
  manager: {
    namespace: string;
    version: string;
    address: string;
    pod: string | null;
    via: "port-forward" | "direct";
    /** How flows travel: all on one `Mux` call. */
    tunnel: "mux";
  };
  sessionId: string;
  tun: { name: string; mtu: number; addresses: string[] } | null;
  subnets: {
    routed: Array<{ cidr: string; source: string }>;
    excluded: Array<{ cidr: string; reason: "never-proxy" | "conflict"; route?: string }>;
  };
  dns: {
    mode: "resolved" | "resolv.conf" | null;
    address: string;
    domains: string[];
    search: string[];
    description: string | null;
  };
  counters: {
    connectionsOpen: number;
    connectionsTotal: number;
    udpFlowsOpen: number;
    udpFlowsTotal: number;
    dnsQueries: number;
    dnsCacheHits: number;
    bytesToCluster: number;
    bytesFromCluster: number;
    dialFailures: number;
    packetsDropped: number;
  };
  /** The session's intercepts (without the environment's values: they may be secrets). */
  intercepts: Array<{
    id: string;
    namespace: string;
    workload: string;
    port: number;
    local: string;
    holder: string;
    mountPoint: string | null;
    pods: string[];
    connections: number;
    /** How many variables the app container's environment has. */
    variables: number;
  }>;
}

interface KubeSide {
  context: string;
  server: string;
  /** How to reach the API server; replaced when the credentials expire. */
  access: ApiAccess;
  proxy: PortForwardProxy;
}

/** A live connection. */
export class Connection {
  readonly params: ConnectParams;
  readonly session: Session;
  readonly startedAt = new Date();
  #kube: KubeSide | null;
  #log: Log;
  #credentials: CredentialsResolver;
  #dnsWatchdog: DnsWatchdog | undefined;
  #state: "connected" | "reconnecting" = "connected";
  #ended = Promise.withResolvers<ConnectError>();
  #watchdog: ReturnType<typeof setInterval> | undefined;
  #closing: Promise<void> | null = null;

  private constructor(
    params: ConnectParams,
    session: Session,
    kube: KubeSide | null,
    options: ConnectionOptions,
    dnsWatchdog: DnsWatchdog | undefined,
  ) {
    this.params = params;
    this.session = session;
    this.#kube = kube;
    this.#log = options.log;
    this.#credentials = options.credentials;
    this.#dnsWatchdog = dnsWatchdog;
  }

  /**
   * Resolves when the connection ended by itself (the manager was gone for
   * longer than the grace period), after everything was put back.
   */
  get ended(): Promise<ConnectError> {
    return this.#ended.promise;
  }

  /** `"reconnecting"` while the manager is being looked for again. */
  get state(): "connected" | "reconnecting" {
    return this.#state;
  }

  /** The kubeconfig context, when connected through the API server. */
  get context(): string | undefined {
    return this.#kube?.context;
  }

  /**
   * Connects.
   *
   * @param params where the cluster is and what to route
   * @param options the state directory, logging and progress
   * @returns the live connection
   * @throws {ConnectError} (or an error with a `hint`) saying what to do
   */
  static async open(params: ConnectParams, options: ConnectionOptions): Promise<Connection> {
    const progress = options.progress ?? (() => {});
    await checkTunPermission();
    // The port-forward's socket and resolv.conf's original go there.
    await Deno.mkdir(options.stateDir, { recursive: true, mode: 0o755 });
    let kube: KubeSide | null = null;
    let managerAddress = params.managerAddress;
    let managerCaPem = params.managerCaPem;
    const protectedHosts = [...(options.protectedHosts ?? [])];
    let dnsWatchdog: DnsWatchdog | undefined;
    try {
      if (!managerAddress) {
        const opened = await openKube(params, progress, options);
        kube = opened.kube;
        managerAddress = kube.proxy.address;
        managerCaPem = opened.caPem;
        protectedHosts.push(new URL(kube.server).hostname.replace(/^\[|\]$/g, ""));
      }
      if (!managerCaPem) {
        throw new ConnectError(
          "no CA to verify the traffic-manager with",
          "Pass --manager-ca FILE: the ca.crt of the manager's TLS secret.",
        );
      }
      progress(`arriving at the traffic-manager${kube ? "" : ` at ${managerAddress}`}`);
      const session = await Session.connect({
        managerAddress,
        managerCaPem,
        managerNamespace: params.managerNamespace,
        ...(!kube && params.clientCertPem && params.clientKeyPem
          ? { clientCertificate: { certPem: params.clientCertPem, keyPem: params.clientKeyPem } }
          : {}),
        namespace: params.namespace,
        extraAddresses: [DNS_ADDRESS],
        protectedHosts,
        alsoProxy: params.alsoProxy,
        neverProxy: params.neverProxy,
        allowConflicting: params.allowConflicting,
        log: options.log,
        onStep: progress,
        ...(options.user ? { user: options.user } : {}),
        ...(options.onInterceptsChanged
          ? { onInterceptsChanged: options.onInterceptsChanged }
          : {}),
        kube: () => kube ? kubeApi(kube.access) : undefined,
        onClusterInfo: async (info, s) => {
          const first = !sessionDns(s);
          try {
            await setupDns(s, info, {
              address: DNS_ADDRESS,
              namespace: params.namespace,
              stateDir: options.stateDir,
              include: params.dnsInclude,
              exclude: params.dnsExclude,
              extraSearch: s.intercepts.searchPath(),
              log: options.log,
            });
          } catch (error) {
            if (!first) throw error;
            throw new ConnectError(
              `cannot set up DNS: ${(error as Error).message}`,
              "Check that /etc/resolv.conf (or systemd-resolved) can be changed by root; " +
                "`vif doctor` shows which DNS mode this machine uses.",
              { cause: error },
            );
          }
          // resolv.conf now names only our DNS: keep a watchdog for when we die or hang.
          if (first && options.self && sessionDns(s)?.mode === "resolv.conf") {
            try {
              dnsWatchdog = startDnsWatchdog({
                self: options.self,
                stateDir: options.stateDir,
                probe: `${DNS_ADDRESS}:53`,
                log: options.log,
              });
            } catch (error) {
              options.log(
                "warn",
                `dns: cannot start the dns watchdog: ${
                  (error as Error).message
                }; if vif dies, run \`vif quit --force\` to get DNS back`,
              );
            }
          }
        },
      });
      const connection = new Connection(params, session, kube, options, dnsWatchdog);
      connection.#watch();
      return connection;
    } catch (error) {
      await dnsWatchdog?.stop();
      await kube?.proxy.close();
      throw error;
    }
  }

  #watch(): void {
    const graceMs = Math.max(1, this.params.graceSeconds) * 1000;
    let lostSince: number | null = null;
    let searching = false;
    const kube = this.#kube;
    const onDrop = (error: Error) => {
      if (this.#closing) return;
      this.#log("warn", `connection: ${error.message}; looking for the traffic-manager again`);
      lostSince ??= Date.now();
      this.#state = "reconnecting";
    };
    if (kube) kube.proxy.dropped.then(onDrop);
    this.#watchdog = setInterval(async () => {
      if (this.#closing) return;
      const heard = this.session.lastHeard;
      const silentMs = Date.now() - heard;
      // Heartbeats come every few seconds: a longer silence means trouble too.
      if (lostSince === null && silentMs > Math.min(graceMs, 15_000)) {
        lostSince = heard;
        this.#state = "reconnecting";
        this.#log("warn", `connection: no answer from the traffic-manager for ${silentMs} ms`);
      }
      if (lostSince === null) return;
      if (heard > lostSince) {
        this.#log("info", "connection: the traffic-manager answers again");
        lostSince = null;
        this.#state = "connected";
        return;
      }
      if (Date.now() - lostSince > graceMs) {
        const pod = kube ? `${kube.proxy.target.namespace}/${kube.proxy.target.pod}` : "";
        const error = new ConnectError(
          `lost the traffic-manager${pod ? ` (${pod})` : ""} for more than ${
            graceMs / 1000
          } s: disconnected, and everything put back`,
          kube
            ? "Check it with `kubectl -n " + kube.proxy.target.namespace +
              " get pods`, then run `vif connect` again."
            : "Check that the manager runs and is reachable, then run `vif connect` again.",
        );
        this.#log("warn", `connection: ${error.message}`);
        await this.close();
        this.#ended.resolve(error);
        return;
      }
      if (!kube || searching) return;
      searching = true;
      try {
        const [{ discoverManager }, { kubeApi }] = await Promise.all([
          import("../kube/discovery.ts"),
          import("../kube/api.ts"),
        ]);
        const ns = this.params.managerNamespace;
        let found;
        let fresh: ApiAccess | undefined;
        try {
          found = await discoverManager(kubeApi(kube.access), ns);
        } catch (error) {
          if (!unauthorized(error)) throw error;
          // The credentials expired (an exec plugin's token): get new ones
          // from the kubeconfig, as the user, and carry on with them.
          this.#log("info", "connection: the API server refused the credentials; renewing them");
          fresh = (await this.#credentials(this.params, kube.context)).access;
          kube.access = fresh;
          found = await discoverManager(kubeApi(fresh), ns);
        }
        const now = kube.proxy.target;
        if (fresh || found.pod !== now.pod || found.port !== now.port) {
          if (found.pod !== now.pod) {
            this.#log("info", `connection: the traffic-manager is now ${found.pod}`);
          }
          kube.proxy.retarget(
            { namespace: found.namespace, pod: found.pod, port: found.port },
            fresh,
          );
          kube.proxy.dropped.then(onDrop);
        }
      } catch (error) {
        this.#log(
          "debug",
          `connection: traffic-manager not found yet: ${(error as Error).message}`,
        );
      } finally {
        searching = false;
      }
    }, 1000);
  }

  /**
   * The connection's part of the status.
   *
   * @returns a snapshot, in the documented JSON shape
   */
  status(): ConnectionStatus {
    const s = this.session;
    const stack = s.stack;
    const dns = sessionDns(s);
    const router = stack?.router.stats;
    const dnsStats = dns?.interceptor.stats;
    const sum = (r: Record<string, number> | undefined) =>
      Object.values(r ?? {}).reduce((a, b) => a + b, 0);
    return {
      state: this.#state,
      since: this.startedAt.toISOString(),
      uptimeSeconds: Math.round((Date.now() - this.startedAt.getTime()) / 1000),
      context: this.#kube?.context ?? null,
      cluster: this.#kube?.server ?? null,
      namespace: this.params.namespace,
      manager: {
        namespace: this.params.managerNamespace,
        version: s.arrival?.managerVersion ?? "",
        address: this.#kube
          ? `${this.#kube.proxy.target.pod}:${this.#kube.proxy.target.port}`
          : s.options.managerAddress,
        pod: this.#kube?.proxy.target.pod ?? null,
        via: this.#kube ? "port-forward" : "direct",
        tunnel: "mux",
      },
      sessionId: s.id,
      tun: stack
        ? {
          name: stack.device.name,
          mtu: stack.device.mtu,
          addresses: [`${stack.address}/24`, `${DNS_ADDRESS}/32`],
        }
        : null,
      subnets: {
        routed: s.routedSubnets.map((r) => ({ cidr: r.cidr.toString(), source: r.source })),
        excluded: [
          ...s.excluded.map((c) => ({ cidr: c.toString(), reason: "never-proxy" as const })),
          ...s.conflicts.map((c) => ({
            cidr: c.subnet.toString(),
            reason: "conflict" as const,
            route: c.route,
          })),
        ],
      },
      dns: {
        mode: dns?.mode ?? null,
        address: DNS_ADDRESS,
        domains: dns?.config.routingDomains ?? [],
        search: dns?.config.searchDomains ?? [],
        description: dns?.configurator.describe() ?? null,
      },
      counters: {
        connectionsOpen: router?.tcpOpen ?? 0,
        connectionsTotal: router?.tcpTotal ?? 0,
        udpFlowsOpen: router?.udpFlows ?? 0,
        udpFlowsTotal: router?.udpFlowsTotal ?? 0,
        dnsQueries: dnsStats?.queries ?? 0,
        dnsCacheHits: dnsStats?.cacheHits ?? 0,
        bytesToCluster: router?.bytesIn ?? 0,
        bytesFromCluster: router?.bytesOut ?? 0,
        dialFailures: sum(router?.dialFailures),
        packetsDropped: sum(router?.dropped),
      },
      intercepts: s.intercepts.list().map((i) => ({
        id: i.id,
        namespace: i.namespace,
        workload: i.workload,
        port: i.containerPort,
        local: i.local,
        holder: i.holder,
        mountPoint: i.mountPoint,
        pods: i.agents.map((a) => a.pod),
        connections: i.connections,
        variables: Object.keys(i.environment).length,
      })),
    };
  }

  /**
   * Disconnects and puts everything back. Idempotent.
   *
   * @returns when all is undone
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      clearInterval(this.#watchdog);
      // Before resolv.conf goes back: the watchdog must not take that for a death.
      await this.#dnsWatchdog?.stop();
      await this.session.close();
      await this.#kube?.proxy.close();
    })();
    return this.#closing;
  }
}

/** How long `vif connect` waits for a traffic-manager whose pod is starting (just installed). */
const MANAGER_WAIT_MS = 120_000;

/**
 * Finds the manager, waiting while its pod is only starting (`vif install`
 * a moment ago, an image being pulled), with the pod's state as progress;
 * any other failure, or the time running out, is thrown as it is.
 *
 * @param discover one look for the manager
 * @param progress progress lines
 * @param waitMs how long to wait for a starting pod
 * @returns what the look found
 */
export async function waitForManager<T>(
  discover: () => Promise<T>,
  progress: (step: string) => void,
  waitMs: number,
): Promise<T> {
  const deadline = Date.now() + waitMs;
  let said = "";
  for (;;) {
    try {
      return await discover();
    } catch (error) {
      const starting = (error as { starting?: unknown })?.starting === true;
      if (!starting || Date.now() >= deadline) throw error;
      const line = `waiting for the traffic-manager: ${
        (error as Error).message.replace(/^the traffic-manager in namespace "[^"]*" /, "")
      }`;
      if (line !== said) progress(line);
      said = line;
      await new Promise((r) => setTimeout(r, 1000));
    }
  }
}

/**
 * The Kubernetes side: kubeconfig, API server, manager discovery, port-forward.
 */
async function openKube(
  params: ConnectParams,
  progress: (step: string) => void,
  options: ConnectionOptions,
): Promise<{ kube: KubeSide; caPem: string }> {
  const [{ discoverManager, reachApiServer }, { startPortForwardProxy }, { kubeApi }] =
    await Promise
      .all([
        import("../kube/discovery.ts"),
        import("../kube/portforward.ts"),
        import("../kube/api.ts"),
      ]);
  const { context, access } = params.resolved ?? await options.credentials(params);
  progress(`contacting the API server at ${access.server} (context "${context}")`);
  await reachApiServer(access.server);
  const manager = await waitForManager(
    () => discoverManager(kubeApi(access), params.managerNamespace),
    progress,
    options.managerWaitMs ?? MANAGER_WAIT_MS,
  );
  if (manager.version && compareVersions(manager.version, MIN_MANAGER_VERSION) < 0) {
    throw new ConnectError(
      `the traffic-manager in "${manager.namespace}" is version ${manager.version}, older than ${MIN_MANAGER_VERSION}, the oldest this vif ${VERSION} works with`,
      `Upgrade it with \`vif install --context ${context}\`, then connect again.`,
    );
  }
  progress(`port-forwarding to ${manager.namespace}/${manager.pod}:${manager.port}`);
  const proxy = await startPortForwardProxy(access, {
    namespace: manager.namespace,
    pod: manager.pod,
    port: manager.port,
  }, { log: options.log, socketPath: `${options.stateDir}/${PORT_FORWARD_SOCKET}` });
  return {
    kube: { context, server: access.server, access, proxy },
    caPem: manager.caPem,
  };
}

/** Whether a discovery failure was the API server refusing the credentials (401). */
function unauthorized(error: unknown): boolean {
  for (let e: unknown = error, depth = 0; e && depth < 4; depth++) {
    if ((e as { statusCode?: unknown }).statusCode === 401) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}

/** `CAP_NET_ADMIN`'s bit in the capability sets. */
const CAP_NET_ADMIN = 12n;

/**
 * Fails early, before contacting anything, when this process may not make a
 * TUN device: no `/dev/net/tun`, or neither root nor `CAP_NET_ADMIN`.
 *
 * @throws {ConnectError} saying how to get the permission
 */
export async function checkTunPermission(): Promise<void> {
  try {
    await Deno.stat("/dev/net/tun");
  } catch {
    throw new ConnectError(
      'this machine has no TUN device ("/dev/net/tun" is missing)',
      "Load the tun module (modprobe tun); in a container, pass --device /dev/net/tun.",
    );
  }
  const status = await Deno.readTextFile("/proc/self/status").catch(() => "");
  const hex = /^CapEff:\s*([0-9a-f]+)$/m.exec(status)?.[1];
  if (hex === undefined) return; // cannot tell: let the TUN ioctl decide
  if ((BigInt(`0x${hex}`) >> CAP_NET_ADMIN) & 1n) return;
  throw new ConnectError(
    `making the TUN device needs root (CAP_NET_ADMIN), and vif runs as uid ${Deno.uid()} without it`,
    "Run `vif connect` from a user that may sudo (vif then starts its daemon through sudo), " +
      "or as root; in a container, add the NET_ADMIN capability.",
  );
}
