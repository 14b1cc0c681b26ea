/**
 * The client's side of the daemon: where its socket is, whether one runs,
 * and starting it (through `sudo` when not root) when `vif connect` needs it.
 *
 * @module
 */

import { ControlClient, SOCKET_NAME } from "../daemon/control.ts";
import { LOG_NAME, waitDaemonGone } from "../daemon/state.ts";
import { selfCommand } from "../daemon/self.ts";
import { preflightStateDir, StateDirError } from "../daemon/state_dir.ts";
import type { CliIo } from "./io.ts";
import { UserError } from "./errors.ts";

export { selfCommand, V8_FLAGS } from "../daemon/self.ts";

/** The default state directory: the daemon's socket, log and state file. */
export const DEFAULT_STATE_DIR = "/var/lib/vif";

/**
 * The state directory to use: `--state-dir`, else `VIF_STATE_DIR`, else
 * {@linkcode DEFAULT_STATE_DIR}.
 *
 * @param flag the `--state-dir` value, if given
 * @param env reads the environment
 * @returns an absolute path
 */
export function stateDirOf(flag: string | undefined, env: CliIo["env"]): string {
  const dir = flag ?? env("VIF_STATE_DIR") ?? DEFAULT_STATE_DIR;
  return dir.startsWith("/") ? dir : `${Deno.cwd()}/${dir}`;
}

/** The `--state-dir` option's description, shared by the commands. */
export const STATE_DIR_HELP =
  `where the daemon keeps its socket, log and state (default: $VIF_STATE_DIR, else ${DEFAULT_STATE_DIR})`;

/**
 * Connects to the running daemon.
 *
 * @param stateDir the state directory
 * @returns the client, or `null` when no daemon answers
 * @throws {UserError} when a daemon runs but this user may not use it
 */
export async function daemonClient(stateDir: string): Promise<ControlClient | null> {
  const path = `${stateDir}/${SOCKET_NAME}`;
  try {
    return await ControlClient.connect(path);
  } catch (error) {
    if (error instanceof Deno.errors.PermissionDenied) {
      throw new UserError(`the vif daemon's socket "${path}" is not this user's`, {
        hint: "Use vif as the user who connected, or as root.",
        cause: error,
      });
    }
    return null;
  }
}

function isTerminal(file: { isTerminal(): boolean }): boolean {
  try {
    return file.isTerminal();
  } catch {
    return false;
  }
}

/** Options of {@linkcode detachDaemon}. */
export interface DetachDaemonOptions {
  /** The state directory. */
  stateDir: string;
  /** The user it serves. */
  owner: { uid: number; gid: number };
  /** Its starting log level. */
  level: string;
  /** This process's environment. */
  env: CliIo["env"];
}

/**
 * `vif daemon --detach`: starts the daemon in a session of its own
 * (`setsid`), holding none of this process's files (a pipe held open would
 * keep whoever reads `vif connect`'s output waiting), and returns once it is
 * started; `vif connect` then waits for its socket.
 *
 * @param options where and for whom
 * @throws {UserError} when setsid is missing or the start fails
 */
export async function detachDaemon(options: DetachDaemonOptions): Promise<void> {
  const setsid = which("setsid", options.env);
  if (!setsid) {
    throw new UserError("cannot start the vif daemon: setsid (util-linux) is not installed", {
      hint: "Install util-linux, or run `vif connect --foreground`.",
    });
  }
  const daemon = [
    ...selfCommand(),
    "daemon",
    "--state-dir",
    options.stateDir,
    "--owner",
    `${options.owner.uid}:${options.owner.gid}`,
    "--log-level",
    options.level,
  ];
  const argv = [setsid, "-f", "sh", "-c", 'exec "$@" </dev/null >/dev/null 2>&1', "vif", ...daemon];
  const status = await new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    stdin: "null",
    stdout: "null",
    stderr: "inherit",
  }).spawn().status;
  if (!status.success) {
    throw new UserError(`cannot start the vif daemon: setsid exited with ${status.code}`, {
      hint: `Run \`sudo vif daemon --state-dir ${options.stateDir}\` to see why.`,
    });
  }
}

