import { assertEquals } from "../../tests/_assert.ts";
import { parseAddress } from "../net/address.ts";
import { DnsInterceptor, type DnsRecord, DnsType, encodeDnsMessage } from "../net/dns.ts";
import { clusterName, DnsNames } from "./dns_names.ts";

function answer(name: string, records: Array<[type: number, value: string]>, rcode = 0) {
  const labels = name.split(".");
  const rr = (type: number, value: string): DnsRecord => ({
    name: labels,
    type,
    class: 1,
    ttl: 30,
    data: type === DnsType.CNAME ? [value.split(".")] : [parseAddress(value)!],
  });
  return encodeDnsMessage({
    id: 7,
    flags: 0x8180 | rcode,
    questions: [{ name: labels, type: DnsType.A, class: 1 }],
    answers: records.map(([t, v]) => rr(t, v)),
    authorities: [],
    additionals: [],
  });
}

const interceptor = new DnsInterceptor({
  clusterDomain: "cluster.local",
  namespace: "default",
  namespaces: ["default", "other"],
  resolveCluster: () => Promise.reject(new Error("offline")),
});

Deno.test("DnsNames remembers the name each A and AAAA address was asked as", () => {
  const names = new DnsNames({ route: (n) => interceptor.route(n) });
  names.record(answer("web", [[DnsType.A, "198.19.0.10"]]));
  names.record(answer("Web.Other", [[DnsType.A, "198.19.0.11"], [DnsType.A, "198.19.0.12"]]));
  names.record(answer("db-0.db.default.svc.cluster.local", [[DnsType.AAAA, "2001:2::5"]]));
  names.record(answer("example.com", [[DnsType.CNAME, "www.example.com"], [DnsType.A, "1.2.3.4"]]));
  assertEquals(names.lookup("198.19.0.10"), "web.default");
  assertEquals(names.lookup("198.19.0.11"), "web.other");
  assertEquals(names.lookup("198.19.0.12"), "web.other");
  assertEquals(names.lookup("2001:2:0::5"), "db-0.db.default");
  assertEquals(names.lookup("1.2.3.4"), "example.com");
  assertEquals(names.lookup("198.19.0.99"), undefined);
  assertEquals(names.lookup("not an address"), undefined);
  // The newest answer wins.
  names.record(answer("web.other", [[DnsType.A, "198.19.0.10"]]));
  assertEquals(names.lookup("198.19.0.10"), "web.other");
  assertEquals(names.size, 5);
});

Deno.test("DnsNames ignores failures, queries, odd names, and keeps at most max addresses", () => {
  const names = new DnsNames({ max: 2 });
  names.record(answer("web", [[DnsType.A, "198.19.0.10"]], 3)); // NXDOMAIN
  const query = answer("web", [[DnsType.A, "198.19.0.10"]]);
  query[2]! &= 0x7f;
  names.record(query);
  names.record(answer("a\x1b[31m", [[DnsType.A, "198.19.0.10"]])); // an escape on a terminal
  assertEquals(names.size, 0);
  for (let i = 1; i <= 3; i++) names.record(answer(`n${i}`, [[DnsType.A, `198.19.0.${i}`]]));
  assertEquals(names.size, 2);
  assertEquals(
    [1, 2, 3].map((i) => names.lookup(`198.19.0.${i}`)),
    [undefined, "n2", "n3"],
  );
  // Without a route, names are shown as asked.
  assertEquals(names.lookup("198.19.0.3"), "n3");
});

Deno.test("DnsNames.record() never throws and stays inside the bytes on mangled answers", () => {
  const names = new DnsNames();
  const good = answer("web.default", [[DnsType.A, "198.19.0.10"], [DnsType.AAAA, "2001:2::1"]]);
  let seed = 3;
  const next = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 16;
  for (let i = 0; i < 5000; i++) {
    const m = good.slice(0, next() % (good.length + 1));
    for (let k = next() % 4; k > 0; k--) m[next() % Math.max(1, m.length)] = next() & 0xff;
    names.record(m);
  }
  assertEquals(names.size <= 4096, true);
});

Deno.test("clusterName() shortens cluster names to name.namespace and leaves others", () => {
  const route = (n: string) => interceptor.route(n);
  assertEquals(clusterName("web", route("web")), "web.default");
  assertEquals(clusterName("web.other.svc", route("web.other.svc")), "web.other");
  assertEquals(clusterName("example.com", route("example.com")), "example.com");
  assertEquals(clusterName("x", undefined), "x");
});
