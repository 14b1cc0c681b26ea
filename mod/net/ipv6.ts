/**
 * IPv6 header (RFC 8200 3) and extension-header skipping (RFC 8200 4).
 *
 * @module
 */

/** Offsets of the IPv6 fixed header fields. */
export const IPV6 = {
  PAYLOAD_LENGTH: 4,
  NEXT_HEADER: 6,
  HOP_LIMIT: 7,
  SRC: 8,
  DST: 24,
  /** The fixed header length. */
  HEADER: 40,
} as const;

/** Extension headers the walker steps over. */
const HOP_BY_HOP = 0, ROUTING = 43, FRAGMENT = 44, DEST_OPTIONS = 60, AUTH = 51;
/** "No next header" (RFC 8200 4.7). */
export const NO_NEXT_HEADER = 59;

/** Why an IPv6 packet was rejected. */
export type Ipv6Problem = "short" | "version" | "payload length" | "extension header" | "fragment";

/** Where the upper layer starts, as found by {@linkcode walkIpv6}. */
export interface Ipv6Upper {
  /** The upper-layer protocol (after extension headers). */
  protocol: number;
  /** The upper layer's first byte. */
  offset: number;
  /** The packet's end (40 + payload length). */
  end: number;
}

/**
 * Checks the fixed header and walks the extension headers to the upper layer.
 * A non-first fragment has no upper-layer header and is refused; a first
 * fragment too, since the router cannot reassemble.
 *
 * @param buf the packet
 * @param length the bytes read
 * @param out receives the result (reused: nothing is allocated)
 * @returns the problem, or `undefined` when `out` was filled
 */
export function walkIpv6(
  buf: Uint8Array,
  length: number,
  out: Ipv6Upper,
): Ipv6Problem | undefined {
  if (length < IPV6.HEADER) return "short";
  if (buf[0]! >> 4 !== 6) return "version";
  const end = IPV6.HEADER + ((buf[4]! << 8) | buf[5]!);
  if (end > length) return "payload length";
  let next = buf[6]!;
  let off = IPV6.HEADER;
  for (let hops = 0; hops < 16; hops++) {
    switch (next) {
      case HOP_BY_HOP:
      case ROUTING:
      case DEST_OPTIONS: {
        if (off + 8 > end) return "extension header";
        const len = (buf[off + 1]! + 1) * 8;
        next = buf[off]!;
        off += len;
        if (off > end) return "extension header";
        continue;
      }
      case AUTH: {
        if (off + 8 > end) return "extension header";
        const len = (buf[off + 1]! + 2) * 4; // RFC 4302 2.2: in 4-octet units, minus 2
        next = buf[off]!;
        off += len;
        if (off > end) return "extension header";
        continue;
      }
      case FRAGMENT:
        return "fragment";
      default:
        out.protocol = next;
        out.offset = off;
        out.end = end;
        return undefined;
    }
  }
  return "extension header";
}

/** The values of an IPv6 header the router writes. */
export interface Ipv6Repr {
  /** Source address, 16 bytes. */
  src: Uint8Array;
  /** Destination address, 16 bytes. */
  dst: Uint8Array;
  /** Next header (the upper-layer protocol). */
  protocol: number;
  /** Upper-layer length in bytes. */
  payloadLength: number;
  /** Hop limit (default 64). */
  hopLimit?: number;
}

/**
 * Writes a 40-byte IPv6 header without extension headers.
 *
 * @param repr the field values
 * @param buf where to write
 * @param offset the header's first byte
 * @returns the header length, 40
 */
export function emitIpv6(repr: Ipv6Repr, buf: Uint8Array, offset = 0): number {
  buf[offset] = 0x60;
  buf[offset + 1] = 0;
  buf[offset + 2] = 0;
  buf[offset + 3] = 0;
  buf[offset + 4] = repr.payloadLength >> 8;
  buf[offset + 5] = repr.payloadLength & 0xff;
  buf[offset + 6] = repr.protocol;
  buf[offset + 7] = repr.hopLimit ?? 64;
  buf.set(repr.src, offset + IPV6.SRC);
  buf.set(repr.dst, offset + IPV6.DST);
  return IPV6.HEADER;
}
