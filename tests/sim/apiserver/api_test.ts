/**
 * The fake API server over HTTPS, called with `fetch` and a raw WebSocket
 * client: status bodies, discovery, REST semantics, watch, port-forward
 * framing.
 *
 * ```
 *   test ──fetch / raw wss──► startApiServer() on 127.0.0.1:random ──dial──► echo server 127.0.0.1:random
 * ```
 */

import { assert, assertEquals } from "../../_assert.ts";
import {
  ADMIN_TOKEN,
  call,
  callJson,
  LIMITED_TOKEN,
  runningPod,
  startEchoServer,
  TEST_SERVICE_CIDR,
  type TestApi,
  withApi,
  WRONG_TOKEN,
} from "./_testing.ts";
import { connectWs, UpgradeRefusedError } from "./_ws_client.ts";

const UNAUTHORIZED = {
  kind: "Status",
  apiVersion: "v1",
  metadata: {},
  status: "Failure",
  message: "Unauthorized",
  reason: "Unauthorized",
  code: 401,
};

Deno.test("startApiServer() answers 401 with a Status body for a missing or unknown token", async () => {
  await withApi(async (t) => {
    for (const token of [null, WRONG_TOKEN]) {
      for (const path of ["/api/v1/namespaces", "/version", "/api"]) {
        const { code, body } = await callJson(t, path, { token });
        assertEquals(code, 401, `${path} with ${token}`);
        assertEquals(body, UNAUTHORIZED, `${path} with ${token}`);
      }
    }
  });
});

Deno.test("startApiServer() forbids secrets and pods/portforward to a limited token with the real message", async () => {
  await withApi(async (t) => {
    t.api.store.create(runningPod("default", "web"));
    const pf = await callJson(t, "/api/v1/namespaces/default/pods/web/portforward?ports=80", {
      method: "POST",
      token: LIMITED_TOKEN,
      headers: { upgrade: "SPDY/3.1", connection: "Upgrade" },
    });
    assertEquals(pf.code, 403);
    assertEquals(pf.body, {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message:
        `pods "web" is forbidden: User "limited" cannot create resource "pods/portforward" in API group "" in the namespace "default"`,
      reason: "Forbidden",
      details: { name: "web", kind: "pods" },
      code: 403,
    });
    const list = await callJson(t, "/api/v1/namespaces/default/secrets", { token: LIMITED_TOKEN });
    assertEquals(list.code, 403);
    assertEquals(
      list.body.message,
      `secrets is forbidden: User "limited" cannot list resource "secrets" in API group "" in the namespace "default"`,
    );
    const all = await callJson(t, "/api/v1/secrets", { token: LIMITED_TOKEN });
    assertEquals(
      all.body.message,
      `secrets is forbidden: User "limited" cannot list resource "secrets" in API group "" at the cluster scope`,
    );
    // Everything else is allowed, and the WebSocket upgrade is refused before it happens.
    assertEquals(
      (await callJson(t, "/api/v1/namespaces/default/pods/web", { token: LIMITED_TOKEN })).code,
      200,
    );
    try {
      await connectWs(`${t.api.url}/api/v1/namespaces/default/pods/web/portforward?ports=80`, {
        caPem: t.tls.caPem,
        token: LIMITED_TOKEN,
        protocols: ["v4.channel.k8s.io"],
      });
      throw new Error("the upgrade went through");
    } catch (error) {
      assert(error instanceof UpgradeRefusedError, String(error));
      assertEquals(error.status, 403);
      assert(error.body.includes(`cannot create resource \\"pods/portforward\\"`), error.body);
    }
    // A SelfSubjectAccessReview tells the same.
    const review = await callJson(t, "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews", {
      method: "POST",
      token: LIMITED_TOKEN,
      body: JSON.stringify({
        apiVersion: "authorization.k8s.io/v1",
        kind: "SelfSubjectAccessReview",
        spec: {
          resourceAttributes: {
            namespace: "default",
            verb: "create",
            resource: "pods",
            subresource: "portforward",
          },
        },
      }),
    });
    assertEquals(review.code, 201);
    assertEquals((review.body.status as { allowed: boolean }).allowed, false);
  });
});

