// Tests of the DNS interceptor and its wire codec. Fixtures are built and
// answers read with `dns-packet` (an independent codec, given node Buffers
// here, where tests may use node:buffer), so the codec in dns.ts is checked
// against someone else's reading of RFC 1035.

import { Buffer } from "node:buffer";
import * as dp from "dns-packet";
import { assert, assertEquals } from "../../tests/_assert.ts";
import { Cidr } from "./address.ts";
import {
  decodeDnsMessage,
  DnsInterceptor,
  type DnsInterceptorOptions,
  DnsRcode,
  encodeDnsMessage,
} from "./dns.ts";

// --- helpers -------------------------------------------------------------------

// deno-lint-ignore no-explicit-any
type Any = any;

const NX = 3;
const SOA = {
  name: "cluster.local",
  type: "SOA",
  ttl: 30,
  data: {
    mname: "ns.dns.cluster.local",
    rname: "hostmaster.cluster.local",
    serial: 1,
    refresh: 7200,
    retry: 1800,
    expire: 86400,
    minimum: 30,
  },
};

interface Reply {
  rcode?: number;
  answers?: Any[];
  authorities?: Any[];
  additionals?: Any[];
  tc?: boolean;
}

/** The records of the simulated cluster's DNS server (CoreDNS-like: no search paths). */
function clusterZone(name: string, type: string): Reply {
  const a = (n: string, ip: string, ttl = 5) => ({ name: n, type: "A", ttl, data: ip });
  switch (`${name.toLowerCase()} ${type}`) {
    case "web.default.svc.cluster.local A":
      return { answers: [a(name, "198.18.10.5")] };
    case "web.other.svc.cluster.local A":
      return { answers: [a(name, "198.18.10.6")] };
    case "pod-0.web-headless.other.svc.cluster.local A":
      return { answers: [a(name, "198.18.20.7")] };
    case "ext.default.svc.cluster.local A":
      return {
        answers: [
          { name, type: "CNAME", ttl: 5, data: "outside.example" },
          a("outside.example", "198.18.5.5", 60),
        ],
      };
    case "chain.default.svc.cluster.local A":
      return {
        answers: [
          { name, type: "CNAME", ttl: 5, data: "web.default.svc.cluster.local" },
          a("web.default.svc.cluster.local", "198.18.10.5"),
        ],
      };
    case "_http._tcp.web.default.svc.cluster.local SRV":
      return {
        answers: [{
          name,
          type: "SRV",
          ttl: 5,
          data: { priority: 0, weight: 100, port: 80, target: "web.default.svc.cluster.local" },
        }],
        additionals: [a("web.default.svc.cluster.local", "198.18.10.5")],
      };
    case "5.10.18.198.in-addr.arpa PTR":
      return { answers: [{ name, type: "PTR", ttl: 5, data: "web.default.svc.cluster.local" }] };
    case "web.default.svc.cluster.local AAAA":
      return { authorities: [SOA] }; // NODATA
    case "big.default.svc.cluster.local A":
      return {
        answers: Array.from({ length: 60 }, (_, i) => a(name, `198.18.11.${i + 1}`)),
      };
    case "nosoa.default.svc.cluster.local A":
      return { rcode: NX };
    default:
      return { rcode: NX, authorities: [SOA] };
  }
}

/** A fake `resolveCluster` over `zone`, recording what it was asked. */
function fakeResolver(zone: (name: string, type: string) => Reply = clusterZone) {
  const asked: string[] = [];
  const resolve = (query: Uint8Array): Promise<Uint8Array> => {
    const m = dp.decode(Buffer.from(query));
    const q = m.questions[0];
    asked.push(`${q.name} ${q.type}`);
    return Promise.resolve(respond(m, zone(q.name, q.type)));
  };
  return { resolve, asked };
}

function respond(m: Any, r: Reply): Uint8Array {
  return dp.encode({
    type: "response",
    id: m.id,
    flags: dp.RECURSION_DESIRED | dp.RECURSION_AVAILABLE | dp.AUTHORITATIVE_ANSWER |
      (r.tc ? dp.TRUNCATED_RESPONSE : 0) | (r.rcode ?? 0),
    questions: m.questions,
    answers: r.answers ?? [],
    authorities: r.authorities ?? [],
    additionals: r.additionals ?? [],
  });
}

function query(name: string, type = "A", options: { id?: number; edns?: number } = {}) {
  return dp.encode({
    type: "query",
    id: options.id ?? 0x1234,
    flags: dp.RECURSION_DESIRED,
    questions: [{ name, type, class: "IN" }],
    additionals: options.edns === undefined
      ? []
      : [{ type: "OPT", name: ".", udpPayloadSize: options.edns, flags: 0, options: [] }],
  }) as Uint8Array;
}

