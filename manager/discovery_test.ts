/**
 * Tests of CIDR discovery: the pure subnet maths and error parser as tables,
 * then discovery against the fake API server (tests/sim/apiserver) over
 * loopback HTTPS.
 *
 * ```
 *   this test ──store.create()──► Store ◄── startApiServer() on 127.0.0.1:PORT (TLS, tokens)
 *                                                 ▲
 *   startDiscovery() ──list+watch, probe (HTTPS)──┘
 *        │ set()
 *        ▼
 *   ClusterInfoSource ──subscribe()──► the test waits on its events
 * ```
 *
 * Addresses: 198.18.0.0/15 only (RFC 2544); the fake's service range is
 * 198.19.0.0/18.
 *
 * @module
 */

import { assert, assertEquals, assertMatch, assertThrows } from "../tests/_assert.ts";
import { makeTestTls } from "../tests/_tls.ts";
import {
  ADMIN_TOKEN,
  TEST_SERVICE_CIDR,
  type TestApi,
  withApi,
  writeKubeconfig,
} from "../tests/sim/apiserver/_testing.ts";
import { type ApiServerOptions, startApiServer } from "../tests/sim/apiserver/server.ts";
import { Store } from "../tests/sim/apiserver/store.ts";
import { ClusterInfoSource, type ClusterInfoValue } from "./cluster_info.ts";
import {
  aggregateCidrs,
  coveringCidrs,
  type Discovery,
  type DiscoveryOptions,
  managerKubeAccess,
  normalizeCidrs,
  parseServiceRangeError,
  startDiscovery,
} from "./discovery.ts";
import { ManagerSetupError } from "./errors.ts";
import { serve } from "./server.ts";

// --- pure -------------------------------------------------------------------------

const AGGREGATE_CASES: { name: string; input: string[]; expected: string[] }[] = [
  { name: "nothing", input: [], expected: [] },
  { name: "one", input: ["198.18.4.0/24"], expected: ["198.18.4.0/24"] },
  { name: "host bits cleared", input: ["198.18.4.77/24"], expected: ["198.18.4.0/24"] },
  { name: "duplicates", input: ["198.18.4.0/24", "198.18.4.0/24"], expected: ["198.18.4.0/24"] },
  {
    name: "two halves become their parent",
    input: ["198.18.1.0/24", "198.18.0.0/24"],
    expected: ["198.18.0.0/23"],
  },
  {
    name: "merges cascade",
    input: ["198.18.0.0/24", "198.18.1.0/24", "198.18.2.0/24", "198.18.3.0/24"],
    expected: ["198.18.0.0/22"],
  },
  {
    name: "adjacent but not halves of one subnet stay apart",
    input: ["198.18.1.0/24", "198.18.2.0/24"],
    expected: ["198.18.1.0/24", "198.18.2.0/24"],
  },
  {
    name: "contained subnets go",
    input: ["198.18.0.0/16", "198.18.5.0/24", "198.18.200.128/25"],
    expected: ["198.18.0.0/16"],
  },
  {
    name: "a merge that swallows a later one",
    input: ["198.18.0.0/25", "198.18.0.128/25", "198.18.0.64/26", "198.18.1.0/24"],
    expected: ["198.18.0.0/23"],
  },
  {
    name: "the two /16 of 198.18.0.0/15",
    input: ["198.19.0.0/16", "198.18.0.0/16"],
    expected: ["198.18.0.0/15"],
  },
  {
    name: "IPv4 first, IPv6 merged too",
    input: ["2001:2:0:1::/64", "198.18.9.0/24", "2001:2::/64", "2001:2:0:3::/64"],
    expected: ["198.18.9.0/24", "2001:2::/63", "2001:2:0:3::/64"],
  },
  {
    name: "families never merge with each other",
    input: ["0.0.0.0/1", "128.0.0.0/1", "::/1"],
    expected: ["0.0.0.0/0", "::/1"],
  },
  {
    name: "garbage is skipped",
    input: ["x", "198.18.0.0/33", "198.18.3.0/24"],
    expected: ["198.18.3.0/24"],
  },
];

