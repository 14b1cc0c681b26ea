/**
 * Fuzzes the control protocol's line reader (`LineSplitter` in
 * `mod/daemon/control.ts`): byte streams cut into chunks at varied places,
 * lines just under, at and over `MAX_LINE`, invalid UTF-8.
 *
 * An input is `mode | scale | pattern`: `mode` seeds the chunk sizes; a
 * `scale` below 0xf0 makes the stream the pattern itself, else the pattern
 * repeated to `MAX_LINE - 4 + (scale & 7)` bytes (with a final newline when
 * `scale & 8`), so that the limit is crossed by a few bytes.
 *
 * @module
 */

import { LineSplitter, MAX_LINE } from "../../mod/daemon/control.ts";
import { prng } from "../_prng.ts";
import { fuzzTest, property } from "./_fuzz.ts";
import { below, concat } from "./_mutators.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

function stream(input: Uint8Array): Uint8Array {
  const scale = input[1] ?? 0;
  const pattern = input.subarray(2);
  if (scale < 0xf0) return pattern;
  const length = MAX_LINE - 4 + (scale & 0x07);
  const unit = pattern.length > 0 ? pattern : encoder.encode("a");
  const out = new Uint8Array(length + ((scale & 0x08) ? 1 : 0));
  out.set(unit.subarray(0, length));
  for (let filled = Math.min(unit.length, length); filled < length; filled *= 2) {
    out.copyWithin(filled, 0, Math.min(filled, length - filled));
  }
  if (scale & 0x08) out[length] = 10;
  return out;
}

/** Chunk sizes: tiny ones for small streams, realistic reads for big ones. */
function chunks(input: Uint8Array, bytes: Uint8Array): Uint8Array[] {
  const rand = prng(input[0] ?? 0);
  const big = bytes.length > 65536;
  const style = below(rand, 3);
  const out: Uint8Array[] = [];
  for (let at = 0; at < bytes.length;) {
    const size = big
      ? 16384 + below(rand, 65536 - 16384)
      : style === 0
      ? 1 + below(rand, 4)
      : style === 1
      ? 1 + below(rand, 64)
      : 1 + below(rand, 4096);
    out.push(bytes.subarray(at, at + size));
    at += size;
  }
  return out;
}

/**
 * Counts the bytes of typed arrays made with `new Uint8Array(…)` while `fn`
 * runs (a partial meter: copies made by `slice` or inside the runtime are not
 * seen); synchronous code only.
 */
function countAllocations<T>(fn: () => T): { value: T; bytes: number } {
  const Real = globalThis.Uint8Array;
  let bytes = 0;
  const Counting: Uint8ArrayConstructor = new Proxy(Real, {
    construct(target, args, newTarget): object {
      const made: object = Reflect.construct(
        target,
        args,
        newTarget === Counting ? target : newTarget,
      );
      bytes += (made as Uint8Array).byteLength;
      return made;
    },
  });
  globalThis.Uint8Array = Counting;
  try {
    return { value: fn(), bytes };
  } finally {
    globalThis.Uint8Array = Real;
  }
}

function check(input: Uint8Array): void {
  const bytes = stream(input);
  const parts = chunks(input, bytes);
  const splitter = new LineSplitter();
  const got: string[] = [];
  let failedAt = -1;
  let end = 0;
  const { bytes: allocated } = countAllocations(() => {
    for (const [k, part] of parts.entries()) {
      end += part.length;
      try {
        for (const line of splitter.push(part)) got.push(line);
      } catch (error) {
        property(
          error instanceof RangeError,
          `push() threw ${(error as Error)?.name}, not RangeError`,
        );
        failedAt = k;
        return;
      }
    }
  });
  // The reference: every newline ends a line; no line, finished or not, may pass
  // MAX_LINE. The push that meets one throws and returns nothing, not even the
  // lines it completed before it; every push after it throws too.
  const lines: Uint8Array[] = [];
  let expectedFail = -1;
  let start = 0, at = 0;
  for (const [k, part] of parts.entries()) {
    const before = lines.length;
    for (let i = 0; i < part.length && expectedFail < 0; i++) {
      if (part[i] !== 10) continue;
      if (at + i - start > MAX_LINE) expectedFail = k;
      else lines.push(bytes.subarray(start, at + i));
      start = at + i + 1;
    }
    at += part.length;
    if (expectedFail < 0 && at - start > MAX_LINE) expectedFail = k;
    if (expectedFail >= 0) {
      lines.length = before;
      break;
    }
  }
  property(
    failedAt === expectedFail,
    failedAt >= 0
      ? `push() threw at chunk ${failedAt}, the reference at ${expectedFail}`
      : `push() returned a line over MAX_LINE (${MAX_LINE}) or kept one: the reference threw at chunk ${expectedFail}`,
  );
  property(got.length === lines.length, `${got.length} lines, the reference has ${lines.length}`);
  for (const [i, line] of lines.entries()) {
    property(got[i] === decoder.decode(line), `line ${i} differs from the reference's`);
  }
  property(
    allocated <= 3 * bytes.length + 2 * 65536,
    `pushing ${bytes.length} bytes in ${parts.length} chunks allocated ${allocated} bytes: ` +
      "each push copies the whole unfinished line (quadratic in the number of chunks)",
  );
  if (failedAt >= 0) {
    // A caller that goes on after the RangeError gets nothing more.
    let after: string[] | undefined;
    let again: unknown;
    try {
      after = splitter.push(new Uint8Array([10]));
    } catch (error) {
      again = error;
    }
    property(
      after === undefined && again instanceof RangeError,
      "push() after a RangeError did not throw RangeError again",
    );
  }
}

function seeds(): Uint8Array[] {
  const line = (mode: number, scale: number, text: string | Uint8Array) =>
    concat(new Uint8Array([mode, scale]), typeof text === "string" ? encoder.encode(text) : text);
  return [
    line(0, 0, '{"id":1,"method":"status"}\n{"id":2,"method":"version"}\n'),
    line(1, 0, '{"id":3,"method":"connect","params":{"namespace":"shop"}}\n\n\n'),
    line(2, 0, "é\nü€\n𝄞\n"),
    line(3, 0, new Uint8Array([0xc3, 0x0a, 0xe2, 0x82, 0x0a, 0xff, 0xfe, 0x0a, 0xed, 0xa0, 0x80])),
    line(4, 0, "no newline at all"),
    line(5, 0xf0, "x"), // MAX_LINE - 4 bytes, no newline
    line(8, 0xf7, "z"), // over the limit by 3
    line(9, 0xfc, "w"), // MAX_LINE exactly, then a newline
    line(10, 0xfe, "v"), // MAX_LINE + 2, then a newline
  ];
}

fuzzTest(
  "control_lines",
  "LineSplitter returns exactly the reference's lines, throws only RangeError and only when a line, finished or not, passes MAX_LINE (and on every push after), and copies a linear amount",
  () => ({
    seeds: seeds(),
    check,
    maxLength: 300,
    hangMs: 5000,
  }),
);
