/**
 * IP addresses and subnets as bytes: parsing, formatting, containment.
 *
 * @module
 */

/**
 * Parses an IPv4 dotted quad or an IPv6 address into 4 or 16 bytes.
 *
 * @param text `198.18.0.1`, `2001:2::1`, `::ffff:198.18.0.1`
 * @returns the bytes, or `undefined` when `text` is not an address
 * @example
 * ```ts
 * import { parseAddress } from "./address.ts";
 * parseAddress("198.18.0.1"); // Uint8Array [198, 18, 0, 1]
 * ```
 */
export function parseAddress(text: string): Uint8Array | undefined {
  return text.includes(":") ? parseIpv6(text) : parseIpv4(text);
}

function parseIpv4(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const p = parts[i]!;
    if (!/^(0|[1-9][0-9]{0,2})$/.test(p)) return undefined;
    const n = Number(p);
    if (n > 255) return undefined;
    out[i] = n;
  }
  return out;
}

function parseIpv6(text: string): Uint8Array | undefined {
  const zone = text.indexOf("%");
  if (zone >= 0) text = text.slice(0, zone);
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const words = (s: string): number[] | undefined => {
    if (s === "") return [];
    const out: number[] = [];
    const parts = s.split(":");
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      if (i === parts.length - 1 && p.includes(".")) {
        const v4 = parseIpv4(p);
        if (!v4) return undefined;
        out.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
      } else {
        if (!/^[0-9a-fA-F]{1,4}$/.test(p)) return undefined;
        out.push(parseInt(p, 16));
      }
    }
    return out;
  };
  const head = words(halves[0]!);
  const tail = halves.length === 2 ? words(halves[1]!) : [];
  if (!head || !tail) return undefined;
  const missing = 8 - head.length - tail.length;
  if (halves.length === 2 ? missing < 1 : missing !== 0) return undefined;
  const all = [...head, ...new Array<number>(missing).fill(0), ...tail];
  const out = new Uint8Array(16);
  all.forEach((w, i) => {
    out[2 * i] = w >> 8;
    out[2 * i + 1] = w & 0xff;
  });
  return out;
}

/**
 * Formats 4 or 16 bytes at `offset` as an address (RFC 5952 for IPv6).
 *
 * @param buf the bytes
 * @param offset where the address starts
 * @param length 4 or 16
 * @returns the text form
 * @example
 * ```ts
 * import { formatAddress } from "./address.ts";
 * formatAddress(new Uint8Array([198, 18, 0, 1]), 0, 4); // "198.18.0.1"
 * ```
 */
export function formatAddress(buf: Uint8Array, offset = 0, length = buf.length - offset): string {
  if (length === 4) {
    return `${buf[offset]}.${buf[offset + 1]}.${buf[offset + 2]}.${buf[offset + 3]}`;
  }
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((buf[offset + i]! << 8) | buf[offset + i + 1]!);
  // RFC 5952 4.2: the longest run (of two or more) of zero words becomes "::".
  let best = -1, bestLen = 1;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen) [best, bestLen] = [i, j - i];
    i = j;
  }
  const hex = (ws: number[]) => ws.map((w) => w.toString(16)).join(":");
  if (best < 0) return hex(words);
  return `${hex(words.slice(0, best))}::${hex(words.slice(best + bestLen))}`;
}

/** A subnet: network bytes (host bits zero) and prefix length. */
export class Cidr {
  readonly bytes: Uint8Array;
  readonly prefixLength: number;

  /**
   * Makes a subnet, clearing host bits.
   *
   * @param bytes 4 or 16 address bytes
   * @param prefixLength 0–32 or 0–128
   * @throws {RangeError} when the prefix length does not fit the family
   */
  constructor(bytes: Uint8Array, prefixLength: number) {
    const bits = bytes.length * 8;
    if (!Number.isInteger(prefixLength) || prefixLength < 0 || prefixLength > bits) {
      throw new RangeError(
        `Cannot make a subnet: prefix length "${prefixLength}" is not 0–${bits}`,
      );
    }
    this.bytes = maskBytes(bytes, prefixLength);
    this.prefixLength = prefixLength;
  }

