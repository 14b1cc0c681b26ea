/**
 * `vif gather-logs` in-process against the simulated API server (logs fed
 * through its `podLogs` source) and a stand-in daemon on a control socket
 * that answers `status` as a connected daemon would; the archive is read
 * back with GNU tar.
 *
 * ```
 *   main(["gather-logs", …]) ──unix socket──► fake daemon (status: connected, context sim, manager in ops-vif)
 *        │                  ──HTTPS (alice)──► withCluster(): Deployment, pods, pods/log
 *        └──► vif-logs-….tar.gz ──tar -xzf──► files checked
 * ```
 */

import { assert, assertEquals, assertMatch } from "../../tests/_assert.ts";
import { type TestCluster, withCluster as withApiServer } from "../../tests/_apiserver.ts";
import type { KubeObject } from "../../tests/sim/apiserver/mod.ts";
import { main, memoryIo } from "./mod.ts";
import { credentialsPlan } from "./gather_logs.ts";

const MANAGER_NS = "ops-vif";
const MANAGER_POD = "traffic-manager-6f7c9-abcde";
const AGENT_POD = "web-7d9f8-x2l4k";
const NODE = "node-a7";
const POD_IP = "198.18.3.4";
const SERVICE_IP = "198.19.0.20";

interface Setup {
  cluster: TestCluster;
  env: Record<string, string>;
  stateDir: string;
  out: string;
}

/** The status a connected daemon answers. */
function connectedStatus() {
  return {
    schema: 1,
    daemon: { running: true, version: "0.0.0", pid: 4242, uptimeSeconds: 10, logFile: null },
    connected: true,
    connection: {
      state: "connected",
      context: "sim",
      cluster: "sim",
      namespace: "shop",
      manager: {
        namespace: MANAGER_NS,
        version: "0.0.0",
        address: "127.0.0.1:8081",
        pod: MANAGER_POD,
        via: "port-forward",
        tunnel: "mux",
      },
      tun: { name: "vif0", mtu: 65535, addresses: ["240.0.0.1/24"] },
      intercepts: [{
        id: "i1",
        namespace: "shop",
        workload: "web",
        port: 8080,
        local: "127.0.0.1:8080",
        holder: "alice@laptop",
        mountPoint: null,
        pods: [AGENT_POD],
        connections: 0,
        variables: 3,
      }],
    },
    lastError: null,
  };
}

/** A stand-in daemon: answers every request on its control socket with the status. */
function fakeDaemon(stateDir: string): { close(): void } {
  const listener = Deno.listen({ transport: "unix", path: `${stateDir}/daemon.sock` });
  const conns = new Set<Deno.Conn>();
  (async () => {
    for await (const conn of listener) {
      conns.add(conn);
      (async () => {
        const buf = new Uint8Array(65536);
        let text = "";
        try {
          for (;;) {
            const n = await conn.read(buf);
            if (n === null) break;
            text += new TextDecoder().decode(buf.subarray(0, n));
            let nl;
            while ((nl = text.indexOf("\n")) >= 0) {
              const request = JSON.parse(text.slice(0, nl)) as { id: number };
              text = text.slice(nl + 1);
              const reply = { id: request.id, result: connectedStatus() };
              await conn.write(new TextEncoder().encode(JSON.stringify(reply) + "\n"));
            }
          }
        } catch { /* closed */ }
        conns.delete(conn);
      })();
    }
  })().catch(() => {});
  return {
    close() {
      listener.close();
      for (const c of conns) c.close();
    },
  };
}

function create(c: TestCluster, o: Record<string, unknown>): void {
  c.store.create(o as KubeObject);
}

