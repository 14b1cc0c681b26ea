import { X509Certificate } from "node:crypto";
import { assert, assertEquals, assertMatch } from "../../tests/_assert.ts";
import { type TestCluster, withCluster as withApiServer } from "../../tests/_apiserver.ts";
import { main, memoryIo } from "./mod.ts";

const CLIENT_CA = "/api/v1/namespaces/vif-system/secrets/traffic-manager-client-ca";
const CONFIGMAP = "/api/v1/namespaces/vif-system/configmaps/traffic-manager-ca";
const SERVICE = "/api/v1/namespaces/vif-system/services/traffic-manager";

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

/** Runs `fn` with the simulated API server, a kubeconfig for it and a directory for the files. */
function withCluster(
  fn: (fake: TestCluster, env: Record<string, string>, dir: string) => Promise<void>,
): Promise<void> {
  return withApiServer(async (fake) => {
    const dir = `${fake.dir}/files`;
    await Deno.mkdir(dir);
    await Deno.writeTextFile(`${dir}/kubeconfig`, fake.kubeconfig());
    await fn(fake, { KUBECONFIG: `${dir}/kubeconfig`, HOME: dir }, dir);
  });
}

Deno.test("vif client-cert writes a certificate from the client CA, its key (0600) and the manager's CA", async () => {
  await withCluster(async (fake, env, dir) => {
    assertEquals((await run(["install", "--direct"], env)).code, 0);
    const out = `${dir}/certs`;
    const { code, out: text, err } = await run(
      ["client-cert", "ci-bench", "--out", out, "--days", "7"],
      env,
    );
    assertEquals([code, err], [0, ""]);
    const cert = new X509Certificate(await Deno.readTextFile(`${out}/client.crt`));
    const clientCa = new X509Certificate(atob(fake.get(CLIENT_CA)!.data["ca.crt"]));
    assertEquals(cert.subject, "CN=ci-bench");
    assert(cert.checkIssued(clientCa) && cert.verify(clientCa.publicKey), "not from the client CA");
    const days = (new Date(cert.validTo).getTime() - Date.now()) / 86_400_000;
    assert(days > 6.9 && days <= 7, `valid for ${days} days`);
    assertEquals((await Deno.stat(`${out}/client.key`)).mode! & 0o777, 0o600);
    assertEquals(
      await Deno.readTextFile(`${out}/ca.crt`),
      fake.get(CONFIGMAP)!.data["ca.crt"],
    );
    const lines = text.trimEnd().split("\n");
    assertMatch(lines[0]!, /^Issued a client certificate for "ci-bench", valid until \d{4}-/);
    assertEquals(lines.at(-2), "Connect with:");
    const clusterIP = fake.get(SERVICE)!.spec.clusterIP;
    assertMatch(clusterIP, /^198\.19\./);
    assertEquals(
      lines.at(-1),
      `  vif connect --manager-address ${clusterIP}:8443 --manager-ca ${out}/ca.crt ` +
        `--client-cert ${out}/client.crt --client-key ${out}/client.key`,
    );
    assert(text.includes(`${clusterIP} is the Service's ClusterIP`), text);
  });
});

Deno.test("vif client-cert refuses to overwrite the files unless --force", async () => {
  await withCluster(async (_fake, env, dir) => {
    await run(["install", "--direct"], env);
    const first = await run(["client-cert", "dev", "--out", dir], env);
    assertEquals(first.code, 0);
    const before = await Deno.readTextFile(`${dir}/client.key`);
    const again = await run(["client-cert", "dev", "--out", dir], env);
    assertEquals(again.code, 1);
    assertEquals(
      again.err,
      `vif: "${dir}/client.crt" already exists\n` +
        "Pass --force to overwrite it, or --out another directory.\n",
    );
    assertEquals(await Deno.readTextFile(`${dir}/client.key`), before);
    // A wider mode left on the old key does not survive --force.
    await Deno.chmod(`${dir}/client.key`, 0o644);
    const forced = await run(["client-cert", "dev", "--out", dir, "--force"], env);
    assertEquals(forced.code, 0);
    assert(await Deno.readTextFile(`${dir}/client.key`) !== before, "the key was not replaced");
    assertEquals((await Deno.stat(`${dir}/client.key`)).mode! & 0o777, 0o600);
  });
});

