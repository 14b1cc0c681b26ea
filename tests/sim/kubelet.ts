/**
 * The controllers of the simulated cluster: what the scheduler, the kubelet,
 * the workload controllers, the endpoints controller and the node lifecycle
 * controller do in a real one, between the fake API server's {@linkcode Store}
 * and the {@linkcode ClusterNet} that carries the packets. One loop runs them
 * in turn whenever an object they follow changes.
 *
 * - **Workloads → Pods.** Deployments own ReplicaSets and roll a changed
 *   template out (`_deployment.ts`: RollingUpdate by default, Recreate);
 *   ReplicaSets own pods `<replicaset>-<random>` (`_replicaset.ts`);
 *   StatefulSets own pods `<name>-0…` made in order (`_statefulset.ts`).
 * - **Scheduling.** A pod without `spec.nodeName` goes to the node whose labels
 *   match its `nodeSelector` and that runs the fewest pods.
 * - **Pods → namespaces (the kubelet).** Each pod given to a node gets a
 *   worker (`_pod.ts`): its volumes (`_volumes.ts`: emptyDir, configMap,
 *   secret, downwardAPI, projected with a service-account token bound to
 *   the pod and rotated), its network namespace, then its init containers
 *   one by one and its app containers, each its own process under the
 *   container runtime (`_runtime.ts`: its own root and mounts, user and
 *   capabilities, the pod's network namespace) with the environment the
 *   kubelet makes (`_container_env.ts`). The machine has no images, so a
 *   container runs its `command` from the machine's programs; `/vif` (the
 *   command, or the entrypoint of an image of vif, `ghcr.io/vif-dev/vif:*`,
 *   given no command) runs this repository's `main.ts` with Deno instead.
 * - **Probes and restarts** (`_container.ts`, `_probe.ts`), as the kubelet
 *   runs them, per container; the pod is Ready while every app container
 *   is, and its status (`_pod_status.ts`) shows each container's
 *   `restartCount`, `state` and `lastState`. What a real kubelet would record
 *   as Events is kept in {@linkcode Kubelet.events} and logged.
 * - **Services → kube-proxy and DNS** (`_services.ts`): each Service is given
 *   to ClusterNet, and ClusterNet's endpoints are written back as Endpoints.
 * - **Nodes.** Each ClusterNet node is a Node object with `spec.podCIDRs`
 *   and the machine's CPUs and memory as its capacity.
 *
 * @module
 */

import { DENO, ROOT } from "../e2e/_env.ts";
import { V8_FLAGS } from "../../mod/cli/daemon_client.ts";
import type {
  IssuedToken,
  KubeObject,
  Store,
  StoreEvent,
  TokenRequestSpec,
} from "./apiserver/mod.ts";
import type { ClusterEvent, ClusterNet, Node, Pod } from "./cluster_net.ts";
import type { ContainerEvent } from "./_container.ts";
import { ContainerLog } from "./_container_log.ts";
import type { Allocatable } from "./_downward.ts";
import type { PodSpecObj } from "./_pod_spec.ts";
import { PodWorker, type RunningContainer, type VifRuntime } from "./_pod.ts";
import { reconcileDeployments } from "./_deployment.ts";
import { reconcileReplicaSets } from "./_replicaset.ts";
import { reconcileStatefulSets } from "./_statefulset.ts";
import { ServiceSync } from "./_services.ts";
import { type Obj, rfc3339, sameJson } from "./_owners.ts";

export { VIF_IMAGE, type VifRuntime } from "./_pod.ts";

/** Options of {@linkcode Kubelet}. */
export interface KubeletOptions {
  store: Store;
  net: ClusterNet;
  /** A private directory (0700) for pod volumes and scripts. */
  dir: string;
  /**
   * Issues a token for a service account (a TokenRequest): the API server
   * must accept it for its audiences while it lives and the pod exists.
   */
  requestToken(spec: TokenRequestSpec): IssuedToken;
  /** How to run vif as `uid`; called once per uid. */
  vifRuntime(uid: number): Promise<VifRuntime>;
  /** Where to say what happens. */
  log(line: string): void;
}

/** Resources the controllers react to. */
const WATCHED = new Set([
  "deployments",
  "replicasets",
  "statefulsets",
  "pods",
  "services",
  "serviceaccounts",
]);

