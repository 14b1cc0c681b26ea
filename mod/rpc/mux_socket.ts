/**
 * Joining a mux TCP flow (`mux_tcp.ts`) to a local socket: what the daemon
 * does with the app's connections and with the local port of an intercept,
 * and the agent with the cluster's connections to an intercepted port. The
 * flow's credit is the socket's backpressure both ways: bytes from the peer
 * are given back as credit once the socket took them, and the socket is not
 * read while the flow has no room.
 *
 * @module
 */

import type { ByteStream, PipeResult, Socket } from "../net/dialer.ts";
import { closeQuietly, SocketReader, writeAll } from "../net/pipe.ts";
import type { TcpFlow, TcpSink } from "./mux_tcp.ts";

/**
 * A TCP flow's local side as a socket's: the flow's sink, and a
 * {@linkcode ByteStream}. {@linkcode AppStream.joinSocket} joins it to a
 * socket (the router's accepted one, the agent's intercepted connection, the
 * daemon's dial of a local port), moving bytes between the socket and the
 * flow directly; `readable` and `writable` (made only when asked for) serve
 * other users, the tests among them.
 */
export class AppStream implements ByteStream, TcpSink {
  #flow: TcpFlow;
  /** Bytes from the manager not yet handed to the app. */
  #queue: Uint8Array[] = [];
  /** The manager sends no more (FIN, or done both ways). */
  #peerEnded = false;
  /** The flow was reset: what the app's side hears. */
  #error: Error | null = null;
  /** The reader of the app's side waits for the flow to take more. */
  #resume: (() => void) | null = null;
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

  /** @param flow the flow, made by `MuxEnd` */
  constructor(flow: TcpFlow) {
    this.#flow = flow;
  }

  /**
   * The bytes moved so far while joined to a socket: `aToB` from the socket
   * to the flow, `bToA` from the flow to the socket (live, for `vif
   * connections`; zero when not joined).
   */
  get transferred(): Readonly<PipeResult> {
    return this.#joined;
  }

  // --- the flow's side (TcpSink) ---------------------------------------------

