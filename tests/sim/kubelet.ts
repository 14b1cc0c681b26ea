/**
 * The controllers of the simulated cluster: what the scheduler, the kubelet,
 * the Deployment controller, the endpoints controller and the node lifecycle
 * controller do in a real one, between the fake API server's {@linkcode Store}
 * and the {@linkcode ClusterNet} that carries the packets.
 *
 * - **Deployments → Pods.** Each Deployment owns pods named
 *   `<deployment>-<template hash>-<random>`, labelled `pod-template-hash`; a
 *   changed template replaces them all (like `strategy: Recreate`), `replicas`
 *   adds or removes pods, and the status counts them as the real controller does.
 * - **Scheduling.** A pod without `spec.nodeName` goes to the node whose labels
 *   match its `nodeSelector` and that runs the fewest pods.
 * - **Pods → namespaces (the kubelet).** A pod becomes a {@linkcode ClusterNet}
 *   pod: its own network namespace, and its first container's process started
 *   through a small shell script in a private mount and UTS namespace
 *   (`unshare --mount --uts`), in a session of its own (`setsid`, so that
 *   what it leaves behind when it ends is killed): hostname set to the
 *   pod's name, a tmpfs on `/run`, the service-account token, CA and namespace at
 *   `/var/run/secrets/kubernetes.io/serviceaccount`, each Secret, ConfigMap
 *   and emptyDir volume bind-mounted at its `mountPath` (which must lie under
 *   `/run`, `/var/run` or `/tmp`: the rest of the file system is the machine's),
 *   and the process run as `runAsUser`/`runAsGroup` with `fsGroup` as its
 *   supplementary group and only the environment a container gets
 *   (`KUBERNETES_SERVICE_HOST`/`PORT`, `env` with `fieldRef`s resolved).
 *   The machine has no images, so a container runs its `command` from the
 *   machine's programs; an image of vif (`ghcr.io/vif-dev/vif:*`, entrypoint
 *   `/vif`) runs this repository's `main.ts` with Deno instead.
 *   Status follows: `Running` with the pod's IP once started, `Ready` while
 *   the container is ready (below), and the container's `restartCount`,
 *   `state` and `lastState` (exit code, the last lines of stderr).
 * - **Probes and restarts** (`_container.ts`, `_probe.ts`), as the kubelet
 *   runs them: `readinessProbe` and `livenessProbe` with `httpGet` (path,
 *   port by number or container-port name, scheme, headers) or `tcpSocket`,
 *   made from the node's network namespace to the pod's IP, with
 *   `initialDelaySeconds`, `periodSeconds`, `timeoutSeconds`,
 *   `successThreshold` and `failureThreshold`. The pod's `Ready` condition,
 *   `containerStatuses[].ready` and the Service endpoints follow the
 *   readiness probe over time (a container without one is ready once its
 *   first port listens, at once when it has none); until the container is
 *   first ready its readiness probe runs every 250 ms, not every period. A
 *   failed liveness probe kills the process (SIGTERM, SIGKILL after the grace
 *   period). A process that ends, killed or by itself, is started again under
 *   `restartPolicy` (default `Always`): at once the first time, then after a
 *   back-off of 10 s, 20 s, … 5 min (`CrashLoopBackOff`). What a real kubelet
 *   would record as Events is kept in {@linkcode Kubelet.events} and logged.
 * - **Services → kube-proxy and DNS.** Each Service is given to ClusterNet,
 *   which writes the nftables DNAT rules and the DNS records; ClusterNet's
 *   endpoints are written back as Endpoints objects.
 * - **Nodes.** Each ClusterNet node is a Node object with `spec.podCIDRs`.
 *
 * @module
 */

import { DENO, ROOT } from "../e2e/_env.ts";
import { V8_FLAGS } from "../../mod/cli/daemon_client.ts";
import type { KubeObject, ObjectMeta, Store, StoreEvent } from "./apiserver/mod.ts";
import type {
  ClusterEvent,
  ClusterNet,
  ContainerPort,
  Node,
  Pod,
  PodSpec,
  Protocol,
  ServicePortSpec,
} from "./cluster_net.ts";
import {
  type ContainerEvent,
  ContainerLife,
  type ContainerLifeStatus,
  type ContainerState,
  type RestartPolicy,
} from "./_container.ts";
import { type Probe, type ProbeSpec, ProbeSpecError, resolveProbe } from "./_probe.ts";

