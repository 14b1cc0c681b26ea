/**
 * What `vif connections` shows: every TCP connection and UDP flow of the
 * session, the router's (apps on this machine toward the cluster) and the
 * intercepts' (the cluster's connections to a local port), one document
 * bounded in entries and in bytes, so that it always fits one line of the
 * control protocol.
 *
 * @module
 */

import { FlowMeter } from "../net/flow_meter.ts";
import type { RouterFlow } from "../net/router.ts";
import type { OpenFrame } from "../rpc/mux.ts";
import type { Accepted } from "../rpc/mux_end.ts";
import { formatAddress } from "../net/address.ts";
import { MAX_LINE } from "./control.ts";

/** The most entries a `connections` answer holds. */
export const MAX_CONNECTIONS = 10_000;

/** The most bytes the entries of a `connections` answer take as JSON: a line's worth, with room. */
export const CONNECTIONS_BUDGET = MAX_LINE - 64 * 1024;

/** A transport address. */
export interface FlowEndpoint {
  /** An IPv4 or IPv6 address (or the host an intercept was given, `localhost`). */
  address: string;
  /** The port. */
  port: number;
}

/** One connection or flow in `vif connections -o json` (docs/daemon.md). */
export interface ConnectionEntry {
  /** The transport. */
  protocol: "tcp" | "udp";
  /** `outbound`: an app here toward the cluster; `intercept`: the cluster toward a local port. */
  kind: "outbound" | "intercept";
  /** Who opened it: the app's address, or the cluster's client of an intercept. */
  source: FlowEndpoint;
  /** Where it goes: the cluster address, or the intercept's local address. */
  destination: FlowEndpoint;
  /**
   * The name the destination was looked up as (`web.default`), or the
   * intercept (`intercept default/web:80`); `null` when not known.
   */
  name: string | null;
  /** `SYN_SENT`, `SYN_RECEIVED`, `ESTABLISHED`, `FIN_WAIT`, `CLOSE_WAIT`, `CLOSED`; UDP `DIALING`, `OPEN`. */
  state: string;
  /** Seconds since it opened, to a tenth. */
  ageSeconds: number;
  /** Payload bytes from the source to the destination. */
  bytesSent: number;
  /** Payload bytes from the destination to the source. */
  bytesReceived: number;
  /** Bytes per second from the source, over the last one to two seconds. */
  rateSent: number;
  /** Bytes per second to the source, over the last one to two seconds. */
  rateReceived: number;
}

/** What `connections` answers (docs/daemon.md). */
export interface ConnectionsDocument {
  /** The document's version: fields are only added under a new number. */
  schema: 1;
  /** When the snapshot was taken (ISO 8601). */
  at: string;
  /** The entries, busiest first (by rate, then by bytes). */
  flows: ConnectionEntry[];
  /** How many connections and flows there were in all. */
  total: number;
  /** How many were left out to keep the answer bounded. */
  truncated: number;
}

/**
 * An entry for one of the router's flows.
 *
 * @param flow the router's flow
 * @param name the destination's name, if known
 * @param now the router's clock (ms)
 * @returns the entry
 */
export function routerEntry(
  flow: RouterFlow,
  name: string | undefined,
  now: number,
): ConnectionEntry {
  return {
    protocol: flow.protocol,
    kind: "outbound",
    source: flow.source,
    destination: flow.destination,
    name: name ?? null,
    state: flow.state,
    ageSeconds: tenths((now - flow.openedAt) / 1000),
    bytesSent: flow.bytesSent,
    bytesReceived: flow.bytesReceived,
    rateSent: Math.round(flow.rateSent),
    rateReceived: Math.round(flow.rateReceived),
  };
}

function tenths(n: number): number {
  return Math.max(0, Math.round(n * 10) / 10);
}

/**
 * Sorts entries busiest first and keeps what fits: at most `limit` of them,
 * and no more than `maxBytes` of JSON.
 *
 * @param entries every connection and flow
 * @param options the limits and the time of the snapshot
 * @returns the document
 * @example
 * ```ts
 * import { connectionsDocument } from "./flows.ts";
 * connectionsDocument([], { at: new Date(0) }).truncated; // 0
 * ```
 */
export function connectionsDocument(
  entries: ConnectionEntry[],
  options: { at: Date; limit?: number; maxBytes?: number },
): ConnectionsDocument {
  const limit = Math.max(0, Math.min(options.limit ?? MAX_CONNECTIONS, MAX_CONNECTIONS));
  const budget = options.maxBytes ?? CONNECTIONS_BUDGET;
  const rate = (e: ConnectionEntry) => e.rateSent + e.rateReceived;
  const sorted = [...entries].sort((a, b) =>
    rate(b) - rate(a) || (b.bytesSent + b.bytesReceived) - (a.bytesSent + a.bytesReceived) ||
    a.ageSeconds - b.ageSeconds
  );
  const flows: ConnectionEntry[] = [];
  let bytes = 0;
  for (const e of sorted) {
    if (flows.length >= limit) break;
    // ASCII only (addresses, checked names), so characters are bytes; +1 for the comma.
    bytes += JSON.stringify(e).length + 1;
    if (bytes > budget) break;
    flows.push(e);
  }
  return {
    schema: 1,
    at: options.at.toISOString(),
    flows,
    total: entries.length,
    truncated: entries.length - flows.length,
  };
}