function read(bytes: Uint8Array): Any {
  return dp.decode(Buffer.from(bytes));
}

/** A clock the test moves. */
function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

function interceptor(overrides: Partial<DnsInterceptorOptions> = {}) {
  const cluster = fakeResolver();
  const upstreamAsked: string[] = [];
  const resolveUpstream = (q: Uint8Array) => {
    const m = dp.decode(Buffer.from(q));
    upstreamAsked.push(`${m.questions[0].name} ${m.questions[0].type}`);
    return Promise.resolve(respond(m, {
      answers: [{ name: m.questions[0].name, type: "A", ttl: 300, data: "198.18.99.1" }],
    }));
  };
  const t = clock();
  const dns = new DnsInterceptor({
    clusterDomain: "cluster.local",
    namespace: "default",
    namespaces: ["default", "other"],
    serviceSubnets: [Cidr.parse("198.18.10.0/24"), Cidr.parse("2001:2:0:10::/64")],
    podSubnets: [Cidr.parse("198.18.20.0/24")],
    include: ["corp.internal"],
    exclude: ["skip.cluster.local"],
    resolveCluster: cluster.resolve,
    resolveUpstream,
    now: t.now,
    ...overrides,
  });
  return { dns, cluster, upstreamAsked, clock: t };
}

/** A seeded PRNG (xorshift32), so a failing fuzz case can be replayed. */
function prng(seed: number) {
  let s = seed >>> 0 || 1;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0x1_0000_0000;
  };
}

// --- the codec -----------------------------------------------------------------

Deno.test("decodeDnsMessage() reads an annotated query byte by byte", () => {
  const bytes = new Uint8Array([
    0x12,
    0x34, // id
    0x01,
    0x00, // flags: RD
    0x00,
    0x01, // QDCOUNT 1
    0x00,
    0x00, // ANCOUNT
    0x00,
    0x00, // NSCOUNT
    0x00,
    0x01, // ARCOUNT 1 (OPT)
    0x03,
    0x77,
    0x65,
    0x62, // "web"
    0x05,
    0x6f,
    0x74,
    0x68,
    0x65,
    0x72, // "other"
    0x00, // root
    0x00,
    0x1c, // QTYPE AAAA
    0x00,
    0x01, // QCLASS IN
    0x00, // OPT owner: root
    0x00,
    0x29, // TYPE OPT
    0x04,
    0xd0, // CLASS: UDP payload 1232
    0x00,
    0x00,
    0x80,
    0x00, // TTL: ext rcode 0, version 0, DO set
    0x00,
    0x00, // RDLENGTH 0
  ]);
  assertEquals(decodeDnsMessage(bytes), {
    id: 0x1234,
    flags: 0x0100,
    questions: [{ name: ["web", "other"], type: 28, class: 1 }],
    answers: [],
    authorities: [],
    additionals: [],
    edns: { udpSize: 1232, extRcode: 0, version: 0, flags: 0x8000, options: new Uint8Array(0) },
  });
  assertEquals(encodeDnsMessage(decodeDnsMessage(bytes)!), bytes);
});

Deno.test("decodeDnsMessage() and encodeDnsMessage() agree with dns-packet on every record type", () => {
  const records = [
    { name: "a.example", type: "A", ttl: 1, data: "198.18.0.1" },
    { name: "a.example", type: "AAAA", ttl: 2, data: "2001:2::1" },
    { name: "c.example", type: "CNAME", ttl: 3, data: "a.example" },
    { name: "a.example", type: "MX", ttl: 4, data: { preference: 10, exchange: "mx.a.example" } },
    { name: "a.example", type: "TXT", ttl: 5, data: ["hello", "world"] },
    {
      name: "_x._tcp.a.example",
      type: "SRV",
      ttl: 6,
      data: { priority: 1, weight: 2, port: 3, target: "a.example" },
    },
    { name: "1.0.18.198.in-addr.arpa", type: "PTR", ttl: 7, data: "a.example" },
    { name: "example", type: "NS", ttl: 8, data: "ns.example" },
    SOA,
  ];
  const original = dp.encode({
    type: "response",
    id: 77,
    flags: dp.AUTHORITATIVE_ANSWER | dp.RECURSION_DESIRED,
    questions: [{ name: "a.example", type: "A" }],
    answers: records,
    authorities: [SOA],
    additionals: [{ type: "OPT", name: ".", udpPayloadSize: 4096, flags: 0, options: [] }],
  });
  const mine = decodeDnsMessage(original);
  assert(mine, "decodes");
  assertEquals(mine.answers.length, records.length);
  assertEquals(mine.answers.map((r) => r.ttl), [1, 2, 3, 4, 5, 6, 7, 8, 30]);
  assertEquals(mine.answers[2]!.data, [["a", "example"]]);
  const again = encodeDnsMessage(mine);
  assert(again.length < original.length, "names are compressed");
  const a = read(again), b = read(original);
  assertEquals(a.answers, b.answers);
  assertEquals(a.authorities, b.authorities);
  assertEquals(a.additionals, b.additionals);
  assertEquals(a.questions, b.questions);
  assertEquals(a.flags, b.flags);
});

