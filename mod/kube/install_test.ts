import { KubeConfig } from "@kubernetes/client-node";
import { assert, assertEquals, assertMatch, assertRejects } from "../../tests/_assert.ts";
import { type TestCluster, withCluster, type WithClusterOptions } from "../../tests/_apiserver.ts";
import { kubeconfigYaml } from "../../tests/_kubeconfig.ts";
import { KubeError } from "./errors.ts";
import { contains, install, reusableClientCa, reusableTls, uninstall } from "./install.ts";
import { managerManifests, TLS_KEYS } from "./manifests.ts";
import {
  createCertificateAuthority,
  createClientCa,
  createManagerTls,
  issueServerCertificate,
  type ManagerTls,
} from "./x509.ts";

const NS = "/api/v1/namespaces/vif-system";
const SECRET = `${NS}/secrets/traffic-manager-tls`;
const SA = `${NS}/serviceaccounts/traffic-manager`;
const ROLE = "/apis/rbac.authorization.k8s.io/v1/clusterroles/vif-traffic-manager";
const BINDING = "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/vif-traffic-manager";
const DELEGATOR = `${BINDING}-auth-delegator`;
const DEPLOYMENT = "/apis/apps/v1/namespaces/vif-system/deployments/traffic-manager";
const SERVICE = `${NS}/services/traffic-manager`;
const CLIENT_CA = `${NS}/secrets/traffic-manager-client-ca`;
const CONFIGMAP = `${NS}/configmaps/traffic-manager-ca`;
const USER_ROLE = "/apis/rbac.authorization.k8s.io/v1/namespaces/vif-system/roles/vif-user";
const USER_BINDING =
  "/apis/rbac.authorization.k8s.io/v1/namespaces/vif-system/rolebindings/vif-user";
const ORDER = [
  NS,
  SA,
  ROLE,
  BINDING,
  DELEGATOR,
  SECRET,
  CONFIGMAP,
  USER_ROLE,
  DEPLOYMENT,
  SERVICE,
];
/** What install() reads before it applies anything. */
const READS = [SECRET, CONFIGMAP, CLIENT_CA, USER_BINDING].map((path) => `GET ${path}`);
const parent = (path: string) => path.slice(0, path.lastIndexOf("/"));

function kubeConfigFor(fake: TestCluster, options: { token?: string; withCa?: boolean } = {}) {
  const kc = new KubeConfig();
  kc.loadFromString(fake.kubeconfig(options));
  return kc;
}

/** Runs `fn` against the simulated API server, as a user whom RBAC allows everything. */
function withFake(
  fn: (fake: TestCluster, kc: KubeConfig) => Promise<void>,
  options: WithClusterOptions = {},
): Promise<void> {
  return withCluster((fake) => fn(fake, kubeConfigFor(fake)), options);
}

let sharedTls: Promise<ManagerTls> | undefined;
function tls(): Promise<ManagerTls> {
  sharedTls ??= createManagerTls("vif-system");
  return sharedTls;
}

function secretTls(fake: TestCluster): ManagerTls {
  const data = fake.get(SECRET)!.data as Record<string, string>;
  return {
    caPem: atob(data["ca.crt"]!),
    certPem: atob(data["tls.crt"]!),
    keyPem: atob(data["tls.key"]!),
  };
}

