/**
 * The TLS listener in front of the API server's `Deno.serve`.
 *
 * Why not `Deno.serve({ cert, key })` directly: Deno's HTTP/1.1 server answers
 * an empty `400 Bad Request` (before any handler runs) to an upgrade request
 * that carries `Content-Length: 0`, and that is exactly what `kubectl`'s SPDY
 * port-forward sends (`POST …/portforward`, `Connection: Upgrade`,
 * `Upgrade: SPDY/3.1`, `Content-Length: 0`). kubectl then prints
 * `error upgrading connection: ` with nothing after it, where a real server's
 * 403 says who may not port-forward.
 *
 * So this front terminates TLS itself (ALPN `h2` and `http/1.1`), mends the
 * first request of an HTTP/1.1 connection when it is an upgrade (see
 * {@linkcode rewriteUpgradeHead}), passes WebSocket frames on one write each
 * (see `copyFrames`), and pipes the bytes to the plaintext `Deno.serve` on a loopback
 * port (HTTP/2 connections go through as h2c with prior knowledge, which
 * `Deno.serve` speaks).
 *
 * ```
 *   client ──TLS──► front (hostname:port) ──plain TCP──► Deno.serve (127.0.0.1:random)
 * ```
 *
 * @module
 */

import { copy } from "../_relay.ts";

/** A running front. */
export interface TlsFront {
  addr: Deno.NetAddr;
  close(): void;
}

const MAX_HEAD = 64 * 1024;

function headEnd(buf: Uint8Array, length: number): number {
  for (let i = 0; i + 3 < length; i++) {
    if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) return i + 4;
  }
  return -1;
}

/**
 * Mends an HTTP/1.1 upgrade request head for `Deno.serve`: drops
 * `Content-Length: 0`, and writes the `Sec-WebSocket-Protocol` list as
 * `a, b, c` (`Deno.upgradeWebSocket` splits it on ", " only, while the `ws`
 * package under client-node sends `a,b,c`, and then no protocol matches).
 *
 * @param head the request head, up to and including the blank line
 * @returns the head to forward
 */
export function rewriteUpgradeHead(head: string): string {
  if (!/\r\nupgrade:/i.test(head)) return head;
  return head
    .replace(/\r\ncontent-length:[ \t]*0[ \t]*(?=\r\n)/i, "")
    .replace(
      /(\r\nsec-websocket-protocol:)[ \t]*([^\r\n]*)/i,
      (_m, name: string, value: string) =>
        `${name} ${value.split(",").map((p) => p.trim()).filter((p) => p).join(", ")}`,
    );
}

