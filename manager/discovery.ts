/**
 * CIDR discovery (DESIGN.md §6): the manager reads the Kubernetes API with
 * its service account and keeps the pod subnets, the service subnets and the
 * namespaces of {@linkcode ClusterInfoSource} up to date.
 *
 * ```
 *   API server ──list+watch──► nodes ─────────┐  spec.podCIDRs holding POD_IP?
 *              ──list+watch──► pods (if not) ─┴─► pod subnets      (nodes | pods)
 *              ──list+watch──► servicecidrs ──┐
 *              ──create ?dryRun=All──► probe ─┼─► service subnets  (servicecidrs | probe | services)
 *              ──list+watch──► services ──────┘
 *              ──list+watch──► namespaces ─────► namespaces
 *                                                    │ only on a change
 *                                                    ▼
 *                                     ClusterInfoSource.set() ──► watchers, policy
 * ```
 *
 * - Pod subnets: the nodes' `spec.podCIDRs` when one of them holds the
 *   manager's own pod IP; otherwise (CNIs that ignore podCIDRs) the covering
 *   CIDRs of the pod IPs seen ({@linkcode coveringCidrs}).
 * - Service subnets: the `networking.k8s.io/v1` ServiceCIDRs; where the API
 *   has none, the range named in the error that creating a Service with
 *   ClusterIP `0.0.0.0` (and `::`) gets ({@linkcode parseServiceRangeError});
 *   else the covering CIDRs of the services' ClusterIPs.
 * - Every input is a list+watch that follows `resourceVersion`, lists again
 *   on 410 Gone and retries with backoff; each change is logged in one line
 *   (`manager: pod subnets now 198.18.0.0/24 198.18.1.0/24 (nodes)`).
 *
 * The pure parts ({@linkcode aggregateCidrs}, {@linkcode coveringCidrs},
 * {@linkcode parseServiceRangeError}) do no I/O.
 *
 * @module
 */

import { ApiException, CoreV1Api, NetworkingV1Api, type V1Service } from "@kubernetes/client-node";
import {
  type KubeAccess,
  KubeAccessError,
  type KubeAccessOptions,
  loadKubeAccess,
} from "../mod/kube/in_cluster.ts";
import {
  callOptions,
  describeFailure,
  type Failure,
  formatWait,
  Informer,
  type InformerDeps,
  isAbsent,
  listPage,
  type RawObject,
  type RetryOptions,
  sleep,
  withTimeout,
} from "../mod/kube/informer.ts";
import { Cidr, formatAddress, parseAddress } from "../mod/net/address.ts";
import type { ClusterInfoSource, ClusterInfoValue } from "./cluster_info.ts";
import { ManagerSetupError } from "./errors.ts";

/** The name of the Service the range probe tries to create. */
export const PROBE_SERVICE_NAME = "vif-cidr-probe";

/**
 * The ClusterIPs the range probe asks for, one per family. Each is the
 * network address of any range it falls in, which the allocator never hands
 * out, so the API server refuses it whatever the service range is: with
 * `provided IP is not in the valid range. The range of valid IPs is …` from
 * the bitmap allocator (Kubernetes ≤ 1.32 and later ones without the
 * ServiceCIDR API, which is asked first).
 */
export const PROBE_CLUSTER_IPS: readonly string[] = ["0.0.0.0", "::"];

// --- pure: subnet maths --------------------------------------------------------

interface Range {
  /** 32 or 128. */
  bits: number;
  base: bigint;
  prefix: number;
}

function toRange(cidr: Cidr): Range {
  let base = 0n;
  for (const byte of cidr.bytes) base = (base << 8n) | BigInt(byte);
  return { bits: cidr.bytes.length * 8, base, prefix: cidr.prefixLength };
}

function rangeText(range: Range): string {
  const bytes = new Uint8Array(range.bits / 8);
  let rest = range.base;
  for (let i = bytes.length - 1; i >= 0; i--) {
    bytes[i] = Number(rest & 0xffn);
    rest >>= 8n;
  }
  return `${formatAddress(bytes)}/${range.prefix}`;
}

