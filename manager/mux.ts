/**
 * One `Mux` call: every TCP connection, UDP flow and ping of a session as
 * frames on one stream (framing in `mod/rpc/mux.ts`, rules in
 * docs/protocol.md), dialed through `dial.ts`, with flow control per flow by
 * credit:
 *
 * - cluster → client: a socket is read while the flow has credit (the window
 *   the client gave, topped up by its WINDOW frames) and grpc-js is not
 *   holding more than it can send; else it is paused.
 * - client → cluster: the client sends at most the window given in RESULT;
 *   each byte is given back (WINDOW) once the destination socket took it.
 *
 * So nothing buffers without bound, and one slow flow never stops the
 * stream. The client is a peer like any other: a flow that sends past its
 * credit, or a frame that breaks the rules of its flow, resets that flow; a
 * batch that breaks the framing ends the call; every flow and DNS query is
 * counted against the manager's limits (limits.ts), per session and in
 * total. And while grpc-js holds more than {@linkcode OUTBOUND_LIMIT} bytes
 * the client has not read, the call is not read either: a client that sends
 * requests and never reads the answers is pushed back by HTTP/2.
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
  MuxProtocolError,
  type OpenFrame,
} from "../mod/rpc/mux.ts";
import { DialResult_Code, MAX_CHUNK, MUX_SESSION_HEADER } from "../mod/rpc/service.ts";
import { type Session, shortId } from "./sessions.ts";
import type { Usage } from "./limits.ts";
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
  UDP_BUFFER_LIMIT,
  unknownSession,
} from "./dial.ts";

/** A server-side `Mux` call. */
export type MuxCall = ServerDuplexStream<Uint8Array, Uint8Array>;

/**
 * Bytes the manager may have handed grpc-js for one call and not yet seen
 * sent before it stops reading the call: what a client that never reads can
 * make the manager hold, besides the flows' own windows.
 */
export const OUTBOUND_LIMIT = 8 * 1024 * 1024;

/** The most `Mux` calls one session may have open (vif opens one). */
const MAX_CALLS_PER_SESSION = 4;

/** The largest UDP datagram (RFC 768: the length field is 16 bits). */
const MAX_DATAGRAM = 65_535;

/** A frame that breaks the rules of its flow: the flow is reset with the message. */
class FlowViolation extends Error {
  /** @param message what the client did */
  constructor(message: string) {
    super(message);
    this.name = "FlowViolation";
  }
}

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
export function handleMux(call: MuxCall, context: FlowContext): void {
  new ManagerMux(call, context).start();
}

class ManagerMux {
  readonly out: FrameWriter;
  readonly context: FlowContext;
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
  /** Batch bytes handed to grpc-js and not yet sent. */
  #outbound = 0;
  /** Reading the call is paused until grpc-js has sent what it holds. */
  #readPaused = false;
  /** The client broke a flow's rules: logged once per call, counted always. */
  #violations = 0;
  /** The session the call belongs to, once started. */
  #session: Session | undefined;

