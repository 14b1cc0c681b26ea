/**
 * A small seeded fuzzer for the parsers that read bytes from a peer.
 *
 * A target gives seed inputs (valid messages), a check that states its
 * property and throws when it does not hold, and optionally mutators that
 * know its format (`_mutators.ts`). A run:
 *
 * 1. replays the kept corpus, `tests/fuzz/corpus/<target>/*.hex` (one input
 *    per file, hex, `#` comment lines saying what it found);
 * 2. checks every seed as it is;
 * 3. mutates inputs from the seeds and the corpus until the time budget is
 *    spent.
 *
 * Input `i` of seed `s` depends only on `s`, `i` and the pool (seeds and
 * corpus), so a failure replays with `VIF_FUZZ_SEED=s:i` (when the target's
 * seeds are the same each run: the X.509 ones are made anew, so keep the hex);
 * its message also prints the input as hex, ready to be saved into the corpus.
 *
 * Environment:
 * - `VIF_FUZZ_SECONDS`: the budget per target (default 1 s); setting it
 *   also picks a fresh seed per run unless `VIF_FUZZ_SEED` is set.
 * - `VIF_FUZZ_SEED`: `s` runs seed `s`; `s:i` runs only input `i` of it.
 * - `VIF_FUZZ_VERBOSE=1`: one summary line per target.
 *
 * Hangs and escapes are caught by `_guards.ts`: a deadline per asynchronous
 * check, a catcher of unhandled rejections and throws from callbacks, and a
 * watchdog worker that prints the input and kills the process when a check
 * blocks the thread for good.
 *
 * Every corpus input is a bug found and fixed: its first comment line says
 * what it found, and it must pass ever after.
 *
 * @module
 */

import { prng } from "../_prng.ts";
import { EscapeCatcher, Watchdog, withDeadline } from "./_guards.ts";
import { mutate, type Mutator } from "./_mutators.ts";

/** What a target gives the fuzzer. */
export interface FuzzTarget {
  /** Valid inputs to start from. */
  seeds: Uint8Array[];
  /** Checks the target's property for one input; throws when it does not hold. */
  check(input: Uint8Array): void | Promise<void>;
  /** Mutators that know the format, drawn as often as the generic ones together. */
  mutators?: Mutator[];
  /** The longest input mutation makes (default 4096). */
  maxLength?: number;
  /** How long one input may take, in ms, before it counts as a hang (default 2000). */
  hangMs?: number;
  /** Releases what the target opened (servers, directories). */
  close?(): void | Promise<void>;
}

/** A property that did not hold. */
export class PropertyError extends Error {
  /** @param message what did not hold */
  constructor(message: string) {
    super(message);
    this.name = "PropertyError";
  }
}

/**
 * Throws a {@linkcode PropertyError} unless `condition` holds.
 *
 * @param condition the property
 * @param message what should have held, and what was seen
 */
export function property(condition: unknown, message: string): asserts condition {
  if (!condition) throw new PropertyError(message);
}

/** What one fuzz run did. */
export interface FuzzStats {
  seed: number;
  corpus: number;
  inputs: number;
  elapsedMs: number;
}

/** The default budget per target, in seconds: the whole `tests/fuzz/` stays well under 30 s. */
export const DEFAULT_SECONDS = 1;
/** The seed of a default (CI) run: fixed, so that CI runs the same inputs every time. */
export const DEFAULT_SEED = 0x5eed;

const CORPUS = new URL("./corpus/", import.meta.url);

function env(name: string): string | undefined {
  try {
    return Deno.env.get(name) || undefined;
  } catch {
    return undefined;
  }
}

/**
 * Registers a `Deno.test` that fuzzes a target.
 *
 * @param name the target's name (its corpus folder)
 * @param propertyText the property, in one sentence (the test's name says it)
 * @param make builds the target (servers, seeds); its `close` runs at the end
 * @param options sanitizers of the test (off for targets with sockets)
 */
export function fuzzTest(
  name: string,
  propertyText: string,
  make: () => FuzzTarget | Promise<FuzzTarget>,
  options: { sanitize?: boolean } = {},
): void {
  const sanitize = options.sanitize ?? true;
  Deno.test({
    name: `fuzz ${name}: ${propertyText}`,
    sanitizeOps: sanitize,
    sanitizeResources: sanitize,
    fn: async () => {
      const target = await make();
      try {
        const stats = await runFuzz(name, target);
        if (env("VIF_FUZZ_VERBOSE") || env("VIF_FUZZ_SECONDS")) {
          // deno-lint-ignore no-console
          console.log(
            `fuzz ${name}: ${stats.inputs} inputs (${stats.corpus} from the corpus) in ${
              (stats.elapsedMs / 1000).toFixed(1)
            } s, seed ${stats.seed}`,
          );
        }
      } finally {
        await target.close?.();
      }
    },
  });
}

/** A corpus entry. */
interface CorpusEntry {
  file: string;
  input: Uint8Array;
}

/**
 * Fuzzes one target: the corpus, the seeds, then mutations until the budget
 * is spent.
 *
 * @param name the target's name
 * @param target the target
 * @returns what was done
 * @throws {Error} at the first input whose check fails, with the seed, the
 *   iteration and the input as hex
 */
