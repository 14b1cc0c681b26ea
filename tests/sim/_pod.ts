/**
 * One pod on a simulated node, from its volumes to its last container: what
 * the kubelet's pod worker does for a pod it was given.
 *
 * ```
 *   volumes set up (_volumes.ts)  ── a missing ConfigMap: FailedMount, Pending/ContainerCreating, tried again
 *   the pod's network namespace   ── ClusterNet.addPod (its address, resolv.conf, loopback)
 *   init containers, one by one   ── each to its end; a failure is restarted (Always, OnFailure) or fails the pod (Never)
 *   app containers, all           ── each its own process (_runtime.ts) and life (_container.ts)
 *   status                        ── _pod_status.ts, written on every change
 * ```
 *
 * Every container of the pod runs in the pod's network namespace (one
 * loopback, one address), with its own mounts of the pod's volumes, its own
 * environment (`_container_env.ts`), user and capabilities. The pod is Ready
 * (and in its Services' endpoints) while every app container is ready.
 *
 * @module
 */

import type { Proc } from "../e2e/_env.ts";
import type { KubeObject, Store } from "./apiserver/mod.ts";
import type { ClusterNet, ContainerPort, Pod, PodSpec, Protocol } from "./cluster_net.ts";
import { type ContainerEvent, ContainerLife, type RestartPolicy } from "./_container.ts";
import type { ContainerLog } from "./_container_log.ts";
import {
  ContainerConfigError,
  containerEnv,
  type EnvContext,
  expandWords,
  type ServiceForEnv,
} from "./_container_env.ts";
import type { Allocatable, PodFacts } from "./_downward.ts";
import type { Container, PodSpecObj } from "./_pod_spec.ts";
import { type ContainerView, podStatus } from "./_pod_status.ts";
import { type Probe, ProbeSpecError, resolveProbe } from "./_probe.ts";
import {
  capabilities,
  checkMountPoint,
  type ContainerMount,
  type ContainerProcess,
  readHostRoot,
  startScript,
} from "./_runtime.ts";
import { PodVolumes, type ProjectedToken, VolumeSetUpError } from "./_volumes.ts";

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
  /**
   * Files of the image that differ from the machine's, mounted read-only
   * over them (the image's `/etc/passwd` names its `nonroot` user, which
   * `sftp-server` looks up).
   */
  files?: Array<{ path: string; host: string }>;
}

/** The image repository whose images run this repository's `main.ts`. */
export const VIF_IMAGE = /^(.*\/)?vif(:[^/]*)?(@.*)?$/;
const VIF_BINARY = "/vif";
const PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/** How often a pod whose volumes cannot be set up is tried again (the kubelet's resync). */
const VOLUME_RETRY_MS = 10_000;

/** What a pod worker needs from its kubelet. */
export interface PodWorkerOptions {
  /** The Pod as stored when it was given to this node. */
  object: KubeObject;
  store: Store;
  net: ClusterNet;
  /** The pod's directory (0700 parent): volumes and start scripts. */
  dir: string;
  /** The node's allocatable resources (`resourceFieldRef` without a limit). */
  allocatable: Allocatable;
  /** A token for the pod's service account, bound to the pod (TokenRequest). */
  requestToken(audiences: string[] | undefined, expirationSeconds: number): Promise<ProjectedToken>;
  /** How to run vif as a uid. */
  vifRuntime(uid: number): Promise<VifRuntime>;
  /** Writes the pod's status (unless the pod is gone or another one by now). */
  setStatus(status: Record<string, unknown>): void;
  /** The stored status now. */
  storedStatus(): Record<string, unknown>;
  event(e: ContainerEvent): void;
  log(line: string): void;
}

/** A container of a running pod: its process and how it was started. */
export interface RunningContainer {
  name: string;
  init: boolean;
  /** Its process now (the newest), if it runs. */
  proc: Proc | undefined;
  /** What it was last started with (user, environment, capabilities). */
  process: ContainerProcess | undefined;
}

