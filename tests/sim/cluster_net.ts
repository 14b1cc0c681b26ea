/**
 * The network half of a simulated Kubernetes cluster, in network namespaces:
 * nodes, pods (routed, Calico style), ClusterIPs (kube-proxy's nftables DNAT
 * on every node), cluster DNS (dnsmasq in a `kube-dns` pod, serving what
 * CoreDNS would), a workstation on the same LAN with no route into the
 * cluster, and an outside DNS server that is the workstation's resolver.
 *
 * ```
 *             the LAN 198.19.200.0/24: bridge br0 (no address) in netns <base>-lan
 * ════╤═════════════════════════════╤═════════════════════════════╤═══════════════╤════
 *     │ veth "ws"                   │ veth "out"                  │ veth "node1"  ┆ veth "node2"
 * ┌───┴─ <base>-ws ───────────┐ ┌───┴─ <base>-out ────────────┐   │               ┆ (addNode():
 * │ eth0 198.19.200.2/24      │ │ eth0 198.19.200.53/24, .80  │   │               ┆ node2 at .11,
 * │ no route to 198.18.0.0/15 │ │ dnsmasq :53 knows only      │   │               ┆ its pods in
 * │ but what is exposed:      │ │   outside.example → .80     │   │               ┆ 198.18.1.0/24,
 * │   exposeToWorkstation(ip) │ │ python http.server .80:80   │   │               ┆ built like
 * │   = ip/32 via its node    │ │   says "outside"            │   │               ┆ node1)
 * │ resolv.conf: nameserver   │ └─────────────────────────────┘   │               ┆
 * │   198.19.200.53           │                                   │               ┆
 * └───────────────────────────┘                                   │               ┆
 * ┌─ <base>-node1 ────────────────────────────────────────────────┴─────────────┐ ┆
 * │ eth0 198.19.200.1/24   ip_forward=1   route 198.18.1.0/24 via 198.19.200.11 │ ┆
 * │ nft table ip vif_sim (kube-proxy): ClusterIP DNAT, reject, egress masquerade│
 * │ vp1 198.18.0.1/32, route 198.18.0.2 dev vp1                                 │
 * │ vp2 198.18.0.1/32, route 198.18.0.3 dev vp2  …  one veth per pod, no bridge │
 * └────┬────────────────────────────────────────┬───────────────────────────────┘
 *      │ vp1 ═ eth0                             │ vp2 ═ eth0
 * ┌────┴─ <base>-p1 ─────────────────────┐ ┌────┴─ <base>-p2 ─────────────────────┐
 * │ pod kube-system/kube-dns             │ │ pod default/web-1 (for example)      │
 * │ eth0 198.18.0.2/32                   │ │ eth0 198.18.0.3/32                   │
 * │ route 198.18.0.1 dev eth0            │ │ route 198.18.0.1 dev eth0            │
 * │ default via 198.18.0.1               │ │ default via 198.18.0.1               │
 * │ dnsmasq :53, behind 198.19.0.10      │ │ resolv.conf: search default.svc.…    │
 * │ resolv.conf: nameserver .53 (Default)│ │   nameserver 198.19.0.10, ndots:5    │
 * └──────────────────────────────────────┘ └──────────────────────────────────────┘
 * ```
 *
 * Addresses: pods 198.18.0.0/16 (node N: 198.18.(N-1).0/24, gateway .1),
 * services 198.19.0.0/18 (198.19.0.1 kept for `kubernetes`, 198.19.0.10 cluster
 * DNS), LAN 198.19.200.0/24 (node 1 .1, node N≥2 .(9+N), workstation .2,
 * outside DNS .53, outside web .80). Nothing else, and no namespace has an
 * uplink (DESIGN.md §7). Everything is undone by {@linkcode ClusterNet.cleanup},
 * which the `Env` given to {@linkcode ClusterNet.create} also calls.
 *
 * @module
 */

import { Env, must, type Output, type Proc, run, suffix } from "../e2e/_env.ts";
import {
  allocate,
  computeEndpoints,
  type ContainerPort,
  type EndpointAddress,
  inCidr,
  normalizePort,
  nthIp,
  type PodInfo,
  type Protocol,
  type ServiceInfo,
  type ServicePortSpec,
} from "./_model.ts";
import { kubeProxyRuleset, type ServiceState } from "./_nft.ts";
import { dnsmasqConfig, dnsmasqHosts, GENERATION_NAME, generationIp } from "./_dns.ts";

export type {
  ContainerPort,
  EndpointAddress,
  PodInfo,
  Protocol,
  ServiceInfo,
  ServicePort,
  ServicePortSpec,
} from "./_model.ts";

/** The cluster's pod CIDR. */
export const POD_CIDR = "198.18.0.0/16";
/** The cluster's service CIDR (ClusterIPs). */
export const SERVICE_CIDR = "198.19.0.0/18";
/** The LAN the workstation and the nodes share. */
export const LAN_CIDR = "198.19.200.0/24";
/** The cluster domain. */
export const CLUSTER_DOMAIN = "cluster.local";
/** The ClusterIP of the cluster DNS (`kube-system/kube-dns`). */
export const CLUSTER_DNS_IP = "198.19.0.10";
/** The ClusterIP kept for the `default/kubernetes` service (the API server). */
export const KUBERNETES_SERVICE_IP = "198.19.0.1";
/** The workstation's address on the LAN. */
export const WS_IP = "198.19.200.2";
/** The outside DNS server: the workstation's resolver before vif, and the cluster DNS's upstream. */
export const OUTSIDE_DNS_IP = "198.19.200.53";
/** A host outside the cluster, serving HTTP on port 80. */
export const OUTSIDE_HOST_IP = "198.19.200.80";
/** The outside host's name, known only to the outside DNS server. */
export const OUTSIDE_NAME = "outside.example";
/** The nftables table (family ip) that holds the kube-proxy rules on every node. */
export const NFT_TABLE = "vif_sim";