Deno.test("install() creates every object in order: GET 404 then POST", async () => {
  await withFake(async (fake, kc) => {
    const result = await install(kc);
    assertEquals(result.applied.map((a) => `${a.name} ${a.action}`), [
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
    assertEquals(result.tls.action, "created");
    assertEquals(result.migrated, false);
    assertEquals(result.userSubjects, []);
    assertEquals(fake.log(), [
      ...READS,
      ...ORDER.flatMap((path) => [`GET ${path}`, `POST ${parent(path)}`]),
    ]);
    // Users read the CA from the ConfigMap: the same CA the Secret's certificate chains to.
    assertEquals(fake.get(CONFIGMAP)!.data, { "ca.crt": secretTls(fake).caPem });
    // What went over the wire is exactly the manifests: the client's serializer dropped nothing.
    const expected = managerManifests({ tls: secretTls(fake) });
    const posted = fake.requests.filter((r) => r.method === "POST").map((r) => r.body);
    assertEquals(posted, JSON.parse(JSON.stringify(expected)));
  });
});

Deno.test("install() a second time changes nothing and keeps the certificate", async () => {
  await withFake(async (fake, kc) => {
    await install(kc);
    const before = secretTls(fake);
    fake.requests.length = 0;
    const again = await install(kc);
    assertEquals(again.applied.map((a) => a.action), Array(ORDER.length).fill("unchanged"));
    assertEquals(again.tls.action, "kept");
    assert(fake.log().every((line) => line.startsWith("GET ")), fake.log().join("\n"));
    assertEquals(secretTls(fake), before);
  });
});

Deno.test("install() with another image PUTs the Deployment on the server's resourceVersion", async () => {
  await withFake(async (fake, kc) => {
    await install(kc, { tls: await tls() });
    fake.modify(DEPLOYMENT, (d) => {
      d.metadata.annotations = {
        ...d.metadata.annotations,
        "deployment.kubernetes.io/revision": "1",
      };
    });
    const resourceVersion = fake.get(DEPLOYMENT)!.metadata.resourceVersion;
    fake.requests.length = 0;
    const result = await install(kc, { image: "registry.example/vif:dev" });
    assertEquals(
      result.applied.filter((a) => a.action !== "unchanged").map((a) => `${a.name} ${a.action}`),
      ["deployment.apps/traffic-manager configured"],
    );
    const put = fake.requests.find((r) => r.method === "PUT")!;
    assertEquals(put.path, DEPLOYMENT);
    // deno-lint-ignore no-explicit-any
    const body = put.body as Record<string, any>;
    assertEquals(body.metadata.resourceVersion, resourceVersion);
    // Others' annotations stay.
    assertEquals(body.metadata.annotations["deployment.kubernetes.io/revision"], "1");
    assertEquals(body.spec.template.spec.containers[0].image, "registry.example/vif:dev");
  });
});

Deno.test("install() reads again and retries when someone else wrote in between (409)", async () => {
  await withFake(async (fake, kc) => {
    await install(kc, { tls: await tls() });
    let raced = false;
    fake.onRequest = (request) => {
      if (request.method === "PUT" && !raced) {
        raced = true; // Another writer got there first: the PUT's resourceVersion is stale.
        fake.modify(DEPLOYMENT, (d) => {
          d.metadata.annotations = { ...d.metadata.annotations, "example.com/writer": "other" };
        });
      }
    };
    fake.requests.length = 0;
    const result = await install(kc, { image: "registry.example/vif:dev" });
    assertEquals(result.applied.find((a) => a.name === "deployment.apps/traffic-manager"), {
      name: "deployment.apps/traffic-manager",
      action: "configured",
    });
    assertEquals(fake.log().filter((line) => line.endsWith(DEPLOYMENT)), [
      `GET ${DEPLOYMENT}`,
      `PUT ${DEPLOYMENT}`,
      `GET ${DEPLOYMENT}`,
      `PUT ${DEPLOYMENT}`,
    ]);
    assertEquals(
      fake.requests.filter((r) => r.path === DEPLOYMENT && r.method === "PUT").map((r) => r.code),
      [409, 200],
    );
  });
});

Deno.test("install() keeps the Service's ClusterIP when it PUTs the Service", async () => {
  await withFake(async (fake, kc) => {
    await install(kc, { tls: await tls() });
    const clusterIP = fake.get(SERVICE)!.spec.clusterIP;
    fake.modify(SERVICE, (s) => void (s.spec.ports[0].name = "old"));
    fake.requests.length = 0;
    const result = await install(kc);
    assertEquals(result.applied.at(-1), { name: "service/traffic-manager", action: "configured" });
    // The PUT carries the allocated address: servers before Kubernetes 1.20 answer 422 to one
    // without it, later ones fill it in.
    const put = fake.requests.find((r) => r.method === "PUT" && r.path === SERVICE)!;
    assertEquals([put.body!.spec.clusterIP, put.body!.spec.clusterIPs], [clusterIP, [clusterIP]]);
    assertEquals(fake.get(SERVICE)!.spec.clusterIP, clusterIP);
    assertEquals(fake.get(SERVICE)!.spec.ports[0].name, "grpc");
  });
});

Deno.test("install() --rotate-tls makes a new CA and rolls the Deployment", async () => {
  await withFake(async (fake, kc) => {
    await install(kc);
    const before = secretTls(fake);
    const result = await install(kc, { rotateTls: true });
    assertEquals(result.tls.action, "rotated");
    const after = secretTls(fake);
    assert(after.caPem !== before.caPem, "the CA did not change");
    const changed = result.applied.filter((a) => a.action === "configured").map((a) => a.name);
    // The pod template's certificate hash changed, so the pods restart with the new one;
    // users read the new CA from the ConfigMap.
    assertEquals(changed, [
      "secret/traffic-manager-tls",
      "configmap/traffic-manager-ca",
      "deployment.apps/traffic-manager",
    ]);
    assertEquals(fake.get(CONFIGMAP)!.data["ca.crt"], after.caPem);
  });
});

Deno.test("install() replaces a certificate that expires soon, and says why", async () => {
  await withFake(async (fake, kc) => {
    const old = await createManagerTls("vif-system", { validDays: 10 });
    await install(kc, { tls: old });
    const result = await install(kc);
    assertEquals(result.tls.action, "replaced");
    assertMatch(result.tls.reason ?? "", /^the certificate expires on \d{4}-\d\d-\d\d$/);
    assert(secretTls(fake).certPem !== old.certPem, "the certificate was kept");
  });
});

Deno.test("install() leaves an existing namespace alone, and uninstall() keeps it", async () => {
  await withFake(async (fake, kc) => {
    fake.store.create({
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name: "vif-system", labels: { team: "infra" } },
      status: { phase: "Active" },
    });
    const before = fake.objects();
    const result = await install(kc, { tls: await tls() });
    assertEquals(result.applied[0], { name: "namespace/vif-system", action: "unchanged" });
    assertEquals(fake.get(NS)!.metadata.labels, {
      team: "infra",
      "kubernetes.io/metadata.name": "vif-system",
    });
    const removed = await uninstall(kc);
    assertEquals(removed.at(-1), {
      name: "namespace/vif-system",
      action: "kept",
      reason: "vif did not create it",
    });
    assertEquals(fake.objects(), before);
    assertEquals(fake.get(NS)!.status.phase, "Active");
  });
});

Deno.test("uninstall() deletes everything in order, and tolerates what is gone", async () => {
  await withFake(async (fake, kc) => {
    const before = fake.objects();
    await install(kc, { tls: await tls(), direct: true, grantUsers: ["dev"] });
    fake.requests.length = 0;
    const removed = await uninstall(kc);
    assertEquals(removed.map((r) => `${r.name} ${r.action}`), [
      "deployment.apps/traffic-manager deleted",
      "service/traffic-manager deleted",
      "secret/traffic-manager-tls deleted",
      "secret/traffic-manager-client-ca deleted",
      "configmap/traffic-manager-ca deleted",
      "rolebinding.rbac.authorization.k8s.io/vif-user deleted",
      "role.rbac.authorization.k8s.io/vif-user deleted",
      "serviceaccount/traffic-manager deleted",
      "clusterrolebinding.rbac.authorization.k8s.io/vif-traffic-manager-auth-delegator deleted",
      "clusterrolebinding.rbac.authorization.k8s.io/vif-traffic-manager deleted",
      "clusterrole.rbac.authorization.k8s.io/vif-traffic-manager deleted",
      "namespace/vif-system deleted",
    ]);
    assertEquals(fake.log(), [
      `DELETE ${DEPLOYMENT}`,
      `DELETE ${SERVICE}`,
      `DELETE ${SECRET}`,
      `DELETE ${CLIENT_CA}`,
      `DELETE ${CONFIGMAP}`,
      `DELETE ${USER_BINDING}`,
      `DELETE ${USER_ROLE}`,
      `DELETE ${SA}`,
      `DELETE ${DELEGATOR}`,
      `DELETE ${BINDING}`,
      `DELETE ${ROLE}`,
      `GET ${NS}`,
      `DELETE ${NS}`,
    ]);
    // What is left is the namespace on its way out, with what the server itself put in it.
    assertEquals(
      fake.objects().filter((line) => !before.includes(line)),
      ["namespaces vif-system", "serviceaccounts vif-system/default"],
    );
    assertEquals(fake.get(NS)!.status.phase, "Terminating");
    await fake.gone(NS);
    assertEquals(fake.objects(), before);
    const again = await uninstall(kc);
    assertEquals(again.map((r) => r.action), Array(12).fill("not found"));
  });
});

Deno.test("uninstall() does not delete a namespace that is already being deleted", async () => {
  await withFake(async (fake, kc) => {
    fake.store.create({
      apiVersion: "v1",
      kind: "Namespace",
      metadata: { name: "vif-system", labels: { "app.kubernetes.io/managed-by": "vif" } },
    });
    fake.store.delete({ resource: "namespaces", name: "vif-system" });
    assertEquals(fake.get(NS)!.status.phase, "Terminating");
    const removed = await uninstall(kc);
    assertEquals(removed.at(-1), { name: "namespace/vif-system", action: "deleting" });
    assert(!fake.log().includes(`DELETE ${NS}`), fake.log().join("\n"));
  }, { namespaceDeletionDelayMs: 60_000 });
});

Deno.test("install() in another namespace names its cluster role after it", async () => {
  await withFake(async (fake, kc) => {
    const result = await install(kc, { namespace: "dev", tls: await createManagerTls("dev") });
    assertEquals(
      result.applied[2]!.name,
      "clusterrole.rbac.authorization.k8s.io/vif-traffic-manager-dev",
    );
    assertEquals(
      fake.get("/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/vif-traffic-manager-dev")!
        .subjects,
      [{ kind: "ServiceAccount", name: "traffic-manager", namespace: "dev" }],
    );
  });
});

Deno.test("install() explains a 403 with who was refused what, and who can do it", async () => {
  await withFake(async (fake, kc) => {
    fake.revoke("create", "clusterroles");
    const error = await assertRejects(() => install(kc), KubeError) as KubeError;
    assertEquals(error.message, 'user "alice" is not allowed to create clusterroles');
    assertMatch(error.hint, /^Ask a cluster admin to run "vif install"/);
    assertEquals(error.status, 403);
  });
});

Deno.test("uninstall() explains a 403 on a namespaced object", async () => {
  await withFake(async (fake, kc) => {
    fake.revoke("delete", "deployments");
    const error = await assertRejects(() => uninstall(kc), KubeError) as KubeError;
    assertEquals(
      error.message,
      'user "alice" is not allowed to delete deployments in namespace "vif-system"',
    );
    assertMatch(error.hint, /"vif uninstall"/);
  });
});

Deno.test("install() explains a 401: the credentials were refused", async () => {
  await withFake(async (fake) => {
    const error = await assertRejects(
      () => install(kubeConfigFor(fake, { token: "wrong" })),
      KubeError,
    ) as KubeError;
    assertEquals(
      error.message,
      `the API server at ${fake.url} refused the credentials of context "sim"`,
    );
    assertMatch(error.hint, /Log in to the cluster again/);
  });
});

Deno.test("install() explains a namespace that is being deleted", async () => {
  await withFake(async (fake, kc) => {
    await install(kc, { tls: await tls() });
    await uninstall(kc);
    assertEquals(fake.get(NS)!.status.phase, "Terminating");
    const error = await assertRejects(() => install(kc), KubeError) as KubeError;
    assertEquals(error.message, 'namespace "vif-system" is being deleted');
    assertMatch(error.hint, /^Wait until "kubectl get namespace vif-system" finds nothing/);
  }, { namespaceDeletionDelayMs: 60_000 });
});

Deno.test("install() explains an untrusted API server certificate", async () => {
  await withFake(async (fake) => {
    const error = await assertRejects(
      () => install(kubeConfigFor(fake, { withCa: false })),
      KubeError,
    ) as KubeError;
    assertMatch(
      error.message,
      /^the API server at https:\/\/127\.0\.0\.1:\d+ has a certificate this machine does not trust: /,
    );
    assertMatch(error.hint, /certificate-authority/);
  });
});

Deno.test("install() explains a refused connection", async () => {
  // A port that was just free: nothing listens on it.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  listener.close();
  const kc = new KubeConfig();
  kc.loadFromString(kubeconfigYaml(`https://127.0.0.1:${port}`, { token: "t" }));
  const error = await assertRejects(() => install(kc), KubeError) as KubeError;
  assertEquals(
    error.message,
    `cannot reach the API server at https://127.0.0.1:${port}: connection refused`,
  );
  assertMatch(error.hint, /context "sim" points at it/);
});

Deno.test("install() gives up on a server that does not answer", async () => {
  let release = () => {};
  const stuck = new Promise<void>((resolve) => release = resolve);
  const ca = await createCertificateAuthority("stuck CA");
  const cert = await issueServerCertificate(ca, { dnsNames: [], ipAddresses: ["127.0.0.1"] });
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    cert: cert.certPem,
    key: cert.keyPem,
    onListen() {},
  }, async () => {
    await stuck;
    return new Response("late");
  });
  try {
    const kc = new KubeConfig();
    kc.loadFromString(
      kubeconfigYaml(`https://127.0.0.1:${server.addr.port}`, { token: "t", caPem: ca.certPem }),
    );
    const error = await assertRejects(
      () => install(kc, { timeoutMs: 100 }),
      KubeError,
    ) as KubeError;
    assertMatch(
      error.message,
      /^the API server at https:\/\/127\.0\.0\.1:\d+ did not answer in time$/,
    );
  } finally {
    release();
    await server.shutdown();
  }
});

