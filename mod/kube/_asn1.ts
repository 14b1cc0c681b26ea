/**
 * A small DER encoder (ITU-T X.690 §10) for the few ASN.1 types an X.509
 * certificate needs. Every function returns the complete encoding (tag,
 * length, contents) of one value, so values nest by passing encodings to
 * {@linkcode sequence}, {@linkcode set} and {@linkcode explicit}.
 *
 * Private to `mod/kube/`: `x509.ts` is the only user. Pure: no I/O, no clock.
 *
 * @module
 */

/** Universal tags (X.680 §8.4, Table 1). */
const Tag = {
  Boolean: 0x01,
  Integer: 0x02,
  BitString: 0x03,
  OctetString: 0x04,
  Null: 0x05,
  ObjectIdentifier: 0x06,
  Utf8String: 0x0c,
  PrintableString: 0x13,
  Ia5String: 0x16,
  UtcTime: 0x17,
  GeneralizedTime: 0x18,
  Sequence: 0x30, // constructed
  Set: 0x31, // constructed
} as const;

const encoder = new TextEncoder();

/**
 * Encodes one tag-length-value. The length uses the definite form: short
 * below 128, else long with the fewest octets (X.690 §10.1, §8.1.3.5).
 *
 * @param tag The identifier octet.
 * @param contents The contents octets.
 * @returns The encoding.
 */
export function tlv(tag: number, contents: Uint8Array): Uint8Array {
  const length = contents.length;
  let header: number[];
  if (length < 0x80) {
    header = [tag, length];
  } else {
    const octets: number[] = [];
    for (let n = length; n > 0; n = Math.floor(n / 256)) octets.unshift(n & 0xff);
    header = [tag, 0x80 | octets.length, ...octets];
  }
  const out = new Uint8Array(header.length + length);
  out.set(header);
  out.set(contents, header.length);
  return out;
}

/**
 * Concatenates byte arrays.
 *
 * @param parts The arrays, in order.
 * @returns One array holding them all.
 */
export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

/**
 * A SEQUENCE of already encoded values.
 *
 * @param items The encodings of the members, in order.
 * @returns The encoding.
 */
export function sequence(...items: Uint8Array[]): Uint8Array {
  return tlv(Tag.Sequence, concat(...items));
}

/**
 * A SET OF already encoded values, sorted as DER requires (X.690 §11.6).
 *
 * @param items The encodings of the members.
 * @returns The encoding.
 */
export function set(...items: Uint8Array[]): Uint8Array {
  return tlv(Tag.Set, concat(...[...items].sort(compareBytes)));
}

/**
 * An INTEGER from a non-negative number held as big-endian unsigned bytes:
 * leading zero octets are dropped and one is added when the top bit is set,
 * so the value stays positive and minimal (X.690 §8.3.2).
 *
 * @param unsigned The magnitude, big-endian.
 * @returns The encoding.
 */
export function unsignedInteger(unsigned: Uint8Array): Uint8Array {
  let start = 0;
  while (start < unsigned.length - 1 && unsigned[start] === 0) start++;
  const trimmed = unsigned.subarray(start);
  if (trimmed.length === 0) return tlv(Tag.Integer, new Uint8Array([0]));
  return tlv(Tag.Integer, (trimmed[0]! & 0x80) ? concat(new Uint8Array([0]), trimmed) : trimmed);
}

/**
 * An INTEGER from a small non-negative number.
 *
 * @param value A safe integer, 0 or more.
 * @returns The encoding.
 * @throws {RangeError} When `value` is negative or not a safe integer.
 */
export function integer(value: number): Uint8Array {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`Cannot encode integer: ${value} is not a non-negative safe integer`);
  }
  const octets: number[] = [];
  for (let n = value; n > 0; n = Math.floor(n / 256)) octets.unshift(n & 0xff);
  return unsignedInteger(new Uint8Array(octets));
}

/**
 * A BOOLEAN: DER encodes TRUE as 0xff (X.690 §11.1).
 *
 * @param value The value.
 * @returns The encoding.
 */
export function boolean(value: boolean): Uint8Array {
  return tlv(Tag.Boolean, new Uint8Array([value ? 0xff : 0x00]));
}

/**
 * NULL.
 *
 * @returns The encoding.
 */
export function nullValue(): Uint8Array {
  return tlv(Tag.Null, new Uint8Array(0));
}

/**
 * An OBJECT IDENTIFIER from its dotted form (X.690 §8.19).
 *
 * @param dotted The arcs, e.g. `"1.2.840.10045.4.3.2"`.
 * @returns The encoding.
 * @throws {SyntaxError} When `dotted` is not an object identifier.
 */
export function oid(dotted: string): Uint8Array {
  if (!/^[0-2](\.\d+)+$/.test(dotted)) {
    throw new SyntaxError(`Cannot encode object identifier: "${dotted}" is not dotted arcs`);
  }
  const arcs = dotted.split(".").map(Number);
  const [first = 0, second = 0, ...rest] = arcs;
  const out: number[] = [];
  for (const arc of [first * 40 + second, ...rest]) {
    const base128: number[] = [arc & 0x7f];
    for (let n = Math.floor(arc / 128); n > 0; n = Math.floor(n / 128)) {
      base128.unshift(0x80 | (n & 0x7f));
    }
    out.push(...base128);
  }
  return tlv(Tag.ObjectIdentifier, new Uint8Array(out));
}

