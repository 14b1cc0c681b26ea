/**
 * `pods/portforward` over WebSocket, as the kubelet serves it
 * (`k8s.io/kubelet/pkg/cri/streaming/portforward/websocket.go`):
 *
 * - subprotocol `v4.channel.k8s.io` (binary frames), `v4.base64.channel.k8s.io`
 *   (text frames, channel as an ASCII digit, payload in base64), or none;
 *   the first one the client offers that is supported is chosen, as
 *   `wsstream` does (so a client offering `v5.channel.k8s.io` first gets v4);
 * - for the i-th port of `?ports=`, data channel `2i` and error channel `2i+1`;
 * - every message starts with its channel byte;
 * - the first message on each channel is the port number, 2 bytes little-endian;
 * - each port's pod connection is dialed at once; a failed dial sends
 *   `error forwarding port P to pod …` on the error channel; the socket's data
 *   goes to the client on the data channel, the client's data to the socket;
 * - when every port's connection has ended, the WebSocket is closed.
 *
 * @module
 */

/** The subprotocols served, in preference order of the kubelet's table. */
export const PORT_FORWARD_PROTOCOLS = ["v4.channel.k8s.io", "v4.base64.channel.k8s.io"];

/**
 * Picks the subprotocol: the first the client offers that is served, `""`
 * when it offers none, undefined when it offers only unsupported ones.
 *
 * @param header the `Sec-WebSocket-Protocol` request header
 * @returns the chosen protocol, `""`, or undefined
 */
export function choosePortForwardProtocol(header: string | null): string | undefined {
  const offered = (header ?? "").split(",").map((s) => s.trim()).filter((s) => s !== "");
  if (offered.length === 0) return "";
  return offered.find((p) => PORT_FORWARD_PROTOCOLS.includes(p));
}

/**
 * Parses the `ports` query parameters (repeated and/or comma-separated).
 *
 * @param values the values of `ports`
 * @returns the port numbers
 * @throws {RangeError} for a missing, empty or bad port
 */
export function parsePorts(values: string[]): number[] {
  if (values.length === 0) throw new RangeError(`query parameter "ports" is required`);
  const ports: number[] = [];
  for (const v of values) {
    if (v === "") throw new RangeError(`query parameter "ports" cannot be empty`);
    for (const p of v.split(",")) {
      if (!/^\d+$/.test(p) || Number(p) > 65535) {
        throw new RangeError(`unable to parse "${v}" as a port: invalid syntax`);
      }
      if (Number(p) < 1) throw new RangeError(`port "${v}" must be > 0`);
      ports.push(Number(p));
    }
  }
  return ports;
}

/**
 * A connection to a pod's port: a `Deno.Conn`, or anything with its `read`,
 * `write` and `close` (for example an adapter around
 * `ip netns exec <pod> socat STDIO TCP:127.0.0.1:<port>`, which is what the
 * kubelet does: it connects to localhost inside the pod's network namespace).
 */
export type PodConnection = Pick<Deno.Conn, "read" | "write" | "close">;

/** Options of {@linkcode servePortForward}. */
export interface PortForwardSession {
  /** The ports, in `?ports=` order. */
  ports: number[];
  /** The chosen subprotocol (`""` for none). */
  protocol: string;
  /** Opens a connection to the pod's port. */
  dial: (port: number) => Promise<PodConnection>;
  /** How the pod is named in error messages (the kubelet uses the sandbox id). */
  podName: string;
  /** The pod's uid, for error messages. */
  uid: string;
  /** Log lines (`apiserver: portforward …`). */
  log: (line: string) => void;
  /** Called once the WebSocket and every pod connection are closed. */
  onClose?: () => void;
}

/** A running port-forward, for the server to end on close. */
export interface PortForwardHandle {
  /** Closes the WebSocket and every pod connection. */
  close(): void;
}

const HIGH_WATER = 1 << 20;

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

async function writeAll(conn: PodConnection, data: Uint8Array): Promise<void> {
  let off = 0;
  while (off < data.length) off += await conn.write(data.subarray(off));
}

/**
 * Upgrades a request to the port-forward WebSocket and runs it.
 *
 * @param req the upgrade request (already authenticated and authorized)
 * @param session ports, protocol, dialer
 * @returns the 101 response and a handle to end the session
 */
