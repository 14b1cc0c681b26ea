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
 * Starts the daemon in its own session (`setsid`), through `sudo` when this
 * process is not root, and waits for its socket to answer.
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
  const setsid = which("setsid", io.env);
  if (!setsid) {
    throw new UserError("cannot start the vif daemon: setsid (util-linux) is not installed", {
      hint: "Install util-linux, or run `vif connect --foreground`.",
    });
  }
  const daemon = [
    ...selfCommand(),
    "daemon",
    "--state-dir",
    stateDir,
    "--owner",
    `${ownerUid}:${ownerGid}`,
    ...(options.debug ? ["--log-level", "debug"] : []),
  ];
  // The daemon keeps none of this terminal's files: a pipe held open would
  // keep whoever reads this command's output waiting for it.
  let argv = [setsid, "-f", "sh", "-c", 'exec "$@" </dev/null >/dev/null 2>&1', "vif", ...daemon];
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
    argv = [sudo, "--preserve-env=KUBECONFIG,HOME,VIF_DEBUG", "--", ...argv];
  }
  let status: Deno.CommandStatus;
  try {
    status = await new Deno.Command(argv[0]!, {
      args: argv.slice(1),
      stdin: "inherit",
      stdout: "null",
      stderr: "inherit",
    }).spawn().status;
  } catch (error) {
    throw new UserError(`cannot start the vif daemon: ${(error as Error).message}`, {
      hint: "Run `vif connect --foreground` to connect without the daemon.",
      cause: error,
    });
  }
  if (!status.success) {
    throw new UserError(`cannot start the vif daemon: "${argv[0]}" exited with ${status.code}`, {
      hint: uid !== 0
        ? "sudo refused or failed; run `vif connect` as root, or check your sudo rights."
        : "Run `vif daemon --state-dir " + stateDir + "` to see why.",
    });
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
