/**
 * The daemon's control protocol: how `vif connect`, `vif status`, `vif quit`
 * and the rest talk to the background daemon. Documented for people in
 * `docs/daemon.md`; this file is its definition.
 *
 * - Transport: a Unix stream socket, `<state-dir>/daemon.sock`, mode 0600,
 *   owned by the user the daemon serves. The daemon also reads each caller's
 *   credentials from the kernel (`SO_PEERCRED`) and hangs up on anyone who is
 *   neither root nor that user.
 * - Framing: one JSON object per line (UTF-8, ending in `\n`), at most
 *   {@linkcode MAX_LINE} bytes.
 * - A request is `{"id": N, "method": "...", "params": {...}}`. The daemon
 *   answers it with zero or more `{"id": N, "progress": "..."}` lines, then
 *   exactly one `{"id": N, "result": ...}` or
 *   `{"id": N, "error": {"message": "...", "hint": "...", "code": "..."}}`.
 *   Requests on one connection are answered in order.
 * - A streaming method ({@linkcode STREAMING_METHODS}: `capture`) answers
 *   with `{"id": N, "event": {...}}` lines until it ends, then its result.
 *   While it runs, the connection takes only `stop` (`{"id": M, "method":
 *   "stop", "params": {"id": N}}`), answered at once; the stream then ends
 *   and sends its result. Hanging up ends it too. Anything else is answered
 *   `busy`.
 *
 * @module
 */

import type { ApiAccess } from "../kube/api.ts";
import type { InterceptParams, InterceptStatus } from "./intercepts.ts";
import type { ConnectionsDocument } from "./flows.ts";
import type { CaptureEnd } from "./capture.ts";

/** The protocol's version, in `version`'s result; bumped on incompatible change. */
export const PROTOCOL_VERSION = 1;

/** The longest line either side accepts. */
export const MAX_LINE = 1 << 20;

/** The control socket's name inside the state directory. */
export const SOCKET_NAME = "daemon.sock";

/** The methods and their parameters. */
export interface ControlMethods {
  /** The daemon's version and process. */
  version: { params: Record<string, never>; result: DaemonVersion };
  /** What `vif status` shows. */
  status: { params: Record<string, never>; result: unknown };
  /** Connect (progress lines while it works); the result is the status. */
  connect: { params: ConnectParams; result: unknown };
  /** Disconnect but keep the daemon. */
  disconnect: { params: Record<string, never>; result: { wasConnected: boolean } };
  /** Disconnect and stop the daemon; it exits after answering. */
  quit: { params: Record<string, never>; result: { wasConnected: boolean } };
  /** Change the log level now. */
  loglevel: { params: { level: LogLevel }; result: { previous: LogLevel; level: LogLevel } };
  /** The daemon's log files, newest first. */
  logs: { params: Record<string, never>; result: { files: string[] } };
  /** Intercept a port of a workload (progress lines while the agents arrive). */
  intercept: { params: InterceptParams; result: InterceptStatus };
  /** End the intercepts of an id or workload. */
  leave: { params: { id: string }; result: { ended: string[] } };
  /** The agents and intercepts the manager knows of. */
  agents: { params: { namespace: string }; result: AgentsResult };
  /** Every TCP connection and UDP flow of the session, busiest first. */
  connections: { params: { limit?: number }; result: ConnectionsDocument };
  /** Streams the TUN's packets as pcap records ({@linkcode CaptureEvent} lines) until it ends. */
  capture: { params: CaptureParams; result: CaptureResult };
  /** Ends the stream running on this connection (`params.id`: its request's id). */
  stop: { params: { id?: number }; result: { stopped: boolean } };
}

/** The methods that answer with event lines until they end. */
export const STREAMING_METHODS: ReadonlySet<string> = new Set(["capture"]);

/** What `capture` takes. */
export interface CaptureParams {
  /** Only packets from or to one of these addresses (IPv4 or IPv6 text; at most 16). */
  hosts?: string[];
  /** Only TCP and UDP packets from or to this port. */
  port?: number;
  /** The longest part of each packet kept (96 to 262144; default 65535). */
  snaplen?: number;
  /** End after this long, in ms (at most 7 days). */
  durationMs?: number;
  /** End after this many packets. */
  count?: number;
}

/** An event line of `capture`. */
export type CaptureEvent =
  /** First: what the CLI writes in the pcap file header. */
  | { type: "start"; snaplen: number; linktype: number }
  /** A batch of pcap records, base64, and the packets dropped so far. */
  | { type: "packets"; count: number; dropped: number; data: string };

