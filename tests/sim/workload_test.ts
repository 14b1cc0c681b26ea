/**
 * Workloads of the simulated cluster through Debian's kubectl: a client pod
 * calls a Service from inside the cluster; a strategic-merge patch that
 * adds a sidecar and an init container to a Deployment rolls it out through
 * a new ReplicaSet while the Service keeps answering (`kubectl rollout
 * status`, `kubectl get rs`, `2/2`); a JSON patch takes it out again; a
 * rollout that cannot progress exceeds its deadline; a StatefulSet's pods
 * come up in order, resolve by name, and roll from the highest ordinal.
 *
 * ```
 *   pod client (default) ── curl http://web.default ──► ClusterIP ──► pods of Deployment web (ReplicaSet web-<hash>)
 *   pod db2-1 ── getent hosts db2-0.db2 ──► headless Service db2 ──► StatefulSet db2: db2-0, db2-1
 * ```
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "../_assert.ts";
import { Env, waitUntil } from "../e2e/_env.ts";
import type { KubeObject } from "./apiserver/mod.ts";
import { Sim } from "./sim.ts";

const SIDECAR = JSON.stringify({
  spec: {
    template: {
      spec: {
        initContainers: [{
          name: "init-nft",
          image: "ghcr.io/vif-dev/vif:sim",
          command: ["nft", "list", "tables"],
          securityContext: { runAsUser: 0, capabilities: { drop: ["ALL"], add: ["NET_ADMIN"] } },
        }],
        containers: [{
          name: "agent",
          image: "ghcr.io/vif-dev/vif:sim",
          command: ["socat", "TCP-LISTEN:9900,fork,reuseaddr", "SYSTEM:echo agent"],
          securityContext: { runAsUser: 65534, runAsNonRoot: true },
          ports: [{ name: "agent", containerPort: 9900 }],
        }],
      },
    },
  },
});

Deno.test({
  name:
    "kubectl rolls a patched Deployment out through ReplicaSets while a client pod calls its Service",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const env = await new Env().init();
    try {
      const sim = await Sim.start(env, { samples: true, largeFileMiB: 1 });
      const curlWeb = () =>
        sim.execInPod("default", "deployment/client", [
          "curl",
          "-sS",
          "--max-time",
          "5",
          "http://web.default",
        ]);

      await t.step("a client pod reaches a Service by name from inside the cluster", async () => {
        const out = await curlWeb();
        assertEquals(out.code, 0, out.stderr);
        assertMatch(out.stdout, /^pod web-[a-z0-9]+-[a-z0-9]{5} 198\.18\.\d+\.\d+\n$/);
        assertEquals(
          (await sim.execInPod("default", "deployment/client", ["id", "-u"])).stdout,
          "65534\n",
        );
      });

      await t.step("kubectl get rs shows the Deployment's ReplicaSet", async () => {
        const rs = await sim.kubectl("get", "rs", "-l", "app=web", "--no-headers");
        assertEquals(rs.code, 0, rs.stderr);
        assertMatch(rs.stdout.trim(), /^web-[a-z0-9]{10}\s+1\s+1\s+1\s+\S+$/);
      });

      await t.step(
        "a patch adding a sidecar rolls out; the Service answers all along",
        async () => {
          const before = sim.store.list("pods", { namespace: "default", labelSelector: "app=web" });
          const patched = await sim.kubectl("patch", "deployment", "web", "-p", SIDECAR);
          assertEquals(patched.code, 0, patched.stderr);
          const rollout = sim.kubectl("rollout", "status", "deployment/web", "--timeout=90s");
          let done = false;
          rollout.finally(() => done = true);
          const failures: string[] = [];
          let calls = 0;
          while (!done) {
            const out = await curlWeb();
            calls++;
            if (out.code !== 0 || !out.stdout.startsWith("pod web-")) failures.push(out.stderr);
            await new Promise((r) => setTimeout(r, 100));
          }
          const status = await rollout;
          assertEquals(status.code, 0, status.stderr);
          assertMatch(status.stdout, /deployment "web" successfully rolled out/);
          assertEquals(failures, [], `${failures.length} of ${calls} calls failed`);
          const pods = await sim.kubectl("get", "pods", "-l", "app=web", "--no-headers");
          const lines = pods.stdout.trim().split("\n");
          assertEquals(lines.length, 1, pods.stdout);
          assertMatch(lines[0]!, /^web-\S+\s+2\/2\s+Running\s+0\s/);
          assert(!before.some((p) => lines[0]!.startsWith(p.metadata.name! + " ")));
          const rs = (await sim.kubectl("get", "rs", "-l", "app=web", "--no-headers")).stdout
            .trim().split("\n").map((l) => l.split(/\s+/).slice(1, 4).join(" ")).sort();
          assertEquals(rs, ["0 0 0", "1 1 1"]);
          const d = sim.store.get({ resource: "deployments", namespace: "default", name: "web" })!;
          const s = d.status as {
            observedGeneration: number;
            updatedReplicas: number;
            conditions: { type: string; reason: string }[];
          };
          assertEquals(s.observedGeneration, d.metadata.generation);
          assertEquals(
            s.conditions.find((c) => c.type === "Progressing")?.reason,
            "NewReplicaSetAvailable",
          );
          assertEquals(d.metadata.annotations?.["deployment.kubernetes.io/revision"], "2");
          // The new pod: the agent and the app share its address.
          const name = lines[0]!.split(/\s+/)[0]!;
          const agent = await sim.execInPod("default", name, [
            "socat",
            "-T2",
            "-",
            "TCP4:127.0.0.1:9900",
          ], {
            container: "web",
          });
          assertEquals(agent.stdout, "agent\n");
        },
      );

      await t.step(
        "a JSON patch takes the sidecar out; the first ReplicaSet comes back",
        async () => {
          const d = sim.store.get({ resource: "deployments", namespace: "default", name: "web" })!;
          const containers = (d.spec as { template: { spec: { containers: { name: string }[] } } })
            .template.spec.containers;
          const i = containers.findIndex((c) => c.name === "agent");
          const patched = await sim.kubectl(
            "patch",
            "deployment",
            "web",
            "--type",
            "json",
            "-p",
            JSON.stringify([
              { op: "remove", path: `/spec/template/spec/containers/${i}` },
              { op: "remove", path: "/spec/template/spec/initContainers" },
            ]),
          );
          assertEquals(patched.code, 0, patched.stderr);
          const status = await sim.kubectl("rollout", "status", "deployment/web", "--timeout=90s");
          assertEquals(status.code, 0, status.stderr);
          const pods = await sim.kubectl("get", "pods", "-l", "app=web", "--no-headers");
          assertMatch(pods.stdout.trim(), /^web-\S+\s+1\/1\s+Running\s/);
          const revision = sim.store.get({
            resource: "deployments",
            namespace: "default",
            name: "web",
          })!
            .metadata.annotations?.["deployment.kubernetes.io/revision"];
          assertEquals(revision, "3");
          assertEquals(
            sim.store.list("replicasets", { namespace: "default", labelSelector: "app=web" })
              .length,
            2,
          );
          assertMatch((await curlWeb()).stdout, /^pod web-/);
        },
      );

      await t.step(
        "a rollout that cannot progress fails kubectl rollout status at its deadline",
        async () => {
          sim.store.create({
            apiVersion: "apps/v1",
            kind: "Deployment",
            metadata: { name: "stuck", namespace: "default" },
            spec: {
              progressDeadlineSeconds: 3,
              selector: { matchLabels: { app: "stuck" } },
              template: {
                metadata: { labels: { app: "stuck" } },
                spec: {
                  containers: [{
                    name: "c",
                    image: "busybox:sim",
                    command: ["sleep", "600"],
                    readinessProbe: { tcpSocket: { port: 1 }, periodSeconds: 1 },
                  }],
                },
              },
            },
          } as KubeObject);
          const out = await sim.kubectl("rollout", "status", "deployment/stuck", "--timeout=60s");
          assertEquals(out.code, 1, out.stdout);
          assertMatch(out.stderr, /deployment "stuck" exceeded its progress deadline/);
        },
      );
    } finally {
      await env.cleanup();
    }
  },
});

Deno.test({
  name: "a StatefulSet's pods come up in order, resolve through their headless Service, and roll",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn() {
    const env = await new Env().init();
    try {
      const sim = await Sim.start(env);
      const file = `${env.dir}/db.yaml`;
      await Deno.writeTextFile(
        file,
        `apiVersion: v1
kind: Service
metadata: { name: db2, namespace: default }
spec:
  clusterIP: None
  selector: { app: db2 }
  ports: [{ name: tcp, port: 5432 }]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: { name: db2, namespace: default }
spec:
  replicas: 2
  serviceName: db2
  selector: { matchLabels: { app: db2 } }
  template:
    metadata: { labels: { app: db2 } }
    spec:
      securityContext: { runAsUser: 65534, runAsGroup: 65534 }
      containers:
      - name: db
        image: alpine/socat:latest
        command: [socat, "TCP-LISTEN:5432,fork,reuseaddr", "SYSTEM:hostname"]
        ports: [{ containerPort: 5432 }]
`,
      );
      const applied = await sim.kubectl("apply", "-f", file);
      assertEquals(applied.code, 0, applied.stderr);
      const first = await sim.kubectl("rollout", "status", "statefulset/db2", "--timeout=60s");
      assertEquals(first.code, 0, first.stderr);
      assertMatch(first.stdout, /partitioned roll out complete: 2 new pods have been updated/);
      const sts = await sim.kubectl("get", "sts", "db2", "--no-headers");
      assertMatch(sts.stdout, /^db2\s+2\/2\s/);
      const started = (name: string) =>
        Date.parse(String(
          sim.store.get({ resource: "pods", namespace: "default", name })!.metadata
            .creationTimestamp,
        ));
      assert(started("db2-0") <= started("db2-1"));
      const db0 = sim.pod("default", "db2-0")!;
      // From the other pod, through its search path, as a peer of a StatefulSet finds another.
      let answer = "";
      await waitUntil(
        async () => {
          const out = await sim.execInPod("default", "db2-1", ["getent", "hosts", "db2-0.db2"]);
          answer = out.stdout + out.stderr;
          return out.stdout.split(/\s+/)[0] === db0.ip;
        },
        10_000,
        "db2-0.db2 to resolve",
      ).catch((e) => {
        throw new Error(`${e.message}: ${answer}`);
      });
      const uid0 =
        sim.store.get({ resource: "pods", namespace: "default", name: "db2-0" })!.metadata.uid;
      const patched = await sim.kubectl(
        "patch",
        "statefulset",
        "db2",
        "-p",
        JSON.stringify({ spec: { template: { metadata: { annotations: { rolled: "yes" } } } } }),
      );
      assertEquals(patched.code, 0, patched.stderr);
      const rolled = await sim.kubectl("rollout", "status", "statefulset/db2", "--timeout=90s");
      assertEquals(rolled.code, 0, rolled.stderr);
      await waitUntil(
        () => {
          const s = sim.store.get({ resource: "statefulsets", namespace: "default", name: "db2" })!
            .status as {
              currentRevision?: string;
              updateRevision?: string;
              readyReplicas?: number;
            };
          return s.currentRevision === s.updateRevision && s.readyReplicas === 2;
        },
        60_000,
        "the StatefulSet to settle",
      );
      const pod0 = sim.store.get({ resource: "pods", namespace: "default", name: "db2-0" })!;
      assert(pod0.metadata.uid !== uid0, "db2-0 was not replaced");
      assertEquals(pod0.metadata.annotations?.rolled, "yes");
    } finally {
      await env.cleanup();
    }
  },
});