/** The manager in ops-vif (restarted once), an agent's pod and a plain pod in shop, a Secret. */
function objects(c: TestCluster): void {
  for (const name of [MANAGER_NS, "shop"]) {
    create(c, { apiVersion: "v1", kind: "Namespace", metadata: { name } });
  }
  const labels = {
    "app.kubernetes.io/name": "traffic-manager",
    "app.kubernetes.io/part-of": "vif",
  };
  create(c, {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: {
      name: "traffic-manager",
      namespace: MANAGER_NS,
      labels,
      managedFields: [{ manager: "vif", operation: "Apply" }],
    },
    spec: {
      selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        spec: { containers: [{ name: "traffic-manager", image: "ghcr.io/vif-dev/vif:0.0.0" }] },
      },
    },
  });
  const running = (id: string) => ({
    containerID: id,
    state: { running: { startedAt: "2025-01-01T00:00:00Z" } },
  });
  create(c, {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: MANAGER_POD,
      namespace: MANAGER_NS,
      labels,
      managedFields: [{ manager: "kubelet" }],
    },
    spec: {
      nodeName: NODE,
      containers: [{ name: "traffic-manager", image: "ghcr.io/vif-dev/vif:0.0.0" }],
    },
    status: {
      phase: "Running",
      podIP: POD_IP,
      containerStatuses: [{
        name: "traffic-manager",
        ...running("sim://m-1"),
        restartCount: 1,
        lastState: { terminated: { exitCode: 1, containerID: "sim://m-0" } },
      }],
    },
  });
  create(c, {
    apiVersion: "v1",
    kind: "Pod",
    metadata: {
      name: AGENT_POD,
      namespace: "shop",
      labels: { app: "web", "pod-template-hash": "7d9f8" },
      ownerReferences: [{
        apiVersion: "apps/v1",
        kind: "ReplicaSet",
        name: "web-7d9f8",
        uid: "u1",
      }],
    },
    spec: {
      nodeName: NODE,
      containers: [
        { name: "web", image: "nginx:1" },
        {
          name: "vif-agent",
          image: "vif:0",
          env: [{ name: "VIF_APP_DB_PASSWORD", value: "hunter2" }],
        },
      ],
    },
    status: {
      phase: "Running",
      podIP: "198.18.3.9",
      containerStatuses: [
        { name: "web", ...running("sim://w-0"), restartCount: 0 },
        { name: "vif-agent", ...running("sim://a-0"), restartCount: 0 },
      ],
    },
  });
  create(c, {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: "db-0", namespace: "shop" },
    spec: { nodeName: NODE, containers: [{ name: "db", image: "postgres:16" }] },
    status: { phase: "Running", containerStatuses: [{ name: "db", ...running("sim://d-0") }] },
  });
  create(c, {
    apiVersion: "v1",
    kind: "Secret",
    metadata: { name: "traffic-manager-tls", namespace: MANAGER_NS },
    data: { "tls.key": btoa("not for the archive") },
  });
  const lines: Record<string, string[]> = {
    "sim://m-1": [
      `manager: session from alice@laptop on ${NODE}`,
      `manager: dial web.shop.svc.cluster.local ${SERVICE_IP}:80 for shop/${AGENT_POD}`,
      "manager: token=abcdef0123456789 refreshed",
    ],
    "sim://m-0": ["panic: the previous run ended"],
    "sim://a-0": [`agent: intercepting web in shop at ${POD_IP}`],
  };
  c.api.podLogs = (ref) => lines[ref.containerID]?.map((text) => ({ time: 0, text }));
}

/** The simulated API server, a kubeconfig (never ~/.kube), a state dir with the daemon's files. */
function withSetup(fn: (s: Setup) => Promise<void>): Promise<void> {
  return withApiServer(async (cluster) => {
    const dir = cluster.dir;
    await Deno.writeTextFile(`${dir}/kubeconfig`, cluster.kubeconfig());
    const stateDir = `${dir}/state`;
    await Deno.mkdir(stateDir, { mode: 0o700 });
    await Deno.writeTextFile(
      `${stateDir}/daemon.log`,
      `2025-01-01T00:00:00.000Z info  session: connected to ${MANAGER_NS}/${MANAGER_POD} at ${POD_IP} ` +
        "(Authorization: Bearer sekrit-token-123)\n" +
        `2025-01-01T00:00:01.000Z info  intercept: shop/${AGENT_POD} for alice@laptop\n`,
    );
    await Deno.writeTextFile(`${stateDir}/daemon.json`, JSON.stringify({ pid: 4242, tun: "vif0" }));
    await Deno.writeTextFile(`${dir}/outside`, "root's secret file\n");
    await Deno.symlink(`${dir}/outside`, `${stateDir}/daemon.log.1`);
    const out = `${dir}/out`;
    await Deno.mkdir(out);
    await fn({
      cluster,
      env: { KUBECONFIG: `${dir}/kubeconfig`, HOME: dir, USER: "alice" },
      stateDir,
      out,
    });
  });
}

async function run(args: string[], env: Record<string, string>) {
  const io = memoryIo(env);
  const code = await main(args, { io });
  return { code, out: io.out, err: io.err };
}

