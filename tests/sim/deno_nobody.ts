/**
 * Running this repository's Deno programs as user `nobody` (uid 65534), as
 * the manager runs in a pod: root's Deno cache (`~/.cache/deno`, under a 0700
 * home) is out of nobody's reach, so a copy of it is made in a directory that
 * nobody owns, filled with `deno cache` for the entry points, and handed over
 * through `DENO_DIR`.
 *
 * @module
 */

import { DENO, type Env, must, ROOT, run } from "../e2e/_env.ts";

/** How to run `deno` as nobody. */
export interface NobodyDeno {
  /** `setpriv … -- <deno>`: append a Deno subcommand and its arguments. */
  cmd: string[];
  /** The environment for it: `DENO_DIR`, `HOME`, no update check. */
  env: Record<string, string>;
  /** The Deno cache nobody uses (owned by nobody). */
  denoDir: string;
  /**
   * The whole command that runs a script of this repository as nobody:
   * `deno run -A --cached-only --config <repo>/deno.json <script> …args`.
   */
  run(script: string, ...args: string[]): string[];
}

/**
 * Prepares a Deno cache that user nobody can use and returns how to run Deno
 * as nobody. The directory is removed on `env`'s cleanup.
 *
 * @param env the test's environment
 * @param options the entry points to cache (default `main.ts` of the repository), the uid
 *   to run as (default 65534, nobody) and where to make the cache (default the temporary directory)
 * @returns the command prefix, environment and cache path
 * @throws {Error} when a repository file nobody must read is not world-readable, or caching fails
 */
export async function denoForNobody(
  env: Env,
  options: { entries?: string[]; uid?: number; parent?: string } = {},
): Promise<NobodyDeno> {
  const entries = options.entries ?? [`${ROOT}/main.ts`];
  const unreadable = (await run([
    "find",
    ROOT,
    "(",
    "-path",
    `${ROOT}/.git`,
    "-o",
    "-path",
    `${ROOT}/.tools`,
    "-o",
    "-path",
    `${ROOT}/dist`,
    ")",
    "-prune",
    "-o",
    "(",
    "-type",
    "d",
    "!",
    "-perm",
    "-o+rx",
    "-o",
    "-type",
    "f",
    "!",
    "-perm",
    "-o+r",
    ")",
    "-print",
  ])).stdout.trim();
  if (unreadable) {
    throw new Error(
      `Cannot run Deno as nobody: these are not world-readable: ${
        unreadable.split("\n").slice(0, 10).join(", ")
      }`,
    );
  }

  const uid = options.uid ?? 65534;
  const top = await Deno.makeTempDir({
    prefix: "vif-nobody-deno-",
    ...(options.parent ? { dir: options.parent } : {}),
  });
  env.defer(() => Deno.remove(top, { recursive: true }).catch(() => {}));
  await Deno.chmod(top, 0o755);
  const denoDir = `${top}/deno`;
  const home = `${top}/home`;
  await Deno.mkdir(denoDir);
  await Deno.mkdir(home);

  // Start from root's cache (no network here), then let deno fill what is missing.
  const source = Deno.env.get("DENO_DIR") ??
    `${Deno.env.get("HOME") ?? "/root"}/.cache/deno`;
  for (const sub of ["npm", "remote"]) {
    const from = `${source}/${sub}`;
    if (await exists(from)) await must(["cp", "-a", from, `${denoDir}/${sub}`]);
  }
  const denoEnv = { DENO_DIR: denoDir, HOME: home, DENO_NO_UPDATE_CHECK: "1", NO_COLOR: "1" };
  await must([DENO, "cache", "--config", `${ROOT}/deno.json`, ...entries], { env: denoEnv });
  await must(["chown", "-R", `${uid}:${uid}`, denoDir, home]);
  await must(["chmod", "-R", "a+rX", top]);

  const cmd = ["setpriv", `--reuid=${uid}`, `--regid=${uid}`, "--clear-groups", "--", DENO];
  return {
    cmd,
    env: denoEnv,
    denoDir,
    run: (script, ...args) => [
      ...cmd,
      "run",
      "-A",
      "--cached-only",
      "--config",
      `${ROOT}/deno.json`,
      script,
      ...args,
    ],
  };
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}