const LAN_IF = "eth0";
const NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--"];
/** CoreDNS's answer TTL. */
const DNS_TTL = 5;

/**
 * The LAN address of node `n` (1-based): node 1 is .1, node N≥2 is .(9+N).
 *
 * @param n the node's number
 * @returns its address
 * @throws {RangeError} outside 1…200
 */
export function nodeLanIp(n: number): string {
  if (!Number.isInteger(n) || n < 1 || n > 200) throw new RangeError(`Invalid node number ${n}`);
  return nthIp(LAN_CIDR, n === 1 ? 1 : 9 + n);
}

/**
 * The pod CIDR of node `n` (1-based): 198.18.(n-1).0/24.
 *
 * @param n the node's number
 * @returns the CIDR
 * @throws {RangeError} outside 1…256
 */
export function nodePodCidr(n: number): string {
  if (!Number.isInteger(n) || n < 1 || n > 256) throw new RangeError(`Invalid node number ${n}`);
  return `198.18.${n - 1}.0/24`;
}

/** A node: a namespace that routes its pods and holds the kube-proxy table. */
export interface Node {
  /** `node1`, `node2`, … */
  readonly name: string;
  readonly index: number;
  readonly netns: string;
  /** The LAN address (the pods' `hostIP`). */
  readonly ip: string;
  /** `spec.podCIDR`. */
  readonly podCIDR: string;
  /** The pods' next hop: the first address of the pod CIDR, on every pod veth. */
  readonly gateway: string;
}

/** Who a pod's process runs as. */
export type RunUser = "root" | "nobody";

/** The process a pod made with `addPod` starts (the kubelet starts its containers with `spawn`). */
export interface RunSpec {
  cmd: string[];
  /** Default `root`; `nobody` is uid/gid 65534 with no supplementary groups. */
  user?: RunUser;
  env?: Record<string, string>;
}

/** A readiness check: a socket listening on this port inside the pod. */
export interface Readiness {
  port: number;
  /** Default `TCP`. */
  protocol?: Protocol;
  /** Default 15 s. */
  timeoutMs?: number;
}

/** What `addPod` needs: a subset of a Pod's spec. */
export interface PodSpec {
  namespace: string;
  name: string;
  labels?: Record<string, string>;
  /** With `subdomain` naming a headless service: `<hostname>.<subdomain>.<ns>.svc.cluster.local`. */
  hostname?: string;
  subdomain?: string;
  /** The node's name; default `node1`. */
  node?: string;
  /** Container ports, for services whose `targetPort` is a name. */
  ports?: ContainerPort[];
  /**
   * The pod's process, or a function that makes it once the pod's address is
   * known (as the kubelet fills `status.podIP` into the environment); none: the
   * caller starts what it wants with {@linkcode ClusterNet.spawn}.
   */
  run?: RunSpec | ((pod: PodInfo) => RunSpec);
  /** None: ready as soon as it is started (unless `externalReadiness`). */
  readiness?: Readiness;
  /**
   * When true, the pod is ready only while the caller says so with
   * {@linkcode ClusterNet.setReady} (a kubelet running probes); `readiness`
   * is then ignored.
   */
  externalReadiness?: boolean;
  /** `ClusterFirst` (default: the cluster DNS) or `Default` (the node's resolver). */
  dnsPolicy?: "ClusterFirst" | "Default";
}

/** A running pod. */
export interface Pod extends PodInfo {
  /** The pod's network namespace. */
  readonly netns: string;
  /** The node's LAN address. */
  readonly hostIP: string;
  /** The node side of the pod's veth. */
  readonly veth: string;
  /** The process from `spec.run`. */
  readonly proc: Proc | undefined;
  /**
   * Resolves once the pod is ready and the cluster shows it (endpoints, DNAT,
   * DNS); rejects when the readiness check fails or the process ends first
   * (with `externalReadiness`: when the pod is removed first).
   */
  readonly whenReady: Promise<void>;
}

/** What `addService` needs: a subset of a Service's spec. */
export interface ServiceSpec {
  namespace: string;
  name: string;
  /** An address in the service CIDR, `"None"` (headless), or unset to allocate one. */
  clusterIP?: string;
  ports: ServicePortSpec[];
  /** The pods that back it; unset: the addresses in `endpoints`. */
  selector?: Record<string, string>;
  /** Addresses behind a service without a selector (e.g. `kubernetes` → the API server). */
  endpoints?: string[];
}

/** A change, for a fake API server that publishes the objects. */
export interface ClusterEvent {
  type: "ADDED" | "MODIFIED" | "DELETED";
  kind: "Node" | "Pod" | "Service" | "Endpoints";
  namespace?: string;
  name: string;
}

/** Options of {@linkcode ClusterNet.create}. */
export interface ClusterNetOptions {
  /** The start of every namespace name (`<prefix>-<id>-ws`); default `vs`. */
  prefix?: string;
  /**
   * The whole start of every namespace name instead of `<prefix>-<id>`, for a
   * cluster that must have fixed names (`deno task sim up` uses `vif`, so the
   * workstation is `vif-ws`). Only one cluster with a given base can exist.
   */
  base?: string;
  /** Whether the cluster DNS forwards other names to the outside DNS; default `true`. */
  dnsUpstream?: boolean;
  /** Whether dnsmasq logs every query to its stderr (`Proc.errLines`); default `false`. */
  dnsLogQueries?: boolean;
}

