/**
 * The kubelet's atomic writer, which fills ConfigMap, Secret, projected and
 * downward API volumes so that a container never sees half an update:
 *
 * ```
 *   <volume>/..2025_06_01_12_00_00.123456/token     the files of this version (their mode, owner)
 *   <volume>/..data -> ..2025_06_01_12_00_00.123456 swapped by rename(2) to the next version
 *   <volume>/token -> ..data/token                   what the container opens
 * ```
 *
 * A write that changes nothing leaves the volume alone. With an `fsGroup`,
 * what the volume holds is then given to that group, readable by it
 * (`SetVolumeOwnership` of a read-only volume: files `| 0440`, directories
 * `| 02550`).
 *
 * @module
 */

/** One file to write. */
export interface FileProjection {
  data: Uint8Array;
  /** Its mode (`defaultMode`, or the item's `mode`). */
  mode: number;
  /** Its owner, when the kubelet gives one (a token for a pod that runs as one user). */
  uid?: number;
}

/** A path of the payload the writer refuses (absolute, `..`, empty). */
export class PayloadPathError extends RangeError {
  /**
   * @param path the path
   * @param why what is wrong with it
   */
  constructor(path: string, why: string) {
    super(`invalid path "${path}": ${why}`);
    this.name = "PayloadPathError";
  }
}

function checkPath(path: string): void {
  if (path === "") throw new PayloadPathError(path, "must not be empty");
  if (path.startsWith("/")) throw new PayloadPathError(path, "must be relative");
  if (path.startsWith("..")) throw new PayloadPathError(path, "must not start with '..'");
  if (path.split("/").some((p) => p === ".." || p === "")) {
    throw new PayloadPathError(path, "must not contain '..' or an empty element");
  }
}

function stamp(d: Date): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `..${d.getUTCFullYear()}_${p(d.getUTCMonth() + 1)}_${p(d.getUTCDate())}_${
    p(d.getUTCHours())
  }_${p(d.getUTCMinutes())}_${p(d.getUTCSeconds())}.`;
}

async function sameAsCurrent(
  dir: string,
  payload: Map<string, FileProjection>,
  fsGroup: number | undefined,
): Promise<boolean> {
  const current = `${dir}/..data`;
  const seen: string[] = [];
  const walk = async (rel: string): Promise<boolean> => {
    for await (const e of Deno.readDir(`${current}/${rel}`)) {
      const path = rel ? `${rel}/${e.name}` : e.name;
      if (e.isDirectory) {
        if (!await walk(path)) return false;
        continue;
      }
      const want = payload.get(path);
      if (!want) return false;
      const info = await Deno.stat(`${current}/${path}`);
      const mode = (want.mode & 0o7777) | (fsGroup === undefined ? 0 : 0o440);
      if ((info.mode! & 0o7777) !== mode) return false;
      const have = await Deno.readFile(`${current}/${path}`);
      if (have.length !== want.data.length || have.some((b, i) => b !== want.data[i])) return false;
      seen.push(path);
    }
    return true;
  };
  try {
    return await walk("") && seen.length === payload.size;
  } catch {
    return false;
  }
}

async function own(path: string, fsGroup: number, isDir: boolean): Promise<void> {
  await Deno.chown(path, null, fsGroup);
  const mode = (await Deno.stat(path)).mode! & 0o7777;
  await Deno.chmod(path, mode | (isDir ? 0o2550 : 0o440));
}

async function ownTree(path: string, fsGroup: number): Promise<void> {
  for await (const e of Deno.readDir(path)) {
    if (e.isSymlink) continue;
    const child = `${path}/${e.name}`;
    if (e.isDirectory) await ownTree(child, fsGroup);
    await own(child, fsGroup, e.isDirectory);
  }
}

/**
 * Writes a volume's files as one atomic update (see the module documentation).
 *
 * @param dir the volume's directory (made when missing)
 * @param payload the files by relative path
 * @param options the `fsGroup`, and the clock for the version's name
 * @returns whether anything changed
 * @throws {PayloadPathError} for a path that would leave the volume
 */
export async function writeAtomically(
  dir: string,
  payload: Map<string, FileProjection>,
  options: { fsGroup?: number | undefined; now?: Date } = {},
): Promise<boolean> {
  for (const path of payload.keys()) checkPath(path);
  await Deno.mkdir(dir, { recursive: true });
  if (await sameAsCurrent(dir, payload, options.fsGroup)) return false;
  const old = await Deno.readLink(`${dir}/..data`).catch(() => undefined);
  const version = await Deno.makeTempDir({ dir, prefix: stamp(options.now ?? new Date()) });
  await Deno.chmod(version, 0o755);
  for (const [path, file] of payload) {
    const full = `${version}/${path}`;
    await Deno.mkdir(full.slice(0, full.lastIndexOf("/")), { recursive: true, mode: 0o755 });
    await Deno.writeFile(full, file.data, { mode: file.mode & 0o7777 });
    await Deno.chmod(full, file.mode & 0o7777);
    if (file.uid !== undefined) await Deno.chown(full, file.uid, null);
  }
  if (options.fsGroup !== undefined) {
    await ownTree(version, options.fsGroup);
    await own(version, options.fsGroup, true);
  }
  const name = version.slice(dir.length + 1);
  await Deno.remove(`${dir}/..data_tmp`).catch(() => {});
  await Deno.symlink(name, `${dir}/..data_tmp`);
  await Deno.rename(`${dir}/..data_tmp`, `${dir}/..data`);
  const top = new Set([...payload.keys()].map((p) => p.split("/")[0]!));
  for (const t of top) {
    const link = `${dir}/${t}`;
    const target = await Deno.readLink(link).catch(() => undefined);
    if (target === `..data/${t}`) continue;
    await Deno.remove(link, { recursive: true }).catch(() => {});
    await Deno.symlink(`..data/${t}`, link);
  }
  for await (const e of Deno.readDir(dir)) {
    if (e.name.startsWith("..") || top.has(e.name)) continue;
    await Deno.remove(`${dir}/${e.name}`, { recursive: true });
  }
  if (old && old !== name) await Deno.remove(`${dir}/${old}`, { recursive: true }).catch(() => {});
  if (options.fsGroup !== undefined) await own(dir, options.fsGroup, true);
  return true;
}
