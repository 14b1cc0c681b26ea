/**
 * Tunnels through an in-process manager over TLS, to servers on 127.0.0.1:
 * TCP both ways with half-close and resets, refusals (closed port, policy, no
 * session, protocol errors), UDP datagrams, ICMP echo.
 *
 * The manager runs with `--allow-any-destination` where the destination is a
 * loopback server; the policy tests use subnets in 198.18.0.0/15.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import dgram from "node:dgram";
import net from "node:net";
import grpc from "@grpc/grpc-js";
import type { TunnelMessage } from "../mod/rpc/service.ts";
import { assert, assertEquals, assertMatch } from "../tests/_assert.ts";
import {
  call,
  closeMessage,
  data,
  DialResult_Code,
  HALF_CLOSE,
  openTunnel,
  Protocol,
  startManager,
  type TestManager,
} from "./_testing.ts";
import { NO_PING_MESSAGE } from "./ping.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Reads a Deno connection until EOF. */
async function readAll(conn: Deno.Conn): Promise<string> {
  const chunks: Uint8Array[] = [];
  const buffer = new Uint8Array(65536);
  for (;;) {
    const n = await conn.read(buffer);
    if (n === null) break;
    chunks.push(buffer.slice(0, n));
  }
  return decoder.decode(Buffer.concat(chunks));
}

/** Collects a tunnel's data messages until a non-data message or the end. */
async function readData(
  reader: { next(timeoutMs?: number): Promise<TunnelMessage | undefined> },
): Promise<{ text: string; then: TunnelMessage | undefined }> {
  let text = "";
  for (;;) {
    const message = await reader.next();
    if (message?.kind.case !== "data") return { text, then: message };
    text += decoder.decode(message.kind.value);
  }
}

function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

async function withManager(
  options: Parameters<typeof startManager>[0],
  body: (t: TestManager, session: string) => Promise<void>,
): Promise<void> {
  const t = await startManager(options);
  try {
    await body(t, await t.arrive());
  } finally {
    await t.close();
  }
}

Deno.test("tunnel TCP: data both ways, the client's half_close reaches the server as EOF and it can still answer", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const conn = await listener.accept();
    const got = await readAll(conn); // Until the client's FIN.
    await conn.write(encoder.encode(`got: ${got}`));
    conn.close();
    return got;
  })();
  await withManager({ allowAnyDestination: true }, async (t, session) => {
    const port = (listener.addr as Deno.NetAddr).port;
    const tunnel = await openTunnel(t.client, session, Protocol.TCP, "127.0.0.1", port);
    assertEquals(tunnel.code, DialResult_Code.OK, tunnel.message);
    assertEquals(t.manager.stats.tcpTunnels, 1);
    tunnel.call.write(data("hello, "));
    tunnel.call.write(data("cluster"));
    tunnel.call.write(HALF_CLOSE);
    const { text, then } = await readData(tunnel.reader);
    assertEquals(text, "got: hello, cluster");
    assertEquals(then?.kind.case, "halfClose"); // The server's FIN.
    await tunnel.reader.over();
    assertEquals([tunnel.reader.ended, tunnel.reader.error], [true, undefined]);
    tunnel.call.end();
    assertEquals(await served, "hello, cluster");
    assertEquals(t.manager.stats.tcpTunnels, 0);
    assertEquals(t.manager.stats.bytesToDestination, 14);
    assertEquals(t.manager.stats.bytesToClient, 19);
    assertEquals(t.manager.stats.dials, { ok: 1 });
  });
  listener.close();
});

Deno.test("tunnel TCP: the server's FIN reaches the client as half_close and the client can still send", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const conn = await listener.accept();
    await conn.write(encoder.encode("banner"));
    await conn.closeWrite();
    const got = await readAll(conn);
    conn.close();
    return got;
  })();
  await withManager({ allowAnyDestination: true }, async (t, session) => {
    const port = (listener.addr as Deno.NetAddr).port;
    const tunnel = await openTunnel(t.client, session, Protocol.TCP, "127.0.0.1", port);
    const { text, then } = await readData(tunnel.reader);
    assertEquals([text, then?.kind.case], ["banner", "halfClose"]);
    tunnel.call.write(data("late words"));
    tunnel.call.end(); // Ending the call's client side is a half_close too.
    await tunnel.reader.over();
    assertEquals([tunnel.reader.ended, tunnel.reader.error], [true, undefined]);
    assertEquals(await served, "late words");
  });
  listener.close();
});

