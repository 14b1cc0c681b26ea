/**
 * The manager's health listener, for the kubelet's probes: plain HTTP,
 * `GET /readyz` (200 once the manager serves, 503 while it starts or stops)
 * and `GET /livez` (200 while its event loop turns, 503 when a turn took more
 * than the limit lately). A loop that is stuck outright answers nothing, and
 * the probe's timeout fails it the same way; a loop that froze and came back
 * (a burst of work that held it for seconds) is caught by the lag it left.
 * Three failed liveness probes in a row and the kubelet restarts the
 * container: a manager whose loop is stuck never answers a client again.
 *
 * It says nothing but those words: no counters, no sessions, no version,
 * since anyone in the cluster can reach it.
 *
 * @module
 */

import { hostPort } from "./policy.ts";

/** Options of {@linkcode startHealth}. */
export interface HealthOptions {
  /** The address to listen on. */
  hostname: string;
  /** The port; 0 picks one. */
  port: number;
  /** Whether the manager serves now. */
  ready(): boolean;
  /** The longest turn of the event loop that still counts as live, in ms. Default 2000. */
  maxLagMs?: number;
  /** How long a long turn is remembered, in ms. Default 30 s (three probe periods). */
  rememberMs?: number;
  /** Where log lines go. */
  log?: (line: string) => void;
}

/** A running health listener. */
export interface Health {
  /** `host:port` it listens on. */
  readonly address: string;
  /** The port it listens on. */
  readonly port: number;
  /** The longest turn of the event loop seen within the remembered time, in ms. */
  readonly lagMs: number;
  /** Stops listening and measuring. */
  close(): Promise<void>;
}

/** How often the loop is measured: a timer that should fire every this many ms. */
const TICK_MS = 250;

/**
 * Starts the health listener and the event-loop measurement.
 *
 * @param options Where to listen and what ready means.
 * @returns The running listener.
 * @throws {Deno.errors.AddrInUse} and the like when the address cannot be bound.
 */
export function startHealth(options: HealthOptions): Health {
  const maxLagMs = options.maxLagMs ?? 2000;
  const rememberMs = options.rememberMs ?? 30_000;
  let worst = 0;
  let worstAt = 0;
  let expected = performance.now() + TICK_MS;
  const ticker = setInterval(() => {
    const now = performance.now();
    const lag = Math.max(0, now - expected);
    expected = now + TICK_MS;
    if (lag >= worst || now - worstAt > rememberMs) {
      if (lag > maxLagMs && lag > worst) {
        options.log?.(`manager: health: the event loop was held for ${Math.round(lag)} ms`);
      }
      worst = lag;
      worstAt = now;
    }
  }, TICK_MS);
  const lagNow = () => performance.now() - worstAt > rememberMs ? 0 : worst;
  const server = Deno.serve({
    hostname: options.hostname,
    port: options.port,
    onListen: () => {},
  }, (request) => {
    const path = new URL(request.url).pathname;
    if (request.method !== "GET" && request.method !== "HEAD") {
      return new Response("method not allowed\n", { status: 405 });
    }
    if (path === "/livez" || path === "/healthz") {
      const lag = lagNow();
      return lag > maxLagMs
        ? new Response(`the event loop was held for ${Math.round(lag)} ms\n`, { status: 503 })
        : new Response("ok\n");
    }
    if (path === "/readyz") {
      return options.ready()
        ? new Response("ok\n")
        : new Response("not serving\n", { status: 503 });
    }
    return new Response("not found\n", { status: 404 });
  });
  const port = server.addr.port;
  return {
    address: hostPort(options.hostname, port),
    port,
    get lagMs() {
      return lagNow();
    },
    async close() {
      clearInterval(ticker);
      await server.shutdown();
    },
  };
}
