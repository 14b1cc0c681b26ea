/**
 * One `Mux` call: every TCP connection, UDP flow and ping of a session as
 * frames on one stream (framing in `mod/rpc/mux.ts`, rules in
 * docs/protocol.md). The same checks and dials as `Tunnel` (tunnel.ts), with
 * flow control per flow by credit instead of per HTTP/2 stream:
 *
 * - cluster → client: a socket is read while the flow has credit (the window
 *   the client gave, topped up by its WINDOW frames) and grpc-js is not
 *   holding more than it can send; else it is paused.
 * - client → cluster: the client sends at most the window given in RESULT;
 *   each byte is given back (WINDOW) once the destination socket took it.
 *
 * So nothing buffers without bound, and one slow flow never stops the
 * stream: the call is never paused.
 *
 * @module
 */

import type dgram from "node:dgram";
import type net from "node:net";
import type { ServerDuplexStream } from "@grpc/grpc-js";
import { status } from "@grpc/grpc-js";
import {
  decodeClose,
  decodeOpen,
  decodeWindow,
  encodeClose,
  encodeResult,
  encodeWindow,
  FLOW_WINDOW,
  forEachFrame,
  FrameType,
  FrameWriter,
  type OpenFrame,
} from "../mod/rpc/mux.ts";
import { DialResult_Code, MAX_CHUNK, MUX_SESSION_HEADER } from "../mod/rpc/service.ts";
import type { Session } from "./sessions.ts";
import { endSocket } from "./tcp_tunnel.ts";
import {
  admit,
  countDial,
  dialAdmitted,
  dropDialed,
  sessionEnded,
  type TunnelContext,
  unknownSession,
} from "./tunnel.ts";
import { DatagramSender, IdleTimer, UDP_BUFFER_LIMIT } from "./udp_tunnel.ts";

/** A server-side `Mux` call. */
export type MuxCall = ServerDuplexStream<Uint8Array, Uint8Array>;

/** One flow's handlers for the frames the client sends it. */
interface Flow {
  data(payload: Uint8Array): void;
  fin(): void;
  window(increment: number): void;
  /** CLOSE from the client (`reason` set: reset), or the manager ending it. */
  close(reason: string, from: "client" | "manager"): void;
}

/**
 * Serves one `Mux` call.
 *
 * @param call The call; its metadata names the session.
 * @param context The manager's sessions, policy and settings.
 */
export function handleMux(call: MuxCall, context: TunnelContext): void {
  new ManagerMux(call, context).start();
}

class ManagerMux {
  readonly out: FrameWriter;
  readonly context: TunnelContext;
  readonly sessionId: string;
  readonly flows = new Map<number, Flow>();
  /** Sockets paused because grpc-js holds more than it can send. */
  readonly stalled = new Set<TcpFlow>();
  #call: MuxCall;
  #blocked = false;
  #done = false;
  #unregister: () => void = () => {};
  /** Data bytes written into frames since the last batch went to grpc-js. */
  #unflushed = 0;

