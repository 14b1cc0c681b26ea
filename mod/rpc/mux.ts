/**
 * The mux framing: every TCP connection, UDP flow and ping of a session as
 * frames on one `Mux` stream, instead of one gRPC call each. A flow costs one
 * OPEN and one RESULT frame rather than an HTTP/2 stream and a grpc-js call,
 * and frames written in the same turn of the event loop travel as one gRPC
 * message. Shared by the daemon and the manager; no I/O here.
 *
 * A frame is a 9-byte header, then its payload (all integers big-endian):
 *
 * ```
 * u32 flow id | u8 type | u32 payload length | payload
 * ```
 *
 * The frames of one gRPC message are concatenated inside a `MuxBatch`
 * protobuf (`bytes frames = 1`), so the call stays a valid protobuf method.
 * The payloads per type are in {@linkcode FrameType} and docs/protocol.md.
 *
 * @module
 */

import { Buffer } from "node:buffer";

/** Frame types. */
export const FrameType = {
  /** client → manager: protocol, addresses, dial timeout, the client's window. */
  Open: 1,
  /** manager → client: the dial's outcome, the manager's window, a message. */
  Result: 2,
  /** either way: bytes of the stream (TCP) or one datagram (UDP). */
  Data: 3,
  /** either way: the sender sends no more data (a TCP FIN). */
  Fin: 4,
  /** either way: the flow ends; a non-empty reason is a reset. */
  Close: 5,
  /** either way: the receiver took this many more bytes (credit). */
  Window: 6,
  /**
   * client → manager: a DNS query (wire format) for the cluster's DNS server;
   * manager → client: its answer, on the same id. A failed query is answered
   * with RESULT (NO_SESSION, UNREACHABLE) instead.
   */
  Dns: 7,
} as const;

/** A frame type's number. */
export type FrameType = typeof FrameType[keyof typeof FrameType];

/** Bytes of a frame header. */
export const FRAME_HEADER = 9;

/**
 * The credit each side gives a TCP flow when it opens: how many bytes the
 * other side may send before a WINDOW frame. Large enough to keep one flow's
 * pipe full at several Gbit/s over the tunnel's round trip.
 */
export const FLOW_WINDOW = 4 * 1024 * 1024;

/** The protocols an OPEN frame asks for (the numbers of `vif.v1.Protocol`). */
export const MuxProtocol = { Tcp: 1, Udp: 2, Icmp: 3, Intercepted: 16, Sftp: 17 } as const;

/** The longest tag of an OPEN frame, in bytes of UTF-8. */
export const MAX_OPEN_TAG = 255;

/** The fields of an OPEN frame. */
export interface OpenFrame {
  protocol: number;
  /** 4 or 16 bytes. */
  sourceIp: Uint8Array;
  sourcePort: number;
  /** 4 or 16 bytes, the family of `sourceIp`. */
  destinationIp: Uint8Array;
  destinationPort: number;
  /** 0: the manager's default. */
  dialTimeoutMs: number;
  /** The opener's credit for the flow's other direction. */
  window: number;
  /**
   * What the flow belongs to, when it is not a dial: the intercept id of an
   * intercepted connection or an sftp stream. Empty for dials; at most
   * {@linkcode MAX_OPEN_TAG} bytes.
   */
  tag?: string;
}

/** The fields of a RESULT frame. */
export interface ResultFrame {
  /** A `vif.v1.DialResult.Code` number. */
  code: number;
  /** The manager's credit for the client-to-cluster direction. */
  window: number;
  message: string;
}

/** Thrown for bytes that do not follow the framing. */
export class MuxProtocolError extends Error {
  /** @param message what was wrong */
  constructor(message: string) {
    super(message);
    this.name = "MuxProtocolError";
  }
}

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const strictDecoder = new TextDecoder("utf-8", { fatal: true });

/**
 * Encodes an OPEN frame's payload.
 *
 * @param open the fields
 * @returns the payload
 */
export function encodeOpen(open: OpenFrame): Uint8Array {
  const n = open.sourceIp.length;
  if ((n !== 4 && n !== 16) || open.destinationIp.length !== n) {
    throw new RangeError("mux: OPEN addresses must both be 4 or both 16 bytes");
  }
  const tag = open.tag ? encoder.encode(open.tag) : EMPTY;
  if (tag.length > MAX_OPEN_TAG) throw new RangeError("mux: an OPEN tag is 255 bytes at most");
  const fixed = 2 + 2 * (n + 2) + 8;
  const out = new Uint8Array(fixed + (tag.length > 0 ? 1 + tag.length : 0));
  const view = new DataView(out.buffer);
  if (tag.length > 0) {
    out[fixed] = tag.length;
    out.set(tag, fixed + 1);
  }
  out[0] = open.protocol;
  out[1] = n;
  out.set(open.sourceIp, 2);
  view.setUint16(2 + n, open.sourcePort);
  out.set(open.destinationIp, 4 + n);
  view.setUint16(4 + 2 * n, open.destinationPort);
  view.setUint32(6 + 2 * n, open.dialTimeoutMs >>> 0);
  view.setUint32(10 + 2 * n, open.window >>> 0);
  return out;
}