  constructor(call: MuxCall, context: FlowContext) {
    this.#call = call;
    this.context = context;
    this.sessionId = String(call.metadata.get(MUX_SESSION_HEADER)[0] ?? "");
    const stats = context.stats;
    this.out = new FrameWriter((batch) => {
      if (this.#done) return;
      const n = this.#unflushed;
      this.#unflushed = 0;
      const size = batch.length;
      stats.addBufferedToClient(n);
      this.#outbound += size;
      const more = call.write(batch, () => {
        stats.addBufferedToClient(-n);
        stats.bytesToClient += n;
        this.#outbound -= size;
        if (this.#readPaused && this.#outbound <= OUTBOUND_LIMIT / 2 && !this.#done) {
          this.#readPaused = false;
          call.resume();
        }
      });
      if (!more) this.#blocked = true;
      if (this.#outbound > OUTBOUND_LIMIT && !this.#readPaused) {
        this.#readPaused = true;
        call.pause();
      }
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
    // A call belongs to a live session, and a session needs one call (a few at most).
    if (session === undefined || session.muxCalls >= MAX_CALLS_PER_SESSION) {
      this.#done = true;
      this.out.close();
      call.emit(
        "error",
        session === undefined
          ? { code: status.NOT_FOUND, details: unknownSession(this.sessionId) }
          : {
            code: status.RESOURCE_EXHAUSTED,
            details: `the session has ${MAX_CALLS_PER_SESSION} Mux calls open already`,
          },
      );
      return;
    }
    session.muxCalls++;
    this.#unregister = session.onEnd((_end, reason) => this.abort(reason), "stream");
    this.#session = session;
    this.context.open.add(this);
    call.on("data", (batch: Uint8Array) => {
      try {
        forEachFrame(batch, (id, type, payload) => this.#frame(id, type, payload));
      } catch (error) {
        if (!(error instanceof MuxProtocolError)) throw error;
        this.context.stats.violations++;
        this.#fail(`the mux framing was broken: ${error.message}`);
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
      if (this.flows.has(id)) throw new MuxProtocolError(`flow ${id} opened twice`);
      this.#open(id, decodeOpen(payload));
      return;
    }
    if (type === FrameType.Dns) return this.#dns(id, payload);
    const flow = this.flows.get(id);
    if (flow === undefined) {
      // A late frame of a flow already ended here, but never a type a client does not send.
      if (type === FrameType.Result || type > FrameType.Dns || type === 0) {
        throw new MuxProtocolError(`frame type ${type} is not one a client sends`);
      }
      return;
    }
    try {
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
          throw new MuxProtocolError(`frame type ${type} is not one a client sends`);
      }
    } catch (error) {
      if (!(error instanceof FlowViolation)) throw error;
      this.violation(id, flow, error.message);
    }
  }

  /**
   * Resets a flow whose frame broke its rules, counting (and, once per call,
   * logging) it: the client's mistake costs that flow, not the call.
   *
   * @param id The flow's id.
   * @param flow The flow.
   * @param what What the client did.
   */
  violation(id: number, flow: Flow, what: string): void {
    this.context.stats.violations++;
    if (this.#violations++ === 0) {
      this.context.log?.(
        `manager: session ${shortId(this.sessionId)}: flow ${id} reset: ${what}` +
          " (further violations on this call are counted, not logged)",
      );
    }
    this.flows.delete(id);
    this.out.write(id, FrameType.Close, encodeClose(`the traffic-manager reset the flow: ${what}`));
    flow.close(what, "manager");
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
    // Until the dial answers, a CLOSE from the client cancels it; nothing else may come.
    let cancelled = false;
    const early = (what: string) => () => {
      throw new FlowViolation(`${what} before the dial's RESULT`);
    };
    const dialingFlow: Flow = {
      data: early("DATA"),
      fin: early("FIN"),
      window: early("WINDOW"),
      close: () => void (cancelled = true),
    };
    this.flows.set(id, dialingFlow);
    const forgetDial = () => {
      if (this.flows.get(id) === dialingFlow) this.flows.delete(id);
    };
    const dialing = (async () => {
      const outcome = await dialAdmitted(admitted, context);
      const wanted = !cancelled && !this.#done;
      if ("code" in outcome) {
        forgetDial();
        if (wanted) answer(outcome.code, outcome.message);
        return;
      }
      if (!wanted || session.ended) {
        dropDialed(outcome);
        admitted.release();
        forgetDial();
        if (wanted) answer(DialResult_Code.NO_SESSION, sessionEnded(session));
        return;
      }
      answer(DialResult_Code.OK, outcome.message, "tcp" in outcome ? FLOW_WINDOW : 0);
      const flow = "tcp" in outcome
        ? new TcpFlow(this, id, outcome.tcp, admitted, open.window)
        : new UdpFlow(this, id, outcome.udp, admitted);
      this.flows.set(id, flow);
      flow.start();
    })();
    dialing.catch((error: unknown) => {
      // A bug, not a dial failure: the flow gets the reason.
      admitted.release();
      forgetDial();
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
    const session = this.context.sessions.get(this.sessionId);
    if (session === undefined) {
      return fail(DialResult_Code.NO_SESSION, unknownSession(this.sessionId));
    }
    const { admission } = this.context;
    const refused = admission.take("dns", session.usage);
    if (refused !== undefined) return fail(DialResult_Code.UNREACHABLE, `refused: ${refused}`);
    this.context.resolveDns(query).then(
      (answer) => !this.#done && this.out.write(id, FrameType.Dns, answer),
      (error: Error) => !this.#done && fail(DialResult_Code.UNREACHABLE, error.message),
    ).finally(() => admission.give("dns", session.usage));
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
    if (this.#session) this.#session.muxCalls--;
    this.context.open.delete(this);
    if (end && !this.#call.cancelled) this.#call.end();
  }
}

/** A TCP flow: one dialed socket. */
class TcpFlow implements Flow {
  #mux: ManagerMux;
  #id: number;
  #socket: net.Socket;
  #admitted: Admitted;
  /** What the session holds, for the bytes this flow keeps for its destination. */
  #usage: Usage;
  /** What the client still lets us send. */
  #credit: number;
  /** Bytes read from the socket past the client's credit, sent when it gives more. */
  #waiting: Uint8Array | null = null;
  /** The destination's FIN came while bytes were waiting: send it after them. */
  #endAfterWaiting = false;
  /** What the client may still send us: the window we gave, less what came, plus what we gave back. */
  #allowed = FLOW_WINDOW;
  /** Bytes written to the socket since the last WINDOW. */
  #given = 0;
  #clientFin = false;
  #done = false;
  #toDestination = 0;
  #unregister: () => void;

  constructor(mux: ManagerMux, id: number, socket: net.Socket, admitted: Admitted, window: number) {
    this.#mux = mux;
    this.#id = id;
    this.#socket = socket;
    this.#admitted = admitted;
    this.#usage = admitted.session.usage;
    this.#credit = window;
    this.#unregister = admitted.session.onEnd((_end, reason) => this.#end(reason, "reset"));
  }

  start(): void {
    const socket = this.#socket;
    const mux = this.#mux;
    mux.context.stats.tcpTunnels++;
    socket.on("data", (chunk: Uint8Array) => {
      if (!this.#done) this.#send(chunk);
    });
    socket.on("end", () => {
      if (this.#done) return;
      // The FIN goes after the bytes still waiting for credit.
      if (this.#waiting) this.#endAfterWaiting = true;
      else mux.out.write(this.#id, FrameType.Fin);
    });
    socket.on("error", (error: Error) => this.#end(error.message, "destroy"));
    // Both directions closed (FIN each way), or destroyed.
    socket.on("close", () => this.#end("", "none"));
  }

  /**
   * Sends what the socket read, never past the client's credit: what does not
   * fit waits here (one read at most, since the socket is paused until the
   * client gives more).
   */
  #send(chunk: Uint8Array): void {
    const mux = this.#mux;
    let offset = 0;
    while (offset < chunk.length && this.#credit > 0) {
      const part = chunk.subarray(offset, offset + Math.min(MAX_CHUNK, this.#credit));
      this.#credit -= part.length;
      offset += part.length;
      mux.sendData(this.#id, part);
    }
    if (offset < chunk.length) {
      this.#waiting = chunk.subarray(offset);
      this.#socket.pause();
    } else if (this.#credit <= 0) this.#socket.pause();
    else if (mux.blocked) {
      this.#socket.pause();
      mux.stalled.add(this);
    }
  }

  /** grpc-js can take more: read the socket again if the client lets us. */
  unstall(): void {
    if (!this.#done && this.#credit > 0 && this.#waiting === null) this.#socket.resume();
  }

  window(increment: number): void {
    if (this.#done) return;
    // The client may give as much credit as it likes; past 2^48 it is a lie.
    if (this.#credit + increment > 2 ** 48) {
      throw new FlowViolation(`WINDOW of ${increment} bytes takes its credit past 2^48`);
    }
    this.#credit += increment;
    const waiting = this.#waiting;
    if (waiting !== null) {
      this.#waiting = null;
      this.#send(waiting);
      if (this.#waiting !== null) return;
      if (this.#endAfterWaiting) {
        this.#mux.out.write(this.#id, FrameType.Fin);
        return;
      }
    }
    if (this.#credit > 0 && !this.#mux.blocked) this.#socket.resume();
    else if (this.#credit > 0) this.#mux.stalled.add(this);
  }

  data(bytes: Uint8Array): void {
    if (this.#done || bytes.length === 0) return;
    const length = bytes.length;
    if (this.#clientFin) throw new FlowViolation("DATA after FIN");
    if (length > MAX_CHUNK) {
      throw new FlowViolation(`a DATA frame of ${length} bytes, over the ${MAX_CHUNK} allowed`);
    }
    if (length > this.#allowed) {
      throw new FlowViolation(
        `sent ${length} bytes with ${this.#allowed} left of its window: past its credit`,
      );
    }
    const mux = this.#mux;
    const over = mux.context.admission.hold(this.#usage, length);
    if (over !== undefined) {
      // Within its credit, but the session (or the manager) holds too much for slow readers.
      this.#end(`the traffic-manager reset the flow: ${over}`, "reset");
      return;
    }
    this.#allowed -= length;
    const stats = mux.context.stats;
    this.#toDestination += length;
    stats.addBufferedToDestination(length);
    this.#socket.write(bytes, () => {
      if (this.#done) return;
      this.#toDestination -= length;
      mux.context.admission.hold(this.#usage, -length);
      stats.addBufferedToDestination(-length);
      stats.bytesToDestination += length;
      // The destination took the bytes: the client may send as many more.
      this.#given += length;
      if (this.#given >= FLOW_WINDOW / 4) {
        this.#allowed += this.#given;
        mux.out.write(this.#id, FrameType.Window, encodeWindow(this.#given));
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
    // From the manager (the session or the call ended, a violation): a reset.
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
    mux.context.admission.hold(this.#usage, -this.#toDestination);
    this.#toDestination = 0;
    this.#admitted.release();
    endSocket(this.#socket, socketEnd);
  }
}

/** A UDP flow: one connected socket; each DATA frame is one datagram. */
class UdpFlow implements Flow {
  #mux: ManagerMux;
  #id: number;
  #socket: dgram.Socket;
  #admitted: Admitted;
  #done = false;
  #sender: DatagramSender;
  #idle: IdleTimer | undefined;
  #unregister: () => void;

  constructor(mux: ManagerMux, id: number, socket: dgram.Socket, admitted: Admitted) {
    this.#mux = mux;
    this.#id = id;
    this.#socket = socket;
    this.#admitted = admitted;
    this.#sender = new DatagramSender(socket, mux.context.stats);
    this.#unregister = admitted.session.onEnd((_end, reason) => this.#end(reason));
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
    if (datagram.length > MAX_DATAGRAM) {
      throw new FlowViolation(`a datagram of ${datagram.length} bytes, over ${MAX_DATAGRAM}`);
    }
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
    this.#admitted.release();
    this.#sender.close();
    try {
      this.#socket.close();
    } catch {
      // Already closed.
    }
  }
}
