/**
 * A small WebSocket client over `Deno.connectTls` for tests: it sends any
 * headers (a bearer token, several subprotocols), trusts a given CA, and
 * hands back every frame as it came, so tests can check the exact framing
 * of the port-forward protocol (RFC 6455 section 5).
 *
 * @module
 */

/** One received message. */
export interface WsMessage {
  /** 1 text, 2 binary, 8 close. */
  opcode: number;
  data: Uint8Array;
}

/** An open client connection. */
export interface WsClient {
  /** The 101 response's `Sec-WebSocket-Protocol`. */
  protocol: string;
  /** The next message (control frames other than close are skipped); `null` at the end. */
  next(timeoutMs?: number): Promise<WsMessage | null>;
  /** Sends a binary message. */
  sendBinary(data: Uint8Array): Promise<void>;
  /** Sends a close frame and closes the connection. */
  close(): Promise<void>;
}

/** A refused upgrade: the HTTP status and body. */
export class UpgradeRefusedError extends Error {
  /** @param status the HTTP status @param body the response body */
  constructor(readonly status: number, readonly body: string) {
    super(`WebSocket upgrade refused with HTTP ${status}: ${body}`);
    this.name = "UpgradeRefusedError";
  }
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/**
 * Opens a WebSocket to `https://host:port/path` (as `wss:`).
 *
 * @param url the https URL with path and query
 * @param options the CA, the token, the offered subprotocols
 * @returns the connection
 * @throws {UpgradeRefusedError} when the server answers other than 101
 */
export async function connectWs(
  url: string,
  options: { caPem: string; token?: string; protocols?: string[] },
): Promise<WsClient> {
  const u = new URL(url);
  const conn = await Deno.connectTls({
    hostname: u.hostname,
    port: Number(u.port),
    caCerts: [options.caPem],
    alpnProtocols: ["http/1.1"],
  });
  const key = btoa(String.fromCharCode(...crypto.getRandomValues(new Uint8Array(16))));
  const lines = [
    `GET ${u.pathname}${u.search} HTTP/1.1`,
    `Host: ${u.host}`,
    "Upgrade: websocket",
    "Connection: Upgrade",
    `Sec-WebSocket-Key: ${key}`,
    "Sec-WebSocket-Version: 13",
  ];
  if (options.token) lines.push(`Authorization: Bearer ${options.token}`);
  if (options.protocols?.length) {
    // Joined with "," and no space, as the `ws` package under client-node does.
    lines.push(`Sec-WebSocket-Protocol: ${options.protocols.join(",")}`);
  }
  await conn.write(new TextEncoder().encode(lines.join("\r\n") + "\r\n\r\n"));

  let buf: Uint8Array = new Uint8Array();
  const chunk = new Uint8Array(64 * 1024);
  const fill = async (): Promise<boolean> => {
    const n = await conn.read(chunk);
    if (n === null) return false;
    buf = concat(buf, chunk.subarray(0, n));
    return true;
  };
  // Read the response head (up to the blank line).
  const headLength = () => {
    for (let i = 0; i + 3 < buf.length; i++) {
      if (buf[i] === 13 && buf[i + 1] === 10 && buf[i + 2] === 13 && buf[i + 3] === 10) return i;
    }
    return -1;
  };
  while (headLength() < 0) {
    if (!await fill()) break;
  }
  const headEnd = headLength();
  const head = new TextDecoder().decode(buf.subarray(0, headEnd < 0 ? buf.length : headEnd));
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
  if (status !== 101) {
    const length = Number(/content-length:\s*(\d+)/i.exec(head)?.[1] ?? "0");
    while (buf.length < headEnd + 4 + length) {
      if (!await fill()) break;
    }
    conn.close();
    throw new UpgradeRefusedError(
      status,
      new TextDecoder().decode(buf.subarray(headEnd + 4, headEnd + 4 + length)),
    );
  }
  const protocol = /sec-websocket-protocol:\s*([^\r\n]*)/i.exec(head)?.[1]?.trim() ?? "";
  buf = buf.subarray(headEnd + 4);

  let closed = false;
  const readFrame = async (): Promise<WsMessage | null> => {
    for (;;) {
      if (buf.length >= 2) {
        const opcode = buf[0]! & 0x0f;
        let len = buf[1]! & 0x7f;
        let off = 2;
        if (len === 126) {
          if (buf.length < 4) {
            if (!await fill()) return null;
            continue;
          }
          len = (buf[2]! << 8) | buf[3]!;
          off = 4;
        } else if (len === 127) {
          if (buf.length < 10) {
            if (!await fill()) return null;
            continue;
          }
          len = Number(new DataView(buf.buffer, buf.byteOffset + 2, 8).getBigUint64(0));
          off = 10;
        }
        if (buf.length >= off + len) {
          const data = buf.slice(off, off + len);
          buf = buf.subarray(off + len);
          return { opcode, data };
        }
      }
      if (!await fill()) return null;
    }
  };

  const sendFrame = async (opcode: number, data: Uint8Array) => {
    const mask = crypto.getRandomValues(new Uint8Array(4));
    const len = data.length;
    const header = len < 126
      ? new Uint8Array([0x80 | opcode, 0x80 | len])
      : len < 65536
      ? new Uint8Array([0x80 | opcode, 0x80 | 126, len >> 8, len & 255])
      : (() => {
        const h = new Uint8Array(10);
        h[0] = 0x80 | opcode;
        h[1] = 0x80 | 127;
        new DataView(h.buffer).setBigUint64(2, BigInt(len));
        return h;
      })();
    const masked = data.map((b, i) => b ^ mask[i % 4]!);
    const frame = concat(concat(header, mask), masked);
    let off = 0;
    while (off < frame.length) off += await conn.write(frame.subarray(off));
  };

  return {
    protocol,
    async next(timeoutMs = 10_000) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error("Timed out waiting for a WebSocket frame")),
          timeoutMs,
        );
      });
      try {
        for (;;) {
          const f = await Promise.race([readFrame(), timeout]);
          if (f === null) return null;
          if (f.opcode === 9 || f.opcode === 10 || f.opcode === 0) continue; // ping, pong, continuation
          return f;
        }
      } finally {
        clearTimeout(timer);
      }
    },
    sendBinary: (data) => sendFrame(2, data),
    async close() {
      if (closed) return;
      closed = true;
      try {
        await sendFrame(8, new Uint8Array([0x03, 0xe8]));
      } catch { /* gone */ }
      try {
        conn.close();
      } catch { /* closed */ }
    },
  };
}
