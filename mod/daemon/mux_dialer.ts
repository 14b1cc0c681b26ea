/**
 * The router's {@linkcode Dialer} over the manager's `Mux` call: every TCP
 * connection, UDP flow and ping of the session is a flow of frames on one
 * long-lived gRPC stream (framing in `mod/rpc/mux.ts`, rules in
 * docs/protocol.md), instead of one gRPC call each.
 *
 * Flow control is per flow and credit-based: each side may send a TCP flow at
 * most the window the other side gave, and gives more (WINDOW frames) as the
 * bytes leave it: here when the app's socket has taken them. The stream
 * itself is therefore never paused for one slow flow; while grpc-js holds
 * more than it can send, every flow's writes wait for `drain`.
 *
 * A call that ends (the manager went away, the connection broke) resets its
 * flows; the next dial opens a new call.
 *
 * The manager is a peer like any other: a flow it sends past the credit it
 * was given, a DATA frame over {@linkcode MAX_CHUNK}, data after its FIN or a
 * second RESULT resets that flow (counted in `violations`, logged once per
 * call); bytes that break the framing end the call. So no flow holds more
 * than its window here, whatever the manager sends.
 *
 * @module
 */

import type { ClientDuplexStream } from "@grpc/grpc-js";
import grpc from "@grpc/grpc-js";
import { parseAddress } from "../net/address.ts";
import type {
  ByteStream,
  DatagramFlow,
  Dialer,
  DialFailure,
  DialRequest,
  DialResult,
  PingRequest,
  PipeResult,
  Socket,
} from "../net/dialer.ts";
import { closeQuietly, SocketReader, writeAll } from "../net/pipe.ts";
import {
  decodeClose,
  decodeResult,
  decodeWindow,
  encodeClose,
  encodeOpen,
  encodeWindow,
  FLOW_WINDOW,
  forEachFrame,
  FrameType,
  FrameWriter,
  MuxProtocol,
} from "../rpc/mux.ts";
import {
  DialResult_Code,
  MAX_CHUNK,
  MUX_SESSION_HEADER,
  UDP_BUFFER_LIMIT,
} from "../rpc/service.ts";

type MuxCall = ClientDuplexStream<Uint8Array, Uint8Array>;

/** What the dialer needs of the gRPC client. */
export interface MuxClient {
  /** Opens a Mux call. */
  mux(metadata: grpc.Metadata): MuxCall;
}

/** Options of {@linkcode MuxDialer}. */
export interface MuxDialerOptions {
  /** The session the flows belong to. */
  sessionId: () => string;
  /** Dial timeout asked of the manager, in ms (default: the manager's). */
  dialTimeoutMs?: number;
  /** Log sink. */
  log?: (level: "debug" | "info" | "warn", message: string) => void;
  /** Called when the manager says the session is gone (the session should arrive again). */
  onNoSession?: () => void;
  /** The window given to the manager per TCP flow (default {@linkcode FLOW_WINDOW}). */
  window?: number;
}

/** The dialer's counters. */
export interface MuxStats {
  tcpOpen: number;
  udpOpen: number;
  bytesToCluster: number;
  bytesFromCluster: number;
  dialFailures: number;
  /** Mux calls opened since start. */
  calls: number;
  /** Frames from the manager that broke the protocol (each reset its flow or ended the call). */
  violations: number;
}

/** One flow's end of the frames: what the connection hands it. */
interface Flow {
  /** The manager's answer to OPEN. */
  result(code: number, window: number, message: string): void;
  data(payload: Uint8Array): void;
  /** The answer to a DNS query sent on this id. */
  dns?(answer: Uint8Array): void;
  fin(): void;
  window(increment: number): void;
  /** CLOSE from the manager, or the call gone (`lost`). */
  close(reason: string, lost?: boolean): void;
  /** A frame that breaks the flow's rules came: reset it. */
  violation?(what: string): void;
}

const LOST = "the tunnel to the traffic-manager was lost";

/**
 * What a manager's dial result code means for the app.
 *
 * @param code a failed dial's code
 * @returns the failure the router turns into a RST, an ICMP error or silence
 */
export function dialFailure(code: DialResult_Code): DialFailure {
  switch (code) {
    case DialResult_Code.REFUSED:
      return "refused";
    case DialResult_Code.TIMEOUT:
      return "timeout";
    case DialResult_Code.PROHIBITED:
      return "prohibited";
    default:
      return "unreachable";
  }
}

