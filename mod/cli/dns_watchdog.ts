/**
 * `vif dns-watchdog` (hidden): the process that keeps DNS working when the
 * daemon dies or hangs in resolv.conf mode (`mod/daemon/dns_watchdog.ts`).
 * The daemon starts it with a pipe on its stdin and stops it with a `stop`
 * line; EOF without one means the daemon is gone.
 *
 * @module
 */

import { type Command, InvalidArgumentError } from "commander";
import type { CliContext } from "./context.ts";

function parseProbe(value: string): { hostname: string; port: number } {
  const m = /^(?:\[([^\]]+)\]|([^:]+)):(\d{1,5})$/.exec(value);
  const port = Number(m?.[3]);
  if (!m || port < 1 || port > 65535) {
    throw new InvalidArgumentError(`"${value}" is not HOST:PORT.`);
  }
  return { hostname: (m[1] ?? m[2])!, port };
}

/**
 * Adds `vif dns-watchdog` (hidden) to the program.
 *
 * @param program the root command
 * @param context the run's shared state
 */
export function registerDnsWatchdog(program: Command, context: CliContext): void {
  program
    .command("dns-watchdog", { hidden: true })
    .description("put resolv.conf back when the daemon dies or hangs (the daemon starts it)")
    .requiredOption("--state-dir <dir>", "the daemon's state directory")
    .requiredOption("--probe <host:port>", "the daemon's DNS server", parseProbe)
    .action(async (options: { stateDir: string; probe: { hostname: string; port: number } }) => {
      // Ctrl-C for `vif connect --foreground`, or a closed terminal, reaches the
      // whole process group: the watchdog outlives them to clean up after its daemon.
      const ignore = () => {};
      for (const signal of ["SIGINT", "SIGHUP"] as const) Deno.addSignalListener(signal, ignore);
      const [{ runDnsWatchdog }, { appendLogLine }, { LOG_NAME }] = await Promise.all([
        import("../daemon/dns_watchdog.ts"),
        import("../daemon/log_file.ts"),
        import("../daemon/state.ts"),
      ]);
      const logPath = `${options.stateDir}/${LOG_NAME}`;
      try {
        context.exitCode = await runDnsWatchdog({
          stateDir: options.stateDir,
          probe: options.probe,
          input: Deno.stdin.readable,
          log: (level, message) => void appendLogLine(logPath, level, message),
        });
      } finally {
        for (const signal of ["SIGINT", "SIGHUP"] as const) {
          Deno.removeSignalListener(signal, ignore);
        }
      }
    });
}
