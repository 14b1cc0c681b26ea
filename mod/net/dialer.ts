/**
 * What the router asks of the world beyond the TUN: open a TCP stream, a UDP
 * flow, or ping, toward a destination. The tunnel client implements it (each
 * call becomes a gRPC stream to the traffic-manager); tests implement it by
 * dialing from another network namespace.
 *
 * @module
 */

/** A transport address. `address` is textual (`198.18.1.2`, `2001:2::1`). */
export interface Endpoint {
  /** IPv4 dotted quad or IPv6 text. */
  address: string;
  /** Port, 0 for ICMP. */
  port: number;
}

/** Why a dial failed, as the app would see it inside the cluster. */
export type DialFailure =
  /** The destination answered with a reset: the app gets "connection refused". */
  | "refused"
  /** No route or host down: the app gets ICMP host unreachable. */
  | "unreachable"
  /** Nothing answered in time: the app sees silence and its own timeout. */
  | "timeout"
  /** Policy forbids the destination: the app gets ICMP administratively prohibited. */
  | "prohibited";

/** The outcome of a dial. */
export type DialResult<T> =
  | { ok: true; value: T }
  | { ok: false; reason: DialFailure; message?: string };

/**
 * A bidirectional byte stream with half-close.
 *
 * Closing `writable` sends end-of-stream to the far side (TCP FIN) while
 * `readable` may still deliver data. Aborting `writable` or cancelling
 * `readable` resets the whole stream. Backpressure is the streams' own: a
 * writer that awaits `write()` is slowed by a slow far side.
 */
export interface ByteStream {
  readonly readable: ReadableStream<Uint8Array>;
  readonly writable: WritableStream<Uint8Array>;
  /**
   * A faster way to join the stream to an accepted socket than piping the
   * two streams: bytes go between the socket and the far side with no web
   * stream in between (a chunk through `readable` costs several promises).
   * Optional; when present, the router calls it instead of touching
   * `readable` and `writable`, which are then never used. The socket is the
   * joiner's until the promise settles; it closes the socket's sending half
   * when the far side ends its direction, and closes the socket when the
   * stream is reset.
   *
   * @param socket the accepted socket
   * @returns when both directions have ended; never rejects
   */
  joinSocket?(socket: Socket): Promise<PipeResult>;
}

/**
 * A connected socket as the router uses it: the shape of `Deno.TcpConn`, so
 * any byte-stream socket fits without Deno being named here.
 */
export interface Socket {
  /** Reads into `buf`: the byte count, or `null` at end of stream (a FIN). */
  read(buf: Uint8Array): Promise<number | null>;
  /** Writes some of `data`: how many bytes were taken. */
  write(data: Uint8Array): Promise<number>;
  /** Shuts the sending half (a FIN); reading goes on. */
  closeWrite(): Promise<void>;
  /** Closes both halves; pending reads and writes fail. */
  close(): void;
}

/** How a join of two byte streams ended. */
export interface PipeResult {
  /** Bytes moved from the first to the second (for a socket: socket to stream). */
  aToB: number;
  /** Bytes moved from the second to the first. */
  bToA: number;
  /** The first error either direction met, if any. */
  error?: unknown;
}

/** A UDP flow toward one destination. */
export interface DatagramFlow {
  /** Sends one datagram; may drop when the far side is congested (UDP semantics). */
  send(payload: Uint8Array): void;
  /** Ends the flow; later sends are dropped. Idempotent. */
  close(): void;
}

/** What the router knows of a new connection or flow. */
export interface DialRequest {
  /** The app's address and port. */
  source: Endpoint;
  /** Where the app wanted to go. */
  destination: Endpoint;
}

/** An ICMP echo request the app sent to a routed address. */
export interface PingRequest {
  source: Endpoint;
  destination: Endpoint;
  /** The echo payload, to be returned unchanged. */
  payload: Uint8Array;
}

/** Opens connections on the far side on behalf of the router. */
export interface Dialer {
  /**
   * Opens a TCP connection to `req.destination`. Resolves once the far side has
   * answered (dial before accept); never rejects: failures are results.
   */
  dialTcp(req: DialRequest): Promise<DialResult<ByteStream>>;

  /**
   * Opens a UDP flow. `deliver` is called with each datagram that comes back;
   * the router turns it into a packet toward the app.
   */
  dialUdp(
    req: DialRequest,
    deliver: (payload: Uint8Array) => void,
  ): Promise<DialResult<DatagramFlow>>;

  /** Sends an echo request; resolves `ok` when a reply came back. */
  ping(req: PingRequest): Promise<DialResult<void>>;
}
