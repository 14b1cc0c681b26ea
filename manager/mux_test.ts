/**
 * The `Mux` call end to end: the daemon's real {@linkcode MuxDialer} against
 * an in-process manager over TLS, to servers on 127.0.0.1. TCP both ways with
 * half-close and resets, refusals, many flows on one call, per-flow flow
 * control (a stalled flow bounds the manager's buffers and does not stall
 * the others), UDP, session ends, and broken framing.
 *
 * @module
 */

import dgram from "node:dgram";
import net from "node:net";
import grpc from "@grpc/grpc-js";
import { MuxDialer } from "../mod/daemon/mux_dialer.ts";
import type { ByteStream } from "../mod/net/dialer.ts";
import {
  decodeClose,
  encodeOpen,
  FLOW_WINDOW,
  forEachFrame,
  FrameType,
  FrameWriter,
  MuxProtocol,
} from "../mod/rpc/mux.ts";
import { MAX_CHUNK, MUX_SESSION_HEADER } from "../mod/rpc/service.ts";
import { assert, assertEquals, assertMatch } from "../tests/_assert.ts";
import { call, startManager, type TestManager } from "../tests/_manager.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const LOCAL = { address: "127.0.0.1", port: 40_000 };

function dialer(t: TestManager, session: () => string, onNoSession?: () => void): MuxDialer {
  return new MuxDialer(t.client, { sessionId: session, ...(onNoSession ? { onNoSession } : {}) });
}

async function withMux(
  options: Parameters<typeof startManager>[0],
  body: (t: TestManager, d: MuxDialer, session: string) => Promise<void>,
): Promise<void> {
  const t = await startManager({ allowAnyDestination: true, ...options });
  const session = await t.arrive();
  const d = dialer(t, () => session);
  try {
    await body(t, d, session);
  } finally {
    d.close();
    await t.close();
  }
}

async function dial(d: MuxDialer, port: number): Promise<ByteStream> {
  const r = await d.dialTcp({ source: LOCAL, destination: { address: "127.0.0.1", port } });
  if (!r.ok) throw new Error(`dial failed: ${r.reason} ${r.message}`);
  return r.value;
}

async function readText(readable: ReadableStream<Uint8Array>): Promise<string> {
  let text = "";
  for await (const chunk of readable) text += decoder.decode(chunk);
  return text;
}

async function readConn(conn: Deno.Conn): Promise<Uint8Array[]> {
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(65536);
  for (;;) {
    const n = await conn.read(buffer);
    if (n === null) return chunks;
    chunks.push(buffer.slice(0, n));
  }
}

async function until(what: string, ok: () => boolean, ms = 5000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}

Deno.test("mux TCP: data both ways; the client's FIN reaches the server as EOF and it can still answer", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const conn = await listener.accept();
    const got = decoder.decode((await readConn(conn))[0]);
    await conn.write(encoder.encode(`you said ${got}`));
    conn.close();
  })();
  await withMux({}, async (t, d) => {
    const stream = await dial(d, (listener.addr as Deno.NetAddr).port);
    assertEquals(d.stats.tcpOpen, 1);
    const writer = stream.writable.getWriter();
    await writer.write(encoder.encode("hello"));
    await writer.close();
    assertEquals(await readText(stream.readable), "you said hello");
    await served;
    await until("the manager's flow to end", () => t.manager.stats.tcpTunnels === 0);
    assertEquals([d.stats.tcpOpen, d.stats.calls], [0, 1]);
  });
  listener.close();
});

Deno.test("mux TCP: the server's FIN ends the client's readable and the client can still send", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const conn = await listener.accept();
    await conn.write(encoder.encode("bye"));
    await conn.closeWrite();
    const got = decoder.decode((await readConn(conn))[0]);
    conn.close();
    return got;
  })();
  await withMux({}, async (_t, d) => {
    const stream = await dial(d, (listener.addr as Deno.NetAddr).port);
    assertEquals(await readText(stream.readable), "bye");
    const writer = stream.writable.getWriter();
    await writer.write(encoder.encode("after your FIN"));
    await writer.close();
    assertEquals(await served, "after your FIN");
  });
  listener.close();
});

