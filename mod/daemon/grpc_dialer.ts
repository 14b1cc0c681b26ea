/**
 * The router's {@linkcode Dialer} over the manager's `Tunnel` call: every TCP
 * connection, UDP flow and ping becomes one bidirectional gRPC stream.
 *
 * Flow control is HTTP/2's: the app-to-cluster direction awaits `drain` when
 * grpc-js's buffer is full, and the cluster-to-app direction pauses the call
 * while the app reads slowly, so no buffer on the path grows without bound.
 *
 * @module
 */

import type { ClientDuplexStream } from "@grpc/grpc-js";
import { parseAddress } from "../net/address.ts";
import type {
  ByteStream,
  DatagramFlow,
  Dialer,
  DialFailure,
  DialRequest,
  DialResult,
  Endpoint,
  PingRequest,
} from "../net/dialer.ts";
import {
  create,
  DialResult_Code,
  type Endpoint as PbEndpoint,
  EndpointSchema,
  Protocol,
  type TunnelMessage,
  TunnelMessageSchema,
} from "../rpc/service.ts";

type TunnelCall = ClientDuplexStream<TunnelMessage, TunnelMessage>;

/** What the dialer needs of the gRPC client. */
export interface TunnelClient {
  /** Opens a Tunnel call. */
  tunnel(): TunnelCall;
}

/** Options of {@linkcode GrpcDialer}. */
export interface GrpcDialerOptions {
  /** The session the tunnels belong to. */
  sessionId: () => string;
  /** Dial timeout asked of the manager, in ms (default: the manager's). */
  dialTimeoutMs?: number;
  /** Log sink. */
  log?: (level: "debug" | "info" | "warn", message: string) => void;
  /** Called when a dial says the session is gone (the session should arrive again). */
  onNoSession?: () => void;
}

/** Tunnel counters. */
export interface TunnelStats {
  tcpOpen: number;
  udpOpen: number;
  bytesToCluster: number;
  bytesFromCluster: number;
  dialFailures: number;
}

function endpoint(e: Endpoint): PbEndpoint {
  return create(EndpointSchema, { ip: parseAddress(e.address) ?? new Uint8Array(4), port: e.port });
}

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

const HALF_CLOSE: TunnelMessage = create(TunnelMessageSchema, {
  kind: { case: "halfClose", value: {} },
});

function closeMessage(reason: string): TunnelMessage {
  return create(TunnelMessageSchema, { kind: { case: "close", value: { reason } } });
}

function dataMessage(chunk: Uint8Array): TunnelMessage {
  return create(TunnelMessageSchema, { kind: { case: "data", value: chunk } });
}

/** Dials through the traffic-manager. */
export class GrpcDialer implements Dialer {
  #client: TunnelClient;
  #opts: GrpcDialerOptions;
  readonly stats: TunnelStats = {
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
  constructor(client: TunnelClient, options: GrpcDialerOptions) {
    this.#client = client;
    this.#opts = options;
  }

  /** Opens a call, sends Open, and waits for the one DialResult. */
  #open(
    protocol: Protocol,
    req: DialRequest,
  ): Promise<{ call: TunnelCall; result: DialResult<void> }> {
    const call = this.#client.tunnel();
    // grpc-js emits "error" on every call that ends badly, cancelled ones too;
    // an unheard "error" would end the process.
    call.on("error", () => {});
    return new Promise((resolve) => {
      let settled = false;
      const settle = (result: DialResult<void>) => {
        if (settled) return;
        settled = true;
        call.off("data", onFirst);
        call.off("error", onError);
        call.off("end", onEnd);
        if (!result.ok) {
          this.stats.dialFailures++;
          call.cancel();
        }
        resolve({ call, result });
      };
      const onFirst = (m: TunnelMessage) => {
        if (m.kind.case !== "dialResult") {
          return settle({
            ok: false,
            reason: "unreachable",
            message: "the manager broke the protocol",
          });
        }
        const { code, message } = m.kind.value;
        if (code === DialResult_Code.OK) return settle({ ok: true, value: undefined });
        if (code === DialResult_Code.NO_SESSION) this.#opts.onNoSession?.();
        settle({ ok: false, reason: dialFailure(code), message });
      };
      const onError = (e: Error) =>
        settle({ ok: false, reason: "unreachable", message: e.message });
      const onEnd = () => settle({ ok: false, reason: "unreachable", message: "the tunnel ended" });
      call.on("data", onFirst);
      call.on("error", onError);
      call.on("end", onEnd);
      call.write(create(TunnelMessageSchema, {
        kind: {
          case: "open",
          value: {
            sessionId: this.#opts.sessionId(),
            protocol,
            source: endpoint(req.source),
            destination: endpoint(req.destination),
            dialTimeoutMs: this.#opts.dialTimeoutMs ?? 0,
          },
        },
      }));
    });
  }

