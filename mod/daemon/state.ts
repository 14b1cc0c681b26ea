/**
 * The daemon's state file (`<state-dir>/daemon.json`) and its process, as
 * the daemon writes them and the commands read them. Kept apart from
 * `daemon.ts` so that `vif status` and `vif quit` can read them without
 * loading the daemon itself.
 *
 * @module
 */

import { readOwnFile } from "./state_dir.ts";

/** The state file's name inside the state directory. */
export const STATE_FILE = "daemon.json";
/** The log file's name inside the state directory (rotated to `daemon.log.1`…). */
export const LOG_NAME = "daemon.log";

/** What `daemon.json` holds. */
export interface DaemonState {
  pid: number;
  version: string;
  startedAt: string;
  owner: { uid: number; gid: number };
  /** The TUN device of the connection, while connected. */
  tun: string | null;
  /** The routes it added, while connected (they go with the TUN). */
  routes: string[];
  /** How DNS was pointed at vif, while connected. */
  dns: "resolved" | "resolv.conf" | null;
  /**
   * The intercepts' volume mounts (sshfs, FUSE) and their user, while they
   * are mounted: `vif quit --force` unmounts them after a crash.
   */
  mounts?: string[];
}

/**
 * Whether a process with this pid runs and is a vif daemon.
 *
 * @param pid the pid from a state file
 * @returns whether it is alive and its command line names the daemon
 */
export async function daemonAlive(pid: number): Promise<boolean> {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  try {
    const cmdline = await Deno.readTextFile(`/proc/${pid}/cmdline`);
    return cmdline.split("\0").includes("daemon");
  } catch {
    return false;
  }
}

/**
 * Waits until the daemon with this pid is gone.
 *
 * @param pid its pid
 * @param ms how long to wait at most
 * @returns whether it is gone
 */
export async function waitDaemonGone(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (await daemonAlive(pid)) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, 50));
  }
  return true;
}

/**
 * Reads `daemon.json`.
 *
 * @param stateDir the state directory
 * @returns the state, or `null` when there is none (or it is unreadable)
 */
export function readDaemonState(stateDir: string): Promise<DaemonState | null> {
  try {
    const bytes = readOwnFile(`${stateDir}/${STATE_FILE}`);
    return Promise.resolve(
      bytes === undefined ? null : JSON.parse(new TextDecoder().decode(bytes)) as DaemonState,
    );
  } catch {
    return Promise.resolve(null); // unreadable, or a link: not a state vif wrote
  }
}
