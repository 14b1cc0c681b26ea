/**
 * One end of a `Mux` call, whichever side holds it: the frames of every flow
 * of a session on one gRPC stream (framing in `mux.ts`, rules in
 * docs/protocol.md "Mux"). The daemon's end and the manager's end are this
 * one machine with a different role; either may open flows (the daemon dials
 * the cluster through the manager, the manager opens reverse flows to the
 * daemon for intercepts) and either may accept them. TCP flows run
 * `mux_tcp.ts`; UDP flows carry one datagram per DATA frame; DNS frames carry
 * a query one way and its answer back on the same id.
 *
 * What it takes care of for every flow:
 *
 * - **Ids.** The client numbers the flows it opens from 1, the server from
 *   2^31; an OPEN in this end's own space, or of an id in use, breaks the
 *   call.
 * - **Batches and backpressure.** Frames written in one turn of the event
 *   loop go as one `MuxBatch` (at most {@linkcode MAX_BATCH} of frames). While
 *   the stream will not take more, flows wait ({@linkcode FlowLink.blocked});
 *   while more than {@linkcode OUTBOUND_LIMIT} written bytes wait unsent, the
 *   call is not read either, so a peer that sends and never reads is pushed
 *   back by HTTP/2.
 * - **The peer is checked.** A frame that breaks its flow's rules resets that
 *   flow (counted, logged once per call); bytes that break the framing, a
 *   frame type that makes no sense, end the call. A peer's mistake costs its
 *   own flows and call, nothing else.
 *
 * @module
 */

import {
  decodeClose,
  decodeOpen,
  decodeResult,
  decodeWindow,
  encodeClose,
  encodeOpen,
  encodeResult,
  FLOW_WINDOW,
  forEachFrame,
  FrameType,
  FrameWriter,
  MAX_BATCH,
  MuxProtocolError,
  type OpenFrame,
} from "./mux.ts";
import { type FlowLink, FlowViolation, TcpFlow, type TcpFlowOptions } from "./mux_tcp.ts";
import { DialResult_Code, UDP_BUFFER_LIMIT } from "./service.ts";

export { FLOW_WINDOW, MAX_BATCH };

/** Which side of the call this end is: the client opened the call. */
export type MuxRole = "client" | "server";

/** The gRPC stream, as both ends of grpc-js look: a duplex stream of batches. */
export interface MuxStream {
  /** Writes a batch; `done` when it has gone out. False: wait for "drain". */
  write(batch: Uint8Array, done?: () => void): boolean;
  /** Stops and restarts "data" events. */
  pause(): unknown;
  /** See {@linkcode MuxStream.pause}. */
  resume(): unknown;
  /** Listens to "data", "drain", "end", "close", "error", "cancelled". */
  // deno-lint-ignore no-explicit-any
  on(event: string, listener: (...args: any[]) => void): unknown;
}

/**
 * Bytes written to the stream and not yet sent before this end stops reading
 * it: what a peer that never reads can make this end hold, besides the
 * flows' own windows.
 */
export const OUTBOUND_LIMIT = 8 * 1024 * 1024;

/** The largest UDP datagram (RFC 768: the length field is 16 bits). */
export const MAX_DATAGRAM = 65_535;

/** The first id of the flows the server opens; the client's are below it. */
const SERVER_IDS = 0x8000_0000;

/** What a refused or finished dial answers with. */
export interface DialAnswer {
  /** A `DialResult.Code` number. */
  code: number;
  /** What happened, for the opener. */
  message: string;
}

/** How an accepted OPEN is served. */
export type Accepted =
  | DialAnswer
  | {
    /** A TCP flow: makes its socket's side once the flow exists. */
    tcp(flow: TcpFlow): import("./mux_tcp.ts").TcpSink;
    /** The OK's message. */
    message: string;
    /** The TCP flow's hooks (limits). */
    hold?: TcpFlowOptions["hold"];
    /** Called once when the flow is over. */
    onEnd?(reason: string | undefined): void;
  }
  | {
    /** A UDP flow: makes its socket's side once the flow exists. */
    udp(flow: DatagramFlow): DatagramSink;
    /** The OK's message. */
    message: string;
  };

