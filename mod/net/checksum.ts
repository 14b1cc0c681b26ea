/**
 * The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
 *
 * Sums are kept unfolded as plain numbers: JS numbers hold integers up to
 * 2^53 exactly, so a 64 KiB packet (at most 2^15 words of at most 2^16) never
 * overflows before {@linkcode fold}.
 *
 * @module
 */

/**
 * Adds the 16-bit big-endian words of `buf[start..end)` to `initial`. An odd
 * final byte is padded with zero (RFC 1071 4.1).
 *
 * @param buf the bytes
 * @param start first byte
 * @param end one past the last byte
 * @param initial a running sum to continue
 * @returns the unfolded sum
 * @example
 * ```ts
 * import { sum16 } from "./checksum.ts";
 * sum16(new Uint8Array([0x00, 0x01, 0xf2, 0x03]), 0, 4); // 0xf204
 * ```
 */
export function sum16(buf: Uint8Array, start: number, end: number, initial = 0): number {
  let sum = initial;
  let i = start;
  const even = end - ((end - start) & 1);
  // Four words per round: fewer loop checks, and bytes are read in order.
  for (; i + 8 <= even; i += 8) {
    sum += ((buf[i]! << 8) | buf[i + 1]!) + ((buf[i + 2]! << 8) | buf[i + 3]!) +
      ((buf[i + 4]! << 8) | buf[i + 5]!) + ((buf[i + 6]! << 8) | buf[i + 7]!);
  }
  for (; i < even; i += 2) sum += (buf[i]! << 8) | buf[i + 1]!;
  if (even !== end) sum += buf[end - 1]! << 8;
  return sum;
}

/**
 * Folds a running sum into 16 bits with end-around carry.
 *
 * @param sum an unfolded sum
 * @returns the folded one's complement sum, 0–0xffff
 */
export function fold(sum: number): number {
  while (sum > 0xffff) sum = (sum & 0xffff) + Math.floor(sum / 0x10000);
  return sum;
}

/**
 * The checksum of `buf[start..end)` continued from `initial`: the complement
 * of the folded sum, as it is written in a header.
 *
 * @param buf the bytes
 * @param start first byte
 * @param end one past the last byte
 * @param initial a running sum to continue (a pseudo-header)
 * @returns the checksum field value
 * @example
 * ```ts
 * import { checksum } from "./checksum.ts";
 * const header = new Uint8Array([0x45, 0, 0, 0x1c, 0, 0, 0, 0, 64, 17, 0, 0, 198, 18, 0, 1, 198, 18, 0, 2]);
 * const c = checksum(header, 0, 20);
 * header[10] = c >> 8, header[11] = c & 0xff;
 * checksum(header, 0, 20); // 0: a correct header sums to all ones
 * ```
 */
export function checksum(buf: Uint8Array, start: number, end: number, initial = 0): number {
  return ~fold(sum16(buf, start, end, initial)) & 0xffff;
}

/**
 * The pseudo-header sum of TCP, UDP and ICMPv6 (RFC 9293 3.1, RFC 8200 8.1):
 * both addresses, the protocol and the upper-layer length.
 *
 * @param buf the packet
 * @param srcOffset where the source address starts (the destination follows it)
 * @param addressLength 4 or 16
 * @param protocol the upper-layer protocol number
 * @param length the upper-layer length in bytes
 * @returns the unfolded sum
 */
export function pseudoHeaderSum(
  buf: Uint8Array,
  srcOffset: number,
  addressLength: number,
  protocol: number,
  length: number,
): number {
  return sum16(buf, srcOffset, srcOffset + 2 * addressLength, protocol + length);
}

/**
 * The difference a rewrite makes to a sum: for every 16-bit word changed from
 * `m` to `m'`, RFC 1624 eqn. 3 adds `~m + m'`. Computed once per NAT entry and
 * applied to each packet with {@linkcode adjustChecksum}.
 *
 * @param before the old words' bytes (even length)
 * @param after the new words' bytes (same length)
 * @returns the unfolded delta
 */
export function checksumDelta(before: Uint8Array, after: Uint8Array): number {
  let delta = 0;
  for (let i = 0; i + 1 < before.length; i += 2) {
    delta += (~((before[i]! << 8) | before[i + 1]!) & 0xffff) + ((after[i]! << 8) | after[i + 1]!);
  }
  return delta;
}

/**
 * Applies a delta to a complemented checksum field (RFC 1624 eqn. 3:
 * `HC' = ~(~HC + ~m + m')`).
 *
 * @param field the checksum as found in the header
 * @param delta from {@linkcode checksumDelta}
 * @returns the new field value
 */
export function adjustChecksum(field: number, delta: number): number {
  return ~fold((~field & 0xffff) + delta) & 0xffff;
}

/**
 * Applies a delta to an uncomplemented partial sum, as the kernel leaves in
 * the checksum field of a packet marked "needs checksum" (virtio-net header
 * `NEEDS_CSUM`): the field holds the folded pseudo-header sum itself.
 *
 * @param field the partial sum as found in the header
 * @param delta from {@linkcode checksumDelta}
 * @returns the new field value
 */
export function adjustPartialSum(field: number, delta: number): number {
  return fold(field + delta);
}
