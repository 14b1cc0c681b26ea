/**
 * A {@linkcode Dialer} that asks the dial server in another network namespace
 * (see `_dial_protocol.ts`) to open connections there.
 *
 * @module
 */

import type {
  ByteStream,
  DatagramFlow,
  Dialer,
  DialRequest,
  DialResult,
  PingRequest,
} from "../../mod/net/dialer.ts";
import { socketStream } from "../../mod/net/pipe.ts";
import { type DialAnswer, frame, readFrames, readLine, writeLine } from "./_dial_protocol.ts";

/** Dials through the dial server listening on `path`. */
export class UnixSocketDialer implements Dialer {
  #path: string;

  /** @param path the dial server's socket */
  constructor(path: string) {
    this.#path = path;
  }

  async #open(proto: string, host: string, port: number) {
    const conn = await Deno.connect({ transport: "unix", path: this.#path });
    await writeLine(conn, { proto, host, port });
    const { value, rest } = await readLine<DialAnswer>(conn);
    return { conn, answer: value, rest };
  }

  /** Dials TCP; the stream is the Unix socket itself after the answer. */
  async dialTcp(req: DialRequest): Promise<DialResult<ByteStream>> {
    const { conn, answer, rest } = await this.#open(
      "tcp",
      req.destination.address,
      req.destination.port,
    );
    if (!answer.ok) {
      conn.close();
      return answer;
    }
    const s = socketStream(conn);
    if (rest.length === 0) return { ok: true, value: s };
    // Bytes that arrived with the answer go first.
    const { readable, writable } = new TransformStream<Uint8Array, Uint8Array>();
    const w = writable.getWriter();
    (async () => {
      await w.write(rest);
      w.releaseLock();
      await s.readable.pipeTo(writable);
    })().catch(() => {});
    return { ok: true, value: { readable, writable: s.writable } };
  }

  /** Opens a UDP flow relayed as frames. */
  async dialUdp(
    req: DialRequest,
    deliver: (payload: Uint8Array) => void,
  ): Promise<DialResult<DatagramFlow>> {
    const { conn, answer, rest } = await this.#open(
      "udp",
      req.destination.address,
      req.destination.port,
    );
    if (!answer.ok) {
      conn.close();
      return answer;
    }
    readFrames(conn, rest, deliver).catch(() => {});
    let closed = false;
    return {
      ok: true,
      value: {
        send(payload) {
          if (!closed) conn.write(frame(payload)).catch(() => {});
        },
        close() {
          if (closed) return;
          closed = true;
          try {
            conn.close();
          } catch { /* closed */ }
        },
      },
    };
  }

  /** Pings from the server namespace. */
  async ping(req: PingRequest): Promise<DialResult<void>> {
    const { conn, answer } = await this.#open("ping", req.destination.address, 0);
    conn.close();
    return answer.ok ? { ok: true, value: undefined } : answer;
  }
}