Deno.test("tunnel TCP: close with a reason resets the destination connection", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const conn = await listener.accept();
    try {
      return await readAll(conn);
    } catch (error) {
      return error instanceof Deno.errors.ConnectionReset ? "reset" : String(error);
    } finally {
      conn.close();
    }
  })();
  await withManager({ allowAnyDestination: true }, async (t, session) => {
    const port = (listener.addr as Deno.NetAddr).port;
    const tunnel = await openTunnel(t.client, session, Protocol.TCP, "127.0.0.1", port);
    tunnel.call.write(data("x"));
    tunnel.call.write(closeMessage("the app reset the connection"));
    await tunnel.reader.over();
    assertEquals(await served, "reset");
    assertEquals(t.manager.stats.tcpTunnels, 0);
  });
  listener.close();
});

Deno.test("tunnel TCP: an empty close ends the destination connection after the data, cancelling resets it", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const serve = async () => {
    const conn = await listener.accept();
    try {
      return await readAll(conn);
    } catch (error) {
      return error instanceof Deno.errors.ConnectionReset ? "reset" : String(error);
    } finally {
      conn.close();
    }
  };
  await withManager({ allowAnyDestination: true }, async (t, session) => {
    const port = (listener.addr as Deno.NetAddr).port;
    const graceful = serve();
    const a = await openTunnel(t.client, session, Protocol.TCP, "127.0.0.1", port);
    a.call.write(data("all of it"));
    a.call.write(closeMessage());
    a.call.end();
    assertEquals(await graceful, "all of it");
    await a.reader.over();

    const cancelled = serve();
    const b = await openTunnel(t.client, session, Protocol.TCP, "127.0.0.1", port);
    b.call.write(data("partial"));
    b.call.cancel();
    assertEquals(await cancelled, "reset");
  });
  listener.close();
});

Deno.test("tunnel TCP: a reset from the destination becomes close with a reason", async () => {
  const server = net.createServer((socket) => socket.once("data", () => socket.resetAndDestroy()));
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  await withManager({ allowAnyDestination: true }, async (t, session) => {
    const port = (server.address() as net.AddressInfo).port;
    const tunnel = await openTunnel(t.client, session, Protocol.TCP, "127.0.0.1", port);
    tunnel.call.write(data("anything"));
    const { then } = await readData(tunnel.reader);
    assertEquals(then?.kind.case, "close");
    assertMatch((then?.kind.value as { reason: string }).reason, /ECONNRESET|reset/i);
    await tunnel.reader.over();
    tunnel.call.end();
  });
  await new Promise((resolve) => server.close(resolve));
});

Deno.test("tunnel TCP: 200 concurrent tunnels each carry their own bytes, and the counters return to zero", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepting = (async () => {
    for await (const conn of listener) {
      (async () => {
        const got = await readAll(conn);
        await conn.write(encoder.encode(got.toUpperCase()));
        conn.close();
      })();
    }
  })();
  await withManager({ allowAnyDestination: true }, async (t, session) => {
    const port = (listener.addr as Deno.NetAddr).port;
    const results = await Promise.all(Array.from({ length: 200 }, async (_, i) => {
      const tunnel = await openTunnel(t.client, session, Protocol.TCP, "127.0.0.1", port);
      tunnel.call.write(data(`tunnel ${i} `.repeat(100)));
      tunnel.call.write(HALF_CLOSE);
      const { text } = await readData(tunnel.reader);
      await tunnel.reader.over();
      tunnel.call.end();
      return text === `TUNNEL ${i} `.repeat(100);
    }));
    assertEquals(results.filter((ok) => !ok).length, 0);
    const stats = t.manager.stats;
    assertEquals([stats.tcpTunnels, stats.bufferedToClient, stats.bufferedToDestination], [
      0,
      0,
      0,
    ]);
    assertEquals(stats.dials, { ok: 200 });
  });
  listener.close();
  await accepting.catch(() => {});
});

