/**
 * The test suite every {@linkcode TunDevice} runs (after hono's shared suites):
 * `channel_test.ts` runs it against {@linkcode ChannelTun}, `_linux_probe.ts`
 * against the real Linux device inside a network namespace. A
 * {@linkcode TunHarness} plays the host's side: it sends what an application
 * would, receives what the device delivers, and reads back the configuration.
 *
 * Also small packet builders and parsers for those tests (IPv4, IPv6, UDP,
 * ICMP echo with correct checksums), written out here rather than taken from
 * the router's packet code in `mod/net/`, so that a bug there cannot hide one
 * in a device.
 *
 * @module
 */

import { assert, assertEquals, assertRejects } from "../_assert.ts";
import { formatAddress, parseAddress } from "../../mod/net/address.ts";
import { DEFAULT_MTU, type Prefix, type TunDevice } from "../../mod/tun/tun.ts";

/** The configuration of a device as the host reports it. */
export interface HostView {
  /** Whether the interface exists. */
  exists: boolean;
  /** Whether the link is up. */
  up: boolean;
  /** The MTU. */
  mtu: number;
  /** Addresses (global scope only: no IPv6 link-local). */
  addresses: Prefix[];
  /** Routes through the device that vif added (protocol 0xa5). */
  routes: Prefix[];
}

/** An address and a port. */
export interface Endpoint {
  /** The IP address. */
  address: string;
  /** The UDP port. */
  port: number;
}

/** The host's side of a device under test. */
export interface TunHarness {
  /** Opens a fresh device. */
  open(): Promise<TunDevice>;
  /** Sends a UDP datagram from the host to `to` (routed into the device). */
  sendUdp(device: TunDevice, to: Endpoint, payload: Uint8Array): Promise<void>;
  /**
   * Starts receiving on a host UDP socket at `at` (bound before this resolves).
   * `received` is the first datagram's payload.
   */
  receiveUdp(
    device: TunDevice,
    at: Endpoint,
  ): Promise<{ received: Promise<Uint8Array>; close(): Promise<void> }>;
  /** Pings `address` once from the host; resolves whether a reply came. */
  ping(device: TunDevice, address: string): Promise<boolean>;
  /** Reads back the device's configuration. */
  view(device: TunDevice): Promise<HostView>;
}

/** The addresses the suite uses: a class E TUN block, RFC 2544/5180 benchmarking prefixes. */
export const PLAN = {
  tun4: { address: "240.0.0.1", prefixLength: 24 },
  tun6: { address: "2001:2::1", prefixLength: 64 },
  route4: { address: "198.18.77.0", prefixLength: 24 },
  route6: { address: "2001:2:77::", prefixLength: 64 },
  remote4: "198.18.77.5",
  remote6: "2001:2:77::5",
} as const;

const TIMEOUT_MS = 3000;
const text = new TextEncoder();

/**
 * Registers the shared tests for one kind of device.
 *
 * @param name the device's name in test titles
 * @param harness the host's side
 */
