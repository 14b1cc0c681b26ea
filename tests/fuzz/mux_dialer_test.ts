/**
 * Fuzzes the daemon's side of the mux, `MuxDialer` (`mod/daemon/mux_dialer.ts`):
 * a fake `MuxClient` hands it a fake client call; after five dials (two TCP,
 * one UDP, a ping, a DNS query: flow ids 1 to 5), the call is fed batches of
 * frames a hostile manager could send, then ends.
 *
 * An input is `u8 mode` then batches (`joinRecords`). Mode bits: 0-1 how the
 * call ends (the manager ends it, it fails, the daemon closes the dialer, it
 * just closes); 2 grpc-js pushes back (`write` returns false); 3 the app
 * reads what the TCP flows queued before the end.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { EventEmitter } from "node:events";
import grpc from "@grpc/grpc-js";
import { type MuxClient, MuxDialer } from "../../mod/daemon/mux_dialer.ts";
import type { ByteStream, DialResult } from "../../mod/net/dialer.ts";
import {
  decodeOpen,
  encodeClose,
  encodeResult,
  encodeWindow,
  forEachFrame,
  FrameType,
  FrameWriter,
} from "../../mod/rpc/mux.ts";
import { DialResult_Code } from "../../mod/rpc/service.ts";
import { fuzzTest, property } from "./_fuzz.ts";
import {
  below,
  concat,
  interestingNumber,
  joinRecords,
  type Mutator,
  recordMutators,
  splitRecords,
} from "./_mutators.ts";

/** The window the daemon gives each TCP flow: small, so that inputs can pass it. */
const WINDOW = 1024;
/** Frame types a daemon sends. */
const CLIENT_SENDS = new Set<number>([
  FrameType.Open,
  FrameType.Data,
  FrameType.Fin,
  FrameType.Close,
  FrameType.Window,
  FrameType.Dns,
]);

/** A client-side Mux call, recording what the dialer does with it. */
class FakeCall extends EventEmitter {
  written: Uint8Array[] = [];
  ended = false;
  cancelled = false;
  writesAfterEnd = 0;
  #pushBack: boolean;
  #writes = 0;

  constructor(pushBack: boolean) {
    super();
    this.#pushBack = pushBack;
  }

  write(batch: Uint8Array, done?: () => void): boolean {
    if (this.ended || this.cancelled) this.writesAfterEnd++;
    this.written.push(batch);
    if (this.#pushBack && ++this.#writes % 2 === 0) {
      setTimeout(() => {
        done?.();
        this.emit("drain");
      }, 0);
      return false;
    }
    done?.();
    return true;
  }

  pause(): void {}
  resume(): void {}

  end(): void {
    this.ended = true;
  }

  cancel(): void {
    this.cancelled = true;
  }
}

const tick = () => new Promise((resolve) => setTimeout(resolve, 0));

/** Reads what a stream has queued now, without waiting for more. */
async function drain(stream: ByteStream): Promise<number> {
  const reader = stream.readable.getReader();
  let bytes = 0;
  try {
    for (;;) {
      const next = await Promise.race([reader.read(), tick().then(() => undefined)]);
      if (next === undefined || next.done) break;
      bytes += next.value.length;
    }
  } catch {
    // Reset: what was read counts.
  }
  reader.releaseLock();
  return bytes;
}

