/**
 * `vif daemon` (started by `vif connect`, not listed) and `vif loglevel`:
 * the daemon itself and the command that changes its log level now
 * (`vif gather-logs`, which collects its log, is `gather_logs.ts`).
 *
 * @module
 */

import { type Command, InvalidArgumentError, Option } from "commander";
import { LOG_LEVELS, type LogLevel } from "../daemon/control.ts";
import type { CliContext } from "./context.ts";
import { asUserError, UserError } from "./errors.ts";
import { daemonClient, STATE_DIR_HELP, stateDirOf } from "./daemon_client.ts";

function parseOwner(value: string): { uid: number; gid: number } {
  const m = /^(\d+):(\d+)$/.exec(value);
  if (!m) throw new InvalidArgumentError(`"${value}" is not UID:GID.`);
  return { uid: Number(m[1]), gid: Number(m[2]) };
}

/**
 * Adds `vif daemon` and `vif loglevel` to the program.
 *
 * @param program the root command
 * @param context the run's shared state
 */
export function registerDaemon(program: Command, context: CliContext): void {
  program
    .command("daemon", { hidden: true })
    .description("run the daemon that holds the connection (vif connect starts it)")
    .option("--state-dir <dir>", STATE_DIR_HELP)
    .option("--owner <uid:gid>", "the user whose control socket it is", parseOwner)
    .addOption(
      new Option("--log-level <level>", "the starting log level").choices([...LOG_LEVELS])
        .default("info"),
    )
    .option("--log-stderr", "copy the log to stderr too")
    .option("--detach", "start it in a session of its own, with no terminal, and return")
    .action(async (
      options: {
        stateDir?: string;
        owner?: { uid: number; gid: number };
        logLevel: LogLevel;
        logStderr?: boolean;
        detach?: boolean;
      },
    ) => {
      if (Deno.uid() !== 0) {
        throw new UserError(`the daemon must run as root (this is uid ${Deno.uid()})`, {
          hint: "Let `vif connect` start it (it uses sudo), or run it with sudo.",
        });
      }
      if (options.detach) {
        const { detachDaemon } = await import("./daemon_client.ts");
        await detachDaemon({
          stateDir: stateDirOf(options.stateDir, context.io.env),
          owner: options.owner ?? { uid: 0, gid: 0 },
          level: options.logLevel,
          env: context.io.env,
        });
        return;
      }
      const [{ runDaemon }, { self }] = await Promise.all([
        import("../daemon/daemon.ts"),
        import("../daemon/self.ts"),
      ]);
      try {
        context.exitCode = await runDaemon({
          stateDir: stateDirOf(options.stateDir, context.io.env),
          owner: options.owner ?? { uid: 0, gid: 0 },
          self: self(context.io.env),
          level: options.logLevel,
          echo: options.logStderr ?? false,
        });
      } catch (error) {
        throw asUserError(error); // a state directory that is not root's alone
      }
    });

  program
    .command("loglevel")
    .description("change the daemon's log level now (debug, info or warn)")
    .argument("<level>", `one of ${LOG_LEVELS.join(", ")}`)
    .option("--state-dir <dir>", STATE_DIR_HELP)
    .addHelpText("after", "\nExample:\n  vif loglevel debug   # then: vif gather-logs")
    .action(async (level: string, options: { stateDir?: string }) => {
      if (!(LOG_LEVELS as readonly string[]).includes(level)) {
        throw new UserError(`unknown log level "${level}"`, {
          hint: `Use one of: ${LOG_LEVELS.join(", ")}.`,
          exitCode: 2,
        });
      }
      const client = await daemonClient(stateDirOf(options.stateDir, context.io.env));
      if (!client) {
        throw new UserError("the vif daemon is not running", {
          hint: "Start it with `vif connect`; `vif connect --debug` starts it at level debug.",
        });
      }
      try {
        const r = await client.request("loglevel", { level: level as LogLevel });
        context.io.stdout(`log level ${r.previous} → ${r.level}\n`);
      } catch (error) {
        throw asUserError(error);
      } finally {
        client.close();
      }
    });
}
