/**
 * `vif connect` in the foreground: connect, print what is reachable, wait for
 * Ctrl-C or SIGTERM, and put everything back.
 *
 * This process is the user's own (they started it, as themselves or through
 * sudo): when the credentials expire it resolves the kubeconfig again right
 * here, as the client part of the same process did at the start.
 *
 * @module
 */

import { Connection, type ConnectionStatus } from "./connection.ts";
import { type ConnectParams, kubeconfigSource, type ResolvedContext } from "./control.ts";
import { self as selfOf, type SelfCommand } from "./self.ts";
import { keepRunningOnErrors } from "./session.ts";
import { secureStateDir } from "./state_dir.ts";

/** Options of {@linkcode runForeground}. */
export interface ForegroundOptions {
  /** Where the cluster is and what to route. */
  params: ConnectParams;
  /** Where what must be restored after a crash is kept. */
  stateDir: string;
  /**
   * A command to run once connected (`vif connect -- CMD ARGS…`): its exit
   * code becomes the result, and the session ends when it does.
   */
  command?: string[];
  debug: boolean;
  /** Progress lines (each step of connecting). */
  progress: (line: string) => void;
  /** Told once the connection is up, with its status (for the caller to show). */
  connected: (status: ConnectionStatus) => void;
  /** How to run this program, for the DNS watchdog; default: as this process was started. */
  self?: SelfCommand;
  /** Lines of what happens once connected. */
  out: (line: string) => void;
  /** Warnings and errors. */
  err: (line: string) => void;
}

/**
 * Connects and stays connected until a signal, until the command ends, or
 * until the manager is gone for longer than the grace period.
 *
 * @param options where the manager is, how to trust it, where to print
 * @returns the exit code
 * @throws {ConnectError} when the connection cannot be made, or was lost
 * @throws {StateDirError} as root, when the state directory is not root's alone
 */
export async function runForeground(options: ForegroundOptions): Promise<number> {
  // As root, what goes back into /etc/resolv.conf is read from the state
  // directory: only from one that no one else can change.
  const stateDir = Deno.uid() === 0
    ? await secureStateDir(options.stateDir, { create: true })
    : options.stateDir;
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
  // One connection's bug must not take the whole network down.
  const releaseErrors = keepRunningOnErrors(log);
  let connection: Connection | undefined;
  try {
    connection = await Connection.open(options.params, {
      stateDir,
      credentials: resolveHere,
      self: options.self ?? selfOf((name) => Deno.env.get(name)),
      log,
      progress: options.progress,
    });
    options.connected(connection.status());
    const command = options.command?.length ? runCommand(options.command, log) : undefined;
    if (!command) options.out("press Ctrl-C to disconnect");
    const ended = await Promise.race([
      stop.promise,
      connection.ended.then((error) => ({ error })),
      ...(command ? [command.then((code) => ({ code }))] : []),
    ]);
    if (typeof ended === "string") {
      log("info", `session: ${ended}: disconnecting`);
      // The command gets the signal too (it is in the terminal's process group
      // when run from one); give it a moment to end before the network goes.
      return command ? 128 + (ended === "SIGINT" ? 2 : 15) : 0;
    }
    if ("error" in ended) throw ended.error;
    log(
      "info",
      `session: "${options.command!.join(" ")}" exited with ${ended.code}: disconnecting`,
    );
    return ended.code;
  } finally {
    for (const [s, fn] of signals) Deno.removeSignalListener(s, fn);
    await connection?.close();
    releaseErrors();
  }
}

/** Resolves the kubeconfig's context in this process, as the user who runs it. */
async function resolveHere(params: ConnectParams, context?: string): Promise<ResolvedContext> {
  const { loadKubeConfig, resolveAccess } = await import("../kube/client.ts");
  const loaded = loadKubeConfig({ ...kubeconfigSource(params), ...(context ? { context } : {}) });
  return { context: loaded.context, access: await resolveAccess(loaded.kubeConfig) };
}

/**
 * Runs `vif connect -- CMD`'s command with this terminal, as the invoking user
 * when vif runs through sudo.
 *
 * @returns its exit code (127 when it cannot be started, 128+N when killed by signal N)
 */
export async function runCommand(
  argv: string[],
  log: (level: "debug" | "info" | "warn", message: string) => void,
  options: { holdSignals?: boolean; env?: Record<string, string> } = {},
): Promise<number> {
  const sudoUid = Number(Deno.env.get("SUDO_UID"));
  const sudoGid = Number(Deno.env.get("SUDO_GID"));
  const asUser = Deno.uid() === 0 && Number.isInteger(sudoUid) && sudoUid > 0 &&
      Number.isInteger(sudoGid)
    ? ["setpriv", `--reuid=${sudoUid}`, `--regid=${sudoGid}`, "--init-groups", "--"]
    : [];
  const full = [...asUser, ...argv];
  // With holdSignals this process outlives the command to clean up after it:
  // Ctrl-C reaches the command from the terminal already; SIGTERM and SIGHUP
  // sent to vif are passed on to it. The listeners go in before the command
  // starts: a signal sent as soon as the command shows life must not find vif
  // with the default action still in place (it would die connected).
  let child: Deno.ChildProcess | undefined;
  let early: Deno.Signal | undefined;
  const held = options.holdSignals
    ? (["SIGINT", "SIGTERM", "SIGHUP"] as const).map((s) => {
      const on = () => {
        if (s === "SIGINT") return;
        if (!child) early = s;
        try {
          child?.kill(s);
        } catch {
          // ended
        }
      };
      Deno.addSignalListener(s, on);
      return () => Deno.removeSignalListener(s, on);
    })
    : [];
  try {
    child = new Deno.Command(full[0]!, {
      args: full.slice(1),
      stdin: "inherit",
      stdout: "inherit",
      stderr: "inherit",
      ...(options.env ? { env: options.env } : {}),
    }).spawn();
    if (early) child.kill(early);
    const status = await child.status;
    return status.signal ? 128 + signalNumber(status.signal) : status.code;
  } catch (error) {
    log("warn", `session: cannot run "${argv[0]}": ${(error as Error).message}`);
    return 127;
  } finally {
    for (const release of held) release();
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