async function check(input: Uint8Array): Promise<void> {
  const mode = input[0] ?? 0;
  const calls: FakeCall[] = [];
  const client: MuxClient = {
    mux(_metadata: grpc.Metadata) {
      const call = new FakeCall((mode & 4) !== 0);
      calls.push(call);
      return call as unknown as ReturnType<MuxClient["mux"]>;
    },
  };
  let noSession = 0;
  const dialer = new MuxDialer(client, {
    sessionId: () => "fuzz-session",
    window: WINDOW,
    onNoSession: () => noSession++,
    log: () => {},
  });
  const endpoint = (port: number) => ({
    source: { address: "240.0.0.2", port: 40000 + port },
    destination: { address: "198.18.0.10", port },
  });
  const settled: boolean[] = [false, false, false, false, false];
  const track = <T>(i: number, p: Promise<T>): Promise<T | undefined> =>
    p.then((v) => v, () => undefined).finally(() => settled[i] = true);
  const tcp1 = track(0, dialer.dialTcp(endpoint(80)));
  const tcp2 = track(1, dialer.dialTcp(endpoint(443)));
  const udp = track(2, dialer.dialUdp(endpoint(53), () => {}));
  const ping = track(3, dialer.ping({ ...endpoint(0), payload: new Uint8Array(8) }));
  const dns = track(4, dialer.resolveDns(new Uint8Array([0x12, 0x34, 1, 0, 0, 1]), 60_000));
  await tick();
  const call = calls[0]!;
  for (const batch of splitRecords(input.subarray(1))) {
    try {
      call.emit("data", Buffer.from(batch));
    } catch (error) {
      property(false, `an exception escaped the data handler: ${(error as Error)?.message}`);
    }
    await tick();
  }
  // The app reads what the flows queued: never more than the window it gave.
  const opened: ByteStream[] = [];
  for (const dial of [tcp1, tcp2]) {
    const r = await Promise.race([dial, tick().then(() => undefined)]) as
      | DialResult<ByteStream>
      | undefined;
    if (r?.ok) opened.push(r.value);
  }
  if (mode & 8) {
    for (const stream of opened) {
      const got = await drain(stream);
      property(
        got <= WINDOW,
        `the app read ${got} bytes of a flow whose window was ${WINDOW}: ` +
          "the daemon took DATA past the credit it gave, and queued it",
      );
    }
  }
  const how = mode & 3;
  if (how === 0) call.emit("end");
  else if (how === 1) {
    call.emit("error", { code: grpc.status.UNAVAILABLE, details: "the connection broke" });
  } else if (how === 2) dialer.close();
  else call.emit("close");
  const deadline = performance.now() + 1000;
  while (settled.includes(false) && performance.now() < deadline) await tick();
  property(!settled.includes(false), `dial promises left pending: ${settled.join(", ")}`);
  await Promise.all([tcp1, tcp2, udp, ping, dns]);
  await tick();
  const { tcpOpen, udpOpen } = dialer.stats;
  property(
    tcpOpen === 0 && udpOpen === 0,
    `after the call ended the dialer counts ${tcpOpen} TCP and ${udpOpen} UDP flow(s) open`,
  );
  for (const c of calls) {
    property(c.writesAfterEnd === 0, `${c.writesAfterEnd} write(s) after the call was ended`);
    for (const batch of c.written) {
      try {
        forEachFrame(batch, (_id, type, payload) => {
          property(CLIENT_SENDS.has(type), `the daemon sent a frame of type ${type}`);
          if (type === FrameType.Open) decodeOpen(payload);
        });
      } catch (error) {
        if ((error as Error).name === "PropertyError") throw error;
        property(false, `the daemon wrote a broken batch: ${(error as Error).message}`);
      }
    }
  }
  dialer.close();
}

function batch(frames: [number, number, Uint8Array?][]): Uint8Array {
  let out = new Uint8Array(0);
  const writer = new FrameWriter((b) => out = new Uint8Array(b));
  for (const [id, type, payload] of frames) writer.write(id, type as FrameType, payload);
  writer.flush();
  return out;
}

