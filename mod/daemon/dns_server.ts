/**
 * The daemon's DNS server and its upstream resolver (DESIGN.md §5).
 *
 * The server is an ordinary UDP socket and TCP listener bound to the DNS
 * address of the VIF block (`240.0.0.2:53`, a second local address on the
 * TUN), so the kernel delivers queries to it like to any local server: no
 * packet handling. Every message goes to the {@linkcode DnsInterceptor}.
 *
 * UDP uses `Deno.listenDatagram` (the `net` unstable feature, on in
 * deno.json and baked into the compiled binary): `node:dgram` cost about a
 * third of the daemon's time per query under load (a fresh receive buffer and
 * several layers per datagram). TCP uses `Deno.listen` with the 2-byte length
 * framing of RFC 1035 4.2.2, several queries per connection, answered as they
 * complete (RFC 7766 6.2.1.1).
 *
 * Bounds: UDP queries in flight (`udpMaxInFlight`, beyond it SERVFAIL at
 * once), TCP connections and queries pending per connection; each upstream
 * exchange has its own socket, closed on every way out (answer, error,
 * time-out). A bare 12-byte header is answered FORMERR by the server itself:
 * it is the DNS watchdog's liveness probe (`dns_watchdog.ts`).
 *
 * Every answer sent is shown to the server's {@linkcode DnsNames}, which
 * remembers what name each address was asked as (`vif connections`).
 *
 * @module
 */

import dgram from "node:dgram";
import { addressEquals, parseAddress } from "../net/address.ts";
import { decodeDnsMessage, type DnsInterceptor, type DnsResolve } from "../net/dns.ts";
import { DnsNames } from "./dns_names.ts";

/** Log sink; lines start with `dns: `. */
export type DnsLog = (level: "debug" | "info" | "warn", message: string) => void;

/** Options for {@linkcode startDnsServer}. */
export interface DnsServerOptions {
  /** The local address to serve on, e.g. `240.0.0.2`. */
  address: string;
  /** The port for UDP and TCP (default 53; 0 picks one free for both). */
  port?: number;
  /** Who answers; its `route`, when it has one, shortens the names {@linkcode DnsServer.names} shows. */
  interceptor: Pick<DnsInterceptor, "handle"> & Partial<Pick<DnsInterceptor, "route">>;
  /** Log sink. */
  log?: DnsLog;
  /** A TCP connection with no query for this long is closed (default 10 s; RFC 7766 6.2.3). */
  tcpIdleMs?: number;
  /** Most TCP connections at once; more are closed at once (default 256). */
  tcpMaxConnections?: number;
  /** Most queries in flight per TCP connection before reading pauses (default 64). */
  tcpMaxPending?: number;
  /**
   * Most UDP queries in flight at once (default 1024); beyond it a query is
   * answered SERVFAIL at once, so that a burst against a resolver that does
   * not answer cannot grow the daemon without bound.
   */
  udpMaxInFlight?: number;
}

/** What the server counted. */
export interface DnsServerStats {
  /** UDP queries being answered now. */
  udpInFlight: number;
  /** UDP queries answered SERVFAIL at once because too many were in flight. */
  udpRefused: number;
  /** Bare headers (no question) answered FORMERR by the server itself: the watchdog's probes. */
  probes: number;
}

/** A running DNS server. */
export interface DnsServer {
  /** The address served on. */
  readonly address: string;
  /** The port served on (UDP and TCP). */
  readonly port: number;
  /** Counters, live. */
  readonly stats: Readonly<DnsServerStats>;
  /** The names the addresses in the answers sent were asked as. */
  readonly names: DnsNames;
  /** Stops serving: closes the sockets and every TCP connection; idempotent. */
  close(): Promise<void>;
}

/**
 * Serves DNS over UDP and TCP on one address and port.
 *
 * @param options where to serve and who answers
 * @returns the running server
 * @throws {Error} when the address or port cannot be bound (`Deno.errors.AddrInUse`,
 *   `Deno.errors.AddrNotAvailable` as the cause)
 * @example
 * ```ts ignore
 * const server = await startDnsServer({ address: "240.0.0.2", interceptor });
 * // … later
 * await server.close();
 * ```
 */
