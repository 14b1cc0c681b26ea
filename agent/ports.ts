/**
 * One port the agent took from the app: it listens on the agent port and
 * serves each connection one of two ways, decided when it arrives. While
 * the container port is intercepted the connection becomes a flow
 * (`PROTOCOL_INTERCEPTED`, tagged with the intercept id) on the agent's mux
 * call, which the manager joins to the session holding the intercept; the
 * manager's refusal closes the connection at once, so the cluster client is
 * not left hanging. Otherwise it is passed through to the app on
 * `127.0.0.1:containerPort` (the same network namespace), both ways with
 * half-close, so that an injected workload behaves as before; so is an
 * intercepted connection the manager answers with NO_SESSION (the intercept
 * ended while it came).
 *
 * Bounded: at most `maxConnections` at once; past that a new connection is
 * closed and counted.
 *
 * @module
 */

import type { AgentPortConfig } from "../mod/kube/agent_config.ts";
import { parseAddress } from "../mod/net/address.ts";
import { closeQuietly, pipeBoth, socketStream } from "../mod/net/pipe.ts";
import { FLOW_WINDOW, MuxProtocol } from "../mod/rpc/mux.ts";
import type { MuxEnd } from "../mod/rpc/mux_end.ts";
import { AppStream } from "../mod/rpc/mux_socket.ts";
import { DialResult_Code } from "../mod/rpc/service.ts";
import type { AgentLog } from "./log.ts";
import { AgentSetupError } from "./setup.ts";

/** The default bound of connections open at once on one port. */
export const MAX_CONNECTIONS_PER_PORT = 4096;

/** How long the app may take to accept a passed-through connection. */
const APP_CONNECT_TIMEOUT_MS = 10_000;

/** Where an intercepted connection goes: the intercept and the mux call to open it on. */
export interface InterceptRoute {
  /** The intercept id (the OPEN's tag). */
  id: string;
  /** The agent's mux call. */
  end: MuxEnd;
}

/** Options of {@linkcode PortTaker.listen}. */
export interface PortTakerOptions {
  /** The port. */
  port: AgentPortConfig;
  /** The pod's IP: the destination of the flows. */
  podIp: string;
  /** Where to listen (`0.0.0.0`, or `::` in an IPv6 pod). */
  listenHost: string;
  /** Where the app is (`127.0.0.1`). */
  appHost: string;
  /** The most connections open at once. Default {@linkcode MAX_CONNECTIONS_PER_PORT}. */
  maxConnections?: number;
  /** The intercept of the container port now, if any. */
  route(containerPort: number): InterceptRoute | undefined;
  /** Log sink. */
  log: AgentLog;
}

/** The counters of one port. */
export interface PortStats {
  /** Connections open now. */
  open: number;
  /** Connections passed through to the app. */
  passedThrough: number;
  /** Connections sent to the manager as flows. */
  intercepted: number;
  /** Intercepted connections the manager refused (closed at once). */
  interceptRefused: number;
  /** Passed-through connections the app refused (closed). */
  appRefused: number;
  /** Connections closed because {@linkcode PortTakerOptions.maxConnections} were open. */
  overLimit: number;
}

/** A port the agent listens on: see the module documentation. */
export class PortTaker {
  /** The counters. */
  readonly stats: PortStats = {
    open: 0,
    passedThrough: 0,
    intercepted: 0,
    interceptRefused: 0,
    appRefused: 0,
    overLimit: 0,
  };
  #options: PortTakerOptions;
  #listener: Deno.TcpListener;
  #podIp: Uint8Array;
  #max: number;
  #conns = new Set<Deno.TcpConn>();
  #closed = false;
  #idle: (() => void)[] = [];
  #loop: Promise<void>;
  /** When the over-limit line was last logged. */
  #limitLogged = 0;

  private constructor(listener: Deno.TcpListener, options: PortTakerOptions) {
    this.#listener = listener;
    this.#options = options;
    this.#podIp = parseAddress(options.podIp)!;
    this.#max = options.maxConnections ?? MAX_CONNECTIONS_PER_PORT;
    this.#loop = this.#acceptLoop();
  }

  /**
   * Listens on the agent port.
   *
   * @param options the port, the pod, where the app is, the intercept lookup
   * @returns the taker, accepting
   * @throws {AgentSetupError} when the agent port cannot be listened on
   * @throws {RangeError} when the pod IP is not an IP address
   */
  static listen(options: PortTakerOptions): PortTaker {
    if (parseAddress(options.podIp) === undefined) {
      throw new RangeError(`Cannot take a port: pod IP "${options.podIp}" is not an IP address`);
    }
    const { agentPort } = options.port;
    let listener: Deno.TcpListener;
    try {
      listener = Deno.listen({ hostname: options.listenHost, port: agentPort, transport: "tcp" });
    } catch (cause) {
      const why = cause instanceof Deno.errors.AddrInUse
        ? "the port is in use"
        : (cause as Error)?.message ?? String(cause);
      throw new AgentSetupError(
        `Cannot listen on ${hostPort(options.listenHost, agentPort)}: ${why}`,
        `Another container of the pod uses port ${agentPort}: remove the agent ` +
          "(`vif uninstall --agents`) and intercept again, so that it gets a free port.",
        { cause },
      );
    }
    return new PortTaker(listener, options);
  }