export function servePortForward(
  req: Request,
  session: PortForwardSession,
): { response: Response; handle: PortForwardHandle } {
  const { socket, response } = Deno.upgradeWebSocket(req, {
    ...(session.protocol ? { protocol: session.protocol } : {}),
    idleTimeout: 0,
  });
  socket.binaryType = "arraybuffer";
  const base64 = session.protocol === "v4.base64.channel.k8s.io";
  const n = session.ports.length;
  interface PortState {
    port: number;
    conn?: PodConnection;
    chain: Promise<unknown>;
    done: boolean;
  }
  const states: PortState[] = [];
  let closed = false;
  let remaining = n;

  const send = (channel: number, data: Uint8Array) => {
    if (socket.readyState !== WebSocket.OPEN) return;
    if (base64) {
      let s = "";
      for (const b of data) s += String.fromCharCode(b);
      socket.send(String.fromCharCode(48 + channel) + btoa(s));
    } else {
      const frame = new Uint8Array(data.length + 1);
      frame[0] = channel;
      frame.set(data, 1);
      socket.send(frame);
    }
  };

  const finish = () => {
    if (closed) return;
    closed = true;
    for (const s of states) {
      try {
        s.conn?.close();
      } catch { /* already closed */ }
    }
    if (socket.readyState === WebSocket.OPEN || socket.readyState === WebSocket.CONNECTING) {
      try {
        socket.close(1000);
      } catch { /* closing */ }
    }
    session.onClose?.();
  };

  const portDone = (s: PortState) => {
    if (s.done) return;
    s.done = true;
    try {
      s.conn?.close();
    } catch { /* already closed */ }
    if (--remaining === 0) {
      session.log(`apiserver: portforward ${session.podName} ${session.ports.join(",")}: done`);
      finish();
    }
  };

  const pump = async (i: number, s: PortState) => {
    const conn = s.conn!;
    const buf = new Uint8Array(64 * 1024);
    try {
      while (!closed) {
        const got = await conn.read(buf);
        if (got === null) break;
        send(2 * i, buf.subarray(0, got));
        while (
          !closed && socket.readyState === WebSocket.OPEN && socket.bufferedAmount > HIGH_WATER
        ) {
          await sleep(2);
        }
      }
    } catch {
      // The pod's connection broke (or was closed by us): the port is done.
    }
    portDone(s);
  };

  socket.onopen = () => {
    session.log(
      `apiserver: portforward ${session.podName} ports ${session.ports.join(",")} (${
        session.protocol || "no subprotocol"
      })`,
    );
    session.ports.forEach((port, i) => {
      const header = new Uint8Array([port & 0xff, port >> 8]);
      send(2 * i, header);
      send(2 * i + 1, header);
    });
    session.ports.forEach((port, i) => {
      const s: PortState = { port, chain: Promise.resolve(), done: false };
      states.push(s);
      s.chain = session.dial(port).then(
        (conn) => {
          if (closed) {
            conn.close();
            return;
          }
          s.conn = conn;
          pump(i, s);
        },
        (error) => {
          const detail = error instanceof Error ? error.message : String(error);
          const message =
            `error forwarding port ${port} to pod ${session.podName}, uid ${session.uid}: ${detail}`;
          session.log(`apiserver: portforward ${message}`);
          send(2 * i + 1, new TextEncoder().encode(message));
          portDone(s);
        },
      );
    });
  };

  socket.onmessage = (ev: MessageEvent) => {
    let channel: number;
    let data: Uint8Array;
    if (typeof ev.data === "string") {
      if (ev.data.length === 0) return;
      channel = ev.data.charCodeAt(0) - 48;
      const bin = atob(ev.data.slice(1));
      data = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    } else {
      const bytes = new Uint8Array(ev.data as ArrayBuffer);
      if (bytes.length === 0) return;
      channel = bytes[0]!;
      data = bytes.slice(1);
    }
    // Only data channels are readable; the kubelet drops anything else.
    if (channel >= 2 * n || channel % 2 === 1 || data.length === 0) return;
    const s = states[channel / 2];
    if (!s || s.done) return;
    s.chain = s.chain.then(async () => {
      if (!s.conn || s.done) return;
      try {
        await writeAll(s.conn, data);
      } catch {
        portDone(s);
      }
    });
  };

  socket.onclose = () => finish();
  socket.onerror = () => finish();

  return { response, handle: { close: finish } };
}
