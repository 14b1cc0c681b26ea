/**
 * The session table: a client arrives, sends heartbeats, departs; a session
 * without a heartbeat for the TTL expires. Ending a session ends everything
 * registered on it (tunnels, cluster-info streams).
 *
 * Time is passed in (`now`), so expiry is tested without waiting: the server
 * calls {@linkcode SessionTable.sweep} on a timer, a test calls it after moving
 * its clock.
 *
 * @module
 */

import type { MuxEnd } from "../mod/rpc/mux_end.ts";
import type { Cidr } from "../mod/net/address.ts";
import { Usage } from "./limits.ts";

/** Who the client says it is (from `ArriveRequest.client`). */
export interface SessionClient {
  /** The user. */
  name: string;
  /** The workstation's host name. */
  hostname: string;
  /** The client's vif version. */
  version: string;
  /** The namespace the client is connected to. */
  namespace: string;
  /** `linux`, `darwin`, `windows`. */
  os: string;
  /** Subnets outside the cluster's this session may also reach (`--also-proxy`). */
  alsoProxy?: readonly Cidr[];
}

/** Why a session ended. */
export type SessionEnd = "departed" | "expired" | "shutdown";

/** Called when the session ends; `reason` is a short phrase for a tunnel's close message. */
export type SessionCloser = (end: SessionEnd, reason: string) => void;

/** One client's session. */
export class Session {
  /** The session id: 32 random hex digits. */
  readonly id: string;
  /** Who the client is. */
  readonly client: Readonly<SessionClient>;
  /** When it arrived (ms, the table's clock). */
  readonly arrivedAt: number;
  /** What it holds now (flows, DNS queries, bytes), counted against the manager's limits. */
  readonly usage = new Usage();
  /** Its open `WatchClusterInfo` streams. */
  watches = 0;
  /** Its open `Mux` calls. */
  muxCalls = 0;
  /** The ends of its open `Mux` calls: where reverse flows (intercepts) are opened. */
  readonly muxEnds = new Set<MuxEnd>();
  #lastSeen: number;
  #closers = new Map<SessionCloser, "tunnel" | "stream">();
  #ended = false;

  /**
   * Makes a session; the table does this.
   *
   * @param id The id.
   * @param client Who the client is.
   * @param now The time of arrival.
   */
  constructor(id: string, client: SessionClient, now: number) {
    this.id = id;
    this.client = { ...client };
    this.arrivedAt = now;
    this.#lastSeen = now;
  }

  /** The id as the logs show it: its first 8 digits and an ellipsis. */
  get shortId(): string {
    return shortId(this.id);
  }

  /** When the last heartbeat (or the arrival) came. */
  get lastSeen(): number {
    return this.#lastSeen;
  }

  /** Whether the session has ended. */
  get ended(): boolean {
    return this.#ended;
  }

