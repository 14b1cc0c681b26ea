/**
 * One `Tunnel` call: the client's first message is `open`; the manager checks
 * the session and the destination policy, dials, answers with exactly one
 * `dial_result`, then hands the call to the TCP or UDP pipe (or, for ICMP,
 * ends it).
 *
 * @module
 */

import type { ServerDuplexStream } from "@grpc/grpc-js";
import { status } from "@grpc/grpc-js";
import { formatAddress } from "../mod/net/address.ts";
import {
  create,
  DialResult_Code,
  type Open,
  Protocol,
  type TunnelMessage,
  TunnelMessageSchema,
} from "../mod/rpc/service.ts";
import type dgram from "node:dgram";
import type net from "node:net";
import type { Admission, Holding } from "./limits.ts";
import type { Pinger } from "./ping.ts";
import { type DestinationPolicy, hostPort, type TunnelProtocol } from "./policy.ts";
import type { Session, SessionTable } from "./sessions.ts";
import type { ManagerStats } from "./stats.ts";
import { dialTcp, TcpPipe } from "./tcp_tunnel.ts";
import { openUdp, UdpPipe } from "./udp_tunnel.ts";

/** A server-side `Tunnel` call. */
export type TunnelCall = ServerDuplexStream<TunnelMessage, TunnelMessage>;

/** What a tunnel needs of the manager. */
export interface TunnelContext {
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
  /** The dial timeout when `open` asks for none, in ms. */
  dialTimeoutMs: number;
  /** How long a UDP tunnel lives without a datagram either way, in ms. */
  udpIdleTimeoutMs: number;
  /** Sends ICMP echoes. */
  ping: Pinger;
  /** Every tunnel currently open, to end them when the manager stops. */
  open: Set<{ abort(reason: string): void }>;
  /**
   * Answers a DNS query with the cluster's DNS server (as `ResolveDNS`
   * does), counting it; rejects when there is none or it did not answer.
   */
  resolveDns(query: Uint8Array): Promise<Uint8Array>;
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

/**
 * Serves one `Tunnel` call.
 *
 * @param call The call.
 * @param context The manager's sessions, policy and settings.
 */
export function handleTunnel(call: TunnelCall, context: TunnelContext): void {
  let started = false;
  const onEnd = () => {
    // The client ended its side before any open: nothing to do but end ours.
    if (!started) call.end();
  };
  call.on("end", onEnd);
  call.once("data", (message: TunnelMessage) => {
    started = true;
    call.off("end", onEnd);
    // Nothing more is read until the dial is answered and a pipe takes over.
    call.pause();
    if (message.kind.case !== "open") {
      protocolError(call, `the first tunnel message must be "open", not "${message.kind.case}"`);
      return;
    }
    open(call, message.kind.value, context).catch((error: unknown) => {
      // A bug, not a dial failure: end the call with the reason.
      protocolError(
        call,
        `the traffic-manager failed: ${(error as Error).message}`,
        status.INTERNAL,
      );
    });
  });
}

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
 * Checks a dial request: the session, the protocol and the destination
 * policy, and the dial timeout within bounds. Shared by `Tunnel` and `Mux`.
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
  context: TunnelContext,
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
 * Dials an admitted request. Shared by `Tunnel` and `Mux`. A request that
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
  context: TunnelContext,
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
  context: TunnelContext,
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
export function countDial(context: TunnelContext, code: DialResult_Code): void {
  context.stats.countDial(OUTCOMES[code]);
}

async function open(call: TunnelCall, request: Open, context: TunnelContext): Promise<void> {
  const answer = (code: DialResult_Code, message: string) => {
    countDial(context, code);
    call.write(
      create(TunnelMessageSchema, { kind: { case: "dialResult", value: { code, message } } }),
    );
  };
  const refuse = (code: DialResult_Code, message: string) => {
    answer(code, message);
    call.end();
  };

  const admitted = admit(
    context,
    request.sessionId,
    request.protocol,
    request.destination?.ip ?? new Uint8Array(0),
    request.destination?.port ?? 0,
    request.dialTimeoutMs,
  );
  if ("code" in admitted) return refuse(admitted.code, admitted.message);
  const { session } = admitted;
  let cancelled = false;
  const onCancel = () => void (cancelled = true);
  call.once("cancelled", onCancel);
  try {
    const outcome = await dialAdmitted(admitted, context);
    if ("code" in outcome) return cancelled ? undefined : refuse(outcome.code, outcome.message);
    if (cancelled || session.ended) {
      dropDialed(outcome);
      admitted.release();
      if (!cancelled) refuse(DialResult_Code.NO_SESSION, sessionEnded(session));
      return;
    }
    answer(DialResult_Code.OK, outcome.message);
    start(
      "tcp" in outcome
        ? new TcpPipe(call, outcome.tcp, session, context)
        : new UdpPipe(call, outcome.udp, session, context),
      context,
      admitted,
    );
  } finally {
    call.off("cancelled", onCancel);
  }
}

function start(pipe: TcpPipe | UdpPipe, context: TunnelContext, admitted: Admitted): void {
  context.open.add(pipe);
  pipe.onDone(() => {
    context.open.delete(pipe);
    admitted.release();
  });
  pipe.start();
}

/**
 * Sends `close{reason}` and ends the call with an error status.
 *
 * @param call The call.
 * @param reason What the client did wrong.
 * @param code The gRPC status; `INVALID_ARGUMENT` by default.
 */
function protocolError(
  call: TunnelCall,
  reason: string,
  code: status = status.INVALID_ARGUMENT,
): void {
  call.write(create(TunnelMessageSchema, { kind: { case: "close", value: { reason } } }));
  call.emit("error", { code, details: reason });
}

function unmapped(ip: Uint8Array): Uint8Array {
  const mapped = ip.length === 16 && ip.subarray(0, 10).every((b) => b === 0) &&
    ip[10] === 0xff && ip[11] === 0xff;
  return mapped ? ip.slice(12) : ip;
}