Deno.test("mux TCP: aborting resets the destination; a reset from the destination errors the readable", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const resetter = net.createServer((socket) => {
    socket.write("x");
    setTimeout(() => socket.resetAndDestroy(), 50);
  });
  await new Promise<void>((resolve) => resetter.listen(0, "127.0.0.1", resolve));
  await withMux({}, async (t, d) => {
    const first = await dial(d, (listener.addr as Deno.NetAddr).port);
    const conn = await listener.accept();
    await first.writable.getWriter().abort("gone");
    const error = await readConn(conn).then(() => null, (e: Error) => e);
    assert(error instanceof Deno.errors.ConnectionReset, `the server saw ${error}`);
    conn.close();

    const second = await dial(d, (resetter.address() as net.AddressInfo).port);
    const seen = await readText(second.readable).then(() => "no error", (e: Error) => e.message);
    assertMatch(seen, /^Connection reset by the cluster: .*ECONNRESET/);
    await until("the manager's flows to end", () => t.manager.stats.tcpTunnels === 0);
    assertEquals(d.stats.tcpOpen, 0);
  });
  listener.close();
  await new Promise((resolve) => resetter.close(resolve));
});

/**
 * A connected pair on 127.0.0.1: `app` is the app's end, `accepted` the end a
 * listener took (what the router joins to a flow).
 */
async function socketPair(): Promise<{ app: Deno.TcpConn; accepted: Deno.TcpConn }> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [app, accepted] = await Promise.all([
    Deno.connect({ hostname: "127.0.0.1", port: (listener.addr as Deno.NetAddr).port }),
    listener.accept(),
  ]);
  listener.close();
  return { app, accepted };
}

function concat(chunks: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}

Deno.test("mux TCP joined to a socket: data both ways, each FIN carried across, byte counts", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const conn = await listener.accept();
    const got = decoder.decode(concat(await readConn(conn)));
    await conn.write(encoder.encode(`you said ${got}`));
    conn.close();
  })();
  await withMux({}, async (t, d) => {
    const stream = await dial(d, (listener.addr as Deno.NetAddr).port);
    const { app, accepted } = await socketPair();
    const joined = stream.joinSocket!(accepted);
    await app.write(encoder.encode("hello"));
    await app.closeWrite();
    assertEquals(decoder.decode(concat(await readConn(app))), "you said hello");
    const result = await joined;
    assertEquals([result.aToB, result.bToA, result.error], [5, 14, undefined]);
    await served;
    await until(
      "the flows to end",
      () => t.manager.stats.tcpTunnels === 0 && d.stats.tcpOpen === 0,
    );
    app.close();
    accepted.close();
  });
  listener.close();
});

Deno.test("mux TCP joined to a socket: the server speaks first and ends first; the app still sends", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const conn = await listener.accept();
    await conn.write(encoder.encode("banner"));
    await conn.closeWrite();
    const got = decoder.decode(concat(await readConn(conn)));
    conn.close();
    return got;
  })();
  await withMux({}, async (_t, d) => {
    const stream = await dial(d, (listener.addr as Deno.NetAddr).port);
    // The banner and the server's FIN may arrive before the router joins.
    await new Promise((r) => setTimeout(r, 100));
    const { app, accepted } = await socketPair();
    const joined = stream.joinSocket!(accepted);
    assertEquals(decoder.decode(concat(await readConn(app))), "banner");
    await app.write(encoder.encode("after your FIN"));
    await app.closeWrite();
    assertEquals(await served, "after your FIN");
    assertEquals((await joined).error, undefined);
    app.close();
    accepted.close();
  });
  listener.close();
});

