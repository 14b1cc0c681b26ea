/**
 * The simulated cluster as a whole: objects applied with Debian's kubectl
 * become running pods with what a container gets (user, hostname, service
 * account, Secret volumes, environment), the controllers keep Deployments,
 * Endpoints and Nodes true, every user's token and a pod's are held to RBAC,
 * and `deno task sim` brings a cluster up and takes all of it away.
 *
 * @module
 */

import { assert, assertEquals, assertMatch } from "../_assert.ts";
import { DENO, Env, must, ROOT, run, waitUntil } from "../e2e/_env.ts";
import { debianKubectl } from "./apiserver/_testing.ts";
import { dialInPod, Sim, SIM_DEV_CONTEXT, SIM_LIMITED_CONTEXT } from "./sim.ts";

const APP = `
apiVersion: v1
kind: Secret
metadata: { name: app-secret, namespace: default }
type: Opaque
stringData: { key: "s3cret" }
---
apiVersion: apps/v1
kind: Deployment
metadata: { name: probe, namespace: default }
spec:
  replicas: 1
  selector: { matchLabels: { app: probe } }
  template:
    metadata: { labels: { app: probe } }
    spec:
      securityContext: { runAsUser: 65534, runAsGroup: 65534, fsGroup: 2000 }
      containers:
      - name: probe
        image: busybox:sim
        command:
        - sh
        - -c
        - |
          echo "uid=$(id -u) groups=$(id -G) host=$(hostname)"
          echo "ns=$(cat /var/run/secrets/kubernetes.io/serviceaccount/namespace)"
          echo "api=$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT ip=$MY_IP node=$MY_NODE"
          echo "secret=$(cat /var/run/secrets/app/key) mode=$(stat -L -c %a /var/run/secrets/app/key)"
          exec socat TCP-LISTEN:8080,fork,reuseaddr SYSTEM:'echo pong'
        env:
        - { name: MY_IP, valueFrom: { fieldRef: { fieldPath: status.podIP } } }
        - { name: MY_NODE, valueFrom: { fieldRef: { fieldPath: spec.nodeName } } }
        ports: [{ name: http, containerPort: 8080 }]
        readinessProbe: { tcpSocket: { port: http } }
        volumeMounts: [{ name: app, mountPath: /var/run/secrets/app, readOnly: true }]
      volumes: [{ name: app, secret: { secretName: app-secret, defaultMode: 0440 } }]
`;

