/**
 * The control socket's server: the kernel's peer credentials on each
 * connection (root in-process, nobody from another process), the mode the
 * file gets before anyone can reach it, data both ways, and close.
 */

import { assert, assertEquals, assertRejects } from "../../tests/_assert.ts";
import { listenUnix } from "./mod.ts";

async function tempDir(): Promise<string> {
  const dir = await Deno.makeTempDir({ prefix: "vif-unix-" });
  await Deno.chmod(dir, 0o755); // nobody must reach the socket inside
  return dir;
}

Deno.test("listenUnix: a connection carries the caller's pid and uid, and bytes both ways", async () => {
  const dir = await tempDir();
  const server = await listenUnix(`${dir}/s.sock`, { mode: 0o600 });
  try {
    assertEquals((await Deno.stat(`${dir}/s.sock`)).mode! & 0o777, 0o600);
    const accepted = server[Symbol.asyncIterator]().next();
    const client = await Deno.connect({ transport: "unix", path: `${dir}/s.sock` });
    const { value: conn } = await accepted;
    assert(conn);
    assertEquals([conn.peer.pid, conn.peer.uid], [Deno.pid, Deno.uid()]);
    await client.write(new TextEncoder().encode("ping\n"));
    const buf = new Uint8Array(64);
    const n = await conn.read(buf);
    assertEquals(new TextDecoder().decode(buf.subarray(0, n!)), "ping\n");
    await conn.write(new TextEncoder().encode("pong\n"));
    const m = await client.read(buf);
    assertEquals(new TextDecoder().decode(buf.subarray(0, m!)), "pong\n");
    client.close();
    assertEquals(await conn.read(buf), null);
    conn.close();
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
  await assertRejects(() => Deno.stat(`${dir}/s.sock`));
});

Deno.test("listenUnix: another user's connection says so (SO_PEERCRED from socat as nobody)", async () => {
  const dir = await tempDir();
  const server = await listenUnix(`${dir}/s.sock`, { mode: 0o666 });
  try {
    const accepted = server[Symbol.asyncIterator]().next();
    const child = new Deno.Command("setpriv", {
      args: [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "socat",
        "-",
        `UNIX-CONNECT:${dir}/s.sock`,
      ],
      stdin: "piped",
      stdout: "null",
      stderr: "piped",
    }).spawn();
    const { value: conn } = await accepted;
    assert(conn);
    assertEquals([conn.peer.uid, conn.peer.gid], [65534, 65534]);
    assert(conn.peer.pid > 0 && conn.peer.pid !== Deno.pid);
    await child.stdin.close();
    const buf = new Uint8Array(16);
    assertEquals(await conn.read(buf), null);
    conn.close();
    await child.output();
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("listenUnix: a stale socket file is replaced; close ends a pending read", async () => {
  const dir = await tempDir();
  await Deno.writeTextFile(`${dir}/s.sock`, "stale");
  const server = await listenUnix(`${dir}/s.sock`);
  try {
    assert((await Deno.lstat(`${dir}/s.sock`)).isSocket);
    const accepted = server[Symbol.asyncIterator]().next();
    const client = await Deno.connect({ transport: "unix", path: `${dir}/s.sock` });
    const { value: conn } = await accepted;
    assert(conn);
    const pending = conn.read(new Uint8Array(16));
    conn.close();
    assertEquals(await pending, null);
    client.close();
  } finally {
    await server.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("listenUnix: a path too long for sockaddr_un is refused with the limit", async () => {
  await assertRejects(
    () => listenUnix(`/tmp/${"x".repeat(120)}`),
    RangeError,
    "longer than 107 bytes",
  );
});