Deno.test("startApiServer() serves discovery documents of the real shape", async () => {
  await withApi(async (t) => {
    const version = (await callJson(t, "/version")).body;
    assertEquals(version.major, "1");
    assert(/^v1\.\d+\.\d+$/.test(String(version.gitVersion)), String(version.gitVersion));
    const api = (await callJson(t, "/api")).body;
    assertEquals(api.kind, "APIVersions");
    assertEquals(api.versions, ["v1"]);
    const apis = (await callJson(t, "/apis")).body as {
      kind: string;
      groups: { name: string; preferredVersion: { groupVersion: string } }[];
    };
    assertEquals(apis.kind, "APIGroupList");
    const groups = Object.fromEntries(
      apis.groups.map((g) => [g.name, g.preferredVersion.groupVersion]),
    );
    assertEquals(groups["apps"], "apps/v1");
    assertEquals(groups["networking.k8s.io"], "networking.k8s.io/v1");
    assertEquals(groups["rbac.authorization.k8s.io"], "rbac.authorization.k8s.io/v1");

    type Res = {
      name: string;
      namespaced: boolean;
      kind: string;
      verbs: string[];
      shortNames?: string[];
    };
    const core = (await callJson(t, "/api/v1")).body as {
      kind: string;
      groupVersion: string;
      resources: Res[];
    };
    assertEquals(core.kind, "APIResourceList");
    assertEquals(core.groupVersion, "v1");
    const by = (list: Res[]) => Object.fromEntries(list.map((r) => [r.name, r]));
    const c = by(core.resources);
    assertEquals(c["pods"]!.namespaced, true);
    assertEquals(c["pods"]!.kind, "Pod");
    assertEquals(c["pods"]!.shortNames, ["po"]);
    assert(c["pods"]!.verbs.includes("watch"));
    assertEquals(c["pods/portforward"]!.verbs, ["create", "get"]);
    assertEquals(c["namespaces"]!.namespaced, false);
    assertEquals(c["namespaces"]!.shortNames, ["ns"]);
    assertEquals(c["services"]!.shortNames, ["svc"]);
    assertEquals(c["nodes"]!.namespaced, false);
    for (const name of ["endpoints", "secrets", "configmaps", "serviceaccounts"]) {
      assertEquals(c[name]!.namespaced, true, name);
    }
    const apps = (await callJson(t, "/apis/apps/v1")).body as {
      groupVersion: string;
      resources: Res[];
    };
    assertEquals(apps.groupVersion, "apps/v1");
    assertEquals(by(apps.resources)["deployments"]!.shortNames, ["deploy"]);
    assertEquals(by(apps.resources)["deployments/scale"]!.kind, "Scale");
    const net = (await callJson(t, "/apis/networking.k8s.io/v1")).body as { resources: Res[] };
    assertEquals(by(net.resources)["servicecidrs"]!.namespaced, false);
    const rbac = (await callJson(t, "/apis/rbac.authorization.k8s.io/v1")).body as {
      resources: Res[];
    };
    assertEquals(
      rbac.resources.map((r) => [r.name, r.namespaced]),
      [["clusterrolebindings", false], ["clusterroles", false], ["rolebindings", true], [
        "roles",
        true,
      ]],
    );
    assertEquals((await callJson(t, "/apis/nope.example/v1")).code, 404);
  });
});

Deno.test("startApiServer() has a ServiceCIDR named kubernetes holding the service CIDR", async () => {
  await withApi(async (t) => {
    const { code, body } = await callJson(t, "/apis/networking.k8s.io/v1/servicecidrs/kubernetes");
    assertEquals(code, 200);
    assertEquals(body.kind, "ServiceCIDR");
    assertEquals((body.spec as { cidrs: string[] }).cidrs, [TEST_SERVICE_CIDR]);
    const svc = (await callJson(t, "/api/v1/namespaces/default/services/kubernetes")).body;
    assertEquals((svc.spec as { clusterIP: string }).clusterIP, "198.19.0.1");
  });
});

function service(name: string, clusterIP?: string) {
  return JSON.stringify({
    apiVersion: "v1",
    kind: "Service",
    metadata: { name },
    spec: { ...(clusterIP ? { clusterIP } : {}), selector: { app: name }, ports: [{ port: 80 }] },
  });
}

