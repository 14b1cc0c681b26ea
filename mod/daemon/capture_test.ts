import { assert, assertEquals, assertThrows } from "../../tests/_assert.ts";
import { parseAddress } from "../net/address.ts";
import { buildUdp } from "../net/build.ts";
import { newPacket } from "../net/packet.ts";
import { pcapRecords } from "../net/pcap.ts";
import type { PacketTap } from "../net/router.ts";
import { Capture, CaptureBusyError, CaptureHub, matchesFilter, MAX_CAPTURES } from "./capture.ts";

function udp(src: string, sport: number, dst: string, dport: number, size = 10): Uint8Array {
  const out = new Uint8Array(28 + size + 40);
  const n = buildUdp(
    parseAddress(src)!,
    sport,
    parseAddress(dst)!,
    dport,
    new Uint8Array(size),
    out,
  );
  return out.slice(0, n);
}

function icmpish(src: string, dst: string): Uint8Array {
  // An ICMP echo request header, enough for the decoder.
  const p = new Uint8Array(28);
  p.set([0x45, 0, 0, 28, 0, 0, 0, 0, 64, 1]);
  p.set(parseAddress(src)!, 12);
  p.set(parseAddress(dst)!, 16);
  let sum = 0;
  for (let i = 0; i < 20; i += 2) sum += (p[i]! << 8) | p[i + 1]!;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >> 16);
  const c = ~sum & 0xffff;
  p[10] = c >> 8, p[11] = c & 0xff;
  p[20] = 8;
  return p;
}

Deno.test("matchesFilter() keeps packets from or to a host and a TCP/UDP port", () => {
  const scratch = newPacket();
  const a = udp("198.18.0.5", 40000, "198.19.0.10", 53);
  const host = (h: string) => ({ hosts: [parseAddress(h)!] });
  assert(matchesFilter(a, {}, scratch));
  assert(matchesFilter(a, host("198.19.0.10"), scratch), "the destination");
  assert(matchesFilter(a, host("198.18.0.5"), scratch), "the source");
  assert(!matchesFilter(a, host("198.19.0.11"), scratch));
  assert(!matchesFilter(a, host("2001:2::1"), scratch), "another family");
  assert(matchesFilter(a, { port: 53 }, scratch));
  assert(matchesFilter(a, { port: 40000 }, scratch));
  assert(!matchesFilter(a, { port: 80 }, scratch));
  assert(matchesFilter(a, { ...host("198.19.0.10"), port: 53 }, scratch));
  assert(!matchesFilter(a, { ...host("198.19.0.10"), port: 80 }, scratch));
  const ping = icmpish("198.18.0.5", "198.19.0.10");
  assert(matchesFilter(ping, host("198.19.0.10"), scratch));
  assert(!matchesFilter(ping, { port: 0 }, scratch), "ICMP has no port");
  assert(matchesFilter(new Uint8Array([1, 2, 3]), {}, scratch), "no filter keeps all");
  assert(!matchesFilter(new Uint8Array([1, 2, 3]), { port: 53 }, scratch));
});

Deno.test("Capture queues filtered packets as pcap records, with the clock and the snap length", async () => {
  let now = 1_700_000_000_000.25;
  const c = new Capture({ snaplen: 100, port: 53, now: () => now });
  c.offer(udp("198.18.0.5", 40000, "198.19.0.10", 53, 200));
  c.offer(udp("198.18.0.5", 40000, "198.19.0.10", 80));
  now += 1000;
  c.offer(udp("198.19.0.10", 53, "198.18.0.5", 40000, 4));
  assertEquals(c.counts, { captured: 2, dropped: 0, delivered: 0 });
  const batch = await c.next(1 << 20);
  assertEquals(batch!.count, 2);
  const records = pcapRecords(batch!.records, 100);
  assertEquals(records.map((r) => [r.seconds, r.micros, r.data.length, r.originalLength]), [
    [1_700_000_000, 250, 100, 228],
    [1_700_000_001, 250, 32, 32],
  ]);
  assertEquals(c.counts.delivered, 2);
});

Deno.test("Capture drops, and counts, what a slow reader leaves no room for", async () => {
  const c = new Capture({ snaplen: 65535, queuePackets: 3, queueBytes: 1 << 20 });
  for (let i = 0; i < 10; i++) c.offer(udp("198.18.0.5", 40000 + i, "198.19.0.10", 53));
  assertEquals(c.counts, { captured: 3, dropped: 7, delivered: 0 });
  // Bytes bound too: records of 16 + 38 bytes, 100 bytes of room: one fits.
  const small = new Capture({ snaplen: 65535, queueBytes: 100 });
  for (let i = 0; i < 5; i++) small.offer(udp("198.18.0.5", 40000, "198.19.0.10", 53));
  assertEquals([small.counts.captured, small.counts.dropped], [1, 4]);
  // Once read, there is room again.
  const batch = await c.next(1 << 20);
  assertEquals(batch!.count, 3);
  c.offer(udp("198.18.0.5", 40100, "198.19.0.10", 53));
  assertEquals(c.counts.captured, 4);
});

Deno.test("Capture.next() batches within the size asked, waits, and ends after the last batch", async () => {
  const c = new Capture({ snaplen: 65535 });
  const packet = udp("198.18.0.5", 40000, "198.19.0.10", 53); // a 54-byte record
  for (let i = 0; i < 5; i++) c.offer(packet);
  assertEquals((await c.next(120))!.count, 2);
  assertEquals((await c.next(10))!.count, 1, "at least one record, however small the limit");
  assertEquals((await c.next(1 << 20))!.count, 2);
  const waiting = c.next(1 << 20);
  c.offer(packet);
  assertEquals((await waiting)!.count, 1);
  const last = c.next(1 << 20);
  c.stop("stopped");
  assertEquals(await last, null);
  c.offer(packet);
  assertEquals(c.counts.captured, 6, "nothing is taken after the end");
  assertEquals(c.ended, "stopped");
});

Deno.test("Capture stops by itself after count packets", async () => {
  const reasons: string[] = [];
  const c = new Capture({ snaplen: 65535, count: 2 }, (r) => reasons.push(r));
  for (let i = 0; i < 4; i++) c.offer(udp("198.18.0.5", 40000, "198.19.0.10", 53));
  assertEquals([c.counts.captured, c.ended, reasons], [2, "count", ["count"]]);
  assertEquals((await c.next(1 << 20))!.count, 2);
  assertEquals(await c.next(1 << 20), null);
});

Deno.test("CaptureHub puts the tap on while captures run and refuses more than the most", () => {
  const router: { tap: PacketTap | null } = { tap: null };
  const hub = new CaptureHub(router);
  const a = hub.start({ snaplen: 65535 });
  assert(router.tap !== null);
  const b = hub.start({ snaplen: 65535, port: 53 });
  router.tap!(udp("198.18.0.5", 40000, "198.19.0.10", 80));
  assertEquals([a.counts.captured, b.counts.captured], [1, 0]);
  const more = Array.from({ length: MAX_CAPTURES - 2 }, () => hub.start({ snaplen: 96 }));
  assertThrows(() => hub.start({ snaplen: 96 }), CaptureBusyError);
  a.stop("stopped");
  assertEquals(hub.running, MAX_CAPTURES - 1);
  hub.stopAll("disconnected");
  assertEquals([hub.running, router.tap, b.ended, more[0]!.ended], [
    0,
    null,
    "disconnected",
    "disconnected",
  ]);
});
