/**
 * Giving memory back after traffic: the daemon is long-lived, and a burst
 * (a download, a load test) grows its JS heap and glibc's native heap well
 * past what stays in use. V8 shrinks its heap in its own time (tens of
 * seconds) and glibc keeps freed pages; this does both sooner.
 *
 * @module
 */

import { trimHeap } from "../tun/mod.ts";

/** Traffic through the TUN so far, both ways. */
export interface Traffic {
  packets: number;
  bytes: number;
}

/** How often free native memory is given back regardless (see `trimHeap`). */
const TRIM_INTERVAL_MS = 30_000;
/** How often the daemon looks whether a burst of traffic has ended. */
const QUIET_CHECK_MS = 2_000;
/** Less traffic than this through the TUN in one check is quiet. */
const QUIET: Traffic = { packets: 2_000, bytes: 8 * 1024 * 1024 };
/** A burst worth collecting after: this much traffic since the last collection. */
const BURST: Traffic = { packets: 200_000, bytes: 256 * 1024 * 1024 };

/**
 * Gives glibc's free heap back every 30 s, and once traffic goes quiet after
 * a burst runs a full GC (when V8 runs with `--expose-gc`), then gives back
 * what it freed on the next check.
 *
 * @param traffic reads the traffic counters
 * @param log where the timings go (debug)
 * @returns stops it
 */
export function relieveMemory(
  traffic: () => Traffic,
  log: (level: "debug", message: string) => void,
): () => void {
  const trim = () => {
    const t0 = performance.now();
    trimHeap().then((trimmed) =>
      log("debug", `memory: heap trimmed (${trimmed}) in ${(performance.now() - t0).toFixed(1)} ms`)
    ).catch(() => {});
  };
  const trimmer = setInterval(trim, TRIM_INTERVAL_MS);
  let seen = traffic(), collectedAt = seen, trimNext = false;
  const relaxer = setInterval(() => {
    // The buffers a collection frees reach the allocator a little later.
    if (trimNext) trim();
    trimNext = false;
    const now = traffic();
    const quiet = now.packets - seen.packets < QUIET.packets &&
      now.bytes - seen.bytes < QUIET.bytes;
    const burst = now.packets - collectedAt.packets >= BURST.packets ||
      now.bytes - collectedAt.bytes >= BURST.bytes;
    seen = now;
    const gc = (globalThis as { gc?: () => void }).gc;
    if (!gc || !quiet || !burst) return;
    collectedAt = now;
    const t0 = performance.now();
    gc();
    log(
      "debug",
      `memory: traffic went quiet; heap collected in ${(performance.now() - t0).toFixed(1)} ms`,
    );
    trimNext = true;
  }, QUIET_CHECK_MS);
  return () => {
    clearInterval(trimmer);
    clearInterval(relaxer);
  };
}
