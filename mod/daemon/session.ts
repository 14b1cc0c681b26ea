/**
 * A connection to a cluster: arrive at the traffic-manager, make the TUN,
 * route the cluster's subnets into it, answer DNS, keep the session alive,
 * and on close put everything back.
 *
 * @module
 */

import { Cidr } from "../net/address.ts";
import { compareVersions, MIN_MANAGER_VERSION, VERSION } from "../version.ts";
import {
  ArriveRequestSchema,
  type ArriveResponse,
  type ClusterInfo,
  DEFAULT_MANAGER_NAMESPACE,
  FEATURE_MUX,
  SessionRefSchema,
} from "../rpc/service.ts";
import { create, createManagerClient, grpc, type ManagerClient, unary } from "./manager_client.ts";
import { MuxDialer } from "./mux_dialer.ts";
import { Intercepts } from "./intercepts.ts";
import type { KubeApi } from "../kube/api.ts";
import type { Dialer } from "../net/dialer.ts";
import { type Stack, startStack } from "./stack.ts";
import { listRoutes } from "../tun/mod.ts";
import { describeRoute, planSubnets, type SubnetSource } from "./subnets.ts";
import { checkClusterInfo } from "./cluster_info.ts";
import { type Capture, CaptureHub, type CaptureOptions } from "./capture.ts";
import { sessionDns } from "./dns_setup.ts";
import {
  type ConnectionsDocument,
  connectionsDocument,
  InterceptFlows,
  routerEntry,
} from "./flows.ts";

/** How long a cluster DNS query may take through the manager. */
const DNS_TIMEOUT_MS = 8000;

/** Log sink shared by the daemon's parts. */
export type Log = (level: "debug" | "info" | "warn", message: string) => void;

/** Options of {@linkcode Session.connect}. */
export interface SessionOptions {
  /** `host:port` of the manager's gRPC port. */
  managerAddress: string;
  /** PEM of the CA that signed the manager's certificate. */
  managerCaPem: string;
  /** The manager's namespace (default `vif-system`); its certificate must name `traffic-manager.<ns>`. */
  managerNamespace?: string;
  /** A client certificate and key (PEM), for a manager's direct listener (mutual TLS). */
  clientCertificate?: { certPem: string; keyPem: string };
  /** The namespace short names resolve in (default `default`). */
  namespace?: string;
  /** Log sink. */
  log?: Log;
  /** How long to wait for the manager's first answer (default 10 s). */
  arriveTimeoutMs?: number;
  /** Hooks the DNS part of the session plugs into (see `dns_setup.ts`). */
  onClusterInfo?: (info: ClusterInfo, session: Session) => Promise<void> | void;
  /** Extra addresses to give the TUN (the DNS address). */
  extraAddresses?: string[];
  /**
   * More hosts whose traffic must never enter the TUN (the Kubernetes API
   * server the port-forward goes through), checked like the manager's.
   */
  protectedHosts?: string[];
  /** `--also-proxy`: subnets outside the cluster's that go to the cluster too. */
  alsoProxy?: string[];
  /** `--never-proxy`: subnets kept out of the TUN (cut out of the cluster's). */
  neverProxy?: string[];
  /** `--allow-conflicting-subnets`: routed into the TUN even over an existing route. */
  allowConflicting?: string[];
  /** Told of each step of connecting (`routing subnets`, `creating the TUN`), for progress. */
  onStep?: (step: string) => void;
  /** The user the daemon serves: intercept mounts (sshfs) run as them. */
  user?: { uid: number; gid: number };
  /** Told when the intercepts or their mounts change (the daemon's state file records mounts). */
  onInterceptsChanged?: () => void;
  /** The Kubernetes API with the user's credentials (intercept claims); absent for a direct manager. */
  kube?: () => KubeApi | undefined;
}

/**
 * Who the session is for, as the manager and the workloads' claims show it:
 * the name of the user the daemon serves (from /etc/passwd: the daemon's
 * environment is not theirs), else what the environment says.
 *
 * @param uid the user the daemon serves; default the daemon's own
 * @returns a name
 */