Deno.test("decodeDnsMessage() refuses pointer loops, forward pointers and overlong names", () => {
  const header = [0, 1, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0];
  // Question name: "a" then a pointer to itself (offset 12).
  assertEquals(
    decodeDnsMessage(new Uint8Array([...header, 1, 97, 0xc0, 12, 0, 1, 0, 1])),
    undefined,
  );
  // A pointer forward.
  assertEquals(decodeDnsMessage(new Uint8Array([...header, 0xc0, 14, 0, 0, 1, 0, 1])), undefined);
  // A name of 5 × 63-byte labels (> 255 bytes).
  const long = Array.from({ length: 5 }, () => [63, ...new Array(63).fill(97)]).flat();
  assertEquals(decodeDnsMessage(new Uint8Array([...header, ...long, 0, 0, 1, 0, 1])), undefined);
  // Truncated in the question.
  assertEquals(decodeDnsMessage(new Uint8Array([...header, 3, 97, 98])), undefined);
  // Two OPT records (RFC 6891 6.1.1).
  const opt = [0, 0, 41, 2, 0, 0, 0, 0, 0, 0, 0];
  const twoOpts = [0, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 2, ...opt, ...opt];
  assertEquals(decodeDnsMessage(new Uint8Array(twoOpts)), undefined);
});

Deno.test("decodeDnsMessage() keeps label bytes exactly, dots and case included", () => {
  const name = ["We.B", "\xff\x00x"];
  const bytes = encodeDnsMessage({
    id: 9,
    flags: 0,
    questions: [{ name, type: 1, class: 1 }],
    answers: [],
    authorities: [],
    additionals: [],
  });
  assertEquals(decodeDnsMessage(bytes)?.questions[0]?.name, name);
});

// --- routing -------------------------------------------------------------------

Deno.test("DnsInterceptor.route() applies the rules in order", () => {
  const { dns } = interceptor();
  const table: [string, string, string | undefined, boolean | undefined][] = [
    // name, rule, name asked of the cluster, fallback
    ["web.skip.cluster.local", "exclude", undefined, undefined],
    ["skip.cluster.local", "exclude", undefined, undefined],
    ["host.corp.internal", "include", "host.corp.internal", false],
    ["web.default.svc.cluster.local", "domain", "web.default.svc.cluster.local", false],
    ["WEB.Default.SVC.Cluster.Local.", "domain", "web.default.svc.cluster.local", false],
    ["cluster.local", "domain", "cluster.local", false],
    ["5.10.18.198.in-addr.arpa", "ptr", "5.10.18.198.in-addr.arpa", false],
    ["7.20.18.198.in-addr.arpa", "ptr", "7.20.18.198.in-addr.arpa", false],
    ["1.1.18.198.in-addr.arpa", "other", undefined, undefined],
    [
      "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.0.0.2.0.0.0.1.0.0.2.ip6.arpa",
      "ptr",
      "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.1.0.0.0.0.0.0.2.0.0.0.1.0.0.2.ip6.arpa",
      false,
    ],
    [
      "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.2.0.0.0.0.0.0.2.0.0.0.1.0.0.2.ip6.arpa",
      "other",
      undefined,
      undefined,
    ],
    ["18.198.in-addr.arpa", "other", undefined, undefined],
    ["web.default.svc", "svc", "web.default.svc.cluster.local", false],
    ["web.other", "namespace", "web.other.svc.cluster.local", true],
    ["pod-0.web-headless.other", "namespace", "pod-0.web-headless.other.svc.cluster.local", true],
    ["web.default", "namespace", "web.default.svc.cluster.local", true],
    ["web", "single-label", "web.default.svc.cluster.local", true],
    ["other", "single-label", "other.default.svc.cluster.local", true],
    ["svc", "single-label", "svc.default.svc.cluster.local", true],
    ["_http._tcp.web", "single-label", "_http._tcp.web.default.svc.cluster.local", true],
    ["_http._tcp.web.other", "namespace", "_http._tcp.web.other.svc.cluster.local", true],
    ["_http._tcp.web.other.svc", "svc", "_http._tcp.web.other.svc.cluster.local", false],
    ["_http._tcp.example.com", "other", undefined, undefined],
    ["example.com", "other", undefined, undefined],
    ["web.unknown", "other", undefined, undefined],
    ["local", "single-label", "local.default.svc.cluster.local", true],
    ["printer.local", "other", undefined, undefined],
    ["", "other", undefined, undefined],
  ];
  for (const [name, rule, asked, fallback] of table) {
    const route = dns.route(name);
    assertEquals(route.rule, rule, name);
    assertEquals(route.to, asked === undefined ? "upstream" : "cluster", name);
    if (route.to === "cluster") {
      assertEquals(route.name, asked, name);
      assertEquals(route.fallback, fallback, name);
    }
  }
});

