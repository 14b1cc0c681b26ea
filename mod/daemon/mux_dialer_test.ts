/**
 * The daemon's mux dialer against a fake, hostile traffic-manager: a call
 * whose frames the test writes by hand. Whatever the manager sends, a flow
 * holds no more than the window it was given, and a broken rule costs that
 * flow only.
 *
 * @module
 */

import { EventEmitter } from "node:events";
import type grpc from "@grpc/grpc-js";
import {
  decodeClose,
  decodeOpen,
  encodeResult,
  forEachFrame,
  FrameType,
  FrameWriter,
} from "../rpc/mux.ts";
import { DialResult_Code, MAX_CHUNK } from "../rpc/service.ts";
import { assert, assertEquals, assertMatch } from "../../tests/_assert.ts";
import { type MuxClient, MuxDialer } from "./mux_dialer.ts";

const LOCAL = { address: "198.18.0.1", port: 40_000 };
const REMOTE = { address: "198.18.0.2", port: 80 };

/** A client-side Mux call the test plays the manager on. */
class FakeCall extends EventEmitter {
  /** Frames the dialer sent, in order. */
  readonly frames: Array<{ id: number; type: number; payload: Uint8Array }> = [];
  /** Writes frames to the dialer, batched as the manager would. */
  readonly manager = new FrameWriter((batch) => this.emit("data", batch));
  cancelled = false;

  write(batch: Uint8Array, done?: () => void): boolean {
    forEachFrame(
      batch,
      (id, type, payload) => this.frames.push({ id, type, payload: payload.slice() }),
    );
    done?.();
    return true;
  }
  pause(): void {}
  resume(): void {}
  end(): void {}
  cancel(): void {
    this.cancelled = true;
  }
  /** The frames of one type the dialer sent. */
  sent(type: number) {
    return this.frames.filter((f) => f.type === type);
  }
}

function hostile(): { client: MuxClient; call: FakeCall; logs: string[]; dialer: MuxDialer } {
  const call = new FakeCall();
  const client: MuxClient = {
    mux: () => call as unknown as grpc.ClientDuplexStream<Uint8Array, Uint8Array>,
  };
  const logs: string[] = [];
  const dialer = new MuxDialer(client, {
    sessionId: () => "s1",
    log: (_level, line) => logs.push(line),
  });
  return { client, call, logs, dialer };
}

const turn = () => new Promise((resolve) => setTimeout(resolve, 0));

/** Dials TCP and answers OK as the manager, with a 64 KiB window for the dialer. */
async function openFlow(call: FakeCall, dialer: MuxDialer) {
  const dialing = dialer.dialTcp({ source: LOCAL, destination: REMOTE });
  await turn();
  const open = call.sent(FrameType.Open).at(-1)!;
  const window = decodeOpen(open.payload).window;
  call.manager.write(
    open.id,
    FrameType.Result,
    encodeResult({ code: DialResult_Code.OK, window: 64 * 1024, message: "connected" }),
  );
  const result = await dialing;
  if (!result.ok) throw new Error(result.message);
  return { id: open.id, window, stream: result.value };
}

Deno.test("MuxDialer resets a flow the manager sends past its credit, and holds no more than the window", async () => {
  const { call, logs, dialer } = hostile();
  const { id, window, stream } = await openFlow(call, dialer);
  const other = await openFlow(call, dialer);
  // The app reads nothing; the manager sends twice the window in full-size frames.
  const chunk = new Uint8Array(MAX_CHUNK);
  for (let sent = 0; sent < 2 * window; sent += chunk.length) {
    call.manager.write(id, FrameType.Data, chunk);
  }
  call.manager.flush();
  await turn();
  const closes = call.sent(FrameType.Close);
  assertEquals(closes.length, 1);
  assertEquals(closes[0]!.id, id);
  assertMatch(
    decodeClose(closes[0]!.payload),
    /^vif reset the flow: the traffic-manager sent 262144 bytes with 0 left of its window: past its credit$/,
  );
  assertEquals(dialer.stats.violations, 1);
  assertEquals(dialer.stats.bytesFromCluster <= 2 * window, true);
  assertEquals(logs.filter((l) => /broke the protocol/.test(l)).length, 1);
  // The reset reaches the app's side; the bytes it was holding are dropped.
  const error = await stream.readable.getReader().read().then(() => null, (e: Error) => e);
  assertMatch(String(error), /past its credit/);
  // The other flow goes on.
  call.manager.write(other.id, FrameType.Data, new TextEncoder().encode("still here"));
  call.manager.flush();
  const reader = other.stream.readable.getReader();
  assertEquals(new TextDecoder().decode((await reader.read()).value), "still here");
  assertEquals(dialer.stats.tcpOpen, 1);
  dialer.close();
});

Deno.test("MuxDialer resets a flow on an oversized frame, data after FIN and a second RESULT", async () => {
  const { call, dialer } = hostile();
  const oversized = await openFlow(call, dialer);
  call.manager.write(oversized.id, FrameType.Data, new Uint8Array(MAX_CHUNK + 1));
  const late = await openFlow(call, dialer);
  call.manager.write(late.id, FrameType.Fin);
  call.manager.write(late.id, FrameType.Data, new Uint8Array(10));
  const twice = await openFlow(call, dialer);
  call.manager.write(
    twice.id,
    FrameType.Result,
    encodeResult({ code: DialResult_Code.REFUSED, window: 0, message: "again" }),
  );
  call.manager.flush();
  await turn();
  const reasons = new Map(call.sent(FrameType.Close).map((f) => [f.id, decodeClose(f.payload)]));
  assertMatch(reasons.get(oversized.id)!, /sent a DATA frame of 262145 bytes, over 262144/);
  assertMatch(reasons.get(late.id)!, /the traffic-manager sent DATA after its FIN/);
  assertMatch(reasons.get(twice.id)!, /a second RESULT/);
  assertEquals(dialer.stats.violations, 3);
  assertEquals(dialer.stats.tcpOpen, 0);
  dialer.close();
});

Deno.test("MuxDialer ends the call when the manager breaks the framing, and every flow with it", async () => {
  const { call, dialer } = hostile();
  const { stream } = await openFlow(call, dialer);
  call.emit("data", new Uint8Array([0x0a, 0x05, 1, 2, 3, 4, 5]));
  const error = await stream.readable.getReader().read().then(() => null, (e: Error) => e);
  assertMatch(String(error), /broke the mux framing/);
  assert(call.cancelled, "the call was cancelled");
  assertEquals(dialer.stats.tcpOpen, 0);
  dialer.close();
});