function rangeSize(range: Range): bigint {
  return 1n << BigInt(range.bits - range.prefix);
}

function rangeContains(outer: Range, inner: Range): boolean {
  return outer.bits === inner.bits && outer.prefix <= inner.prefix &&
    inner.base >= outer.base && inner.base < outer.base + rangeSize(outer);
}

function parseRanges(cidrs: Iterable<string>): Range[] {
  const ranges: Range[] = [];
  for (const text of cidrs) {
    try {
      ranges.push(toRange(Cidr.parse(text.trim())));
    } catch {
      // Not a CIDR: skipped, as documented.
    }
  }
  // IPv4 first, then by address, the wider of two at one address first.
  return ranges.sort((a, b) =>
    a.bits - b.bits || (a.base < b.base ? -1 : a.base > b.base ? 1 : a.prefix - b.prefix)
  );
}

function withoutContained(sorted: readonly Range[]): Range[] {
  const kept: Range[] = [];
  for (const range of sorted) {
    const last = kept[kept.length - 1];
    if (last === undefined || !rangeContains(last, range)) kept.push(range);
  }
  return kept;
}

/**
 * Sorts subnets (IPv4 first, then by address), drops duplicates and those
 * inside another, and leaves the rest as they are (unlike
 * {@linkcode aggregateCidrs}, two halves stay two). Entries that are not
 * CIDRs are skipped.
 *
 * @param cidrs The subnets, as CIDR text.
 * @returns The subnets, normalised (host bits cleared).
 *
 * @example
 * ```ts
 * import { normalizeCidrs } from "./discovery.ts";
 *
 * const cidrs = normalizeCidrs(["198.18.1.0/24", "198.18.0.0/24", "198.18.1.128/25"]);
 * if (cidrs.join(" ") !== "198.18.0.0/24 198.18.1.0/24") throw new Error(cidrs.join(" "));
 * ```
 */
export function normalizeCidrs(cidrs: Iterable<string>): string[] {
  return withoutContained(parseRanges(cidrs)).map(rangeText);
}

/**
 * The smallest set of CIDRs that holds exactly the addresses of `cidrs`:
 * duplicates and subnets inside others go, and two adjacent halves of one
 * subnet become that subnet, repeatedly. Entries that are not CIDRs are
 * skipped. The result is sorted, IPv4 first.
 *
 * @param cidrs The subnets, as CIDR text.
 * @returns The aggregated subnets.
 *
 * @example
 * ```ts
 * import { aggregateCidrs } from "./discovery.ts";
 *
 * const cidrs = aggregateCidrs(["198.18.1.0/24", "198.18.0.0/24", "198.18.3.0/24"]);
 * if (cidrs.join(" ") !== "198.18.0.0/23 198.18.3.0/24") throw new Error(cidrs.join(" "));
 * ```
 */
export function aggregateCidrs(cidrs: Iterable<string>): string[] {
  const stack: Range[] = [];
  for (const range of withoutContained(parseRanges(cidrs))) {
    stack.push(range);
    // Sorted and free of containment, so a merge can only join the top two.
    while (stack.length >= 2) {
      const b = stack[stack.length - 1]!;
      const a = stack[stack.length - 2]!;
      const size = rangeSize(a);
      const siblings = a.bits === b.bits && a.prefix === b.prefix && a.prefix > 0 &&
        a.base % (size * 2n) === 0n && b.base === a.base + size;
      if (!siblings) break;
      stack.splice(-2, 2, { bits: a.bits, base: a.base, prefix: a.prefix - 1 });
    }
  }
  return stack.map(rangeText);
}

/** Options of {@linkcode coveringCidrs}. */
export interface CoveringOptions {
  /** The block each IPv4 address stands for. Default 24. */
  ipv4PrefixLength?: number;
  /** The block each IPv6 address stands for. Default 64. */
  ipv6PrefixLength?: number;
}