export function runTunSuite(name: string, harness: TunHarness): void {
  async function withDevice(fn: (device: TunDevice) => Promise<void>): Promise<void> {
    const device = await harness.open();
    try {
      await fn(device);
    } finally {
      await device.close();
    }
  }

  Deno.test(`${name}: a new device has a name, an index, the default MTU and zero counters`, () =>
    withDevice(async (device) => {
      assert(device.name.length > 0, "name");
      assert(device.index > 0, "index");
      assertEquals(device.mtu, DEFAULT_MTU);
      assertEquals(device.stats, {
        rxPackets: 0,
        rxBytes: 0,
        txPackets: 0,
        txBytes: 0,
        txDropped: 0,
        errors: 0,
      });
      assertEquals(device.readSync(new Uint8Array(DEFAULT_MTU)), 0);
      assertEquals((await harness.view(device)).exists, true);
    }));

  Deno.test(`${name}: configuration calls show on the host`, () =>
    withDevice(async (device) => {
      await device.setMtu(1400);
      assertEquals(device.mtu, 1400);
      await configure(device);
      const view = await harness.view(device);
      assertEquals(view.mtu, 1400);
      assertEquals(view.up, true);
      assertEquals(sorted(view.addresses), sorted([PLAN.tun4, PLAN.tun6]));
      assertEquals(sorted(view.routes), sorted([PLAN.route4, PLAN.route6]));
      // Adding again is not an error (a reconnect re-adds its routes).
      await device.addAddress(PLAN.tun4);
      await device.addRoute(PLAN.route4);
      assertEquals(sorted((await harness.view(device)).routes), sorted([PLAN.route4, PLAN.route6]));
    }));

  Deno.test(`${name}: removeRoute() removes a route and ignores a missing one`, () =>
    withDevice(async (device) => {
      await configure(device);
      await device.removeRoute(PLAN.route4);
      assertEquals((await harness.view(device)).routes, [PLAN.route6]);
      await device.removeRoute(PLAN.route4);
      await device.removeRoute(PLAN.route6);
      assertEquals((await harness.view(device)).routes, []);
    }));

  Deno.test(`${name}: setMtu() rejects an MTU the device cannot take and keeps the old one`, () =>
    withDevice(async (device) => {
      await assertRejects(() => device.setMtu(70000));
      assertEquals(device.mtu, DEFAULT_MTU);
      assertEquals((await harness.view(device)).mtu, DEFAULT_MTU);
    }));

  Deno.test(`${name}: readSync() hands out an IPv4 UDP datagram a host socket sent`, () =>
    withDevice(async (device) => {
      await configure(device);
      const payload = text.encode("hello from the host");
      await harness.sendUdp(device, { address: PLAN.remote4, port: 5353 }, payload);
      const packet = await readUntil(device, (p) => parseUdp(p)?.dst === PLAN.remote4);
      const udp = parseUdp(packet)!;
      assertEquals(udp.version, 4);
      assertEquals(udp.src, PLAN.tun4.address);
      assertEquals(udp.dport, 5353);
      assertEquals(udp.payload, payload);
      assert(udp.checksumOk, "the UDP checksum is right");
      assert(device.stats.rxPackets >= 1 && device.stats.rxBytes >= packet.length, "counted");
    }));

  Deno.test(`${name}: readSync() hands out an IPv6 UDP datagram a host socket sent`, () =>
    withDevice(async (device) => {
      await configure(device);
      const payload = text.encode("hello over IPv6");
      await harness.sendUdp(device, { address: PLAN.remote6, port: 5353 }, payload);
      const packet = await readUntil(device, (p) => parseUdp(p)?.dst === PLAN.remote6);
      const udp = parseUdp(packet)!;
      assertEquals(udp.version, 6);
      assertEquals(udp.src, PLAN.tun6.address);
      assertEquals(udp.payload, payload);
      assert(udp.checksumOk, "the UDP checksum is right");
    }));

  for (const version of [4, 6] as const) {
    Deno.test(`${name}: an IPv${version} UDP datagram from writeSync() reaches a host socket`, () =>
      withDevice(async (device) => {
        await configure(device);
        const local = version === 4 ? PLAN.tun4.address : PLAN.tun6.address;
        const remote = version === 4 ? PLAN.remote4 : PLAN.remote6;
        const socket = await harness.receiveUdp(device, { address: local, port: 40123 });
        try {
          const payload = text.encode(`reply over IPv${version}`);
          const packet = buildUdp(
            { address: remote, port: 53 },
            { address: local, port: 40123 },
            payload,
          );
          assert(device.writeSync(packet), "the device took the packet");
          assertEquals(await withTimeout(socket.received, "the datagram"), payload);
          assertEquals(device.stats.txPackets, 1);
          assertEquals(device.stats.txBytes, packet.length);
        } finally {
          await socket.close();
        }
      }));
  }

  Deno.test(`${name}: a ping answered through the device succeeds`, () =>
    withDevice(async (device) => {
      await configure(device);
      const pinging = harness.ping(device, PLAN.remote4);
      const request = await readUntil(device, (p) => echoReply(p)?.dst === PLAN.tun4.address);
      assert(device.writeSync(echoReply(request)!.packet), "the device took the reply");
      assertEquals(await withTimeout(pinging, "the ping"), true);
    }));

  Deno.test(`${name}: close() wakes a pending readable() and ends the device`, async () => {
    const device = await harness.open();
    let closed = false;
    try {
      await configure(device);
      const pending = device.readable();
      const started = performance.now();
      await device.close();
      closed = true;
      assertEquals(await pending, false);
      const took = performance.now() - started;
      assert(took < 1500, `close() and the pending readable() took ${took.toFixed(0)} ms`);
      assertEquals(await device.readable(), false);
      assertEquals(device.readSync(new Uint8Array(100)), -1);
      const dropped = device.stats.txDropped;
      assertEquals(
        device.writeSync(
          buildUdp(
            { address: PLAN.remote4, port: 1 },
            { address: PLAN.tun4.address, port: 2 },
            new Uint8Array(1),
          ),
        ),
        false,
      );
      assertEquals(device.stats.txDropped, dropped + 1);
      await assertRejects(() => device.setMtu(1400));
      await assertRejects(() => device.addRoute(PLAN.route4));
      await device.close();
      const view = await harness.view(device);
      assertEquals(view.exists, false);
      assertEquals(view.routes, []);
    } finally {
      if (!closed) await device.close();
    }
  });
}

