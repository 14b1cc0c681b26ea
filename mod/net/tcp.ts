/**
 * TCP header (RFC 9293 3.1) and its options.
 *
 * @module
 */

/** Offsets of the TCP header fields, from the start of the TCP header. */
export const TCP = {
  SRC_PORT: 0,
  DST_PORT: 2,
  SEQ: 4,
  ACK: 8,
  DATA_OFFSET: 12,
  FLAGS: 13,
  WINDOW: 14,
  CHECKSUM: 16,
  URGENT: 18,
  /** The header length without options. */
  MIN_HEADER: 20,
} as const;

/** TCP flag bits (RFC 9293 3.1). */
export const TcpFlags = {
  FIN: 0x01,
  SYN: 0x02,
  RST: 0x04,
  PSH: 0x08,
  ACK: 0x10,
  URG: 0x20,
  ECE: 0x40,
  CWR: 0x80,
} as const;

/** The options the router cares to read (RFC 9293 3.2, RFC 7323, RFC 2018). */
export interface TcpOptions {
  /** Maximum segment size, or 0 when absent. */
  mss: number;
  /** Window scale shift, or -1 when absent. */
  windowScale: number;
  /** SACK-permitted seen. */
  sackPermitted: boolean;
  /** Timestamp value, or -1 when absent. */
  tsVal: number;
  /** Timestamp echo reply, or -1 when absent. */
  tsEcr: number;
}

/**
 * Makes an empty {@linkcode TcpOptions} to be filled by {@linkcode parseTcpOptions}.
 *
 * @returns options with every field "absent"
 */
export function emptyTcpOptions(): TcpOptions {
  return { mss: 0, windowScale: -1, sackPermitted: false, tsVal: -1, tsEcr: -1 };
}

/**
 * Reads the options of the TCP header at `offset`. Never throws: a malformed
 * option list ends the walk and returns `false`.
 *
 * @param buf the packet
 * @param offset the TCP header's first byte
 * @param headerLength the TCP header length (data offset × 4)
 * @param out receives the options (reset first)
 * @returns `true` when the option list was well formed
 */
export function parseTcpOptions(
  buf: Uint8Array,
  offset: number,
  headerLength: number,
  out: TcpOptions,
): boolean {
  out.mss = 0;
  out.windowScale = -1;
  out.sackPermitted = false;
  out.tsVal = -1;
  out.tsEcr = -1;
  const end = offset + headerLength;
  let i = offset + TCP.MIN_HEADER;
  while (i < end) {
    const kind = buf[i]!;
    if (kind === 0) return true; // end of option list
    if (kind === 1) { // no-operation
      i++;
      continue;
    }
    if (i + 1 >= end) return false;
    const len = buf[i + 1]!;
    if (len < 2 || i + len > end) return false;
    switch (kind) {
      case 2:
        if (len !== 4) return false;
        out.mss = (buf[i + 2]! << 8) | buf[i + 3]!;
        break;
      case 3:
        if (len !== 3) return false;
        out.windowScale = Math.min(buf[i + 2]!, 14); // RFC 7323 2.3: larger means 14
        break;
      case 4:
        if (len !== 2) return false;
        out.sackPermitted = true;
        break;
      case 8:
        if (len !== 10) return false;
        out.tsVal = readU32(buf, i + 2);
        out.tsEcr = readU32(buf, i + 6);
        break;
    }
    i += len;
  }
  return true;
}

/**
 * Reads a big-endian unsigned 32-bit number.
 *
 * @param buf the bytes
 * @param offset the first byte
 * @returns the value, 0–2^32-1
 */
export function readU32(buf: Uint8Array, offset: number): number {
  return ((buf[offset]! << 24) >>> 0) + ((buf[offset + 1]! << 16) | (buf[offset + 2]! << 8) |
    buf[offset + 3]!);
}

/**
 * Writes a big-endian unsigned 32-bit number.
 *
 * @param buf the bytes
 * @param offset the first byte
 * @param value the value (taken modulo 2^32)
 */
export function writeU32(buf: Uint8Array, offset: number, value: number): void {
  buf[offset] = (value >>> 24) & 0xff;
  buf[offset + 1] = (value >>> 16) & 0xff;
  buf[offset + 2] = (value >>> 8) & 0xff;
  buf[offset + 3] = value & 0xff;
}

/**
 * Formats flags as tcpdump does (`S.`, `F.`, `R`), for logs and tests.
 *
 * @param flags the flag byte
 * @returns the short text
 */
export function formatTcpFlags(flags: number): string {
  let s = "";
  if (flags & TcpFlags.SYN) s += "S";
  if (flags & TcpFlags.FIN) s += "F";
  if (flags & TcpFlags.RST) s += "R";
  if (flags & TcpFlags.PSH) s += "P";
  if (flags & TcpFlags.URG) s += "U";
  if (flags & TcpFlags.ACK) s += ".";
  return s === "" ? "none" : s;
}