Deno.test("tunnel TCP: a closed port is REFUSED with the connect error", async () => {
  const port = freePort();
  await withManager({ allowAnyDestination: true }, async (t, session) => {
    const tunnel = await openTunnel(t.client, session, Protocol.TCP, "127.0.0.1", port);
    assertEquals(tunnel.code, DialResult_Code.REFUSED);
    assertEquals(tunnel.message, `connect ECONNREFUSED 127.0.0.1:${port}`);
    await tunnel.reader.over();
    assertEquals(tunnel.reader.error, undefined);
    assertEquals(t.manager.stats.dials, { refused: 1 });
  });
});

Deno.test("tunnel: destinations outside the subnets, and loopback (the manager's own ports), are PROHIBITED", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  await withManager(
    { podSubnets: ["198.18.64.0/18"], serviceSubnets: ["198.18.128.0/20"] },
    async (t, session) => {
      const outside = await openTunnel(t.client, session, Protocol.TCP, "127.0.0.1", port);
      assertEquals(outside.code, DialResult_Code.PROHIBITED);
      assertEquals(
        outside.message,
        'destination "127.0.0.1" is outside the cluster\'s pod and service subnets ' +
          "(198.18.64.0/18, 198.18.128.0/20)",
      );
      const udp = await openTunnel(t.client, session, Protocol.UDP, "203.0.113.5", 53);
      assertEquals(udp.code, DialResult_Code.PROHIBITED);
    },
  );
  await withManager({ allowAnyDestination: true, allowLoopback: false }, async (t, session) => {
    const own = await openTunnel(t.client, session, Protocol.TCP, "127.0.0.1", t.manager.port);
    assertEquals(own.code, DialResult_Code.PROHIBITED);
    assertEquals(own.message, `destination "127.0.0.1" is a loopback address`);
    const mapped = await openTunnel(
      t.client,
      session,
      Protocol.TCP,
      "::ffff:127.0.0.1",
      t.manager.port,
    );
    assertEquals(mapped.code, DialResult_Code.PROHIBITED);
  });
  listener.close();
});

Deno.test("tunnel: an unknown session gets NO_SESSION, and so does an expired one", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  await withManager({ allowAnyDestination: true, sessionTtlMs: 1000 }, async (t, session) => {
    const unknown = await openTunnel(t.client, "0123456789abcdef", Protocol.TCP, "127.0.0.1", port);
    assertEquals(unknown.code, DialResult_Code.NO_SESSION);
    assertMatch(unknown.message, /unknown or expired: arrive again/);
    t.advance(1001);
    const expired = await openTunnel(t.client, session, Protocol.TCP, "127.0.0.1", port);
    assertEquals(expired.code, DialResult_Code.NO_SESSION);
  });
  listener.close();
});

Deno.test("tunnel: a first message other than open ends the call with INVALID_ARGUMENT", async () => {
  await withManager({}, async (t) => {
    const call = t.client.tunnel();
    const messages: TunnelMessage[] = [];
    call.on("data", (m: TunnelMessage) => messages.push(m));
    const error = await new Promise<grpc.ServiceError>((resolve) => {
      call.on("error", resolve);
      call.write(data("too early"));
    });
    assertEquals(error.code, grpc.status.INVALID_ARGUMENT);
    assertEquals(messages[0]?.kind.case, "close");
    assertMatch(error.details, /the first tunnel message must be "open", not "data"/);
  });
});

