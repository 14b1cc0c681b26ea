/**
 * The DNS interceptor: decides, for every query the daemon's DNS server
 * receives, whether the cluster or the workstation's own resolvers answer it,
 * rewrites short cluster names the way a pod's search path would, renames
 * the answer back to the name the client asked for, and caches cluster
 * answers for their TTL with in-flight de-duplication (DESIGN.md §5).
 *
 * Routing, in order (first match wins):
 *
 * | name                                   | goes to  | asked as                          |
 * | -------------------------------------- | -------- | --------------------------------- |
 * | under an exclude suffix                | upstream | as is                             |
 * | under an include suffix                | cluster  | as is                             |
 * | under the cluster domain               | cluster  | as is                             |
 * | PTR name of an address in a cluster subnet | cluster | as is                        |
 * | `a.b.svc`                              | cluster  | `a.b.svc.<domain>`                |
 * | `a.<known namespace>`                  | cluster  | `a.<ns>.svc.<domain>`, NXDOMAIN → upstream |
 * | `a` (one label)                        | cluster  | `a.<namespace>.svc.<domain>`, NXDOMAIN → upstream |
 * | anything else                          | upstream | as is                             |
 *
 * Leading `_` labels of service-record names (`_http._tcp.web.other`) are
 * skipped when the last three rules look at the name, as a pod's search path
 * would treat them.
 *
 * Only class IN goes to the cluster. The namespace rule falls back to
 * upstream on NXDOMAIN as the single-label rule does, because namespaces are
 * often named like top-level domains (`dev`, `app`, `shop`): without the
 * fallback a namespace `dev` would hide every `*.dev` site.
 *
 * The wire format (RFC 1035 4.1) is read and written by the small codec in
 * this file rather than by `dns-packet`: under Deno `dns-packet` needs a
 * node `Buffer` (it calls `buf.readUInt16BE`), which `mod/net` may not
 * import, and it writes names without compression, so a renamed answer could
 * outgrow a 512-byte UDP reply that the cluster's compressed one fitted. The
 * codec is checked against `dns-packet` in the tests.
 *
 * @module
 */

import type { Cidr } from "./address.ts";

// --- constants ---------------------------------------------------------------

/** Record types the interceptor names (RFC 1035 3.2.2, RFC 3596, RFC 2782, RFC 6891). */
export const DnsType = {
  A: 1,
  NS: 2,
  CNAME: 5,
  SOA: 6,
  PTR: 12,
  MX: 15,
  TXT: 16,
  AAAA: 28,
  SRV: 33,
  DNAME: 39,
  OPT: 41,
  ANY: 255,
} as const;

/** Response codes (RFC 1035 4.1.1). */
export const DnsRcode = {
  NOERROR: 0,
  FORMERR: 1,
  SERVFAIL: 2,
  NXDOMAIN: 3,
  NOTIMP: 4,
  REFUSED: 5,
} as const;

/** The class of Internet records. */
const CLASS_IN = 1;

/** Header flag bits (RFC 1035 4.1.1, RFC 4035 for AD/CD). */
const QR = 0x8000, AA = 0x0400, TC = 0x0200, RD = 0x0100, RA = 0x0080, CD = 0x0010;
const OPCODE_MASK = 0x7800;

/** Our EDNS buffer size, toward the cluster and in replies (DNS flag day 2020). */
const EDNS_SIZE = 1232;

/**
 * Types whose RDATA holds names, as a layout: `"n"` a name, a number that many
 * fixed bytes. RFC 3597 4: receivers decompress these; only the RFC 1035
 * types (`compress: true`) may be compressed when written.
 */
const RDATA_NAMES: ReadonlyMap<number, { layout: ("n" | number)[]; compress: boolean }> = new Map([
  [2, { layout: ["n"], compress: true }], // NS
  [3, { layout: ["n"], compress: true }], // MD
  [4, { layout: ["n"], compress: true }], // MF
  [5, { layout: ["n"], compress: true }], // CNAME
  [6, { layout: ["n", "n", 20], compress: true }], // SOA
  [7, { layout: ["n"], compress: true }], // MB
  [8, { layout: ["n"], compress: true }], // MG
  [9, { layout: ["n"], compress: true }], // MR
  [12, { layout: ["n"], compress: true }], // PTR
  [14, { layout: ["n", "n"], compress: true }], // MINFO
  [15, { layout: [2, "n"], compress: true }], // MX
  [17, { layout: ["n", "n"], compress: false }], // RP
  [18, { layout: [2, "n"], compress: false }], // AFSDB
  [21, { layout: [2, "n"], compress: false }], // RT
  [26, { layout: [2, "n", "n"], compress: false }], // PX
  [33, { layout: [6, "n"], compress: false }], // SRV (RFC 2782: no compression)
  [39, { layout: ["n"], compress: false }], // DNAME (RFC 6672 2.5)
]);

// --- the message model -------------------------------------------------------

/**
 * A domain name as its labels, root excluded; each label a binary string (one
 * char per byte), so any byte survives a round trip.
 */
export type DnsName = string[];

/** One question (RFC 1035 4.1.2). */
export interface DnsQuestion {
  name: DnsName;
  type: number;
  class: number;
}

