/**
 * The state directory as root may use it: only a directory that no one but
 * root can change, and inside it only files opened without following a
 * symbolic link. The user chooses the directory (`--state-dir`,
 * `VIF_STATE_DIR`); were any part of its path theirs, they could swap a
 * file the root daemon writes for a link to `/etc/shadow`.
 *
 * - {@linkcode secureStateDir}: the directory and each of its ancestors must
 *   be owned by root (or by this process's user), and not writable by group
 *   or others, as OpenSSH's `StrictModes` checks a home directory; an
 *   ancestor may be a root-owned sticky directory such as `/tmp`, where
 *   nobody can rename or remove what another made.
 * - A symbolic link directly in the state directory is refused too, at the
 *   start, so that a bad directory is one clear error rather than a failure
 *   later, when a file is opened.
 * - {@linkcode openAppend}, {@linkcode readOwnFile}, {@linkcode writeOwnFile}:
 *   `O_NOFOLLOW` on every open (Deno's `node:fs` passes the flag to the
 *   kernel); a new file is made with `O_EXCL` under a temporary name and
 *   renamed into place, so nothing already there is ever written through.
 *
 * @module
 */

import fs from "node:fs";

const { O_APPEND, O_CREAT, O_EXCL, O_NOFOLLOW, O_RDONLY, O_WRONLY } = fs.constants;
const S_ISVTX = 0o1000;

/** A state directory root must not use, or a file in it that is a link: what and what to do. */
export class StateDirError extends Error {
  /** What to do about it. */
  readonly hint: string;

  /**
   * @param message what is wrong, naming the path
   * @param hint what to do
   * @param options the cause
   */
  constructor(message: string, hint: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "StateDirError";
    this.hint = hint;
  }
}

/** Options of {@linkcode secureStateDir}. */
export interface SecureStateDirOptions {
  /** Make the directory (and missing parents, mode 0755) when it is not there. */
  create?: boolean;
  /** The one user besides root who may own the path (default: this process's). */
  uid?: number;
}

/**
 * Checks that no one but root can change the state directory or any
 * directory above it, making it first when asked. The checks run on the
 * path with its links resolved, and that path is what to use from then on:
 * a link on the way could be changed by whoever owns the directory it is in.
 *
 * @param dir the state directory (absolute)
 * @param options whether to make it, and the user allowed besides root
 * @returns the directory's real path
 * @throws {StateDirError} naming the path and what is wrong with it
 * @example
 * ```ts ignore
 * const stateDir = await secureStateDir("/var/lib/vif", { create: true });
 * ```
 */
export async function secureStateDir(
  dir: string,
  options: SecureStateDirOptions = {},
): Promise<string> {
  const uid = options.uid ?? Deno.uid() ?? 0;
  if (!dir.startsWith("/")) {
    throw new StateDirError(
      `the state directory "${dir}" is not an absolute path`,
      "Give --state-dir (or VIF_STATE_DIR) as an absolute path.",
    );
  }
  if (options.create && !await exists(dir)) {
    // The part that exists first: nothing is made under someone else's directory.
    let existing = dir;
    while (!await exists(existing)) existing = existing.replace(/\/[^/]*$/, "") || "/";
    await checkChain(dir, await realPath(dir, existing), uid, false);
    try {
      await Deno.mkdir(dir, { recursive: true, mode: 0o755 });
    } catch (cause) {
      throw new StateDirError(
        `cannot make the state directory "${dir}": ${message(cause)}`,
        "Check the path given to --state-dir (or VIF_STATE_DIR).",
        { cause },
      );
    }
  }
  const real = await realPath(dir, dir);
  await checkChain(dir, real, uid, true);
  await refuseLinks(real);
  return real;
}

/** Refuses a symbolic link among the directory's entries (the first thousand). */
async function refuseLinks(dir: string): Promise<void> {
  let seen = 0;
  for await (const entry of Deno.readDir(dir)) {
    if (entry.isSymlink) throw linkError(`${dir}/${entry.name}`, { code: "ELOOP" })!;
    if (++seen >= 1000) return;
  }
}

/**
 * What {@linkcode secureStateDir} will find when root starts the daemon, as
 * far as this user can see: the directory, or the part of its path that
 * exists. For the command line, to say what is wrong before asking for sudo.
 * A part this user cannot look into is left for the daemon to check.
 *
 * @param dir the state directory (absolute)
 * @throws {StateDirError} naming the path and what is wrong with it
 */
