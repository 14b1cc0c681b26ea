/**
 * Joining two byte streams both ways, with half-close carried across.
 *
 * @module
 */

import type { ByteStream, PipeResult, Socket } from "./dialer.ts";

export type { PipeResult } from "./dialer.ts";

interface Direction {
  reader: ReadableStreamDefaultReader<Uint8Array>;
  writer: WritableStreamDefaultWriter<Uint8Array>;
}

async function pump(d: Direction, count: (n: number) => void): Promise<void> {
  for (;;) {
    const { value, done } = await d.reader.read();
    if (done) break;
    count(value.byteLength);
    await d.writer.ready; // backpressure: a slow far side slows this reader
    await d.writer.write(value);
  }
  await d.writer.close(); // end of stream: half-close, the other direction goes on
}

/**
 * Copies `a.readable` into `b.writable` and `b.readable` into `a.writable`
 * until both directions have ended. The end of one direction closes the
 * writable it fed (a FIN), leaving the other direction open; an error in one
 * direction aborts both.
 *
 * @param a one stream
 * @param b the other
 * @returns when both directions are done; never rejects
 * @example
 * ```ts
 * import { pipeBoth } from "./pipe.ts";
 * const a = new TransformStream<Uint8Array, Uint8Array>();
 * const b = new TransformStream<Uint8Array, Uint8Array>();
 * const done = pipeBoth(
 *   { readable: a.readable, writable: b.writable },
 *   { readable: b.readable, writable: a.writable },
 * );
 * ```
 */
export async function pipeBoth(a: ByteStream, b: ByteStream): Promise<PipeResult> {
  const result: PipeResult = { aToB: 0, bToA: 0 };
  const ab: Direction = { reader: a.readable.getReader(), writer: b.writable.getWriter() };
  const ba: Direction = { reader: b.readable.getReader(), writer: a.writable.getWriter() };
  const fail = (error: unknown) => {
    result.error ??= error;
    // One direction failed: tear down both so neither side hangs.
    for (const d of [ab, ba]) {
      d.reader.cancel(error).catch(() => {});
      d.writer.abort(error).catch(() => {});
    }
  };
  await Promise.all([
    pump(ab, (n) => result.aToB += n).catch(fail),
    pump(ba, (n) => result.bToA += n).catch(fail),
  ]);
  return result;
}

/** The read buffer of a socket that has been quiet: what 1,000 idle connections hold 1,000 of. */
export const MIN_READ = 4 * 1024;
/** The read buffer of a socket moving bulk data: one tunnel DATA frame's worth. */
export const MAX_READ = 256 * 1024;

/**
 * Reads a socket into buffers sized to its traffic: an idle socket's pending
 * read holds its buffer, so reads start at {@linkcode MIN_READ} and grow (up
 * to {@linkcode MAX_READ}) while they come back full, shrinking again when
 * they come back small. Each chunk is a buffer of its own, the caller's to
 * keep.
 */
export class SocketReader {
  #socket: Socket;
  #size = MIN_READ;

  /** @param socket the socket to read */
  constructor(socket: Socket) {
    this.#socket = socket;
  }

  /**
   * Reads the next chunk.
   *
   * @returns the bytes, or `null` at end of stream
   * @throws what the socket's read throws
   */
  async read(): Promise<Uint8Array | null> {
    const size = this.#size;
    const buf = new Uint8Array(size);
    const n = await this.#socket.read(buf);
    if (n === null) return null;
    if (n === size) this.#size = Math.min(size * 4, MAX_READ);
    else if (n <= size / 4) this.#size = Math.max(size / 4, MIN_READ);
    return buf.subarray(0, n);
  }
}

/**
 * Writes all of `data` to `socket`, however many writes it takes.
 *
 * @param socket the socket
 * @param data the bytes
 * @throws what the socket's write throws
 */
export async function writeAll(socket: Socket, data: Uint8Array): Promise<void> {
  for (let off = 0; off < data.length;) off += await socket.write(data.subarray(off));
}

/**
 * Wraps a socket as a {@linkcode ByteStream}: closing the writable shuts
 * down the socket's sending half (a FIN) and leaves reading open; cancelling
 * the readable or aborting the writable closes the socket.
 *
 * @param socket the socket (a `Deno.TcpConn`, say)
 * @returns the stream view
 * @example
 * ```ts ignore
 * import { socketStream } from "./pipe.ts";
 * const conn = await Deno.connect({ hostname: "198.18.0.1", port: 80 });
 * const { readable, writable } = socketStream(conn);
 * ```
 */
export function socketStream(socket: Socket): ByteStream {
  const reader = new SocketReader(socket);
  const readable = new ReadableStream<Uint8Array>({
    async pull(controller) {
      try {
        const chunk = await reader.read();
        if (chunk === null) controller.close();
        else controller.enqueue(chunk);
      } catch (error) {
        controller.error(error);
      }
    },
    cancel() {
      closeQuietly(socket);
    },
  }, { highWaterMark: 0 });
  const writable = new WritableStream<Uint8Array>({
    write: (chunk) => writeAll(socket, chunk),
    async close() {
      await socket.closeWrite().catch(() => {});
    },
    abort() {
      closeQuietly(socket);
    },
  });
  return { readable, writable };
}

/**
 * Joins an accepted socket to a dialed stream both ways until both
 * directions have ended: through the stream's
 * {@linkcode ByteStream.joinSocket} when it has one, else by piping
 * {@linkcode socketStream} with it.
 *
 * @param socket the accepted socket
 * @param stream the dialed stream
 * @returns when both directions are done; never rejects
 */
export function joinSocket(socket: Socket, stream: ByteStream): Promise<PipeResult> {
  if (stream.joinSocket) return stream.joinSocket(socket);
  return pipeBoth(socketStream(socket), stream);
}

/**
 * Closes a socket or listener, ignoring that it was closed already.
 *
 * @param c what to close
 */
export function closeQuietly(c: { close(): void }): void {
  try {
    c.close();
  } catch {
    // already closed
  }
}