/**
 * The covering CIDRs of some addresses: each address stands for its /24
 * (IPv4) or /64 (IPv6), and the blocks are merged by
 * {@linkcode aggregateCidrs}. Entries that are not addresses are skipped.
 *
 * @param addresses IP addresses, as text.
 * @param options The block sizes.
 * @returns The smallest set of CIDRs holding every block, IPv4 first.
 *
 * @example
 * ```ts
 * import { coveringCidrs } from "./discovery.ts";
 *
 * const cidrs = coveringCidrs(["198.18.0.7", "198.18.1.9", "198.18.5.1", "2001:2::1"]);
 * if (cidrs.join(" ") !== "198.18.0.0/23 198.18.5.0/24 2001:2::/64") throw new Error(cidrs.join(" "));
 * ```
 */
export function coveringCidrs(
  addresses: Iterable<string>,
  options: CoveringOptions = {},
): string[] {
  const v4 = options.ipv4PrefixLength ?? 24;
  const v6 = options.ipv6PrefixLength ?? 64;
  const blocks: string[] = [];
  for (const text of addresses) {
    const bytes = parseAddress(text.trim());
    if (bytes === undefined) continue;
    blocks.push(new Cidr(bytes, bytes.length === 4 ? v4 : v6).toString());
  }
  return aggregateCidrs(blocks);
}

/**
 * Finds the service range(s) in the error the API server answers a Service
 * create with when its ClusterIP is outside the range, in every wording
 * Kubernetes has used:
 *
 * - ≤ 1.17: `spec.clusterIP: Invalid value: "0.0.0.0": provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12`
 * - 1.18–1.19: `… failed to allocated ip:0.0.0.0 with error:provided IP is not in the valid range. The range of valid IPs is 10.96.0.0/12`
 * - 1.20+: `… failed to allocate IP 0.0.0.0: the provided IP (0.0.0.0) is not in the valid range. The range of valid IPs is 10.96.0.0/12`
 *
 * The text may be the Status' `message` or its whole JSON.
 *
 * @param text The error message or body.
 * @returns The CIDRs named, normalised, without duplicates; empty when none.
 *
 * @example
 * ```ts
 * import { parseServiceRangeError } from "./discovery.ts";
 *
 * const cidrs = parseServiceRangeError(
 *   'Service "vif-cidr-probe" is invalid: spec.clusterIPs: Invalid value: []string{"0.0.0.0"}: ' +
 *     "failed to allocate IP 0.0.0.0: the provided IP (0.0.0.0) is not in the valid range. " +
 *     "The range of valid IPs is 198.19.0.0/18",
 * );
 * if (cidrs.join() !== "198.19.0.0/18") throw new Error(cidrs.join());
 * ```
 */
export function parseServiceRangeError(text: string): string[] {
  const found: string[] = [];
  const pattern = /range of valid IPs is\s+(?:CIDR\s+)?([0-9A-Fa-f.:]+\/\d{1,3})/gi;
  for (const match of text.matchAll(pattern)) {
    try {
      const cidr = Cidr.parse(match[1]!).toString();
      if (!found.includes(cidr)) found.push(cidr);
    } catch {
      // Not a CIDR after all.
    }
  }
  return found;
}

// --- the service range probe -------------------------------------------------------

/**
 * Asks the API server for its service range the old way: creates Service
 * {@linkcode PROBE_SERVICE_NAME} with each of {@linkcode PROBE_CLUSTER_IPS}
 * as its ClusterIP, as a dry run, and reads the range from the refusal. A
 * server that allocates nothing on dry runs (before 1.20) accepts that; the
 * probe then creates the Service for real (refused the same way) and deletes
 * it should it ever be accepted.
 *
 * @returns The CIDRs the refusals name; empty when the server named none (a definite answer).
 * @throws {Error} When the server could not be asked (network, time-out, 5xx, 429): try again later.
 */