export async function runFuzz(name: string, target: FuzzTarget): Promise<FuzzStats> {
  const seconds = Number(env("VIF_FUZZ_SECONDS") ?? DEFAULT_SECONDS);
  const budgetMs = (Number.isFinite(seconds) && seconds > 0 ? seconds : DEFAULT_SECONDS) * 1000;
  const seedText = env("VIF_FUZZ_SEED");
  const [seedPart, onlyPart] = (seedText ?? "").split(":");
  const seed = seedText !== undefined
    ? Number(seedPart) >>> 0
    : env("VIF_FUZZ_SECONDS")
    ? crypto.getRandomValues(new Uint32Array(1))[0]!
    : DEFAULT_SEED;
  const only = onlyPart !== undefined && onlyPart !== "" ? Number(onlyPart) : undefined;
  const maxLength = target.maxLength ?? 4096;
  const hangMs = target.hangMs ?? 2000;
  const stats: FuzzStats = { seed, corpus: 0, inputs: 0, elapsedMs: 0 };
  const corpus = await readCorpus(name);
  const pool = [...target.seeds, ...corpus.map((c) => c.input)];
  if (pool.length === 0) throw new Error(`Fuzz target "${name}" has no seeds`);
  const watchdog = new Watchdog(name, Math.max(4 * hangMs, 15_000));
  const escapes = new EscapeCatcher();
  const started = performance.now();

  /** Runs one check; returns the error when the property failed. */
  const attempt = async (input: Uint8Array, where: string): Promise<unknown> => {
    watchdog.busy(input, where);
    const t0 = performance.now();
    let failure: unknown;
    let wasAsync = false;
    try {
      const pending = target.check(input);
      if (pending instanceof Promise) {
        wasAsync = true;
        await withDeadline(
          pending,
          hangMs,
          () => new PropertyError(`the input did not settle within ${hangMs} ms (a hang)`),
        );
      }
    } catch (error) {
      failure = error;
    }
    const took = performance.now() - t0;
    watchdog.idle();
    if (failure === undefined && took > hangMs) {
      failure = new PropertyError(`the input took ${Math.round(took)} ms (limit ${hangMs} ms)`);
    }
    stats.inputs++;
    // Rejections nobody handled and errors thrown from callbacks surface a turn later.
    if (failure === undefined) {
      const escaped = await escapes.collect(wasAsync || stats.inputs % 64 === 0);
      if (escaped !== undefined) failure = new PropertyError(escaped);
    }
    return failure;
  };

  const fail = (input: Uint8Array, where: string, error: unknown): never => {
    throw new Error(report(name, where, input, error), { cause: error });
  };

  try {
    if (only === undefined) {
      for (const entry of corpus) {
        stats.corpus++;
        const where = `corpus file ${entry.file}`;
        const error = await attempt(entry.input, where);
        if (error !== undefined) fail(entry.input, where, error);
      }
      for (const [i, input] of target.seeds.entries()) {
        const error = await attempt(input, `seed input ${i}`);
        if (error !== undefined) fail(input, `seed input ${i}`, error);
      }
    }
    for (let i = only ?? 0;; i++) {
      if (only === undefined && performance.now() - started >= budgetMs) break;
      const rand = prng((seed ^ Math.imul(i + 1, 0x9e3779b1)) >>> 0);
      const input = mutate(pool, rand, maxLength, target.mutators ?? []);
      const where = `seed ${seed}, iteration ${i} (replay: VIF_FUZZ_SEED=${seed}:${i})`;
      const error = await attempt(input, where);
      if (error !== undefined) fail(input, where, error);
      if (only !== undefined) break;
    }
    const escaped = await escapes.collect(true);
    if (escaped !== undefined) throw new Error(`fuzz ${name}: after the last input: ${escaped}`);
  } finally {
    watchdog.stop();
    escapes.stop();
  }
  stats.elapsedMs = performance.now() - started;
  return stats;
}

function report(name: string, where: string, input: Uint8Array, error: unknown): string {
  const text = error instanceof Error ? `${error.name}: ${error.message}` : String(error);
  const first = text.split("\n", 1)[0]!.slice(0, 200);
  return [
    `fuzz ${name} failed at ${where}:`,
    text,
    "",
    `The input (${input.length} bytes); keep it as tests/fuzz/corpus/${name}/<what-it-found>.hex:`,
    `# found: ${first}`,
    `# (${where.replace(/ \(replay.*$/, "")})`,
    toHex(input),
  ].join("\n");
}

async function readCorpus(name: string): Promise<CorpusEntry[]> {
  const dir = new URL(`${name}/`, CORPUS);
  let files: string[];
  try {
    files = (await Array.fromAsync(Deno.readDir(dir)))
      .filter((e) => e.isFile && e.name.endsWith(".hex"))
      .map((e) => e.name)
      .sort();
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return [];
    throw error;
  }
  const entries: CorpusEntry[] = [];
  for (const file of files) {
    const text = await Deno.readTextFile(new URL(file, dir));
    try {
      entries.push({ file: `${name}/${file}`, input: fromHex(text) });
    } catch (cause) {
      throw new SyntaxError(`Corpus file "${name}/${file}" is not hex`, { cause });
    }
  }
  return entries;
}

/**
 * Hex text, 32 bytes a line.
 *
 * @param bytes the bytes
 * @returns the text
 */
export function toHex(bytes: Uint8Array): string {
  const lines: string[] = [];
  for (let i = 0; i < bytes.length; i += 32) {
    lines.push([...bytes.subarray(i, i + 32)].map((b) => b.toString(16).padStart(2, "0")).join(""));
  }
  return lines.join("\n");
}

/**
 * Reads hex text: `#` lines are comments, white space is ignored.
 *
 * @param text the text
 * @returns the bytes
 * @throws {SyntaxError} when it is not hex
 */
export function fromHex(text: string): Uint8Array {
  const digits = text.split("\n").filter((line) => !line.trimStart().startsWith("#")).join("")
    .replace(/\s+/g, "");
  if (!/^(?:[0-9a-fA-F]{2})*$/.test(digits)) throw new SyntaxError("Odd or non-hex digits");
  const out = new Uint8Array(digits.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(digits.slice(2 * i, 2 * i + 2), 16);
  return out;
}
