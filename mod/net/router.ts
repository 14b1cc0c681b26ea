/**
 * The L3→L4 router: reads IP packets from a TUN device and turns them into
 * TCP streams, UDP flows and pings handed to a {@linkcode Dialer}.
 *
 * TCP is terminated by the host kernel, not here (the "system stack" NAT
 * technique, DESIGN.md §3): an app's SYN for `app:sp → dst:dp` is held until
 * the dialer has reached `dst:dp`; then it is rewritten to
 * `peer:np → listen:lp` and written back into the TUN, where the kernel's TCP
 * accepts it on a listener bound to the TUN address. Every later segment is
 * rewritten in place both ways with incremental checksum updates (RFC 1624),
 * so retransmission, congestion control, window scaling and SACK are the
 * kernel's. The accepted socket reaches {@linkcode Router.acceptTcp}, which
 * finds the original destination by the NAT port and joins the socket to the
 * dialed stream.
 *
 * The router knows no OS: the device, the listener and the clock are given.
 *
 * @module
 */

import { addressEquals, Cidr, formatAddress } from "./address.ts";
import { adjustChecksum, checksumDelta } from "./checksum.ts";
import type { ByteStream, DatagramFlow, Dialer, DialFailure, Endpoint, Socket } from "./dialer.ts";
import { Icmp4, Icmp6 } from "./icmp.ts";
import { FlowMeter } from "./flow_meter.ts";
import { IPV4 } from "./ipv4.ts";
import { NatPorts } from "./nat_ports.ts";
import { decodePacket, newPacket, type Packet } from "./packet.ts";
import { closeQuietly, joinSocket, pipeBoth } from "./pipe.ts";
import { TCP, TcpFlags } from "./tcp.ts";
import { buildEchoReply, buildTcpReset, buildUdp, buildUnreachable } from "./build.ts";

/** The part of a TUN device the router uses (see `mod/tun/tun.ts`). */
export interface PacketDevice {
  /** The MTU: the largest packet the router must read. */
  readonly mtu: number;
  /** Reads one packet without blocking: its length, 0 when none, -1 once closed. */
  readSync(buf: Uint8Array): number;
  /** Waits until a packet can be read; `false` once closed. */
  readable(): Promise<boolean>;
  /** Writes one packet without blocking; the device copies it. */
  writeSync(packet: Uint8Array): boolean;
}

/** The router's own addresses for one IP family. */
export interface FamilyAddresses {
  /** The address the TCP listener is bound to (the TUN's own address). */
  listen: string;
  /** The port of that listener. */
  listenPort: number;
  /**
   * Fake peer addresses the NAT uses as the source of rewritten SYNs. They
   * must be routed into the TUN (on the TUN's subnet) and be nobody's. More
   * than one raises the NAT's capacity.
   */
  peers: string[];
}

/** Options for {@linkcode Router}. */
export interface RouterOptions {
  /** Where packets come from and go to. */
  device: PacketDevice;
  /** Who reaches destinations. */
  dialer: Dialer;
  /** IPv4 addresses; without them IPv4 TCP is dropped. */
  ipv4?: FamilyAddresses;
  /** IPv6 addresses; without them IPv6 TCP is dropped. */
  ipv6?: FamilyAddresses;
  /** The clock, in milliseconds (default `Date.now`). */
  now?: () => number;
  /** Log sink; lines start with `router: `. */
  log?: (level: "debug" | "info" | "warn", message: string) => void;
  /** NAT ports per peer address, inclusive (default 1024–65535). */
  natPorts?: [number, number];
  /**
   * How long a released NAT port rests before reuse, in ms (default 65 s,
   * longer than Linux's 60 s TIME_WAIT, so a new SYN never meets an old socket).
   */
  natCooldownMs?: number;
  /** How long a closed connection's NAT entry still translates late segments (default 10 s). */
  closeLingerMs?: number;
  /** Give up on a dial the dialer has not answered after this long (default 30 s). */
  dialTimeoutMs?: number;
  /** Drop a NAT entry whose SYN the kernel has not accepted after this long (default 10 s). */
  acceptTimeoutMs?: number;
  /** A UDP flow idle this long is closed (default 60 s). */
  udpIdleMs?: number;
  /** Datagrams queued per UDP flow while it is being opened (default 32). */
  udpPendingLimit?: number;
  /**
   * UDP flows kept at once (default 4096, what the traffic-manager allows a
   * session); a new flow past it first closes the least recently used
   * eighth of them (a resolver that asks from a new port each time makes
   * many short flows, and none of them needs its idle minute).
   */
  udpMaxFlows?: number;
  /** How many packets to handle before yielding to other I/O (default 256). */
  batch?: number;
}

/**
 * The state of a flow as the app sees it: for TCP the handshake's and the
 * closing's steps (`SYN_SENT` while the destination is dialed,
 * `SYN_RECEIVED` while the kernel's listener finishes the handshake,
 * `FIN_WAIT` once the app has sent its FIN, `CLOSE_WAIT` once the cluster
 * side has, `CLOSED` for an entry that lingers for late segments); for UDP
 * `DIALING` or `OPEN`.
 */