Deno.test("mux TCP joined to a socket: 8 MiB each way arrive whole through the flow control", async () => {
  const size = 8 * 1024 * 1024;
  const pattern = (seed: number) => {
    const b = new Uint8Array(size);
    for (let i = 0; i < size; i++) b[i] = (i * 7 + seed) & 0xff;
    return b;
  };
  const up = pattern(1), down = pattern(2);
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const conn = await listener.accept();
    const [got] = await Promise.all([
      readConn(conn).then(concat),
      (async () => {
        for (let at = 0; at < size; at += await conn.write(down.subarray(at)));
        await conn.closeWrite();
      })(),
    ]);
    conn.close();
    return got;
  })();
  await withMux({}, async (_t, d) => {
    const stream = await dial(d, (listener.addr as Deno.NetAddr).port);
    const { app, accepted } = await socketPair();
    const joined = stream.joinSocket!(accepted);
    const [received] = await Promise.all([
      readConn(app).then(concat),
      (async () => {
        for (let at = 0; at < size; at += await app.write(up.subarray(at)));
        await app.closeWrite();
      })(),
    ]);
    assertEquals(received.length, size);
    assert(received.every((b, i) => b === down[i]), "the download is intact");
    const got = await served;
    assertEquals(got.length, size);
    assert(got.every((b, i) => b === up[i]), "the upload is intact");
    const result = await joined;
    assertEquals([result.aToB, result.bToA], [size, size]);
    app.close();
    accepted.close();
  });
  listener.close();
});

Deno.test("mux TCP joined to a socket: a reset from the destination ends the app's socket; the app's reset reaches the destination", async () => {
  const resetter = net.createServer((socket) => {
    socket.write("x");
    setTimeout(() => socket.resetAndDestroy(), 50);
  });
  await new Promise<void>((resolve) => resetter.listen(0, "127.0.0.1", resolve));
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  await withMux({}, async (t, d) => {
    const stream = await dial(d, (resetter.address() as net.AddressInfo).port);
    const pair = await socketPair();
    const joined = stream.joinSocket!(pair.accepted);
    // The app gets the byte, then its connection ends (the socket is closed).
    const seen = await readConn(pair.app).then((c) => decoder.decode(concat(c)), () => "x");
    assertEquals(seen, "x");
    assertMatch(String((await joined).error), /Connection reset by the cluster: .*ECONNRESET/);
    pair.app.close();

    const second = await dial(d, (listener.addr as Deno.NetAddr).port);
    const server = await listener.accept();
    const other = await socketPair();
    const joining = second.joinSocket!(other.accepted);
    other.app.close(); // the app goes away
    const error = await readConn(server).then(() => null, (e: Error) => e);
    // Closing an idle socket is a FIN; the flow then ends with the app's EOF.
    assert(error === null || error instanceof Deno.errors.ConnectionReset, `saw ${error}`);
    server.close();
    await joining;
    await until(
      "the flows to end",
      () => t.manager.stats.tcpTunnels === 0 && d.stats.tcpOpen === 0,
    );
  });
  listener.close();
  await new Promise((resolve) => resetter.close(resolve));
});

Deno.test("mux TCP: 200 concurrent flows on one call each carry their own bytes", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepting = (async () => {
    for await (const conn of listener) {
      (async () => {
        const chunks = await readConn(conn);
        for (const c of chunks) await conn.write(c);
        conn.close();
      })().catch(() => {});
    }
  })().catch(() => {});
  await withMux({}, async (t, d) => {
    const port = (listener.addr as Deno.NetAddr).port;
    const results = await Promise.all(Array.from({ length: 200 }, async (_, i) => {
      const stream = await dial(d, port);
      const writer = stream.writable.getWriter();
      await writer.write(encoder.encode(`flow ${i} `.repeat(100 + i)));
      await writer.close();
      return [await readText(stream.readable), `flow ${i} `.repeat(100 + i)];
    }));
    for (const [got, want] of results) assertEquals(got, want);
    await until("the manager's flows to end", () => t.manager.stats.tcpTunnels === 0);
    assertEquals([d.stats.tcpOpen, d.stats.calls], [0, 1]);
    assertEquals(t.manager.stats.bufferedToClient, 0);
    assertEquals(t.manager.stats.bufferedToDestination, 0);
  });
  listener.close();
  await accepting;
});

