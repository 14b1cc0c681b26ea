import { assertEquals, assertThrows } from "../../tests/_assert.ts";
import {
  checkSnaplen,
  LINKTYPE_RAW,
  MAX_SNAPLEN,
  pcapFileHeader,
  pcapRecord,
  pcapRecordLength,
  pcapRecords,
  readPcap,
  writePcapRecord,
} from "./pcap.ts";

Deno.test("pcapFileHeader() lays out the 2.4 header, little-endian, for raw IP", () => {
  assertEquals(
    pcapFileHeader(65535),
    new Uint8Array([
      ...[0xd4, 0xc3, 0xb2, 0xa1], // magic: microseconds, little-endian
      ...[2, 0, 4, 0], // version 2.4
      ...[0, 0, 0, 0], // thiszone
      ...[0, 0, 0, 0], // sigfigs
      ...[0xff, 0xff, 0, 0], // snaplen 65535
      ...[101, 0, 0, 0], // LINKTYPE_RAW
    ]),
  );
  assertEquals(new DataView(pcapFileHeader(96, 228).buffer).getUint32(20, true), 228);
});

Deno.test("pcapRecord() writes seconds, microseconds, captured and original lengths, then the bytes", () => {
  const packet = Uint8Array.from({ length: 10 }, (_, i) => i + 1);
  const record = pcapRecord(1_700_000_000_123.5, packet, 65535);
  assertEquals(
    record,
    new Uint8Array([
      ...[0x00, 0xf1, 0x53, 0x65], // 1_700_000_000 s
      ...[0x6c, 0xe2, 0x01, 0x00], // 123_500 µs
      ...[10, 0, 0, 0], // captured
      ...[10, 0, 0, 0], // original
      ...packet,
    ]),
  );
});

Deno.test("pcapRecord() truncates at the snap length and keeps the original length", () => {
  const packet = new Uint8Array(1500).fill(7);
  const record = pcapRecord(0, packet, 96);
  assertEquals(record.length, 16 + 96);
  assertEquals(pcapRecordLength(1500, 96), 112);
  assertEquals(pcapRecordLength(40, 96), 56);
  const [r] = pcapRecords(record, 96);
  assertEquals([r!.data.length, r!.originalLength], [96, 1500]);
});

Deno.test("writePcapRecord() writes in place and refuses a buffer without room", () => {
  const out = new Uint8Array(100);
  assertEquals(writePcapRecord(out, 10, 2500, new Uint8Array([1, 2, 3]), 65535), 19);
  const [r] = pcapRecords(out.subarray(10, 29), 65535);
  assertEquals([r!.seconds, r!.micros, [...r!.data]], [2, 500_000, [1, 2, 3]]);
  assertThrows(() => writePcapRecord(out, 90, 0, new Uint8Array(20), 65535), RangeError);
});

Deno.test("pcapRecords() reads back-to-back records and readPcap() a whole file", () => {
  const a = pcapRecord(1000, new Uint8Array([0x45, 1]), 65535);
  const b = pcapRecord(2000, new Uint8Array([0x60, 2, 3]), 65535);
  const file = new Uint8Array([...pcapFileHeader(65535), ...a, ...b]);
  const read = readPcap(file);
  assertEquals([read.snaplen, read.linktype], [65535, LINKTYPE_RAW]);
  assertEquals(read.records.map((r) => [r.seconds, [...r.data]]), [[1, [0x45, 1]], [2, [
    0x60,
    2,
    3,
  ]]]);
  assertEquals(pcapRecords(new Uint8Array(0), 65535), []);
});

Deno.test("pcapRecords() refuses records that break the format, saying where", () => {
  const good = pcapRecord(0, new Uint8Array(20), 65535);
  const set = (at: number, value: number) => {
    const r = good.slice();
    new DataView(r.buffer).setUint32(at, value, true);
    return r;
  };
  const cases: Array<[Uint8Array, RegExp]> = [
    [good.subarray(0, 10), /header is cut short/],
    [good.subarray(0, 30), /data is cut short/],
    [set(4, 1_000_000), /1000000 microseconds/],
    [set(8, 30), /30 bytes captured of a 20-byte packet/],
    [set(8, 70_000), /over the snap length/],
    [set(12, 1 << 21), /-byte packet/],
  ];
  for (const [bytes, message] of cases) {
    const e = assertThrows(() => pcapRecords(bytes, 65535), SyntaxError);
    assertEquals(message.test((e as Error).message), true, (e as Error).message);
  }
  const second = new Uint8Array([...good, ...good.subarray(0, 5)]);
  assertThrows(() => pcapRecords(second, 65535), SyntaxError, "at byte 36");
  assertThrows(() => readPcap(new Uint8Array(24)), SyntaxError, "magic");
  assertThrows(() => readPcap(new Uint8Array(3)), SyntaxError);
});

Deno.test("pcapRecords() throws only SyntaxError and stays inside the bytes on random input", () => {
  let seed = 7;
  const next = () => (seed = (seed * 1103515245 + 12345) >>> 0) >>> 16;
  for (let i = 0; i < 2000; i++) {
    const bytes = Uint8Array.from({ length: next() % 80 }, () => next() & 0xff);
    // Small lengths, so that some random headers are valid.
    for (let at = 8; at + 8 <= bytes.length; at += 24) bytes[at + 1] = bytes[at + 2] = 0;
    try {
      for (const r of pcapRecords(bytes, 65535)) {
        if (r.data.buffer !== bytes.buffer) throw new Error("a copy");
      }
    } catch (error) {
      if (!(error instanceof SyntaxError)) throw error;
    }
  }
});

Deno.test("checkSnaplen() takes 96 to 262144", () => {
  assertEquals(checkSnaplen(96), 96);
  assertEquals(checkSnaplen(MAX_SNAPLEN), MAX_SNAPLEN);
  for (const bad of [95, MAX_SNAPLEN + 1, 1.5, NaN]) {
    assertThrows(() => checkSnaplen(bad), RangeError);
  }
});
