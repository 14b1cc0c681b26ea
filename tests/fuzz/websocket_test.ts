/**
 * Fuzzes the WebSocket client's frame parser (`mod/kube/websocket.ts`) with
 * server-to-client byte streams from a raw server on 127.0.0.1: fragments,
 * control frames, masked frames, bad opcodes, huge lengths, the stream cut
 * into chunks at varied places (the first one sometimes in the same write as
 * the 101 answer). The outcome is checked against a reference parser written
 * from RFC 6455 5.2 and the client's documented limits.
 *
 * An input is `u8 split | stream`: `split` seeds where the stream is cut.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { connectWebSocket } from "../../mod/kube/websocket.ts";
import { prng } from "../_prng.ts";
import { fuzzTest, property } from "./_fuzz.ts";
import { below, concat, interestingNumber, type Mutator } from "./_mutators.ts";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const MAX_MESSAGE = 64 * 1024 * 1024;
const encoder = new TextEncoder();

type Message = { text: string } | { binary: Uint8Array };

interface Outcome {
  messages: Message[];
  /** Payloads of pings the client must answer, in order. */
  pings: Uint8Array[];
  /** The close frame's payload, when the stream closed cleanly. */
  close: Uint8Array | undefined;
  /** What `closed` resolves with: "" for a clean close, else why. */
  why: string | RegExp;
}

interface RawFrame {
  fin: boolean;
  op: number;
  masked: boolean;
  /** Offset of the frame's first byte, of its length byte, and its total size. */
  at: number;
  size: number;
  payload: Uint8Array;
}

/** Reads frames until one is cut short; a length too big to read is returned as `over`. */
function frames(stream: Uint8Array): { frames: RawFrame[]; over?: string } {
  const out: RawFrame[] = [];
  const b = Buffer.from(stream.buffer, stream.byteOffset, stream.byteLength);
  for (let at = 0; at + 2 <= b.length;) {
    const fin = (b[at]! & 0x80) !== 0, op = b[at]! & 0x0f, masked = (b[at + 1]! & 0x80) !== 0;
    let length = b[at + 1]! & 0x7f, head = 2;
    if (length === 126) {
      if (at + 4 > b.length) break;
      length = b.readUInt16BE(at + 2);
      head = 4;
    } else if (length === 127) {
      if (at + 10 > b.length) break;
      if (b.readUInt32BE(at + 2) !== 0) {
        return { frames: out, over: "a WebSocket frame over 4 GiB" };
      }
      length = b.readUInt32BE(at + 6);
      head = 10;
    }
    if (length > MAX_MESSAGE) return { frames: out, over: "a WebSocket frame over 64 MiB" };
    // RFC 6455 5.5: a control frame carries at most 125 bytes, unfragmented.
    if ((op === 8 || op === 9 || op === 10) && (length > 125 || !fin)) {
      return { frames: out, over: "a WebSocket control frame over 125 bytes or fragmented" };
    }
    const key = masked ? b.subarray(at + head, at + head + 4) : undefined;
    if (masked) head += 4;
    if (at + head + length > b.length) break;
    const payload = stream.slice(at + head, at + head + length); // a copy (Buffer.slice is a view)
    if (key) { for (let i = 0; i < payload.length; i++) payload[i]! ^= key[i & 3]!; }
    out.push({ fin, op, masked, at, size: head + length, payload });
    at += head + length;
  }
  return { frames: out };
}

/** What the client must make of a stream the server then ends. */
function reference(stream: Uint8Array): Outcome {
  const parsed = frames(stream);
  const outcome: Outcome = { messages: [], pings: [], close: undefined, why: "" };
  let fragments: Uint8Array[] | undefined;
  let fragmentOp = 0;
  let total = 0;
  const deliver = (op: number, payload: Uint8Array) =>
    outcome.messages.push(
      op === 1 ? { text: Buffer.from(payload).toString("utf8") } : { binary: payload },
    );
  for (const f of parsed.frames) {
    switch (f.op) {
      case 9:
        outcome.pings.push(f.payload);
        continue;
      case 10:
        continue;
      case 8: {
        const p = Buffer.from(f.payload);
        const code = p.length >= 2 ? p.readUInt16BE(0) : 1005;
        outcome.close = p.subarray(0, 2);
        outcome.why = code === 1000 || code === 1005
          ? ""
          : `closed with ${code} ${p.subarray(2).toString("utf8")}`.trim();
        return outcome;
      }
      case 1:
      case 2:
        if (fragments) return fail(outcome, "a new WebSocket message inside another");
        if (f.fin) deliver(f.op, f.payload);
        else {
          fragments = [f.payload];
          fragmentOp = f.op;
          total = f.payload.length;
        }
        continue;
      case 0:
        if (!fragments) return fail(outcome, "a WebSocket continuation of nothing");
        total += f.payload.length;
        if (total > MAX_MESSAGE) return fail(outcome, "a WebSocket message over 64 MiB");
        fragments.push(f.payload);
        if (f.fin) {
          deliver(fragmentOp, concat(...fragments));
          fragments = undefined;
        }
        continue;
      default:
        return fail(outcome, `a WebSocket frame of unknown opcode ${f.op}`);
    }
  }
  if (parsed.over) return fail(outcome, parsed.over);
  // The stream ended without a close frame.
  outcome.why = "the connection was closed";
  return outcome;
}

