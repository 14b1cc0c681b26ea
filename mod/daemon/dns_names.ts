/**
 * Which name an address was looked up as: the DNS server shows every answer
 * it sends to {@linkcode DnsNames.record}, which keeps the question's name
 * for each A and AAAA address in it, so that `vif connections` can say
 * `web.default` next to `198.19.12.7:80`.
 *
 * An answer is read without decoding the whole message and without
 * allocating unless a name is new for an address (the server's answer cache
 * sends the same answer many times). Only names of letters, digits, `-` and
 * `_` are kept (what the table shows must be safe on a terminal), at most
 * {@linkcode DnsNamesOptions.max} addresses (the oldest go first).
 *
 * @module
 */

import { parseAddress } from "../net/address.ts";
import type { DnsRoute } from "../net/dns.ts";

/** Options of {@linkcode DnsNames}. */
export interface DnsNamesOptions {
  /** Most addresses remembered (default 4096). */
  max?: number;
  /**
   * Where a name goes (the interceptor's `route`): a cluster name is shown
   * as `name.namespace` whatever form it was asked in.
   */
  route?: (name: string) => DnsRoute;
}

interface Entry {
  /** The question's name as it was on the wire (length-prefixed labels, final 0). */
  wire: Uint8Array;
  /** The name, lower case, no final dot. */
  name: string;
}

/** The most answer records looked at in one answer. */
const MAX_ANSWERS = 64;
const TYPE_A = 1;
const TYPE_AAAA = 28;
const CLASS_IN = 1;

/**
 * The addresses of the answers seen lately, with the names they were asked as.
 *
 * @example
 * ```ts
 * import { DnsNames } from "./dns_names.ts";
 * const names = new DnsNames();
 * names.lookup("198.19.0.10"); // undefined until an answer names it
 * ```
 */
export class DnsNames {
  #max: number;
  #route: ((name: string) => DnsRoute) | undefined;
  #v4 = new Map<number, Entry>();
  #v6 = new Map<string, Entry>();

  /**
   * Makes an empty table.
   *
   * @param options the table's size and the interceptor's routes
   */
  constructor(options: DnsNamesOptions = {}) {
    this.#max = Math.max(1, options.max ?? 4096);
    this.#route = options.route;
  }

  /** How many addresses are remembered. */
  get size(): number {
    return this.#v4.size + this.#v6.size;
  }

  /**
   * Reads an answer the DNS server sends and remembers the question's name
   * for each A or AAAA record in it. Anything that is not a well-formed
   * successful answer to one question is ignored; never throws.
   *
   * @param reply the answer, wire format
   */
  record(reply: Uint8Array): void {
    // RFC 1035 4.1.1: QR set, RCODE 0, one question, some answers.
    if (reply.length < 12 || (reply[2]! & 0x80) === 0 || (reply[3]! & 0x0f) !== 0) return;
    if (reply[4] !== 0 || reply[5] !== 1) return;
    const answers = Math.min((reply[6]! << 8) | reply[7]!, MAX_ANSWERS);
    if (answers === 0) return;
    const nameEnd = questionNameEnd(reply);
    if (nameEnd < 0) return;
    let at = nameEnd + 4; // QTYPE, QCLASS
    for (let i = 0; i < answers; i++) {
      at = skipName(reply, at);
      if (at < 0 || at + 10 > reply.length) return;
      const type = (reply[at]! << 8) | reply[at + 1]!;
      const klass = (reply[at + 2]! << 8) | reply[at + 3]!;
      const length = (reply[at + 8]! << 8) | reply[at + 9]!;
      const data = at + 10;
      if (data + length > reply.length) return;
      if (klass === CLASS_IN && type === TYPE_A && length === 4) {
        const key = ((reply[data]! << 24) | (reply[data + 1]! << 16) | (reply[data + 2]! << 8) |
          reply[data + 3]!) >>> 0;
        this.#remember(this.#v4, key, reply, nameEnd);
      } else if (klass === CLASS_IN && type === TYPE_AAAA && length === 16) {
        let key = "";
        for (let b = data; b < data + 16; b++) key += String.fromCharCode(reply[b]!);
        this.#remember(this.#v6, key, reply, nameEnd);
      }
      at = data + length;
    }
  }