  write(bytes: Uint8Array): void {
    if (this.#error) return;
    if (this.#socket) {
      this.#queue.push(bytes);
      if (!this.#writing) this.#drainDown(this.#socket);
    } else if (this.#wanted && this.#controller) {
      // A read is waiting: hand the chunk over now.
      this.#wanted = false;
      this.#controller.enqueue(bytes);
      this.#flow.taken(bytes.length);
    } else this.#queue.push(bytes);
  }

  end(): void {
    if (this.#peerEnded) return;
    this.#peerEnded = true;
    if (this.#queue.length > 0 || this.#writing) return; // after the queued data
    if (this.#socket) this.#endDown(this.#socket);
    else if (this.#controller && this.#wanted) this.#endReadable();
  }

  close(): void {
    // The manager's socket closed both ways: the app reads to the end; what
    // it sends from now on has nowhere to go.
    this.end();
    this.#wake();
  }

  reset(reason: string, byPeer: boolean): void {
    if (this.#error) return;
    this.#error = new Error(`Connection reset${byPeer ? " by the cluster" : ""}: ${reason}`);
    this.#peerEnded = true;
    this.#queue.length = 0;
    try {
      this.#controller?.error(this.#error);
    } catch {
      // already closed
    }
    const socket = this.#socket;
    if (socket) {
      this.#joined.error ??= this.#error;
      closeQuietly(socket);
      // A write under way fails and ends the direction; else it ends now.
      if (!this.#writing) this.#downEnded = true;
      this.#maybeJoined();
    }
    this.#wake();
  }

  resume(): void {
    this.#wake();
  }

  #wake(): void {
    const go = this.#resume;
    this.#resume = null;
    go?.();
  }

  /** Waits until the flow takes more of what the app sends, or is over. */
  #room(): Promise<void> {
    if (this.#flow.over) return Promise.resolve();
    return new Promise((resolve) => this.#resume = resolve);
  }

  /**
   * Hands bytes the app sent to the flow, waiting while it has no room.
   *
   * @throws {Error} when the flow was reset, or is over
   */
  async #send(chunk: Uint8Array): Promise<void> {
    if (this.#error) throw this.#error;
    if (this.#flow.over) throw new Error("Connection closed by the cluster");
    if (!this.#flow.push(chunk)) await this.#room();
    if (this.#error) throw this.#error;
  }

  // --- as web streams --------------------------------------------------------

  get readable(): ReadableStream<Uint8Array> {
    return this.#readable ??= new ReadableStream<Uint8Array>({
      start: (controller) => {
        this.#controller = controller;
        if (this.#error) controller.error(this.#error);
      },
      pull: (controller) => {
        const chunk = this.#queue.shift();
        if (chunk !== undefined) {
          controller.enqueue(chunk);
          this.#flow.taken(chunk.length);
        } else if (this.#peerEnded) this.#endReadable();
        else this.#wanted = true;
      },
      cancel: () => this.#flow.abort("the app closed the connection"),
    }, { highWaterMark: 0 });
  }

  get writable(): WritableStream<Uint8Array> {
    return this.#writable ??= new WritableStream<Uint8Array>({
      write: (chunk) => this.#send(chunk),
      close: () => {
        if (this.#error) throw this.#error;
        this.#flow.end();
      },
      abort: (reason) => this.#flow.abort(String(reason ?? "aborted")),
    });
  }

  #endReadable(): void {
    this.#wanted = false;
    try {
      this.#controller?.close();
    } catch {
      // already closed or errored
    }
  }

  // --- joined to a socket ----------------------------------------------------

  joinSocket(socket: Socket): Promise<PipeResult> {
    if (this.#socket || this.#readable || this.#writable) {
      throw new Error("Cannot join the flow to a socket: it is in use");
    }
    this.#socket = socket;
    const done = new Promise<PipeResult>((resolve) => this.#joinDone = resolve);
    if (this.#error) {
      // Reset before the accept: the app gets the reset at once.
      this.#joined.error = this.#error;
      closeQuietly(socket);
      this.#upEnded = this.#downEnded = true;
    } else {
      this.#pumpUp(socket);
      if (this.#queue.length > 0) this.#drainDown(socket);
      else if (this.#peerEnded) this.#endDown(socket);
    }
    this.#maybeJoined();
    return done;
  }

  /** App → cluster: socket reads go to the flow, the socket's FIN a FIN. */
  async #pumpUp(socket: Socket): Promise<void> {
    const reader = new SocketReader(socket);
    const flow = this.#flow;
    try {
      for (;;) {
        const chunk = await reader.read();
        if (chunk === null) break;
        if (this.#error) break;
        if (flow.over) {
          // The manager closed both ways: bytes to a closed connection reset it.
          closeQuietly(socket);
          break;
        }
        this.#joined.aToB += chunk.length;
        if (!flow.push(chunk)) await this.#room();
      }
      if (!this.#error) flow.end();
    } catch (error) {
      this.#joined.error ??= error;
      flow.abort(`the app's connection failed: ${(error as Error)?.message ?? error}`);
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
        this.#flow.taken(chunk.length);
      }
    } catch (error) {
      this.#writing = false;
      this.#joined.error ??= error;
      this.#flow.abort(`cannot write to the app: ${(error as Error)?.message ?? error}`);
      this.#downEnded = true;
      this.#maybeJoined();
      return;
    }
    this.#writing = false;
    if (this.#error) {
      this.#downEnded = true;
      this.#maybeJoined();
    } else if (this.#peerEnded) this.#endDown(socket);
  }

  /** The manager's FIN after the last byte: half-close the socket. */
  #endDown(socket: Socket): void {
    if (this.#downEnded) return;
    this.#downEnded = true;
    socket.closeWrite().catch(() => {}).finally(() => this.#maybeJoined());
  }

  #maybeJoined(): void {
    if (!this.#upEnded || !this.#downEnded || !this.#joinDone) return;
    const done = this.#joinDone;
    this.#joinDone = null;
    done(this.#joined);
  }
}
