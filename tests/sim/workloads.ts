/**
 * Ready-made workloads for the simulated cluster: real servers in pods, with
 * their services, as a test on the workstation side expects to find them.
 *
 * | namespace | service | type | ports | pods (process, user) |
 * | --- | --- | --- | --- | --- |
 * | default | `web` | ClusterIP | `http` 80/TCP → `http` | `web-1` (nginx, root) |
 * | other | `web` | ClusterIP | `http` 80/TCP → `http` | `web-1` (nginx, root) |
 * | default | `iperf` | ClusterIP | `iperf` 5201/TCP, `iperf-udp` 5201/UDP | `iperf-1` (iperf3 -s, nobody) |
 * | default | `echo` | ClusterIP | `echo` 7/UDP | `echo-1` (socat UDP echo, nobody) |
 * | default | `db` | headless | `postgres` 5432/TCP → `postgres` | `db-0`, `db-1` (socat TCP echo, nobody; hostname/subdomain set) |
 *
 * Every nginx serves `/` (a line naming the pod: `pod default/web-1 on node1 198.18.0.3`)
 * and `/<N>m`, a random file of N MiB (100 by default) shared by all web pods.
 *
 * @module
 */

import { must } from "../e2e/_env.ts";
import type { ClusterNet, Pod, ServiceInfo } from "./cluster_net.ts";

/** A generated file that every web pod serves. */
export interface LargeFile {
  /** Its path on the machine (to compare checksums). */
  path: string;
  /** Its URL path on every web pod, e.g. `/100m`. */
  urlPath: string;
  size: number;
}

const largeFiles = new WeakMap<ClusterNet, Map<number, Promise<LargeFile>>>();

/**
 * Makes (once per cluster and size) a file of random bytes for large transfers.
 *
 * @param c the cluster (the file lives in its private directory)
 * @param mib the size in MiB
 * @returns the file
 */
export function largeFile(c: ClusterNet, mib = 100): Promise<LargeFile> {
  let byCluster = largeFiles.get(c);
  if (!byCluster) largeFiles.set(c, byCluster = new Map());
  let file = byCluster.get(mib);
  if (!file) {
    file = (async () => {
      await Deno.mkdir(`${c.dir}/files`, { recursive: true });
      const path = `${c.dir}/files/${mib}m`;
      await must(["sh", "-c", `head -c ${mib * 1048576} /dev/urandom > '${path}'`]);
      return { path, urlPath: `/${mib}m`, size: mib * 1048576 };
    })();
    byCluster.set(mib, file);
  }
  return file;
}

function nginxConf(dir: string): string {
  return `
user root;
worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log stderr;
events { worker_connections 1024; }
http {
  access_log off;
  default_type text/plain;
  client_body_temp_path ${dir}/tmp/body;
  proxy_temp_path ${dir}/tmp/proxy;
  fastcgi_temp_path ${dir}/tmp/fastcgi;
  uwsgi_temp_path ${dir}/tmp/uwsgi;
  scgi_temp_path ${dir}/tmp/scgi;
  sendfile on;
  keepalive_requests 100000;
  server {
    listen 80;
    root ${dir}/www;
  }
}
`;
}

/** Options of {@linkcode addWebPod}. */
export interface WebPodOptions {
  namespace: string;
  name: string;
  /** The `app` label; default `web`. */
  app?: string;
  /** Default `node1`. */
  node?: string;
  /** Size of the shared large file in MiB; default 100. */
  largeFileMiB?: number;
}

/**
 * Starts an nginx pod (`app=<app>`, container port `http` 80) whose `/` names
 * the pod and which serves the shared large file. Its `user root;` config and
 * files live in the cluster's private (0700) directory.
 *
 * @param c the cluster
 * @param options namespace, name, label, node
 * @returns the pod (await `whenReady` before using it)
 */