  /** How many tunnels are open in it. */
  get tunnels(): number {
    return [...this.#closers.values()].filter((kind) => kind === "tunnel").length;
  }

  /**
   * Registers something to end with the session.
   *
   * @param closer Called once when the session ends.
   * @param kind What it is: a tunnel (counted in the log line) or a stream.
   * @returns A function that unregisters it (call it when the thing ends first).
   */
  onEnd(closer: SessionCloser, kind: "tunnel" | "stream" = "tunnel"): () => void {
    this.#closers.set(closer, kind);
    return () => void this.#closers.delete(closer);
  }

  /** @internal Records a heartbeat. */
  touch(now: number): void {
    this.#lastSeen = now;
  }

  /** @internal Ends the session and everything registered on it; returns how many tunnels. */
  end(end: SessionEnd, reason: string): number {
    if (this.#ended) return 0;
    this.#ended = true;
    const closers = [...this.#closers];
    this.#closers.clear();
    for (const [closer] of closers) closer(end, reason);
    return closers.filter(([, kind]) => kind === "tunnel").length;
  }
}

/** Options of {@linkcode SessionTable}. */
export interface SessionTableOptions {
  /** How long a session lives without a heartbeat, in ms. */
  ttlMs: number;
  /** The clock, in ms. Default `Date.now`. */
  now?: () => number;
  /** Where the one line per session event goes. */
  log?: (line: string) => void;
  /** Makes session ids (for tests). Default: 16 random bytes as hex. */
  newId?: () => string;
}

/**
 * Every live session, by id.
 *
 * @example Arrive, expire
 * ```ts
 * import { SessionTable } from "./sessions.ts";
 *
 * let now = 0;
 * const lines: string[] = [];
 * const table = new SessionTable({ ttlMs: 30_000, now: () => now, log: (l) => lines.push(l) });
 * const session = table.arrive({ name: "alice", hostname: "box", version: "0.1.0", namespace: "default", os: "linux" });
 * now = 31_000;
 * table.sweep();
 * if (table.get(session.id) !== undefined || !lines[1]?.includes("expired after 31 s")) {
 *   throw new Error(lines.join("\n"));
 * }
 * ```
 */
export class SessionTable {
  #sessions = new Map<string, Session>();
  #ttlMs: number;
  #now: () => number;
  #log: (line: string) => void;
  #newId: () => string;

  /**
   * Makes an empty table.
   *
   * @param options The TTL, the clock and the log.
   */
  constructor(options: SessionTableOptions) {
    this.#ttlMs = options.ttlMs;
    this.#now = options.now ?? Date.now;
    this.#log = options.log ?? (() => {});
    this.#newId = options.newId ?? randomId;
  }

  /** How long a session lives without a heartbeat, in ms. */
  get ttlMs(): number {
    return this.#ttlMs;
  }

  /** How many sessions are live. */
  get size(): number {
    return this.#sessions.size;
  }

  /**
   * Starts a session.
   *
   * @param client Who the client says it is.
   * @returns The new session.
   */
  arrive(client: SessionClient): Session {
    let id = this.#newId();
    while (this.#sessions.has(id)) id = this.#newId();
    const session = new Session(id, client, this.#now());
    this.#sessions.set(id, session);
    const who = `${client.name || "someone"}@${client.hostname || "unknown host"}`;
    const version = client.version ? `vif ${client.version}` : "unknown version";
    const also = client.alsoProxy?.length ? `; also proxying ${client.alsoProxy.join(" ")}` : "";
    this.#log(`manager: session ${session.shortId} arrived from ${who} (${version})${also}`);
    return session;
  }

  /**
   * Looks a live session up. A session past its TTL that no sweep has removed
   * yet is not live: it is ended here.
   *
   * @param id The session id.
   * @returns The session, or `undefined` when unknown or expired.
   */
  get(id: string): Session | undefined {
    const session = this.#sessions.get(id);
    if (session === undefined) return undefined;
    if (this.#now() - session.lastSeen > this.#ttlMs) {
      this.#expire(session, this.#now());
      return undefined;
    }
    return session;
  }

  /**
   * Records a heartbeat.
   *
   * @param id The session id.
   * @returns The session, or `undefined` when unknown or expired.
   */
  remain(id: string): Session | undefined {
    const session = this.get(id);
    session?.touch(this.#now());
    return session;
  }

  /**
   * Ends a session at the client's request, with its tunnels.
   *
   * @param id The session id.
   * @returns Whether the session was live.
   */
  depart(id: string): boolean {
    const session = this.get(id);
    if (session === undefined) return false;
    this.#sessions.delete(id);
    const count = session.end("departed", "the session departed");
    this.#log(`manager: session ${session.shortId} departed${closedCount(count)}`);
    return true;
  }

  /**
   * Ends every session whose last heartbeat is older than the TTL.
   *
   * @returns How many sessions expired.
   */
  sweep(): number {
    const now = this.#now();
    let expired = 0;
    for (const session of [...this.#sessions.values()]) {
      if (now - session.lastSeen > this.#ttlMs) {
        this.#expire(session, now);
        expired++;
      }
    }
    return expired;
  }

  /**
   * Ends every session (the manager is stopping).
   *
   * @param reason Why, for the tunnels' close messages.
   * @returns How many sessions there were.
   */
  endAll(reason: string): number {
    const sessions = [...this.#sessions.values()];
    this.#sessions.clear();
    for (const session of sessions) session.end("shutdown", reason);
    return sessions.length;
  }

  #expire(session: Session, now: number): void {
    this.#sessions.delete(session.id);
    const count = session.end("expired", "the session expired");
    const seconds = formatSeconds(now - session.lastSeen);
    this.#log(
      `manager: session ${session.shortId} expired after ${seconds} without a heartbeat${
        closedCount(count)
      }`,
    );
  }
}

/**
 * The id as logs show it: its first 8 characters and an ellipsis.
 *
 * @param id A session id.
 * @returns `1a2b3c4d…`.
 */
export function shortId(id: string): string {
  return id.length > 8 ? `${id.slice(0, 8)}…` : id;
}

function randomId(): string {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function formatSeconds(ms: number): string {
  return ms >= 10_000 || ms % 1000 === 0
    ? `${Math.round(ms / 1000)} s`
    : `${(ms / 1000).toFixed(1)} s`;
}

function closedCount(count: number): string {
  return count === 0 ? "" : ` (${count} tunnel${count === 1 ? "" : "s"} closed)`;
}
