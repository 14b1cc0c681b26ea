/**
 * The manager's end of a `Mux` call: the shared machine of `mod/rpc/mux_end.ts`
 * in the server's role, whose OPENs are checked and dialed through `dial.ts`
 * (the session, the destination policy, the limits) and whose DNS frames go
 * to the cluster's DNS server. What is the manager's own is here: the
 * destination sockets (node's `net` and `dgram`) as the flows' sinks, and
 * what every flow holds counted against the session's limits.
 *
 * - cluster → client: a socket is read while its flow has credit and the call
 *   can take more; else it is paused until the flow says to resume.
 * - client → cluster: bytes go to the socket and count as held (against the
 *   limits) until the socket has taken them; then the client gets the credit
 *   back.
 *
 * @module
 */

import type dgram from "node:dgram";
import type net from "node:net";
import type { ServerDuplexStream } from "@grpc/grpc-js";
import { status } from "@grpc/grpc-js";
import {
  type Accepted,
  type DatagramFlow,
  type DatagramSink,
  MuxEnd,
  MuxRefusal,
} from "../mod/rpc/mux_end.ts";
import type { TcpFlow, TcpSink } from "../mod/rpc/mux_tcp.ts";
import { MuxProtocol, type OpenFrame } from "../mod/rpc/mux.ts";
import { DialResult_Code, MUX_SESSION_HEADER } from "../mod/rpc/service.ts";
import {
  admit,
  type Admitted,
  countDial,
  DatagramSender,
  dialAdmitted,
  dropDialed,
  endSocket,
  type FlowContext,
  IdleTimer,
  sessionEnded,
  unknownSession,
} from "./dial.ts";
import type { Session } from "./sessions.ts";
import { acceptSftp, resolveForSession } from "./intercepts.ts";

/** A server-side `Mux` call. */
export type MuxCall = ServerDuplexStream<Uint8Array, Uint8Array>;

/** The most `Mux` calls one session may have open (vif opens one). */
const MAX_CALLS_PER_SESSION = 4;

/**
 * Serves one `Mux` call: a call naming no live session ends at once with
 * NOT_FOUND, one past the session's few with RESOURCE_EXHAUSTED.
 *
 * @param call The call; its metadata names the session.
 * @param context The manager's sessions, policy, limits and settings.
 */
export function handleMux(call: MuxCall, context: FlowContext): void {
  const sessionId = String(call.metadata.get(MUX_SESSION_HEADER)[0] ?? "");
  const session = context.sessions.get(sessionId);
  if (session === undefined) {
    call.emit("error", { code: status.NOT_FOUND, details: unknownSession(sessionId) });
    return;
  }
  if (session.muxCalls >= MAX_CALLS_PER_SESSION) {
    call.emit("error", {
      code: status.RESOURCE_EXHAUSTED,
      details: `the session has ${MAX_CALLS_PER_SESSION} Mux calls open already`,
    });
    return;
  }
  session.muxCalls++;
  let unregister = () => {};
  const handle = {
    abort: (reason: string) => end.end(reason),
  };
  const end: MuxEnd = new MuxEnd(call, {
    role: "server",
    peer: `session ${session.shortId}`,
    stats: context.stats.mux,
    log: (_level, line) => context.log?.(`manager: ${line}`),
    accept: (open, signal) =>
      open.protocol === MuxProtocol.Sftp && context.intercepts !== undefined
        ? acceptSftp(context.intercepts, session, open, signal)
        : accept(context, session, open, signal),
    resolve: (query) =>
      context.intercepts === undefined ? resolve(context, session, query) : resolveForSession(
        context.intercepts,
        session,
        query,
        (q) => resolve(context, session, q),
      ),
    finish: (reason) => {
      if (reason !== undefined) {
        call.emit("error", { code: status.INVALID_ARGUMENT, details: reason });
      } else if (!call.cancelled) call.end();
    },
    onEnd: () => {
      session.muxCalls--;
      session.muxEnds.delete(end);
      unregister();
      context.open.delete(handle);
    },
  });
  unregister = session.onEnd((_end, reason) => end.end(reason), "stream");
  session.muxEnds.add(end);
  context.open.add(handle);
  // The client ended the call or went away: its flows go with it.
  // The client ended its side: the call ends here too, its flows with it.
  call.on("end", () => end.end("the client ended the call", false));
  const gone = () => end.lost("the client went away");
  call.on("cancelled", gone);
  call.on("error", gone);
}