Deno.test("reusableTls() says why material cannot be reused", async () => {
  const now = new Date();
  const good = await tls();
  const secret = (material: Partial<ManagerTls>) => ({
    data: Object.fromEntries(
      Object.entries(TLS_KEYS).flatMap(([field, key]) => {
        const value = material[field as keyof ManagerTls];
        return value === undefined ? [] : [[key, btoa(value)]];
      }),
    ),
  });
  assert("tls" in reusableTls(secret(good), "vif-system", now), "good material refused");
  const reason = (material: Partial<ManagerTls>, ns = "vif-system") => {
    const verdict = reusableTls(secret(material), ns, now);
    return "reason" in verdict ? verdict.reason : "reusable";
  };
  assertEquals(reason({ ...good, keyPem: undefined }), "the secret has no tls.key");
  assertEquals(reason(good, "dev"), 'the certificate does not name "traffic-manager.dev"');
  const other = await createManagerTls("vif-system");
  assertEquals(reason({ ...good, caPem: other.caPem }), "the certificate is not signed by ca.crt");
  assertEquals(
    reason({ ...good, keyPem: other.keyPem }),
    "tls.key does not belong to the certificate",
  );
  assertMatch(reason({ ...good, certPem: "junk" }), /^the certificate or key does not parse: /);
  const expired = await createManagerTls("vif-system", {
    now: new Date("2020-01-01"),
    validDays: 30,
  });
  assertEquals(reason(expired), "the certificate expired on 2020-01-31");
  assertEquals(reusableTls(undefined, "vif-system", now), { reason: "there is no TLS secret" });
});

