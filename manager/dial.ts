/**
 * Dialing for the manager's flows: the admission of a dial request (the
 * session, the destination policy, the limits), the dial itself (TCP with a
 * timeout, a connected UDP socket, an ICMP echo), and what a flow needs of
 * its socket afterwards (ending a TCP socket the way the client asked, the
 * idle timer and the bounded sender of a UDP flow). `mux.ts` serves the
 * flows; this is what it dials with.
 *
 * @module
 */

import dgram from "node:dgram";
import net from "node:net";
import { formatAddress } from "../mod/net/address.ts";
import { DialResult_Code, Protocol, UDP_BUFFER_LIMIT } from "../mod/rpc/service.ts";
import type { Admission, Holding } from "./limits.ts";
import type { Pinger } from "./ping.ts";
import { type DestinationPolicy, hostPort, type TunnelProtocol } from "./policy.ts";
import type { Session, SessionTable } from "./sessions.ts";
import type { InterceptContext } from "./intercepts.ts";
import type { ManagerStats } from "./stats.ts";

export { UDP_BUFFER_LIMIT };

/** What a `Mux` call and its flows need of the manager. */
export interface FlowContext {
  /** The live sessions. */
  sessions: SessionTable;
  /** The destination policy as of now (it follows cluster-info changes). */
  policy(): DestinationPolicy;
  /** Counters. */
  stats: ManagerStats;
  /** What every session holds, against the manager's limits. */
  admission: Admission;
  /** Where log lines go (each starts with `manager: `). */
  log?: (line: string) => void;
  /** The dial timeout when an OPEN asks for none, in ms. */
  dialTimeoutMs: number;
  /** How long a UDP flow lives without a datagram either way, in ms. */
  udpIdleTimeoutMs: number;
  /** Sends ICMP echoes. */
  ping: Pinger;
  /** Every `Mux` call open, to end them when the manager stops. */
  open: Set<{ abort(reason: string): void }>;
  /**
   * Answers a DNS query with the cluster's DNS server, counting it; rejects
   * when there is none or it did not answer.
   */
  resolveDns(query: Uint8Array): Promise<Uint8Array>;
  /** Intercepts: sftp streams and DNS through agents. Absent: no intercepts. */
  intercepts?: InterceptContext;
}

/** The longest dial timeout a client may ask for. */
const MAX_DIAL_TIMEOUT_MS = 120_000;

const PROTOCOLS: Partial<Record<Protocol, TunnelProtocol>> = {
  [Protocol.TCP]: "tcp",
  [Protocol.UDP]: "udp",
  [Protocol.ICMP]: "icmp",
};

const OUTCOMES: Record<DialResult_Code, string> = {
  [DialResult_Code.UNSPECIFIED]: "unspecified",
  [DialResult_Code.OK]: "ok",
  [DialResult_Code.REFUSED]: "refused",
  [DialResult_Code.UNREACHABLE]: "unreachable",
  [DialResult_Code.TIMEOUT]: "timeout",
  [DialResult_Code.PROHIBITED]: "prohibited",
  [DialResult_Code.NO_SESSION]: "no-session",
};

/** A dial request the manager agreed to make. */
export interface Admitted {
  session: Session;
  /**
   * Gives back the flow the request holds against the limits; call it once
   * the dial failed or the flow ended. Safe to call twice.
   */
  release(): void;
  protocol: TunnelProtocol;
  /** The destination, as text. */
  host: string;
  port: number;
  /** The dial timeout to use, in ms. */
  timeoutMs: number;
}

/**
 * Checks a dial request: the session, the protocol, the destination policy
 * and the limits, and the dial timeout within bounds.
 *
 * @param context The manager's sessions and policy.
 * @param sessionId The session the request names.
 * @param protocol The `vif.v1.Protocol` number.
 * @param ip The destination address, 4 or 16 bytes (v4-mapped allowed).
 * @param port The destination port.
 * @param dialTimeoutMs The timeout asked for; 0 for the default.
 * @returns The admitted request, or the dial result that refuses it.
 */
export function admit(
  context: FlowContext,
  sessionId: string,
  protocol: number,
  ip: Uint8Array,
  port: number,
  dialTimeoutMs: number,
): Admitted | { code: DialResult_Code; message: string } {
  const session = context.sessions.get(sessionId);
  if (session === undefined) {
    return { code: DialResult_Code.NO_SESSION, message: unknownSession(sessionId) };
  }
  const kind = PROTOCOLS[protocol as Protocol];
  if (kind === undefined) {
    return {
      code: DialResult_Code.PROHIBITED,
      message: `protocol "${protocol}" is not supported`,
    };
  }
  const verdict = context.policy().check(kind, ip, port, session.client.alsoProxy);
  if (!verdict.allowed) return { code: DialResult_Code.PROHIBITED, message: verdict.reason };
  // A ping is a process of its own while it runs: it counts as a UDP flow.
  const holding: Holding = kind === "tcp" ? "tcp" : "udp";
  const refused = context.admission.take(holding, session.usage);
  if (refused !== undefined) {
    return { code: DialResult_Code.UNREACHABLE, message: `refused: ${refused}` };
  }
  let held = true;
  return {
    session,
    release: () => {
      if (!held) return;
      held = false;
      context.admission.give(holding, session.usage);
    },
    protocol: kind,
    host: formatAddress(unmapped(ip)),
    port,
    // A client may ask for a shorter or longer wait, within reason.
    timeoutMs: dialTimeoutMs > 0
      ? Math.min(dialTimeoutMs, MAX_DIAL_TIMEOUT_MS)
      : context.dialTimeoutMs,
  };
}

