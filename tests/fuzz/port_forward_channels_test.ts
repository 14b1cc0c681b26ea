/**
 * Fuzzes the port-forward channel reader (`mod/kube/port_forward_channels.ts`)
 * with sequences of messages from a hostile API server.
 *
 * An input is `u16 port` then records (`joinRecords`), each `u8 kind | bytes`:
 * kind 1 delivers the bytes as a text message (decoded as UTF-8), any other
 * as a binary one.
 *
 * @module
 */

import {
  type ChannelMessage,
  MAX_ERROR_TEXT,
  PortForwardChannels,
} from "../../mod/kube/port_forward_channels.ts";
import { fuzzTest, property } from "./_fuzz.ts";
import { concat, joinRecords, type Mutator, recordMutators, splitRecords } from "./_mutators.ts";

const decoder = new TextDecoder();

function check(input: Uint8Array): void {
  const port = (((input[0] ?? 0) << 8) | (input[1] ?? 0)) || 1;
  const channels = new PortForwardChannels(port);
  const seen = [false, false];
  let violation: ChannelMessage | undefined;
  for (const record of splitRecords(input.subarray(2))) {
    const text = record[0] === 1;
    const message = text ? decoder.decode(record.subarray(1)) : record.subarray(1);
    let r: ChannelMessage;
    try {
      r = channels.read(message);
    } catch (error) {
      property(false, `read() threw ${(error as Error)?.name}: ${(error as Error)?.message}`);
    }
    if (violation) {
      property(r === violation, "after a violation, read() answered something else");
      continue;
    }
    const bytes = typeof message === "string" ? undefined : message;
    const channel = bytes?.[0];
    switch (r.kind) {
      case "violation":
        violation = r;
        property(r.reason !== "", "a violation without a reason");
        property(channels.violation === r.reason, "violation getter");
        break;
      case "port":
        property(bytes !== undefined && bytes.length === 3, "a port header that is not 3 bytes");
        property(r.channel === channel && !seen[channel], "a second header, or on another channel");
        property((bytes[1]! | (bytes[2]! << 8)) === port, "a header naming another port accepted");
        seen[r.channel] = true;
        break;
      case "data":
        property(bytes !== undefined && channel === 0 && seen[0], "data before channel 0's header");
        property(r.bytes.length > 0, "empty data handed over");
        property(
          r.bytes.buffer === bytes.buffer && r.bytes.byteOffset === bytes.byteOffset + 1 &&
            r.bytes.length === bytes.length - 1,
          "data is not the message after its channel byte",
        );
        break;
      case "error":
        property(
          bytes !== undefined && channel === 1 && seen[1],
          "an error before channel 1's header",
        );
        property(bytes.length - 1 <= MAX_ERROR_TEXT, "an error text over the limit accepted");
        property(r.text !== "" && r.text === r.text.trim(), "an error text not trimmed");
        property(
          // deno-lint-ignore no-control-regex
          !/[\u0000-\u001f\u007f-\u009f]/.test(r.text),
          "control characters in an error text",
        );
        break;
      case "none":
        property(
          bytes !== undefined &&
            (bytes.length === 0 || (bytes.length >= 1 && channel! <= 1 && seen[channel!])),
          "a message was dropped as nothing",
        );
        break;
    }
    // What must be a violation.
    if (r.kind !== "violation") {
      property(typeof message !== "string", "a text message accepted");
      property(channel === undefined || channel <= 1, `channel ${channel} accepted`);
    }
  }
}

function seeds(): Uint8Array[] {
  const port = 8081;
  const header = (channel: number) => new Uint8Array([0, channel, port & 0xff, port >> 8]);
  const binary = (channel: number, payload: string | Uint8Array) =>
    concat(
      new Uint8Array([0, channel]),
      typeof payload === "string" ? new TextEncoder().encode(payload) : payload,
    );
  const start = new Uint8Array([port >> 8, port & 0xff]);
  return [
    concat(
      start,
      joinRecords([header(0), header(1), binary(0, "GET / HTTP/1.1\r\n"), binary(0, "")]),
    ),
    concat(
      start,
      joinRecords([
        header(0),
        header(1),
        binary(1, "error forwarding port 8081 to pod traffic-manager-0, uid : dial refused"),
      ]),
    ),
    concat(start, joinRecords([header(1), header(0), binary(0, new Uint8Array(600).fill(3))])),
    concat(start, joinRecords([new TextEncoder().encode("\u0001" + "0AAA"), header(0)])),
    concat(start, joinRecords([header(0), binary(2, "x"), binary(1, "\x1b[31mred")])),
  ];
}

/** Channel bytes and port headers at the values that matter. */
const channelBytes: Mutator = (b, r) => {
  const records = splitRecords(b.subarray(2));
  if (records.length === 0) return b.slice();
  const i = Math.floor(r() * records.length);
  const rec = records[i]!.slice();
  if (rec.length >= 2) rec[1] = [0, 1, 2, 3, 0xff][Math.floor(r() * 5)]!;
  records[i] = rec;
  return concat(b.subarray(0, 2), joinRecords(records));
};

const records = recordMutators();
fuzzTest(
  "port_forward_channels",
  "read() never throws; data comes only after channel 0's header, as a view of the message; every header names the port; anything else on the wire is a violation that stays",
  () => ({
    seeds: seeds(),
    check,
    mutators: [
      channelBytes,
      ...records.map((m): Mutator => (b, r, pool) =>
        concat(b.subarray(0, 2), m(b.subarray(2), r, pool.map((p) => p.subarray(2))))
      ),
    ],
    maxLength: 8192,
  }),
);
