/**
 * `vif quit` (also `vif disconnect`): disconnect and stop the daemon;
 * `--force` also cleans up after a daemon that died, and stops one that hangs.
 *
 * @module
 */

import type { Command } from "commander";
import { SOCKET_NAME } from "../daemon/control.ts";
import { RESOLV_CONF_STATE } from "../daemon/dns_config.ts";
import { daemonAlive, readDaemonState, STATE_FILE, waitDaemonGone } from "../daemon/state.ts";
import { secureStateDir } from "../daemon/state_dir.ts";
import type { CliContext } from "./context.ts";
import { asUserError, UserError } from "./errors.ts";
import { daemonClient, quitDaemon, STATE_DIR_HELP, stateDirOf } from "./daemon_client.ts";

const EXAMPLES = `
Examples:
  vif quit
  # The daemon was killed, or hangs: stop it and put back what it changed
  sudo vif quit --force

Exit codes: 0 done (or nothing to do), 1 failed or leftovers found (see the message).`;

async function leftovers(stateDir: string): Promise<string[]> {
  const found: string[] = [];
  for (const name of [STATE_FILE, SOCKET_NAME, RESOLV_CONF_STATE]) {
    try {
      await Deno.lstat(`${stateDir}/${name}`);
      found.push(name);
    } catch {
      // not there
    }
  }
  return found;
}

/**
 * Adds `vif quit` and its alias `vif disconnect` to the program.
 *
 * @param program the root command
 * @param context the run's shared state
 */
export function registerQuit(program: Command, context: CliContext): void {
  program
    .command("quit")
    .alias("disconnect")
    .description("disconnect, put everything back and stop the daemon")
    .option("--force", "also clean up after a daemon that died, and stop one that hangs")
    .option("--state-dir <dir>", STATE_DIR_HELP)
    .addHelpText("after", EXAMPLES)
    .action(async (options: { force?: boolean; stateDir?: string }) => {
      const stateDir = stateDirOf(options.stateDir, context.io.env);
      const out = (line: string) => context.io.stdout(line + "\n");
      const state = await readDaemonState(stateDir);
      const client = await daemonClient(stateDir);
      if (client) {
        try {
          const r = await quitDaemon(client, options.force ? 10_000 : 15_000);
          out(
            r.wasConnected
              ? "disconnected; the daemon stopped"
              : "the daemon stopped (it was not connected)",
          );
          if (!r.stopped && !options.force) {
            throw new UserError(`the daemon (pid ${r.pid}) did not stop`, {
              hint: "Run `vif quit --force`.",
            });
          }
        } catch (error) {
          if (!options.force) throw asUserError(error);
        } finally {
          client.close();
        }
      }
      if (state && await daemonAlive(state.pid)) {
        if (!options.force) {
          throw new UserError(`the daemon (pid ${state.pid}) runs but does not answer`, {
            hint: "Run `vif quit --force` to stop it and put back what it changed.",
          });
        }
        out(`stopping the daemon (pid ${state.pid})`);
        try {
          Deno.kill(state.pid, "SIGTERM");
          if (!await waitDaemonGone(state.pid, 10_000)) {
            Deno.kill(state.pid, "SIGKILL");
            await waitDaemonGone(state.pid, 5_000);
          }
        } catch (error) {
          throw new UserError(
            `cannot stop the daemon (pid ${state.pid}): ${(error as Error).message}`,
            {
              hint: "Run `sudo vif quit --force`.",
              cause: error,
            },
          );
        }
      }
      const left = await leftovers(stateDir);
      if (left.length === 0) {
        if (!client) out("not connected; nothing to do");
        return;
      }
      if (!options.force) {
        throw new UserError(
          `the daemon is gone but left changes behind (${left.join(", ")} in ${stateDir})`,
          { hint: "Run `vif quit --force` to put them back." },
        );
      }
      if (Deno.uid() !== 0) {
        throw new UserError("putting back what the daemon changed needs root", {
          hint: "Run `sudo vif quit --force`.",
        });
      }
      let safeDir: string;
      try {
        // Root writes /etc/resolv.conf from what is in there: only from a directory that is root's.
        safeDir = await secureStateDir(stateDir);
      } catch (error) {
        throw asUserError(error);
      }
      // Loaded here: the daemon's modules bring gRPC, which no other quit needs.
      const { recoverAfterCrash } = await import("../daemon/daemon.ts");
      const done = await recoverAfterCrash(safeDir, () => {});
      out(done.length ? `cleaned up: ${done.join(", ")}` : "cleaned up");
    });
}
