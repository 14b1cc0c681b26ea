import { loadAllYaml } from "@kubernetes/client-node";
import { assert, assertEquals, assertMatch } from "../../tests/_assert.ts";
import { type TestCluster, withCluster as withApiServer } from "../../tests/_apiserver.ts";
import { main, memoryIo } from "./mod.ts";

/**
 * Runs the CLI. `install` does not wait for the manager's pod here (the API
 * server has no kubelet behind it) unless the test asks with `--wait`.
 */
async function run(args: string[], env: Record<string, string> = {}) {
  const io = memoryIo(env);
  const noWait = args[0] === "install" && !args.some((a) => a.startsWith("--wait")) &&
    !args.includes("--dry-run") && !args.includes("--help");
  const code = await main(noWait ? [...args, "--wait=false"] : args, { io });
  return { code, out: io.out, err: io.err };
}

/** Runs `fn` with the simulated API server and a temporary kubeconfig for it (never ~/.kube). */
function withCluster(
  fn: (fake: TestCluster, env: Record<string, string>) => Promise<void>,
): Promise<void> {
  return withApiServer(async (fake) => {
    await Deno.writeTextFile(`${fake.dir}/kubeconfig`, fake.kubeconfig());
    await fn(fake, { KUBECONFIG: `${fake.dir}/kubeconfig`, HOME: fake.dir });
  });
}

Deno.test("vif install --dry-run -o yaml prints a YAML stream of the objects", async () => {
  const { code, out, err } = await run([
    "install",
    "--dry-run",
    "-o",
    "yaml",
    "--manager-namespace",
    "dev",
  ]);
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
    "ClusterRoleBinding",
    "Secret",
    "ConfigMap",
    "Role",
    "Deployment",
    "Service",
  ]);
  assertEquals(objects[0]!.metadata.name, "dev");
  assertEquals(objects.at(-1)!.metadata.namespace, "dev");
});

Deno.test("vif install --dry-run with --direct, --grant-user and --allow-also-proxy prints them all", async () => {
  const { code, out, err } = await run([
    "install",
    "--direct",
    "--grant-user",
    "dev",
    "--grant-group",
    "devs",
    "--allow-also-proxy",
    "198.18.64.0/24",
    "--dry-run",
    "-o",
    "yaml",
  ]);
  assertEquals([code, err], [0, ""]);
  assertMatch(out, /with a new CA and certificate and a new client CA\.\n/);
  // deno-lint-ignore no-explicit-any
  const objects = loadAllYaml(out) as any[];
  assertEquals(objects.map((o) => `${o.kind}/${o.metadata.name}`), [
    "Namespace/vif-system",
    "ServiceAccount/traffic-manager",
    "ClusterRole/vif-traffic-manager",
    "ClusterRoleBinding/vif-traffic-manager",
    "ClusterRoleBinding/vif-traffic-manager-auth-delegator",
    "Secret/traffic-manager-tls",
    "Secret/traffic-manager-client-ca",
    "ConfigMap/traffic-manager-ca",
    "Role/vif-user",
    "RoleBinding/vif-user",
    "Deployment/traffic-manager",
    "Service/traffic-manager",
  ]);
  assertEquals(objects[9].subjects, [
    { apiGroup: "rbac.authorization.k8s.io", kind: "User", name: "dev" },
    { apiGroup: "rbac.authorization.k8s.io", kind: "Group", name: "devs" },
  ]);
  assertEquals(objects[10].spec.template.spec.containers[0].args.slice(3), [
    "--direct-listen",
    "0.0.0.0:8443",
    "--allow-also-proxy",
    "198.18.64.0/24",
  ]);
});

Deno.test("vif install refuses an --allow-also-proxy that is not a subnet, and an empty --grant-user", async () => {
  const cidr = await run(["install", "--dry-run", "--allow-also-proxy", "198.18.64.0/33"]);
  assertEquals(cidr.code, 2);
  assertMatch(cidr.err, /"198\.18\.64\.0\/33" is not a subnet; give it as ADDRESS\/PREFIX/);
  const user = await run(["install", "--dry-run", "--grant-user", ""]);
  assertEquals(user.code, 2);
  assertMatch(user.err, /Give a user or group name as the API server knows it\./);
});

