/**
 * In-cluster access: when a pod's service account is there, what is refused
 * and why, and a projected token read again after the kubelet rotates it.
 *
 * @module
 */

import { CoreV1Api } from "@kubernetes/client-node";
import { assert, assertEquals, assertMatch, assertThrows } from "../../tests/_assert.ts";
import { withApi } from "../../tests/sim/apiserver/_testing.ts";
import type { ApiServerOptions } from "../../tests/sim/apiserver/server.ts";
import { inClusterConfigAvailable, KubeAccessError, loadKubeAccess } from "./in_cluster.ts";

/** Makes a service-account directory; `files` leaves some out. */
async function serviceAccountDir(
  token: string,
  caPem: string,
  files = ["token", "ca.crt", "namespace"],
): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "vif-sa-" });
  const content: Record<string, string> = { token, "ca.crt": caPem, namespace: "vif-system\n" };
  for (const name of files) await Deno.writeTextFile(`${dir}/${name}`, content[name]!);
  return dir;
}

Deno.test("inClusterConfigAvailable() needs both variables and all three files", async () => {
  const full = await serviceAccountDir("t", "ca");
  const partial = await serviceAccountDir("t", "ca", ["token", "ca.crt"]);
  try {
    const env = (vars: Record<string, string>) => (name: string) => vars[name];
    const both = { KUBERNETES_SERVICE_HOST: "198.18.128.1", KUBERNETES_SERVICE_PORT: "443" };
    const cases: [string, Record<string, string>, string, boolean][] = [
      ["all there", both, full, true],
      ["no namespace file", both, partial, false],
      ["no port", { KUBERNETES_SERVICE_HOST: "198.18.128.1" }, full, false],
      ["no variables", {}, full, false],
      ["no directory", both, `${full}/missing`, false],
    ];
    for (const [name, vars, dir, expected] of cases) {
      assertEquals(
        inClusterConfigAvailable({ env: env(vars), serviceAccountDir: dir }),
        expected,
        name,
      );
    }
  } finally {
    await Deno.remove(full, { recursive: true });
    await Deno.remove(partial, { recursive: true });
  }
});

Deno.test("loadKubeAccess() refuses a missing service account and a bad kubeconfig", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vif-sa-" });
  try {
    const env = (name: string) =>
      ({ KUBERNETES_SERVICE_HOST: "198.18.128.1", KUBERNETES_SERVICE_PORT: "443" })[name];
    const error = assertThrows(
      () => loadKubeAccess({ inCluster: true, serviceAccountDir: dir, env }),
      KubeAccessError,
    );
    assertMatch(error.message, /^Cannot read the service account in /);
    assertEquals(error.failure, "no-service-account");
    const outside = assertThrows(
      () => loadKubeAccess({ inCluster: true, serviceAccountDir: dir, env: () => undefined }),
      KubeAccessError,
      "KUBERNETES_SERVICE_HOST",
    );
    assertEquals(outside.failure, "not-in-cluster");
    await Deno.writeTextFile(`${dir}/kubeconfig`, "apiVersion: v1\nkind: Config\n");
    assertThrows(
      () => loadKubeAccess({ kubeconfig: `${dir}/kubeconfig` }),
      KubeAccessError,
      "names no cluster or user",
    );
    assertThrows(
      () => loadKubeAccess({ kubeconfig: `${dir}/missing` }),
      KubeAccessError,
      "Cannot read kubeconfig",
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("loadKubeAccess() in a pod uses the token file and reads it again after a rotation", async () => {
  const tokens: ApiServerOptions["tokens"] = {
    "first-token-0123456789": { user: "system:serviceaccount:vif-system:traffic-manager" },
  };
  await withApi(async (t) => {
    const dir = await serviceAccountDir("first-token-0123456789\n", t.tls.caPem);
    try {
      const env = (name: string) =>
        ({ KUBERNETES_SERVICE_HOST: "127.0.0.1", KUBERNETES_SERVICE_PORT: String(t.api.port) })[
          name
        ];
      const access = loadKubeAccess({ inCluster: true, serviceAccountDir: dir, env });
      assertEquals(access.server, `https://127.0.0.1:${t.api.port}`);
      assertEquals(access.namespace, "vif-system");
      assertEquals(access.source, "in-cluster");
      const core = access.kubeConfig.makeApiClient(CoreV1Api);
      assertEquals((await core.readNamespace({ name: "default" })).metadata?.name, "default");

      // kubelet swaps the projected token in; the old one stops working.
      await Deno.writeTextFile(`${dir}/token.new`, "second-token-0123456789");
      await Deno.rename(`${dir}/token.new`, `${dir}/token`);
      tokens["second-token-0123456789"] = tokens["first-token-0123456789"]!;
      delete tokens["first-token-0123456789"];
      assertEquals((await core.readNamespace({ name: "default" })).metadata?.name, "default");
      assert(t.logs.some((line) => line.includes("system:serviceaccount:vif-system")));
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }, { tokens });
});
