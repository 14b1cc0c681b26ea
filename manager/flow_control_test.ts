/**
 * Flow control through one TCP tunnel, both ways: a fast side facing a side
 * that reads nothing for a while must not make the manager buffer without
 * bound, and every byte must arrive once the slow side reads.
 *
 * What is bounded is what the manager itself holds (`ManagerStats`): bytes
 * read from the destination whose gRPC write has not completed, and bytes
 * received from the client not yet written to the destination. The kernel's
 * socket buffers and the HTTP/2 window are outside it, so the fast side gets
 * somewhat ahead of the slow one, then stops.
 *
 * @module
 */

import { assert, assertEquals } from "../tests/_assert.ts";
import {
  data,
  DialResult_Code,
  HALF_CLOSE,
  openTunnel,
  Protocol,
  startManager,
} from "./_testing.ts";
import type { TunnelMessage } from "../mod/rpc/service.ts";

const TOTAL = 64 * 1024 * 1024;
/** What the manager may hold in one direction of one tunnel. */
const BOUND = 8 * 1024 * 1024;

/** Waits until `value()` has not changed for `quietMs`. */
async function settle(value: () => number, quietMs = 300, maxMs = 10_000): Promise<number> {
  const start = Date.now();
  let last = value();
  let since = Date.now();
  while (Date.now() - start < maxMs) {
    await new Promise((resolve) => setTimeout(resolve, 50));
    const now = value();
    if (now !== last) [last, since] = [now, Date.now()];
    else if (Date.now() - since >= quietMs) break;
  }
  return last;
}

function pattern(size: number, offset: number): Uint8Array {
  const bytes = new Uint8Array(size);
  for (let i = 0; i < size; i++) bytes[i] = (offset + i) % 251;
  return bytes;
}

Deno.test("flow control: a destination writing 64 MiB to a client that reads nothing stays bounded in the manager", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let written = 0;
  const served = (async () => {
    const conn = await listener.accept();
    const chunk = pattern(1024 * 1024, 0);
    while (written < TOTAL) {
      written += await conn.write(chunk.subarray(0, Math.min(chunk.length, TOTAL - written)));
    }
    conn.close();
  })();
  const t = await startManager({ allowAnyDestination: true });
  try {
    const session = await t.arrive();
    const port = (listener.addr as Deno.NetAddr).port;
    const tunnel = await openTunnel(t.client, session, Protocol.TCP, "127.0.0.1", port);
    assertEquals(tunnel.code, DialResult_Code.OK);
    tunnel.call.pause(); // The client reads nothing.
    const stalledAt = await settle(() => written);
    const stats = t.manager.stats;
    console.log(
      `stalled: destination wrote ${(stalledAt / 2 ** 20).toFixed(1)} MiB, ` +
        `manager holds ${(stats.bufferedToClient / 2 ** 20).toFixed(2)} MiB ` +
        `(peak ${(stats.bufferedToClientPeak / 2 ** 20).toFixed(2)} MiB)`,
    );
    // Kernel buffers, the HTTP/2 window and the client's buffer let it get ahead, not far.
    assert(stalledAt < TOTAL / 2, `the destination got ${stalledAt} bytes ahead`);
    assert(
      stats.bufferedToClientPeak <= BOUND,
      `the manager held ${stats.bufferedToClientPeak} bytes`,
    );

    // Now read everything.
    let received = 0;
    let end: TunnelMessage | undefined;
    await new Promise<void>((resolve, reject) => {
      tunnel.call.removeAllListeners("data");
      tunnel.call.on("data", (message: TunnelMessage) => {
        if (message.kind.case === "data") received += message.kind.value.length;
        else if (end === undefined) {
          end = message;
          resolve();
        }
      });
      tunnel.call.on("error", reject);
      tunnel.call.resume();
    });
    assertEquals(end?.kind.case, "halfClose");
    assertEquals(received, TOTAL);
    tunnel.call.write(HALF_CLOSE);
    tunnel.call.end();
    await served;
    assert(
      stats.bufferedToClientPeak <= BOUND,
      `the manager held ${stats.bufferedToClientPeak} bytes`,
    );
    assertEquals(stats.bufferedToClient, 0);
  } finally {
    await t.close();
    listener.close();
  }
});