/**
 * Gives a device the suite's addresses and routes, and brings it up.
 *
 * @param device the device
 */
export async function configure(device: TunDevice): Promise<void> {
  await device.addAddress(PLAN.tun4);
  await device.addAddress(PLAN.tun6);
  await device.up();
  await device.addRoute(PLAN.route4);
  await device.addRoute(PLAN.route6);
}

/**
 * Reads packets until one matches (others, such as IPv6 router solicitations
 * the kernel sends on its own, are skipped).
 *
 * @param device the device
 * @param match the test
 * @param timeoutMs how long to try
 * @returns a copy of the matching packet
 * @throws {Error} when none arrives in time
 */
export async function readUntil(
  device: TunDevice,
  match: (packet: Uint8Array) => boolean,
  timeoutMs = TIMEOUT_MS,
): Promise<Uint8Array> {
  const buf = new Uint8Array(device.mtu);
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const n = device.readSync(buf);
    if (n < 0) break;
    if (n > 0) {
      const packet = buf.slice(0, n);
      if (match(packet)) return packet;
      continue;
    }
    const ready = await withTimeout(device.readable(), "a packet", deadline - Date.now()).catch(
      () => true,
    );
    if (!ready) break;
  }
  throw new Error(
    `Cannot read the expected packet from "${device.name}": none came in ${timeoutMs} ms`,
  );
}

/**
 * Waits for a promise, failing after a deadline (the timer is cleared either way).
 *
 * @param promise what to wait for
 * @param what its name in the error
 * @param ms the deadline
 * @returns the promise's value
 * @throws {Error} when the deadline passes first
 */