/** What `capture` answers when it ends. */
export interface CaptureResult {
  /** Packets sent as records. */
  packets: number;
  /** Packets the filter took but the capture had no room for (its reader was behind). */
  dropped: number;
  /** Why it ended. */
  reason: CaptureEnd;
}

/** What `agents` answers. */
export interface AgentsResult {
  agents: Array<{
    pod: string;
    namespace: string;
    ip: string;
    workload: string;
    ports: Array<{ name: string; port: number }>;
    version: string;
  }>;
  intercepts: Array<{
    id: string;
    namespace: string;
    workload: string;
    port: number;
    holder: string;
  }>;
}

/** A method's name. */
export type ControlMethod = keyof ControlMethods;

/** Log levels, most verbose first. */
export const LOG_LEVELS = ["debug", "info", "warn"] as const;
/** A log level. */
export type LogLevel = typeof LOG_LEVELS[number];

/** What the daemon says about itself. */
export interface DaemonVersion {
  version: string;
  protocol: number;
  pid: number;
  /** ISO 8601. */
  startedAt: string;
  /** The uid the control socket belongs to. */
  owner: number;
}

/** What `connect` needs: where the cluster is and what to route. */
export interface ConnectParams {
  /** `--kubeconfig`: one file, used alone (an absolute path). */
  kubeconfig?: string;
  /** The caller's `KUBECONFIG` (a list of absolute paths), read when `kubeconfig` is absent. */
  kubeconfigEnv?: string;
  /** The caller's `HOME`, for `~/.kube/config`. */
  home?: string;
  /**
   * The caller's `PATH`, where a kubeconfig's exec credential plugin is
   * looked up when the daemon renews the credentials (as the caller).
   */
  path?: string;
  /** The context; the kubeconfig's current one when absent. */
  context?: string;
  /** `--as`: the user the API server is asked to act as (impersonation). */
  as?: string;
  /** `--request-timeout` in ms (0: no limit); each request's own default when absent. */
  requestTimeoutMs?: number;
  /** `host:port` of the manager's gRPC port, instead of the API server. */
  managerAddress?: string;
  /** PEM of the CA for `managerAddress`. */
  managerCaPem?: string;
  /**
   * The client certificate (PEM) a direct manager (`managerAddress`) asks for:
   * direct listeners use mutual TLS. Read by the client as the user; never
   * logged or stored.
   */
  clientCertPem?: string;
  /** The private key (PEM) of {@linkcode ConnectParams.clientCertPem}. */
  clientKeyPem?: string;
  managerNamespace: string;
  namespace: string;
  alsoProxy: string[];
  neverProxy: string[];
  allowConflicting: string[];
  dnsInclude: string[];
  dnsExclude: string[];
  /** How long the manager may be unreachable before the connection is torn down. */
  graceSeconds: number;
  /**
   * The kubeconfig's context as the client resolved it: the context's name
   * and how to reach its API server, credentials included (an exec plugin's
   * token, got as the user). Absent: the daemon has it resolved from the
   * kubeconfig by `vif kube-credentials`, run as the user it serves. Never
   * logged or stored.
   */
  resolved?: ResolvedContext;
}

/** A kubeconfig context resolved for API calls (see {@linkcode ConnectParams.resolved}). */
export interface ResolvedContext {
  context: string;
  access: ApiAccess;
}

/** Default of {@linkcode ConnectParams.graceSeconds}. */
export const DEFAULT_GRACE_SECONDS = 30;

/**
 * How to load the kubeconfig `params` name, as the client sees it: its
 * `--kubeconfig`, else its `KUBECONFIG`, else its `HOME`'s `~/.kube/config`.
 * The client checks it with this before asking the daemon, which loads it
 * with this too.
 *
 * @param params the connect parameters
 * @returns the options of `loadKubeConfig`
 */
export function kubeconfigSource(params: ConnectParams): {
  kubeconfig?: string;
  context?: string;
  as?: string;
  requestTimeoutMs?: number;
  env: (name: string) => string | undefined;
} {
  return {
    ...(params.kubeconfig ? { kubeconfig: params.kubeconfig } : {}),
    ...(params.context ? { context: params.context } : {}),
    ...(params.as ? { as: params.as } : {}),
    ...(params.requestTimeoutMs !== undefined ? { requestTimeoutMs: params.requestTimeoutMs } : {}),
    env: (name) =>
      name === "KUBECONFIG" ? params.kubeconfigEnv : name === "HOME" ? params.home : undefined,
  };
}

