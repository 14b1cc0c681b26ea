import { assert, assertEquals } from "../../tests/_assert.ts";
import { formatAddress, parseAddress } from "./address.ts";
import { checksum, pseudoHeaderSum } from "./checksum.ts";
import type {
  ByteStream,
  DatagramFlow,
  Dialer,
  DialRequest,
  DialResult,
  PingRequest,
} from "./dialer.ts";
import { Icmp4, Proto } from "./icmp.ts";
import { emitIpv4 } from "./ipv4.ts";
import { emitIpv6 } from "./ipv6.ts";
import { decodePacket, newPacket, type Packet, verifyChecksums } from "./packet.ts";
import { type PacketDevice, Router, type RouterOptions } from "./router.ts";
import { TcpFlags, writeU32 } from "./tcp.ts";
import { buildUdp } from "./build.ts";

const APP = "240.0.0.1", LISTEN = "240.0.0.1", LPORT = 4000, DST = "198.18.1.2";
const PEERS = ["240.0.0.16", "240.0.0.17"];

/** An in-memory device: `inject` queues packets for the router, `written` collects its output. */
class FakeDevice implements PacketDevice {
  mtu = 65535;
  queue: Uint8Array[] = [];
  written: Uint8Array[] = [];
  closed = false;
  #wake: (() => void) | null = null;
  inject(p: Uint8Array) {
    this.queue.push(p);
    this.#wake?.();
  }
  readSync(buf: Uint8Array): number {
    if (this.closed) return -1;
    const p = this.queue.shift();
    if (!p) return 0;
    buf.set(p);
    return p.length;
  }
  readable(): Promise<boolean> {
    if (this.closed) return Promise.resolve(false);
    if (this.queue.length) return Promise.resolve(true);
    return new Promise((r) => this.#wake = () => r(!this.closed));
  }
  writeSync(p: Uint8Array): boolean {
    this.written.push(p.slice());
    return true;
  }
  close() {
    this.closed = true;
    this.#wake?.();
  }
  take(): Packet & { bytes: Uint8Array } {
    const bytes = this.written.shift();
    assert(bytes, "expected a written packet");
    const p = newPacket();
    decodePacket(bytes, bytes.length, p);
    return Object.assign(p, { bytes });
  }
}

interface Tcp {
  src: string;
  dst: string;
  sport: number;
  dport: number;
  flags: number;
  seq?: number;
  ack?: number;
  payload?: Uint8Array;
}

function tcp(t: Tcp): Uint8Array {
  const src = parseAddress(t.src)!, dst = parseAddress(t.dst)!;
  const payload = t.payload ?? new Uint8Array();
  const l4len = 20 + payload.length;
  const v4 = src.length === 4;
  const out = new Uint8Array((v4 ? 20 : 40) + l4len);
  const hl = v4
    ? emitIpv4({ src, dst, protocol: Proto.TCP, payloadLength: l4len }, out)
    : emitIpv6({ src, dst, protocol: Proto.TCP, payloadLength: l4len }, out);
  out[hl] = t.sport >> 8, out[hl + 1] = t.sport & 0xff;
  out[hl + 2] = t.dport >> 8, out[hl + 3] = t.dport & 0xff;
  writeU32(out, hl + 4, t.seq ?? 1000);
  writeU32(out, hl + 8, t.ack ?? 0);
  out[hl + 12] = 5 << 4;
  out[hl + 13] = t.flags;
  out[hl + 14] = 0xff, out[hl + 15] = 0xff;
  out.set(payload, hl + 20);
  const c = checksum(
    out,
    hl,
    out.length,
    pseudoHeaderSum(out, v4 ? 12 : 8, src.length, Proto.TCP, l4len),
  );
  out[hl + 16] = c >> 8, out[hl + 17] = c & 0xff;
  return out;
}

function icmpEcho(src: string, dst: string, id: number, seq: number, data: Uint8Array): Uint8Array {
  const s = parseAddress(src)!, d = parseAddress(dst)!;
  const out = new Uint8Array(20 + 8 + data.length);
  emitIpv4({ src: s, dst: d, protocol: Proto.ICMP, payloadLength: 8 + data.length }, out);
  out[20] = Icmp4.ECHO_REQUEST;
  out[24] = id >> 8, out[25] = id & 0xff, out[26] = seq >> 8, out[27] = seq & 0xff;
  out.set(data, 28);
  const c = checksum(out, 20, out.length);
  out[22] = c >> 8, out[23] = c & 0xff;
  return out;
}

type Pending<T> = { req: DialRequest; resolve: (r: DialResult<T>) => void };

/** A dialer whose answers the test gives by hand. */
class ManualDialer implements Dialer {
  tcp: Pending<ByteStream>[] = [];
  udp: Array<Pending<DatagramFlow> & { deliver: (p: Uint8Array) => void }> = [];
  pings: Array<{ req: PingRequest; resolve: (r: DialResult<void>) => void }> = [];
  dialTcp(req: DialRequest) {
    return new Promise<DialResult<ByteStream>>((resolve) => this.tcp.push({ req, resolve }));
  }
  dialUdp(req: DialRequest, deliver: (p: Uint8Array) => void) {
    return new Promise<DialResult<DatagramFlow>>((resolve) =>
      this.udp.push({ req, resolve, deliver })
    );
  }
  ping(req: PingRequest) {
    return new Promise<DialResult<void>>((resolve) => this.pings.push({ req, resolve }));
  }
}

function setup(extra: Partial<RouterOptions> = {}) {
  const device = new FakeDevice();
  const dialer = new ManualDialer();
  let now = 1_000_000;
  const router = new Router({
    device,
    dialer,
    ipv4: { listen: LISTEN, listenPort: LPORT, peers: PEERS },
    ipv6: { listen: "2001:2::1", listenPort: LPORT, peers: ["2001:2::10"] },
    now: () => now,
    ...extra,
  });
  return { device, dialer, router, tick: (ms: number) => now += ms, now: () => now };
}

const tick = () => new Promise((r) => setTimeout(r, 0));

function nullStream(): ByteStream & { received: Uint8Array[] } {
  const received: Uint8Array[] = [];
  return {
    received,
    readable: new ReadableStream({
      start(c) {
        c.close();
      },
    }),
    writable: new WritableStream({
      write(c) {
        received.push(c);
      },
    }),
  };
}

Deno.test("Router holds a SYN until the dial succeeds, then re-injects it toward the listener", async () => {
  const { device, dialer, router } = setup();
  const syn = tcp({ src: APP, dst: DST, sport: 40000, dport: 80, flags: TcpFlags.SYN, seq: 7 });
  router.handlePacket(syn, syn.length);
  assertEquals(device.written.length, 0);
  assertEquals(dialer.tcp.length, 1);
  assertEquals(dialer.tcp[0]!.req, {
    source: { address: APP, port: 40000 },
    destination: { address: DST, port: 80 },
  });
  // A retransmitted SYN while dialing is held too, and not dialed again.
  router.handlePacket(syn.slice(), syn.length);
  assertEquals(dialer.tcp.length, 1);
  assertEquals(router.stats.dropped["tcp syn held while dialing"], 1);

  dialer.tcp[0]!.resolve({ ok: true, value: nullStream() });
  await tick();
  const out = device.take();
  assertEquals(out.kind, "tcp");
  assertEquals(out.bytes.subarray(12, 16), parseAddress("240.0.0.16"));
  assertEquals(out.bytes.subarray(16, 20), parseAddress(LISTEN));
  assertEquals([out.srcPort, out.dstPort, out.seq, out.tcpFlags], [1024, LPORT, 7, TcpFlags.SYN]);
  assert(verifyChecksums(out.bytes, out), "checksums of the rewritten SYN");
});

Deno.test("Router translates both directions with correct checksums", async () => {
  const { device, dialer, router } = setup();
  const syn = tcp({ src: APP, dst: DST, sport: 40001, dport: 443, flags: TcpFlags.SYN });
  router.handlePacket(syn, syn.length);
  dialer.tcp[0]!.resolve({ ok: true, value: nullStream() });
  await tick();
  const fwd = device.take();
  // The kernel's SYN-ACK from the listener to the fake peer goes back to the app as from DST:443.
  const synAck = tcp({
    src: LISTEN,
    dst: "240.0.0.16",
    sport: LPORT,
    dport: fwd.srcPort,
    flags: TcpFlags.SYN | TcpFlags.ACK,
    seq: 555,
    ack: 1001,
  });
  router.handlePacket(synAck, synAck.length);
  const back = device.take();
  assertEquals(back.bytes.subarray(12, 16), parseAddress(DST));
  assertEquals(back.bytes.subarray(16, 20), parseAddress(APP));
  assertEquals([back.srcPort, back.dstPort, back.seq, back.ack], [443, 40001, 555, 1001]);
  assert(verifyChecksums(back.bytes, back));
  // Data from the app with a payload of odd length.
  const data = tcp({
    src: APP,
    dst: DST,
    sport: 40001,
    dport: 443,
    flags: TcpFlags.ACK | TcpFlags.PSH,
    payload: new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n!"),
  });
  router.handlePacket(data, data.length);
  const d = device.take();
  assertEquals([d.srcPort, d.dstPort, d.payloadLength], [1024, LPORT, 19]);
  assert(verifyChecksums(d.bytes, d));
});

Deno.test("Router answers a refused dial with a reset, an unreachable one with ICMP, a timeout with silence", async () => {
  const { device, dialer, router } = setup();
  for (const [port, reason] of [[81, "refused"], [82, "unreachable"], [83, "timeout"]] as const) {
    const syn = tcp({
      src: APP,
      dst: DST,
      sport: 41000 + port,
      dport: port,
      flags: TcpFlags.SYN,
      seq: 99,
    });
    router.handlePacket(syn, syn.length);
    dialer.tcp.at(-1)!.resolve({ ok: false, reason });
  }
  await tick();
  const rst = device.take();
  assertEquals(rst.kind, "tcp");
  assertEquals([rst.tcpFlags, rst.seq, rst.ack, rst.srcPort, rst.dstPort], [
    TcpFlags.RST | TcpFlags.ACK,
    0,
    100,
    81,
    41081,
  ]);
  assert(verifyChecksums(rst.bytes, rst));
  const icmp = device.take();
  assertEquals([icmp.kind, icmp.icmpType, icmp.icmpCode], [
    "icmp",
    Icmp4.DEST_UNREACHABLE,
    Icmp4.HOST_UNREACHABLE,
  ]);
  assert(verifyChecksums(icmp.bytes, icmp));
  assertEquals(device.written.length, 0, "a timed-out dial writes nothing");
  assertEquals(router.stats.dialFailures, {
    refused: 1,
    unreachable: 1,
    timeout: 1,
    prohibited: 0,
    "nat exhausted": 0,
  });
  assertEquals(router.stats.natEntries, 0);
});

Deno.test("Router resets a segment that belongs to no connection and ignores a stray reset", () => {
  const { device, router } = setup();
  const ack = tcp({ src: APP, dst: DST, sport: 42000, dport: 80, flags: TcpFlags.ACK, ack: 5000 });
  router.handlePacket(ack, ack.length);
  const rst = device.take();
  assertEquals([rst.tcpFlags, rst.seq], [TcpFlags.RST, 5000]);
  const stray = tcp({ src: APP, dst: DST, sport: 42000, dport: 80, flags: TcpFlags.RST });
  router.handlePacket(stray, stray.length);
  assertEquals(device.written.length, 0);
});

Deno.test("Router adds peer addresses as NAT ports run out, then refuses with a reset", async () => {
  const { device, dialer, router } = setup({ natPorts: [2000, 2001] });
  for (let i = 0; i < 5; i++) {
    const syn = tcp({ src: APP, dst: DST, sport: 43000 + i, dport: 80, flags: TcpFlags.SYN });
    router.handlePacket(syn, syn.length);
  }
  assertEquals(dialer.tcp.length, 4);
  for (const d of dialer.tcp) d.resolve({ ok: true, value: nullStream() });
  const rst = device.take();
  assertEquals(rst.tcpFlags & TcpFlags.RST, TcpFlags.RST);
  await tick();
  const used = device.written.map((b) => {
    const p = newPacket();
    decodePacket(b, b.length, p);
    return `${b.subarray(12, 16).join(".")}:${p.srcPort}`;
  });
  assertEquals(used.sort(), [
    "240.0.0.16:2000",
    "240.0.0.16:2001",
    "240.0.0.17:2000",
    "240.0.0.17:2001",
  ]);
  assertEquals(router.stats.dialFailures["nat exhausted"], 1);
  assertEquals(router.stats.natPeersInUse, 2);
});

Deno.test("Router rests a released NAT port before reuse and expires closed entries", async () => {
  const { device, dialer, router, tick: advance } = setup({
    natPorts: [3000, 3000],
    natCooldownMs: 60_000,
    closeLingerMs: 5_000,
  });
  const open = async (sport: number) => {
    const syn = tcp({ src: APP, dst: DST, sport, dport: 80, flags: TcpFlags.SYN });
    router.handlePacket(syn, syn.length);
    dialer.tcp.at(-1)?.resolve({ ok: true, value: nullStream() });
    await tick();
  };
  await open(44000);
  device.take();
  // FIN from the app, FIN from the kernel side: the connection is closed.
  const fin = tcp({
    src: APP,
    dst: DST,
    sport: 44000,
    dport: 80,
    flags: TcpFlags.FIN | TcpFlags.ACK,
  });
  router.handlePacket(fin, fin.length);
  const finBack = tcp({
    src: LISTEN,
    dst: "240.0.0.16",
    sport: LPORT,
    dport: 3000,
    flags: TcpFlags.FIN | TcpFlags.ACK,
  });
  router.handlePacket(finBack, finBack.length);
  assertEquals(device.written.length, 2, "FINs are translated");
  device.written.length = 0;
  advance(6_000);
  assertEquals(router.sweep(), 1);
  assertEquals(router.stats.natEntries, 0);
  // Port 3000 on the first peer rests; the next connection takes the second peer.
  await open(44001);
  assertEquals(device.take().bytes.subarray(12, 16), parseAddress("240.0.0.17"));
  // After the rest, the first peer's port is free again.
  advance(61_000);
  await open(44002);
  assertEquals(device.take().bytes.subarray(12, 16), parseAddress("240.0.0.16"));
});

/**
 * Opens a connection from `sport` (its dial answered) and resets it from the
 * kernel's side; returns the SYN, to send again, and the reset as translated.
 */
async function openThenReset(t: ReturnType<typeof setup>, sport: number) {
  const syn = tcp({ src: APP, dst: DST, sport, dport: 80, flags: TcpFlags.SYN });
  t.router.handlePacket(syn, syn.length);
  t.dialer.tcp.at(-1)!.resolve({ ok: true, value: nullStream() });
  await tick();
  const nat = t.device.take();
  const rst = tcp({
    src: LISTEN,
    dst: "240.0.0.16",
    sport: LPORT,
    dport: nat.srcPort,
    flags: TcpFlags.RST,
  });
  t.router.handlePacket(rst, rst.length);
  return { syn, reset: t.device.take() };
}

Deno.test("Router treats a reset from either side as the end and a new SYN as a new connection", async () => {
  const t = setup();
  const { dialer, router } = t;
  const { syn, reset } = await openThenReset(t, 45000);
  assertEquals(reset.tcpFlags, TcpFlags.RST);
  router.handlePacket(syn.slice(), syn.length);
  assertEquals(dialer.tcp.length, 2, "the same 4-tuple dials again");
});

Deno.test("Router rests the port of a closed 4-tuple reused by a new SYN for the cooldown only", async () => {
  const t = setup({ natPorts: [3000, 3000], natCooldownMs: 60_000 });
  const { device, dialer, router, tick: advance } = t;
  const { syn } = await openThenReset(t, 47000);
  // The same 4-tuple again: the old entry's port (240.0.0.16:3000) rests.
  router.handlePacket(syn.slice(), syn.length);
  dialer.tcp[1]!.resolve({ ok: true, value: nullStream() });
  await tick();
  assertEquals(device.take().bytes.subarray(12, 16), parseAddress("240.0.0.17"));
  // After the cooldown the first peer's port serves again.
  advance(61_000);
  const other = tcp({ src: APP, dst: DST, sport: 47001, dport: 80, flags: TcpFlags.SYN });
  router.handlePacket(other, other.length);
  dialer.tcp[2]!.resolve({ ok: true, value: nullStream() });
  await tick();
  assertEquals(device.take().bytes.subarray(12, 16), parseAddress("240.0.0.16"));
});

Deno.test("Router joins an accepted socket to its dialed stream, and refuses an unknown one", async () => {
  const { device, dialer, router } = setup();
  const syn = tcp({ src: APP, dst: DST, sport: 46000, dport: 80, flags: TcpFlags.SYN });
  router.handlePacket(syn, syn.length);
  const remote = new TransformStream<Uint8Array, Uint8Array>();
  const remoteIn: Uint8Array[] = [];
  dialer.tcp[0]!.resolve({
    ok: true,
    value: {
      readable: remote.readable,
      writable: new WritableStream({ write: (c) => void remoteIn.push(c) }),
    },
  });
  await tick();
  const nat = device.take();
  const local = nullStream();
  const fromApp = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(new TextEncoder().encode("ping"));
      c.close();
    },
  });
  const done = router.acceptTcp("240.0.0.16", nat.srcPort, {
    readable: fromApp,
    writable: local.writable,
  });
  const w = remote.writable.getWriter();
  await w.write(new TextEncoder().encode("pong"));
  await w.close();
  assertEquals(await done, true);
  assertEquals(new TextDecoder().decode(remoteIn[0]), "ping");
  assertEquals(new TextDecoder().decode(local.received[0]), "pong");
  assertEquals(router.stats.tcpTotal, 1);
  assertEquals(await router.acceptTcp("240.0.0.16", 9, nullStream()), false);
});

