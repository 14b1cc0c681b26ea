/**
 * The DNS server on real sockets, asked by a real client (`dig`), and the
 * upstream resolver against a real server (`dnsmasq`):
 *
 * ```
 *   dig ──udp/tcp──► startDnsServer 127.0.0.1:P ──► DnsInterceptor ──► fake resolveCluster
 *                                                        │
 *                                                        └──► upstreamResolver ──udp/tcp──► dnsmasq 127.0.0.1:Q
 * ```
 *
 * Loopback only; dnsmasq answers only the names it is given (`--no-resolv
 * --no-hosts`) and is ended by its pid.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import dgram from "node:dgram";
import * as dp from "dns-packet";
import { assert, assertEquals, assertMatch } from "../../tests/_assert.ts";
import { DnsInterceptor, type DnsInterceptorOptions } from "../net/dns.ts";
import { type DnsServer, startDnsServer, upstreamResolver } from "./dns_server.ts";

// deno-lint-ignore no-explicit-any
type Any = any;

const LOOPBACK = "127.0.0.1";
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

/** A CoreDNS-like cluster: every `<svc>.<ns>.svc.cluster.local` exists but `nope…` and `intranet…`. */
function fakeCluster() {
  let calls = 0;
  const resolve = (query: Uint8Array): Promise<Uint8Array> => {
    calls++;
    const m = dp.decode(Buffer.from(query));
    const q = m.questions[0];
    const name = q.name.toLowerCase();
    let answers: Any[] = [];
    let rcode = 0;
    if (name === "big.default.svc.cluster.local" && q.type === "A") {
      answers = Array.from(
        { length: 60 },
        (_, i) => ({ name: q.name, type: "A", ttl: 30, data: `198.18.11.${i + 1}` }),
      );
    } else if (
      /^[a-z0-9-]+\.[a-z0-9-]+\.svc\.cluster\.local$/.test(name) && q.type === "A" &&
      !/^(nope|intranet)\./.test(name)
    ) {
      const n = [...name].reduce((s, c) => (s * 31 + c.charCodeAt(0)) % 250, 7) + 1;
      answers = [{ name: q.name, type: "A", ttl: 30, data: `198.18.10.${n}` }];
    } else {
      rcode = 3;
    }
    return Promise.resolve(dp.encode({
      type: "response",
      id: m.id,
      flags: dp.AUTHORITATIVE_ANSWER | dp.RECURSION_DESIRED | rcode,
      questions: m.questions,
      answers,
      authorities: answers.length === 0 ? [SOA] : [],
    }));
  };
  return { resolve, calls: () => calls };
}

function newInterceptor(overrides: Partial<DnsInterceptorOptions> = {}) {
  const cluster = fakeCluster();
  const dns = new DnsInterceptor({
    clusterDomain: "cluster.local",
    namespace: "default",
    namespaces: ["default", "other"],
    resolveCluster: cluster.resolve,
    ...overrides,
  });
  return { dns, cluster };
}

interface Dig {
  status: string;
  flags: string[];
  answers: string[][];
  ms: number;
}

async function dig(port: number, args: string[]): Promise<Dig> {
  const out = await new Deno.Command("dig", {
    args: [`@${LOOPBACK}`, "-p", String(port), "+tries=1", "+time=3", ...args],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout);
  assert(
    out.success,
    `dig ${args.join(" ")} failed: ${text}${new TextDecoder().decode(out.stderr)}`,
  );
  const status = /status: (\w+)/.exec(text)?.[1] ?? "";
  const flags = (/;; flags: ([a-z ]+);/.exec(text)?.[1] ?? "").trim().split(" ");
  const answerBlock = /;; ANSWER SECTION:\n([\s\S]*?)\n\n/.exec(text)?.[1] ?? "";
  const answers = answerBlock.split("\n").filter((l) => l !== "").map((l) => l.split(/\s+/));
  const ms = Number(/Query time: (\d+) msec/.exec(text)?.[1] ?? NaN);
  return { status, flags, answers, ms };
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = sorted.length >> 1;
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2;
}

async function withServer(
  dns: DnsInterceptor,
  fn: (server: DnsServer) => Promise<void>,
): Promise<void> {
  const lines: string[] = [];
  const server = await startDnsServer({
    address: LOOPBACK,
    port: 0,
    interceptor: dns,
    log: (_, line) => lines.push(line),
  });
  try {
    await fn(server);
  } finally {
    await server.close();
  }
  assertEquals(lines[0], `dns: serving on ${LOOPBACK}:${server.port} (udp, tcp)`);
  assertEquals(lines.at(-1), `dns: stopped serving on ${LOOPBACK}:${server.port}`);
}

/** One query over UDP from this process; resolves with the answer. */
function udpAsk(port: number, query: Uint8Array): Promise<Uint8Array> {
  const socket = dgram.createSocket("udp4");
  return new Promise<Uint8Array>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.close();
      reject(new Error("timed out"));
    }, 3000);
    socket.on("message", (msg: Uint8Array) => {
      clearTimeout(timer);
      socket.close();
      resolve(msg);
    });
    socket.send(query, port, LOOPBACK);
  });
}

