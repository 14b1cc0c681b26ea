/**
 * Forwards raw DNS queries to the cluster's DNS server as a pod's resolver
 * would: over UDP with a timeout and one retry, and again over TCP (RFC 1035
 * 4.2.2, a 2-byte length before each message) when the UDP answer is
 * truncated (TC bit, RFC 1035 4.1.1). The answer goes back unchanged but for
 * its ID, which is the client's again.
 *
 * On the hot path of every cluster name look-up, so it keeps one UDP socket
 * for all queries and tells answers apart by a random 16-bit ID of its own
 * (RFC 5452 9.2: random IDs, answers checked against the server's address and
 * port), rather than a socket per query. At most `maxInFlight` queries wait
 * at once (well under the 65,536 ids), so finding a free id never spins:
 * past the limit a query fails at once.
 *
 * @module
 */

import { Buffer } from "node:buffer";
import dgram from "node:dgram";
import net from "node:net";
import { parseAddress } from "../net/address.ts";

/** Options of {@linkcode DnsForwarder}. */
export interface DnsForwarderOptions {
  /** How long to wait for each UDP attempt and for the TCP exchange, in ms. Default 2000. */
  timeoutMs?: number;
  /** UDP attempts before giving up (the first and the retries). Default 2. */
  attempts?: number;
  /** Queries waiting for an answer at once; more fail at once. Default 8192, at most 60,000. */
  maxInFlight?: number;
}

/** The upstream did not answer, or answered badly. */
export class DnsForwardError extends Error {
  /**
   * Makes the error.
   *
   * @param message What happened.
   * @param options The cause.
   */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "DnsForwardError";
  }
}

interface Pending {
  /** The answer; `null` when the forwarder closed first. */
  resolve(answer: Uint8Array | null): void;
}

const HEADER = 12;

/**
 * Sends DNS queries to one upstream server.
 *
 * @example
 * ```ts ignore
 * import { DnsForwarder } from "./dns_forwarder.ts";
 *
 * const forwarder = new DnsForwarder("198.18.128.10:53");
 * const answer = await forwarder.resolve(query); // raw bytes in, raw bytes out
 * forwarder.close();
 * ```
 */
export class DnsForwarder {
  #host: string;
  #port: number;
  #family: 4 | 6;
  #timeoutMs: number;
  #attempts: number;
  #socket: dgram.Socket | undefined;
  #ready: Promise<dgram.Socket> | undefined;
  #pending = new Map<number, Pending>();
  #tcp = new Set<net.Socket>();
  #closed = false;
  #tcpFallbacks = 0;
  #maxInFlight: number;
  #inFlight = 0;

  /**
   * Makes a forwarder; nothing is opened until the first query.
   *
   * @param server `host`, `host:port`, `[v6]:port` or a bare IPv6 address; port 53 when absent.
   * @param options Timeout and attempts.
   * @throws {SyntaxError} When `server` is not an IP address with an optional port.
   */
  constructor(server: string, options: DnsForwarderOptions = {}) {
    const { host, port } = parseServer(server);
    this.#host = host;
    this.#port = port;
    this.#family = host.includes(":") ? 6 : 4;
    this.#timeoutMs = options.timeoutMs ?? 2000;
    this.#attempts = Math.max(1, options.attempts ?? 2);
    this.#maxInFlight = Math.max(1, Math.min(options.maxInFlight ?? 8192, 60_000));
  }

  /** Queries waiting for an answer now. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** The upstream, as `host:port`. */
  get server(): string {
    return this.#family === 6 ? `[${this.#host}]:${this.#port}` : `${this.#host}:${this.#port}`;
  }

  /** How many queries were asked again over TCP because the UDP answer was truncated. */
  get tcpFallbacks(): number {
    return this.#tcpFallbacks;
  }

