/**
 * Serving gRPC from the cluster's side, for every role that listens (the
 * traffic-manager's client, direct and agent listeners): listen addresses as
 * flags give them, the guard that keeps a listener on loopback, a grpc-js
 * server with vif's channel settings and HTTP/2 windows, binding with an
 * error that says what to do, and a bounded shutdown. Failures to start are
 * {@linkcode SetupError}s: one line of what happened, one of what to do, and
 * whether a flag was at fault.
 *
 * @module
 */

import type { EventEmitter } from "node:events";
import { Server } from "@grpc/grpc-js";
import { formatAddress, parseAddress } from "../net/address.ts";
import { CHANNEL_OPTIONS } from "./service.ts";

/** Options of {@linkcode SetupError}. */
export interface SetupErrorOptions {
  /** What the operator can do about it, as a full sentence. */
  hint: string;
  /** Whether a bad option value caused it (the command line exits 2, else 1). */
  usage?: boolean;
  /** The error that led to this one. */
  cause?: unknown;
}

/**
 * A server role cannot start as configured: a bad flag, missing TLS files, a
 * port in use.
 *
 * @example
 * ```ts
 * import { SetupError } from "./serve.ts";
 *
 * const error = new SetupError('Cannot parse pod subnet "198.18.0.0/40"', {
 *   hint: 'Pass CIDRs like "198.18.64.0/18".',
 *   usage: true,
 * });
 * if (!error.usage) throw new Error("expected a usage error");
 * ```
 */
export class SetupError extends Error {
  /** What the operator can do about it. */
  readonly hint: string;
  /** Whether a bad option value caused it. */
  readonly usage: boolean;

  /**
   * Makes the error.
   *
   * @param message What happened.
   * @param options The hint, whether it is a usage error, and the cause.
   */
  constructor(message: string, options: SetupErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "SetupError";
    this.hint = options.hint;
    this.usage = options.usage ?? false;
  }
}

/** A parsed listen address. */
export interface Listen {
  /** The IP address. */
  host: string;
  /** The port; 0 for any. */
  port: number;
  /** What grpc-js binds: `host:port`, `[v6]:port`. */
  bind: string;
  /** As given. */
  text: string;
  /** The flag it came from, for errors. */
  flag: string;
}

/**
 * Parses a listen address: `HOST:PORT`, `[V6]:PORT`, `:PORT` or `PORT`.
 *
 * @param text The address.
 * @param flag The flag it came from, for the error's hint. Default `--listen`.
 * @param defaultHost The host of `:PORT` and `PORT`: loopback for `--listen`, else every address.
 * @returns The host, the port and the form grpc-js binds.
 * @throws {SetupError} When it is not an IP address and a port.
 *
 * @example
 * ```ts
 * import { parseListen } from "./serve.ts";
 *
 * const at = parseListen("[::1]:8081");
 * if (at.bind !== "[::1]:8081" || at.port !== 8081) throw new Error(at.bind);
 * ```
 */
