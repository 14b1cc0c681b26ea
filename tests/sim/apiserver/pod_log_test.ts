/**
 * `pods/NAME/log` of the fake API server, called with `fetch`, Debian's
 * `kubectl logs` and python-kubernetes' `read_namespaced_pod_log`, with the
 * lines from a log source the test gives (the simulated kubelet's side).
 *
 * ```
 *   fetch / kubectl logs / python ──HTTPS──► startApiServer() ── podLogs(ns, pod, container, run) ──► LINES
 * ```
 */

import { assert, assertEquals } from "../../_assert.ts";
import {
  ADMIN_TOKEN,
  call,
  callJson,
  kubectl,
  type TestApi,
  withApi,
  writeKubeconfig,
} from "./_testing.ts";
import type { KubeObject, PodLogLine, PodLogSource, Store, TokenInfo } from "./mod.ts";
import { bootstrapRbac, rbacAuthorize } from "../rbac.ts";

const T0 = Date.parse("2025-03-04T05:06:07.250Z");

/** The lines of each run, by `pod/container/containerID`. */
const LINES: Record<string, PodLogLine[]> = {
  "web/app/sim://web-uid-1": [
    { time: T0, text: "run 1: starting" },
    { time: T0 + 1000, text: "run 1: listening on :8080" },
    { time: T0 + 2000, text: "run 1: ready" },
  ],
  "web/app/sim://web-uid-0": [{ time: T0 - 60_000, text: "run 0: panic: out of memory" }],
  "multi/b/sim://multi-uid-0": [{ time: T0, text: "b says hello" }],
};

const source: PodLogSource = (ref) => LINES[`${ref.pod}/${ref.container}/${ref.containerID}`];

const running = (id: string) => ({
  containerID: id,
  state: { running: { startedAt: "2025-03-04T05:06:07Z" } },
});

function status(name: string, extra: Record<string, unknown>) {
  return {
    name,
    image: "busybox:1",
    imageID: `sim://sha256:${"0".repeat(64)}`,
    ready: true,
    restartCount: 0,
    lastState: {},
    ...extra,
  };
}

function pods(store: Store): void {
  const pod = (name: string, spec: Record<string, unknown>, st: Record<string, unknown>) =>
    store.create({
      apiVersion: "v1",
      kind: "Pod",
      metadata: { name, namespace: "default" },
      spec,
      status: { phase: "Running", ...st },
    } as KubeObject);
  pod("web", { nodeName: "node1", containers: [{ name: "app", image: "busybox:1" }] }, {
    containerStatuses: [status("app", {
      ...running("sim://web-uid-1"),
      restartCount: 1,
      lastState: {
        terminated: { exitCode: 2, reason: "Error", containerID: "sim://web-uid-0" },
      },
    })],
  });
  pod("multi", {
    nodeName: "node1",
    initContainers: [{ name: "setup", image: "busybox:1" }],
    containers: [{ name: "a", image: "busybox:1" }, { name: "b", image: "busybox:1" }],
  }, {
    containerStatuses: [
      status("a", running("sim://multi-uid-a")),
      status("b", running("sim://multi-uid-0")),
    ],
  });
  pod("waiting", { nodeName: "node1", containers: [{ name: "app", image: "busybox:1" }] }, {
    phase: "Pending",
    containerStatuses: [status("app", { state: { waiting: { reason: "ContainerCreating" } } })],
  });
  pod("unscheduled", { containers: [{ name: "app", image: "busybox:1" }] }, { phase: "Pending" });
}

async function text(t: TestApi, path: string, token = ADMIN_TOKEN) {
  const res = await call(t, path, { token });
  return { code: res.status, type: res.headers.get("content-type"), body: await res.text() };
}

const LOG = "/api/v1/namespaces/default/pods";

Deno.test("pods/log answers the running container's lines as text/plain", async () => {
  await withApi(async (t) => {
    pods(t.api.store);
    assertEquals(await text(t, `${LOG}/web/log`), {
      code: 200,
      type: "text/plain",
      body: "run 1: starting\nrun 1: listening on :8080\nrun 1: ready\n",
    });
    assertEquals(
      (await text(t, `${LOG}/multi/log?container=b`)).body,
      "b says hello\n",
    );
  }, { podLogs: source });
});

