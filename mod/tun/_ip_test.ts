import { assertEquals, assertThrows } from "../../tests/_assert.ts";
import { formatIp, parseIp } from "./_ip.ts";

Deno.test("parseIp() reads IPv4 and IPv6 text and refuses the rest", () => {
  const table: Array<[string, number[] | undefined]> = [
    ["240.0.0.1", [240, 0, 0, 1]],
    ["0.0.0.0", [0, 0, 0, 0]],
    ["255.255.255.255", [255, 255, 255, 255]],
    ["::", new Array(16).fill(0)],
    ["::1", [...new Array(15).fill(0), 1]],
    ["2001:2::1", [0x20, 0x01, 0, 2, ...new Array(11).fill(0), 1]],
    ["2001:2:77::", [0x20, 0x01, 0, 2, 0, 0x77, ...new Array(10).fill(0)]],
    ["fe80::f55e:1d90:253f:204a", [
      0xfe,
      0x80,
      0,
      0,
      0,
      0,
      0,
      0,
      0xf5,
      0x5e,
      0x1d,
      0x90,
      0x25,
      0x3f,
      0x20,
      0x4a,
    ]],
    ["::ffff:198.18.0.1", [...new Array(10).fill(0), 0xff, 0xff, 198, 18, 0, 1]],
    ["1:2:3:4:5:6:7:8", [0, 1, 0, 2, 0, 3, 0, 4, 0, 5, 0, 6, 0, 7, 0, 8]],
    ["256.0.0.1", undefined],
    ["1.2.3", undefined],
    ["01.2.3.4", undefined],
    ["1.2.3.4.5", undefined],
    ["", undefined],
    ["1::2::3", undefined],
    ["1:2:3:4:5:6:7:8:9", undefined],
    ["1:2:3:4:5:6:7::8", undefined],
    ["12345::", undefined],
    ["g::", undefined],
    ["1:2:3:4:5:6:7", undefined],
  ];
  for (const [text, bytes] of table) {
    assertEquals(parseIp(text), bytes && new Uint8Array(bytes), text);
  }
});

Deno.test("formatIp() writes IPv6 in the RFC 5952 form", () => {
  for (
    const text of [
      "240.0.0.1",
      "::",
      "::1",
      "2001:2::1",
      "2001:2:77::",
      "2001:db8:0:1:1:1:1:1",
      "1:0:0:2::3",
      "fe80::1",
    ]
  ) {
    assertEquals(formatIp(parseIp(text)!), text);
  }
  // Upper case and uncompressed input come out canonical.
  assertEquals(formatIp(parseIp("2001:0DB8:0000:0000:0001:0000:0000:0001")!), "2001:db8::1:0:0:1");
  assertEquals(formatIp(parseIp("1:0:2:3:4:5:6:7")!), "1:0:2:3:4:5:6:7"); // one zero word stays
  assertThrows(() => formatIp(new Uint8Array(5)), RangeError, '"5"');
});