interface PodState extends Pod {
  ready: boolean;
  proc: Proc | undefined;
  offset: number;
  removed: boolean;
  resolveReady: () => void;
  rejectReady: (e: Error) => void;
}

/**
 * A simulated cluster network. Make one with {@linkcode ClusterNet.create}.
 *
 * @example
 * ```ts ignore
 * const env = await new Env().init();
 * const c = await ClusterNet.create(env);
 * const pod = await c.addPod({ namespace: "default", name: "web-1", labels: { app: "web" },
 *   run: { cmd: ["nginx", "-c", conf] }, readiness: { port: 80 } });
 * await c.addService({ namespace: "default", name: "web", selector: { app: "web" },
 *   ports: [{ name: "http", port: 80 }] });
 * await pod.whenReady;
 * await c.exec(pod, ["curl", "-s", "http://web/"]);
 * await env.cleanup();
 * ```
 */
export class ClusterNet {
  /** The random part of every name. */
  readonly id: string;
  /** `<prefix>-<id>`, the start of every namespace name. */
  readonly base: string;
  /** The workstation's namespace. */
  readonly ws: string;
  /** The namespace holding the LAN bridge. */
  readonly lan: string;
  /** The namespace of the outside DNS server and host. */
  readonly outside: string;
  /** The cluster DNS's ClusterIP. */
  readonly dnsServer = CLUSTER_DNS_IP;
  /** A private directory (mode 0700) for generated files; removed on cleanup. */
  get dir(): string {
    return this.#env.dir;
  }

  #env: Env;
  #options: ClusterNetOptions;
  #nodes: Node[] = [];
  #pods = new Map<string, PodState>();
  #services = new Map<string, ServiceInfo>();
  #podCount = 0;
  #lastPodOffset = new Map<string, number>();
  #lastClusterIp = 10;
  #watchers = new Set<(e: ClusterEvent) => void>();
  #lastEndpoints = new Map<string, string>();
  #dirty = false;
  #syncing: Promise<void> | undefined;
  #closed = false;
  #rules = "";
  #dnsConf = "";
  #dnsHosts = "";
  #dnsGen = 0;
  #dnsProc: Proc | undefined;
  #dnsPod: PodState | undefined;

  private constructor(env: Env, options: ClusterNetOptions) {
    this.#env = env;
    this.#options = options;
    this.id = suffix();
    this.base = options.base ?? `${options.prefix ?? "vs"}-${this.id}`;
    this.ws = `${this.base}-ws`;
    this.lan = `${this.base}-lan`;
    this.outside = `${this.base}-out`;
  }

  /**
   * Builds the LAN, the workstation, the outside DNS and host, node 1 and the
   * cluster DNS, and registers its own cleanup with `env`.
   *
   * @param env the test's environment; its cleanup removes the cluster too
   * @param options name prefix, DNS options
   * @returns the cluster, with the cluster DNS answering
   * @throws {Error} when a namespace, link or server cannot be made (what was made is removed)
   */
  static async create(env: Env, options: ClusterNetOptions = {}): Promise<ClusterNet> {
    const own = await new Env().init();
    const c = new ClusterNet(own, options);
    env.defer(() => c.cleanup());
    try {
      await c.#build();
    } catch (error) {
      await c.cleanup();
      throw error;
    }
    return c;
  }

  async #build(): Promise<void> {
    const env = this.#env;
    await this.#etc(this.ws, { "resolv.conf": `nameserver ${OUTSIDE_DNS_IP}\n` });
    await Promise.all([env.netns(this.lan), env.netns(this.ws), env.netns(this.outside)]);
    // The workstation's processes see each other's mounts (the daemon's sshfs), as on a laptop.
    await env.shareMounts(this.ws);
    await ipBatch(this.lan, ["link add br0 type bridge", "link set br0 up"]);
    await this.#lanPort("ws", this.ws, [`${WS_IP}/24`]);
    await this.#lanPort("out", this.outside, [`${OUTSIDE_DNS_IP}/24`, `${OUTSIDE_HOST_IP}/24`]);

    // The outside world: a DNS server that knows one name, and a web server at that name.
    const www = `${env.dir}/outside-www`;
    await Deno.mkdir(www);
    await Deno.writeTextFile(`${www}/index.html`, `outside\n`);
    const outsideDns = env.spawn([
      "dnsmasq",
      "--keep-in-foreground",
      "--conf-file=/dev/null",
      "--user=root",
      "--pid-file=",
      "--log-facility=-",
      "--no-resolv",
      "--no-hosts",
      "--local=/example/",
      `--host-record=${OUTSIDE_NAME},${OUTSIDE_HOST_IP}`,
    ], { ns: this.outside });
    const outsideWeb = env.spawn([
      "/usr/bin/python3",
      "-m",
      "http.server",
      "--bind",
      OUTSIDE_HOST_IP,
      "--directory",
      www,
      "80",
    ], { ns: this.outside });