/** RDATA: opaque bytes and, for the types in RFC 3597 4, the names in it, decompressed. */
export type DnsRdata = (Uint8Array | DnsName)[];

/** One resource record (RFC 1035 4.1.3). */
export interface DnsRecord {
  name: DnsName;
  type: number;
  class: number;
  /** Seconds; values with the top bit set read as 0 (RFC 2181 8). */
  ttl: number;
  data: DnsRdata;
}

/** The EDNS pseudo-record (RFC 6891 6.1.2). */
export interface DnsEdns {
  udpSize: number;
  /** The upper 8 bits of the 12-bit response code. */
  extRcode: number;
  version: number;
  /** The flags word (bit 15 is DO). */
  flags: number;
  /** The options, opaque. */
  options: Uint8Array;
}

/** A decoded message. `flags` is the header's second word, response code included. */
export interface DnsMessage {
  id: number;
  flags: number;
  questions: DnsQuestion[];
  answers: DnsRecord[];
  authorities: DnsRecord[];
  /** Additional records except OPT, which is `edns`. */
  additionals: DnsRecord[];
  edns?: DnsEdns;
}

// --- decoding ----------------------------------------------------------------

function u16(buf: Uint8Array, at: number): number {
  return (buf[at]! << 8) | buf[at + 1]!;
}

function u32(buf: Uint8Array, at: number): number {
  return ((buf[at]! << 24) >>> 0) + ((buf[at + 1]! << 16) | (buf[at + 2]! << 8) | buf[at + 3]!);
}

/**
 * Reads a name at `at`: its labels and the offset after it, or `undefined`
 * when malformed. RFC 1035 4.1.4: a pointer must point to a prior occurrence;
 * each jump must land before the previous one, so reading always ends.
 */
function readName(buf: Uint8Array, at: number): [DnsName, number] | undefined {
  const labels: DnsName = [];
  let pos = at, limit = at, end = -1, length = 1;
  for (;;) {
    if (pos >= buf.length) return undefined;
    const len = buf[pos]!;
    if (len === 0) {
      if (end < 0) end = pos + 1;
      return [labels, end];
    }
    if ((len & 0xc0) === 0xc0) {
      if (pos + 1 >= buf.length) return undefined;
      const target = ((len & 0x3f) << 8) | buf[pos + 1]!;
      if (end < 0) end = pos + 2;
      if (target >= limit) return undefined;
      pos = limit = target;
      continue;
    }
    if ((len & 0xc0) !== 0) return undefined; // RFC 6891 5: extended label types are gone.
    length += len + 1;
    if (length > 255 || pos + 1 + len > buf.length) return undefined; // RFC 1035 2.3.4
    labels.push(String.fromCharCode(...buf.subarray(pos + 1, pos + 1 + len)));
    pos += 1 + len;
  }
}

/**
 * A copy of `buf[start, end)` as a plain Uint8Array: `slice` on a node Buffer
 * (what node:dgram hands over) is a view into memory that may be reused.
 */
function copy(buf: Uint8Array, start: number, end: number): Uint8Array {
  return new Uint8Array(buf.subarray(start, end));
}

function readRdata(
  buf: Uint8Array,
  type: number,
  start: number,
  end: number,
): DnsRdata | undefined {
  const spec = RDATA_NAMES.get(type);
  if (spec === undefined) return [copy(buf, start, end)];
  const out: DnsRdata = [];
  let pos = start;
  for (const part of spec.layout) {
    if (part === "n") {
      const read = readName(buf, pos);
      if (read === undefined || read[1] > end) return undefined;
      out.push(read[0]);
      pos = read[1];
    } else {
      if (pos + part > end) return undefined;
      out.push(copy(buf, pos, pos + part));
      pos += part;
    }
  }
  return pos === end ? out : undefined;
}

/**
 * Decodes a DNS message. Never throws: a malformed message is `undefined`.
 *
 * @param buf the message
 * @returns the message, or `undefined` when any part of it is malformed
 * @example
 * ```ts
 * import { decodeDnsMessage, encodeDnsMessage } from "./dns.ts";
 * const bytes = encodeDnsMessage({
 *   id: 1, flags: 0x0100, questions: [{ name: ["web"], type: 1, class: 1 }],
 *   answers: [], authorities: [], additionals: [],
 * });
 * decodeDnsMessage(bytes)?.questions[0]?.name; // ["web"]
 * ```
 */
