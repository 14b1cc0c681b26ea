/**
 * Usage errors: commander's parse errors and unknown commands, turned into
 * {@linkcode UserError}s with exit code 2 and a hint that names the help to read.
 *
 * @module
 */

import type { Command, CommanderError } from "commander";
import { ExitCode, UserError } from "./errors.ts";

/**
 * The full name of `command` as typed: `vif`, `vif version`.
 *
 * @param command A command of the program.
 * @returns Its name and its ancestors' names, root first.
 */
export function commandPath(command: Command): string {
  const names: string[] = [];
  for (let c: Command | null = command; c !== null; c = c.parent) names.unshift(c.name());
  return names.join(" ");
}

/**
 * The error for a command name that `program` does not have, suggesting the
 * closest one when it is a likely typo.
 *
 * @param name What was typed.
 * @param program The root command.
 * @returns The usage error to throw.
 */
export function unknownCommand(name: string, program: Command): UserError {
  const names = program.commands.flatMap((c) => [c.name(), ...c.aliases()]);
  const guess = closest(name, names);
  const root = commandPath(program);
  const suggestion = guess === undefined ? "" : `Did you mean "${root} ${guess}"? `;
  return new UserError(`unknown command ${JSON.stringify(name)}`, {
    hint: `${suggestion}Run "${root} --help" to see the commands.`,
    exitCode: ExitCode.Usage,
  });
}

/**
 * Turns a parse error that commander raised in `command` into a usage error:
 * the first sentence of commander's message is what happened; the rest of it,
 * any "did you mean", and where to read the usage make the hint.
 *
 * @param error What commander passed to its exit callback.
 * @param command The command whose arguments were being parsed.
 * @returns The usage error to throw.
 */
export function usageError(error: CommanderError, command: Command): UserError {
  const [first = "", ...more] = error.message.split("\n");
  const text = first.replace(/^error: /, "").replaceAll(/'([^']*)'/g, '"$1"');
  // "too many arguments for "version". Expected 0 arguments but got 1: x."
  const stop = text.search(/\.\s/);
  const message = (stop === -1 ? text : text.slice(0, stop)).replace(/\.$/, "");
  const detail = stop === -1 ? "" : text.slice(stop + 1).trim().replace(/\.?$/, ". ");
  const guess = more.join(" ").match(/Did you mean (.+?)\?/)?.[1];
  const suggestion = guess === undefined ? "" : `Did you mean "${guess}"? `;
  const what = error.code === "commander.unknownOption" ? "its options" : "its usage";
  return new UserError(message, {
    hint: `${suggestion}${detail}Run "${commandPath(command)} --help" to see ${what}.`,
    exitCode: ExitCode.Usage,
    cause: error,
  });
}

/** The candidate within edit distance 2 (and less than the word's length) of `word`. */
function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Math.min(3, word.length);
  for (const candidate of candidates) {
    const distance = editDistance(word, candidate);
    if (distance < bestDistance) [best, bestDistance] = [candidate, distance];
  }
  return best;
}

/** Levenshtein distance with adjacent transpositions (optimal string alignment). */
function editDistance(a: string, b: string): number {
  const rows = Array.from({ length: a.length + 1 }, (_, i) => {
    const row = new Array<number>(b.length + 1).fill(0);
    row[0] = i;
    return row;
  });
  const at = (i: number, j: number) => rows[i]?.[j] ?? Infinity;
  for (let j = 0; j <= b.length; j++) rows[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      let d = Math.min(at(i - 1, j) + 1, at(i, j - 1) + 1, at(i - 1, j - 1) + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) {
        d = Math.min(d, at(i - 2, j - 2) + 1);
      }
      rows[i]![j] = d;
    }
  }
  return at(a.length, b.length);
}