    await this.addNode();
    this.#dnsPod = await this.#addPod({
      namespace: "kube-system",
      name: "kube-dns",
      labels: { "k8s-app": "kube-dns" },
      ports: [
        { name: "dns", containerPort: 53, protocol: "UDP" },
        { name: "dns-tcp", containerPort: 53, protocol: "TCP" },
      ],
      dnsPolicy: "Default",
    }, true);
    await Promise.all([
      this.addService({
        namespace: "kube-system",
        name: "kube-dns",
        clusterIP: CLUSTER_DNS_IP,
        selector: { "k8s-app": "kube-dns" },
        ports: [
          { name: "dns", port: 53, targetPort: "dns", protocol: "UDP" },
          { name: "dns-tcp", port: 53, targetPort: "dns-tcp", protocol: "TCP" },
        ],
      }),
      waitListening(this.outside, { port: 53, protocol: "UDP", proc: outsideDns }),
      waitListening(this.outside, { port: 80, protocol: "TCP", proc: outsideWeb }),
    ]);
  }

  /** The nodes, in order. */
  get nodes(): readonly Node[] {
    return this.#nodes;
  }

  /**
   * Adds a node: its namespace on the LAN, forwarding, routes to and from the
   * other nodes' pod CIDRs, and the kube-proxy table.
   *
   * @returns the node
   * @throws {Error} when the namespace or links cannot be made
   */
  async addNode(): Promise<Node> {
    const index = this.#nodes.length + 1;
    const podCIDR = nodePodCidr(index);
    const node: Node = {
      name: `node${index}`,
      index,
      netns: `${this.base}-node${index}`,
      ip: nodeLanIp(index),
      podCIDR,
      gateway: nthIp(podCIDR, 1),
    };
    await this.#etc(node.netns, { "resolv.conf": `nameserver ${OUTSIDE_DNS_IP}\n` });
    await this.#env.netns(node.netns);
    await this.#lanPort(node.name, node.netns, [`${node.ip}/24`]);
    await must(["sysctl", "-qw", "net.ipv4.ip_forward=1"], { ns: node.netns });
    const others = [...this.#nodes];
    await ipBatch(node.netns, others.map((o) => `route add ${o.podCIDR} via ${o.ip}`));
    await Promise.all(
      others.map((o) => ipBatch(o.netns, [`route add ${node.podCIDR} via ${node.ip}`])),
    );
    this.#nodes.push(node);
    this.#rules = ""; // write the table everywhere, the new node included
    this.#emit({ type: "ADDED", kind: "Node", name: node.name });
    await this.#sync();
    return node;
  }

  /**
   * Starts a pod: a namespace with a routed veth to its node, its /32 address,
   * `lo` up with 127.0.0.1 and ::1, a Kubernetes resolv.conf and hosts file,
   * the loose sysctls containerd sets (`ip_unprivileged_port_start=0`,
   * `ping_group_range`), and its process.
   *
   * @param spec namespace, name, labels, node, ports, process, readiness
   * @returns the pod, once its network is up and its process started (see `whenReady`)
   * @throws {Error} when the name is taken, the node is unknown or the set-up fails
   */
  addPod(spec: PodSpec): Promise<Pod> {
    return this.#addPod(spec, false);
  }

  async #addPod(spec: PodSpec, manualReady: boolean): Promise<PodState> {
    const key = `${spec.namespace}/${spec.name}`;
    if (this.#pods.has(key)) throw new Error(`Cannot add pod "${key}": it exists`);
    const node = this.#nodes.find((n) => n.name === (spec.node ?? "node1"));
    if (!node) throw new Error(`Cannot add pod "${key}": no node "${spec.node}"`);
    const used = new Set([...this.#pods.values()].map((p) => p.ip));
    const { ip, offset } = allocate(node.podCIDR, {
      range: [2, 254],
      used,
      last: this.#lastPodOffset.get(node.name) ?? 1,
    });
    this.#lastPodOffset.set(node.name, offset);
    const k = ++this.#podCount;
    let resolveReady!: () => void, rejectReady!: (e: Error) => void;
    const whenReady = new Promise<void>((res, rej) => {
      resolveReady = res;
      rejectReady = rej;
    });
    whenReady.catch(() => {}); // a caller that never asks must not crash the test
    const pod: PodState = {
      namespace: spec.namespace,
      name: spec.name,
      ip,
      node: node.name,
      labels: { ...spec.labels },
      ...(spec.hostname ? { hostname: spec.hostname } : {}),
      ...(spec.subdomain ? { subdomain: spec.subdomain } : {}),
      ports: spec.ports ?? [],
      ready: false,
      netns: `${this.base}-p${k}`,
      hostIP: node.ip,
      veth: `vp${k}`,
      proc: undefined,
      whenReady,
      offset,
      removed: false,
      resolveReady,
      rejectReady,
    };
    this.#pods.set(key, pod);
    try {
      const search =
        `${spec.namespace}.svc.${CLUSTER_DOMAIN} svc.${CLUSTER_DOMAIN} ${CLUSTER_DOMAIN}`;
      const fqdn = spec.hostname && spec.subdomain
        ? `${spec.hostname}.${spec.subdomain}.${spec.namespace}.svc.${CLUSTER_DOMAIN}\t${spec.hostname}`
        : spec.hostname ?? spec.name;
      await this.#etc(pod.netns, {
        "resolv.conf": spec.dnsPolicy === "Default"
          ? `nameserver ${OUTSIDE_DNS_IP}\n`
          : `search ${search}\nnameserver ${CLUSTER_DNS_IP}\noptions ndots:5\n`,
        "hosts": `# Kubernetes-managed hosts file (simulated).\n127.0.0.1\tlocalhost\n` +
          `::1\tlocalhost ip6-localhost ip6-loopback\n${ip}\t${fqdn}\n`,
      });
      await this.#env.netns(pod.netns);
      await ipBatch(node.netns, [
        `link add ${pod.veth} type veth peer name eth0 netns ${pod.netns}`,
        `addr add ${node.gateway}/32 dev ${pod.veth}`,
        `link set ${pod.veth} up`,
        `route add ${ip}/32 dev ${pod.veth}`,
      ]);
      await ipBatch(pod.netns, [
        `addr add ${ip}/32 dev eth0`,
        `link set eth0 up`,
        `route add ${node.gateway} dev eth0 scope link`,
        `route add default via ${node.gateway} dev eth0`,
      ]);
      await must([
        "sysctl",
        "-qwe", // -e: a kernel without IPv6 has no ipv6 keys, and its pods no ::1
        "net.ipv4.ip_unprivileged_port_start=0",
        "net.ipv4.ping_group_range=0 2147483647",
        // localhost is ::1 too, as a runtime's pod has it: port-forward falls back to it.
        "net.ipv6.conf.lo.disable_ipv6=0",
      ], { ns: pod.netns });
    } catch (error) {
      this.#pods.delete(key);
      throw new Error(`Cannot add pod "${key}": ${(error as Error).message}`, { cause: error });
    }
    if (spec.run) {
      const r = typeof spec.run === "function" ? spec.run(pod) : spec.run;
      pod.proc = this.spawn(pod, r.cmd, r);
    }
    this.#emit({ type: "ADDED", kind: "Pod", namespace: pod.namespace, name: pod.name });
    await this.#sync();
    if (!manualReady && !spec.externalReadiness) {
      const becomeReady = async () => {
        if (spec.readiness) {
          await waitListening(pod.netns, {
            port: spec.readiness.port,
            protocol: spec.readiness.protocol ?? "TCP",
            timeoutMs: spec.readiness.timeoutMs ?? 15_000,
            proc: pod.proc,
            gone: () => pod.removed || this.#closed,
          });
        }
        if (pod.removed) throw new Error(`Pod "${key}" was removed before it was ready`);
        pod.ready = true;
        this.#emit({ type: "MODIFIED", kind: "Pod", namespace: pod.namespace, name: pod.name });
        await this.#sync();
      };
      becomeReady().then(
        resolveReady,
        (e) =>
          rejectReady(new Error(`Pod "${key}" did not become ready: ${e.message}`, { cause: e })),
      );
    }
    return pod;
  }

  /**
   * Stops a pod's processes and removes its namespace; endpoints, DNAT and DNS follow.
   *
   * @param namespace the pod's namespace
   * @param name the pod's name
   * @throws {Error} when there is no such pod
   */
  async removePod(namespace: string, name: string): Promise<void> {
    const key = `${namespace}/${name}`;
    const pod = this.#pods.get(key);
    if (!pod) throw new Error(`Cannot remove pod "${key}": no such pod`);
    pod.removed = true;
    pod.ready = false;
    pod.rejectReady(new Error(`Pod "${key}" was removed before it was ready`));
    this.#pods.delete(key);
    await this.#sync(); // out of the endpoints first, as a terminating pod
    await Promise.all([...this.#procs.get(pod.netns) ?? []].map((proc) => proc.stop()));
    this.#procs.delete(pod.netns);
    await run(["ip", "netns", "del", pod.netns]); // the veth and the node's route go with it
    await Deno.remove(`/etc/netns/${pod.netns}`, { recursive: true }).catch(() => {});
    this.#emit({ type: "DELETED", kind: "Pod", namespace, name });
  }

  /**
   * Says whether a pod is ready (for a pod made with `externalReadiness`);
   * endpoints, DNAT and DNS follow before it resolves. The first `true`
   * resolves the pod's `whenReady`.
   *
   * @param namespace the pod's namespace
   * @param name the pod's name
   * @param ready whether it is
   * @throws {Error} when there is no such pod
   */
  async setReady(namespace: string, name: string, ready: boolean): Promise<void> {
    const key = `${namespace}/${name}`;
    const pod = this.#pods.get(key);
    if (!pod) throw new Error(`Cannot set readiness of pod "${key}": no such pod`);
    if (pod.ready !== ready) {
      pod.ready = ready;
      this.#emit({ type: "MODIFIED", kind: "Pod", namespace, name });
    }
    await this.#sync();
    if (ready && !pod.removed) pod.resolveReady();
  }

  /**
   * The pod `namespace/name`.
   *
   * @param namespace the pod's namespace
   * @param name the pod's name
   * @returns the pod, or `undefined`
   */
  pod(namespace: string, name: string): Pod | undefined {
    return this.#pods.get(`${namespace}/${name}`);
  }

  /** Every pod, in order of creation. */
  pods(): Pod[] {
    return [...this.#pods.values()];
  }

  /**
   * Adds a service: allocates its ClusterIP (unless given or `None`), then
   * its endpoints, DNAT rules and DNS records follow its selector.
   *
   * @param spec namespace, name, ClusterIP, ports, selector or manual endpoints
   * @returns the stored service, with its ClusterIP
   * @throws {Error} when the name or ClusterIP is taken, or the ClusterIP is outside the service CIDR
   */
  async addService(spec: ServiceSpec): Promise<ServiceInfo> {
    const key = `${spec.namespace}/${spec.name}`;
    if (this.#services.has(key)) throw new Error(`Cannot add service "${key}": it exists`);
    const used = new Set(
      [...this.#services.values()].map((s) => s.clusterIP).concat([
        KUBERNETES_SERVICE_IP,
        CLUSTER_DNS_IP,
      ]),
    );
    let clusterIP = spec.clusterIP;
    if (clusterIP === undefined) {
      const got = allocate(SERVICE_CIDR, {
        range: [11, 2 ** 14 - 2],
        used,
        last: this.#lastClusterIp,
      });
      this.#lastClusterIp = got.offset;
      clusterIP = got.ip;
    } else if (clusterIP !== "None") {
      if (!inCidr(clusterIP, SERVICE_CIDR)) {
        throw new Error(
          `Cannot add service "${key}": ClusterIP "${clusterIP}" is outside "${SERVICE_CIDR}"`,
        );
      }
      const taken = [...this.#services.values()].find((s) => s.clusterIP === clusterIP);
      if (taken) {
        throw new Error(`Cannot add service "${key}": ClusterIP "${clusterIP}" is taken`);
      }
    }
    const ports = spec.ports.map(normalizePort);
    if (ports.length > 1 && ports.some((p) => !p.name)) {
      throw new Error(
        `Cannot add service "${key}": every port needs a name when there are several`,
      );
    }
    const svc: ServiceInfo = {
      namespace: spec.namespace,
      name: spec.name,
      clusterIP,
      ports,
      ...(spec.selector ? { selector: { ...spec.selector } } : {}),
      ...(spec.selector ? {} : { manualEndpoints: [...spec.endpoints ?? []] }),
    };
    this.#services.set(key, svc);
    this.#emit({ type: "ADDED", kind: "Service", namespace: spec.namespace, name: spec.name });
    await this.#sync();
    return svc;
  }

  /**
   * Removes a service, its DNAT rules and its DNS records.
   *
   * @param namespace the service's namespace
   * @param name the service's name
   * @throws {Error} when there is no such service
   */
  async removeService(namespace: string, name: string): Promise<void> {
    const key = `${namespace}/${name}`;
    if (!this.#services.delete(key)) {
      throw new Error(`Cannot remove service "${key}": no such service`);
    }
    this.#emit({ type: "DELETED", kind: "Service", namespace, name });
    await this.#sync();
  }

  /**
   * Sets the addresses behind a service without a selector (as one would
   * write its Endpoints object).
   *
   * @param namespace the service's namespace
   * @param name the service's name
   * @param ips the addresses
   * @throws {Error} when there is no such service or it has a selector
   */
  async setEndpoints(namespace: string, name: string, ips: string[]): Promise<void> {
    const svc = this.#services.get(`${namespace}/${name}`);
    if (!svc || svc.selector) {
      throw new Error(
        `Cannot set endpoints of "${namespace}/${name}": no service without selector`,
      );
    }
    svc.manualEndpoints = [...ips];
    await this.#sync();
  }

  /**
   * The service `namespace/name`.
   *
   * @param namespace the service's namespace
   * @param name the service's name
   * @returns the service, or `undefined`
   */
  service(namespace: string, name: string): ServiceInfo | undefined {
    return this.#services.get(`${namespace}/${name}`);
  }

  /** Every service, in order of creation. */
  services(): ServiceInfo[] {
    return [...this.#services.values()];
  }

  /**
   * The ready addresses behind a service, as the endpoints controller sees them now.
   *
   * @param namespace the service's namespace
   * @param name the service's name
   * @returns the addresses (empty for an unknown service)
   */
  endpoints(namespace: string, name: string): EndpointAddress[] {
    const svc = this.#services.get(`${namespace}/${name}`);
    return svc ? computeEndpoints(svc, this.#pods.values()) : [];
  }

  /**
   * Adds another workstation on the LAN (a second developer's machine): its
   * own namespace `<base>-<name>` with `ip`, the outside DNS server in its
   * resolv.conf, and one mount namespace for its commands, as the first has.
   * Everything is removed on cleanup.
   *
   * @param name a short name (`ws2`)
   * @param ip its LAN address, in 198.19.200.0/24 and not taken
   * @returns the namespace's name
   */
  async addWorkstation(name: string, ip: string): Promise<string> {
    const ns = `${this.base}-${name}`;
    await this.#etc(ns, { "resolv.conf": `nameserver ${OUTSIDE_DNS_IP}\n` });
    await this.#env.netns(ns);
    await this.#env.shareMounts(ns);
    await this.#lanPort(name, ns, [`${ip}/24`]);
    return ns;
  }

  /**
   * Gives the workstation a /32 route to `ip` through the node that hosts it
   * (node 1 for a ClusterIP or another address): the one way into the cluster
   * a test may open, e.g. to the manager pod or the API server.
   *
   * @param ip the address
   * @returns the node used as next hop
   */
  async exposeToWorkstation(ip: string): Promise<Node> {
    const node = this.#nodeFor(ip);
    await must(["ip", "route", "replace", `${ip}/32`, "via", node.ip], { ns: this.ws });
    return node;
  }

  /**
   * Removes a route made by {@linkcode ClusterNet.exposeToWorkstation}.
   *
   * @param ip the address
   */
  async unexposeFromWorkstation(ip: string): Promise<void> {
    await run(["ip", "route", "del", `${ip}/32`], { ns: this.ws });
  }

  #nodeFor(ip: string): Node {
    const pod = [...this.#pods.values()].find((p) => p.ip === ip);
    const byPod = pod && this.#nodes.find((n) => n.name === pod.node);
    return byPod ?? this.#nodes.find((n) => inCidr(ip, n.podCIDR)) ?? this.#nodes[0]!;
  }

  /**
   * The command prefix that runs a program as `user` (`setpriv` for nobody).
   *
   * @param user who
   * @returns the prefix (empty for root)
   */
  static userPrefix(user: RunUser = "root"): string[] {
    return user === "nobody" ? [...NOBODY] : [];
  }

  #procs = new Map<string, Proc[]>();

  /**
   * Starts a long-running process in a pod (a container, as the kubelet
   * starts each); it is stopped with the pod or on cleanup.
   *
   * @param pod the pod, or any namespace name of this cluster
   * @param cmd the program and its arguments
   * @param options user, environment
   * @returns the process
   */
  spawn(
    pod: Pod | string,
    cmd: string[],
    options: { user?: RunUser; env?: Record<string, string> } = {},
  ): Proc {
    const ns = typeof pod === "string" ? pod : pod.netns;
    const proc = this.#env.spawn([...ClusterNet.userPrefix(options.user), ...cmd], {
      ns,
      ...(options.env ? { env: options.env } : {}),
    });
    const list = this.#procs.get(ns) ?? [];
    list.push(proc);
    this.#procs.set(ns, list);
    // An ended process needs no stopping: the list stays bounded across container restarts.
    proc.child.status.then(() => {
      const now = this.#procs.get(ns);
      const i = now?.indexOf(proc) ?? -1;
      if (i >= 0) now!.splice(i, 1);
    }, () => {});
    return proc;
  }

  /**
   * Runs a command to completion in a pod (or any namespace of this cluster).
   *
   * @param pod the pod, or a namespace name (e.g. `c.ws`)
   * @param cmd the program and its arguments
   * @param options user, environment, stdin
   * @returns exit code, stdout, stderr
   */
  exec(
    pod: Pod | string,
    cmd: string[],
    options: { user?: RunUser; env?: Record<string, string>; stdin?: string } = {},
  ): Promise<Output> {
    const ns = typeof pod === "string" ? pod : pod.netns;
    return run([...ClusterNet.userPrefix(options.user), ...cmd], {
      ns,
      ...(options.env ? { env: options.env } : {}),
      ...(options.stdin !== undefined ? { stdin: options.stdin } : {}),
    });
  }

  /**
   * Listens for changes (pods, services, endpoints, nodes).
   *
   * @param fn called for each change, after the data plane reflects it for endpoints
   * @returns a function that stops listening
   */
  watch(fn: (e: ClusterEvent) => void): () => void {
    this.#watchers.add(fn);
    return () => this.#watchers.delete(fn);
  }

  /**
   * The kube-proxy table as the kernel holds it on a node (`nft list table`).
   *
   * @param node the node's name; default `node1`
   * @returns the listing
   */
  nftRuleset(node = "node1"): Promise<string> {
    const n = this.#nodes.find((x) => x.name === node);
    if (!n) throw new Error(`No node "${node}"`);
    return must(["nft", "list", "table", "ip", NFT_TABLE], { ns: n.netns });
  }

  /** The cluster DNS's dnsmasq process (replaced when its config changes). */
  get dnsProc(): Proc | undefined {
    return this.#dnsProc;
  }

  /** Stops everything and removes every namespace and file; safe to call twice. */
  async cleanup(): Promise<void> {
    this.#closed = true;
    await this.#syncing?.catch(() => {});
    await this.#env.cleanup();
    // `/etc/netns` itself only when empty: another test may be using it (see #etc).
    await Deno.remove("/etc/netns").catch(() => {});
  }

  #emit(e: ClusterEvent): void {
    for (const fn of this.#watchers) {
      try {
        fn(e);
      } catch (error) {
        console.error(`sim: watcher failed: ${error}`);
      }
    }
  }

  /** Writes files to `/etc/netns/<ns>/` (bind-mounted over `/etc/` by `ip netns exec`). */
  async #etc(ns: string, files: Record<string, string>): Promise<void> {
    const dir = `/etc/netns/${ns}`;
    for (let attempt = 1;; attempt++) {
      try {
        await Deno.mkdir(dir, { recursive: true });
        break;
      } catch (error) {
        // A parallel cleanup may remove an empty /etc/netns between the two mkdirs.
        if (!(error instanceof Deno.errors.NotFound) || attempt === 3) throw error;
      }
    }
    this.#env.defer(() => Deno.remove(dir, { recursive: true }).catch(() => {}));
    for (const [name, text] of Object.entries(files)) {
      await Deno.writeTextFile(`${dir}/${name}`, text, { mode: 0o644 });
    }
  }

  /** Plugs namespace `ns` into the LAN bridge as `eth0` with `addrs`. */
  async #lanPort(port: string, ns: string, addrs: string[]): Promise<void> {
    await ipBatch(this.lan, [
      `link add ${port} type veth peer name ${LAN_IF} netns ${ns}`,
      `link set ${port} master br0`,
      `link set ${port} up`,
    ]);
    await ipBatch(ns, [
      ...addrs.map((a) => `addr add ${a} dev ${LAN_IF}`),
      `link set ${LAN_IF} up`,
    ]);
  }

  /**
   * Brings the data plane in step with the objects. Concurrent callers share
   * one pass; a change made during a pass causes another.
   */
  #sync(): Promise<void> {
    this.#dirty = true;
    if (!this.#syncing) {
      this.#syncing = (async () => {
        try {
          while (this.#dirty && !this.#closed) {
            this.#dirty = false;
            await this.#apply();
          }
        } finally {
          this.#syncing = undefined;
        }
      })();
    }
    return this.#syncing;
  }

  async #apply(): Promise<void> {
    const pods = [...this.#pods.values()];
    const states: ServiceState[] = [...this.#services.values()]
      .sort((a, b) => `${a.namespace}/${a.name}`.localeCompare(`${b.namespace}/${b.name}`))
      .map((svc) => ({ svc, endpoints: computeEndpoints(svc, pods) }));

    const rules = kubeProxyRuleset(states, {
      table: NFT_TABLE,
      podCidr: POD_CIDR,
      lanIf: LAN_IF,
    });
    if (rules !== this.#rules) {
      await Promise.all(
        this.#nodes.map((n) => must(["nft", "-f", "-"], { ns: n.netns, stdin: rules })),
      );
      this.#rules = rules;
    }

    await this.#applyDns(states, pods);

    const seen = new Set<string>();
    for (const { svc, endpoints } of states) {
      const key = `${svc.namespace}/${svc.name}`;
      seen.add(key);
      const text = JSON.stringify(endpoints);
      const before = this.#lastEndpoints.get(key);
      if (before !== text) {
        this.#lastEndpoints.set(key, text);
        this.#emit({
          type: before === undefined ? "ADDED" : "MODIFIED",
          kind: "Endpoints",
          namespace: svc.namespace,
          name: svc.name,
        });
      }
    }
    for (const key of [...this.#lastEndpoints.keys()]) {
      if (seen.has(key)) continue;
      this.#lastEndpoints.delete(key);
      const [namespace, name] = key.split("/") as [string, string];
      this.#emit({ type: "DELETED", kind: "Endpoints", namespace, name });
    }
  }

  async #applyDns(states: ServiceState[], pods: PodState[]): Promise<void> {
    const dnsPod = this.#dnsPod;
    if (!dnsPod) return;
    const hostsDir = `${this.dir}/kube-dns/hosts.d`;
    await Deno.mkdir(hostsDir, { recursive: true });
    const conf = dnsmasqConfig(states, {
      domain: CLUSTER_DOMAIN,
      podCidr: POD_CIDR,
      serviceCidr: SERVICE_CIDR,
      hostsDir,
      ttl: DNS_TTL,
      ...(this.#options.dnsUpstream === false ? {} : { upstream: OUTSIDE_DNS_IP }),
    });
    const hosts = dnsmasqHosts(states, { pods, domain: CLUSTER_DOMAIN, generation: 0 });
    const confChanged = conf !== this.#dnsConf;
    const hostsChanged = hosts !== this.#dnsHosts;
    if (!confChanged && !hostsChanged && this.#dnsProc) return;
    if (hostsChanged || !this.#dnsProc) {
      this.#dnsGen++;
      // Written beside the directory and renamed in: dnsmasq's inotify sees one complete file.
      const tmp = `${this.dir}/kube-dns/hosts.tmp`;
      await Deno.writeTextFile(
        tmp,
        dnsmasqHosts(states, { pods, domain: CLUSTER_DOMAIN, generation: this.#dnsGen }),
      );
      await Deno.rename(tmp, `${hostsDir}/cluster`);
      this.#dnsHosts = hosts;
    }
    if (confChanged || !this.#dnsProc) {
      const confPath = `${this.dir}/kube-dns/dnsmasq.conf`;
      await Deno.writeTextFile(confPath, conf);
      this.#dnsConf = conf;
      // SRV records live in the config: a change restarts the "container".
      await this.#dnsProc?.stop();
      this.#dnsProc = this.spawn(dnsPod, [
        "dnsmasq",
        "--keep-in-foreground",
        `--conf-file=${confPath}`,
        "--user=root",
        "--pid-file=",
        "--log-facility=-",
        ...(this.#options.dnsLogQueries ? ["--log-queries"] : []),
      ]);
    }
    await this.#waitDnsGeneration(dnsPod, this.#dnsGen);
    if (!dnsPod.ready) {
      dnsPod.ready = true;
      this.#dirty = true; // now an endpoint of kube-dns: another pass adds it
    }
  }

  /** Waits until dnsmasq answers the newest generation (it has read the newest files). */
  async #waitDnsGeneration(pod: PodState, gen: number): Promise<void> {
    const want = generationIp(gen);
    const node = this.#nodes.find((n) => n.name === pod.node)!;
    const deadline = Date.now() + 10_000;
    let last: Output | undefined;
    while (Date.now() < deadline) {
      last = await run(
        ["dig", "+short", "+time=1", "+tries=1", `@${pod.ip}`, GENERATION_NAME],
        { ns: node.netns },
      );
      if (last.stdout.trim() === want) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error(
      `Cluster DNS did not load update ${gen}: dig said ${
        JSON.stringify(last?.stdout.trim())
      }, dnsmasq: ${JSON.stringify(this.#dnsProc?.errLines.slice(-10))}`,
    );
  }
}

/** Runs `ip -batch -` in namespace `ns` (one process for many commands). */
async function ipBatch(ns: string, commands: string[]): Promise<void> {
  if (commands.length === 0) return;
  await must(["ip", "-n", ns, "-batch", "-"], { stdin: commands.join("\n") + "\n" });
}

/**
 * Waits until something in namespace `ns` listens on `port` (`ss`), like a
 * kubelet's readiness probe.
 */
export async function waitListening(
  ns: string,
  probe: {
    port: number;
    protocol: Protocol;
    timeoutMs?: number;
    /** The process that should listen: its end fails the wait at once. */
    proc?: Proc | undefined;
    /** Whether to give up (the pod was removed). */
    gone?: () => boolean;
  },
): Promise<void> {
  const { port, protocol, proc } = probe;
  const timeoutMs = probe.timeoutMs ?? 10_000;
  const deadline = Date.now() + timeoutMs;
  const flag = protocol === "UDP" ? "-Hlnu" : "-Hlnt";
  let ended = false;
  proc?.child.status.then(() => ended = true);
  while (Date.now() < deadline) {
    const out = await run(["ss", "-N", ns, flag]);
    const listening = out.stdout.split("\n").some((line) => {
      const local = line.trim().split(/\s+/)[3];
      return local !== undefined && local.endsWith(`:${port}`);
    });
    if (listening) return;
    if (probe.gone?.()) throw new Error(`the pod is gone`);
    if (ended) {
      throw new Error(
        `the process ended before listening on ${protocol} ${port}: ${
          JSON.stringify(proc?.errLines.slice(-10))
        }`,
      );
    }
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error(
    `nothing listens on ${protocol} ${port} in "${ns}" after ${timeoutMs} ms: ${
      JSON.stringify(proc?.errLines.slice(-10) ?? [])
    }`,
  );
}
