/**
 * The DNS forwarder against a real `dnsmasq` on 127.0.0.1 and a random port
 * (started and stopped by the test, by its pid), directly and through the
 * manager's DNS frames on the `Mux` call: an A record over UDP, a TXT answer too large for
 * 512 bytes that comes back truncated and is fetched again over TCP, the
 * client's ID kept, retries and timeouts.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import dgram from "node:dgram";
import * as dp from "dns-packet";
import { assert, assertEquals, assertMatch, assertRejects } from "../tests/_assert.ts";
import { startManager } from "../tests/_manager.ts";
import { MuxDialer } from "../mod/daemon/mux_dialer.ts";
import { DnsForwarder, DnsForwardError, parseServer } from "../mod/kube/dns_forwarder.ts";

// deno-lint-ignore no-explicit-any
type Any = any;

/** Eight strings of 200 characters: about 1.6 kB of TXT, more than 512 bytes. */
const BIG_TXT = Array.from({ length: 8 }, (_, i) => String.fromCharCode(97 + i).repeat(200));

interface Dnsmasq {
  server: string;
  stop(): Promise<void>;
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

function query(name: string, type: string, id = 0x4242): Uint8Array {
  return new Uint8Array(dp.encode({
    type: "query",
    id,
    flags: dp.RECURSION_DESIRED,
    questions: [{ type, name, class: "IN" }],
  } as Any));
}

function decode(bytes: Uint8Array): Any {
  return dp.decode(Buffer.from(bytes));
}

/** Starts dnsmasq on 127.0.0.1 with the test's records; ready when it answers. */
async function startDnsmasq(): Promise<Dnsmasq> {
  for (let attempt = 0; attempt < 5; attempt++) {
    const port = freePort();
    const child = new Deno.Command("dnsmasq", {
      args: [
        "--keep-in-foreground",
        "--conf-file=/dev/null",
        "--no-resolv",
        "--no-hosts",
        "--pid-file=",
        "--user=root",
        "--bind-interfaces",
        "--listen-address=127.0.0.1",
        `--port=${port}`,
        "--address=/web.shop.svc.cluster.local/198.18.1.2",
        `--txt-record=big.shop.svc.cluster.local,${BIG_TXT.join(",")}`,
      ],
      stdin: "null",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const server = `127.0.0.1:${port}`;
    const stop = async () => {
      try {
        child.kill("SIGTERM");
      } catch {
        // Exited already.
      }
      await child.status;
      await child.stderr.cancel().catch(() => {});
    };
    const probe = new DnsForwarder(server, { timeoutMs: 50, attempts: 1 });
    try {
      for (let i = 0; i < 25; i++) {
        try {
          await probe.resolve(query("web.shop.svc.cluster.local", "A"));
          return { server, stop };
        } catch {
          await new Promise((resolve) => setTimeout(resolve, 40));
        }
      }
    } finally {
      probe.close();
    }
    await stop(); // Probably the port was taken in between: another one.
  }
  throw new Error("dnsmasq did not start");
}

Deno.test("DnsForwarder resolves an A record over UDP and keeps the client's ID", async () => {
  const dnsmasq = await startDnsmasq();
  const forwarder = new DnsForwarder(dnsmasq.server);
  try {
    const answer = decode(
      await forwarder.resolve(query("web.shop.svc.cluster.local", "A", 0xbeef)),
    );
    assertEquals(answer.id, 0xbeef);
    assertEquals(answer.answers.map((a: Any) => [a.type, a.data]), [["A", "198.18.1.2"]]);
    assertEquals(forwarder.tcpFallbacks, 0);
  } finally {
    forwarder.close();
    await dnsmasq.stop();
  }
});

Deno.test("DnsForwarder asks again over TCP when the UDP answer is truncated", async () => {
  const dnsmasq = await startDnsmasq();
  const forwarder = new DnsForwarder(dnsmasq.server);
  try {
    const bytes = await forwarder.resolve(query("big.shop.svc.cluster.local", "TXT", 7));
    assert(bytes.length > 512, `answer of ${bytes.length} bytes`);
    const answer = decode(bytes);
    assertEquals(answer.id, 7);
    assertEquals(answer.flag_tc, false);
    const strings = answer.answers[0].data.map((b: Uint8Array) => new TextDecoder().decode(b));
    assertEquals(strings, BIG_TXT);
    assertEquals(forwarder.tcpFallbacks, 1);
  } finally {
    forwarder.close();
    await dnsmasq.stop();
  }
});

Deno.test("DnsForwarder answers many concurrent queries with the same client ID, each its own", async () => {
  const dnsmasq = await startDnsmasq();
  const forwarder = new DnsForwarder(dnsmasq.server);
  try {
    const names = Array.from(
      { length: 64 },
      (_, i) => i % 2 === 0 ? "web.shop.svc.cluster.local" : `n${i}.example.test`,
    );
    const answers = await Promise.all(names.map((name) => forwarder.resolve(query(name, "A", 1))));
    answers.forEach((bytes, i) => {
      const answer = decode(bytes);
      assertEquals(answer.id, 1);
      assertEquals(answer.questions[0].name, names[i]);
    });
  } finally {
    forwarder.close();
    await dnsmasq.stop();
  }
});

Deno.test("DnsForwarder retries once, then fails with the server named", async () => {
  const silent = dgram.createSocket("udp4");
  let received = 0;
  silent.on("message", () => received++);
  await new Promise<void>((resolve) => silent.bind(0, "127.0.0.1", resolve));
  const server = `127.0.0.1:${silent.address().port}`;
  const forwarder = new DnsForwarder(server, { timeoutMs: 100, attempts: 2 });
  try {
    const error = await assertRejects(
      () => forwarder.resolve(query("web.shop.svc.cluster.local", "A")),
      DnsForwardError,
    );
    assertEquals(error.message, `The DNS server "${server}" did not answer in 2 × 100 ms`);
    assertEquals(received, 2);
    await assertRejects(() => forwarder.resolve(new Uint8Array(5)), RangeError);
  } finally {
    forwarder.close();
    silent.close();
  }
});

Deno.test("DnsForwarder fails at once past maxInFlight, and 60,000 queries in flight find free ids without spinning", async () => {
  const silent = dgram.createSocket("udp4");
  let received = 0;
  silent.on("message", () => received++);
  await new Promise<void>((resolve) => silent.bind(0, "127.0.0.1", resolve));
  const server = `127.0.0.1:${silent.address().port}`;
  const small = new DnsForwarder(server, { timeoutMs: 60_000, maxInFlight: 3 });
  const big = new DnsForwarder(server, { timeoutMs: 60_000, maxInFlight: 60_000, attempts: 1 });
  try {
    const waiting = [1, 2, 3].map(() => small.resolve(query("a.svc", "A")).catch((e) => e));
    const error = await assertRejects(() => small.resolve(query("b.svc", "A")), DnsForwardError);
    assertEquals(error.message, `3 DNS queries are waiting for "${server}" already`);
    assertEquals(small.inFlight, 3);
    small.close();
    await Promise.all(waiting);
    // Ids stay unique while nearly the whole id space is taken.
    const start = performance.now();
    const many = Array.from(
      { length: 60_000 },
      () => big.resolve(query("c.svc", "A")).catch(() => {}),
    );
    const took = performance.now() - start;
    assertEquals(big.inFlight, 60_000);
    assert(took < 5000, `60,000 queries took ${Math.round(took)} ms to send`);
    await assertRejects(() => big.resolve(query("d.svc", "A")), DnsForwardError);
    big.close();
    await Promise.all(many);
  } finally {
    small.close();
    big.close();
    silent.close();
  }
});

Deno.test("parseServer() takes host, host:port and bracketed IPv6", () => {
  assertEquals(parseServer("198.18.128.10"), { host: "198.18.128.10", port: 53 });
  assertEquals(parseServer("127.0.0.1:5353"), { host: "127.0.0.1", port: 5353 });
  assertEquals(parseServer("[fd00::a]:53"), { host: "fd00::a", port: 53 });
  assertEquals(parseServer("fd00::a"), { host: "fd00::a", port: 53 });
  for (const bad of ["dns.example", "1.2.3.4:0", "1.2.3.4:70000", ""]) {
    let threw = false;
    try {
      parseServer(bad);
    } catch (error) {
      threw = error instanceof SyntaxError;
    }
    assert(threw, `"${bad}" accepted`);
  }
});

Deno.test("a DNS frame on the Mux call goes through the manager to the cluster DNS, over TCP when truncated", async () => {
  const dnsmasq = await startDnsmasq();
  const t = await startManager({ dnsUpstream: dnsmasq.server });
  const session = await t.arrive();
  const dialer = new MuxDialer(t.client, { sessionId: () => session });
  try {
    const small = await dialer.resolveDns(query("web.shop.svc.cluster.local", "A", 99));
    const answer = decode(small);
    assertEquals([answer.id, answer.answers[0].data], [99, "198.18.1.2"]);
    const big = await dialer.resolveDns(query("big.shop.svc.cluster.local", "TXT"));
    assertEquals(decode(big).answers[0].data.length, BIG_TXT.length);
    const bad = await assertRejects(() => dialer.resolveDns(new Uint8Array(3)));
    assertMatch(bad.message, /DNS query of 3 bytes is not 12–65535 bytes long/);
    assertEquals(t.manager.stats.dnsAnswered, 2);
  } finally {
    dialer.close();
    await t.close();
    await dnsmasq.stop();
  }
});

Deno.test("a DNS frame fails, naming the server, when the cluster DNS is silent", async () => {
  const silent = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => silent.bind(0, "127.0.0.1", resolve));
  const t = await startManager({
    dnsUpstream: `127.0.0.1:${silent.address().port}`,
    dnsTimeoutMs: 50,
  });
  const session = await t.arrive();
  const dialer = new MuxDialer(t.client, { sessionId: () => session });
  try {
    const error = await assertRejects(() => dialer.resolveDns(query("x.test", "A")));
    assertMatch(error.message, /did not answer in 2 × 50 ms/);
  } finally {
    dialer.close();
    await t.close();
    silent.close();
  }
});