export type FlowState =
  | "SYN_SENT"
  | "SYN_RECEIVED"
  | "ESTABLISHED"
  | "FIN_WAIT"
  | "CLOSE_WAIT"
  | "CLOSED"
  | "DIALING"
  | "OPEN";

/** One TCP connection or UDP flow of the router, at one moment (see {@linkcode Router.flows}). */
export interface RouterFlow {
  /** The transport. */
  protocol: "tcp" | "udp";
  /** The app's address and port. */
  source: Endpoint;
  /** Where the app is going. */
  destination: Endpoint;
  /** Where the connection or flow is in its life. */
  state: FlowState;
  /** When the app's first packet came, on the router's clock (ms). */
  openedAt: number;
  /** Payload bytes from the app (TCP segments retransmitted count again). */
  bytesSent: number;
  /** Payload bytes to the app. */
  bytesReceived: number;
  /** Bytes per second from the app over the last one to two seconds. */
  rateSent: number;
  /** Bytes per second to the app over the last one to two seconds. */
  rateReceived: number;
}

/**
 * Sees packets the TUN carries (see {@linkcode Router.tap}): the packet is
 * lent for the call only (its buffer is rewritten or reused after it
 * returns), so a tap that keeps it copies it.
 */
export type PacketTap = (packet: Uint8Array) => void;

/** The router's counters. */
export interface RouterStats {
  packetsIn: number;
  packetsOut: number;
  bytesIn: number;
  bytesOut: number;
  /** Dropped packets by reason (malformed, unrouted, held SYN retransmission…). */
  dropped: Record<string, number>;
  tcpDials: number;
  tcpOpen: number;
  tcpTotal: number;
  /** Failed TCP dials by reason. */
  dialFailures: Record<DialFailure | "nat exhausted", number>;
  udpFlows: number;
  udpFlowsTotal: number;
  /** UDP flows closed early to make room under `udpMaxFlows`. */
  udpEvicted: number;
  pings: number;
  /** NAT entries (all states). */
  natEntries: number;
  /** Peer addresses in use by the NAT. */
  natPeersInUse: number;
}

type TcpState = "dialing" | "open" | "connected" | "closed";

interface Peer {
  index: number;
  bytes: Uint8Array;
  family: Family;
  ports: NatPorts;
}

interface Family {
  version: 4 | 6;
  listen: Uint8Array;
  listenPort: number;
  peers: Peer[];
  /** Peer addresses not yet used (added to `peers` when the NAT fills up). */
  spare: Uint8Array[];
}

interface TcpEntry {
  state: TcpState;
  family: Family;
  app: Uint8Array;
  appPort: number;
  dst: Uint8Array;
  dstPort: number;
  peer: Peer;
  natPort: number;
  /** The SYN held during the dial, re-injected when it succeeds. */
  syn: Uint8Array | null;
  stream: ByteStream | null;
  fwdIpDelta: number;
  fwdL4Delta: number;
  revIpDelta: number;
  revL4Delta: number;
  finFwd: boolean;
  finRev: boolean;
  since: number;
  /** Payload bytes each way and the rate window. */
  meter: FlowMeter;
  /** Next entry with the same app-side key. */
  next: TcpEntry | null;
}

interface UdpEntry {
  app: Uint8Array;
  appPort: number;
  dst: Uint8Array;
  dstPort: number;
  flow: DatagramFlow | null;
  pending: Uint8Array[] | null;
  lastSeen: number;
  closed: boolean;
  /** Payload bytes each way and the rate window. */
  meter: FlowMeter;
  next: UdpEntry | null;
}

const NO_PORTS: [number, number] = [1024, 65535];

/** A TCP entry's state as the app sees it. */
function tcpState(e: TcpEntry): FlowState {
  switch (e.state) {
    case "dialing":
      return "SYN_SENT";
    case "open":
      return "SYN_RECEIVED";
    case "closed":
      return "CLOSED";
    default:
      return e.finFwd ? "FIN_WAIT" : e.finRev ? "CLOSE_WAIT" : "ESTABLISHED";
  }
}

/** A TCP or UDP flow as the app sees it, chained with others of the same port pair. */
interface Flow<T> {
  app: Uint8Array;
  appPort: number;
  dst: Uint8Array;
  dstPort: number;
  next: T | null;
}

/** The app-side key of a flow: its two ports (addresses are compared along the chain). */
function flowKey(appPort: number, dstPort: number): number {
  return appPort * 65536 + dstPort;
}

/** The kernel-side key of a NAT entry: its peer address and port. */
function natKey(peerIndex: number, port: number): number {
  return peerIndex * 65536 + port;
}

