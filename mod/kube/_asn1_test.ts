import { assertEquals, assertThrows } from "../../tests/_assert.ts";
import {
  boolean,
  integer,
  namedBits,
  octetString,
  oid,
  sequence,
  set,
  tlv,
  unsignedInteger,
  x509Time,
} from "./_asn1.ts";

const hex = (bytes: Uint8Array) => [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");

Deno.test("tlv() uses the short length form below 128 and the shortest long form above", () => {
  assertEquals(hex(tlv(0x04, new Uint8Array(127))).slice(0, 4), "047f");
  assertEquals(hex(tlv(0x04, new Uint8Array(128))).slice(0, 6), "048180");
  assertEquals(hex(tlv(0x04, new Uint8Array(256))).slice(0, 8), "04820100");
  assertEquals(tlv(0x04, new Uint8Array(70_000)).length, 70_000 + 5);
});

Deno.test("unsignedInteger() is minimal and stays positive", () => {
  assertEquals(hex(unsignedInteger(new Uint8Array([0, 0, 0x7f]))), "02017f");
  assertEquals(hex(unsignedInteger(new Uint8Array([0x80]))), "02020080");
  assertEquals(hex(unsignedInteger(new Uint8Array([0, 0x80]))), "02020080");
  assertEquals(hex(unsignedInteger(new Uint8Array([0, 0]))), "020100");
  assertEquals(hex(unsignedInteger(new Uint8Array([]))), "020100");
  assertEquals(hex(integer(0)), "020100");
  assertEquals(hex(integer(2)), "020102");
  assertEquals(hex(integer(256)), "02020100");
  assertThrows(() => integer(-1), RangeError);
});

Deno.test("oid() encodes arcs in base 128", () => {
  // ecdsa-with-SHA256, as in every certificate it signs (RFC 5758 3.2).
  assertEquals(hex(oid("1.2.840.10045.4.3.2")), "06082a8648ce3d040302");
  assertEquals(hex(oid("2.5.29.19")), "0603551d13");
  assertThrows(() => oid("1"), SyntaxError);
  assertThrows(() => oid("a.b"), SyntaxError);
});

Deno.test("namedBits() drops trailing zero bits and counts the unused ones", () => {
  // KeyUsage keyCertSign(5) | cRLSign(6), and digitalSignature(0) | keyEncipherment(2).
  assertEquals(hex(namedBits([5, 6])), "03020106");
  assertEquals(hex(namedBits([0, 2])), "030205a0");
  assertEquals(hex(namedBits([8])), "0303070080");
  assertEquals(hex(namedBits([])), "030100");
});

Deno.test("x509Time() uses UTCTime before 2050 and GeneralizedTime from 2050", () => {
  const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes.subarray(2));
  const before = x509Time(new Date("2049-12-31T23:59:59.999Z"));
  assertEquals([before[0], text(before)], [0x17, "491231235959Z"]);
  const after = x509Time(new Date("2050-01-01T00:00:00Z"));
  assertEquals([after[0], text(after)], [0x18, "20500101000000Z"]);
  const old = x509Time(new Date("1999-02-03T04:05:06Z"));
  assertEquals([old[0], text(old)], [0x17, "990203040506Z"]);
});

Deno.test("set() sorts its members and sequence() keeps their order", () => {
  const a = octetString(new Uint8Array([2])), b = octetString(new Uint8Array([1]));
  assertEquals(hex(set(a, b)), "3106" + hex(b) + hex(a));
  assertEquals(hex(sequence(a, b)), "3006" + hex(a) + hex(b));
  assertEquals(hex(sequence()), "3000");
  assertEquals(hex(boolean(true)), "0101ff");
  assertEquals(hex(boolean(false)), "010100");
});
