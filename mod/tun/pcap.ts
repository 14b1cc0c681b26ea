/**
 * A TUN device wrapper that also records every packet read and written into a
 * pcap file (LINKTYPE_RAW: raw IPv4/IPv6, no link header), for Wireshark or
 * `tcpdump -r`. A debugging tool (after smoltcp's `PcapWriter`): each packet
 * costs a synchronous file write.
 *
 * @module
 */

import { pcapFileHeader, pcapRecord } from "../net/pcap.ts";
import type { Prefix, TunDevice, TunStats } from "./tun.ts";

// The format is the daemon's capture's too (`vif capture`): one writer, in mod/net.
export { LINKTYPE_RAW, pcapFileHeader, pcapRecord } from "../net/pcap.ts";

/** Where a {@linkcode PcapTun} writes: a `Deno.FsFile` fits. */
export interface PcapSink {
  /** Writes some of `p`, returning how many bytes were taken. */
  writeSync(p: Uint8Array): number;
  /** Closes the sink (called by `PcapTun.close`). */
  close?(): void;
}

/** Options for {@linkcode PcapTun}. */
export interface PcapTunOptions {
  /** The clock, in milliseconds since the Unix epoch (default `Date.now`). */
  now?: () => number;
  /** The longest packet part recorded (default 65535). */
  snaplen?: number;
}

/**
 * A TUN device that records its traffic. Packets read are recorded as
 * `readSync` hands them out; packets written are recorded as they are offered
 * to `writeSync`, taken or dropped.
 *
 * @example
 * ```ts
 * import { ChannelTun } from "./channel.ts";
 * import { PcapTun } from "./pcap.ts";
 * const chunks: Uint8Array[] = [];
 * const sink = { writeSync: (p: Uint8Array) => (chunks.push(p.slice()), p.length) };
 * const tun = new PcapTun(new ChannelTun(), sink);
 * tun.writeSync(new Uint8Array([0x45, 0, 0, 20]));
 * chunks.length; // 2: the file header, then one record
 * ```
 */
export class PcapTun implements TunDevice {
  #inner: TunDevice;
  #sink: PcapSink;
  #now: () => number;
  #snaplen: number;
  #sinkOpen = true;

  /**
   * Wraps a device and writes the pcap header to `sink`.
   *
   * @param inner the device to record
   * @param sink where the pcap bytes go
   * @param options clock and snap length
   */
  constructor(inner: TunDevice, sink: PcapSink, options: PcapTunOptions = {}) {
    this.#inner = inner;
    this.#sink = sink;
    this.#now = options.now ?? Date.now;
    this.#snaplen = options.snaplen ?? 65535;
    this.#write(pcapFileHeader(this.#snaplen));
  }

  /**
   * Wraps a device, recording into a new file at `path` (truncated if present).
   *
   * @param inner the device to record
   * @param path the pcap file
   * @param options clock and snap length
   * @returns the recording device
   * @throws {Deno.errors.PermissionDenied} and other file errors when `path` cannot be written
   */
  static async create(
    inner: TunDevice,
    path: string,
    options: PcapTunOptions = {},
  ): Promise<PcapTun> {
    const file = await Deno.open(path, { write: true, create: true, truncate: true });
    return new PcapTun(inner, file, options);
  }

  get name(): string {
    return this.#inner.name;
  }

  get index(): number {
    return this.#inner.index;
  }

  get mtu(): number {
    return this.#inner.mtu;
  }

  get stats(): TunStats {
    return this.#inner.stats;
  }

  readSync(buf: Uint8Array): number {
    const n = this.#inner.readSync(buf);
    if (n > 0) this.#record(buf.subarray(0, n));
    return n;
  }

  readable(): Promise<boolean> {
    return this.#inner.readable();
  }

  writeSync(packet: Uint8Array): boolean {
    this.#record(packet);
    return this.#inner.writeSync(packet);
  }

  setMtu(mtu: number): Promise<void> {
    return this.#inner.setMtu(mtu);
  }

  addAddress(prefix: Prefix): Promise<void> {
    return this.#inner.addAddress(prefix);
  }

  up(): Promise<void> {
    return this.#inner.up();
  }

  addRoute(prefix: Prefix): Promise<void> {
    return this.#inner.addRoute(prefix);
  }

  removeRoute(prefix: Prefix): Promise<void> {
    return this.#inner.removeRoute(prefix);
  }

  async close(): Promise<void> {
    await this.#inner.close();
    if (!this.#sinkOpen) return;
    this.#sinkOpen = false;
    this.#sink.close?.();
  }

  #record(packet: Uint8Array): void {
    if (this.#sinkOpen) this.#write(pcapRecord(this.#now(), packet, this.#snaplen));
  }

  #write(bytes: Uint8Array): void {
    // A debugging aid must not take the data path down: a sink that fails stops recording.
    try {
      for (let at = 0; at < bytes.length;) at += this.#sink.writeSync(bytes.subarray(at));
    } catch {
      this.#sinkOpen = false;
    }
  }
}