/** An error as it travels: what happened, what to do, and a stable code. */
export interface ControlError {
  message: string;
  hint: string;
  /** A stable name scripts can match (`already-connected`, `connect-failed`, …). */
  code: string;
}

/** One line from the daemon. */
export type ControlReply =
  | { id: number; progress: string }
  | { id: number; event: unknown }
  | { id: number; result: unknown }
  | { id: number; error: ControlError };

/** One line to the daemon. */
export interface ControlRequest {
  id: number;
  method: string;
  params?: unknown;
}

/** An error the daemon answered with. */
export class DaemonError extends Error {
  /** What to do. */
  readonly hint: string;
  /** The stable code. */
  readonly code: string;
  /**
   * @param error the error as it travelled
   */
  constructor(error: ControlError) {
    super(error.message);
    this.name = "DaemonError";
    this.hint = error.hint;
    this.code = error.code;
  }
}

/**
 * Splits a byte stream into lines, refusing lines longer than
 * {@linkcode MAX_LINE}. An unfinished line is kept as the chunks it came in,
 * so each byte is scanned once and copied once however small the reads; a
 * line (finished or not) past the limit fails the push, and every push after
 * it, since the stream has lost its framing.
 */
export class LineSplitter {
  #pieces: Uint8Array[] = [];
  #pending = 0;
  #failed = false;
  #decoder = new TextDecoder();

  /**
   * Adds bytes and returns the complete lines in them.
   *
   * @param chunk the bytes read
   * @returns the lines completed, without their `\n`
   * @throws {RangeError} when a line grows past {@linkcode MAX_LINE}, and on every push after that
   */
  push(chunk: Uint8Array): string[] {
    if (this.#failed) throw this.#tooLong();
    const lines: string[] = [];
    let start = 0;
    for (let i = chunk.indexOf(10); i >= 0; i = chunk.indexOf(10, start)) {
      if (this.#pending + (i - start) > MAX_LINE) throw this.#fail();
      const tail = chunk.subarray(start, i);
      lines.push(this.#decoder.decode(this.#pieces.length === 0 ? tail : this.#join(tail)));
      start = i + 1;
    }
    const rest = chunk.length - start;
    if (this.#pending + rest > MAX_LINE) throw this.#fail();
    if (rest > 0) {
      this.#pieces.push(chunk.slice(start));
      this.#pending += rest;
    }
    return lines;
  }

  /** The unfinished line's pieces and `tail` as one buffer; the pieces are let go. */
  #join(tail: Uint8Array): Uint8Array {
    const line = new Uint8Array(this.#pending + tail.length);
    let at = 0;
    for (const piece of this.#pieces) {
      line.set(piece, at);
      at += piece.length;
    }
    line.set(tail, at);
    this.#pieces = [];
    this.#pending = 0;
    return line;
  }

  #fail(): RangeError {
    this.#failed = true;
    this.#pieces = [];
    this.#pending = 0;
    return this.#tooLong();
  }

  #tooLong(): RangeError {
    return new RangeError(`a control message is longer than ${MAX_LINE} bytes`);
  }
}

/**
 * Encodes one message as a line.
 *
 * @param message a request or reply
 * @returns its bytes, ending in `\n`
 */
export function encodeLine(message: ControlRequest | ControlReply): Uint8Array<ArrayBuffer> {
  return new TextEncoder().encode(JSON.stringify(message) + "\n");
}

/**
 * Checks a request line from a client.
 *
 * @param line the line
 * @returns the request, or an error reply to send back
 */
export function parseRequest(line: string): ControlRequest | { error: ControlError; id: number } {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return { id: 0, error: badRequest("the request is not JSON") };
  }
  const r = value as Partial<ControlRequest> | null;
  if (
    typeof r !== "object" || r === null || typeof r.id !== "number" || !Number.isSafeInteger(r.id)
  ) {
    return { id: 0, error: badRequest('the request has no whole-number "id"') };
  }
  if (typeof r.method !== "string") {
    return { id: r.id, error: badRequest('the request has no "method"') };
  }
  return { id: r.id, method: r.method, params: r.params ?? {} };
}

function badRequest(message: string): ControlError {
  return {
    message,
    hint: 'Send one JSON object per line: {"id": 1, "method": "status"} (docs/daemon.md).',
    code: "bad-request",
  };
}

/** A connection to the daemon's control socket. */
export class ControlClient {
  #conn: Deno.UnixConn;
  #splitter = new LineSplitter();
  #pending: string[] = [];
  #nextId = 1;
  #buf = new Uint8Array(64 * 1024);