  /**
   * Parses `198.18.0.0/15` (or a bare address, as a host route).
   *
   * @param text the CIDR text
   * @returns the subnet
   * @throws {SyntaxError} when `text` is not a CIDR
   * @example
   * ```ts
   * import { Cidr } from "./address.ts";
   * Cidr.parse("198.18.0.0/15").toString(); // "198.18.0.0/15"
   * ```
   */
  static parse(text: string): Cidr {
    const slash = text.indexOf("/");
    const addr = parseAddress(slash < 0 ? text : text.slice(0, slash));
    const lenText = slash < 0 ? undefined : text.slice(slash + 1);
    if (!addr || (lenText !== undefined && !/^[0-9]{1,3}$/.test(lenText))) {
      throw new SyntaxError(
        `Cannot parse subnet "${text}": expected an address/prefix like "198.18.0.0/15"`,
      );
    }
    const len = lenText === undefined ? addr.length * 8 : Number(lenText);
    if (len > addr.length * 8) {
      throw new SyntaxError(`Cannot parse subnet "${text}": prefix length "${len}" is too long`);
    }
    return new Cidr(addr, len);
  }

  /** 4 or 6. */
  get family(): 4 | 6 {
    return this.bytes.length === 4 ? 4 : 6;
  }

  /**
   * Tells whether `addr` (4 or 16 bytes at `offset`) lies in this subnet.
   *
   * @param addr the bytes
   * @param offset where the address starts
   * @param length 4 or 16
   * @returns `true` when inside
   */
  containsBytes(addr: Uint8Array, offset = 0, length = addr.length - offset): boolean {
    if (length !== this.bytes.length) return false;
    const full = this.prefixLength >> 3;
    for (let i = 0; i < full; i++) if (addr[offset + i] !== this.bytes[i]) return false;
    const rest = this.prefixLength & 7;
    if (rest === 0) return true;
    const mask = (0xff << (8 - rest)) & 0xff;
    return (addr[offset + full]! & mask) === this.bytes[full];
  }

  /**
   * Tells whether `addr` lies in this subnet.
   *
   * @param addr address text
   * @returns `true` when inside; `false` for a malformed address
   */
  contains(addr: string): boolean {
    const bytes = parseAddress(addr);
    return bytes !== undefined && this.containsBytes(bytes);
  }

  /**
   * Tells whether the two subnets share any address.
   *
   * @param other another subnet
   * @returns `true` when one contains the other
   */
  overlaps(other: Cidr): boolean {
    if (other.bytes.length !== this.bytes.length) return false;
    return this.prefixLength <= other.prefixLength
      ? this.containsBytes(other.bytes)
      : other.containsBytes(this.bytes);
  }

  /** The network address as text. */
  get address(): string {
    return formatAddress(this.bytes);
  }

  /** `198.18.0.0/15`. */
  toString(): string {
    return `${this.address}/${this.prefixLength}`;
  }
}

function maskBytes(bytes: Uint8Array, prefixLength: number): Uint8Array {
  const out = new Uint8Array(bytes);
  for (let i = 0; i < out.length; i++) {
    const keep = Math.max(0, Math.min(8, prefixLength - 8 * i));
    out[i]! &= (0xff << (8 - keep)) & 0xff;
  }
  return out;
}

/**
 * Tells whether two byte ranges hold the same address.
 *
 * @param a first buffer
 * @param aOffset where the first address starts
 * @param b second buffer
 * @param bOffset where the second address starts
 * @param length 4 or 16
 * @returns `true` when equal
 */
export function addressEquals(
  a: Uint8Array,
  aOffset: number,
  b: Uint8Array,
  bOffset: number,
  length: number,
): boolean {
  for (let i = 0; i < length; i++) if (a[aOffset + i] !== b[bOffset + i]) return false;
  return true;
}