/** How to run this repository's `main.ts` as a given user (a Deno cache that user owns). */
export interface VifRuntime {
  /** The command up to the script's arguments: `deno run -A … main.ts`. */
  cmd: string[];
  /** The environment Deno needs (`DENO_DIR`, `HOME`, …). */
  env: Record<string, string>;
  /**
   * The files that stand for the image (the repository, Deno, its cache): a
   * volume mounted over one of them (an emptyDir at `/tmp` while the
   * repository lives under `/tmp`) must not hide it.
   */
  paths: string[];
}

/** Options of {@linkcode Kubelet}. */
export interface KubeletOptions {
  store: Store;
  net: ClusterNet;
  /** A private directory (0700) for pod volumes and scripts. */
  dir: string;
  /** The API server as pods reach it (`KUBERNETES_SERVICE_HOST`, `…_PORT`). */
  apiHost: string;
  apiPort: number;
  /** The cluster CA, mounted as the service account's `ca.crt`. */
  caPem: string;
  /** Makes a bearer token for a service account (the API server must accept it). */
  issueToken(namespace: string, serviceAccount: string): string;
  /** How to run vif as `uid`; called once per uid. */
  vifRuntime(uid: number): Promise<VifRuntime>;
  /** Where to say what happens. */
  log(line: string): void;
}

/** The image repository whose images run this repository's `main.ts`. */
export const VIF_IMAGE = /^(.*\/)?vif(:[^/]*)?(@.*)?$/;
const VIF_BINARY = "/vif";
const PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const SA_DIR = "/var/run/secrets/kubernetes.io/serviceaccount";
const MOUNT_ROOTS = ["/run/", "/var/run/", "/tmp/", "/tmp"];
const HASH_LABEL = "pod-template-hash";
/** Resources this controller reacts to. */
const WATCHED = new Set(["deployments", "pods", "services"]);

type Obj = KubeObject & Record<string, unknown>;

interface Container {
  name: string;
  image?: string;
  command?: string[];
  args?: string[];
  env?: Array<{
    name: string;
    value?: string;
    valueFrom?: { fieldRef?: { fieldPath: string } };
  }>;
  ports?: Array<{ name?: string; containerPort: number; protocol?: Protocol }>;
  readinessProbe?: ProbeSpec;
  livenessProbe?: ProbeSpec;
  securityContext?: { runAsUser?: number; runAsGroup?: number };
  volumeMounts?: Array<{ name: string; mountPath: string; readOnly?: boolean }>;
}

interface Volume {
  name: string;
  secret?: { secretName: string; defaultMode?: number };
  configMap?: { name: string; defaultMode?: number };
  emptyDir?: Record<string, unknown>;
}

interface PodSpecObj {
  nodeName?: string;
  nodeSelector?: Record<string, string>;
  hostname?: string;
  subdomain?: string;
  serviceAccountName?: string;
  automountServiceAccountToken?: boolean;
  securityContext?: { runAsUser?: number; runAsGroup?: number; fsGroup?: number };
  containers: Container[];
  volumes?: Volume[];
  dnsPolicy?: string;
  restartPolicy?: RestartPolicy;
  terminationGracePeriodSeconds?: number;
}

interface Running {
  uid: string;
  pod?: Pod;
  /** The container's life (probes, restarts), once its process started. */
  container?: ContainerLife;
  stopped: boolean;
  startup: Promise<void>;
}

/** What the pod's container is checked with, from its spec. */
interface Checks {
  readiness?: Probe;
  liveness?: Probe;
  /** Without a readiness probe: the port whose listening makes it ready. */
  listen?: { port: number; protocol: Protocol };
}

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
  /** `Unhealthy`, `Killing`, `BackOff`, `Started`. */
  reason: string;
  /** `Liveness probe failed: …` */
  message: string;
  /** How many times in a row. */
  count: number;
  firstTimestamp: string;
  lastTimestamp: string;
}

/** Events kept by {@linkcode Kubelet.events}, newest last. */
const MAX_EVENTS = 1000;

/** Why a pod cannot be run here; goes to the pod's status. */
class PodError extends Error {
  constructor(readonly reason: string, message: string) {
    super(message);
  }
}

function rfc3339(d = new Date()): string {
  return d.toISOString().replace(/\.\d{3}Z$/, "Z");
}

function quote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

function specOf(o: KubeObject): PodSpecObj {
  return (o as Obj).spec as PodSpecObj;
}

function keyOf(o: KubeObject): string {
  return `${o.metadata.namespace ?? ""}/${o.metadata.name}`;
}

function fnv(text: string): string {
  let h = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    h ^= text.charCodeAt(i);
    h = Math.imul(h, 0x01000193) >>> 0;
  }
  // The alphabet of the real pod-template-hash (no vowels).
  const alphabet = "bcdfghjklmnpqrstvwxz2456789";
  let out = "";
  for (let i = 0; i < 10; i++) {
    out += alphabet[h % alphabet.length];
    h = (Math.floor(h / alphabet.length) ^ Math.imul(h, 31)) >>> 0;
  }
  return out;
}

