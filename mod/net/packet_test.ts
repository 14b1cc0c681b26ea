import { assert, assertEquals } from "../../tests/_assert.ts";
import {
  adjustChecksum,
  checksum,
  checksumDelta,
  fold,
  pseudoHeaderSum,
  sum16,
} from "./checksum.ts";
import { decodePacket, newPacket, verifyChecksums } from "./packet.ts";
import { emptyTcpOptions, parseTcpOptions, TcpFlags } from "./tcp.ts";
import { buildEchoReply, buildTcpReset, buildUdp, buildUnreachable } from "./build.ts";
import { FIXTURES } from "./testdata/packets.ts";
import { prng, randomBytes } from "../../tests/_prng.ts";

for (const f of FIXTURES) {
  Deno.test(`decodePacket() decodes the captured "${f.name}" packet`, () => {
    const p = newPacket();
    decodePacket(f.bytes, f.bytes.length, p);
    for (const [field, value] of Object.entries(f.expect)) {
      assertEquals((p as unknown as Record<string, unknown>)[field], value, field);
    }
    assert(verifyChecksums(f.bytes, p), "captured checksums verify");
  });
}

Deno.test("parseTcpOptions() reads MSS, SACK-permitted, timestamps and window scale of a real SYN", () => {
  for (const name of ["tcp4 syn", "tcp6 syn"]) {
    const f = FIXTURES.find((x) => x.name === name)!;
    const p = newPacket();
    decodePacket(f.bytes, f.bytes.length, p);
    const o = emptyTcpOptions();
    assert(parseTcpOptions(f.bytes, p.l4Offset, p.payloadOffset - p.l4Offset, o));
    assert(o.mss > 1000, `mss ${o.mss}`);
    assert(o.sackPermitted);
    assert(o.tsVal >= 0 && o.tsEcr === 0);
    assert(o.windowScale >= 0 && o.windowScale <= 14);
  }
});

const fixture = (name: string) => FIXTURES.find((x) => x.name === name)!.bytes;

Deno.test("decodePacket() returns unknown with a reason for malformed packets", () => {
  const syn = fixture("tcp4 syn");
  const cases: Array<[string, Uint8Array, string]> = [
    ["truncated header", syn.slice(0, 12), "ipv4 short"],
    ["IHL below 5", Uint8Array.from(syn, (b, i) => i === 0 ? 0x44 : b), "ipv4 header length"],
    [
      "total length past the buffer",
      Uint8Array.from(syn, (b, i) => i === 3 ? 0xff : b),
      "ipv4 total length",
    ],
    ["a fragment", Uint8Array.from(syn, (b, i) => i === 6 ? 0x20 : b), "ipv4 fragment"],
    [
      "TCP data offset too big",
      Uint8Array.from(syn, (b, i) => i === 32 ? 0xf0 : b),
      "tcp data offset",
    ],
    ["unknown protocol", Uint8Array.from(syn, (b, i) => i === 9 ? 132 : b), "protocol 132"],
    ["version 5", Uint8Array.from(syn, (b, i) => i === 0 ? 0x55 : b), "ip version"],
  ];
  const udp = fixture("udp4");
  cases.push([
    "UDP length beyond the packet",
    Uint8Array.from(udp, (b, i) => i === 25 ? 0xff : b),
    "udp length",
  ]);
  const v6 = fixture("tcp6 syn");
  // A fragment header (44) before TCP.
  const frag = new Uint8Array(v6.length + 8);
  frag.set(v6.subarray(0, 40));
  frag[6] = 44;
  frag[5] = v6[5]! + 8;
  frag.set([6, 0, 0, 0, 0, 0, 0, 1], 40);
  frag.set(v6.subarray(40), 48);
  cases.push(["an IPv6 fragment", frag, "ipv6 fragment"]);
  for (const [what, bytes, reason] of cases) {
    const p = newPacket();
    assertEquals(decodePacket(bytes, bytes.length, p), "unknown", what);
    assertEquals(p.reason, reason, what);
  }
});

Deno.test("decodePacket() skips IPv6 hop-by-hop and destination options to reach TCP", () => {
  const v6 = fixture("tcp6 syn");
  const out = new Uint8Array(v6.length + 16);
  out.set(v6.subarray(0, 40));
  out[6] = 0; // hop-by-hop
  const len = (v6[4]! << 8 | v6[5]!) + 16;
  out[4] = len >> 8, out[5] = len & 0xff;
  out.set([60, 0, 1, 4, 0, 0, 0, 0], 40); // hop-by-hop → destination options, PadN
  out.set([6, 0, 1, 4, 0, 0, 0, 0], 48); // destination options → TCP
  out.set(v6.subarray(40), 56);
  const p = newPacket();
  assertEquals(decodePacket(out, out.length, p), "tcp");
  assertEquals([p.l4Offset, p.dstPort, p.tcpFlags], [56, 8080, TcpFlags.SYN]);
});

function naiveChecksum(buf: Uint8Array, initial = 0): number {
  let sum = initial;
  for (let i = 0; i < buf.length; i += 2) {
    sum += (buf[i]! << 8) | (buf[i + 1] ?? 0);
    sum = (sum & 0xffff) + (sum >>> 16);
  }
  return ~sum & 0xffff;
}

Deno.test("checksum() agrees with a naive reference on random buffers of every parity", () => {
  const rand = prng(1);
  for (let i = 0; i < 300; i++) {
    const len = i < 20 ? i : Math.floor(rand() * 70000);
    const b = randomBytes(rand, len);
    assertEquals(checksum(b, 0, len), naiveChecksum(b), `length ${len}`);
  }
  // RFC 1071 3: the example words 0001 f203 f4f5 f6f7 sum to ddf2.
  assertEquals(
    fold(sum16(new Uint8Array([0, 1, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]), 0, 8)),
    0xddf2,
  );
});