export function userName(uid: number | undefined = Deno.uid() ?? undefined): string {
  if (uid !== undefined) {
    let passwd = "";
    try {
      passwd = Deno.readTextFileSync("/etc/passwd");
    } catch {
      // No passwd: the environment's name, or the uid.
    }
    for (const line of passwd.split("\n")) {
      const [name, , id] = line.split(":");
      if (id === String(uid) && name && /^[a-z_][a-z0-9_.-]{0,31}\$?$/i.test(name)) return name;
    }
  }
  const fromEnv = Deno.env.get("SUDO_USER") ?? Deno.env.get("USER");
  if (fromEnv && /^[a-z_][a-z0-9_.-]{0,31}\$?$/i.test(fromEnv)) return fromEnv;
  return uid !== undefined ? `uid ${uid}` : "unknown";
}

/** A subnet routed into the TUN, and why. */
export interface RoutedSubnet {
  cidr: Cidr;
  source: SubnetSource;
}

/**
 * Keeps the process alive through an unexpected error of one connection: logs
 * it instead of letting it end the process (and with it everyone's network).
 *
 * @param log where the error goes
 * @returns removes the guard
 */
export function keepRunningOnErrors(log: Log): () => void {
  const onError = (e: ErrorEvent | PromiseRejectionEvent) => {
    e.preventDefault();
    const error = "error" in e ? e.error : e.reason;
    log("warn", `daemon: unexpected error, kept running: ${error?.stack ?? error}`);
  };
  globalThis.addEventListener("error", onError);
  globalThis.addEventListener("unhandledrejection", onError);
  return () => {
    globalThis.removeEventListener("error", onError);
    globalThis.removeEventListener("unhandledrejection", onError);
  };
}

/** A failure a person can act on: what happened, and what to do. */
export class ConnectError extends Error {
  /** What to do about it. */
  readonly hint: string;
  /**
   * @param message what happened
   * @param hint what to do
   * @param options the cause
   */
  constructor(message: string, hint: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "ConnectError";
    this.hint = hint;
  }
}

/** The host of a `host:port` address; none for a Unix socket (`unix:/path`). */
function hostOf(address: string): string[] {
  if (address.startsWith("unix:")) return [];
  const m = /^\[([^\]]+)\]:\d+$/.exec(address) ?? /^([^:]+):\d+$/.exec(address);
  return [m?.[1] ?? address];
}

function describeGrpcError(
  e: unknown,
  address: string,
  ns: string,
  withCertificate: boolean,
): ConnectError {
  const err = e as grpc.ServiceError;
  const detail = String(err?.details ?? err?.message ?? e);
  if (err?.code === grpc.status.PERMISSION_DENIED && /^also_proxy /.test(detail)) {
    return new ConnectError(
      `the traffic-manager refused --also-proxy: ${detail}`,
      "Leave that subnet out, or ask the cluster admin to allow it " +
        "(vif install --allow-also-proxy CIDR).",
      { cause: e },
    );
  }
  if (err?.code === grpc.status.RESOURCE_EXHAUSTED) {
    return new ConnectError(
      `the traffic-manager at "${address}" is full: ${detail}`,
      "Try again later, or ask the cluster admin to raise the limit it names.",
      { cause: e },
    );
  }
  if (
    /certificate.?required|alert number 116|bad.?certificate|unknown.?ca/i.test(
      detail,
    )
  ) {
    return new ConnectError(
      `the traffic-manager at "${address}" refused this client's certificate: ${detail}`,
      "A direct listener asks for a client certificate its client CA signed: pass " +
        "--client-cert and --client-key (an admin makes them with `vif client-cert NAME`).",
      { cause: e },
    );
  }
  if (/certificate|self.signed|verify|TLS|SSL|handshake|altname|Hostname/i.test(detail)) {
    return new ConnectError(
      `Cannot connect to the traffic-manager at "${address}": TLS failed: ${detail}`,
      `Check that --manager-ca is the CA of the manager's certificate and that it names "traffic-manager.${ns}" (--manager-namespace).`,
      { cause: e },
    );
  }
  if (err?.code === grpc.status.DEADLINE_EXCEEDED || err?.code === grpc.status.UNAVAILABLE) {
    // A direct listener that wants a certificate may just close the connection
    // (TLS 1.3 checks it after the client thinks the handshake is done).
    const direct = !address.startsWith("unix:") && !withCertificate;
    return new ConnectError(
      `Cannot reach the traffic-manager at "${address}": ${detail}`,
      direct
        ? "A manager's direct listener asks for a client certificate: pass --client-cert and " +
          "--client-key (an admin makes them with `vif client-cert NAME`); else check the " +
          "address and that the manager runs."
        : "Check the address and that the manager runs (vif --serve); a firewall may drop the connection.",
      { cause: e },
    );
  }
  return new ConnectError(
    `The traffic-manager at "${address}" refused the session: ${detail}`,
    "Check the manager's log; its version may not match this client's.",
    { cause: e },
  );
}

