/**
 * Debian's python3-kubernetes (22.6) against the fake API server:
 * `kubernetes.stream.portforward`, which checks the port number in each
 * channel's first frame, plus typed create/list/patch/watch/delete.
 *
 * ```
 *   /usr/bin/python3 _python_client.py ──wss, v4.channel.k8s.io──► startApiServer() ──TCP──► echo server
 *                                                                   127.0.0.1:random         127.0.0.1:random
 * ```
 */

import { assert, assertEquals } from "../../_assert.ts";
import { ADMIN_TOKEN, runningPod, startEchoServer, type TestApi, withApi } from "./_testing.ts";

const SCRIPT = new URL("./_python_client.py", import.meta.url).pathname;

async function python(t: TestApi, args: string[]): Promise<Record<string, unknown>> {
  const out = await new Deno.Command("/usr/bin/python3", {
    args: [SCRIPT, ...args],
    env: { VIF_API_URL: t.api.url, VIF_API_CA: t.tls.caCertPath, VIF_API_TOKEN: ADMIN_TOKEN },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(out.stderr);
  assertEquals(out.code, 0, `python failed:\n${stderr}`);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

Deno.test("python-kubernetes portforward moves bytes both ways through two ports of a pod", async () => {
  const a = startEchoServer();
  const b = startEchoServer();
  try {
    await withApi(async (t) => {
      t.api.store.create(runningPod("default", "echo"));
      const size = 300_000;
      const result = await python(t, [
        "echo",
        "default",
        "echo",
        `${a.port},${b.port}`,
        String(size),
      ]);
      const ports = result.ports as Record<string, Record<string, unknown>>;
      for (const port of [a.port, b.port]) {
        assertEquals(ports[String(port)], { sent: size, received: size, equal: true, error: null });
      }
      assertEquals(a.accepted(), 1);
      assertEquals(b.accepted(), 1);
    });
  } finally {
    a.close();
    b.close();
  }
});

Deno.test("python-kubernetes portforward reports a refused dial from the error channel", async () => {
  await withApi(async (t) => {
    const pod = t.api.store.create(runningPod("default", "echo"));
    const result = await python(t, ["refused", "default", "echo", "1"]);
    assertEquals(result.data, "");
    const error = String(result.error);
    assert(
      error.startsWith(`error forwarding port 1 to pod default/echo, uid ${pod.metadata.uid}: `),
      error,
    );
  });
});

Deno.test("python-kubernetes creates, lists, patches, watches and deletes", async () => {
  await withApi(async (t) => {
    t.api.store.create(runningPod("default", "echo"));
    const result = await python(t, ["crud", "default"]);
    assertEquals(result.listed, ["cfg"]);
    assertEquals(result.patched, { a: "1", b: "2" });
    assertEquals(result.watched, [["ADDED", "echo", "Running"], ["ADDED", "py-pod", "Pending"]]);
    assertEquals(result.deleted, "Success");
  });
});