  constructor(call: MuxCall, context: TunnelContext) {
    this.#call = call;
    this.context = context;
    this.sessionId = String(call.metadata.get(MUX_SESSION_HEADER)[0] ?? "");
    const stats = context.stats;
    this.out = new FrameWriter((batch) => {
      if (this.#done) return;
      const n = this.#unflushed;
      this.#unflushed = 0;
      stats.addBufferedToClient(n);
      const more = call.write(batch, () => {
        stats.addBufferedToClient(-n);
        stats.bytesToClient += n;
      });
      if (!more) this.#blocked = true;
    });
  }

  get blocked(): boolean {
    return this.#blocked;
  }

  /**
   * Takes an ended flow out of the table, telling the client with CLOSE when
   * there is a reason and the client does not know yet (the flow is still
   * in the table).
   *
   * @param id The flow's id.
   * @param flow The flow.
   * @param reason `undefined`: tell the client nothing.
   */
  forget(id: number, flow: Flow, reason: string | undefined): void {
    if (this.flows.get(id) !== flow) return;
    this.flows.delete(id);
    if (reason !== undefined) this.out.write(id, FrameType.Close, encodeClose(reason));
  }

  /** Queues a DATA frame toward the client. */
  sendData(id: number, payload: Uint8Array): void {
    this.#unflushed += payload.length;
    this.out.write(id, FrameType.Data, payload);
  }

  start(): void {
    const call = this.#call;
    const session = this.context.sessions.get(this.sessionId);
    if (session) {
      this.#unregister = session.onEnd((_end, reason) => this.abort(reason), "stream");
    }
    this.context.open.add(this);
    call.on("data", (batch: Uint8Array) => {
      try {
        forEachFrame(batch, (id, type, payload) => this.#frame(id, type, payload));
      } catch (error) {
        this.#fail(`the mux framing was broken: ${(error as Error).message}`);
      }
    });
    call.on("drain", () => {
      this.#blocked = false;
      for (const flow of this.stalled) flow.unstall();
      this.stalled.clear();
    });
    // The client ended the call or went away: its flows go with it.
    call.on("end", () => this.#finish(undefined));
    call.on("cancelled", () => this.#finish(undefined));
    call.on("error", () => this.#finish(undefined));
  }

  /**
   * Ends every flow with `close{reason}` and the call (the session ended, the
   * manager stops).
   *
   * @param reason Why.
   */
  abort(reason: string): void {
    this.#finish(reason);
  }

  #frame(id: number, type: number, payload: Uint8Array): void {
    if (this.#done) return;
    if (type === FrameType.Open) {
      if (this.flows.has(id)) throw new Error(`flow ${id} opened twice`);
      this.#open(id, decodeOpen(payload));
      return;
    }
    if (type === FrameType.Dns) return this.#dns(id, payload);
    const flow = this.flows.get(id);
    if (flow === undefined) return; // a late frame of a flow already ended here
    switch (type) {
      case FrameType.Data:
        flow.data(payload);
        return;
      case FrameType.Fin:
        flow.fin();
        return;
      case FrameType.Window:
        flow.window(decodeWindow(payload));
        return;
      case FrameType.Close:
        this.flows.delete(id);
        flow.close(decodeClose(payload), "client");
        return;
      default:
        throw new Error(`frame type ${type} is not one a client sends`);
    }
  }

  #open(id: number, open: OpenFrame): void {
    const context = this.context;
    const answer = (code: DialResult_Code, message: string, window = 0) => {
      countDial(context, code);
      this.out.write(id, FrameType.Result, encodeResult({ code, window, message }));
    };
    const admitted = admit(
      context,
      this.sessionId,
      open.protocol,
      open.destinationIp,
      open.destinationPort,
      open.dialTimeoutMs,
    );
    if ("code" in admitted) return answer(admitted.code, admitted.message);
    const { session } = admitted;
    // Until the dial answers, a CLOSE from the client cancels it.
    let cancelled = false;
    this.flows.set(id, {
      data: () => {},
      fin: () => {},
      window: () => {},
      close: () => void (cancelled = true),
    });
    const dialing = (async () => {
      const outcome = await dialAdmitted(admitted, context);
      const wanted = !cancelled && !this.#done;
      if ("code" in outcome) {
        this.flows.delete(id);
        if (wanted) answer(outcome.code, outcome.message);
        return;
      }
      if (!wanted || session.ended) {
        dropDialed(outcome);
        this.flows.delete(id);
        if (wanted) answer(DialResult_Code.NO_SESSION, sessionEnded(session));
        return;
      }
      answer(DialResult_Code.OK, outcome.message, "tcp" in outcome ? FLOW_WINDOW : 0);
      const flow = "tcp" in outcome
        ? new TcpFlow(this, id, outcome.tcp, session, open.window)
        : new UdpFlow(this, id, outcome.udp, session);
      this.flows.set(id, flow);
      flow.start();
    })();
    dialing.catch((error: unknown) => {
      // A bug, not a dial failure: the flow gets the reason.
      this.flows.delete(id);
      if (!this.#done) {
        this.out.write(
          id,
          FrameType.Close,
          encodeClose(`the traffic-manager failed: ${(error as Error).message}`),
        );
      }
    });
  }

  #dns(id: number, query: Uint8Array): void {
    const fail = (code: DialResult_Code, message: string) =>
      this.out.write(id, FrameType.Result, encodeResult({ code, window: 0, message }));
    if (this.context.sessions.get(this.sessionId) === undefined) {
      return fail(DialResult_Code.NO_SESSION, unknownSession(this.sessionId));
    }
    this.context.resolveDns(query).then(
      (answer) => !this.#done && this.out.write(id, FrameType.Dns, answer),
      (error: Error) => !this.#done && fail(DialResult_Code.UNREACHABLE, error.message),
    );
  }

  /** The client broke the framing: every flow is reset and the call fails. */
  #fail(reason: string): void {
    if (this.#done) return;
    this.#finish(reason, false);
    this.#call.emit("error", { code: status.INVALID_ARGUMENT, details: reason });
  }

  /**
   * Ends the call once.
   *
   * @param reason `undefined`: the client is gone, tell it nothing; else each
   *   flow gets `close{reason}` first.
   * @param end End the call with status OK (else the caller ends it).
   */
  #finish(reason: string | undefined, end = true): void {
    if (this.#done) return;
    const flows = [...this.flows.entries()];
    this.flows.clear();
    for (const [id, flow] of flows) {
      if (reason !== undefined) this.out.write(id, FrameType.Close, encodeClose(reason));
      flow.close(reason ?? "the client went away", "manager");
    }
    this.out.flush();
    this.#done = true;
    this.out.close();
    this.stalled.clear();
    this.#unregister();
    this.context.open.delete(this);
    if (end && !this.#call.cancelled) this.#call.end();
  }
}

/** A TCP flow: one dialed socket. */
class TcpFlow implements Flow {
  #mux: ManagerMux;
  #id: number;
  #socket: net.Socket;
  /** What the client still lets us send. */
  #credit: number;
  /** Bytes written to the socket since the last WINDOW. */
  #given = 0;
  #clientFin = false;
  #done = false;
  #toDestination = 0;
  #unregister: () => void;

  constructor(mux: ManagerMux, id: number, socket: net.Socket, session: Session, window: number) {
    this.#mux = mux;
    this.#id = id;
    this.#socket = socket;
    this.#credit = window;
    this.#unregister = session.onEnd((_end, reason) => this.#end(reason, "reset"));
  }

  start(): void {
    const socket = this.#socket;
    const mux = this.#mux;
    mux.context.stats.tcpTunnels++;
    socket.on("data", (chunk: Uint8Array) => {
      if (this.#done) return;
      for (let offset = 0; offset < chunk.length; offset += MAX_CHUNK) {
        const part = chunk.subarray(offset, offset + MAX_CHUNK);
        this.#credit -= part.length;
        mux.sendData(this.#id, part);
      }
      if (this.#credit <= 0) socket.pause();
      else if (mux.blocked) {
        socket.pause();
        mux.stalled.add(this);
      }
    });
    socket.on("end", () => {
      if (!this.#done) mux.out.write(this.#id, FrameType.Fin);
    });
    socket.on("error", (error: Error) => this.#end(error.message, "destroy"));
    // Both directions closed (FIN each way), or destroyed.
    socket.on("close", () => this.#end("", "none"));
  }

  /** grpc-js can take more: read the socket again if the client lets us. */
  unstall(): void {
    if (!this.#done && this.#credit > 0) this.#socket.resume();
  }

  window(increment: number): void {
    if (this.#done) return;
    this.#credit += increment;
    if (this.#credit > 0 && !this.#mux.blocked) this.#socket.resume();
    else if (this.#credit > 0) this.#mux.stalled.add(this);
  }

  data(bytes: Uint8Array): void {
    if (this.#done || bytes.length === 0) return;
    if (this.#clientFin) {
      this.#end("data after FIN", "reset");
      return;
    }
    const stats = this.#mux.context.stats;
    const length = bytes.length;
    this.#toDestination += length;
    stats.addBufferedToDestination(length);
    this.#socket.write(bytes, () => {
      if (this.#done) return;
      this.#toDestination -= length;
      stats.addBufferedToDestination(-length);
      stats.bytesToDestination += length;
      // The destination took the bytes: the client may send as many more.
      this.#given += length;
      if (this.#given >= FLOW_WINDOW / 4) {
        this.#mux.out.write(this.#id, FrameType.Window, encodeWindow(this.#given));
        this.#given = 0;
      }
    });
  }

  fin(): void {
    if (this.#done || this.#clientFin) return;
    this.#clientFin = true;
    this.#socket.end(); // A FIN after the pending writes; "close" follows once both sides are done.
  }

  close(reason: string, from: "client" | "manager"): void {
    // From the client: a reason is a reset, none a close after pending data.
    // From the manager (the session or the call ended): a reset.
    this.#end(undefined, from === "client" && reason === "" ? "graceful" : "reset");
  }

  /**
   * Ends the flow once.
   *
   * @param reason `undefined`: tell the client nothing; else CLOSE with it.
   * @param socketEnd What to do with the socket.
   */
  #end(reason: string | undefined, socketEnd: "none" | "destroy" | "reset" | "graceful"): void {
    if (this.#done) return;
    this.#done = true;
    const mux = this.#mux;
    mux.forget(this.#id, this, reason);
    mux.stalled.delete(this);
    this.#unregister();
    const stats = mux.context.stats;
    stats.tcpTunnels--;
    stats.addBufferedToDestination(-this.#toDestination);
    this.#toDestination = 0;
    endSocket(this.#socket, socketEnd);
  }
}

/** A UDP flow: one connected socket; each DATA frame is one datagram. */
class UdpFlow implements Flow {
  #mux: ManagerMux;
  #id: number;
  #socket: dgram.Socket;
  #done = false;
  #sender: DatagramSender;
  #idle: IdleTimer | undefined;
  #unregister: () => void;

  constructor(mux: ManagerMux, id: number, socket: dgram.Socket, session: Session) {
    this.#mux = mux;
    this.#id = id;
    this.#socket = socket;
    this.#sender = new DatagramSender(socket, mux.context.stats);
    this.#unregister = session.onEnd((_end, reason) => this.#end(reason));
  }

  start(): void {
    const mux = this.#mux;
    mux.context.stats.udpTunnels++;
    this.#socket.on("message", (datagram: Uint8Array) => {
      if (this.#done) return;
      this.#idle?.touch();
      // UDP may lose datagrams: drop rather than queue without bound.
      if (mux.blocked || mux.out.pending + datagram.length > UDP_BUFFER_LIMIT) {
        mux.context.stats.datagramsDropped++;
        return;
      }
      mux.sendData(this.#id, datagram);
    });
    // ICMP errors for earlier datagrams (port unreachable) surface here: the flow goes on.
    this.#socket.on("error", () => {});
    this.#idle = new IdleTimer(mux.context.udpIdleTimeoutMs, (reason) => this.#end(reason));
  }

  data(datagram: Uint8Array): void {
    if (this.#done) return;
    this.#idle?.touch();
    this.#sender.send(datagram);
  }

  fin(): void {
    // No meaning for UDP: replies may still come.
  }

  window(): void {}

  close(): void {
    this.#end(undefined);
  }

  #end(reason: string | undefined): void {
    if (this.#done) return;
    this.#done = true;
    const mux = this.#mux;
    mux.forget(this.#id, this, reason);
    this.#idle?.stop();
    this.#unregister();
    mux.context.stats.udpTunnels--;
    this.#sender.close();
    try {
      this.#socket.close();
    } catch {
      // Already closed.
    }
  }
}