Deno.test("flow control: a client writing 64 MiB to a destination that reads nothing stays bounded in the manager", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let reading = false;
  let received = 0;
  const served = (async () => {
    const conn = await listener.accept();
    while (!reading) await new Promise((resolve) => setTimeout(resolve, 20));
    const buffer = new Uint8Array(1024 * 1024);
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) break;
      received += n;
    }
    conn.close();
  })();
  const t = await startManager({ allowAnyDestination: true });
  try {
    const session = await t.arrive();
    const port = (listener.addr as Deno.NetAddr).port;
    const tunnel = await openTunnel(t.client, session, Protocol.TCP, "127.0.0.1", port);
    assertEquals(tunnel.code, DialResult_Code.OK);
    let sent = 0;
    const chunk = pattern(256 * 1024, 0);
    const sending = (async () => {
      while (sent < TOTAL) {
        sent += chunk.length;
        if (!tunnel.call.write(data(chunk))) {
          await new Promise((resolve) => tunnel.call.once("drain", resolve));
        }
      }
      tunnel.call.write(HALF_CLOSE);
    })();
    const stalledAt = await settle(() => sent);
    const stats = t.manager.stats;
    console.log(
      `stalled: client sent ${(stalledAt / 2 ** 20).toFixed(1)} MiB, ` +
        `manager holds ${(stats.bufferedToDestination / 2 ** 20).toFixed(2)} MiB ` +
        `(peak ${(stats.bufferedToDestinationPeak / 2 ** 20).toFixed(2)} MiB)`,
    );
    assert(stalledAt < TOTAL / 2, `the client got ${stalledAt} bytes ahead`);
    assert(
      stats.bufferedToDestinationPeak <= BOUND,
      `the manager held ${stats.bufferedToDestinationPeak} bytes`,
    );
    reading = true;
    await sending;
    // The manager ends the call once the destination has closed too.
    await tunnel.reader.over(30_000);
    assertEquals([tunnel.reader.ended, tunnel.reader.error], [true, undefined]);
    await served;
    assertEquals(received, TOTAL);
    assertEquals(stats.bufferedToDestination, 0);
    assert(
      stats.bufferedToDestinationPeak <= BOUND,
      `the manager held ${stats.bufferedToDestinationPeak} bytes`,
    );
  } finally {
    await t.close();
    listener.close();
  }
});

Deno.test("flow control: a tunnel stalled by its destination does not stall the others on the connection", async () => {
  const stalled = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const sink = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const holding = (async () => {
    for await (const conn of stalled) held.push(conn); // Accepted, never read.
  })();
  let sunk = 0;
  const sinking = (async () => {
    const conn = await sink.accept();
    const buffer = new Uint8Array(1024 * 1024);
    for (;;) {
      const n = await conn.read(buffer);
      if (n === null) break;
      sunk += n;
    }
    conn.close();
  })();
  const t = await startManager({ allowAnyDestination: true });
  try {
    const session = await t.arrive();
    const chunk = pattern(256 * 1024, 0);
    const fill = async (tunnel: Awaited<ReturnType<typeof openTunnel>>, bytes: number) => {
      let sent = 0;
      while (sent < bytes) {
        sent += chunk.length;
        if (!tunnel.call.write(data(chunk))) {
          await new Promise((resolve) => tunnel.call.once("drain", resolve));
        }
      }
      return sent;
    };
    // Four tunnels whose destinations read nothing, each pushed until it stalls.
    const stuck = await Promise.all(
      [1, 2, 3, 4].map(() =>
        openTunnel(
          t.client,
          session,
          Protocol.TCP,
          "127.0.0.1",
          (stalled.addr as Deno.NetAddr).port,
        )
      ),
    );
    let stuckSent = 0;
    for (const tunnel of stuck) void fill(tunnel, TOTAL).then((n) => stuckSent += n);
    await settle(() => t.manager.stats.bytesToDestination + t.manager.stats.bufferedToDestination);

    const free = await openTunnel(
      t.client,
      session,
      Protocol.TCP,
      "127.0.0.1",
      (sink.addr as Deno.NetAddr).port,
    );
    await fill(free, 32 * 1024 * 1024);
    free.call.write(HALF_CLOSE);
    await free.reader.over(30_000);
    await sinking;
    assertEquals(sunk, 32 * 1024 * 1024);
    assertEquals(stuckSent, 0); // None of the stalled tunnels ever finished.
    for (const tunnel of stuck) tunnel.call.cancel();
  } finally {
    await t.close();
    stalled.close();
    sink.close();
    await holding.catch(() => {});
    for (const conn of held) conn.close();
  }
});
