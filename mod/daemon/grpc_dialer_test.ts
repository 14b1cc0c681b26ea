/**
 * The per-flow `Tunnel` dialer, kept for managers that do not offer `Mux`:
 * against an in-process manager with mux turned off.
 *
 * @module
 */

import { startManager } from "../../manager/_testing.ts";
import { assertEquals, assertMatch } from "../../tests/_assert.ts";
import { GrpcDialer } from "./grpc_dialer.ts";

const LOCAL = { address: "127.0.0.1", port: 40_000 };

Deno.test("GrpcDialer: a Tunnel call per flow carries data both ways; a closed port is refused", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const served = (async () => {
    const conn = await listener.accept();
    const buffer = new Uint8Array(100);
    const n = await conn.read(buffer);
    await conn.write(buffer.subarray(0, n ?? 0));
    conn.close();
  })();
  const t = await startManager({ allowAnyDestination: true, mux: false });
  try {
    const session = await t.arrive();
    const d = new GrpcDialer(t.client, { sessionId: () => session });
    const r = await d.dialTcp({ source: LOCAL, destination: { address: "127.0.0.1", port } });
    if (!r.ok) throw new Error(r.message);
    const writer = r.value.writable.getWriter();
    await writer.write(new TextEncoder().encode("echo me"));
    await writer.close();
    let text = "";
    for await (const chunk of r.value.readable) text += new TextDecoder().decode(chunk);
    assertEquals(text, "echo me");
    await served;
    listener.close();
    const refused = await d.dialTcp({ source: LOCAL, destination: { address: "127.0.0.1", port } });
    assertEquals(refused.ok ? "ok" : refused.reason, "refused");
    assertMatch(refused.ok ? "" : refused.message ?? "", /ECONNREFUSED/);
    assertEquals(t.manager.stats.dials, { ok: 1, refused: 1 });
  } finally {
    await t.close();
  }
});