Deno.test("mux: a closed port is refused, a foreign subnet prohibited, an unknown session NO_SESSION", async () => {
  await withMux({}, async (_t, d) => {
    // Freed after the manager listens, so that the manager cannot be given it.
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const closed = (listener.addr as Deno.NetAddr).port;
    listener.close();
    const r = await d.dialTcp({
      source: LOCAL,
      destination: { address: "127.0.0.1", port: closed },
    });
    assertEquals(r.ok ? "ok" : r.reason, "refused");
    assertMatch(r.ok ? "" : r.message ?? "", /ECONNREFUSED/);
  });
  const t = await startManager({ podSubnets: ["198.18.0.0/24"] });
  try {
    const session = await t.arrive();
    let noSession = 0;
    let id = session;
    const d = dialer(t, () => id, () => noSession++);
    const p = await d.dialTcp({ source: LOCAL, destination: { address: "198.19.0.1", port: 80 } });
    assertEquals(p.ok ? "ok" : p.reason, "prohibited");
    id = "0123456789abcdef";
    const u = await d.dialUdp(
      { source: LOCAL, destination: { address: "198.18.0.1", port: 53 } },
      () => {},
    );
    // The call of an unknown session ends at once, and the client arrives again.
    assertEquals(u.ok ? "ok" : u.reason, "unreachable");
    assertMatch(
      u.ok ? "" : u.message ?? "",
      /session "0123456789abcdef" is unknown or expired: arrive again$/,
    );
    assertEquals([noSession, d.stats.calls, d.stats.dialFailures], [1, 2, 2]);
    d.close();
  } finally {
    await t.close();
  }
});