Deno.test("tunnel TCP: departing and expiring end the session's tunnels with a reason", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const accepted: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of listener) accepted.push(conn);
  })();
  await withManager({ allowAnyDestination: true, sessionTtlMs: 1000 }, async (t, session) => {
    const a = await openTunnel(t.client, session, Protocol.TCP, "127.0.0.1", port);
    const b = await openTunnel(t.client, session, Protocol.TCP, "127.0.0.1", port);
    await call(t.client, "depart", { sessionId: session });
    for (const tunnel of [a, b]) {
      const { then } = await readData(tunnel.reader);
      assertEquals(then?.kind.case, "close");
      assertEquals((then?.kind.value as { reason: string }).reason, "the session departed");
      await tunnel.reader.over();
      tunnel.call.end();
    }
    assertEquals(
      t.lines.at(-1),
      `manager: session ${session.slice(0, 8)}… departed (2 tunnels closed)`,
    );

    const again = await t.arrive();
    const c = await openTunnel(t.client, again, Protocol.TCP, "127.0.0.1", port);
    t.advance(1001);
    t.manager.sweep();
    const { then } = await readData(c.reader);
    assertEquals((then?.kind.value as { reason: string }).reason, "the session expired");
    c.call.end();
    assertEquals(t.manager.stats.tcpTunnels, 0);
  });
  listener.close();
  await accepting.catch(() => {});
  for (const conn of accepted) conn.close();
});

Deno.test("tunnel UDP: each data message is one datagram, both ways", async () => {
  const echo = dgram.createSocket("udp4");
  echo.on(
    "message",
    (message, from) =>
      echo.send(Buffer.concat([Buffer.from("echo:"), message]), from.port, from.address),
  );
  await new Promise<void>((resolve) => echo.bind(0, "127.0.0.1", resolve));
  await withManager({ allowAnyDestination: true }, async (t, session) => {
    const tunnel = await openTunnel(
      t.client,
      session,
      Protocol.UDP,
      "127.0.0.1",
      echo.address().port,
    );
    assertEquals(tunnel.code, DialResult_Code.OK, tunnel.message);
    const big = "x".repeat(60_000);
    for (const text of ["one", "two", big]) tunnel.call.write(data(text));
    const got: string[] = [];
    for (let i = 0; i < 3; i++) {
      const message = await tunnel.reader.next();
      assert(message?.kind.case === "data", `got ${message?.kind.case}`);
      got.push(decoder.decode(message.kind.value));
    }
    assertEquals(got.sort(), ["echo:one", "echo:two", `echo:${big}`].sort());
    assertEquals(t.manager.stats.udpTunnels, 1);
    tunnel.call.write(closeMessage());
    tunnel.call.end();
    await tunnel.reader.over();
    assertEquals(t.manager.stats.udpTunnels, 0);
  });
  echo.close();
});

Deno.test("tunnel UDP: a flow idle for the idle timeout ends with close", async () => {
  const echo = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => echo.bind(0, "127.0.0.1", resolve));
  await withManager({ allowAnyDestination: true, udpIdleTimeoutMs: 150 }, async (t, session) => {
    const tunnel = await openTunnel(
      t.client,
      session,
      Protocol.UDP,
      "127.0.0.1",
      echo.address().port,
    );
    const message = await tunnel.reader.next(3000);
    assertEquals(message?.kind.case, "close");
    assertMatch((message?.kind.value as { reason: string }).reason, /^idle for \d+ s$/);
    await tunnel.reader.over();
    tunnel.call.end();
    assertEquals(t.manager.stats.udpTunnels, 0);
  });
  echo.close();
});

Deno.test("tunnel ICMP: an echo to a live address is OK; without a ping program it is UNREACHABLE", async () => {
  await withManager({ allowAnyDestination: true }, async (t, session) => {
    const ping = await openTunnel(t.client, session, Protocol.ICMP, "127.0.0.1", 0, 2000);
    assertEquals(ping.code, DialResult_Code.OK, ping.message);
    assertMatch(ping.message, /^reply from 127\.0\.0\.1/);
    await ping.reader.over();
  });
  await withManager({ allowAnyDestination: true, pingProgram: null }, async (t, session) => {
    const ping = await openTunnel(t.client, session, Protocol.ICMP, "127.0.0.1", 0);
    assertEquals([ping.code, ping.message], [DialResult_Code.UNREACHABLE, NO_PING_MESSAGE]);
    assert(t.lines.includes("manager: no ping program: pings are answered unreachable"));
  });
});