export function decodeDnsMessage(buf: Uint8Array): DnsMessage | undefined {
  if (buf.length < 12) return undefined;
  const counts = [u16(buf, 4), u16(buf, 6), u16(buf, 8), u16(buf, 10)] as const;
  const message: DnsMessage = {
    id: u16(buf, 0),
    flags: u16(buf, 2),
    questions: [],
    answers: [],
    authorities: [],
    additionals: [],
  };
  let pos = 12;
  for (let i = 0; i < counts[0]; i++) {
    const read = readName(buf, pos);
    if (read === undefined || read[1] + 4 > buf.length) return undefined;
    pos = read[1];
    message.questions.push({ name: read[0], type: u16(buf, pos), class: u16(buf, pos + 2) });
    pos += 4;
  }
  const sections = [message.answers, message.authorities, message.additionals] as const;
  for (let s = 0; s < 3; s++) {
    for (let i = 0; i < counts[s + 1]!; i++) {
      const read = readName(buf, pos);
      if (read === undefined || read[1] + 10 > buf.length) return undefined;
      pos = read[1];
      const type = u16(buf, pos), cls = u16(buf, pos + 2), rawTtl = u32(buf, pos + 4);
      const rdlength = u16(buf, pos + 8);
      const start = pos + 10, end = start + rdlength;
      if (end > buf.length) return undefined;
      pos = end;
      if (type === DnsType.OPT) {
        // RFC 6891 6.1.1: one OPT, owned by the root, in the additional section.
        if (s !== 2 || message.edns !== undefined || read[0].length !== 0) return undefined;
        message.edns = {
          udpSize: cls,
          extRcode: rawTtl >>> 24,
          version: (rawTtl >>> 16) & 0xff,
          flags: rawTtl & 0xffff,
          options: copy(buf, start, end),
        };
        continue;
      }
      const data = readRdata(buf, type, start, end);
      if (data === undefined) return undefined;
      const ttl = rawTtl > 0x7fffffff ? 0 : rawTtl; // RFC 2181 8
      sections[s]!.push({ name: read[0], type, class: cls, ttl, data });
    }
  }
  return message;
}

// --- encoding ----------------------------------------------------------------

/** A growable output buffer with a name compression table (RFC 1035 4.1.4). */
class Writer {
  buf = new Uint8Array(512);
  length = 0;
  #names = new Map<string, number>();

  #room(n: number): void {
    if (this.length + n <= this.buf.length) return;
    const next = new Uint8Array(Math.max(this.buf.length * 2, this.length + n));
    next.set(this.buf.subarray(0, this.length));
    this.buf = next;
  }

  u16(v: number): void {
    this.#room(2);
    this.buf[this.length++] = v >>> 8;
    this.buf[this.length++] = v;
  }

  u32(v: number): void {
    this.u16(v >>> 16);
    this.u16(v & 0xffff);
  }

  bytes(b: Uint8Array): void {
    this.#room(b.length);
    this.buf.set(b, this.length);
    this.length += b.length;
  }

  name(labels: DnsName, compress: boolean): void {
    for (let i = 0; i < labels.length; i++) {
      const key = nameKey(labels.slice(i));
      const at = this.#names.get(key);
      if (compress && at !== undefined) {
        this.u16(0xc000 | at);
        return;
      }
      if (at === undefined && this.length < 0x4000) this.#names.set(key, this.length);
      const label = labels[i]!;
      this.#room(1 + label.length);
      this.buf[this.length++] = label.length;
      for (let j = 0; j < label.length; j++) this.buf[this.length++] = label.charCodeAt(j);
    }
    this.#room(1);
    this.buf[this.length++] = 0;
  }

  record(r: DnsRecord): void {
    this.name(r.name, true);
    this.u16(r.type);
    this.u16(r.class);
    this.u32(r.ttl);
    const lengthAt = this.length;
    this.u16(0);
    const compress = RDATA_NAMES.get(r.type)?.compress ?? false;
    for (const part of r.data) {
      if (part instanceof Uint8Array) this.bytes(part);
      else this.name(part, compress);
    }
    const rdlength = this.length - lengthAt - 2;
    this.buf[lengthAt] = rdlength >>> 8;
    this.buf[lengthAt + 1] = rdlength;
  }
}

/**
 * Encodes a DNS message, compressing names where RFC 1035 allows.
 *
 * @param message the message; labels must be at most 63 bytes
 * @returns the bytes
 * @throws {RangeError} when a label is longer than 63 bytes
 * @example
 * ```ts
 * import { encodeDnsMessage } from "./dns.ts";
 * encodeDnsMessage({
 *   id: 1, flags: 0x0100, questions: [{ name: ["web"], type: 1, class: 1 }],
 *   answers: [], authorities: [], additionals: [],
 * }).length; // 21
 * ```
 */
export function encodeDnsMessage(message: DnsMessage): Uint8Array {
  const all = [message.questions, message.answers, message.authorities, message.additionals];
  for (const section of all) {
    for (const entry of section) {
      checkLabels(entry.name);
      for (const part of (entry as Partial<DnsRecord>).data ?? []) {
        if (!(part instanceof Uint8Array)) checkLabels(part);
      }
    }
  }
  const w = new Writer();
  w.u16(message.id);
  w.u16(message.flags);
  w.u16(message.questions.length);
  w.u16(message.answers.length);
  w.u16(message.authorities.length);
  w.u16(message.additionals.length + (message.edns ? 1 : 0));
  for (const q of message.questions) {
    w.name(q.name, true);
    w.u16(q.type);
    w.u16(q.class);
  }
  for (const r of message.answers) w.record(r);
  for (const r of message.authorities) w.record(r);
  for (const r of message.additionals) w.record(r);
  if (message.edns) {
    const e = message.edns;
    w.name([], false);
    w.u16(DnsType.OPT);
    w.u16(e.udpSize);
    w.u32(((e.extRcode & 0xff) << 24 | (e.version & 0xff) << 16 | (e.flags & 0xffff)) >>> 0);
    w.u16(e.options.length);
    w.bytes(e.options);
  }
  return w.buf.slice(0, w.length);
}