Deno.test("Router carries UDP both ways and closes idle flows", async () => {
  const { device, dialer, router, tick: advance } = setup({ udpIdleMs: 30_000 });
  const src = parseAddress(APP)!, dst = parseAddress(DST)!;
  const out = new Uint8Array(200);
  const n = buildUdp(src, 5353, dst, 53, new TextEncoder().encode("q1"), out);
  router.handlePacket(out.slice(0, n), n);
  router.handlePacket(out.slice(0, n), n); // queued while dialing
  const sent: string[] = [];
  let closed = false;
  dialer.udp[0]!.resolve({
    ok: true,
    value: {
      send: (p) => void sent.push(new TextDecoder().decode(p)),
      close: () => void (closed = true),
    },
  });
  await tick();
  assertEquals(sent, ["q1", "q1"]);
  dialer.udp[0]!.deliver(new TextEncoder().encode("answer"));
  const reply = device.take();
  assertEquals([reply.kind, reply.srcPort, reply.dstPort], ["udp", 53, 5353]);
  assertEquals(reply.bytes.subarray(12, 16), dst);
  assert(verifyChecksums(reply.bytes, reply));
  assertEquals(router.stats.udpFlows, 1);
  advance(31_000);
  router.sweep();
  assert(closed, "the idle flow was closed");
  assertEquals(router.stats.udpFlows, 0);
});