/** Makes the store look like an install by an older vif: no ConfigMap, no Role, a TCP probe. */
function makeOldLayout(fake: TestCluster): void {
  fake.delete(CONFIGMAP);
  fake.delete(USER_ROLE);
  fake.modify(DEPLOYMENT, (d) => {
    const container = d.spec.template.spec.containers[0];
    container.args = ["--serve", "--tls-dir", "/var/run/secrets/vif/tls"];
    container.ports = [{ name: "grpc", containerPort: 8081, protocol: "TCP" }];
    container.readinessProbe = { tcpSocket: { port: 8081 }, periodSeconds: 5 };
    delete container.livenessProbe;
  });
}

Deno.test("install() upgrades an older install: keeps the certificate, publishes the CA, adds the Role", async () => {
  await withFake(async (fake, kc) => {
    await install(kc);
    makeOldLayout(fake);
    const before = secretTls(fake);
    fake.requests.length = 0;
    const result = await install(kc);
    assertEquals(result.migrated, true);
    assertEquals(result.tls.action, "kept");
    assertEquals(secretTls(fake), before);
    assertEquals(
      result.applied.filter((a) => a.action !== "unchanged").map((a) => `${a.name} ${a.action}`),
      [
        "configmap/traffic-manager-ca created",
        "role.rbac.authorization.k8s.io/vif-user created",
        "deployment.apps/traffic-manager configured",
      ],
    );
    assertEquals(fake.get(CONFIGMAP)!.data["ca.crt"], before.caPem);
    const container = fake.get(DEPLOYMENT)!.spec.template.spec.containers[0];
    assertEquals(container.readinessProbe.tcpSocket, undefined);
    assertEquals(container.readinessProbe.httpGet, { path: "/readyz", port: "health" });
    assertEquals(container.livenessProbe.httpGet, { path: "/livez", port: "health" });
    // Once upgraded, it is an install like any other.
    assertEquals((await install(kc)).migrated, false);
  });
});

