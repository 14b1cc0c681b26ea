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
  UDP_BUFFER_LIMIT,
} from "../mod/rpc/service.ts";
import type { Session } from "./sessions.ts";
import type { ManagerStats } from "./stats.ts";
import type { DialFailure } from "./tcp_tunnel.ts";
import type { TunnelCall, TunnelContext } from "./tunnel.ts";

export { UDP_BUFFER_LIMIT };

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

/**
 * Ends a UDP flow after a time without a datagram either way: the timer is
 * re-armed for what is left of the idle time, not reset per datagram.
 */
export class IdleTimer {
  #idleMs: number;
  #onIdle: (reason: string) => void;
  #last = performance.now();
  #timer: ReturnType<typeof setTimeout> | undefined;

  /**
   * @param idleMs The idle time, in ms.
   * @param onIdle Called once with the reason (`idle for N s`).
   */
  constructor(idleMs: number, onIdle: (reason: string) => void) {
    this.#idleMs = idleMs;
    this.#onIdle = onIdle;
    this.#arm(idleMs);
  }

  /** A datagram went one way or the other. */
  touch(): void {
    this.#last = performance.now();
  }

  /** The flow ended otherwise. */
  stop(): void {
    clearTimeout(this.#timer);
  }

  #arm(ms: number): void {
    this.#timer = setTimeout(() => {
      const idle = performance.now() - this.#last;
      const left = this.#idleMs - idle;
      if (left > 0) this.#arm(left);
      else this.#onIdle(`idle for ${Math.round(idle / 1000)} s`);
    }, ms);
  }
}

/**
 * Sends datagrams on a connected socket, dropping (and counting) one that
 * arrives while {@linkcode UDP_BUFFER_LIMIT} bytes wait to be sent.
 */
export class DatagramSender {
  #socket: dgram.Socket;
  #stats: ManagerStats;
  #pending = 0;
  #done = false;

  /**
   * @param socket The connected socket.
   * @param stats The manager's counters.
   */
  constructor(socket: dgram.Socket, stats: ManagerStats) {
    this.#socket = socket;
    this.#stats = stats;
  }

  /**
   * Sends one datagram, or drops it when too much waits.
   *
   * @param datagram The payload.
   */
  send(datagram: Uint8Array): void {
    const stats = this.#stats;
    if (this.#done) return;
    if (this.#pending + datagram.length > UDP_BUFFER_LIMIT) {
      stats.datagramsDropped++;
      return;
    }
    const length = datagram.length;
    this.#pending += length;
    stats.addBufferedToDestination(length);
    this.#socket.send(datagram, (error) => {
      if (this.#done) return;
      this.#pending -= length;
      stats.addBufferedToDestination(-length);
      if (error) stats.datagramsDropped++;
      else stats.bytesToDestination += length;
    });
  }

  /** No more sends: what still waits is no longer counted as buffered. */
  close(): void {
    if (this.#done) return;
    this.#done = true;
    this.#stats.addBufferedToDestination(-this.#pending);
    this.#pending = 0;
  }
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
  #sender: DatagramSender;
  #idle: IdleTimer | undefined;

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
    this.#sender = new DatagramSender(socket, context.stats);
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
    this.#idle = new IdleTimer(this.#context.udpIdleTimeoutMs, (reason) => this.#finish(reason));
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

  #fromSocket(datagram: Uint8Array): void {
    if (this.#done) return;
    this.#idle?.touch();
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
    switch (message.kind.case) {
      case "data":
        this.#idle?.touch();
        this.#sender.send(message.kind.value);
        return;
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
    this.#idle?.stop();
    this.#unregister();
    const stats = this.#context.stats;
    stats.udpTunnels--;
    stats.addBufferedToClient(-this.#toClient);
    this.#toClient = 0;
    this.#sender.close();
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
