/**
 * IPv4 subnet arithmetic for the ClusterIP allocator.
 *
 * @module
 */

/** A parsed IPv4 CIDR. */
export interface Cidr4 {
  /** The text as given, normalised (`198.19.0.0/18`). */
  text: string;
  /** The network address as an unsigned 32-bit number. */
  base: number;
  bits: number;
  /** How many addresses it holds. */
  size: number;
}

/**
 * Parses a dotted-quad IPv4 address.
 *
 * @param ip the text
 * @returns the address as an unsigned number, or undefined when it is no IPv4 address
 */
export function parseIpv4(ip: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (!m) return undefined;
  const parts = m.slice(1).map(Number);
  if (parts.some((p) => p > 255)) return undefined;
  return ((parts[0]! << 24) >>> 0) + (parts[1]! << 16) + (parts[2]! << 8) + parts[3]!;
}

/**
 * Formats an unsigned number as a dotted quad.
 *
 * @param n the address
 * @returns the text
 */
export function formatIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join(".");
}

/**
 * Parses `a.b.c.d/n`.
 *
 * @param text the CIDR
 * @returns the parsed subnet
 * @throws {SyntaxError} when it is no IPv4 CIDR
 */
export function parseCidr4(text: string): Cidr4 {
  const [ip, bitsText] = text.split("/");
  const addr = parseIpv4(ip ?? "");
  const bits = Number(bitsText);
  if (addr === undefined || !Number.isInteger(bits) || bits < 0 || bits > 32) {
    throw new SyntaxError(`Invalid IPv4 CIDR "${text}"`);
  }
  const size = 2 ** (32 - bits);
  const base = bits === 0 ? 0 : (addr & ~(size - 1)) >>> 0;
  return { text: `${formatIpv4(base)}/${bits}`, base, bits, size };
}

/**
 * Whether an address lies in a subnet.
 *
 * @param cidr the subnet
 * @param ip the address as a number
 * @returns true when inside
 */
export function contains(cidr: Cidr4, ip: number): boolean {
  return ip >= cidr.base && ip < cidr.base + cidr.size;
}