function fail(outcome: Outcome, why: string): Outcome {
  outcome.why = why;
  outcome.close = undefined;
  return outcome;
}

/** A server frame. */
function serverFrame(op: number, payload: Uint8Array, fin = true, mask?: number[]): Uint8Array {
  const n = payload.length;
  const head = n < 126
    ? [n]
    : n < 65536
    ? [126, n >> 8, n & 0xff]
    : [127, 0, 0, 0, 0, n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
  if (mask) head[0]! |= 0x80;
  const body = mask ? payload.map((b, i) => b ^ mask[i & 3]!) : payload;
  return concat(new Uint8Array([(fin ? 0x80 : 0) | op, ...head, ...(mask ?? [])]), body);
}

/** One raw WebSocket server; each connection plays the stream `next` holds. */
class RawServer {
  readonly listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  next: { input: Uint8Array; sent: Uint8Array[] } | undefined;
  #serving: Promise<void>;

  constructor() {
    this.#serving = (async () => {
      for await (const conn of this.listener) {
        const job = this.next;
        this.next = undefined;
        this.#play(conn, job).catch(() => {}).finally(() => {
          try {
            conn.close();
          } catch {
            // Closed.
          }
        });
      }
    })().catch(() => {});
  }

  get url(): string {
    return `http://127.0.0.1:${(this.listener.addr as Deno.NetAddr).port}`;
  }

  async #play(conn: Deno.Conn, job: RawServer["next"]): Promise<void> {
    if (!job) return;
    const buf = new Uint8Array(65536);
    let text = "";
    while (!text.includes("\r\n\r\n")) {
      const n = await conn.read(buf);
      if (n === null) return;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    const key = /sec-websocket-key: *(\S+)/i.exec(text)?.[1] ?? "";
    const accept = createHash("sha1").update(key + GUID).digest("base64");
    const answer = encoder.encode(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        `Sec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n`,
    );
    const { input } = job;
    const stream = input.subarray(1);
    const rand = prng(input[0] ?? 0);
    const cuts = [
      ...new Set(Array.from({ length: below(rand, 6) }, () => below(rand, stream.length + 1))),
    ]
      .sort((a, b) => a - b);
    const chunks: Uint8Array[] = [];
    let from = 0;
    for (const cut of [...cuts, stream.length]) {
      chunks.push(stream.subarray(from, cut));
      from = cut;
    }
    // Sometimes the first frames come in the same write as the 101 answer (the client's `head`).
    const withHead = ((input[0] ?? 0) & 0x80) !== 0;
    const reading = (async () => {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) return;
        job.sent.push(buf.slice(0, n));
      }
    })().catch(() => {});
    await writeAll(conn, withHead ? concat(answer, chunks.shift() ?? new Uint8Array(0)) : answer);
    for (const chunk of chunks) {
      if (chunk.length === 0) continue;
      await new Promise((resolve) => setTimeout(resolve, 0));
      await writeAll(conn, chunk);
    }
    await conn.closeWrite();
    await reading;
  }

  async close(): Promise<void> {
    this.listener.close();
    await this.#serving;
  }
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

