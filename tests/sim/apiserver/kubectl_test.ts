/**
 * Debian's `kubectl` (1.20) against the fake API server, with a kubeconfig
 * written here (never `~/.kube`): get, apply (created / unchanged /
 * configured), `-o json`, delete, watch, and the errors for a wrong and a
 * limited token.
 *
 * ```
 *   kubectl --kubeconfig <tmp> ──HTTPS, Bearer──► startApiServer() on 127.0.0.1:random
 * ```
 */

import { assert, assertEquals } from "../../_assert.ts";
import {
  ADMIN_TOKEN,
  debianKubectl,
  kubectl,
  LIMITED_TOKEN,
  runningPod,
  TEST_SERVICE_CIDR,
  waitFor,
  withApi,
  writeKubeconfig,
  WRONG_TOKEN,
} from "./_testing.ts";
import { parseCidr4, parseIpv4 } from "./_cidr.ts";

const MANIFEST = `apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
  labels:
    app: web
spec:
  replicas: 1
  selector:
    matchLabels:
      app: web
  template:
    metadata:
      labels:
        app: web
    spec:
      containers:
      - name: nginx
        image: nginx:1.25
        ports:
        - containerPort: 80
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: 80
`;

Deno.test("kubectl get ns lists the namespaces of a new cluster", async () => {
  await withApi(async (t) => {
    const kc = await writeKubeconfig(t, ADMIN_TOKEN);
    const r = await kubectl(t, kc, ["get", "ns"]);
    assertEquals(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split("\n");
    assertEquals(lines[0]!.split(/\s+/), ["NAME", "STATUS", "AGE"]);
    assertEquals(
      lines.slice(1).map((l) => l.split(/\s+/).slice(0, 2).join(" ")),
      ["default Active", "kube-node-lease Active", "kube-public Active", "kube-system Active"],
    );
    const version = await kubectl(t, kc, ["version", "-o", "json"]);
    assertEquals(version.code, 0, version.stderr);
    assertEquals(JSON.parse(version.stdout).serverVersion.major, "1");
  });
});

Deno.test("kubectl apply creates, leaves unchanged and configures; get -o json and delete -f work", async () => {
  await withApi(async (t) => {
    const kc = await writeKubeconfig(t, ADMIN_TOKEN);
    const file = `${t.dir}/app.yaml`;
    await Deno.writeTextFile(file, MANIFEST);

    // Validation is on (no --validate=false): /openapi/v2 is served.
    let r = await kubectl(t, kc, ["apply", "-f", file]);
    assertEquals(r.code, 0, r.stderr);
    assertEquals(
      r.stdout,
      "namespace/shop created\ndeployment.apps/web created\nservice/web created\n",
    );
    r = await kubectl(t, kc, ["apply", "-f", file]);
    assertEquals(r.code, 0, r.stderr);
    assertEquals(
      r.stdout,
      "namespace/shop unchanged\ndeployment.apps/web unchanged\nservice/web unchanged\n",
    );
    await Deno.writeTextFile(file, MANIFEST.replace("replicas: 1", "replicas: 2"));
    r = await kubectl(t, kc, ["apply", "-f", file]);
    assertEquals(r.code, 0, r.stderr);
    assertEquals(
      r.stdout,
      "namespace/shop unchanged\ndeployment.apps/web configured\nservice/web unchanged\n",
    );

    r = await kubectl(t, kc, ["get", "deploy,svc", "-n", "shop", "-o", "json"]);
    assertEquals(r.code, 0, r.stderr);
    const list = JSON.parse(r.stdout) as {
      kind: string;
      items: {
        kind: string;
        metadata: { name: string; annotations?: Record<string, string> };
        spec: Record<string, unknown>;
      }[];
    };
    assertEquals(list.kind, "List");
    assertEquals(list.items.map((i) => i.kind), ["Deployment", "Service"]);
    const [deploy, svc] = list.items;
    assertEquals(deploy!.spec.replicas, 2);
    assert(
      deploy!.metadata.annotations?.["kubectl.kubernetes.io/last-applied-configuration"]?.includes(
        '"replicas":2',
      ),
      "last-applied-configuration is kept",
    );
    const ip = parseIpv4(String(svc!.spec.clusterIP))!;
    const cidr = parseCidr4(TEST_SERVICE_CIDR);
    assert(ip >= cidr.base && ip < cidr.base + cidr.size, `ClusterIP ${svc!.spec.clusterIP}`);

    // The table kubectl prints comes from the server (as=Table).
    r = await kubectl(t, kc, ["get", "svc", "-n", "shop"]);
    assertEquals(r.stdout.split("\n")[0]!.split(/\s+/), [
      "NAME",
      "TYPE",
      "CLUSTER-IP",
      "EXTERNAL-IP",
      "PORT(S)",
      "AGE",
    ]);
    assertEquals(r.stdout.split("\n")[1]!.split(/\s+/).slice(0, 5), [
      "web",
      "ClusterIP",
      String(svc!.spec.clusterIP),
      "<none>",
      "80/TCP",
    ]);

    r = await kubectl(t, kc, ["delete", "-f", file]);
    assertEquals(r.code, 0, r.stderr);
    assertEquals(
      r.stdout,
      'namespace "shop" deleted\ndeployment.apps "web" deleted\nservice "web" deleted\n',
    );
    r = await kubectl(t, kc, ["get", "ns", "shop"]);
    assertEquals(r.code, 1);
    assertEquals(r.stderr.trim(), 'Error from server (NotFound): namespaces "shop" not found');
  });
});

Deno.test("kubectl get pods -w prints a pod created during the watch", async () => {
  await withApi(async (t) => {
    const kc = await writeKubeconfig(t, ADMIN_TOKEN);
    t.api.store.create(runningPod("default", "first"));
    const child = new Deno.Command(await debianKubectl(), {
      args: ["--kubeconfig", kc, "get", "pods", "-n", "default", "-w"],
      env: { HOME: t.dir, PATH: "/usr/bin:/bin" },
      clearEnv: true,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    let out = "";
    const reading = (async () => {
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        out += value;
      }
    })();
    const stderr = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    const drain = (async () => {
      while (!(await stderr.read()).done) { /* ignore */ }
    })();
    try {
      await waitFor(
        () =>
          t.logs.some((l) =>
            l.includes("/api/v1/namespaces/default/pods?") && l.includes("watch=true")
          ),
        10_000,
        "kubectl's watch request",
      );
      t.api.store.create(runningPod("default", "second"));
      await waitFor(() => out.includes("second"), 10_000, "the new pod in kubectl's output");
    } finally {
      child.kill("SIGTERM");
      await child.status;
      await reading;
      await drain;
    }
    const lines = out.trim().split("\n").map((l) => l.split(/\s+/));
    assertEquals(lines[0], ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]);
    assertEquals(lines[1]!.slice(0, 4), ["first", "1/1", "Running", "0"]);
    assertEquals(lines[lines.length - 1]!.slice(0, 4), ["second", "1/1", "Running", "0"]);
  });
});

Deno.test("kubectl with a wrong token says Unauthorized", async () => {
  await withApi(async (t) => {
    const kc = await writeKubeconfig(t, WRONG_TOKEN);
    const r = await kubectl(t, kc, ["get", "pods"]);
    assertEquals(r.code, 1);
    assertEquals(r.stderr.trim(), "error: You must be logged in to the server (Unauthorized)");
  });
});

Deno.test("kubectl port-forward with the limited token is forbidden", async () => {
  await withApi(async (t) => {
    const kc = await writeKubeconfig(t, LIMITED_TOKEN);
    t.api.store.create(runningPod("default", "web"));
    const r = await kubectl(t, kc, ["port-forward", "-n", "default", "pod/web", "18080:80"]);
    assertEquals(r.code, 1);
    assert(
      r.stderr.includes(
        `pods "web" is forbidden: User "limited" cannot create resource "pods/portforward" in API group "" in the namespace "default"`,
      ),
      r.stderr,
    );
    const secrets = await kubectl(t, kc, ["get", "secrets"]);
    assertEquals(secrets.code, 1);
    assertEquals(
      secrets.stderr.trim(),
      `Error from server (Forbidden): secrets is forbidden: User "limited" cannot list resource "secrets" in API group "" in the namespace "default"`,
    );
  });
});
