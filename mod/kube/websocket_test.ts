/**
 * The WebSocket client against a hand-written server that speaks raw frames
 * (fragments, pings, a close, frames split across reads), and against the
 * fake API server's refusals.
 */

import { Buffer } from "node:buffer";
import { createHash } from "node:crypto";
import { assert, assertEquals, assertMatch, assertRejects } from "../../tests/_assert.ts";
import {
  LIMITED_TOKEN,
  runningPod,
  withApi,
  writeKubeconfig,
} from "../../tests/sim/apiserver/_testing.ts";
import { KubeConfig } from "@kubernetes/client-node";
import { KubeApiError } from "./api.ts";
import { resolveAccess } from "./client.ts";
import { connectWebSocket, frame } from "./websocket.ts";

const GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/** `n` bytes of a fixed pseudo-random pattern (getRandomValues stops at 64 KiB). */
function pattern(n: number): Uint8Array {
  const out = new Uint8Array(n);
  for (let i = 0, x = 12345; i < n; i++) out[i] = (x = (x * 1103515245 + 12345) >>> 0) >>> 24;
  return out;
}

/** Unmasks a client frame: [fin|op, payload]. */
function parseClientFrame(bytes: Uint8Array): { op: number; payload: Uint8Array; size: number } {
  const b = Buffer.from(bytes);
  let length = b[1]! & 0x7f;
  let at = 2;
  if (length === 126) {
    length = b.readUInt16BE(2);
    at = 4;
  } else if (length === 127) {
    length = b.readUInt32BE(6);
    at = 10;
  }
  assert((b[1]! & 0x80) !== 0, "client frames are masked");
  const key = b.subarray(at, at + 4);
  const payload = new Uint8Array(length);
  for (let i = 0; i < length; i++) payload[i] = b[at + 4 + i]! ^ key[i & 3]!;
  return { op: b[0]! & 0x0f, payload, size: at + 4 + length };
}