async function probeServiceRange(
  core: CoreV1Api,
  namespace: string,
  signal: AbortSignal,
  requestTimeoutMs: number,
): Promise<{ cidrs: string[]; answers: string[] }> {
  const call = <T>(fn: (options: ReturnType<typeof callOptions>) => Promise<T>) =>
    withTimeout(requestTimeoutMs, signal, (s) => fn(callOptions(s)));
  const cidrs: string[] = [];
  const answers: string[] = [];
  const refused = (error: unknown): boolean => {
    if (!(error instanceof ApiException) || error.code >= 500 || error.code === 429) throw error;
    const text = `${typeof error.body === "string" ? error.body : JSON.stringify(error.body)}`;
    const found = parseServiceRangeError(text);
    for (const cidr of found) if (!cidrs.includes(cidr)) cidrs.push(cidr);
    answers.push(describeFailure(error).message);
    return true;
  };
  for (const clusterIP of PROBE_CLUSTER_IPS) {
    const body: V1Service = {
      apiVersion: "v1",
      kind: "Service",
      metadata: {
        name: PROBE_SERVICE_NAME,
        labels: {
          "app.kubernetes.io/managed-by": "vif",
          "app.kubernetes.io/component": "cidr-probe",
        },
      },
      spec: {
        type: "ClusterIP",
        clusterIP,
        ports: [{ name: "probe", port: 443, protocol: "TCP" }],
      },
    };
    try {
      await call((o) => core.createNamespacedService({ namespace, body, dryRun: "All" }, o));
    } catch (error) {
      if (refused(error)) continue;
    }
    // Accepted as a dry run: this server allocates nothing on dry runs. For real, then.
    for (let attempt = 0; attempt < 2; attempt++) {
      try {
        await call((o) => core.createNamespacedService({ namespace, body }, o));
      } catch (error) {
        if (error instanceof ApiException && error.code === 409 && attempt === 0) {
          // A probe left over by a manager that stopped half-way: ours to remove.
          await call((o) =>
            core.deleteNamespacedService({ name: PROBE_SERVICE_NAME, namespace }, o)
          ).catch(() => {});
          continue;
        }
        refused(error);
        break;
      }
      // Accepted: it holds an address now. Give it back.
      answers.push(`ClusterIP ${clusterIP} was accepted`);
      await call((o) => core.deleteNamespacedService({ name: PROBE_SERVICE_NAME, namespace }, o));
      break;
    }
  }
  return { cidrs, answers };
}

// --- discovery -------------------------------------------------------------------

/** The fields of {@linkcode ClusterInfoValue} discovery can keep. */
export type DiscoveredField = "podSubnets" | "serviceSubnets" | "namespaces";

/** Options of {@linkcode startDiscovery}. */
export interface DiscoveryOptions extends KubeAccessOptions {
  /** The manager pod's IP (`POD_IP`): the node podCIDRs are trusted when one holds it. */
  podIp?: string;
  /** The namespace the range probe works in. Default: the service account's or the context's, else `default`. */
  namespace?: string;
  /** Which fields to keep (a field given by a flag is not discovered). Default: all three. */
  fields?: readonly DiscoveredField[];
  /** Waits between retries. */
  retry?: RetryOptions;
  /** The limit of each list and create call, in ms. Default 30000. */
  requestTimeoutMs?: number;
  /**
   * How long a watch may go without an event or bookmark before it is
   * started again (from where it was), in ms. Default 30000, client-node's
   * own limit.
   */
  watchIdleMs?: number;
  /** Where log lines go (each starts with `manager: `). Default: standard error. */
  log?: (line: string) => void;
}

/** A running discovery. */
export interface Discovery {
  /** Where the configuration came from: `in-cluster` or `kubeconfig FILE`. */
  readonly source: string;
  /** The API server's URL. */
  readonly server: string;
  /** Resolves once every field kept has a value from the cluster (or when closed). */
  readonly settled: Promise<void>;
  /** Which fields have a value from the cluster so far. */
  readonly found: ReadonlySet<DiscoveredField>;
  /**
   * Reads one Service's ClusterIPs (the manager's own, which it must never
   * dial).
   *
   * @param namespace The Service's namespace.
   * @param name Its name.
   * @returns Its ClusterIPs; none for a headless Service.
   * @throws {Error} When the API does not answer or refuses.
   */
  serviceIps(namespace: string, name: string): Promise<string[]>;
  /** Stops every watch and retry. Safe to call twice. */
  close(): Promise<void>;
}

