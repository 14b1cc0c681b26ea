/**
 * A TCP tunnel: dial the destination with a timeout, then pipe the byte stream
 * between the socket and the `Tunnel` call, with the half-close and reset
 * semantics of TCP and flow control both ways.
 *
 * The rules, as the client sees them:
 * - `data` from the client is written to the socket; socket reads go back as
 *   `data` messages of at most `MAX_CHUNK` bytes.
 * - `half_close` from the client (or the client ending its side of the call)
 *   shuts the socket's write side (FIN); the other direction goes on.
 * - The destination's FIN becomes `half_close` to the client.
 * - When both directions are closed the manager ends the call (status OK),
 *   without a `close` message.
 * - `close{reason}` from the client resets the socket (RST) when the reason is
 *   set, or closes it after the pending writes when it is empty; the manager
 *   ends the call without answering.
 * - A socket error (a reset from the destination) becomes `close{reason}`, then
 *   the call ends. The call cancelled by the client resets the socket; so does
 *   the session ending (the client gets `close{reason}`).
 *
 * Flow control: while `call.write()` reports a full buffer the socket is not
 * read (until `drain`); while the socket's write buffer is full the call is
 * paused, so HTTP/2's window pushes back on the client. Nothing buffers
 * without bound.
 *
 * @module
 */

import net from "node:net";
import {
  create,
  DialResult_Code,
  MAX_CHUNK,
  type TunnelMessage,
  TunnelMessageSchema,
} from "../mod/rpc/service.ts";
import type { Session } from "./sessions.ts";
import type { TunnelCall, TunnelContext } from "./tunnel.ts";

/** A failed dial, as its dial result. */
export interface DialFailure {
  /** `REFUSED`, `UNREACHABLE` or `TIMEOUT`. */
  code: DialResult_Code;
  /** What happened, e.g. `connect ECONNREFUSED 198.18.1.2:81`. */
  message: string;
}

const REFUSED = new Set(["ECONNREFUSED", "ECONNRESET"]);
const TIMED_OUT = new Set(["ETIMEDOUT"]);

/**
 * Maps a connect error's `code` to a dial result code: refused, timed out, or
 * (anything else: no route, host down, network down, …) unreachable.
 *
 * @param code The Node error code, e.g. `ECONNREFUSED`.
 * @returns The dial result code.
 */
export function dialErrorCode(code: string | undefined): DialResult_Code {
  if (code !== undefined && REFUSED.has(code)) return DialResult_Code.REFUSED;
  if (code !== undefined && TIMED_OUT.has(code)) return DialResult_Code.TIMEOUT;
  return DialResult_Code.UNREACHABLE;
}

/**
 * Connects to `host:port` within `timeoutMs`, half-open allowed and
 * `TCP_NODELAY` set.
 *
 * @param host The destination address.
 * @param port The destination port.
 * @param timeoutMs How long to wait for the connection.
 * @returns The connected socket, or why it failed.
 */
export function dialTcp(
  host: string,
  port: number,
  timeoutMs: number,
): Promise<{ socket: net.Socket } | DialFailure> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port, allowHalfOpen: true });
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({
        code: DialResult_Code.TIMEOUT,
        message: `no answer from ${
          host.includes(":") ? `[${host}]` : host
        }:${port} in ${timeoutMs} ms`,
      });
    }, timeoutMs);
    const onError = (error: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ code: dialErrorCode(error.code), message: error.message });
    };
    socket.once("error", onError);
    socket.once("connect", () => {
      clearTimeout(timer);
      socket.off("error", onError);
      socket.setNoDelay(true);
      resolve({ socket });
    });
  });
}

/**
 * Ends a destination socket a tunnel is done with.
 *
 * @param socket The socket.
 * @param how `reset`: a RST; `destroy`: close it now; `graceful`: after the
 *   pending writes; `none`: it is closed already.
 */
export function endSocket(
  socket: net.Socket,
  how: "none" | "destroy" | "reset" | "graceful",
): void {
  socket.on("error", () => {}); // Late errors of a socket we are done with.
  try {
    if (how === "reset") socket.resetAndDestroy();
    else if (how === "destroy") socket.destroy();
    else if (how === "graceful") socket.destroySoon();
  } catch {
    socket.destroy(); // resetAndDestroy() throws on a socket that is not connected.
  }
}

const HALF_CLOSE: TunnelMessage = create(TunnelMessageSchema, {
  kind: { case: "halfClose", value: {} },
});

/** Pipes one dialed socket and one `Tunnel` call. */
export class TcpPipe {
  #call: TunnelCall;
  #socket: net.Socket;
  #context: TunnelContext;
  #unregister: () => void;
  #done = false;
  #doneListeners: (() => void)[] = [];
  /** This tunnel's share of the manager's to-client buffer count. */
  #toClient = 0;
  /** This tunnel's share of the manager's to-destination buffer count. */
  #toDestination = 0;
  #clientHalfClosed = false;
  #callPaused = false;

