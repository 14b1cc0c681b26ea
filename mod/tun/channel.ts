/**
 * An in-memory TUN device for tests (after wireguard-go's `tuntest.ChannelTUN`):
 * the test plays the kernel, injecting the packets the device will read and
 * collecting the packets written to it. Configuration calls are recorded.
 *
 * @module
 */

import { DEFAULT_MTU, type Prefix, type TunDevice, type TunStats } from "./tun.ts";

/** The configuration calls a {@linkcode ChannelTun} can be told to fail. */
export type ChannelTunOperation = "setMtu" | "addAddress" | "up" | "addRoute" | "removeRoute";

/** Options for {@linkcode ChannelTun}. */
export interface ChannelTunOptions {
  /** The interface name (default `chan0`). */
  name?: string;
  /** The interface index (default 1). */
  index?: number;
  /** The MTU (default {@linkcode DEFAULT_MTU}). */
  mtu?: number;
  /**
   * How many written packets `outbound` holds before `writeSync` drops, as a
   * full kernel queue would (default unlimited).
   */
  outboundLimit?: number;
}

/**
 * A TUN device backed by queues.
 *
 * @example
 * ```ts
 * import { ChannelTun } from "./channel.ts";
 * const tun = new ChannelTun();
 * tun.inject(new Uint8Array([0x45, 0, 0, 20]));
 * const buf = new Uint8Array(tun.mtu);
 * tun.readSync(buf); // 4
 * tun.writeSync(new Uint8Array([0x45, 0, 0, 20]));
 * await tun.nextWritten(); // Uint8Array [0x45, 0, 0, 20]
 * ```
 */
export class ChannelTun implements TunDevice {
  readonly name: string;
  readonly index: number;
  readonly stats: TunStats = {
    rxPackets: 0,
    rxBytes: 0,
    txPackets: 0,
    txBytes: 0,
    txDropped: 0,
    errors: 0,
  };
  /** Every packet written with `writeSync`, in order (copies); read it, do not shorten it. */
  readonly outbound: Uint8Array[] = [];
  /** The addresses assigned, in order. */
  readonly addresses: Prefix[] = [];
  /** The routes currently added, in order. */
  readonly routes: Prefix[] = [];
  /** Whether `up()` was called. */
  isUp = false;

  #mtu: number;
  #outboundLimit: number;
  #inbound: Uint8Array[] = [];
  #readers: Array<(ready: boolean) => void> = [];
  #taken = 0;
  #writeWaiters: Array<(packet: Uint8Array | undefined) => void> = [];
  #failures = new Map<ChannelTunOperation, Error>();
  #closed = false;

  /**
   * Makes the device.
   *
   * @param options name, index, MTU, outbound limit
   */
  constructor(options: ChannelTunOptions = {}) {
    this.name = options.name ?? "chan0";
    this.index = options.index ?? 1;
    this.#mtu = options.mtu ?? DEFAULT_MTU;
    this.#outboundLimit = options.outboundLimit ?? Infinity;
  }

  /** The current MTU. */
  get mtu(): number {
    return this.#mtu;
  }

  /** Whether `close()` was called. */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Queues a packet for `readSync`, as if the kernel had routed it into the
   * interface. The packet is copied. Ignored after `close`.
   *
   * @param packet a raw IP packet
   */
  inject(packet: Uint8Array): void {
    if (this.#closed) return;
    this.#inbound.push(packet.slice());
    this.#wakeReaders(true);
  }

  /**
   * Waits for the next written packet not yet returned by this method (the
   * first call returns `outbound[0]`, the next `outbound[1]`, …).
   *
   * @returns the packet
   * @throws {Error} when the device is closed before another packet is written
   */
  nextWritten(): Promise<Uint8Array> {
    const packet = this.outbound[this.#taken];
    if (packet) {
      this.#taken++;
      return Promise.resolve(packet);
    }
    if (this.#closed) {
      return Promise.reject(new Error(`Cannot wait for a packet on "${this.name}": closed`));
    }
    return new Promise((resolve, reject) => {
      this.#writeWaiters.push((p) => {
        if (p) resolve(p);
        else reject(new Error(`Cannot wait for a packet on "${this.name}": closed`));
      });
    });
  }