/**
 * Decodes an OPEN frame's payload.
 *
 * @param p the payload
 * @returns the fields
 * @throws {MuxProtocolError} when it is malformed
 */
export function decodeOpen(p: Uint8Array): OpenFrame {
  const n = p[1] ?? 0;
  const fixed = 14 + 2 * n;
  const tagLength = p.length > fixed ? p[fixed]! : 0;
  if (
    (n !== 4 && n !== 16) ||
    (p.length !== fixed && (tagLength === 0 || p.length !== fixed + 1 + tagLength))
  ) {
    throw new MuxProtocolError(`malformed OPEN frame (${p.length} bytes)`);
  }
  const view = new DataView(p.buffer, p.byteOffset, p.byteLength);
  let tag: string | undefined;
  if (tagLength > 0) {
    try {
      tag = strictDecoder.decode(p.subarray(fixed + 1));
    } catch {
      throw new MuxProtocolError("an OPEN frame's tag is not UTF-8");
    }
  }
  return {
    ...(tag !== undefined ? { tag } : {}),
    protocol: p[0]!,
    sourceIp: p.slice(2, 2 + n),
    sourcePort: view.getUint16(2 + n),
    destinationIp: p.slice(4 + n, 4 + 2 * n),
    destinationPort: view.getUint16(4 + 2 * n),
    dialTimeoutMs: view.getUint32(6 + 2 * n),
    window: view.getUint32(10 + 2 * n),
  };
}

/**
 * Encodes a RESULT frame's payload.
 *
 * @param r the fields
 * @returns the payload
 */
export function encodeResult(r: ResultFrame): Uint8Array {
  const text = encoder.encode(r.message);
  const out = new Uint8Array(5 + text.length);
  out[0] = r.code;
  new DataView(out.buffer).setUint32(1, r.window >>> 0);
  out.set(text, 5);
  return out;
}

/**
 * Decodes a RESULT frame's payload.
 *
 * @param p the payload
 * @returns the fields
 * @throws {MuxProtocolError} when it is malformed
 */
export function decodeResult(p: Uint8Array): ResultFrame {
  if (p.length < 5) throw new MuxProtocolError(`malformed RESULT frame (${p.length} bytes)`);
  return {
    code: p[0]!,
    window: new DataView(p.buffer, p.byteOffset, p.byteLength).getUint32(1),
    message: decoder.decode(p.subarray(5)),
  };
}

/**
 * A WINDOW frame's payload.
 *
 * @param increment the bytes taken since the last WINDOW
 * @returns the payload
 */
export function encodeWindow(increment: number): Uint8Array {
  const out = new Uint8Array(4);
  new DataView(out.buffer).setUint32(0, increment >>> 0);
  return out;
}

/**
 * Decodes a WINDOW frame's payload.
 *
 * @param p the payload
 * @returns the increment
 * @throws {MuxProtocolError} when it is malformed
 */
export function decodeWindow(p: Uint8Array): number {
  if (p.length !== 4) throw new MuxProtocolError(`malformed WINDOW frame (${p.length} bytes)`);
  return new DataView(p.buffer, p.byteOffset, p.byteLength).getUint32(0);
}

/**
 * A CLOSE frame's payload.
 *
 * @param reason empty for a graceful end, else why the flow was reset
 * @returns the payload
 */
export function encodeClose(reason: string): Uint8Array {
  return encoder.encode(reason);
}

/**
 * A CLOSE frame's reason.
 *
 * @param p the payload
 * @returns the reason, empty for a graceful end
 */
export function decodeClose(p: Uint8Array): string {
  return decoder.decode(p);
}

const EMPTY = new Uint8Array(0);

/**
 * Calls `frame` for every frame in a `MuxBatch`'s wire bytes. Payloads are
 * views into `batch`, not copies.
 *
 * @param batch a serialized `MuxBatch`
 * @param frame called per frame, in order
 * @throws {MuxProtocolError} when the bytes are not a batch of whole frames
 */