/** The local socket of a UDP flow. */
export interface DatagramSink {
  /** A datagram from the peer. */
  deliver(datagram: Uint8Array): void;
  /** The flow is over (the peer closed it, or the call is gone). */
  close(reason: string): void;
}

/** A UDP flow: one datagram per DATA frame; no credit (datagrams are dropped when the call is congested). */
export interface DatagramFlow {
  /** Sends a datagram; false when dropped (the call holds too much). */
  send(datagram: Uint8Array): boolean;
  /** Ends the flow; a reason tells the peer why. */
  close(reason?: string): void;
}

/** The peer's RESULT refusing a DNS query: its code and reason. */
export class MuxRefusal extends Error {
  /** A `DialResult.Code` number. */
  readonly code: number;

  /**
   * @param message the peer's reason
   * @param code its `DialResult.Code`
   */
  constructor(message: string, code: number) {
    super(message);
    this.name = "MuxRefusal";
    this.code = code;
  }
}

/** A flow this end opened, once the peer answered. */
export type Opened<T> = { ok: true; value: T } | { ok: false; code: number; message: string };

/** Options of {@linkcode MuxEnd}. */
export interface MuxEndOptions {
  /** Which side of the call this end is. */
  role: MuxRole;
  /**
   * Serves an OPEN from the peer: checks and dials it. Absent: every OPEN is
   * refused as PROHIBITED. The signal is aborted when the peer gives up on
   * the flow (CLOSE before the RESULT) or the call ends.
   */
  accept?(open: OpenFrame, signal: AbortSignal): Promise<Accepted>;
  /**
   * Answers a DNS query from the peer; a {@linkcode MuxRefusal} it rejects
   * with gives the RESULT's code (else UNREACHABLE). Absent: refused.
   */
  resolve?(query: Uint8Array): Promise<Uint8Array>;
  /** Log lines (debug for crossings, warn for the first violation of a call). */
  log?: (level: "debug" | "warn", line: string) => void;
  /** Who the peer is, for log lines (`the traffic-manager`, `session 1a2b…`). */
  peer: string;
  /**
   * The names in the reasons a flow reset for a violation is given (`vif
   * reset the flow: the traffic-manager sent …`). Default: by the role, the
   * client being vif and the server the traffic-manager.
   */
  names?: { me: string; peer: string };
  /** Called once when the call is over, with the reason the flows were given. */
  onEnd?(reason: string): void;
  /** Counters to add to (shared by several ends); fresh ones when absent. */
  stats?: MuxEndStats;
  /**
   * Ends the stream from this end: `undefined` gracefully, else with a
   * reason (the server fails the call with INVALID_ARGUMENT, the client cancels).
   */
  finish(reason: string | undefined): void;
}

/** A flow's handlers for the frames of its id. */
interface Entry {
  kind: "tcp" | "udp" | "opening" | "accepting" | "dns";
  tcp?: TcpFlow;
  udp?: Datagrams;
  /** A flow this end opened, waiting for its RESULT. */
  result?(code: number, window: number, message: string): void;
  /** A DNS query this end sent, waiting for its answer. */
  answer?(bytes: Uint8Array | null, refusal?: { code: number; message: string }): void;
  /** The call is gone, or the peer closed the flow. */
  close(reason: string): void;
}

/** Counters of one end, or of several ends that share them (a manager's calls). */
export interface MuxEndStats {
  /** Frames from the peer that broke the protocol (each reset its flow or ended the call). */
  violations: number;
  /** Data bytes sent. */
  bytesSent: number;
  /** Data bytes received. */
  bytesReceived: number;
  /** UDP datagrams dropped because the call was congested. */
  datagramsDropped: number;
  /** Bytes written to the stream and not yet sent. */
  outbound: number;
  /** The highest {@linkcode MuxEndStats.outbound} seen. */
  outboundPeak: number;
}

