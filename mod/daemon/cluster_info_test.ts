import { ClusterInfoSchema, create } from "../rpc/service.ts";
import { assertEquals } from "../../tests/_assert.ts";
import { checkClusterInfo, MAX_NAMESPACES, MAX_SUBNETS } from "./cluster_info.ts";

Deno.test("checkClusterInfo() passes a good announcement through", () => {
  const sent = create(ClusterInfoSchema, {
    podSubnets: ["198.18.0.0/24"],
    serviceSubnets: ["198.19.0.0/18"],
    clusterDomain: "Cluster.Local.",
    dnsServer: "198.19.0.10",
    managerPodIp: "198.18.0.9",
    searchPath: ["vif-system.svc.cluster.local", "svc.cluster.local"],
    namespaces: ["default", "kube-system"],
  });
  const { info, dropped, unusable } = checkClusterInfo(sent);
  assertEquals([dropped, unusable], [[], undefined]);
  assertEquals(info.clusterDomain, "cluster.local");
  assertEquals(
    [info.podSubnets, info.serviceSubnets, info.dnsServer, info.namespaces],
    [["198.18.0.0/24"], ["198.19.0.0/18"], "198.19.0.10", ["default", "kube-system"]],
  );
});

Deno.test("checkClusterInfo() refuses a cluster domain that is not a DNS name", () => {
  for (const domain of ["cluster.local\nnameserver 203.0.113.1", "a b", "x".repeat(300)]) {
    const { unusable } = checkClusterInfo(create(ClusterInfoSchema, { clusterDomain: domain }));
    assertEquals(unusable?.startsWith("the traffic-manager announced the cluster domain "), true);
    assertEquals(unusable?.endsWith(", which is not a DNS name"), true);
    assertEquals(unusable?.includes("\n"), false, "the log line stays one line");
  }
});

Deno.test("checkClusterInfo() drops bad namespaces, a bad DNS server, and lists past their bounds", () => {
  const { info, dropped, unusable } = checkClusterInfo(create(ClusterInfoSchema, {
    clusterDomain: "cluster.local",
    podSubnets: Array.from({ length: MAX_SUBNETS + 10 }, (_, i) => `198.18.${i % 256}.0/24`),
    dnsServer: "198.19.0.10\noptions",
    namespaces: [
      "default",
      "Bad",
      "x\nnameserver 203.0.113.1",
      ...Array.from({ length: MAX_NAMESPACES }, (_, i) => `ns-${i}`),
    ],
    searchPath: ["svc.cluster.local", "bad domain"],
  }));
  assertEquals(unusable, undefined);
  assertEquals(info.podSubnets.length + info.serviceSubnets.length, MAX_SUBNETS);
  assertEquals(info.namespaces.length, MAX_NAMESPACES);
  assertEquals(info.namespaces[0], "default");
  assertEquals(info.dnsServer, "");
  assertEquals(info.searchPath, ["svc.cluster.local"]);
  assertEquals(dropped, [
    "2 namespace names that are not DNS labels",
    `namespaces past the first ${MAX_NAMESPACES}`,
    `subnets past the first ${MAX_SUBNETS} (of ${MAX_SUBNETS + 10})`,
    'the DNS server "198.19.0.10\\noptions", not an address',
    "search domains that are not DNS names",
  ]);
});
