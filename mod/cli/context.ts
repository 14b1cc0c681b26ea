/**
 * What every command of `vif` is given, and the shape of a command module.
 *
 * @module
 */

import type { Command } from "commander";
import type { CliIo } from "./io.ts";

/** The state of one `vif` run that commands share. */
export interface CliContext {
  /** Where output goes and where the environment comes from. */
  readonly io: CliIo;
  /** Whether `--debug` or `VIF_DEBUG=1` asked for stack traces and detail. */
  readonly debug: boolean;
  /**
   * Whether output for people may be coloured (stdout a terminal, no
   * `NO_COLOR`, no `--no-color`; see `terminal.ts`). Absent: no colour.
   */
  readonly color?: boolean;
  /**
   * The exit code `main()` returns when parsing and the action end
   * without throwing; an action that wants a non-zero code without an error
   * message sets it. Failures throw a `UserError` instead.
   */
  exitCode: number;
}

/**
 * Adds one command (its name, one-line description, options and action) to
 * the program. A command module exports one of these and is listed in
 * `commands.ts`.
 *
 * @param program The root `vif` command.
 * @param context The run's shared state; the action writes through `context.io`.
 */
export type RegisterCommand = (program: Command, context: CliContext) => void;
