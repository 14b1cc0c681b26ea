/**
 * The TUN device contract. This file knows no operating system: `linux.ts`
 * (and later `darwin.ts`, `windows.ts`) implement it, `channel.ts` implements
 * it in memory for tests, and `mod.ts` picks the one for the running OS.
 *
 * Packets are raw IP packets (IPv4 or IPv6, told apart by the version nibble),
 * with no packet-information prefix.
 *
 * @module
 */

/** An address with its prefix length, as assigned to an interface or routed. */
export interface Prefix {
  /** The address in text form: `240.0.0.1` or `fd00::1`. */
  address: string;
  /** The prefix length in bits: 0–32 for IPv4, 0–128 for IPv6. */
  prefixLength: number;
}

/** Counters kept by a device; read them at any time, they only grow. */
export interface TunStats {
  /** Packets handed out by {@linkcode TunDevice.readSync}. */
  rxPackets: number;
  /** Bytes handed out by {@linkcode TunDevice.readSync}. */
  rxBytes: number;
  /** Packets accepted by {@linkcode TunDevice.writeSync}. */
  txPackets: number;
  /** Bytes accepted by {@linkcode TunDevice.writeSync}. */
  txBytes: number;
  /** Packets {@linkcode TunDevice.writeSync} had to drop (queue full, device gone). */
  txDropped: number;
  /** Read or write errors other than "would block". */
  errors: number;
}

/**
 * A layer-3 virtual network interface.
 *
 * Concurrency: one reader and one writer. `readSync` and `readable` belong to
 * the reader; `writeSync` may be called from anywhere on the same thread (JS is
 * single-threaded; the calls never overlap). Configuration methods may be called
 * at any time before `close`.
 *
 * After `close`: `readSync` returns -1, `readable` resolves `false`,
 * `writeSync` drops and counts, configuration methods reject.
 */
export interface TunDevice {
  /** The interface name the kernel gave the device (`vif0`). */
  readonly name: string;
  /** The interface index, for routes and addresses. */
  readonly index: number;
  /** The current MTU. */
  readonly mtu: number;
  /** Counters. */
  readonly stats: TunStats;

  /**
   * Reads one packet into `buf` without blocking.
   *
   * The caller owns `buf` and may reuse it as soon as the call returns; the
   * packet is `buf.subarray(0, n)`. `buf` must hold at least `mtu` bytes, else
   * a longer packet is truncated (and should be dropped by the caller).
   *
   * @returns the packet length; 0 when no packet is waiting; -1 once closed
   */
  readSync(buf: Uint8Array): number;

  /**
   * Waits until a packet can be read, without blocking the thread.
   *
   * @returns `true` when `readSync` will find a packet (or an error), `false`
   * once the device is closed: a pending wait ends promptly on `close`
   */
  readable(): Promise<boolean>;

  /**
   * Writes one packet without blocking. The device copies what it needs before
   * returning, so the caller may reuse `packet` at once. A packet the kernel
   * cannot take now is dropped and counted in `stats.txDropped` (as a NIC
   * would).
   *
   * @returns `true` when the packet was taken
   */
  writeSync(packet: Uint8Array): boolean;

  /** Sets the MTU. @throws {Error} with the errno name when the kernel refuses */
  setMtu(mtu: number): Promise<void>;
  /** Assigns an address (IPv6 addresses get no duplicate address detection). */
  addAddress(prefix: Prefix): Promise<void>;
  /** Brings the link up. */
  up(): Promise<void>;
  /** Routes `prefix` into the device (replacing an identical route of ours). */
  addRoute(prefix: Prefix): Promise<void>;
  /** Removes a route added by {@linkcode addRoute}; a missing route is not an error. */
  removeRoute(prefix: Prefix): Promise<void>;

  /**
   * Removes the device, and with it its addresses and routes. Idempotent.
   * Wakes a pending `readable()`.
   */
  close(): Promise<void>;
}

/** Options for opening a TUN device. */
export interface TunOptions {
  /** The wanted name; `%d` is replaced by the kernel (default `vif%d`). */
  name?: string;
  /** The MTU to set (default {@linkcode DEFAULT_MTU}). */
  mtu?: number;
}

/**
 * The default MTU. Flows through the TUN end on this host (the kernel's TCP
 * talks to the router's listener), so nothing outside ever sees this MTU, and a
 * large one cuts per-packet work by 40 times against 1500 (DESIGN.md §3).
 */
export const DEFAULT_MTU = 65535;
