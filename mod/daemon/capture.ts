/**
 * Packet captures of a session (`vif capture`): the router's tap hands each
 * packet the TUN carries to every running {@linkcode Capture}, which keeps
 * those its filter takes as pcap records in a bounded queue; the control
 * connection drains the queue in batches toward the CLI, which writes the
 * file as the user (the daemon, root, writes no file for anyone).
 *
 * What keeps it bounded and off the data path:
 * - the tap is installed only while a capture runs (`Router.tap` is `null`
 *   otherwise: one comparison per packet);
 * - a capture's queue holds at most {@linkcode CaptureLimits.queueBytes}
 *   and {@linkcode CaptureLimits.queuePackets}: a packet that finds it full
 *   is dropped and counted, never waited for, so a slow reader costs the
 *   capture packets and the router nothing;
 * - at most {@linkcode MAX_CAPTURES} run at once.
 *
 * @module
 */

import { addressEquals } from "../net/address.ts";
import { decodePacket, newPacket, type Packet } from "../net/packet.ts";
import { pcapRecord, pcapRecordLength } from "../net/pcap.ts";
import type { PacketTap } from "../net/router.ts";

/** The most captures running at once, on one daemon. */
export const MAX_CAPTURES = 4;

/** What a capture keeps. */
export interface CaptureFilter {
  /** Packets from or to any of these addresses (4 or 16 bytes each); all when empty or absent. */
  hosts?: Uint8Array[];
  /** TCP and UDP packets from or to this port; all packets when absent. */
  port?: number;
}

/** How much a capture may hold while its reader is behind. */
export interface CaptureLimits {
  /** Bytes of records queued (default 4 MiB). */
  queueBytes?: number;
  /** Records queued (default 16384). */
  queuePackets?: number;
}

/** Options of {@linkcode Capture}. */
export interface CaptureOptions extends CaptureFilter, CaptureLimits {
  /** The longest part of a packet recorded. */
  snaplen: number;
  /** Stop after this many packets (default: no limit). */
  count?: number;
  /** The clock in ms since the Unix epoch, fractions kept (default: `performance`'s). */
  now?: () => number;
}

/** Why a capture ended. */
export type CaptureEnd = "count" | "duration" | "stopped" | "disconnected" | "failed";

/** A batch of records taken from a capture's queue. */
export interface CaptureBatch {
  /** Back-to-back pcap records. */
  records: Uint8Array;
  /** How many. */
  count: number;
}

/** A capture's counters. */
export interface CaptureCounts {
  /** Packets the filter took and the queue kept. */
  captured: number;
  /** Packets the filter took that found the queue full. */
  dropped: number;
  /** Packets handed on in batches. */
  delivered: number;
}

/**
 * Whether a packet passes a filter.
 *
 * @param packet an IP packet
 * @param filter hosts and port
 * @param scratch a packet to decode into (reused)
 * @returns whether to keep it; a packet that cannot be read passes only an empty filter
 * @example
 * ```ts
 * import { matchesFilter } from "./capture.ts";
 * import { newPacket } from "../net/packet.ts";
 * matchesFilter(new Uint8Array([0x45]), {}, newPacket()); // true: no filter
 * ```
 */
export function matchesFilter(packet: Uint8Array, filter: CaptureFilter, scratch: Packet): boolean {
  const hosts = filter.hosts ?? [];
  if (hosts.length === 0 && filter.port === undefined) return true;
  const kind = decodePacket(packet, packet.length, scratch);
  if (kind === "unknown") return false;
  if (filter.port !== undefined) {
    if (kind === "icmp") return false;
    if (scratch.srcPort !== filter.port && scratch.dstPort !== filter.port) return false;
  }
  if (hosts.length === 0) return true;
  const n = scratch.addressLength;
  return hosts.some((h) =>
    h.length === n &&
    (addressEquals(packet, scratch.srcOffset, h, 0, n) ||
      addressEquals(packet, scratch.dstOffset, h, 0, n))
  );
}

/** One capture: a filter, a bounded queue of records, and its counters. */
export class Capture {
  #filter: CaptureFilter;
  #snaplen: number;
  #count: number;
  #now: () => number;
  #maxBytes: number;
  #maxPackets: number;
  #scratch = newPacket();
  #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #wake: (() => void) | null = null;
  #ended: CaptureEnd | null = null;
  #onEnd: ((reason: CaptureEnd) => void) | undefined;
  /** The capture's counters, live. */
  readonly counts: CaptureCounts = { captured: 0, dropped: 0, delivered: 0 };