Deno.test("DnsInterceptor.handle() asks the cluster for each rule's name and upstream for the rest", async () => {
  const cases: [string, string, string][] = [
    ["web", "A", "cluster web.default.svc.cluster.local A"],
    ["web.other", "A", "cluster web.other.svc.cluster.local A"],
    ["pod-0.web-headless.other", "A", "cluster pod-0.web-headless.other.svc.cluster.local A"],
    ["web.default.svc", "A", "cluster web.default.svc.cluster.local A"],
    ["web.default.svc.cluster.local", "A", "cluster web.default.svc.cluster.local A"],
    ["5.10.18.198.in-addr.arpa", "PTR", "cluster 5.10.18.198.in-addr.arpa PTR"],
    ["host.corp.internal", "A", "cluster host.corp.internal A"],
    ["a.skip.cluster.local", "A", "upstream a.skip.cluster.local A"],
    ["example.com", "AAAA", "upstream example.com AAAA"],
  ];
  for (const [name, type, expected] of cases) {
    const { dns, cluster, upstreamAsked } = interceptor();
    await dns.handle(query(name, type));
    const got = [
      ...cluster.asked.map((a) => `cluster ${a}`),
      ...upstreamAsked.map((a) => `upstream ${a}`),
    ];
    assertEquals(got[0], expected, name);
  }
});

Deno.test("DnsInterceptor.handle() sends a single-label or namespace NXDOMAIN upstream, not an svc one", async () => {
  const { dns, cluster, upstreamAsked } = interceptor();
  const single = read(await dns.handle(query("intranet")));
  assertEquals(cluster.asked, ["intranet.default.svc.cluster.local A"]);
  assertEquals(upstreamAsked, ["intranet A"]);
  assertEquals(single.rcode, "NOERROR");
  assertEquals(single.answers[0].data, "198.18.99.1");
  assertEquals(single.answers[0].name, "intranet");

  const ns = read(await dns.handle(query("site.other")));
  assertEquals(upstreamAsked, ["intranet A", "site.other A"]);
  assertEquals(ns.answers[0].name, "site.other");

  const svc = read(await dns.handle(query("nope.default.svc")));
  assertEquals(svc.rcode, "NXDOMAIN");
  assertEquals(upstreamAsked.length, 2);
  assertEquals(dns.stats.fallbacks, 2);

  // The cluster's NXDOMAIN is cached: the next time goes straight upstream.
  await dns.handle(query("intranet"));
  assertEquals(cluster.asked.length, 3);
  assertEquals(upstreamAsked.length, 3);
});

Deno.test("DnsInterceptor.handle() sends only class IN to the cluster", async () => {
  const { dns, cluster, upstreamAsked } = interceptor();
  const chaos = dp.encode({
    type: "query",
    id: 5,
    flags: dp.RECURSION_DESIRED,
    questions: [{ name: "web.default.svc.cluster.local", type: "TXT", class: "CH" }],
  });
  await dns.handle(chaos);
  assertEquals(cluster.asked, []);
  assertEquals(upstreamAsked, ["web.default.svc.cluster.local TXT"]);
});

// --- answers -------------------------------------------------------------------

Deno.test("DnsInterceptor.handle() renames a rewritten answer to the name asked, with id and question as asked", async () => {
  const { dns } = interceptor();
  const reply = read(await dns.handle(query("Web.Other", "A", { id: 4242 })));
  assertEquals(reply.id, 4242);
  assertEquals(reply.type, "response");
  assertEquals(reply.flag_rd, true);
  assertEquals(reply.flag_ra, true);
  assertEquals(reply.questions, [{ name: "Web.Other", type: "A", class: "IN" }]);
  assertEquals(reply.answers.map((r: Any) => [r.name, r.type, r.data]), [
    ["Web.Other", "A", "198.18.10.6"],
  ]);
});

Deno.test("DnsInterceptor.handle() keeps a CNAME chain coherent after renaming", async () => {
  const { dns } = interceptor();
  const ext = read(await dns.handle(query("ext")));
  assertEquals(ext.answers.map((r: Any) => [r.name, r.type, r.data]), [
    ["ext", "CNAME", "outside.example"],
    ["outside.example", "A", "198.18.5.5"],
  ]);
  const chain = read(await dns.handle(query("chain")));
  assertEquals(chain.answers.map((r: Any) => [r.name, r.type, r.data]), [
    ["chain", "CNAME", "web.default.svc.cluster.local"],
    ["web.default.svc.cluster.local", "A", "198.18.10.5"],
  ]);
});