function checkLabels(name: DnsName): void {
  for (const label of name) {
    if (label.length > 63 || label.length === 0) {
      throw new RangeError(`Cannot encode name label "${label}": a label has 1–63 bytes`);
    }
  }
}

// --- names -------------------------------------------------------------------

function lowerAscii(label: string): string {
  return /[A-Z]/.test(label) ? label.replace(/[A-Z]+/g, (s) => s.toLowerCase()) : label;
}

/** An unambiguous, case-folded key for a name (dots and backslashes in labels escaped). */
function nameKey(name: DnsName): string {
  return name.map((l) => lowerAscii(l).replace(/[\\.]/g, "\\$&")).join(".");
}

/** Splits a presentation name (`web.default.`) into lowercased labels; no escapes. */
function splitName(text: string): DnsName {
  return text.split(".").filter((l) => l !== "").map(lowerAscii);
}

function hasSuffix(name: DnsName, suffix: DnsName): boolean {
  if (suffix.length > name.length) return false;
  const skip = name.length - suffix.length;
  return suffix.every((label, i) => lowerAscii(name[skip + i]!) === label);
}

/** The address a reverse name (`4.3.2.1.in-addr.arpa`, RFC 1035 3.5; RFC 3596 2.5) stands for. */
function reverseAddress(name: DnsName): Uint8Array | undefined {
  const lower = name.map(lowerAscii);
  if (lower.length === 6 && hasSuffix(lower, ["in-addr", "arpa"])) {
    const out = new Uint8Array(4);
    for (let i = 0; i < 4; i++) {
      const label = lower[3 - i]!;
      if (!/^(0|[1-9][0-9]{0,2})$/.test(label) || Number(label) > 255) return undefined;
      out[i] = Number(label);
    }
    return out;
  }
  if (lower.length === 34 && hasSuffix(lower, ["ip6", "arpa"])) {
    const out = new Uint8Array(16);
    for (let i = 0; i < 32; i++) {
      const label = lower[31 - i]!;
      if (!/^[0-9a-f]$/.test(label)) return undefined;
      out[i >> 1]! |= parseInt(label, 16) << (i & 1 ? 0 : 4);
    }
    return out;
  }
  return undefined;
}

// --- the interceptor ---------------------------------------------------------

/** Resolves one raw DNS message to a raw answer. */
export type DnsResolve = (query: Uint8Array) => Promise<Uint8Array>;

/** What the interceptor knows of the cluster; see {@linkcode DnsInterceptor.setClusterInfo}. */
export interface DnsClusterInfo {
  /** The cluster domain, `cluster.local`. */
  clusterDomain: string;
  /** The namespace single-label names resolve in, `default`. */
  namespace: string;
  /** The namespaces that exist (`name.<ns>` is a cluster name); `namespace` is always one. */
  namespaces?: string[];
  /** Pod subnets: PTR names of addresses inside go to the cluster. */
  podSubnets?: Cidr[];
  /** Service subnets: PTR names of addresses inside go to the cluster. */
  serviceSubnets?: Cidr[];
}

/** Options for {@linkcode DnsInterceptor}. */
export interface DnsInterceptorOptions extends DnsClusterInfo {
  /** Suffixes always answered by the cluster, as asked (`--dns-include`). */
  include?: string[];
  /** Suffixes never answered by the cluster (`--dns-exclude`); they win over every other rule. */
  exclude?: string[];
  /**
   * Asks the cluster's DNS server (the manager, as DNS frames on the Mux call). It must settle:
   * give the call a deadline. A rejection is answered with SERVFAIL.
   */
  resolveCluster: DnsResolve;
  /** Asks the workstation's own resolvers; without it such names get SERVFAIL. */
  resolveUpstream?: DnsResolve;
  /** The clock in ms (default `Date.now`). */
  now?: () => number;
  /** Most cached answers; the least recently used goes first (default 4096, 0 disables). */
  cacheMax?: number;
  /** Longest a positive answer is cached, in s (default 300). */
  maxTtl?: number;
  /** Longest a negative answer is cached, in s (default 30; RFC 2308 5). */
  maxNegativeTtl?: number;
  /**
   * A cluster look-up still unanswered after this long no longer takes new
   * joiners: the next identical query asks again (default 10 s).
   */
  staleInflightMs?: number;
  /** Log sink; lines start with `dns: `. */
  log?: (level: "debug" | "info" | "warn", message: string) => void;
}

/** Where a name goes. */
export type DnsRoute =
  | { to: "upstream"; rule: "exclude" | "other" }
  | {
    to: "cluster";
    rule: "include" | "domain" | "ptr" | "svc" | "namespace" | "single-label";
    /** The name asked of the cluster, lowercased, without the final dot. */
    name: string;
    /** Whether an NXDOMAIN from the cluster sends the query upstream. */
    fallback: boolean;
  };

