import { loadAllYaml } from "@kubernetes/client-node";
import { assert, assertEquals, assertMatch } from "../../tests/_assert.ts";
import { type FakeApiServer, startFakeApiServer } from "../kube/_fake_apiserver.ts";
import { main, memoryIo } from "./mod.ts";

async function run(args: string[], env: Record<string, string> = {}) {
  const io = memoryIo(env);
  const code = await main(args, { io });
  return { code, out: io.out, err: io.err };
}

/** Runs `fn` with a fake API server and a temporary kubeconfig for it (never ~/.kube). */
async function withCluster(
  fn: (fake: FakeApiServer, env: Record<string, string>) => Promise<void>,
) {
  const fake = await startFakeApiServer();
  const dir = await Deno.makeTempDir({ prefix: "vif-cli-install-" });
  try {
    await Deno.writeTextFile(`${dir}/kubeconfig`, fake.kubeconfig());
    await fn(fake, { KUBECONFIG: `${dir}/kubeconfig`, HOME: dir });
  } finally {
    await fake.close();
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("vif install --dry-run -o yaml prints a YAML stream of the seven objects", async () => {
  const { code, out, err } = await run(["install", "--dry-run", "-o", "yaml", "-n", "dev"]);
  assertEquals([code, err], [0, ""]);
  assertMatch(
    out,
    /^# vif .*\n# Apply with: kubectl apply -f -\napiVersion: v1\nkind: Namespace\n/,
  );
  const objects = loadAllYaml(out) as {
    kind: string;
    metadata: { name: string; namespace?: string };
  }[];
  assertEquals(objects.map((o) => o.kind), [
    "Namespace",
    "ServiceAccount",
    "ClusterRole",
    "ClusterRoleBinding",
    "Secret",
    "Deployment",
    "Service",
  ]);
  assertEquals(objects[0]!.metadata.name, "dev");
  assertEquals(objects[6]!.metadata.namespace, "dev");
});

Deno.test("vif install --dry-run -o json prints a v1 List, with the image asked for", async () => {
  const { code, out } = await run([
    "install",
    "--dry-run",
    "-o",
    "json",
    "--image",
    "example/vif:x",
  ]);
  assertEquals(code, 0);
  const list = JSON.parse(out);
  assertEquals([list.apiVersion, list.kind, list.items.length], ["v1", "List", 7]);
  assertEquals(list.items[5].spec.template.spec.containers[0].image, "example/vif:x");
});

Deno.test("vif install --dry-run refuses -o text, and a bad namespace is a usage error", async () => {
  const text = await run(["install", "--dry-run", "-o", "text"]);
  assertEquals(text.code, 2);
  assertMatch(text.err, /^vif: --dry-run prints YAML or JSON, not text\n/);
  const bad = await run(["install", "--dry-run", "-n", "Not_A_Namespace"]);
  assertEquals(bad.code, 2);
  assertMatch(bad.err, /is invalid\nA namespace is up to 63/);
});

Deno.test("vif install prints what it did, kubectl's way, and how to connect", async () => {
  await withCluster(async (_fake, env) => {
    const first = await run(["install"], env);
    assertEquals([first.code, first.err], [0, ""]);
    const lines = first.out.trimEnd().split("\n");
    assertEquals(lines.slice(0, 7), [
      "namespace/vif-system created",
      "serviceaccount/traffic-manager created",
      "clusterrole.rbac.authorization.k8s.io/vif-traffic-manager created",
      "clusterrolebinding.rbac.authorization.k8s.io/vif-traffic-manager created",
      "secret/traffic-manager-tls created",
      "deployment.apps/traffic-manager created",
      "service/traffic-manager created",
    ]);
    assertMatch(
      lines[7]!,
      /^TLS: made a CA and a certificate for traffic-manager\.vif-system, valid until \d{4}-/,
    );
    assertEquals(lines[8], 'Run "vif connect --context fake" to connect to the cluster.');
    const again = await run(["install"], env);
    assert(again.out.includes("deployment.apps/traffic-manager unchanged\n"), again.out);
    assertMatch(again.out, /TLS: kept the certificate/);
  });
});

Deno.test("vif install -o json reports each object and the certificate", async () => {
  await withCluster(async (_fake, env) => {
    const { code, out } = await run(["install", "-o", "json", "-n", "dev"], env);
    assertEquals(code, 0);
    const result = JSON.parse(out);
    assertEquals(result.context, "fake");
    assertEquals(result.namespace, "dev");
    assertEquals(result.applied.length, 7);
    assertEquals(result.tls.action, "created");
  });
});

Deno.test("vif install names the context in the connect line of another namespace", async () => {
  await withCluster(async (_fake, env) => {
    const { out } = await run(["install", "--context", "fake", "--namespace", "vif-dev"], env);
    assertMatch(out, /Run "vif connect --context fake --manager-namespace vif-dev" to connect/);
  });
});

Deno.test("vif install fails in two lines when the cluster forbids it", async () => {
  await withCluster(async (fake, env) => {
    fake.forbid("create", "clusterrolebindings");
    const { code, err } = await run(["install"], env);
    assertEquals(code, 1);
    assertEquals(
      err,
      'vif: user "alice" is not allowed to create clusterrolebindings\n' +
        'Ask a cluster admin to run "vif install", or to grant you that permission ' +
        "(kubectl auth can-i create clusterrolebindings.rbac.authorization.k8s.io).\n",
    );
  });
});

Deno.test("vif install without a kubeconfig says to set KUBECONFIG or pass --kubeconfig", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vif-cli-home-" });
  try {
    const { code, err } = await run(["install"], { HOME: dir });
    assertEquals(code, 1);
    assertEquals(
      err,
      `vif: no kubeconfig: "${dir}/.kube/config" does not exist and KUBECONFIG is not set\n` +
        "Set KUBECONFIG or pass --kubeconfig FILE.\n",
    );
    const context = await run(["uninstall", "--kubeconfig", `${dir}/none`], { HOME: dir });
    assertEquals(context.code, 1);
    assertMatch(context.err, /^vif: kubeconfig ".*none" does not exist\n/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("vif uninstall deletes in kubectl's words, then says so", async () => {
  await withCluster(async (_fake, env) => {
    await run(["install"], env);
    const { code, out } = await run(["uninstall"], env);
    assertEquals(code, 0);
    assertEquals(out.trimEnd().split("\n"), [
      'deployment.apps "traffic-manager" deleted',
      'service "traffic-manager" deleted',
      'secret "traffic-manager-tls" deleted',
      'serviceaccount "traffic-manager" deleted',
      'clusterrolebinding.rbac.authorization.k8s.io "vif-traffic-manager" deleted',
      'clusterrole.rbac.authorization.k8s.io "vif-traffic-manager" deleted',
      'namespace "vif-system" deleted',
      'The traffic-manager is uninstalled from context "fake".',
    ]);
    const again = await run(["uninstall", "-o", "json"], env);
    const result = JSON.parse(again.out);
    assertEquals(
      result.deleted.map((d: { action: string }) => d.action),
      Array(7).fill("not found"),
    );
  });
});
