/**
 * Joining two mux TCP flows end to end, on two calls: what the manager does
 * with an intercepted connection (the agent's flow, the holding session's
 * reverse flow) and with an sftp stream (the session's flow, the agent's).
 * Each flow is the other's socket: bytes one peer sends are pushed into the
 * other flow, and given back to the sender as credit only once the other
 * flow has sent them on, so the credit of each hop bounds what the joint
 * holds (one window per direction), and a slow far end slows the near one.
 * FIN is passed on after the bytes before it; a reset of either flow resets
 * the other with the reason.
 *
 * @module
 */

import type { TcpFlow, TcpSink } from "./mux_tcp.ts";

/** One flow's side of a splice: the sink of its flow, pushing into the other. */
class Side implements TcpSink {
  flow: TcpFlow | undefined;
  other!: Side;
  /** What this flow's peer sent, not yet pushed into the other flow. */
  #queue: Uint8Array[] = [];
  /** The other flow took part of a chunk and holds the rest: this many bytes wait for its room. */
  #waiting = 0;
  /** This flow's peer sent FIN (or closed both ways). */
  #ended = false;
  /** Everything this flow's peer sent, FIN included, went out on the other flow. */
  #through = false;
  /** A reset went through the splice. */
  #reset = false;
  /** Why, for a flow that attaches after it. */
  #resetReason = "";

  /**
   * The flow has come: what waited for it goes on. When the other flow was
   * reset before this one came, this one is reset too, once the end that
   * attaches it has given it its sink.
   *
   * @param flow the flow this side is the sink of
   */
  attach(flow: TcpFlow): void {
    this.flow = flow;
    if (this.#reset) {
      const reason = this.#resetReason;
      queueMicrotask(() => flow.abort(reason));
      return;
    }
    this.pump();
    this.other.pump();
  }

  write(bytes: Uint8Array): void {
    if (this.#reset) return;
    this.#queue.push(bytes);
    this.pump();
  }

  end(): void {
    this.#ended = true;
    this.pump();
  }

  close(): void {
    // The peer is done both ways (an acceptor's CLOSE ""): its FIN, and what
    // the other side still has for it has nowhere to go, as TCP after a close.
    this.#ended = true;
    this.other.#drop();
    this.pump();
  }

  reset(reason: string): void {
    if (this.#reset) return;
    this.#reset = this.other.#reset = true;
    this.#resetReason = this.other.#resetReason = reason;
    this.#queue.length = 0;
    this.other.#queue.length = 0;
    this.other.flow?.abort(reason);
  }

  resume(): void {
    // This flow sent what it held of the other side's bytes: they are through.
    this.other.#unblock();
  }

  #unblock(): void {
    if (this.#waiting === 0) return;
    const n = this.#waiting;
    this.#waiting = 0;
    this.flow?.taken(n);
    this.pump();
  }

  /** The other flow's peer closed both ways: what this side holds for it is dropped. */
  #drop(): void {
    this.#queue.length = 0;
    if (this.#waiting > 0) {
      this.flow?.taken(this.#waiting);
      this.#waiting = 0;
    }
    this.#ended = true;
    this.#through = true;
    this.#maybeDone();
  }

  /** Pushes what waits into the other flow, while it takes it. */
  pump(): void {
    const into = this.other.flow;
    const from = this.flow;
    if (this.#reset || this.#through || into === undefined || from === undefined) return;
    if (this.#waiting > 0) return;
    while (this.#queue.length > 0) {
      const chunk = this.#queue.shift()!;
      if (!into.push(chunk)) {
        // Sent in part or not yet: the rest waits in the other flow, which
        // calls its sink's resume once it has gone.
        this.#waiting = chunk.length;
        return;
      }
      from.taken(chunk.length);
    }
    if (!this.#ended) return;
    into.end();
    this.#through = true;
    this.#maybeDone();
  }

  /** Both directions are through: both flows are over (an acceptor tells its peer). */
  #maybeDone(): void {
    if (!this.#through || !this.other.#through || this.#reset) return;
    this.flow?.closed();
    this.other.flow?.closed();
  }
}

/** A splice being made: a sink for each flow, given before or after the flows exist. */
export interface Splice {
  /** The first flow's sink. */
  readonly a: TcpSink & { attach(flow: TcpFlow): void };
  /** The second flow's sink. */
  readonly b: TcpSink & { attach(flow: TcpFlow): void };
}

/**
 * Makes the two sinks of a splice. Each flow is attached to its side when it
 * exists (`attach`); bytes that come before the other flow exists wait,
 * uncredited, so the sender's window bounds them.
 *
 * @returns the two sides
 *
 * @example
 * ```ts ignore
 * const splice = spliceFlows();
 * const opened = await sessionEnd.openTcp(open, (flow) => { splice.b.attach(flow); return splice.b; });
 * // … and in the accept hook of the other call:
 * return { message: "intercepted", tcp: (flow) => { splice.a.attach(flow); return splice.a; } };
 * ```
 */
export function spliceFlows(): Splice {
  const a = new Side();
  const b = new Side();
  a.other = b;
  b.other = a;
  return { a, b };
}