  #remember<K>(table: Map<K, Entry>, key: K, reply: Uint8Array, nameEnd: number): void {
    const known = table.get(key);
    if (known !== undefined && sameBytes(known.wire, reply, 12, nameEnd)) return;
    const name = presentName(reply, 12, nameEnd);
    if (name === undefined) return;
    table.delete(key);
    table.set(key, { wire: reply.slice(12, nameEnd), name });
    while (this.size > this.#max) {
      // The older of the two tables' oldest entries cannot be told apart cheaply: IPv4 goes first.
      const from: Map<unknown, Entry> = this.#v4.size > 0 ? this.#v4 : this.#v6;
      from.delete(from.keys().next().value);
    }
  }

  /**
   * The name an address was last looked up as: a cluster name as
   * `name.namespace` (`web.default`, `db-0.db.default`), another name as
   * asked.
   *
   * @param address an IPv4 or IPv6 address, as text
   * @returns the name, or `undefined` when no answer named the address
   */
  lookup(address: string): string | undefined {
    const bytes = parseAddress(address);
    let entry: Entry | undefined;
    if (bytes?.length === 4) {
      entry = this.#v4.get(
        ((bytes[0]! << 24) | (bytes[1]! << 16) | (bytes[2]! << 8) | bytes[3]!) >>> 0,
      );
    } else if (bytes?.length === 16) entry = this.#v6.get(String.fromCharCode(...bytes));
    if (entry === undefined) return undefined;
    return clusterName(entry.name, this.#route?.(entry.name));
  }
}

/**
 * The short form of a name the cluster answers: the labels before `svc`
 * (`web.default` for `web`, `web.default` and
 * `web.default.svc.cluster.local` alike); other names as they are.
 *
 * @param asked the name as asked, lower case
 * @param route where the interceptor sends it
 * @returns the name to show
 * @example
 * ```ts
 * import { clusterName } from "./dns_names.ts";
 * clusterName("web", {
 *   to: "cluster",
 *   rule: "single-label",
 *   name: "web.default.svc.cluster.local",
 *   fallback: true,
 * }); // "web.default"
 * ```
 */
export function clusterName(asked: string, route: DnsRoute | undefined): string {
  if (route === undefined || route.to !== "cluster") return asked;
  const labels = route.name.split(".");
  const svc = labels.lastIndexOf("svc");
  return svc >= 2 ? labels.slice(0, svc).join(".") : route.name;
}

/** The end of the question's name (after its final 0), or -1 when it is malformed or compressed. */
function questionNameEnd(m: Uint8Array): number {
  let at = 12;
  for (let steps = 0; steps < 128; steps++) {
    if (at >= m.length) return -1;
    const length = m[at]!;
    if (length === 0) return at + 1 <= m.length && at + 1 - 12 <= 255 ? at + 1 : -1;
    if (length > 63) return -1; // A pointer cannot start the first name; 0x40 and 0x80 are reserved.
    at += 1 + length;
  }
  return -1;
}

/** Skips a record's owner name (labels ending in 0 or a pointer); -1 when it runs off the end. */
function skipName(m: Uint8Array, start: number): number {
  let at = start;
  for (let steps = 0; steps < 128; steps++) {
    if (at >= m.length) return -1;
    const length = m[at]!;
    if (length === 0) return at + 1;
    if ((length & 0xc0) === 0xc0) return at + 2 <= m.length ? at + 2 : -1;
    if (length > 63) return -1;
    at += 1 + length;
  }
  return -1;
}

function sameBytes(a: Uint8Array, m: Uint8Array, start: number, end: number): boolean {
  if (a.length !== end - start) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== m[start + i]) return false;
  return true;
}

/** The name as text, lower case; `undefined` when a label has anything but `[A-Za-z0-9_-]`. */
function presentName(m: Uint8Array, start: number, end: number): string | undefined {
  const labels: string[] = [];
  for (let at = start; at < end - 1;) {
    const length = m[at]!;
    let label = "";
    for (let i = at + 1; i <= at + length; i++) {
      let c = m[i]!;
      if (c >= 0x41 && c <= 0x5a) c += 0x20;
      const ok = (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x2d || c === 0x5f;
      if (!ok) return undefined;
      label += String.fromCharCode(c);
    }
    labels.push(label);
    at += 1 + length;
  }
  return labels.length === 0 ? undefined : labels.join(".");
}