/** What the informers need, and where the manager's lines go. */
interface LoopDeps extends InformerDeps {
  log: (line: string) => void;
}

interface Decision {
  cidrs: string[];
  source: string;
}

type ProbeState =
  | { state: "idle" }
  | { state: "running" }
  | { state: "done"; cidrs: string[]; answers: string[] };

/**
 * Starts discovering the cluster into `target`: lists and watches what the
 * kept fields need and calls `target.set()` with each change (and only
 * then), logging one line per change. Failures to reach the API are logged
 * and retried; `target` keeps what it has meanwhile.
 *
 * @param target The cluster info to keep up to date.
 * @param options How to reach the API, the pod IP, which fields, logs.
 * @returns The running discovery.
 * @throws {ManagerSetupError} When the kubeconfig or the service account cannot be read.
 *
 * @example
 * ```ts ignore
 * import { ClusterInfoSource } from "./cluster_info.ts";
 * import { startDiscovery } from "./discovery.ts";
 *
 * const info = new ClusterInfoSource();
 * const discovery = startDiscovery(info, { inCluster: true, podIp: Deno.env.get("POD_IP") });
 * await discovery.settled;
 * console.log(info.current.podSubnets, info.current.serviceSubnets);
 * await discovery.close();
 * ```
 */
export function startDiscovery(target: ClusterInfoSource, options: DiscoveryOptions): Discovery {
  return new ClusterDiscovery(target, managerKubeAccess(options), options);
}

/**
 * The manager's client configuration, with what to do said in the
 * manager's terms (its flags) when it cannot be had.
 *
 * @param options the kubeconfig, or the service account and environment
 * @returns the access
 * @throws {ManagerSetupError} when it cannot be had
 */
export function managerKubeAccess(options: KubeAccessOptions): KubeAccess {
  try {
    return loadKubeAccess(options);
  } catch (error) {
    if (!(error instanceof KubeAccessError)) throw error;
    const hint = {
      "kubeconfig": error.hint,
      "not-in-cluster":
        "Run the manager in a pod, or pass --kubeconfig FILE, or give --pod-cidr and --service-cidr instead of --discover.",
      "no-service-account":
        "Mount the service-account token (automountServiceAccountToken: true), or give --pod-cidr and --service-cidr and --no-discover.",
    }[error.failure];
    throw new ManagerSetupError(error.message, {
      hint,
      usage: error.failure !== "no-service-account",
      cause: error.cause ?? error,
    });
  }
}

class ClusterDiscovery implements Discovery {
  readonly source: string;
  readonly server: string;
  readonly settled: Promise<void>;
  readonly found = new Set<DiscoveredField>();

  #target: ClusterInfoSource;
  #deps: LoopDeps;
  #fields: Set<DiscoveredField>;
  #podIp: string | undefined;
  #namespace: string;
  #core: CoreV1Api;
  #networking: NetworkingV1Api;
  #stop = new AbortController();
  #settle!: () => void;
  #scheduled = false;
  #closing: Promise<void> | undefined;
  #tasks = new Set<Promise<void>>();
  #notes = new Set<string>();

  #nodes: Informer<string[]> | undefined;
  #pods: Informer<string[]> | undefined;
  #serviceCidrs: Informer<string[]> | undefined;
  #services: Informer<string[]> | undefined;
  #namespaces: Informer<true> | undefined;
  #probe: ProbeState = { state: "idle" };

