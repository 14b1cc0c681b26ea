import { assertEquals } from "../tests/_assert.ts";
import { ClusterInfoSource, toClusterInfoMessage } from "./cluster_info.ts";

Deno.test("ClusterInfoSource tells subscribers of changes only, and stops when asked", () => {
  const source = new ClusterInfoSource({
    podSubnets: ["198.18.64.0/18"],
    clusterDomain: "Cluster.Local.",
  });
  assertEquals(source.current.clusterDomain, "cluster.local");
  const seen: string[][] = [];
  const stop = source.subscribe((info) => seen.push(info.serviceSubnets));
  assertEquals(source.set({ serviceSubnets: ["198.18.128.0/20"] }), true);
  assertEquals(source.set({ serviceSubnets: ["198.18.128.0/20"] }), false);
  assertEquals(source.set({ clusterDomain: "cluster.local." }), false); // Same once normalized.
  stop();
  source.set({ serviceSubnets: [] });
  assertEquals(seen, [["198.18.128.0/20"]]);
  assertEquals(source.subscribers, 0);
});

Deno.test("ClusterInfoSource hands out copies", () => {
  const source = new ClusterInfoSource({ namespaces: ["default"] });
  source.current.namespaces.push("mutated");
  assertEquals(source.current.namespaces, ["default"]);
});

Deno.test("toClusterInfoMessage() carries every field", () => {
  const message = toClusterInfoMessage(
    new ClusterInfoSource({
      podSubnets: ["198.18.64.0/18"],
      serviceSubnets: ["198.18.128.0/20"],
      clusterDomain: "corp.example",
      dnsServer: "198.18.128.10",
      managerPodIp: "198.18.64.7",
      searchPath: ["vif-system.svc.corp.example"],
      namespaces: ["default", "shop"],
    }).current,
  );
  assertEquals(
    [message.podSubnets, message.serviceSubnets, message.clusterDomain, message.dnsServer],
    [["198.18.64.0/18"], ["198.18.128.0/20"], "corp.example", "198.18.128.10"],
  );
  assertEquals([message.managerPodIp, message.searchPath, message.namespaces], [
    "198.18.64.7",
    ["vif-system.svc.corp.example"],
    ["default", "shop"],
  ]);
});