Deno.test("DnsInterceptor.handle() passes SRV, PTR and NODATA answers through", async () => {
  const { dns } = interceptor();
  const srv = read(await dns.handle(query("_http._tcp.web", "SRV", { edns: 1232 })));
  assertEquals(srv.answers[0].name, "_http._tcp.web");
  assertEquals(srv.answers[0].data.target, "web.default.svc.cluster.local");
  assertEquals(srv.additionals.filter((r: Any) => r.type === "A")[0].data, "198.18.10.5");
  assertEquals(srv.additionals.filter((r: Any) => r.type === "OPT").length, 1);
  const ptr = read(await dns.handle(query("5.10.18.198.in-addr.arpa", "PTR")));
  assertEquals(ptr.answers[0].data, "web.default.svc.cluster.local");
  const nodata = read(await dns.handle(query("web", "AAAA")));
  assertEquals(nodata.rcode, "NOERROR");
  assertEquals(nodata.answers, []);
  assertEquals(nodata.authorities[0].type, "SOA");
});

Deno.test("DnsInterceptor.handle() truncates a UDP answer beyond the client's size, not a TCP one", async () => {
  const { dns, cluster } = interceptor();
  const udp = read(await dns.handle(query("big")));
  assertEquals(udp.flag_tc, true);
  assertEquals(udp.answers, []);
  const edns = await dns.handle(query("big", "A", { edns: 4096 }));
  assertEquals(read(edns).flag_tc, false);
  assertEquals(read(edns).answers.length, 60);
  const tcp = read(await dns.handle(query("big"), { transport: "tcp" }));
  assertEquals(tcp.flag_tc, false);
  assertEquals(tcp.answers.length, 60);
  assertEquals(cluster.asked.length, 1, "the cache served the rest");
});

Deno.test("DnsInterceptor.handle() answers SERVFAIL when the cluster fails or answers another question", async () => {
  const failing = interceptor({ resolveCluster: () => Promise.reject(new Error("no tunnel")) });
  const a = read(await failing.dns.handle(query("web")));
  assertEquals(a.rcode, "SERVFAIL");
  assertEquals(a.id, 0x1234);
  assertEquals(failing.dns.stats.failures, 1);

  const garbage = interceptor({ resolveCluster: () => Promise.resolve(new Uint8Array([1, 2, 3])) });
  assertEquals(read(await garbage.dns.handle(query("web"))).rcode, "SERVFAIL");

  const other = fakeResolver();
  const wrong = interceptor({
    resolveCluster: (q) =>
      other.resolve(query("elsewhere.default.svc.cluster.local", "A", { id: read(q).id })),
  });
  assertEquals(read(await wrong.dns.handle(query("web"))).rcode, "SERVFAIL");

  const noUpstream = interceptor({ resolveUpstream: undefined });
  assertEquals(read(await noUpstream.dns.handle(query("example.com"))).rcode, "SERVFAIL");

  const badUpstream = interceptor({ resolveUpstream: () => Promise.reject(new Error("timeout")) });
  assertEquals(read(await badUpstream.dns.handle(query("example.com"))).rcode, "SERVFAIL");
  assertEquals(badUpstream.dns.stats.failures, 1);
});

Deno.test("DnsInterceptor.handle() does not cache SERVFAIL from the cluster", async () => {
  let calls = 0;
  const { dns } = interceptor({
    resolveCluster: (q) => {
      calls++;
      return Promise.resolve(respond(read(q), { rcode: DnsRcode.SERVFAIL }));
    },
  });
  assertEquals(read(await dns.handle(query("web"))).rcode, "SERVFAIL");
  assertEquals(read(await dns.handle(query("web"))).rcode, "SERVFAIL");
  assertEquals(calls, 2);
});

// --- the cache -----------------------------------------------------------------

Deno.test("DnsInterceptor caches for the smallest answer TTL and counts down TTLs", async () => {
  const { dns, cluster, clock } = interceptor();
  const first = read(await dns.handle(query("ext")));
  assertEquals(first.answers.map((r: Any) => r.ttl), [5, 60]);
  clock.advance(2_500);
  const second = read(await dns.handle(query("ext")));
  assertEquals(second.answers.map((r: Any) => r.ttl), [3, 58]);
  assertEquals(cluster.asked.length, 1);
  assertEquals(dns.stats.cacheHits, 1);
  assertEquals(dns.stats.cacheMisses, 1);
  clock.advance(2_500); // 5 s: the CNAME's TTL is over.
  await dns.handle(query("ext"));
  assertEquals(cluster.asked.length, 2);
  // A different spelling of the same name shares the entry; another type does not.
  await dns.handle(query("EXT.default.svc.cluster.local"));
  assertEquals(cluster.asked.length, 2);
  await dns.handle(query("ext", "AAAA"));
  assertEquals(cluster.asked.length, 3);
});

