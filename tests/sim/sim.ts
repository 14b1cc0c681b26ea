/**
 * The whole simulated cluster: the network ({@linkcode ClusterNet}), the fake
 * API server with its objects, and the controllers ({@linkcode Kubelet}) that
 * make the objects real. What `deno task sim up` runs and what the
 * Kubernetes end-to-end tests start.
 *
 * ```
 *  vif-ws (the workstation)            vif-node1                          the machine (root netns)
 *  kubectl / vif ──TLS──► 198.19.200.1:6443 ─ socat ─► unix socket ─ socat ─► 127.0.0.1:P  fake API server
 *                                      ▲                                        │ authn (tokens) → RBAC (rbac.ts)
 *  a pod ──► 198.19.0.1:443 ── DNAT ───┘                                        │ pods/portforward:
 *                                                                               ▼
 *               ip netns exec <pod> socat TCP4:127.0.0.1:<port> UNIX:…, if that fails TCP6:[::1]:<port>
 *  kubelet probes: ip netns exec <node> curl http://<pod IP>:<port><path>, or socat … TCP:<pod IP>:<port>
 * ```
 *
 * The API server runs in this process, on loopback of the machine's own
 * namespace, and is reached only through two relays: one listening on node
 * 1's LAN address (the workstation's one way into the cluster) and the
 * `default/kubernetes` ClusterIP, DNAT-ed to it on every node as kube-proxy
 * would. `pods/portforward` connects to `localhost:PORT` inside the pod's
 * network namespace as containerd does: tcp4 first, then tcp6 (`::1`), so a
 * port bound to loopback only is reachable this way and no other.
 * {@linkcode Sim.execInPod} runs a command inside a pod as `kubectl exec`
 * would (the sample `client` Deployment is there to `curl` Services from
 * inside the cluster).
 *
 * Users, each with a bearer token and a kubeconfig context:
 *
 * | user | context | may |
 * | --- | --- | --- |
 * | `admin` (group `system:masters`) | `vif-sim` | anything |
 * | `limited` | `vif-sim-limited` | get, list and watch all but Secrets (ClusterRole `limited-view`); no port-forward |
 * | `dev` | `vif-sim-dev` | nothing but `kubectl auth can-i`: a developer before the admin grants them vif's Role |
 * | `system:serviceaccount:<ns>:<sa>` | (a pod's mounted token) | what its bindings grant |
 *
 * Every request is authorized by RBAC from the objects in the store (see
 * `rbac.ts`), as kube-apiserver does: at start the cluster has what a new
 * one has (`cluster-admin` for `system:masters`, `system:basic-user` for
 * every authenticated user, `system:auth-delegator` unbound) and
 * `limited`'s binding. A pod's service-account token is issued for its
 * projected volume (bound to the pod, its audience and expiry, rotated by the
 * kubelet), so the manager gets exactly what its ClusterRole grants, and a
 * token for another audience is good for a TokenReview only.
 *
 * @module
 */

import { makeTestTls } from "../_tls.ts";
import { DENO, type Env, type Output, type Proc, ROOT, run, waitUntil } from "../e2e/_env.ts";
import { startRelay } from "./_relay.ts";
import {
  API_AUDIENCE,
  type ApiServer,
  issueServiceAccountToken,
  type KubeObject,
  startApiServer,
  Store,
  type TokenInfo,
} from "./apiserver/mod.ts";
import type { PodConnection } from "./apiserver/portforward.ts";
import {
  CLUSTER_DNS_IP,
  ClusterNet,
  KUBERNETES_SERVICE_IP,
  type Node,
  nodeLanIp,
  type Pod,
  SERVICE_CIDR,
} from "./cluster_net.ts";
import { denoForNobody, type NobodyDeno } from "./deno_nobody.ts";
import { debianKubectl } from "./apiserver/_testing.ts";
import { Kubelet, vifMainCommand } from "./kubelet.ts";
import { bootstrapRbac, rbacAuthorize } from "./rbac.ts";
import { setprivArgv } from "./_runtime.ts";
import { type LargeFile, largeFile } from "./workloads.ts";

