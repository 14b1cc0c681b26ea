/**
 * One TCP flow of a `Mux` call, as either end runs it: the opener's (the
 * daemon dialing the cluster, the manager opening a reverse flow) and the
 * acceptor's (the manager dialing a pod, the daemon dialing a local port) are
 * one machine. It knows no socket: the local socket comes in through a
 * {@linkcode TcpSink} (what the peer sends goes there) and the calls its owner
 * makes ({@linkcode TcpFlow.push} and the rest: what the socket read).
 *
 * The rules (docs/protocol.md, "Mux"):
 *
 * - **Credit, both ways.** This end sends at most the window the peer gave,
 *   plus what the peer gave back with WINDOW frames; bytes the socket read
 *   past it wait here (one read at most: the owner stops reading until
 *   {@linkcode TcpSink.resume}). It gives credit back with WINDOW once the
 *   local socket has taken the bytes ({@linkcode TcpFlow.taken}), in steps of
 *   a quarter of its window. The call is never held up by one slow flow.
 * - **The peer is checked.** DATA past this end's credit, over
 *   {@linkcode MAX_CHUNK}, or after the peer's FIN; a WINDOW taking the
 *   credit past 2^48: the flow is reset with the reason (a
 *   {@linkcode FlowViolation} for the call to count).
 * - **Ends.** FIN each way is a half-close. The acceptor sends CLOSE with an
 *   empty reason once its socket has closed both ways, and the opener's flow
 *   is over when it hears it; CLOSE with an empty reason from the opener asks
 *   the acceptor to close its socket after what it was sent. CLOSE with a
 *   reason is a reset, either way.
 *
 * @module
 */

import { encodeClose, encodeWindow, FrameType } from "./mux.ts";
import { MAX_CHUNK } from "./service.ts";

/**
 * A frame that breaks the rules of its flow: the flow is reset with the
 * message, which says what the peer did as a verb phrase (`sent DATA after
 * its FIN`), for the call to put the peer's name before.
 */
export class FlowViolation extends Error {
  /** @param message what the peer did */
  constructor(message: string) {
    super(message);
    this.name = "FlowViolation";
  }
}

/** Where the flow's frames go, and what it tells the call about itself. */
export interface FlowLink {
  /** The flow's id. */
  readonly id: number;
  /** Queues a frame of this flow. */
  write(type: FrameType, payload?: Uint8Array): void;
  /** Whether the call holds more than it can send now (the flow should wait). */
  readonly blocked: boolean;
  /** Calls `go` once when the call can take more again. */
  whenUnblocked(go: () => void): void;
  /** The flow is over: forget it (it sends nothing more). */
  forget(): void;
}

/** The local socket of a flow, as the flow drives it. */
export interface TcpSink {
  /** Bytes from the peer for the socket; the owner calls {@linkcode TcpFlow.taken} once the socket took them. */
  write(bytes: Uint8Array): void;
  /** The peer sends no more: half-close the socket after what was written. */
  end(): void;
  /** The peer is done both ways (the acceptor's end): close the socket after what was written. */
  close(): void;
  /**
   * The flow is reset: drop what waits and end the socket at once.
   *
   * @param reason why
   * @param byPeer whether the peer reset it (its CLOSE), rather than this
   *   end (a violation, the call lost, the owner's abort)
   */
  reset(reason: string, byPeer: boolean): void;
  /** The flow may take more of what the socket reads: read again. */
  resume(): void;
}

/** Options of {@linkcode TcpFlow}. */
export interface TcpFlowOptions {
  /** Whether this end accepted the flow (dialed for the peer) rather than opened it. */
  acceptor: boolean;
  /** The window this end gave the peer. */
  window: number;
  /** The window the peer gave this end. */
  credit: number;
  /**
   * Called with the bytes the sink holds (positive when written to it,
   * negative when taken or dropped); a text returned resets the flow with
   * it (a limit of the owner's: the bytes are not counted).
   */
  hold?(bytes: number): string | undefined;
  /** Called once, when the flow is over, with the reason when it was reset. */
  onEnd?(reason: string | undefined): void;
}

