/**
 * The manager's bounds: how many sessions, flows and DNS queries it keeps,
 * and how many bytes it holds for destinations that read slowly, per session
 * and in total (docs/protocol.md, "Limits"). A client is a peer like any
 * other: whatever it sends, the manager's memory and descriptors stay within
 * these, and what one session does past its own bounds costs that session's
 * flows, never another's.
 *
 * Pure: no I/O, no clock.
 *
 * @module
 */

/** The manager's bounds. Every one is a positive whole number. */
export interface Limits {
  /** Live sessions. */
  sessions: number;
  /** Open TCP flows, in all sessions. */
  tcpFlows: number;
  /** Open TCP flows of one session. */
  tcpFlowsPerSession: number;
  /** Open UDP flows, in all sessions. */
  udpFlows: number;
  /** Open UDP flows of one session. */
  udpFlowsPerSession: number;
  /** DNS queries waiting for the cluster's DNS server, in all sessions. */
  dnsInFlight: number;
  /** DNS queries of one session waiting for the cluster's DNS server. */
  dnsInFlightPerSession: number;
  /** Bytes received from clients and not yet taken by destinations, in all sessions. */
  buffered: number;
  /** Bytes received from one session and not yet taken by its destinations. */
  bufferedPerSession: number;
}

/** A limit's name. */
export type LimitName = keyof Limits;

const MiB = 1024 * 1024;

/**
 * The defaults, sized for the manager's pod (a 512 MiB memory limit, the
 * kernel's default of 1,048,576 open files):
 *
 * - flows: `deno task bench` holds 10,000 connections through one session, so a
 *   session may have 16,384 TCP flows; 65,536 in all keeps the descriptors (one
 *   per flow) well inside the pod's.
 * - DNS: a resolver rarely has more than a few hundred queries out; the
 *   forwarder's 16-bit id space holds 65,536, and 8,192 leaves it mostly free.
 * - bytes: each TCP flow may hold its window (4 MiB) for a destination that
 *   does not read; 64 MiB per session is 16 such flows at once, and 256 MiB in
 *   all leaves half of the pod's limit to the rest of the manager.
 */
export const DEFAULT_LIMITS: Readonly<Limits> = Object.freeze({
  sessions: 1024,
  tcpFlows: 65_536,
  tcpFlowsPerSession: 16_384,
  udpFlows: 16_384,
  udpFlowsPerSession: 4096,
  dnsInFlight: 8192,
  dnsInFlightPerSession: 1024,
  buffered: 256 * MiB,
  bufferedPerSession: 64 * MiB,
});

/** How each limit is set on the command line, and what it counts (for `--help` and errors). */
export const LIMIT_FLAGS: Readonly<Record<LimitName, { flag: string; what: string }>> = {
  sessions: { flag: "--max-sessions", what: "live sessions" },
  tcpFlows: { flag: "--max-tcp-flows", what: "open TCP flows in all sessions" },
  tcpFlowsPerSession: {
    flag: "--max-tcp-flows-per-session",
    what: "open TCP flows of one session",
  },
  udpFlows: { flag: "--max-udp-flows", what: "open UDP flows in all sessions" },
  udpFlowsPerSession: {
    flag: "--max-udp-flows-per-session",
    what: "open UDP flows of one session",
  },
  dnsInFlight: { flag: "--max-dns-in-flight", what: "DNS queries in flight in all sessions" },
  dnsInFlightPerSession: {
    flag: "--max-dns-in-flight-per-session",
    what: "DNS queries in flight of one session",
  },
  buffered: {
    flag: "--max-buffered",
    what: "bytes held for destinations in all sessions",
  },
  bufferedPerSession: {
    flag: "--max-buffered-per-session",
    what: "bytes held for the destinations of one session",
  },
};

/** The most DNS queries the forwarder's 16-bit id space can hold with room to spare. */
export const MAX_DNS_IN_FLIGHT = 60_000;

/**
 * Fills in the defaults and checks every limit.
 *
 * @param given Limits to change; the rest are {@linkcode DEFAULT_LIMITS}.
 * @returns The limits.
 * @throws {RangeError} When a limit is not a positive whole number, a
 *   per-session limit is above its total, or DNS in flight is above
 *   {@linkcode MAX_DNS_IN_FLIGHT}.
 *
 * @example
 * ```ts
 * import { resolveLimits } from "./limits.ts";
 *
 * const limits = resolveLimits({ tcpFlowsPerSession: 100 });
 * if (limits.tcpFlowsPerSession !== 100 || limits.sessions !== 1024) throw new Error();
 * ```
 */
export function resolveLimits(given: Partial<Limits> = {}): Limits {
  const limits = { ...DEFAULT_LIMITS, ...given };
  for (const [name, value] of Object.entries(limits) as [LimitName, number][]) {
    if (!Number.isSafeInteger(value) || value < 1) {
      throw new RangeError(
        `The limit ${LIMIT_FLAGS[name].flag} "${value}" is not a positive whole number`,
      );
    }
  }
  const pairs: [LimitName, LimitName][] = [
    ["tcpFlowsPerSession", "tcpFlows"],
    ["udpFlowsPerSession", "udpFlows"],
    ["dnsInFlightPerSession", "dnsInFlight"],
    ["bufferedPerSession", "buffered"],
  ];
  for (const [one, all] of pairs) {
    if (limits[one] > limits[all]) {
      throw new RangeError(
        `The limit ${LIMIT_FLAGS[one].flag} (${limits[one]}) is above ${LIMIT_FLAGS[all].flag} (${
          limits[all]
        })`,
      );
    }
  }
  if (limits.dnsInFlight > MAX_DNS_IN_FLIGHT) {
    throw new RangeError(
      `The limit ${LIMIT_FLAGS.dnsInFlight.flag} (${limits.dnsInFlight}) is above ${MAX_DNS_IN_FLIGHT}, what one DNS id space holds`,
    );
  }
  return limits;
}