/** Where the workstation reaches the API server: node 1's LAN address. */
export const API_IP = nodeLanIp(1);
/** The API server's port on node 1. */
export const API_PORT = 6443;
/** The kubeconfig context with the admin token. */
export const SIM_CONTEXT = "vif-sim";
/** The kubeconfig context whose user may not port-forward nor read secrets. */
export const SIM_LIMITED_CONTEXT = "vif-sim-limited";
/** The kubeconfig context of user `dev`, who has no RBAC bindings until someone grants them. */
export const SIM_DEV_CONTEXT = "vif-sim-dev";

/** Options of {@linkcode Sim.start}. */
export interface SimOptions {
  /** Fixed namespace names `<base>-ws`, `<base>-node1`, … (`sim up` uses `vif`). */
  base?: string;
  /** The start of random namespace names; default `vs`. */
  prefix?: string;
  /** Deploy the sample workloads (see {@linkcode deploySimSamples}). Default false. */
  samples?: boolean;
  /** Size of the large file web pods serve, in MiB; default 100. */
  largeFileMiB?: number;
  /** Where to write the kubeconfig; default `<dir>/kubeconfig`. */
  kubeconfigPath?: string;
  /** Lines from the API server (every request) and the controllers. Default: none. */
  log?: (line: string) => void;
}

/**
 * A running simulated cluster. See the module documentation.
 */
export class Sim {
  /** The network: namespaces, nodes, pods, ClusterIPs, DNS. */
  readonly net: ClusterNet;
  /** The fake API server (on the machine's loopback; reach it through {@linkcode Sim.apiUrl}). */
  readonly api: ApiServer;
  /** The objects. */
  readonly store: Store;
  /** The controllers. */
  readonly kubelet: Kubelet;
  /** `https://198.19.200.1:6443`, as the workstation and the kubeconfig see it. */
  readonly apiUrl = `https://${API_IP}:${API_PORT}`;
  /** The cluster CA (PEM), which signed the API server's certificate. */
  readonly caPem: string;
  /** The kubeconfig with contexts `vif-sim`, `vif-sim-limited` and `vif-sim-dev`. */
  readonly kubeconfig: string;
  /** The admin's bearer token. */
  readonly adminToken: string;
  /** The limited user's bearer token. */
  readonly limitedToken: string;
  /** User `dev`'s bearer token (no bindings at start). */
  readonly devToken: string;

  private constructor(fields: {
    net: ClusterNet;
    api: ApiServer;
    kubelet: Kubelet;
    caPem: string;
    kubeconfig: string;
    adminToken: string;
    limitedToken: string;
    devToken: string;
    tokens: Record<string, TokenInfo>;
  }) {
    this.net = fields.net;
    this.api = fields.api;
    this.store = fields.api.store;
    this.kubelet = fields.kubelet;
    this.caPem = fields.caPem;
    this.kubeconfig = fields.kubeconfig;
    this.adminToken = fields.adminToken;
    this.limitedToken = fields.limitedToken;
    this.devToken = fields.devToken;
    this.#tokens = fields.tokens;
  }

  #tokens: Record<string, TokenInfo>;

  /**
   * Makes the API server accept a bearer token from now on, as an identity
   * provider issuing a token would (an exec credential plugin's, say).
   *
   * @param token the token
   * @param info who it stands for
   */
  grantToken(token: string, info: TokenInfo): void {
    this.#tokens[token] = info;
  }

  /**
   * Makes the API server answer 401 to a token from now on, as when it expired.
   *
   * @param token the token
   */
  revokeToken(token: string): void {
    delete this.#tokens[token];
  }

  /** The workstation's namespace. */
  get ws(): string {
    return this.net.ws;
  }