/** Extracts the archive with GNU tar; the files by their path under its folder. */
async function extract(archive: string, into: string): Promise<Map<string, string>> {
  const r = await new Deno.Command("tar", { args: ["-xzf", archive, "-C", into], stderr: "piped" })
    .output();
  assertEquals(r.code, 0, new TextDecoder().decode(r.stderr));
  const files = new Map<string, string>();
  const [root] = await Array.fromAsync(Deno.readDir(into), (e) => e.name);
  assertMatch(root!, /^vif-logs-\d{4}-\d\d-\d\dT/);
  const walk = async (dir: string, prefix: string) => {
    for await (const e of Deno.readDir(dir)) {
      if (e.isDirectory) await walk(`${dir}/${e.name}`, `${prefix}${e.name}/`);
      else files.set(`${prefix}${e.name}`, await Deno.readTextFile(`${dir}/${e.name}`));
    }
  };
  await walk(`${into}/${root}`, "");
  return files;
}

Deno.test("vif gather-logs writes the daemon's files, the manager's objects and logs, and the agents' logs", async () => {
  await withSetup(async ({ cluster, env, stateDir, out }) => {
    objects(cluster);
    const daemon = fakeDaemon(stateDir);
    try {
      const archive = `${cluster.dir}/logs.tar.gz`;
      const r = await run(["gather-logs", "-o", archive, "--state-dir", stateDir], env);
      assertEquals(r.code, 0, r.err);
      assertMatch(r.out, /^wrote .*logs\.tar\.gz: status, versions, daemon\.json, daemon\.log, /);
      assertMatch(r.out, /the manager's Deployment, the manager's pod and log, 1 agent log\n$/);
      assertEquals(
        r.err,
        "vif: gather-logs: daemon.log.1: not a regular file\n",
      );
      assertEquals((await Deno.stat(archive)).mode! & 0o777, 0o600);
      const files = await extract(archive, out);
      assertEquals([...files.keys()].sort(), [
        "cluster/agents/shop/pod-web-7d9f8-x2l4k.json",
        "cluster/agents/shop/web-7d9f8-x2l4k.vif-agent.log",
        "cluster/manager/deployment.json",
        `cluster/manager/pod-${MANAGER_POD}.json`,
        `cluster/manager/${MANAGER_POD}.traffic-manager.log`,
        `cluster/manager/${MANAGER_POD}.traffic-manager.previous.log`,
        "daemon.json",
        "daemon.log",
        "errors.txt",
        "status.json",
        "summary.txt",
        "version.json",
      ]);
      // The connected daemon's manager namespace was used, and its context.
      assertMatch(files.get("summary.txt")!, /^context: sim at https:\/\/127\.0\.0\.1:\d+$/m);
      assertMatch(files.get("summary.txt")!, /^manager namespace: ops-vif$/m);
      assertEquals(
        files.get(`cluster/manager/${MANAGER_POD}.traffic-manager.previous.log`),
        "panic: the previous run ended\n",
      );
      const log = files.get(`cluster/manager/${MANAGER_POD}.traffic-manager.log`)!;
      assertMatch(log, /^manager: session from alice@laptop on node-a7\n/);
      assertMatch(log, /manager: token=\(redacted\) refreshed\n$/);
      assertMatch(files.get("daemon.log")!, /Authorization: Bearer \(redacted\)\)/);
      const pod = JSON.parse(files.get(`cluster/manager/pod-${MANAGER_POD}.json`)!);
      assertEquals([pod.metadata.name, pod.metadata.managedFields], [MANAGER_POD, undefined]);
      const deployment = JSON.parse(files.get("cluster/manager/deployment.json")!);
      assertEquals([deployment.metadata.namespace, deployment.metadata.managedFields], [
        MANAGER_NS,
        undefined,
      ]);
      const agent = JSON.parse(files.get("cluster/agents/shop/pod-web-7d9f8-x2l4k.json")!);
      assertEquals(agent.spec.containers.map((c: { name: string }) => c.name), [
        "web",
        "vif-agent",
      ]);
      assertEquals(files.get("errors.txt"), "daemon.log.1: not a regular file\n");
      const all = [...files.values()].join("\n");
      for (
        const secret of ["hunter2", "sekrit-token-123", "root's secret file", "abcdef0123456789"]
      ) {
        assert(!all.includes(secret), `"${secret}" is in the archive`);
      }
      // Only reads, and never a Secret.
      assert(cluster.requests.every((q) => q.method === "GET"), cluster.log().join("\n"));
      assert(!cluster.log().some((l) => l.includes("/secrets")), cluster.log().join("\n"));
      assert(
        cluster.log().includes(`GET /api/v1/namespaces/${MANAGER_NS}/pods/${MANAGER_POD}/log`),
      );
    } finally {
      daemon.close();
    }
  });
});

