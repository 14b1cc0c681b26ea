/**
 * Builders for the packets the router writes toward the app: TCP resets,
 * ICMP errors, echo replies, and UDP datagrams.
 *
 * Each writes into a caller-owned `out` buffer and returns the packet length;
 * `out` must hold the packet (the router passes an MTU-sized scratch buffer).
 *
 * @module
 */

import { checksum, pseudoHeaderSum } from "./checksum.ts";
import { ICMP, Icmp4, Icmp6, Proto } from "./icmp.ts";
import { emitIpv4, IPV4 } from "./ipv4.ts";
import { emitIpv6, IPV6 } from "./ipv6.ts";
import type { Packet } from "./packet.ts";
import { TCP, TcpFlags, writeU32 } from "./tcp.ts";
import { UDP } from "./udp.ts";

/** The IPv6 minimum MTU: an ICMPv6 error must not exceed it (RFC 4443 2.4 (c)). */
const IPV6_MIN_MTU = 1280;

function emitIp(
  version: 4 | 6,
  src: Uint8Array,
  dst: Uint8Array,
  protocol: number,
  payloadLength: number,
  out: Uint8Array,
): number {
  return version === 4
    ? emitIpv4({ src, dst, protocol, payloadLength }, out)
    : emitIpv6({ src, dst, protocol, payloadLength }, out);
}

function setChecksum(out: Uint8Array, at: number, value: number): void {
  out[at] = value >> 8;
  out[at + 1] = value & 0xff;
}

/**
 * Builds the reset a closed port would send in answer to `p` (RFC 9293 3.10.7.1):
 * to a segment with ACK, `<SEQ=SEG.ACK><CTL=RST>`; otherwise
 * `<SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>`, where SYN and FIN count one.
 *
 * @param buf the packet being answered
 * @param p its decoded fields (kind `"tcp"`)
 * @param out where to write the reset
 * @returns the reset's length
 */
export function buildTcpReset(buf: Uint8Array, p: Packet, out: Uint8Array): number {
  const src = buf.subarray(p.dstOffset, p.dstOffset + p.addressLength);
  const dst = buf.subarray(p.srcOffset, p.srcOffset + p.addressLength);
  // Copy the addresses first: `out` may be `buf`.
  const s = new Uint8Array(src), d = new Uint8Array(dst);
  const hl = emitIp(p.version as 4 | 6, s, d, Proto.TCP, TCP.MIN_HEADER, out);
  const t = hl;
  out.fill(0, t, t + TCP.MIN_HEADER);
  out[t] = p.dstPort >> 8;
  out[t + 1] = p.dstPort & 0xff;
  out[t + 2] = p.srcPort >> 8;
  out[t + 3] = p.srcPort & 0xff;
  let flags: number = TcpFlags.RST;
  if (p.tcpFlags & TcpFlags.ACK) {
    writeU32(out, t + TCP.SEQ, p.ack);
  } else {
    let segLen = p.payloadLength;
    if (p.tcpFlags & TcpFlags.SYN) segLen++;
    if (p.tcpFlags & TcpFlags.FIN) segLen++;
    writeU32(out, t + TCP.ACK, (p.seq + segLen) >>> 0);
    flags |= TcpFlags.ACK;
  }
  out[t + TCP.DATA_OFFSET] = (TCP.MIN_HEADER / 4) << 4;
  out[t + TCP.FLAGS] = flags;
  const srcOff = p.version === 4 ? IPV4.SRC : IPV6.SRC;
  const c = checksum(
    out,
    t,
    t + TCP.MIN_HEADER,
    pseudoHeaderSum(out, srcOff, p.addressLength, Proto.TCP, TCP.MIN_HEADER),
  );
  setChecksum(out, t + TCP.CHECKSUM, c);
  return t + TCP.MIN_HEADER;
}

/** Why a destination is unreachable, mapped to each family's code. */
export type UnreachableCause = "host" | "port" | "prohibited";

/**
 * Builds a destination-unreachable error about `p`, as if sent by its
 * destination: ICMPv4 type 3 quoting the IP header and 8 bytes (RFC 792), or
 * ICMPv6 type 1 quoting as much as fits in 1280 bytes (RFC 4443 3.1).
 *
 * @param buf the offending packet
 * @param p its decoded fields
 * @param out where to write the error (must not be `buf`)
 * @param cause host (the default), port or administratively prohibited
 * @returns the error's length
 */
