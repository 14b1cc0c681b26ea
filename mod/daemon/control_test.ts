/**
 * The control protocol: line framing, request checking, and a client talking
 * to a server that answers with progress, a result and an error.
 */

import { staleSocket } from "../../tests/_unix.ts";
import { assert, assertEquals, assertRejects, assertThrows } from "../../tests/_assert.ts";
import { listenUnix } from "../tun/mod.ts";
import {
  ControlClient,
  DaemonError,
  encodeLine,
  LineSplitter,
  MAX_LINE,
  parseRequest,
} from "./control.ts";

Deno.test("LineSplitter: whole lines only, across chunks, and a limit on length", () => {
  const s = new LineSplitter();
  const enc = new TextEncoder();
  assertEquals(s.push(enc.encode('{"a":1}\n{"b"')), ['{"a":1}']);
  assertEquals(s.push(enc.encode(":2}\n\n")), ['{"b":2}', ""]);
  assertEquals(s.push(enc.encode("é")), []);
  assertEquals(s.push(enc.encode("\n")), ["é"]);
  assertThrows(() => s.push(new Uint8Array(MAX_LINE + 1).fill(65)), RangeError, "longer than");
  // The framing is lost: nothing more comes out, not even a short line.
  assertThrows(() => s.push(enc.encode("ok\n")), RangeError, "longer than");
});

Deno.test("LineSplitter refuses a finished line over the limit, and keeps small reads linear", () => {
  const enc = new TextEncoder();
  const long = new LineSplitter();
  const line = new Uint8Array(MAX_LINE + 2).fill(65);
  line[MAX_LINE + 1] = 10;
  assertThrows(() => long.push(line), RangeError, "longer than");
  // A line of MAX_LINE bytes in 1-byte reads: well under a second (it was quadratic).
  const small = new LineSplitter();
  const start = performance.now();
  for (let i = 0; i < MAX_LINE; i++) small.push(enc.encode("b"));
  assertEquals(small.push(enc.encode("\n"))[0]!.length, MAX_LINE);
  const took = performance.now() - start;
  assert(took < 10_000, `1 MiB in 1-byte reads took ${Math.round(took)} ms`);
});

Deno.test("parseRequest: JSON with a whole-number id and a method, else an error to send back", () => {
  assertEquals(parseRequest('{"id":3,"method":"status"}'), { id: 3, method: "status", params: {} });
  const notJson = parseRequest("status");
  assert("error" in notJson);
  assertEquals([notJson.id, notJson.error.code], [0, "bad-request"]);
  for (const line of ['{"method":"status"}', '{"id":1e400,"method":"status"}', '{"id":1.5}']) {
    const noId = parseRequest(line);
    assert("error" in noId && /whole-number "id"/.test(noId.error.message), line);
    assertEquals(noId.id, 0);
  }
  const noMethod = parseRequest('{"id":7}');
  assert("error" in noMethod);
  assertEquals(noMethod.id, 7);
});

Deno.test("ControlClient: progress lines reach the caller, then the result; errors keep their hint and code", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vif-control-" });
  const server = await listenUnix(`${dir}/daemon.sock`);
  const serving = (async () => {
    for await (const conn of server) {
      const splitter = new LineSplitter();
      const buf = new Uint8Array(4096);
      for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
        for (const line of splitter.push(buf.subarray(0, n))) {
          const r = parseRequest(line);
          if ("error" in r) continue;
          // A reply to someone else's id is skipped by the client.
          await conn.write(encodeLine({ id: 999, result: "not yours" }));
          if (r.method === "connect") {
            await conn.write(encodeLine({ id: r.id, progress: "step one" }));
            await conn.write(encodeLine({ id: r.id, progress: "step two" }));
            await conn.write(encodeLine({ id: r.id, result: { connected: true } }));
          } else {
            await conn.write(encodeLine({
              id: r.id,
              error: { message: "no such thing", hint: "Do the other thing.", code: "failed" },
            }));
          }
        }
      }
      conn.close();
      return;
    }
  })();
  const client = await ControlClient.connect(`${dir}/daemon.sock`);
  try {
    const steps: string[] = [];
    // deno-lint-ignore no-explicit-any
    const result = await client.request("connect", {} as any, (s) => steps.push(s));
    assertEquals(result, { connected: true });
    assertEquals(steps, ["step one", "step two"]);
    const e = await assertRejects(() => client.request("status", {}), DaemonError, "no such thing");
    assertEquals([(e as DaemonError).hint, (e as DaemonError).code], [
      "Do the other thing.",
      "failed",
    ]);
  } finally {
    client.close();
    await serving;
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ControlClient.connect: no socket is NotFound, a dead daemon's socket is refused", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vif-control-" });
  try {
    await assertRejects(() => ControlClient.connect(`${dir}/daemon.sock`), Deno.errors.NotFound);
    // A socket file whose listener is gone (a daemon killed with -9) refuses.
    await staleSocket(`${dir}/daemon.sock`);
    assert((await Deno.lstat(`${dir}/daemon.sock`)).isSocket);
    await assertRejects(
      () => ControlClient.connect(`${dir}/daemon.sock`),
      Deno.errors.ConnectionRefused,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("ControlClient.stream: events reach the caller in order, abort sends stop, the result still comes", async () => {
  const dir = await Deno.makeTempDir({ prefix: "vif-control-" });
  const server = await listenUnix(`${dir}/daemon.sock`);
  const seen: string[] = [];
  const serving = (async () => {
    for await (const conn of server) {
      const splitter = new LineSplitter();
      const buf = new Uint8Array(4096);
      let streamId = 0;
      for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
        for (const line of splitter.push(buf.subarray(0, n))) {
          const r = parseRequest(line);
          if ("error" in r) continue;
          seen.push(`${r.method} ${JSON.stringify(r.params)}`);
          if (r.method === "capture") {
            streamId = r.id;
            await conn.write(encodeLine({ id: r.id, progress: "ignored" }));
            await conn.write(encodeLine({ id: r.id, event: { type: "start", snaplen: 96 } }));
            await conn.write(encodeLine({ id: r.id, event: { type: "packets", count: 2 } }));
          } else if (r.method === "stop") {
            await conn.write(encodeLine({ id: r.id, result: { stopped: true } }));
            await conn.write(encodeLine({ id: streamId, event: { type: "packets", count: 1 } }));
            await conn.write(
              encodeLine({ id: streamId, result: { packets: 3, dropped: 0, reason: "stopped" } }),
            );
          }
        }
      }
      conn.close();
      return;
    }
  })();
  const client = await ControlClient.connect(`${dir}/daemon.sock`);
  try {
    const stop = new AbortController();
    const events: unknown[] = [];
    const result = await client.stream("capture", { port: 80 }, async (event) => {
      events.push(event);
      await new Promise((r) => setTimeout(r, 1)); // a consumer that takes its time
      if (event.count === 2) stop.abort();
    }, stop.signal);
    assertEquals(events, [
      { type: "start", snaplen: 96 },
      { type: "packets", count: 2 },
      { type: "packets", count: 1 },
    ]);
    assertEquals(result, { packets: 3, dropped: 0, reason: "stopped" });
    assertEquals(seen, ['capture {"port":80}', 'stop {"id":1}']);
  } finally {
    client.close();
    await serving;
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});
