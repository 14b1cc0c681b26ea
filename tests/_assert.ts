/**
 * Small assertions for tests (JSR's `@std/assert` cannot be fetched here).
 *
 * @module
 */

/** An assertion that did not hold. */
export class AssertionError extends Error {
  /** @param message what was expected */
  constructor(message: string) {
    super(message);
    this.name = "AssertionError";
  }
}

/**
 * Throws unless `cond` is truthy.
 *
 * @param cond the condition
 * @param message what was expected
 */
export function assert(cond: unknown, message = "Assertion failed"): asserts cond {
  if (!cond) throw new AssertionError(message);
}

function show(v: unknown): string {
  if (v instanceof Uint8Array) {
    const head = [...v.subarray(0, 32)].join(", ");
    return `Uint8Array(${v.length}) [${head}${v.length > 32 ? ", …" : ""}]`;
  }
  try {
    return Deno.inspect(v, { depth: 6 });
  } catch {
    return String(v);
  }
}

function equal(a: unknown, b: unknown): boolean {
  if (Object.is(a, b)) return true;
  if (typeof a !== "object" || typeof b !== "object" || a === null || b === null) return false;
  if (ArrayBuffer.isView(a) && ArrayBuffer.isView(b)) {
    const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
    const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
    return a.constructor === b.constructor && x.length === y.length &&
      x.every((v, i) => v === y[i]);
  }
  if (Array.isArray(a) !== Array.isArray(b)) return false;
  if (a instanceof Map && b instanceof Map) {
    return a.size === b.size && [...a].every(([k, v]) => b.has(k) && equal(v, b.get(k)));
  }
  const ka = Object.keys(a), kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  return ka.every((k) =>
    equal((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])
  );
}

/**
 * Throws unless `actual` deeply equals `expected`.
 *
 * @param actual what the code gave
 * @param expected what it should have given
 * @param message context
 */
export function assertEquals<T>(actual: T, expected: T, message?: string): void {
  if (!equal(actual, expected)) {
    throw new AssertionError(
      `${message ? message + ": " : ""}values differ:\n  actual:   ${show(actual)}\n  expected: ${
        show(expected)
      }`,
    );
  }
}

/**
 * Throws unless `actual` does not deeply equal `expected`.
 *
 * @param actual what the code gave
 * @param expected what it must not be
 * @param message context
 */
export function assertNotEquals<T>(actual: T, expected: T, message?: string): void {
  if (equal(actual, expected)) {
    throw new AssertionError(`${message ? message + ": " : ""}values are equal: ${show(actual)}`);
  }
}

/**
 * Throws unless `text` matches `re`.
 *
 * @param text the string
 * @param re the pattern
 */
export function assertMatch(text: string, re: RegExp): void {
  if (!re.test(text)) throw new AssertionError(`Expected ${show(text)} to match ${re}`);
}

/**
 * Throws unless `fn` throws (or rejects) an error of class `cls` whose message includes `includes`.
 *
 * @param fn the code
 * @param cls the error class
 * @param includes a part of the message
 * @returns the error
 */
export async function assertRejects(
  fn: () => unknown,
  cls: abstract new (...args: never[]) => Error = Error,
  includes?: string,
): Promise<Error> {
  try {
    await fn();
  } catch (e) {
    if (!(e instanceof cls)) throw new AssertionError(`Expected ${cls.name}, got ${show(e)}`);
    if (includes && !e.message.includes(includes)) {
      throw new AssertionError(`Expected message to include "${includes}", got "${e.message}"`);
    }
    return e;
  }
  throw new AssertionError("Expected the function to throw");
}

/**
 * Throws unless `fn` throws synchronously an error of class `cls`.
 *
 * @param fn the code
 * @param cls the error class
 * @param includes a part of the message
 * @returns the error
 */
export function assertThrows<E extends Error = Error>(
  fn: () => unknown,
  cls: abstract new (...args: never[]) => E = Error as unknown as abstract new (
    ...args: never[]
  ) => E,
  includes?: string,
): E {
  try {
    fn();
  } catch (e) {
    if (!(e instanceof cls)) throw new AssertionError(`Expected ${cls.name}, got ${show(e)}`);
    if (includes && !e.message.includes(includes)) {
      throw new AssertionError(`Expected message to include "${includes}", got "${e.message}"`);
    }
    return e;
  }
  throw new AssertionError("Expected the function to throw");
}
