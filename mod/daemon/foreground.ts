/**
 * `vif connect` in the foreground: connect, print what is reachable, wait for
 * Ctrl-C or SIGTERM, and put everything back.
 *
 * @module
 */

import { ConnectError, Session } from "./session.ts";
import { setupDns } from "./dns_setup.ts";

/** Options of {@linkcode runForeground}. */
export interface ForegroundOptions {
  managerAddress: string;
  managerCaPem: string;
  managerNamespace: string;
  namespace: string;
  /** Where what must be restored after a crash is kept. */
  stateDir: string;
  /** Hosts that must never be routed into the TUN (the API server). */
  protectedHosts?: string[];
  /** How the manager is reached, for the first line (`via port-forward …`). */
  via?: string;
  /**
   * Resolves when the way to the manager is gone (a port-forward cut): the
   * session ends, everything is put back, and the error is thrown.
   */
  lost?: Promise<Error>;
  /**
   * A command to run once connected (`vif connect -- CMD ARGS…`): its exit
   * code becomes the result, and the session ends when it does.
   */
  command?: string[];
  /** `--also-proxy` subnets. */
  alsoProxy?: string[];
  /** `--never-proxy` subnets. */
  neverProxy?: string[];
  /** `--allow-conflicting-subnets` subnets. */
  allowConflicting?: string[];
  debug: boolean;
  /** Progress lines. */
  out: (line: string) => void;
  /** Warnings and errors. */
  err: (line: string) => void;
}

/** The DNS address inside the VIF block (DESIGN.md §3). */
export const DNS_ADDRESS = "240.0.0.2";

/**
 * Connects and stays connected until a signal, or until the way to the
 * manager is lost (`lost`).
 *
 * @param options where the manager is, how to trust it, where to print
 * @returns the exit code
 * @throws {ConnectError} when the connection cannot be made
 * @throws {Error} what `lost` resolved with, after disconnecting
 */
export async function runForeground(options: ForegroundOptions): Promise<number> {
  const log = (level: "debug" | "info" | "warn", message: string) => {
    if (level === "debug" && !options.debug) return;
    (level === "warn" ? options.err : options.out)(message);
  };
  const stop = Promise.withResolvers<string>();
  const onSignal = (name: Deno.Signal) => () => stop.resolve(name);
  const signals: Array<[Deno.Signal, () => void]> = [
    ["SIGINT", onSignal("SIGINT")],
    ["SIGTERM", onSignal("SIGTERM")],
  ];
  for (const [s, fn] of signals) Deno.addSignalListener(s, fn);
  // One connection's bug must not take the whole network down: log it and
  // keep serving the others.
  const onError = (e: ErrorEvent | PromiseRejectionEvent) => {
    e.preventDefault();
    const error = "error" in e ? e.error : e.reason;
    log("warn", `daemon: unexpected error, kept running: ${error?.stack ?? error}`);
  };
  globalThis.addEventListener("error", onError);
  globalThis.addEventListener("unhandledrejection", onError);
  let session: Session | undefined;
  try {
    session = await Session.connect({
      managerAddress: options.managerAddress,
      managerCaPem: options.managerCaPem,
      managerNamespace: options.managerNamespace,
      namespace: options.namespace,
      extraAddresses: [DNS_ADDRESS],
      ...(options.protectedHosts ? { protectedHosts: options.protectedHosts } : {}),
      alsoProxy: options.alsoProxy ?? [],
      neverProxy: options.neverProxy ?? [],
      allowConflicting: options.allowConflicting ?? [],
      log,
      onClusterInfo: async (info, s) => {
        await setupDns(s, info, {
          address: DNS_ADDRESS,
          namespace: options.namespace,
          stateDir: options.stateDir,
          log,
        });
      },
    });
    const info = session.clusterInfo;
    options.out(
      `connected to the traffic-manager at ${
        options.via ?? options.managerAddress
      } (manager ${session.arrival?.managerVersion}); ` +
        `cluster domain ${info?.clusterDomain}, namespace ${options.namespace}`,
    );
    const lost = options.lost?.then((error) => ({ error }));
    const command = options.command?.length ? runCommand(options.command, log) : undefined;
    if (!command) options.out("press Ctrl-C to disconnect");
    const ended = await Promise.race([
      stop.promise,
      ...(lost ? [lost] : []),
      ...(command ? [command.then((code) => ({ code }))] : []),
    ]);
    if (typeof ended === "string") {
      log("info", `session: ${ended}: disconnecting`);
      // The command gets the signal too (it is in the terminal's process group
      // when run from one); give it a moment to end before the network goes.
      return command ? 128 + (ended === "SIGINT" ? 2 : 15) : 0;
    }
    if ("error" in ended) {
      log("warn", `session: ${ended.error.message}: disconnecting`);
      throw ended.error;
    }
    log(
      "info",
      `session: "${options.command!.join(" ")}" exited with ${ended.code}: disconnecting`,
    );
    return ended.code;
  } finally {
    for (const [s, fn] of signals) Deno.removeSignalListener(s, fn);
    await session?.close();
    globalThis.removeEventListener("error", onError);
    globalThis.removeEventListener("unhandledrejection", onError);
  }
}

export { ConnectError };

/**
 * Runs `vif connect -- CMD`'s command with this terminal, as the invoking user
 * when vif runs through sudo.
 *
 * @returns its exit code (127 when it cannot be started, 128+N when killed by signal N)
 */
async function runCommand(
  argv: string[],
  log: (level: "debug" | "info" | "warn", message: string) => void,
): Promise<number> {
  const sudoUid = Number(Deno.env.get("SUDO_UID"));
  const sudoGid = Number(Deno.env.get("SUDO_GID"));
  const asUser = Deno.uid() === 0 && Number.isInteger(sudoUid) && sudoUid > 0 &&
      Number.isInteger(sudoGid)
    ? ["setpriv", `--reuid=${sudoUid}`, `--regid=${sudoGid}`, "--init-groups", "--"]
    : [];
  const full = [...asUser, ...argv];
  try {
    const child = new Deno.Command(full[0]!, {
      args: full.slice(1),
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
    }).spawn();
    const status = await child.status;
    return status.signal ? 128 + signalNumber(status.signal) : status.code;
  } catch (error) {
    log("warn", `session: cannot run "${argv[0]}": ${(error as Error).message}`);
    return 127;
  }
}

function signalNumber(signal: Deno.Signal): number {
  const numbers: Partial<Record<Deno.Signal, number>> = {
    SIGHUP: 1,
    SIGINT: 2,
    SIGQUIT: 3,
    SIGKILL: 9,
    SIGSEGV: 11,
    SIGPIPE: 13,
    SIGTERM: 15,
  };
  return numbers[signal] ?? 1;
}