for (const c of AGGREGATE_CASES) {
  Deno.test(`aggregateCidrs() ${c.name}`, () => {
    assertEquals(aggregateCidrs(c.input), c.expected);
  });
}

const COVERING_CASES: { name: string; input: string[]; expected: string[] }[] = [
  { name: "no addresses", input: [], expected: [] },
  { name: "one address, its /24", input: ["198.18.7.9"], expected: ["198.18.7.0/24"] },
  {
    name: "many addresses in one /24",
    input: ["198.18.7.9", "198.18.7.200", "198.18.7.1"],
    expected: ["198.18.7.0/24"],
  },
  {
    name: "neighbouring /24s merge",
    input: ["198.18.64.3", "198.18.65.4", "198.18.66.5", "198.18.67.6"],
    expected: ["198.18.64.0/22"],
  },
  {
    name: "scattered /24s stay apart",
    input: ["198.18.64.3", "198.18.70.4", "198.19.1.1"],
    expected: ["198.18.64.0/24", "198.18.70.0/24", "198.19.1.0/24"],
  },
  {
    name: "IPv6 by /64",
    input: ["2001:2::5", "2001:2::1:5", "2001:2:0:1::9"],
    expected: ["2001:2::/63"],
  },
  {
    name: "dual stack",
    input: ["198.18.0.5", "2001:2::5", "198.18.1.5"],
    expected: ["198.18.0.0/23", "2001:2::/64"],
  },
  { name: "not addresses are skipped", input: ["", "None", "198.18.0.1/24"], expected: [] },
];

for (const c of COVERING_CASES) {
  Deno.test(`coveringCidrs() ${c.name}`, () => {
    assertEquals(coveringCidrs(c.input), c.expected);
  });
}

Deno.test("coveringCidrs() takes other block sizes", () => {
  assertEquals(coveringCidrs(["198.18.0.1", "198.18.3.1"], { ipv4PrefixLength: 22 }), [
    "198.18.0.0/22",
  ]);
  assertEquals(coveringCidrs(["2001:2::1"], { ipv6PrefixLength: 112 }), ["2001:2::/112"]);
});

Deno.test("normalizeCidrs() sorts and drops contained subnets but merges nothing", () => {
  assertEquals(
    normalizeCidrs(["198.18.1.0/24", "2001:2::/64", "198.18.0.0/24", "198.18.1.0/25", "bad"]),
    ["198.18.0.0/24", "198.18.1.0/24", "2001:2::/64"],
  );
});

