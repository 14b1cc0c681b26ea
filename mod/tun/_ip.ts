/**
 * IP address text ⇄ bytes for `mod/tun/`: the pure helpers of
 * `mod/net/address.ts`, under the names the netlink codec uses, with the
 * length check netlink needs.
 *
 * @module
 */

import { formatAddress, parseAddress } from "../net/address.ts";

/**
 * Parses an IPv4 (`240.0.0.1`) or IPv6 (`2001:2::1`, `::ffff:1.2.3.4`) address.
 *
 * @param text the address, without a prefix length
 * @returns 4 or 16 bytes in network order, or `undefined` when `text` is not an address
 * @example
 * ```ts
 * import { parseIp } from "./_ip.ts";
 * parseIp("240.0.0.1"); // Uint8Array [240, 0, 0, 1]
 * ```
 */
export function parseIp(text: string): Uint8Array | undefined {
  return parseAddress(text);
}

/**
 * Formats 4 or 16 address bytes as text (IPv6 in the RFC 5952 canonical form).
 *
 * @param bytes the address in network order
 * @returns the text form
 * @throws {RangeError} when `bytes` is neither 4 nor 16 long
 * @example
 * ```ts
 * import { formatIp } from "./_ip.ts";
 * formatIp(new Uint8Array([240, 0, 0, 1])); // "240.0.0.1"
 * ```
 */
export function formatIp(bytes: Uint8Array): string {
  if (bytes.length !== 4 && bytes.length !== 16) {
    throw new RangeError(`Cannot format an address of "${bytes.length}" bytes: need 4 or 16`);
  }
  return formatAddress(bytes);
}