Deno.test({
  name: "kubectl apply runs a Deployment as a container would, and the controllers follow it",
  sanitizeOps: false,
  sanitizeResources: false,
  async fn(t) {
    const env = await new Env().init();
    try {
      const sim = await Sim.start(env);
      const kubectl = await debianKubectl();
      const k = (...args: string[]) => sim.exec([kubectl, ...args]);
      const file = `${env.dir}/app.yaml`;
      await Deno.writeTextFile(file, APP);
      const applied = await k("apply", "-f", file);
      assertEquals(applied.code, 0, applied.stderr);
      const [obj] = await sim.waitReady("default", "app=probe");
      const name = obj!.metadata.name!;
      const pod = sim.pod("default", name)!;

      await t.step("the process sees its user, hostname, token, Secret and environment", () => {
        const out = pod.proc!.lines.join("\n");
        assertMatch(out, new RegExp(`^uid=65534 groups=65534 2000 host=${name}$`, "m"));
        assertMatch(out, /^ns=default$/m);
        assertMatch(out, new RegExp(`^api=198\\.19\\.0\\.1:443 ip=${pod.ip} node=node1$`, "m"));
        assertMatch(out, /^secret=s3cret mode=440$/m);
      });

      await t.step(
        "a port-forward dial reaches the pod's port; a closed port fails as the kubelet says",
        async () => {
          const conn = await dialInPod(pod, 8080);
          const buf = new Uint8Array(64);
          let text = "";
          for (let n; (n = await conn.read(buf)) !== null;) {
            text += new TextDecoder().decode(buf.subarray(0, n));
          }
          conn.close();
          assertEquals(text, "pong\n");
          const refused = await dialInPod(pod, 8099).then(
            () => "connected",
            (e: Error) => e.message,
          );
          assertMatch(
            refused,
            new RegExp(
              `^failed to connect to localhost:8099 inside namespace "${pod.netns}", IPv4: .*refused`,
              "i",
            ),
          );
        },
      );

      await t.step("the Service's ClusterIP and Endpoints follow the pod", async () => {
        await must([
          kubectl,
          "expose",
          "deployment",
          "probe",
          "--port",
          "80",
          "--target-port",
          "http",
        ], {
          env: { ...Deno.env.toObject(), KUBECONFIG: sim.kubeconfig },
          ns: sim.ws,
        });
        await sim.kubelet.settled();
        const ep = await k(
          "get",
          "endpoints",
          "probe",
          "-o",
          "jsonpath={.subsets[0].addresses[0].ip}",
        );
        assertEquals(ep.stdout, pod.ip);
        assertEquals(
          (await sim.net.exec(pod, [
            "socat",
            "-t",
            "2",
            "-",
            "TCP4:probe.default.svc.cluster.local:80",
          ], {
            stdin: "",
          })).stdout,
          "pong\n",
        );
      });

      await t.step(
        "the pod's token reaches the API server by its ClusterIP, held to RBAC",
        async () => {
          const curl = (path: string) =>
            run([
              "nsenter",
              "-t",
              String(pod.proc!.pid),
              "-m",
              "-n",
              "sh",
              "-c",
              "d=/var/run/secrets/kubernetes.io/serviceaccount; " +
              `curl -s -o /dev/null -w '%{http_code}' --cacert $d/ca.crt ` +
              `-H "Authorization: Bearer $(cat $d/token)" https://kubernetes.default.svc${path}`,
            ]);
          assertEquals((await curl("/api/v1/namespaces/default/pods")).stdout, "403");
          const bind = await k(
            "create",
            "rolebinding",
            "probe-view",
            "--clusterrole=view",
            "--serviceaccount=default:default",
            "-n",
            "default",
          );
          assertEquals(bind.code, 0, bind.stderr);
          const role = await k(
            "create",
            "clusterrole",
            "view",
            "--verb=get,list",
            "--resource=pods",
          );
          assertEquals(role.code, 0, role.stderr);
          assertEquals((await curl("/api/v1/namespaces/default/pods")).stdout, "200");
          assertEquals((await curl("/api/v1/namespaces/other/pods")).stdout, "403");
        },
      );

      await t.step(
        "users are held to RBAC: limited reads all but Secrets, dev may only ask until granted",
        async () => {
          const as = (context: string, ...args: string[]) => k("--context", context, ...args);
          const forbidden = async (
            r: Promise<{ code: number; stderr: string }>,
            message: string,
          ) => {
            const out = await r;
            assertEquals(out.code, 1, out.stderr);
            assertEquals(out.stderr.trim(), `Error from server (Forbidden): ${message}`);
          };
          assertEquals((await as(SIM_LIMITED_CONTEXT, "get", "pods", "-A")).code, 0);
          assertEquals((await as(SIM_LIMITED_CONTEXT, "get", "nodes")).code, 0);
          await forbidden(
            as(SIM_LIMITED_CONTEXT, "get", "secret", "app-secret"),
            `secrets "app-secret" is forbidden: User "limited" cannot get resource "secrets" in API group "" in the namespace "default"`,
          );
          await forbidden(
            as(SIM_DEV_CONTEXT, "get", "pods"),
            `pods is forbidden: User "dev" cannot list resource "pods" in API group "" in the namespace "default"`,
          );
          const canI = (context: string) =>
            as(
              context,
              "auth",
              "can-i",
              "create",
              "pods",
              "--subresource=portforward",
              "-n",
              "vif-system",
            );
          for (const context of [SIM_LIMITED_CONTEXT, SIM_DEV_CONTEXT]) {
            const no = await canI(context);
            assertEquals([no.code, no.stdout.trim()], [1, "no"], no.stderr);
          }
          // What vif install --grant-user dev makes.
          const grant = `${env.dir}/grant.yaml`;
          await Deno.writeTextFile(
            grant,
            `apiVersion: v1
kind: Namespace
metadata: { name: vif-system }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: { name: vif-user, namespace: vif-system }
rules:
- { apiGroups: [""], resources: [pods, services], verbs: [get, list] }
- { apiGroups: [""], resources: [pods/portforward], verbs: [create, get] }
- { apiGroups: [""], resources: [configmaps], verbs: [get], resourceNames: [traffic-manager-ca] }
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: { name: vif-user, namespace: vif-system }
roleRef: { apiGroup: rbac.authorization.k8s.io, kind: Role, name: vif-user }
subjects: [{ apiGroup: rbac.authorization.k8s.io, kind: User, name: dev }]
`,
          );
          const applied = await k("apply", "-f", grant);
          assertEquals(applied.code, 0, applied.stderr);
          const yes = await canI(SIM_DEV_CONTEXT);
          assertEquals([yes.code, yes.stdout.trim()], [0, "yes"], yes.stderr);
          assertEquals((await as(SIM_DEV_CONTEXT, "get", "pods", "-n", "vif-system")).code, 0);
          const ca = await as(
            SIM_DEV_CONTEXT,
            "get",
            "configmap",
            "traffic-manager-ca",
            "-n",
            "vif-system",
          );
          assertMatch(ca.stderr, /NotFound/); // allowed, and not there yet
          await forbidden(
            as(SIM_DEV_CONTEXT, "get", "configmap", "kube-root-ca.crt", "-n", "vif-system"),
            `configmaps "kube-root-ca.crt" is forbidden: User "dev" cannot get resource "configmaps" in API group "" in the namespace "vif-system"`,
          );
          await forbidden(
            as(SIM_DEV_CONTEXT, "get", "pods", "-n", "default"),
            `pods is forbidden: User "dev" cannot list resource "pods" in API group "" in the namespace "default"`,
          );
        },
      );

      await t.step("scaling adds a pod, deleting the Deployment removes them all", async () => {
        const scaled = await k("patch", "deployment", "probe", "-p", '{"spec":{"replicas":2}}');
        assertEquals(scaled.code, 0, scaled.stderr);
        await sim.waitReady("default", "app=probe", 2);
        const status = await k(
          "get",
          "deployment",
          "probe",
          "-o",
          "jsonpath={.status.readyReplicas}",
        );
        assertEquals(status.stdout, "2");
        const deleted = await k("delete", "deployment", "probe");
        assertEquals(deleted.code, 0, deleted.stderr);
        await waitUntil(
          () => !sim.net.pods().some((p) => p.name.startsWith("probe-")),
          15_000,
          "the probe pods to go",
          100,
        );
        assertEquals(sim.net.pods().filter((p) => p.name.startsWith("probe-")), []);
        assertEquals((await k("get", "pods", "-l", "app=probe", "-o", "name")).stdout.trim(), "");
      });

      await t.step("a container the machine cannot run says why in its status", async () => {
        const bad = `${env.dir}/bad.yaml`;
        await Deno.writeTextFile(
          bad,
          "apiVersion: v1\nkind: Pod\nmetadata: { name: bad, namespace: default }\n" +
            "spec: { containers: [{ name: c, image: nginx:1.27 }] }\n",
        );
        assertEquals((await k("apply", "-f", bad)).code, 0);
        let reason = "";
        await waitUntil(
          async () =>
            (reason = (await k(
                "get",
                "pod",
                "bad",
                "-o",
                "jsonpath={.status.containerStatuses[0].state.waiting.reason}",
              )).stdout) !== "" && reason !== "ContainerCreating",
          10_000,
          "a reason in the pod's status",
          100,
        );
        assertEquals(reason, "ErrImagePull");
      });
    } finally {
      await env.cleanup();
    }
  },
});