Deno.test("install() grants users and groups the Role vif-user, and never revokes one", async () => {
  await withFake(async (fake, kc) => {
    const first = await install(kc, { tls: await tls(), grantUsers: ["dev"] });
    assert(
      first.applied.some((a) => a.name === "rolebinding.rbac.authorization.k8s.io/vif-user"),
      "no RoleBinding",
    );
    const subject = (kind: string, name: string) => ({
      apiGroup: "rbac.authorization.k8s.io",
      kind,
      name,
    });
    assertEquals(fake.get(USER_BINDING)!.subjects, [subject("User", "dev")]);
    assertEquals(fake.get(USER_BINDING)!.roleRef, {
      apiGroup: "rbac.authorization.k8s.io",
      kind: "Role",
      name: "vif-user",
    });
    // Someone binds a service account by hand; a later grant keeps it.
    fake.modify(USER_BINDING, (b) => {
      b.subjects.push({ kind: "ServiceAccount", name: "ci", namespace: "build" });
    });
    const second = await install(kc, { grantGroups: ["devs"], grantUsers: ["dev"] });
    assertEquals(
      second.applied.find((a) => a.name.startsWith("rolebinding"))?.action,
      "configured",
    );
    const all = [
      subject("User", "dev"),
      { kind: "ServiceAccount", name: "ci", namespace: "build" },
      subject("Group", "devs"),
    ];
    assertEquals(fake.get(USER_BINDING)!.subjects, all);
    assertEquals(second.userSubjects, all);
    // An install that grants nobody leaves everyone bound.
    const third = await install(kc);
    assertEquals(third.applied.find((a) => a.name.startsWith("rolebinding"))?.action, "unchanged");
    assertEquals(fake.get(USER_BINDING)!.subjects, all);
  });
});