/** What a dial left: an open socket and the message of its OK. */
export type Dialed = { tcp: net.Socket; message: string } | { udp: dgram.Socket; message: string };

/**
 * Dials an admitted request. A request that
 * ends here (a failed dial, a ping) gives its flow back to the limits; an
 * open socket keeps it until its flow calls `admitted.release()`.
 *
 * @param admitted The request.
 * @param context The manager's pinger.
 * @returns The open socket, or the dial result that ends the request: a
 *   failure, or for ICMP the echo's outcome.
 */
export async function dialAdmitted(
  admitted: Admitted,
  context: FlowContext,
): Promise<Dialed | { code: DialResult_Code; message: string }> {
  try {
    const outcome = await dial(admitted, context);
    if ("code" in outcome) admitted.release();
    return outcome;
  } catch (error) {
    admitted.release();
    throw error;
  }
}

async function dial(
  admitted: Admitted,
  context: FlowContext,
): Promise<Dialed | { code: DialResult_Code; message: string }> {
  const { host, port, timeoutMs } = admitted;
  switch (admitted.protocol) {
    case "icmp":
      return await context.ping(host, timeoutMs);
    case "tcp": {
      const dialed = await dialTcp(host, port, timeoutMs);
      if ("code" in dialed) return dialed;
      return { tcp: dialed.socket, message: `connected to ${hostPort(host, port)}` };
    }
    case "udp": {
      const opened = await openUdp(host, port, timeoutMs);
      if ("code" in opened) return opened;
      return { udp: opened.socket, message: `udp socket connected to ${hostPort(host, port)}` };
    }
  }
}

/**
 * Closes the socket of a dial nobody wants any more (the client gave up, the
 * session ended while it ran).
 *
 * @param dialed What the dial left.
 */
export function dropDialed(dialed: Dialed): void {
  if ("tcp" in dialed) dialed.tcp.destroy();
  else dialed.udp.close();
}

/**
 * The NO_SESSION message for a session the manager does not know.
 *
 * @param sessionId The id the client sent.
 * @returns The message.
 */
export function unknownSession(sessionId: string): string {
  return `session "${sessionId}" is unknown or expired: arrive again`;
}

/**
 * The NO_SESSION message for a session that ended while its dial ran.
 *
 * @param session The session.
 * @returns The message.
 */
export function sessionEnded(session: Session): string {
  return `session "${session.id}" ended`;
}

/**
 * Counts a dial outcome.
 *
 * @param context The manager's counters.
 * @param code The outcome.
 */
export function countDial(context: FlowContext, code: DialResult_Code): void {
  context.stats.countDial(OUTCOMES[code]);
}

/** A failed dial, as its dial result. */
export interface DialFailure {
  /** `REFUSED`, `UNREACHABLE` or `TIMEOUT`. */
  code: DialResult_Code;
  /** What happened, e.g. `connect ECONNREFUSED 198.18.1.2:81`. */
  message: string;
}

const REFUSED = new Set(["ECONNREFUSED", "ECONNRESET"]);
const TIMED_OUT = new Set(["ETIMEDOUT"]);

/**
 * Maps a connect error's `code` to a dial result code: refused, timed out, or
 * (anything else: no route, host down, network down, …) unreachable.
 *
 * @param code The Node error code, e.g. `ECONNREFUSED`.
 * @returns The dial result code.
 */
export function dialErrorCode(code: string | undefined): DialResult_Code {
  if (code !== undefined && REFUSED.has(code)) return DialResult_Code.REFUSED;
  if (code !== undefined && TIMED_OUT.has(code)) return DialResult_Code.TIMEOUT;
  return DialResult_Code.UNREACHABLE;
}

/**
 * Connects to `host:port` within `timeoutMs`, half-open allowed and
 * `TCP_NODELAY` set.
 *
 * @param host The destination address.
 * @param port The destination port.
 * @param timeoutMs How long to wait for the connection.
 * @returns The connected socket, or why it failed.
 */
export function dialTcp(
  host: string,
  port: number,
  timeoutMs: number,
): Promise<{ socket: net.Socket } | DialFailure> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port, allowHalfOpen: true });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({
        code: DialResult_Code.TIMEOUT,
        message: `no answer from ${
          host.includes(":") ? `[${host}]` : host
        }:${port} in ${timeoutMs} ms`,
      });
    }, timeoutMs);
    const onError = (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ code: dialErrorCode(error.code), message: error.message });
    };
    socket.once("error", onError);
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.off("error", onError);
      socket.setNoDelay(true);
      resolve({ socket });
    });
  });
}

