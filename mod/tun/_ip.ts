/**
 * IP address text ⇄ bytes, private to `mod/tun/` (the netlink codec needs it
 * and must not depend on code that other folders are still shaping).
 *
 * @module
 */

/**
 * Parses an IPv4 (`240.0.0.1`) or IPv6 (`2001:2::1`, `::ffff:1.2.3.4`) address.
 *
 * @param text the address, without a prefix length or zone
 * @returns 4 or 16 bytes in network order, or `undefined` when `text` is not an address
 * @example
 * ```ts
 * import { parseIp } from "./_ip.ts";
 * parseIp("240.0.0.1"); // Uint8Array [240, 0, 0, 1]
 * ```
 */
export function parseIp(text: string): Uint8Array | undefined {
  return text.includes(":") ? parseIpv6(text) : parseIpv4(text);
}

function parseIpv4(text: string): Uint8Array | undefined {
  const parts = text.split(".");
  if (parts.length !== 4) return undefined;
  const out = new Uint8Array(4);
  for (let i = 0; i < 4; i++) {
    const part = parts[i]!;
    if (!/^(0|[1-9][0-9]{0,2})$/.test(part)) return undefined;
    const value = Number(part);
    if (value > 255) return undefined;
    out[i] = value;
  }
  return out;
}

function parseIpv6(text: string): Uint8Array | undefined {
  const halves = text.split("::");
  if (halves.length > 2) return undefined;
  const head = halves[0] === "" ? [] : halves[0]!.split(":");
  const tail = halves.length === 2 ? (halves[1] === "" ? [] : halves[1]!.split(":")) : [];
  const words: number[] = [];
  const parseGroups = (groups: string[], last: boolean): boolean => {
    for (let i = 0; i < groups.length; i++) {
      const group = groups[i]!;
      if (last && i === groups.length - 1 && group.includes(".")) {
        const v4 = parseIpv4(group);
        if (!v4) return false;
        words.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!);
        continue;
      }
      if (!/^[0-9a-fA-F]{1,4}$/.test(group)) return false;
      words.push(parseInt(group, 16));
    }
    return true;
  };
  if (!parseGroups(head, halves.length === 1)) return undefined;
  const headWords = words.length;
  if (!parseGroups(tail, true)) return undefined;
  const tailWords = words.length - headWords;
  if (halves.length === 1 ? words.length !== 8 : words.length > 7) return undefined;
  const out = new Uint8Array(16);
  for (let i = 0; i < headWords; i++) {
    out[2 * i] = words[i]! >> 8;
    out[2 * i + 1] = words[i]! & 0xff;
  }
  for (let i = 0; i < tailWords; i++) {
    const at = 8 - tailWords + i;
    out[2 * at] = words[headWords + i]! >> 8;
    out[2 * at + 1] = words[headWords + i]! & 0xff;
  }
  return out;
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
  if (bytes.length === 4) return bytes.join(".");
  if (bytes.length !== 16) {
    throw new RangeError(`Cannot format an address of "${bytes.length}" bytes: need 4 or 16`);
  }
  const words: number[] = [];
  for (let i = 0; i < 16; i += 2) words.push((bytes[i]! << 8) | bytes[i + 1]!);
  // RFC 5952 4.2: shorten the longest run of two or more zero words, the first on a tie.
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8;) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = (list: number[]) => list.map((w) => w.toString(16)).join(":");
  if (bestStart < 0) return hex(words);
  return `${hex(words.slice(0, bestStart))}::${hex(words.slice(bestStart + bestLength))}`;
}