  /**
   * Makes the next call of `operation` reject with `error` (once).
   *
   * @param operation the configuration method
   * @param error what it rejects with
   */
  failNext(operation: ChannelTunOperation, error: Error): void {
    this.#failures.set(operation, error);
  }

  readSync(buf: Uint8Array): number {
    if (this.#closed) return -1;
    const packet = this.#inbound.shift();
    if (!packet) return 0;
    const n = Math.min(packet.length, buf.length);
    buf.set(packet.subarray(0, n));
    this.stats.rxPackets++;
    this.stats.rxBytes += n;
    return n;
  }

  readable(): Promise<boolean> {
    if (this.#closed) return Promise.resolve(false);
    if (this.#inbound.length) return Promise.resolve(true);
    return new Promise((resolve) => this.#readers.push(resolve));
  }

  writeSync(packet: Uint8Array): boolean {
    if (this.#closed || this.outbound.length - this.#taken >= this.#outboundLimit) {
      this.stats.txDropped++;
      return false;
    }
    const copy = packet.slice();
    this.stats.txPackets++;
    this.stats.txBytes += copy.length;
    const waiter = this.#writeWaiters.shift();
    this.outbound.push(copy);
    if (waiter) {
      this.#taken++;
      waiter(copy);
    }
    return true;
  }

  setMtu(mtu: number): Promise<void> {
    return this.#configure("setMtu", `Cannot set MTU "${mtu}" on "${this.name}"`, () => {
      // What Linux allows on a TUN: 68 (IPv4's minimum) to 65535.
      if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535) {
        throw new RangeError(`Cannot set MTU "${mtu}" on "${this.name}": must be 68 to 65535`);
      }
      this.#mtu = mtu;
    });
  }

  addAddress(prefix: Prefix): Promise<void> {
    return this.#configure(
      "addAddress",
      `Cannot add address "${show(prefix)}" to "${this.name}"`,
      () => {
        if (!this.addresses.some((a) => same(a, prefix))) this.addresses.push({ ...prefix });
      },
    );
  }

  up(): Promise<void> {
    return this.#configure("up", `Cannot bring up "${this.name}"`, () => {
      this.isUp = true;
    });
  }

  addRoute(prefix: Prefix): Promise<void> {
    return this.#configure(
      "addRoute",
      `Cannot add route "${show(prefix)}" to "${this.name}"`,
      () => {
        if (!this.isUp) {
          throw new Error(
            `Cannot add route "${show(prefix)}" to "${this.name}": the link is down`,
          );
        }
        if (!this.routes.some((r) => same(r, prefix))) this.routes.push({ ...prefix });
      },
    );
  }

  removeRoute(prefix: Prefix): Promise<void> {
    return this.#configure(
      "removeRoute",
      `Cannot remove route "${show(prefix)}" from "${this.name}"`,
      () => {
        const at = this.routes.findIndex((r) => same(r, prefix));
        if (at >= 0) this.routes.splice(at, 1);
      },
    );
  }

  close(): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#closed = true;
    this.#inbound.length = 0;
    this.routes.length = 0;
    this.addresses.length = 0;
    this.isUp = false;
    this.#wakeReaders(false);
    for (const waiter of this.#writeWaiters.splice(0)) waiter(undefined);
    return Promise.resolve();
  }

  #wakeReaders(ready: boolean): void {
    for (const resolve of this.#readers.splice(0)) resolve(ready);
  }

  #configure(operation: ChannelTunOperation, doing: string, apply: () => void): Promise<void> {
    if (this.#closed) return Promise.reject(new Error(`${doing}: the device is closed`));
    const failure = this.#failures.get(operation);
    if (failure) {
      this.#failures.delete(operation);
      return Promise.reject(failure);
    }
    try {
      apply();
      return Promise.resolve();
    } catch (error) {
      return Promise.reject(error);
    }
  }
}

function show(prefix: Prefix): string {
  return `${prefix.address}/${prefix.prefixLength}`;
}

function same(a: Prefix, b: Prefix): boolean {
  return a.address === b.address && a.prefixLength === b.prefixLength;
}