/**
 * Ends a destination socket a tunnel is done with.
 *
 * @param socket The socket.
 * @param how `reset`: a RST; `destroy`: close it now; `graceful`: after the
 *   pending writes; `none`: it is closed already.
 */
export function endSocket(
  socket: net.Socket,
  how: "none" | "destroy" | "reset" | "graceful",
): void {
  socket.on("error", () => {}); // Late errors of a socket we are done with.
  try {
    if (how === "reset") socket.resetAndDestroy();
    else if (how === "destroy") socket.destroy();
    else if (how === "graceful") socket.destroySoon();
  } catch {
    socket.destroy(); // resetAndDestroy() throws on a socket that is not connected.
  }
}

/**
 * Opens a UDP socket connected to `host:port`.
 *
 * @param host The destination address.
 * @param port The destination port.
 * @param timeoutMs How long connecting may take (it is local: the route look-up).
 * @returns The socket, or why it failed.
 */
export function openUdp(
  host: string,
  port: number,
  timeoutMs: number,
): Promise<{ socket: dgram.Socket } | DialFailure> {
  return new Promise((resolve) => {
    const socket = dgram.createSocket(host.includes(":") ? "udp6" : "udp4");
    const timer = setTimeout(() => {
      socket.close();
      resolve({
        code: DialResult_Code.TIMEOUT,
        message: `udp connect to ${host}:${port} timed out`,
      });
    }, timeoutMs);
    const onError = (error: Error) => {
      clearTimeout(timer);
      try {
        socket.close();
      } catch {
        // Already closed.
      }
      resolve({ code: DialResult_Code.UNREACHABLE, message: error.message });
    };
    socket.once("error", onError);
    socket.connect(port, host, () => {
      clearTimeout(timer);
      socket.off("error", onError);
      resolve({ socket });
    });
  });
}

/**
 * Ends a UDP flow after a time without a datagram either way: the timer is
 * re-armed for what is left of the idle time, not reset per datagram.
 */
export class IdleTimer {
  #idleMs: number;
  #onIdle: (reason: string) => void;
  #last = performance.now();
  #timer: ReturnType<typeof setTimeout> | undefined;

  /**
   * @param idleMs The idle time, in ms.
   * @param onIdle Called once with the reason (`idle for N s`).
   */
  constructor(idleMs: number, onIdle: (reason: string) => void) {
    this.#idleMs = idleMs;
    this.#onIdle = onIdle;
    this.#arm(idleMs);
  }

  /** A datagram went one way or the other. */
  touch(): void {
    this.#last = performance.now();
  }

  /** The flow ended otherwise. */
  stop(): void {
    clearTimeout(this.#timer);
  }

  #arm(ms: number): void {
    this.#timer = setTimeout(() => {
      const idle = performance.now() - this.#last;
      const left = this.#idleMs - idle;
      if (left > 0) this.#arm(left);
      else this.#onIdle(`idle for ${Math.round(idle / 1000)} s`);
    }, ms);
  }
}

/**
 * Sends datagrams on a connected socket, dropping (and counting) one that
 * arrives while {@linkcode UDP_BUFFER_LIMIT} bytes wait to be sent.
 */
export class DatagramSender {
  #socket: dgram.Socket;
  #stats: ManagerStats;
  #pending = 0;
  #done = false;

  /**
   * @param socket The connected socket.
   * @param stats The manager's counters.
   */
  constructor(socket: dgram.Socket, stats: ManagerStats) {
    this.#socket = socket;
    this.#stats = stats;
  }

  /**
   * Sends one datagram, or drops it when too much waits.
   *
   * @param datagram The payload.
   */
  send(datagram: Uint8Array): void {
    const stats = this.#stats;
    if (this.#done) return;
    if (this.#pending + datagram.length > UDP_BUFFER_LIMIT) {
      stats.datagramsDropped++;
      return;
    }
    const length = datagram.length;
    this.#pending += length;
    stats.addBufferedToDestination(length);
    this.#socket.send(datagram, (error) => {
      if (this.#done) return;
      this.#pending -= length;
      stats.addBufferedToDestination(-length);
      if (error) stats.datagramsDropped++;
      else stats.bytesToDestination += length;
    });
  }

  /** No more sends: what still waits is no longer counted as buffered. */
  close(): void {
    if (this.#done) return;
    this.#done = true;
    this.#stats.addBufferedToDestination(-this.#pending);
    this.#pending = 0;
  }
}

function unmapped(ip: Uint8Array): Uint8Array {
  const mapped = ip.length === 16 && ip.subarray(0, 10).every((b) => b === 0) &&
    ip[10] === 0xff && ip[11] === 0xff;
  return mapped ? ip.slice(12) : ip;
}
