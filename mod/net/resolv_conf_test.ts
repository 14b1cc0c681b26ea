import { assertEquals } from "../../tests/_assert.ts";
import { clusterDomainFromSearch, parseResolvConf } from "./resolv_conf.ts";

Deno.test("parseResolvConf() reads a kubelet-written resolv.conf", () => {
  const text = [
    "# written by the kubelet",
    "search vif-system.svc.cluster.local svc.cluster.local cluster.local",
    "nameserver 198.18.128.10",
    "nameserver 198.18.128.11 ; a comment",
    "options ndots:5",
    "",
  ].join("\n");
  assertEquals(parseResolvConf(text), {
    nameservers: ["198.18.128.10", "198.18.128.11"],
    search: ["vif-system.svc.cluster.local", "svc.cluster.local", "cluster.local"],
  });
});

Deno.test("parseResolvConf() keeps the last search or domain line, and survives junk", () => {
  assertEquals(parseResolvConf("domain a.example\nsearch b.example. c.example\n"), {
    nameservers: [],
    search: ["b.example", "c.example"],
  });
  assertEquals(parseResolvConf("search x\ndomain y\nnameserver\n\tnameserver\t::1\ngarbage"), {
    nameservers: ["::1"],
    search: ["y"],
  });
  assertEquals(parseResolvConf(""), { nameservers: [], search: [] });
});

Deno.test("clusterDomainFromSearch() finds the domain after <ns>.svc.", () => {
  assertEquals(
    clusterDomainFromSearch(["shop.svc.cluster.local", "svc.cluster.local"]),
    "cluster.local",
  );
  assertEquals(
    clusterDomainFromSearch(["corp.example", "vif-system.svc.k8s.Corp.Example"]),
    "k8s.corp.example",
  );
  assertEquals(clusterDomainFromSearch(["svc.cluster.local", "cluster.local"]), undefined);
  assertEquals(clusterDomainFromSearch([]), undefined);
});