export function buildUnreachable(
  buf: Uint8Array,
  p: Packet,
  out: Uint8Array,
  cause: UnreachableCause = "host",
): number {
  const src = buf.subarray(p.dstOffset, p.dstOffset + p.addressLength);
  const dst = buf.subarray(p.srcOffset, p.srcOffset + p.addressLength);
  const v4 = p.version === 4;
  const headerRoom = v4 ? IPV4.MIN_HEADER : IPV6.HEADER;
  const quote = v4
    ? Math.min(p.length, p.l4Offset + 8)
    : Math.min(p.length, IPV6_MIN_MTU - headerRoom - ICMP.HEADER);
  const icmpLength = ICMP.HEADER + quote;
  const hl = emitIp(p.version as 4 | 6, src, dst, v4 ? Proto.ICMP : Proto.ICMPV6, icmpLength, out);
  out[hl] = v4 ? Icmp4.DEST_UNREACHABLE : Icmp6.DEST_UNREACHABLE;
  out[hl + 1] = v4
    ? (cause === "port"
      ? Icmp4.PORT_UNREACHABLE
      : cause === "prohibited"
      ? Icmp4.ADMIN_PROHIBITED
      : Icmp4.HOST_UNREACHABLE)
    : (cause === "port"
      ? Icmp6.PORT_UNREACHABLE
      : cause === "prohibited"
      ? 1
      : Icmp6.ADDRESS_UNREACHABLE);
  out.fill(0, hl + 2, hl + ICMP.HEADER);
  out.set(buf.subarray(0, quote), hl + ICMP.HEADER);
  const initial = v4 ? 0 : pseudoHeaderSum(out, IPV6.SRC, 16, Proto.ICMPV6, icmpLength);
  setChecksum(out, hl + ICMP.CHECKSUM, checksum(out, hl, hl + icmpLength, initial));
  return hl + icmpLength;
}

/**
 * Builds the echo reply to the echo request `p`: the same identifier,
 * sequence and data, addresses swapped (RFC 792, RFC 4443 4.2).
 *
 * @param buf the echo request
 * @param p its decoded fields
 * @param out where to write the reply (must not be `buf`)
 * @returns the reply's length
 */
export function buildEchoReply(buf: Uint8Array, p: Packet, out: Uint8Array): number {
  const src = buf.subarray(p.dstOffset, p.dstOffset + p.addressLength);
  const dst = buf.subarray(p.srcOffset, p.srcOffset + p.addressLength);
  const v4 = p.version === 4;
  const icmpLength = p.length - p.l4Offset;
  const hl = emitIp(p.version as 4 | 6, src, dst, v4 ? Proto.ICMP : Proto.ICMPV6, icmpLength, out);
  out.set(buf.subarray(p.l4Offset, p.length), hl);
  out[hl] = v4 ? Icmp4.ECHO_REPLY : Icmp6.ECHO_REPLY;
  out[hl + 1] = 0;
  out[hl + 2] = out[hl + 3] = 0;
  const initial = v4 ? 0 : pseudoHeaderSum(out, IPV6.SRC, 16, Proto.ICMPV6, icmpLength);
  setChecksum(out, hl + ICMP.CHECKSUM, checksum(out, hl, hl + icmpLength, initial));
  return hl + icmpLength;
}

/**
 * Builds a UDP datagram from `src:srcPort` to `dst:dstPort` carrying `payload`.
 *
 * @param src source address, 4 or 16 bytes (the family follows from it)
 * @param srcPort source port
 * @param dst destination address, same family
 * @param dstPort destination port
 * @param payload the data
 * @param out where to write
 * @returns the datagram's length
 * @throws {RangeError} when the datagram would exceed 65535 bytes or `out`
 */
export function buildUdp(
  src: Uint8Array,
  srcPort: number,
  dst: Uint8Array,
  dstPort: number,
  payload: Uint8Array,
  out: Uint8Array,
): number {
  const version = src.length === 4 ? 4 : 6;
  const udpLength = UDP.HEADER + payload.length;
  const total = (version === 4 ? IPV4.MIN_HEADER : IPV6.HEADER) + udpLength;
  if (udpLength > 0xffff || total > out.length) {
    throw new RangeError(`Cannot build a UDP datagram of "${payload.length}" bytes: too large`);
  }
  const hl = emitIp(version, src, dst, Proto.UDP, udpLength, out);
  out[hl] = srcPort >> 8;
  out[hl + 1] = srcPort & 0xff;
  out[hl + 2] = dstPort >> 8;
  out[hl + 3] = dstPort & 0xff;
  out[hl + 4] = udpLength >> 8;
  out[hl + 5] = udpLength & 0xff;
  out[hl + 6] = out[hl + 7] = 0;
  out.set(payload, hl + UDP.HEADER);
  const srcOff = version === 4 ? IPV4.SRC : IPV6.SRC;
  let c = checksum(
    out,
    hl,
    hl + udpLength,
    pseudoHeaderSum(out, srcOff, src.length, Proto.UDP, udpLength),
  );
  if (c === 0) c = 0xffff; // RFC 768: a computed zero is sent as all ones
  setChecksum(out, hl + UDP.CHECKSUM, c);
  return hl + udpLength;
}