export async function addWebPod(c: ClusterNet, options: WebPodOptions): Promise<Pod> {
  const { namespace, name } = options;
  const dir = `${c.dir}/web/${namespace}-${name}`;
  await Deno.mkdir(`${dir}/www`, { recursive: true });
  await Deno.mkdir(`${dir}/tmp`, { recursive: true });
  await Deno.writeTextFile(`${dir}/nginx.conf`, nginxConf(dir));
  const mib = options.largeFileMiB ?? 100;
  await Deno.symlink(`${c.dir}/files/${mib}m`, `${dir}/www/${mib}m`);
  const pod = await c.addPod({
    namespace,
    name,
    labels: { app: options.app ?? "web" },
    ...(options.node ? { node: options.node } : {}),
    ports: [{ name: "http", containerPort: 80 }],
    run: { cmd: ["nginx", "-c", `${dir}/nginx.conf`, "-e", "stderr"] },
    readiness: { port: 80 },
  });
  await Deno.writeTextFile(
    `${dir}/www/index.html`,
    `pod ${namespace}/${name} on ${pod.node} ${pod.ip}\n`,
  );
  return pod;
}

/**
 * Adds the `web` service (`http` 80 → container port `http`) to a namespace.
 *
 * @param c the cluster
 * @param namespace where
 * @returns the service
 */
export function addWebService(c: ClusterNet, namespace: string): Promise<ServiceInfo> {
  return c.addService({
    namespace,
    name: "web",
    selector: { app: "web" },
    ports: [{ name: "http", port: 80, targetPort: "http" }],
  });
}

/** What {@linkcode deploySamples} started. */
export interface Samples {
  /** `default/web-1`. */
  web: Pod;
  /** `other/web-1`. */
  webOther: Pod;
  iperf: Pod;
  echo: Pod;
  /** `db-0`, `db-1`. */
  db: [Pod, Pod];
  services: {
    web: ServiceInfo;
    webOther: ServiceInfo;
    iperf: ServiceInfo;
    echo: ServiceInfo;
    db: ServiceInfo;
  };
  large: LargeFile;
}

/**
 * Starts every sample workload and service in parallel, and waits until all
 * are ready (in the endpoints, DNAT and DNS).
 *
 * @param c the cluster
 * @param options the large file's size in MiB (default 100)
 * @returns the pods, services and large file
 */
export async function deploySamples(
  c: ClusterNet,
  options: { largeFileMiB?: number } = {},
): Promise<Samples> {
  const mib = options.largeFileMiB ?? 100;
  const large = largeFile(c, mib);
  const dbPod = (i: number) =>
    c.addPod({
      namespace: "default",
      name: `db-${i}`,
      hostname: `db-${i}`,
      subdomain: "db",
      labels: { app: "db" },
      ports: [{ name: "postgres", containerPort: 5432 }],
      run: { cmd: ["socat", "TCP-LISTEN:5432,fork,reuseaddr", "PIPE"], user: "nobody" },
      readiness: { port: 5432 },
    });
  const [web, webOther, iperf, echo, db0, db1, sWeb, sWebOther, sIperf, sEcho, sDb] = await Promise
    .all([
      addWebPod(c, { namespace: "default", name: "web-1", largeFileMiB: mib }),
      addWebPod(c, { namespace: "other", name: "web-1", largeFileMiB: mib }),
      c.addPod({
        namespace: "default",
        name: "iperf-1",
        labels: { app: "iperf" },
        run: { cmd: ["iperf3", "-s", "--forceflush"], user: "nobody" },
        readiness: { port: 5201 },
      }),
      c.addPod({
        namespace: "default",
        name: "echo-1",
        labels: { app: "echo" },
        run: { cmd: ["socat", "UDP4-RECVFROM:7,fork", "PIPE"], user: "nobody" },
        readiness: { port: 7, protocol: "UDP" },
      }),
      dbPod(0),
      dbPod(1),
      addWebService(c, "default"),
      addWebService(c, "other"),
      c.addService({
        namespace: "default",
        name: "iperf",
        selector: { app: "iperf" },
        ports: [
          { name: "iperf", port: 5201 },
          { name: "iperf-udp", port: 5201, protocol: "UDP" },
        ],
      }),
      c.addService({
        namespace: "default",
        name: "echo",
        selector: { app: "echo" },
        ports: [{ name: "echo", port: 7, protocol: "UDP" }],
      }),
      c.addService({
        namespace: "default",
        name: "db",
        clusterIP: "None",
        selector: { app: "db" },
        ports: [{ name: "postgres", port: 5432, targetPort: "postgres" }],
      }),
    ]);
  await Promise.all([web, webOther, iperf, echo, db0, db1].map((p) => p.whenReady));
  return {
    web,
    webOther,
    iperf,
    echo,
    db: [db0, db1],
    services: { web: sWeb, webOther: sWebOther, iperf: sIperf, echo: sEcho, db: sDb },
    large: await large,
  };
}