Deno.test({
  name: "deno task sim: up, exec, status and down leave nothing behind",
  sanitizeOps: false,
  sanitizeResources: false,
  // A cluster the user brought up has the same fixed names; leave it alone.
  ignore: (await run(["ip", "netns", "list"])).stdout.split("\n").some((l) =>
    l.startsWith("vif-ws")
  ),
  async fn() {
    const state = await Deno.makeTempDir({ prefix: "vif-sim-state-" });
    const sim = (...args: string[]) =>
      run([DENO, "run", "-A", "--config", `${ROOT}/deno.json`, `${ROOT}/scripts/sim.ts`, ...args], {
        env: { ...Deno.env.toObject(), VIF_SIM_STATE: state },
      });
    try {
      const up = await sim("up");
      assertEquals(up.code, 0, up.stdout + up.stderr);
      assertMatch(up.stdout, new RegExp(`kubeconfig: ${state}/kubeconfig`));
      const again = await sim("up");
      assertMatch(again.stdout, /already up/);
      const pods = await sim("exec", "--", "kubectl", "get", "pods", "-n", "other", "-o", "name");
      assertEquals(pods.code, 0, pods.stderr);
      assertMatch(pods.stdout, /^pod\/web-/m);
      const curl = await sim(
        "exec",
        "--",
        "curl",
        "-sk",
        "-o",
        "/dev/null",
        "-w",
        "%{http_code}",
        "https://198.19.200.1:6443/version",
      );
      assertEquals(curl.stdout, "401");
      const status = await sim("status");
      assertEquals(status.code, 0, status.stderr);
      assertMatch(status.stdout, /node\/node1\s+Ready/);
    } finally {
      const down = await sim("down");
      assertEquals(down.code, 0, down.stderr);
      const left = (await run(["ip", "netns", "list"])).stdout.split("\n").filter((l) =>
        /^vif-/.test(l)
      );
      assertEquals(left, []);
      assert(!(await Deno.stat(state).then(() => true, () => false)), `${state} is still there`);
      await Deno.remove(state, { recursive: true }).catch(() => {});
    }
  },
});