/**
 * An Event the simulated kubelet recorded about a pod (the cluster has no
 * Event objects): a probe that failed, a container killed or backing off.
 * Repeats of a pod's latest event are counted in it, as the real event
 * recorder aggregates them.
 */
export interface PodEvent {
  namespace: string;
  /** The pod's name. */
  pod: string;
  type: "Normal" | "Warning";
  /** `Unhealthy`, `Killing`, `BackOff`, `Started`, `Failed`, `FailedMount`, … */
  reason: string;
  /** `Liveness probe failed: …` */
  message: string;
  /** How many times in a row. */
  count: number;
  firstTimestamp: string;
  lastTimestamp: string;
}

/** The one container of a pod ClusterNet runs by itself (the cluster DNS). */
const ADOPTED_CONTAINER = "dnsmasq";

/** Events kept by {@linkcode Kubelet.events}, newest last. */
const MAX_EVENTS = 1000;

interface Running {
  uid: string;
  /** The worker of a pod this kubelet runs. */
  worker?: PodWorker;
  /** A pod ClusterNet runs by itself (the cluster DNS). */
  adopted?: Pod;
  /** The log of an adopted pod's process. */
  adoptedLog?: ContainerLog;
  stopped: boolean;
  startup: Promise<void>;
}

function specOf(o: KubeObject): PodSpecObj {
  return (o as Obj).spec as PodSpecObj;
}

function keyOf(o: KubeObject): string {
  return `${o.metadata.namespace ?? ""}/${o.metadata.name}`;
}

/** The machine's resources, as every node's capacity. */
function machineAllocatable(): Allocatable {
  return {
    cpu: String(navigator.hardwareConcurrency || 1),
    memory: `${Math.floor(Deno.systemMemoryInfo().total / 1024)}Ki`,
    "ephemeral-storage": "100Gi",
  };
}

/**
 * A running pod as {@linkcode Kubelet.pod} returns it: ClusterNet's pod (its
 * namespace, address, readiness), with `proc` the process of its first app
 * container now (the newest, after restarts).
 */
class RunningPod implements Pod {
  #pod: Pod;
  #worker: PodWorker | undefined;

  constructor(pod: Pod, worker: PodWorker | undefined) {
    this.#pod = pod;
    this.#worker = worker;
  }
  get namespace() {
    return this.#pod.namespace;
  }
  get name() {
    return this.#pod.name;
  }
  get ip() {
    return this.#pod.ip;
  }
  get node() {
    return this.#pod.node;
  }
  get labels() {
    return this.#pod.labels;
  }
  get hostname() {
    return this.#pod.hostname;
  }
  get subdomain() {
    return this.#pod.subdomain;
  }
  get ports() {
    return this.#pod.ports;
  }
  get ready() {
    return this.#pod.ready;
  }
  get netns() {
    return this.#pod.netns;
  }
  get hostIP() {
    return this.#pod.hostIP;
  }
  get veth() {
    return this.#pod.veth;
  }
  get whenReady() {
    return this.#pod.whenReady;
  }
  get proc() {
    return this.#worker ? this.#worker.container()?.proc : this.#pod.proc;
  }
}

/**
 * The controllers. Start with {@linkcode Kubelet.start}; stop with {@linkcode Kubelet.close}.
 */
export class Kubelet {
  #o: KubeletOptions;
  #running = new Map<string, Running>();
  #services: ServiceSync;
  #dirty = false;
  #loop: Promise<void> | undefined;
  #closed = false;
  #unwatch: Array<() => void> = [];
  #runtimes = new Map<number, Promise<VifRuntime>>();
  #events: PodEvent[] = [];
  #allocatable = machineAllocatable();
  #wakeTimer: ReturnType<typeof setTimeout> | undefined;
  #wakeAt = Infinity;

  /**
   * @param options the store, the network, where pods live, how tokens and vif are had
   */
  constructor(options: KubeletOptions) {
    this.#o = options;
    this.#services = new ServiceSync(options.store, options.net, options.log);
  }

