import { assertEquals, assertMatch, assertThrows } from "../../tests/_assert.ts";
import { kubeconfigYaml } from "../../tests/_kubeconfig.ts";
import { loadKubeConfig } from "./client.ts";
import { KubeError } from "./errors.ts";

/** Runs `fn` in a temporary directory that serves as HOME; removed afterwards. */
async function inTempHome(fn: (dir: string) => void | Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "vif-kubeconfig-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function envOf(values: Record<string, string>) {
  return (name: string) => Object.hasOwn(values, name) ? values[name] : undefined;
}

function twoContexts(current = "dev"): string {
  return `apiVersion: v1
kind: Config
clusters:
- name: dev-cluster
  cluster:
    server: https://127.0.0.1:6443
    certificate-authority: ca.crt
- name: prod-cluster
  cluster:
    server: https://127.0.0.1:7443
users:
- name: dev-user
  user:
    token: a
contexts:
- name: dev
  context:
    cluster: dev-cluster
    user: dev-user
- name: prod
  context:
    cluster: prod-cluster
    user: dev-user
current-context: ${current}
`;
}

function error(fn: () => unknown): KubeError {
  return assertThrows(fn, KubeError) as KubeError;
}

Deno.test("loadKubeConfig() reads --kubeconfig and uses its current context", async () => {
  await inTempHome(async (dir) => {
    await Deno.writeTextFile(`${dir}/config`, twoContexts());
    const loaded = loadKubeConfig({ kubeconfig: `${dir}/config`, env: envOf({}) });
    assertEquals(loaded.context, "dev");
    assertEquals(loaded.server, "https://127.0.0.1:6443");
    assertEquals(loaded.files, [`${dir}/config`]);
    assertEquals(loaded.kubeConfig.getCurrentContext(), "dev");
    // Relative paths in the file are made absolute to its folder.
    assertEquals(loaded.kubeConfig.getCurrentCluster()?.caFile, `${dir}/ca.crt`);
  });
});

Deno.test("loadKubeConfig() gives the context's namespace, as kubectl uses it without -n", async () => {
  await inTempHome(async (dir) => {
    const text = twoContexts().replace(
      "    cluster: prod-cluster\n",
      "    cluster: prod-cluster\n    namespace: shop\n",
    ).replace(
      "    cluster: dev-cluster\n",
      "    cluster: dev-cluster\n    namespace: Not_A_Namespace\n",
    );
    await Deno.writeTextFile(`${dir}/config`, text);
    const prod = loadKubeConfig({ kubeconfig: `${dir}/config`, context: "prod", env: envOf({}) });
    assertEquals(prod.namespace, "shop");
    // A namespace that is not a namespace name is not used: "default", as with none.
    const dev = loadKubeConfig({ kubeconfig: `${dir}/config`, env: envOf({}) });
    assertEquals(dev.namespace, "default");
    await Deno.writeTextFile(`${dir}/config`, twoContexts());
    assertEquals(
      loadKubeConfig({ kubeconfig: `${dir}/config`, env: envOf({}) }).namespace,
      "default",
    );
  });
});

Deno.test("loadKubeConfig() --context picks another context", async () => {
  await inTempHome(async (dir) => {
    await Deno.writeTextFile(`${dir}/config`, twoContexts());
    const loaded = loadKubeConfig({ kubeconfig: `${dir}/config`, context: "prod", env: envOf({}) });
    assertEquals([loaded.context, loaded.server], ["prod", "https://127.0.0.1:7443"]);
    assertEquals(loaded.kubeConfig.getCurrentCluster()?.name, "prod-cluster");
  });
});

Deno.test("loadKubeConfig() names the contexts there are when --context is unknown", async () => {
  await inTempHome(async (dir) => {
    await Deno.writeTextFile(`${dir}/config`, twoContexts());
    const e = error(() =>
      loadKubeConfig({ kubeconfig: `${dir}/config`, context: "staging", env: envOf({}) })
    );
    assertEquals(e.message, `no context "staging" in the kubeconfig "${dir}/config"`);
    assertEquals(e.hint, 'Use one of: "dev", "prod".');
  });
});

Deno.test("loadKubeConfig() without any kubeconfig says to set KUBECONFIG or pass --kubeconfig", async () => {
  await inTempHome((dir) => {
    const e = error(() => loadKubeConfig({ env: envOf({ HOME: dir }) }));
    assertEquals(
      e.message,
      `no kubeconfig: "${dir}/.kube/config" does not exist and KUBECONFIG is not set`,
    );
    assertEquals(e.hint, "Set KUBECONFIG or pass --kubeconfig FILE.");
    const missing = error(() => loadKubeConfig({ kubeconfig: `${dir}/nope`, env: envOf({}) }));
    assertEquals(missing.message, `kubeconfig "${dir}/nope" does not exist`);
    const listed = error(() =>
      loadKubeConfig({ env: envOf({ HOME: dir, KUBECONFIG: `${dir}/a:${dir}/b` }) })
    );
    assertEquals(
      listed.message,
      `no kubeconfig: none of the files in KUBECONFIG exists ("${dir}/a", "${dir}/b")`,
    );
  });
});

Deno.test("loadKubeConfig() uses $HOME/.kube/config when KUBECONFIG is unset", async () => {
  await inTempHome(async (dir) => {
    await Deno.mkdir(`${dir}/.kube`);
    await Deno.writeTextFile(`${dir}/.kube/config`, twoContexts("prod"));
    const loaded = loadKubeConfig({ env: envOf({ HOME: dir }) });
    assertEquals(loaded.context, "prod");
    assertEquals(loaded.files, [`${dir}/.kube/config`]);
  });
});