async function writeAll(conn: Deno.Conn, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

/** Length of the complete WebSocket frame at the start of `buf` (RFC 6455 5.2), or -1. */
export function frameLength(buf: Uint8Array, length: number): number {
  if (length < 2) return -1;
  const masked = (buf[1]! & 0x80) !== 0;
  let len = buf[1]! & 0x7f;
  let off = 2;
  if (len === 126) {
    if (length < 4) return -1;
    len = (buf[2]! << 8) | buf[3]!;
    off = 4;
  } else if (len === 127) {
    if (length < 10) return -1;
    len = Number(new DataView(buf.buffer, buf.byteOffset + 2, 8).getBigUint64(0));
    off = 10;
  }
  const total = off + (masked ? 4 : 0) + len;
  return length >= total ? total : -1;
}

/**
 * Copies the server's side of an upgraded connection, writing the response
 * head and then each WebSocket frame with a write of its own, so no TLS
 * record holds the end of one frame and a whole next one. (python-kubernetes
 * waits in `select()` on the raw socket and never sees a frame left decrypted
 * in its SSL buffer: kubernetes-client/python #1785, #2414.)
 */
async function copyFrames(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  let buf = new Uint8Array(256 * 1024);
  let start = 0; // first byte not yet written
  let length = 0; // bytes in buf
  let inHead = true;
  for (;;) {
    if (length === buf.length) {
      if (start > 0) {
        buf.copyWithin(0, start, length);
        length -= start;
        start = 0;
      } else {
        const bigger = new Uint8Array(buf.length * 2);
        bigger.set(buf);
        buf = bigger;
      }
    }
    const n = await from.read(buf.subarray(length));
    if (n === null) break;
    length += n;
    for (;;) {
      const view = buf.subarray(start, length);
      let take: number;
      if (inHead) {
        take = headEnd(view, view.length);
        if (take < 0) break;
        const head = new TextDecoder().decode(view.subarray(0, take));
        if (!/^HTTP\/1\.1 101/.test(head)) {
          // No upgrade: the rest is plain HTTP.
          await writeAll(to, view);
          await copy(from, to);
          return;
        }
        inHead = false;
      } else {
        take = frameLength(view, view.length);
        if (take < 0) break;
      }
      await writeAll(to, view.subarray(0, take));
      start += take;
    }
    if (start === length) start = length = 0;
  }
  if (length > start) await writeAll(to, buf.subarray(start, length));
  await to.closeWrite().catch(() => {});
}

/**
 * Listens for TLS and forwards every connection to `innerPort` on 127.0.0.1.
 *
 * @param options address, certificate, the inner port, a log
 * @returns the front
 */
export function startTlsFront(options: {
  hostname: string;
  port: number;
  cert: string;
  key: string;
  innerPort: number;
  log: (line: string) => void;
}): TlsFront {
  const listener = Deno.listenTls({
    hostname: options.hostname,
    port: options.port,
    cert: options.cert,
    key: options.key,
    alpnProtocols: ["h2", "http/1.1"],
  });
  const open = new Set<Deno.Conn>();
  const closeQuietly = (c: Deno.Conn) => {
    open.delete(c);
    try {
      c.close();
    } catch { /* closed */ }
  };

  async function serve(conn: Deno.TlsConn): Promise<void> {
    open.add(conn);
    let inner: Deno.Conn | undefined;
    try {
      const { alpnProtocol } = await conn.handshake();
      inner = await Deno.connect({ hostname: "127.0.0.1", port: options.innerPort });
      open.add(inner);
      let websocket = false;
      if (alpnProtocol !== "h2") {
        // Look at the first request head only: an upgrade is always the
        // first request of its connection (kubectl and python dial anew).
        const buf = new Uint8Array(MAX_HEAD);
        let length = 0;
        let end = -1;
        while (end < 0 && length < MAX_HEAD) {
          const n = await conn.read(buf.subarray(length));
          if (n === null) break;
          length += n;
          end = headEnd(buf, length);
        }
        if (end > 0) {
          const head = new TextDecoder().decode(buf.subarray(0, end));
          websocket = /\r\nupgrade:[ \t]*websocket/i.test(head);
          await writeAll(inner, new TextEncoder().encode(rewriteUpgradeHead(head)));
          await writeAll(inner, buf.subarray(end, length));
        } else {
          await writeAll(inner, buf.subarray(0, length));
        }
      }
      const i = inner;
      await Promise.allSettled([
        // Plain reads and writes: pipeTo cost this process (the busiest of the
        // simulated port-forward path) a third of its time.
        copy(conn, i),
        websocket ? copyFrames(i, conn) : copy(i, conn),
      ]);
    } catch {
      // A failed handshake or a reset: nothing to tell anyone.
    } finally {
      closeQuietly(conn);
      if (inner) closeQuietly(inner);
    }
  }

  (async () => {
    try {
      for await (const conn of listener) serve(conn);
    } catch (error) {
      if (!(error instanceof Deno.errors.BadResource)) {
        options.log(`apiserver: TLS listener stopped: ${error}`);
      }
    }
  })();

  return {
    addr: listener.addr,
    close() {
      try {
        listener.close();
      } catch { /* closed */ }
      for (const c of [...open]) closeQuietly(c);
    },
  };
}
