/**
 * `vif daemon` (started by `vif connect`, not listed), `vif loglevel` and
 * `vif gather-logs`: the daemon itself and the two commands that look into it.
 *
 * @module
 */

import { type Command, InvalidArgumentError, Option } from "commander";
import { LOG_LEVELS, type LogLevel } from "../daemon/control.ts";
import type { CliContext } from "./context.ts";
import { asUserError, UserError } from "./errors.ts";
import { daemonClient, STATE_DIR_HELP, stateDirOf } from "./daemon_client.ts";
import { fetchStatus } from "./status.ts";
import { versionInfo } from "./version.ts";

function parseOwner(value: string): { uid: number; gid: number } {
  const m = /^(\d+):(\d+)$/.exec(value);
  if (!m) throw new InvalidArgumentError(`"${value}" is not UID:GID.`);
  return { uid: Number(m[1]), gid: Number(m[2]) };
}

/**
 * Adds `vif daemon`, `vif loglevel` and `vif gather-logs` to the program.
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

  program
    .command("gather-logs")
    .description("write the daemon's logs, status and versions to one archive for a bug report")
    .option("-o, --output <file>", "the archive to write (default: vif-logs-<time>.tar.gz)")
    .option("--state-dir <dir>", STATE_DIR_HELP)
    .addHelpText(
      "after",
      "\nExamples:\n  vif loglevel debug && <reproduce the problem> && sudo vif gather-logs\n" +
        "  vif gather-logs -o /tmp/vif-bug.tar.gz",
    )
    .action(async (options: { output?: string; stateDir?: string }) => {
      const stateDir = stateDirOf(options.stateDir, context.io.env);
      const stamp = new Date().toISOString().replace(/[:.]/g, "-");
      const output = options.output ?? `vif-logs-${stamp}.tar.gz`;
      const work = await Deno.makeTempDir({ prefix: "vif-logs-" });
      const dir = `${work}/vif-logs-${stamp}`;
      try {
        await Deno.mkdir(dir);
        const status = await fetchStatus(stateDir).catch((e) => ({
          error: String(e?.message ?? e),
        }));
        await Deno.writeTextFile(`${dir}/status.json`, JSON.stringify(status, null, 2) + "\n");
        await Deno.writeTextFile(
          `${dir}/version.json`,
          JSON.stringify(versionInfo(), null, 2) + "\n",
        );
        const copied: string[] = [];
        const skipped: string[] = [];
        const names = await Array.fromAsync(Deno.readDir(stateDir), (e) => e.name).catch(
          () => [] as string[],
        );
        for (const name of names.sort()) {
          if (!/^daemon\.log(\.\d+)?$|^daemon\.json$/.test(name)) continue;
          try {
            // Run with sudo, a link here could hand any of root's files to the archive.
            if (!(await Deno.lstat(`${stateDir}/${name}`)).isFile) {
              throw new Error("not a regular file");
            }
            await Deno.copyFile(`${stateDir}/${name}`, `${dir}/${name}`);
            copied.push(name);
          } catch (error) {
            skipped.push(`${name} (${(error as Error).message})`);
          }
        }
        const tar = await new Deno.Command("tar", {
          args: [
            "-czf",
            output.startsWith("/") ? output : `${Deno.cwd()}/${output}`,
            "-C",
            work,
            `vif-logs-${stamp}`,
          ],
          stdout: "null",
          stderr: "piped",
        }).output().catch((e) => ({ success: false, stderr: new TextEncoder().encode(e.message) }));
        if (!tar.success) {
          throw new UserError(
            `cannot write "${output}": ${new TextDecoder().decode(tar.stderr).trim()}`,
            {
              hint: "Check that tar is installed and the directory is writable, or pass -o FILE.",
            },
          );
        }
        context.io.stdout(
          `wrote ${output}: status, versions${copied.length ? `, ${copied.join(", ")}` : ""}\n`,
        );
        if (skipped.length) {
          context.io.stderr(
            `vif: left out ${skipped.join(", ")}; run it with sudo to include them\n`,
          );
        }
        if (!copied.some((n) => n.startsWith("daemon.log"))) {
          context.io.stderr(`vif: no daemon log in ${stateDir} (the daemon has not run there)\n`);
        }
      } finally {
        await Deno.remove(work, { recursive: true }).catch(() => {});
      }
    });
}