export function forEachFrame(
  batch: Uint8Array,
  frame: (flow: number, type: number, payload: Uint8Array) => void,
): void {
  if (batch.length === 0) return;
  if (batch[0] !== 0x0a) throw new MuxProtocolError("a MuxBatch must hold field 1 (frames) only");
  let length = 0, shift = 0, i = 1;
  for (;; i++) {
    const b = batch[i];
    if (b === undefined || shift > 28) throw new MuxProtocolError("truncated MuxBatch length");
    length += (b & 0x7f) * 2 ** shift;
    shift += 7;
    if (b < 0x80) break;
  }
  const start = i + 1, end = start + length;
  if (end !== batch.length) throw new MuxProtocolError("a MuxBatch's length does not match");
  const view = new DataView(batch.buffer, batch.byteOffset, batch.byteLength);
  for (let at = start; at < end;) {
    if (end - at < FRAME_HEADER) throw new MuxProtocolError("truncated frame header");
    const flow = view.getUint32(at);
    const type = batch[at + 4]!;
    const size = view.getUint32(at + 5);
    at += FRAME_HEADER;
    if (end - at < size) throw new MuxProtocolError("truncated frame payload");
    frame(flow, type, size === 0 ? EMPTY : batch.subarray(at, at + size));
    at += size;
  }
}

/**
 * The most frame bytes one `MuxBatch` carries (plus at most one frame): well
 * under the channel's 4 MiB message limit, and small enough to keep bytes
 * moving while a turn of the event loop produces many frames.
 */
export const MAX_BATCH = 1024 * 1024;

/**
 * Collects frames and hands them to `sink` as one `MuxBatch` at the end of
 * the current turn of the event loop (a microtask), so that frames produced
 * together travel together and none waits for a timer; a batch that reaches
 * {@linkcode MAX_BATCH} goes at once.
 */
export class FrameWriter {
  #sink: (batch: Buffer) => void;
  #flows: number[] = [];
  #types: number[] = [];
  #payloads: Uint8Array[] = [];
  #bytes = 0;
  #scheduled = false;
  #closed = false;

  /** @param sink gets each batch; its return value is not looked at */
  constructor(sink: (batch: Buffer) => void) {
    this.#sink = sink;
  }

  /** Bytes queued and not yet handed to the sink. */
  get pending(): number {
    return this.#bytes;
  }

  /**
   * Queues one frame.
   *
   * @param flow the flow id
   * @param type the frame type
   * @param payload the payload (kept by reference until the flush)
   */
  write(flow: number, type: FrameType, payload: Uint8Array = EMPTY): void {
    if (this.#closed) return;
    this.#flows.push(flow);
    this.#types.push(type);
    this.#payloads.push(payload);
    this.#bytes += FRAME_HEADER + payload.length;
    // A full batch goes now: one gRPC message must stay under the 4 MiB limit.
    if (this.#bytes >= MAX_BATCH) return this.flush();
    if (!this.#scheduled) {
      this.#scheduled = true;
      queueMicrotask(() => this.flush());
    }
  }

  /** Hands the queued frames to the sink now. */
  flush(): void {
    this.#scheduled = false;
    const count = this.#flows.length;
    if (count === 0 || this.#closed) return;
    const length = this.#bytes;
    let varint = 1;
    for (let v = length; v >= 0x80; v = Math.floor(v / 128)) varint++;
    const out = Buffer.allocUnsafe(1 + varint + length);
    out[0] = 0x0a;
    let at = 1;
    for (let v = length;; v = Math.floor(v / 128)) {
      if (v < 0x80) {
        out[at++] = v;
        break;
      }
      out[at++] = (v & 0x7f) | 0x80;
    }
    for (let i = 0; i < count; i++) {
      const payload = this.#payloads[i]!;
      out.writeUInt32BE(this.#flows[i]!, at);
      out[at + 4] = this.#types[i]!;
      out.writeUInt32BE(payload.length, at + 5);
      at += FRAME_HEADER;
      out.set(payload, at);
      at += payload.length;
    }
    this.#flows.length = this.#types.length = this.#payloads.length = 0;
    this.#bytes = 0;
    this.#sink(out);
  }

  /** Drops what is queued; later writes are ignored. */
  close(): void {
    this.#closed = true;
    this.#flows.length = this.#types.length = this.#payloads.length = 0;
    this.#bytes = 0;
  }
}

/** The gRPC (de)serialisers of `MuxBatch`: the bytes pass through as they are. */
export const muxSerialize = (b: Uint8Array): Buffer =>
  Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.byteLength);

/** See {@linkcode muxSerialize}. */
export const muxDeserialize = (b: Buffer): Uint8Array => b;
