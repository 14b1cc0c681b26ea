/**
 * Fuzzes the mux framing (`mod/rpc/mux.ts`): `forEachFrame` over a
 * `MuxBatch`'s bytes and the payload decoders, against a naive reference
 * parser written from the one-line wire format.
 *
 * @module
 */

import { fromBinary } from "@bufbuild/protobuf";
import type { Buffer } from "node:buffer";
import {
  decodeClose,
  decodeOpen,
  decodeResult,
  decodeWindow,
  encodeClose,
  encodeOpen,
  encodeResult,
  encodeWindow,
  FLOW_WINDOW,
  forEachFrame,
  FRAME_HEADER,
  FrameType,
  FrameWriter,
  MuxProtocol,
  MuxProtocolError,
} from "../../mod/rpc/mux.ts";
import { MuxBatchSchema } from "../../mod/rpc/service.ts";
import { fuzzTest, property } from "./_fuzz.ts";
import { below, interestingNumber, type Mutator, pick } from "./_mutators.ts";

interface Frame {
  flow: number;
  type: number;
  payload: Uint8Array;
}

/**
 * The reference: `0x0a`, a varint of at most 5 bytes equal to the rest's
 * length, then `u32 flow | u8 type | u32 length | payload` to the end.
 */
function reference(batch: Uint8Array): Frame[] | "malformed" {
  if (batch.length === 0) return [];
  if (batch[0] !== 0x0a) return "malformed";
  let length = 0, i = 1;
  for (let shift = 0;; shift += 7, i++) {
    if (i >= batch.length || i > 5) return "malformed";
    length += (batch[i]! & 0x7f) * 2 ** shift;
    if (batch[i]! < 0x80) break;
  }
  if (i + 1 + length !== batch.length) return "malformed";
  const frames: Frame[] = [];
  const u32 = (at: number) =>
    batch[at]! * 2 ** 24 + (batch[at + 1]! << 16) + (batch[at + 2]! << 8) + batch[at + 3]!;
  for (let at = i + 1; at < batch.length;) {
    if (batch.length - at < 9) return "malformed";
    const size = u32(at + 5);
    if (batch.length - at - 9 < size) return "malformed";
    frames.push({
      flow: u32(at),
      type: batch[at + 4]!,
      payload: batch.slice(at + 9, at + 9 + size),
    });
    at += 9 + size;
  }
  return frames;
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

const strictUtf8 = new TextDecoder("utf-8", { fatal: true });
function isUtf8(bytes: Uint8Array): boolean {
  try {
    strictUtf8.decode(bytes);
    return true;
  } catch {
    return false;
  }
}

/** Calls a decoder: its value, or `undefined` when it threw the documented MuxProtocolError. */
function decodes<T>(what: string, decode: () => T): T | undefined {
  try {
    return decode();
  } catch (error) {
    property(
      error instanceof MuxProtocolError,
      `${what} threw ${(error as Error)?.name}: ${(error as Error)?.message}, not MuxProtocolError`,
    );
    return undefined;
  }
}

function checkPayload(type: number, payload: Uint8Array): void {
  const open = decodes("decodeOpen()", () => decodeOpen(payload));
  if (open) property(same(encodeOpen(open), payload), "an OPEN payload does not round-trip");
  const result = decodes("decodeResult()", () => decodeResult(payload));
  if (result && isUtf8(payload.subarray(5))) {
    property(same(encodeResult(result), payload), "a RESULT payload does not round-trip");
  }
  const window = decodes("decodeWindow()", () => decodeWindow(payload));
  if (window !== undefined) {
    property(same(encodeWindow(window), payload), "a WINDOW payload does not round-trip");
  }
  const reason = decodes("decodeClose()", () => decodeClose(payload));
  property(reason !== undefined, "decodeClose() threw");
  if (isUtf8(payload)) {
    property(same(encodeClose(reason), payload), "a CLOSE payload does not round-trip");
  }
  // Sizes the decoders accept, and only those.
  if (type === FrameType.Window) {
    property((window !== undefined) === (payload.length === 4), "WINDOW size");
  }
  if (type === FrameType.Result) {
    property((result !== undefined) === (payload.length >= 5), "RESULT size");
  }
}

function check(batch: Uint8Array): void {
  const expected = reference(batch);
  const frames: Frame[] = [];
  let threw: unknown;
  try {
    forEachFrame(batch, (flow, type, payload) => {
      // A view into the batch, inside it: nothing copied, nothing past the end.
      if (payload.length > 0) {
        property(payload.buffer === batch.buffer, "a payload is not a view into the batch");
        property(
          payload.byteOffset >= batch.byteOffset + FRAME_HEADER &&
            payload.byteOffset + payload.length <= batch.byteOffset + batch.length,
          `a payload lies outside the batch (offset ${payload.byteOffset}, ${payload.length} bytes)`,
        );
      }
      frames.push({ flow, type, payload: payload.slice() });
    });
  } catch (error) {
    if (error instanceof Error && error.name === "PropertyError") throw error;
    threw = error;
  }
  if (threw !== undefined) {
    property(
      threw instanceof MuxProtocolError,
      `forEachFrame() threw ${(threw as Error)?.name}: ${(threw as Error)?.message}`,
    );
    property(expected === "malformed", `forEachFrame() refused a batch the reference reads`);
    return;
  }
  property(expected !== "malformed", "forEachFrame() read a batch the reference refuses");
  property(frames.length === expected.length, "the frames differ from the reference's");
  for (const [i, f] of frames.entries()) {
    const e = expected[i]!;
    property(
      f.flow === e.flow && f.type === e.type && same(f.payload, e.payload),
      `frame ${i} differs from the reference's`,
    );
    checkPayload(f.type, f.payload);
  }
  if (batch.length === 0) return;
  // protobuf-es reads the same batch as the same bytes.
  const message = fromBinary(MuxBatchSchema, batch);
  property(
    same(message.frames, batch.subarray(batch.length - message.frames.length)),
    "protobuf view",
  );
  // Written again by FrameWriter: the same bytes (when the length varint was minimal).
  let written: Buffer | undefined;
  const writer = new FrameWriter((b) => written = b);
  for (const f of frames) writer.write(f.flow, f.type as FrameType, f.payload);
  writer.flush();
  const body = message.frames.length;
  let minimal = 1;
  for (let v = body; v >= 0x80; v = Math.floor(v / 128)) minimal++;
  if (batch.length === 1 + minimal + body && frames.length > 0) {
    property(written !== undefined && same(written, batch), "FrameWriter wrote other bytes");
  }
}

/** A frame's flow id, type or length field set to an edge value, the batch's length kept right. */
const frameFields: Mutator = (b, r) => {
  const frames = reference(b);
  if (frames === "malformed" || frames.length === 0) return b.slice();
  const f = frames[below(r, frames.length)]!;
  const choice = below(r, 3);
  if (choice === 0) f.flow = interestingNumber(r);
  else if (choice === 1) f.type = pick(r, [0, 1, 2, 3, 4, 5, 6, 7, 8, 0xff]);
  else f.payload = f.payload.subarray(0, below(r, f.payload.length + 1));
  let out: Uint8Array = b;
  const writer = new FrameWriter((batch) => out = batch);
  for (const x of frames) writer.write(x.flow, x.type as FrameType, x.payload);
  writer.flush();
  return out;
};

function seeds(): Uint8Array[] {
  const batches: Uint8Array[] = [];
  const writer = new FrameWriter((b) => batches.push(new Uint8Array(b)));
  const v4 = (a: number, b: number, c: number, d: number) => new Uint8Array([a, b, c, d]);
  writer.write(
    1,
    FrameType.Open,
    encodeOpen({
      protocol: MuxProtocol.Tcp,
      sourceIp: v4(240, 0, 0, 2),
      sourcePort: 40000,
      destinationIp: v4(198, 18, 0, 10),
      destinationPort: 80,
      dialTimeoutMs: 5000,
      window: FLOW_WINDOW,
    }),
  );
  writer.write(1, FrameType.Data, new TextEncoder().encode("GET / HTTP/1.1\r\n\r\n"));
  writer.write(1, FrameType.Fin);
  writer.flush();
  writer.write(
    2,
    FrameType.Open,
    encodeOpen({
      protocol: MuxProtocol.Udp,
      sourceIp: new Uint8Array(16).fill(0xfd, 0, 1),
      sourcePort: 5353,
      destinationIp: new Uint8Array(16).fill(0x20, 0, 1),
      destinationPort: 53,
      dialTimeoutMs: 0,
      window: 0,
    }),
  );
  writer.write(1, FrameType.Result, encodeResult({ code: 1, window: FLOW_WINDOW, message: "ok" }));
  writer.write(1, FrameType.Window, encodeWindow(FLOW_WINDOW / 4));
  writer.write(1, FrameType.Close, encodeClose("reset by peer"));
  writer.write(3, FrameType.Dns, new Uint8Array([0x12, 0x34, 1, 0, 0, 1, 0, 0, 0, 0, 0, 0]));
  writer.flush();
  writer.write(9, FrameType.Data, new Uint8Array(300).fill(7)); // a two-byte length varint
  writer.flush();
  return [...batches, new Uint8Array(0), new Uint8Array([0x0a, 0])];
}

fuzzTest(
  "mux_frames",
  "forEachFrame() and the decoders return or throw MuxProtocolError only, agree with a reference, deliver views inside the batch, and valid frames round-trip",
  () => ({ seeds: seeds(), check, mutators: [frameFields], maxLength: 2048 }),
);
