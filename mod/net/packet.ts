/**
 * Decoding an IP packet into the fields the router needs, into a reused object.
 * Decoding never throws and never allocates: a packet that cannot be used
 * decodes to kind `"unknown"` with a `reason`, to be counted and dropped.
 *
 * @module
 */

import { checkIpv4, IPV4, ipv4HeaderLength } from "./ipv4.ts";
import { IPV6, type Ipv6Upper, walkIpv6 } from "./ipv6.ts";
import { readU32, TCP } from "./tcp.ts";
import { UDP } from "./udp.ts";
import { ICMP, Proto } from "./icmp.ts";
import { pseudoHeaderSum, sum16 } from "./checksum.ts";

/** What a packet turned out to be. */
export type PacketKind = "tcp" | "udp" | "icmp" | "unknown";

/** The decoded fields of one packet; all offsets are into the decoded buffer. */
export interface Packet {
  /** What the packet is; `"unknown"` means drop it. */
  kind: PacketKind;
  /** Why the packet is `"unknown"` (empty otherwise). */
  reason: string;
  /** 4 or 6; 0 when not even the version was readable. */
  version: 0 | 4 | 6;
  /** The IP packet's end: header plus payload, per the IP length field. */
  length: number;
  /** 4 or 16. */
  addressLength: number;
  /** Where the source address starts. */
  srcOffset: number;
  /** Where the destination address starts. */
  dstOffset: number;
  /** The upper-layer protocol number. */
  protocol: number;
  /** The upper-layer header's first byte. */
  l4Offset: number;
  /** Source port (TCP, UDP), or the echo identifier (ICMP echo). */
  srcPort: number;
  /** Destination port (TCP, UDP), or the echo identifier (ICMP echo). */
  dstPort: number;
  /** TCP flag byte. */
  tcpFlags: number;
  /** TCP sequence number. */
  seq: number;
  /** TCP acknowledgement number. */
  ack: number;
  /** TCP window (unscaled). */
  window: number;
  /** ICMP type. */
  icmpType: number;
  /** ICMP code. */
  icmpCode: number;
  /** Where the upper-layer payload starts. */
  payloadOffset: number;
  /** The upper-layer payload length. */
  payloadLength: number;
}

/**
 * Makes a {@linkcode Packet} to be reused by {@linkcode decodePacket}.
 *
 * @returns an "unknown" packet
 */
export function newPacket(): Packet {
  return {
    kind: "unknown",
    reason: "",
    version: 0,
    length: 0,
    addressLength: 0,
    srcOffset: 0,
    dstOffset: 0,
    protocol: 0,
    l4Offset: 0,
    srcPort: 0,
    dstPort: 0,
    tcpFlags: 0,
    seq: 0,
    ack: 0,
    window: 0,
    icmpType: 0,
    icmpCode: 0,
    payloadOffset: 0,
    payloadLength: 0,
  };
}

const upper: Ipv6Upper = { protocol: 0, offset: 0, end: 0 };

function unknown(out: Packet, reason: string): PacketKind {
  out.kind = "unknown";
  out.reason = reason;
  return "unknown";
}

/**
 * Decodes `buf[0..length)` into `out`.
 *
 * @param buf the packet
 * @param length the bytes read
 * @param out receives the fields (reused)
 * @returns `out.kind`
 * @example
 * ```ts
 * import { decodePacket, newPacket } from "./packet.ts";
 * const p = newPacket();
 * decodePacket(new Uint8Array(3), 3, p); // "unknown", p.reason === "empty or short"
 * ```
 */