Deno.test("vif gather-logs --anonymize replaces each name and address the same way in every file", async () => {
  await withSetup(async ({ cluster, env, stateDir, out }) => {
    objects(cluster);
    const daemon = fakeDaemon(stateDir);
    try {
      const archive = `${cluster.dir}/logs.tar.gz`;
      const r = await run(
        ["gather-logs", "-o", archive, "--state-dir", stateDir, "--anonymize"],
        env,
      );
      assertEquals(r.code, 0, r.err);
      const files = await extract(archive, out);
      const status = JSON.parse(files.get("status.json")!);
      const pod = status.connection.intercepts[0].pods[0] as string;
      const ns = status.connection.namespace as string;
      assertMatch(pod, /^pod-\d+$/);
      assertMatch(ns, /^namespace-\d+$/);
      const holder = status.connection.intercepts[0].holder as string;
      assertMatch(holder, /^user-\d+@host-\d+$/);
      // The agent's pod: the same replacement in its path, its JSON, the logs and the status.
      const agentJson = [...files.keys()].find((p) =>
        p.startsWith(`cluster/agents/${ns}/`) && p.endsWith(".json")
      )!;
      assert(agentJson !== undefined, [...files.keys()].join("\n"));
      assertEquals(JSON.parse(files.get(agentJson)!).metadata.name, pod);
      assertEquals(JSON.parse(files.get(agentJson)!).metadata.namespace, ns);
      assert(
        files.get("daemon.log")!.includes(`intercept: ${ns}/${pod} for ${holder}`),
        files.get("daemon.log"),
      );
      const managerLog = [...files.entries()].find(([p]) => p.endsWith(".traffic-manager.log"))![1];
      assert(managerLog.includes(`for ${ns}/${pod}`), managerLog);
      // The manager's address: one replacement in the daemon's log and the pod's JSON.
      const managerPod = JSON.parse(
        [...files.entries()].find(([p]) => /^cluster\/manager\/pod-.*\.json$/.test(p))![1],
      );
      assertMatch(managerPod.status.podIP, /^250\.0\.0\.\d+$/);
      assert(
        files.get("daemon.log")!.includes(` at ${managerPod.status.podIP} `),
        files.get("daemon.log"),
      );
      // "web" is the intercepted workload's name too: one name, one replacement.
      assert(managerLog.includes(`workload-1.${ns}.svc.cluster.local`), managerLog);

      const all = [...files.keys(), ...files.values()].join("\n");
      for (
        const original of [
          AGENT_POD,
          MANAGER_POD,
          "web-7d9f8",
          NODE,
          POD_IP,
          SERVICE_IP,
          "198.18.3.9",
        ]
      ) {
        assert(!all.includes(original), `"${original}" remains`);
      }
      for (const word of ["shop", "web", "alice", "laptop", "ops-vif", "sim", "db-0"]) {
        assert(
          !new RegExp(`(?<![A-Za-z0-9])${word}(?![A-Za-z0-9])`).test(all),
          `"${word}" remains`,
        );
      }
      assert(all.includes("240.0.0.1/24"), "vif's own block is kept");
      assert(all.includes("traffic-manager"), "vif's own names are kept");
      assert(all.includes("ghcr.io/vif-dev/vif:0.0.0"), "the image is kept");
      assertEquals(JSON.parse(files.get("version.json")!).deno, Deno.version.deno);
    } finally {
      daemon.close();
    }
  });
});

Deno.test("vif gather-logs notes what the API server refuses and writes the rest", async () => {
  await withSetup(async ({ cluster, env, stateDir, out }) => {
    objects(cluster);
    cluster.revoke("get", "deployments");
    cluster.revoke("list", "pods");
    const archive = `${cluster.dir}/logs.tar.gz`;
    const r = await run(
      ["gather-logs", "-o", archive, "--state-dir", stateDir, "--manager-namespace", MANAGER_NS],
      env,
    );
    assertEquals(r.code, 0, r.err);
    const lines = r.err.trim().split("\n");
    assertMatch(
      lines.find((l) => l.includes("Deployment"))!,
      /^vif: gather-logs: the manager's Deployment in namespace "ops-vif": HTTP 403: deployments\.apps "traffic-manager" is forbidden: User "alice" cannot get resource "deployments"/,
    );
    assert(
      lines.some((l) =>
        l.startsWith(`vif: gather-logs: the manager's pods in namespace "ops-vif": HTTP 403`)
      ),
      r.err,
    );
    const files = await extract(archive, out);
    assertMatch(
      files.get("errors.txt")!,
      /the pods of every namespace|the pods of namespace "default"/,
    );
    assert(files.has("daemon.log") && files.has("status.json"));
    assertMatch(files.get("summary.txt")!, /^left out: \d+ \(errors\.txt says what and why\)$/m);
  });
});

