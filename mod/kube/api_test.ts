/** The small API client against the fake API server: answers, error statuses with their reasons, and no answer. */

import { KubeConfig } from "@kubernetes/client-node";
import { assertEquals, assertMatch, assertRejects } from "../../tests/_assert.ts";
import {
  ADMIN_TOKEN,
  withApi,
  writeKubeconfig,
  WRONG_TOKEN,
} from "../../tests/sim/apiserver/_testing.ts";
import { kubeApi, KubeApiError } from "./api.ts";
import { resolveAccess } from "./client.ts";

const options = { sanitizeOps: false, sanitizeResources: false };

Deno.test("kubeApi() GETs and POSTs JSON with the kubeconfig's CA and token", options, async () => {
  await withApi(async (t) => {
    const kc = new KubeConfig();
    kc.loadFromFile(await writeKubeconfig(t, ADMIN_TOKEN));
    const access = await resolveAccess(kc);
    assertEquals(access.headers.Authorization, `Bearer ${ADMIN_TOKEN}`);
    const api = kubeApi(access);
    await api.post("/api/v1/namespaces", {
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name: "shop" },
    });
    const ns = await api.get<{ metadata: { name: string } }>("/api/v1/namespaces/shop");
    assertEquals(ns.metadata.name, "shop");
    const e = await assertRejects(() => api.get("/api/v1/namespaces/none"), KubeApiError);
    assertEquals([(e as KubeApiError).statusCode, (e as KubeApiError).reason], [404, "NotFound"]);
    assertMatch(e.message, /HTTP 404: .*none/);
  });
});

Deno.test(
  "kubeApi() gives 401 for refused credentials and no status when nothing answers",
  options,
  async () => {
    await withApi(async (t) => {
      const kc = new KubeConfig();
      kc.loadFromFile(await writeKubeconfig(t, WRONG_TOKEN));
      const api = kubeApi(await resolveAccess(kc));
      const e = await assertRejects(() => api.get("/api/v1/namespaces"), KubeApiError);
      assertEquals((e as KubeApiError).statusCode, 401);
    });
    const api = kubeApi({ server: "https://127.0.0.1:1", headers: {} });
    const e = await assertRejects(() => api.get("/api"), KubeApiError);
    assertEquals((e as KubeApiError).statusCode, undefined);
    assertMatch(e.message, /ECONNREFUSED|refused/i);
  },
);