Deno.test("vif install --help says that granting never revokes", async () => {
  const { code, out } = await run(["install", "--help"]);
  assertEquals(code, 0);
  assertMatch(out, /--grant-user <name>/);
  assertMatch(out, /an install without them\s+revokes nobody/);
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
  assertEquals([list.apiVersion, list.kind, list.items.length], ["v1", "List", 10]);
  const deployment = list.items.find((o: { kind: string }) => o.kind === "Deployment");
  assertEquals(deployment.spec.template.spec.containers[0].image, "example/vif:x");
});

Deno.test("vif install --dry-run refuses -o text, and a bad namespace is a usage error", async () => {
  const text = await run(["install", "--dry-run", "-o", "text"]);
  assertEquals(text.code, 2);
  assertMatch(text.err, /^vif: --dry-run prints YAML or JSON, not text\n/);
  const bad = await run(["install", "--dry-run", "--manager-namespace", "Not_A_Namespace"]);
  assertEquals(bad.code, 2);
  assertMatch(bad.err, /is invalid\nA namespace is up to 63/);
});

Deno.test("vif install prints what it did, kubectl's way, and how to connect", async () => {
  await withCluster(async (_fake, env) => {
    const first = await run(["install"], env);
    assertEquals([first.code, first.err], [0, ""]);
    const lines = first.out.trimEnd().split("\n");
    assertEquals(lines.slice(0, 10), [
      "namespace/vif-system created",
      "serviceaccount/traffic-manager created",
      "clusterrole.rbac.authorization.k8s.io/vif-traffic-manager created",
      "clusterrolebinding.rbac.authorization.k8s.io/vif-traffic-manager created",
      "clusterrolebinding.rbac.authorization.k8s.io/vif-traffic-manager-auth-delegator created",
      "secret/traffic-manager-tls created",
      "configmap/traffic-manager-ca created",
      "role.rbac.authorization.k8s.io/vif-user created",
      "deployment.apps/traffic-manager created",
      "service/traffic-manager created",
    ]);
    assertMatch(
      lines[10]!,
      /^TLS: made a CA and a certificate for traffic-manager\.vif-system, valid until \d{4}-/,
    );
    assertEquals(
      lines[11],
      'Users: nobody is granted the role vif-user in "vif-system" yet; grant it with ' +
        '"vif install --grant-user NAME" or "--grant-group NAME" (cluster admins need no grant)',
    );
    assertEquals(lines[12], 'Run "vif connect --context sim" to connect to the cluster.');
    const again = await run(["install"], env);
    assert(again.out.includes("deployment.apps/traffic-manager unchanged\n"), again.out);
    assertMatch(again.out, /TLS: kept the certificate/);
  });
});

Deno.test("vif install waits for the traffic-manager, and says what holds it up when it does not come", async () => {
  await withCluster(async (_fake, env) => {
    const r = await run(["install", "--wait", "--timeout", "1s"], env);
    assertEquals(r.code, 1, r.out);
    assertMatch(r.err, /^ {2}waiting for the traffic-manager to be ready\n/);
    assertMatch(
      r.err,
      /^vif: installed, but 0 of 1 pods of deployment "traffic-manager" in namespace "vif-system" are ready after 1 s: .*\n.*--wait=false" returns without waiting\.$/m,
    );
    // The objects are there: a second install with --wait=false finds them.
    const again = await run(["install"], env);
    assert(again.out.includes("deployment.apps/traffic-manager unchanged\n"), again.out);
  });
});

Deno.test("vif install refuses a bad --wait or --timeout", async () => {
  const wait = await run(["install", "--wait=maybe"]);
  assertEquals(wait.code, 2);
  assertMatch(wait.err, /^vif: bad --wait "maybe"\nUse --wait/);
  const timeout = await run(["install", "--timeout", "forever"]);
  assertEquals(timeout.code, 2);
  assertMatch(timeout.err, /^vif: bad --timeout "forever"\nGive seconds or minutes/);
});

Deno.test("vif install -o json reports each object and the certificate", async () => {
  await withCluster(async (_fake, env) => {
    const { code, out } = await run(["install", "-o", "json", "--manager-namespace", "dev"], env);
    assertEquals(code, 0);
    const result = JSON.parse(out);
    assertEquals(result.context, "sim");
    assertEquals(result.namespace, "dev");
    assertEquals(result.applied.length, 10);
    assertEquals(result.tls.action, "created");
  });
});