Deno.test("vif gather-logs writes the local files when the API server cannot be reached", async () => {
  await withSetup(async ({ cluster, env, stateDir, out }) => {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const closed = listener.addr.port;
    listener.close();
    await Deno.writeTextFile(
      `${cluster.dir}/kubeconfig`,
      cluster.kubeconfig().replace(/https:\/\/127\.0\.0\.1:\d+/, `https://127.0.0.1:${closed}`),
    );
    const archive = `${cluster.dir}/logs.tar.gz`;
    const r = await run(["gather-logs", "-o", archive, "--state-dir", stateDir], env);
    assertEquals(r.code, 0, r.err);
    assertMatch(
      r.err,
      new RegExp(
        `^vif: gather-logs: cannot reach the API server https://127\\.0\\.0\\.1:${closed}: `,
        "m",
      ),
    );
    const files = await extract(archive, out);
    assert(files.has("daemon.log"));
    assertEquals([...files.keys()].filter((p) => p.startsWith("cluster/")), []);
  });
});

Deno.test("vif gather-logs stops asking at the first 401", async () => {
  await withSetup(async ({ cluster, env, stateDir }) => {
    objects(cluster);
    await Deno.writeTextFile(
      `${cluster.dir}/kubeconfig`,
      cluster.kubeconfig({ token: "expired-token-0123456789" }),
    );
    const r = await run(
      ["gather-logs", "-o", `${cluster.dir}/a.tar.gz`, "--state-dir", stateDir],
      env,
    );
    assertEquals(r.code, 0, r.err);
    assertMatch(
      r.err,
      /^vif: gather-logs: the API server https:\/\/127\.0\.0\.1:\d+ refused the credentials: HTTP 401: Unauthorized$/m,
    );
    assertEquals(cluster.requests.length, 1, cluster.log().join("\n"));
  });
});

Deno.test("vif gather-logs without a kubeconfig, or with --no-cluster, asks the API server nothing", async () => {
  await withSetup(async ({ cluster, env, stateDir, out }) => {
    const archive = `${cluster.dir}/a.tar.gz`;
    const none = await run(["gather-logs", "-o", archive, "--state-dir", stateDir], {
      HOME: `${cluster.dir}/nowhere`,
    });
    assertEquals(none.code, 0, none.err);
    assertMatch(none.err, /^vif: gather-logs: the cluster: no kubeconfig: /m);
    const off = await run([
      "gather-logs",
      "-o",
      `${cluster.dir}/b.tar.gz`,
      "--state-dir",
      stateDir,
      "--no-cluster",
    ], env);
    assertEquals(off.code, 0, off.err);
    assertEquals(cluster.requests, []);
    const files = await extract(`${cluster.dir}/b.tar.gz`, out);
    assertMatch(files.get("summary.txt")!, /^cluster: left out \(--no-cluster\)$/m);
  });
});

Deno.test("vif gather-logs fails with a hint when it cannot write the archive", async () => {
  await withSetup(async ({ cluster, env, stateDir }) => {
    const r = await run(
      [
        "gather-logs",
        "-o",
        `${cluster.dir}/missing/x.tar.gz`,
        "--state-dir",
        stateDir,
        "--no-cluster",
      ],
      env,
    );
    assertEquals(r.code, 1);
    assertMatch(r.err, /^vif: cannot write ".*\/missing\/x\.tar\.gz": /);
  });
});

Deno.test("credentialsPlan() resolves as the sudo user only when root through sudo", () => {
  const env = (vars: Record<string, string>) => (n: string) => vars[n];
  assertEquals(credentialsPlan(1000, env({ SUDO_UID: "1001", SUDO_GID: "1001" })), { how: "here" });
  assertEquals(credentialsPlan(0, env({})), { how: "here" });
  assertEquals(credentialsPlan(0, env({ SUDO_UID: "0", SUDO_GID: "0" })), { how: "here" });
  assertEquals(credentialsPlan(0, env({ SUDO_UID: "1000" })), { how: "here" });
  assertEquals(credentialsPlan(0, env({ SUDO_UID: "x1", SUDO_GID: "1" })), { how: "here" });
  assertEquals(credentialsPlan(0, env({ SUDO_UID: "1000", SUDO_GID: "100" })), {
    how: "as-user",
    uid: 1000,
    gid: 100,
  });
});