Deno.test("Router keeps at most udpMaxFlows UDP flows, closing the least recently used", async () => {
  const { dialer, router, tick: advance } = setup({ udpMaxFlows: 16 });
  const src = parseAddress(APP)!, dst = parseAddress(DST)!;
  const out = new Uint8Array(200);
  const closed: number[] = [];
  const send = (port: number) => {
    const n = buildUdp(src, port, dst, 53, new TextEncoder().encode("q"), out);
    router.handlePacket(out.slice(0, n), n);
  };
  for (let port = 20_000; port < 20_016; port++) {
    send(port);
    advance(10);
  }
  for (const [i, d] of dialer.udp.entries()) {
    d.resolve({ ok: true, value: { send: () => {}, close: () => void closed.push(20_000 + i) } });
  }
  await tick();
  assertEquals(router.stats.udpFlows, 16);
  send(20_000); // the oldest flow is used again: it is no longer the least recent
  advance(10);
  send(30_000); // a new flow: the two least recently used (an eighth of 16) make room
  assertEquals(closed, [20_001, 20_002]);
  assertEquals(router.stats.udpFlows, 15);
  assertEquals(router.stats.udpEvicted, 2);
  assertEquals(dialer.udp.length, 17);
});

Deno.test("Router answers a UDP flow the far side refused with ICMP port unreachable", async () => {
  const { device, dialer, router } = setup();
  const out = new Uint8Array(100);
  const n = buildUdp(parseAddress(APP)!, 5000, parseAddress(DST)!, 9, new Uint8Array([1]), out);
  router.handlePacket(out.slice(0, n), n);
  dialer.udp[0]!.resolve({ ok: false, reason: "refused" });
  await tick();
  const e = device.take();
  assertEquals([e.icmpType, e.icmpCode], [Icmp4.DEST_UNREACHABLE, Icmp4.PORT_UNREACHABLE]);
});