/** Messages as real API servers write them (the range from each test cluster). */
const RANGE_ERROR_CASES: { name: string; text: string; expected: string[] }[] = [
  {
    name: "Kubernetes 1.17 and before (spec.clusterIP)",
    text:
      'The Service "vif-cidr-probe" is invalid: spec.clusterIP: Invalid value: "0.0.0.0": provided IP is not in the valid range. The range of valid IPs is 198.18.96.0/20',
    expected: ["198.18.96.0/20"],
  },
  {
    name: "Kubernetes 1.18–1.19 (failed to allocated ip)",
    text:
      'The Service "vif-cidr-probe" is invalid: spec.clusterIPs: Invalid value: []string{"0.0.0.0"}: failed to allocated ip:0.0.0.0 with error:provided IP is not in the valid range. The range of valid IPs is 198.19.0.0/16',
    expected: ["198.19.0.0/16"],
  },
  {
    name: "Kubernetes 1.20+ (the provided IP (…))",
    text:
      'Service "vif-cidr-probe" is invalid: spec.clusterIPs: Invalid value: []string{"0.0.0.0"}: failed to allocate IP 0.0.0.0: the provided IP (0.0.0.0) is not in the valid range. The range of valid IPs is 198.18.128.0/17',
    expected: ["198.18.128.0/17"],
  },
  {
    name: "Kubernetes 1.20 without parentheses (kubectl's error: prefix)",
    text:
      'error: failed to create ClusterIP service: Service "test" is invalid: spec.clusterIPs: Invalid value: []string{"198.18.253.81"}: failed to allocate IP 198.18.253.81: provided IP is not in the valid range. The range of valid IPs is 198.19.128.0/18',
    expected: ["198.19.128.0/18"],
  },
  {
    name: "an IPv6 range's refusal",
    text:
      'Service "vif-cidr-probe" is invalid: spec.clusterIPs: Invalid value: []string{"::"}: failed to allocate IP ::: the provided IP (::) is not in the valid range. The range of valid IPs is 2001:2:0:ff::/108',
    expected: ["2001:2:0:ff::/108"],
  },
  {
    name: "the whole Status as JSON, message and cause naming one range",
    text: JSON.stringify({
      kind: "Status",
      apiVersion: "v1",
      status: "Failure",
      message:
        'Service "vif-cidr-probe" is invalid: spec.clusterIPs: Invalid value: []string{"0.0.0.0"}: failed to allocate IP 0.0.0.0: the provided IP (0.0.0.0) is not in the valid range. The range of valid IPs is 198.19.0.0/18',
      reason: "Invalid",
      details: {
        name: "vif-cidr-probe",
        kind: "Service",
        causes: [{
          reason: "FieldValueInvalid",
          message:
            'Invalid value: []string{"0.0.0.0"}: failed to allocate IP 0.0.0.0: the provided IP (0.0.0.0) is not in the valid range. The range of valid IPs is 198.19.0.0/18',
          field: "spec.clusterIPs",
        }],
      },
      code: 422,
    }),
    expected: ["198.19.0.0/18"],
  },
  {
    name: "the ServiceCIDR allocator's refusal (1.31+), which names no range",
    text:
      'Service "vif-cidr-probe" is invalid: spec.clusterIPs: Invalid value: []string{"0.0.0.0"}: failed to allocate IP 0.0.0.0: the provided network does not match the current range',
    expected: [],
  },
  {
    name: "a family the cluster lacks, which names no range",
    text:
      'Service "vif-cidr-probe" is invalid: spec.ipFamilies[0]: Invalid value: "IPv6": not configured on this cluster',
    expected: [],
  },
  {
    name: "an unrelated refusal, which names no range",
    text:
      'services is forbidden: User "system:serviceaccount:vif-system:traffic-manager" cannot create resource "services" in API group "" in the namespace "vif-system"',
    expected: [],
  },
];

for (const c of RANGE_ERROR_CASES) {
  Deno.test(`parseServiceRangeError() on ${c.name}`, () => {
    assertEquals(parseServiceRangeError(c.text), c.expected);
  });
}

// --- configuration ---------------------------------------------------------------