/** A live connection to a cluster. */
export class Session {
  readonly client: ManagerClient;
  readonly options: SessionOptions;
  /** Opens the router's flows, all on the session's one Mux call. */
  readonly dialer: Dialer;
  /** The session's intercepts. */
  readonly intercepts: Intercepts;
  #mux: MuxDialer;
  readonly startedAt = Date.now();
  #log: Log;
  #sessionId = "";
  #arrive: ArriveResponse | null = null;
  #info: ClusterInfo | null = null;
  #stack: Stack | null = null;
  #routes = new Map<string, RoutedSubnet>();
  #excluded: Cidr[] = [];
  #conflicts: Array<{ subnet: Cidr; route: string }> = [];
  #lastHeard = Date.now();
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #watch: grpc.ClientReadableStream<ClusterInfo> | null = null;
  #closing: Promise<void> | null = null;
  #cleanups: Array<() => Promise<void> | void> = [];
  /** Cluster info that came while an earlier one was being applied: only the newest counts. */
  #nextInfo: ClusterInfo | null = null;
  #applying = false;
  /** The intercepts' connections, for `vif connections`. */
  #interceptFlows = new InterceptFlows();
  #flowSampler: ReturnType<typeof setInterval> | undefined;
  /** The running `vif capture`s; made with the stack. */
  #captures: CaptureHub | null = null;

