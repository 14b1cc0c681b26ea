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
 * Or this much growth of the JS heap since the last collection: work that is
 * not TUN traffic (a burst of DNS queries, many connections opened) grows it
 * too.
 */
const HEAP_GROWTH = 8 * 1024 * 1024;

/**
 * Gives glibc's free heap back every 30 s, and once traffic goes quiet after
 * a burst (or after the JS heap grew by {@linkcode HEAP_GROWTH}) runs a full
 * GC (when V8 runs with `--expose-gc`), then gives back what it freed on the
 * next check.
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
  const heap = () => Deno.memoryUsage().heapTotal;
  let seen = traffic(), collectedAt = seen, heapAt = heap(), trimNext = false;
  const relaxer = setInterval(() => {
    // The buffers a collection frees reach the allocator a little later.
    if (trimNext) trim();
    trimNext = false;
    const now = traffic();
    const quiet = now.packets - seen.packets < QUIET.packets &&
      now.bytes - seen.bytes < QUIET.bytes;
    const heapNow = heap();
    const burst = now.packets - collectedAt.packets >= BURST.packets ||
      now.bytes - collectedAt.bytes >= BURST.bytes;
    const grown = heapNow - heapAt >= HEAP_GROWTH;
    seen = now;
    const gc = (globalThis as { gc?: () => void }).gc;
    if (!gc || !quiet || !(burst || grown)) return;
    collectedAt = now;
    const t0 = performance.now();
    gc();
    heapAt = heap();
    log(
      "debug",
      `memory: ${burst ? "traffic went quiet" : "the heap grew"}; heap collected in ${
        (performance.now() - t0).toFixed(1)
      } ms (${(heapNow / 1048576).toFixed(1)} -> ${(heapAt / 1048576).toFixed(1)} MiB)`,
    );
    trimNext = true;
  }, QUIET_CHECK_MS);
  return () => {
    clearInterval(trimmer);
    clearInterval(relaxer);
  };
}