function encodeQuery(name: string, type = "A", id = 1, edns = true): Uint8Array {
  return dp.encode({
    type: "query",
    id,
    flags: dp.RECURSION_DESIRED,
    questions: [{ name, type }],
    additionals: edns
      ? [{ type: "OPT", name: ".", udpPayloadSize: 1232, flags: 0, options: [] }]
      : [],
  });
}

// --- the server ------------------------------------------------------------------------

Deno.test("startDnsServer() answers dig over UDP with cluster names as a pod would see them", async () => {
  const { dns } = newInterceptor();
  await withServer(dns, async ({ port }) => {
    const web = await dig(port, ["web", "A"]);
    assertEquals(web.status, "NOERROR");
    assertEquals(web.answers.length, 1);
    assertEquals(web.answers[0]!.slice(0, 1).concat(web.answers[0]!.slice(2, 4)), [
      "web.",
      "IN",
      "A",
    ]);
    assertMatch(web.answers[0]![4]!, /^198\.18\.10\.\d+$/);
    const full = await dig(port, ["web.default.svc.cluster.local"]);
    assertEquals(full.answers[0]![4], web.answers[0]![4]);
    const ns = await dig(port, ["api.other"]);
    assertEquals(ns.answers[0]![0], "api.other.");
    const nx = await dig(port, ["nope.default.svc"]);
    assertEquals(nx.status, "NXDOMAIN");
    const noUpstream = await dig(port, ["example.com"]);
    assertEquals(noUpstream.status, "SERVFAIL");
  });
});

Deno.test("startDnsServer() remembers the names its answers gave each address, over UDP and TCP", async () => {
  const { dns } = newInterceptor();
  await withServer(dns, async (server) => {
    const web = await dig(server.port, ["web", "A"]);
    const api = await dig(server.port, ["+tcp", "api.other"]);
    assertEquals(server.names.lookup(web.answers[0]![4]!), "web.default");
    assertEquals(server.names.lookup(api.answers[0]![4]!), "api.other");
  });
});

Deno.test("startDnsServer() answers over TCP, several queries per connection", async () => {
  const { dns, cluster } = newInterceptor();
  await withServer(dns, async ({ port }) => {
    const tcp = await dig(port, ["+tcp", "web"]);
    assertEquals(tcp.status, "NOERROR");
    assertEquals(tcp.answers[0]![0], "web.");

    // Three queries pipelined in one write, then half-close: three answers.
    const conn = await Deno.connect({ hostname: LOOPBACK, port });
    const frames = ["a", "b.other", "c"].map((name, i) => {
      const q = encodeQuery(name, "A", 100 + i);
      return [q.length >> 8, q.length & 0xff, ...q];
    });
    await conn.write(new Uint8Array(frames.flat()));
    await conn.closeWrite();
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(4096);
    for (let n; (n = await conn.read(buf)) !== null;) chunks.push(buf.slice(0, n));
    conn.close();
    const all = new Uint8Array(chunks.flatMap((c) => [...c]));
    const answers: Any[] = [];
    for (let at = 0; at < all.length;) {
      const length = (all[at]! << 8) | all[at + 1]!;
      answers.push(dp.decode(Buffer.from(all.subarray(at + 2, at + 2 + length))));
      at += 2 + length;
    }
    assertEquals(answers.map((a) => a.id).sort(), [100, 101, 102]);
    assertEquals(
      answers.map((a) => a.answers[0].name).sort(),
      ["a", "b.other", "c"],
    );
    assertEquals(cluster.calls(), 4);

    // dig keeping one connection open for two queries.
    const kept = await new Deno.Command("dig", {
      args: [`@${LOOPBACK}`, "-p", String(port), "+tcp", "+keepopen", "+short", "web", "c"],
      stdout: "piped",
    }).output();
    const lines = new TextDecoder().decode(kept.stdout).trim().split("\n");
    assertEquals(lines.length, 2);
  });
});