export function startDnsServer(options: DnsServerOptions): Promise<DnsServer> {
  const log = options.log ?? (() => {});
  const { address, interceptor } = options;
  const idleMs = options.tcpIdleMs ?? 10_000;
  const maxConnections = options.tcpMaxConnections ?? 256;
  const maxPending = options.tcpMaxPending ?? 64;
  const maxInFlight = Math.max(1, options.udpMaxInFlight ?? 1024);
  const stats: DnsServerStats = { udpInFlight: 0, udpRefused: 0, probes: 0 };
  const wanted = options.port ?? 53;
  const route = interceptor.route?.bind(interceptor);
  const names = new DnsNames(route ? { route } : {});

  // Port 0: take a free TCP port, then the same UDP port; retry if UDP's is taken.
  let listener: Deno.TcpListener | undefined;
  let socket: Deno.DatagramConn | undefined;
  for (let attempt = 0; listener === undefined; attempt++) {
    let tcp: Deno.TcpListener;
    try {
      tcp = Deno.listen({ hostname: address, port: wanted, transport: "tcp" });
    } catch (cause) {
      throw new Error(`Cannot serve DNS on "${address}:${wanted}" (tcp): ${message(cause)}`, {
        cause,
      });
    }
    const port = tcp.addr.port;
    try {
      socket = Deno.listenDatagram({ transport: "udp", hostname: address, port });
      listener = tcp;
    } catch (cause) {
      tcp.close();
      if (wanted !== 0 || attempt >= 10) {
        throw new Error(`Cannot serve DNS on "${address}:${port}" (udp): ${message(cause)}`, {
          cause,
        });
      }
    }
  }
  const udp = socket!;
  const port = listener.addr.port;
  let closed = false;

  const send = (reply: Uint8Array, from: Deno.Addr) => {
    if (closed || reply.length === 0) return;
    udp.send(reply, from).catch((error) => {
      const where = from as Deno.NetAddr;
      log("debug", `dns: cannot answer ${where.hostname}:${where.port}: ${message(error)}`);
    });
  };
  // The queries refused in the current burst: one line when it starts, one when it ends.
  let burst = 0;
  // One receive at a time into one buffer; each query is copied out, since
  // its answer may take a round trip to the cluster.
  const receiving = (async () => {
    const buf = new Uint8Array(65535);
    for (;;) {
      let got: [Uint8Array, Deno.Addr];
      try {
        got = await udp.receive(buf);
      } catch (error) {
        if (!closed) log("warn", `dns: udp socket error: ${message(error)}`);
        return;
      }
      const [query, from] = got;
      if (isBareHeader(query)) {
        stats.probes++;
        send(quickReply(query, FORMERR)!, from);
        continue;
      }
      if (stats.udpInFlight >= maxInFlight) {
        stats.udpRefused++;
        if (burst++ === 0) {
          log(
            "warn",
            `dns: ${maxInFlight} udp queries in flight: answering SERVFAIL to more until they drain`,
          );
        }
        const reply = quickReply(query, SERVFAIL);
        if (reply) send(reply, from);
        continue;
      }
      stats.udpInFlight++;
      interceptor.handle(query.slice(), { transport: "udp" }).then(
        (reply) => {
          names.record(reply);
          send(reply, from);
        },
        (error) => log("debug", `dns: udp query failed: ${message(error)}`),
      ).finally(() => {
        stats.udpInFlight--;
        if (burst > 0 && stats.udpInFlight <= maxInFlight >> 1) {
          log("info", `dns: udp queries drained: ${burst} answered SERVFAIL in the burst`);
          burst = 0;
        }
      });
    }
  })();

  const connections = new Set<Deno.TcpConn>();
  const tasks = new Set<Promise<void>>();
  const track = (task: Promise<void>) => {
    tasks.add(task);
    task.finally(() => tasks.delete(task));
  };
  const acceptLoop = (async () => {
    for (;;) {
      let conn: Deno.TcpConn;
      try {
        conn = await listener.accept();
      } catch (error) {
        if (!closed) log("warn", `dns: tcp accept stopped: ${message(error)}`);
        return;
      }
      if (connections.size >= maxConnections) {
        log("debug", `dns: too many tcp connections (${maxConnections}): closing a new one`);
        conn.close();
        continue;
      }
      connections.add(conn);
      track(
        serveTcp(conn, interceptor, { idleMs, maxPending, log, names }).finally(() => {
          connections.delete(conn);
        }),
      );
    }
  })();

  log("info", `dns: serving on ${address}:${port} (udp, tcp)`);
  return Promise.resolve({
    address,
    port,
    stats,
    names,
    async close() {
      if (closed) return;
      closed = true;
      udp.close();
      await receiving;
      listener.close();
      for (const conn of connections) {
        try {
          conn.close();
        } catch { /* already closed */ }
      }
      await acceptLoop;
      await Promise.allSettled([...tasks]);
      log("info", `dns: stopped serving on ${address}:${port}`);
    },
  });
}