/**
 * Fresh counters.
 *
 * @returns every counter at 0
 */
export function muxEndStats(): MuxEndStats {
  return {
    violations: 0,
    bytesSent: 0,
    bytesReceived: 0,
    datagramsDropped: 0,
    outbound: 0,
    outboundPeak: 0,
  };
}

/** One end of a `Mux` call: see the module documentation. */
export class MuxEnd {
  /** The counters this end adds to. */
  readonly stats: MuxEndStats;
  #options: MuxEndOptions;
  #out: FrameWriter;
  #entries = new Map<number, Entry>();
  #next: number;
  #first: number;
  #limit: number;
  #blocked = false;
  #outbound = 0;
  #readPaused = false;
  #waiting = new Set<() => void>();
  #over: string | undefined;
  #violations = 0;
  #names: { me: string; peer: string };
  /** Aborts the dials under way when the call ends. */
  #stop = new AbortController();

  /**
   * Takes over a stream.
   *
   * @param stream the gRPC stream
   * @param options the role, what to do with the peer's OPENs and DNS queries, logs
   */
  constructor(stream: MuxStream, options: MuxEndOptions) {
    this.#options = options;
    this.stats = options.stats ?? muxEndStats();
    this.#names = options.names ??
      (options.role === "client"
        ? { me: "vif", peer: "the traffic-manager" }
        : { me: "the traffic-manager", peer: "vif" });
    this.#first = options.role === "client" ? 1 : SERVER_IDS;
    this.#limit = options.role === "client" ? SERVER_IDS - 1 : 0xffff_ffff;
    this.#next = this.#first;
    this.#out = new FrameWriter((batch) => {
      if (this.#over !== undefined) return;
      const size = batch.length;
      const stats = this.stats;
      this.#outbound += size;
      stats.outbound += size;
      if (stats.outbound > stats.outboundPeak) stats.outboundPeak = stats.outbound;
      const more = stream.write(batch, () => {
        if (this.#over !== undefined) return; // #lose let go of what was outbound.
        this.#outbound -= size;
        stats.outbound -= size;
        if (this.#readPaused && this.#outbound <= OUTBOUND_LIMIT / 2 && this.#over === undefined) {
          this.#readPaused = false;
          stream.resume();
        }
      });
      if (!more) this.#blocked = true;
      if (this.#outbound > OUTBOUND_LIMIT && !this.#readPaused) {
        this.#readPaused = true;
        stream.pause();
      }
    });
    stream.on("data", (batch: Uint8Array) => this.#batch(batch));
    stream.on("drain", () => this.#drained());
  }

  /** Whether the call is over (why, once it is). */
  get over(): string | undefined {
    return this.#over;
  }

  /** How many flows and DNS queries are open on the call. */
  get flows(): number {
    return this.#entries.size;
  }

  /** Whether the stream holds more than it can send now. */
  get blocked(): boolean {
    return this.#blocked && this.#over === undefined;
  }

  /** Bytes of frames queued and not yet handed to the stream. */
  get pending(): number {
    return this.#out.pending;
  }

  /**
   * Opens a TCP flow to the peer and waits for its RESULT.
   *
   * @param open the OPEN's fields (its window is this end's window for the flow)
   * @param make makes the local socket's side once the peer accepted
   * @param options the flow's hooks: its end, and what counts the bytes its sink holds
   * @returns the flow, or the peer's refusal
   */
  openTcp(
    open: OpenFrame,
    make: (flow: TcpFlow) => import("./mux_tcp.ts").TcpSink,
    options: { onEnd?(reason: string | undefined): void; hold?: TcpFlowOptions["hold"] } = {},
  ): Promise<Opened<TcpFlow>> {
    return this.#open(open, (id, window) => {
      const flow = new TcpFlow(this.#link(id), {
        acceptor: false,
        window: open.window,
        credit: window,
        ...(options.onEnd ? { onEnd: options.onEnd } : {}),
        ...(options.hold ? { hold: options.hold } : {}),
      });
      flow.attach(make(flow));
      this.#entries.set(id, this.#tcpEntry(flow));
      return flow;
    });
  }

  /**
   * Opens a UDP flow (or, for ICMP, an echo) to the peer and waits for its RESULT.
   *
   * @param open the OPEN's fields
   * @param sink where the peer's datagrams go (unused for ICMP)
   * @returns the flow, or the peer's refusal
   */
  openDatagrams(open: OpenFrame, sink: DatagramSink): Promise<Opened<DatagramFlow>> {
    return this.#open(open, (id) => {
      if (open.protocol === 3) {
        // An echo is over with its RESULT.
        this.#entries.delete(id);
        return { send: () => false, close: () => {} };
      }
      const flow = new Datagrams(this, this.#link(id), sink);
      this.#entries.set(id, this.#udpEntry(flow));
      return flow;
    });
  }

  /**
   * Asks the peer's DNS server.
   *
   * @param query a DNS query, wire format
   * @param timeoutMs how long to wait
   * @returns the answer
   * @throws {MuxRefusal} with the peer's code and reason when it answered
   *   with a RESULT
   * @throws {Error} with the call's end, or the time out
   */
  resolve(query: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      if (this.#over !== undefined) return reject(new Error(this.#over));
      const id = this.#allocate();
      const timer = setTimeout(() => {
        this.#entries.delete(id);
        reject(new Error(`${this.#options.peer} did not answer the DNS query in ${timeoutMs} ms`));
      }, timeoutMs);
      this.#entries.set(id, {
        kind: "dns",
        answer: (bytes, refusal) => {
          clearTimeout(timer);
          this.#entries.delete(id);
          if (bytes === null) {
            reject(new MuxRefusal(refusal?.message || "refused", refusal?.code ?? 0));
          } else resolve(bytes);
        },
        close: (reason) => {
          clearTimeout(timer);
          this.#entries.delete(id);
          reject(new Error(reason || "the call ended"));
        },
      });
      this.#out.write(id, FrameType.Dns, query);
    });
  }

  /**
   * Ends the call from this end: every flow is reset with `reason`, and the
   * peer hears CLOSE for each when `tell`.
   *
   * @param reason what the flows are told
   * @param tell send CLOSE frames before the end (the peer is still there)
   */
  end(reason: string, tell = true): void {
    if (this.#over !== undefined) return;
    if (tell) {
      for (const [id, entry] of this.#entries) {
        if (entry.kind !== "dns") this.#out.write(id, FrameType.Close, encodeClose(reason));
      }
      this.#out.flush();
    }
    this.#lose(reason);
    this.#options.finish(undefined);
  }

  /**
   * The stream ended or failed under this end: every flow is reset.
   *
   * @param reason what the flows are told
   */
  lost(reason: string): void {
    this.#lose(reason);
  }

  // --- opening ---------------------------------------------------------------

  #allocate(): number {
    for (let tries = 0; tries < 16; tries++) {
      const id = this.#next;
      this.#next = id >= this.#limit ? this.#first : id + 1;
      if (!this.#entries.has(id)) return id;
    }
    throw new RangeError("Cannot open a flow: no free flow id");
  }

  #open<T>(
    open: OpenFrame,
    made: (id: number, window: number) => T,
  ): Promise<Opened<T>> {
    return new Promise((resolve) => {
      if (this.#over !== undefined) {
        return resolve({ ok: false, code: DialResult_Code.UNREACHABLE, message: this.#over });
      }
      const id = this.#allocate();
      this.#entries.set(id, {
        kind: "opening",
        result: (code, window, message) => {
          if (code === DialResult_Code.OK) return resolve({ ok: true, value: made(id, window) });
          this.#entries.delete(id);
          resolve({ ok: false, code, message });
        },
        close: (reason) => {
          this.#entries.delete(id);
          resolve({
            ok: false,
            code: DialResult_Code.UNREACHABLE,
            message: reason || "the flow ended before its RESULT",
          });
        },
      });
      this.#out.write(id, FrameType.Open, encodeOpen(open));
    });
  }

  // --- accepting -------------------------------------------------------------

  #accept(id: number, open: OpenFrame): void {
    const abort = new AbortController();
    const stop = () => abort.abort();
    this.#stop.signal.addEventListener("abort", stop);
    const pending: Entry = {
      kind: "accepting",
      close: () => abort.abort(),
    };
    this.#entries.set(id, pending);
    const answer = (code: number, window: number, message: string) =>
      this.#out.write(id, FrameType.Result, encodeResult({ code, window, message }));
    const accepting = this.#options.accept
      ? this.#options.accept(open, abort.signal)
      : Promise.resolve<Accepted>({
        code: DialResult_Code.PROHIBITED,
        message: "this end accepts no flows",
      });
    accepting.then((accepted) => {
      this.#stop.signal.removeEventListener("abort", stop);
      const wanted = !abort.signal.aborted && this.#over === undefined &&
        this.#entries.get(id) === pending;
      if ("code" in accepted) {
        if (this.#entries.get(id) === pending) this.#entries.delete(id);
        if (wanted) answer(accepted.code, 0, accepted.message);
        return;
      }
      if (!wanted) {
        // The accept hook gave a socket for a flow nobody wants any more.
        if (this.#entries.get(id) === pending) this.#entries.delete(id);
        const gone = "the flow was given up";
        if ("tcp" in accepted) {
          const flow = new TcpFlow(DEAD_LINK, {
            acceptor: true,
            window: 0,
            credit: 0,
            ...(accepted.onEnd ? { onEnd: accepted.onEnd } : {}),
          });
          flow.attach(accepted.tcp(flow)).abort(gone);
        } else accepted.udp(new Datagrams(this, DEAD_LINK, NO_SINK)).close(gone);
        return;
      }
      if ("tcp" in accepted) {
        answer(DialResult_Code.OK, FLOW_WINDOW, accepted.message);
        const flow = new TcpFlow(this.#link(id), {
          acceptor: true,
          window: FLOW_WINDOW,
          credit: open.window,
          ...(accepted.hold ? { hold: accepted.hold } : {}),
          ...(accepted.onEnd ? { onEnd: accepted.onEnd } : {}),
        });
        this.#entries.set(id, this.#tcpEntry(flow));
        flow.attach(accepted.tcp(flow));
      } else {
        answer(DialResult_Code.OK, 0, accepted.message);
        const flow = new Datagrams(this, this.#link(id), NO_SINK);
        this.#entries.set(id, this.#udpEntry(flow));
        flow.attach(accepted.udp(flow));
      }
    }, (error: unknown) => {
      // A bug of the accept hook, not a dial failure: the flow gets the reason.
      this.#stop.signal.removeEventListener("abort", stop);
      if (this.#entries.get(id) === pending) this.#entries.delete(id);
      if (this.#over === undefined) {
        this.#out.write(
          id,
          FrameType.Close,
          encodeClose(`the flow failed: ${(error as Error)?.message ?? error}`),
        );
      }
    });
  }

  #dns(id: number, query: Uint8Array): void {
    const fail = (message: string, code: number = DialResult_Code.UNREACHABLE) =>
      this.#out.write(id, FrameType.Result, encodeResult({ code, window: 0, message }));
    if (!this.#options.resolve) {
      return fail("this end answers no DNS queries", DialResult_Code.PROHIBITED);
    }
    this.#options.resolve(query).then(
      (answer) => this.#over === undefined && this.#out.write(id, FrameType.Dns, answer),
      (error: Error) =>
        this.#over === undefined &&
        fail(error.message, error instanceof MuxRefusal ? error.code : undefined),
    );
  }

  // --- frames ----------------------------------------------------------------

  #batch(batch: Uint8Array): void {
    if (this.#over !== undefined) return;
    try {
      forEachFrame(batch, (id, type, payload) => this.#frame(id, type, payload));
    } catch (error) {
      if (!(error instanceof MuxProtocolError)) throw error;
      this.stats.violations++;
      const reason = `${this.#names.peer} broke the mux framing: ${error.message}`;
      this.#lose(reason);
      this.#options.finish(reason);
    }
  }

  /** Whether `id` lies in the space of the flows this end opens. */
  #mine(id: number): boolean {
    return id >= this.#first && id <= this.#limit;
  }

  #frame(id: number, type: number, payload: Uint8Array): void {
    if (this.#over !== undefined) return;
    if (type === FrameType.Open) {
      if (this.#mine(id) || id === 0) {
        throw new MuxProtocolError(`an OPEN of flow ${id}, which is not the peer's to open`);
      }
      if (this.#entries.has(id)) throw new MuxProtocolError(`flow ${id} opened twice`);
      return this.#accept(id, decodeOpen(payload));
    }
    if (type < FrameType.Open || type > FrameType.Dns) {
      throw new MuxProtocolError(`frame type ${type} is not one of the mux framing`);
    }
    const entry = this.#entries.get(id);
    if (type === FrameType.Dns) {
      if (entry?.kind === "dns") return entry.answer!(payload);
      if (this.#mine(id)) return; // The answer to a query that timed out here.
      if (entry !== undefined) throw new MuxProtocolError(`a DNS query on flow ${id}, in use`);
      return this.#dns(id, payload);
    }
    if (entry === undefined) {
      // A late frame of a flow already over here (it crossed its end on the wire).
      if (type === FrameType.Result && !this.#mine(id)) {
        throw new MuxProtocolError(`a RESULT of flow ${id}, which this end did not open`);
      }
      return;
    }
    try {
      this.#deliver(id, entry, type, payload);
    } catch (error) {
      if (!(error instanceof FlowViolation)) throw error;
      this.#violation(id, entry, error.message);
    }
  }

  #deliver(id: number, entry: Entry, type: number, payload: Uint8Array): void {
    switch (type) {
      case FrameType.Result: {
        if (entry.kind === "dns") {
          const r = decodeResult(payload);
          return entry.answer!(null, r);
        }
        if (entry.kind !== "opening") throw new FlowViolation("sent a second RESULT");
        const r = decodeResult(payload);
        return entry.result!(r.code, r.window, r.message);
      }
      case FrameType.Close:
        this.#entries.delete(id);
        return entry.close(decodeClose(payload));
      case FrameType.Data:
        this.stats.bytesReceived += payload.length;
        if (entry.tcp) return entry.tcp.data(payload);
        if (entry.udp) return entry.udp.data(payload);
        throw new FlowViolation(`sent DATA before the flow's RESULT`);
      case FrameType.Fin:
        if (entry.tcp) return entry.tcp.fin();
        if (entry.udp) return; // No meaning for UDP: replies may still come.
        throw new FlowViolation(`sent FIN before the flow's RESULT`);
      case FrameType.Window:
        if (entry.tcp) return entry.tcp.window(decodeWindow(payload));
        if (entry.udp) return;
        throw new FlowViolation(`sent WINDOW before the flow's RESULT`);
    }
  }

  /**
   * Resets a flow whose frame broke its rules, counting (and, once per call,
   * logging) it: the peer's mistake costs that flow, not the call.
   */
  #violation(id: number, entry: Entry, what: string): void {
    this.stats.violations++;
    if (this.#violations++ === 0) {
      this.#options.log?.(
        "warn",
        `mux: ${this.#options.peer} broke the protocol: flow ${id} reset: ${what}` +
          " (further violations on this call are counted, not logged)",
      );
    }
    const { me, peer } = this.#names;
    const reason = `${me} reset the flow: ${peer} ${what}`;
    this.#entries.delete(id);
    this.#out.write(id, FrameType.Close, encodeClose(reason));
    if (entry.tcp) entry.tcp.close(reason, false);
    else entry.close(reason);
  }

  // --- flows' side of the call -------------------------------------------------

  #link(id: number): FlowLink {
    const blocked = () => this.blocked;
    return {
      id,
      write: (type, payload) => {
        if (type === FrameType.Data) this.stats.bytesSent += payload?.length ?? 0;
        this.#out.write(id, type, payload);
      },
      get blocked() {
        return blocked();
      },
      whenUnblocked: (go) => void this.#waiting.add(go),
      forget: () => void this.#entries.delete(id),
    };
  }

  #tcpEntry(flow: TcpFlow): Entry {
    return { kind: "tcp", tcp: flow, close: (reason) => flow.close(reason) };
  }

  #udpEntry(flow: Datagrams): Entry {
    return { kind: "udp", udp: flow, close: (reason) => flow.closedByPeer(reason) };
  }

  #drained(): void {
    this.#blocked = false;
    const waiting = [...this.#waiting];
    this.#waiting.clear();
    for (const go of waiting) go();
  }

  #lose(reason: string): void {
    if (this.#over !== undefined) return;
    this.#over = reason;
    this.stats.outbound -= this.#outbound;
    this.#outbound = 0;
    this.#stop.abort();
    this.#out.close();
    const entries = [...this.#entries.values()];
    this.#entries.clear();
    for (const entry of entries) {
      if (entry.tcp) entry.tcp.close(reason, false);
      else entry.close(reason);
    }
    this.#drained();
    this.#options.onEnd?.(reason);
  }

  /** @internal For {@linkcode Datagrams}: whether a datagram of `size` may be queued now. */
  roomFor(size: number): boolean {
    return !this.blocked && this.#out.pending + size <= UDP_BUFFER_LIMIT;
  }
}

