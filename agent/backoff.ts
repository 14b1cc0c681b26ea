/**
 * How long the agent waits before it tries the manager again: doubling from
 * a first wait up to a bound, each wait drawn at random from its upper half,
 * so that the agents of a large workload do not all come back at once when
 * the manager restarts.
 *
 * @module
 */

/** The waits of {@linkcode backoffDelay}. */
export interface Backoff {
  /** The first wait, in ms. */
  minMs: number;
  /** The longest, in ms. */
  maxMs: number;
}

/** The agent's default: from half a second up to 15 seconds. */
export const DEFAULT_BACKOFF: Backoff = { minMs: 500, maxMs: 15_000 };

/**
 * The wait before the next attempt.
 *
 * @param failures how many attempts failed in a row, less one (0 after the first failure)
 * @param backoff the first and longest waits
 * @param random a number in [0, 1) (`Math.random`)
 * @returns the wait in ms, between half the step and the step
 *
 * @example
 * ```ts
 * import { backoffDelay } from "./backoff.ts";
 *
 * const steps = [0, 1, 2, 10].map((n) => backoffDelay(n, { minMs: 100, maxMs: 1000 }, () => 0.999));
 * if (steps.join() !== "100,200,400,1000") throw new Error(steps.join());
 * ```
 */
export function backoffDelay(failures: number, backoff: Backoff, random: () => number): number {
  const step = Math.min(backoff.maxMs, backoff.minMs * 2 ** Math.min(Math.max(0, failures), 30));
  const r = random();
  const jitter = Number.isFinite(r) ? Math.min(Math.max(r, 0), 1) : 1;
  return Math.round(step / 2 + (step / 2) * jitter);
}
