/**
 * The fuzzer's mutators: the generic ones (bit flips, bytes set to
 * 0/0x7f/0x80/0xff, 16- and 32-bit words set to huge values, truncation,
 * extension, duplication and splicing of chunks), helpers for targets that
 * write their own, and inputs made of several messages (records).
 *
 * @module
 */

import { randomBytes } from "../_prng.ts";

/** A generator of numbers in [0, 1). */
export type Rand = () => number;

/**
 * A format-aware mutation: returns a new input made from `input`.
 *
 * @param input the input to change (do not modify it)
 * @param rand the generator to draw from
 * @param pool the other inputs (seeds and corpus), for splicing
 */
export type Mutator = (input: Uint8Array, rand: Rand, pool: readonly Uint8Array[]) => Uint8Array;

const INTERESTING_8 = [0, 1, 0x7f, 0x80, 0xff, 0x0a, 0x7e];
const INTERESTING_32 = [
  0,
  1,
  0x7f,
  0x80,
  0xff,
  0x100,
  0x7fff,
  0x8000,
  0xffff,
  0x1_0000,
  0x40_0000,
  0x400_0001,
  0x7fff_ffff,
  0x8000_0000,
  0xffff_fffe,
  0xffff_ffff,
];

/**
 * An integer in [0, n).
 *
 * @param rand the generator
 * @param n the bound
 * @returns the integer
 */
export function below(rand: Rand, n: number): number {
  return Math.floor(rand() * n);
}

/**
 * One of the items.
 *
 * @param rand the generator
 * @param items the items, at least one
 * @returns the item drawn
 */
export function pick<T>(rand: Rand, items: readonly T[]): T {
  return items[below(rand, items.length)]!;
}

/**
 * A number a length field should not hold: 0, one byte's limits, 2^16,
 * 2^31, 2^32 - 1, …
 *
 * @param rand the generator
 * @returns the number
 */
export function interestingNumber(rand: Rand): number {
  return pick(rand, INTERESTING_32);
}

/**
 * Concatenates byte arrays.
 *
 * @param parts the arrays
 * @returns one array
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

const GENERIC: Mutator[] = [
  // A bit flipped.
  (b, r) => {
    if (b.length === 0) return randomBytes(r, 1);
    const out = b.slice();
    out[below(r, out.length)]! ^= 1 << below(r, 8);
    return out;
  },
  // A byte set to an interesting value.
  (b, r) => {
    if (b.length === 0) return new Uint8Array([pick(r, INTERESTING_8)]);
    const out = b.slice();
    out[below(r, out.length)] = pick(r, INTERESTING_8);
    return out;
  },
  // A 16- or 32-bit word, either byte order, set to a huge or edge value: a length field.
  (b, r) => {
    const width = r() < 0.5 ? 2 : 4;
    if (b.length < width) return b.slice();
    const out = b.slice();
    const view = new DataView(out.buffer);
    const at = below(r, out.length - width + 1);
    const value = interestingNumber(r);
    const little = r() < 0.5;
    if (width === 2) view.setUint16(at, value & 0xffff, little);
    else view.setUint32(at, value >>> 0, little);
    return out;
  },
  // Truncated.
  (b, r) => b.slice(0, below(r, b.length + 1)),
  // A chunk cut out.
  (b, r) => {
    const from = below(r, b.length + 1), to = from + below(r, b.length - from + 1);
    return concat(b.subarray(0, from), b.subarray(to));
  },
  // Random bytes inserted or appended.
  (b, r) => {
    const at = r() < 0.5 ? b.length : below(r, b.length + 1);
    return concat(b.subarray(0, at), randomBytes(r, 1 + below(r, 16)), b.subarray(at));
  },
  // A chunk duplicated.
  (b, r) => {
    const from = below(r, b.length + 1), to = from + below(r, Math.min(64, b.length - from) + 1);
    const at = below(r, b.length + 1);
    const times = 1 + below(r, 4);
    const chunk = b.subarray(from, to);
    return concat(b.subarray(0, at), ...new Array(times).fill(chunk), b.subarray(at));
  },
  // Spliced with another input: this one's head, the other's tail.
  (b, r, pool) => {
    const other = pick(r, pool);
    return concat(
      b.subarray(0, below(r, b.length + 1)),
      other.subarray(below(r, other.length + 1)),
    );
  },
  // A range overwritten by a chunk of another input.
  (b, r, pool) => {
    const other = pick(r, pool);
    if (b.length === 0 || other.length === 0) return b.slice();
    const from = below(r, other.length), n = 1 + below(r, Math.min(32, other.length - from));
    const chunk = other.subarray(from, from + Math.min(n, b.length));
    const out = b.slice();
    out.set(chunk, below(r, out.length - chunk.length + 1));
    return out;
  },
];

/**
 * The generic mutators, for targets that apply them to a part of an input.
 *
 * @returns the mutators
 */