Deno.test("DnsInterceptor caches negative answers for the SOA's TTL or minimum, capped", async () => {
  const zone = (name: string, type: string): Reply => {
    if (name.startsWith("short.")) {
      return { rcode: NX, authorities: [{ ...SOA, ttl: 60, data: { ...SOA.data, minimum: 10 } }] };
    }
    if (name.startsWith("long.")) {
      return {
        rcode: NX,
        authorities: [{ ...SOA, ttl: 3600, data: { ...SOA.data, minimum: 3600 } }],
      };
    }
    return clusterZone(name, type);
  };
  const cluster = fakeResolver(zone);
  const { dns, clock } = interceptor({ resolveCluster: cluster.resolve });
  const ask = async (name: string) => read(await dns.handle(query(name)));
  assertEquals((await ask("short.default.svc.cluster.local")).rcode, "NXDOMAIN");
  assertEquals((await ask("long.default.svc.cluster.local")).rcode, "NXDOMAIN");
  assertEquals((await ask("nosoa.default.svc.cluster.local")).rcode, "NXDOMAIN");
  assertEquals(cluster.asked.length, 3);
  clock.advance(9_000);
  await ask("short.default.svc.cluster.local");
  const cachedLong = await ask("long.default.svc.cluster.local");
  assertEquals(cluster.asked.length, 3, "both cached");
  assertEquals(cachedLong.authorities[0].ttl, 3591, "the SOA's TTL counts down");
  await ask("nosoa.default.svc.cluster.local");
  assertEquals(cluster.asked.length, 4, "no SOA: not cached");
  clock.advance(1_000); // 10 s: MINIMUM 10 is over, the 30 s cap is not.
  await ask("short.default.svc.cluster.local");
  await ask("long.default.svc.cluster.local");
  assertEquals(cluster.asked.length, 5);
  clock.advance(20_000); // 30 s: the cap is over.
  const again = await ask("long.default.svc.cluster.local");
  assertEquals(cluster.asked.length, 6);
  assertEquals(again.authorities[0].ttl, 3600);
  // NODATA is cached too (SOA TTL 30, MINIMUM 30).
  const nodata = fakeResolver();
  const second = interceptor({ resolveCluster: nodata.resolve });
  await second.dns.handle(query("web", "AAAA"));
  second.clock.advance(29_000);
  const cached = read(await second.dns.handle(query("web", "AAAA")));
  assertEquals(nodata.asked.length, 1);
  assertEquals(cached.authorities[0].ttl, 1);
});

Deno.test("DnsInterceptor answers a repeated query from its encoded reply, with the query's id and aged TTLs", async () => {
  const { dns, cluster, clock } = interceptor();
  const a = read(await dns.handle(query("ext", "A", { id: 11 })));
  const b = read(await dns.handle(query("ext", "A", { id: 12 })));
  assertEquals([a.id, b.id], [11, 12]);
  assertEquals(b.answers, a.answers);
  clock.advance(400); // the same second: the same TTLs
  const c = read(await dns.handle(query("ext", "A", { id: 13 })));
  assertEquals(c.answers.map((r: Any) => r.ttl), [5, 60]);
  clock.advance(1_700); // 2.1 s: TTLs aged by 2
  const d = read(await dns.handle(query("ext", "A", { id: 14 })));
  assertEquals([d.id, d.answers.map((r: Any) => r.ttl)], [14, [3, 58]]);
  assertEquals(cluster.asked.length, 1);
  assertEquals(dns.stats.cacheHits, 3);
  // Another spelling, the same answer (with the name as asked); EDNS, another reply.
  const e = read(await dns.handle(query("EXT", "A", { id: 15 })));
  assertEquals(e.answers[0].name, "EXT");
  const f = read(await dns.handle(query("ext", "A", { id: 16, edns: 1232 })));
  assertEquals(f.additionals.some((r: Any) => r.type === "OPT"), true);
  assertEquals(cluster.asked.length, 1);
  clock.advance(3_000); // 5.1 s: the answer expired, and with it the replies
  await dns.handle(query("ext", "A", { id: 17 }));
  assertEquals(cluster.asked.length, 2);
  // New cluster facts empty both caches.
  dns.setClusterInfo({ clusterDomain: "cluster.local", namespace: "default" });
  await dns.handle(query("ext", "A", { id: 18 }));
  assertEquals(cluster.asked.length, 3);
});

