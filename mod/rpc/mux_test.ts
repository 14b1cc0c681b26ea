import { assert, assertEquals, assertThrows } from "../../tests/_assert.ts";
import {
  decodeClose,
  decodeOpen,
  decodeResult,
  decodeWindow,
  encodeClose,
  encodeOpen,
  encodeResult,
  encodeWindow,
  forEachFrame,
  FRAME_HEADER,
  FrameType,
  FrameWriter,
  MAX_BATCH,
  MuxProtocolError,
} from "./mux.ts";
import { fromBinary, toBinary } from "@bufbuild/protobuf";
import { MuxBatchSchema } from "./service.ts";

type Seen = Array<[number, number, number[]]>;

function frames(batch: Uint8Array): Seen {
  const seen: Seen = [];
  forEachFrame(batch, (flow, type, payload) => seen.push([flow, type, [...payload]]));
  return seen;
}

async function batches(write: (w: FrameWriter) => void): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  const writer = new FrameWriter((b) => out.push(b));
  write(writer);
  await Promise.resolve();
  return out;
}

Deno.test("mux: OPEN, RESULT, WINDOW and CLOSE payloads round-trip, IPv4 and IPv6", () => {
  for (const n of [4, 16]) {
    const open = {
      protocol: 1,
      sourceIp: new Uint8Array(n).fill(7),
      sourcePort: 40_000,
      destinationIp: new Uint8Array(n).fill(9),
      destinationPort: 443,
      dialTimeoutMs: 5000,
      window: 1 << 20,
    };
    assertEquals(decodeOpen(encodeOpen(open)), open);
    const tagged = { ...open, protocol: 16, tag: "default/web/8080 ✓" };
    assertEquals(decodeOpen(encodeOpen(tagged)), tagged);
    // An empty tag is no tag.
    assertEquals(decodeOpen(encodeOpen({ ...open, tag: "" })), open);
  }
  const result = { code: 2, window: 65_536, message: "connect ECONNREFUSED 198.18.0.5:81 ✓" };
  assertEquals(decodeResult(encodeResult(result)), result);
  assertEquals(decodeWindow(encodeWindow(0xffff_ffff)), 0xffff_ffff);
  assertEquals(decodeClose(encodeClose("reset by peer")), "reset by peer");
  assertEquals(decodeClose(encodeClose("")), "");
});

Deno.test("mux: malformed payloads are errors, not guesses", () => {
  assertThrows(() => decodeOpen(new Uint8Array(5)), MuxProtocolError, "malformed OPEN");
  assertThrows(() => decodeOpen(new Uint8Array([1, 6, ...new Uint8Array(24)])), MuxProtocolError);
  const fixed = encodeOpen({
    protocol: 16,
    sourceIp: new Uint8Array(4),
    sourcePort: 1,
    destinationIp: new Uint8Array(4),
    destinationPort: 1,
    dialTimeoutMs: 0,
    window: 0,
  });
  // A tag's length byte that promises more (or fewer) bytes than follow, a zero
  // length with bytes after it, and a tag that is not UTF-8.
  for (const tail of [[5, 1, 2], [1, 1, 2], [0, 1], [2, 0xc3, 0x28]]) {
    assertThrows(
      () => decodeOpen(new Uint8Array([...fixed, ...tail])),
      MuxProtocolError,
      undefined,
    );
  }
  assertThrows(() => decodeResult(new Uint8Array(4)), MuxProtocolError, "malformed RESULT");
  assertThrows(() => decodeWindow(new Uint8Array(3)), MuxProtocolError, "malformed WINDOW");
  const v4 = new Uint8Array(4), v6 = new Uint8Array(16);
  assertThrows(() =>
    encodeOpen({
      protocol: 1,
      sourceIp: v4,
      sourcePort: 1,
      destinationIp: v6,
      destinationPort: 1,
      dialTimeoutMs: 0,
      window: 0,
    })
  );
});

Deno.test("mux: frames written in one turn travel as one MuxBatch, in order", async () => {
  const out = await batches((w) => {
    w.write(1, FrameType.Data, new Uint8Array([1, 2, 3]));
    w.write(2, FrameType.Fin);
    w.write(0xffff_fffe, FrameType.Window, encodeWindow(9));
  });
  assertEquals(out.length, 1);
  assertEquals(frames(out[0]!), [
    [1, FrameType.Data, [1, 2, 3]],
    [2, FrameType.Fin, []],
    [0xffff_fffe, FrameType.Window, [0, 0, 0, 9]],
  ]);
});

Deno.test("mux: a batch is a valid MuxBatch protobuf, whatever the length's varint size", async () => {
  for (const size of [0, 100, 200, 20_000, 3_000_000]) {
    const payload = new Uint8Array(size).map((_, i) => i % 251);
    const [batch] = await batches((w) => w.write(5, FrameType.Data, payload));
    const decoded = fromBinary(MuxBatchSchema, batch!);
    assertEquals(decoded.frames.length, 9 + size);
    const seen: Uint8Array[] = [];
    forEachFrame(toBinary(MuxBatchSchema, decoded), (_f, _t, p) => seen.push(p));
    assertEquals(seen[0]!.length, size);
    assertEquals(seen[0]!.at(-1), size === 0 ? undefined : (size - 1) % 251);
  }
  assertEquals(frames(new Uint8Array(0)), []);
});

Deno.test("mux: truncated or foreign batches are refused with a reason", () => {
  const good = new Uint8Array([0x0a, 9, 0, 0, 0, 1, FrameType.Fin, 0, 0, 0, 0]);
  assertEquals(frames(good), [[1, FrameType.Fin, []]]);
  assertThrows(() => frames(good.subarray(0, 10)), MuxProtocolError, "length does not match");
  assertThrows(() => frames(new Uint8Array([0x12, 0])), MuxProtocolError, "field 1");
  assertThrows(() => frames(new Uint8Array([0x0a, 0x80])), MuxProtocolError, "truncated MuxBatch");
  assertThrows(
    () => frames(new Uint8Array([0x0a, 5, 0, 0, 0, 1, 3])),
    MuxProtocolError,
    "truncated frame header",
  );
  assertThrows(
    () => frames(new Uint8Array([0x0a, 10, 0, 0, 0, 1, 3, 0, 0, 0, 2, 7])),
    MuxProtocolError,
    "truncated frame payload",
  );
});

Deno.test("mux: a closed writer drops what it holds and takes no more", async () => {
  const out = await batches((w) => {
    w.write(1, FrameType.Data, new Uint8Array(10));
    w.close();
    w.write(2, FrameType.Data, new Uint8Array(10));
    assertEquals(w.pending, 0);
  });
  assertEquals(out, []);
});

Deno.test("mux: a turn that writes more than MAX_BATCH sends several batches, in order, each under the message limit", async () => {
  const part = new Uint8Array(256 * 1024);
  const out = await batches((w) => {
    for (let i = 0; i < 24; i++) w.write(i, FrameType.Data, new Uint8Array(part.length).fill(i));
  });
  assert(out.length >= 6, `${out.length} batches`);
  const flows: number[] = [];
  for (const batch of out) {
    assert(batch.length <= MAX_BATCH + FRAME_HEADER + part.length + 8, `${batch.length} bytes`);
    forEachFrame(batch, (flow, _t, payload) => {
      flows.push(flow);
      assertEquals(payload[0], flow);
    });
  }
  assertEquals(flows, Array.from({ length: 24 }, (_, i) => i));
});
