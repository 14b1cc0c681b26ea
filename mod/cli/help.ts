/**
 * `vif help [command]`: the same text as `vif [command] --help`, with an
 * unknown command reported like everywhere else.
 *
 * @module
 */

import type { Command } from "commander";
import type { CliContext } from "./context.ts";
import { unknownCommand } from "./_usage.ts";

/**
 * Adds `vif help [command]` to the program. Register it last: commands are
 * listed in the order they are added.
 *
 * @param program The root command.
 * @param _context The run's shared state (help writes through commander's output).
 */
export function registerHelp(program: Command, _context: CliContext): void {
  program.helpCommand(false); // Ours replaces commander's, which exits 1 on an unknown name.
  program
    .command("help")
    .argument("[command]", "the command to explain")
    .description("show help for vif or for one command")
    .action((name: string | undefined) => {
      if (name === undefined) return program.outputHelp();
      const command = program.commands.find((c) => c.name() === name || c.aliases().includes(name));
      if (command === undefined) throw unknownCommand(name, program);
      command.outputHelp();
    });
}