Deno.test("pods/log answers the run before with previous=true", async () => {
  await withApi(async (t) => {
    pods(t.api.store);
    assertEquals(
      (await text(t, `${LOG}/web/log?previous=true`)).body,
      "run 0: panic: out of memory\n",
    );
    const none = await callJson(t, `${LOG}/multi/log?container=b&previous=true`);
    assertEquals([none.code, none.body.reason, none.body.message], [
      400,
      "BadRequest",
      'previous terminated container "b" in pod "multi" not found',
    ]);
  }, { podLogs: source });
});

Deno.test("pods/log applies tailLines, then limitBytes, with timestamps and sinceTime", async () => {
  await withApi(async (t) => {
    pods(t.api.store);
    assertEquals(
      (await text(t, `${LOG}/web/log?tailLines=2`)).body,
      "run 1: listening on :8080\nrun 1: ready\n",
    );
    assertEquals((await text(t, `${LOG}/web/log?tailLines=0`)).body, "");
    assertEquals((await text(t, `${LOG}/web/log?tailLines=2&limitBytes=10`)).body, "run 1: lis");
    assertEquals(
      (await text(t, `${LOG}/web/log?tailLines=1&timestamps=true`)).body,
      "2025-03-04T05:06:09.250000000Z run 1: ready\n",
    );
    assertEquals(
      (await text(t, `${LOG}/web/log?sinceTime=2025-03-04T05:06:08Z`)).body,
      "run 1: listening on :8080\nrun 1: ready\n",
    );
  }, { podLogs: source });
});

Deno.test("pods/log refuses as kube-apiserver and the kubelet do", async () => {
  await withApi(async (t) => {
    pods(t.api.store);
    const cases: Array<[string, number, string, string]> = [
      [`${LOG}/nope/log`, 404, "NotFound", 'pods "nope" not found'],
      [
        `${LOG}/multi/log`,
        400,
        "BadRequest",
        "a container name must be specified for pod multi, choose one of: [setup a b]",
      ],
      [
        `${LOG}/web/log?container=sidecar`,
        400,
        "BadRequest",
        "container sidecar is not valid for pod web",
      ],
      [
        `${LOG}/waiting/log`,
        400,
        "BadRequest",
        'container "app" in pod "waiting" is waiting to start: ContainerCreating',
      ],
      [
        `${LOG}/web/log?tailLines=-1`,
        422,
        "Invalid",
        'PodLogOptions "web" is invalid: tailLines: Invalid value: -1: must be greater than or equal to 0',
      ],
      [
        `${LOG}/web/log?limitBytes=0`,
        422,
        "Invalid",
        'PodLogOptions "web" is invalid: limitBytes: Invalid value: 0: must be greater than 0',
      ],
    ];
    for (const [path, code, reason, message] of cases) {
      const r = await callJson(t, path);
      assertEquals([r.code, r.body.kind, r.body.reason, r.body.message], [
        code,
        "Status",
        reason,
        message,
      ], path);
    }
    // On no node yet: nothing to ask, an empty log.
    assertEquals(await text(t, `${LOG}/unscheduled/log`), {
      code: 200,
      type: "text/plain",
      body: "",
    });
    const post = await call(t, `${LOG}/web/log`, { method: "POST", body: "{}" });
    assertEquals(post.status, 405);
  }, { podLogs: source });
});

