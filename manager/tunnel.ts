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
import type { Pinger } from "./ping.ts";
import type { DestinationPolicy, TunnelProtocol } from "./policy.ts";
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
    return {
      code: DialResult_Code.NO_SESSION,
      message: `session "${sessionId}" is unknown or expired: arrive again`,
    };
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
  return {
    session,
    protocol: kind,
    host: formatAddress(unmapped(ip)),
    port,
    // A client may ask for a shorter or longer wait, within reason.
    timeoutMs: dialTimeoutMs > 0
      ? Math.min(dialTimeoutMs, MAX_DIAL_TIMEOUT_MS)
      : context.dialTimeoutMs,
  };
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
  const { session, protocol, host, port, timeoutMs } = admitted;
  let cancelled = false;
  const onCancel = () => void (cancelled = true);
  call.once("cancelled", onCancel);
  try {
    switch (protocol) {
      case "icmp": {
        const outcome = await context.ping(host, timeoutMs);
        if (!cancelled) refuse(outcome.code, outcome.message);
        return;
      }
      case "tcp": {
        const dialed = await dialTcp(host, port, timeoutMs);
        if ("code" in dialed) return cancelled ? undefined : refuse(dialed.code, dialed.message);
        if (cancelled || session.ended) {
          dialed.socket.destroy();
          if (!cancelled) refuse(DialResult_Code.NO_SESSION, `session "${session.id}" ended`);
          return;
        }
        answer(DialResult_Code.OK, `connected to ${hostPort(host, port)}`);
        start(new TcpPipe(call, dialed.socket, session, context), context);
        return;
      }
      case "udp": {
        const opened = await openUdp(host, port, timeoutMs);
        if ("code" in opened) return cancelled ? undefined : refuse(opened.code, opened.message);
        if (cancelled || session.ended) {
          opened.socket.close();
          if (!cancelled) refuse(DialResult_Code.NO_SESSION, `session "${session.id}" ended`);
          return;
        }
        answer(DialResult_Code.OK, `udp socket connected to ${hostPort(host, port)}`);
        start(new UdpPipe(call, opened.socket, session, context), context);
        return;
      }
    }
  } finally {
    call.off("cancelled", onCancel);
  }
}

function start(pipe: TcpPipe | UdpPipe, context: TunnelContext): void {
  context.open.add(pipe);
  pipe.onDone(() => context.open.delete(pipe));
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

/**
 * `host:port`, with brackets around an IPv6 host.
 *
 * @param host The address.
 * @param port The port.
 * @returns The text.
 */
export function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