function sameJson(a: unknown, b: unknown): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

interface DeploymentSpec {
  replicas?: number;
  template: { metadata?: ObjectMeta; spec: PodSpecObj };
}

/** A Deployment's spec and the hash of its pod template (the `pod-template-hash` label). */
function deploymentOf(d: KubeObject): { spec: DeploymentSpec; hash: string } {
  const spec = (d as Obj).spec as DeploymentSpec;
  return { spec, hash: fnv(JSON.stringify(spec.template)) };
}

/** The pods whose owner is `d`. */
function ownedBy(d: KubeObject, pods: KubeObject[]): KubeObject[] {
  return pods.filter((p) =>
    (p.metadata.ownerReferences ?? []).some((r) => r.uid === d.metadata.uid)
  );
}

function isReady(o: KubeObject): boolean {
  const conditions = ((o as Obj).status as { conditions?: { type: string; status: string }[] })
    ?.conditions ?? [];
  return conditions.some((c) => c.type === "Ready" && c.status === "True");
}

/**
 * The controllers. Start with {@linkcode Kubelet.start}; stop with {@linkcode Kubelet.close}.
 */
export class Kubelet {
  #o: KubeletOptions;
  #running = new Map<string, Running>();
  #services = new Map<string, string>();
  #dirty = false;
  #loop: Promise<void> | undefined;
  #closed = false;
  #unwatch: Array<() => void> = [];
  #runtimes = new Map<number, Promise<VifRuntime>>();
  /** Services ClusterNet owns (kube-dns, kubernetes): never touched here. */
  #system = new Set(["default/kubernetes", "kube-system/kube-dns"]);
  #events: PodEvent[] = [];

  constructor(options: KubeletOptions) {
    this.#o = options;
  }