/** A TCP flow's state: see the module documentation. */
export class TcpFlow {
  #link: FlowLink;
  #sink!: TcpSink;
  #options: TcpFlowOptions;
  /** What this end may still send. */
  #credit: number;
  /** What the peer may still send this end. */
  #allowed: number;
  /** Bytes the socket took since the last WINDOW. */
  #taken = 0;
  /** Bytes read past the credit, sent when the peer gives more. */
  #waiting: Uint8Array | null = null;
  /** This end read the socket's end: a FIN goes after `#waiting`. */
  #endAfterWaiting = false;
  #sentFin = false;
  #peerFin = false;
  /** Bytes written to the sink and not yet taken. */
  #held = 0;
  #over = false;

  /**
   * Makes the flow; {@linkcode TcpFlow.attach} gives it its socket.
   *
   * @param link the call's side of the flow
   * @param options who opened it, the windows, the owner's hooks
   */
  constructor(link: FlowLink, options: TcpFlowOptions) {
    this.#link = link;
    this.#options = options;
    this.#credit = options.credit;
    this.#allowed = options.window;
  }

  /**
   * Joins the local socket.
   *
   * @param sink the socket's side
   * @returns this flow
   */
  attach(sink: TcpSink): this {
    this.#sink = sink;
    return this;
  }

  /** Whether the flow is over (reset, or both ways ended and forgotten). */
  get over(): boolean {
    return this.#over;
  }

  // --- what the socket read --------------------------------------------------