const NO_SINK: DatagramSink = { deliver: () => {}, close: () => {} };

/** The link of a flow the peer gave up before it started: it sends nothing. */
const DEAD_LINK: FlowLink = {
  id: 0,
  write: () => {},
  blocked: false,
  whenUnblocked: () => {},
  forget: () => {},
};

/** A UDP flow of a call. */
class Datagrams implements DatagramFlow {
  #end: MuxEnd;
  #link: FlowLink;
  #sink: DatagramSink;
  #over = false;

  constructor(end: MuxEnd, link: FlowLink, sink: DatagramSink) {
    this.#end = end;
    this.#link = link;
    this.#sink = sink;
  }

  attach(sink: DatagramSink): void {
    this.#sink = sink;
  }

  send(datagram: Uint8Array): boolean {
    if (this.#over) return false;
    if (!this.#end.roomFor(datagram.length)) {
      this.#end.stats.datagramsDropped++;
      return false;
    }
    this.#link.write(FrameType.Data, datagram);
    return true;
  }

  close(reason = ""): void {
    if (this.#over) return;
    this.#over = true;
    this.#link.write(FrameType.Close, encodeClose(reason));
    this.#link.forget();
    this.#sink.close(reason);
  }

  /** A datagram from the peer. */
  data(datagram: Uint8Array): void {
    if (this.#over) return;
    if (datagram.length > MAX_DATAGRAM) {
      throw new FlowViolation(`sent a datagram of ${datagram.length} bytes, over ${MAX_DATAGRAM}`);
    }
    this.#sink.deliver(datagram);
  }

  /** The peer closed the flow, or the call is gone. */
  closedByPeer(reason: string): void {
    if (this.#over) return;
    this.#over = true;
    this.#sink.close(reason);
  }
}