  /**
   * Sends one query and returns the answer.
   *
   * @param query A DNS query message (RFC 1035 4.1).
   * @returns The answer message, with the query's ID.
   * @throws {RangeError} When `query` is shorter than a DNS header or longer than 65535 bytes.
   * @throws {DnsForwardError} When the server does not answer in time, the
   *   exchange fails, or `maxInFlight` queries are waiting already.
   */
  async resolve(query: Uint8Array): Promise<Uint8Array> {
    if (query.length < HEADER || query.length > 65535) {
      throw new RangeError(`DNS query of ${query.length} bytes is not 12–65535 bytes long`);
    }
    if (this.#closed) throw new DnsForwardError("The DNS forwarder is closed");
    if (this.#inFlight >= this.#maxInFlight) {
      throw new DnsForwardError(
        `${this.#maxInFlight} DNS queries are waiting for "${this.server}" already`,
      );
    }
    this.#inFlight++;
    try {
      const answer = await this.#udp(query);
      // RFC 1035 4.1.1: TC, truncated; ask again over TCP (RFC 7766 5).
      if ((answer[2]! & 0x02) !== 0) {
        this.#tcpFallbacks++;
        return await this.#overTcp(query);
      }
      return answer;
    } finally {
      this.#inFlight--;
    }
  }

  /** Closes the socket; queries in flight fail at once. */
  close(): void {
    this.#closed = true;
    for (const pending of [...this.#pending.values()]) pending.resolve(null);
    this.#socket?.close();
    this.#socket = undefined;
    this.#ready = undefined;
    for (const socket of this.#tcp) socket.destroy();
    this.#tcp.clear();
  }

  async #udp(query: Uint8Array): Promise<Uint8Array> {
    const socket = await this.#openSocket();
    for (let attempt = 1; attempt <= this.#attempts; attempt++) {
      if (this.#closed) throw new DnsForwardError("The DNS forwarder is closed");
      const id = this.#freeId();
      const message = Buffer.from(query);
      message.writeUInt16BE(id, 0);
      const answer = await new Promise<Uint8Array | null | undefined>((resolve) => {
        const timer = setTimeout(() => {
          this.#pending.delete(id);
          resolve(undefined);
        }, this.#timeoutMs);
        this.#pending.set(id, {
          resolve: (answer) => {
            clearTimeout(timer);
            this.#pending.delete(id);
            resolve(answer);
          },
        });
        socket.send(message, this.#port, this.#host, (error) => {
          if (error) this.#pending.get(id)?.resolve(new Uint8Array(0));
        });
      });
      if (answer === null) throw new DnsForwardError("The DNS forwarder is closed");
      if (answer === undefined) continue; // Timed out: the retry.
      if (answer.length === 0) {
        throw new DnsForwardError(`Cannot send a DNS query to "${this.server}"`);
      }
      const out = new Uint8Array(answer);
      out[0] = query[0]!;
      out[1] = query[1]!;
      return out;
    }
    throw new DnsForwardError(
      `The DNS server "${this.server}" did not answer in ${this.#attempts} × ${this.#timeoutMs} ms`,
    );
  }

  #openSocket(): Promise<dgram.Socket> {
    if (this.#ready !== undefined) return this.#ready;
    this.#ready = new Promise((resolve, reject) => {
      const socket = dgram.createSocket(this.#family === 6 ? "udp6" : "udp4");
      socket.on("message", (message: Buffer, from: dgram.RemoteInfo) => {
        if (message.length < HEADER || from.port !== this.#port) return;
        if (!sameAddress(from.address, this.#host)) return;
        // RFC 1035 4.1.1: QR set, an answer.
        if ((message[2]! & 0x80) === 0) return;
        this.#pending.get(message.readUInt16BE(0))?.resolve(message);
      });
      socket.on("error", (error) => {
        // The next query opens a new socket; queries in flight time out or retry.
        if (this.#socket === socket) {
          this.#socket = undefined;
          this.#ready = undefined;
        }
        socket.close();
        reject(
          new DnsForwardError(`Cannot open a UDP socket for DNS: ${error.message}`, {
            cause: error,
          }),
        );
      });
      socket.bind(0, () => {
        this.#socket = socket;
        resolve(socket);
      });
    });
    return this.#ready;
  }

  /**
   * A random id no query in flight uses. With at most 60,000 of the 65,536
   * ids taken, a few random draws find one almost always; the scan after them
   * bounds the worst case.
   */
  #freeId(): number {
    const bytes = new Uint16Array(8);
    crypto.getRandomValues(bytes);
    for (const id of bytes) if (!this.#pending.has(id)) return id;
    for (let i = 0, id = bytes[0]!; i < 65536; i++, id = (id + 1) & 0xffff) {
      if (!this.#pending.has(id)) return id;
    }
    throw new DnsForwardError("Every DNS id is in use");
  }

  #overTcp(query: Uint8Array): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ host: this.#host, port: this.#port });
      this.#tcp.add(socket);
      const chunks: Buffer[] = [];
      let received = 0;
      let settled = false;
      const finish = (error: Error | undefined, answer?: Uint8Array) => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        this.#tcp.delete(socket);
        socket.destroy();
        if (error) reject(error);
        else resolve(answer!);
      };
      const timer = setTimeout(
        () =>
          finish(
            new DnsForwardError(
              `The DNS server "${this.server}" did not answer over TCP in ${this.#timeoutMs} ms`,
            ),
          ),
        this.#timeoutMs,
      );
      socket.setNoDelay(true);
      socket.on("connect", () => {
        const framed = Buffer.alloc(2 + query.length);
        framed.writeUInt16BE(query.length, 0);
        framed.set(query, 2);
        socket.write(framed);
      });
      socket.on("data", (chunk: Buffer) => {
        chunks.push(chunk);
        received += chunk.length;
        if (received < 2) return;
        const all = Buffer.concat(chunks);
        const length = all.readUInt16BE(0);
        if (all.length >= 2 + length) {
          finish(undefined, new Uint8Array(all.subarray(2, 2 + length)));
        }
      });
      socket.on(
        "end",
        () =>
          finish(
            new DnsForwardError(`The DNS server "${this.server}" closed the TCP connection early`),
          ),
      );
      socket.on("error", (error) =>
        finish(
          new DnsForwardError(
            `Cannot ask the DNS server "${this.server}" over TCP: ${error.message}`,
            { cause: error },
          ),
        ));
    });
  }
}

/**
 * Splits `host`, `host:port`, `[v6]:port` or a bare IPv6 address.
 *
 * @param server The server text.
 * @returns The host and the port (53 when absent).
 * @throws {SyntaxError} When the host is not an IP address or the port not 1–65535.
 */
export function parseServer(server: string): { host: string; port: number } {
  let host = server;
  let port = 53;
  const bracket = /^\[([^\]]+)\](?::(\d+))?$/.exec(server);
  if (bracket !== null) {
    host = bracket[1]!;
    if (bracket[2] !== undefined) port = Number(bracket[2]);
  } else if (/^[^:]+:\d+$/.test(server)) {
    const colon = server.lastIndexOf(":");
    host = server.slice(0, colon);
    port = Number(server.slice(colon + 1));
  }
  if (parseAddress(host) === undefined || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new SyntaxError(
      `Cannot use DNS server "${server}": expected an IP address with an optional port, like "198.18.128.10:53"`,
    );
  }
  return { host, port };
}

function sameAddress(a: string, b: string): boolean {
  const x = parseAddress(a.replace(/^::ffff:(?=\d+\.)/i, ""));
  const y = parseAddress(b.replace(/^::ffff:(?=\d+\.)/i, ""));
  return x !== undefined && y !== undefined && x.length === y.length &&
    x.every((v, i) => v === y[i]);
}