  /**
   * Sends bytes the socket read, within the credit; what does not fit waits.
   *
   * @param chunk the bytes
   * @returns whether the socket may be read again now; when false the flow
   *   calls {@linkcode TcpSink.resume} once it may
   */
  push(chunk: Uint8Array): boolean {
    if (this.#over || this.#sentFin) return false;
    const link = this.#link;
    let offset = 0;
    while (offset < chunk.length && this.#credit > 0 && !link.blocked) {
      const part = chunk.subarray(offset, offset + Math.min(MAX_CHUNK, this.#credit));
      this.#credit -= part.length;
      offset += part.length;
      link.write(FrameType.Data, part);
    }
    if (offset < chunk.length) {
      this.#waiting = chunk.subarray(offset);
      this.#waitForRoom();
      return false;
    }
    if (this.#credit <= 0 || link.blocked) {
      this.#waitForRoom();
      return false;
    }
    return true;
  }

  /** The socket's sending side ended (its FIN): the peer hears FIN after what waits. */
  end(): void {
    if (this.#over || this.#sentFin) return;
    if (this.#waiting !== null) {
      this.#endAfterWaiting = true;
      return;
    }
    this.#sentFin = true;
    this.#link.write(FrameType.Fin);
    this.#maybeOver();
  }

  /**
   * The socket failed, or its owner gives up on it: the peer hears CLOSE with
   * the reason, and the sink is reset.
   *
   * @param reason why
   */
  abort(reason: string): void {
    if (this.#over) return;
    this.#link.write(FrameType.Close, encodeClose(reason || "reset"));
    this.#finish(reason || "reset", false);
  }

  /**
   * The socket has closed both ways. The acceptor then tells the peer the
   * flow is over (CLOSE with an empty reason).
   */
  closed(): void {
    if (this.#over) return;
    if (this.#options.acceptor) this.#link.write(FrameType.Close, encodeClose(""));
    this.#over = true;
    this.#release();
    this.#link.forget();
    this.#options.onEnd?.(undefined);
  }

  /**
   * The socket took bytes the peer sent: give them back as credit.
   *
   * @param n how many
   */
  taken(n: number): void {
    if (this.#over) return;
    this.#held -= n;
    this.#options.hold?.(-n);
    this.#taken += n;
    if (this.#taken >= this.#options.window / 4) {
      this.#allowed += this.#taken;
      this.#link.write(FrameType.Window, encodeWindow(this.#taken));
      this.#taken = 0;
    }
    this.#maybeOver();
  }

  // --- what the peer sent ----------------------------------------------------

  /**
   * A DATA frame.
   *
   * @param bytes its payload
   * @throws {FlowViolation} when the peer broke the flow's rules
   */
  data(bytes: Uint8Array): void {
    if (this.#over || bytes.length === 0) return;
    const n = bytes.length;
    if (this.#peerFin) throw new FlowViolation("sent DATA after its FIN");
    if (n > MAX_CHUNK) {
      throw new FlowViolation(`sent a DATA frame of ${n} bytes, over ${MAX_CHUNK}`);
    }
    if (n > this.#allowed) {
      throw new FlowViolation(
        `sent ${n} bytes with ${this.#allowed} left of its window: past its credit`,
      );
    }
    const over = this.#options.hold?.(n);
    if (over !== undefined) return this.abort(over);
    this.#allowed -= n;
    this.#held += n;
    this.#sink.write(bytes);
  }

  /** A FIN frame: the peer sends no more. */
  fin(): void {
    if (this.#over || this.#peerFin) return;
    this.#peerFin = true;
    this.#sink.end();
    this.#maybeOver();
  }

  /**
   * A WINDOW frame: more credit.
   *
   * @param increment the bytes the peer took
   * @throws {FlowViolation} when it takes the credit past 2^48
   */
  window(increment: number): void {
    if (this.#over) return;
    if (this.#credit + increment > 2 ** 48) {
      throw new FlowViolation(`gave a WINDOW of ${increment} bytes, past 2^48 of credit`);
    }
    this.#credit += increment;
    this.#room();
  }

  /**
   * A CLOSE frame, or the call gone.
   *
   * @param reason empty for a graceful end, else why the flow is reset
   * @param byPeer false when this end resets the flow (the call is gone, the
   *   peer broke the flow's rules)
   */
  close(reason: string, byPeer = true): void {
    if (this.#over) return;
    if (reason !== "") return this.#finish(reason, byPeer);
    // The opener hears the acceptor is done both ways; the acceptor is asked
    // to close after what it was sent.
    this.#over = true;
    this.#link.forget();
    this.#sink.close();
    this.#release();
    this.#options.onEnd?.(undefined);
  }

  // ---------------------------------------------------------------------------

  /** Waits for credit and for the call, then sends what waits and lets the socket be read. */
  #waitForRoom(): void {
    if (this.#link.blocked) this.#link.whenUnblocked(() => this.#room());
  }

  #room(): void {
    if (this.#over || this.#credit <= 0) return;
    if (this.#link.blocked) return this.#link.whenUnblocked(() => this.#room());
    const waiting = this.#waiting;
    if (waiting !== null) {
      this.#waiting = null;
      if (!this.push(waiting)) return;
      if (this.#endAfterWaiting) return this.end();
    }
    this.#sink.resume();
  }

  /** Both ways ended with every byte taken: the opener forgets the flow (the acceptor waits for its socket). */
  #maybeOver(): void {
    if (this.#options.acceptor || this.#over) return;
    if (this.#sentFin && this.#peerFin && this.#held === 0) {
      this.#over = true;
      this.#link.forget();
      this.#options.onEnd?.(undefined);
    }
  }

  #finish(reason: string, byPeer: boolean): void {
    this.#over = true;
    this.#waiting = null;
    this.#link.forget();
    this.#release();
    this.#sink.reset(reason, byPeer);
    this.#options.onEnd?.(reason);
  }

  /** What the sink still held is no longer this flow's to count. */
  #release(): void {
    if (this.#held !== 0) this.#options.hold?.(-this.#held);
    this.#held = 0;
  }
}
