/**
 * Joining two byte streams both ways, with half-close carried across.
 *
 * @module
 */

import type { ByteStream } from "./dialer.ts";

/** How a {@linkcode pipeBoth} ended. */
export interface PipeResult {
  /** Bytes moved from `a` to `b`. */
  aToB: number;
  /** Bytes moved from `b` to `a`. */
  bToA: number;
  /** The first error either direction met, if any. */
  error?: unknown;
}

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
