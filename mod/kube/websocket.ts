/**
 * A WebSocket client (RFC 6455) for the API server's streaming endpoints, on
 * `node:https`, so that every TLS setting a kubeconfig can hold (its CA, a
 * client certificate, `insecure-skip-tls-verify`, `tls-server-name`) applies
 * as it does to the REST calls, and a refused upgrade comes back with its
 * HTTP status and the API server's message.
 *
 * Only what the port-forward needs: binary and text messages, ping/pong, the
 * closing handshake; no extensions, no compression.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createHash, randomBytes } from "node:crypto";
import type { Duplex } from "node:stream";
import type { ApiAccess } from "./api.ts";
import { KubeApiError, requestTo, statusError } from "./api.ts";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** Frame opcodes (RFC 6455 5.2). */
const Op = { Continuation: 0, Text: 1, Binary: 2, Close: 8, Ping: 9, Pong: 10 } as const;

/** The most a message may grow to before the connection is failed (a guard, not a limit the API server nears). */
const MAX_MESSAGE = 64 * 1024 * 1024;

/** What {@linkcode connectWebSocket} returns: an open connection. */
export interface WebSocketConnection {
  /** The subprotocol the server chose. */
  readonly protocol: string;
  /**
   * Sends one binary message; resolves when the socket took it (wait before
   * sending more to respect backpressure).
   */
  send(data: Uint8Array): Promise<void>;
  /** Starts the closing handshake (code 1000) and ends the connection. */
  close(): void;
  /** Stops reading (the receiver is behind); messages wait in the socket. */
  pause(): void;
  /** Reads again after {@linkcode WebSocketConnection.pause}. */
  resume(): void;
  /**
   * Called with each message, in order (binary as bytes, text as a string).
   * Messages that arrive before it is set wait for it.
   */
  onmessage: ((data: Uint8Array | string) => void) | null;
  /** Resolves once the connection is gone, with why (empty for a clean close). */
  readonly closed: Promise<string>;
}

/** Options of {@linkcode connectWebSocket}. */
export interface WebSocketOptions {
  /** Subprotocols to offer, in order of preference. */
  protocols: string[];
  /** How long the handshake may take, in ms (default 10 s). */
  timeoutMs?: number;
}

/**
 * Opens a WebSocket to `path` on the API server of `access`.
 *
 * @param access the API server and credentials
 * @param path the path and query (`/api/v1/namespaces/…/portforward?ports=8081`)
 * @param options subprotocols and time-out
 * @returns the open connection
 * @throws {KubeApiError} with the HTTP status when the server refuses the
 *   upgrade, without one when it cannot be reached or breaks the handshake
 */
export function connectWebSocket(
  access: ApiAccess,
  path: string,
  options: WebSocketOptions,
): Promise<WebSocketConnection> {
  const base = new URL(access.server);
  const url = new URL(base.pathname.replace(/\/$/, "") + path, base);
  const key = randomBytes(16).toString("base64");
  const headers: Record<string, string> = {
    ...access.headers,
    Connection: "Upgrade",
    Upgrade: "websocket",
    "Sec-WebSocket-Version": "13",
    "Sec-WebSocket-Key": key,
    "Sec-WebSocket-Protocol": options.protocols.join(", "),
  };
  const timeoutMs = options.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    const req = requestTo(access, url, { method: "GET", headers, timeout: timeoutMs });
    req.on("timeout", () => {
      req.destroy(new Error(`no answer within ${Math.round(timeoutMs / 1000)} s`));
    });
    req.on("error", (e: Error) => reject(new KubeApiError(e.message, undefined, { cause: e })));
    req.on("response", (res) => {
      // Not upgraded: the API server's Status says why (401, 403, 404, …).
      const chunks: Buffer[] = [];
      res.on("data", (c: Buffer) => chunks.push(c));
      res.on("end", () => {
        const body = Buffer.concat(chunks).toString("utf8");
        reject(statusError(res.statusCode ?? 0, body, res.statusMessage));
      });
    });
    req.on("upgrade", (res, socket: Duplex, head: Buffer) => {
      const accept = createHash("sha1").update(key + GUID).digest("base64");
      if (res.headers["sec-websocket-accept"] !== accept) {
        socket.destroy();
        reject(new KubeApiError("the API server answered the WebSocket handshake wrongly", 101));
        return;
      }
      const protocol = String(res.headers["sec-websocket-protocol"] ?? "");
      if (protocol && !options.protocols.includes(protocol)) {
        socket.destroy();
        reject(new KubeApiError(`the API server chose subprotocol "${protocol}"`, 101));
        return;
      }
      resolve(new Connection(socket, protocol, head));
    });
    req.end();
  });
}