/**
 * An OCTET STRING.
 *
 * @param bytes The contents.
 * @returns The encoding.
 */
export function octetString(bytes: Uint8Array): Uint8Array {
  return tlv(Tag.OctetString, bytes);
}

/**
 * A BIT STRING whose length is a whole number of octets (keys, signatures).
 *
 * @param bytes The bits, first bit in the top of the first octet.
 * @returns The encoding: no unused bits.
 */
export function bitString(bytes: Uint8Array): Uint8Array {
  return tlv(Tag.BitString, concat(new Uint8Array([0]), bytes));
}

/**
 * A BIT STRING of named bits (like `KeyUsage`): bit 0 is the top bit of the
 * first octet; trailing zero bits are left out, as DER requires for named bit
 * lists (X.690 §11.2.2).
 *
 * @param bits The numbers of the bits that are set.
 * @returns The encoding.
 */
export function namedBits(bits: readonly number[]): Uint8Array {
  if (bits.length === 0) return tlv(Tag.BitString, new Uint8Array([0]));
  const last = Math.max(...bits);
  const octets = new Uint8Array(Math.floor(last / 8) + 1);
  for (const bit of bits) octets[bit >> 3]! |= 0x80 >> (bit & 7);
  const unused = 7 - (last & 7);
  return tlv(Tag.BitString, concat(new Uint8Array([unused]), octets));
}

/**
 * A UTF8String.
 *
 * @param text The text.
 * @returns The encoding.
 */
export function utf8String(text: string): Uint8Array {
  return tlv(Tag.Utf8String, encoder.encode(text));
}

/**
 * A PrintableString.
 *
 * @param text Letters, digits, space and `'()+,-./:=?`.
 * @returns The encoding.
 * @throws {RangeError} When `text` holds another character.
 */
export function printableString(text: string): Uint8Array {
  if (!/^[A-Za-z0-9 '()+,\-./:=?]*$/.test(text)) {
    throw new RangeError(`Cannot encode PrintableString: "${text}" holds other characters`);
  }
  return tlv(Tag.PrintableString, encoder.encode(text));
}

/**
 * An IA5String (ASCII).
 *
 * @param text ASCII text.
 * @returns The encoding.
 * @throws {RangeError} When `text` is not ASCII.
 */
export function ia5String(text: string): Uint8Array {
  return tlv(Tag.Ia5String, ascii(text));
}

/**
 * The bytes of ASCII text: the contents of an IA5String, for use under an
 * IMPLICIT tag (a `dNSName` in a subjectAltName).
 *
 * @param text ASCII text.
 * @returns One byte per character.
 * @throws {RangeError} When `text` is not ASCII.
 */
export function ascii(text: string): Uint8Array {
  // deno-lint-ignore no-control-regex
  if (!/^[\x00-\x7f]*$/.test(text)) {
    throw new RangeError(`Cannot encode IA5String: "${text}" is not ASCII`);
  }
  return encoder.encode(text);
}

/**
 * A time as X.509 wants it (RFC 5280 4.1.2.5): UTCTime `YYMMDDHHMMSSZ` for the
 * years 1950 to 2049, GeneralizedTime `YYYYMMDDHHMMSSZ` otherwise; whole
 * seconds, always UTC.
 *
 * @param date The time; milliseconds are dropped.
 * @returns The encoding.
 */
export function x509Time(date: Date): Uint8Array {
  const year = date.getUTCFullYear();
  const two = (n: number) => String(n).padStart(2, "0");
  const rest = two(date.getUTCMonth() + 1) + two(date.getUTCDate()) + two(date.getUTCHours()) +
    two(date.getUTCMinutes()) + two(date.getUTCSeconds()) + "Z";
  if (year >= 1950 && year < 2050) {
    return tlv(Tag.UtcTime, encoder.encode(two(year % 100) + rest));
  }
  return tlv(Tag.GeneralizedTime, encoder.encode(String(year).padStart(4, "0") + rest));
}

/**
 * A context-specific EXPLICIT tag `[n]` around one encoded value (constructed).
 *
 * @param n The tag number, 0 to 30.
 * @param inner The encoding of the tagged value.
 * @returns The encoding.
 */
export function explicit(n: number, inner: Uint8Array): Uint8Array {
  return tlv(0xa0 | n, inner);
}

/**
 * A context-specific IMPLICIT tag `[n]` on a primitive value: the tag replaces
 * the value's own, the contents stay.
 *
 * @param n The tag number, 0 to 30.
 * @param contents The contents octets of the value.
 * @returns The encoding.
 */
export function implicitPrimitive(n: number, contents: Uint8Array): Uint8Array {
  return tlv(0x80 | n, contents);
}

/** Orders byte strings as DER orders SET OF members: shorter is padded with zeros. */
function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const d = (a[i] ?? 0) - (b[i] ?? 0);
    if (d !== 0) return d;
  }
  return a.length - b.length;
}