/** One Mux call and its flows. */
class MuxConnection {
  readonly sessionId: string;
  readonly flows = new Map<number, Flow>();
  readonly out: FrameWriter;
  #call: MuxCall;
  #next = 1;
  #blocked = false;
  #waiters: Array<() => void> = [];
  #dead = false;
  #stats: MuxStats;
  #log: MuxDialerOptions["log"];
  #violations = 0;

  constructor(
    client: MuxClient,
    sessionId: string,
    stats: MuxStats,
    log: MuxDialerOptions["log"],
    onNoSession?: () => void,
  ) {
    this.sessionId = sessionId;
    this.#stats = stats;
    this.#log = log;
    const metadata = new grpc.Metadata();
    metadata.set(MUX_SESSION_HEADER, sessionId);
    const call = client.mux(metadata);
    this.#call = call;
    stats.calls++;
    this.out = new FrameWriter((batch) => {
      if (!this.#dead && !call.write(batch)) this.#blocked = true;
    });
    call.on("data", (batch: Uint8Array) => {
      try {
        forEachFrame(batch, (id, type, payload) => this.#frame(id, type, payload));
      } catch (error) {
        this.#lose(`the traffic-manager broke the mux framing: ${(error as Error).message}`);
      }
    });
    call.on("drain", () => this.#drained());
    // grpc-js emits "error" on every call that ends badly, cancelled ones too.
    call.on("error", (e: grpc.ServiceError) => {
      // The manager no longer knows the session: arrive again, as a NO_SESSION result says.
      if (e.code === grpc.status.NOT_FOUND) onNoSession?.();
      this.#lose(`${LOST}: ${e.details || e.message}`);
    });
    call.on("end", () => this.#lose(LOST));
    call.on("close", () => this.#lose(LOST));
  }

  get dead(): boolean {
    return this.#dead;
  }

  /** A new flow id, and the flow registered under it. */
  add(flow: Flow): number {
    const id = this.#next++;
    if (this.#next > 0xffff_fffe) this.#next = 1;
    this.flows.set(id, flow);
    return id;
  }

  /**
   * Counts a frame that broke a flow's rules and logs the first of the call;
   * the flow resets itself.
   *
   * @param id the flow
   * @param what what the manager did
   */
  violation(id: number, what: string): void {
    this.#stats.violations++;
    if (this.#violations++ === 0) {
      this.#log?.(
        "warn",
        `mux: the traffic-manager broke the protocol on flow ${id}: ${what}; the flow is reset` +
          " (further violations on this call are counted, not logged)",
      );
    }
  }

  /** grpc-js holds more than it can send now. */
  get blocked(): boolean {
    return this.#blocked && !this.#dead;
  }

  /** Resolves when grpc-js can take more; `undefined` when it can now. */
  ready(): Promise<void> | undefined {
    if (!this.#blocked || this.#dead) return undefined;
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /**
   * Ends the call from this side: its flows are reset on both sides.
   *
   * @param reason what the flows are told
   */
  end(reason: string): void {
    if (this.#dead) return;
    this.out.flush();
    this.#call.end();
    this.#lose(reason);
  }

  #drained(): void {
    this.#blocked = false;
    for (const go of this.#waiters.splice(0)) go();
  }

  #frame(id: number, type: number, payload: Uint8Array): void {
    const flow = this.flows.get(id);
    if (flow === undefined) return; // a late frame of a flow already ended here
    switch (type) {
      case FrameType.Result: {
        const r = decodeResult(payload);
        flow.result(r.code, r.window, r.message);
        return;
      }
      case FrameType.Data:
        this.#stats.bytesFromCluster += payload.length;
        flow.data(payload);
        return;
      case FrameType.Fin:
        flow.fin();
        return;
      case FrameType.Dns:
        flow.dns?.(payload);
        return;
      case FrameType.Window:
        flow.window(decodeWindow(payload));
        return;
      case FrameType.Close:
        this.flows.delete(id);
        flow.close(decodeClose(payload));
        return;
      default:
        this.#stats.violations++;
        this.#log?.("debug", `mux: ignoring a frame of unknown type ${type}`);
    }
  }

  #lose(reason: string): void {
    if (this.#dead) return;
    this.#dead = true;
    this.out.close();
    this.#drained();
    if (this.flows.size > 0) this.#log?.("debug", `mux: ${reason}; ${this.flows.size} flows reset`);
    const flows = [...this.flows.values()];
    this.flows.clear();
    for (const flow of flows) flow.close(reason, true);
    this.#call.cancel();
  }
}

/** Dials through the traffic-manager over one Mux call. */
export class MuxDialer implements Dialer {
  #client: MuxClient;
  #opts: MuxDialerOptions;
  #conn: MuxConnection | null = null;
  readonly stats: MuxStats = {
    calls: 0,
    violations: 0,
    tcpOpen: 0,
    udpOpen: 0,
    bytesToCluster: 0,
    bytesFromCluster: 0,
    dialFailures: 0,
  };

  /**
   * @param client the gRPC client of the Manager service
   * @param options session and limits
   */
  constructor(client: MuxClient, options: MuxDialerOptions) {
    this.#client = client;
    this.#opts = options;
  }

  /** The live call for the current session, opened when there is none. */
  #connection(): MuxConnection {
    const session = this.#opts.sessionId();
    const conn = this.#conn;
    if (conn && !conn.dead && conn.sessionId === session) return conn;
    // A new session (arrived again) gets a new call; the old one's flows
    // belonged to a session the manager has ended.
    conn?.end("the session changed");
    this.#conn = new MuxConnection(
      this.#client,
      session,
      this.stats,
      this.#opts.log,
      this.#opts.onNoSession,
    );
    return this.#conn;
  }

  /** When each destination the manager refused was last logged, for {@linkcode MuxDialer.#refused}. */
  #refusedLogged = new Map<string, number>();

  /**
   * Says, at info level, that the manager refused a destination and why: the
   * app only sees "no route to host", so the log must tell the rest. Once a
   * minute per destination, at most 256 destinations remembered.
   */
  #refused(protocol: number, req: DialRequest, message: string): void {
    const name = protocol === MuxProtocol.Tcp
      ? "tcp"
      : protocol === MuxProtocol.Udp
      ? "udp"
      : "icmp";
    const where = `${name} ${req.destination.address}${
      protocol === MuxProtocol.Icmp ? "" : `:${req.destination.port}`
    }`;
    const now = Date.now();
    const last = this.#refusedLogged.get(where);
    if (last !== undefined && now - last < 60_000) return;
    if (this.#refusedLogged.size >= 256) this.#refusedLogged.clear();
    this.#refusedLogged.set(where, now);
    this.#opts.log?.("info", `mux: the traffic-manager refused ${where}: ${message}`);
  }

  /** Ends the call and resets its flows (the session is closing). */
  close(): void {
    this.#conn?.end("vif is disconnecting");
    this.#conn = null;
  }

  #open<T>(
    protocol: number,
    req: DialRequest,
    make: (conn: MuxConnection, id: number, window: number) => T,
    flow: Partial<Flow>,
  ): Promise<DialResult<T>> {
    const conn = this.#connection();
    const source = parseAddress(req.source.address) ?? new Uint8Array(4);
    const destination = parseAddress(req.destination.address) ?? new Uint8Array(4);
    return new Promise((resolve) => {
      let settled = false;
      const settle = (r: DialResult<T>) => {
        if (settled) return;
        settled = true;
        if (!r.ok) this.stats.dialFailures++;
        if (!r.ok && r.reason === "prohibited") this.#refused(protocol, req, r.message ?? "");
        resolve(r);
      };
      const pending: Flow = {
        result: (code, window, message) => {
          if (code === DialResult_Code.OK) {
            // From here on, the flow's own handlers take the frames; a second RESULT is a violation.
            Object.assign(pending, flow, { result: () => flow.violation?.("a second RESULT") });
            return settle({ ok: true, value: make(conn, id, window) });
          }
          conn.flows.delete(id);
          if (code === DialResult_Code.NO_SESSION) this.#opts.onNoSession?.();
          settle({ ok: false, reason: dialFailure(code), message });
        },
        data: () => {},
        fin: () => {},
        window: () => {},
        close: (reason) =>
          settle({ ok: false, reason: "unreachable", message: reason || "the tunnel ended" }),
      };
      const id = conn.add(pending);
      conn.out.write(
        id,
        FrameType.Open,
        encodeOpen({
          protocol,
          sourceIp: source.length === destination.length
            ? source
            : new Uint8Array(destination.length),
          sourcePort: req.source.port,
          destinationIp: destination,
          destinationPort: req.destination.port,
          dialTimeoutMs: this.#opts.dialTimeoutMs ?? 0,
          window: protocol === MuxProtocol.Tcp ? this.#opts.window ?? FLOW_WINDOW : 0,
        }),
      );
    });
  }

  /** Opens a TCP flow: resolves once the manager has dialed. */
  async dialTcp(req: DialRequest): Promise<DialResult<ByteStream>> {
    const tcp = new TcpFlow(this.stats, this.#opts.window ?? FLOW_WINDOW);
    const result = await this.#open(
      MuxProtocol.Tcp,
      req,
      (conn, id, window) => tcp.attach(conn, id, window),
      tcp.handlers(),
    );
    if (!result.ok) {
      this.#opts.log?.(
        "debug",
        `mux: tcp ${req.destination.address}:${req.destination.port}: ${result.reason} ${
          result.message ?? ""
        }`,
      );
    }
    return result;
  }

  /** Opens a UDP flow; each DATA frame is one datagram. */
  dialUdp(
    req: DialRequest,
    deliver: (payload: Uint8Array) => void,
  ): Promise<DialResult<DatagramFlow>> {
    const stats = this.stats;
    let closed = false;
    const end = () => {
      if (closed) return;
      closed = true;
      stats.udpOpen--;
    };
    return this.#open(MuxProtocol.Udp, req, (conn, id) => {
      stats.udpOpen++;
      return {
        send(payload: Uint8Array) {
          if (closed || conn.dead) return;
          // UDP semantics: drop rather than queue without bound.
          if (conn.blocked || conn.out.pending > UDP_BUFFER_LIMIT) return;
          stats.bytesToCluster += payload.length;
          conn.out.write(id, FrameType.Data, payload);
        },
        close() {
          if (closed) return;
          conn.flows.delete(id);
          conn.out.write(id, FrameType.Close, encodeClose(""));
          end();
        },
      };
    }, { data: deliver, close: end });
  }

  /**
   * Asks the cluster's DNS server through the manager (no search path, TCP
   * when truncated): a DNS frame out, and its answer on the same id.
   *
   * @param query a DNS query, wire format
   * @param timeoutMs how long to wait for the answer
   * @returns the answer, wire format
   * @throws {Error} when the manager could not answer (its reason), the
   *   session is gone (and the session is told), or the time ran out
   */
  resolveDns(query: Uint8Array, timeoutMs = 8000): Promise<Uint8Array> {
    const conn = this.#connection();
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        conn.flows.delete(id);
        reject(new Error(`the traffic-manager did not answer the DNS query in ${timeoutMs} ms`));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        conn.flows.delete(id);
      };
      const id = conn.add({
        result: (code, _window, message) => {
          done();
          if (code === DialResult_Code.NO_SESSION) this.#opts.onNoSession?.();
          reject(new Error(message));
        },
        data: () => {},
        dns: (answer) => {
          done();
          resolve(answer);
        },
        fin: () => {},
        window: () => {},
        close: (reason) => {
          done();
          reject(new Error(reason || "the tunnel ended"));
        },
      });
      conn.out.write(id, FrameType.Dns, query);
    });
  }

  /** Pings through the manager. */
  ping(req: PingRequest): Promise<DialResult<void>> {
    return this.#open(MuxProtocol.Icmp, req, (conn, id) => void conn.flows.delete(id), {});
  }
}