  /**
   * Makes a capture; it takes packets from {@linkcode Capture.offer} until stopped.
   *
   * @param options the filter, snap length, limits and clock
   * @param onEnd told once when the capture ends (the hub lets it go)
   */
  constructor(options: CaptureOptions, onEnd?: (reason: CaptureEnd) => void) {
    this.#filter = {
      ...(options.hosts ? { hosts: options.hosts } : {}),
      ...(options.port !== undefined ? { port: options.port } : {}),
    };
    this.#snaplen = options.snaplen;
    this.#count = options.count ?? Infinity;
    this.#now = options.now ?? (() => performance.timeOrigin + performance.now());
    this.#maxBytes = options.queueBytes ?? 4 << 20;
    this.#maxPackets = options.queuePackets ?? 16384;
    this.#onEnd = onEnd;
  }

  /** The snap length. */
  get snaplen(): number {
    return this.#snaplen;
  }

  /** Why the capture ended; `null` while it runs. */
  get ended(): CaptureEnd | null {
    return this.#ended;
  }

  /**
   * Takes a packet from the tap: keeps its record if the filter passes it
   * and the queue has room, else counts it dropped. Synchronous and never
   * waits; the packet is copied.
   *
   * @param packet the packet, lent for the call
   */
  offer(packet: Uint8Array): void {
    if (this.#ended !== null) return;
    if (!matchesFilter(packet, this.#filter, this.#scratch)) return;
    const length = pcapRecordLength(packet.length, this.#snaplen);
    if (
      this.#queue.length >= this.#maxPackets || this.#queuedBytes + length > this.#maxBytes
    ) {
      this.counts.dropped++;
      return;
    }
    this.#queue.push(pcapRecord(this.#now(), packet, this.#snaplen));
    this.#queuedBytes += length;
    this.counts.captured++;
    if (this.counts.captured >= this.#count) this.stop("count");
    this.#signal();
  }

  /**
   * Waits for records and takes a batch of them: as many as fit in
   * `maxBytes` (at least one).
   *
   * @param maxBytes the batch's size limit
   * @returns the batch, or `null` once the capture has ended and its queue is empty
   */
  async next(maxBytes: number): Promise<CaptureBatch | null> {
    while (this.#queue.length === 0) {
      if (this.#ended !== null) return null;
      await new Promise<void>((resolve) => this.#wake = resolve);
    }
    let count = 0;
    let bytes = 0;
    for (const r of this.#queue) {
      if (count > 0 && bytes + r.length > maxBytes) break;
      bytes += r.length;
      count++;
    }
    const records = new Uint8Array(bytes);
    let at = 0;
    for (const r of this.#queue.splice(0, count)) {
      records.set(r, at);
      at += r.length;
    }
    this.#queuedBytes -= bytes;
    this.counts.delivered += count;
    return { records, count };
  }

  /**
   * Ends the capture: no more packets are taken; what is queued can still be
   * taken with {@linkcode next}. Idempotent (the first reason stays).
   *
   * @param reason why
   */
  stop(reason: CaptureEnd): void {
    if (this.#ended !== null) return;
    this.#ended = reason;
    this.#signal();
    this.#onEnd?.(reason);
  }

  #signal(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }
}

/** Something with a packet tap: the router. */
export interface Tappable {
  /** What sees each packet; `null` for nothing. */
  tap: PacketTap | null;
}

/** Thrown when {@linkcode MAX_CAPTURES} captures run already. */
export class CaptureBusyError extends Error {
  /** The stable code of the control protocol. */
  readonly code = "busy";
  /** What to do. */
  readonly hint = "Stop another `vif capture` first.";
  constructor() {
    super(`${MAX_CAPTURES} captures are running already`);
    this.name = "CaptureBusyError";
  }
}

/**
 * The captures of one router: puts the tap on while any runs and takes it
 * off when the last ends.
 *
 * @example
 * ```ts
 * import { CaptureHub } from "./capture.ts";
 * const router = { tap: null };
 * const hub = new CaptureHub(router);
 * const capture = hub.start({ snaplen: 65535 });
 * capture.stop("stopped"); // router.tap is null again
 * ```
 */
export class CaptureHub {
  #target: Tappable;
  #captures = new Set<Capture>();
  #max: number;

  /**
   * Makes the hub of a router; the tap stays off until a capture starts.
   *
   * @param target the router whose packets are captured
   * @param max the most captures at once (default {@linkcode MAX_CAPTURES})
   */
  constructor(target: Tappable, max: number = MAX_CAPTURES) {
    this.#target = target;
    this.#max = max;
  }

  /** How many captures run. */
  get running(): number {
    return this.#captures.size;
  }

  /**
   * Starts a capture.
   *
   * @param options filter, snap length, limits
   * @returns the capture; stop it when done
   * @throws {CaptureBusyError} when the most captures run already
   */
  start(options: CaptureOptions): Capture {
    if (this.#captures.size >= this.#max) throw new CaptureBusyError();
    const capture = new Capture(options, () => {
      this.#captures.delete(capture);
      this.#install();
    });
    this.#captures.add(capture);
    this.#install();
    return capture;
  }

  /**
   * Ends every capture (the session is closing).
   *
   * @param reason why
   */
  stopAll(reason: CaptureEnd): void {
    for (const c of [...this.#captures]) c.stop(reason);
  }

  #install(): void {
    const captures = [...this.#captures];
    // The tap runs inside the router's loop: a capture that fails ends, the router goes on.
    const offer = (c: Capture, packet: Uint8Array) => {
      try {
        c.offer(packet);
      } catch {
        c.stop("failed");
      }
    };
    if (captures.length === 0) this.#target.tap = null;
    else if (captures.length === 1) {
      const only = captures[0]!;
      this.#target.tap = (packet) => offer(only, packet);
    } else this.#target.tap = (packet) => captures.forEach((c) => offer(c, packet));
  }
}