  /**
   * Publishes the nodes and ClusterNet's own pods, then follows the store.
   */
  start(): void {
    for (const node of this.#o.net.nodes) this.publishNode(node);
    for (const pod of this.#o.net.pods()) this.#adopt(pod);
    // ClusterNet's own services (the cluster DNS) got their endpoints before anyone listened.
    for (const svc of this.#o.net.services()) this.#writeEndpoints(svc.namespace, svc.name);
    this.#unwatch.push(this.#o.store.watch((e: StoreEvent) => {
      if (WATCHED.has(e.resource.resource)) this.#kick();
    }));
    this.#unwatch.push(this.#o.net.watch((e: ClusterEvent) => {
      if (e.kind === "Endpoints") queueMicrotask(() => this.#writeEndpoints(e.namespace!, e.name));
    }));
    this.#kick();
  }

  /** Resolves when nothing is left to do (the store and the network agree). */
  async settled(): Promise<void> {
    while (this.#loop) await this.#loop;
    await Promise.all([...this.#running.values()].map((r) => r.startup));
  }

  /**
   * The network namespace of a running pod.
   *
   * @param namespace the pod's namespace
   * @param name the pod's name
   * @returns the ClusterNet pod, or undefined
   */
  pod(namespace: string, name: string): Pod | undefined {
    return this.#running.get(`${namespace}/${name}`)?.pod;
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
    for (const u of this.#unwatch) u();
    // No more probes nor restarts: the processes ClusterNet's cleanup stops stay stopped.
    for (const r of this.#running.values()) r.container?.close();
    await this.#loop?.catch(() => {});
    for (const r of this.#running.values()) r.container?.close(); // started meanwhile
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

  async #reconcile(): Promise<void> {
    this.#deployments();
    await this.#pods();
    await this.#servicesToNet();
    this.#deploymentStatus();
  }

  // --- Deployments ---------------------------------------------------------

  #deployments(): void {
    const store = this.#o.store;
    const pods = store.list("pods");
    for (const d of store.list("deployments")) {
      if (d.metadata.deletionTimestamp) continue;
      const { spec, hash } = deploymentOf(d);
      const owned = ownedBy(d, pods).filter((p) => !p.metadata.deletionTimestamp);
      const current = owned.filter((p) => p.metadata.labels?.[HASH_LABEL] === hash);
      for (const p of owned) {
        if (p.metadata.labels?.[HASH_LABEL] !== hash) this.#deletePod(p);
      }
      const want = spec.replicas ?? 1;
      for (let i = current.length; i < want; i++) {
        const meta = spec.template.metadata ?? {};
        store.create({
          apiVersion: "v1",
          kind: "Pod",
          metadata: {
            generateName: `${d.metadata.name}-${hash}-`,
            namespace: d.metadata.namespace!,
            labels: { ...meta.labels, [HASH_LABEL]: hash },
            ...(meta.annotations ? { annotations: { ...meta.annotations } } : {}),
            ownerReferences: [{
              apiVersion: "apps/v1",
              kind: "Deployment",
              name: d.metadata.name!,
              uid: d.metadata.uid!,
              controller: true,
              blockOwnerDeletion: true,
            }],
          } as ObjectMeta,
          spec: structuredClone(spec.template.spec),
        } as KubeObject);
      }
      // Scale down: the newest go first.
      const extra = current.length - want;
      if (extra > 0) {
        const newest = [...current].sort((a, b) =>
          String(b.metadata.creationTimestamp).localeCompare(String(a.metadata.creationTimestamp))
        );
        for (const p of newest.slice(0, extra)) this.#deletePod(p);
      }
    }
  }

  #deploymentStatus(): void {
    const store = this.#o.store;
    const pods = store.list("pods");
    for (const d of store.list("deployments")) {
      if (d.metadata.deletionTimestamp) continue;
      const { spec, hash } = deploymentOf(d);
      const owned = ownedBy(d, pods);
      const updated = owned.filter((p) => p.metadata.labels?.[HASH_LABEL] === hash);
      const ready = owned.filter(isReady).length;
      const want = spec.replicas ?? 1;
      const available = ready >= want;
      const old = (d as Obj).status as { conditions?: { type: string; status: string }[] };
      const since = (type: string, status: string) => {
        const c = old?.conditions?.find((x) => x.type === type) as
          | { status: string; lastTransitionTime?: string }
          | undefined;
        return c && c.status === status && c.lastTransitionTime ? c.lastTransitionTime : rfc3339();
      };
      const status = {
        observedGeneration: d.metadata.generation ?? 1,
        replicas: owned.length,
        updatedReplicas: updated.length,
        readyReplicas: ready,
        availableReplicas: ready,
        ...(owned.length - ready > 0 ? { unavailableReplicas: owned.length - ready } : {}),
        conditions: [
          {
            type: "Available",
            status: available ? "True" : "False",
            reason: available ? "MinimumReplicasAvailable" : "MinimumReplicasUnavailable",
            message: available
              ? "Deployment has minimum availability."
              : "Deployment does not have minimum availability.",
            lastTransitionTime: since("Available", available ? "True" : "False"),
            lastUpdateTime: since("Available", available ? "True" : "False"),
          },
          {
            type: "Progressing",
            status: "True",
            reason: updated.length === want && available
              ? "NewReplicaSetAvailable"
              : "ReplicaSetUpdated",
            message: `Deployment "${d.metadata.name}" is progressing.`,
            lastTransitionTime: since("Progressing", "True"),
            lastUpdateTime: since("Progressing", "True"),
          },
        ],
      };
      const { conditions: _a, ...oldRest } = (old ?? {}) as Record<string, unknown>;
      const { conditions: _b, ...newRest } = status;
      const sameConditions = sameJson(
        (old?.conditions ?? []).map((c) => [c.type, c.status]),
        status.conditions.map((c) => [c.type, c.status]),
      );
      if (sameJson(oldRest, newRest) && sameConditions) continue;
      store.modify(
        { resource: "deployments", namespace: d.metadata.namespace!, name: d.metadata.name! },
        (o) => {
          (o as Obj).status = status;
        },
      );
    }
  }

  #deletePod(p: KubeObject): void {
    try {
      this.#o.store.delete({
        resource: "pods",
        namespace: p.metadata.namespace!,
        name: p.metadata.name!,
      });
    } catch { /* gone already */ }
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
          (
            o,
          ) => {
            specOf(o).nodeName = node;
          },
        );
      }
      const fresh = store.get({
        resource: "pods",
        namespace: p.metadata.namespace!,
        name: p.metadata.name!,
      })!;
      const entry: Running = { uid: p.metadata.uid!, stopped: false, startup: Promise.resolve() };
      this.#running.set(key, entry);
      entry.startup = this.#start(fresh, entry).catch((error) => {
        this.#o.log(`kubelet: pod ${key}: ${error?.message ?? error}`);
      });
    }
    for (const [key, running] of [...this.#running]) {
      if (!seen.has(key)) await this.#stop(key, running);
    }
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
    running.container?.close();
    await running.startup.catch(() => {});
    const [namespace, name] = key.split("/") as [string, string];
    if (running.pod && this.#o.net.pod(namespace, name) === running.pod) {
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
          containers: [{
            name: "dnsmasq",
            image: "dnsmasq:sim",
            ports: pod.ports.map((p) => ({ ...p, protocol: p.protocol ?? "TCP" })),
          }],
        },
      } as KubeObject);
    }
    const object = store.get(ref)!;
    this.#running.set(keyOf(object), {
      uid: object.metadata.uid!,
      pod,
      stopped: false,
      startup: Promise.resolve(),
    });
    this.#setStatus(object, this.#podStatus(object, pod, undefined));
  }

  async #start(p: KubeObject, entry: Running): Promise<void> {
    const key = keyOf(p);
    const spec = specOf(p);
    const container = spec.containers[0]!;
    let podSpec: PodSpec, checks: Checks;
    try {
      ({ podSpec, checks } = await this.#podSpec(p, container));
    } catch (error) {
      const reason = error instanceof PodError ? error.reason : "CreateContainerError";
      this.#o.log(`kubelet: pod ${key} cannot start: ${(error as Error).message}`);
      this.#setStatus(p, this.#waitingStatus(p, reason, (error as Error).message));
      return;
    }
    if (entry.stopped) return;
    let pod: Pod;
    try {
      pod = await this.#o.net.addPod(podSpec);
    } catch (error) {
      this.#setStatus(p, this.#waitingStatus(p, "CreatePodSandboxError", (error as Error).message));
      return;
    }
    entry.pod = pod;
    if (entry.stopped) {
      await this.#o.net.removePod(pod.namespace, pod.name).catch(() => {});
      return;
    }
    this.#o.log(`kubelet: pod ${key} started on ${pod.node} at ${pod.ip}`);
    const life = new ContainerLife({
      net: this.#o.net,
      pod,
      name: container.name,
      podUid: p.metadata.uid!,
      ...checks,
      restartPolicy: spec.restartPolicy ?? "Always",
      graceMs: (spec.terminationGracePeriodSeconds ?? 30) * 1000,
      event: (e) => this.#event(p, e),
      changed: () => {
        if (!entry.stopped && !this.#closed) this.#setStatus(p, this.#podStatus(p, pod, life));
      },
      log: this.#o.log,
    });
    entry.container = life;
    if (this.#closed) life.close();
    life.start();
    await life.firstVerdict;
  }

  async #podSpec(p: KubeObject, c: Container): Promise<{ podSpec: PodSpec; checks: Checks }> {
    const spec = specOf(p);
    const namespace = p.metadata.namespace!;
    const name = p.metadata.name!;
    const dir = this.#podDir(namespace, name, p.metadata.uid!);
    await Deno.mkdir(dir, { recursive: true });
    const fsGroup = spec.securityContext?.fsGroup;
    const uid = c.securityContext?.runAsUser ?? spec.securityContext?.runAsUser ?? 0;
    const gid = c.securityContext?.runAsGroup ?? spec.securityContext?.runAsGroup ?? uid;
    const mounts: Array<{ host: string; path: string; readOnly: boolean }> = [];

    if (spec.automountServiceAccountToken !== false) {
      const sa = spec.serviceAccountName ?? "default";
      const host = `${dir}/serviceaccount`;
      await Deno.mkdir(host);
      await Deno.writeTextFile(`${host}/token`, this.#o.issueToken(namespace, sa));
      await Deno.writeTextFile(`${host}/ca.crt`, this.#o.caPem);
      await Deno.writeTextFile(`${host}/namespace`, namespace);
      await this.#own(host, 0o644, fsGroup);
      mounts.push({ host, path: SA_DIR, readOnly: true });
    }
    for (const m of c.volumeMounts ?? []) {
      if (!MOUNT_ROOTS.some((r) => m.mountPath === r || m.mountPath.startsWith(r))) {
        throw new PodError(
          "CreateContainerConfigError",
          `the simulated kubelet mounts volumes under /run, /var/run or /tmp only, not at "${m.mountPath}"`,
        );
      }
      const v = (spec.volumes ?? []).find((x) => x.name === m.name);
      if (!v) {
        throw new PodError("CreateContainerConfigError", `volume "${m.name}" is not defined`);
      }
      const host = `${dir}/volumes/${m.name}`;
      await Deno.mkdir(host, { recursive: true });
      if (v.secret || v.configMap) {
        const resource = v.secret ? "secrets" : "configmaps";
        const objName = v.secret?.secretName ?? v.configMap!.name;
        const o = this.#o.store.get({ resource, namespace, name: objName }) as Obj | undefined;
        if (!o) {
          throw new PodError(
            "CreateContainerConfigError",
            `${v.secret ? "secret" : "configmap"} "${objName}" not found`,
          );
        }
        for (const [k, value] of Object.entries((o.data ?? {}) as Record<string, string>)) {
          const bytes = v.secret ? decodeBase64(value) : new TextEncoder().encode(value);
          await Deno.writeFile(`${host}/${k}`, bytes);
        }
        await this.#own(
          host,
          (v.secret?.defaultMode ?? v.configMap?.defaultMode) ?? 0o644,
          fsGroup,
        );
      } else if (v.emptyDir) {
        await Deno.chmod(host, 0o1777);
      } else {
        throw new PodError(
          "CreateContainerConfigError",
          `volume "${m.name}": the simulated kubelet has secret, configMap and emptyDir volumes only`,
        );
      }
      mounts.push({ host, path: m.mountPath, readOnly: m.readOnly ?? false });
    }

    let argv: string[];
    let extraEnv: Record<string, string> = {};
    let imagePaths: string[] = [];
    const image = c.image ?? "";
    if (VIF_IMAGE.test(image) || c.command?.[0] === VIF_BINARY) {
      const runtime = await this.#runtime(uid);
      const command = c.command ?? [VIF_BINARY, "--serve"];
      const rest = command[0] === VIF_BINARY ? command.slice(1) : command;
      argv = [...runtime.cmd, ...rest, ...(c.args ?? [])];
      extraEnv = runtime.env;
      imagePaths = runtime.paths;
    } else if (c.command && c.command.length > 0) {
      argv = [...c.command, ...(c.args ?? [])];
    } else {
      throw new PodError(
        "ErrImagePull",
        `image "${image}" cannot be run here: the simulated kubelet runs the container's "command" from this machine's programs, or vif's image`,
      );
    }

    const ports: ContainerPort[] = (c.ports ?? []).map((x) => ({
      ...(x.name ? { name: x.name } : {}),
      containerPort: x.containerPort,
      protocol: x.protocol ?? "TCP",
    }));
    const checks: Checks = {};
    try {
      if (c.readinessProbe) checks.readiness = resolveProbe(c.readinessProbe, "readiness", ports);
      if (c.livenessProbe) checks.liveness = resolveProbe(c.livenessProbe, "liveness", ports);
    } catch (error) {
      if (error instanceof ProbeSpecError) {
        throw new PodError("CreateContainerConfigError", error.message);
      }
      throw error;
    }
    if (!checks.readiness && ports[0]) {
      checks.listen = { port: ports[0].containerPort, protocol: ports[0].protocol! };
    }

    const script = `${dir}/start.sh`;
    const podNode = spec.nodeName!;
    const fieldValue = (path: string, ip: string): string => {
      switch (path) {
        case "metadata.name":
          return name;
        case "metadata.namespace":
          return namespace;
        case "metadata.uid":
          return p.metadata.uid ?? "";
        case "spec.nodeName":
          return podNode;
        case "spec.serviceAccountName":
          return spec.serviceAccountName ?? "default";
        case "status.podIP":
          return ip;
        case "status.hostIP":
          return this.#o.net.nodes.find((n) => n.name === podNode)?.ip ?? "";
        default:
          throw new PodError("CreateContainerConfigError", `fieldRef "${path}" is not supported`);
      }
    };
    const group = fsGroup !== undefined ? [`--groups=${fsGroup}`] : ["--clear-groups"];
    const writeScript = (ip: string): string[] => {
      const env: Record<string, string> = {
        PATH,
        HOSTNAME: name,
        KUBERNETES_SERVICE_HOST: this.#o.apiHost,
        KUBERNETES_SERVICE_PORT: String(this.#o.apiPort),
        KUBERNETES_SERVICE_PORT_HTTPS: String(this.#o.apiPort),
        KUBERNETES_PORT: `tcp://${this.#o.apiHost}:${this.#o.apiPort}`,
        ...extraEnv,
      };
      for (const e of c.env ?? []) {
        env[e.name] = e.valueFrom?.fieldRef
          ? fieldValue(e.valueFrom.fieldRef.fieldPath, ip)
          : e.value ?? "";
      }
      const lines = [
        "#!/bin/sh",
        `# pod ${namespace}/${name}: what a container runtime would set up`,
        "set -e",
        `hostname ${quote(name)}`,
        "mount -t tmpfs -o mode=0755,size=16m tmpfs /run",
        ...mounts.flatMap((m, i) => {
          const under = (p: string) =>
            p === m.path || p.startsWith(`${m.path.replace(/\/$/, "")}/`);
          const hidden = imagePaths.filter(under);
          // Keep the machine's view of the mount point, to put the image's files back on top.
          const keep = `/run/.sim-under-${i}`;
          return [
            ...(hidden.length ? [`mkdir -p ${keep}`, `mount --bind ${quote(m.path)} ${keep}`] : []),
            `mkdir -p ${quote(m.path)}`,
            `mount --bind ${m.readOnly ? "-o ro " : ""}${quote(m.host)} ${quote(m.path)}`,
            ...hidden.flatMap((p) => [
              `mkdir -p ${quote(p)}`,
              `mount --bind ${quote(keep + p.slice(m.path.replace(/\/$/, "").length))} ${quote(p)}`,
            ]),
          ];
        }),
        [
          // A session of its own: what is left of it when it ends can be found and killed.
          "exec setsid env -i",
          ...Object.entries(env).map(([k, v]) => quote(`${k}=${v}`)),
          "setpriv",
          `--reuid=${uid}`,
          `--regid=${gid}`,
          ...group,
          "--",
          ...argv.map(quote),
        ].join(" \\\n  "),
        "",
      ];
      Deno.writeTextFileSync(script, lines.join("\n"), { mode: 0o700 });
      return ["unshare", "--mount", "--uts", "--propagation", "private", "sh", script];
    };

    const podSpec: PodSpec = {
      namespace,
      name,
      labels: { ...p.metadata.labels },
      ...(spec.hostname ? { hostname: spec.hostname } : {}),
      ...(spec.subdomain ? { subdomain: spec.subdomain } : {}),
      node: podNode,
      ports,
      run: (info) => ({ cmd: writeScript(info.ip) }),
      // The container's life decides (probes, restarts), not ClusterNet's one look at a port.
      externalReadiness: true,
      ...(spec.dnsPolicy === "Default" ? { dnsPolicy: "Default" as const } : {}),
    };
    return { podSpec, checks };
  }

  async #own(dir: string, mode: number, fsGroup: number | undefined): Promise<void> {
    for await (const e of Deno.readDir(dir)) {
      await Deno.chmod(`${dir}/${e.name}`, mode & 0o777);
      if (fsGroup !== undefined) await Deno.chown(`${dir}/${e.name}`, 0, fsGroup);
    }
    await Deno.chmod(dir, 0o755);
  }

  #runtime(uid: number): Promise<VifRuntime> {
    let r = this.#runtimes.get(uid);
    if (!r) {
      r = this.#o.vifRuntime(uid);
      this.#runtimes.set(uid, r);
    }
    return r;
  }

  // --- Status --------------------------------------------------------------

  #setStatus(p: KubeObject, status: Record<string, unknown>): void {
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

  #container(p: KubeObject): Container {
    return specOf(p).containers[0]!;
  }

  /** The stored Pod's status now (for its start time and conditions' transition times). */
  #stored(p: KubeObject): Record<string, unknown> {
    const now = this.#o.store.get({
      resource: "pods",
      namespace: p.metadata.namespace!,
      name: p.metadata.name!,
    }) as Obj | undefined;
    return (now?.status ?? {}) as Record<string, unknown>;
  }

  #base(p: KubeObject, pod: Pod | undefined) {
    const started = (this.#stored(p) as { startTime?: string }).startTime ?? rfc3339();
    return {
      ...(pod
        ? {
          hostIP: pod.hostIP,
          hostIPs: [{ ip: pod.hostIP }],
          podIP: pod.ip,
          podIPs: [{ ip: pod.ip }],
        }
        : {}),
      qosClass: "Burstable",
      startTime: started,
    };
  }

  /** The pod's conditions; a condition keeps its transition time while its status stays. */
  #conditions(p: KubeObject, ready: boolean) {
    const old = (this.#stored(p) as {
      conditions?: { type: string; status: string; lastTransitionTime?: string }[];
    }).conditions ?? [];
    const c = (type: string, status: string) => {
      const was = old.find((x) => x.type === type);
      const t = was?.status === status && was.lastTransitionTime
        ? was.lastTransitionTime
        : rfc3339();
      return { type, status, lastTransitionTime: t };
    };
    const s = ready ? "True" : "False";
    return [
      c("PodReadyToStartContainers", "True"),
      c("Initialized", "True"),
      c("Ready", s),
      c("ContainersReady", s),
      c("PodScheduled", "True"),
    ];
  }

  #containerStatus(p: KubeObject, life: Partial<ContainerLifeStatus> & { state: ContainerState }) {
    const c = this.#container(p);
    return [{
      name: c.name,
      image: c.image ?? "",
      imageID: `sim://sha256:${"0".repeat(64)}`,
      containerID: life.containerID ?? `sim://${p.metadata.uid}-0`,
      ready: life.ready ?? false,
      started: life.started ?? false,
      restartCount: life.restartCount ?? 0,
      state: life.state,
      lastState: life.lastState ?? {},
    }];
  }

  /**
   * The status of a pod whose container runs (or ran): `Running` while its
   * container runs or will run again, `Succeeded` or `Failed` once it will
   * not; without a container life (ClusterNet's own pods), running and ready.
   */
  #podStatus(p: KubeObject, pod: Pod, life: ContainerLife | undefined): Record<string, unknown> {
    const base = this.#base(p, pod);
    const status: ContainerLifeStatus = life?.status ?? {
      ready: true,
      started: true,
      restartCount: 0,
      containerID: `sim://${p.metadata.uid}-0`,
      state: { running: { startedAt: base.startTime } },
      lastState: {},
    };
    const code = life?.terminalExitCode;
    return {
      phase: code === undefined ? "Running" : code === 0 ? "Succeeded" : "Failed",
      conditions: this.#conditions(p, status.ready),
      ...base,
      containerStatuses: this.#containerStatus(p, status),
    };
  }

  #waitingStatus(p: KubeObject, reason: string, message: string): Record<string, unknown> {
    return {
      phase: "Pending",
      conditions: this.#conditions(p, false),
      ...this.#base(p, undefined),
      containerStatuses: this.#containerStatus(p, { state: { waiting: { reason, message } } }),
    };
  }

  // --- Services and endpoints ---------------------------------------------

  async #servicesToNet(): Promise<void> {
    const net = this.#o.net;
    const seen = new Set<string>();
    for (const s of this.#o.store.list("services")) {
      const key = keyOf(s);
      if (this.#system.has(key)) continue;
      seen.add(key);
      const spec = (s as Obj).spec as {
        clusterIP?: string;
        selector?: Record<string, string>;
        ports?: Array<
          { name?: string; port: number; targetPort?: number | string; protocol?: Protocol }
        >;
        type?: string;
      };
      const desired = {
        namespace: s.metadata.namespace!,
        name: s.metadata.name!,
        ...(spec.clusterIP ? { clusterIP: spec.clusterIP } : {}),
        ports: (spec.ports ?? []).map((x): ServicePortSpec => ({
          ...(x.name ? { name: x.name } : {}),
          port: x.port,
          ...(x.targetPort !== undefined ? { targetPort: x.targetPort } : {}),
          protocol: x.protocol ?? "TCP",
        })),
        ...(spec.selector ? { selector: spec.selector } : { endpoints: [] }),
      };
      const text = JSON.stringify(desired);
      if (this.#services.get(key) === text) continue;
      if (this.#services.has(key)) await net.removeService(desired.namespace, desired.name);
      this.#services.set(key, text);
      try {
        await net.addService(desired);
      } catch (error) {
        this.#o.log(`kubelet: service ${key}: ${(error as Error).message}`);
        continue;
      }
      this.#writeEndpoints(desired.namespace, desired.name);
    }
    for (const key of [...this.#services.keys()]) {
      if (seen.has(key)) continue;
      this.#services.delete(key);
      const [namespace, name] = key.split("/") as [string, string];
      await net.removeService(namespace, name).catch(() => {});
    }
  }

  #writeEndpoints(namespace: string, name: string): void {
    if (this.#closed || (namespace === "default" && name === "kubernetes")) return;
    const store = this.#o.store;
    const svc = this.#o.net.service(namespace, name);
    const ref = { resource: "endpoints", namespace, name };
    if (!svc || !svc.selector) return;
    const addresses = this.#o.net.endpoints(namespace, name);
    const subsets = addresses.length === 0 ? [] : [{
      addresses: addresses.map((a) => ({
        ip: a.ip,
        ...(a.hostname ? { hostname: a.hostname } : {}),
        ...(a.node ? { nodeName: a.node } : {}),
        ...(a.pod ? { targetRef: { kind: "Pod", namespace, name: a.pod } } : {}),
      })),
      ports: svc.ports.flatMap((p) => {
        const port = addresses.map((a) => a.ports[p.name]).find((x) => x !== undefined);
        return port === undefined ? [] : [{
          ...(p.name ? { name: p.name } : {}),
          port,
          protocol: p.protocol,
        }];
      }),
    }];
    const existing = store.get(ref) as Obj | undefined;
    try {
      if (!existing) {
        store.create({
          apiVersion: "v1",
          kind: "Endpoints",
          metadata: { name, namespace },
          subsets,
        } as KubeObject);
      } else if (!sameJson(existing.subsets ?? [], subsets)) {
        store.modify(ref, (o) => {
          (o as Obj).subsets = subsets;
        });
      }
    } catch (error) {
      this.#o.log(`kubelet: endpoints ${namespace}/${name}: ${(error as Error).message}`);
    }
  }
}

function decodeBase64(text: string): Uint8Array {
  const binary = atob(text);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
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