/** Checks and dials an OPEN for the session. */
async function accept(
  context: FlowContext,
  session: Session,
  open: OpenFrame,
  signal: AbortSignal,
): Promise<Accepted> {
  const admitted = admit(
    context,
    session.id,
    open.protocol,
    open.destinationIp,
    open.destinationPort,
    open.dialTimeoutMs,
  );
  if ("code" in admitted) {
    countDial(context, admitted.code);
    return admitted;
  }
  const outcome = await dialAdmitted(admitted, context);
  if ("code" in outcome) {
    countDial(context, outcome.code);
    return outcome;
  }
  if (session.ended && !signal.aborted) {
    dropDialed(outcome);
    admitted.release();
    countDial(context, DialResult_Code.NO_SESSION);
    return { code: DialResult_Code.NO_SESSION, message: sessionEnded(session) };
  }
  countDial(context, DialResult_Code.OK);
  if ("tcp" in outcome) {
    const socket = outcome.tcp;
    let unregister = () => {};
    return {
      message: outcome.message,
      tcp: (flow) => {
        unregister = session.onEnd((_end, reason) => flow.abort(reason));
        return socketSink(socket, flow, context);
      },
      hold: (bytes) => {
        const over = context.admission.hold(session.usage, bytes);
        return over === undefined ? undefined : `the traffic-manager reset the flow: ${over}`;
      },
      onEnd: () => {
        unregister();
        admitted.release();
      },
    };
  }
  const socket = outcome.udp;
  return {
    message: outcome.message,
    udp: (flow) => datagramSink(socket, flow, context, session, admitted),
  };
}

/** Answers a DNS frame with the cluster's DNS server, within the session's limit. */
function resolve(context: FlowContext, session: Session, query: Uint8Array): Promise<Uint8Array> {
  if (context.sessions.get(session.id) === undefined) {
    return Promise.reject(new MuxRefusal(unknownSession(session.id), DialResult_Code.NO_SESSION));
  }
  const { admission } = context;
  const refused = admission.take("dns", session.usage);
  if (refused !== undefined) return Promise.reject(new Error(`refused: ${refused}`));
  return context.resolveDns(query).finally(() => admission.give("dns", session.usage));
}

/**
 * A dialed TCP socket as its flow's sink: what the client sends is written
 * to it (counted as held until written), and what it reads is pushed to the
 * flow while the flow has room.
 */
function socketSink(socket: net.Socket, flow: TcpFlow, context: FlowContext): TcpSink {
  const stats = context.stats;
  stats.tcpTunnels++;
  let held = 0;
  let done = false;
  const finish = (how: "none" | "destroy" | "reset" | "graceful") => {
    if (done) return;
    done = true;
    stats.tcpTunnels--;
    stats.addBufferedToDestination(-held);
    held = 0;
    endSocket(socket, how);
  };
  socket.on("data", (chunk: Uint8Array) => {
    if (!done && !flow.push(chunk)) socket.pause();
  });
  socket.on("end", () => flow.end());
  socket.on("error", (error: Error) => {
    flow.abort(error.message);
    finish("destroy");
  });
  // Both directions closed (FIN each way), or destroyed.
  socket.on("close", () => {
    flow.closed();
    finish("none");
  });
  return {
    write(bytes) {
      const length = bytes.length;
      held += length;
      stats.addBufferedToDestination(length);
      socket.write(bytes, () => {
        if (done) return;
        held -= length;
        stats.addBufferedToDestination(-length);
        stats.bytesToDestination += length;
        flow.taken(length);
      });
    },
    end: () => socket.end(), // A FIN after the pending writes.
    close: () => finish("graceful"),
    reset: () => finish("reset"),
    resume: () => {
      if (!done) socket.resume();
    },
  };
}

/**
 * A connected UDP socket as its flow's sink: each DATA frame is one datagram,
 * and the flow ends after an idle time without a datagram either way.
 */
function datagramSink(
  socket: dgram.Socket,
  flow: DatagramFlow,
  context: FlowContext,
  session: Session,
  admitted: Admitted,
): DatagramSink {
  const stats = context.stats;
  stats.udpTunnels++;
  const sender = new DatagramSender(socket, stats);
  const idle = new IdleTimer(context.udpIdleTimeoutMs, (reason) => flow.close(reason));
  const unregister = session.onEnd((_end, reason) => flow.close(reason));
  socket.on("message", (datagram: Uint8Array) => {
    idle.touch();
    // UDP may lose datagrams: the flow drops rather than queues without bound.
    if (!flow.send(datagram)) stats.datagramsDropped++;
  });
  // ICMP errors for earlier datagrams (port unreachable) surface here: the flow goes on.
  socket.on("error", () => {});
  let done = false;
  return {
    deliver(datagram) {
      idle.touch();
      sender.send(datagram);
    },
    close() {
      if (done) return;
      done = true;
      idle.stop();
      unregister();
      stats.udpTunnels--;
      admitted.release();
      sender.close();
      try {
        socket.close();
      } catch {
        // Already closed.
      }
    },
  };
}