export function parseListen(
  text: string,
  flag = "--listen",
  defaultHost = flag === "--listen" ? "127.0.0.1" : "0.0.0.0",
): Listen {
  let host = defaultHost;
  let portText = text;
  const bracket = /^\[([^\]]+)\]:(\d+)$/.exec(text);
  if (bracket !== null) [host, portText] = [bracket[1]!, bracket[2]!];
  else if (text.includes(":")) {
    const colon = text.lastIndexOf(":");
    if (colon > 0) host = text.slice(0, colon);
    portText = text.slice(colon + 1);
  }
  const port = /^\d{1,5}$/.test(portText) ? Number(portText) : NaN;
  if (parseAddress(host) === undefined || !(port >= 0 && port <= 65535)) {
    throw new SetupError(
      `Cannot listen on "${text}": expected HOST:PORT with an IP address`,
      {
        hint: `Pass ${flag} like "${defaultHost}:8081", "[::1]:8081" or ":8081".`,
        usage: true,
      },
    );
  }
  const bind = host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`;
  return { host, port, bind, text, flag };
}

/**
 * Whether a listen address is on loopback (127/8 or ::1).
 *
 * @param listen the address
 * @returns whether only this machine can reach it
 */
export function isLoopback(listen: Listen): boolean {
  const bytes = parseAddress(listen.host)!;
  return bytes.length === 4 ? bytes[0] === 127 : formatAddress(bytes) === "::1";
}

/**
 * The guard of a listener that trusts whoever reaches it to have been let
 * through by something else (the API server's RBAC, for the manager's client
 * listener): it refuses any address but loopback.
 *
 * @param listen the address
 * @param whom who the listener serves, for the message (`clients`)
 * @param listener its name (`client listener`)
 * @param hint what to do instead
 * @returns the address, when on loopback
 * @throws {SetupError} a usage error, when it is not
 */
export function requireLoopback(
  listen: Listen,
  whom: string,
  listener: string,
  hint: string,
): Listen {
  if (!isLoopback(listen)) {
    throw new SetupError(
      `Cannot serve ${whom} on "${listen.text}": the ${listener} is on loopback only`,
      { hint, usage: true },
    );
  }
  return listen;
}

/**
 * The HTTP/2 receive window a server advertises, per stream and per
 * connection: the same as the client's (`grpc-node.flow_control_window`).
 */
export const RECEIVE_WINDOW = CHANNEL_OPTIONS["grpc-node.flow_control_window"];

/**
 * A grpc-js server with vif's channel settings, advertising
 * {@linkcode RECEIVE_WINDOW} (see {@linkcode widenReceiveWindows}).
 *
 * @returns the server, with no service yet
 */
export function grpcServer(): Server {
  const server = new Server(CHANNEL_OPTIONS);
  widenReceiveWindows(server, RECEIVE_WINDOW);
  return server;
}

/**
 * Makes the server advertise `window` bytes of HTTP/2 receive window per
 * stream (SETTINGS_INITIAL_WINDOW_SIZE, RFC 9113 6.5.2) and per connection
 * (a WINDOW_UPDATE on stream 0, RFC 9113 6.9).
 *
 * grpc-js's server ignores `grpc-node.flow_control_window` (only its client
 * reads it) and keeps Node's 65,535-byte default, which caps each call's
 * client-to-server direction at one window per round trip: 2 MB/s over a
 * 20 ms port-forward. It has no option for this, so this reaches into two of
 * its internals (grpc-js is pinned to an exact version in deno.json; the
 * manager's tests check the advertised window): the options it passes to
 * `http2.createSecureServer`, and the method that makes the HTTP/2 server, to
 * widen each new session's connection window.
 *
 * @param server A grpc-js server, before `bindAsync`.
 * @param window The window in bytes.
 */
export function widenReceiveWindows(server: Server, window: number): void {
  const internals = server as unknown as {
    commonServerOptions?: { settings?: Record<string, unknown> };
    createHttp2Server?: (credentials: unknown) => EventEmitter;
  };
  if (internals.commonServerOptions === undefined || internals.createHttp2Server === undefined) {
    return; // Another grpc-js: the defaults stand (slower, not wrong).
  }
  internals.commonServerOptions.settings = {
    ...internals.commonServerOptions.settings,
    initialWindowSize: window,
  };
  const create = internals.createHttp2Server.bind(server);
  internals.createHttp2Server = (credentials) => {
    const http2Server = create(credentials);
    http2Server.on("session", (session: { setLocalWindowSize?(size: number): void }) => {
      try {
        session.setLocalWindowSize?.(window);
      } catch {
        // A session already closing.
      }
    });
    return http2Server;
  };
}

/**
 * Binds `server` to `listen`.
 *
 * @param server the server
 * @param listen where
 * @param credentials TLS (or insecure, for tests)
 * @returns the port bound
 * @throws {SetupError} when it cannot listen there, saying why and which flag to change
 */
export async function bindServer(
  server: Server,
  listen: Listen,
  credentials: Parameters<Server["bindAsync"]>[1],
): Promise<number> {
  try {
    return await new Promise<number>((resolve, reject) =>
      server.bindAsync(
        listen.bind,
        credentials,
        (error, port) => error ? reject(error) : resolve(port),
      )
    );
  } catch (cause) {
    throw new SetupError(`Cannot listen on "${listen.text}": ${bindProblem(cause)}`, {
      hint: `Stop what uses that address, or pass another with ${listen.flag} HOST:PORT.`,
      cause,
    });
  }
}

/**
 * What a bind error comes to, in a few words (grpc-js's "No address added …
 * errors: [listen EADDRINUSE: …]", or Deno's).
 *
 * @param error what binding threw
 * @returns the problem, for "Cannot listen on …: PROBLEM"
 */
export function bindProblem(error: unknown): string {
  const text = error instanceof Error ? error.message : String(error);
  if (text.includes("EADDRINUSE")) return "the address is already in use";
  if (text.includes("EADDRNOTAVAIL")) return "no interface has that address";
  if (text.includes("EACCES")) return "permission denied (ports below 1024 need privileges)";
  return /\[(.*)\]/.exec(text)?.[1] ?? text;
}

/**
 * Stops a server: calls under way get `graceMs` to end, then everything is
 * closed.
 *
 * @param server the server
 * @param graceMs how long calls may take to end
 */
export async function shutdownServer(server: Server, graceMs: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
    new Promise<void>((resolve) => timer = setTimeout(resolve, graceMs)),
  ]);
  clearTimeout(timer);
  server.forceShutdown();
}