Deno.test("Router answers an echo request through the dialer", async () => {
  const { device, dialer, router } = setup();
  const req = icmpEcho(APP, DST, 77, 3, new Uint8Array([1, 2, 3, 4, 5]));
  router.handlePacket(req, req.length);
  assertEquals(dialer.pings[0]!.req.payload, new Uint8Array([1, 2, 3, 4, 5]));
  dialer.pings[0]!.resolve({ ok: true, value: undefined });
  await tick();
  const rep = device.take();
  assertEquals([rep.icmpType, rep.srcPort, rep.seq, rep.payloadLength], [
    Icmp4.ECHO_REPLY,
    77,
    3,
    5,
  ]);
  assertEquals(rep.bytes.subarray(12, 16), parseAddress(DST));
  assert(verifyChecksums(rep.bytes, rep));
});

Deno.test("Router translates IPv6 TCP and carries IPv6 UDP", async () => {
  const { device, dialer, router } = setup();
  const app6 = "2001:2::1", dst6 = "2001:2:0:1::80";
  const syn = tcp({ src: app6, dst: dst6, sport: 47000, dport: 80, flags: TcpFlags.SYN });
  router.handlePacket(syn, syn.length);
  assertEquals(dialer.tcp[0]!.req.destination, { address: dst6, port: 80 });
  dialer.tcp[0]!.resolve({ ok: true, value: nullStream() });
  await tick();
  const fwd = device.take();
  assertEquals([fwd.version, fwd.srcPort, fwd.dstPort], [6, 1024, LPORT]);
  assertEquals(fwd.bytes.subarray(8, 24), parseAddress("2001:2::10"));
  assert(verifyChecksums(fwd.bytes, fwd));
  const synAck = tcp({
    src: "2001:2::1",
    dst: "2001:2::10",
    sport: LPORT,
    dport: 1024,
    flags: TcpFlags.SYN | TcpFlags.ACK,
  });
  router.handlePacket(synAck, synAck.length);
  const back = device.take();
  assertEquals(back.bytes.subarray(8, 24), parseAddress(dst6));
  assert(verifyChecksums(back.bytes, back));

  const out = new Uint8Array(200);
  const n = buildUdp(parseAddress(app6)!, 6000, parseAddress(dst6)!, 53, new Uint8Array([9]), out);
  router.handlePacket(out.slice(0, n), n);
  dialer.udp[0]!.resolve({ ok: true, value: { send() {}, close() {} } });
  await tick();
  dialer.udp[0]!.deliver(new Uint8Array([8, 8]));
  const r = device.take();
  assertEquals([r.version, r.kind, r.srcPort, r.payloadLength], [6, "udp", 53, 2]);
  assert(verifyChecksums(r.bytes, r));
});