Deno.test("startApiServer() refuses a ClusterIP outside the range with the message vif parses", async () => {
  await withApi(async (t) => {
    const { code, body } = await callJson(t, "/api/v1/namespaces/default/services", {
      method: "POST",
      body: service("probe", "1.1.1.1"),
    });
    assertEquals(code, 422);
    const detail =
      `Invalid value: []string{"1.1.1.1"}: failed to allocate IP 1.1.1.1: provided IP is not in the valid range. The range of valid IPs is ${TEST_SERVICE_CIDR}`;
    assertEquals(body, {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: `Service "probe" is invalid: spec.clusterIPs: ${detail}`,
      reason: "Invalid",
      details: {
        name: "probe",
        kind: "Service",
        causes: [{ reason: "FieldValueInvalid", message: detail, field: "spec.clusterIPs" }],
      },
      code: 422,
    });
  });
});

Deno.test("startApiServer() allocates ClusterIPs in range, keeps headless services and refuses a taken IP", async () => {
  await withApi(async (t) => {
    const a = await callJson(t, "/api/v1/namespaces/default/services", {
      method: "POST",
      body: service("a"),
    });
    assertEquals(a.code, 201);
    const spec = a.body.spec as Record<string, unknown>;
    assert(String(spec.clusterIP).startsWith("198.19."), String(spec.clusterIP));
    assertEquals(spec.clusterIPs, [spec.clusterIP]);
    assertEquals(spec.type, "ClusterIP");
    assertEquals((spec.ports as unknown[])[0], { port: 80, protocol: "TCP", targetPort: 80 });
    const h = await callJson(t, "/api/v1/namespaces/default/services", {
      method: "POST",
      body: service("h", "None"),
    });
    assertEquals((h.body.spec as { clusterIP: string }).clusterIP, "None");
    const fixed = await callJson(t, "/api/v1/namespaces/default/services", {
      method: "POST",
      body: service("dns", "198.19.0.10"),
    });
    assertEquals((fixed.body.spec as { clusterIP: string }).clusterIP, "198.19.0.10");
    const again = await callJson(t, "/api/v1/namespaces/default/services", {
      method: "POST",
      body: service("dns2", "198.19.0.10"),
    });
    assertEquals(again.code, 422);
    assert(
      String(again.body.message).endsWith("provided IP is already allocated"),
      String(again.body.message),
    );
  });
});

async function collectWatch(
  t: TestApi,
  path: string,
  until: (events: { type: string; object: Record<string, unknown> }[]) => boolean,
  act: () => Promise<void> | void = () => {},
): Promise<{ type: string; object: Record<string, unknown> }[]> {
  const client = Deno.createHttpClient({ caCerts: [t.tls.caPem] });
  const abort = new AbortController();
  const events: { type: string; object: Record<string, unknown> }[] = [];
  try {
    const res = await fetch(`${t.api.url}${path}`, {
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      client,
      signal: abort.signal,
    });
    assertEquals(res.status, 200);
    const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
    let acted = false;
    let text = "";
    const deadline = setTimeout(() => abort.abort(), 10_000);
    try {
      while (!until(events)) {
        if (!acted) {
          acted = true;
          await act();
        }
        const { value, done } = await reader.read();
        if (done) break;
        text += value;
        let i: number;
        while ((i = text.indexOf("\n")) >= 0) {
          events.push(JSON.parse(text.slice(0, i)));
          text = text.slice(i + 1);
        }
      }
    } finally {
      clearTimeout(deadline);
      await reader.cancel().catch(() => {});
    }
  } finally {
    abort.abort();
    client.close();
  }
  return events;
}