function seeds(): Uint8Array[] {
  const text = (s: string) => new TextEncoder().encode(s);
  const ok = (window: number) => encodeResult({ code: DialResult_Code.OK, window, message: "ok" });
  const input = (mode: number, batches: Uint8Array[]) =>
    concat(new Uint8Array([mode]), joinRecords(batches));
  const answer = new Uint8Array([0x12, 0x34, 0x81, 0x80, 0, 1, 0, 0, 0, 0, 0, 0]);
  return [
    input(8, [
      batch([[1, FrameType.Result, ok(65536)], [2, FrameType.Result, ok(16)]]),
      batch([[1, FrameType.Data, text("hello")], [1, FrameType.Fin], [
        2,
        FrameType.Data,
        text("x"),
      ]]),
      batch([[3, FrameType.Result, ok(0)], [3, FrameType.Data, text("datagram")]]),
      batch([[4, FrameType.Result, ok(0)], [5, FrameType.Dns, answer]]),
      batch([[1, FrameType.Window, encodeWindow(4096)], [2, FrameType.Close, encodeClose("")]]),
    ]),
    input(1, [
      batch([
        [1, FrameType.Close, encodeClose("refused before the dial")],
        [
          2,
          FrameType.Result,
          encodeResult({ code: DialResult_Code.NO_SESSION, window: 0, message: "gone" }),
        ],
        [
          3,
          FrameType.Result,
          encodeResult({ code: DialResult_Code.PROHIBITED, window: 0, message: "no" }),
        ],
        [
          5,
          FrameType.Result,
          encodeResult({ code: DialResult_Code.UNREACHABLE, window: 0, message: "dns down" }),
        ],
      ]),
    ]),
    input(6, [
      batch([[1, FrameType.Result, ok(1)], [1, FrameType.Data, new Uint8Array(600).fill(1)]]),
      batch([[1, FrameType.Data, new Uint8Array(400).fill(2)], [9, FrameType.Data, text("stray")]]),
      batch([[1, 0x42, text("?")], [1, FrameType.Open, new Uint8Array(3)]]),
    ]),
    input(10, [
      batch([[1, FrameType.Result, ok(100)], [2, FrameType.Result, ok(100)]]),
      batch([[1, FrameType.Window, new Uint8Array(3)]]),
    ]),
    input(3, [
      batch([[4, FrameType.Result, new Uint8Array(4)], [5, FrameType.Dns, new Uint8Array(0)]]),
    ]),
  ];
}

/** Inside one batch: a frame's id, type, RESULT code or window changed, the framing kept right. */
const frameFields: Mutator = (b, r) => {
  const records = splitRecords(b.subarray(1));
  if (records.length === 0) return b.slice();
  const i = below(r, records.length);
  const frames: [number, number, Uint8Array][] = [];
  try {
    forEachFrame(records[i]!, (id, type, payload) => frames.push([id, type, payload.slice()]));
  } catch {
    return b.slice();
  }
  if (frames.length === 0) return b.slice();
  const f = frames[below(r, frames.length)]!;
  const choice = below(r, 5);
  if (choice === 0) f[0] = r() < 0.8 ? 1 + below(r, 6) : interestingNumber(r);
  else if (choice === 1) f[1] = below(r, 9);
  else if (choice === 2 && f[1] === FrameType.Result && f[2].length >= 5) f[2][0] = below(r, 8);
  else if (choice === 3) {
    frames.splice(below(r, frames.length + 1), 0, [
      f[0],
      FrameType.Data,
      new Uint8Array(below(r, 2 * WINDOW)).fill(0x61),
    ]);
  } else frames.splice(below(r, frames.length + 1), 0, [...f]);
  records[i] = batch(frames);
  return concat(b.subarray(0, 1), joinRecords(records));
};

const records = recordMutators();
fuzzTest(
  "mux_dialer",
  "MuxDialer lets no exception escape, settles every dial once the call ends, counts no flow open after it, writes only well-formed client frames, and queues no more than the window it gave",
  () => ({
    seeds: seeds(),
    check,
    mutators: [
      frameFields,
      ...records.map((m): Mutator => (b, r, pool) =>
        concat(b.subarray(0, 1), m(b.subarray(1), r, pool.map((p) => p.subarray(1))))
      ),
    ],
    maxLength: 16384,
    hangMs: 4000,
  }),
  { sanitize: false },
);