Deno.test("startDnsServer() truncates a large UDP answer and dig gets it over TCP", async () => {
  const { dns } = newInterceptor();
  await withServer(dns, async ({ port }) => {
    const cut = await dig(port, ["+noedns", "+ignore", "big"]);
    assert(cut.flags.includes("tc"), `tc flag in ${cut.flags}`);
    assertEquals(cut.answers.length, 0);
    const retried = await dig(port, ["+noedns", "big"]);
    assertEquals(retried.answers.length, 60);
    const edns = await dig(port, ["+bufsize=4096", "big"]);
    assert(!edns.flags.includes("tc"));
    assertEquals(edns.answers.length, 60);
  });
});

Deno.test("startDnsServer() answers dig quickly, cached and not (latency medians)", async () => {
  const { dns, cluster } = newInterceptor();
  await withServer(dns, async ({ port }) => {
    const uncachedDig: number[] = [], cachedDig: number[] = [];
    for (let i = 0; i < 15; i++) {
      uncachedDig.push((await dig(port, [`svc-${i}`])).ms);
      cachedDig.push((await dig(port, [`svc-${i}`])).ms);
    }
    assertEquals(cluster.calls(), 15);
    // In-process, microsecond view of the same.
    const uncached: number[] = [], cached: number[] = [];
    for (let i = 0; i < 200; i++) {
      let t = performance.now();
      await udpAsk(port, encodeQuery(`lat-${i}`, "A", i));
      uncached.push(performance.now() - t);
      t = performance.now();
      await udpAsk(port, encodeQuery(`lat-${i}`, "A", i));
      cached.push(performance.now() - t);
    }
    assertEquals(dns.stats.cacheHits, 215);
    const report =
      `dig median: uncached ${median(uncachedDig)} ms, cached ${median(cachedDig)} ms; ` +
      `in-process udp median: uncached ${median(uncached).toFixed(3)} ms, cached ${
        median(cached).toFixed(3)
      } ms`;
    console.log(`    ${report}`);
    assert(median(cachedDig) <= 5, report);
  });
});

Deno.test("startDnsServer() refuses a port that is taken, and close() is idempotent", async () => {
  const { dns } = newInterceptor();
  const first = await startDnsServer({ address: LOOPBACK, port: 0, interceptor: dns });
  try {
    let error: unknown;
    try {
      await startDnsServer({ address: LOOPBACK, port: first.port, interceptor: dns });
    } catch (e) {
      error = e;
    }
    assert(error instanceof Error, "a second server on the same port fails");
    assertMatch(error.message, /^Cannot serve DNS on "127\.0\.0\.1:\d+" \(tcp\)/);
  } finally {
    await first.close();
    await first.close();
  }
});

Deno.test("startDnsServer() ignores garbage and responses on UDP without dying", async () => {
  const { dns } = newInterceptor();
  await withServer(dns, async ({ port }) => {
    const socket = dgram.createSocket("udp4");
    for (const junk of [new Uint8Array(3), new Uint8Array(600).fill(0xc0)]) {
      await new Promise<void>((r) => socket.send(junk, port, LOOPBACK, () => r()));
    }
    socket.close();
    const ok = await dig(port, ["web"]);
    assertEquals(ok.status, "NOERROR");
    assert(dns.stats.dropped + dns.stats.malformed >= 2);
  });
});

// --- upstream: a real dnsmasq -----------------------------------------------------------

async function freePort(): Promise<number> {
  for (;;) {
    const l = Deno.listen({ hostname: LOOPBACK, port: 0 });
    const port = l.addr.port;
    l.close();
    // dnsmasq binds UDP and TCP: make sure UDP is free too.
    const s = dgram.createSocket("udp4");
    const free = await new Promise<boolean>((resolve) => {
      s.once("error", () => resolve(false));
      s.bind(port, LOOPBACK, () => resolve(true));
    });
    await new Promise<void>((r) => s.close(() => r()));
    if (free) return port;
  }
}

