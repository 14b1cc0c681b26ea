/**
 * The manager against abusive clients: every bound of limits.ts holds, a
 * client that breaks a flow's rules loses that flow and nothing else, the
 * direct listener asks for a client certificate, and `also_proxy` stays
 * within what the admin allows. Raw frames on a real `Mux` call to an
 * in-process manager over TLS.
 *
 * @module
 */

import dgram from "node:dgram";
import grpc from "@grpc/grpc-js";
import {
  decodeClose,
  decodeResult,
  encodeOpen,
  FLOW_WINDOW,
  forEachFrame,
  FrameType,
  FrameWriter,
  MuxProtocol,
} from "../mod/rpc/mux.ts";
import { DialResult_Code, MAX_CHUNK, MUX_SESSION_HEADER } from "../mod/rpc/service.ts";
import { assert, assertEquals, assertMatch } from "../tests/_assert.ts";
import {
  call,
  makeClient,
  ref,
  startManager,
  type TestClient,
  type TestManager,
  testTls,
} from "../tests/_manager.ts";

/** A raw Mux call: frames written by hand, frames received kept. */
class RawMux {
  readonly frames: Array<{ id: number; type: number; payload: Uint8Array }> = [];
  readonly out: FrameWriter;
  readonly call: grpc.ClientDuplexStream<Uint8Array, Uint8Array>;
  error: grpc.ServiceError | undefined;

  constructor(client: TestClient, session: string) {
    const metadata = new grpc.Metadata();
    metadata.set(MUX_SESSION_HEADER, session);
    this.call = client.mux(metadata);
    this.call.on("data", (batch: Uint8Array) =>
      forEachFrame(
        batch,
        (id, type, payload) => this.frames.push({ id, type, payload: payload.slice() }),
      ));
    this.call.on("error", (e: grpc.ServiceError) => this.error = e);
    this.out = new FrameWriter((batch) => this.call.write(batch));
  }

  /** Opens a TCP flow to `127.0.0.1:port`. */
  open(id: number, port: number): void {
    this.out.write(
      id,
      FrameType.Open,
      encodeOpen({
        protocol: MuxProtocol.Tcp,
        sourceIp: new Uint8Array([127, 0, 0, 1]),
        sourcePort: 40_000 + id,
        destinationIp: new Uint8Array([127, 0, 0, 1]),
        destinationPort: port,
        dialTimeoutMs: 0,
        window: FLOW_WINDOW,
      }),
    );
  }

  /** The frames of one flow and type. */
  of(id: number, type: number) {
    return this.frames.filter((f) => f.id === id && f.type === type);
  }

  /** Waits for a frame of `id` and `type`. */
  async next(id: number, type: number, ms = 10_000) {
    await until(`frame ${type} of flow ${id}`, () => this.of(id, type).length > 0, ms);
    return this.of(id, type)[0]!;
  }

  end(): void {
    this.out.flush();
    this.call.end();
  }
}

