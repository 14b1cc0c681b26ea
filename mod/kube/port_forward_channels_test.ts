/**
 * The port-forward channel reader, as a table of message sequences from the
 * API server and what each message comes to.
 */

import { assertEquals, assertThrows } from "../../tests/_assert.ts";
import {
  type ChannelMessage,
  MAX_ERROR_TEXT,
  PortForwardChannels,
} from "./port_forward_channels.ts";

const PORT = 8081;
const HEADER = [PORT & 0xff, PORT >> 8];
const bytes = (...b: number[]) => new Uint8Array(b);
const text = (s: string) => new TextEncoder().encode(s);
const on = (channel: number, payload: Uint8Array | number[]) =>
  new Uint8Array([channel, ...payload]);

/** Reads `messages` in order; returns what each came to, data as text. */
function readAll(messages: (Uint8Array | string)[]): unknown[] {
  const channels = new PortForwardChannels(PORT);
  return messages.map((m) => {
    const r: ChannelMessage = channels.read(m);
    return r.kind === "data" ? { data: new TextDecoder().decode(r.bytes) } : r;
  });
}

const port = (channel: 0 | 1) => ({ kind: "port", channel });
const violation = (reason: string) => ({ kind: "violation", reason });

const CASES: [string, (Uint8Array | string)[], unknown[]][] = [
  [
    "the kubelet's sequence: both headers, data, an error text",
    [
      on(0, HEADER),
      on(1, HEADER),
      on(0, text("hello")),
      on(1, text("error forwarding port 8081\n")),
    ],
    [port(0), port(1), { data: "hello" }, { kind: "error", text: "error forwarding port 8081" }],
  ],
  [
    "empty messages, empty data and blank error texts are nothing",
    [bytes(), on(0, HEADER), on(0, []), on(1, HEADER), on(1, text(" \r\n"))],
    [{ kind: "none" }, port(0), { kind: "none" }, port(1), { kind: "none" }],
  ],
  [
    "data may come before the error channel's header",
    [on(0, HEADER), on(0, text("x")), on(1, HEADER)],
    [port(0), { data: "x" }, port(1)],
  ],
  [
    "a header naming another port is a violation, and so is all that follows",
    [on(0, [0x50, 0x00]), on(0, HEADER), on(0, text("late"))],
    [
      violation("channel 0 names port 80, not the forwarded port 8081"),
      violation("channel 0 names port 80, not the forwarded port 8081"),
      violation("channel 0 names port 80, not the forwarded port 8081"),
    ],
  ],
  [
    "data where the header should be is a violation",
    [on(0, text("hello"))],
    [violation("the first message on channel 0 is not a 2-byte port header (5 bytes)")],
  ],
  [
    "a header with bytes after it is a violation",
    [on(1, [...HEADER, 0])],
    [violation("the first message on channel 1 is not a 2-byte port header (3 bytes)")],
  ],
  [
    "a channel above 1 is a violation",
    [on(0, HEADER), on(2, HEADER)],
    [port(0), violation("a message on channel 2: one port has only 0 (data) and 1 (error)")],
  ],
  [
    "a text message is a violation",
    [on(0, HEADER), "0aGVsbG8="],
    [port(0), violation("a text message on the binary channel protocol (9 chars)")],
  ],
  [
    "an error text over the limit is a violation; one at the limit is not",
    [
      on(1, HEADER),
      on(1, new Uint8Array(MAX_ERROR_TEXT).fill(0x61)),
      on(1, new Uint8Array(MAX_ERROR_TEXT + 1)),
    ],
    [
      port(1),
      { kind: "error", text: "a".repeat(MAX_ERROR_TEXT) },
      violation(`an error text of ${MAX_ERROR_TEXT + 1} bytes (at most ${MAX_ERROR_TEXT})`),
    ],
  ],
  [
    "control characters in an error text become spaces; invalid UTF-8 is replaced",
    [on(1, HEADER), on(1, bytes(0x1b, 0x5b, 0x32, 0x4a, 0x6f, 0x6b, 0x0a, 0x21, 0xff))],
    [port(1), { kind: "error", text: "[2Jok !\ufffd" }],
  ],
];

for (const [name, messages, expected] of CASES) {
  Deno.test(`PortForwardChannels.read(): ${name}`, () => {
    assertEquals(readAll(messages), expected);
  });
}

Deno.test("PortForwardChannels.read() hands data over as a view, not a copy", () => {
  const channels = new PortForwardChannels(PORT);
  channels.read(on(0, HEADER));
  const message = on(0, text("abc"));
  const r = channels.read(message);
  assertEquals(r.kind === "data" && r.bytes.buffer === message.buffer && r.bytes.byteOffset, 1);
});

Deno.test("PortForwardChannels.violation says why once the protocol is broken", () => {
  const channels = new PortForwardChannels(PORT);
  assertEquals(channels.violation, undefined);
  channels.read(on(5, []));
  assertEquals(
    channels.violation,
    "a message on channel 5: one port has only 0 (data) and 1 (error)",
  );
});

Deno.test("new PortForwardChannels() refuses what is not a port", () => {
  for (const bad of [0, -1, 65536, 80.5, NaN]) {
    assertThrows(() => new PortForwardChannels(bad), RangeError, "is not a port");
  }
});