/**
 * A TCP flow on the daemon's side: a {@linkcode ByteStream} for the router.
 * The router joins it to the accepted socket with
 * {@linkcode TcpFlow.joinSocket}, which moves bytes between the socket and
 * the frames directly; `readable` and `writable` (made only when asked for)
 * serve other users, the tests among them.
 */
class TcpFlow implements ByteStream {
  #stats: MuxStats;
  #window: number;
  #conn!: MuxConnection;
  #id = 0;
  /** What the manager still lets us send. */
  #credit = 0;
  #creditWaiter: (() => void) | null = null;
  /** Bytes the app took since the last WINDOW frame. */
  #taken = 0;
  /** What the manager may still send: the window given, less what came, plus what was given back. */
  #allowed: number;
  /** Data from the manager not yet handed to the app. */
  #queue: Uint8Array[] = [];
  /** The manager sends no more data (FIN, or the flow ended). */
  #readEnded = false;
  #wroteFin = false;
  #gone: Error | null = null;
  /** The flow was reset (not closed): `#gone` is what the app's side hears. */
  #aborted = false;
  #counted = false;
  // As web streams:
  #readable: ReadableStream<Uint8Array> | null = null;
  #writable: WritableStream<Uint8Array> | null = null;
  #controller: ReadableStreamDefaultController<Uint8Array> | null = null;
  /** The readable has asked for a chunk and none was queued. */
  #wanted = false;
  // Joined to a socket:
  #socket: Socket | null = null;
  /** A write to the socket is under way. */
  #writing = false;
  #upEnded = false;
  #downEnded = false;
  #joined: PipeResult = { aToB: 0, bToA: 0 };
  #joinDone: ((r: PipeResult) => void) | null = null;