  /**
   * Builds the cluster; `env`'s cleanup takes all of it down.
   *
   * @param env the environment that owns it
   * @param options names, samples, kubeconfig path, log
   * @returns the running cluster, its controllers started (and its samples ready when asked)
   */
  static async start(env: Env, options: SimOptions = {}): Promise<Sim> {
    const log = options.log ?? (() => {});
    const net = await ClusterNet.create(env, {
      ...(options.base ? { base: options.base } : {}),
      ...(options.prefix ? { prefix: options.prefix } : {}),
    });
    const tls = await makeTestTls({
      extraSans: [
        `IP:${API_IP}`,
        `IP:${KUBERNETES_SERVICE_IP}`,
        "IP:127.0.0.1",
        "DNS:kubernetes",
        "DNS:kubernetes.default",
        "DNS:kubernetes.default.svc",
        "DNS:kubernetes.default.svc.cluster.local",
        "DNS:localhost",
      ],
    });
    env.defer(() => tls.cleanup());

    const token = () => crypto.randomUUID().replaceAll("-", "");
    const adminToken = `admin-${token()}`;
    const limitedToken = `limited-${token()}`;
    const devToken = `dev-${token()}`;
    const tokens: Record<string, TokenInfo> = {
      [adminToken]: { user: "admin", groups: ["system:masters"] },
      [limitedToken]: { user: "limited" },
      [devToken]: { user: "dev" },
    };
    const store = new Store({ serviceCidr: SERVICE_CIDR, rootCaPem: tls.caPem });
    for (const o of bootstrapRbac({ viewers: ["limited"] })) store.create(o);
    // The cluster DNS's Service first, so no other Service takes its address.
    store.create({
      apiVersion: "v1",
      kind: "Service",
      metadata: {
        name: "kube-dns",
        namespace: "kube-system",
        labels: { "k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS" },
      },
      spec: {
        clusterIP: CLUSTER_DNS_IP,
        selector: { "k8s-app": "kube-dns" },
        ports: [
          { name: "dns", port: 53, targetPort: 53, protocol: "UDP" },
          { name: "dns-tcp", port: 53, targetPort: 53, protocol: "TCP" },
        ],
      },
    } as KubeObject);

    const nobodyRuntimes = new Map<number, Promise<NobodyDeno>>();
    const imageFiles = imageEtc(`${net.dir}/vif-image`);
    const kubelet = new Kubelet({
      store,
      net,
      dir: `${net.dir}/kubelet`,
      requestToken: (spec) =>
        issueServiceAccountToken(tokens, store, spec, { apiAudiences: [API_AUDIENCE] }),
      vifRuntime: async (uid) => {
        let r = nobodyRuntimes.get(uid);
        if (!r) {
          r = denoForNobody(env, { uid, parent: "/var/tmp" });
          nobodyRuntimes.set(uid, r);
        }
        const nobody = await r;
        return {
          cmd: vifMainCommand(),
          env: nobody.env,
          paths: [ROOT, DENO.replace(/\/[^/]*$/, ""), nobody.denoDir, nobody.env.HOME!],
          files: await imageFiles,
        };
      },
      log,
    });
    const api = await startApiServer({
      hostname: "127.0.0.1",
      port: 0,
      tls: { cert: tls.certPem, key: tls.keyPem },
      tokens,
      apiAudiences: [API_AUDIENCE],
      serviceCidr: SERVICE_CIDR,
      store,
      rootCaPem: tls.caPem,
      advertiseAddress: API_IP,
      advertisePort: API_PORT,
      log,
      authorize: (a) => rbacAuthorize(store, a),
      dialPod: (namespace, pod, _ip, port) => {
        const p = kubelet.pod(namespace, pod);
        if (!p) return Promise.reject(new Error(`pod "${pod}" is not running on any node`));
        return dialInPod(p, port);
      },
      podLogs: (ref) =>
        kubelet.containerLog(ref.namespace, ref.pod, ref.container, ref.containerID)?.lines(),
    });
    env.defer(() => api.close());

    // The relays: node 1's :6443 → a unix socket → the server on the machine's loopback.
    const sock = `${net.dir}/apiserver.sock`;
    const outer = startRelay(
      Deno.listen({ transport: "unix", path: sock }),
      () => Deno.connect({ hostname: "127.0.0.1", port: api.port }),
    );
    env.defer(() => outer.close());
    await Deno.chmod(sock, 0o600);
    const node1 = net.nodes[0]!;
    const inner = net.spawn(node1.netns, [
      DENO,
      "run",
      "-A",
      "--config",
      `${ROOT}/deno.json`,
      `${ROOT}/tests/sim/_relay.ts`,
      API_IP,
      String(API_PORT),
      sock,
    ]);
    await inner.waitFor(/^listening$/, 30_000);
    await net.addService({
      namespace: "default",
      name: "kubernetes",
      clusterIP: KUBERNETES_SERVICE_IP,
      ports: [{ name: "https", port: 443, targetPort: API_PORT }],
      endpoints: [API_IP],
    });

    kubelet.start();
    env.defer(() => kubelet.close());

    const kubeconfig = options.kubeconfigPath ?? `${net.dir}/kubeconfig`;
    await Deno.writeTextFile(
      kubeconfig,
      simKubeconfig(`https://${API_IP}:${API_PORT}`, {
        caPem: tls.caPem,
        adminToken,
        limitedToken,
        devToken,
      }),
      { mode: 0o600 },
    );
    const sim = new Sim({
      net,
      api,
      kubelet,
      caPem: tls.caPem,
      kubeconfig,
      adminToken,
      limitedToken,
      devToken,
      tokens,
    });
    if (options.samples) await deploySimSamples(sim, { largeFileMiB: options.largeFileMiB ?? 100 });
    return sim;
  }

