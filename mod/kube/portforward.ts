/**
 * The port-forward dialer: a local Unix socket whose every connection is
 * carried to a pod's port through the Kubernetes API server
 * (`pods/portforward` over WebSocket, as `kubectl port-forward` does). The
 * daemon points its gRPC channel at the socket (`unix:/path`), so the whole
 * tunnel is one port-forward of one port.
 *
 * Whoever connects to the socket reaches the manager with the owner's
 * Kubernetes identity, so it is no TCP port other local users could dial:
 * the socket is this process user's alone (mode 0600), in a directory only
 * that user can write (the daemon's state directory, or a private one).
 *
 * The WebSocket is vif's own small client (`websocket.ts`) with the access
 * the CLI resolved from the kubeconfig, not `@kubernetes/client-node`'s: the
 * daemon never loads that library (about 90 MB).
 *
 * @module
 */

import type { ApiAccess } from "./api.ts";
import { KubeApiError } from "./api.ts";
import { writeAll } from "../net/pipe.ts";
import { connectWebSocket, type WebSocketConnection } from "./websocket.ts";
import { PortForwardChannels } from "./port_forward_channels.ts";

/** Where to forward to. */
export interface PortForwardTarget {
  namespace: string;
  pod: string;
  port: number;
}

/** A running forwarder. */
export interface PortForwardProxy {
  /** `unix:/path/to/socket`: dial this (a gRPC target). */
  readonly address: string;
  /** The socket's path. */
  readonly path: string;
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
   * same local address, so a gRPC channel pointed at it reconnects by itself;
   * with `access`, new connections also use these credentials (fresh ones).
   */
  retarget(target: PortForwardTarget, access?: ApiAccess): void;
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

/** The subprotocols offered: the kubelet's binary channel protocol, newest first. */
export const PORT_FORWARD_SUBPROTOCOLS = ["v4.channel.k8s.io", "channel.k8s.io"];

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
  const status = error instanceof KubeApiError ? error.statusCode : undefined;
  if (status === 403 || (status === undefined && /\b403\b|forbidden/i.test(text))) {
    return new PortForwardError(
      `not allowed to port-forward to pods in "${target.namespace}": ${text}`,
      `Ask a cluster admin for "create" on "pods/portforward" in namespace "${target.namespace}".`,
      { cause: error },
    );
  }
  if (status === 401 || (status === undefined && /\b401\b|unauthori[sz]ed/i.test(text))) {
    return new PortForwardError(
      `the API server at "${server}" did not accept the credentials: ${text}`,
      "Log in again (your token may have expired) or check the kubeconfig's user.",
      { cause: error },
    );
  }
  if (status === 404 || (status === undefined && /\b404\b|not found/i.test(text))) {
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

/** The port-forward path of `target` (RFC 3986 escaping of the names). */
function portForwardPath(target: PortForwardTarget): string {
  return `/api/v1/namespaces/${encodeURIComponent(target.namespace)}/pods/${
    encodeURIComponent(target.pod)
  }/portforward?ports=${target.port}`;
}

/** Opens a port-forward WebSocket to `target`. */
function openPortForward(access: ApiAccess, target: PortForwardTarget, timeoutMs?: number) {
  return connectWebSocket(access, portForwardPath(target), {
    protocols: PORT_FORWARD_SUBPROTOCOLS,
    ...(timeoutMs ? { timeoutMs } : {}),
  });
}

/** Bytes from the pod queued for the local socket before the WebSocket is paused. */
const PAUSE_AT = 4 * 1024 * 1024;
/** The read size from the local socket: one WebSocket message's worth. */
const READ_SIZE = 256 * 1024;

/**
 * Carries one accepted connection over its own port-forward WebSocket until
 * either side ends.
 *
 * The kubelet's channel protocol (read by {@linkcode PortForwardChannels}):
 * every message starts with its channel byte, 0 data and 1 error for the
 * (single) port; the first message on each is the port number (2 bytes,
 * little-endian). A message that breaks it ends the forward.
 */
async function forwardOne(
  ws: WebSocketConnection,
  conn: Deno.Conn,
  port: number,
  onError: (text: string) => void,
  onDrop: () => void,
): Promise<void> {
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
  // Pod → local socket, in order; a slow local reader pauses the WebSocket.
  const channels = new PortForwardChannels(port);
  let chain = Promise.resolve();
  let queued = 0;
  let paused = false;
  ws.onmessage = (message) => {
    const m = channels.read(message);
    if (m.kind === "error") {
      onError(m.text);
      closeConn();
      return;
    }
    if (m.kind === "violation") {
      onError(`the API server broke the port-forward protocol: ${m.reason}`);
      closeConn();
      ws.close();
      return;
    }
    if (m.kind !== "data" || closed) return;
    const payload = m.bytes;
    queued += payload.length;
    if (queued > PAUSE_AT && !paused) {
      paused = true;
      ws.pause();
    }
    chain = chain.then(async () => {
      if (closed) return;
      try {
        await writeAll(conn, payload);
      } catch {
        closeConn();
      }
      queued -= payload.length;
      if (paused && queued < PAUSE_AT / 4) {
        paused = false;
        ws.resume();
      }
    });
  };
  const wsClosed = ws.closed.then(() => closeConn());
  // Local socket → pod: each read is one message on channel 0.
  let localEnded = false;
  const reading = (async () => {
    const buf = new Uint8Array(1 + READ_SIZE);
    try {
      for (;;) {
        const n = await conn.read(buf.subarray(1));
        if (n === null) {
          localEnded = true;
          break;
        }
        buf[0] = 0;
        await ws.send(buf.subarray(0, 1 + n)); // framed (copied) before it resolves
      }
    } catch {
      // The socket was closed: by the far side's end (closeConn), or here.
      if (!closed) localEnded = true;
    }
  })();
  await Promise.race([wsClosed, reading]);
  // The far side went first while this side still had a connection to carry.
  if (!localEnded) onDrop();
  ws.close();
  closeConn();
  await wsClosed;
}

/** Options of {@linkcode startPortForwardProxy}. */
export interface PortForwardProxyOptions {
  /** Log sink. */
  log?: KubeLog;
  /** How long the first port-forward may take to open (default 10 s). */
  timeoutMs?: number;
  /**
   * Where to listen: a path in a directory only this user can write (a
   * stale socket there is replaced). Default: `pf.sock` in a private
   * temporary directory, removed on close.
   */
  socketPath?: string;
}

/**
 * Listens on a Unix socket (mode 0600) and forwards each connection to the
 * pod. The first connection is tried at once, so a refused port-forward
 * (RBAC, a missing pod, an unreachable API server) fails here with a clear
 * error.
 *
 * @param access the API server and credentials (from the kubeconfig)
 * @param initial the pod and port
 * @param options log sink, the probe's time limit, the socket's path
 * @returns the running proxy
 * @throws {PortForwardError} when the API server refuses the port-forward
 */
export async function startPortForwardProxy(
  access: ApiAccess,
  initial: PortForwardTarget,
  options: PortForwardProxyOptions = {},
): Promise<PortForwardProxy> {
  const log = options.log ?? (() => {});
  const server = access.server;
  let target = initial;
  let credentials = access;
  // Probe: open (and drop) one WebSocket, bounded in time.
  try {
    const ws = await openPortForward(credentials, target, options.timeoutMs ?? 10_000);
    ws.close();
  } catch (error) {
    throw describePortForwardError(error, target, server);
  }
  const { listener, path, cleanup } = await listenPrivate(options.socketPath);
  let dropped = Promise.withResolvers<PortForwardError>();
  let closing = false;
  let connections = 0;
  let lastError: string | undefined;
  const open = new Set<Deno.Conn>();
  const accepting = (async () => {
    for await (const conn of listener) {
      connections++;
      open.add(conn);
      const aimedAt = target;
      const dropSignal = dropped;
      openPortForward(credentials, aimedAt).then((ws) =>
        forwardOne(ws, conn, aimedAt.port, (text) => {
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
        })
      ).catch((error) => {
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
    address: `unix:${path}`,
    path,
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
    retarget(next: PortForwardTarget, fresh?: ApiAccess) {
      target = next;
      if (fresh) credentials = fresh;
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
      await cleanup();
    },
  };
}

/**
 * A Unix socket listener only this user can connect to: at `wanted` (a
 * stale socket or link there is removed first; anything else is refused),
 * else in a new private directory.
 */
async function listenPrivate(wanted: string | undefined): Promise<{
  listener: Deno.UnixListener;
  path: string;
  cleanup: () => Promise<void>;
}> {
  const dir = wanted ? undefined : await Deno.makeTempDir({ prefix: "vif-pf-" });
  const path = wanted ?? `${dir}/pf.sock`;
  try {
    const info = await Deno.lstat(path).catch(() => undefined);
    if (info) {
      if (!info.isSocket && !info.isSymlink) {
        throw new PortForwardError(
          `cannot listen on "${path}": something else is there`,
          `Remove "${path}", then connect again.`,
        );
      }
      await Deno.remove(path);
    }
    // A new socket gets the umask's mode (connecting needs write permission)
    // until the chmod; the directory is no one else's to enter or write.
    const listener = Deno.listen({ transport: "unix", path });
    await Deno.chmod(path, 0o600);
    const cleanup = async () => {
      await Deno.remove(dir ?? path, { recursive: true }).catch(() => {});
    };
    return { listener, path, cleanup };
  } catch (error) {
    if (dir) await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
}