/** A server frame (unmasked). */
function serverFrame(op: number, payload: Uint8Array, fin = true): Uint8Array {
  const n = payload.length;
  const head = n < 126
    ? [n]
    : n < 65536
    ? [126, n >> 8, n & 0xff]
    : [127, 0, 0, 0, 0, n >>> 24, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
  return new Uint8Array([(fin ? 0x80 : 0) | op, ...head, ...payload]);
}

Deno.test("frame() masks payloads of every length encoding so that unmasking gives them back", () => {
  for (const n of [0, 1, 3, 125, 126, 127, 65535, 65536, 70_001]) {
    const payload = pattern(n);
    const parsed = parseClientFrame(frame(2, payload));
    assertEquals(parsed.op, 2);
    assertEquals(parsed.size, frame(2, payload).length);
    assertEquals(parsed.payload, payload);
  }
});

/**
 * Serves one WebSocket by hand: answers the handshake, then runs `script`
 * with the raw connection.
 */
function rawServer(
  script: (conn: Deno.Conn) => Promise<void>,
): { url: string; done: Promise<void> } {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const done = (async () => {
    const conn = await listener.accept();
    listener.close();
    const buf = new Uint8Array(4096);
    let text = "";
    while (!text.includes("\r\n\r\n")) {
      const n = await conn.read(buf);
      if (n === null) return;
      text += new TextDecoder().decode(buf.subarray(0, n));
    }
    const key = /sec-websocket-key: *(\S+)/i.exec(text)![1]!;
    const accept = createHash("sha1").update(key + GUID).digest("base64");
    await conn.write(new TextEncoder().encode(
      "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
        `Sec-WebSocket-Accept: ${accept}\r\nSec-WebSocket-Protocol: v4.channel.k8s.io\r\n\r\n`,
    ));
    try {
      await script(conn);
    } finally {
      conn.close();
    }
  })();
  return { url: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`, done };
}

async function readClientFrame(conn: Deno.Conn): Promise<{ op: number; payload: Uint8Array }> {
  const chunks: number[] = [];
  const buf = new Uint8Array(65536);
  for (;;) {
    if (chunks.length >= 6) {
      try {
        const f = parseClientFrame(new Uint8Array(chunks));
        if (chunks.length >= f.size) return f;
      } catch { /* not whole yet */ }
    }
    const n = await conn.read(buf);
    if (n === null) throw new Error("the client closed");
    chunks.push(...buf.subarray(0, n));
  }
}

Deno.test("connectWebSocket() joins fragments, answers pings, parses frames split byte by byte, and closes cleanly", async () => {
  const big = pattern(70_000);
  const server = rawServer(async (conn) => {
    // A message in three fragments, a ping between them, one frame a byte at a time.
    await conn.write(serverFrame(2, new Uint8Array([1, 2]), false));
    await conn.write(serverFrame(9, new TextEncoder().encode("hi")));
    await conn.write(serverFrame(0, new Uint8Array([3]), false));
    await conn.write(serverFrame(0, new Uint8Array([4]), true));
    const pong = await readClientFrame(conn);
    assertEquals([pong.op, new TextDecoder().decode(pong.payload)], [10, "hi"]);
    for (const b of serverFrame(1, new TextEncoder().encode("text"))) {
      await conn.write(new Uint8Array([b]));
    }
    await conn.write(serverFrame(2, big));
    const echo = await readClientFrame(conn);
    assertEquals([echo.op, echo.payload], [2, new Uint8Array([9, 9, 9])]);
    await conn.write(serverFrame(8, new Uint8Array([0x03, 0xe8])));
    const close = await readClientFrame(conn);
    assertEquals(close.op, 8);
  });
  const ws = await connectWebSocket({ server: server.url, headers: {} }, "/x", {
    protocols: ["v4.channel.k8s.io"],
  });
  assertEquals(ws.protocol, "v4.channel.k8s.io");
  const got: Array<Uint8Array | string> = [];
  ws.onmessage = (m) => {
    got.push(m);
    if (got.length === 3) ws.send(new Uint8Array([9, 9, 9]));
  };
  assertEquals(await ws.closed, "");
  await server.done;
  assertEquals(got[0], new Uint8Array([1, 2, 3, 4]));
  assertEquals(got[1], "text");
  assertEquals((got[2] as Uint8Array).length, big.length);
  assertEquals(got[2], big);
});

Deno.test("connectWebSocket() unmasks a frame a server masked (which it tolerates)", async () => {
  const payload = pattern(1001);
  const server = rawServer(async (conn) => {
    // A client frame's layout is a masked frame: send one the server's way.
    await conn.write(frame(2, payload));
    await conn.write(serverFrame(8, new Uint8Array([0x03, 0xe8])));
    await readClientFrame(conn);
  });
  const ws = await connectWebSocket({ server: server.url, headers: {} }, "/x", {
    protocols: ["v4.channel.k8s.io"],
  });
  const got: Array<Uint8Array | string> = [];
  ws.onmessage = (m) => got.push(m);
  assertEquals(await ws.closed, "");
  await server.done;
  assertEquals(got, [payload]);
});

Deno.test("connectWebSocket() fails the connection on a frame of unknown opcode", async () => {
  const server = rawServer(async (conn) => {
    await conn.write(serverFrame(3, new Uint8Array([1])));
    await new Promise((r) => setTimeout(r, 100));
  });
  const ws = await connectWebSocket({ server: server.url, headers: {} }, "/x", {
    protocols: ["v4.channel.k8s.io"],
  });
  assertMatch(await ws.closed, /unknown opcode 3/);
  await server.done;
});

Deno.test("connectWebSocket() fails the connection on a control frame over 125 bytes or fragmented", async () => {
  for (const bad of [serverFrame(9, pattern(126)), serverFrame(9, pattern(4), false)]) {
    const server = rawServer(async (conn) => {
      await conn.write(bad);
      await new Promise((r) => setTimeout(r, 100));
    });
    const ws = await connectWebSocket({ server: server.url, headers: {} }, "/x", {
      protocols: ["v4.channel.k8s.io"],
    });
    assertMatch(await ws.closed, /control frame over 125 bytes or fragmented/);
    await server.done;
  }
});

Deno.test("connectWebSocket() gives a refused upgrade's HTTP status and the API server's message", async () => {
  await withApi(async (t) => {
    t.api.store.create({ apiVersion: "v1", kind: "Namespace", metadata: { name: "vif-system" } });
    t.api.store.create(runningPod("vif-system", "traffic-manager-1"));
    const kc = new KubeConfig();
    kc.loadFromFile(await writeKubeconfig(t, LIMITED_TOKEN));
    const access = await resolveAccess(kc);
    const e = await assertRejects(
      () =>
        connectWebSocket(
          access,
          "/api/v1/namespaces/vif-system/pods/traffic-manager-1/portforward?ports=1",
          {
            protocols: ["v4.channel.k8s.io"],
          },
        ),
      KubeApiError,
    );
    assertEquals((e as KubeApiError).statusCode, 403);
    assertMatch(e.message, /forbidden/);
  });
});