  /**
   * Adds a node (network, routes, kube-proxy table) and its Node object.
   *
   * @returns the node
   */
  async addNode(): Promise<Node> {
    const node = await this.net.addNode();
    this.kubelet.publishNode(node);
    return node;
  }

  /**
   * Runs a command in the workstation namespace with `KUBECONFIG` set.
   *
   * @param cmd the program and its arguments
   * @param options more environment, stdin
   * @returns its output
   */
  exec(
    cmd: string[],
    options: { env?: Record<string, string>; stdin?: string } = {},
  ): Promise<Output> {
    return this.net.exec(this.ws, cmd, {
      env: { ...Deno.env.toObject(), KUBECONFIG: this.kubeconfig, ...options.env },
      ...(options.stdin !== undefined ? { stdin: options.stdin } : {}),
    });
  }

  /**
   * Runs a command on another workstation (see {@linkcode ClusterNet.addWorkstation})
   * with `KUBECONFIG` set.
   *
   * @param ns the workstation's namespace
   * @param cmd the program and its arguments
   * @param options more environment
   * @returns its output
   */
  execOn(
    ns: string,
    cmd: string[],
    options: { env?: Record<string, string> } = {},
  ): Promise<Output> {
    return this.net.exec(ns, cmd, {
      env: { ...Deno.env.toObject(), KUBECONFIG: this.kubeconfig, ...options.env },
    });
  }

  /**
   * Runs Debian's kubectl in the workstation namespace, as a user would.
   *
   * @param args kubectl's arguments
   * @returns its output
   */
  async kubectl(...args: string[]): Promise<Output> {
    return this.exec([await debianKubectl(), ...args]);
  }

  /**
   * `kubectl scale deployment`, with Debian's kubectl.
   *
   * @param namespace the Deployment's namespace
   * @param name its name
   * @param replicas how many pods it should have
   * @returns kubectl's output
   */
  scale(namespace: string, name: string, replicas: number): Promise<Output> {
    return this.kubectl("-n", namespace, "scale", "deployment", name, `--replicas=${replicas}`);
  }

  /**
   * Starts a long-running command in the workstation namespace with `KUBECONFIG` set.
   *
   * @param cmd the program and its arguments
   * @param options more environment
   * @returns the process (stopped on cleanup)
   */
  spawn(cmd: string[], options: { env?: Record<string, string> } = {}): Proc {
    return this.net.spawn(this.ws, cmd, {
      env: { ...Deno.env.toObject(), KUBECONFIG: this.kubeconfig, ...options.env },
    });
  }