export function genericMutators(): readonly Mutator[] {
  return GENERIC;
}

/**
 * Makes one input: an input of the pool changed by one to five mutators, the
 * target's own drawn as often as the generic ones together.
 *
 * @param pool the seeds and the corpus
 * @param rand the generator of this input
 * @param maxLength the longest input to make
 * @param own the target's mutators
 * @returns the input
 */
export function mutate(
  pool: readonly Uint8Array[],
  rand: Rand,
  maxLength: number,
  own: readonly Mutator[],
): Uint8Array {
  let input = pick(rand, pool);
  const rounds = 1 + Math.floor(rand() ** 2 * 5);
  for (let k = 0; k < rounds; k++) {
    const mutator = own.length > 0 && rand() < 0.5 ? pick(rand, own) : pick(rand, GENERIC);
    input = mutator(input, rand, pool);
    if (input.length > maxLength) input = input.slice(0, maxLength);
  }
  return input;
}

/**
 * Joins messages into one input: each is a 16-bit big-endian length, then
 * its bytes (longer ones are cut at 65535).
 *
 * @param records the messages
 * @returns the input
 */
export function joinRecords(records: readonly Uint8Array[]): Uint8Array {
  return concat(...records.map((r) => {
    const body = r.subarray(0, 0xffff);
    return concat(new Uint8Array([body.length >> 8, body.length & 0xff]), body);
  }));
}

/**
 * Splits an input made by {@linkcode joinRecords}; a last record cut short
 * keeps what there is.
 *
 * @param input the input
 * @returns the messages
 */
export function splitRecords(input: Uint8Array): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let at = 0; at < input.length;) {
    const n = ((input[at] ?? 0) << 8) | (input[at + 1] ?? 0);
    out.push(input.subarray(at + 2, at + 2 + n));
    at += 2 + n;
  }
  return out;
}

/**
 * Mutators for record inputs: one record mutated with the generic mutators
 * (its length kept right), a record dropped, duplicated or moved, a record of
 * another input inserted.
 *
 * @returns the mutators
 */
export function recordMutators(): Mutator[] {
  return [
    (b, r, pool) => {
      const records = splitRecords(b);
      if (records.length === 0) return b.slice();
      const i = below(r, records.length);
      records[i] = pick(r, GENERIC)(records[i]!, r, pool.flatMap(splitRecords));
      return joinRecords(records);
    },
    (b, r) => {
      const records = splitRecords(b);
      if (records.length === 0) return b.slice();
      const i = below(r, records.length);
      const choice = below(r, 3);
      if (choice === 0) records.splice(i, 1);
      else if (choice === 1) records.splice(i, 0, records[i]!);
      else records.splice(below(r, records.length), 0, records.splice(i, 1)[0]!);
      return joinRecords(records);
    },
    (b, r, pool) => {
      const records = splitRecords(b);
      const others = splitRecords(pick(r, pool));
      if (others.length === 0) return b.slice();
      records.splice(below(r, records.length + 1), 0, pick(r, others));
      return joinRecords(records);
    },
  ];
}
