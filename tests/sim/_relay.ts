/**
 * A byte relay between two kinds of socket, used to reach the simulated API
 * server (which listens on the machine's loopback) from node 1's namespace:
 *
 * ```
 * vif-node1: TCP 198.19.200.1:6443 ──(this script, in the namespace)──► unix socket
 * the machine:               unix socket ──(startRelay, in-process)──► TCP 127.0.0.1:<api>
 * ```
 *
 * One process, no forks: stopping it ends every connection (a forking
 * `socat` leaves its children, and their open pipes, behind).
 *
 * Run as a script: `deno run -A _relay.ts <host> <port> <unix socket>`; it
 * prints `listening` once it accepts connections.
 *
 * @module
 */

/** A running relay. */
export interface Relay {
  /** Stops listening and closes every relayed connection. */
  close(): void;
}

/**
 * Copies `from` to `to` with plain reads and writes until `from` ends, then
 * half-closes `to`; a reset on either side closes both.
 *
 * @param from where bytes come from
 * @param to where they go
 * @returns when the direction is done; never rejects
 */
export async function copy(from: Deno.Conn, to: Deno.Conn): Promise<void> {
  const buf = new Uint8Array(128 * 1024);
  try {
    for (;;) {
      const n = await from.read(buf);
      if (n === null) break;
      let off = 0;
      while (off < n) off += await to.write(buf.subarray(off, n));
    }
    await to.closeWrite();
  } catch {
    // A reset on either side ends both.
    try {
      to.close();
    } catch { /* closed */ }
    try {
      from.close();
    } catch { /* closed */ }
  }
}

/**
 * Accepts connections on `listener` and pipes each to a connection from `dial`.
 *
 * @param listener where clients come
 * @param dial opens the other side
 * @returns the relay
 */
export function startRelay(listener: Deno.Listener, dial: () => Promise<Deno.Conn>): Relay {
  const open = new Set<Deno.Conn>();
  const closeQuietly = (c: Deno.Conn) => {
    open.delete(c);
    try {
      c.close();
    } catch { /* closed */ }
  };
  (async () => {
    try {
      for await (const conn of listener) {
        open.add(conn);
        (async () => {
          let other: Deno.Conn | undefined;
          try {
            other = await dial();
            open.add(other);
            if ("setNoDelay" in other) (other as Deno.TcpConn).setNoDelay(true);
            if ("setNoDelay" in conn) (conn as Deno.TcpConn).setNoDelay(true);
            await Promise.all([copy(conn, other), copy(other, conn)]);
          } catch {
            /* the far side refused: drop the client */
          } finally {
            closeQuietly(conn);
            if (other) closeQuietly(other);
          }
        })();
      }
    } catch { /* closed */ }
  })();
  return {
    close() {
      try {
        listener.close();
      } catch { /* closed */ }
      for (const c of [...open]) closeQuietly(c);
    },
  };
}

if (import.meta.main) {
  const [hostname, port, path] = Deno.args;
  if (!hostname || !port || !path) {
    console.error("usage: _relay.ts <host> <port> <unix socket>");
    Deno.exit(2);
  }
  const relay = startRelay(
    Deno.listen({ hostname, port: Number(port), transport: "tcp" }),
    () => Deno.connect({ transport: "unix", path }),
  );
  const stop = () => {
    relay.close();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGTERM", stop);
  Deno.addSignalListener("SIGINT", stop);
  console.log("listening");
}
