/**
 * What output looks like on a terminal: colour, and lines drawn in place.
 *
 * Colour is for people: it is on only when standard output is a terminal,
 * and never with `NO_COLOR` set (https://no-color.org), `TERM=dumb`, or
 * `--no-color` on the command line. Pipes and files get plain text, so
 * `vif status | grep` and tests see the same words with or without it.
 *
 * A line redrawn in place (`\r` then erase) must fit the terminal: a line
 * that wraps leaves its first rows behind on every redraw.
 * {@linkcode clipLine} cuts it to the width, escape sequences not counted.
 *
 * @example
 * ```ts
 * import { clipLine, palette } from "./terminal.ts";
 *
 * if (palette(false).red("FAIL") !== "FAIL") throw new Error("plain");
 * if (palette(true).red("FAIL") !== "\x1b[31mFAIL\x1b[39m") throw new Error("red");
 * if (clipLine("abcdefgh", 6) !== "abcd…") throw new Error(clipLine("abcdefgh", 6));
 * ```
 *
 * @module
 */

import type { CliIo } from "./io.ts";

/**
 * Whether this run colours its output: stdout a terminal, and neither
 * `--no-color` (before any `--`) nor `NO_COLOR` nor `TERM=dumb`.
 *
 * @param args The command line after the program name.
 * @param io The run's I/O.
 * @returns Whether to colour.
 */
export function colorWanted(args: readonly string[], io: CliIo): boolean {
  const end = args.indexOf("--");
  const ours = end === -1 ? args : args.slice(0, end);
  if (ours.includes("--no-color")) return false;
  if ((io.env("NO_COLOR") ?? "") !== "") return false;
  if (io.env("TERM") === "dumb") return false;
  return io.stdoutIsTerminal?.() ?? false;
}

/** SGR colours, each a function that is the identity when colour is off. */
export interface Palette {
  /** Whether these colour at all. */
  readonly on: boolean;
  /** Success. */
  green(text: string): string;
  /** Attention. */
  yellow(text: string): string;
  /** Failure. */
  red(text: string): string;
  /** Emphasis. */
  bold(text: string): string;
  /** Less important detail. */
  dim(text: string): string;
}

/**
 * The colours, or none.
 *
 * @param on Whether to colour (see {@linkcode colorWanted}).
 * @returns The palette.
 */
export function palette(on: boolean): Palette {
  const sgr = (open: number, close: number) => (text: string) =>
    on && text !== "" ? `\x1b[${open}m${text}\x1b[${close}m` : text;
  return {
    on,
    green: sgr(32, 39),
    yellow: sgr(33, 39),
    red: sgr(31, 39),
    bold: sgr(1, 22),
    dim: sgr(2, 22),
  };
}

/** An SGR or other CSI escape sequence. */
// deno-lint-ignore no-control-regex
const CSI = /\x1b\[[0-9;?]*[ -/]*[@-~]/g;

/**
 * The width a line takes on a terminal: escape sequences take none, and
 * every other code point one column (wide characters are rare in what vif
 * prints: names, addresses, numbers).
 *
 * @param text One line.
 * @returns Its width in columns.
 */
export function visibleWidth(text: string): number {
  return [...text.replace(CSI, "")].length;
}

/**
 * Cuts a line to fit `columns`, ending in `…` when cut, keeping escape
 * sequences whole (and closing colours with a reset when any was cut off).
 * The last column stays free: some terminals wrap on a full line.
 *
 * @param text One line, without a newline.
 * @param columns The terminal's width; anything below 2 leaves the line as it is.
 * @returns The line, at most `columns - 1` wide.
 */
export function clipLine(text: string, columns: number | undefined): string {
  if (columns === undefined || columns < 2) return text;
  const max = columns - 1;
  if (visibleWidth(text) <= max) return text;
  let out = "";
  let width = 0;
  let escapes = false;
  for (let i = 0; i < text.length;) {
    CSI.lastIndex = i;
    const m = text[i] === "\x1b" ? CSI.exec(text) : null;
    if (m && m.index === i) {
      out += m[0];
      escapes = true;
      i += m[0].length;
      continue;
    }
    const ch = String.fromCodePoint(text.codePointAt(i)!);
    if (width + 1 >= max) break;
    out += ch;
    width++;
    i += ch.length;
  }
  return out.trimEnd() + "…" + (escapes ? "\x1b[0m" : "");
}

/**
 * One progress line on stderr: redrawn in place on a terminal (clipped to
 * its width), else one plain line per step on stdout.
 */
export interface ProgressLine {
  /** Shows a step. */
  step(line: string): void;
  /** Erases the drawn line, if any; the next output starts on a clean line. */
  done(): void;
}

/**
 * Makes a {@linkcode ProgressLine}.
 *
 * @param io The run's I/O.
 * @param quiet Print nothing at all.
 * @returns The printer.
 */
export function progressLine(io: CliIo, quiet = false): ProgressLine {
  const tty = io.isTerminal?.() ?? false;
  let drawn = false;
  return {
    step(line) {
      if (quiet) return;
      if (tty) {
        io.stderr(`\r\x1b[2K${clipLine(`… ${line}`, io.columns?.())}`);
        drawn = true;
      } else io.stdout(line + "\n");
    },
    done() {
      if (drawn) io.stderr("\r\x1b[2K");
      drawn = false;
    },
  };
}