  /**
   * Makes the pipe; nothing moves until {@linkcode TcpPipe.start}.
   *
   * @param call The call, paused, after the dial result.
   * @param socket The connected socket.
   * @param session The session the tunnel belongs to.
   * @param context Counters and settings.
   */
  constructor(call: TunnelCall, socket: net.Socket, session: Session, context: TunnelContext) {
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

  /** Starts moving bytes both ways. */
  start(): void {
    const call = this.#call;
    const socket = this.#socket;
    this.#context.stats.tcpTunnels++;
    socket.on("data", (chunk: Uint8Array) => this.#fromSocket(chunk));
    socket.on("end", () => {
      if (!this.#done) call.write(HALF_CLOSE);
    });
    socket.on("error", (error: NodeJS.ErrnoException) => this.#finish(error.message, "destroy"));
    // Both directions closed (FIN each way), or destroyed.
    socket.on("close", () => this.#finish("", "none"));
    socket.on("drain", () => {
      if (this.#callPaused && !this.#done) {
        this.#callPaused = false;
        call.resume();
      }
    });
    call.on("drain", () => {
      if (!this.#done) socket.resume();
    });
    call.on("data", (message: TunnelMessage) => this.#fromClient(message));
    // The client ended its side of the call: no more data from it, a FIN.
    call.on("end", () => this.#clientHalfClose());
    // The call is gone without a close: the connection is broken, as a reset says.
    call.on("cancelled", () => this.#finish(undefined, "reset"));
    call.resume();
  }

  /**
   * Ends the tunnel from the manager's side: the socket is destroyed, the
   * client gets `close{reason}`.
   *
   * @param reason Why, e.g. "the session expired".
   */
  abort(reason: string): void {
    this.#finish(reason, "reset");
  }

  #fromSocket(chunk: Uint8Array): void {
    if (this.#done) return;
    const stats = this.#context.stats;
    for (let offset = 0; offset < chunk.length; offset += MAX_CHUNK) {
      const part = chunk.subarray(offset, offset + MAX_CHUNK);
      const length = part.length;
      this.#toClient += length;
      stats.addBufferedToClient(length);
      const more = this.#call.write(
        create(TunnelMessageSchema, { kind: { case: "data", value: part } }),
        () => {
          if (this.#done) return; // Already uncounted.
          this.#toClient -= length;
          stats.addBufferedToClient(-length);
          stats.bytesToClient += length;
        },
      );
      if (!more) this.#socket.pause();
    }
  }

  #fromClient(message: TunnelMessage): void {
    if (this.#done) return;
    switch (message.kind.case) {
      case "data": {
        if (this.#clientHalfClosed) {
          this.#finish("data after half_close", "reset");
          return;
        }
        const bytes = message.kind.value;
        if (bytes.length === 0) return;
        const stats = this.#context.stats;
        const length = bytes.length;
        this.#toDestination += length;
        stats.addBufferedToDestination(length);
        const more = this.#socket.write(bytes, () => {
          if (this.#done) return;
          this.#toDestination -= length;
          stats.addBufferedToDestination(-length);
          stats.bytesToDestination += length;
        });
        if (!more && !this.#callPaused) {
          this.#callPaused = true;
          this.#call.pause();
        }
        return;
      }
      case "halfClose":
        this.#clientHalfClose();
        return;
      case "close":
        // The client ends the tunnel: a reset with a reason, else a graceful close.
        this.#finish(undefined, message.kind.value.reason ? "reset" : "graceful");
        return;
      default:
        this.#finish(`unexpected "${message.kind.case}" message in an open tunnel`, "reset");
    }
  }

  #clientHalfClose(): void {
    if (this.#done || this.#clientHalfClosed) return;
    this.#clientHalfClosed = true;
    this.#socket.end(); // A FIN after the pending writes; "close" follows once both sides are done.
  }

  /**
   * Ends the tunnel once.
   *
   * @param reason `undefined`: tell the client nothing (it ended the tunnel or is gone);
   *   `""`: end the call normally; else send `close{reason}` first.
   * @param socketEnd What to do with the socket.
   */
  #finish(reason: string | undefined, socketEnd: "none" | "destroy" | "reset" | "graceful"): void {
    if (this.#done) return;
    this.#done = true;
    this.#unregister();
    const stats = this.#context.stats;
    stats.tcpTunnels--;
    stats.addBufferedToClient(-this.#toClient);
    stats.addBufferedToDestination(-this.#toDestination);
    this.#toClient = this.#toDestination = 0;

    endSocket(this.#socket, socketEnd);

    const call = this.#call;
    if (!call.cancelled) {
      if (reason) {
        call.write(create(TunnelMessageSchema, { kind: { case: "close", value: { reason } } }));
      }
      // Pending messages are sent first; a paused call would not see the client's end.
      call.resume();
      call.end();
    }
    for (const listener of this.#doneListeners.splice(0)) listener();
  }
}
