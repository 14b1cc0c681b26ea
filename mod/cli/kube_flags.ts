/**
 * The flags every command that talks to the API server takes, as kubectl
 * spells them: `--kubeconfig`, `--context`, `--as` and `--request-timeout`.
 * One definition, so the help text and the parsing are the same in every
 * command, and {@linkcode kubeLoadOptions} turns them into what
 * `loadKubeConfig` (mod/kube/client.ts) takes.
 *
 * @example
 * ```ts ignore
 * const cmd = addKubeFlags(program.command("list"));
 * cmd.action((flags: KubeFlags) => loadKubeConfig(kubeLoadOptions(flags, context.io.env)));
 * ```
 *
 * @module
 */

import { type Command, InvalidArgumentError, Option } from "commander";

/** The parsed kube flags. */
export interface KubeFlags {
  /** `--kubeconfig FILE`. */
  kubeconfig?: string;
  /** `--context NAME`. */
  context?: string;
  /** `--as USER`. */
  as?: string;
  /** `--request-timeout DURATION`, in ms (0: no limit). */
  requestTimeout?: number;
}

/**
 * Adds `--kubeconfig`, `--context`, `--as` and `--request-timeout` to a command.
 *
 * @param command The command.
 * @param contextDefault What `--context` defaults to, for the help.
 * @returns The same command, for chaining.
 */
export function addKubeFlags(command: Command, contextDefault = "the current context"): Command {
  return command
    .option(
      "--kubeconfig <file>",
      "the kubeconfig to use (default: $KUBECONFIG, else ~/.kube/config)",
    )
    .option("--context <name>", `the kubeconfig context (default: ${contextDefault})`)
    .addOption(asOption())
    .addOption(requestTimeoutOption());
}

/**
 * `--as USER`, for a command that defines its other kube flags itself.
 *
 * @returns The option.
 */
export function asOption(): Option {
  return new Option("--as <user>", "act as this user in the API server (impersonation, as kubectl)")
    .argParser(impersonatedUser);
}

/**
 * `--request-timeout DURATION`, for a command that defines its other kube flags itself.
 *
 * @returns The option.
 */
export function requestTimeoutOption(): Option {
  return new Option(
    "--request-timeout <duration>",
    'how long one API request may take ("30s", "2m"; 0: no limit; default 10s for most)',
  ).argParser(requestTimeout);
}

/**
 * The options for `loadKubeConfig` from the parsed flags.
 *
 * @param flags The command's parsed flags.
 * @param env The environment to read `KUBECONFIG` and `HOME` from.
 * @returns The load options, with only the flags that were given.
 */
export function kubeLoadOptions(
  flags: KubeFlags,
  env: (name: string) => string | undefined,
): {
  kubeconfig?: string;
  context?: string;
  as?: string;
  requestTimeoutMs?: number;
  env: (name: string) => string | undefined;
} {
  return {
    ...(flags.kubeconfig !== undefined ? { kubeconfig: flags.kubeconfig } : {}),
    ...(flags.context !== undefined ? { context: flags.context } : {}),
    ...(flags.as !== undefined ? { as: flags.as } : {}),
    ...(flags.requestTimeout !== undefined ? { requestTimeoutMs: flags.requestTimeout } : {}),
    env,
  };
}

/**
 * Parses `--request-timeout` as kubectl does: a number with `ms`, `s`, `m` or
 * `h` (a bare number is seconds), `0` for no limit; at most a day.
 *
 * @param value The flag's value.
 * @returns Milliseconds.
 * @throws {InvalidArgumentError} When it is not such a duration.
 */
export function requestTimeout(value: string): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(value.trim());
  const unit = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[(m?.[2] ?? "s") as "s"];
  const ms = m ? Math.round(Number(m[1]) * unit) : NaN;
  if (!(ms >= 0 && ms <= 86_400_000)) {
    throw new InvalidArgumentError('Expected a duration like "30s", "2m" or "0" (no limit).');
  }
  return ms;
}

function impersonatedUser(value: string): string {
  // deno-lint-ignore no-control-regex
  if (value === "" || value.length > 512 || /[\x00-\x1f\x7f]/.test(value)) {
    throw new InvalidArgumentError("Expected the user name the API server knows, on one line.");
  }
  return value;
}
