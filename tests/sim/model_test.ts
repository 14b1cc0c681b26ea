import { assert, assertEquals, assertMatch, assertThrows } from "../_assert.ts";
import {
  allocate,
  computeEndpoints,
  inCidr,
  normalizePort,
  type PodInfo,
  selects,
  type ServiceInfo,
} from "./_model.ts";
import { kubeProxyRuleset } from "./_nft.ts";
import { dnsmasqConfig, dnsmasqHosts, GENERATION_NAME, generationIp } from "./_dns.ts";

function pod(name: string, ip: string, extra: Partial<PodInfo> = {}): PodInfo {
  return {
    namespace: "default",
    name,
    ip,
    node: "node1",
    labels: { app: "db" },
    ports: [{ name: "postgres", containerPort: 5432 }],
    ready: true,
    ...extra,
  };
}

const headless: ServiceInfo = {
  namespace: "default",
  name: "db",
  clusterIP: "None",
  selector: { app: "db" },
  ports: [normalizePort({ name: "postgres", port: 5432, targetPort: "postgres" })],
};

const web: ServiceInfo = {
  namespace: "default",
  name: "web",
  clusterIP: "198.19.0.11",
  selector: { app: "web" },
  ports: [normalizePort({ name: "http", port: 80, targetPort: 8080 })],
};

Deno.test("selects() needs every label and selects nothing with an empty selector", () => {
  assert(selects({ app: "web" }, { app: "web", tier: "x" }));
  assert(!selects({ app: "web", tier: "y" }, { app: "web", tier: "x" }));
  assert(!selects({}, { app: "web" }));
});

Deno.test("computeEndpoints() picks ready pods of the namespace that match, sorted by IP", () => {
  const pods = [
    pod("db-1", "198.18.0.10", { hostname: "db-1", subdomain: "db" }),
    pod("db-0", "198.18.0.9", { hostname: "db-0", subdomain: "db" }),
    pod("db-2", "198.18.0.11", { ready: false }),
    pod("db-x", "198.18.0.12", { namespace: "other" }),
    pod("web", "198.18.0.13", { labels: { app: "web" } }),
    pod("db-3", "198.18.0.14", { hostname: "db-3", subdomain: "elsewhere", ports: [] }),
  ];
  assertEquals(computeEndpoints(headless, pods), [
    { ip: "198.18.0.9", pod: "db-0", node: "node1", hostname: "db-0", ports: { postgres: 5432 } },
    { ip: "198.18.0.10", pod: "db-1", node: "node1", hostname: "db-1", ports: { postgres: 5432 } },
    // No container port named "postgres": an address without that port; no hostname either.
    { ip: "198.18.0.14", pod: "db-3", node: "node1", ports: {} },
  ]);
});

Deno.test("computeEndpoints() returns the manual addresses of a service without selector", () => {
  const svc: ServiceInfo = {
    namespace: "default",
    name: "kubernetes",
    clusterIP: "198.19.0.1",
    ports: [normalizePort({ name: "https", port: 443, targetPort: 6443 })],
    manualEndpoints: ["198.19.200.1"],
  };
  assertEquals(computeEndpoints(svc, []), [{ ip: "198.19.200.1", ports: { https: 6443 } }]);
});

Deno.test("allocate() goes round-robin after the last offset and skips used addresses", () => {
  const used = new Set(["198.18.0.3"]);
  assertEquals(allocate("198.18.0.0/24", { range: [2, 254], used, last: 1 }), {
    ip: "198.18.0.2",
    offset: 2,
  });
  assertEquals(allocate("198.18.0.0/24", { range: [2, 254], used, last: 2 }), {
    ip: "198.18.0.4",
    offset: 4,
  });
  assertEquals(
    allocate("198.18.0.0/24", { range: [2, 254], used: new Set(), last: 254 }).ip,
    "198.18.0.2",
  );
  const full = new Set(["198.18.0.2", "198.18.0.3"]);
  assertThrows(() => allocate("198.18.0.0/24", { range: [2, 3], used: full, last: 2 }), RangeError);
});

Deno.test("inCidr() tells whether an address lies in a block", () => {
  assert(inCidr("198.19.63.255", "198.19.0.0/18"));
  assert(!inCidr("198.19.64.0", "198.19.0.0/18"));
});