Deno.test("mux flow control: a flow whose app reads nothing stays bounded and does not stall another", async () => {
  const TOTAL = 64 * 1024 * 1024;
  const bulk = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const echo = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let written = 0;
  await withMux({}, async (t, d) => {
    const slow = await dial(d, (bulk.addr as Deno.NetAddr).port);
    const writing = (async () => {
      const conn = await bulk.accept();
      const chunk = new Uint8Array(1024 * 1024).fill(7);
      while (written < TOTAL) {
        written += await conn.write(chunk.subarray(0, Math.min(chunk.length, TOTAL - written)));
      }
      conn.close();
    })();
    let last = -1;
    while (last !== written) {
      last = written;
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    const stats = t.manager.stats;
    console.log(
      `stalled: destination wrote ${(written / 2 ** 20).toFixed(1)} MiB; manager peak ` +
        `${(stats.bufferedToClientPeak / 2 ** 20).toFixed(2)} MiB`,
    );
    assert(written < TOTAL / 4, `the destination got ${written} bytes ahead`);
    // At most the flow's window (and one chunk over it) waits in the manager.
    assert(
      stats.bufferedToClientPeak <= FLOW_WINDOW + MAX_CHUNK,
      `peak ${stats.bufferedToClientPeak}`,
    );

    // Another flow on the same call goes on as if nothing were stalled.
    const other = await dial(d, (echo.addr as Deno.NetAddr).port);
    const served = (async () => {
      const conn = await echo.accept();
      for (const c of await readConn(conn)) await conn.write(c);
      conn.close();
    })();
    const w = other.writable.getWriter();
    await w.write(encoder.encode("still here"));
    await w.close();
    assertEquals(await readText(other.readable), "still here");
    await served;

    let received = 0;
    for await (const chunk of slow.readable) received += chunk.length;
    await writing;
    assertEquals(received, TOTAL);
    await slow.writable.close();
    assertEquals(d.stats.calls, 1);
  });
  bulk.close();
  echo.close();
});

Deno.test("mux: 8 flows pulling 16 MiB each at once all arrive whole on one call", async () => {
  const EACH = 16 * 1024 * 1024;
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serving = (async () => {
    const all: Promise<void>[] = [];
    for (let i = 0; i < 8; i++) {
      const conn = await listener.accept();
      all.push((async () => {
        const chunk = new Uint8Array(1024 * 1024).fill(i);
        for (let sent = 0; sent < EACH;) sent += await conn.write(chunk.subarray(0, EACH - sent));
        conn.close();
      })());
    }
    await Promise.all(all);
  })();
  await withMux({}, async (_t, d) => {
    const streams = await Promise.all(
      Array.from({ length: 8 }, () => dial(d, (listener.addr as Deno.NetAddr).port)),
    );
    const counts = await Promise.all(streams.map(async (s) => {
      let n = 0;
      for await (const chunk of s.readable) n += chunk.length;
      await s.writable.close();
      return n;
    }));
    assertEquals(counts, Array(8).fill(EACH));
    assertEquals(d.stats.calls, 1);
  });
  await serving;
  listener.close();
});

Deno.test("mux flow control: a client writing to a destination that reads nothing stays bounded", async () => {
  const TOTAL = 32 * 1024 * 1024;
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  await withMux({}, async (t, d) => {
    const stream = await dial(d, (listener.addr as Deno.NetAddr).port);
    const conn = await listener.accept();
    let sent = 0;
    const writer = stream.writable.getWriter();
    const sending = (async () => {
      const chunk = new Uint8Array(256 * 1024).fill(3);
      while (sent < TOTAL) {
        await writer.write(chunk);
        sent += chunk.length;
      }
      await writer.close();
    })();
    sending.catch(() => {}); // awaited below; a failed assertion must not leave it unheard
    let last = -1;
    while (last !== sent) {
      last = sent;
      await new Promise((resolve) => setTimeout(resolve, 300));
    }
    const stats = t.manager.stats;
    assert(sent < TOTAL / 2, `the client got ${sent} bytes ahead`);
    assert(
      stats.bufferedToDestinationPeak <= FLOW_WINDOW + MAX_CHUNK,
      `the manager held ${stats.bufferedToDestinationPeak} bytes`,
    );
    const chunks = await readConn(conn);
    assertEquals(chunks.reduce((n, c) => n + c.length, 0), TOTAL);
    await sending;
    conn.close();
    assertEquals(await readText(stream.readable), "");
  });
  listener.close();
});

Deno.test("mux UDP: datagrams both ways; a flow idle for the timeout ends", async () => {
  const echo = dgram.createSocket("udp4");
  echo.on("message", (m, from) => echo.send(m, from.port, from.address));
  await new Promise<void>((resolve) => echo.bind(0, "127.0.0.1", resolve));
  await withMux({ udpIdleTimeoutMs: 300 }, async (t, d) => {
    const got: string[] = [];
    const r = await d.dialUdp(
      { source: LOCAL, destination: { address: "127.0.0.1", port: echo.address().port } },
      (p) => got.push(decoder.decode(p)),
    );
    assert(r.ok);
    r.value.send(encoder.encode("one"));
    r.value.send(encoder.encode("two"));
    await until("two echoes", () => got.length === 2);
    assertEquals(got, ["one", "two"]);
    assertEquals(d.stats.udpOpen, 1);
    await until("the idle end", () => d.stats.udpOpen === 0, 3000);
    assertEquals(t.manager.stats.udpTunnels, 0);
  });
  echo.close();
});

Deno.test("mux: departing resets the session's flows with the reason", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) accepted.push(conn);
  })().catch(() => {});
  await withMux({}, async (t, d, session) => {
    const port = (listener.addr as Deno.NetAddr).port;
    const streams = [await dial(d, port), await dial(d, port)];
    await call(t.client, "depart", { sessionId: session });
    for (const s of streams) {
      const error = await readText(s.readable).then(() => "no error", (e: Error) => e.message);
      assertEquals(error, "Connection reset by the cluster: the session departed");
    }
    await until("the manager's flows to end", () => t.manager.stats.tcpTunnels === 0);
    assertEquals(d.stats.tcpOpen, 0);
  });
  listener.close();
  await accepting;
  for (const conn of accepted) conn.close();
});

Deno.test("mux: a batch that breaks the framing fails the call with INVALID_ARGUMENT", async () => {
  await withMux({}, async (t, _d, session) => {
    const metadata = new grpc.Metadata();
    metadata.set(MUX_SESSION_HEADER, session);
    const raw = t.client.mux(metadata);
    const status = new Promise<grpc.ServiceError>((resolve) => raw.on("error", resolve));
    raw.on("data", () => {});
    raw.write(new Uint8Array([0x0a, 3, 1, 2, 3]));
    const e = await status;
    assertEquals(e.code, grpc.status.INVALID_ARGUMENT);
    assertMatch(e.details, /vif broke the mux framing: truncated frame header/);
  });
});

