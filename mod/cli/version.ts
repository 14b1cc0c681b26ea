/**
 * `vif version`: the version of vif and of the runtime it carries.
 *
 * @module
 */

import type { Command } from "commander";
import { VERSION } from "../version.ts";
import type { CliContext } from "./context.ts";
import { STATE_DIR_HELP, stateDirOf } from "./daemon_client.ts";
import { formatStructured, type OutputFormat, outputOption } from "./output.ts";

/** What `vif version --output json` prints. */
export interface VersionInfo {
  /** The version of vif. */
  vif: string;
  /** The version of the Deno runtime. */
  deno: string;
  /** The version of V8. */
  v8: string;
  /** The version of TypeScript built into Deno. */
  typescript: string;
  /** The target triple the runtime was built for: CPU architecture and OS. */
  target: string;
}

/**
 * Collects the versions of vif and of the runtime.
 *
 * @returns The versions.
 *
 * @example
 * ```ts
 * import { versionInfo } from "./version.ts";
 *
 * const info = versionInfo();
 * if (info.deno !== Deno.version.deno) throw new Error("wrong runtime version");
 * ```
 */
export function versionInfo(): VersionInfo {
  return {
    vif: VERSION,
    deno: Deno.version.deno,
    v8: Deno.version.v8,
    typescript: Deno.version.typescript,
    // The triple, not `Deno.build.os`: only mod/tun/mod.ts looks at the OS.
    target: Deno.build.target,
  };
}

/**
 * Renders {@linkcode VersionInfo} as text: `vif <version>`, then one line per
 * component.
 *
 * @param info The versions.
 * @returns The lines, ending in a newline.
 *
 * @example
 * ```ts
 * import { formatVersion, versionInfo } from "./version.ts";
 *
 * const text = formatVersion(versionInfo());
 * if (!text.startsWith("vif ")) throw new Error(text);
 * ```
 */
export function formatVersion(info: VersionInfo): string {
  return [
    `vif ${info.vif}`,
    `deno ${info.deno}`,
    `v8 ${info.v8}`,
    `typescript ${info.typescript}`,
    `target ${info.target}`,
  ].join("\n") + "\n";
}

/**
 * Adds `vif version [--output text|json]` to the program.
 *
 * @param program The root command.
 * @param context The run's shared state.
 */
export function registerVersion(program: Command, context: CliContext): void {
  program
    .command("version")
    .description("print the versions of vif, its daemon and the traffic-manager it is connected to")
    .addOption(outputOption())
    .option("--state-dir <dir>", STATE_DIR_HELP)
    .addHelpText(
      "after",
      "\nExamples:\n  vif version\n  vif version -o json | jq -r .manager\n\n" +
        "A daemon or manager of another version than this client is a warning on stderr,\n" +
        "with the command that fixes it; the exit code stays 0.",
    )
    .action(async (options: { output: OutputFormat; stateDir?: string }) => {
      const info = versionInfo();
      const { fetchStatus } = await import("./status.ts");
      const status = await fetchStatus(stateDirOf(options.stateDir, context.io.env))
        .catch(() => null);
      const daemon = status?.daemon.running ? status.daemon.version : null;
      const manager = status?.connection?.manager.version || null;
      if (options.output !== "text") {
        context.io.stdout(formatStructured({ ...info, daemon, manager }, options.output));
      } else {
        context.io.stdout(
          formatVersion(info) +
            `daemon ${daemon ?? "not running"}\nmanager ${manager ?? "not connected"}\n`,
        );
      }
      if (daemon && daemon !== info.vif) {
        context.io.stderr(
          `vif: warning: the daemon is vif ${daemon}, this client ${info.vif}\n` +
            "Run `vif quit`, then `vif connect`: the new daemon is this client's version.\n",
        );
      }
      if (manager && manager !== info.vif) {
        context.io.stderr(
          `vif: warning: the traffic-manager is vif ${manager}, this client ${info.vif}\n` +
            "Run `vif install` with this client to bring the manager to its version.\n",
        );
      }
    });
}