Deno.test("kubeProxyRuleset() balances with numgen over endpoints and skips headless services", () => {
  const rules = kubeProxyRuleset([
    {
      svc: web,
      endpoints: [
        { ip: "198.18.0.3", pod: "web-1", ports: { http: 8080 } },
        { ip: "198.18.1.2", pod: "web-2", ports: { http: 8080 } },
      ],
    },
    { svc: headless, endpoints: [{ ip: "198.18.0.9", ports: { postgres: 5432 } }] },
  ], { table: "vif_sim", podCidr: "198.18.0.0/16", lanIf: "eth0" });
  assertMatch(rules, /^table ip vif_sim\ndelete table ip vif_sim\n/);
  assertMatch(rules, /elements = \{ 198\.19\.0\.11 \. tcp \. 80 : goto svc_0 \}/);
  assertMatch(rules, /numgen random mod 2 vmap \{ 0 : goto svc_0_ep0, 1 : goto svc_0_ep1 \}/);
  assertMatch(rules, /meta l4proto tcp dnat to 198\.18\.1\.2:8080/);
  assert(!rules.includes("198.18.0.9"), "a headless service got rules");
});

Deno.test("kubeProxyRuleset() leaves a service without endpoints to the reject rule", () => {
  const rules = kubeProxyRuleset([{ svc: web, endpoints: [] }], {
    table: "t",
    podCidr: "198.18.0.0/16",
    lanIf: "eth0",
  });
  assertMatch(rules, /set cluster-ips \{ type ipv4_addr; elements = \{ 198\.19\.0\.11 \}; \}/);
  assertMatch(
    rules,
    /map service-ips \{ type ipv4_addr \. inet_proto \. inet_service : verdict; \}/,
  );
  assertMatch(rules, /ip daddr @cluster-ips reject/);
});

Deno.test("dnsmasqConfig() writes SRV per named port, per endpoint for headless services", () => {
  const conf = dnsmasqConfig([
    { svc: web, endpoints: [] },
    {
      svc: headless,
      endpoints: [
        { ip: "198.18.0.9", hostname: "db-0", ports: { postgres: 5432 } },
        { ip: "198.18.0.10", ports: { postgres: 5432 } },
      ],
    },
  ], {
    domain: "cluster.local",
    podCidr: "198.18.0.0/16",
    serviceCidr: "198.19.0.0/18",
    hostsDir: "/x",
    upstream: "198.19.200.53",
  });
  const srv = conf.split("\n").filter((l) => l.startsWith("srv-host="));
  assertEquals(srv, [
    "srv-host=_http._tcp.web.default.svc.cluster.local,web.default.svc.cluster.local,80,0,100",
    "srv-host=_postgres._tcp.db.default.svc.cluster.local,db-0.db.default.svc.cluster.local,5432,0,50",
    "srv-host=_postgres._tcp.db.default.svc.cluster.local,198-18-0-10.db.default.svc.cluster.local,5432,0,50",
  ]);
  for (
    const line of [
      "no-resolv",
      "local=/cluster.local/",
      "rev-server=198.19.0.0/18",
      "server=198.19.200.53",
    ]
  ) {
    assert(conf.split("\n").includes(line), `missing "${line}"`);
  }
});

Deno.test("dnsmasqHosts() puts the endpoint name first so that it is the PTR answer", () => {
  const hosts = dnsmasqHosts([
    { svc: headless, endpoints: [{ ip: "198.18.0.9", hostname: "db-0", ports: {} }] },
    { svc: web, endpoints: [] },
  ], {
    pods: [pod("db-0", "198.18.0.9"), pod("lonely", "198.18.0.20")],
    domain: "cluster.local",
    generation: 7,
  });
  assertEquals(hosts.trim().split("\n"), [
    "198.18.0.9 db-0.db.default.svc.cluster.local",
    "198.18.0.9 198-18-0-9.default.pod.cluster.local",
    "198.18.0.20 198-18-0-20.default.pod.cluster.local",
    "198.18.0.9 db.default.svc.cluster.local",
    "198.19.0.11 web.default.svc.cluster.local",
    `${generationIp(7)} ${GENERATION_NAME}`,
  ]);
  assertEquals(generationIp(7), "240.0.0.7");
});