export async function preflightStateDir(dir: string): Promise<void> {
  try {
    let existing = dir;
    while (!await exists(existing)) existing = existing.replace(/\/[^/]*$/, "") || "/";
    const real = await realPath(dir, existing);
    await checkChain(dir, real, 0, existing === dir);
    if (existing === dir) await refuseLinks(real);
  } catch (error) {
    const denied = (e: unknown) => e instanceof Deno.errors.PermissionDenied;
    if (denied(error) || (error instanceof StateDirError && denied(error.cause))) return;
    throw error;
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

async function realPath(dir: string, path: string): Promise<string> {
  try {
    return await Deno.realPath(path);
  } catch (cause) {
    throw new StateDirError(
      `cannot use the state directory "${dir}": ${message(cause)}`,
      "Check the path given to --state-dir (or VIF_STATE_DIR).",
      { cause },
    );
  }
}

/** Checks `real` (whose links are resolved) and every directory above it. */
async function checkChain(dir: string, real: string, uid: number, isStateDir: boolean) {
  const parts = real.split("/").filter((p) => p !== "");
  for (let i = parts.length; i >= 0; i--) {
    const path = "/" + parts.slice(0, i).join("/");
    const last = isStateDir && i === parts.length;
    const unsafe = (problem: string, fix: string) =>
      new StateDirError(
        `the state directory "${dir}" is not safe for root: "${path}" ${problem}`,
        `Use one that only root can change (the default is /var/lib/vif), or: ${fix}`,
      );
    let info: Deno.FileInfo;
    try {
      info = await Deno.lstat(path);
    } catch (cause) {
      throw new StateDirError(
        `cannot check the state directory "${dir}": "${path}": ${message(cause)}`,
        "Check the path given to --state-dir (or VIF_STATE_DIR).",
        { cause },
      );
    }
    if (!info.isDirectory) {
      throw new StateDirError(
        `the state directory "${dir}" cannot be used: "${path}" is not a directory`,
        "Give --state-dir (or VIF_STATE_DIR) a directory.",
      );
    }
    const mode = info.mode ?? 0;
    const owner = info.uid ?? 0;
    if (owner !== 0 && owner !== uid) {
      throw unsafe(`belongs to uid ${owner}`, `sudo chown root: ${path}`);
    }
    if ((mode & 0o022) === 0) continue;
    // /tmp and the like: anyone may add entries, nobody may move another's.
    if (!last && owner === 0 && (mode & S_ISVTX) !== 0) continue;
    throw unsafe(
      `is writable by ${(mode & 0o002) ? "everyone" : "its group"} (mode ${
        (mode & 0o7777).toString(8).padStart(4, "0")
      })`,
      `sudo chmod go-w ${path}`,
    );
  }
}

/**
 * Opens a file for appending, making it (with `mode`) when missing, never
 * through a symbolic link.
 *
 * @param path the file
 * @param mode the mode of a new file
 * @returns a `node:fs` file descriptor
 * @throws {StateDirError} when the path is a symbolic link
 * @throws {Error} when it cannot be opened otherwise
 */
export function openAppend(path: string, mode: number): number {
  try {
    return fs.openSync(path, O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW, mode);
  } catch (cause) {
    throw linkError(path, cause) ?? cause;
  }
}

/**
 * Reads a file of the state directory, never through a symbolic link.
 *
 * @param path the file
 * @param maxBytes the most to read (default 1 MiB)
 * @returns its bytes, or `undefined` when there is no such file
 * @throws {StateDirError} when the path is a symbolic link
 * @throws {RangeError} when it is longer than `maxBytes`
 */
export function readOwnFile(path: string, maxBytes = 1 << 20): Uint8Array | undefined {
  let fd: number;
  try {
    fd = fs.openSync(path, O_RDONLY | O_NOFOLLOW);
  } catch (cause) {
    if ((cause as { code?: string }).code === "ENOENT") return undefined;
    throw linkError(path, cause) ?? cause;
  }
  try {
    const size = fs.fstatSync(fd).size;
    if (size > maxBytes) {
      throw new RangeError(`Cannot read "${path}": ${size} bytes, more than ${maxBytes}`);
    }
    const out = new Uint8Array(size);
    let at = 0;
    while (at < size) {
      const n = fs.readSync(fd, out, at, size - at, null);
      if (n === 0) break;
      at += n;
    }
    return out.subarray(0, at);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Writes a file of the state directory whole: a new file under a temporary
 * name (exclusive creation, so not through anything already there), synced,
 * then renamed over `path` (a rename replaces a link, it does not follow it).
 *
 * @param path the file
 * @param bytes its new content
 * @param mode its mode
 * @throws {Error} when it cannot be written; `path` is then unchanged
 */
export function writeOwnFile(path: string, bytes: Uint8Array, mode: number): void {
  const temporary = `${path}.tmp`;
  try {
    fs.unlinkSync(temporary); // a leftover of a crash
  } catch {
    // not there
  }
  const fd = fs.openSync(temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode);
  try {
    for (let at = 0; at < bytes.length;) {
      at += fs.writeSync(fd, bytes, at, bytes.length - at);
    }
    fs.fsyncSync(fd);
  } catch (error) {
    fs.closeSync(fd);
    fs.rmSync(temporary, { force: true });
    throw error;
  }
  fs.closeSync(fd);
  fs.renameSync(temporary, path);
}

/** The error for an open refused because the path is a link (`ELOOP`), else `undefined`. */
function linkError(path: string, cause: unknown): StateDirError | undefined {
  if ((cause as { code?: string }).code !== "ELOOP") return undefined;
  return new StateDirError(
    `"${path}" is a symbolic link: vif does not write through links in its state directory`,
    `Remove it (rm ${path}) and start vif again.`,
    { cause },
  );
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
