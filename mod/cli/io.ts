/**
 * Where the command line writes and what it reads from its environment, so
 * that {@linkcode main} can run in-process in tests.
 *
 * @module
 */

/** The outside world of one `vif` run. */
export interface CliIo {
  /** Writes to standard output. */
  stdout(text: string): void;
  /** Writes to standard error. */
  stderr(text: string): void;
  /** Reads an environment variable; `undefined` when unset or not allowed. */
  env(name: string): string | undefined;
  /** Whether stderr is a terminal (progress is then drawn in place); false when absent. */
  isTerminal?(): boolean;
  /** Whether stdout is a terminal (output may then be coloured); false when absent. */
  stdoutIsTerminal?(): boolean;
  /** The terminal's width in columns; undefined when not a terminal or unknown. */
  columns?(): number | undefined;
}

/**
 * The real process: `Deno.stdout`, `Deno.stderr` and `Deno.env`. A closed
 * stdout (`vif --help | head -1`) is not an error.
 *
 * @returns The process's I/O.
 */
export function denoIo(): CliIo {
  return {
    stdout: (text) => writeAll(Deno.stdout, text),
    stderr: (text) => writeAll(Deno.stderr, text),
    isTerminal: () => Deno.stderr.isTerminal(),
    stdoutIsTerminal: () => Deno.stdout.isTerminal(),
    columns() {
      try {
        return Deno.consoleSize().columns || undefined;
      } catch {
        return undefined; // Neither stdin nor stdout nor stderr is a terminal.
      }
    },
    env(name) {
      try {
        return Deno.env.get(name);
      } catch {
        return undefined; // No --allow-env: behave as if unset.
      }
    },
  };
}

/** A {@linkcode CliIo} that keeps what is written, for tests. */
export interface MemoryIo extends CliIo {
  /** Everything written to standard output. */
  readonly out: string;
  /** Everything written to standard error. */
  readonly err: string;
}

/**
 * Makes a {@linkcode CliIo} that records output in memory.
 *
 * @param env The environment it shows; empty when absent.
 * @returns The recording I/O.
 *
 * @example
 * ```ts
 * import { memoryIo } from "./io.ts";
 *
 * const io = memoryIo({ VIF_DEBUG: "1" });
 * io.stdout("hello\n");
 * if (io.out !== "hello\n" || io.env("VIF_DEBUG") !== "1") throw new Error("not recorded");
 * ```
 */
export function memoryIo(env: Record<string, string> = {}): MemoryIo {
  let out = "";
  let err = "";
  return {
    get out() {
      return out;
    },
    get err() {
      return err;
    },
    stdout: (text) => void (out += text),
    stderr: (text) => void (err += text),
    env: (name) => Object.hasOwn(env, name) ? env[name] : undefined,
  };
}

const encoder = new TextEncoder();

function writeAll(file: { writeSync(bytes: Uint8Array): number }, text: string): void {
  let bytes = encoder.encode(text);
  try {
    while (bytes.length > 0) bytes = bytes.subarray(file.writeSync(bytes));
  } catch (error) {
    if (!(error instanceof Deno.errors.BrokenPipe)) throw error;
  }
}
