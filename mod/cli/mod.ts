/**
 * The command line of `vif`: {@linkcode main} parses the arguments with
 * commander, runs the command and returns the exit code. Nothing here calls
 * `Deno.exit`, so the whole CLI runs in-process in tests.
 *
 * Exit codes: 0 success, 1 failure, 2 usage error. Every failure prints two
 * lines on stderr (what happened, what to do); `--debug` or `VIF_DEBUG=1`
 * adds the stack trace.
 *
 * @example Run a command in-process
 * ```ts
 * import { main, memoryIo } from "./mod.ts";
 *
 * const io = memoryIo();
 * const code = await main(["version"], { io });
 * if (code !== 0 || !io.out.startsWith("vif ")) throw new Error(io.err);
 * ```
 *
 * @module
 */

import { Command, CommanderError } from "commander";
import { VERSION } from "../version.ts";
import { COMMANDS } from "./commands.ts";
import type { CliContext } from "./context.ts";
import { debugRequested, ExitCode, reportError } from "./errors.ts";
import { colorWanted } from "./terminal.ts";
import { type CliIo, denoIo, memoryIo } from "./io.ts";
import { serveAlias } from "./manager.ts";
import { unknownCommand, usageError } from "./_usage.ts";

export type { CliContext, RegisterCommand } from "./context.ts";
export { ExitCode, formatError, reportError, UserError } from "./errors.ts";
export { type CliIo, denoIo, type MemoryIo, memoryIo } from "./io.ts";

/** Options of {@linkcode main}. */
export interface MainOptions {
  /** Where output goes and where the environment comes from; the process when absent. */
  io?: CliIo;
}

const EPILOGUE = `
Traffic-manager:
  vif --serve [flags]  run the traffic-manager (the same as "vif manager")

Exit codes:
  0  success
  1  failure: the message says what failed and what to do
  2  usage error: unknown command, unknown flag or bad value

Environment:
  VIF_DEBUG=1  print stack traces with errors, like --debug
  NO_COLOR=1   no colour, like --no-color`;

/**
 * Runs `vif` with the given arguments.
 *
 * @param args The arguments after the program name (`Deno.args`).
 * @param options Where to write; the process's stdout and stderr by default.
 * @returns The exit code: 0 success, 1 failure, 2 usage error.
 *
 * @example
 * ```ts
 * import { main, memoryIo } from "./mod.ts";
 *
 * const io = memoryIo();
 * if (await main(["frob"], { io }) !== 2) throw new Error("expected a usage error");
 * ```
 */
export async function main(args: readonly string[], options: MainOptions = {}): Promise<number> {
  const io = options.io ?? denoIo();
  const context: CliContext = {
    io,
    debug: debugRequested(args, io.env),
    color: colorWanted(args, io),
    exitCode: ExitCode.Ok,
  };
  try {
    await createProgram(context).parseAsync(serveAlias(args), { from: "user" });
    return context.exitCode;
  } catch (error) {
    // --help and the like end parsing by "exiting" 0 through exitOverride.
    if (error instanceof CommanderError && error.exitCode === 0) return ExitCode.Ok;
    return reportError(error, io.stderr, { debug: context.debug });
  }
}

/** What {@linkcode parseOnly} found: the command, its arguments and options. */
export interface ParsedCommand {
  /** The command's path below `vif` (`["install"]`); empty for `vif` alone. */
  command: string[];
  /** Its positional arguments, as the action would get them. */
  args: unknown[];
  /** Its options, after defaults and parsers. */
  options: Record<string, unknown>;
}

/**
 * Parses a command line as {@linkcode main} does, flags, choices and value
 * parsers included, without running anything: every action is replaced by
 * one that records what it would have been given. Tests use it to check
 * that documented command lines are valid.
 *
 * @param args The arguments after the program name.
 * @returns What would run.
 * @throws {UserError} A usage error, as `main` would report it.
 */
export async function parseOnly(args: readonly string[]): Promise<ParsedCommand> {
  const context: CliContext = { io: memoryIo(), debug: false, exitCode: ExitCode.Ok };
  const program = createProgram(context);
  let parsed: ParsedCommand | undefined;
  forEachCommand(program, (command) => {
    command.action((...values: unknown[]) => {
      const path: string[] = [];
      for (let c: Command | null = command; c && c !== program; c = c.parent) {
        path.unshift(c.name());
      }
      parsed = { command: path, args: values.slice(0, -2), options: command.opts() };
    });
  });
  await program.parseAsync(serveAlias(args), { from: "user" });
  if (!parsed) throw new Error(`Nothing would run for "${args.join(" ")}"`);
  return parsed;
}

/**
 * Builds the commander program for one run.
 *
 * @param context The run's shared state.
 * @returns The root command with every command of {@linkcode COMMANDS}.
 */
function createProgram(context: CliContext): Command {
  const program = new Command("vif")
    .description(
      "Make a remote Kubernetes cluster's network local: programs on this machine reach\n" +
        "pod and service addresses and resolve cluster names, through a TUN device.",
    )
    .version(`vif ${VERSION}`, "-V, --version", "print the version of vif")
    .helpOption("-h, --help", "show help")
    .option("--debug", "print stack traces with errors (or set VIF_DEBUG=1)")
    .option("--no-color", "never colour the output (or set NO_COLOR; only terminals get colour)")
    // Root flags that start a role: the traffic-manager's `--serve` (DESIGN.md
    // §1) is followed by the manager's own flags, so main() rewrites it to the
    // `manager` command before parsing (serveAlias); it is only listed here.
    .addHelpText("after", EPILOGUE)
    .allowExcessArguments(true) // Stray words reach the action: unknown commands.
    .action((_options: Record<string, unknown>, command: Command) => {
      const [name] = command.args;
      if (name !== undefined) throw unknownCommand(name, program);
      program.outputHelp(); // A bare `vif` shows what it can do.
    });

  for (const register of COMMANDS) register(program, context);

  // After registration, so that every command gets it however it was made.
  forEachCommand(program, (command) => {
    command
      .configureOutput({
        writeOut: (text) => context.io.stdout(text),
        writeErr: (text) => context.io.stderr(text),
        outputError: () => {}, // Reported by main() as two lines, with the hint.
      })
      .exitOverride((error) => {
        throw error.exitCode === 0 ? error : usageError(error, command);
      });
    if (command !== program) command.allowExcessArguments(false);
  });
  return program;
}

function forEachCommand(command: Command, visit: (command: Command) => void): void {
  visit(command);
  for (const sub of command.commands) forEachCommand(sub, visit);
}
