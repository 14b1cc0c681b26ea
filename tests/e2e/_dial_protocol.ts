/**
 * The tiny protocol between the e2e tests' dialer (in the workstation
 * namespace) and its dial server (in the server namespace), over a Unix
 * socket, which crosses network namespaces because it lives in the file system.
 *
 * One connection per dial: the client sends a JSON line
 * `{"proto":"tcp"|"udp"|"ping","host":"…","port":n}`, the server answers a JSON
 * line `{"ok":true}` or `{"ok":false,"reason":"refused"|"unreachable"|"timeout"}`.
 * Then TCP carries raw bytes (half-close is the socket's), UDP carries frames
 * of a 2-byte length and a datagram, and ping ends.
 *
 * @module
 */

/** The request line. */
export interface DialHeader {
  proto: "tcp" | "udp" | "ping";
  host: string;
  port: number;
}

/** The answer line. */
export type DialAnswer = { ok: true } | {
  ok: false;
  reason: "refused" | "unreachable" | "timeout";
};

/**
 * Reads one newline-terminated JSON line; returns it with whatever bytes came after it.
 *
 * @param conn the socket
 * @returns the parsed line and the leftover bytes
 * @throws {Error} when the socket ends first
 */
export async function readLine<T>(conn: Deno.Conn): Promise<{ value: T; rest: Uint8Array }> {
  let acc = new Uint8Array(0);
  const buf = new Uint8Array(4096);
  for (;;) {
    const nl = acc.indexOf(10);
    if (nl >= 0) {
      return {
        value: JSON.parse(new TextDecoder().decode(acc.subarray(0, nl))) as T,
        rest: acc.slice(nl + 1),
      };
    }
    const n = await conn.read(buf);
    if (n === null) throw new Error("Cannot read the dial answer: the socket ended");
    const next = new Uint8Array(acc.length + n);
    next.set(acc);
    next.set(buf.subarray(0, n), acc.length);
    acc = next;
  }
}

/**
 * Writes a JSON line.
 *
 * @param conn the socket
 * @param value what to send
 */
export async function writeLine(conn: Deno.Conn, value: unknown): Promise<void> {
  const bytes = new TextEncoder().encode(JSON.stringify(value) + "\n");
  for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
}

/**
 * Reads length-prefixed frames until the socket ends.
 *
 * @param conn the socket
 * @param first bytes already read
 * @param onFrame called per frame
 */
export async function readFrames(
  conn: Deno.Conn,
  first: Uint8Array,
  onFrame: (frame: Uint8Array) => void,
): Promise<void> {
  let acc = first;
  const buf = new Uint8Array(70_000);
  for (;;) {
    while (acc.length >= 2) {
      const len = (acc[0]! << 8) | acc[1]!;
      if (acc.length < 2 + len) break;
      onFrame(acc.slice(2, 2 + len));
      acc = acc.subarray(2 + len);
    }
    const n = await conn.read(buf).catch(() => null);
    if (n === null) return;
    const next = new Uint8Array(acc.length + n);
    next.set(acc);
    next.set(buf.subarray(0, n), acc.length);
    acc = next;
  }
}

/**
 * Frames a datagram.
 *
 * @param payload the datagram
 * @returns 2 length bytes and the datagram
 */
export function frame(payload: Uint8Array): Uint8Array {
  const out = new Uint8Array(2 + payload.length);
  out[0] = payload.length >> 8;
  out[1] = payload.length & 0xff;
  out.set(payload, 2);
  return out;
}
