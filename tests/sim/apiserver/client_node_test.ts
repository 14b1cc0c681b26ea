/**
 * `@kubernetes/client-node` (what vif's client uses) against the fake API
 * server: list, an informer's list+watch, and `PortForward` (it offers
 * `v5.channel.k8s.io` first, joined by "," with no space, and gets v4).
 *
 * ```
 *   client-node (node:https, ws) ──TLS──► startApiServer() on 127.0.0.1:random ──TCP──► echo server
 * ```
 */

import * as k8s from "@kubernetes/client-node";
import { PassThrough } from "node:stream";
import { assert, assertEquals } from "../../_assert.ts";
import {
  ADMIN_TOKEN,
  runningPod,
  startEchoServer,
  waitFor,
  withApi,
  writeKubeconfig,
} from "./_testing.ts";

// client-node keeps sockets and timers of its own (https agent, ws) past the
// calls; what matters here is what the server answers.
const options = { sanitizeOps: false, sanitizeResources: false };

Deno.test("client-node lists and watches pods through an informer", options, async () => {
  await withApi(async (t) => {
    t.api.store.create(runningPod("default", "first"));
    const kc = new k8s.KubeConfig();
    kc.loadFromFile(await writeKubeconfig(t, ADMIN_TOKEN));
    const core = kc.makeApiClient(k8s.CoreV1Api);
    const list = await core.listNamespacedPod({ namespace: "default" });
    assertEquals(list.items.map((p) => p.metadata?.name), ["first"]);
    const informer = k8s.makeInformer(
      kc,
      "/api/v1/namespaces/default/pods",
      () => core.listNamespacedPod({ namespace: "default" }),
    );
    const seen: string[] = [];
    informer.on("add", (p) => seen.push(`add ${p.metadata?.name}`));
    informer.on("update", (p) => seen.push(`update ${p.metadata?.name}`));
    informer.on("delete", (p) => seen.push(`delete ${p.metadata?.name}`));
    informer.on("error", (e) => seen.push(`error ${e}`));
    await informer.start();
    try {
      await waitFor(
        () =>
          t.logs.some((l) =>
            l.includes("/api/v1/namespaces/default/pods?") && l.includes("watch=true")
          ),
        10_000,
        "the informer's watch",
      );
      const ref = { resource: "pods", namespace: "default", name: "later" };
      t.api.store.create(runningPod("default", "later"));
      t.api.store.modify(ref, (p) => {
        p.metadata.labels = { changed: "yes" };
      });
      t.api.store.delete(ref);
      await waitFor(() => seen.includes("delete later"), 10_000, "the informer's delete event");
    } finally {
      await informer.stop();
    }
    assertEquals(seen, ["add first", "add later", "update later", "delete later"]);
  });
});

Deno.test(
  "client-node PortForward moves bytes to a pod's port and reports a refused one",
  options,
  async () => {
    const echo = startEchoServer();
    try {
      await withApi(async (t) => {
        t.api.store.create(runningPod("default", "echo"));
        const kc = new k8s.KubeConfig();
        kc.loadFromFile(await writeKubeconfig(t, ADMIN_TOKEN));
        const pf = new k8s.PortForward(kc);

        const out = new PassThrough(), err = new PassThrough(), input = new PassThrough();
        let got = "";
        out.on("data", (d: Uint8Array) => got += new TextDecoder().decode(d));
        const ws = await pf.portForward("default", "echo", [echo.port], out, err, input);
        assertEquals((ws as { protocol?: string }).protocol, "v4.channel.k8s.io");
        input.write("hello from client-node");
        await waitFor(() => got === "hello from client-node", 10_000, "the echo");
        input.end();

        const out2 = new PassThrough(), err2 = new PassThrough(), input2 = new PassThrough();
        let error = "";
        err2.on("data", (d: Uint8Array) => error += new TextDecoder().decode(d));
        await pf.portForward("default", "echo", [1], out2, err2, input2);
        await waitFor(() => error !== "", 10_000, "the error channel");
        assert(error.startsWith("error forwarding port 1 to pod default/echo, uid "), error);
        input2.end();
      });
    } finally {
      echo.close();
    }
  },
);
