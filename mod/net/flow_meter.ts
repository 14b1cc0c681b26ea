/**
 * Byte counters of one flow, both ways, and its current rate over a short
 * moving window. The flow's owner adds to the counters as bytes pass (two
 * additions per packet, nothing else on the data path) and calls
 * {@linkcode FlowMeter.sample} about once a second from its housekeeping;
 * the rate is then what passed since the older of the last two samples:
 * the last one to two seconds.
 *
 * Pure: the clock is passed in.
 *
 * @module
 */

/** Bytes per second each way. */
export interface FlowRates {
  /** From the flow's source to its destination. */
  sent: number;
  /** From the destination back to the source. */
  received: number;
}

/**
 * The counters and rate window of one flow.
 *
 * @example
 * ```ts
 * import { FlowMeter } from "./flow_meter.ts";
 * const meter = new FlowMeter(0);
 * meter.sent += 1000;
 * meter.sample(1000);
 * meter.sent += 3000;
 * meter.sample(2000);
 * meter.rates(2500).sent; // 3000 bytes in the 1.5 s since the sample at 1000: 2000 B/s
 * ```
 */
export class FlowMeter {
  /** Bytes from the source to the destination, so far. */
  sent = 0;
  /** Bytes from the destination to the source, so far. */
  received = 0;
  /** When the flow began (ms). */
  readonly openedAt: number;
  // The older sample (the window's start) and the newer one.
  #oldAt: number;
  #oldSent = 0;
  #oldReceived = 0;
  #newAt: number;
  #newSent = 0;
  #newReceived = 0;

  /**
   * Makes the meter of a flow that begins now, with nothing counted.
   *
   * @param now when the flow began, in ms
   */
  constructor(now: number) {
    this.openedAt = now;
    this.#oldAt = this.#newAt = now;
  }

  /**
   * Takes a sample of the counters: the previous sample becomes the window's
   * start.
   *
   * @param now the clock, in ms
   */
  sample(now: number): void {
    this.#oldAt = this.#newAt;
    this.#oldSent = this.#newSent;
    this.#oldReceived = this.#newReceived;
    this.#newAt = now;
    this.#newSent = this.sent;
    this.#newReceived = this.received;
  }

  /**
   * The rates since the window's start: bytes per second each way. A flow
   * younger than its first sample is measured from its start; no time
   * passed means no rate.
   *
   * @param now the clock, in ms
   * @returns bytes per second each way
   */
  rates(now: number): FlowRates {
    const ms = now - this.#oldAt;
    if (ms <= 0) return { sent: 0, received: 0 };
    return {
      sent: Math.max(0, this.sent - this.#oldSent) * 1000 / ms,
      received: Math.max(0, this.received - this.#oldReceived) * 1000 / ms,
    };
  }
}