  private constructor(options: SessionOptions) {
    this.options = options;
    this.#log = options.log ?? (() => {});
    this.client = createManagerClient({
      address: options.managerAddress,
      caPem: options.managerCaPem,
      managerNamespace: options.managerNamespace ?? DEFAULT_MANAGER_NAMESPACE,
      ...(options.clientCertificate ? { clientCertificate: options.clientCertificate } : {}),
    });
    this.#mux = new MuxDialer(this.client, {
      sessionId: () => this.#sessionId,
      log: this.#log,
      onNoSession: () => this.#rearrive(),
      accept: async (open) => this.#interceptFlows.track(open, await this.intercepts.accept(open)),
      keepOpen: () => this.intercepts.active,
    });
    this.dialer = this.#mux;
    this.intercepts = new Intercepts({
      client: this.client,
      dialer: this.#mux,
      sessionId: () => this.#sessionId,
      log: this.#log,
      ...(options.user ? { user: options.user } : {}),
      changed: () => {
        options.onInterceptsChanged?.();
        this.refresh();
      },
      ...(options.kube ? { kube: options.kube } : {}),
      holder: `${userName(options.user?.uid)}@${Deno.hostname()}`,
    });
  }

  /**
   * Answers a DNS query with the cluster's DNS server, through the manager,
   * as two frames on the Mux call.
   *
   * @param query a DNS query, wire format
   * @returns the answer
   * @throws {Error} when the manager could not answer
   */
  resolveDns(query: Uint8Array): Promise<Uint8Array> {
    return this.#mux.resolveDns(query, DNS_TIMEOUT_MS);
  }

  /** The session id the manager gave. */
  get id(): string {
    return this.#sessionId;
  }

  /** The manager's answer to Arrive. */
  get arrival(): ArriveResponse | null {
    return this.#arrive;
  }

  /** The cluster info last received. */
  get clusterInfo(): ClusterInfo | null {
    return this.#info;
  }

  /** The stack (TUN + router), once up. */
  get stack(): Stack | null {
    return this.#stack;
  }

  /** Subnets routed into the TUN. */
  get routes(): Cidr[] {
    return [...this.#routes.values()].map((r) => r.cidr);
  }

  /** Subnets routed into the TUN, with where each came from. */
  get routedSubnets(): RoutedSubnet[] {
    return [...this.#routes.values()];
  }

  /** `--never-proxy` subnets cut out of the routed ones. */
  get excluded(): Cidr[] {
    return this.#excluded;
  }

  /** Cluster subnets left unrouted because they overlap a route of the machine. */
  get conflicts(): Array<{ subnet: Cidr; route: string }> {
    return this.#conflicts;
  }

  /** When the manager last answered (Arrive or a heartbeat), in ms since the epoch. */
  get lastHeard(): number {
    return this.#lastHeard;
  }

  /**
   * Every TCP connection and UDP flow of the session now: the router's,
   * named from the DNS answers, and the intercepts'.
   *
   * @param limit the most entries (default and most: `MAX_CONNECTIONS`)
   * @returns the document `vif connections` shows, bounded to one control line
   */
  connections(limit?: number): ConnectionsDocument {
    const now = Date.now();
    const names = sessionDns(this)?.server.names;
    const entries = (this.#stack?.router.flows(now) ?? []).map((f) =>
      routerEntry(f, names?.lookup(f.destination.address), now)
    );
    entries.push(...this.#interceptFlows.entries(now));
    return connectionsDocument(entries, { at: new Date(now), ...(limit ? { limit } : {}) });
  }

  /**
   * Starts a packet capture on the session's TUN.
   *
   * @param options filter, snap length, count and limits
   * @returns the capture; stop it when done
   * @throws {CaptureBusyError} when the most captures run already
   * @throws {Error} when the TUN is not up
   */
  capture(options: CaptureOptions): Capture {
    if (this.#captures === null || this.#closing) {
      throw new Error("Cannot capture: the TUN is not up");
    }
    return this.#captures.start(options);
  }

  /** Registers work to undo on close, run newest first. */
  onClose(fn: () => Promise<void> | void): void {
    this.#cleanups.push(fn);
  }

  /**
   * Connects: arrives, makes the TUN, routes the cluster's subnets, starts
   * heartbeats and watches cluster info. On failure nothing is left behind.
   *
   * @param options where the manager is and how to trust it
   * @returns the live session
   * @throws {ConnectError} with what happened and what to do
   */
  static async connect(options: SessionOptions): Promise<Session> {
    const s = new Session(options);
    try {
      await s.#start();
      return s;
    } catch (error) {
      await s.close();
      throw error;
    }
  }

  async #doArrive(): Promise<ArriveResponse> {
    const ns = this.options.managerNamespace ?? DEFAULT_MANAGER_NAMESPACE;
    try {
      return await unary<ArriveResponse>(
        this.client,
        "arrive",
        create(ArriveRequestSchema, {
          client: {
            name: userName(this.options.user?.uid),
            hostname: Deno.hostname(),
            version: VERSION,
            namespace: this.options.namespace ?? "default",
            os: "linux",
          },
          alsoProxy: this.options.alsoProxy ?? [],
        }),
        this.options.arriveTimeoutMs ?? 10_000,
      );
    } catch (e) {
      throw describeGrpcError(
        e,
        this.options.managerAddress,
        ns,
        this.options.clientCertificate !== undefined,
      );
    }
  }

  async #start(): Promise<void> {
    const log = this.#log;
    log("info", `session: arriving at the traffic-manager at ${this.options.managerAddress}`);
    const arrive = await this.#doArrive();
    this.#arrive = arrive;
    this.#sessionId = arrive.sessionId;
    this.#lastHeard = Date.now();
    const tooOld = !arrive.features.includes(FEATURE_MUX);
    if (tooOld || compareVersions(arrive.managerVersion, MIN_MANAGER_VERSION) < 0) {
      throw new ConnectError(
        `the traffic-manager is version ${
          arrive.managerVersion || "(unknown)"
        }, older than ${MIN_MANAGER_VERSION}, the oldest this vif ${VERSION} works with`,
        "Upgrade it with `vif install` (the same context), then connect again.",
      );
    }
    if (arrive.managerVersion !== VERSION) {
      log(
        "warn",
        `session: the traffic-manager is version ${arrive.managerVersion}, this client ${VERSION}; run \`vif install\` to bring it to ${VERSION}`,
      );
    }
    if (!arrive.clusterInfo) {
      throw new ConnectError(
        "The traffic-manager sent no cluster info",
        "Check the manager's log: it may not know the cluster's subnets yet.",
      );
    }
    const checked = checkClusterInfo(arrive.clusterInfo);
    if (checked.unusable) {
      throw new ConnectError(
        checked.unusable,
        "Check the manager's --cluster-domain and its pod's resolv.conf (kubectl -n " +
          `${
            this.options.managerNamespace ?? DEFAULT_MANAGER_NAMESPACE
          } logs deploy/traffic-manager).`,
      );
    }
    this.#warnDropped(checked.dropped);
    const info = checked.info;
    this.#info = info;
    const captured = await this.#captured(info);
    if (captured.length > 0) {
      const { host, subnet } = captured[0]!;
      throw new ConnectError(
        `the address "${host}" vif needs to reach the cluster lies in the cluster subnet "${subnet}", which is about to be routed into the TUN`,
        `Add a host route for it first (ip route add ${host}/32 via <gateway>), or exclude the subnet.`,
      );
    }
    this.options.onStep?.("creating the TUN device");
    this.#stack = await startStack({
      dialer: this.dialer,
      routes: [],
      log,
      ...(this.options.extraAddresses ? { extraAddresses: this.options.extraAddresses } : {}),
    });
    this.#captures = new CaptureHub(this.#stack.router);
    this.options.onStep?.("routing the cluster's subnets");
    await this.#applyRoutes(info, true);
    this.options.onStep?.("setting up DNS");
    await this.options.onClusterInfo?.(info, this);
    const every = arrive.heartbeatIntervalMs || 5000;
    this.#heartbeat = setInterval(() => this.#remain(), every);
    this.#flowSampler = setInterval(() => this.#interceptFlows.sample(), 1000);
    this.#watchInfo();
    log(
      "info",
      `session: ${this.#sessionId.slice(0, 8)} connected; routes ${
        this.routes.join(" ")
      } via ${this.#stack.device.name}; flows over one Mux call`,
    );
  }

  /**
   * The addresses vif must reach outside the TUN (the manager, the API
   * server) that a subnet of `info` would route into it, with no more
   * specific route of the machine to keep them out.
   */
  async #captured(info: ClusterInfo): Promise<Array<{ host: string; subnet: Cidr }>> {
    const subnets = [...info.podSubnets, ...info.serviceSubnets, ...(this.options.alsoProxy ?? [])]
      .flatMap((c) => {
        try {
          return [Cidr.parse(c)];
        } catch {
          return []; // Reported by the routing plan.
        }
      });
    const captured: Array<{ host: string; subnet: Cidr }> = [];
    let routes: Awaited<ReturnType<typeof listRoutes>> | undefined;
    for (const host of this.#protectedHosts()) {
      for (const inside of subnets.filter((c) => c.contains(host))) {
        // The address lies in a subnet about to be routed into the TUN: only a
        // more specific route already in place keeps the tunnel out of itself.
        routes ??= await listRoutes();
        const specific = routes.some((r) => {
          try {
            const c = Cidr.parse(`${r.address}/${r.prefixLength}`);
            return r.table === 254 && c.contains(host) && c.prefixLength > inside.prefixLength &&
              r.interfaceName !== this.#stack?.device.name;
          } catch {
            return false;
          }
        });
        if (!specific) captured.push({ host, subnet: inside });
      }
    }
    return captured;
  }

  #warnDropped(dropped: string[]): void {
    for (const what of dropped) {
      this.#log("warn", `session: ignoring what the traffic-manager announced: ${what}`);
    }
  }

  async #applyRoutes(info: ClusterInfo, first = false): Promise<void> {
    const stack = this.#stack;
    if (!stack) return;
    const plan = planSubnets({
      cluster: [
        ...info.podSubnets.map((cidr) => ({ cidr, source: "pods" as const })),
        ...info.serviceSubnets.map((cidr) => ({ cidr, source: "services" as const })),
      ],
      alsoProxy: this.options.alsoProxy ?? [],
      neverProxy: this.options.neverProxy ?? [],
      allowConflicting: this.options.allowConflicting ?? [],
      system: await listRoutes(),
      protectedHosts: this.#protectedHosts(),
      ownDevice: stack.device.name,
    });
    for (const text of plan.malformed) {
      this.#log("warn", `session: ignoring a malformed subnet from the manager: "${text}"`);
    }
    if (plan.conflicts.length > 0 && first) {
      const c = plan.conflicts[0]!;
      const more = plan.conflicts.length > 1
        ? ` (and ${plan.conflicts.length - 1} more: ${
          plan.conflicts.slice(1).map((x) => `${x.subnet} × ${x.routeCidr}`).join(", ")
        })`
        : "";
      throw new ConnectError(
        `the cluster's ${
          c.source === "pods" ? "pod" : "service"
        } subnet ${c.subnet} overlaps the route "${describeRoute(c.route)}" on this machine${more}`,
        `Keep that route with --never-proxy ${c.overlap}, send that part to the cluster anyway ` +
          `with --allow-conflicting-subnets ${c.overlap}, or route only what you need with --also-proxy.`,
      );
    }
    const conflicting = plan.conflicts.map((c) => c.subnet);
    this.#conflicts = plan.conflicts.map((c) => ({
      subnet: c.subnet,
      route: describeRoute(c.route),
    }));
    this.#excluded = plan.excluded;
    for (const c of plan.conflicts) {
      this.#log(
        "warn",
        `session: not routing ${c.subnet}: it overlaps the route "${describeRoute(c.route)}"`,
      );
    }
    // A subnet that would route the manager or the API server into the TUN
    // is refused on an update too (the first connect failed on it above).
    const captured = first ? [] : await this.#captured(info);
    for (const { host, subnet } of captured) {
      this.#log(
        "warn",
        `session: not routing ${subnet}: it holds "${host}", which vif reaches outside the TUN`,
      );
    }
    const wanted = new Map<string, RoutedSubnet>();
    for (const r of plan.routes) {
      // A part of a subnet cut by --never-proxy is checked as its whole.
      if (conflicting.some((c) => c.overlaps(r.cidr))) continue;
      if (captured.some((c) => c.subnet.overlaps(r.cidr))) continue;
      wanted.set(r.cidr.toString(), r);
    }
    if (first && plan.excluded.length > 0) {
      this.#log("info", `session: kept out of the TUN (--never-proxy): ${plan.excluded.join(" ")}`);
    }
    for (const [k, { cidr: c }] of this.#routes) {
      if (!wanted.has(k)) {
        await stack.device.removeRoute({ address: c.address, prefixLength: c.prefixLength });
        this.#routes.delete(k);
        this.#log("info", `session: route ${k} removed`);
      }
    }
    for (const [k, r] of wanted) {
      if (!this.#routes.has(k)) {
        await stack.device.addRoute({ address: r.cidr.address, prefixLength: r.cidr.prefixLength });
        this.#log("info", `session: route ${k} added`);
      }
      this.#routes.set(k, r);
    }
  }

  #protectedHosts(): string[] {
    return [...hostOf(this.options.managerAddress), ...(this.options.protectedHosts ?? [])];
  }

  #watchInfo(): void {
    const call = this.client.watchClusterInfo(
      create(SessionRefSchema, { sessionId: this.#sessionId }),
    );
    this.#watch = call;
    call.on("data", (info: ClusterInfo) => this.#update(info));
    call.on("error", (e: grpc.ServiceError) => {
      if (this.#closing || e.code === grpc.status.CANCELLED) return;
      this.#log("warn", `session: cluster info watch ended: ${e.details || e.message}; retrying`);
      setTimeout(() => !this.#closing && this.#watchInfo(), 1000);
    });
  }

  /**
   * Applies the cluster info again (routes, DNS): something it depends on
   * changed (an intercept brought its pod's search path).
   */
  refresh(): void {
    if (this.#info !== null && !this.#closing) this.#update(this.#info);
  }

  /**
   * Applies cluster info from the watch, one at a time and in order: info that
   * comes while one is applied waits, and only the newest is applied next.
   * It goes through the same checks as the first.
   */
  async #update(received: ClusterInfo): Promise<void> {
    this.#nextInfo = received;
    if (this.#applying) return;
    this.#applying = true;
    try {
      for (;;) {
        const next: ClusterInfo | null = this.#nextInfo;
        if (next === null || this.#closing) break;
        this.#nextInfo = null;
        const checked = checkClusterInfo(next);
        this.#warnDropped(checked.dropped);
        if (checked.unusable) {
          this.#log("warn", `session: ignoring new cluster info: ${checked.unusable}`);
          continue;
        }
        try {
          this.#info = checked.info;
          await this.#applyRoutes(checked.info);
          await this.options.onClusterInfo?.(checked.info, this);
        } catch (e) {
          this.#log("warn", `session: cannot apply new cluster info: ${e}`);
        }
      }
    } finally {
      this.#applying = false;
    }
  }

  #remain(): void {
    unary(this.client, "remain", create(SessionRefSchema, { sessionId: this.#sessionId }), 5000)
      .then(() => this.#lastHeard = Date.now())
      .catch((e: grpc.ServiceError) => {
        if (e.code === grpc.status.NOT_FOUND || e.code === grpc.status.UNAUTHENTICATED) {
          this.#rearrive();
        } else this.#log("warn", `session: heartbeat failed: ${e.details || e.message}`);
      });
  }

  #rearriving = false;
  #rearrive(): void {
    if (this.#rearriving || this.#closing) return;
    this.#rearriving = true;
    this.#log("warn", "session: the manager no longer knows this session; arriving again");
    this.#doArrive().then((a) => {
      this.#arrive = a;
      this.#lastHeard = Date.now();
      this.#sessionId = a.sessionId;
      this.#watch?.cancel();
      this.#watchInfo();
      return this.intercepts.renew();
    }).catch((e) => this.#log("warn", `session: cannot arrive again: ${e.message}`))
      .finally(() => this.#rearriving = false);
  }

  /**
   * Departs and puts everything back: DNS, routes, the TUN. Idempotent.
   *
   * @returns when all is undone
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      clearInterval(this.#heartbeat);
      clearInterval(this.#flowSampler);
      this.#captures?.stopAll("disconnected");
      this.#watch?.cancel();
      await this.intercepts.leaveAll("vif is disconnecting").catch((e) =>
        this.#log("warn", `session: ending the intercepts failed: ${e}`)
      );
      for (const fn of this.#cleanups.reverse()) {
        try {
          await fn();
        } catch (e) {
          this.#log("warn", `session: cleanup failed: ${e}`);
        }
      }
      if (this.#sessionId) {
        await unary(
          this.client,
          "depart",
          create(SessionRefSchema, { sessionId: this.#sessionId }),
          2000,
        )
          .catch(() => {});
      }
      await this.#stack?.close();
      this.#mux.close();
      this.client.close();
      this.#log("info", "session: disconnected; routes and TUN removed");
    })();
    return this.#closing;
  }
}