Deno.test("startApiServer() resumes a watch from a resourceVersion and filters by label", async () => {
  await withApi(async (t) => {
    const store = t.api.store;
    const cm = (name: string, app: string) => ({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name, namespace: "default", labels: { app } },
      data: {},
    });
    store.create(cm("before", "x"));
    const rv = store.resourceVersion;
    store.create(cm("after-x", "x"));
    store.create(cm("after-y", "y"));
    store.modify({ resource: "configmaps", namespace: "default", name: "before" }, (o) => {
      o.metadata.labels = { app: "y" }; // leaves the selector: DELETED for app=x
    });
    for (const watchParam of ["1", "true"]) {
      const events = await collectWatch(
        t,
        `/api/v1/namespaces/default/configmaps?watch=${watchParam}&resourceVersion=${rv}&labelSelector=app%3Dx`,
        (e) => e.length >= 2,
      );
      assertEquals(
        events.map((e) => [e.type, (e.object.metadata as { name: string }).name]),
        [["ADDED", "after-x"], ["DELETED", "before"]],
      );
      assertEquals(events[0]!.object.kind, "ConfigMap");
    }
    // From "0": the current objects as ADDED, then live changes.
    const live = await collectWatch(
      t,
      `/api/v1/namespaces/default/configmaps?watch=1&labelSelector=app%3Dy`,
      (e) =>
        e.some((x) =>
          x.type === "ADDED" && (x.object.metadata as { name: string }).name === "late"
        ),
      () => {
        store.create(cm("late", "y"));
      },
    );
    assertEquals(
      live.map((e) => (e.object.metadata as { name: string }).name).sort(),
      ["after-y", "before", "late"],
    );
  });
});

Deno.test("startApiServer() ends a watch from a compacted resourceVersion with a 410 Expired event", async () => {
  await withApi(async (t) => {
    for (let i = 0; i < 10; i++) {
      t.api.store.create({
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name: `c${i}`, namespace: "default" },
      });
    }
    const events = await collectWatch(
      t,
      "/api/v1/configmaps?watch=true&resourceVersion=2",
      () => false,
    );
    assertEquals(events.length, 1);
    assertEquals(events[0]!.type, "ERROR");
    const status = events[0]!.object;
    assertEquals(status.kind, "Status");
    assertEquals(status.code, 410);
    assertEquals(status.reason, "Expired");
    assert(
      /^too old resource version: 2 \(\d+\)$/.test(String(status.message)),
      String(status.message),
    );
  }, { historySize: 5 });
});

Deno.test("startApiServer() rejects a stale resourceVersion on PUT with 409 Conflict", async () => {
  await withApi(async (t) => {
    const created = await callJson(t, "/api/v1/namespaces/default/configmaps", {
      method: "POST",
      body: JSON.stringify({ metadata: { name: "c" }, data: { a: "1" } }),
    });
    assertEquals(created.code, 201);
    const meta = created.body.metadata as Record<string, string>;
    assert(meta.uid && meta.creationTimestamp && meta.resourceVersion, JSON.stringify(meta));
    const put = (rv: string, data: Record<string, string>) =>
      callJson(t, "/api/v1/namespaces/default/configmaps/c", {
        method: "PUT",
        body: JSON.stringify({
          apiVersion: "v1",
          kind: "ConfigMap",
          metadata: { name: "c", resourceVersion: rv },
          data,
        }),
      });
    const ok = await put(meta.resourceVersion!, { a: "2" });
    assertEquals(ok.code, 200);
    const stale = await put(meta.resourceVersion!, { a: "3" });
    assertEquals(stale.code, 409);
    assertEquals(stale.body.reason, "Conflict");
    assertEquals(
      stale.body.message,
      `Operation cannot be fulfilled on configmaps "c": the object has been modified; please apply your changes to the latest version and try again`,
    );
    const dup = await callJson(t, "/api/v1/namespaces/default/configmaps", {
      method: "POST",
      body: JSON.stringify({ metadata: { name: "c" } }),
    });
    assertEquals(dup.code, 409);
    assertEquals(dup.body.message, `configmaps "c" already exists`);
    const missing = await callJson(t, "/apis/apps/v1/namespaces/default/deployments/nope");
    assertEquals(missing.body, {
      kind: "Status",
      apiVersion: "v1",
      metadata: {},
      status: "Failure",
      message: `deployments.apps "nope" not found`,
      reason: "NotFound",
      details: { name: "nope", group: "apps", kind: "deployments" },
      code: 404,
    });
  });
});

const DEPLOYMENT = {
  apiVersion: "apps/v1",
  kind: "Deployment",
  metadata: { name: "web" },
  spec: {
    selector: { matchLabels: { app: "web" } },
    template: {
      metadata: { labels: { app: "web" } },
      spec: {
        containers: [
          { name: "a", image: "nginx:1", ports: [{ containerPort: 80 }] },
          { name: "b", image: "busybox:1" },
        ],
      },
    },
  },
};