class Connection implements WebSocketConnection {
  readonly protocol: string;
  #onmessage: ((data: Uint8Array | string) => void) | null = null;
  /** Messages that came before there was a handler. */
  #early: Array<Uint8Array | string> = [];
  readonly closed: Promise<string>;
  #socket: Duplex;
  #pending: Buffer[] = [];
  #pendingBytes = 0;
  /** Bytes needed before parsing can go on. */
  #need = 2;
  #fragments: Buffer[] = [];
  #fragmentOp = 0;
  #fragmentBytes = 0;
  #ended = false;
  #sentClose = false;
  #done!: (why: string) => void;

  constructor(socket: Duplex, protocol: string, head: Buffer) {
    this.protocol = protocol;
    this.#socket = socket;
    this.closed = new Promise((resolve) => this.#done = resolve);
    (socket as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    socket.on("data", (chunk: Buffer) => this.#read(chunk));
    socket.on("error", (e: Error) => this.#end(e.message));
    socket.on("close", () => this.#end(this.#sentClose ? "" : "the connection was closed"));
    // Bytes that came with the 101 response are the first frames.
    if (head.length > 0) queueMicrotask(() => this.#read(head));
  }

  get onmessage(): ((data: Uint8Array | string) => void) | null {
    return this.#onmessage;
  }

  set onmessage(handler: ((data: Uint8Array | string) => void) | null) {
    this.#onmessage = handler;
    if (!handler) return;
    const early = this.#early.splice(0);
    for (const m of early) handler(m);
  }

  send(data: Uint8Array): Promise<void> {
    if (this.#ended) return Promise.reject(new Error("the WebSocket is closed"));
    const more = this.#socket.write(frame(Op.Binary, data));
    if (more) return Promise.resolve();
    return new Promise((resolve) => this.#socket.once("drain", resolve));
  }

  pause(): void {
    this.#socket.pause();
  }

  resume(): void {
    this.#socket.resume();
  }

  close(): void {
    if (this.#ended) return;
    if (!this.#sentClose) {
      this.#sentClose = true;
      const code = new Uint8Array([1000 >> 8, 1000 & 0xff]);
      this.#socket.write(frame(Op.Close, code));
    }
    this.#socket.end();
    // A server that does not answer the close is not waited for long.
    setTimeout(() => this.#socket.destroy(), 1000).unref?.();
  }

  #end(why: string): void {
    if (this.#ended) return;
    this.#ended = true;
    this.#socket.destroy();
    this.#done(why);
  }

  #fail(why: string): void {
    this.#end(why);
  }

  /**
   * Parses whole frames from what arrived. A partial frame waits in pieces
   * until all of it is there (joined once, not on every chunk).
   */
  #read(chunk: Buffer): void {
    this.#pending.push(chunk);
    this.#pendingBytes += chunk.length;
    if (this.#pendingBytes < this.#need) return;
    let buf = this.#pending.length === 1 ? this.#pending[0]! : Buffer.concat(this.#pending);
    this.#pending = [];
    this.#pendingBytes = 0;
    this.#need = 2;
    for (;;) {
      if (buf.length < 2) break;
      const b0 = buf[0]!, b1 = buf[1]!;
      const fin = (b0 & 0x80) !== 0;
      const op = b0 & 0x0f;
      const masked = (b1 & 0x80) !== 0;
      let length = b1 & 0x7f;
      let at = 2;
      if (length === 126) {
        if (buf.length < 4) {
          this.#need = 4;
          break;
        }
        length = buf.readUInt16BE(2);
        at = 4;
      } else if (length === 127) {
        if (buf.length < 10) {
          this.#need = 10;
          break;
        }
        if (buf.readUInt32BE(2) !== 0) return this.#fail("a WebSocket frame over 4 GiB");
        length = buf.readUInt32BE(6);
        at = 10;
      }
      if (length > MAX_MESSAGE) return this.#fail("a WebSocket frame over 64 MiB");
      // RFC 6455 5.5: control frames carry at most 125 bytes and are never fragmented.
      if ((op === Op.Close || op === Op.Ping || op === Op.Pong) && (length > 125 || !fin)) {
        return this.#fail("a WebSocket control frame over 125 bytes or fragmented");
      }
      if (masked) at += 4; // RFC 6455 5.1: servers do not mask; tolerate it anyway.
      if (buf.length < at + length) {
        this.#need = at + length;
        break;
      }
      let payload = buf.subarray(at, at + length);
      if (masked) {
        // A copy with the key in front, unmasked as client frames are masked.
        const copy = Buffer.from(buf.subarray(at - 4, at + length));
        mask(payload, copy, 4);
        payload = copy.subarray(4);
      }
      buf = buf.subarray(at + length);
      this.#frame(fin, op, payload);
      if (this.#ended) return;
    }
    if (buf.length > 0) {
      // Its own copy: the chunk it views may be large and otherwise done with.
      this.#pending.push(Buffer.from(buf));
      this.#pendingBytes = buf.length;
    }
  }

  #frame(fin: boolean, op: number, payload: Buffer): void {
    switch (op) {
      case Op.Ping:
        if (!this.#sentClose) this.#socket.write(frame(Op.Pong, payload));
        return;
      case Op.Pong:
        return;
      case Op.Close: {
        const code = payload.length >= 2 ? payload.readUInt16BE(0) : 1005;
        const reason = payload.subarray(2).toString("utf8");
        if (!this.#sentClose) {
          this.#sentClose = true;
          this.#socket.write(frame(Op.Close, payload.subarray(0, 2)));
        }
        this.#socket.end();
        this.#end(code === 1000 || code === 1005 ? "" : `closed with ${code} ${reason}`.trim());
        return;
      }
      case Op.Text:
      case Op.Binary:
        if (this.#fragments.length > 0) return this.#fail("a new WebSocket message inside another");
        if (fin) return this.#deliver(op, payload);
        this.#fragmentOp = op;
        this.#fragments.push(Buffer.from(payload));
        this.#fragmentBytes = payload.length;
        return;
      case Op.Continuation: {
        if (this.#fragments.length === 0) return this.#fail("a WebSocket continuation of nothing");
        this.#fragmentBytes += payload.length;
        if (this.#fragmentBytes > MAX_MESSAGE) return this.#fail("a WebSocket message over 64 MiB");
        this.#fragments.push(Buffer.from(payload));
        if (!fin) return;
        const whole = Buffer.concat(this.#fragments);
        this.#fragments = [];
        return this.#deliver(this.#fragmentOp, whole);
      }
      default:
        return this.#fail(`a WebSocket frame of unknown opcode ${op}`);
    }
  }

  #deliver(op: number, payload: Buffer): void {
    const data = op === Op.Text
      ? payload.toString("utf8")
      : new Uint8Array(payload.buffer, payload.byteOffset, payload.byteLength);
    if (this.#onmessage) this.#onmessage(data);
    else this.#early.push(data);
  }
}

/**
 * One client frame: FIN, the opcode, the length, a random mask and the
 * masked payload (RFC 6455 5.2, 5.3).
 *
 * @param op the opcode
 * @param payload the payload
 * @returns the frame's bytes
 */
export function frame(op: number, payload: Uint8Array): Buffer {
  const n = payload.length;
  const lengthBytes = n < 126 ? 0 : n < 65536 ? 2 : 8;
  const at = 2 + lengthBytes + 4;
  const out = Buffer.allocUnsafe(at + n);
  out[0] = 0x80 | op;
  if (lengthBytes === 0) out[1] = 0x80 | n;
  else if (lengthBytes === 2) {
    out[1] = 0x80 | 126;
    out.writeUInt16BE(n, 2);
  } else {
    out[1] = 0x80 | 127;
    out.writeUInt32BE(Math.floor(n / 2 ** 32), 2);
    out.writeUInt32BE(n >>> 0, 6);
  }
  randomBytes(4).copy(out, at - 4);
  mask(payload, out, at);
  return out;
}

/**
 * XORs `payload` with the 4-byte key before `out[at]` into `out` from `at`, a
 * word at a time: masks a client frame, and unmasks a masked one.
 */
function mask(payload: Uint8Array, out: Buffer, at: number): void {
  const k0 = out[at - 4]!, k1 = out[at - 3]!, k2 = out[at - 2]!, k3 = out[at - 1]!;
  const n = payload.length;
  const words = n >>> 2;
  if (words > 0) {
    // Read, XOR and write little-endian words, the key in the same order.
    const key = (k0 | (k1 << 8) | (k2 << 16) | (k3 << 24)) >>> 0;
    const src = new DataView(payload.buffer, payload.byteOffset, words * 4);
    const dst = new DataView(out.buffer, out.byteOffset + at, words * 4);
    for (let i = 0; i < words * 4; i += 4) {
      dst.setUint32(i, (src.getUint32(i, true) ^ key) >>> 0, true);
    }
  }
  const keys = [k0, k1, k2, k3];
  for (let i = words * 4; i < n; i++) out[at + i] = payload[i]! ^ keys[i & 3]!;
}
