/**
 * IPv4 header (RFC 791 3.1): field offsets, a checked view and an emitter.
 *
 * @module
 */

import { checksum } from "./checksum.ts";

/** Offsets of the IPv4 header fields. */
export const IPV4 = {
  VERSION_IHL: 0,
  TOS: 1,
  TOTAL_LENGTH: 2,
  IDENT: 4,
  FLAGS_FRAGMENT: 6,
  TTL: 8,
  PROTOCOL: 9,
  CHECKSUM: 10,
  SRC: 12,
  DST: 16,
  /** The header length without options. */
  MIN_HEADER: 20,
} as const;

/** The "more fragments" flag in the flags/fragment word. */
export const IPV4_MF = 0x2000;
/** The fragment offset mask in the flags/fragment word. */
export const IPV4_OFFSET_MASK = 0x1fff;

/** Why an IPv4 header was rejected, or `undefined` when it is sound. */
export type Ipv4Problem =
  | "short"
  | "version"
  | "header length"
  | "total length"
  | "fragment";

/**
 * Checks an IPv4 header at `buf[0..length)`: the one length check after which
 * every accessor below is safe.
 *
 * @param buf the packet
 * @param length the bytes read
 * @returns the problem, or `undefined` when the header can be used
 */
export function checkIpv4(buf: Uint8Array, length: number): Ipv4Problem | undefined {
  if (length < IPV4.MIN_HEADER) return "short";
  const b0 = buf[0]!;
  if (b0 >> 4 !== 4) return "version";
  const ihl = (b0 & 0x0f) * 4;
  if (ihl < IPV4.MIN_HEADER || ihl > length) return "header length";
  const total = (buf[2]! << 8) | buf[3]!;
  if (total < ihl || total > length) return "total length";
  const frag = (buf[6]! << 8) | buf[7]!;
  if ((frag & (IPV4_MF | IPV4_OFFSET_MASK)) !== 0) return "fragment";
  return undefined;
}

/**
 * The header length in bytes.
 *
 * @param buf a checked packet
 * @returns IHL × 4
 */
export function ipv4HeaderLength(buf: Uint8Array): number {
  return (buf[0]! & 0x0f) * 4;
}

/** The values of an IPv4 header the router writes. */
export interface Ipv4Repr {
  /** Source address, 4 bytes. */
  src: Uint8Array;
  /** Destination address, 4 bytes. */
  dst: Uint8Array;
  /** Upper-layer protocol number. */
  protocol: number;
  /** Upper-layer length in bytes. */
  payloadLength: number;
  /** Time to live (default 64). */
  ttl?: number;
}

/**
 * Writes a 20-byte IPv4 header (no options, DF set) with its checksum.
 *
 * @param repr the field values
 * @param buf where to write
 * @param offset the header's first byte
 * @returns the header length, 20
 */
export function emitIpv4(repr: Ipv4Repr, buf: Uint8Array, offset = 0): number {
  const total = IPV4.MIN_HEADER + repr.payloadLength;
  buf[offset] = 0x45;
  buf[offset + 1] = 0;
  buf[offset + 2] = total >> 8;
  buf[offset + 3] = total & 0xff;
  buf[offset + 4] = 0;
  buf[offset + 5] = 0;
  buf[offset + 6] = 0x40; // DF: the router never emits fragments.
  buf[offset + 7] = 0;
  buf[offset + 8] = repr.ttl ?? 64;
  buf[offset + 9] = repr.protocol;
  buf[offset + 10] = 0;
  buf[offset + 11] = 0;
  buf.set(repr.src, offset + IPV4.SRC);
  buf.set(repr.dst, offset + IPV4.DST);
  const c = checksum(buf, offset, offset + IPV4.MIN_HEADER);
  buf[offset + 10] = c >> 8;
  buf[offset + 11] = c & 0xff;
  return IPV4.MIN_HEADER;
}