/** One TCP connection: length-framed queries in, answers out as they complete. */
async function serveTcp(
  conn: Deno.TcpConn,
  interceptor: Pick<DnsInterceptor, "handle">,
  options: { idleMs: number; maxPending: number; log: DnsLog; names: DnsNames },
): Promise<void> {
  const pending = new Set<Promise<void>>();
  let writing = Promise.resolve();
  let open = true;
  let idle: ReturnType<typeof setTimeout> | undefined;
  const shut = () => {
    if (!open) return;
    open = false;
    try {
      conn.close();
    } catch { /* already closed */ }
  };
  const arm = () => {
    clearTimeout(idle);
    idle = setTimeout(() => pending.size === 0 ? shut() : arm(), options.idleMs);
  };
  const answer = (query: Uint8Array) => {
    const task = interceptor.handle(query, { transport: "tcp" }).then((reply) => {
      if (reply.length === 0) return;
      options.names.record(reply);
      const framed = new Uint8Array(2 + reply.length);
      framed[0] = reply.length >>> 8;
      framed[1] = reply.length;
      framed.set(reply, 2);
      // One write at a time, so that frames never interleave.
      writing = writing.then(() => open ? writeAll(conn, framed) : undefined).catch(shut);
      return writing;
    });
    pending.add(task);
    task.finally(() => pending.delete(task));
  };

  let buf = new Uint8Array(4096);
  let have = 0;
  arm();
  try {
    for (;;) {
      while (pending.size >= options.maxPending) await Promise.race(pending);
      if (have === buf.length) {
        const bigger = new Uint8Array(buf.length * 2);
        bigger.set(buf);
        buf = bigger;
      }
      const n = await conn.read(buf.subarray(have));
      if (n === null) break;
      have += n;
      arm();
      let at = 0;
      while (have - at >= 2) {
        const length = (buf[at]! << 8) | buf[at + 1]!;
        if (have - at - 2 < length) break;
        answer(buf.slice(at + 2, at + 2 + length));
        at += 2 + length;
      }
      if (at > 0) {
        buf.copyWithin(0, at, have);
        have -= at;
      }
    }
  } catch (error) {
    if (open) options.log("debug", `dns: tcp connection ended: ${message(error)}`);
  } finally {
    // The client may half-close after its last query: answer what is pending.
    await Promise.allSettled([...pending]);
    await writing;
    clearTimeout(idle);
    shut();
  }
}

const FORMERR = 1;
const SERVFAIL = 2;

/** A query of a header and nothing else (RFC 1035 4.1.1: QR 0, opcode 0, all counts 0). */
function isBareHeader(query: Uint8Array): boolean {
  if (query.length !== 12 || (query[2]! & 0xf8) !== 0) return false;
  for (let i = 4; i < 12; i++) if (query[i] !== 0) return false;
  return true;
}

/**
 * An answer with only a response code, made without decoding the whole
 * query: the header (id, opcode, RD kept; QR and RA set) and the question
 * as asked, so that a stub resolver matches it to its query (RFC 1035 4.1.1).
 *
 * @returns the reply, or `undefined` for a message that is no query
 */
function quickReply(query: Uint8Array, rcode: number): Uint8Array | undefined {
  if (query.length < 12 || (query[2]! & 0x80) !== 0) return undefined;
  const questions = (query[4]! << 8) | query[5]!;
  let end = 12;
  if (questions === 1) {
    // The name's labels, then type and class; a pointer cannot start a query's first name.
    while (end < query.length && query[end] !== 0) {
      if ((query[end]! & 0xc0) !== 0) return undefined;
      end += 1 + query[end]!;
    }
    end += 5;
    if (end > query.length) return undefined;
  } else if (questions !== 0) return undefined;
  const reply = query.slice(0, end);
  reply[2] = 0x80 | (query[2]! & 0x79); // QR, opcode, RD; not AA, TC
  reply[3] = 0x80 | rcode; // RA
  reply.fill(0, 6, 12); // no answer, authority or additional records
  return reply;
}

