/**
 * How vif runs itself again: the daemon's helpers (`vif kube-credentials`
 * as the user, `vif dns-watchdog`) and the daemon itself are this same
 * program, the compiled binary or `deno run` of this checkout's `main.ts`.
 *
 * @module
 */

/**
 * The V8 flags every role of vif runs with: `deno compile` bakes them into
 * the binary (deno.json's `compile` task), and the daemon gets them when run
 * from a checkout. A young generation of 2 MiB semi-spaces instead of V8's
 * 16 MiB: `deno task bench` measured the daemon 40 MB smaller holding 1,000
 * connections after load, with no change in throughput beyond the noise.
 * And `gc()`, which the daemon calls once a burst of traffic is over
 * (`stack.ts`), to give back the heap the burst grew.
 */
export const V8_FLAGS = "--max-semi-space-size=2,--expose-gc";

/** A command line of this program, and the environment it needs to start. */
export interface SelfCommand {
  /** The argv prefix: append a command and its arguments. */
  argv: string[];
  /**
   * What the environment must hold for it to start as this process's user,
   * whatever else is cleared: from a checkout, Deno's cache (`DENO_DIR`)
   * when it is set. Another user's process gets none of it.
   */
  env: Record<string, string>;
}

/**
 * How to run this same program again: the compiled binary itself, or
 * `deno run` of this checkout's `main.ts`.
 *
 * @returns the argv prefix
 */
export function selfCommand(): string[] {
  const exe = Deno.execPath();
  if (!isDeno(exe)) return [exe];
  const main = new URL("../../main.ts", import.meta.url);
  const config = new URL("../../deno.json", import.meta.url);
  return [exe, "run", "-A", `--v8-flags=${V8_FLAGS}`, "--config", config.pathname, main.pathname];
}

/**
 * {@linkcode selfCommand} with the environment it needs.
 *
 * @param env reads this process's environment
 * @returns the command and its environment
 */
export function self(env: (name: string) => string | undefined): SelfCommand {
  const denoDir = isDeno(Deno.execPath()) ? env("DENO_DIR") : undefined;
  return { argv: selfCommand(), env: denoDir ? { DENO_DIR: denoDir } : {} };
}

function isDeno(exe: string): boolean {
  return /(^|\/)deno$/.test(exe);
}