/** What one session (or the whole manager) holds now. */
export class Usage {
  /** Open TCP flows. */
  tcp = 0;
  /** Open UDP flows. */
  udp = 0;
  /** DNS queries in flight. */
  dns = 0;
  /** Bytes received and not yet taken by destinations. */
  buffered = 0;
}

/** A kind of thing a session holds a count of. */
export type Holding = "tcp" | "udp" | "dns";

const PER_SESSION: Record<Holding, LimitName> = {
  tcp: "tcpFlowsPerSession",
  udp: "udpFlowsPerSession",
  dns: "dnsInFlightPerSession",
};
const TOTAL: Record<Holding, LimitName> = { tcp: "tcpFlows", udp: "udpFlows", dns: "dnsInFlight" };
const NOUN: Readonly<Record<Holding, string>> = {
  tcp: "TCP flows open",
  udp: "UDP flows open",
  dns: "DNS queries in flight",
};

/**
 * Counts what every session holds against the {@linkcode Limits}: a flow or
 * query is {@linkcode Admission.take}n before it starts and
 * {@linkcode Admission.give}n back once, when it ends.
 *
 * New TCP flows are refused once the bytes held reach three quarters of a
 * byte limit, so that the manager turns new work away before it has to reset
 * flows; a flow whose bytes would take the total past the limit itself is
 * reset ({@linkcode Admission.hold}).
 *
 * @example
 * ```ts
 * import { Admission, resolveLimits, Usage } from "./limits.ts";
 *
 * const admission = new Admission(resolveLimits({ tcpFlowsPerSession: 1 }));
 * const session = new Usage();
 * if (admission.take("tcp", session) !== undefined) throw new Error("first refused");
 * if (admission.take("tcp", session) === undefined) throw new Error("second taken");
 * admission.give("tcp", session);
 * ```
 */
export class Admission {
  /** The limits. */
  readonly limits: Readonly<Limits>;
  /** What all sessions hold. */
  readonly total = new Usage();
  /** How many times each limit turned something away (or reset a flow), since start. */
  readonly refused: Partial<Record<LimitName, number>> = {};

  /**
   * Makes the counter.
   *
   * @param limits The bounds.
   */
  constructor(limits: Readonly<Limits>) {
    this.limits = limits;
  }

  /**
   * Takes one flow or query for a session, when the limits allow it.
   *
   * @param kind What.
   * @param session What the session holds.
   * @returns `undefined` when taken, else why not (for the client).
   */
  take(kind: Holding, session: Usage): string | undefined {
    const limits = this.limits;
    const one = PER_SESSION[kind], all = TOTAL[kind];
    if (session[kind] >= limits[one]) {
      return this.#refuse(one, `the session has ${limits[one]} ${NOUN[kind]}, its limit`);
    }
    if (this.total[kind] >= limits[all]) {
      return this.#refuse(all, `the traffic-manager has ${limits[all]} ${NOUN[kind]}, its limit`);
    }
    if (kind === "tcp") {
      if (session.buffered >= limits.bufferedPerSession * 0.75) {
        return this.#refuse(
          "bufferedPerSession",
          `the session holds ${mib(session.buffered)} for destinations that read slowly, ` +
            `near its limit of ${mib(limits.bufferedPerSession)}`,
        );
      }
      if (this.total.buffered >= limits.buffered * 0.75) {
        return this.#refuse(
          "buffered",
          `the traffic-manager holds ${mib(this.total.buffered)} for destinations, ` +
            `near its limit of ${mib(limits.buffered)}`,
        );
      }
    }
    session[kind]++;
    this.total[kind]++;
    return undefined;
  }

  /**
   * Tells whether one more session may arrive.
   *
   * @param live How many sessions are live now.
   * @returns `undefined` when it may, else why not (for the client).
   */
  takeSession(live: number): string | undefined {
    if (live < this.limits.sessions) return undefined;
    return this.#refuse(
      "sessions",
      `the traffic-manager has ${this.limits.sessions} sessions, its limit`,
    );
  }

  /**
   * Gives back what {@linkcode Admission.take} took.
   *
   * @param kind What.
   * @param session What the session holds.
   */
  give(kind: Holding, session: Usage): void {
    session[kind]--;
    this.total[kind]--;
  }

  /**
   * Counts bytes a session's flow holds for its destination (negative: taken
   * by the destination). Bytes past a limit are not counted: the caller must
   * reset the flow that brought them.
   *
   * @param session What the session holds.
   * @param bytes The change.
   * @returns `undefined` when counted, else which limit they would break (for the reset's reason).
   */
  hold(session: Usage, bytes: number): string | undefined {
    if (bytes > 0) {
      if (session.buffered + bytes > this.limits.bufferedPerSession) {
        return this.#refuse(
          "bufferedPerSession",
          `the session would hold more than ${
            mib(this.limits.bufferedPerSession)
          } for destinations that do not read`,
        );
      }
      if (this.total.buffered + bytes > this.limits.buffered) {
        return this.#refuse(
          "buffered",
          `the traffic-manager would hold more than ${mib(this.limits.buffered)} for destinations`,
        );
      }
    }
    session.buffered += bytes;
    this.total.buffered += bytes;
    return undefined;
  }

  /** Counts one refusal of `name` and says which flag sets it. */
  #refuse(name: LimitName, why: string): string {
    this.refused[name] = (this.refused[name] ?? 0) + 1;
    return `${why} (${LIMIT_FLAGS[name].flag})`;
  }
}

function mib(bytes: number): string {
  return `${Math.round(bytes / MiB * 10) / 10} MiB`;
}
