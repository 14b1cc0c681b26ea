/**
 * Socket bookkeeping for the fuzz targets that dial: every TCP socket made
 * by `net.connect` and every UDP socket made by `dgram.createSocket` while a
 * {@linkcode SocketTracker} is installed is recorded with whether it has
 * closed, and destination ports named in inputs are mapped to the test's own
 * servers (so that inputs kept in the corpus do not depend on the port a run
 * happened to get).
 *
 * Installed by patching the `node:net` and `node:dgram` default exports,
 * which the code under test uses; restored by `uninstall`.
 *
 * @module
 */

import dgram from "node:dgram";
import net from "node:net";

/** What the tracker saw of one socket. */
export interface TrackedSocket {
  kind: "tcp" | "udp";
  closed: boolean;
}

type Connect = typeof net.connect;
type CreateSocket = typeof dgram.createSocket;

/** Records sockets and maps ports; one at a time. */
export class SocketTracker {
  /** Sockets made since the last {@linkcode SocketTracker.reset}. */
  sockets: TrackedSocket[] = [];
  #ports: { tcp: Map<number, number>; udp: Map<number, number> };
  #connect: Connect = net.connect;
  #createSocket: CreateSocket = dgram.createSocket;

  /**
   * Patches `net.connect` and `dgram.createSocket`.
   *
   * @param ports destination ports in inputs → ports really dialed, per protocol
   */
  constructor(ports: { tcp: Map<number, number>; udp: Map<number, number> }) {
    this.#ports = ports;
    const connect = this.#connect, createSocket = this.#createSocket;
    const mapper = (kind: "tcp" | "udp") => (port: unknown) =>
      typeof port === "number" ? this.#ports[kind].get(port) ?? port : port;
    const map = mapper("tcp"), mapUdp = mapper("udp");
    (net as { connect: unknown }).connect = (...args: unknown[]) => {
      const first = args[0];
      if (typeof first === "object" && first !== null) {
        const options = first as { port?: unknown };
        args[0] = { ...options, port: map(options.port) };
      } else if (typeof first === "number") args[0] = map(first);
      const socket = (connect as (...a: unknown[]) => net.Socket)(...args);
      const tracked: TrackedSocket = { kind: "tcp", closed: false };
      this.sockets.push(tracked);
      socket.once("close", () => tracked.closed = true);
      return socket;
    };
    (dgram as { createSocket: unknown }).createSocket = (...args: unknown[]) => {
      const socket = (createSocket as (...a: unknown[]) => dgram.Socket)(...args);
      const tracked: TrackedSocket = { kind: "udp", closed: false };
      this.sockets.push(tracked);
      socket.once("close", () => tracked.closed = true);
      const connectUdp = socket.connect.bind(socket) as (...a: unknown[]) => void;
      (socket as { connect: unknown }).connect = (port: unknown, ...rest: unknown[]) =>
        connectUdp(mapUdp(port), ...rest);
      return socket;
    };
  }

  /** Sockets not closed yet. */
  get open(): TrackedSocket[] {
    return this.sockets.filter((s) => !s.closed);
  }

  /** Forgets the sockets seen so far. */
  reset(): void {
    this.sockets = [];
  }

  /** Puts `net.connect` and `dgram.createSocket` back. */
  uninstall(): void {
    (net as { connect: unknown }).connect = this.#connect;
    (dgram as { createSocket: unknown }).createSocket = this.#createSocket;
  }
}

/** A TCP echo server and a UDP echo server on 127.0.0.1, and a port nobody listens on. */
export interface EchoServers {
  tcp: number;
  udp: number;
  closedPort: number;
  /** TCP connections accepted and not closed yet. */
  readonly connections: number;
  close(): Promise<void>;
}

/**
 * Starts the echo servers.
 *
 * @returns their ports
 */
export async function startEchoServers(): Promise<EchoServers> {
  const sockets = new Set<net.Socket>();
  const tcp = net.createServer({ allowHalfOpen: true }, (socket) => {
    sockets.add(socket);
    socket.on("data", (chunk) => socket.write(chunk));
    socket.on("end", () => socket.end());
    socket.on("error", () => {});
    socket.on("close", () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => tcp.listen(0, "127.0.0.1", resolve));
  const udp = dgram.createSocket("udp4");
  udp.on("message", (message, from) => udp.send(message, from.port, from.address));
  udp.on("error", () => {});
  await new Promise<void>((resolve) => udp.bind(0, "127.0.0.1", resolve));
  const spare = net.createServer();
  await new Promise<void>((resolve) => spare.listen(0, "127.0.0.1", resolve));
  const closedPort = (spare.address() as net.AddressInfo).port;
  await new Promise((resolve) => spare.close(resolve));
  return {
    tcp: (tcp.address() as net.AddressInfo).port,
    udp: udp.address().port,
    closedPort,
    get connections() {
      return sockets.size;
    },
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise((resolve) => tcp.close(resolve));
      await new Promise<void>((resolve) => udp.close(() => resolve()));
    },
  };
}

/**
 * Waits until `done` holds, polling.
 *
 * @param done the condition
 * @param ms how long to wait at most
 * @returns whether it held in time
 */
export async function waitFor(done: () => boolean, ms: number): Promise<boolean> {
  const end = performance.now() + ms;
  while (!done()) {
    if (performance.now() > end) return false;
    await new Promise((resolve) => setTimeout(resolve, 2));
  }
  return true;
}