Deno.test("DnsInterceptor evicts the least recently used answer beyond cacheMax", async () => {
  const { dns, cluster } = interceptor({ cacheMax: 2 });
  const ask = (name: string) => dns.handle(query(name));
  await ask("web.default.svc.cluster.local"); // miss: [web]
  await ask("web.other.svc.cluster.local"); // miss: [web, other]
  await ask("web.default.svc.cluster.local"); // hit: [other, web]
  await ask("ext.default.svc.cluster.local"); // miss: [web, ext], other evicted
  assertEquals(cluster.asked.length, 3);
  assertEquals(dns.stats.cached, 2);
  await ask("web.default.svc.cluster.local"); // hit
  assertEquals(cluster.asked.length, 3);
  await ask("web.other.svc.cluster.local"); // miss again
  assertEquals(cluster.asked.length, 4);
  assertEquals(dns.stats.cacheHits, 2);
  assertEquals(dns.stats.cacheMisses, 4);
});

Deno.test("DnsInterceptor with cacheMax 0 caches nothing", async () => {
  const { dns, cluster } = interceptor({ cacheMax: 0 });
  await dns.handle(query("web"));
  await dns.handle(query("web"));
  assertEquals(cluster.asked.length, 2);
  assertEquals(dns.stats.cached, 0);
});

Deno.test("DnsInterceptor asks the cluster once for identical concurrent queries", async () => {
  const held: { query: Uint8Array; answer: (bytes: Uint8Array) => void }[] = [];
  const { dns } = interceptor({
    resolveCluster: (query) => new Promise((answer) => held.push({ query, answer })),
  });
  const a = dns.handle(query("web", "A", { id: 1 }));
  const b = dns.handle(query("WEB.default", "A", { id: 2 }));
  const c = dns.handle(query("web", "AAAA", { id: 3 }));
  await Promise.resolve();
  assertEquals(held.length, 2, "A once, AAAA once");
  for (const h of held) {
    h.answer(
      respond(
        read(h.query),
        clusterZone(read(h.query).questions[0].name, read(h.query).questions[0].type),
      ),
    );
  }
  const [ra, rb, rc] = (await Promise.all([a, b, c])).map(read);
  assertEquals([ra.id, rb.id, rc.id], [1, 2, 3]);
  assertEquals(ra.answers[0].name, "web");
  assertEquals(rb.answers[0].name, "WEB.default");
  assertEquals(rb.answers[0].data, "198.18.10.5");
  assertEquals(rc.answers, []);
  assertEquals(dns.stats.deduplicated, 1);
  assertEquals(dns.stats.cluster, 2);
});

Deno.test("DnsInterceptor shares a cluster failure among joiners, then asks again", async () => {
  const held: ((e: Error) => void)[] = [];
  let calls = 0;
  const { dns } = interceptor({
    resolveCluster: () => {
      calls++;
      return new Promise((_, fail) => held.push(fail));
    },
  });
  const a = dns.handle(query("web"));
  const b = dns.handle(query("web"));
  await Promise.resolve();
  held[0]!(new Error("deadline exceeded"));
  assertEquals((await Promise.all([a, b])).map((r) => read(r).rcode), ["SERVFAIL", "SERVFAIL"]);
  const c = dns.handle(query("web"));
  await Promise.resolve();
  assertEquals(calls, 2);
  held[1]!(new Error("again"));
  await c;
});

Deno.test("DnsInterceptor stops joining a look-up that has hung too long", () => {
  let calls = 0;
  const { dns, clock } = interceptor({
    resolveCluster: () => {
      calls++;
      return new Promise(() => {});
    },
    staleInflightMs: 5_000,
  });
  void dns.handle(query("web"));
  clock.advance(1_000);
  void dns.handle(query("web"));
  assertEquals(calls, 1);
  clock.advance(5_000);
  void dns.handle(query("web"));
  assertEquals(calls, 2);
});

Deno.test("DnsInterceptor.setClusterInfo() changes the rules and empties the cache", async () => {
  const { dns, cluster } = interceptor();
  await dns.handle(query("web"));
  assertEquals(dns.stats.cached, 1);
  dns.setClusterInfo({ clusterDomain: "cluster.local", namespace: "other", namespaces: ["shop"] });
  assertEquals(dns.stats.cached, 0);
  await dns.handle(query("web"));
  assertEquals(cluster.asked.at(-1), "web.other.svc.cluster.local A");
  assertEquals(dns.route("a.shop").rule, "namespace");
  assertEquals(dns.route("a.default").rule, "other");
});

// --- malformed input ---------------------------------------------------------------