async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let at = 0; at < bytes.length;) at += await conn.write(bytes.subarray(at));
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

// --- upstream ---------------------------------------------------------------------

/** Options for {@linkcode upstreamResolver}. */
export interface UpstreamOptions {
  /** How long to wait for one server's UDP answer, in ms (default 2000). */
  timeoutMs?: number;
  /** Rounds over the server list (default 2). */
  attempts?: number;
  /** Log sink. */
  log?: DnsLog;
}

interface Nameserver {
  host: string;
  port: number;
  text: string;
}

/**
 * Parses `198.18.0.53`, `198.18.0.53:5353`, `2001:2::53`, `[2001:2::53]:5353`.
 *
 * @param text a nameserver as written in resolv.conf, optionally with a port
 * @returns host and port
 * @throws {SyntaxError} when the port is not a number
 */
function parseNameserver(text: string): Nameserver {
  const bracket = /^\[(.+)\](?::(\d+))?$/.exec(text);
  if (bracket) return { host: bracket[1]!, port: Number(bracket[2] ?? 53), text };
  const colons = text.split(":").length - 1;
  if (colons === 1) {
    const [host, port] = text.split(":") as [string, string];
    if (!/^\d+$/.test(port)) {
      throw new SyntaxError(`Cannot use nameserver "${text}": the port is not a number`);
    }
    return { host, port: Number(port), text };
  }
  return { host: text, port: 53, text };
}

/**
 * Makes a resolver that forwards raw queries to the workstation's own
 * nameservers, as glibc would: each server in turn, the list `attempts`
 * times; a truncated (TC) UDP answer is asked again over TCP; a SERVFAIL or
 * REFUSED moves on to the next server and is returned only when no server
 * does better. Each exchange uses a fresh socket (a fresh source port) and a
 * fresh random id; the answer must come from the server asked, with that id
 * and the same question, and goes back with the caller's id.
 *
 * @param nameservers `198.18.0.53`, `198.18.0.53:5353`, `[2001:2::53]:53`
 * @param options timeouts and attempts
 * @returns the resolver; it rejects when no server answered
 * @throws {SyntaxError} when a nameserver cannot be parsed
 * @example
 * ```ts ignore
 * const upstream = upstreamResolver(["198.18.0.53"]);
 * const answer = await upstream(queryBytes);
 * ```
 */
export function upstreamResolver(nameservers: string[], options: UpstreamOptions = {}): DnsResolve {
  const servers = nameservers.map(parseNameserver);
  const timeoutMs = options.timeoutMs ?? 2000;
  const attempts = Math.max(1, options.attempts ?? 2);
  const log = options.log ?? (() => {});
  return async (query: Uint8Array): Promise<Uint8Array> => {
    if (servers.length === 0) throw new Error("Cannot resolve upstream: no nameservers");
    const asked = decodeDnsMessage(query);
    if (asked === undefined || asked.questions.length !== 1) {
      throw new SyntaxError("Cannot resolve upstream: the query is malformed");
    }
    let poor: Uint8Array | undefined;
    let lastError: unknown;
    for (let round = 0; round < attempts && poor === undefined; round++) {
      for (const server of servers) {
        try {
          let answer = await exchangeUdp(server, query, timeoutMs);
          if ((answer[2]! & 0x02) !== 0) {
            log("debug", `dns: upstream ${server.text} truncated its answer: asking over tcp`);
            answer = await exchangeTcp(server, query, timeoutMs);
          }
          const rcode = answer[3]! & 0x0f;
          if (rcode === 2 || rcode === 5) {
            poor = answer;
            continue;
          }
          return answer;
        } catch (error) {
          lastError = error;
          log("debug", `dns: upstream ${server.text}: ${message(error)}`);
        }
      }
    }
    if (poor !== undefined) return poor;
    throw new Error(
      `Cannot resolve upstream: no answer from "${servers.map((s) => s.text).join(", ")}"`,
      { cause: lastError },
    );
  };
}

