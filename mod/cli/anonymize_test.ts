import { assert, assertEquals } from "../../tests/_assert.ts";
import { Anonymizer, parseIpv6, REDACTED, redactJson, redactSecrets } from "./anonymize.ts";

const ORIGINALS = ["shop", "web-7d9f8-x2l4k", "web", "node-a7", "10.1.2.3", "fd00:10::5", "alice"];

Deno.test("Anonymizer replaces a name and an address the same way in a log, status JSON and pod JSON", () => {
  const a = new Anonymizer();
  a.addName("shop", "namespace");
  a.addName("web", "workload");
  a.addName("web-7d9f8-x2l4k", "pod");
  a.addName("node-a7", "node");
  a.addName("alice", "user");
  const log = a.text(
    "2025-03-04T05:06:07.123Z info  session: dial shop/web-7d9f8-x2l4k 10.1.2.3:8080 " +
      "via node-a7 [fd00:10::5]:80 for alice\n",
  );
  const status = a.json({
    connection: { namespace: "shop", manager: { pod: "web-7d9f8-x2l4k" }, holder: "alice@node-a7" },
    tun: { addresses: ["240.0.0.1/24"] },
  }) as { connection: { namespace: string; manager: { pod: string }; holder: string } };
  const pod = a.json({
    metadata: { name: "web-7d9f8-x2l4k", namespace: "shop", labels: { app: "web" } },
    spec: { nodeName: "node-a7" },
    status: { podIP: "10.1.2.3", podIPs: [{ ip: "10.1.2.3" }, { ip: "fd00:10:0::5" }] },
  }) as {
    metadata: { name: string; namespace: string; labels: Record<string, string> };
    spec: { nodeName: string };
    status: { podIP: string; podIPs: { ip: string }[] };
  };
  assertEquals(
    log,
    "2025-03-04T05:06:07.123Z info  session: dial namespace-1/pod-1 250.0.0.1:8080 " +
      "via node-1 [2001:db8::1]:80 for user-1\n",
  );
  assertEquals(status.connection, {
    namespace: "namespace-1",
    manager: { pod: "pod-1" },
    holder: "user-1@node-1",
  });
  assertEquals(pod.metadata, {
    name: "pod-1",
    namespace: "namespace-1",
    labels: { app: "workload-1" },
  });
  assertEquals(pod.spec.nodeName, "node-1");
  assertEquals(pod.status, {
    podIP: "250.0.0.1",
    podIPs: [{ ip: "250.0.0.1" }, { ip: "2001:db8::1" }],
  });
  const all = log + JSON.stringify(status) + JSON.stringify(pod);
  for (const original of ORIGINALS) {
    assert(!all.includes(original), `"${original}" remains in ${all}`);
  }
  assert(all.includes("240.0.0.1/24"), "vif's own block is kept");
});

Deno.test("Anonymizer replaces a registered name inside an unregistered one at its hyphens", () => {
  const a = new Anonymizer();
  a.addName("web", "workload");
  a.addName("shop", "namespace");
  assertEquals(
    a.text("web-5c9b-zz9 in shop-staging, website and webshop stay, my-web too"),
    "workload-1-5c9b-zz9 in namespace-1-staging, website and webshop stay, my-workload-1 too",
  );
});

Deno.test("Anonymizer keeps well-known names, addresses and what only looks like an address", () => {
  const a = new Anonymizer();
  for (const n of ["default", "kube-system", "traffic-manager", "vif-system", "42"]) {
    a.addName(n, "namespace");
  }
  assertEquals(a.names, 0);
  const text = "traffic-manager.vif-system 127.0.0.1 0.0.0.0/0 ::1 :: 255.255.255.0 " +
    "169.254.169.254 240.0.0.2 at 12:30:05, mac 52:54:00:12:34:56, v1.2.3";
  assertEquals(a.text(text), text);
});

Deno.test("Anonymizer keeps an address's family and prefix length, and numbers each family apart", () => {
  const a = new Anonymizer();
  assertEquals(
    a.text("routes 10.96.0.0/12, fd00:96::/112, 198.18.0.9 and fe80::1%eth0 then 10.96.0.0"),
    "routes 250.0.0.1/12, 2001:db8::1/112, 250.0.0.2 and 2001:db8::2%eth0 then 250.0.0.1",
  );
  assertEquals(a.text("fe80:0:0:0:0:0:0:1 ::ffff:198.18.0.9"), "2001:db8::2 2001:db8::3");
});

