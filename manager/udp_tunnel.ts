/**
 * A UDP tunnel: one connected UDP socket per flow; each `data` message is one
 * datagram, both ways. The tunnel ends after an idle time without a datagram
 * either way, or when the client sends `close` or ends the call.
 *
 * UDP may lose datagrams, so where TCP pushes back this drops: a datagram
 * arriving while the call holds more than {@linkcode UDP_BUFFER_LIMIT} bytes
 * unsent, or while that many bytes wait to be sent on the socket, is dropped
 * and counted.
 *
 * @module
 */

import dgram from "node:dgram";
import {
  create,
  DialResult_Code,
  type TunnelMessage,
  TunnelMessageSchema,
} from "../mod/rpc/service.ts";
import type { Session } from "./sessions.ts";
import type { DialFailure } from "./tcp_tunnel.ts";
import type { TunnelCall, TunnelContext } from "./tunnel.ts";

/** The most bytes a UDP tunnel holds in either direction before it drops datagrams. */
export const UDP_BUFFER_LIMIT = 1024 * 1024;

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

/** Pipes one connected UDP socket and one `Tunnel` call. */
export class UdpPipe {
  #call: TunnelCall;
  #socket: dgram.Socket;
  #context: TunnelContext;
  #unregister: () => void;
  #done = false;
  #doneListeners: (() => void)[] = [];
  #toClient = 0;
  #toDestination = 0;
  #lastActivity = performance.now();
  #idleTimer: ReturnType<typeof setTimeout> | undefined;

  /**
   * Makes the pipe; nothing moves until {@linkcode UdpPipe.start}.
   *
   * @param call The call, paused, after the dial result.
   * @param socket The connected socket.
   * @param session The session the tunnel belongs to.
   * @param context Counters and settings.
   */
  constructor(call: TunnelCall, socket: dgram.Socket, session: Session, context: TunnelContext) {
    this.#call = call;
    this.#socket = socket;
    this.#context = context;
    this.#unregister = session.onEnd((_end, reason) => this.abort(reason));
  }

  /**
   * Calls `listener` once when the tunnel is done.
   *
   * @param listener What to call.
   */
  onDone(listener: () => void): void {
    if (this.#done) listener();
    else this.#doneListeners.push(listener);
  }

  /** Starts moving datagrams both ways. */
  start(): void {
    this.#context.stats.udpTunnels++;
    this.#socket.on("message", (datagram: Uint8Array) => this.#fromSocket(datagram));
    // ICMP errors for earlier datagrams (port unreachable) surface here: UDP
    // is lossy, the flow goes on.
    this.#socket.on("error", () => {});
    this.#call.on("data", (message: TunnelMessage) => this.#fromClient(message));
    this.#call.on("end", () => this.#finish(undefined));
    this.#call.on("cancelled", () => this.#finish(undefined));
    this.#armIdle(this.#context.udpIdleTimeoutMs);
    this.#call.resume();
  }

  /**
   * Ends the tunnel from the manager's side with `close{reason}`.
   *
   * @param reason Why, e.g. "the session expired".
   */
  abort(reason: string): void {
    this.#finish(reason);
  }

  #armIdle(ms: number): void {
    this.#idleTimer = setTimeout(() => {
      const idle = performance.now() - this.#lastActivity;
      const left = this.#context.udpIdleTimeoutMs - idle;
      if (left > 0) this.#armIdle(left);
      else this.#finish(`idle for ${Math.round(idle / 1000)} s`);
    }, ms);
  }

  #fromSocket(datagram: Uint8Array): void {
    if (this.#done) return;
    this.#lastActivity = performance.now();
    const stats = this.#context.stats;
    if (this.#toClient + datagram.length > UDP_BUFFER_LIMIT) {
      stats.datagramsDropped++;
      return;
    }
    const length = datagram.length;
    this.#toClient += length;
    stats.addBufferedToClient(length);
    this.#call.write(
      create(TunnelMessageSchema, { kind: { case: "data", value: datagram } }),
      () => {
        if (this.#done) return;
        this.#toClient -= length;
        stats.addBufferedToClient(-length);
        stats.bytesToClient += length;
      },
    );
  }

  #fromClient(message: TunnelMessage): void {
    if (this.#done) return;
    const stats = this.#context.stats;
    switch (message.kind.case) {
      case "data": {
        this.#lastActivity = performance.now();
        const datagram = message.kind.value;
        if (this.#toDestination + datagram.length > UDP_BUFFER_LIMIT) {
          stats.datagramsDropped++;
          return;
        }
        const length = datagram.length;
        this.#toDestination += length;
        stats.addBufferedToDestination(length);
        this.#socket.send(datagram, (error) => {
          if (this.#done) return;
          this.#toDestination -= length;
          stats.addBufferedToDestination(-length);
          if (error) stats.datagramsDropped++;
          else stats.bytesToDestination += length;
        });
        return;
      }
      case "halfClose":
        return; // No meaning for UDP: replies may still come.
      case "close":
        this.#finish(undefined);
        return;
      default:
        this.#finish(`unexpected "${message.kind.case}" message in an open tunnel`);
    }
  }

  #finish(reason: string | undefined): void {
    if (this.#done) return;
    this.#done = true;
    clearTimeout(this.#idleTimer);
    this.#unregister();
    const stats = this.#context.stats;
    stats.udpTunnels--;
    stats.addBufferedToClient(-this.#toClient);
    stats.addBufferedToDestination(-this.#toDestination);
    this.#toClient = this.#toDestination = 0;
    try {
      this.#socket.close();
    } catch {
      // Already closed.
    }
    const call = this.#call;
    if (!call.cancelled) {
      if (reason) {
        call.write(create(TunnelMessageSchema, { kind: { case: "close", value: { reason } } }));
      }
      call.resume();
      call.end();
    }
    for (const listener of this.#doneListeners.splice(0)) listener();
  }
}