Deno.test("pods/log needs get on pods/log, not only on pods", async () => {
  const tokens: Record<string, TokenInfo> = {
    [ADMIN_TOKEN]: { user: "admin", groups: ["system:masters"] },
    "bob-token-0123456789": { user: "bob" },
  };
  let store: Store | undefined;
  await withApi(async (t) => {
    store = t.api.store;
    for (const o of bootstrapRbac()) t.api.store.create(o);
    pods(t.api.store);
    const rules = [{ apiGroups: [""], resources: ["pods"], verbs: ["get", "list"] }];
    t.api.store.create({
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "Role",
      metadata: { name: "pods", namespace: "default" },
      rules,
    } as KubeObject);
    t.api.store.create({
      apiVersion: "rbac.authorization.k8s.io/v1",
      kind: "RoleBinding",
      metadata: { name: "pods", namespace: "default" },
      roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "pods" },
      subjects: [{ apiGroup: "rbac.authorization.k8s.io", kind: "User", name: "bob" }],
    } as KubeObject);
    const denied = await callJson(t, `${LOG}/web/log`, { token: "bob-token-0123456789" });
    assertEquals([denied.code, denied.body.message], [
      403,
      'pods "web" is forbidden: User "bob" cannot get resource "pods/log" in API group "" in the namespace "default"',
    ]);
    t.api.store.modify(
      { resource: "roles.rbac.authorization.k8s.io", namespace: "default", name: "pods" },
      (r) => {
        r.rules = [...rules, { apiGroups: [""], resources: ["pods/log"], verbs: ["get"] }];
      },
    );
    assertEquals(
      (await text(t, `${LOG}/web/log?tailLines=1`, "bob-token-0123456789")).body,
      "run 1: ready\n",
    );
  }, { tokens, authorize: (a) => rbacAuthorize(store!, a), podLogs: source });
});

Deno.test("pods/log reads the source set on the running server", async () => {
  await withApi(async (t) => {
    pods(t.api.store);
    assertEquals((await text(t, `${LOG}/web/log`)).body, "");
    t.api.podLogs = source;
    assertEquals((await text(t, `${LOG}/web/log?tailLines=1`)).body, "run 1: ready\n");
  });
});

Deno.test("discovery lists pods/log with the verb get", async () => {
  await withApi(async (t) => {
    const { body } = await callJson(t, "/api/v1");
    const log = (body.resources as Array<{ name: string; verbs: string[]; kind: string }>)
      .find((r) => r.name === "pods/log");
    assertEquals(
      log,
      {
        name: "pods/log",
        singularName: "",
        namespaced: true,
        kind: "Pod",
        verbs: ["get"],
      } as unknown,
    );
  });
});

Deno.test("kubectl logs prints a container's log, its tail, the run before, and the server's refusals", async () => {
  await withApi(async (t) => {
    pods(t.api.store);
    const kc = await writeKubeconfig(t, ADMIN_TOKEN);
    const all = await kubectl(t, kc, ["logs", "web"]);
    assertEquals([all.code, all.stdout, all.stderr], [
      0,
      "run 1: starting\nrun 1: listening on :8080\nrun 1: ready\n",
      "",
    ]);
    const tail = await kubectl(t, kc, ["logs", "web", "--tail=1", "--timestamps"]);
    assertEquals(tail.stdout, "2025-03-04T05:06:09.250000000Z run 1: ready\n");
    const previous = await kubectl(t, kc, ["logs", "-p", "web", "-c", "app"]);
    assertEquals(previous.stdout, "run 0: panic: out of memory\n");
    const b = await kubectl(t, kc, ["logs", "multi", "-c", "b"]);
    assertEquals(b.stdout, "b says hello\n");
    const missing = await kubectl(t, kc, ["logs", "nope"]);
    assertEquals(missing.code, 1);
    assertEquals(missing.stderr.trim(), 'Error from server (NotFound): pods "nope" not found');
    const waiting = await kubectl(t, kc, ["logs", "waiting"]);
    assertEquals(
      waiting.stderr.trim(),
      'Error from server (BadRequest): container "app" in pod "waiting" is waiting to start: ContainerCreating',
    );
  }, { podLogs: source });
});

Deno.test("python-kubernetes reads a pod's log with read_namespaced_pod_log", async () => {
  await withApi(async (t) => {
    pods(t.api.store);
    const out = await new Deno.Command("/usr/bin/python3", {
      args: [
        new URL("./_python_client.py", import.meta.url).pathname,
        "podlog",
        "default",
        "web",
        "app",
        "2",
      ],
      env: { VIF_API_URL: t.api.url, VIF_API_CA: t.tls.caCertPath, VIF_API_TOKEN: ADMIN_TOKEN },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
    assertEquals(out.code, 0, new TextDecoder().decode(out.stderr));
    const result = JSON.parse(new TextDecoder().decode(out.stdout));
    assertEquals(result.log, "run 1: listening on :8080\nrun 1: ready\n");
    assertEquals(result.previous, "run 0: panic: out of memory\n");
    assert(
      String(result.error).includes("a container name must be specified for pod multi"),
      result.error,
    );
  }, { podLogs: source });
});