Deno.test("install() checks the also-proxy subnets and granted names before any request", async () => {
  await withFake(async (fake, kc) => {
    await assertRejects(
      () => install(kc, { allowAlsoProxy: ["198.18.64.0/24", "not-a-cidr"] }),
      RangeError,
      '"not-a-cidr": not a CIDR',
    );
    await assertRejects(() => install(kc, { grantUsers: [""] }), RangeError);
    assertEquals(fake.requests, []);
    const result = await install(kc, { tls: await tls(), allowAlsoProxy: ["198.18.64.7/24"] });
    assertEquals(result.allowAlsoProxy, ["198.18.64.0/24"]);
    const args = fake.get(DEPLOYMENT)!.spec.template.spec.containers[0].args;
    assertEquals(args.slice(-2), ["--allow-also-proxy", "198.18.64.0/24"]);
  });
});

Deno.test("install() --direct makes a client CA once, keeps it, and turns the listener off without losing it", async () => {
  await withFake(async (fake, kc) => {
    const first = await install(kc, { tls: await tls(), direct: true });
    assertEquals(first.clientCa?.action, "created");
    const stored = fake.get(CLIENT_CA)!;
    assertEquals(Object.keys(stored.data).sort(), ["ca.crt", "ca.key"]);
    const caPem = atob(stored.data["ca.crt"]);
    // The manager trusts it through its own Secret; the key stays in the client CA's.
    assertEquals(atob(fake.get(SECRET)!.data["client-ca.crt"]), caPem);
    assertEquals(
      fake.get(SERVICE)!.spec.ports.map((p: { name: string }) => p.name),
      ["grpc", "agent", "direct"],
    );
    const again = await install(kc, { direct: true });
    assertEquals(again.clientCa?.action, "kept");
    assertEquals(again.applied.map((a) => a.action), Array(first.applied.length).fill("unchanged"));

    const off = await install(kc);
    assertEquals(off.clientCa, undefined);
    assertEquals(off.clientCaUnused, true);
    assertEquals(
      off.applied.filter((a) => a.action !== "unchanged").map((a) => a.name),
      ["secret/traffic-manager-tls", "deployment.apps/traffic-manager", "service/traffic-manager"],
    );
    assertEquals(Object.keys(fake.get(SECRET)!.data).sort(), [
      "ca.crt",
      "tls.crt",
      "tls.key",
    ]);
    assertEquals(atob(fake.get(CLIENT_CA)!.data["ca.crt"]), caPem);
    const args = fake.get(DEPLOYMENT)!.spec.template.spec.containers[0].args;
    assert(!args.includes("--direct-listen"), args.join(" "));

    const on = await install(kc, { direct: true });
    assertEquals(on.clientCa?.action, "kept");
    assertEquals(atob(fake.get(SECRET)!.data["client-ca.crt"]), caPem);
  });
});