Deno.test("vif install names the context in the connect line of another namespace", async () => {
  await withCluster(async (_fake, env) => {
    const { out } = await run(
      ["install", "--context", "sim", "--manager-namespace", "vif-dev"],
      env,
    );
    assertMatch(out, /Run "vif connect --context sim --manager-namespace vif-dev" to connect/);
  });
});

Deno.test("vif install fails in two lines when the cluster forbids it", async () => {
  await withCluster(async (fake, env) => {
    fake.revoke("create", "clusterrolebindings");
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
  await withCluster(async (fake, env) => {
    await run(["install"], env);
    const { code, out } = await run(["uninstall"], env);
    assertEquals(code, 0);
    assertEquals(out.trimEnd().split("\n"), [
      'deployment.apps "traffic-manager" deleted',
      'service "traffic-manager" deleted',
      'secret "traffic-manager-tls" deleted',
      'secret "traffic-manager-client-ca" not found',
      'configmap "traffic-manager-ca" deleted',
      'rolebinding.rbac.authorization.k8s.io "vif-user" not found',
      'role.rbac.authorization.k8s.io "vif-user" deleted',
      'serviceaccount "traffic-manager" deleted',
      'clusterrolebinding.rbac.authorization.k8s.io "vif-traffic-manager-auth-delegator" deleted',
      'clusterrolebinding.rbac.authorization.k8s.io "vif-traffic-manager" deleted',
      'clusterrole.rbac.authorization.k8s.io "vif-traffic-manager" deleted',
      'namespace "vif-system" deleted',
      'The traffic-manager is uninstalled from context "sim".',
    ]);
    // The namespace terminates (its content goes with it) before it is gone.
    await fake.gone("/api/v1/namespaces/vif-system");
    const again = await run(["uninstall", "-o", "json"], env);
    const result = JSON.parse(again.out);
    assertEquals(
      result.deleted.map((d: { action: string }) => d.action),
      Array(12).fill("not found"),
    );
  });
});

Deno.test("vif install --direct --grant-user says who may connect and how to issue client certificates", async () => {
  await withCluster(async (fake, env) => {
    const first = await run([
      "install",
      "--direct",
      "--grant-user",
      "dev",
      "--allow-also-proxy",
      "198.18.64.0/24",
    ], env);
    assertEquals([first.code, first.err], [0, ""]);
    assert(first.out.includes("secret/traffic-manager-client-ca created\n"), first.out);
    assert(
      first.out.includes("rolebinding.rbac.authorization.k8s.io/vif-user created\n"),
      first.out,
    );
    assertMatch(
      first.out,
      /\nDirect: mutual TLS on port 8443 of the manager's pod, with a new client CA valid until \d{4}-\d\d-\d\d; issue client certificates with "vif client-cert NAME"\n/,
    );
    assertMatch(
      first.out,
      /\nAlso-proxy: sessions may route 198\.18\.64\.0\/24 through the manager\n/,
    );
    assertMatch(first.out, /\nUsers: the role vif-user in "vif-system" is granted to user dev\n/);
    // Again, granting a group and without --direct: dev stays, the listener goes, the CA stays.
    const again = await run(["install", "--grant-group", "devs"], env);
    assertMatch(
      again.out,
      /\nUsers: the role vif-user in "vif-system" is granted to user dev, group devs\n/,
    );
    assertMatch(
      again.out,
      /\nDirect: off \(the client CA in secret "traffic-manager-client-ca" is kept; /,
    );
    assert(fake.get("/api/v1/namespaces/vif-system/secrets/traffic-manager-client-ca"));
  });
});

Deno.test("vif install upgrades an install by an older vif and says so", async () => {
  await withCluster(async (fake, env) => {
    await run(["install"], env);
    fake.delete("/api/v1/namespaces/vif-system/configmaps/traffic-manager-ca");
    fake.delete("/apis/rbac.authorization.k8s.io/v1/namespaces/vif-system/roles/vif-user");
    const { code, out } = await run(["install"], env);
    assertEquals(code, 0);
    assert(out.includes("configmap/traffic-manager-ca created\n"), out);
    assertMatch(out, /\nTLS: kept the certificate/);
    assertMatch(
      out,
      /\nUpgraded an install of an older vif: users now read the CA from configmap "traffic-manager-ca"/,
    );
  });
});