  /** The port it listens on. */
  get agentPort(): number {
    return (this.#listener.addr as Deno.NetAddr).port;
  }

  /** Stops listening; connections open go on. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    closeQuietly(this.#listener);
  }

  /**
   * Waits until no connection is open, or `timeoutMs` passed; then closes
   * what is left.
   *
   * @param timeoutMs how long connections may take to end
   * @returns how many were closed unfinished
   */
  async drain(timeoutMs: number): Promise<number> {
    this.close();
    await this.#loop;
    if (this.stats.open > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        new Promise<void>((resolve) => this.#idle.push(resolve)),
        new Promise<void>((resolve) => timer = setTimeout(resolve, timeoutMs)),
      ]);
      clearTimeout(timer);
    }
    const left = this.#conns.size;
    for (const conn of this.#conns) closeQuietly(conn);
    return left;
  }

  async #acceptLoop(): Promise<void> {
    const { port, log } = this.#options;
    for (;;) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#closed || error instanceof Deno.errors.BadResource) return;
        // Out of descriptors and the like: say so, and do not spin.
        log("warn", `agent: port ${port.agentPort}: cannot accept: ${(error as Error).message}`);
        await new Promise((resolve) => setTimeout(resolve, 100));
        continue;
      }
      if (this.stats.open >= this.#max) {
        this.stats.overLimit++;
        closeQuietly(conn);
        const now = Date.now();
        if (now - this.#limitLogged >= 60_000) {
          this.#limitLogged = now;
          log(
            "warn",
            `agent: port ${port.agentPort}: ${this.#max} connections open; closing new ones` +
              ` (${this.stats.overLimit} so far)`,
          );
        }
        continue;
      }
      this.#serve(conn);
    }
  }

  async #serve(conn: Deno.TcpConn): Promise<void> {
    this.stats.open++;
    this.#conns.add(conn);
    try {
      noDelay(conn);
      const route = this.#options.route(this.#options.port.containerPort);
      if (route) await this.#intercept(conn, route);
      else await this.#passThrough(conn);
    } catch (error) {
      this.#options.log("debug", `agent: port ${this.#options.port.agentPort}: ${error}`);
    } finally {
      closeQuietly(conn);
      this.#conns.delete(conn);
      this.stats.open--;
      if (this.stats.open === 0) {
        const idle = this.#idle.splice(0);
        for (const go of idle) go();
      }
    }
  }

  async #intercept(conn: Deno.TcpConn, route: InterceptRoute): Promise<void> {
    const { port, log } = this.#options;
    const remote = conn.remoteAddr as Deno.NetAddr;
    const destination = this.#podIp;
    let stream: AppStream | undefined;
    const opened = await route.end.openTcp({
      protocol: MuxProtocol.Intercepted,
      sourceIp: sourceBytes(remote.hostname, destination.length),
      sourcePort: remote.port,
      destinationIp: destination,
      destinationPort: port.containerPort,
      dialTimeoutMs: 0,
      window: FLOW_WINDOW,
      tag: route.id,
    }, (flow) => stream = new AppStream(flow));
    if (!opened.ok && opened.code === DialResult_Code.NO_SESSION) {
      // The intercept ended while the connection came: the app serves it.
      return await this.#passThrough(conn);
    }
    if (!opened.ok) {
      this.stats.interceptRefused++;
      log(
        "debug",
        `agent: port ${port.containerPort}: the traffic-manager refused the connection from ` +
          `${hostPort(remote.hostname, remote.port)}: ${opened.message}`,
      );
      return; // The connection is closed at once.
    }
    this.stats.intercepted++;
    await stream!.joinSocket(conn);
  }

  async #passThrough(conn: Deno.TcpConn): Promise<void> {
    const { port, appHost, log } = this.#options;
    let app: Deno.TcpConn;
    try {
      app = await Deno.connect({
        hostname: appHost,
        port: port.containerPort,
        signal: AbortSignal.timeout(APP_CONNECT_TIMEOUT_MS),
      });
    } catch (error) {
      this.stats.appRefused++;
      log(
        "debug",
        `agent: port ${port.containerPort}: cannot pass a connection through to the app at ` +
          `${hostPort(appHost, port.containerPort)}: ${(error as Error).message}`,
      );
      return;
    }
    this.stats.passedThrough++;
    this.#conns.add(app);
    try {
      noDelay(app);
      await pipeBoth(socketStream(conn), socketStream(app));
    } finally {
      closeQuietly(app);
      this.#conns.delete(app);
    }
  }
}

/**
 * The source address of an OPEN, in the destination's family: an IPv4 client
 * of a dual-stack listener shows as `::ffff:a.b.c.d`.
 */
function sourceBytes(hostname: string, family: number): Uint8Array {
  const bytes = parseAddress(hostname);
  if (bytes === undefined) return new Uint8Array(family);
  if (bytes.length === family) return bytes;
  if (bytes.length === 16 && family === 4 && isV4Mapped(bytes)) return bytes.slice(12);
  if (bytes.length === 4 && family === 16) {
    const mapped = new Uint8Array(16);
    mapped[10] = mapped[11] = 0xff;
    mapped.set(bytes, 12);
    return mapped;
  }
  return new Uint8Array(family);
}

function isV4Mapped(bytes: Uint8Array): boolean {
  for (let i = 0; i < 10; i++) if (bytes[i] !== 0) return false;
  return bytes[10] === 0xff && bytes[11] === 0xff;
}

function noDelay(conn: Deno.TcpConn): void {
  try {
    conn.setNoDelay(true);
  } catch {
    // Closed already: the first read says so.
  }
}

function hostPort(host: string, port: number): string {
  return host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
}