Deno.test("Router counts and drops malformed packets without throwing", () => {
  const { device, router } = setup();
  for (
    const bad of [
      new Uint8Array([0x45, 0, 0]),
      new Uint8Array(40).fill(0xff),
      new Uint8Array([0x60]),
    ]
  ) {
    router.handlePacket(bad, bad.length);
  }
  assertEquals(device.written.length, 0);
  assertEquals(router.stats.packetsIn, 3);
  assert(Object.values(router.stats.dropped).reduce((a, b) => a + b, 0) === 3);
});

Deno.test("Router.run() drains the device and ends when it closes", async () => {
  const { device, dialer, router } = setup();
  const done = router.run();
  device.inject(tcp({ src: APP, dst: DST, sport: 48000, dport: 80, flags: TcpFlags.SYN }));
  device.inject(new Uint8Array([1, 2, 3]));
  await tick();
  await tick();
  assertEquals(dialer.tcp.length, 1);
  assertEquals(router.stats.packetsIn, 2);
  router.close();
  device.close();
  await done;
});

Deno.test("Router.flows() lists each connection and flow with its state, bytes and rate", async () => {
  const { device, dialer, router, tick: advance, now } = setup();
  const syn = tcp({ src: APP, dst: DST, sport: 47000, dport: 80, flags: TcpFlags.SYN });
  router.handlePacket(syn, syn.length);
  const udp = new Uint8Array(100);
  const n = buildUdp(parseAddress(APP)!, 5400, parseAddress(DST)!, 53, new Uint8Array(30), udp);
  router.handlePacket(udp.slice(0, n), n);
  const states = () => router.flows().map((f) => `${f.protocol} ${f.state}`).sort();
  assertEquals(states(), ["tcp SYN_SENT", "udp DIALING"]);

  dialer.tcp[0]!.resolve({ ok: true, value: nullStream() });
  dialer.udp[0]!.resolve({ ok: true, value: { send() {}, close() {} } });
  await tick();
  const natPort = device.take().srcPort;
  assertEquals(states(), ["tcp SYN_RECEIVED", "udp OPEN"]);
  // A socket that stays open, so that the connection is not swept as ended.
  const held = new TransformStream<Uint8Array, Uint8Array>();
  router.acceptTcp("240.0.0.16", natPort, {
    readable: held.readable,
    writable: new WritableStream(),
  });
  assertEquals(states(), ["tcp ESTABLISHED", "udp OPEN"]);

  advance(500);
  const request = tcp({
    src: APP,
    dst: DST,
    sport: 47000,
    dport: 80,
    flags: TcpFlags.ACK,
    payload: new Uint8Array(100),
  });
  router.handlePacket(request, request.length);
  const answer = tcp({
    src: LISTEN,
    dst: "240.0.0.16",
    sport: LPORT,
    dport: natPort,
    flags: TcpFlags.ACK,
    payload: new Uint8Array(1000),
  });
  router.handlePacket(answer, answer.length);
  dialer.udp[0]!.deliver(new Uint8Array(70));
  const [t] = router.flows().filter((f) => f.protocol === "tcp");
  assertEquals(t, {
    protocol: "tcp",
    source: { address: APP, port: 47000 },
    destination: { address: DST, port: 80 },
    state: "ESTABLISHED",
    openedAt: now() - 500,
    bytesSent: 100,
    bytesReceived: 1000,
    rateSent: 200,
    rateReceived: 2000,
  });
  const [u] = router.flows().filter((f) => f.protocol === "udp");
  assertEquals([u!.bytesSent, u!.bytesReceived, u!.destination.port], [30, 70, 53]);

  // A second later, after a sweep's sample, an idle connection's rate falls.
  advance(1000);
  router.sweep();
  advance(1000);
  router.sweep();
  const idle = router.flows().find((f) => f.protocol === "tcp")!;
  assertEquals([idle.bytesReceived, idle.rateReceived], [1000, 0]);

  const fin = (src: string, dst: string, sport: number, dport: number) =>
    tcp({ src, dst, sport, dport, flags: TcpFlags.FIN | TcpFlags.ACK });
  const appFin = fin(APP, DST, 47000, 80);
  router.handlePacket(appFin, appFin.length);
  assertEquals(router.flows().find((f) => f.protocol === "tcp")!.state, "FIN_WAIT");
  const kernelFin = fin(LISTEN, "240.0.0.16", LPORT, natPort);
  router.handlePacket(kernelFin, kernelFin.length);
  assertEquals(router.flows().find((f) => f.protocol === "tcp")!.state, "CLOSED");
});

