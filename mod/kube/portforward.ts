/**
 * The port-forward dialer: a local TCP listener on 127.0.0.1 whose every
 * connection is carried to a pod's port through the Kubernetes API server
 * (`pods/portforward` over WebSocket, as `kubectl port-forward` does). The
 * daemon points its gRPC channel at the listener, so the whole tunnel is one
 * port-forward of one port.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { PassThrough, Writable } from "node:stream";
import { type KubeConfig, PortForward } from "@kubernetes/client-node";

/** Where to forward to. */
export interface PortForwardTarget {
  namespace: string;
  pod: string;
  port: number;
}

/** A running forwarder. */
export interface PortForwardProxy {
  /** `127.0.0.1:PORT`: dial this. */
  readonly address: string;
  /** Connections carried so far. */
  readonly connections: number;
  /** The last error the API server or the pod reported, if any. */
  readonly lastError: string | undefined;
  /** The pod new connections go to. */
  readonly target: PortForwardTarget;
  /**
   * Resolves when a carried connection is cut from the far side (the pod went
   * away, the API server closed the stream) or a new one cannot be opened;
   * never when {@linkcode PortForwardProxy.close} ends them. A new promise
   * after each {@linkcode PortForwardProxy.retarget}.
   */
  readonly dropped: Promise<PortForwardError>;
  /**
   * Sends new connections to another pod (the manager's replacement), on the
   * same local address, so a gRPC channel pointed at it reconnects by itself.
   */
  retarget(target: PortForwardTarget): void;
  /** Stops listening and ends every forwarded connection. */
  close(): Promise<void>;
}

/** Log sink. */
export type KubeLog = (level: "debug" | "info" | "warn", message: string) => void;

/** A failure of the port-forward a person can act on. */
export class PortForwardError extends Error {
  /** What to do about it. */
  readonly hint: string;
  /**
   * @param message what happened
   * @param hint what to do
   * @param options the cause
   */
  constructor(message: string, hint: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "PortForwardError";
    this.hint = hint;
  }
}

/**
 * Explains a port-forward failure: a 403 means RBAC, a 404 a missing pod,
 * anything else the API server's address.
 *
 * @param error what `PortForward` threw
 * @param target the pod
 * @param server the API server's URL
 * @returns an error with a hint
 */
export function describePortForwardError(
  error: unknown,
  target: PortForwardTarget,
  server: string,
): PortForwardError {
  const text = String((error as Error)?.message ?? error);
  if (/\b403\b|forbidden/i.test(text)) {
    return new PortForwardError(
      `not allowed to port-forward to pods in "${target.namespace}": ${text}`,
      `Ask a cluster admin for "create" on "pods/portforward" in namespace "${target.namespace}".`,
      { cause: error },
    );
  }
  if (/\b401\b|unauthori[sz]ed/i.test(text)) {
    return new PortForwardError(
      `the API server at "${server}" did not accept the credentials: ${text}`,
      "Log in again (your token may have expired) or check the kubeconfig's user.",
      { cause: error },
    );
  }
  if (/\b404\b|not found/i.test(text)) {
    return new PortForwardError(
      `the pod "${target.namespace}/${target.pod}" is gone: ${text}`,
      "Connect again: vif finds the traffic-manager's current pod.",
      { cause: error },
    );
  }
  return new PortForwardError(
    `cannot port-forward through the API server at "${server}": ${text}`,
    "Check that the API server is reachable (kubectl get ns) and the kubeconfig's server address.",
    { cause: error },
  );
}

/**
 * Opens one port-forward WebSocket for an accepted connection and pipes bytes
 * both ways; resolves when either side ends.
 */
async function forwardOne(
  kc: KubeConfig,
  target: PortForwardTarget,
  conn: Deno.TcpConn,
  onError: (text: string) => void,
  onDrop: () => void,
): Promise<void> {
  const input = new PassThrough({ highWaterMark: 1 << 20 });
  let closed = false;
  const closeConn = () => {
    if (closed) return;
    closed = true;
    try {
      conn.close();
    } catch {
      // already closed
    }
  };
  // Pod → local socket; the callback waits for the socket write, so a slow
  // local reader slows the WebSocket reader.
  const output = new Writable({
    write(chunk: Buffer, _enc, cb) {
      if (closed) return cb();
      const bytes = new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength);
      (async () => {
        for (let off = 0; off < bytes.length;) off += await conn.write(bytes.subarray(off));
      })().then(() => cb(), () => {
        closeConn();
        cb();
      });
    },
  });
  const errors = new Writable({
    write(chunk: Buffer, _enc, cb) {
      // The first frame on the error channel is only the port number, which
      // client-node strips: an empty chunk is not an error.
      const text = chunk.toString("utf8").trim();
      if (text) {
        onError(text);
        closeConn();
      }
      cb();
    },
  });
  const ws = await new PortForward(kc, true).portForward(
    target.namespace,
    target.pod,
    [target.port],
    output,
    errors,
    input,
  ) as { on(event: string, fn: () => void): void; close(): void };
  const wsClosed = new Promise<void>((resolve) => {
    ws.on("close", () => {
      closeConn();
      resolve();
    });
    ws.on("error", () => {
      closeConn();
      resolve();
    });
  });
  // Local socket → pod, with backpressure from the PassThrough.
  // Whether the local side ended on its own (EOF, or an error not caused by closeConn).
  let localEnded = false;
  const reading = (async () => {
    const buf = new Uint8Array(256 * 1024);
    try {
      for (;;) {
        const n = await conn.read(buf);
        if (n === null) {
          localEnded = true;
          break;
        }
        if (!input.write(Buffer.from(buf.subarray(0, n)))) {
          await new Promise((resolve) => input.once("drain", resolve));
        }
      }
    } catch {
      // The socket was closed: by the far side's end (closeConn), or here.
      if (!closed) localEnded = true;
    }
    input.end();
  })();
  await Promise.race([wsClosed, reading.then(() => wsClosed)]);
  // The far side went first while this side still had a connection to carry.
  if (!localEnded) onDrop();
  try {
    ws.close();
  } catch {
    // gone
  }
  closeConn();
}