export function decodePacket(buf: Uint8Array, length: number, out: Packet): PacketKind {
  out.reason = "";
  out.srcPort =
    out.dstPort =
    out.tcpFlags =
    out.seq =
    out.ack =
    out.window =
      0;
  out.icmpType = out.icmpCode = 0;
  if (length < 1 || length > buf.length) {
    out.version = 0;
    return unknown(out, "empty or short");
  }
  const version = buf[0]! >> 4;
  let l4: number, end: number, protocol: number;
  if (version === 4) {
    out.version = 4;
    const problem = checkIpv4(buf, length);
    if (problem) return unknown(out, `ipv4 ${problem}`);
    l4 = ipv4HeaderLength(buf);
    end = (buf[2]! << 8) | buf[3]!;
    protocol = buf[IPV4.PROTOCOL]!;
    out.addressLength = 4;
    out.srcOffset = IPV4.SRC;
    out.dstOffset = IPV4.DST;
  } else if (version === 6) {
    out.version = 6;
    const problem = walkIpv6(buf, length, upper);
    if (problem) return unknown(out, `ipv6 ${problem}`);
    l4 = upper.offset;
    end = upper.end;
    protocol = upper.protocol;
    out.addressLength = 16;
    out.srcOffset = IPV6.SRC;
    out.dstOffset = IPV6.DST;
  } else {
    out.version = 0;
    return unknown(out, "ip version");
  }
  out.length = end;
  out.protocol = protocol;
  out.l4Offset = l4;
  const l4Length = end - l4;
  switch (protocol) {
    case Proto.TCP: {
      if (l4Length < TCP.MIN_HEADER) return unknown(out, "tcp short");
      const hl = (buf[l4 + TCP.DATA_OFFSET]! >> 4) * 4;
      if (hl < TCP.MIN_HEADER || hl > l4Length) return unknown(out, "tcp data offset");
      out.srcPort = (buf[l4]! << 8) | buf[l4 + 1]!;
      out.dstPort = (buf[l4 + 2]! << 8) | buf[l4 + 3]!;
      out.seq = readU32(buf, l4 + TCP.SEQ);
      out.ack = readU32(buf, l4 + TCP.ACK);
      out.tcpFlags = buf[l4 + TCP.FLAGS]!;
      out.window = (buf[l4 + TCP.WINDOW]! << 8) | buf[l4 + TCP.WINDOW + 1]!;
      out.payloadOffset = l4 + hl;
      out.payloadLength = l4Length - hl;
      out.kind = "tcp";
      return "tcp";
    }
    case Proto.UDP: {
      if (l4Length < UDP.HEADER) return unknown(out, "udp short");
      const ul = (buf[l4 + UDP.LENGTH]! << 8) | buf[l4 + UDP.LENGTH + 1]!;
      // RFC 768: the length covers header and data; IPv6 jumbograms (0) are not supported.
      if (ul < UDP.HEADER || ul > l4Length) return unknown(out, "udp length");
      out.srcPort = (buf[l4]! << 8) | buf[l4 + 1]!;
      out.dstPort = (buf[l4 + 2]! << 8) | buf[l4 + 3]!;
      out.payloadOffset = l4 + UDP.HEADER;
      out.payloadLength = ul - UDP.HEADER;
      out.kind = "udp";
      return "udp";
    }
    case Proto.ICMP:
    case Proto.ICMPV6: {
      if ((protocol === Proto.ICMP) !== (version === 4)) return unknown(out, "icmp family");
      if (l4Length < ICMP.HEADER) return unknown(out, "icmp short");
      out.icmpType = buf[l4]!;
      out.icmpCode = buf[l4 + 1]!;
      out.srcPort = out.dstPort = (buf[l4 + ICMP.IDENT]! << 8) | buf[l4 + ICMP.IDENT + 1]!;
      out.seq = (buf[l4 + ICMP.SEQ]! << 8) | buf[l4 + ICMP.SEQ + 1]!;
      out.payloadOffset = l4 + ICMP.HEADER;
      out.payloadLength = l4Length - ICMP.HEADER;
      out.kind = "icmp";
      return "icmp";
    }
    default:
      return unknown(out, `protocol ${protocol}`);
  }
}

/**
 * Verifies the IPv4 header checksum (if any) and the upper-layer checksum of a
 * decoded packet. Not used on the hot path (the kernel verifies what the router
 * writes); for tests and diagnostics.
 *
 * @param buf the packet
 * @param p its decoded fields
 * @returns `true` when every checksum present is correct
 */
export function verifyChecksums(buf: Uint8Array, p: Packet): boolean {
  if (p.kind === "unknown") return false;
  if (p.version === 4 && (sum16(buf, 0, p.l4Offset) % 0xffff) !== 0) return false;
  const l4Length = p.length - p.l4Offset;
  let initial = 0;
  if (p.kind !== "icmp" || p.version === 6) {
    if (
      p.kind === "udp" && p.version === 4 && buf[p.l4Offset + 6] === 0 &&
      buf[p.l4Offset + 7] === 0
    ) return true; // RFC 768: no checksum
    initial = pseudoHeaderSum(buf, p.srcOffset, p.addressLength, p.protocol, l4Length);
  }
  const sum = sum16(buf, p.l4Offset, p.length, initial);
  return sum % 0xffff === 0;
}