Deno.test("mux: every manager announces the Mux call in Arrive", async () => {
  const t = await startManager({});
  try {
    const response = await call<{ features: string[] }>(t.client, "arrive", {
      client: { name: "a", hostname: "b", version: "0.1.0", namespace: "default", os: "linux" },
    });
    assertEquals(response.features, ["mux"]);
  } finally {
    await t.close();
  }
});

Deno.test("mux DNS: a query is answered by the cluster's DNS server on the same call; failures say why", async () => {
  // A DNS server that answers every query with itself, QR set and one more byte.
  const dns = dgram.createSocket("udp4");
  dns.on("message", (m, from) => {
    const answer = new Uint8Array([...m, 0x2a]);
    answer[2] = answer[2]! | 0x80;
    dns.send(answer, from.port, from.address);
  });
  await new Promise<void>((resolve) => dns.bind(0, "127.0.0.1", resolve));
  const query = new Uint8Array([
    0x12,
    0x34,
    0x01,
    0,
    0,
    1,
    0,
    0,
    0,
    0,
    0,
    0,
    3,
    119,
    101,
    98,
    0,
    0,
    1,
    0,
    1,
  ]);
  await withMux({ dnsUpstream: `127.0.0.1:${dns.address().port}` }, async (t, d) => {
    const answers = await Promise.all([d.resolveDns(query), d.resolveDns(query)]);
    for (const answer of answers) {
      assertEquals([...answer.subarray(0, 2)], [0x12, 0x34]);
      assertEquals([answer[2]! & 0x80, answer.at(-1)], [0x80, 0x2a]);
    }
    assertEquals([t.manager.stats.dnsAnswered, d.stats.calls], [2, 1]);
  });
  await withMux({}, async (_t, d) => {
    const error = await d.resolveDns(query).then(() => "answered", (e: Error) => e.message);
    assertMatch(error, /no DNS server/);
  });
  const t = await startManager({ dnsUpstream: `127.0.0.1:${dns.address().port}` });
  try {
    let gone = 0;
    const d = dialer(t, () => "0123456789abcdef", () => gone++);
    const error = await d.resolveDns(query).then(() => "answered", (e: Error) => e.message);
    assertMatch(error, /unknown or expired: arrive again/);
    assertEquals(gone, 1);
    d.close();
  } finally {
    await t.close();
    dns.close();
  }
});

Deno.test("mux: DATA after the client's FIN resets the flow and the client hears CLOSE with why", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  await withMux({}, async (t, _d, session) => {
    const metadata = new grpc.Metadata();
    metadata.set(MUX_SESSION_HEADER, session);
    const raw = t.client.mux(metadata);
    const frames: Array<[number, number, Uint8Array]> = [];
    raw.on(
      "data",
      (b: Uint8Array) => forEachFrame(b, (f, ty, p) => frames.push([f, ty, p.slice()])),
    );
    raw.on("error", () => {});
    const out = new FrameWriter((b) => raw.write(b));
    out.write(
      7,
      FrameType.Open,
      encodeOpen({
        protocol: MuxProtocol.Tcp,
        sourceIp: new Uint8Array([127, 0, 0, 1]),
        sourcePort: 40_000,
        destinationIp: new Uint8Array([127, 0, 0, 1]),
        destinationPort: (listener.addr as Deno.NetAddr).port,
        dialTimeoutMs: 0,
        window: FLOW_WINDOW,
      }),
    );
    const conn = await listener.accept();
    await until("the RESULT", () => frames.some(([, ty]) => ty === FrameType.Result));
    out.write(7, FrameType.Fin);
    out.write(7, FrameType.Data, encoder.encode("too late"));
    await until("the CLOSE", () => frames.some(([, ty]) => ty === FrameType.Close));
    const close = frames.find(([, ty]) => ty === FrameType.Close)!;
    assertEquals([close[0], decodeClose(close[2])], [
      7,
      "the traffic-manager reset the flow: vif sent DATA after its FIN",
    ]);
    const error = await readConn(conn).then(() => null, (e: Error) => e);
    assert(error instanceof Deno.errors.ConnectionReset, `the server saw ${error}`);
    conn.close();
    raw.end();
  });
  listener.close();
});