Deno.test("startApiServer() applies merge, strategic merge and JSON patches", async () => {
  await withApi(async (t) => {
    const path = "/apis/apps/v1/namespaces/default/deployments";
    const created = await callJson(t, path, { method: "POST", body: JSON.stringify(DEPLOYMENT) });
    assertEquals(created.code, 201);
    assertEquals((created.body.spec as { replicas: number }).replicas, 1);
    assertEquals((created.body.metadata as { generation: number }).generation, 1);
    const smp = await callJson(t, `${path}/web`, {
      method: "PATCH",
      contentType: "application/strategic-merge-patch+json",
      body: JSON.stringify({
        spec: { template: { spec: { containers: [{ name: "b", image: "busybox:2" }] } } },
      }),
    });
    assertEquals(smp.code, 200);
    type D = {
      spec: {
        replicas: number;
        template: { spec: { containers: { name: string; image: string }[] } };
      };
    };
    assertEquals(
      (smp.body as unknown as D).spec.template.spec.containers.map((c) => `${c.name}=${c.image}`),
      ["a=nginx:1", "b=busybox:2"],
    );
    assertEquals((smp.body.metadata as { generation: number }).generation, 2);
    const merge = await callJson(t, `${path}/web`, {
      method: "PATCH",
      contentType: "application/merge-patch+json",
      body: JSON.stringify({ spec: { replicas: 3 }, metadata: { labels: { x: "y" } } }),
    });
    assertEquals((merge.body as unknown as D).spec.replicas, 3);
    const json = await callJson(t, `${path}/web`, {
      method: "PATCH",
      contentType: "application/json-patch+json",
      body: JSON.stringify([{ op: "replace", path: "/spec/replicas", value: 4 }]),
    });
    assertEquals((json.body as unknown as D).spec.replicas, 4);
    const bad = await callJson(t, `${path}/web`, {
      method: "PATCH",
      contentType: "application/json-patch+json",
      body: JSON.stringify([{ op: "test", path: "/spec/replicas", value: 9 }]),
    });
    assertEquals(bad.code, 422);
    // Status through the main resource is ignored; through /status it is kept.
    const status = { replicas: 4, readyReplicas: 2, availableReplicas: 2 };
    await callJson(t, `${path}/web`, {
      method: "PATCH",
      contentType: "application/merge-patch+json",
      body: JSON.stringify({ status }),
    });
    assertEquals((await callJson(t, `${path}/web`)).body.status, {});
    const st = await callJson(t, `${path}/web/status`, {
      method: "PATCH",
      contentType: "application/merge-patch+json",
      body: JSON.stringify({ status }),
    });
    assertEquals(st.body.status, status);
    const scale = await callJson(t, `${path}/web/scale`);
    assertEquals(scale.body.kind, "Scale");
    assertEquals(scale.body.spec, { replicas: 4 });
    assertEquals(scale.body.status, { replicas: 4, selector: "app=web" });
  });
});

Deno.test("startApiServer() validates a deployment's selector against its template", async () => {
  await withApi(async (t) => {
    const bad = structuredClone(DEPLOYMENT);
    bad.spec.template.metadata.labels = { app: "other" };
    const { code, body } = await callJson(t, "/apis/apps/v1/namespaces/default/deployments", {
      method: "POST",
      body: JSON.stringify(bad),
    });
    assertEquals(code, 422);
    assertEquals(
      body.message,
      'Deployment.apps "web" is invalid: spec.template.metadata.labels: Invalid value: map[string]string{"app":"other"}: `selector` does not match template `labels`',
    );
    const ns = await callJson(t, "/api/v1/namespaces/nowhere/configmaps", {
      method: "POST",
      body: JSON.stringify({ metadata: { name: "c" } }),
    });
    assertEquals(ns.code, 404);
    assertEquals(ns.body.message, `namespaces "nowhere" not found`);
  });
});