  constructor(stats: MuxStats, window: number) {
    this.#stats = stats;
    this.#window = window;
    this.#allowed = window;
  }

  handlers(): Partial<Flow> {
    return {
      data: (p) => this.#data(p),
      fin: () => this.#fin(),
      window: (n) => this.#more(n),
      close: (reason, lost) => this.#closed(reason, lost ?? false),
      violation: (what) => this.#violation(what),
    };
  }

  /** The manager broke the flow's rules: count it and reset the flow both ways. */
  #violation(what: string): void {
    if (this.#gone) return;
    this.#conn.violation(this.#id, what);
    this.#reset(`vif reset the flow: the traffic-manager ${what}`);
  }

  attach(conn: MuxConnection, id: number, window: number): ByteStream {
    this.#conn = conn;
    this.#id = id;
    this.#credit = window;
    this.#stats.tcpOpen++;
    this.#counted = true;
    return this;
  }

  get readable(): ReadableStream<Uint8Array> {
    return this.#readable ??= new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
        if (this.#aborted) controller.error(this.#gone);
      },
      pull: (controller) => {
        const chunk = this.#queue.shift();
        if (chunk !== undefined) {
          controller.enqueue(chunk);
          this.#took(chunk.length);
        } else if (this.#readEnded) this.#endReadable();
        else this.#wanted = true;
      },
      cancel: () => this.#reset("the app closed the connection"),
    }, { highWaterMark: 0 });
  }

  get writable(): WritableStream<Uint8Array> {
    return this.#writable ??= new WritableStream<Uint8Array>({
      write: (chunk) => this.#write(chunk),
      close: () => {
        if (this.#gone) throw this.#gone;
        this.#sendFin();
      },
      abort: (reason) => this.#reset(String(reason ?? "aborted")),
    });
  }

  joinSocket(socket: Socket): Promise<PipeResult> {
    if (this.#socket || this.#readable || this.#writable) {
      throw new Error("Cannot join the flow to a socket: it is in use");
    }
    this.#socket = socket;
    const done = new Promise<PipeResult>((resolve) => this.#joinDone = resolve);
    if (this.#aborted) {
      // Reset before the accept: the app gets the reset at once.
      closeQuietly(socket);
      this.#upEnded = this.#downEnded = true;
    } else {
      this.#pumpUp(socket);
      if (this.#queue.length > 0) this.#drainDown(socket);
      else if (this.#readEnded) this.#endDown(socket);
    }
    this.#maybeJoined();
    return done;
  }

  /** App → cluster: socket reads become DATA frames, the socket's FIN a FIN frame. */
  async #pumpUp(socket: Socket): Promise<void> {
    const reader = new SocketReader(socket);
    try {
      for (;;) {
        const chunk = await reader.read();
        if (chunk === null) break;
        this.#joined.aToB += chunk.length;
        await this.#write(chunk);
      }
      if (!this.#gone) this.#sendFin();
    } catch (error) {
      this.#joined.error ??= error;
      this.#reset(`the app's connection failed: ${(error as Error)?.message ?? error}`);
    }
    this.#upEnded = true;
    this.#maybeJoined();
  }

  /** Cluster → app: queued DATA goes to the socket in order, then the FIN. */
  async #drainDown(socket: Socket): Promise<void> {
    this.#writing = true;
    try {
      for (let chunk = this.#queue.shift(); chunk; chunk = this.#queue.shift()) {
        await writeAll(socket, chunk);
        this.#joined.bToA += chunk.length;
        this.#took(chunk.length);
      }
    } catch (error) {
      this.#joined.error ??= error;
      this.#writing = false;
      this.#reset(`cannot write to the app: ${(error as Error)?.message ?? error}`);
      return;
    }
    this.#writing = false;
    if (this.#readEnded) this.#endDown(socket);
  }

  /** The manager's FIN after the last byte: half-close the socket. */
  #endDown(socket: Socket): void {
    if (this.#downEnded) return;
    this.#downEnded = true;
    socket.closeWrite().catch(() => {}).finally(() => {
      this.#maybeDone();
      this.#maybeJoined();
    });
  }

  #maybeJoined(): void {
    if (!this.#upEnded || !this.#downEnded || !this.#joinDone) return;
    const done = this.#joinDone;
    this.#joinDone = null;
    done(this.#joined);
  }

  #sendFin(): void {
    if (this.#wroteFin) return;
    this.#wroteFin = true;
    this.#conn.out.write(this.#id, FrameType.Fin);
    this.#maybeDone();
  }

  async #write(chunk: Uint8Array): Promise<void> {
    for (let off = 0; off < chunk.length;) {
      if (this.#gone) throw this.#gone;
      if (this.#credit <= 0) {
        await new Promise<void>((resolve) => this.#creditWaiter = resolve);
        continue;
      }
      const wait = this.#conn.ready();
      if (wait) {
        await wait;
        continue;
      }
      const part = chunk.subarray(off, off + Math.min(MAX_CHUNK, this.#credit));
      off += part.length;
      this.#credit -= part.length;
      this.#stats.bytesToCluster += part.length;
      this.#conn.out.write(this.#id, FrameType.Data, part);
    }
  }

  #more(increment: number): void {
    if (this.#credit + increment > 2 ** 48) {
      return this.#violation(`gave a WINDOW of ${increment} bytes, past 2^48 of credit`);
    }
    this.#credit += increment;
    const go = this.#creditWaiter;
    this.#creditWaiter = null;
    go?.();
  }

  #data(payload: Uint8Array): void {
    if (this.#gone) return;
    if (this.#readEnded) return this.#violation("sent DATA after its FIN");
    if (payload.length > MAX_CHUNK) {
      return this.#violation(`sent a DATA frame of ${payload.length} bytes, over ${MAX_CHUNK}`);
    }
    if (payload.length > this.#allowed) {
      return this.#violation(
        `sent ${payload.length} bytes with ${this.#allowed} left of its window: past its credit`,
      );
    }
    this.#allowed -= payload.length;
    if (this.#socket) {
      this.#queue.push(payload);
      if (!this.#writing) this.#drainDown(this.#socket);
    } else if (this.#wanted && this.#controller) {
      // A read is waiting: hand the chunk over now.
      this.#wanted = false;
      this.#controller.enqueue(payload);
      this.#took(payload.length);
    } else this.#queue.push(payload);
  }

  #took(n: number): void {
    this.#taken += n;
    if (this.#taken >= this.#window / 4 && !this.#gone) {
      this.#conn.out.write(this.#id, FrameType.Window, encodeWindow(this.#taken));
      this.#allowed += this.#taken;
      this.#taken = 0;
    }
  }

  #fin(): void {
    if (this.#readEnded) return;
    this.#readEnded = true;
    if (this.#queue.length > 0 || this.#writing) return; // after the queued data
    if (this.#socket) this.#endDown(this.#socket);
    else if (this.#controller) this.#endReadable();
    else this.#maybeDone();
  }

  #endReadable(): void {
    try {
      this.#controller?.close();
    } catch {
      // already closed or errored
    }
    this.#maybeDone();
  }

  /** Both FINs are through: the flow is over on both sides. */
  #maybeDone(): void {
    if (this.#readEnded && this.#queue.length === 0 && this.#wroteFin) this.#finish();
  }

  #closed(reason: string, lost: boolean): void {
    if (reason === "" && !lost) {
      // The manager is done with the flow: both directions ended there.
      this.#gone = new Error("Connection closed by the cluster");
      this.#fin();
      this.#finish();
      return;
    }
    this.#gone = new Error(
      lost ? `Connection reset: ${reason}` : `Connection reset by the cluster: ${reason}`,
    );
    this.#abort();
    this.#finish();
  }

  #reset(reason: string): void {
    if (!this.#gone) {
      this.#gone = new Error(reason);
      this.#conn.flows.delete(this.#id);
      this.#conn.out.write(this.#id, FrameType.Close, encodeClose(reason || "reset"));
    }
    this.#abort();
    this.#finish();
  }

  /** The flow was reset: the app's side hears it, queued data is dropped. */
  #abort(): void {
    this.#aborted = true;
    this.#readEnded = true;
    this.#queue.length = 0;
    this.#more(0);
    try {
      this.#controller?.error(this.#gone);
    } catch {
      // already closed
    }
    const socket = this.#socket;
    if (socket) {
      this.#joined.error ??= this.#gone;
      closeQuietly(socket);
      // A write under way fails and ends the direction; else it ends now.
      if (!this.#writing) this.#downEnded = true;
      this.#maybeJoined();
    }
  }

  #finish(): void {
    this.#conn.flows.delete(this.#id);
    if (this.#counted) this.#stats.tcpOpen--;
    this.#counted = false;
  }
}