Deno.test("adjustChecksum() with a precomputed delta equals recomputing after random rewrites", () => {
  const rand = prng(2);
  for (let i = 0; i < 2000; i++) {
    const f = FIXTURES[i % FIXTURES.length]!.bytes;
    const b = f.slice();
    const p = newPacket();
    if (decodePacket(b, b.length, p) !== "tcp" && p.kind !== "udp") continue;
    const csumAt = p.l4Offset + (p.kind === "tcp" ? 16 : 6);
    const before = b.slice(p.srcOffset, p.srcOffset + 2 * p.addressLength);
    const ports = b.slice(p.l4Offset, p.l4Offset + 4);
    const after = randomBytes(rand, before.length), newPorts = randomBytes(rand, 4);
    const delta = checksumDelta(
      Uint8Array.from([...before, ...ports]),
      Uint8Array.from([...after, ...newPorts]),
    );
    b.set(after, p.srcOffset);
    b.set(newPorts, p.l4Offset);
    const c = adjustChecksum((b[csumAt]! << 8) | b[csumAt + 1]!, delta);
    b[csumAt] = c >> 8, b[csumAt + 1] = c & 0xff;
    if (p.version === 4) {
      const ipc = adjustChecksum((b[10]! << 8) | b[11]!, checksumDelta(before, after));
      b[10] = ipc >> 8, b[11] = ipc & 0xff;
    }
    const q = newPacket();
    decodePacket(b, b.length, q);
    assert(verifyChecksums(b, q), `iteration ${i}`);
    // And against a full recomputation of the upper-layer checksum.
    const saved = [b[csumAt]!, b[csumAt + 1]!];
    b[csumAt] = b[csumAt + 1] = 0;
    let full = checksum(
      b,
      p.l4Offset,
      p.length,
      pseudoHeaderSum(b, p.srcOffset, p.addressLength, p.protocol, p.length - p.l4Offset),
    );
    if (p.kind === "udp" && full === 0) full = 0xffff;
    assert(
      full === ((saved[0]! << 8) | saved[1]!) ||
        (full === 0xffff && saved[0] === 0 && saved[1] === 0) ||
        (full === 0 && saved[0] === 0xff && saved[1] === 0xff),
      `iteration ${i}`,
    );
  }
});

Deno.test("builders emit packets that decode and verify, for IPv4 and IPv6", () => {
  const out = new Uint8Array(2000);
  for (const name of ["tcp4 syn", "tcp6 syn"]) {
    const syn = fixture(name);
    const p = newPacket();
    decodePacket(syn, syn.length, p);
    const n = buildTcpReset(syn, p, out);
    const r = newPacket();
    assertEquals(decodePacket(out, n, r), "tcp");
    assertEquals([r.tcpFlags, r.seq, r.ack, r.srcPort], [
      TcpFlags.RST | TcpFlags.ACK,
      0,
      (p.seq + 1) >>> 0,
      p.dstPort,
    ]);
    assert(verifyChecksums(out, r));
    const m = buildUnreachable(syn, p, out);
    const u = newPacket();
    assertEquals(decodePacket(out, m, u), "icmp");
    assert(verifyChecksums(out, u));
  }
  for (const name of ["icmp4 echo", "icmp6 echo"]) {
    const req = fixture(name);
    const p = newPacket();
    decodePacket(req, req.length, p);
    const n = buildEchoReply(req, p, out);
    const r = newPacket();
    assertEquals(decodePacket(out, n, r), "icmp");
    assertEquals([r.srcPort, r.seq, r.payloadLength], [p.srcPort, p.seq, p.payloadLength]);
    assert(verifyChecksums(out, r));
  }
  const rand = prng(3);
  for (let i = 0; i < 200; i++) {
    const v6 = i % 2 === 1;
    const src = randomBytes(rand, v6 ? 16 : 4), dst = randomBytes(rand, v6 ? 16 : 4);
    const payload = randomBytes(rand, Math.floor(rand() * 1400));
    const n = buildUdp(src, i, dst, 53, payload, out);
    const r = newPacket();
    assertEquals(decodePacket(out, n, r), "udp");
    assertEquals([r.srcPort, r.dstPort, r.payloadLength], [i, 53, payload.length]);
    assertEquals(out.subarray(r.payloadOffset, r.payloadOffset + r.payloadLength), payload);
    assert(verifyChecksums(out, r));
  }
});

Deno.test("decodePacket() never throws on random bytes or mutated captures, and keeps offsets in bounds", () => {
  const rand = prng(4);
  const p = newPacket();
  const check = (b: Uint8Array) => {
    const kind = decodePacket(b, b.length, p);
    if (kind !== "unknown") {
      assert(p.payloadOffset + p.payloadLength <= p.length && p.length <= b.length);
      assert(p.l4Offset >= 20);
    }
  };
  for (let i = 0; i < 50_000; i++) {
    const b = randomBytes(rand, Math.floor(rand() * 200));
    if (b.length && rand() < 0.5) b[0] = rand() < 0.5 ? 0x45 : 0x60;
    check(b);
  }
  for (let i = 0; i < 50_000; i++) {
    const f = FIXTURES[i % FIXTURES.length]!.bytes;
    const b = f.slice(0, Math.floor(rand() * (f.length + 1)));
    for (let k = 0; k < 3 && b.length; k++) {
      b[Math.floor(rand() * b.length)]! ^= 1 << Math.floor(rand() * 8);
    }
    check(b);
  }
});