/** The interceptor's counters. */
export interface DnsStats {
  /** Queries handed to {@linkcode DnsInterceptor.handle}. */
  queries: number;
  /** Calls of `resolveCluster`. */
  cluster: number;
  /** Calls of `resolveUpstream` (fallbacks included). */
  upstream: number;
  /** Single-label or namespace names the cluster did not know, sent upstream. */
  fallbacks: number;
  /** Cluster look-ups answered from the cache. */
  cacheHits: number;
  /** Cluster look-ups not in the cache (joiners included). */
  cacheMisses: number;
  /** Cluster look-ups that joined an identical one in flight. */
  deduplicated: number;
  /** SERVFAILs we made: a resolver failed, answered garbage, or is missing. */
  failures: number;
  /** Queries answered FORMERR or NOTIMP. */
  malformed: number;
  /** Messages not answered at all (no readable header, or not a query). */
  dropped: number;
  /** Answers in the cache now. */
  cached: number;
}

/** Options for {@linkcode DnsInterceptor.handle}. */
export interface DnsHandleOptions {
  /**
   * How the query came: a UDP reply is kept within the client's EDNS size
   * (512 bytes without EDNS), else truncated with TC set (RFC 1035 4.2.1,
   * RFC 6891 6.2.5). Default `"udp"`.
   */
  transport?: "udp" | "tcp";
}

/** A cluster answer, as cached. */
interface Answer {
  rcode: number;
  aa: boolean;
  tc: boolean;
  answers: DnsRecord[];
  authorities: DnsRecord[];
  additionals: DnsRecord[];
  storedAt: number;
  expiresAt: number;
}

/** A route, with the labels to ask the cluster for. */
type Routed = DnsRoute & { labels?: DnsName };

interface Inflight {
  promise: Promise<Answer>;
  startedAt: number;
}

interface Query {
  bytes: Uint8Array;
  message: DnsMessage;
  question: DnsQuestion;
  limit: number;
}

/**
 * Answers DNS queries: cluster names from the cluster (rewritten as a pod's
 * search path would, cached, de-duplicated), the rest from upstream.
 *
 * @example
 * ```ts
 * import { DnsInterceptor } from "./dns.ts";
 * const dns = new DnsInterceptor({
 *   clusterDomain: "cluster.local",
 *   namespace: "default",
 *   namespaces: ["default", "other"],
 *   resolveCluster: () => Promise.reject(new Error("offline")),
 * });
 * dns.route("web.other"); // { to: "cluster", rule: "namespace", name: "web.other.svc.cluster.local", fallback: true }
 * ```
 */