export async function withTimeout<T>(
  promise: Promise<T>,
  what: string,
  ms = TIMEOUT_MS,
): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`Cannot wait for ${what}: timed out after ${ms} ms`)),
      Math.max(0, ms),
    );
  });
  try {
    return await Promise.race([promise, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

function sorted(prefixes: Prefix[]): string[] {
  return prefixes.map((p) => `${p.address}/${p.prefixLength}`).sort();
}

// ---------------------------------------------------------------------------
// Packets for the tests.

function sum16(buf: Uint8Array, start: number, end: number, initial = 0): number {
  let sum = initial;
  for (let i = start; i + 1 < end; i += 2) sum += (buf[i]! << 8) | buf[i + 1]!;
  if ((end - start) & 1) sum += buf[end - 1]! << 8;
  return sum;
}

function finish(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return ~sum & 0xffff;
}

function pseudoSum(packet: Uint8Array, protocol: number, upperStart: number): number {
  const v6 = packet[0]! >> 4 === 6;
  const length = packet.length - upperStart;
  const addresses = v6 ? sum16(packet, 8, 40) : sum16(packet, 12, 20);
  return addresses + protocol + length;
}

/**
 * Builds an IPv4 or IPv6 UDP packet with correct checksums.
 *
 * @param from source address and port
 * @param to destination address and port (same family)
 * @param payload the datagram payload
 * @returns the packet
 */
export function buildUdp(from: Endpoint, to: Endpoint, payload: Uint8Array): Uint8Array {
  const src = parseAddress(from.address)!;
  const dst = parseAddress(to.address)!;
  const v6 = src.length === 16;
  const header = v6 ? 40 : 20;
  const packet = new Uint8Array(header + 8 + payload.length);
  const view = new DataView(packet.buffer);
  if (v6) {
    packet[0] = 0x60;
    view.setUint16(4, 8 + payload.length);
    packet[6] = 17;
    packet[7] = 64;
    packet.set(src, 8);
    packet.set(dst, 24);
  } else {
    packet[0] = 0x45;
    view.setUint16(2, packet.length);
    view.setUint16(6, 0x4000); // don't fragment
    packet[8] = 64;
    packet[9] = 17;
    packet.set(src, 12);
    packet.set(dst, 16);
    view.setUint16(10, finish(sum16(packet, 0, 20)));
  }
  view.setUint16(header, from.port);
  view.setUint16(header + 2, to.port);
  view.setUint16(header + 4, 8 + payload.length);
  packet.set(payload, header + 8);
  const checksum = finish(sum16(packet, header, packet.length, pseudoSum(packet, 17, header)));
  view.setUint16(header + 6, checksum === 0 ? 0xffff : checksum);
  return packet;
}

/** A UDP datagram parsed by {@linkcode parseUdp}. */
export interface ParsedUdp {
  /** IP version. */
  version: 4 | 6;
  /** Source address. */
  src: string;
  /** Destination address. */
  dst: string;
  /** Source port. */
  sport: number;
  /** Destination port. */
  dport: number;
  /** The payload (a copy). */
  payload: Uint8Array;
  /** Whether the UDP checksum verifies. */
  checksumOk: boolean;
}

function ipHeader(
  packet: Uint8Array,
): { v6: boolean; header: number; protocol: number } | undefined {
  const version = packet[0]! >> 4;
  if (version === 4 && packet.length >= 20) {
    return { v6: false, header: (packet[0]! & 0xf) * 4, protocol: packet[9]! };
  }
  if (version === 6 && packet.length >= 40) return { v6: true, header: 40, protocol: packet[6]! };
  return undefined;
}

function addresses(packet: Uint8Array, v6: boolean): { src: string; dst: string } {
  return v6
    ? { src: formatAddress(packet.subarray(8, 24)), dst: formatAddress(packet.subarray(24, 40)) }
    : { src: formatAddress(packet.subarray(12, 16)), dst: formatAddress(packet.subarray(16, 20)) };
}

/**
 * Parses a UDP packet (no IPv6 extension headers).
 *
 * @param packet the packet
 * @returns its fields, or `undefined` for anything else
 */
export function parseUdp(packet: Uint8Array): ParsedUdp | undefined {
  const ip = ipHeader(packet);
  if (!ip || ip.protocol !== 17 || packet.length < ip.header + 8) return undefined;
  const view = new DataView(packet.buffer, packet.byteOffset, packet.byteLength);
  const length = view.getUint16(ip.header + 4);
  if (ip.header + length > packet.length || length < 8) return undefined;
  const end = ip.header + length;
  const upper = packet.subarray(0, end);
  const sum = sum16(upper, ip.header, end, pseudoSum(upper, 17, ip.header));
  return {
    version: ip.v6 ? 6 : 4,
    ...addresses(packet, ip.v6),
    sport: view.getUint16(ip.header),
    dport: view.getUint16(ip.header + 2),
    payload: packet.slice(ip.header + 8, end),
    checksumOk: finish(sum) === 0,
  };
}

/**
 * Turns an ICMP echo request (IPv4 or ICMPv6) into its reply: addresses
 * swapped, type changed, checksums recomputed.
 *
 * @param request the packet
 * @returns the reply and the request's destination, or `undefined` when `request` is no echo request
 */
export function echoReply(request: Uint8Array): { packet: Uint8Array; dst: string } | undefined {
  const ip = ipHeader(request);
  if (!ip) return undefined;
  const icmp = ip.header;
  const isRequest = ip.v6
    ? ip.protocol === 58 && request[icmp] === 128
    : ip.protocol === 1 && request[icmp] === 8;
  if (!isRequest || request.length < icmp + 8) return undefined;
  const packet = request.slice();
  const view = new DataView(packet.buffer);
  const [srcAt, dstAt, size] = ip.v6 ? [8, 24, 16] : [12, 16, 4];
  packet.set(request.subarray(dstAt, dstAt + size), srcAt);
  packet.set(request.subarray(srcAt, srcAt + size), dstAt);
  packet[icmp] = ip.v6 ? 129 : 0;
  view.setUint16(icmp + 2, 0);
  if (ip.v6) {
    view.setUint16(
      icmp + 2,
      finish(sum16(packet, icmp, packet.length, pseudoSum(packet, 58, icmp))),
    );
  } else {
    packet[8] = 64;
    view.setUint16(10, 0);
    view.setUint16(10, finish(sum16(packet, 0, icmp)));
    view.setUint16(icmp + 2, finish(sum16(packet, icmp, packet.length)));
  }
  return { packet, dst: addresses(packet, ip.v6).dst };
}

/**
 * Builds an IPv4 ICMP echo request with correct checksums.
 *
 * @param src source address
 * @param dst destination address
 * @param id the echo identifier
 * @returns the packet
 */
export function buildEchoRequest4(src: string, dst: string, id: number): Uint8Array {
  const packet = new Uint8Array(20 + 8 + 8);
  const view = new DataView(packet.buffer);
  packet[0] = 0x45;
  view.setUint16(2, packet.length);
  packet[8] = 64;
  packet[9] = 1;
  packet.set(parseAddress(src)!, 12);
  packet.set(parseAddress(dst)!, 16);
  view.setUint16(10, finish(sum16(packet, 0, 20)));
  packet[20] = 8;
  view.setUint16(24, id);
  view.setUint16(26, 1);
  packet.set(text.encode("vif-ping"), 28);
  view.setUint16(22, finish(sum16(packet, 20, packet.length)));
  return packet;
}

/**
 * Asserts that a string contains another.
 *
 * @param text the string
 * @param part what it must contain
 * @throws {Error} when it does not
 */
export function assertIncludes(text: string, part: string): void {
  assert(text.includes(part), `Expected "${text}" to include "${part}"`);
}