  constructor(target: ClusterInfoSource, access: KubeAccess, options: DiscoveryOptions) {
    this.source = access.source;
    this.server = access.server;
    this.#target = target;
    this.#podIp = options.podIp || undefined;
    this.#namespace = options.namespace ?? access.namespace;
    this.#fields = new Set(options.fields ?? ["podSubnets", "serviceSubnets", "namespaces"]);
    const log = options.log ?? ((line: string) => console.error(line));
    this.#deps = {
      kubeConfig: access.kubeConfig,
      retry: {
        initialMs: options.retry?.initialMs ?? 500,
        maxMs: options.retry?.maxMs ?? 30_000,
      },
      requestTimeoutMs: options.requestTimeoutMs ?? 30_000,
      watchIdleMs: options.watchIdleMs ?? 30_000,
      log,
      info: (text) => log(`manager: discovery: ${text}`),
      warn: (text) => log(`manager: warning: discovery: ${text}`),
    };
    this.#core = access.kubeConfig.makeApiClient(CoreV1Api);
    this.#networking = access.kubeConfig.makeApiClient(NetworkingV1Api);
    this.settled = new Promise<void>((resolve) => this.#settle = resolve);

    const onChange = () => this.#schedule();
    if (this.#fields.has("podSubnets")) {
      this.#nodes = new Informer(
        {
          resource: "nodes",
          path: "/api/v1/nodes",
          list: async (p, signal) =>
            listPage(
              await this.#core.listNode(
                { limit: p.limit, _continue: p.continue },
                callOptions(signal),
              ),
            ),
          value: (node) => {
            const spec = node.spec ?? {};
            const cidrs = Array.isArray(spec.podCIDRs) ? spec.podCIDRs : [spec.podCIDR];
            return cidrs.filter((c): c is string => typeof c === "string" && c !== "");
          },
        },
        this.#deps,
        onChange,
      );
    }
    if (this.#fields.has("serviceSubnets")) {
      this.#serviceCidrs = new Informer(
        {
          resource: "servicecidrs",
          path: "/apis/networking.k8s.io/v1/servicecidrs",
          list: async (p, signal) =>
            listPage(
              await this.#networking.listServiceCIDR(
                { limit: p.limit, _continue: p.continue },
                callOptions(signal),
              ),
            ),
          value: (serviceCidr) => {
            const cidrs = serviceCidr.spec?.cidrs;
            return Array.isArray(cidrs) ? cidrs.filter((c) => typeof c === "string") : [];
          },
        },
        this.#deps,
        onChange,
      );
    }
    if (this.#fields.has("namespaces")) {
      this.#namespaces = new Informer(
        {
          resource: "namespaces",
          path: "/api/v1/namespaces",
          list: async (p, signal) =>
            listPage(
              await this.#core.listNamespace(
                { limit: p.limit, _continue: p.continue },
                callOptions(signal),
              ),
            ),
          value: () => true as const,
        },
        this.#deps,
        onChange,
      );
    }
    if (this.#fields.size === 0) this.#settle();
  }

  async serviceIps(namespace: string, name: string): Promise<string[]> {
    const service = await withTimeout(
      this.#deps.requestTimeoutMs,
      this.#stop.signal,
      (signal) => this.#core.readNamespacedService({ namespace, name }, callOptions(signal)),
    );
    return clusterIps(service as unknown as RawObject) ?? [];
  }

  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#stop.abort();
      this.#settle();
      const informers = [
        this.#nodes,
        this.#pods,
        this.#serviceCidrs,
        this.#services,
        this.#namespaces,
      ];
      await Promise.all(informers.map((informer) => informer?.stop()));
      await Promise.all([...this.#tasks]);
    })();
    return this.#closing;
  }

  /** Recomputes once after a burst of events (the lines of one chunk arrive together). */
  #schedule(): void {
    if (this.#scheduled || this.#stop.signal.aborted) return;
    this.#scheduled = true;
    queueMicrotask(() => {
      this.#scheduled = false;
      if (!this.#stop.signal.aborted) this.#recompute();
    });
  }

  #recompute(): void {
    const current = this.#target.current;
    const changes: Partial<ClusterInfoValue> = {};
    const lines: string[] = [];
    const consider = (field: "podSubnets" | "serviceSubnets", what: string, d?: Decision) => {
      if (d === undefined) return;
      this.found.add(field);
      if (sameList(d.cidrs, current[field])) return;
      changes[field] = d.cidrs;
      lines.push(`manager: ${what} now ${d.cidrs.join(" ") || "none"} (${d.source})`);
    };
    if (this.#fields.has("podSubnets")) consider("podSubnets", "pod subnets", this.#decidePods());
    if (this.#fields.has("serviceSubnets")) {
      consider("serviceSubnets", "service subnets", this.#decideServices());
    }
    const namespaces = this.#namespaces;
    if (namespaces?.synced) {
      this.found.add("namespaces");
      const names = [...namespaces.values.keys()].map((key) => key.slice(1)).sort();
      if (!sameList(names, current.namespaces)) {
        changes.namespaces = names;
        lines.push(`manager: namespaces now ${namespaceChange(current.namespaces, names)}`);
      }
    }
    if (lines.length > 0) {
      this.#target.set(changes);
      for (const line of lines) this.#deps.log(line);
    }
    if ([...this.#fields].every((field) => this.found.has(field))) this.#settle();
  }

  #decidePods(): Decision | undefined {
    const nodes = this.#nodes!;
    if (!nodes.synced && !isAbsent(nodes.failure)) return undefined;
    const nodeCidrs = normalizeCidrs([...nodes.values.values()].flat());
    const podIp = this.#podIp;
    const holdsPodIp = podIp !== undefined &&
      nodeCidrs.some((cidr) => Cidr.parse(cidr).contains(podIp));
    if (nodeCidrs.length > 0 && (holdsPodIp || podIp === undefined)) {
      if (podIp === undefined) {
        this.#note("manager: discovery: no pod IP (POD_IP): trusting the nodes' podCIDRs");
      }
      this.#setInformer("pods", false);
      return { cidrs: nodeCidrs, source: "nodes" };
    }
    if (nodeCidrs.length > 0) {
      this.#note(
        `manager: discovery: no node's podCIDRs hold the pod IP ${podIp}: ` +
          "using the covering subnets of the pods' IPs",
      );
    }
    const pods = this.#setInformer("pods", true);
    if (!pods?.synced) return undefined;
    const ips = [...pods.values.values()].flat();
    if (podIp !== undefined) ips.push(podIp);
    return { cidrs: coveringCidrs(ips), source: "pods" };
  }

  #decideServices(): Decision | undefined {
    const serviceCidrs = this.#serviceCidrs!;
    if (!serviceCidrs.synced && !isAbsent(serviceCidrs.failure)) return undefined;
    const listed = normalizeCidrs([...serviceCidrs.values.values()].flat());
    if (listed.length > 0) {
      this.#setInformer("services", false);
      return { cidrs: listed, source: "servicecidrs" };
    }
    if (this.#probe.state === "idle") this.#startProbe(serviceCidrs.failure);
    if (this.#probe.state !== "done") return undefined;
    if (this.#probe.cidrs.length > 0) return { cidrs: this.#probe.cidrs, source: "probe" };
    const services = this.#setInformer("services", true);
    if (!services?.synced) return undefined;
    return { cidrs: coveringCidrs([...services.values.values()].flat()), source: "services" };
  }

  #startProbe(why: Failure | undefined): void {
    this.#probe = { state: "running" };
    this.#deps.log(
      `manager: discovery: no ServiceCIDRs (${
        why?.message ?? "none listed"
      }): probing the service range with Service "${this.#namespace}/${PROBE_SERVICE_NAME}"`,
    );
    this.#task(async () => {
      let delay = this.#deps.retry.initialMs;
      while (!this.#stop.signal.aborted) {
        try {
          const result = await probeServiceRange(
            this.#core,
            this.#namespace,
            this.#stop.signal,
            this.#deps.requestTimeoutMs,
          );
          if (result.cidrs.length === 0) {
            this.#deps.log(
              `manager: discovery: the probe found no service range (${
                result.answers.join("; ") || "no answer"
              }): using the covering subnets of the services' ClusterIPs`,
            );
          }
          this.#probe = { state: "done", ...result };
          this.#schedule();
          return;
        } catch (error) {
          if (this.#stop.signal.aborted) return;
          this.#deps.log(
            `manager: warning: discovery: cannot probe the service range: ${
              describeFailure(error).message
            } (retrying in ${formatWait(delay)})`,
          );
          await sleep(delay, this.#stop.signal);
          delay = Math.min(delay * 2, this.#deps.retry.maxMs);
        }
      }
    });
  }

  /** Starts or stops the informers only some decisions need; returns the running one. */
  #setInformer(which: "pods" | "services", needed: boolean): Informer<string[]> | undefined {
    const current = which === "pods" ? this.#pods : this.#services;
    if (!needed) {
      if (current !== undefined) {
        if (which === "pods") this.#pods = undefined;
        else this.#services = undefined;
        this.#task(() => current.stop());
        this.#deps.log(`manager: discovery: no longer watching ${which}`);
      }
      return undefined;
    }
    if (current !== undefined || this.#stop.signal.aborted) return current;
    const informer = which === "pods"
      ? new Informer<string[]>(
        {
          resource: "pods",
          path: "/api/v1/pods",
          list: async (p, signal) =>
            listPage(
              await this.#core.listPodForAllNamespaces(
                { limit: p.limit, _continue: p.continue },
                callOptions(signal),
              ),
            ),
          value: podIps,
        },
        this.#deps,
        () => this.#schedule(),
      )
      : new Informer<string[]>(
        {
          resource: "services",
          path: "/api/v1/services",
          list: async (p, signal) =>
            listPage(
              await this.#core.listServiceForAllNamespaces(
                { limit: p.limit, _continue: p.continue },
                callOptions(signal),
              ),
            ),
          value: clusterIps,
        },
        this.#deps,
        () => this.#schedule(),
      );
    if (which === "pods") this.#pods = informer;
    else this.#services = informer;
    this.#deps.log(`manager: discovery: watching ${which}`);
    return informer;
  }

  #task(fn: () => Promise<void>): void {
    const task = fn().catch((error) =>
      this.#deps.log(`manager: discovery: ${describeFailure(error).message}`)
    ).finally(() => this.#tasks.delete(task));
    this.#tasks.add(task);
  }

  /** Logs a line once. */
  #note(line: string): void {
    if (this.#notes.has(line)) return;
    this.#notes.add(line);
    this.#deps.log(line);
  }
}

