/**
 * The router's {@linkcode Dialer} over the manager's `Mux` call: every TCP
 * connection, UDP flow, ping and DNS query of the session is a flow of frames
 * on one long-lived gRPC stream. The call is the shared machine of
 * `mod/rpc/mux_end.ts` in the client's role (the rules, the credit, what a
 * broken frame costs: docs/protocol.md "Mux"); what is the daemon's own is
 * here: the app's sockets (Deno's) as the flows' sinks, the counters the
 * status shows, and what a refusal means for the app.
 *
 * A call that ends (the manager went away, the connection broke) resets its
 * flows; the next dial opens a new call. A new session (the daemon arrived
 * again) gets a new call too.
 *
 * @module
 */

import grpc, { type ClientDuplexStream } from "@grpc/grpc-js";
import { parseAddress } from "../net/address.ts";
import type {
  ByteStream,
  DatagramFlow,
  Dialer,
  DialFailure,
  DialRequest,
  DialResult,
  PingRequest,
} from "../net/dialer.ts";
import { FLOW_WINDOW, MuxProtocol, type OpenFrame } from "../rpc/mux.ts";
import {
  type Accepted,
  MuxEnd,
  type MuxEndStats,
  muxEndStats,
  MuxRefusal,
  type Opened,
} from "../rpc/mux_end.ts";
import { AppStream } from "../rpc/mux_socket.ts";
import { DialResult_Code, MUX_SESSION_HEADER } from "../rpc/service.ts";

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
  /**
   * Serves what the manager opens toward the daemon: the connections of the
   * session's intercepts. Absent: every such OPEN is refused.
   */
  accept?(open: OpenFrame, signal: AbortSignal): Promise<Accepted>;
  /**
   * Whether a call must stay open even with no flow of the daemon's (the
   * session intercepts: the manager opens flows on it). When it is lost, it
   * is opened again after a second.
   */
  keepOpen?(): boolean;
}

/** The dialer's counters. */
export interface MuxStats {
  /** TCP flows open. */
  tcpOpen: number;
  /** UDP flows open. */
  udpOpen: number;
  /** Data bytes sent to the manager, every call. */
  readonly bytesToCluster: number;
  /** Data bytes from the manager, every call. */
  readonly bytesFromCluster: number;
  /** Dials the manager refused or could not make. */
  dialFailures: number;
  /** Mux calls opened since start. */
  calls: number;
  /** Frames from the manager that broke the protocol (each reset its flow or ended the call). */
  readonly violations: number;
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

/** Dials through the traffic-manager over one Mux call. */
export class MuxDialer implements Dialer {
  #client: MuxClient;
  #opts: MuxDialerOptions;
  #end: MuxEnd | null = null;
  #session = "";
  /** Shared by every call of the dialer. */
  #calls: MuxEndStats = muxEndStats();
  readonly stats: MuxStats;

  /**
   * @param client the gRPC client of the Manager service
   * @param options session and limits
   */
  constructor(client: MuxClient, options: MuxDialerOptions) {
    this.#client = client;
    this.#opts = options;
    const calls = this.#calls;
    this.stats = {
      tcpOpen: 0,
      udpOpen: 0,
      dialFailures: 0,
      calls: 0,
      get bytesToCluster() {
        return calls.bytesSent;
      },
      get bytesFromCluster() {
        return calls.bytesReceived;
      },
      get violations() {
        return calls.violations;
      },
    };
  }

  /** The live call for the current session, opened when there is none. */
  #call(): MuxEnd {
    const session = this.#opts.sessionId();
    const live = this.#end;
    if (live && live.over === undefined && this.#session === session) return live;
    // A new session (arrived again) gets a new call; the old one's flows
    // belonged to a session the manager has ended.
    live?.end("the session changed");
    const metadata = new grpc.Metadata();
    metadata.set(MUX_SESSION_HEADER, session);
    const call = this.#client.mux(metadata);
    this.stats.calls++;
    const log = this.#opts.log;
    const end = new MuxEnd(call, {
      role: "client",
      peer: "the traffic-manager",
      stats: this.#calls,
      ...(log ? { log } : {}),
      ...(this.#opts.accept ? { accept: this.#opts.accept } : {}),
      finish: (reason) => {
        // Ended from here: the manager resets what is left; cancel so no
        // stream is left half-open on a manager that does not answer.
        if (reason === undefined) call.end();
        call.cancel();
      },
      onEnd: (reason) => {
        if (end.flows > 0) log?.("debug", `mux: ${reason}; ${end.flows} flows reset`);
        this.#reopenLater();
      },
    });
    // grpc-js emits "error" on every call that ends badly, cancelled ones too.
    call.on("error", (e: grpc.ServiceError) => {
      // The manager no longer knows the session: arrive again, as a NO_SESSION result says.
      if (e.code === grpc.status.NOT_FOUND) this.#opts.onNoSession?.();
      end.lost(`${LOST}: ${e.details || e.message}`);
    });
    call.on("end", () => end.lost(LOST));
    call.on("close", () => end.lost(LOST));
    this.#end = end;
    this.#session = session;
    return end;
  }

  #reopen: ReturnType<typeof setTimeout> | undefined;
  #closed = false;

  /** A lost call that intercepts need is opened again, a second later. */
  #reopenLater(): void {
    if (this.#closed || this.#reopen !== undefined || !this.#opts.keepOpen?.()) return;
    this.#reopen = setTimeout(() => {
      this.#reopen = undefined;
      if (!this.#closed && this.#opts.keepOpen?.() && this.#opts.sessionId() !== "") this.#call();
    }, 1000);
  }