interface InterceptFlow {
  open: OpenFrame;
  local: FlowEndpoint;
  meter: FlowMeter;
  /** The local side; its `transferred` counts the bytes. */
  sink: unknown;
}

/** Options of {@linkcode InterceptFlows}. */
export interface InterceptFlowsOptions {
  /** The most flows followed (default 4096); more are served but not listed. */
  max?: number;
  /** The clock in ms (default `Date.now`). */
  now?: () => number;
}

/**
 * The intercepts' connections, as the daemon serves them: each accepted
 * TCP flow is followed from its start to its end, its bytes read from its
 * local side (`AppStream.transferred`).
 */
export class InterceptFlows {
  #flows = new Set<InterceptFlow>();
  #max: number;
  #now: () => number;

  /**
   * Makes an empty table.
   *
   * @param options the table's size and the clock
   */
  constructor(options: InterceptFlowsOptions = {}) {
    this.#max = options.max ?? 4096;
    this.#now = options.now ?? Date.now;
  }

  /** How many flows are followed. */
  get size(): number {
    return this.#flows.size;
  }

  /**
   * Follows an accepted flow: returns the acceptance with its `tcp` and
   * `onEnd` wrapped (a refusal, a UDP flow, or one past the table's size
   * as it came).
   *
   * @param open the OPEN the manager sent
   * @param accepted how the intercepts serve it
   * @returns the acceptance to hand back
   */
  track(open: OpenFrame, accepted: Accepted): Accepted {
    if (!("tcp" in accepted) || this.#flows.size >= this.#max) return accepted;
    const flow: InterceptFlow = {
      open,
      local: parseHostPort(printable(accepted.message)),
      meter: new FlowMeter(this.#now()),
      sink: null,
    };
    const { tcp, onEnd } = accepted;
    return {
      ...accepted,
      tcp: (f) => {
        const sink = tcp(f);
        flow.sink = sink;
        this.#flows.add(flow);
        return sink;
      },
      onEnd: (reason) => {
        this.#flows.delete(flow);
        onEnd?.(reason);
      },
    };
  }

  /**
   * Takes a sample of every flow's bytes for its rate (about once a second).
   *
   * @param now the clock (default the table's)
   */
  sample(now: number = this.#now()): void {
    for (const f of this.#flows) {
      this.#count(f);
      f.meter.sample(now);
    }
  }

  /**
   * The flows as entries.
   *
   * @param now the clock (default the table's)
   * @returns one entry per flow
   */
  entries(now: number = this.#now()): ConnectionEntry[] {
    return [...this.#flows].map((f) => {
      this.#count(f);
      const rates = f.meter.rates(now);
      return {
        protocol: "tcp",
        kind: "intercept",
        source: {
          address: formatAddress(f.open.sourceIp),
          port: f.open.sourcePort,
        },
        destination: f.local,
        name: f.open.tag ? `intercept ${printable(f.open.tag)}` : "intercept",
        state: "ESTABLISHED",
        ageSeconds: tenths((now - f.meter.openedAt) / 1000),
        bytesSent: f.meter.sent,
        bytesReceived: f.meter.received,
        rateSent: Math.round(rates.sent),
        rateReceived: Math.round(rates.received),
      };
    });
  }

  /** Copies the local side's byte counts into the meter: from the cluster is "sent". */
  #count(f: InterceptFlow): void {
    const t = (f.sink as { transferred?: { aToB: number; bToA: number } } | null)?.transferred;
    if (t === undefined) return;
    f.meter.sent = t.bToA;
    f.meter.received = t.aToB;
  }
}

/** `127.0.0.1:8080`, `[::1]:8080`, `::1:8080`, `localhost:8080` as an endpoint (port 0 when there is none). */
function parseHostPort(text: string): FlowEndpoint {
  const bracket = /^\[([^\]]*)\]:(\d+)$/.exec(text);
  if (bracket) return { address: bracket[1]!, port: Number(bracket[2]) };
  const colon = text.lastIndexOf(":");
  const port = text.slice(colon + 1);
  return colon > 0 && /^\d{1,5}$/.test(port)
    ? { address: text.slice(0, colon), port: Number(port) }
    : { address: text, port: 0 };
}

/** Text from the manager, fit for a terminal: printable ASCII only, at most 100 characters. */
function printable(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, "?").slice(0, 100);
}