Deno.test("install() --direct replaces a client CA that expires soon, and says why", async () => {
  await withFake(async (fake, kc) => {
    const old = await createClientCa("vif-system", { validDays: 10 });
    await install(kc, { tls: await tls(), direct: true, clientCa: old });
    const result = await install(kc, { direct: true });
    assertEquals(result.clientCa?.action, "replaced");
    assertMatch(result.clientCa?.reason ?? "", /^the client CA expires on \d{4}-\d\d-\d\d$/);
    assert(atob(fake.get(CLIENT_CA)!.data["ca.crt"]) !== old.certPem, "kept");
  });
});

Deno.test("reusableClientCa() says why a client CA cannot sign any more", async () => {
  const now = new Date();
  const good = await createClientCa("vif-system");
  const other = await createClientCa("vif-system");
  const secret = (certPem?: string, keyPem?: string) => ({
    data: {
      ...(certPem ? { "ca.crt": btoa(certPem) } : {}),
      ...(keyPem ? { "ca.key": btoa(keyPem) } : {}),
    },
  });
  const reason = (certPem?: string, keyPem?: string) => {
    const verdict = reusableClientCa(secret(certPem, keyPem), now);
    return "reason" in verdict ? verdict.reason : "reusable";
  };
  assertEquals(reason(good.certPem, good.keyPem), "reusable");
  assertEquals(reason(good.certPem), "the secret has no ca.key");
  assertEquals(reason(good.certPem, other.keyPem), "ca.key does not belong to ca.crt");
  const leaf = await issueServerCertificate(good, { dnsNames: ["x"] });
  assertEquals(reason(leaf.certPem, leaf.keyPem), "ca.crt is not a CA certificate");
  assertMatch(reason("junk", good.keyPem), /^the client CA or its key does not parse: /);
  const expired = await createClientCa("x", { now: new Date("2020-01-01"), validDays: 30 });
  assertEquals(reason(expired.certPem, expired.keyPem), "the client CA expired on 2020-01-31");
});

Deno.test("contains() compares what vif sets and ignores what the server adds", () => {
  assert(
    contains({ a: 1, b: { c: "x", d: 2 }, e: [{ f: 1, g: 2 }] }, { b: { c: "x" }, e: [{ f: 1 }] }),
  );
  assert(!contains({ e: [{ f: 1 }, { f: 2 }] }, { e: [{ f: 1 }] }), "longer array");
  assert(!contains({ a: "1" }, { a: 1 }), "type differs");
  assert(!contains({}, { a: {} }), "missing object");
  assert(contains({ a: 1 }, { a: 1, b: undefined }));
});