Deno.test("managerKubeAccess() says what to do in the manager's flags", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vif-sa-" });
  try {
    const env = (name: string) =>
      ({ KUBERNETES_SERVICE_HOST: "198.18.128.1", KUBERNETES_SERVICE_PORT: "443" })[name];
    const missing = assertThrows(
      () => managerKubeAccess({ inCluster: true, serviceAccountDir: dir, env }),
      ManagerSetupError,
    );
    assertMatch(missing.message, /^Cannot read the service account in /);
    assertMatch(missing.hint, /--no-discover/);
    assertEquals(missing.usage, false);
    const outside = assertThrows(
      () => managerKubeAccess({ inCluster: true, serviceAccountDir: dir, env: () => undefined }),
      ManagerSetupError,
      "KUBERNETES_SERVICE_HOST",
    );
    assertMatch(outside.hint, /--kubeconfig FILE, or give --pod-cidr/);
    assertEquals(outside.usage, true);
    const bad = assertThrows(
      () => managerKubeAccess({ kubeconfig: `${dir}/missing` }),
      ManagerSetupError,
      "Cannot read kubeconfig",
    );
    assertEquals(bad.usage, true);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

// --- against the fake API server -----------------------------------------------------

function node(name: string, ...podCIDRs: string[]) {
  return {
    apiVersion: "v1",
    kind: "Node",
    metadata: { name },
    spec: podCIDRs.length > 0 ? { podCIDR: podCIDRs[0], podCIDRs } : {},
  };
}

function pod(namespace: string, name: string, ip: string, extra: { hostNetwork?: boolean } = {}) {
  return {
    apiVersion: "v1",
    kind: "Pod",
    metadata: { name, namespace },
    spec: { containers: [{ name: "main", image: "app:1" }], nodeName: "node-a", ...extra },
    status: { phase: "Running", podIP: ip, podIPs: [{ ip }] },
  };
}

function namespace(name: string) {
  return { apiVersion: "v1", kind: "Namespace", metadata: { name } };
}

/** Resolves with the value once `test` holds (at once when it holds already). */
function until(
  source: ClusterInfoSource,
  test: (info: Readonly<ClusterInfoValue>) => boolean,
  what: string,
  limitMs = 15_000,
): Promise<Readonly<ClusterInfoValue>> {
  return new Promise((resolve, reject) => {
    const finish = (info: Readonly<ClusterInfoValue>) => {
      clearTimeout(timer);
      unsubscribe();
      resolve(info);
    };
    const unsubscribe = source.subscribe((info) => test(info) && finish(info));
    const timer = setTimeout(() => {
      unsubscribe();
      reject(new Error(`Timed out waiting for ${what}: ${JSON.stringify(source.current)}`));
    }, limitMs);
    if (test(source.current)) finish(source.current);
  });
}

interface Run {
  info: ClusterInfoSource;
  discovery: Discovery;
  logs: string[];
  /** Every value `set()` produced, in order. */
  changes: ClusterInfoValue[];
  /** Resolves with the first log line (logged so far or later) that matches. */
  logged(pattern: RegExp): Promise<string>;
}

/** Runs discovery against the test server with a kubeconfig, then closes it. */
async function withDiscovery(
  t: TestApi,
  options: Partial<DiscoveryOptions>,
  fn: (run: Run) => Promise<void>,
): Promise<void> {
  const kubeconfig = await writeKubeconfig(t, ADMIN_TOKEN);
  const info = new ClusterInfoSource();
  const changes: ClusterInfoValue[] = [];
  info.subscribe((value) => changes.push(value));
  const logs: string[] = [];
  const waiting = new Set<(line: string) => void>();
  const logged = (pattern: RegExp) =>
    new Promise<string>((resolve) => {
      const seen = logs.find((line) => pattern.test(line));
      if (seen !== undefined) return resolve(seen);
      const check = (line: string) => {
        if (!pattern.test(line)) return;
        waiting.delete(check);
        resolve(line);
      };
      waiting.add(check);
    });
  const discovery = startDiscovery(info, {
    kubeconfig,
    log: (line) => {
      logs.push(line);
      for (const check of [...waiting]) check(line);
    },
    retry: { initialMs: 20, maxMs: 200 },
    ...options,
  });
  try {
    await fn({ info, discovery, logs, changes, logged });
  } finally {
    await discovery.close();
  }
}

const deny = (resource: string, verb?: string): Partial<ApiServerOptions> => ({
  authorize: (a) => !(a.resource === resource && (verb === undefined || a.verb === verb)),
});

Deno.test("startDiscovery() takes the nodes' podCIDRs when one holds the pod IP, and the ServiceCIDRs", async () => {
  await withApi(async (t) => {
    t.api.store.create(node("node-a", "198.18.0.0/24", "2001:2::/64"));
    t.api.store.create(node("node-b", "198.18.1.0/24"));
    t.api.store.create(node("node-c")); // No podCIDR yet.
    t.api.store.create(namespace("shop"));
    t.api.store.create(pod("shop", "web", "198.18.0.9"));
    await withDiscovery(t, { podIp: "198.18.1.5" }, async (run) => {
      await run.discovery.settled;
      const info = run.info.current;
      assertEquals(info.podSubnets, ["198.18.0.0/24", "198.18.1.0/24", "2001:2::/64"]);
      assertEquals(info.serviceSubnets, [TEST_SERVICE_CIDR]);
      assert(info.namespaces.includes("shop") && info.namespaces.includes("default"));
      assertEquals([...run.discovery.found].sort(), ["namespaces", "podSubnets", "serviceSubnets"]);
      assert(
        run.logs.includes(
          "manager: pod subnets now 198.18.0.0/24 198.18.1.0/24 2001:2::/64 (nodes)",
        ),
        run.logs.join("\n"),
      );
      assert(run.logs.includes(`manager: service subnets now ${TEST_SERVICE_CIDR} (servicecidrs)`));
      assert(!run.logs.some((line) => line.includes("watching pods")), "pods are not needed");
      // One set() per change, not per event.
      assert(run.changes.length <= 3, `${run.changes.length} changes`);
    });
  });
});

Deno.test("startDiscovery() covers the pods' IPs when no node's podCIDRs hold the pod IP", async () => {
  await withApi(async (t) => {
    t.api.store.create(node("node-a", "198.19.200.0/24")); // A CNI that ignores podCIDRs.
    t.api.store.create(namespace("shop"));
    t.api.store.create(pod("shop", "web-1", "198.18.64.7"));
    t.api.store.create(pod("shop", "web-2", "198.18.65.20"));
    t.api.store.create(pod("shop", "db", "198.18.70.3"));
    t.api.store.create(pod("kube-system", "proxy", "198.19.250.2", { hostNetwork: true }));
    await withDiscovery(t, { podIp: "198.18.66.4", fields: ["podSubnets"] }, async (run) => {
      const info = await until(
        run.info,
        (i) => i.podSubnets.length > 0,
        "pod subnets",
      );
      // 64 and 65 merge; 66 (the manager) stands alone; the host-network pod is not counted.
      assertEquals(info.podSubnets, ["198.18.64.0/23", "198.18.66.0/24", "198.18.70.0/24"]);
      assert(run.logs.some((line) => line.endsWith("(pods)")), run.logs.join("\n"));
      assert(
        run.logs.some((line) => line.includes("no node's podCIDRs hold the pod IP 198.18.66.4")),
      );
      assertEquals(info.serviceSubnets, [], "not asked for");

      // A pod in a new /24 widens the subnets; its going narrows them again.
      t.api.store.create(pod("shop", "cache", "198.18.67.1"));
      await until(
        run.info,
        (i) => i.podSubnets.join(" ") === "198.18.64.0/22 198.18.70.0/24",
        "the new pod's /24",
      );
      t.api.store.delete({ resource: "pods", namespace: "shop", name: "cache" });
      await until(
        run.info,
        (i) => i.podSubnets.join(" ") === "198.18.64.0/23 198.18.66.0/24 198.18.70.0/24",
        "the pod's /24 gone",
      );
    });
  });
});

Deno.test("startDiscovery() announces a node added while it watches", async () => {
  await withApi(async (t) => {
    t.api.store.create(node("node-a", "198.18.0.0/24"));
    await withDiscovery(t, { podIp: "198.18.0.10" }, async (run) => {
      await until(run.info, (i) => i.podSubnets.join() === "198.18.0.0/24", "the first node");
      const before = run.changes.length;
      t.api.store.create(node("node-b", "198.18.1.0/24"));
      const info = await until(run.info, (i) => i.podSubnets.length === 2, "the new node");
      assertEquals(info.podSubnets, ["198.18.0.0/24", "198.18.1.0/24"]);
      assertEquals(run.changes.length, before + 1);
      assert(run.logs.includes("manager: pod subnets now 198.18.0.0/24 198.18.1.0/24 (nodes)"));

      // A change that changes nothing sets nothing.
      t.api.store.modify({ resource: "nodes", name: "node-b" }, (n) => {
        n.metadata.labels = { zone: "b" };
      });
      t.api.store.create(namespace("late"));
      await until(run.info, (i) => i.namespaces.includes("late"), "the new namespace");
      assertEquals(run.info.current.podSubnets, ["198.18.0.0/24", "198.18.1.0/24"]);
      assertEquals(
        run.changes.filter((c) => c.podSubnets.length === 2).length,
        run.changes.length - before,
      );
      assertEquals(run.logs.filter((l) => l.includes("pod subnets now")).length, 2);
    });
  });
});

Deno.test("startDiscovery() starts a silent watch again from where it was", async () => {
  let watches = 0;
  let second!: () => void;
  const secondWatch = new Promise<void>((resolve) => second = resolve);
  await withApi(async (t) => {
    t.api.store.create(node("node-a", "198.18.0.0/24"));
    await withDiscovery(
      t,
      { podIp: "198.18.0.2", fields: ["podSubnets"], watchIdleMs: 150 },
      async (run) => {
        await until(run.info, (i) => i.podSubnets.length === 1, "the first node");
        await secondWatch;
        t.api.store.create(node("node-b", "198.18.1.0/24"));
        await until(run.info, (i) => i.podSubnets.length === 2, "the node added after");
      },
    );
  }, {
    bookmarkIntervalMs: 60_000,
    log: (line) => {
      if (/ GET \/api\/v1\/nodes\?watch=true&resourceVersion=\d+/.test(line) && ++watches === 2) {
        second();
      }
    },
  });
});

Deno.test("startDiscovery() probes the service range when the ServiceCIDRs are forbidden", async () => {
  await withApi(async (t) => {
    await withDiscovery(t, { fields: ["serviceSubnets"] }, async (run) => {
      await run.discovery.settled;
      assertEquals(run.info.current.serviceSubnets, [TEST_SERVICE_CIDR]);
      assert(run.logs.includes(`manager: service subnets now ${TEST_SERVICE_CIDR} (probe)`));
      assert(run.logs.some((line) => line.includes("probing the service range")));
      // Dry runs only: no probe Service was left behind.
      assertEquals(
        t.api.store.get({ resource: "services", namespace: "default", name: "vif-cidr-probe" }),
        undefined,
      );
      assert(t.logs.some((line) => line.includes("dryRun=All")), t.logs.join("\n"));
    });
  }, deny("servicecidrs"));
});

Deno.test("startDiscovery() probes the service range when no ServiceCIDR is listed", async () => {
  await withApi(async (t) => {
    t.api.store.delete({ resource: "servicecidrs", name: "kubernetes" });
    await withDiscovery(t, { fields: ["serviceSubnets"] }, async (run) => {
      await run.discovery.settled;
      assertEquals(run.info.current.serviceSubnets, [TEST_SERVICE_CIDR]);
      assert(run.logs.includes(`manager: service subnets now ${TEST_SERVICE_CIDR} (probe)`));

      // A ServiceCIDR that appears later wins.
      t.api.store.create({
        apiVersion: "networking.k8s.io/v1",
        kind: "ServiceCIDR",
        metadata: { name: "extra" },
        spec: { cidrs: ["198.18.192.0/20"] },
      });
      await until(
        run.info,
        (i) => i.serviceSubnets.join() === "198.18.192.0/20",
        "the ServiceCIDR",
      );
      assert(run.logs.includes("manager: service subnets now 198.18.192.0/20 (servicecidrs)"));
    });
  });
});

Deno.test("startDiscovery() covers the ClusterIPs when neither ServiceCIDRs nor the probe answer", async () => {
  await withApi(async (t) => {
    t.api.store.create({
      apiVersion: "v1",
      kind: "Service",
      metadata: { name: "web", namespace: "default" },
      spec: { clusterIP: "198.19.1.20", ports: [{ port: 80, protocol: "TCP" }] },
    });
    await withDiscovery(t, { fields: ["serviceSubnets"] }, async (run) => {
      await run.discovery.settled;
      // default/kubernetes holds 198.19.0.1; web 198.19.1.20.
      assertEquals(run.info.current.serviceSubnets, ["198.19.0.0/23"]);
      assert(run.logs.includes("manager: service subnets now 198.19.0.0/23 (services)"));
      assert(run.logs.some((line) => line.includes("the probe found no service range")));
    });
  }, {
    authorize: (a) =>
      a.resource !== "servicecidrs" && !(a.resource === "services" && a.verb === "create"),
  });
});

Deno.test("startDiscovery() keeps serving what it has while the API is away, then lists again", async () => {
  // A short history, so the watch cannot resume after the restart: 410 Gone, list again.
  const tls = await makeTestTls({ extraSans: ["IP:127.0.0.1"] });
  const dir = await Deno.makeTempDir({ prefix: "vif-discovery-" });
  const store = new Store({ serviceCidr: TEST_SERVICE_CIDR, historySize: 4 });
  const apiLogs: string[] = [];
  const start = (port = 0) =>
    startApiServer({
      hostname: "127.0.0.1",
      port,
      tls: { cert: tls.certPem, key: tls.keyPem },
      tokens: { [ADMIN_TOKEN]: { user: "admin", groups: ["system:masters"] } },
      serviceCidr: TEST_SERVICE_CIDR,
      store,
      log: (line) => apiLogs.push(line),
    });
  let api = await start();
  try {
    store.create(node("node-a", "198.18.0.0/24"));
    const t = { api, tls, dir, logs: apiLogs };
    await withDiscovery(t, { podIp: "198.18.0.3", fields: ["podSubnets"] }, async (run) => {
      await until(run.info, (i) => i.podSubnets.join() === "198.18.0.0/24", "the first node");
      await api.close();
      for (let i = 1; i <= 6; i++) store.create(node(`node-${i}`, `198.18.${i}.0/24`));
      await run.logged(/^manager: warning: discovery: the watch of nodes failed: /);
      assertEquals(run.info.current.podSubnets, ["198.18.0.0/24"], "what it had");
      api = await start(t.api.port);
      const info = await until(
        run.info,
        (i) => i.podSubnets.length === 7,
        "the nodes added meanwhile",
      );
      assertEquals(info.podSubnets[6], "198.18.6.0/24");
      // The watch could not resume (410 Gone): nodes were listed again.
      assertEquals(apiLogs.filter((line) => line.includes(" GET /api/v1/nodes?limit=")).length, 2);
      assert(apiLogs.some((line) => / GET \/api\/v1\/nodes\?.*watch=true.* 200$/.test(line)));
    });
  } finally {
    await api.close();
    await tls.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("serve() discovers what no flag gives and keeps the flags' values", async () => {
  await withApi(async (t) => {
    t.api.store.create(node("node-a", "198.18.0.0/24"));
    t.api.store.create(namespace("shop"));
    const kubeconfig = await writeKubeconfig(t, ADMIN_TOKEN);
    const logs: string[] = [];
    const manager = await serve({
      tls: { certPem: t.tls.certPem, keyPem: t.tls.keyPem, caPem: t.tls.caPem },
      listen: "127.0.0.1:0",
      podSubnets: ["198.18.128.0/20"],
      podIp: "198.18.0.5",
      resolvConfPath: `${t.dir}/missing-resolv.conf`,
      pingProgram: null,
      sweepIntervalMs: 0,
      log: (line) => logs.push(line),
      discovery: { kubeconfig, retry: { initialMs: 20, maxMs: 200 } },
    });
    try {
      const info = await until(
        manager.clusterInfo,
        (i) => i.serviceSubnets.length > 0 && i.namespaces.includes("shop"),
        "discovered services and namespaces",
      );
      assertEquals(info.podSubnets, ["198.18.128.0/20"], "the flag wins");
      assertEquals(info.serviceSubnets, [TEST_SERVICE_CIDR]);
      assert(logs.some((line) => line.startsWith("manager: discovery: ")), logs.join("\n"));
      assert(!logs.some((line) => line.includes("pod subnets now")), logs.join("\n"));
    } finally {
      await manager.close();
    }
  });
});

Deno.test("serve() serves before the API answers, warns, and announces the cluster when it does", async () => {
  const tls = await makeTestTls({ extraSans: ["IP:127.0.0.1"] });
  const dir = await Deno.makeTempDir({ prefix: "vif-discovery-" });
  const spare = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = spare.addr.port;
  spare.close();
  const kubeconfig = `${dir}/kubeconfig`;
  await Deno.writeTextFile(
    kubeconfig,
    [
      "apiVersion: v1",
      "kind: Config",
      "clusters:",
      "- name: sim",
      "  cluster:",
      `    server: https://127.0.0.1:${port}`,
      `    certificate-authority: ${tls.caCertPath}`,
      "users:",
      "- name: admin",
      "  user:",
      `    token: ${ADMIN_TOKEN}`,
      "contexts:",
      "- name: sim",
      "  context: {cluster: sim, user: admin}",
      "current-context: sim",
      "",
    ].join("\n"),
  );
  const logs: string[] = [];
  const manager = await serve({
    tls: { certPem: tls.certPem, keyPem: tls.keyPem, caPem: tls.caPem },
    listen: "127.0.0.1:0",
    podIp: "198.18.0.5",
    resolvConfPath: `${dir}/missing-resolv.conf`,
    pingProgram: null,
    sweepIntervalMs: 0,
    log: (line) => logs.push(line),
    discovery: { kubeconfig, startWaitMs: 100, retry: { initialMs: 20, maxMs: 100 } },
  });
  let api: Awaited<ReturnType<typeof startApiServer>> | undefined;
  try {
    assert(
      logs.some((line) =>
        /^manager: warning: discovery has no answer from https:\/\/127\.0\.0\.1:\d+ after 100 ms/
          .test(line)
      ),
      logs.join("\n"),
    );
    assert(logs.some((line) => line.includes("no pod or service subnets yet")));
    assert(
      logs.some((line) => line.startsWith("manager: warning: discovery: cannot list nodes: ")),
    );
    assertEquals(manager.clusterInfo.current.podSubnets, []);

    const store = new Store({ serviceCidr: TEST_SERVICE_CIDR });
    store.create(node("node-a", "198.18.0.0/24"));
    api = await startApiServer({
      hostname: "127.0.0.1",
      port,
      tls: { cert: tls.certPem, key: tls.keyPem },
      tokens: { [ADMIN_TOKEN]: { user: "admin", groups: ["system:masters"] } },
      serviceCidr: TEST_SERVICE_CIDR,
      store,
    });
    const info = await until(
      manager.clusterInfo,
      (i) => i.podSubnets.length > 0 && i.serviceSubnets.length > 0,
      "the subnets",
    );
    assertEquals(info.podSubnets, ["198.18.0.0/24"]);
    assertEquals(info.serviceSubnets, [TEST_SERVICE_CIDR]);
    assert(logs.includes("manager: discovery: listed nodes again"), logs.join("\n"));
  } finally {
    await manager.close();
    await api?.close();
    await tls.cleanup();
    await Deno.remove(dir, { recursive: true });
  }
});
