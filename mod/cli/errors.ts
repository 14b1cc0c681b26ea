/**
 * Errors as the user sees them: every failure of a `vif` command ends as two
 * lines on stderr, what happened and what to do, and an exit code.
 *
 * @module
 */

/** Exit codes of `vif`, as listed at the end of `vif --help`. */
export const ExitCode = {
  /** The command did what was asked. */
  Ok: 0,
  /** The command failed; the message says what failed and what to do. */
  Failure: 1,
  /** The command line was wrong: unknown command, unknown flag or bad value. */
  Usage: 2,
} as const;

/** Options of {@linkcode UserError}. */
export interface UserErrorOptions {
  /** What the user can do about it, as a full sentence. */
  hint: string;
  /** The exit code `vif` ends with; {@linkcode ExitCode.Failure} when absent. */
  exitCode?: number;
  /** The error that led to this one. */
  cause?: unknown;
}

/**
 * A failure that the user can act on: `message` says what happened (sentence
 * case, no final period, values quoted) and `hint` says what to do.
 *
 * @example Refuse a bad value
 * ```ts
 * import { ExitCode, UserError } from "./errors.ts";
 *
 * const error = new UserError('unknown output format "yaml"', {
 *   hint: 'Use "--output text" or "--output json".',
 *   exitCode: ExitCode.Usage,
 * });
 * if (error.exitCode !== 2) throw new Error("expected a usage error");
 * ```
 */
export class UserError extends Error {
  /** What the user can do about it. */
  readonly hint: string;
  /** The exit code `vif` ends with. */
  readonly exitCode: number;

  /**
   * Makes a user error.
   *
   * @param message What happened.
   * @param options The hint, the exit code and the cause.
   */
  constructor(message: string, options: UserErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "UserError";
    this.hint = options.hint;
    this.exitCode = options.exitCode ?? ExitCode.Failure;
  }
}

/**
 * Shows an error of another layer as a user error when it carries a `hint`
 * (a `KubeError`, a `ConnectError`, an error the daemon answered with): its
 * message and hint become the two lines. Anything else is returned as it is.
 *
 * @param error Whatever was thrown.
 * @returns The error to throw.
 *
 * @example
 * ```ts
 * import { asUserError, UserError } from "./errors.ts";
 *
 * const e = Object.assign(new Error("no manager"), { hint: "Run vif install." });
 * if (!(asUserError(e) instanceof UserError)) throw new Error("not converted");
 * ```
 */
export function asUserError(error: unknown): unknown {
  const hint = (error as { hint?: unknown } | null)?.hint;
  if (error instanceof Error && !(error instanceof UserError) && typeof hint === "string") {
    return new UserError(error.message, { hint, cause: error });
  }
  return error;
}

/** Options of {@linkcode formatError} and {@linkcode reportError}. */
export interface FormatErrorOptions {
  /** Add the stack trace and the chain of causes (`--debug`, `VIF_DEBUG=1`). */
  debug?: boolean;
}

const BUG_HINT =
  'This is unexpected; run the command again with "--debug" to see where it happened.';

/**
 * Renders any thrown value as the text `vif` prints for it: `vif: <message>`,
 * then the hint, then (only with `debug`) the stack and the causes.
 *
 * @param error Whatever was thrown.
 * @param options Whether to add the stack trace.
 * @returns The text, ending in a newline.
 *
 * @example Two lines for a user error
 * ```ts
 * import { formatError, UserError } from "./errors.ts";
 *
 * const text = formatError(new UserError('unknown command "frob"', {
 *   hint: 'Run "vif --help" to see the commands.',
 * }));
 * if (text !== 'vif: unknown command "frob"\nRun "vif --help" to see the commands.\n') {
 *   throw new Error(text);
 * }
 * ```
 */
export function formatError(error: unknown, options: FormatErrorOptions = {}): string {
  const message = error instanceof Error ? error.message : String(error);
  const hint = error instanceof UserError ? error.hint : BUG_HINT;
  // One line each, whatever the message holds: the first line is what happened.
  const lines = [`vif: ${firstLine(message)}`, firstLine(hint)];
  if (options.debug) {
    let current: unknown = error;
    for (let depth = 0; current !== undefined && depth < 8; depth++) {
      const stack = current instanceof Error ? current.stack ?? current.message : String(current);
      lines.push(depth === 0 ? stack : `caused by: ${stack}`);
      current = current instanceof Error ? current.cause : undefined;
    }
  }
  return lines.join("\n") + "\n";
}

/**
 * Prints `error` with {@linkcode formatError} and tells the exit code it
 * deserves: the {@linkcode UserError.exitCode}, else {@linkcode ExitCode.Failure}.
 *
 * @param error Whatever was thrown.
 * @param write Where the text goes (stderr).
 * @param options Whether to add the stack trace.
 * @returns The exit code.
 *
 * @example
 * ```ts
 * import { reportError } from "./errors.ts";
 *
 * let printed = "";
 * const code = reportError(new Error("boom"), (text) => printed += text);
 * if (code !== 1 || !printed.startsWith("vif: boom\n")) throw new Error(printed);
 * ```
 */
export function reportError(
  error: unknown,
  write: (text: string) => void,
  options: FormatErrorOptions = {},
): number {
  write(formatError(error, options));
  return error instanceof UserError ? error.exitCode : ExitCode.Failure;
}

/**
 * Tells whether stack traces were asked for: `--debug` among the arguments
 * (before a `--`) or `VIF_DEBUG` set to `1` or `true`. Works even when the rest
 * of the command line cannot be parsed.
 *
 * @param args The command-line arguments.
 * @param env Reads an environment variable.
 * @returns Whether to print stack traces.
 *
 * @example
 * ```ts
 * import { debugRequested } from "./errors.ts";
 *
 * const none = () => undefined;
 * if (!debugRequested(["version", "--debug"], none)) throw new Error("flag missed");
 * if (debugRequested(["--", "--debug"], none)) throw new Error("after -- is not ours");
 * ```
 */
export function debugRequested(
  args: readonly string[],
  env: (name: string) => string | undefined,
): boolean {
  const end = args.indexOf("--");
  const ours = end === -1 ? args : args.slice(0, end);
  const variable = env("VIF_DEBUG")?.toLowerCase();
  return ours.includes("--debug") || variable === "1" || variable === "true";
}

function firstLine(text: string): string {
  const line = text.trim().split("\n", 1)[0] ?? "";
  return line === "" ? "(no message)" : line;
}