  /**
   * Waits until `count` pods matching `selector` in `namespace` are Ready.
   *
   * @param namespace the namespace
   * @param selector a label selector, e.g. `app=web`
   * @param count how many; default 1
   * @param ms the limit; default 60 s
   * @returns the ready pods
   * @throws {Error} on time-out, with the pods' status
   */
  async waitReady(
    namespace: string,
    selector: string,
    count = 1,
    ms = 60_000,
  ): Promise<KubeObject[]> {
    const ready = () =>
      this.store.list("pods", { namespace, labelSelector: selector }).filter((p) =>
        ((p as { status?: { conditions?: { type: string; status: string }[] } }).status
          ?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True")
      );
    try {
      await waitUntil(() => ready().length >= count, ms, "pods");
    } catch {
      const pods = this.store.list("pods", { namespace, labelSelector: selector });
      throw new Error(
        `Timed out waiting for ${count} ready pods "${selector}" in ${namespace}: ${
          JSON.stringify(pods.map((p) => ({ name: p.metadata.name, status: p.status })))
        }`,
      );
    }
    return ready();
  }

  /**
   * Runs a command inside a pod as `kubectl exec` would: in the pod's
   * network namespace (its address, loopback and resolv.conf with the
   * pod's search path) and in one container's mounts, hostname, user,
   * capabilities and environment.
   *
   * @example
   * ```ts ignore
   * const out = await sim.execInPod("default", "deployment/client", ["curl", "-s", "http://web.default"]);
   * ```
   *
   * @param namespace the pod's namespace
   * @param pod the pod's name, or `deployment/NAME` for a ready pod of that Deployment
   * @param cmd the program and its arguments
   * @param options the container (default the first app container), text for stdin
   * @returns exit code, stdout, stderr
   * @throws {Error} when there is no such pod, or its container does not run
   */
  async execInPod(
    namespace: string,
    pod: string,
    cmd: string[],
    options: { container?: string; stdin?: string } = {},
  ): Promise<Output> {
    const name = this.#podName(namespace, pod);
    const c = this.kubelet.container(namespace, name, options.container);
    const pid = c?.proc?.pid;
    if (!c || !c.process || pid === undefined) {
      throw new Error(
        `Cannot exec in pod "${namespace}/${name}": container "${
          options.container ?? c?.name ?? ""
        }" is not running`,
      );
    }
    const p = c.process;
    return await run([
      "nsenter",
      `--target=${pid}`,
      "--mount",
      "--uts",
      "--net",
      ...setprivArgv(p),
      "env",
      "-i",
      "-C",
      p.workingDir ?? "/",
      ...p.env.map(([k, v]) => `${k}=${v}`),
      ...cmd,
    ], options.stdin !== undefined ? { stdin: options.stdin } : {});
  }

  #podName(namespace: string, pod: string): string {
    const m = /^(deployment|deploy|deployments)(\.apps)?\/(.+)$/.exec(pod);
    if (!m) return pod;
    const d = this.store.get({ resource: "deployments", namespace, name: m[3]! });
    const selector =
      (d?.spec as { selector?: { matchLabels?: Record<string, string> } } | undefined)
        ?.selector?.matchLabels;
    if (!selector) throw new Error(`Cannot exec in "${namespace}/${pod}": no such Deployment`);
    const text = Object.entries(selector).map(([k, v]) => `${k}=${v}`).join(",");
    const ready = this.store.list("pods", { namespace, labelSelector: text }).filter((p) =>
      !p.metadata.deletionTimestamp &&
      ((p as { status?: { conditions?: { type: string; status: string }[] } }).status
        ?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True")
    );
    if (!ready[0]) throw new Error(`Cannot exec in "${namespace}/${pod}": no ready pod`);
    return ready[0].metadata.name!;
  }

  /**
   * The running pod behind a Pod object (its namespace, address, process).
   *
   * @param namespace the pod's namespace
   * @param name the pod's name
   * @returns the pod, or undefined
   */
  pod(namespace: string, name: string): Pod | undefined {
    return this.kubelet.pod(namespace, name);
  }
}

/** The credentials of {@linkcode simKubeconfig}. */
export interface SimKubeconfigOptions {
  /** The cluster CA (PEM). */
  caPem: string;
  /** The admin's token. */
  adminToken: string;
  /** The limited user's token. */
  limitedToken: string;
  /** User `dev`'s token. */
  devToken: string;
}

/**
 * The kubeconfig of the simulated cluster: cluster `vif-sim` (server and CA
 * inline), contexts `vif-sim` (admin, the current one), `vif-sim-limited` and
 * `vif-sim-dev`.
 *
 * @param server the API server's URL
 * @param options the CA and the users' tokens
 * @returns the YAML text
 */
export function simKubeconfig(server: string, options: SimKubeconfigOptions): string {
  const ca = btoa(options.caPem);
  const user = (name: string, token: string) => [
    `- name: ${name}`,
    "  user:",
    `    token: ${token}`,
  ];
  const context = (name: string, userName: string) => [
    `- name: ${name}`,
    "  context:",
    `    cluster: ${SIM_CONTEXT}`,
    `    user: ${userName}`,
    "    namespace: default",
  ];
  return [
    "apiVersion: v1",
    "kind: Config",
    "clusters:",
    `- name: ${SIM_CONTEXT}`,
    "  cluster:",
    `    server: ${server}`,
    `    certificate-authority-data: ${ca}`,
    "users:",
    ...user(`${SIM_CONTEXT}-admin`, options.adminToken),
    ...user(`${SIM_CONTEXT}-limited`, options.limitedToken),
    ...user(`${SIM_CONTEXT}-dev`, options.devToken),
    "contexts:",
    ...context(SIM_CONTEXT, `${SIM_CONTEXT}-admin`),
    ...context(SIM_LIMITED_CONTEXT, `${SIM_CONTEXT}-limited`),
    ...context(SIM_DEV_CONTEXT, `${SIM_CONTEXT}-dev`),
    `current-context: ${SIM_CONTEXT}`,
    "",
  ].join("\n");
}

/**
 * Connects to `localhost:PORT` inside a pod's network namespace, as the
 * kubelet's runtime (containerd) does for `pods/portforward`: tcp4
 * `127.0.0.1:PORT` first and, when that fails, tcp6 `[::1]:PORT`; when both
 * fail, the error names both attempts in containerd's words (`failed to
 * connect to localhost:PORT inside namespace "…", IPv4: dial tcp4 … IPv6
 * dial tcp6 … `, its trailing space included).
 *
 * Deno cannot dial from another namespace, so a `socat` in the pod's
 * namespace dials the port and joins it to a Unix socket this process
 * listens on: the bytes then move through a plain socket here (a pipe to
 * socat's standard input and output went through web streams and a copy per
 * chunk, and made the simulated API server the slowest part of the
 * port-forward path). Resolves once connected.
 *
 * @param pod the pod
 * @param port the port
 * @returns the connection
 * @throws {Error} when neither address accepts
 */
export async function dialInPod(pod: Pod, port: number): Promise<PodConnection> {
  const dir = await Deno.makeTempDir({ prefix: "vif-sim-pf-" });
  const path = `${dir}/pod.sock`;
  const listener = Deno.listen({ transport: "unix", path });
  // One accept for both attempts: only a socat that reached the pod's port connects back.
  const accepted = listener.accept();
  accepted.catch(() => {});
  try {
    const v4 = await socatToPod(pod, `TCP4:127.0.0.1:${port}`, path, accepted);
    if ("conn" in v4) return podConnection(v4.conn, v4.child);
    const v6 = await socatToPod(pod, `TCP6:[::1]:${port}`, path, accepted);
    if ("conn" in v6) return podConnection(v6.conn, v6.child);
    throw new Error(
      `failed to connect to localhost:${port} inside namespace "${pod.netns}", ` +
        `IPv4: dial tcp4 127.0.0.1:${port}: ${v4.error} IPv6 dial tcp6 [::1]:${port}: ${v6.error} `,
    );
  } finally {
    try {
      listener.close();
    } catch { /* closed */ }
    Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/**
 * Starts `socat <address> UNIX-CONNECT:<path>` in the pod; the pod's address
 * is opened first, so socat connects back only once the pod accepted.
 *
 * @returns the connection and its socat, or why the pod's address failed (Go's wording: `connect: connection refused`)
 */
async function socatToPod(
  pod: Pod,
  address: string,
  path: string,
  accepted: Promise<Deno.UnixConn>,
): Promise<{ conn: Deno.UnixConn; child: Deno.ChildProcess } | { error: string }> {
  const child = new Deno.Command("ip", {
    args: [
      "netns",
      "exec",
      pod.netns,
      "socat",
      "-b",
      "131072",
      `${address},nodelay`,
      `UNIX-CONNECT:${path}`,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text().catch(() => "");
  const failed = child.status.then(async (s) => {
    const text = await stderr;
    const line = / E (.*)$/m.exec(text)?.[1] ?? (text.trim() || `socat exit ${s.code}`);
    // `connect(6, AF=2 127.0.0.1:80, 16): Connection refused` → `connect: connection refused`
    const errno = /^connect\(.*\): (.*)$/.exec(line)?.[1];
    return { error: errno ? `connect: ${errno.toLowerCase()}` : line };
  });
  const r = await Promise.race([accepted.then((conn) => ({ conn })), failed]);
  return "conn" in r ? { conn: r.conn, child } : r;
}

function podConnection(conn: Deno.UnixConn, child: Deno.ChildProcess): PodConnection {
  let closed = false;
  return {
    read: (p) => conn.read(p),
    write: (p) => conn.write(p),
    close(): void {
      if (closed) return;
      closed = true;
      try {
        conn.close();
      } catch { /* closed */ }
      // socat ends when its Unix side closes; make sure it does.
      setTimeout(() => {
        try {
          child.kill("SIGTERM");
        } catch { /* ended */ }
      }, 1000);
      child.status.catch(() => {});
    },
  };
}

// --- Sample workloads -------------------------------------------------------

/** What {@linkcode deploySimSamples} made. */
export interface SimSamples {
  large: LargeFile;
}

/** A UDP echo on port 7 in one process. */
const UDP_ECHO = `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 7))
while True:
    data, peer = s.recvfrom(65535)
    s.sendto(data, peer)
`;

function nginxConf(www: string): string {
  return `
user root;
worker_processes 1;
daemon off;
pid /run/nginx.pid;
error_log stderr;
events { worker_connections 1024; }
http {
  access_log off;
  default_type text/plain;
  client_body_temp_path /run/body;
  proxy_temp_path /run/proxy;
  fastcgi_temp_path /run/fastcgi;
  uwsgi_temp_path /run/uwsgi;
  scgi_temp_path /run/scgi;
  sendfile on;
  keepalive_requests 100000;
  server {
    listen 80;
    root ${www};
    location = / { return 200 "pod $hostname $server_addr\\n"; }
  }
}
`;
}

function deployment(
  namespace: string,
  name: string,
  container: Record<string, unknown>,
  options: { replicas?: number; runAsUser?: number } = {},
): KubeObject {
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name, namespace, labels: { app: name } },
    spec: {
      replicas: options.replicas ?? 1,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: { labels: { app: name } },
        spec: {
          ...(options.runAsUser !== undefined
            ? { securityContext: { runAsUser: options.runAsUser, runAsGroup: options.runAsUser } }
            : {}),
          containers: [{ name, ...container }],
        },
      },
    },
  } as KubeObject;
}

function service(
  namespace: string,
  name: string,
  ports: Array<Record<string, unknown>>,
  headless = false,
): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name, namespace, labels: { app: name } },
    spec: { ...(headless ? { clusterIP: "None" } : {}), selector: { app: name }, ports },
  } as KubeObject;
}

