import { assert, assertEquals, assertRejects } from "../../tests/_assert.ts";
import { type TestCluster, USER_TOKEN, withCluster } from "../../tests/_apiserver.ts";
import type { KubeObject } from "../../tests/sim/apiserver/mod.ts";
import type { ApiAccess } from "./api.ts";
import { KubeApiError } from "./api.ts";
import { readPodLog } from "./pod_logs.ts";

function access(c: TestCluster): ApiAccess {
  return { server: c.url, caPem: c.caPem, headers: { Authorization: `Bearer ${USER_TOKEN}` } };
}

const LINES = Array.from({ length: 50 }, (_, i) => `line ${i}`);

function feed(c: TestCluster): void {
  c.store.create({
    apiVersion: "v1",
    kind: "Namespace",
    metadata: { name: "vif-system" },
  } as KubeObject);
  c.store.create({
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name: "traffic-manager-1", namespace: "vif-system" },
    spec: { nodeName: "node1", containers: [{ name: "traffic-manager", image: "vif:1" }] },
    status: {
      phase: "Running",
      containerStatuses: [{
        name: "traffic-manager",
        containerID: "sim://m-1",
        restartCount: 1,
        state: { running: { startedAt: "2025-01-01T00:00:00Z" } },
        lastState: { terminated: { exitCode: 1, containerID: "sim://m-0" } },
      }],
    },
  } as KubeObject);
  c.api.podLogs = (ref) =>
    ref.containerID === "sim://m-1"
      ? LINES.map((text) => ({ time: 0, text }))
      : ref.containerID === "sim://m-0"
      ? [{ time: 0, text: "crashed: ünïcode" }]
      : undefined;
}

const POD = { namespace: "vif-system", name: "traffic-manager-1" };

Deno.test("readPodLog() reads a container's last lines and the run before", async () => {
  await withCluster(async (c) => {
    feed(c);
    const tail = await readPodLog(access(c), POD, { container: "traffic-manager", tailLines: 2 });
    assertEquals(tail, { text: "line 48\nline 49\n", truncated: false });
    const previous = await readPodLog(access(c), POD, { previous: true });
    assertEquals(previous, { text: "crashed: ünïcode\n", truncated: false });
    assertEquals(c.log().at(-1), "GET /api/v1/namespaces/vif-system/pods/traffic-manager-1/log");
  });
});

Deno.test("readPodLog() stops at limitBytes and says the log was cut", async () => {
  await withCluster(async (c) => {
    feed(c);
    const cut = await readPodLog(access(c), POD, { limitBytes: 12 });
    assertEquals(cut, { text: "line 0\nline ", truncated: true });
    const whole = LINES.join("\n") + "\n";
    const exact = await readPodLog(access(c), POD, { limitBytes: whole.length });
    assertEquals(exact, { text: whole, truncated: false });
  });
});

Deno.test("readPodLog() rejects with the API server's status and message", async () => {
  await withCluster(async (c) => {
    feed(c);
    const missing = (await assertRejects(
      () => readPodLog(access(c), { namespace: "vif-system", name: "nope" }),
      KubeApiError,
    )) as KubeApiError;
    assertEquals([missing.statusCode, missing.reason, missing.message], [
      404,
      "NotFound",
      'HTTP 404: pods "nope" not found',
    ]);
    const wrong = (await assertRejects(
      () => readPodLog(access(c), POD, { container: "sidecar" }),
      KubeApiError,
    )) as KubeApiError;
    assertEquals(wrong.statusCode, 400);
    c.revoke("get", "pods");
    // Revoking "get pods" leaves the subresource: pods/log is its own grant.
    assertEquals((await readPodLog(access(c), POD, { tailLines: 1 })).text, "line 49\n");
  });
});

Deno.test("readPodLog() rejects with no status when the server cannot be reached", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const error = (await assertRejects(
    () =>
      readPodLog({ server: `https://127.0.0.1:${port}`, headers: {} }, POD, { timeoutMs: 5000 }),
    KubeApiError,
  )) as KubeApiError;
  assertEquals(error.statusCode, undefined);
  assert(error.message.length > 0);
});