function which(name: string, env: CliIo["env"]): string | undefined {
  for (const dir of (env("PATH") ?? "/usr/sbin:/usr/bin:/sbin:/bin").split(":")) {
    try {
      const path = `${dir}/${name}`;
      if (Deno.statSync(path).isFile) return path;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** Options of {@linkcode startDaemon}. */
export interface StartDaemonOptions {
  stateDir: string;
  io: CliIo;
  debug: boolean;
  /** How long to wait for its socket (default 20 s). */
  timeoutMs?: number;
}

/**
 * Starts the daemon (`vif daemon --detach`, which puts it in a session of its
 * own), through `sudo` when this process is not root, and waits for its
 * socket to answer.
 *
 * Through sudo the command is always `vif daemon --detach --state-dir …
 * --owner …`, so a sudoers rule can allow exactly that without a password
 * (README, "Without a password"). Without a terminal to ask a password on,
 * sudo is run with `-n`, and its refusal says what to do instead of hanging.
 *
 * @param options state directory and where to read the environment
 * @returns a client connected to it
 * @throws {UserError} when it cannot be started, or does not come up
 */
export async function startDaemon(options: StartDaemonOptions): Promise<ControlClient> {
  const { stateDir, io } = options;
  const uid = Deno.uid() ?? 0;
  const gid = Deno.gid() ?? 0;
  // Through sudo the daemon serves the user sudo was called from.
  const ownerUid = uid === 0 ? Number(io.env("SUDO_UID") ?? 0) : uid;
  const ownerGid = uid === 0 ? Number(io.env("SUDO_GID") ?? 0) : gid;
  // The daemon refuses a state directory that is not root's alone; say so
  // here, where it can be read, and before anyone types a password.
  try {
    await preflightStateDir(stateDir);
  } catch (error) {
    if (!(error instanceof StateDirError)) throw error;
    throw new UserError(error.message, { hint: error.hint, cause: error });
  }
  let argv = [
    ...selfCommand(),
    "daemon",
    "--detach",
    "--state-dir",
    stateDir,
    "--owner",
    `${ownerUid}:${ownerGid}`,
    ...(options.debug ? ["--log-level", "debug"] : []),
  ];
  const interactive = uid === 0 || isTerminal(Deno.stdin);
  if (uid !== 0) {
    const sudo = which("sudo", io.env);
    if (!sudo) {
      throw new UserError(
        `vif's daemon needs root for the TUN device, this is uid ${uid}, and sudo is not installed`,
        {
          hint:
            "Run `vif connect` as root, or install sudo; in a container use `--foreground` as root.",
        },
      );
    }
    io.stderr("vif: starting the daemon as root (sudo)\n");
    // No environment is kept: a sudoers rule needs no SETENV, and root's Deno
    // (from source) keeps to root's own cache, not the user's HOME.
    argv = [sudo, ...(interactive ? [] : ["-n"]), "--", ...argv];
  }
  let result: { success: boolean; code: number; stderr: string };
  try {
    const child = new Deno.Command(argv[0]!, {
      args: argv.slice(1),
      stdin: interactive ? "inherit" : "null",
      stdout: "null",
      // Without a terminal sudo's refusal is read here, to be explained.
      stderr: interactive ? "inherit" : "piped",
    }).spawn();
    const out = await child.output();
    result = {
      success: out.success,
      code: out.code,
      stderr: interactive ? "" : new TextDecoder().decode(out.stderr.subarray(0, 4096)),
    };
  } catch (error) {
    throw new UserError(`cannot start the vif daemon: ${(error as Error).message}`, {
      hint: "Run `vif connect --foreground` to connect without the daemon.",
      cause: error,
    });
  }
  if (!result.success) {
    if (uid !== 0 && /password is required|terminal is required/i.test(result.stderr)) {
      throw new UserError(
        "sudo needs your password to start vif's daemon, and there is no terminal to ask for it",
        {
          hint: "Run `sudo -v` in this terminal first, run vif connect from a terminal, or allow " +
            'it without a password (README: "Without a password").',
        },
      );
    }
    const said = result.stderr.trim().split("\n").at(-1) ?? "";
    throw new UserError(
      `cannot start the vif daemon: "${argv[0]}" exited with ${result.code}${
        said ? `: ${said}` : ""
      }`,
      {
        hint: uid !== 0
          ? "sudo refused or failed; run `vif connect` as root, or check your sudo rights."
          : "Run `vif daemon --state-dir " + stateDir + "` to see why.",
      },
    );
  }
  const deadline = Date.now() + (options.timeoutMs ?? 20_000);
  while (Date.now() < deadline) {
    const client = await daemonClient(stateDir);
    if (client) return client;
    await new Promise((r) => setTimeout(r, 100));
  }
  const log = `${stateDir}/${LOG_NAME}`;
  const tail = await Deno.readTextFile(log).then(
    (t) => t.trim().split("\n").slice(-1)[0] ?? "",
    () => "",
  );
  throw new UserError(
    `the vif daemon did not come up within ${(options.timeoutMs ?? 20_000) / 1000} s${
      tail ? `; its log ends: ${tail}` : ""
    }`,
    { hint: `See ${log}, or run \`vif connect --foreground\` to connect without the daemon.` },
  );
}

/**
 * Asks the daemon to quit and waits until its process is gone, so that when
 * this returns the TUN, the routes and DNS are back as they were.
 *
 * @param client a client connected to it
 * @param timeoutMs how long to wait for the process to end (default 15 s)
 * @returns whether it was connected, and whether it ended in time
 * @throws {DaemonError} when it refuses
 */
export async function quitDaemon(
  client: ControlClient,
  timeoutMs = 15_000,
): Promise<{ wasConnected: boolean; stopped: boolean; pid: number }> {
  const { pid } = await client.request("version", {});
  const { wasConnected } = await client.request("quit", {});
  return { wasConnected, stopped: await waitDaemonGone(pid, timeoutMs), pid };
}