async function until(what: string, done: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!done()) {
    if (Date.now() > deadline) throw new Error(`Timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
}

/** A server whose connections are accepted and never read. */
function deafServer(): { port: number; conns: Deno.Conn[]; close(): void } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const conns: Deno.Conn[] = [];
  (async () => {
    for await (const conn of listener) conns.push(conn);
  })().catch(() => {});
  return {
    port: (listener.addr as Deno.NetAddr).port,
    conns,
    close() {
      listener.close();
      for (const conn of conns) conn.close();
    },
  };
}

async function withManager(
  options: Parameters<typeof startManager>[0],
  body: (t: TestManager, session: string) => Promise<void>,
): Promise<void> {
  const t = await startManager({ allowAnyDestination: true, ...options });
  try {
    await body(t, await t.arrive());
  } finally {
    await t.close();
  }
}

Deno.test("bounds: a flow that sends past its credit is reset, and the manager holds no more than the window", async () => {
  const deaf = deafServer();
  await withManager({}, async (t, session) => {
    const mux = new RawMux(t.client, session);
    mux.open(1, deaf.port);
    mux.open(3, deaf.port);
    const result = decodeResult((await mux.next(1, FrameType.Result)).payload);
    assertEquals([result.code, result.window], [DialResult_Code.OK, FLOW_WINDOW]);
    await mux.next(3, FrameType.Result);
    // Three windows' worth, never waiting for WINDOW.
    const chunk = new Uint8Array(MAX_CHUNK);
    for (let sent = 0; sent < 3 * FLOW_WINDOW; sent += chunk.length) {
      mux.out.write(1, FrameType.Data, chunk);
    }
    const close = await mux.next(1, FrameType.Close);
    assertMatch(
      decodeClose(close.payload),
      /^the traffic-manager reset the flow: vif sent 262144 bytes with \d+ left of its window: past its credit$/,
    );
    assert(
      t.manager.stats.bufferedToDestinationPeak <= FLOW_WINDOW,
      `the manager held ${t.manager.stats.bufferedToDestinationPeak} bytes`,
    );
    assertEquals(t.manager.stats.violations, 1);
    assertEquals(t.manager.admission.total.buffered, 0);
    assertEquals(t.manager.admission.total.tcp, 1);
    assertMatch(t.lines.find((l) => /flow 1 reset/.test(l)) ?? "", /past its credit/);
    // The other flow, and the call, go on.
    assertEquals(mux.of(3, FrameType.Close).length, 0);
    assertEquals(mux.error, undefined);
    mux.end();
  });
  deaf.close();
});

Deno.test("bounds: a session's bytes held for destinations stay under its limit: the flow that would pass it is reset", async () => {
  const deaf = deafServer();
  await withManager({ limits: { bufferedPerSession: 600 * 1024 } }, async (t, session) => {
    const mux = new RawMux(t.client, session);
    mux.open(1, deaf.port);
    mux.open(3, deaf.port);
    await mux.next(1, FrameType.Result);
    await mux.next(3, FrameType.Result);
    // One batch: the bytes are held until the socket has taken them, so the
    // third chunk would take the session past 600 KiB.
    const chunk = new Uint8Array(MAX_CHUNK);
    for (let i = 0; i < 3; i++) mux.out.write(1, FrameType.Data, chunk);
    const close = await mux.next(1, FrameType.Close);
    assertEquals(
      decodeClose(close.payload),
      "the traffic-manager reset the flow: the session would hold more than 0.6 MiB for " +
        "destinations that do not read (--max-buffered-per-session)",
    );
    assert(t.manager.stats.bufferedToDestinationPeak <= 600 * 1024);
    assertEquals(t.manager.admission.refused.bufferedPerSession, 1);
    await until(
      "the reset flow's bytes given back",
      () => t.manager.admission.total.buffered === 0,
    );
    // Only that flow: the other one still carries bytes.
    mux.out.write(3, FrameType.Data, new Uint8Array(1000));
    await until("the other flow's bytes", () => t.manager.stats.bytesToDestination >= 1000);
    assertEquals(mux.of(3, FrameType.Close).length, 0);
    mux.end();
  });
  deaf.close();
});

Deno.test("bounds: flows past a session's limit are refused with the limit's name, and given back when they end", async () => {
  const deaf = deafServer();
  await withManager(
    { limits: { tcpFlowsPerSession: 2, udpFlowsPerSession: 1 } },
    async (t, session) => {
      const mux = new RawMux(t.client, session);
      for (const id of [1, 3, 5]) mux.open(id, deaf.port);
      const third = decodeResult((await mux.next(5, FrameType.Result)).payload);
      assertEquals(third.code, DialResult_Code.UNREACHABLE);
      assertEquals(
        third.message,
        "refused: the session has 2 TCP flows open, its limit (--max-tcp-flows-per-session)",
      );
      assertEquals(t.manager.admission.refused.tcpFlowsPerSession, 1);
      // A flow ends: its place is free again.
      mux.out.write(1, FrameType.Close, new TextEncoder().encode("done"));
      await until("the flow given back", () => t.manager.admission.total.tcp === 1);
      mux.open(7, deaf.port);
      assertEquals(
        decodeResult((await mux.next(7, FrameType.Result)).payload).code,
        DialResult_Code.OK,
      );
      // Another session has its own count.
      const other = new RawMux(t.client, await t.arrive("bob"));
      other.open(1, deaf.port);
      assertEquals(
        decodeResult((await other.next(1, FrameType.Result)).payload).code,
        DialResult_Code.OK,
      );
      other.end();
      mux.end();
      await until("every flow given back", () => t.manager.admission.total.tcp === 0);
    },
  );
  deaf.close();
});

Deno.test("bounds: 70,000 DNS queries in flight leave the manager answering heartbeats within 1 s", async () => {
  // A DNS server that never answers.
  const silent = dgram.createSocket("udp4");
  await new Promise<void>((resolve) => silent.bind(0, "127.0.0.1", resolve));
  await withManager(
    { dnsUpstream: `127.0.0.1:${silent.address().port}`, dnsTimeoutMs: 10_000 },
    async (t, session) => {
      const mux = new RawMux(t.client, session);
      const query = new Uint8Array([
        0,
        0,
        1,
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
      const beats: number[] = [];
      let beating = true;
      const heartbeats = (async () => {
        while (beating) {
          const start = performance.now();
          await call(t.client, "remain", ref(session), 5000);
          beats.push(performance.now() - start);
          await new Promise((resolve) => setTimeout(resolve, 50));
        }
      })();
      for (let id = 1; id <= 70_000; id++) {
        mux.out.write(id, FrameType.Dns, query);
        if (id % 5000 === 0) await new Promise((resolve) => setTimeout(resolve, 0));
      }
      mux.out.flush();
      await until("the refusals", () => mux.frames.length >= 70_000 - 1024, 30_000);
      // The 1,024 it took are still waiting for the silent server: heartbeats go on meanwhile.
      await new Promise((resolve) => setTimeout(resolve, 1500));
      assertEquals(t.manager.admission.total.dns, 1024);
      beating = false;
      await heartbeats;
      assert(beats.length >= 10, `only ${beats.length} heartbeats`);
      const slowest = Math.max(...beats);
      assert(slowest < 1000, `a heartbeat took ${Math.round(slowest)} ms`);
      assertEquals(t.manager.admission.total.dns, 1024);
      const refusal = decodeResult(mux.frames.find((f) => f.type === FrameType.Result)!.payload);
      assertEquals(
        refusal.message,
        "refused: the session has 1024 DNS queries in flight, its limit (--max-dns-in-flight-per-session)",
      );
      mux.end();
    },
  );
  silent.close();
});

Deno.test("bounds: sessions past --max-sessions are refused with RESOURCE_EXHAUSTED", async () => {
  await withManager({ limits: { sessions: 2 } }, async (t) => {
    await t.arrive("bob");
    const error = await t.arrive("carol").then(() => undefined, (e: grpc.ServiceError) => e);
    assertEquals(error?.code, grpc.status.RESOURCE_EXHAUSTED);
    assertEquals(error?.details, "the traffic-manager has 2 sessions, its limit (--max-sessions)");
  });
});

Deno.test("bounds: also_proxy outside what the admin allows is refused at Arrive, saying which setting", async () => {
  await withManager({ allowAlsoProxy: ["198.19.200.0/24"] }, async (t) => {
    const arrive = (alsoProxy: string[]) =>
      call<{ sessionId: string }>(t.client, "arrive", {
        client: {
          name: "eve",
          hostname: "box",
          version: "0.1.0",
          namespace: "default",
          os: "linux",
        },
        alsoProxy,
      }).then((r) => r.sessionId, (e: grpc.ServiceError) => e);
    for (const asked of [["0.0.0.0/0"], ["::/0"], ["198.19.200.0/24", "198.19.0.0/16"]]) {
      const error = await arrive(asked) as grpc.ServiceError;
      assertEquals(error.code, grpc.status.PERMISSION_DENIED);
      assertMatch(
        error.details,
        /^also_proxy "[^"]+" is outside the subnets the cluster admin allows \(--allow-also-proxy of the traffic-manager: 198\.19\.200\.0\/24\)$/,
      );
    }
    assertEquals(typeof await arrive(["198.19.200.0/25"]), "string");
  });
});

Deno.test("bounds: the direct listener serves only clients with a certificate of its client CA", async () => {
  const tls = await testTls();
  const t = await startManager({ directListen: "127.0.0.1:0", clientCaPem: tls.clientCaPem });
  const clients: TestClient[] = [];
  const dial = (certificate?: { certPem: string; keyPem: string }) => {
    const client = makeClient(t.manager.directAddress!, tls.caPem, tls.serverName, certificate);
    clients.push(client);
    return call<{ name: string }>(client, "version", {}, 3000);
  };
  try {
    assertEquals((await dial(tls.client)).name, "vif-traffic-manager");
    for (const stranger of [undefined, tls.strangerClient]) {
      const error = await dial(stranger).then(() => undefined, (e: grpc.ServiceError) => e);
      assertEquals(error?.code, grpc.status.UNAVAILABLE, String(error));
    }
    // The loopback listener asks for no certificate: the port-forward is its gate.
    assertEquals(
      (await call<{ name: string }>(t.client, "version", {})).name,
      "vif-traffic-manager",
    );
  } finally {
    for (const client of clients) client.close();
    await t.close();
  }
});

Deno.test("bounds: the client listener will not listen anywhere but loopback", async () => {
  const error = await startManager({ listen: "0.0.0.0:0" }).then(
    async (t) => {
      await t.close();
      return undefined;
    },
    (e: Error) => e,
  );
  assertMatch(
    error?.message ?? "",
    /^Cannot serve clients on "0\.0\.0\.0:0": the client listener is on loopback only$/,
  );
});

Deno.test("bounds: a Mux call of an unknown session ends at once, and a session holds at most 4", async () => {
  await withManager({}, async (t, session) => {
    const stranger = new RawMux(t.client, "no-such-session");
    await until("the NOT_FOUND", () => stranger.error !== undefined);
    assertEquals(stranger.error?.code, grpc.status.NOT_FOUND);
    const calls = [1, 2, 3, 4, 5].map(() => new RawMux(t.client, session));
    // Each call is started once its first bytes come: open a flow on each.
    const deaf = deafServer();
    for (const mux of calls) mux.open(1, deaf.port);
    await until("the fifth call refused", () => calls.some((c) => c.error !== undefined));
    const refused = calls.filter((c) => c.error !== undefined);
    assertEquals(refused.length, 1);
    assertEquals(refused[0]!.error?.code, grpc.status.RESOURCE_EXHAUSTED);
    assertEquals(refused[0]!.error?.details, "the session has 4 Mux calls open already");
    for (const mux of calls) mux.end();
    deaf.close();
  });
});
