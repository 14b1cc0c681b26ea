/**
 * A seeded PRNG for tests (mulberry32): failures reproduce from the seed.
 *
 * @module
 */

/**
 * Makes a generator of numbers in [0, 1).
 *
 * @param seed any 32-bit number
 * @returns the generator
 */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Random bytes from a generator.
 *
 * @param rand the generator
 * @param length how many
 * @returns the bytes
 */
export function randomBytes(rand: () => number, length: number): Uint8Array {
  const out = new Uint8Array(length);
  for (let i = 0; i < length; i++) out[i] = Math.floor(rand() * 256);
  return out;
}