/** What a container is checked with, from its spec. */
interface Checks {
  readiness?: Probe;
  liveness?: Probe;
  /** Without a readiness probe: the port whose listening makes it ready. */
  listen?: { port: number; protocol: Protocol };
}

function objOf(o: KubeObject): Record<string, unknown> {
  return o as Record<string, unknown>;
}

/**
 * One pod's worker: see the module documentation. {@linkcode PodWorker.run}
 * once; {@linkcode PodWorker.stop} when the pod goes.
 */
export class PodWorker {
  #o: PodWorkerOptions;
  #spec: PodSpecObj;
  #volumes: PodVolumes;
  #pod: Pod | undefined;
  #lives = new Map<string, ContainerLife>();
  #processes = new Map<string, ContainerProcess>();
  #ready = new Map<string, boolean>();
  #stopped = false;
  #wake: (() => void) | undefined;
  #settled: Promise<void>;
  #resolveSettled!: () => void;
  #stopSignal: Promise<undefined>;
  #resolveStop!: () => void;

  /**
   * @param options the pod and what its kubelet gives it
   */
  constructor(options: PodWorkerOptions) {
    this.#o = options;
    this.#spec = objOf(options.object).spec as PodSpecObj;
    this.#settled = new Promise((r) => this.#resolveSettled = r);
    this.#stopSignal = new Promise((r) => this.#resolveStop = () => r(undefined));
    const sc = this.#spec.securityContext;
    const users = [...this.#spec.initContainers ?? [], ...this.#spec.containers].map((c) =>
      c.securityContext?.runAsUser ?? sc?.runAsUser ?? 0
    );
    const one = users.every((u) => u === users[0]) && users[0] !== 0 ? users[0] : undefined;
    this.#volumes = new PodVolumes({
      dir: options.dir,
      volumes: this.#spec.volumes ?? [],
      fsGroup: sc?.fsGroup,
      fsUser: one,
      ctx: {
        facts: () => this.#facts(),
        configMap: (name) => this.#get("configmaps", name),
        secret: (name) => this.#get("secrets", name),
        requestToken: options.requestToken,
        containers: [...this.#spec.initContainers ?? [], ...this.#spec.containers],
        allocatable: options.allocatable,
      },
      log: options.log,
    });
  }

  get #key(): string {
    return `${this.#o.object.metadata.namespace}/${this.#o.object.metadata.name}`;
  }

  /** The pod's network namespace and address, once made. */
  get pod(): Pod | undefined {
    return this.#pod;
  }

  /** Resolves once every app container was first ready or waits, or the pod stopped. */
  get settled(): Promise<void> {
    return this.#settled;
  }

  /** The pod's volumes (their directories, the tokens they hold). */
  get volumes(): PodVolumes {
    return this.#volumes;
  }

  /**
   * A container's process and config.
   *
   * @param name the container's name; default the first app container
   * @returns it, or undefined when the pod has no such container
   */
  container(name?: string): RunningContainer | undefined {
    const all = [
      ...(this.#spec.initContainers ?? []).map((c) => ({ c, init: true })),
      ...this.#spec.containers.map((c) => ({ c, init: false })),
    ];
    const found = name === undefined
      ? all.find((x) => !x.init)
      : all.find((x) => x.c.name === name);
    if (!found) return undefined;
    const n = found.c.name;
    return {
      name: n,
      init: found.init,
      proc: this.#lives.get(n)?.proc,
      process: this.#processes.get(n),
    };
  }

  /**
   * The log of one run of a container.
   *
   * @param name the container's name
   * @param containerID the run's id (`containerStatuses[]`)
   * @returns its log, or undefined when there is no such container or run
   */
  containerLog(name: string, containerID: string): ContainerLog | undefined {
    return this.#lives.get(name)?.log(containerID);
  }

  /**
   * Something the pod's containers or volumes are made from changed (a
   * ConfigMap, a Secret, the pod's labels): volumes are rewritten, and a
   * container waiting for its config tries again.
   */
  refresh(): void {
    if (this.#stopped) return;
    this.#wake?.();
    this.#volumes.refresh();
    for (const life of this.#lives.values()) if (life.waitingForConfig) life.retry();
  }

  /** Sets the pod up and starts its containers; resolves once it is settled or stopped. */
  async run(): Promise<void> {
    this.#writeStatus();
    try {
      await this.#run();
    } finally {
      this.#resolveSettled();
    }
  }

  /** Stops probes, restarts and token refreshes; the pod's processes go with its network. */
  stop(): void {
    this.#stopped = true;
    this.#resolveStop();
    this.#wake?.();
    this.#volumes.close();
    for (const life of this.#lives.values()) life.close();
    this.#resolveSettled();
  }

  async #run(): Promise<void> {
    if (!await this.#setUpVolumes()) return;
    const pod = await this.#sandbox();
    if (!pod) return;
    if (!await this.#initContainers(pod)) return;
    const policy: RestartPolicy = this.#spec.restartPolicy ?? "Always";
    const lives = this.#spec.containers.map((c) => {
      try {
        return this.#life(pod, c, false, policy, this.#checks(c));
      } catch (error) {
        if (!(error instanceof ProbeSpecError)) throw error;
        return this.#life(pod, c, false, policy, {}, error.message);
      }
    });
    for (const l of lives) l.start().catch((e) => this.#o.log(`kubelet: pod ${this.#key}: ${e}`));
    await Promise.all(lives.map((l) => l.firstVerdict));
  }

  /** Sets the volumes up, trying again while one cannot be; false once stopped. */
  async #setUpVolumes(): Promise<boolean> {
    while (!this.#stopped) {
      try {
        await this.#volumes.setUp();
        return true;
      } catch (error) {
        if (!(error instanceof VolumeSetUpError)) throw error;
        this.#o.event({ type: "Warning", reason: "FailedMount", message: error.message });
        this.#resolveSettled();
        await new Promise<void>((resolve) => {
          const timer = setTimeout(wake, VOLUME_RETRY_MS);
          function wake() {
            clearTimeout(timer);
            resolve();
          }
          this.#wake = wake;
        });
        this.#wake = undefined;
      }
    }
    return false;
  }

  /** The pod's network namespace (the sandbox), or undefined when it cannot be or the pod stopped. */
  async #sandbox(): Promise<Pod | undefined> {
    const spec = this.#spec;
    const { namespace, name } = this.#o.object.metadata as { namespace: string; name: string };
    const ports: ContainerPort[] = spec.containers.flatMap((c) =>
      (c.ports ?? []).map((x) => ({
        ...(x.name ? { name: x.name } : {}),
        containerPort: x.containerPort,
        protocol: x.protocol ?? "TCP",
      }))
    );
    const podSpec: PodSpec = {
      namespace,
      name,
      labels: { ...this.#o.object.metadata.labels },
      ...(spec.hostname ? { hostname: spec.hostname } : {}),
      ...(spec.subdomain ? { subdomain: spec.subdomain } : {}),
      node: spec.nodeName!,
      ports,
      // The containers' lives decide (probes, restarts), not ClusterNet's one look at a port.
      externalReadiness: true,
      ...(spec.dnsPolicy === "Default" ? { dnsPolicy: "Default" as const } : {}),
    };
    let pod: Pod;
    try {
      pod = await this.#o.net.addPod(podSpec);
    } catch (error) {
      this.#o.event({
        type: "Warning",
        reason: "FailedCreatePodSandBox",
        message: `Failed to create pod sandbox: ${(error as Error).message}`,
      });
      return undefined;
    }
    if (this.#stopped) {
      await this.#o.net.removePod(namespace, name).catch(() => {});
      return undefined;
    }
    this.#pod = pod;
    this.#o.log(`kubelet: pod ${this.#key} started on ${pod.node} at ${pod.ip}`);
    this.#writeStatus();
    return pod;
  }

  /** Runs the init containers one by one; true once every one ended with 0. */
  async #initContainers(pod: Pod): Promise<boolean> {
    const policy: RestartPolicy = this.#spec.restartPolicy === "Never" ? "Never" : "OnFailure";
    for (const c of this.#spec.initContainers ?? []) {
      const life = this.#life(pod, c, true, policy, {});
      life.start().catch((e) => this.#o.log(`kubelet: pod ${this.#key}: ${e}`));
      // One that backs off or waits for its config: the pod is as settled as it gets for now.
      life.firstVerdict.then(() => {
        if (life.terminalExitCode !== 0) this.#resolveSettled();
      });
      const code = await Promise.race([life.done, this.#stopSignal]);
      if (this.#stopped || code !== 0) return false;
    }
    return true;
  }

  #checks(c: Container): Checks {
    const ports = (c.ports ?? []).map((x) => ({
      ...(x.name ? { name: x.name } : {}),
      containerPort: x.containerPort,
    }));
    const out: Checks = {};
    if (c.readinessProbe) out.readiness = resolveProbe(c.readinessProbe, "readiness", ports);
    if (c.livenessProbe) out.liveness = resolveProbe(c.livenessProbe, "liveness", ports);
    const first = c.ports?.[0];
    if (!out.readiness && first) {
      out.listen = { port: first.containerPort, protocol: first.protocol ?? "TCP" };
    }
    return out;
  }

  #life(
    pod: Pod,
    c: Container,
    init: boolean,
    restartPolicy: RestartPolicy,
    checks: Checks,
    configError?: string,
  ): ContainerLife {
    const node = this.#o.net.nodes.find((n) => n.name === pod.node) ?? this.#o.net.nodes[0]!;
    if (!init) this.#ready.set(c.name, false);
    const life: ContainerLife = new ContainerLife({
      pod,
      nodeNetns: node.netns,
      name: c.name,
      podUid: this.#o.object.metadata.uid!,
      init,
      spawn: () => {
        if (configError) return Promise.reject(new ContainerConfigError(configError));
        return this.#spawn(pod, c);
      },
      setReady: (ready) => this.#setReady(pod, c.name, ready),
      ...checks,
      restartPolicy,
      graceMs: (this.#spec.terminationGracePeriodSeconds ?? 30) * 1000,
      event: this.#o.event,
      changed: () => this.#writeStatus(),
      log: this.#o.log,
    });
    this.#lives.set(c.name, life);
    if (this.#stopped) life.close();
    return life;
  }

  async #setReady(pod: Pod, container: string, ready: boolean): Promise<void> {
    this.#ready.set(container, ready);
    const all = [...this.#ready.values()].every((r) => r);
    if (this.#stopped) return;
    await this.#o.net.setReady(pod.namespace, pod.name, all);
  }

  #writeStatus(): void {
    if (this.#stopped) return;
    const spec = this.#spec;
    const view = (c: Container, init: boolean): ContainerView => {
      const life = this.#lives.get(c.name);
      const waiting = init || (spec.initContainers ?? []).length > 0
        ? "PodInitializing"
        : "ContainerCreating";
      return {
        name: c.name,
        image: c.image ?? "",
        status: life ? life.status : { state: { waiting: { reason: waiting } } },
      };
    };
    const pod = this.#pod;
    this.#o.setStatus(podStatus({
      old: this.#o.storedStatus(),
      network: pod ? { podIP: pod.ip, hostIP: pod.hostIP } : undefined,
      init: (spec.initContainers ?? []).map((c) => view(c, true)),
      app: spec.containers.map((c) => view(c, false)),
      restartPolicy: spec.restartPolicy ?? "Always",
      now: new Date(),
    }));
  }

  #get(resource: "configmaps" | "secrets", name: string) {
    const o = this.#o.store.get({
      resource,
      namespace: this.#o.object.metadata.namespace!,
      name,
    }) as
      | (KubeObject & { data?: Record<string, string>; binaryData?: Record<string, string> })
      | undefined;
    return o ? { data: o.data ?? {}, binaryData: o.binaryData ?? {} } : undefined;
  }

  #facts(): PodFacts {
    const now = this.#o.store.get({
      resource: "pods",
      namespace: this.#o.object.metadata.namespace!,
      name: this.#o.object.metadata.name!,
    });
    const o = now && now.metadata.uid === this.#o.object.metadata.uid ? now : this.#o.object;
    const spec = objOf(o).spec as PodSpecObj;
    const pod = this.#pod;
    return {
      namespace: o.metadata.namespace!,
      name: o.metadata.name!,
      uid: o.metadata.uid!,
      labels: { ...o.metadata.labels },
      annotations: { ...o.metadata.annotations },
      nodeName: spec.nodeName ?? "",
      serviceAccountName: spec.serviceAccountName ?? "default",
      podIPs: pod ? [pod.ip] : [],
      hostIPs: pod ? [pod.hostIP] : [],
    };
  }

  #envContext(): EnvContext {
    const namespace = this.#o.object.metadata.namespace!;
    const services: ServiceForEnv[] = this.#o.store.list("services").filter((s) =>
      s.metadata.namespace === namespace ||
      (s.metadata.namespace === "default" && s.metadata.name === "kubernetes")
    ).map((s) => {
      const spec = objOf(s).spec as {
        clusterIP?: string;
        ports?: Array<{ name?: string; port: number; protocol?: string }>;
      };
      return {
        namespace: s.metadata.namespace!,
        name: s.metadata.name!,
        clusterIP: spec.clusterIP ?? "",
        ports: spec.ports ?? [],
      };
    });
    return {
      pod: this.#facts(),
      ...(this.#spec.enableServiceLinks !== undefined
        ? { enableServiceLinks: this.#spec.enableServiceLinks }
        : {}),
      services,
      configMap: (name) => this.#get("configmaps", name),
      secret: (name) => this.#get("secrets", name),
      containers: [...this.#spec.initContainers ?? [], ...this.#spec.containers],
      allocatable: this.#o.allocatable,
    };
  }

  /** Makes a container's config and starts its process (see `_runtime.ts`). */
  async #spawn(pod: Pod, c: Container): Promise<Proc> {
    const spec = this.#spec;
    const sc = c.securityContext, psc = spec.securityContext;
    const uid = sc?.runAsUser ?? psc?.runAsUser ?? 0;
    const gid = sc?.runAsGroup ?? psc?.runAsGroup ?? uid;
    if ((sc?.runAsNonRoot ?? psc?.runAsNonRoot) && uid === 0) {
      throw new ContainerConfigError(
        `container's runAsUser breaks non-root policy (pod: "${pod.name}_${pod.namespace}(${this.#o.object.metadata.uid})", container: ${c.name})`,
      );
    }
    const { env: kubeletEnv, skipped } = containerEnv(c, this.#envContext());
    for (const s of skipped) {
      this.#o.event({
        type: "Warning",
        reason: "InvalidEnvironmentVariableNames",
        message: `Keys [${s.keys.join(", ")}] from the EnvFrom ${
          s.kind === "configMap" ? "configMap" : "secret"
        } ${s.namespace}/${s.name} were skipped since they are considered invalid environment variable names.`,
      });
    }

    let argv: string[];
    let imageEnv: Record<string, string> = {};
    let imagePaths: string[] = [];
    let imageFiles: Array<{ path: string; host: string }> = [];
    const image = c.image ?? "";
    const words = (list: string[] | undefined) => expandWords(list ?? [], kubeletEnv);
    if (c.command?.[0] === VIF_BINARY || (VIF_IMAGE.test(image) && !c.command)) {
      // The image's ENTRYPOINT is `/vif --serve` (and no CMD): `args` alone come after it.
      const runtime = await this.#o.vifRuntime(uid);
      const command = c.command ? words(c.command).slice(1) : ["--serve"];
      argv = [...runtime.cmd, ...command, ...words(c.args)];
      imageEnv = runtime.env;
      imagePaths = runtime.paths;
      imageFiles = runtime.files ?? [];
    } else if (c.command && c.command.length > 0) {
      argv = [...words(c.command), ...words(c.args)];
    } else {
      throw new ContainerConfigError(
        `image "${image}" cannot be run here: the simulated kubelet runs the container's "command" from this machine's programs, or vif's image`,
        "ErrImagePull",
      );
    }

    const mounts: ContainerMount[] = imageFiles.map((f) => ({
      host: f.host,
      path: f.path,
      readOnly: true,
      file: true,
      real: f.path,
    }));
    for (const m of c.volumeMounts ?? []) {
      const volume = (spec.volumes ?? []).find((v) => v.name === m.name);
      const root = this.#volumes.path(m.name);
      if (!volume || !root) throw new ContainerConfigError(`volume "${m.name}" is not defined`);
      let host = root;
      let file = false;
      if (m.subPath) {
        host = `${root}/${m.subPath}`;
        if (volume.emptyDir) await Deno.mkdir(host, { recursive: true }).catch(() => {});
        const real = await Deno.realPath(host).catch(() => undefined);
        if (!real) {
          throw new ContainerConfigError(
            `subPath "${m.subPath}" of volume "${m.name}" does not exist`,
          );
        }
        const realRoot = await Deno.realPath(root);
        if (real !== realRoot && !real.startsWith(`${realRoot}/`)) {
          throw new ContainerConfigError(
            `subPath "${m.subPath}" of volume "${m.name}" resolves outside the volume`,
          );
        }
        host = real;
        file = (await Deno.stat(real)).isFile;
      }
      const real = await checkMountPoint(m.mountPath, file);
      mounts.push({ host, path: m.mountPath, readOnly: m.readOnly ?? false, file, real });
    }
    // Parents before children, as a runtime sorts them.
    mounts.sort((a, b) => a.path.split("/").length - b.path.split("/").length);

    const groups = [
      ...(psc?.fsGroup !== undefined ? [psc.fsGroup] : []),
      ...(psc?.supplementalGroups ?? []),
    ];
    const env = new Map<string, string>([["PATH", PATH], ...Object.entries(imageEnv)]);
    env.set("HOSTNAME", spec.hostname ?? pod.name);
    for (const [k, v] of kubeletEnv) env.set(k, v);
    const process: ContainerProcess = {
      argv,
      env: [...env],
      uid,
      gid,
      groups,
      // The bounding set; a user other than root has none of it in effect (no ambient capabilities).
      capabilities: capabilities(sc),
      noNewPrivs: sc?.allowPrivilegeEscalation === false,
      ...(c.workingDir ? { workingDir: c.workingDir } : {}),
      hostname: spec.hostname ?? pod.name,
      mounts,
      imagePaths,
    };
    const dir = `${this.#o.dir}/containers/${c.name}`;
    await Deno.mkdir(dir, { recursive: true, mode: 0o700 });
    const script = `${dir}/start.sh`;
    await Deno.writeTextFile(
      script,
      startScript(
        process,
        await readHostRoot(),
        `pod ${pod.namespace}/${pod.name}, container ${c.name}`,
      ),
      { mode: 0o700 },
    );
    this.#processes.set(c.name, process);
    if (this.#stopped) throw new ContainerConfigError("the pod is being removed");
    return this.#o.net.spawn(pod, [
      "unshare",
      "--mount",
      "--uts",
      "--propagation",
      "private",
      "sh",
      script,
    ]);
  }
}