/** Runs `fn` with a dnsmasq on 127.0.0.1 that knows a few names and nothing else; ends it by pid. */
async function withDnsmasq(fn: (port: number) => Promise<void>): Promise<void> {
  const port = await freePort();
  const long = (c: string) => c.repeat(250);
  const child = new Deno.Command("dnsmasq", {
    args: [
      "--keep-in-foreground",
      "--conf-file=/dev/null",
      "--no-resolv",
      "--no-hosts",
      "--no-poll",
      "--bind-interfaces",
      `--listen-address=${LOOPBACK}`,
      `--port=${port}`,
      "--pid-file=",
      "--user=root",
      "--cache-size=0",
      "--address=/outside.example/198.18.5.5",
      "--address=/intranet/198.18.5.6",
      "--host-record=host.example,198.18.5.7",
      `--txt-record=big.example,${long("a")},${long("b")},${long("c")}`,
    ],
    stdout: "null",
    stderr: "piped",
  }).spawn();
  try {
    // Wait until it answers.
    const ask = upstreamResolver([`${LOOPBACK}:${port}`], { timeoutMs: 200, attempts: 1 });
    for (let i = 0;; i++) {
      try {
        await ask(encodeQuery("host.example"));
        break;
      } catch (error) {
        if (i > 50) throw new Error("dnsmasq did not start", { cause: error });
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    await fn(port);
  } finally {
    child.kill("SIGTERM");
    await child.status;
    await child.stderr.cancel();
  }
}

Deno.test("upstreamResolver() forwards to dnsmasq, falls back to TCP on TC and skips a dead server", async () => {
  await withDnsmasq(async (port) => {
    const upstream = upstreamResolver([`${LOOPBACK}:${port}`]);
    const a = dp.decode(Buffer.from(await upstream(encodeQuery("outside.example", "A", 777))));
    assertEquals(a.id, 777);
    assertEquals(a.answers.map((r: Any) => r.data), ["198.18.5.5"]);

    // No EDNS: 750 bytes of TXT do not fit 512, dnsmasq sets TC, we ask over TCP.
    const logs: string[] = [];
    const withLog = upstreamResolver([`${LOOPBACK}:${port}`], { log: (_, l) => logs.push(l) });
    const big = dp.decode(
      Buffer.from(await withLog(encodeQuery("big.example", "TXT", 778, false))),
    );
    assertEquals(big.id, 778);
    assertEquals(big.flag_tc, false);
    assertEquals(big.answers[0].data.map((b: Uint8Array) => b.length), [250, 250, 250]);
    assert(logs.some((l) => l.includes("asking over tcp")), logs.join("\n"));

    // A server that does not answer first: the next one does.
    const deadPort = await freePort();
    const twoServers = upstreamResolver([`${LOOPBACK}:${deadPort}`, `${LOOPBACK}:${port}`], {
      timeoutMs: 300,
    });
    const started = performance.now();
    const c = dp.decode(Buffer.from(await twoServers(encodeQuery("host.example", "A", 779))));
    assertEquals(c.answers.map((r: Any) => r.data), ["198.18.5.7"]);
    assert(performance.now() - started < 2000);

    const none = upstreamResolver([`${LOOPBACK}:${deadPort}`], { timeoutMs: 100, attempts: 2 });
    let error: unknown;
    try {
      await none(encodeQuery("host.example"));
    } catch (e) {
      error = e;
    }
    assert(error instanceof Error);
    assertMatch(error.message, /^Cannot resolve upstream: no answer from "127\.0\.0\.1:\d+"/);
  });
});

Deno.test("startDnsServer() sends other names and unknown single labels to dnsmasq upstream", async () => {
  await withDnsmasq(async (upstreamPort) => {
    const { dns } = newInterceptor({
      resolveUpstream: upstreamResolver([`${LOOPBACK}:${upstreamPort}`]),
    });
    await withServer(dns, async ({ port }) => {
      const outside = await dig(port, ["outside.example"]);
      assertEquals(outside.answers.map((a) => a[4]), ["198.18.5.5"]);
      const intranet = await dig(port, ["intranet"]);
      assertEquals(intranet.answers.map((a) => [a[0], a[4]]), [["intranet.", "198.18.5.6"]]);
      const cluster = await dig(port, ["web"]);
      assertMatch(cluster.answers[0]![4]!, /^198\.18\.10\./);
      // Over UDP without EDNS: truncated by us; dig retries over TCP and gets it all.
      const cut = await dig(port, ["+noedns", "+ignore", "big.example", "TXT"]);
      assert(cut.flags.includes("tc"), `tc in ${cut.flags}`);
      const big = await dig(port, ["+noedns", "big.example", "TXT"]);
      assertEquals(big.answers.length, 1);
      assertEquals(dns.stats.fallbacks, 1);
    });
  });
});

// --- bounds -----------------------------------------------------------------------------

/** The descriptors this process holds now. */
function openFds(): number {
  return [...Deno.readDirSync("/proc/self/fd")].length;
}

Deno.test("upstreamResolver() closes its socket when a nameserver never answers", async () => {
  // A nameserver that takes every query and answers none.
  const silent = dgram.createSocket("udp4");
  await new Promise<void>((r) => silent.bind(0, LOOPBACK, () => r()));
  silent.on("message", () => {});
  const port = (silent.address() as { port: number }).port;
  try {
    const upstream = upstreamResolver([`${LOOPBACK}:${port}`], { timeoutMs: 50, attempts: 1 });
    const ask = (i: number) =>
      upstream(encodeQuery(`q${i}.example`)).then(() => "answered", () => "timed out");
    await ask(0); // what the first exchange loads and keeps open
    const before = openFds();
    const results: string[] = [];
    for (let batch = 0; batch < 200; batch += 50) {
      results.push(
        ...await Promise.all(Array.from({ length: 50 }, (_, i) => ask(batch + i + 1))),
      );
    }
    assertEquals(results.filter((r) => r === "timed out").length, 200);
    // The sockets close as the promise settles; give the closes a turn to land.
    await new Promise((r) => setTimeout(r, 50));
    const after = openFds();
    console.log(`upstream: ${before} descriptors before 200 timed-out queries, ${after} after`);
    assert(after <= before + 2, `${before} descriptors before, ${after} after`);
  } finally {
    silent.close();
  }
});

Deno.test("startDnsServer() answers SERVFAIL beyond its UDP queries in flight, and says so once", async () => {
  // An interceptor that holds every query until told to let go: a resolver that never answers.
  const held: Array<() => void> = [];
  const hanging = {
    handle: (query: Uint8Array) =>
      new Promise<Uint8Array>((resolve) => {
        held.push(() => resolve(new Uint8Array()));
        void query;
      }),
  };
  const lines: string[] = [];
  const server = await startDnsServer({
    address: LOOPBACK,
    port: 0,
    interceptor: hanging,
    udpMaxInFlight: 16,
    log: (level, line) => lines.push(`${level} ${line}`),
  });
  const socket = dgram.createSocket("udp4");
  try {
    const answers: Uint8Array[] = [];
    socket.on("message", (msg: Uint8Array) => answers.push(new Uint8Array(msg)));
    for (let i = 0; i < 100; i++) {
      await new Promise<void>((r) =>
        socket.send(
          encodeQuery(`web${i}.default.svc.cluster.local`, "A", 1000 + i),
          server.port,
          LOOPBACK,
          () => r(),
        )
      );
    }
    const deadline = Date.now() + 3000;
    while (answers.length < 84 && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assertEquals(answers.length, 84);
    assertEquals(server.stats.udpInFlight, 16);
    assertEquals(server.stats.udpRefused, 84);
    for (const a of answers) {
      const m = dp.decode(Buffer.from(a));
      assertEquals([m.type, m.rcode, m.questions.length], ["response", "SERVFAIL", 1]);
      assertEquals(m.questions[0].name, `web${m.id - 1000}.default.svc.cluster.local`);
    }
    assertEquals(lines.filter((l) => /in flight/.test(l)), [
      "warn dns: 16 udp queries in flight: answering SERVFAIL to more until they drain",
    ]);
    // The resolver answers again: the burst ends, with one line.
    for (const release of held.splice(0)) release();
    await new Promise((r) => setTimeout(r, 50));
    assertEquals(server.stats.udpInFlight, 0);
    assert(
      lines.includes("info dns: udp queries drained: 84 answered SERVFAIL in the burst"),
      lines.join("\n"),
    );
  } finally {
    socket.close();
    await server.close();
  }
});

Deno.test("startDnsServer() answers a bare header itself, with FORMERR", async () => {
  const { dns } = newInterceptor();
  await withServer(dns, async ({ port }) => {
    const probe = new Uint8Array(12);
    probe[0] = 0x12;
    probe[1] = 0x34;
    const reply = await udpAsk(port, probe);
    assertEquals([...reply], [0x12, 0x34, 0x80, 0x81, 0, 0, 0, 0, 0, 0, 0, 0]);
    assertEquals(dns.stats.queries, 0);
  });
});