Deno.test("Router.tap sees what the app sees, both ways, and not the NAT's own leg", async () => {
  const { device, dialer, router } = setup();
  const seen: string[] = [];
  router.tap = (packet) => {
    const p = newPacket();
    decodePacket(packet, packet.length, p);
    const at = (o: number) => formatAddress(packet, o, p.addressLength);
    seen.push(
      p.kind === "unknown"
        ? p.kind
        : `${p.kind} ${at(p.srcOffset)}:${p.srcPort} > ${at(p.dstOffset)}:${p.dstPort}`,
    );
  };
  const syn = tcp({ src: APP, dst: DST, sport: 47100, dport: 80, flags: TcpFlags.SYN });
  router.handlePacket(syn, syn.length);
  dialer.tcp[0]!.resolve({ ok: true, value: nullStream() });
  await tick();
  const natPort = device.take().srcPort;
  const synAck = tcp({
    src: LISTEN,
    dst: "240.0.0.16",
    sport: LPORT,
    dport: natPort,
    flags: TcpFlags.SYN | TcpFlags.ACK,
  });
  router.handlePacket(synAck, synAck.length);
  const ack = tcp({ src: APP, dst: DST, sport: 47100, dport: 80, flags: TcpFlags.ACK });
  router.handlePacket(ack, ack.length);
  const garbage = new Uint8Array([0x45, 0, 0]);
  router.handlePacket(garbage, garbage.length);
  assertEquals(seen, [
    `tcp ${APP}:47100 > ${DST}:80`, // the SYN as read
    `tcp ${DST}:80 > ${APP}:47100`, // the SYN-ACK as written back
    `tcp ${APP}:47100 > ${DST}:80`, // the ACK as read
    "unknown", // what the router could not read is seen too
  ]);
  router.tap = null;
  router.handlePacket(ack.slice(), ack.length);
  assertEquals(seen.length, 4);
});