Deno.test("loadKubeConfig() merges a KUBECONFIG list as kubectl does: the first definition wins", async () => {
  await inTempHome(async (dir) => {
    // The first file has no current context and its own "dev" cluster; the
    // second sets the current context and defines "dev" again.
    await Deno.writeTextFile(
      `${dir}/a`,
      kubeconfigYaml("https://127.0.0.1:1111", { token: "t", name: "dev-cluster", current: false }),
    );
    await Deno.writeTextFile(`${dir}/b`, twoContexts("prod"));
    const loaded = loadKubeConfig({
      env: envOf({ HOME: dir, KUBECONFIG: `${dir}/missing:${dir}/a:${dir}/b` }),
    });
    assertEquals(loaded.files, [`${dir}/a`, `${dir}/b`]);
    assertEquals(loaded.context, "prod");
    const dev = loadKubeConfig({
      context: "dev",
      env: envOf({ HOME: dir, KUBECONFIG: `${dir}/a:${dir}/b` }),
    });
    assertEquals(dev.server, "https://127.0.0.1:1111");
  });
});

Deno.test("loadKubeConfig() reports the line of a YAML error", async () => {
  await inTempHome(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/config`,
      "apiVersion: v1\nclusters:\n- name: a\n  cluster: [unclosed\ncontexts: []\n",
    );
    const e = error(() => loadKubeConfig({ kubeconfig: `${dir}/config`, env: envOf({}) }));
    assertMatch(
      e.message,
      new RegExp(`^kubeconfig "${dir}/config" does not parse: .+ at line \\d+$`),
    );
    assertMatch(e.hint, /^Fix the file/);
  });
});

Deno.test("loadKubeConfig() reports an entry the client cannot use", async () => {
  await inTempHome(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/config`,
      "clusters:\n- name: a\n  cluster: {}\ncontexts: []\nusers: []\n",
    );
    const e = error(() => loadKubeConfig({ kubeconfig: `${dir}/config`, env: envOf({}) }));
    assertEquals(
      e.message,
      `kubeconfig "${dir}/config" does not parse: clusters[0].cluster.server is missing`,
    );
  });
});

Deno.test("loadKubeConfig() without a current context asks for --context", async () => {
  await inTempHome(async (dir) => {
    await Deno.writeTextFile(`${dir}/config`, twoContexts("").replace("current-context: \n", ""));
    const e = error(() => loadKubeConfig({ kubeconfig: `${dir}/config`, env: envOf({}) }));
    assertEquals(e.message, `the kubeconfig "${dir}/config" has no current context`);
    assertEquals(
      e.hint,
      'Pass --context NAME (one of: "dev", "prod"), or run "kubectl config use-context NAME".',
    );
    await Deno.writeTextFile(`${dir}/empty`, "");
    const empty = error(() => loadKubeConfig({ kubeconfig: `${dir}/empty`, env: envOf({}) }));
    assertMatch(empty.hint, /defines no context/);
  });
});

Deno.test("loadKubeConfig() reports a context whose cluster or user is missing", async () => {
  await inTempHome(async (dir) => {
    await Deno.writeTextFile(
      `${dir}/config`,
      twoContexts().replace(
        "cluster: prod-cluster\n    user: dev-user",
        "cluster: gone\n    user: dev-user",
      )
        .replace(
          "cluster: dev-cluster\n    user: dev-user",
          "cluster: dev-cluster\n    user: nobody",
        ),
    );
    const cluster = error(() =>
      loadKubeConfig({ kubeconfig: `${dir}/config`, context: "prod", env: envOf({}) })
    );
    assertEquals(
      cluster.message,
      `context "prod" names cluster "gone", which the kubeconfig "${dir}/config" does not define`,
    );
    const user = error(() => loadKubeConfig({ kubeconfig: `${dir}/config`, env: envOf({}) }));
    assertEquals(
      user.message,
      `context "dev" names user "nobody", which the kubeconfig "${dir}/config" does not define`,
    );
  });
});

Deno.test("loadKubeConfig() reads kubectl's tokenFile, relative to the kubeconfig, trimmed", async () => {
  await inTempHome(async (dir) => {
    await Deno.mkdir(`${dir}/kube`);
    await Deno.writeTextFile(`${dir}/kube/token`, "file-token-123\n");
    const yaml = `apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: https://127.0.0.1:6443
users:
- name: from-file
  user:
    tokenFile: token
- name: both
  user:
    token: inline
    tokenFile: token
contexts:
- name: a
  context: {cluster: c, user: from-file}
- name: b
  context: {cluster: c, user: both}
current-context: a
`;
    await Deno.writeTextFile(`${dir}/kube/config`, yaml);
    const { resolveAccess } = await import("./client.ts");
    const a = loadKubeConfig({ kubeconfig: `${dir}/kube/config` });
    assertEquals(
      (await resolveAccess(a.kubeConfig)).headers.Authorization,
      "Bearer file-token-123",
    );
    const b = loadKubeConfig({ kubeconfig: `${dir}/kube/config`, context: "b" });
    assertEquals((await resolveAccess(b.kubeConfig)).headers.Authorization, "Bearer inline");
    await Deno.remove(`${dir}/kube/token`);
    loadKubeConfig({ kubeconfig: `${dir}/kube/config`, context: "b" }); // Not its file: no error.
    assertThrows(
      () => loadKubeConfig({ kubeconfig: `${dir}/kube/config` }),
      KubeError,
      "token file",
    );
  });
});