/** The query with a fresh random id, and a check that an answer answers it. */
function rekey(query: Uint8Array): {
  wire: Uint8Array;
  matches: (answer: Uint8Array) => boolean;
  restore: (answer: Uint8Array) => Uint8Array;
} {
  const wire = new Uint8Array(query); // A copy: `slice` of a node Buffer is a view.
  crypto.getRandomValues(wire.subarray(0, 2));
  const id = [query[0]!, query[1]!];
  const q = decodeDnsMessage(query)!.questions[0]!;
  const lower = (labels: string[]) => labels.join(".").toLowerCase();
  return {
    wire,
    matches(answer) {
      if (answer.length < 12 || answer[0] !== wire[0] || answer[1] !== wire[1]) return false;
      if ((answer[2]! & 0x80) === 0) return false;
      const m = decodeDnsMessage(answer);
      if (m === undefined) return false;
      const a = m.questions[0];
      // A server may leave the question out of an error answer.
      return a === undefined ||
        (a.type === q.type && a.class === q.class && lower(a.name) === lower(q.name));
    },
    restore(answer) {
      const out = new Uint8Array(answer);
      out[0] = id[0]!;
      out[1] = id[1]!;
      return out;
    },
  };
}

function exchangeUdp(
  server: Nameserver,
  query: Uint8Array,
  timeoutMs: number,
): Promise<Uint8Array> {
  const { wire, matches, restore } = rekey(query);
  const socket = dgram.createSocket({ type: server.host.includes(":") ? "udp6" : "udp4" });
  return new Promise<Uint8Array>((resolve, reject) => {
    // Every way out closes the socket: an offline machine times out on every
    // query, and each socket left open would hold a descriptor for good.
    const done = () => {
      clearTimeout(timer);
      try {
        socket.close();
      } catch { /* already closed */ }
    };
    const timer = setTimeout(() => {
      done();
      reject(new Error(`Cannot reach nameserver "${server.text}": timed out (udp)`));
    }, timeoutMs);
    socket.on("message", (msg: Uint8Array, rinfo: dgram.RemoteInfo) => {
      // Anything but the server's answer to this very question is ignored.
      if (rinfo.port !== server.port || !sameHost(rinfo.address, server.host) || !matches(msg)) {
        return;
      }
      done();
      resolve(restore(msg));
    });
    socket.on("error", (error: Error) => {
      done();
      reject(
        new Error(`Cannot reach nameserver "${server.text}": ${error.message}`, { cause: error }),
      );
    });
    socket.send(wire, server.port, server.host, (error) => {
      if (!error) return;
      done();
      reject(
        new Error(`Cannot reach nameserver "${server.text}": ${error.message}`, { cause: error }),
      );
    });
  });
}

function sameHost(a: string, b: string): boolean {
  const x = parseAddress(a), y = parseAddress(b);
  if (x === undefined || y === undefined) return a === b;
  return x.length === y.length && addressEquals(x, 0, y, 0, x.length);
}

async function exchangeTcp(
  server: Nameserver,
  query: Uint8Array,
  timeoutMs: number,
): Promise<Uint8Array> {
  const { wire, matches, restore } = rekey(query);
  const conn = await Deno.connect({ hostname: server.host, port: server.port, transport: "tcp" });
  const timer = setTimeout(() => conn.close(), timeoutMs);
  try {
    const framed = new Uint8Array(2 + wire.length);
    framed[0] = wire.length >>> 8;
    framed[1] = wire.length;
    framed.set(wire, 2);
    await writeAll(conn, framed);
    const head = await readExactly(conn, 2);
    const body = await readExactly(conn, (head[0]! << 8) | head[1]!);
    if (!matches(body)) {
      throw new Error(`Cannot use nameserver "${server.text}": its tcp answer does not match`);
    }
    return restore(body);
  } catch (cause) {
    if (cause instanceof Error && cause.message.startsWith("Cannot")) throw cause;
    throw new Error(`Cannot reach nameserver "${server.text}" over tcp: ${message(cause)}`, {
      cause,
    });
  } finally {
    clearTimeout(timer);
    try {
      conn.close();
    } catch { /* closed by the timer */ }
  }
}

async function readExactly(conn: Deno.Conn, length: number): Promise<Uint8Array> {
  const out = new Uint8Array(length);
  for (let at = 0; at < length;) {
    const n = await conn.read(out.subarray(at));
    if (n === null) throw new Error("the connection closed early");
    at += n;
  }
  return out;
}
