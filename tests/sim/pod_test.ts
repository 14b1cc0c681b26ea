/**
 * Pods of several containers in the simulated cluster, as a kubelet runs
 * them: init containers one after another (one with `NET_ADMIN` installs an
 * nftables redirect in the pod's network namespace), app containers that
 * share the pod's loopback and an emptyDir, each with its own mounts
 * (subPath, readOnly), user, capabilities and environment (envFrom with a
 * prefix, Secret and field references, `$(VAR)` in args), a projected
 * service-account token a TokenReview accepts for its audience, and the
 * states `kubectl get pods` shows (`2/2`, `Init:0/1`, `Init:Error`,
 * `Init:CrashLoopBackOff`, `CreateContainerConfigError`).
 *
 * ```
 *   <base>-node1 ──► 198.18.0.x:8080 ─┐ nft (installed by init container "nft"): tcp dport 8080 redirect to :9090
 *   ┌─ pod "multi" (one network namespace) ──────────────────────────────────────────────┐
 *   │ init "setup" (root): writes /work/init.txt          init "nft" (root, only NET_ADMIN) │
 *   │ "app" (root, default capabilities): socat :8080 "app", writes /work/app.txt          │
 *   │ "sidecar" (nobody): socat :9090 "sidecar"; /shared = the same emptyDir,             │
 *   │    /site/index.html = ConfigMap key (subPath, read-only), /var/run/secrets/vif = token │
 *   └───────────────────────────────────────────────────────────────────────────────────────┘
 * ```
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "../_assert.ts";
import { Env, must, waitUntil } from "../e2e/_env.ts";
import type { KubeObject } from "./apiserver/mod.ts";
import { Sim } from "./sim.ts";

const MULTI = `
apiVersion: v1
kind: ConfigMap
metadata: { name: app-config, namespace: default }
data: { greeting: hello, index.html: "<h1>hi</h1>" }
---
apiVersion: v1
kind: Secret
metadata: { name: app-secret, namespace: default }
stringData: { password: s3cret }
---
apiVersion: v1
kind: Pod
metadata: { name: multi, namespace: default, labels: { app: multi } }
spec:
  initContainers:
  - name: setup
    image: busybox:sim
    command: [sh, -c, "echo init > /work/init.txt"]
    volumeMounts: [{ name: work, mountPath: /work }]
  - name: nft
    image: ghcr.io/vif-dev/vif:sim
    command: [sh, -c]
    args:
    - |
      grep CapEff /proc/self/status
      nft add table ip vif_test
      nft add chain ip vif_test prerouting '{ type nat hook prerouting priority dstnat; }'
      nft add rule ip vif_test prerouting tcp dport 8080 redirect to :9090
    securityContext:
      runAsUser: 0
      capabilities: { drop: [ALL], add: [NET_ADMIN] }
  containers:
  - name: app
    image: busybox:sim
    command: [sh, -c]
    args: ['echo "$(CFG_greeting) $PASSWORD" > /work/app.txt; exec socat TCP-LISTEN:8080,fork,reuseaddr SYSTEM:"echo app"']
    envFrom: [{ configMapRef: { name: app-config }, prefix: CFG_ }]
    env:
    - { name: PASSWORD, valueFrom: { secretKeyRef: { name: app-secret, key: password } } }
    - { name: GREETING, value: "$(CFG_greeting), $(MY_POD)" }
    - { name: MY_POD, valueFrom: { fieldRef: { fieldPath: metadata.name } } }
    - { name: APP_LABEL, valueFrom: { fieldRef: { fieldPath: "metadata.labels['app']" } } }
    - { name: CPU, valueFrom: { resourceFieldRef: { resource: limits.cpu, divisor: 1m } } }
    resources: { limits: { cpu: 500m } }
    ports: [{ name: http, containerPort: 8080 }]
    volumeMounts: [{ name: work, mountPath: /work }]
  - name: sidecar
    image: ghcr.io/vif-dev/vif:sim
    command: [socat, "TCP-LISTEN:9090,fork,reuseaddr", "SYSTEM:echo sidecar"]
    securityContext: { runAsUser: 65534, runAsGroup: 65534 }
    ports: [{ name: agent, containerPort: 9090 }]
    volumeMounts:
    - { name: work, mountPath: /shared }
    - { name: config, mountPath: /site/index.html, subPath: index.html, readOnly: true }
    - { name: vif-token, mountPath: /var/run/secrets/vif, readOnly: true }
  volumes:
  - { name: work, emptyDir: {} }
  - { name: config, configMap: { name: app-config } }
  - name: vif-token
    projected:
      sources:
      - serviceAccountToken: { audience: vif, expirationSeconds: 600, path: token }
      - downwardAPI: { items: [{ path: labels, fieldRef: { fieldPath: metadata.labels } }] }
`;

interface ContainerStatus {
  name: string;
  ready: boolean;
  restartCount: number;
  state: Record<string, { reason?: string; message?: string; exitCode?: number }>;
}

interface PodStatus {
  phase?: string;
  initContainerStatuses?: ContainerStatus[];
  containerStatuses?: ContainerStatus[];
}

function pod(name: string, spec: Record<string, unknown>): KubeObject {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace: "default", labels: { app: name } },
    spec,
  } as KubeObject;
}

Deno.test({
  name:
    "the kubelet runs init and app containers in one network namespace, each with its own mounts, user and environment",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const env = await new Env().init();
    try {
      const sim = await Sim.start(env);
      const status = (name: string) =>
        (sim.store.get({ resource: "pods", namespace: "default", name }) as
          | KubeObject & { status?: PodStatus }
          | undefined)?.status;
      const row = async (name: string) => {
        const out = await sim.kubectl("get", "pod", name, "--no-headers");
        assertEquals(out.code, 0, out.stderr);
        const [, ready, state, restarts] = out.stdout.trim().split(/\s+/);
        return { ready, state, restarts };
      };
      const file = `${env.dir}/multi.yaml`;
      await Deno.writeTextFile(file, MULTI);
      // A pod whose init container takes a while, to see it initializing.
      sim.store.create(pod("slowinit", {
        initContainers: [{ name: "wait", image: "busybox:sim", command: ["sleep", "4"] }],
        containers: [{ name: "c", image: "busybox:sim", command: ["sleep", "600"] }],
      }));
      const applied = await sim.kubectl("apply", "-f", file);
      assertEquals(applied.code, 0, applied.stderr);

      await t.step(
        "kubectl shows Init:0/1 while an init container runs, then 1/1 Running",
        async () => {
          await waitUntil(
            () => status("slowinit")?.initContainerStatuses?.[0]?.state.running !== undefined,
            15_000,
            "the init container to run",
          );
          assertEquals(await row("slowinit"), { ready: "0/1", state: "Init:0/1", restarts: "0" });
          assertEquals(status("slowinit")?.phase, "Pending");
          await sim.waitReady("default", "app=slowinit", 1, 20_000);
          assertEquals(await row("slowinit"), { ready: "1/1", state: "Running", restarts: "0" });
        },
      );

      await sim.waitReady("default", "app=multi", 1, 30_000);
      const exec = (container: string, cmd: string[]) =>
        sim.execInPod("default", "multi", cmd, { container });

      await t.step("kubectl shows 2/2; each init container ran to its end, in order", async () => {
        assertEquals(await row("multi"), { ready: "2/2", state: "Running", restarts: "0" });
        const inits = status("multi")!.initContainerStatuses!;
        assertEquals(inits.map((s) => [s.name, s.state.terminated?.reason, s.ready]), [
          ["setup", "Completed", true],
          ["nft", "Completed", true],
        ]);
        assertEquals(status("multi")!.containerStatuses!.map((s) => [s.name, s.ready]), [
          ["app", true],
          ["sidecar", true],
        ]);
        assertEquals((await exec("app", ["cat", "/work/init.txt"])).stdout, "init\n");
      });

      await t.step("the containers share the pod's loopback and an emptyDir", async () => {
        const hello = await exec("sidecar", ["socat", "-T2", "-", "TCP4:127.0.0.1:8080"]);
        assertEquals(hello.stdout, "app\n", hello.stderr);
        assertEquals((await exec("sidecar", ["cat", "/shared/app.txt"])).stdout, "hello s3cret\n");
        assertEquals((await exec("sidecar", ["hostname"])).stdout, "multi\n");
        assertMatch(
          (await exec("sidecar", ["cat", "/etc/resolv.conf"])).stdout,
          /^search default\.svc\.cluster\.local /m,
        );
      });

      await t.step(
        "the init container's nft redirect takes traffic to the pod's IP, not loopback",
        async () => {
          const init = sim.kubelet.container("default", "multi", "nft")!;
          // Only NET_ADMIN (bit 12) in effect.
          assertEquals(init.proc!.lines[0], "CapEff:\t0000000000001000");
          const ip = sim.pod("default", "multi")!.ip;
          const node = sim.net.nodes[0]!.netns;
          const outside = await must(["socat", "-T2", "-", `TCP4:${ip}:8080`], { ns: node });
          assertEquals(outside, "sidecar\n");
          // An app container has the runtime's default set, without NET_ADMIN.
          const nft = await exec("app", ["nft", "add", "table", "ip", "x"]);
          assert(nft.code !== 0 && /Operation not permitted/.test(nft.stderr), nft.stderr);
          const caps = (await exec("app", ["grep", "Cap", "/proc/self/status"])).stdout;
          assertMatch(caps, /^CapEff:\t00000000a80425fb$/m);
          const nobody = (await exec("sidecar", ["grep", "Cap", "/proc/self/status"])).stdout;
          assertMatch(nobody, /^CapEff:\t0000000000000000$/m);
          assertMatch(nobody, /^CapBnd:\t00000000a80425fb$/m);
          assertEquals((await exec("sidecar", ["id", "-u"])).stdout, "65534\n");
        },
      );

      await t.step(
        "env, envFrom and $(VAR) in args resolve as the kubelet resolves them",
        async () => {
          const vars = Object.fromEntries(
            (await exec("app", ["env"])).stdout.trim().split("\n").map((l) => {
              const i = l.indexOf("=");
              return [l.slice(0, i), l.slice(i + 1)];
            }),
          );
          assertEquals(vars["CFG_greeting"], "hello");
          assertEquals(vars["CFG_index.html"], "<h1>hi</h1>");
          assertEquals(vars["PASSWORD"], "s3cret");
          assertEquals(vars["GREETING"], "hello, $(MY_POD)"); // MY_POD comes after it
          assertEquals(vars["MY_POD"], "multi");
          assertEquals(vars["APP_LABEL"], "multi");
          assertEquals(vars["CPU"], "500");
          assertEquals(vars["KUBERNETES_SERVICE_HOST"], "198.19.0.1");
          assertEquals(vars["HOSTNAME"], "multi");
        },
      );

      await t.step(
        "a subPath mount is the ConfigMap's key, read-only; the token is for its audience",
        async () => {
          assertEquals((await exec("sidecar", ["cat", "/site/index.html"])).stdout, "<h1>hi</h1>");
          const write = await exec("sidecar", ["sh", "-c", "echo x > /site/index.html"]);
          assertMatch(write.stderr, /Read-only file system/);
          const token = (await exec("sidecar", ["cat", "/var/run/secrets/vif/token"])).stdout;
          assertEquals(
            sim.kubelet.projectedTokens("default", "multi").get("vif-token/token")?.token,
            token,
          );
          const review = async (audiences: string[]) => {
            const client = Deno.createHttpClient({ caCerts: [sim.caPem] });
            try {
              const res = await fetch(`${sim.api.url}/apis/authentication.k8s.io/v1/tokenreviews`, {
                method: "POST",
                client,
                headers: {
                  authorization: `Bearer ${sim.adminToken}`,
                  "content-type": "application/json",
                },
                body: JSON.stringify({
                  kind: "TokenReview",
                  apiVersion: "authentication.k8s.io/v1",
                  spec: { token, audiences },
                }),
              });
              return (await res.json()).status;
            } finally {
              client.close();
            }
          };
          const ok = await review(["vif"]);
          assertEquals(ok.authenticated, true);
          assertEquals(ok.user.username, "system:serviceaccount:default:default");
          assertEquals(ok.user.extra["authentication.kubernetes.io/pod-name"], ["multi"]);
          assertEquals(
            ok.user.extra["authentication.kubernetes.io/pod-uid"],
            [
              sim.store.get({ resource: "pods", namespace: "default", name: "multi" })!.metadata
                .uid,
            ],
          );
          assertMatch((await review([])).error, /token audiences \["vif"\] is invalid/);
          assertEquals(
            (await exec("sidecar", ["cat", "/var/run/secrets/vif/labels"])).stdout,
            'app="multi"',
          );
          const labelled = await sim.kubectl("label", "pod", "multi", "tier=front");
          assertEquals(labelled.code, 0, labelled.stderr);
          await waitUntil(
            async () =>
              (await exec("sidecar", ["cat", "/var/run/secrets/vif/labels"])).stdout ===
                'app="multi"\ntier="front"',
            10_000,
            "the downward API file to follow the labels",
          );
          // Every container got the service account's API token too (admission), the API's audience.
          const api = await exec("app", [
            "cat",
            "/var/run/secrets/kubernetes.io/serviceaccount/namespace",
          ]);
          assertEquals(api.stdout, "default");
        },
      );

      await t.step("a missing ConfigMap keeps a container waiting until it exists", async () => {
        sim.store.create(pod("waits", {
          containers: [{
            name: "c",
            image: "busybox:sim",
            command: ["sh", "-c", "echo $LATER_x; exec sleep 600"],
            envFrom: [{ configMapRef: { name: "later" }, prefix: "LATER_" }],
          }],
        }));
        await waitUntil(
          () =>
            status("waits")?.containerStatuses?.[0]?.state.waiting?.reason ===
              "CreateContainerConfigError",
          15_000,
          "CreateContainerConfigError",
        );
        assertEquals(
          status("waits")!.containerStatuses![0]!.state.waiting!.message,
          'configmap "later" not found',
        );
        assertEquals((await row("waits")).state, "CreateContainerConfigError");
        assertEquals(status("waits")!.phase, "Pending");
        assert(
          sim.kubelet.events("default", "waits").some((e) =>
            e.reason === "Failed" && e.message === 'Error: configmap "later" not found'
          ),
        );
        sim.store.create({
          apiVersion: "v1",
          kind: "ConfigMap",
          metadata: { name: "later", namespace: "default" },
          data: { x: "now" },
        } as KubeObject);
        await sim.waitReady("default", "app=waits", 1, 15_000);
        const proc = sim.pod("default", "waits")!.proc!;
        assertEquals(await proc.waitFor(/./), "now");
      });

      await t.step(
        "a failing init container: Init:Error with restartPolicy Never, else Init:CrashLoopBackOff",
        async () => {
          sim.store.create(pod("initfail", {
            restartPolicy: "Never",
            initContainers: [{
              name: "fail",
              image: "busybox:sim",
              command: ["sh", "-c", "exit 3"],
            }],
            containers: [{ name: "c", image: "busybox:sim", command: ["sleep", "600"] }],
          }));
          sim.store.create(pod("initloop", {
            initContainers: [{
              name: "fail",
              image: "busybox:sim",
              command: ["sh", "-c", "exit 1"],
            }],
            containers: [{ name: "c", image: "busybox:sim", command: ["sleep", "600"] }],
          }));
          await waitUntil(() => status("initfail")?.phase === "Failed", 15_000, "initfail to fail");
          assertEquals(await row("initfail"), { ready: "0/1", state: "Init:Error", restarts: "0" });
          await waitUntil(
            () =>
              status("initloop")?.initContainerStatuses?.[0]?.state.waiting?.reason ===
                "CrashLoopBackOff",
            15_000,
            "Init:CrashLoopBackOff",
          );
          const loop = await row("initloop");
          assertEquals([loop.ready, loop.state], ["0/1", "Init:CrashLoopBackOff"]);
          assertEquals(status("initloop")!.initContainerStatuses![0]!.restartCount, 1);
          assertEquals(
            status("initloop")!.containerStatuses![0]!.state.waiting?.reason,
            "PodInitializing",
          );
          assertEquals(status("initloop")!.phase, "Pending");
          // The app container never ran.
          assertEquals(sim.kubelet.container("default", "initloop", "c")!.proc, undefined);
        },
      );

      await t.step(
        "/vif runs this repository's main.ts as the pod's user, under an emptyDir at /tmp",
        async () => {
          sim.store.create(pod("vifrun", {
            restartPolicy: "Never",
            securityContext: {
              runAsUser: 65532,
              runAsGroup: 65532,
              fsGroup: 65532,
              runAsNonRoot: true,
            },
            containers: [{
              name: "vif",
              image: "ghcr.io/vif-dev/vif:sim",
              command: ["/vif"],
              args: ["--version"],
              securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] } },
              volumeMounts: [{ name: "tmp", mountPath: "/tmp" }],
            }],
            volumes: [{ name: "tmp", emptyDir: {} }],
          }));
          await waitUntil(
            () => status("vifrun")?.phase === "Succeeded",
            120_000,
            "vif --version to end",
            200,
          );
          const proc = sim.kubelet.container("default", "vifrun")!.proc!;
          await proc.output;
          assertMatch(proc.lines.join("\n"), /^vif \d+\.\d+\.\d+/m);
          assertEquals((await row("vifrun")).state, "Completed");
        },
      );
    } finally {
      await env.cleanup();
    }
  },
});
