import { InvalidArgumentError } from "commander";
import { load as parse } from "js-yaml";
import { assert, assertEquals, assertMatch, assertThrows } from "../../tests/_assert.ts";
import { type TestCluster, withCluster as withApiServer } from "../../tests/_apiserver.ts";
import { kubeconfigYaml } from "../../tests/_kubeconfig.ts";
import { main, memoryIo } from "./mod.ts";
import { requestTimeout } from "./kube_flags.ts";

async function run(args: string[], env: Record<string, string> = {}) {
  const io = memoryIo(env);
  const code = await main(args, { io });
  return { code, out: io.out, err: io.err };
}

/** The simulated API server, with a kubeconfig whose context names namespace `shop`. */
function withCluster(
  fn: (fake: TestCluster, env: Record<string, string>) => Promise<void>,
): Promise<void> {
  return withApiServer(async (fake) => {
    const kubeconfig = fake.kubeconfig().replace(
      /(\n\s+cluster: [^\n]+)/,
      "$1\n    namespace: shop",
    );
    assert(kubeconfig.includes("namespace: shop"), kubeconfig);
    await Deno.writeTextFile(`${fake.dir}/kubeconfig`, kubeconfig);
    fake.store.create({ apiVersion: "v1", kind: "Namespace", metadata: { name: "shop" } });
    fake.store.create({
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "cart", namespace: "shop" },
      spec: { ports: [{ name: "http", port: 80, protocol: "TCP" }], selector: { app: "cart" } },
    });
    await fn(fake, { KUBECONFIG: `${fake.dir}/kubeconfig`, HOME: fake.dir });
  });
}

Deno.test("requestTimeout() reads kubectl's durations, a bare number as seconds, 0 as no limit", () => {
  assertEquals(requestTimeout("30s"), 30_000);
  assertEquals(requestTimeout("2m"), 120_000);
  assertEquals(requestTimeout("1h"), 3_600_000);
  assertEquals(requestTimeout("250ms"), 250);
  assertEquals(requestTimeout("5"), 5000);
  assertEquals(requestTimeout("0"), 0);
  for (const bad of ["", "-1s", "5d", "soon", "25h"]) {
    assertThrows(() => requestTimeout(bad), InvalidArgumentError);
  }
});

Deno.test("vif list uses the context's namespace when no -n is given, as kubectl does", async () => {
  await withCluster(async (fake, env) => {
    const { code, out, err } = await run(["list", "-o", "json"], env);
    assertEquals(code, 0, err);
    const listing = JSON.parse(out);
    assertEquals(listing.namespace, "shop");
    assertEquals(listing.services.map((s: { name: string }) => s.name), ["cart"]);
    const other = await run(["list", "-n", "default", "-o", "yaml"], env);
    assertEquals(other.code, 0, other.err);
    assertEquals((parse(other.out) as { namespace: string }).namespace, "default");
    assert(fake.log().some((l) => l.includes("/namespaces/shop/services")), fake.log().join("\n"));
  });
});

Deno.test("--as makes the API server act as that user, and needs the impersonate permission", async () => {
  await withCluster(async (fake, env) => {
    // bob is bound to nothing: as bob, the list is forbidden in bob's name.
    const asBob = await run(["list", "--as", "bob"], env);
    assertEquals(asBob.code, 1);
    assertMatch(asBob.err, /^vif: user "bob" is not allowed to list /);

    fake.revoke("impersonate", "users");
    const denied = await run(["list", "--as", "bob"], env);
    assertEquals(denied.code, 1);
    assertMatch(denied.err, /^vif: user "alice" may not act as the user "bob"\n.*--as/);

    const bad = await run(["list", "--as", "a\nb"], env);
    assertEquals(bad.code, 2);
  });
});

Deno.test("--request-timeout bounds each API request", async () => {
  // A server that accepts and never answers: without a deadline, list would wait for it.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) held.push(conn);
  })();
  const dir = await Deno.makeTempDir({ prefix: "vif-timeout-" });
  try {
    const yaml = kubeconfigYaml(`https://127.0.0.1:${listener.addr.port}`, { token: "t" });
    await Deno.writeTextFile(`${dir}/kubeconfig`, yaml);
    const env = { KUBECONFIG: `${dir}/kubeconfig`, HOME: dir };
    const started = Date.now();
    const { code, err } = await run(["list", "--request-timeout", "300ms"], env);
    const took = Date.now() - started;
    assertEquals(code, 1, err);
    assert(took < 5000, `took ${took} ms`);
  } finally {
    listener.close();
    for (const c of held) c.close();
    await accepting.catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("install and uninstall take --dry-run=client, and refuse a server dry run", async () => {
  const yaml = await run(["install", "--dry-run=client", "-o", "yaml"]);
  assertEquals(yaml.code, 0, yaml.err);
  assertMatch(yaml.out, /^kind: Deployment$/m);
  const server = await run(["install", "--dry-run=server"]);
  assertEquals(server.code, 2);
  assertMatch(server.err, /no server-side dry run; use --dry-run=client/);

  await withCluster(async (fake, env) => {
    const before = fake.objects();
    const { code, out, err } = await run(["uninstall", "--dry-run=client"], env);
    assertEquals(code, 0, err);
    assertMatch(out, /^deployment\.apps\/traffic-manager deleted \(dry run\)$/m);
    assertMatch(out, /^namespace\/vif-system deleted \(dry run\)$/m);
    assertEquals(fake.objects(), before);
    const json = await run(["uninstall", "--dry-run", "-o", "json"], env);
    assertEquals(JSON.parse(json.out).dryRun, "client");
  });
});

Deno.test("-n is the user's namespace: install refuses it and names --manager-namespace", async () => {
  const { code, err } = await run(["install", "--dry-run", "-n", "vif-dev"]);
  assertEquals(code, 2);
  assertMatch(err, /--manager-namespace/);
  const uninstall = await run(["uninstall", "-n", "shop"]);
  assertEquals(uninstall.code, 2);
  assertMatch(uninstall.err, /only goes with --agents/);
  const ok = await run(["install", "--dry-run", "--manager-namespace", "vif-dev", "-o", "json"]);
  assertEquals(ok.code, 0, ok.err);
  assertEquals(JSON.parse(ok.out).items[0].metadata.name, "vif-dev");
});

Deno.test("-o yaml wherever -o json is: the same document in both", async () => {
  const json = await run(["version", "-o", "json"]);
  const yaml = await run(["version", "-o", "yaml"]);
  assertEquals(yaml.code, 0, yaml.err);
  assertEquals(parse(yaml.out), JSON.parse(json.out));
});