Deno.test("Anonymizer replaces names with other characters wherever they occur", () => {
  const a = new Anonymizer();
  a.addName("arn:aws:eks:eu-west-1:123456789012:cluster/prod", "cluster");
  a.addName("alice@example.com", "user");
  a.addName("laptop.corp.example.com", "host");
  assertEquals(
    a.text(
      "cluster arn:aws:eks:eu-west-1:123456789012:cluster/prod user alice@example.com " +
        "(alice) on laptop.corp.example.com (laptop)",
    ),
    "cluster cluster-1 user user-1 (user-2) on host-1 (host-2)",
  );
});

Deno.test("Anonymizer.learnFromText() registers the service and namespace of cluster DNS names", () => {
  const a = new Anonymizer();
  a.learnFromText("dns: web.shop.svc.cluster.local A → 198.19.0.10; _http._tcp.api.pay.svc SRV");
  assertEquals(
    a.text("curl web.shop and api.pay.svc.cluster.local"),
    "curl service-1.namespace-1 and service-2.namespace-2.svc.cluster.local",
  );
});

Deno.test("Anonymizer.json() keeps keys but those of labels and annotations", () => {
  const a = new Anonymizer();
  a.addName("payments", "namespace");
  assertEquals(
    a.json({ payments: 1, labels: { "payments.example/team": "payments" }, list: ["payments"] }),
    { payments: 1, labels: { "namespace-1.example/team": "namespace-1" }, list: ["namespace-1"] },
  );
});

Deno.test("redactSecrets() redacts PEM blocks, JWTs, bearer tokens and key=value secrets", () => {
  const jwt = "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl";
  const text = [
    "Authorization: Bearer abc123def456",
    `token ${jwt} here`,
    "-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI\n-----END EC PRIVATE KEY-----",
    'password=hunter2 "token": "s3cr3t", api_key: k-123',
    "nothing here: 10.0.0.1",
  ].join("\n");
  assertEquals(
    redactSecrets(text),
    [
      `Authorization: Bearer ${REDACTED}`,
      `token ${REDACTED} here`,
      `-----BEGIN EC PRIVATE KEY-----\n${REDACTED}\n-----END EC PRIVATE KEY-----`,
      `password=${REDACTED} "token": "${REDACTED}", api_key: ${REDACTED}`,
      "nothing here: 10.0.0.1",
    ].join("\n"),
  );
});

Deno.test("redactJson() redacts secret keys and the values of secret environment variables", () => {
  assertEquals(
    redactJson({
      users: [{ user: { token: "abc", "client-key-data": "LS0t" } }],
      env: [
        { name: "DB_PASSWORD", value: "hunter2" },
        { name: "GITHUB_TOKEN", value: "ghp_x" },
        { name: "POD_IP", value: "10.0.0.1" },
        { name: "FROM_SECRET", valueFrom: { secretKeyRef: { name: "db", key: "pw" } } },
      ],
      automountServiceAccountToken: false,
    }),
    {
      users: [{ user: { token: REDACTED, "client-key-data": REDACTED } }],
      env: [
        { name: "DB_PASSWORD", value: REDACTED },
        { name: "GITHUB_TOKEN", value: REDACTED },
        { name: "POD_IP", value: "10.0.0.1" },
        { name: "FROM_SECRET", valueFrom: { secretKeyRef: { name: "db", key: "pw" } } },
      ],
      automountServiceAccountToken: false,
    },
  );
});

Deno.test("parseIpv6() reads every text form and refuses what is not an address", () => {
  assertEquals(parseIpv6("::1"), [0, 0, 0, 0, 0, 0, 0, 1]);
  assertEquals(parseIpv6("2001:db8::ffff:1.2.3.4"), [0x2001, 0xdb8, 0, 0, 0, 0xffff, 0x102, 0x304]);
  assertEquals(parseIpv6("1:2:3:4:5:6:7:8"), [1, 2, 3, 4, 5, 6, 7, 8]);
  for (const bad of ["12:30:05", "1:2:3:4:5:6:7:8:9", "1::2::3", "1:2:3:4:5:6:7::8", "g::1"]) {
    assertEquals(parseIpv6(bad), undefined, bad);
  }
});