  /**
   * Makes sure the session's call is open, so that the manager can open
   * flows on it (an intercept begins).
   */
  open(): void {
    if (!this.#closed) this.#call();
  }

  /**
   * Opens a TCP flow that is not a dial (an sftp stream to an intercepted
   * pod's agent): the OPEN as given.
   *
   * @param open the OPEN's fields (its window is set here)
   * @returns the stream, or the manager's refusal
   */
  async openStream(open: OpenFrame): Promise<DialResult<ByteStream & AppStream>> {
    const stats = this.stats;
    let stream: AppStream | undefined;
    const opened = await this.#call().openTcp(
      { ...open, window: this.#opts.window ?? FLOW_WINDOW },
      (flow) => {
        stats.tcpOpen++;
        return stream = new AppStream(flow);
      },
      { onEnd: () => stats.tcpOpen-- },
    );
    if (opened.ok) return { ok: true, value: stream! };
    this.stats.dialFailures++;
    return { ok: false, reason: dialFailure(opened.code), message: opened.message };
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
    this.#closed = true;
    clearTimeout(this.#reopen);
    this.#reopen = undefined;
    this.#end?.end("vif is disconnecting");
    this.#end = null;
  }

  /** The OPEN of a dial. */
  #openFrame(protocol: number, req: DialRequest): OpenFrame {
    const source = parseAddress(req.source.address) ?? new Uint8Array(4);
    const destination = parseAddress(req.destination.address) ?? new Uint8Array(4);
    return {
      protocol,
      sourceIp: source.length === destination.length ? source : new Uint8Array(destination.length),
      sourcePort: req.source.port,
      destinationIp: destination,
      destinationPort: req.destination.port,
      dialTimeoutMs: this.#opts.dialTimeoutMs ?? 0,
      window: protocol === MuxProtocol.Tcp ? this.#opts.window ?? FLOW_WINDOW : 0,
    };
  }

  /** Turns the manager's answer into the router's, counting and logging refusals. */
  #result<T>(protocol: number, req: DialRequest, opened: Opened<T>): DialResult<T> {
    if (opened.ok) return opened;
    this.stats.dialFailures++;
    if (opened.code === DialResult_Code.NO_SESSION) this.#opts.onNoSession?.();
    const reason = dialFailure(opened.code);
    if (reason === "prohibited") this.#refused(protocol, req, opened.message);
    return { ok: false, reason, message: opened.message };
  }

  /** Opens a TCP flow: resolves once the manager has dialed. */
  async dialTcp(req: DialRequest): Promise<DialResult<ByteStream>> {
    const stats = this.stats;
    let stream: AppStream | undefined;
    const opened = await this.#call().openTcp(
      this.#openFrame(MuxProtocol.Tcp, req),
      (flow) => {
        stats.tcpOpen++;
        return stream = new AppStream(flow);
      },
      { onEnd: () => stats.tcpOpen-- },
    );
    const result = this.#result<ByteStream>(
      MuxProtocol.Tcp,
      req,
      opened.ok ? { ok: true, value: stream! } : opened,
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
  async dialUdp(
    req: DialRequest,
    deliver: (payload: Uint8Array) => void,
  ): Promise<DialResult<DatagramFlow>> {
    const stats = this.stats;
    let counted = false;
    let closed = false;
    const opened = await this.#call().openDatagrams(this.#openFrame(MuxProtocol.Udp, req), {
      deliver,
      close: () => {
        closed = true;
        if (counted) stats.udpOpen--;
        counted = false;
      },
    });
    // The flow may have ended already, in the batch that opened it.
    if (opened.ok && !closed) {
      stats.udpOpen++;
      counted = true;
    }
    return this.#result(MuxProtocol.Udp, req, opened);
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
  async resolveDns(query: Uint8Array, timeoutMs = 8000): Promise<Uint8Array> {
    try {
      return await this.#call().resolve(query, timeoutMs);
    } catch (error) {
      if (error instanceof MuxRefusal && error.code === DialResult_Code.NO_SESSION) {
        this.#opts.onNoSession?.();
      }
      throw error;
    }
  }

  /** Pings through the manager. */
  async ping(req: PingRequest): Promise<DialResult<void>> {
    const opened = await this.#call().openDatagrams(this.#openFrame(MuxProtocol.Icmp, req), {
      deliver: () => {},
      close: () => {},
    });
    return this.#result(MuxProtocol.Icmp, req, opened.ok ? { ok: true, value: undefined } : opened);
  }
}