Deno.test("startApiServer() answers a delete with the object or a Success Status as the real server does", async () => {
  await withApi(async (t) => {
    t.api.store.create(runningPod("default", "p"));
    t.api.store.create({
      apiVersion: "v1",
      kind: "ConfigMap",
      metadata: { name: "c", namespace: "default" },
    });
    const pod = await callJson(t, "/api/v1/namespaces/default/pods/p", { method: "DELETE" });
    assertEquals(pod.code, 200);
    assertEquals(pod.body.kind, "Pod");
    const cm = await callJson(t, "/api/v1/namespaces/default/configmaps/c", { method: "DELETE" });
    assertEquals(cm.code, 200);
    assertEquals(cm.body.kind, "Status");
    assertEquals(cm.body.status, "Success");
    assertEquals((cm.body.details as { name: string; kind: string }).kind, "configmaps");
    const again = await callJson(t, "/api/v1/namespaces/default/configmaps/c", {
      method: "DELETE",
    });
    assertEquals(again.code, 404);
  });
});

Deno.test("startApiServer() pages a list with limit and continue", async () => {
  await withApi(async (t) => {
    for (let i = 0; i < 5; i++) {
      t.api.store.create({
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name: `c${i}`, namespace: "default" },
      });
    }
    const names: string[] = [];
    let cont = "";
    for (let page = 0; page < 5; page++) {
      const { body } = await callJson(
        t,
        `/api/v1/namespaces/default/configmaps?limit=2${
          cont ? `&continue=${encodeURIComponent(cont)}` : ""
        }`,
      );
      assertEquals(body.kind, "ConfigMapList");
      const items = body.items as { kind?: string; metadata: { name: string } }[];
      assertEquals(items[0]!.kind, undefined, "list items carry no kind");
      names.push(...items.map((i) => i.metadata.name));
      cont = String((body.metadata as { continue?: string }).continue ?? "");
      if (!cont) break;
    }
    assertEquals(names.filter((n) => n.startsWith("c")), ["c0", "c1", "c2", "c3", "c4"]);
    const byName = await callJson(
      t,
      "/api/v1/namespaces/default/configmaps?fieldSelector=metadata.name%3Dc3",
    );
    assertEquals((byName.body.items as unknown[]).length, 1);
    const bad = await callJson(
      t,
      "/api/v1/namespaces/default/configmaps?fieldSelector=spec.nope%3D1",
    );
    assertEquals(bad.code, 400);
    assertEquals(bad.body.message, "field label not supported: spec.nope");
  });
});

Deno.test("pods/portforward speaks the kubelet's v4 channel protocol to a client offering v5 first", async () => {
  const echo = startEchoServer();
  try {
    await withApi(async (t) => {
      t.api.store.create(runningPod("default", "echo"));
      const ws = await connectWs(
        `${t.api.url}/api/v1/namespaces/default/pods/echo/portforward?ports=${echo.port}&ports=1`,
        {
          caPem: t.tls.caPem,
          token: ADMIN_TOKEN,
          protocols: [
            "v5.channel.k8s.io",
            "v4.channel.k8s.io",
            "v3.channel.k8s.io",
            "channel.k8s.io",
          ],
        },
      );
      try {
        assertEquals(ws.protocol, "v4.channel.k8s.io");
        const le = [echo.port & 255, echo.port >> 8];
        const first: number[][] = [];
        for (let i = 0; i < 4; i++) first.push([...(await ws.next())!.data]);
        // Each channel's first message: channel byte + port, little-endian.
        assertEquals(
          first.sort((a, b) => a[0]! - b[0]!),
          [[0, ...le], [1, ...le], [2, 1, 0], [3, 1, 0]],
        );
        // Port 1 is closed: its error channel says so.
        const err = (await ws.next())!;
        assertEquals(err.data[0], 3);
        const text = new TextDecoder().decode(err.data.subarray(1));
        assert(text.startsWith("error forwarding port 1 to pod default/echo, uid "), text);
        // Port echo.port echoes.
        const payload = new TextEncoder().encode("hello through the kubelet");
        await ws.sendBinary(new Uint8Array([0, ...payload]));
        let got = "";
        while (got.length < payload.length) {
          const m = (await ws.next())!;
          assertEquals(m.opcode, 2);
          assertEquals(m.data[0], 0);
          got += new TextDecoder().decode(m.data.subarray(1));
        }
        assertEquals(got, "hello through the kubelet");
      } finally {
        await ws.close();
      }
    });
  } finally {
    echo.close();
  }
});