function same(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function show(m: Message | undefined): string {
  if (m === undefined) return "nothing";
  return "text" in m
    ? `text(${JSON.stringify(m.text.slice(0, 40))})`
    : `binary(${m.binary.length})`;
}

async function check(server: RawServer, input: Uint8Array): Promise<void> {
  const job = { input, sent: [] as Uint8Array[] };
  server.next = job;
  const expected = reference(input.subarray(1));
  const ws = await connectWebSocket({ server: server.url, headers: {} }, "/fuzz", {
    protocols: ["v4.channel.k8s.io"],
    timeoutMs: 2000,
  });
  const got: Message[] = [];
  ws.onmessage = (m) =>
    got.push(typeof m === "string" ? { text: m } : { binary: new Uint8Array(m) });
  const why = await ws.closed;
  if (typeof expected.why === "string") {
    property(why === expected.why, `closed with "${why}", the reference says "${expected.why}"`);
  }
  property(
    got.length === expected.messages.length,
    `${got.length} messages, the reference has ${expected.messages.length}`,
  );
  for (const [i, e] of expected.messages.entries()) {
    const m = got[i];
    const ok = m !== undefined &&
      ("text" in e ? "text" in m && m.text === e.text : "binary" in m && same(m.binary, e.binary));
    property(ok, `message ${i} is ${show(m)}, the reference's ${show(e)}`);
  }
  // What the client sent back: masked frames; pongs for pings, in order; the close echoed.
  await new Promise((resolve) => setTimeout(resolve, 0));
  const sent = frames(concat(...job.sent));
  let pong = 0;
  for (const f of sent.frames) {
    property(f.masked, "the client sent an unmasked frame");
    if (f.op === 10) {
      const ping = expected.pings[pong++];
      property(ping !== undefined && same(f.payload, ping), "a pong that answers no ping");
    } else if (f.op === 8 && expected.close !== undefined) {
      property(same(f.payload, expected.close), "the close echo is not the server's code");
    }
  }
}

function seeds(): Uint8Array[] {
  const bin = (n: number) => new Uint8Array(n).map((_, i) => i * 7);
  const text = (s: string) => encoder.encode(s);
  const close = (code: number, reason = "") =>
    serverFrame(8, concat(new Uint8Array([code >> 8, code & 0xff]), text(reason)));
  const streams = [
    concat(serverFrame(2, bin(10)), serverFrame(1, text("hello")), close(1000)),
    concat(
      serverFrame(2, bin(3), false),
      serverFrame(9, text("ping")),
      serverFrame(0, bin(4), false),
      serverFrame(10, text("pong")),
      serverFrame(0, bin(5), true),
      close(1001, "going away"),
    ),
    concat(serverFrame(2, bin(300)), serverFrame(2, bin(0)), serverFrame(8, new Uint8Array(0))),
    concat(serverFrame(2, bin(70), true, [1, 2, 3, 4]), serverFrame(1, text("é€𝄞"))),
    concat(serverFrame(3, bin(1))),
    concat(serverFrame(0, bin(2))),
    concat(new Uint8Array([0x82, 127, 0, 0, 0, 0, 0, 0, 0, 5]), bin(5), close(4000, "bye")),
    new Uint8Array([0x82, 127, 0, 0, 0, 0, 0x04, 0, 0, 1]),
  ];
  return streams.flatMap((
    s,
    i,
  ) => [concat(new Uint8Array([i * 37]), s), concat(new Uint8Array([0x80 | i]), s)]);
}

/** A frame's length field rewritten in each encoding, to edge and huge values. */
const lengths: Mutator = (b, r) => {
  const { frames: found } = frames(b.subarray(1));
  if (found.length === 0) return b.slice();
  const f = found[below(r, found.length)]!;
  const start = 1 + f.at;
  const value = r() < 0.5 ? interestingNumber(r) : f.payload.length + below(r, 5) - 2;
  const n = Math.max(0, value);
  const form = below(r, 3);
  const head = form === 0
    ? [n & 0x7f]
    : form === 1
    ? [126, (n >> 8) & 0xff, n & 0xff]
    : [127, 0, 0, 0, r() < 0.1 ? 1 : 0, n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
  head[0]! |= f.masked ? 0x80 : 0;
  const oldHead = (b[start + 1]! & 0x7f) === 126 ? 4 : (b[start + 1]! & 0x7f) === 127 ? 10 : 2;
  return concat(
    b.subarray(0, start + 1),
    new Uint8Array(head),
    b.subarray(start + oldHead),
  );
};

/** A frame's first byte set to another opcode or FIN. */
const opcodes: Mutator = (b, r) => {
  const { frames: found } = frames(b.subarray(1));
  if (found.length === 0) return b.slice();
  const out = b.slice();
  const at = 1 + found[below(r, found.length)]!.at;
  out[at] = (r() < 0.5 ? 0x80 : 0) | (r() < 0.1 ? 0x70 : 0) | below(r, 16);
  return out;
};

fuzzTest(
  "websocket",
  "the WebSocket client delivers exactly the messages of a reference parser and closes as it says (a length over the limit refused at the header), answers pings in order, and lets nothing escape",
  () => {
    const server = new RawServer();
    return {
      seeds: seeds(),
      check: (input) => check(server, input),
      mutators: [lengths, opcodes],
      maxLength: 4096,
      hangMs: 3000,
      close: () => server.close(),
    };
  },
  { sanitize: false },
);