  /** Opens a TCP tunnel: resolves once the manager has dialed. */
  async dialTcp(req: DialRequest): Promise<DialResult<ByteStream>> {
    const { call, result } = await this.#open(Protocol.TCP, req);
    if (!result.ok) {
      this.#opts.log?.(
        "debug",
        `tunnel: tcp ${req.destination.address}:${req.destination.port}: ${result.reason} ${
          result.message ?? ""
        }`,
      );
      return result;
    }
    this.stats.tcpOpen++;
    let counted = true;
    const done = () => {
      if (counted) this.stats.tcpOpen--;
      counted = false;
    };
    return { ok: true, value: this.#byteStream(call, done) };
  }

  #byteStream(call: TunnelCall, done: () => void): ByteStream {
    const stats = this.stats;
    let ended = false, finished = false;
    const finish = () => {
      if (finished) return;
      finished = true;
      done();
    };
    const readable = new ReadableStream<Uint8Array>({
      start(controller) {
        call.on("data", (m: TunnelMessage) => {
          if (ended) return;
          switch (m.kind.case) {
            case "data":
              stats.bytesFromCluster += m.kind.value.length;
              controller.enqueue(m.kind.value);
              // Backpressure: stop reading the call while the app is behind.
              if ((controller.desiredSize ?? 1) <= 0) call.pause();
              break;
            case "halfClose":
              ended = true;
              controller.close();
              break;
            case "close":
              ended = true;
              if (m.kind.value.reason) {
                controller.error(
                  new Error(`Connection reset by the cluster: ${m.kind.value.reason}`),
                );
              } else controller.close();
              break;
          }
        });
        call.on("error", (e: Error) => {
          if (!ended) {
            ended = true;
            controller.error(e);
          }
          finish();
        });
        call.on("end", () => {
          if (!ended) {
            ended = true;
            controller.close();
          }
          finish();
        });
      },
      pull() {
        if (call.isPaused()) call.resume();
      },
      cancel() {
        ended = true;
        call.cancel();
        finish();
      },
    }, { highWaterMark: 4 });
    const writable = new WritableStream<Uint8Array>({
      async write(chunk) {
        stats.bytesToCluster += chunk.length;
        if (!call.write(dataMessage(chunk))) {
          await new Promise<void>((resolve) => {
            const go = () => {
              call.off("drain", go);
              call.off("close", go);
              resolve();
            };
            call.on("drain", go);
            call.on("close", go);
          });
        }
      },
      close() {
        call.write(HALF_CLOSE);
        call.end();
      },
      abort(reason) {
        try {
          call.write(closeMessage(String(reason ?? "aborted")));
          call.end();
        } catch {
          // the call is already gone
        }
        call.cancel();
      },
    });
    return { readable, writable };
  }

  /** Opens a UDP tunnel; each data message is one datagram. */
  async dialUdp(
    req: DialRequest,
    deliver: (payload: Uint8Array) => void,
  ): Promise<DialResult<DatagramFlow>> {
    const { call, result } = await this.#open(Protocol.UDP, req);
    if (!result.ok) return result;
    const stats = this.stats;
    stats.udpOpen++;
    let closed = false;
    const end = () => {
      if (closed) return;
      closed = true;
      stats.udpOpen--;
      call.cancel();
    };
    call.on("data", (m: TunnelMessage) => {
      if (m.kind.case === "data") {
        stats.bytesFromCluster += m.kind.value.length;
        deliver(m.kind.value);
      } else if (m.kind.case === "close") end();
    });
    call.on("error", end);
    call.on("end", end);
    return {
      ok: true,
      value: {
        send(payload) {
          if (closed) return;
          // UDP semantics: drop rather than queue without bound.
          if (call.writableLength > 1024 * 1024) return;
          stats.bytesToCluster += payload.length;
          call.write(dataMessage(payload));
        },
        close() {
          if (closed) return;
          try {
            call.write(closeMessage(""));
            call.end();
          } catch {
            // gone
          }
          end();
        },
      },
    };
  }

  /** Pings through the manager. */
  async ping(req: PingRequest): Promise<DialResult<void>> {
    const { call, result } = await this.#open(Protocol.ICMP, req);
    if (result.ok) call.cancel();
    return result;
  }
}