Deno.test("DnsInterceptor.handle() drops headerless messages and responses, FORMERRs bad questions", async () => {
  const { dns } = interceptor();
  assertEquals(await dns.handle(new Uint8Array(0)), new Uint8Array(0));
  assertEquals(await dns.handle(new Uint8Array(11)), new Uint8Array(0));
  const response = respond(read(query("web")), {});
  assertEquals(await dns.handle(response), new Uint8Array(0));
  assertEquals(dns.stats.dropped, 3);

  const noQuestion = new Uint8Array([0xab, 0xcd, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
  const formerr = read(await dns.handle(noQuestion));
  assertEquals(formerr.id, 0xabcd);
  assertEquals(formerr.rcode, "FORMERR");
  const cut = query("web").slice(0, 16);
  assertEquals(read(await dns.handle(cut)).rcode, "FORMERR");
  const update = query("web");
  update[2] = update[2]! | 0x28; // opcode 5, UPDATE
  const notimp = read(await dns.handle(update));
  assertEquals(notimp.rcode, "NOTIMP");
  assertEquals(notimp.questions[0].name, "web");
  assertEquals(dns.stats.malformed, 3);
});

Deno.test("DnsInterceptor.handle() never throws on random or mutated bytes (seeded fuzz)", async () => {
  const random = prng(0x5eed);
  const upstreamSeen: Uint8Array[] = [];
  const mutate = (bytes: Uint8Array) => {
    const out = bytes.slice(0, Math.max(0, bytes.length - Math.floor(random() * 4)));
    const flips = 1 + Math.floor(random() * 4);
    for (let i = 0; i < flips && out.length > 0; i++) {
      out[Math.floor(random() * out.length)] = Math.floor(random() * 256);
    }
    return out;
  };
  const good = fakeResolver();
  const { dns } = interceptor({
    // The cluster answers with a corrupted copy of the right answer half the time.
    resolveCluster: async (q) => {
      const bytes = await good.resolve(q);
      return random() < 0.5 ? mutate(bytes) : bytes;
    },
    resolveUpstream: (q) => {
      upstreamSeen.push(q);
      return Promise.resolve(mutate(respond(read(q), {})));
    },
    cacheMax: 16,
  });
  const seeds = [
    query("web"),
    query("ext", "A", { edns: 1232 }),
    query("_http._tcp.web", "SRV"),
    query("example.com"),
    query("5.10.18.198.in-addr.arpa", "PTR"),
    respond(
      read(query("ext.default.svc.cluster.local")),
      clusterZone("ext.default.svc.cluster.local", "A"),
    ),
  ];
  for (let i = 0; i < 4000; i++) {
    const input = i % 2 === 0
      ? Uint8Array.from({ length: Math.floor(random() * 80) }, () => random() * 256)
      : mutate(seeds[i % seeds.length]!);
    decodeDnsMessage(input);
    const out = await dns.handle(input, { transport: random() < 0.5 ? "udp" : "tcp" });
    if (out.length === 0) continue;
    assert(out.length >= 12, "a reply has a header");
    assert((out[2]! & 0x80) !== 0, "a reply is a response");
    assertEquals([out[0], out[1]], [input[0], input[1]], "the id is the query's");
    assert(decodeDnsMessage(out) !== undefined, "our reply decodes");
  }
  const stats = dns.stats;
  assertEquals(stats.queries, 4000);
  assert(stats.dropped + stats.malformed > 1000, "most random input is refused");
});

Deno.test("decodeDnsMessage() never throws on random bytes (seeded fuzz)", () => {
  const random = prng(42);
  let decoded = 0;
  for (let i = 0; i < 20_000; i++) {
    const bytes = new Uint8Array(12 + Math.floor(random() * 64));
    for (let j = 0; j < bytes.length; j++) bytes[j] = random() * 256;
    bytes[4] = 0;
    bytes[5] = random() * 3;
    for (const k of [6, 8, 10]) bytes[k] = 0;
    for (const k of [7, 9, 11]) bytes[k] = random() * 2;
    const m = decodeDnsMessage(bytes);
    if (m === undefined) continue;
    decoded++;
    const again = decodeDnsMessage(encodeDnsMessage(m));
    assertEquals(again, m, "what decodes, re-encodes to the same message");
  }
  assert(decoded > 0, "some random messages decode");
});

Deno.test("DnsInterceptor does not cache an answer asked for before setClusterInfo()", async () => {
  const held: { query: Uint8Array; answer: (bytes: Uint8Array) => void }[] = [];
  const { dns } = interceptor({
    resolveCluster: (query) => new Promise((answer) => held.push({ query, answer })),
  });
  const pending = dns.handle(query("web"));
  await Promise.resolve();
  dns.setClusterInfo({ clusterDomain: "cluster.local", namespace: "other" });
  const h = held[0]!;
  h.answer(respond(read(h.query), clusterZone("web.default.svc.cluster.local", "A")));
  assertEquals(read(await pending).answers[0].data, "198.18.10.5");
  assertEquals(dns.stats.cached, 0);
});