Deno.test("vif client-cert without a direct listener says to install it, in two lines", async () => {
  await withCluster(async (_fake, env, dir) => {
    await run(["install"], env);
    const { code, err } = await run(["client-cert", "dev", "--out", dir], env);
    assertEquals(code, 1);
    assertEquals(
      err,
      'vif: the traffic-manager in "vif-system" has no direct listener ' +
        '(no Secret "traffic-manager-client-ca")\n' +
        "Install it with `vif install --direct`.\n",
    );
    // Nothing was written.
    assertEquals([...Deno.readDirSync(dir)].map((e) => e.name), ["kubeconfig"]);
  });
});

Deno.test("vif client-cert for someone who may not read the client CA names the Secret", async () => {
  await withCluster(async (fake, env, dir) => {
    await run(["install", "--direct"], env);
    fake.revoke("get", "secrets");
    const { code, err } = await run(["client-cert", "dev", "--out", dir], env);
    assertEquals(code, 1);
    assertMatch(
      err,
      /^vif: not allowed to read the Secret "traffic-manager-client-ca" in "vif-system"\nOnly an admin who may read Secrets in "vif-system" can issue client certificates/,
    );
  });
});

Deno.test("vif client-cert refuses a bad name or number of days before asking the cluster", async () => {
  const name = await run(["client-cert", "a".repeat(65)]);
  assertEquals(name.code, 2);
  assertMatch(name.err, /A name is 1 to 64 characters/);
  const days = await run(["client-cert", "dev", "--days", "0"]);
  assertEquals(days.code, 2);
  assertMatch(days.err, /Give a whole number of days from 1 to 3650\./);
});

Deno.test("vif connect takes the files vif client-cert writes, and explains bad ones", async () => {
  await withCluster(async (_fake, env, dir) => {
    await run(["install", "--direct"], env);
    await run(["client-cert", "dev", "--out", `${dir}/a`], env);
    await run(["client-cert", "other", "--out", `${dir}/b`], env);
    // --foreground checks every flag before anything starts; a bad address is the last check,
    // so reaching it means the client certificate and key were accepted.
    const connect = (...args: string[]) =>
      run(["connect", "--foreground", "--state-dir", `${dir}/state`, ...args], env);
    const direct = ["--manager-address", "bad", "--manager-ca", `${dir}/a/ca.crt`];
    const good = await connect(
      ...direct,
      "--client-cert",
      `${dir}/a/client.crt`,
      "--client-key",
      `${dir}/a/client.key`,
    );
    assertMatch(good.err, /^vif: bad manager address "bad"\n/);

    const alone = await connect(...direct, "--client-cert", `${dir}/a/client.crt`);
    assertEquals([alone.code, alone.err.split("\n")[0]], [
      2,
      "vif: --client-cert and --client-key go together",
    ]);
    const noAddress = await connect(
      "--client-cert",
      `${dir}/a/client.crt`,
      "--client-key",
      `${dir}/a/client.key`,
    );
    assertEquals(noAddress.code, 2);
    assertMatch(noAddress.err, /^vif: --client-cert is for the manager's direct listener only\n/);
    const missing = await connect(
      ...direct,
      "--client-cert",
      `${dir}/none.crt`,
      "--client-key",
      `${dir}/a/client.key`,
    );
    assertEquals(missing.code, 1);
    assertMatch(
      missing.err,
      new RegExp(
        `^vif: cannot read the client certificate "${dir}/none\\.crt": .*\\n` +
          "Check the path given to --client-cert\\.\\n$",
      ),
    );
    const mismatch = await connect(
      ...direct,
      "--client-cert",
      `${dir}/a/client.crt`,
      "--client-key",
      `${dir}/b/client.key`,
    );
    assertEquals(
      mismatch.err,
      `vif: the key "${dir}/b/client.key" does not belong to the certificate "${dir}/a/client.crt"\n` +
        "Pass the client.key that `vif client-cert` wrote with that certificate.\n",
    );
    const notPem = await connect(
      ...direct,
      "--client-cert",
      `${dir}/kubeconfig`,
      "--client-key",
      `${dir}/a/client.key`,
    );
    assertMatch(notPem.err, /holds no PEM certificate\n/);
  });
});
