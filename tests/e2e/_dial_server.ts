/**
 * The e2e tests' dial server: run inside the server namespace, it dials what
 * the workstation's router asks for (see `_dial_protocol.ts`), like a tiny
 * traffic-manager without gRPC.
 *
 * Usage: `deno run -A tests/e2e/_dial_server.ts SOCKET_PATH`
 *
 * @module
 */

import {
  type DialAnswer,
  type DialHeader,
  frame,
  readFrames,
  readLine,
  writeLine,
} from "./_dial_protocol.ts";
import dgram from "node:dgram";

const DIAL_TIMEOUT_MS = 2000;

function failure(error: unknown): DialAnswer {
  if (error instanceof Deno.errors.ConnectionRefused) return { ok: false, reason: "refused" };
  if (error instanceof Deno.errors.TimedOut) return { ok: false, reason: "timeout" };
  return { ok: false, reason: "unreachable" };
}

async function dialTcp(h: DialHeader): Promise<Deno.TcpConn | DialAnswer> {
  const signal = AbortSignal.timeout(DIAL_TIMEOUT_MS);
  const timeout = new Promise<DialAnswer>((resolve) =>
    signal.addEventListener("abort", () => resolve({ ok: false, reason: "timeout" }))
  );
  const dial = Deno.connect({ hostname: h.host, port: h.port }).then(
    (c) => c,
    (e) => failure(e),
  );
  const r = await Promise.race([dial, timeout]);
  if ("ok" in r) dial.then((c) => "close" in c && c.close());
  return r;
}

async function pipe(from: Deno.Conn, to: Deno.Conn, first?: Uint8Array): Promise<void> {
  const buf = new Uint8Array(256 * 1024);
  try {
    if (first && first.length) await to.write(first);
    for (;;) {
      const n = await from.read(buf);
      if (n === null) break;
      for (let off = 0; off < n;) off += await to.write(buf.subarray(off, n));
    }
    await to.closeWrite();
  } catch {
    try {
      to.close();
    } catch { /* closed */ }
  }
}

async function serve(conn: Deno.UnixConn): Promise<void> {
  const { value: h, rest } = await readLine<DialHeader>(conn);
  if (h.proto === "tcp") {
    const r = await dialTcp(h);
    if ("ok" in r) {
      await writeLine(conn, r);
      conn.close();
      return;
    }
    r.setNoDelay(true);
    await writeLine(conn, { ok: true });
    await Promise.all([pipe(conn, r, rest), pipe(r, conn)]);
    for (const c of [conn, r]) {
      try {
        c.close();
      } catch { /* closed */ }
    }
  } else if (h.proto === "udp") {
    const sock = dgram.createSocket(h.host.includes(":") ? "udp6" : "udp4");
    sock.connect(h.port, h.host);
    await new Promise((resolve) => sock.once("connect", resolve));
    await writeLine(conn, { ok: true });
    sock.on("message", (msg: Uint8Array) => conn.write(frame(msg)).catch(() => {}));
    sock.on("error", () => {});
    await readFrames(conn, rest, (f) => sock.send(f));
    sock.close();
    conn.close();
  } else {
    const p = await new Deno.Command("ping", {
      args: ["-c1", "-W1", h.host],
      stdout: "null",
      stderr: "null",
    }).output();
    await writeLine(conn, p.success ? { ok: true } : { ok: false, reason: "unreachable" });
    conn.close();
  }
}

if (import.meta.main) {
  const path = Deno.args[0];
  if (!path) throw new Error("usage: _dial_server.ts SOCKET_PATH");
  const listener = Deno.listen({ transport: "unix", path });
  console.log("dial server: ready");
  for await (const conn of listener) serve(conn).catch(() => {});
}
