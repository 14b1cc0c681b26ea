/**
 * The NAT ports of one fake peer address: which are free, in use, or resting
 * after a connection ended (so that a new SYN never meets the kernel's
 * TIME_WAIT socket of the last one). Allocation and release are O(1):
 *
 * - ports never used are handed out in order from the low end;
 * - a port released with a rest goes to the back of a queue; since every rest
 *   is equally long, the queue is in order of when the ports are free again,
 *   and only its head need be looked at;
 * - a port released with no rest (a dial that failed before the kernel saw
 *   the SYN) is free again at once.
 *
 * A scan of all ports for a free one, which this replaces, cost a whole
 * sweep of the range per connection once a peer's ports were all resting
 * (about 1,000 new connections a second are enough to get there).
 *
 * @module
 */

const FREE = 0;
const IN_USE = 1;
const RESTING = 2;

/**
 * The ports `lo`–`hi` of one peer address.
 *
 * @example
 * ```ts
 * import { NatPorts } from "./nat_ports.ts";
 * const ports = new NatPorts(1024, 1025);
 * const a = ports.take(0)!; // 1024
 * ports.release(a, 65_000); // resting until 65 s
 * ports.take(1)!; // 1025
 * ports.take(2); // undefined: 1024 rests until 65 s
 * ports.take(65_000); // 1024
 * ```
 */
export class NatPorts {
  readonly lo: number;
  readonly size: number;
  /** Ports in use. */
  inUse = 0;
  #state: Uint8Array;
  /** Ports below `lo + #fresh` have been handed out at least once. */
  #fresh = 0;
  /** Ports freed with no rest, to hand out first. */
  #ready: number[] = [];
  /** Resting ports and when each is free, a ring in order of that time. */
  #restPort: Uint16Array;
  #restUntil: Float64Array;
  #restHead = 0;
  #restCount = 0;

  /**
   * @param lo the first port
   * @param hi the last port, inclusive
   * @throws {RangeError} when the range is empty or outside 1–65535
   */
  constructor(lo: number, hi: number) {
    if (!(lo >= 1 && hi <= 65535 && lo <= hi)) {
      throw new RangeError(`Cannot use NAT ports ${lo}-${hi}: not a range within 1-65535`);
    }
    this.lo = lo;
    this.size = hi - lo + 1;
    this.#state = new Uint8Array(this.size);
    this.#restPort = new Uint16Array(this.size);
    this.#restUntil = new Float64Array(this.size);
  }

  /**
   * Takes a free port.
   *
   * @param now the clock, in ms
   * @returns the port, or `undefined` when every port is in use or resting
   */
  take(now: number): number | undefined {
    let slot: number;
    if (this.#ready.length > 0) slot = this.#ready.pop()!;
    else if (this.#fresh < this.size) slot = this.#fresh++;
    else if (this.#restCount > 0 && this.#restUntil[this.#restHead]! <= now) {
      slot = this.#restPort[this.#restHead]!;
      this.#restHead = (this.#restHead + 1) % this.size;
      this.#restCount--;
    } else return undefined;
    this.#state[slot] = IN_USE;
    this.inUse++;
    return this.lo + slot;
  }

  /**
   * Gives a port back. A port not in use is left as it is.
   *
   * @param port the port
   * @param until when it may be taken again (ms, the clock of {@linkcode take});
   *   0 or less: at once. Ports resting are queued in the order they were
   *   released, so every rest must be equally long.
   */
  release(port: number, until: number): void {
    const slot = port - this.lo;
    if (this.#state[slot] !== IN_USE) return;
    this.inUse--;
    if (until <= 0) {
      this.#state[slot] = FREE;
      this.#ready.push(slot);
      return;
    }
    this.#state[slot] = RESTING;
    const at = (this.#restHead + this.#restCount) % this.size;
    this.#restPort[at] = slot;
    this.#restUntil[at] = until;
    this.#restCount++;
  }

  /**
   * Whether `port` is in use.
   *
   * @param port the port
   * @returns true while taken and not released
   */
  isInUse(port: number): boolean {
    return this.#state[port - this.lo] === IN_USE;
  }
}