/**
 * Listens on 127.0.0.1 (a free port) and forwards each connection to the pod.
 * The first connection is tried at once, so a refused port-forward (RBAC, a
 * missing pod, an unreachable API server) fails here with a clear error.
 *
 * @param kc the kubeconfig, with its context chosen
 * @param target the pod and port
 * @param options log sink and the probe
 * @returns the running proxy
 * @throws {PortForwardError} when the API server refuses the port-forward
 */
export async function startPortForwardProxy(
  kc: KubeConfig,
  initial: PortForwardTarget,
  options: { log?: KubeLog; timeoutMs?: number } = {},
): Promise<PortForwardProxy> {
  const log = options.log ?? (() => {});
  const server = kc.getCurrentCluster()?.server ?? "(no server)";
  let target = initial;
  // Probe: open (and drop) one WebSocket, bounded in time.
  const probe = (async () => {
    const sink = new Writable({ write: (_c, _e, cb) => cb() });
    const ws = await new PortForward(kc, true).portForward(
      target.namespace,
      target.pod,
      [target.port],
      sink,
      null,
      new PassThrough(),
    ) as { close(): void };
    ws.close();
  })();
  const timeoutMs = options.timeoutMs ?? 10_000;
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      probe,
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`no answer from the API server within ${timeoutMs / 1000} s`)),
          timeoutMs,
        );
      }),
    ]);
  } catch (error) {
    probe.catch(() => {});
    throw describePortForwardError(error, target, server);
  } finally {
    clearTimeout(timer);
  }
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let dropped = Promise.withResolvers<PortForwardError>();
  let closing = false;
  let connections = 0;
  let lastError: string | undefined;
  const open = new Set<Deno.TcpConn>();
  const accepting = (async () => {
    for await (const conn of listener) {
      connections++;
      open.add(conn);
      conn.setNoDelay(true);
      const aimedAt = target;
      const dropSignal = dropped;
      forwardOne(kc, aimedAt, conn, (text) => {
        lastError = text;
        log(
          "warn",
          `kube: port-forward to ${aimedAt.namespace}/${aimedAt.pod}:${aimedAt.port}: ${text}`,
        );
      }, () => {
        if (closing) return;
        dropSignal.resolve(
          new PortForwardError(
            `the port-forward to ${aimedAt.namespace}/${aimedAt.pod}:${aimedAt.port} was closed${
              lastError ? `: ${lastError}` : " by the API server"
            }`,
            "Run `vif connect` again: it finds the traffic-manager's current pod.",
          ),
        );
      }).catch((error) => {
        lastError = String(error?.message ?? error);
        log("warn", `kube: port-forward failed: ${lastError}`);
        if (!closing) dropSignal.resolve(describePortForwardError(error, aimedAt, server));
        try {
          conn.close();
        } catch {
          // gone
        }
      }).finally(() => open.delete(conn));
    }
  })().catch(() => {});
  log(
    "info",
    `kube: port-forward to ${target.namespace}/${target.pod}:${target.port} via ${server}`,
  );
  return {
    address: `127.0.0.1:${listener.addr.port}`,
    get connections() {
      return connections;
    },
    get lastError() {
      return lastError;
    },
    get target() {
      return target;
    },
    get dropped() {
      return dropped.promise;
    },
    retarget(next: PortForwardTarget) {
      target = next;
      dropped = Promise.withResolvers<PortForwardError>();
      lastError = undefined;
      log("info", `kube: port-forward now to ${next.namespace}/${next.pod}:${next.port}`);
    },
    async close() {
      closing = true;
      try {
        listener.close();
      } catch {
        // closed
      }
      for (const c of open) {
        try {
          c.close();
        } catch {
          // closed
        }
      }
      await accepting;
    },
  };
}