export class DnsInterceptor {
  #domain: DnsName = [];
  #namespace: DnsName = [];
  #namespaces = new Set<string>();
  #subnets: Cidr[] = [];
  #include: DnsName[];
  #exclude: DnsName[];
  #resolveCluster: DnsResolve;
  #resolveUpstream: DnsResolve | undefined;
  #now: () => number;
  #cacheMax: number;
  #maxTtl: number;
  #maxNegativeTtl: number;
  #staleInflightMs: number;
  #log: (level: "debug" | "info" | "warn", message: string) => void;
  #cache = new Map<string, Answer>();
  /**
   * Encoded replies to queries seen before, by the query's bytes after its
   * id (and the transport): a repeated query (a client polling a name, a
   * load test) is answered with a copy and a new id, without decoding,
   * routing or encoding. An entry serves while its TTLs read the same (within
   * one second of ageing) and the answer behind it is still cached.
   */
  #replies = new Map<string, CachedReply>();
  #inflight = new Map<string, Inflight>();
  #nextId = 1;
  /** Bumped by setClusterInfo, so that a look-up begun before does not fill the new cache. */
  #generation = 0;
  #stats: Omit<DnsStats, "cached"> = {
    queries: 0,
    cluster: 0,
    upstream: 0,
    fallbacks: 0,
    cacheHits: 0,
    cacheMisses: 0,
    deduplicated: 0,
    failures: 0,
    malformed: 0,
    dropped: 0,
  };

  /**
   * Makes an interceptor.
   *
   * @param options cluster facts, resolvers, cache limits
   */
  constructor(options: DnsInterceptorOptions) {
    this.setClusterInfo(options);
    const suffixes = (list: string[] | undefined) =>
      (list ?? []).map(splitName).filter((n) => n.length > 0);
    this.#include = suffixes(options.include);
    this.#exclude = suffixes(options.exclude);
    this.#resolveCluster = options.resolveCluster;
    this.#resolveUpstream = options.resolveUpstream;
    this.#now = options.now ?? Date.now;
    this.#cacheMax = Math.max(0, options.cacheMax ?? 4096);
    this.#maxTtl = options.maxTtl ?? 300;
    this.#maxNegativeTtl = options.maxNegativeTtl ?? 30;
    this.#staleInflightMs = options.staleInflightMs ?? 10_000;
    this.#log = options.log ?? (() => {});
  }

  /**
   * Takes new cluster facts (the cluster info stream re-sends them when they
   * change) and empties the cache.
   *
   * @param info the cluster domain, namespace(s) and subnets
   */
  setClusterInfo(info: DnsClusterInfo): void {
    this.#domain = splitName(info.clusterDomain);
    this.#namespace = splitName(info.namespace);
    this.#namespaces = new Set(
      [info.namespace, ...(info.namespaces ?? [])].map((n) => lowerAscii(n.replace(/\.$/, ""))),
    );
    this.#subnets = [...(info.podSubnets ?? []), ...(info.serviceSubnets ?? [])];
    this.#cache.clear();
    this.#replies.clear();
    this.#generation++;
  }

  /** The counters. */
  get stats(): DnsStats {
    return { ...this.#stats, cached: this.#cache.size };
  }

  /**
   * Tells where a name would go and as what.
   *
   * @param name a presentation name (`web`, `web.other.`), no escapes
   * @returns the route
   */
  route(name: string): DnsRoute {
    const { labels: _, ...route } = this.#route(splitName(name), CLASS_IN);
    return route;
  }

  #route(name: DnsName, qclass: number): Routed {
    const lower = name.map(lowerAscii);
    const asIs = (rule: "include" | "domain" | "ptr"): Routed => ({
      to: "cluster",
      rule,
      name: lower.join("."),
      fallback: false,
      labels: lower,
    });
    if (this.#exclude.some((s) => hasSuffix(lower, s))) return { to: "upstream", rule: "exclude" };
    if (qclass !== CLASS_IN || lower.length === 0) return { to: "upstream", rule: "other" };
    if (this.#include.some((s) => hasSuffix(lower, s))) return asIs("include");
    if (this.#domain.length > 0 && hasSuffix(lower, this.#domain)) return asIs("domain");
    const reverse = reverseAddress(lower);
    if (reverse !== undefined) {
      return this.#subnets.some((c) => c.containsBytes(reverse))
        ? asIs("ptr")
        : { to: "upstream", rule: "other" };
    }
    // A service-record prefix (`_http._tcp.web`, RFC 2782) does not count:
    // the rules look at the host part.
    let host = 0;
    while (host < lower.length - 1 && lower[host]!.startsWith("_")) host++;
    const hostLabels = lower.length - host;
    const last = lower[lower.length - 1]!;
    const rewrite = (rule: "svc" | "namespace" | "single-label", tail: DnsName): Routed => ({
      to: "cluster",
      rule,
      name: [...lower, ...tail].join("."),
      fallback: rule !== "svc",
      labels: [...lower, ...tail],
    });
    if (hostLabels >= 2 && last === "svc") return rewrite("svc", this.#domain);
    if (hostLabels >= 2 && this.#namespaces.has(last)) {
      return rewrite("namespace", ["svc", ...this.#domain]);
    }
    if (hostLabels === 1) {
      return rewrite("single-label", [...this.#namespace, "svc", ...this.#domain]);
    }
    return { to: "upstream", rule: "other" };
  }

  /**
   * Answers one DNS message. Never rejects: a malformed query gets FORMERR, a
   * failed resolver SERVFAIL, and a message without a readable header (or a
   * response rather than a query) an empty result, meaning "send nothing".
   *
   * @param query the raw message, as received
   * @param options how it came
   * @returns the raw answer, or an empty array to send nothing
   */
  async handle(query: Uint8Array, options: DnsHandleOptions = {}): Promise<Uint8Array> {
    this.#stats.queries++;
    try {
      return await this.#handle(query, options.transport ?? "udp");
    } catch (error) {
      // Only a bug gets here; still answer, so that the client does not wait.
      this.#stats.failures++;
      this.#log("warn", `dns: internal error: ${error instanceof Error ? error.message : error}`);
      return query.length >= 12 ? errorReply(query, DnsRcode.SERVFAIL) : new Uint8Array(0);
    }
  }

  async #handle(bytes: Uint8Array, transport: "udp" | "tcp"): Promise<Uint8Array> {
    if (bytes.length < 12 || (u16(bytes, 2) & QR) !== 0) {
      this.#stats.dropped++;
      return new Uint8Array(0);
    }
    const replyKey = bytes.length <= MAX_REPLY_KEY ? queryKey(bytes, transport) : undefined;
    if (replyKey !== undefined) {
      const hit = this.#replies.get(replyKey);
      if (hit !== undefined) {
        if (this.#now() < hit.validUntil && this.#cache.get(hit.answerKey) === hit.answer) {
          // The answer was used: most recently, for the answer cache's order.
          this.#cache.delete(hit.answerKey);
          this.#cache.set(hit.answerKey, hit.answer);
          this.#stats.cacheHits++;
          const out = hit.reply.slice();
          out[0] = bytes[0]!;
          out[1] = bytes[1]!;
          return out;
        }
        this.#replies.delete(replyKey);
      }
    }
    const message = decodeDnsMessage(bytes);
    if (message === undefined || message.questions.length !== 1) {
      this.#stats.malformed++;
      return errorReply(bytes, DnsRcode.FORMERR);
    }
    const limit = transport === "tcp" ? 65535 : Math.max(512, message.edns?.udpSize ?? 512);
    const q: Query = { bytes, message, question: message.questions[0]!, limit };
    if ((message.flags & OPCODE_MASK) !== 0) {
      this.#stats.malformed++;
      return this.#reply(q, { rcode: DnsRcode.NOTIMP });
    }
    const route = this.#route(q.question.name, q.question.class);
    if (route.to === "upstream") return await this.#upstream(q);
    let answer: Answer;
    try {
      answer = await this.#lookup(route.labels!, q.question.type, q.question.class);
    } catch (error) {
      this.#stats.failures++;
      this.#log(
        "debug",
        `dns: cluster look-up of "${route.name}" failed: ${
          error instanceof Error ? error.message : error
        }`,
      );
      return this.#reply(q, { rcode: DnsRcode.SERVFAIL });
    }
    if (route.fallback && answer.rcode === DnsRcode.NXDOMAIN) {
      this.#stats.fallbacks++;
      return await this.#upstream(q);
    }
    const reply = this.#reply(q, answer, nameKey(route.labels!));
    const answerKey = cacheKey(route.labels!, q.question.type, q.question.class);
    if (replyKey !== undefined && this.#cache.get(answerKey) === answer) {
      this.#remember(replyKey, reply, answer, answerKey);
    }
    return reply;
  }

  /** Keeps an encoded reply for {@linkcode DnsInterceptor.#replies}. */
  #remember(key: string, reply: Uint8Array, answer: Answer, answerKey: string): void {
    // The TTLs in `reply` were aged by whole seconds since `storedAt`: it is
    // right until the next whole second, and never past the answer's expiry.
    const age = this.#now() - answer.storedAt;
    const validUntil = Math.min(
      answer.expiresAt,
      answer.storedAt + (Math.floor(age / 1000) + 1) * 1000,
    );
    this.#replies.delete(key);
    this.#replies.set(key, { reply, answer, answerKey, validUntil });
    while (this.#replies.size > Math.max(this.#cacheMax, 1)) {
      this.#replies.delete(this.#replies.keys().next().value!);
    }
  }

  async #upstream(q: Query): Promise<Uint8Array> {
    if (this.#resolveUpstream === undefined) {
      this.#stats.failures++;
      return this.#reply(q, { rcode: DnsRcode.SERVFAIL });
    }
    this.#stats.upstream++;
    let bytes: Uint8Array;
    try {
      bytes = await this.#resolveUpstream(q.bytes);
    } catch (error) {
      this.#stats.failures++;
      this.#log(
        "debug",
        `dns: upstream look-up failed: ${error instanceof Error ? error.message : error}`,
      );
      return this.#reply(q, { rcode: DnsRcode.SERVFAIL });
    }
    if (bytes.length < 12 || (u16(bytes, 2) & QR) === 0) {
      this.#stats.failures++;
      return this.#reply(q, { rcode: DnsRcode.SERVFAIL });
    }
    const out = new Uint8Array(bytes);
    out[0] = q.message.id >>> 8;
    out[1] = q.message.id;
    if (out.length <= q.limit) return out;
    // An upstream answer that came over TCP but the client asked over UDP.
    const m = decodeDnsMessage(out);
    if (m === undefined) {
      this.#stats.failures++;
      return this.#reply(q, { rcode: DnsRcode.SERVFAIL });
    }
    return fit({ ...m, edns: m.edns && q.message.edns ? m.edns : undefined }, q.limit);
  }

  /** A cluster look-up through the cache and the in-flight table. */
  #lookup(name: DnsName, type: number, qclass: number): Promise<Answer> {
    const key = cacheKey(name, type, qclass);
    const now = this.#now();
    const hit = this.#cache.get(key);
    if (hit !== undefined) {
      this.#cache.delete(key);
      if (now < hit.expiresAt) {
        this.#cache.set(key, hit); // Most recently used goes last.
        this.#stats.cacheHits++;
        return Promise.resolve(hit);
      }
    }
    this.#stats.cacheMisses++;
    const pending = this.#inflight.get(key);
    if (pending !== undefined && now - pending.startedAt < this.#staleInflightMs) {
      this.#stats.deduplicated++;
      return pending.promise;
    }
    const entry: Inflight = { promise: this.#ask(key, name, type, qclass), startedAt: now };
    this.#inflight.set(key, entry);
    const done = () => {
      if (this.#inflight.get(key) === entry) this.#inflight.delete(key);
    };
    entry.promise.then(done, done);
    return entry.promise;
  }

  async #ask(key: string, labels: DnsName, type: number, qclass: number): Promise<Answer> {
    const id = this.#nextId;
    this.#nextId = (this.#nextId + 1) & 0xffff || 1;
    const query = encodeDnsMessage({
      id,
      flags: RD,
      questions: [{ name: labels, type, class: qclass }],
      answers: [],
      authorities: [],
      additionals: [],
      edns: { udpSize: EDNS_SIZE, extRcode: 0, version: 0, flags: 0, options: new Uint8Array(0) },
    });
    this.#stats.cluster++;
    const generation = this.#generation;
    const bytes = await this.#resolveCluster(query);
    const m = decodeDnsMessage(bytes);
    if (m === undefined) throw new SyntaxError(`Cannot read the cluster's answer: malformed`);
    if ((m.flags & QR) === 0) {
      throw new SyntaxError(`Cannot use the cluster's answer: not a response`);
    }
    const asked = m.questions[0];
    if (
      m.questions.length > 1 ||
      (asked !== undefined &&
        (asked.type !== type || asked.class !== qclass || nameKey(asked.name) !== nameKey(labels)))
    ) {
      throw new SyntaxError(`Cannot use the cluster's answer: it answers another question`);
    }
    const now = this.#now();
    const answer: Answer = {
      rcode: (m.flags & 0xf) | ((m.edns?.extRcode ?? 0) << 4),
      aa: (m.flags & AA) !== 0,
      tc: (m.flags & TC) !== 0,
      answers: m.answers,
      authorities: m.authorities,
      additionals: m.additionals,
      storedAt: now,
      expiresAt: now,
    };
    const ttl = this.#cacheTtl(answer);
    if (ttl > 0 && this.#cacheMax > 0 && generation === this.#generation) {
      answer.expiresAt = now + ttl * 1000;
      this.#cache.delete(key);
      this.#cache.set(key, answer);
      while (this.#cache.size > this.#cacheMax) {
        this.#cache.delete(this.#cache.keys().next().value!);
      }
    }
    return answer;
  }

  /** How long an answer may be cached, in s; 0 when it must not be. */
  #cacheTtl(a: Answer): number {
    if (a.tc) return 0;
    if (a.rcode === DnsRcode.NOERROR && a.answers.length > 0) {
      return Math.min(this.#maxTtl, ...a.answers.map((r) => r.ttl));
    }
    if (a.rcode === DnsRcode.NXDOMAIN || a.rcode === DnsRcode.NOERROR) {
      // RFC 2308 5: the negative TTL is the SOA's TTL or MINIMUM, whichever is
      // less; without an SOA, a negative answer is not cached.
      const soa = a.authorities.find((r) => r.type === DnsType.SOA);
      const fixed = soa?.data[2];
      if (soa === undefined || !(fixed instanceof Uint8Array) || fixed.length !== 20) return 0;
      return Math.min(this.#maxNegativeTtl, soa.ttl, u32(fixed, 16));
    }
    return 0; // SERVFAIL, REFUSED…: ask again next time.
  }

  /** Builds the client's reply from a cluster answer (or a bare response code). */
  #reply(q: Query, a: Partial<Answer> & { rcode: number }, asked?: string): Uint8Array {
    const elapsed = a.storedAt === undefined ? 0 : Math.floor((this.#now() - a.storedAt) / 1000);
    const mine = q.question.name;
    const adjust = (r: DnsRecord): DnsRecord => ({
      ...r,
      // The rewritten (or differently cased) name becomes the name as asked.
      name: asked !== undefined && nameKey(r.name) === asked ? mine : r.name,
      ttl: Math.max(0, r.ttl - elapsed),
    });
    const rcode = a.rcode > 15 && q.message.edns === undefined ? DnsRcode.SERVFAIL : a.rcode;
    const flags = QR | (q.message.flags & (OPCODE_MASK | RD | CD)) | RA |
      (a.aa ? AA : 0) | (a.tc ? TC : 0) | (rcode & 0xf);
    return fit({
      id: q.message.id,
      flags,
      questions: [q.question],
      answers: (a.answers ?? []).map(adjust),
      authorities: (a.authorities ?? []).map(adjust),
      additionals: (a.additionals ?? []).map(adjust),
      edns: q.message.edns === undefined ? undefined : {
        udpSize: EDNS_SIZE,
        extRcode: rcode >> 4,
        version: 0,
        flags: 0,
        options: new Uint8Array(0),
      },
    }, q.limit);
  }
}

/** An encoded reply kept for repeated queries (see `DnsInterceptor.#replies`). */
interface CachedReply {
  /** The reply, its id to be replaced. */
  reply: Uint8Array;
  /** The cached answer it was made from: the reply serves only while that is cached. */
  answer: Answer;
  answerKey: string;
  /** Until when its TTLs are right (ms). */
  validUntil: number;
}

/** The longest query kept as a reply cache key (bytes); longer ones take the full path. */
const MAX_REPLY_KEY = 512;

/** The key of the answer cache: type, class and the lower-cased name. */
function cacheKey(name: DnsName, type: number, qclass: number): string {
  return `${type}/${qclass}/${nameKey(name)}`;
}

/** The reply cache's key: the transport and every byte of the query but its id. */
function queryKey(bytes: Uint8Array, transport: "udp" | "tcp"): string {
  let key = transport === "udp" ? "u" : "t";
  for (let i = 2; i < bytes.length; i++) key += String.fromCharCode(bytes[i]!);
  return key;
}

/**
 * Encodes `m` within `limit` bytes: without the additional section if that
 * is what it takes, else empty with TC set (RFC 2181 9).
 */
function fit(m: DnsMessage, limit: number): Uint8Array {
  const full = encodeDnsMessage(m);
  if (full.length <= limit) return full;
  const lean = encodeDnsMessage({ ...m, additionals: [] });
  if (lean.length <= limit) return lean;
  return encodeDnsMessage({
    ...m,
    flags: m.flags | TC,
    answers: [],
    authorities: [],
    additionals: [],
  });
}

/** An error reply: the query's id, opcode, RD and CD, no sections (RFC 1035 4.1.1). */
function errorReply(query: Uint8Array, rcode: number): Uint8Array {
  const flags = u16(query, 2);
  const out = new Uint8Array(12);
  out[0] = query[0]!;
  out[1] = query[1]!;
  const word = QR | (flags & (OPCODE_MASK | RD | CD)) | RA | rcode;
  out[2] = word >>> 8;
  out[3] = word;
  return out;
}