Deno.test("pods/portforward answers 404 for a missing pod and 400 for a pod that is not running", async () => {
  await withApi(async (t) => {
    const open = (pod: string) =>
      connectWs(`${t.api.url}/api/v1/namespaces/default/pods/${pod}/portforward?ports=80`, {
        caPem: t.tls.caPem,
        token: ADMIN_TOKEN,
        protocols: ["v4.channel.k8s.io"],
      });
    try {
      await open("ghost");
      throw new Error("the upgrade went through");
    } catch (error) {
      assert(error instanceof UpgradeRefusedError, String(error));
      assertEquals(error.status, 404);
      assertEquals(JSON.parse(error.body).message, `pods "ghost" not found`);
    }
    const pending = runningPod("default", "pending");
    (pending.status as Record<string, unknown>).phase = "Pending";
    t.api.store.create(pending);
    try {
      await open("pending");
      throw new Error("the upgrade went through");
    } catch (error) {
      assert(error instanceof UpgradeRefusedError, String(error));
      assertEquals(error.status, 400);
      assertEquals(
        JSON.parse(error.body).message,
        "pod pending is not running and cannot be port-forwarded: its phase is Pending",
      );
    }
    // No upgrade at all.
    const plain = await call(t, "/api/v1/namespaces/default/pods/pending/portforward?ports=80");
    assertEquals(plain.status, 400);
  });
});

Deno.test("pods/portforward closes the WebSocket when the pod closes the connection", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const conn = await listener.accept();
    await conn.write(new TextEncoder().encode("bye"));
    conn.close();
  })();
  try {
    await withApi(async (t) => {
      t.api.store.create(runningPod("default", "once"));
      const ws = await connectWs(
        `${t.api.url}/api/v1/namespaces/default/pods/once/portforward?ports=${listener.addr.port}`,
        { caPem: t.tls.caPem, token: ADMIN_TOKEN, protocols: ["v4.channel.k8s.io"] },
      );
      const frames: number[][] = [];
      for (;;) {
        const m = await ws.next();
        if (m === null || m.opcode === 8) break;
        frames.push([...m.data]);
      }
      await ws.close();
      const data = frames.filter((f) => f[0] === 0).slice(1).map((f) => f.slice(1)).flat();
      assertEquals(new TextDecoder().decode(new Uint8Array(data)), "bye");
    });
    await served;
  } finally {
    listener.close();
  }
});

Deno.test("startApiServer() sends BOOKMARK events to watches that allow them", async () => {
  await withApi(async (t) => {
    const events = await collectWatch(
      t,
      "/api/v1/namespaces/default/pods?watch=1&allowWatchBookmarks=true&resourceVersion=" +
        t.api.store.resourceVersion,
      (e) => e.some((x) => x.type === "BOOKMARK"),
    );
    const bookmark = events.find((e) => e.type === "BOOKMARK")!;
    assertEquals(bookmark.object.kind, "Pod");
    assertEquals(
      (bookmark.object.metadata as { resourceVersion: string }).resourceVersion,
      t.api.store.resourceVersion,
    );
  }, { bookmarkIntervalMs: 50 });
});

Deno.test("startApiServer() publishes its address in default/kubernetes and the root CA in every namespace", async () => {
  await withApi(async (t) => {
    const ep = (await callJson(t, "/api/v1/namespaces/default/endpoints/kubernetes")).body as {
      subsets: { addresses: { ip: string }[]; ports: { port: number }[] }[];
    };
    assertEquals(ep.subsets[0]!.addresses[0]!.ip, "127.0.0.1");
    assertEquals(ep.subsets[0]!.ports[0]!.port, t.api.port);
    const ca =
      (await callJson(t, "/api/v1/namespaces/kube-system/configmaps/kube-root-ca.crt")).body;
    assertEquals((ca.data as Record<string, string>)["ca.crt"], "-----BEGIN CERTIFICATE-----\n…");
  }, { rootCaPem: "-----BEGIN CERTIFICATE-----\n…" });
});