/**
 * Creates the sample workloads through the API objects (so `kubectl get`
 * shows them) and waits until they are ready:
 *
 * | namespace | service | type | ports | pods |
 * | --- | --- | --- | --- | --- |
 * | default | `web` | ClusterIP | `http` 80/TCP | Deployment `web`: nginx, `/` says `pod <name> <ip>`, `/<N>m` a random file |
 * | other | `web` | ClusterIP | `http` 80/TCP | Deployment `web`, the same |
 * | default | `iperf` | ClusterIP | `iperf` 5201/TCP, `iperf-udp` 5201/UDP | Deployment `iperf`: `iperf3 -s` as nobody |
 * | default | `echo` | ClusterIP | `echo` 7/UDP | Deployment `echo`: a one-process UDP echo (python3) as nobody |
 * | default | `db` | headless | `postgres` 5432/TCP | Pods `db-0`, `db-1` (hostname, subdomain `db`): socat TCP echo |
 * | default | — | — | — | Deployment `client`: `sleep infinity` as nobody, to run `curl` in with {@linkcode Sim.execInPod} (`deployment/client`) |
 *
 * @param sim the cluster
 * @param options the large file's size in MiB
 * @returns the large file
 */
export async function deploySimSamples(
  sim: Sim,
  options: { largeFileMiB?: number } = {},
): Promise<SimSamples> {
  const store = sim.store;
  const mib = options.largeFileMiB ?? 100;
  const large = await largeFile(sim.net, mib);
  const www = `${sim.net.dir}/samples/www`;
  await Deno.mkdir(www, { recursive: true });
  await Deno.symlink(large.path, `${www}${large.urlPath}`);
  const conf = `${sim.net.dir}/samples/nginx.conf`;
  await Deno.writeTextFile(conf, nginxConf(www));

  if (!store.get({ resource: "namespaces", name: "other" })) {
    store.create({ apiVersion: "v1", kind: "Namespace", metadata: { name: "other" } });
  }
  const web = (ns: string) => [
    deployment(ns, "web", {
      image: "nginx:1.27",
      command: ["nginx", "-c", conf, "-e", "stderr"],
      ports: [{ name: "http", containerPort: 80, protocol: "TCP" }],
      readinessProbe: { tcpSocket: { port: "http" } },
    }),
    service(ns, "web", [{ name: "http", port: 80, targetPort: "http", protocol: "TCP" }]),
  ];
  const objects: KubeObject[] = [
    ...web("default"),
    ...web("other"),
    deployment("default", "iperf", {
      image: "networkstatic/iperf3:latest",
      command: ["iperf3", "-s", "--forceflush"],
      ports: [{ name: "iperf", containerPort: 5201, protocol: "TCP" }],
    }, { runAsUser: 65534 }),
    service("default", "iperf", [
      { name: "iperf", port: 5201, targetPort: 5201, protocol: "TCP" },
      { name: "iperf-udp", port: 5201, targetPort: 5201, protocol: "UDP" },
    ]),
    deployment("default", "echo", {
      // One process answering every datagram, as an echo service would; socat's
      // UDP4-RECVFROM forks per datagram, which capped the bench's UDP figures.
      image: "python:3-alpine",
      command: ["python3", "-c", UDP_ECHO],
      ports: [{ name: "echo", containerPort: 7, protocol: "UDP" }],
    }, { runAsUser: 65534 }),
    service("default", "echo", [{ name: "echo", port: 7, targetPort: 7, protocol: "UDP" }]),
    // A pod to call services from inside the cluster (curl is the machine's).
    deployment("default", "client", {
      image: "curlimages/curl:8.14.1",
      command: ["sleep", "infinity"],
    }, { runAsUser: 65534 }),
    service("default", "db", [{
      name: "postgres",
      port: 5432,
      targetPort: "postgres",
      protocol: "TCP",
    }], true),
    ...[0, 1].map((i) => ({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name: `db-${i}`, namespace: "default", labels: { app: "db" } },
      spec: {
        hostname: `db-${i}`,
        subdomain: "db",
        securityContext: { runAsUser: 65534, runAsGroup: 65534 },
        containers: [{
          name: "db",
          image: "alpine/socat:latest",
          command: ["socat", "TCP-LISTEN:5432,fork,reuseaddr", "PIPE"],
          ports: [{ name: "postgres", containerPort: 5432, protocol: "TCP" }],
        }],
      },
    } as KubeObject)),
  ];
  for (const o of objects) store.create(o);
  await Promise.all([
    sim.waitReady("default", "app=web"),
    sim.waitReady("other", "app=web"),
    sim.waitReady("default", "app=iperf"),
    sim.waitReady("default", "app=echo"),
    sim.waitReady("default", "app=client"),
    sim.waitReady("default", "app=db", 2),
  ]);
  await sim.kubelet.settled();
  return { large };
}

/**
 * The users and groups of vif's image (distroless `nonroot`: uid and gid
 * 65532), as files to mount over the machine's `/etc/passwd` and
 * `/etc/group` in its containers: the machine's entries, and the image's
 * where the machine has none.
 *
 * @param dir a directory of the simulation's to write them in
 * @returns the files
 */
async function imageEtc(dir: string): Promise<Array<{ path: string; host: string }>> {
  await Deno.mkdir(dir, { recursive: true });
  const files: Array<{ path: string; host: string }> = [];
  for (
    const [name, entry] of [
      ["passwd", "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin"],
      ["group", "nonroot:x:65532:"],
    ] as const
  ) {
    const machine = await Deno.readTextFile(`/etc/${name}`).catch(() => "");
    const lines = machine.split("\n").filter((l) => l !== "");
    const has = lines.some((l) => l.split(":")[2] === "65532");
    const host = `${dir}/${name}`;
    await Deno.writeTextFile(host, [...lines, ...(has ? [] : [entry])].join("\n") + "\n", {
      mode: 0o644,
    });
    await Deno.chmod(host, 0o644);
    files.push({ path: `/etc/${name}`, host });
  }
  return files;
}