  private constructor(conn: Deno.UnixConn) {
    this.#conn = conn;
  }

  /**
   * Connects to the socket.
   *
   * @param path the socket's path
   * @returns the client
   * @throws {Deno.errors.NotFound} when no socket is there
   * @throws {Deno.errors.ConnectionRefused} when nobody listens on it (a daemon died)
   * @throws {Deno.errors.PermissionDenied} when the socket is not this user's
   */
  static async connect(path: string): Promise<ControlClient> {
    return new ControlClient(await Deno.connect({ transport: "unix", path }));
  }

  /**
   * Sends a request and waits for its result, passing progress lines on.
   *
   * @param method the method
   * @param params its parameters
   * @param onProgress called with each progress line
   * @returns the result
   * @throws {DaemonError} when the daemon answers with an error
   * @throws {Error} when the daemon hangs up first
   */
  async request<M extends ControlMethod>(
    method: M,
    params: ControlMethods[M]["params"],
    onProgress?: (line: string) => void,
  ): Promise<ControlMethods[M]["result"]> {
    const id = this.#nextId++;
    const bytes = encodeLine({ id, method, params });
    for (let off = 0; off < bytes.length;) off += await this.#conn.write(bytes.subarray(off));
    for (;;) {
      const line = await this.#line();
      if (line === null) throw new Error("the daemon closed the control connection");
      const reply = JSON.parse(line) as ControlReply;
      if (reply.id !== id || "event" in reply) continue;
      if ("progress" in reply) onProgress?.(reply.progress);
      else if ("error" in reply) throw new DaemonError(reply.error);
      else return reply.result as ControlMethods[M]["result"];
    }
  }

  /**
   * Sends a streaming request and hands each event to `onEvent`, waiting for
   * it before reading on (a slow consumer slows the daemon's sending, and the
   * daemon drops rather than waits). When `signal` aborts, asks the daemon
   * to stop; the stream's result still comes.
   *
   * @param method a streaming method
   * @param params its parameters
   * @param onEvent called with each event
   * @param signal ends the stream
   * @returns the result
   * @throws {DaemonError} when the daemon answers with an error
   * @throws {Error} when the daemon hangs up first, or an event is not an object
   */
  async stream<M extends ControlMethod>(
    method: M,
    params: ControlMethods[M]["params"],
    onEvent: (event: Record<string, unknown>) => Promise<void> | void,
    signal?: AbortSignal,
  ): Promise<ControlMethods[M]["result"]> {
    const id = this.#nextId++;
    await this.#write(encodeLine({ id, method, params }));
    const stop = () => {
      this.#write(encodeLine({ id: this.#nextId++, method: "stop", params: { id } })).catch(
        () => {},
      );
    };
    if (signal?.aborted) stop();
    else signal?.addEventListener("abort", stop, { once: true });
    try {
      for (;;) {
        const line = await this.#line();
        if (line === null) throw new Error("the daemon closed the control connection");
        const reply = JSON.parse(line) as ControlReply;
        if (reply.id !== id || "progress" in reply) continue;
        if ("event" in reply) {
          const event = reply.event;
          if (typeof event !== "object" || event === null || Array.isArray(event)) {
            throw new Error("the daemon sent an event that is not an object");
          }
          await onEvent(event as Record<string, unknown>);
        } else if ("error" in reply) throw new DaemonError(reply.error);
        else return reply.result as ControlMethods[M]["result"];
      }
    } finally {
      signal?.removeEventListener("abort", stop);
    }
  }

  async #write(bytes: Uint8Array): Promise<void> {
    for (let off = 0; off < bytes.length;) off += await this.#conn.write(bytes.subarray(off));
  }

  async #line(): Promise<string | null> {
    while (this.#pending.length === 0) {
      const n = await this.#conn.read(this.#buf);
      if (n === null) return null;
      this.#pending.push(...this.#splitter.push(this.#buf.subarray(0, n)));
    }
    return this.#pending.shift()!;
  }

  /** Closes the connection. */
  close(): void {
    try {
      this.#conn.close();
    } catch {
      // closed already
    }
  }
}