/** Finds the flow of packet `p` in `table`, without allocating. */
function findFlow<T extends Flow<T>>(table: Map<number, T>, buf: Uint8Array, p: Packet): T | null {
  let f = table.get(flowKey(p.srcPort, p.dstPort)) ?? null;
  while (
    f &&
    !(f.app.length === p.addressLength &&
      addressEquals(buf, p.srcOffset, f.app, 0, p.addressLength) &&
      addressEquals(buf, p.dstOffset, f.dst, 0, p.addressLength))
  ) f = f.next;
  return f;
}

/** Takes `flow` out of its chain in `table`. */
function unlinkFlow<T extends Flow<T>>(table: Map<number, T>, flow: T): void {
  const key = flowKey(flow.appPort, flow.dstPort);
  let head = table.get(key) ?? null;
  if (head === flow) {
    if (flow.next) table.set(key, flow.next);
    else table.delete(key);
  } else {
    while (head && head.next !== flow) head = head.next;
    if (head) head.next = flow.next;
  }
  flow.next = null;
}

/** A socket rather than a stream view (a `Deno.Conn` is both: it is taken as the socket). */
function isSocket(conn: Socket | ByteStream): conn is Socket {
  return typeof (conn as Partial<Socket>).read === "function";
}

function parseBytes(text: string, what: string): Uint8Array {
  try {
    return Cidr.parse(text).bytes;
  } catch (cause) {
    throw new SyntaxError(`Cannot use ${what} "${text}": not an address`, { cause });
  }
}

/**
 * Turns TUN packets into dialer calls and back.
 *
 * @example
 * ```ts ignore
 * const router = new Router({ device, dialer, ipv4: { listen: "240.0.0.1", listenPort, peers: ["240.0.0.2"] } });
 * const done = router.run();
 * for await (const conn of listener) router.acceptTcp(conn.remoteAddr.hostname, conn.remoteAddr.port, wrap(conn));
 * ```
 */
export class Router {
  #dev: PacketDevice;
  #dialer: Dialer;
  #now: () => number;
  #log: (level: "debug" | "info" | "warn", message: string) => void;
  #v4: Family | null;
  #v6: Family | null;
  #ports: [number, number];
  #cooldown: number;
  #linger: number;
  #dialTimeout: number;
  #acceptTimeout: number;
  #udpIdle: number;
  #udpPendingLimit: number;
  #udpMaxFlows: number;
  #batch: number;
  /** App-side TCP key (srcPort·65536 + dstPort) → entries (chained by `next`). */
  #tcp = new Map<number, TcpEntry>();
  /** Kernel-side key (peer index·65536 + NAT port) → entry. */
  #nat = new Map<number, TcpEntry>();
  #udp = new Map<number, UdpEntry>();
  #pkt: Packet = newPacket();
  #out: Uint8Array;
  #running = false;
  #closed = false;
  #tap: PacketTap | null = null;
  readonly stats: RouterStats = {
    packetsIn: 0,
    packetsOut: 0,
    bytesIn: 0,
    bytesOut: 0,
    dropped: {},
    tcpDials: 0,
    tcpOpen: 0,
    tcpTotal: 0,
    dialFailures: { refused: 0, unreachable: 0, timeout: 0, prohibited: 0, "nat exhausted": 0 },
    udpFlows: 0,
    udpFlowsTotal: 0,
    udpEvicted: 0,
    pings: 0,
    natEntries: 0,
    natPeersInUse: 0,
  };

  /**
   * Makes a router; nothing happens until {@linkcode run}.
   *
   * @param options device, dialer, addresses and limits
   * @throws {SyntaxError} when an address is malformed
   */
  constructor(options: RouterOptions) {
    this.#dev = options.device;
    this.#dialer = options.dialer;
    this.#now = options.now ?? Date.now;
    this.#log = options.log ?? (() => {});
    this.#ports = options.natPorts ?? NO_PORTS;
    this.#cooldown = options.natCooldownMs ?? 65_000;
    this.#linger = options.closeLingerMs ?? 10_000;
    this.#dialTimeout = options.dialTimeoutMs ?? 30_000;
    this.#acceptTimeout = options.acceptTimeoutMs ?? 10_000;
    this.#udpIdle = options.udpIdleMs ?? 60_000;
    this.#udpPendingLimit = options.udpPendingLimit ?? 32;
    this.#udpMaxFlows = Math.max(1, options.udpMaxFlows ?? 4096);
    this.#batch = options.batch ?? 256;
    this.#v4 = options.ipv4 ? this.#family(4, options.ipv4) : null;
    this.#v6 = options.ipv6 ? this.#family(6, options.ipv6) : null;
    this.#out = new Uint8Array(Math.max(this.#dev.mtu, 1280) + 64);
  }

  /**
   * What sees every packet the TUN carries, as the app sees it: packets read
   * from the TUN before they are rewritten, and packets written to it after;
   * the NAT's own leg between the fake peers and the kernel's listener is
   * left out. `null` (the default) costs one comparison per packet.
   */
  get tap(): PacketTap | null {
    return this.#tap;
  }

  set tap(tap: PacketTap | null) {
    this.#tap = tap;
  }

