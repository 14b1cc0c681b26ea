import { assertEquals } from "../../tests/_assert.ts";
import { formatListing, table } from "./list.ts";

Deno.test("table() aligns columns and leaves the last one unpadded", () => {
  assertEquals(table([["NAME", "IP"], ["web", "198.19.1.1"], ["database", "None"]]), [
    "NAME      IP",
    "web       198.19.1.1",
    "database  None",
  ]);
});

Deno.test("formatListing() shows services with ports and workloads with pods", () => {
  const lines = formatListing({
    namespace: "shop",
    services: [{
      name: "web",
      type: "ClusterIP",
      clusterIP: "198.19.1.1",
      ports: [{ name: "http", port: 80, protocol: "TCP" }, { port: 53, protocol: "UDP" }],
      ready: 2,
    }],
    workloads: [{
      kind: "Deployment",
      name: "web",
      desired: 3,
      pods: [
        { name: "web-a", ip: "198.18.0.3", ready: true },
        { name: "web-b", ip: "198.18.0.4", ready: true },
        { name: "web-c", ready: false },
      ],
    }],
  });
  assertEquals(lines, [
    'Services in namespace "shop":',
    "  NAME  TYPE       CLUSTER-IP  PORTS                  READY",
    "  web   ClusterIP  198.19.1.1  80/TCP (http), 53/UDP  2",
    "Workloads:",
    "  NAME  KIND        READY  PODS",
    "  web   Deployment  2/3    web-a 198.18.0.3, web-b 198.18.0.4, web-c (no IP)",
  ]);
  assertEquals(formatListing({ namespace: "x", services: [], workloads: [] }), [
    'No services in namespace "x".',
  ]);
});