/** The IPs of a pod on the pod network (not host-network pods, not finished ones). */
function podIps(pod: RawObject): string[] | undefined {
  if (pod.spec?.hostNetwork === true) return undefined;
  const status = pod.status ?? {};
  if (status.phase === "Succeeded" || status.phase === "Failed") return undefined;
  const listed = Array.isArray(status.podIPs)
    ? (status.podIPs as { ip?: unknown }[]).map((entry) => entry?.ip)
    : [status.podIP];
  const ips = listed.filter((ip): ip is string => typeof ip === "string" && ip !== "");
  return ips.length > 0 ? ips : undefined;
}

/** The ClusterIPs of a service (none for headless and ExternalName ones). */
function clusterIps(service: RawObject): string[] | undefined {
  const spec = service.spec ?? {};
  const listed = Array.isArray(spec.clusterIPs) ? spec.clusterIPs : [spec.clusterIP];
  const ips = listed.filter((ip): ip is string =>
    typeof ip === "string" && ip !== "" && ip !== "None"
  );
  return ips.length > 0 ? ips : undefined;
}

function sameList(a: readonly string[], b: readonly string[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/** `default kube-system shop`, or for many: `42 (+shop -old)`. */
function namespaceChange(before: readonly string[], after: readonly string[]): string {
  if (after.length <= 8) return after.join(" ") || "none";
  const added = after.filter((n) => !before.includes(n)).map((n) => `+${n}`);
  const removed = before.filter((n) => !after.includes(n)).map((n) => `-${n}`);
  const diff = [...added, ...removed];
  const shown = diff.length > 8 ? [...diff.slice(0, 8), "…"] : diff;
  return `${after.length}${shown.length > 0 ? ` (${shown.join(" ")})` : ""}`;
}