  #family(version: 4 | 6, a: FamilyAddresses): Family {
    const listen = parseBytes(a.listen, "listen address");
    if (listen.length !== (version === 4 ? 4 : 16)) {
      throw new SyntaxError(`Cannot use listen address "${a.listen}": not IPv${version}`);
    }
    if (a.peers.length === 0) {
      throw new RangeError(`Cannot route IPv${version}: no NAT peer address given`);
    }
    const family: Family = { version, listen, listenPort: a.listenPort, peers: [], spare: [] };
    family.spare = a.peers.map((p) => parseBytes(p, "peer address")).reverse();
    return family;
  }

  /**
   * Reads and handles packets until the device closes or {@linkcode close} is
   * called. Packets are drained synchronously in batches; between batches the
   * router waits on the device, which lets other I/O (the sockets) run.
   *
   * @returns when the device is closed
   */
  async run(): Promise<void> {
    if (this.#running) throw new Error("Cannot run the router: it is already running");
    this.#running = true;
    const buf = new Uint8Array(this.#dev.mtu + 64);
    this.#log("info", `router: started (mtu ${this.#dev.mtu})`);
    try {
      while (!this.#closed) {
        let n = 0;
        for (let i = 0; i < this.#batch; i++) {
          n = this.#dev.readSync(buf);
          if (n <= 0) break;
          this.handlePacket(buf, n);
        }
        if (n < 0 || this.#closed) break;
        if (!await this.#dev.readable()) break;
      }
    } finally {
      this.#log("info", "router: stopped");
      this.#running = false;
    }
  }

  /**
   * Stops the router: ends every connection and flow. The device is the
   * caller's to close (which ends {@linkcode run}).
   */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const e of this.#natEntries()) this.#release(e, 0);
    for (const head of this.#udp.values()) {
      for (let u: UdpEntry | null = head; u; u = u.next) this.#closeUdp(u);
    }
    this.#udp.clear();
  }

  #natEntries(): TcpEntry[] {
    const all: TcpEntry[] = [];
    for (const head of this.#tcp.values()) {
      for (let e: TcpEntry | null = head; e; e = e.next) all.push(e);
    }
    return all;
  }

  #drop(reason: string): void {
    this.stats.dropped[reason] = (this.stats.dropped[reason] ?? 0) + 1;
  }

  /** Writes a packet; `internal` for the NAT's leg toward the kernel's listener (not tapped). */
  #write(packet: Uint8Array, internal = false): void {
    if (this.#dev.writeSync(packet)) {
      this.stats.packetsOut++;
      this.stats.bytesOut += packet.length;
      if (this.#tap !== null && !internal) this.#tap(packet);
    }
  }

  /**
   * Handles one packet read from the device. `buf` may be rewritten in place
   * and written back; the router keeps no reference to it after returning.
   *
   * @param buf the packet buffer
   * @param length the packet's length
   */
  handlePacket(buf: Uint8Array, length: number): void {
    const p = this.#pkt;
    this.stats.packetsIn++;
    this.stats.bytesIn += length;
    const kind = decodePacket(buf, length, p);
    if (this.#tap !== null && !this.#fromListener(buf, p)) this.#tap(buf.subarray(0, length));
    switch (kind) {
      case "tcp":
        return this.#handleTcp(buf, p);
      case "udp":
        return this.#handleUdp(buf, p);
      case "icmp":
        return this.#handleIcmp(buf, p);
      default:
        return this.#drop(p.reason);
    }
  }

  /** Whether a decoded packet comes from the kernel's listener: the NAT's own leg. */
  #fromListener(buf: Uint8Array, p: Packet): boolean {
    if (p.kind !== "tcp") return false;
    const fam = p.version === 4 ? this.#v4 : this.#v6;
    return fam !== null && p.srcPort === fam.listenPort &&
      addressEquals(buf, p.srcOffset, fam.listen, 0, p.addressLength);
  }

  // --- TCP -----------------------------------------------------------------

  #handleTcp(buf: Uint8Array, p: Packet): void {
    const fam = p.version === 4 ? this.#v4 : this.#v6;
    if (!fam) return this.#drop(`ipv${p.version} not routed`);
    // From the kernel's listener toward a fake peer: the reverse direction.
    if (
      p.srcPort === fam.listenPort &&
      addressEquals(buf, p.srcOffset, fam.listen, 0, p.addressLength)
    ) {
      const peer = this.#peerOf(fam, buf, p.dstOffset);
      if (peer) return this.#reverse(buf, p, peer);
    }
    const key = flowKey(p.srcPort, p.dstPort);
    let e = findFlow(this.#tcp, buf, p);
    const flags = p.tcpFlags;
    const isSyn = (flags & (TcpFlags.SYN | TcpFlags.ACK | TcpFlags.RST)) === TcpFlags.SYN;
    if (e && isSyn && e.state === "closed") {
      // A new connection reusing a 4-tuple whose last use has ended: the old
      // entry's port rests as any other (it was given `now` as a cooldown,
      // which kept the port out of use for decades).
      this.#release(e, this.#cooldown);
      this.#unlink(e);
      e = null;
    }
    if (!e) {
      if (isSyn) return this.#newTcp(buf, p, fam, key);
      if (flags & TcpFlags.RST) return this.#drop("tcp rst without connection");
      // A segment of no connection we know (a daemon restart, an expired
      // entry): answer as a host would, with a reset (RFC 9293 3.10.7.1).
      this.#drop("tcp without connection");
      return this.#write(this.#out.subarray(0, buildTcpReset(buf, p, this.#out)));
    }
    if (e.state === "dialing") return this.#drop("tcp syn held while dialing");
    e.meter.sent += p.payloadLength;
    // Translate app → kernel listener.
    if (flags & TcpFlags.RST) this.#closed_(e);
    else if (flags & TcpFlags.FIN) {
      e.finFwd = true;
      if (e.finRev) this.#closed_(e);
    }
    this.#rewrite(
      buf,
      p,
      e.peer.bytes,
      e.natPort,
      fam.listen,
      fam.listenPort,
      e.fwdIpDelta,
      e.fwdL4Delta,
    );
    this.#write(buf.subarray(0, p.length), true);
  }

  #reverse(buf: Uint8Array, p: Packet, peer: Peer): void {
    const e = this.#nat.get(natKey(peer.index, p.dstPort));
    if (!e) return this.#drop("tcp to unknown nat port");
    e.meter.received += p.payloadLength;
    const flags = p.tcpFlags;
    if (flags & TcpFlags.RST) this.#closed_(e);
    else if (flags & TcpFlags.FIN) {
      e.finRev = true;
      if (e.finFwd) this.#closed_(e);
    }
    this.#rewrite(buf, p, e.dst, e.dstPort, e.app, e.appPort, e.revIpDelta, e.revL4Delta);
    this.#write(buf.subarray(0, p.length));
  }

  #closed_(e: TcpEntry): void {
    if (e.state === "closed") return;
    if (e.state === "connected") this.stats.tcpOpen--;
    e.state = "closed";
    e.since = this.#now();
  }

  #peerOf(fam: Family, buf: Uint8Array, offset: number): Peer | undefined {
    const len = fam.listen.length;
    for (const peer of fam.peers) if (addressEquals(buf, offset, peer.bytes, 0, len)) return peer;
    return undefined;
  }

  /** Writes new addresses and ports and applies the precomputed checksum deltas. */
  #rewrite(
    buf: Uint8Array,
    p: Packet,
    src: Uint8Array,
    srcPort: number,
    dst: Uint8Array,
    dstPort: number,
    ipDelta: number,
    l4Delta: number,
  ): void {
    buf.set(src, p.srcOffset);
    buf.set(dst, p.dstOffset);
    const t = p.l4Offset;
    buf[t] = srcPort >> 8;
    buf[t + 1] = srcPort & 0xff;
    buf[t + 2] = dstPort >> 8;
    buf[t + 3] = dstPort & 0xff;
    if (p.version === 4) {
      const c = adjustChecksum((buf[IPV4.CHECKSUM]! << 8) | buf[IPV4.CHECKSUM + 1]!, ipDelta);
      buf[IPV4.CHECKSUM] = c >> 8;
      buf[IPV4.CHECKSUM + 1] = c & 0xff;
    }
    const at = t + TCP.CHECKSUM;
    const c = adjustChecksum((buf[at]! << 8) | buf[at + 1]!, l4Delta);
    buf[at] = c >> 8;
    buf[at + 1] = c & 0xff;
  }

  #newTcp(buf: Uint8Array, p: Packet, fam: Family, key: number): void {
    const app = buf.slice(p.srcOffset, p.srcOffset + p.addressLength);
    const dst = buf.slice(p.dstOffset, p.dstOffset + p.addressLength);
    const nat = this.#allocate(fam);
    if (!nat) {
      this.stats.dialFailures["nat exhausted"]++;
      this.#log("warn", "router: NAT ports exhausted: refusing a new connection");
      return this.#write(this.#out.subarray(0, buildTcpReset(buf, p, this.#out)));
    }
    const e: TcpEntry = {
      state: "dialing",
      family: fam,
      app,
      appPort: p.srcPort,
      dst,
      dstPort: p.dstPort,
      peer: nat.peer,
      natPort: nat.port,
      syn: buf.slice(0, p.length),
      stream: null,
      fwdIpDelta: 0,
      fwdL4Delta: 0,
      revIpDelta: 0,
      revL4Delta: 0,
      finFwd: false,
      finRev: false,
      since: this.#now(),
      meter: new FlowMeter(this.#now()),
      next: this.#tcp.get(key) ?? null,
    };
    this.#computeDeltas(e);
    this.#tcp.set(key, e);
    this.#nat.set(natKey(e.peer.index, e.natPort), e);
    this.stats.natEntries++;
    this.stats.tcpDials++;
    const source: Endpoint = { address: formatAddress(app), port: p.srcPort };
    const destination: Endpoint = { address: formatAddress(dst), port: p.dstPort };
    this.#dialer.dialTcp({ source, destination }).then(
      (r) => this.#dialed(e, r.ok ? r.value : null, r.ok ? undefined : r.reason),
      (error) => {
        this.#log(
          "warn",
          `router: dialer failed for ${destination.address}:${destination.port}: ${error}`,
        );
        this.#dialed(e, null, "unreachable");
      },
    );
  }

  #computeDeltas(e: TcpEntry): void {
    const { listen, listenPort } = e.family;
    const ports = (a: number, b: number) => new Uint8Array([a >> 8, a & 0xff, b >> 8, b & 0xff]);
    const cat = (...parts: Uint8Array[]) => {
      const out = new Uint8Array(parts.reduce((n, x) => n + x.length, 0));
      let o = 0;
      for (const x of parts) {
        out.set(x, o);
        o += x.length;
      }
      return out;
    };
    const appSide = cat(e.app, e.dst), kernelSide = cat(e.peer.bytes, listen);
    const appPorts = ports(e.appPort, e.dstPort), kernelPorts = ports(e.natPort, listenPort);
    e.fwdIpDelta = checksumDelta(appSide, kernelSide);
    e.fwdL4Delta = checksumDelta(cat(appSide, appPorts), cat(kernelSide, kernelPorts));
    const back = cat(e.dst, e.app), kernelBack = cat(listen, e.peer.bytes);
    const backPorts = ports(e.dstPort, e.appPort), kernelBackPorts = ports(listenPort, e.natPort);
    e.revIpDelta = checksumDelta(kernelBack, back);
    e.revL4Delta = checksumDelta(cat(kernelBack, kernelBackPorts), cat(back, backPorts));
  }

  #dialed(e: TcpEntry, stream: ByteStream | null, reason?: DialFailure): void {
    const syn = e.syn;
    e.syn = null;
    if (e.state !== "dialing" || this.#closed || !syn) {
      // Swept or closed meanwhile: the stream has nobody to talk to.
      stream?.writable.abort(new Error("connection gone")).catch(() => {});
      stream?.readable.cancel().catch(() => {});
      return;
    }
    if (!stream) {
      const why = reason ?? "unreachable";
      this.stats.dialFailures[why]++;
      this.#release(e, 0);
      this.#unlink(e);
      const p = this.#pkt;
      decodePacket(syn, syn.length, p);
      if (why === "refused") {
        this.#write(this.#out.subarray(0, buildTcpReset(syn, p, this.#out)));
      } else if (why !== "timeout") {
        const cause = why === "prohibited" ? "prohibited" : "host";
        this.#write(this.#out.subarray(0, buildUnreachable(syn, p, this.#out, cause)));
      } // "timeout": silence, as from a host that does not answer.
      return;
    }
    e.stream = stream;
    e.state = "open";
    e.since = this.#now();
    // Re-inject the held SYN, translated, for the kernel's listener.
    const p = this.#pkt;
    decodePacket(syn, syn.length, p);
    this.#rewrite(
      syn,
      p,
      e.peer.bytes,
      e.natPort,
      e.family.listen,
      e.family.listenPort,
      e.fwdIpDelta,
      e.fwdL4Delta,
    );
    this.#write(syn, true);
  }

  /**
   * Takes a connection the kernel accepted on the router's listener and joins
   * it to the stream dialed for it.
   *
   * @param remoteAddress the accepted socket's peer address (a NAT peer)
   * @param remotePort the accepted socket's peer port (the NAT port)
   * @param conn the accepted socket, or a byte stream over it (closing its
   *   writable must half-close); a socket is joined to the dialed stream
   *   through its {@linkcode ByteStream.joinSocket} when it has one
   * @returns a promise that settles when the connection has ended; `false`
   *   at once (after closing `conn`) when no NAT entry matches
   */
  acceptTcp(
    remoteAddress: string,
    remotePort: number,
    conn: Socket | ByteStream,
  ): Promise<boolean> {
    let bytes: Uint8Array | undefined;
    try {
      bytes = Cidr.parse(remoteAddress).bytes;
    } catch {
      bytes = undefined;
    }
    const fam = bytes?.length === 4 ? this.#v4 : this.#v6;
    const peer = fam && bytes ? this.#peerOf(fam, bytes, 0) : undefined;
    const e = peer ? this.#nat.get(natKey(peer.index, remotePort)) : undefined;
    if (!e || e.state !== "open" || !e.stream) {
      this.#drop("accept without nat entry");
      if (isSocket(conn)) closeQuietly(conn);
      else {
        conn.writable.abort(new Error("no NAT entry")).catch(() => {});
        conn.readable.cancel().catch(() => {});
      }
      return Promise.resolve(false);
    }
    e.state = "connected";
    this.stats.tcpOpen++;
    this.stats.tcpTotal++;
    const stream = e.stream;
    const joined = isSocket(conn) ? joinSocket(conn, stream) : pipeBoth(conn, stream);
    return joined.then((r) => {
      if (r.error) {
        this.#log(
          "debug",
          `router: connection to ${formatAddress(e.dst)}:${e.dstPort} ended: ${r.error}`,
        );
      }
      // The kernel's FIN/RST tracking closes the entry; this covers a socket
      // that ended without either being seen (see sweep).
      e.stream = null;
      return true;
    });
  }

  #allocate(fam: Family): { peer: Peer; port: number } | undefined {
    const now = this.#now();
    for (const peer of fam.peers) {
      const port = peer.ports.take(now);
      if (port !== undefined) return { peer, port };
    }
    const bytes = fam.spare.pop();
    if (!bytes) return undefined;
    const all = [...(this.#v4?.peers ?? []), ...(this.#v6?.peers ?? [])];
    const peer: Peer = {
      index: all.length,
      bytes,
      family: fam,
      ports: new NatPorts(this.#ports[0], this.#ports[1]),
    };
    fam.peers.push(peer);
    this.stats.natPeersInUse++;
    if (fam.peers.length > 1) {
      this.#log(
        "info",
        `router: NAT peer ${formatAddress(bytes)} added (${fam.peers.length} in use)`,
      );
    }
    return { peer, port: peer.ports.take(now)! };
  }

  /** Frees the entry's NAT port (resting `cooldown` ms) and ends its stream. */
  #release(e: TcpEntry, cooldown: number): void {
    e.peer.ports.release(e.natPort, cooldown > 0 ? this.#now() + cooldown : 0);
    if (e.state === "connected") this.stats.tcpOpen--;
    if (e.state !== "closed") e.state = "closed";
    const s = e.stream;
    e.stream = null;
    if (s) {
      s.writable.abort(new Error("connection closed")).catch(() => {});
      s.readable.cancel().catch(() => {});
    }
  }

  #unlink(e: TcpEntry): void {
    unlinkFlow(this.#tcp, e);
    const k = natKey(e.peer.index, e.natPort);
    if (this.#nat.get(k) === e) this.#nat.delete(k);
    this.stats.natEntries--;
  }

  // --- UDP -----------------------------------------------------------------

  #handleUdp(buf: Uint8Array, p: Packet): void {
    const key = flowKey(p.srcPort, p.dstPort);
    const u = findFlow(this.#udp, buf, p);
    const payload = buf.subarray(p.payloadOffset, p.payloadOffset + p.payloadLength);
    const now = this.#now();
    if (u) {
      u.lastSeen = now;
      u.meter.sent += payload.length;
      if (u.flow) u.flow.send(payload.slice());
      else if (u.pending && u.pending.length < this.#udpPendingLimit) {
        u.pending.push(payload.slice());
      } else this.#drop("udp queue full while dialing");
      return;
    }
    if (this.stats.udpFlows >= this.#udpMaxFlows) this.#evictUdp();
    const entry: UdpEntry = {
      app: buf.slice(p.srcOffset, p.srcOffset + p.addressLength),
      appPort: p.srcPort,
      dst: buf.slice(p.dstOffset, p.dstOffset + p.addressLength),
      dstPort: p.dstPort,
      flow: null,
      pending: [payload.slice()],
      lastSeen: now,
      closed: false,
      meter: new FlowMeter(now),
      next: this.#udp.get(key) ?? null,
    };
    entry.meter.sent = payload.length;
    this.#udp.set(key, entry);
    this.stats.udpFlows++;
    this.stats.udpFlowsTotal++;
    const first = buf.slice(0, p.length); // for an ICMP error if the dial fails
    const source: Endpoint = { address: formatAddress(entry.app), port: entry.appPort };
    const destination: Endpoint = { address: formatAddress(entry.dst), port: entry.dstPort };
    this.#dialer.dialUdp({ source, destination }, (data) => this.#deliverUdp(entry, data)).then(
      (r) => {
        if (entry.closed) {
          if (r.ok) r.value.close();
          return;
        }
        if (!r.ok) {
          this.#removeUdp(entry);
          const fp = this.#pkt;
          decodePacket(first, first.length, fp);
          const cause = r.reason === "refused"
            ? "port"
            : r.reason === "prohibited"
            ? "prohibited"
            : "host";
          if (r.reason !== "timeout") {
            this.#write(this.#out.subarray(0, buildUnreachable(first, fp, this.#out, cause)));
          }
          return;
        }
        entry.flow = r.value;
        for (const d of entry.pending ?? []) r.value.send(d);
        entry.pending = null;
      },
      () => this.#removeUdp(entry),
    );
  }

  #deliverUdp(u: UdpEntry, data: Uint8Array): void {
    if (u.closed) return;
    u.lastSeen = this.#now();
    u.meter.received += data.length;
    let n: number;
    try {
      n = buildUdp(u.dst, u.dstPort, u.app, u.appPort, data, this.#out);
    } catch {
      return this.#drop("udp reply too large");
    }
    this.#write(this.#out.subarray(0, n));
  }

  #closeUdp(u: UdpEntry): void {
    if (u.closed) return;
    u.closed = true;
    u.flow?.close();
    u.flow = null;
    u.pending = null;
    this.stats.udpFlows--;
  }

  #removeUdp(u: UdpEntry): void {
    this.#closeUdp(u);
    unlinkFlow(this.#udp, u);
  }

  /** Closes the least recently used eighth of the UDP flows (at least one). */
  #evictUdp(): void {
    const all: UdpEntry[] = [];
    for (const head of this.#udp.values()) {
      for (let u: UdpEntry | null = head; u; u = u.next) all.push(u);
    }
    all.sort((a, b) => a.lastSeen - b.lastSeen);
    const count = Math.max(1, all.length >> 3);
    for (const u of all.slice(0, count)) this.#removeUdp(u);
    this.stats.udpEvicted += count;
  }

  // --- ICMP ----------------------------------------------------------------

  #handleIcmp(buf: Uint8Array, p: Packet): void {
    const echo = p.version === 4 ? Icmp4.ECHO_REQUEST : Icmp6.ECHO_REQUEST;
    if (p.icmpType !== echo || p.icmpCode !== 0) return this.#drop("icmp not echo request");
    const request = buf.slice(0, p.length);
    this.stats.pings++;
    const source: Endpoint = { address: formatAddress(buf, p.srcOffset, p.addressLength), port: 0 };
    const destination: Endpoint = {
      address: formatAddress(buf, p.dstOffset, p.addressLength),
      port: 0,
    };
    const payload = buf.slice(p.payloadOffset, p.payloadOffset + p.payloadLength);
    this.#dialer.ping({ source, destination, payload }).then(
      (r) => this.#pinged(request, r.ok ? null : r.reason),
      () => this.#pinged(request, "unreachable"),
    );
  }

  #pinged(request: Uint8Array, failure: DialFailure | null): void {
    if (this.#closed || failure === "timeout") return;
    const p = this.#pkt;
    decodePacket(request, request.length, p);
    const n = failure === null
      ? buildEchoReply(request, p, this.#out)
      : buildUnreachable(request, p, this.#out, failure === "prohibited" ? "prohibited" : "host");
    this.#write(this.#out.subarray(0, n));
  }

  // --- Housekeeping --------------------------------------------------------

  /**
   * Every TCP connection (closed ones still lingering included) and UDP flow
   * the router holds now, with their byte counts and rates. Allocates one
   * object per flow: for `vif connections`, not for the data path.
   *
   * @param now the clock (default the router's)
   * @returns the flows, in no particular order
   */
  flows(now: number = this.#now()): RouterFlow[] {
    const out: RouterFlow[] = [];
    const add = (
      protocol: "tcp" | "udp",
      f: { app: Uint8Array; appPort: number; dst: Uint8Array; dstPort: number; meter: FlowMeter },
      state: FlowState,
    ) => {
      const rates = f.meter.rates(now);
      out.push({
        protocol,
        source: { address: formatAddress(f.app), port: f.appPort },
        destination: { address: formatAddress(f.dst), port: f.dstPort },
        state,
        openedAt: f.meter.openedAt,
        bytesSent: f.meter.sent,
        bytesReceived: f.meter.received,
        rateSent: rates.sent,
        rateReceived: rates.received,
      });
    };
    for (const e of this.#natEntries()) add("tcp", e, tcpState(e));
    for (const head of this.#udp.values()) {
      for (let u: UdpEntry | null = head; u; u = u.next) {
        if (!u.closed) add("udp", u, u.flow ? "OPEN" : "DIALING");
      }
    }
    return out;
  }

  /**
   * Expires what has outlived its time: dials the dialer never answered, NAT
   * entries the kernel never accepted, closed connections past their linger,
   * connections whose socket ended unseen, and idle UDP flows. Call it about
   * once a second.
   *
   * @param now the clock (default the router's)
   * @returns how many entries and flows were removed
   */
  sweep(now: number = this.#now()): number {
    let removed = 0;
    for (const e of this.#natEntries()) {
      e.meter.sample(now);
      const age = now - e.since;
      let expire = false;
      if (e.state === "dialing" && age > this.#dialTimeout) {
        this.stats.dialFailures.timeout++;
        expire = true;
      } else if (e.state === "open" && age > this.#acceptTimeout) expire = true;
      else if (e.state === "closed" && age > this.#linger) expire = true;
      else if (e.state === "connected" && e.stream === null) {
        // The socket pipe ended but no FIN/RST pair was seen: close it out.
        this.#closed_(e);
      }
      if (expire) {
        this.#release(e, e.state === "dialing" ? 0 : this.#cooldown);
        this.#unlink(e);
        removed++;
      }
    }
    for (const head of [...this.#udp.values()]) {
      for (let u: UdpEntry | null = head; u; u = u.next) {
        u.meter.sample(now);
        if (now - u.lastSeen > this.#udpIdle) {
          this.#removeUdp(u);
          removed++;
        }
      }
    }
    return removed;
  }
}