  /**
   * Publishes the nodes and ClusterNet's own pods, then follows the store.
   */
  start(): void {
    for (const node of this.#o.net.nodes) this.publishNode(node);
    for (const pod of this.#o.net.pods()) this.#adopt(pod);
    // ClusterNet's own services (the cluster DNS) got their endpoints before anyone listened.
    for (const svc of this.#o.net.services()) {
      this.#services.writeEndpoints(svc.namespace, svc.name);
    }
    this.#unwatch.push(this.#o.store.watch((e: StoreEvent) => this.#onStore(e)));
    this.#unwatch.push(this.#o.net.watch((e: ClusterEvent) => {
      if (e.kind === "Endpoints") {
        queueMicrotask(() => {
          if (!this.#closed) this.#services.writeEndpoints(e.namespace!, e.name);
        });
      }
    }));
    this.#kick();
  }

  #onStore(e: StoreEvent): void {
    const resource = e.resource.resource;
    if (WATCHED.has(resource)) this.#kick();
    const ns = e.object.metadata.namespace;
    if (resource === "configmaps" || resource === "secrets") {
      for (const [key, r] of this.#running) {
        if (key.startsWith(`${ns}/`)) queueMicrotask(() => r.worker?.refresh());
      }
    } else if (resource === "pods" && e.type === "MODIFIED" && e.oldObject) {
      const meta = (o: KubeObject) => [o.metadata.labels, o.metadata.annotations];
      if (!sameJson(meta(e.object), meta(e.oldObject))) {
        const r = this.#running.get(keyOf(e.object));
        if (r && r.uid === e.object.metadata.uid) queueMicrotask(() => r.worker?.refresh());
      }
    }
  }

  /** Resolves when nothing is left to do (the store and the network agree). */
  async settled(): Promise<void> {
    while (this.#loop) await this.#loop;
    await Promise.all([...this.#running.values()].map((r) => r.worker?.settled ?? r.startup));
  }

  /**
   * The network namespace of a running pod, with its first app container's process.
   *
   * @param namespace the pod's namespace
   * @param name the pod's name
   * @returns the pod, or undefined
   */
  pod(namespace: string, name: string): Pod | undefined {
    const r = this.#running.get(`${namespace}/${name}`);
    const pod = r?.worker?.pod ?? r?.adopted;
    return pod ? new RunningPod(pod, r?.worker) : undefined;
  }

  /**
   * A container of a running pod: its process now and what it was started with.
   *
   * @param namespace the pod's namespace
   * @param name the pod's name
   * @param container the container's name; default the first app container
   * @returns it, or undefined when there is no such pod or container
   */
  container(namespace: string, name: string, container?: string): RunningContainer | undefined {
    return this.#running.get(`${namespace}/${name}`)?.worker?.container(container);
  }

  /**
   * The log of one run of a container, as the container runtime keeps it
   * for `pods/log`: the run now or the one before it.
   *
   * @param namespace the pod's namespace
   * @param name the pod's name
   * @param container the container's name
   * @param containerID the run's id, from the pod's `containerStatuses[]`
   * @returns the log, or undefined when this node has no such pod, container or run
   */
  containerLog(
    namespace: string,
    name: string,
    container: string,
    containerID: string,
  ): ContainerLog | undefined {
    const r = this.#running.get(`${namespace}/${name}`);
    if (r?.worker) return r.worker.containerLog(container, containerID);
    return containerID === `sim://${r?.uid}-0` && container === ADOPTED_CONTAINER
      ? r?.adoptedLog
      : undefined;
  }

  /**
   * The tokens a running pod's projected volumes hold now, by `<volume>/<path>`.
   *
   * @param namespace the pod's namespace
   * @param name the pod's name
   * @returns the tokens (empty for no such pod)
   */
  projectedTokens(
    namespace: string,
    name: string,
  ): Map<string, { token: string; expiresAt: number }> {
    const worker = this.#running.get(`${namespace}/${name}`)?.worker;
    return new Map(worker ? worker.volumes.tokens : []);
  }

  /**
   * The Events recorded about pods (the last 1000), oldest first.
   *
   * @param namespace only this namespace's
   * @param pod only this pod's
   * @returns copies of the events
   */
  events(namespace?: string, pod?: string): PodEvent[] {
    return this.#events.filter((e) =>
      (namespace === undefined || e.namespace === namespace) && (pod === undefined || e.pod === pod)
    ).map((e) => ({ ...e }));
  }

  #event(p: KubeObject, e: ContainerEvent): void {
    const namespace = p.metadata.namespace!, pod = p.metadata.name!;
    const now = rfc3339();
    let latest: PodEvent | undefined;
    for (let i = this.#events.length - 1; i >= 0 && !latest; i--) {
      const x = this.#events[i]!;
      if (x.namespace === namespace && x.pod === pod) latest = x;
    }
    if (latest && latest.reason === e.reason && latest.message === e.message) {
      latest.count++;
      latest.lastTimestamp = now;
      return;
    }
    this.#events.push({
      namespace,
      pod,
      ...e,
      count: 1,
      firstTimestamp: now,
      lastTimestamp: now,
    });
    if (this.#events.length > MAX_EVENTS) this.#events.splice(0, this.#events.length - MAX_EVENTS);
    this.#o.log(`kubelet: pod ${namespace}/${pod}: ${e.type} ${e.reason}: ${e.message}`);
  }

  /**
   * Writes the Node object for a ClusterNet node (the node lifecycle controller).
   *
   * @param node the node
   */
  publishNode(node: Node): void {
    const store = this.#o.store;
    const resources = { ...this.#allocatable, pods: "110" };
    const object: Obj = {
      apiVersion: "v1",
      kind: "Node",
      metadata: {
        name: node.name,
        labels: {
          "kubernetes.io/hostname": node.name,
          "kubernetes.io/os": "linux",
          "kubernetes.io/arch": "amd64",
        },
      },
      spec: { podCIDR: node.podCIDR, podCIDRs: [node.podCIDR] },
      status: {
        capacity: resources,
        allocatable: resources,
        addresses: [
          { type: "InternalIP", address: node.ip },
          { type: "Hostname", address: node.name },
        ],
        conditions: [{
          type: "Ready",
          status: "True",
          reason: "KubeletReady",
          message: "kubelet is posting ready status",
          lastHeartbeatTime: rfc3339(),
          lastTransitionTime: rfc3339(),
        }],
        nodeInfo: {
          kubeletVersion: "v1.33.1",
          operatingSystem: "linux",
          architecture: "amd64",
          containerRuntimeVersion: "sim://1",
          kernelVersion: Deno.osRelease(),
          osImage: "vif simulated node",
        },
      },
    };
    if (!store.get({ resource: "nodes", name: node.name })) store.create(object);
  }

  /** Stops following; leaves pods to the ClusterNet's cleanup. */
  async close(): Promise<void> {
    this.#closed = true;
    clearTimeout(this.#wakeTimer);
    for (const u of this.#unwatch) u();
    // No more probes nor restarts: the processes ClusterNet's cleanup stops stay stopped.
    for (const r of this.#running.values()) r.worker?.stop();
    await this.#loop?.catch(() => {});
    for (const r of this.#running.values()) r.worker?.stop(); // started meanwhile
  }

  #kick(): void {
    this.#dirty = true;
    if (this.#loop || this.#closed) return;
    let started!: () => void;
    const gate = new Promise<void>((r) => started = r);
    this.#loop = (async () => {
      // Never from inside the store's callback: it writes to the store.
      await gate;
      while (this.#dirty && !this.#closed) {
        this.#dirty = false;
        try {
          await this.#reconcile();
        } catch (error) {
          this.#o.log(`kubelet: ${(error as Error)?.stack ?? error}`);
        }
      }
      this.#loop = undefined;
    })();
    queueMicrotask(started);
  }

  /** Runs the loop again at `at` (ms since the epoch), for a deadline nothing else would notice. */
  #wakeUpAt(at: number | undefined): void {
    if (at === undefined || this.#closed || at >= this.#wakeAt) return;
    clearTimeout(this.#wakeTimer);
    this.#wakeAt = at;
    this.#wakeTimer = setTimeout(() => {
      this.#wakeAt = Infinity;
      this.#kick();
    }, Math.max(0, at - Date.now()) + 50);
  }

  async #reconcile(): Promise<void> {
    const store = this.#o.store, log = this.#o.log;
    this.#wakeUpAt(reconcileDeployments(store, new Date(), log));
    reconcileReplicaSets(store, log);
    reconcileStatefulSets(store, log);
    await this.#pods();
    await this.#services.sync();
  }

  // --- Pods ----------------------------------------------------------------

  async #pods(): Promise<void> {
    const store = this.#o.store;
    const seen = new Set<string>();
    for (const p of store.list("pods")) {
      const key = keyOf(p);
      seen.add(key);
      const running = this.#running.get(key);
      if (running && running.uid === p.metadata.uid) continue;
      if (running) await this.#stop(key, running); // same name, new pod
      if (p.metadata.deletionTimestamp) continue;
      const spec = specOf(p);
      if (!spec.nodeName) {
        const node = this.#schedule(p);
        if (!node) {
          this.#setStatus(p, {
            phase: "Pending",
            conditions: [{
              type: "PodScheduled",
              status: "False",
              reason: "Unschedulable",
              message: `0/${this.#o.net.nodes.length} nodes are available: ` +
                "no node matches the pod's nodeSelector.",
            }],
          });
          continue;
        }
        store.modify(
          { resource: "pods", namespace: p.metadata.namespace!, name: p.metadata.name! },
          (o) => {
            specOf(o).nodeName = node;
          },
        );
      }
      const fresh = store.get({
        resource: "pods",
        namespace: p.metadata.namespace!,
        name: p.metadata.name!,
      })!;
      const worker = this.#worker(fresh);
      const entry: Running = {
        uid: p.metadata.uid!,
        worker,
        stopped: false,
        startup: Promise.resolve(),
      };
      this.#running.set(key, entry);
      entry.startup = worker.run().catch((error) => {
        this.#o.log(`kubelet: pod ${key}: ${error?.stack ?? error}`);
      });
    }
    for (const [key, running] of [...this.#running]) {
      if (!seen.has(key)) await this.#stop(key, running);
    }
  }

  #worker(p: KubeObject): PodWorker {
    const namespace = p.metadata.namespace!, name = p.metadata.name!;
    const ref = { resource: "pods", namespace, name };
    const spec = specOf(p);
    return new PodWorker({
      object: p,
      store: this.#o.store,
      net: this.#o.net,
      dir: this.#podDir(namespace, name, p.metadata.uid!),
      allocatable: this.#allocatable,
      requestToken: (audiences, expirationSeconds) => {
        try {
          const t = this.#o.requestToken({
            namespace,
            serviceAccount: spec.serviceAccountName ?? "default",
            ...(audiences ? { audiences } : {}),
            expirationSeconds,
            pod: { name, uid: p.metadata.uid! },
            ...(spec.nodeName ? { node: spec.nodeName } : {}),
          });
          return Promise.resolve({ token: t.token, issuedAt: t.issuedAt, expiresAt: t.expiresAt });
        } catch (error) {
          return Promise.reject(error);
        }
      },
      vifRuntime: (uid) => this.#runtime(uid),
      setStatus: (status) => this.#setStatus(p, status),
      storedStatus: () =>
        ((this.#o.store.get(ref) as Obj | undefined)?.status ?? {}) as Record<string, unknown>,
      event: (e) => this.#event(p, e),
      log: this.#o.log,
    });
  }

  #schedule(p: KubeObject): string | undefined {
    const selector = Object.entries(specOf(p).nodeSelector ?? {});
    const load = new Map<string, number>();
    for (const x of this.#o.store.list("pods")) {
      const n = specOf(x).nodeName;
      if (n) load.set(n, (load.get(n) ?? 0) + 1);
    }
    let best: string | undefined;
    for (const n of this.#o.net.nodes) {
      // The selector matches the Node object's labels, as the real scheduler's does.
      const labels = this.#o.store.get({ resource: "nodes", name: n.name })?.metadata.labels ?? {};
      if (!selector.every(([k, v]) => labels[k] === v)) continue;
      if (best === undefined || (load.get(n.name) ?? 0) < (load.get(best) ?? 0)) best = n.name;
    }
    return best;
  }

  async #stop(key: string, running: Running): Promise<void> {
    running.stopped = true;
    this.#running.delete(key);
    running.worker?.stop();
    await running.startup.catch(() => {});
    const [namespace, name] = key.split("/") as [string, string];
    const pod = running.worker?.pod ?? running.adopted;
    if (pod && this.#o.net.pod(namespace, name) === pod) {
      await this.#o.net.removePod(namespace, name).catch((e) =>
        this.#o.log(`kubelet: removing pod ${key}: ${e.message}`)
      );
    }
    await Deno.remove(this.#podDir(namespace, name, running.uid), { recursive: true })
      .catch(() => {});
  }

  #podDir(namespace: string, name: string, uid: string): string {
    return `${this.#o.dir}/pods/${namespace}_${name}_${uid}`;
  }

  /** ClusterNet's own pods (the cluster DNS) become Pod objects, already running. */
  #adopt(pod: Pod): void {
    const store = this.#o.store;
    const ref = { resource: "pods", namespace: pod.namespace, name: pod.name };
    if (!store.get(ref)) {
      store.create({
        apiVersion: "v1",
        kind: "Pod",
        metadata: { name: pod.name, namespace: pod.namespace, labels: { ...pod.labels } },
        spec: {
          nodeName: pod.node,
          dnsPolicy: "Default",
          automountServiceAccountToken: false,
          containers: [{
            name: ADOPTED_CONTAINER,
            image: "dnsmasq:sim",
            ports: pod.ports.map((p) => ({ ...p, protocol: p.protocol ?? "TCP" })),
          }],
        },
      } as KubeObject);
    }
    const object = store.get(ref)!;
    let adoptedLog: ContainerLog | undefined;
    if (pod.proc) {
      adoptedLog = new ContainerLog();
      adoptedLog.attach(pod.proc);
    }
    this.#running.set(keyOf(object), {
      uid: object.metadata.uid!,
      adopted: pod,
      ...(adoptedLog ? { adoptedLog } : {}),
      stopped: false,
      startup: Promise.resolve(),
    });
    const started = rfc3339();
    this.#setStatus(object, {
      phase: "Running",
      conditions: [
        "PodReadyToStartContainers",
        "Initialized",
        "Ready",
        "ContainersReady",
        "PodScheduled",
      ]
        .map((type) => ({
          type,
          status: "True",
          lastProbeTime: null,
          lastTransitionTime: started,
        })),
      hostIP: pod.hostIP,
      hostIPs: [{ ip: pod.hostIP }],
      podIP: pod.ip,
      podIPs: [{ ip: pod.ip }],
      qosClass: "BestEffort",
      startTime: started,
      containerStatuses: [{
        name: ADOPTED_CONTAINER,
        image: "dnsmasq:sim",
        imageID: `sim://sha256:${"0".repeat(64)}`,
        containerID: `sim://${object.metadata.uid}-0`,
        ready: true,
        started: true,
        restartCount: 0,
        state: { running: { startedAt: started } },
        lastState: {},
      }],
    });
  }

  #runtime(uid: number): Promise<VifRuntime> {
    let r = this.#runtimes.get(uid);
    if (!r) {
      r = this.#o.vifRuntime(uid);
      this.#runtimes.set(uid, r);
    }
    return r;
  }

  #setStatus(p: KubeObject, status: Record<string, unknown>): void {
    if (this.#closed) return;
    const ref = { resource: "pods", namespace: p.metadata.namespace!, name: p.metadata.name! };
    const now = this.#o.store.get(ref);
    if (!now || now.metadata.uid !== p.metadata.uid) return;
    if (sameJson((now as Obj).status, status)) return;
    try {
      this.#o.store.modify(ref, (o) => {
        (o as Obj).status = status;
      });
    } catch { /* deleted meanwhile */ }
  }
}

/**
 * The Deno command that runs `main.ts`, for {@linkcode KubeletOptions.vifRuntime}.
 * `VIF_SIM_DENO_FLAGS` adds Deno flags (the bench's `--cpu-prof` for the manager).
 */
export function vifMainCommand(deno = DENO): string[] {
  const extra = Deno.env.get("VIF_SIM_DENO_FLAGS")?.split(" ").filter((f) => f) ?? [];
  // As the compiled binary runs it: with the V8 flags `deno compile` bakes in.
  return [
    deno,
    "run",
    "-A",
    `--v8-flags=${V8_FLAGS}`,
    ...extra,
    "--cached-only",
    "--config",
    `${ROOT}/deno.json`,
    `${ROOT}/main.ts`,
  ];
}
