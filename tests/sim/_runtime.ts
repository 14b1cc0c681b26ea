/**
 * The container runtime of a simulated node: how one container's process is
 * started inside its pod. The machine has no images, so a container's root
 * is made from the machine's own directories; what a runtime would isolate
 * otherwise, it isolates:
 *
 * ```
 *   ip netns exec <pod netns>          the pod's network namespace, shared by all its containers
 *     unshare --mount --uts            the container's own mounts and hostname
 *       sh start.sh:
 *         hostname <pod name>
 *         a tmpfs as the new root: each top-level directory of the machine bound into it
 *           (/usr, /etc, /tmp, …; /etc carries the pod's resolv.conf and hosts), a fresh /run
 *         pivot_root into it, then each volume bound at its mountPath (subPath, readOnly)
 *         exec setsid env -i <env> -C <workingDir> setpriv <user, groups, capabilities> -- <argv>
 * ```
 *
 * A mount point the machine lacks is made in the new root when its first
 * missing directory lies in the root itself, in `/run` (or `/var/run`), or
 * in `/tmp`; anywhere else (under `/etc`, `/usr`, …) it would be made on the
 * machine, and the container does not start.
 *
 * Capabilities as containerd gives them: the bounding set is the runtime's
 * default set (`CHOWN`, `DAC_OVERRIDE`, …, `NET_RAW`, `NET_BIND_SERVICE`),
 * with `capabilities.add` and `.drop` applied (`ALL` first), or every one
 * when `privileged`; a process running as uid 0 has that set, any other user
 * has none (Kubernetes gives no ambient capabilities). So an init container
 * with `drop: [ALL], add: [NET_ADMIN]` may run `nft` in the pod's network
 * namespace, and an app container may not.
 *
 * @module
 */

import type { SecurityContext } from "./_pod_spec.ts";
import { ContainerConfigError } from "./_container_env.ts";

/** The capabilities containerd gives a container by default. */
export const DEFAULT_CAPABILITIES = [
  "CHOWN",
  "DAC_OVERRIDE",
  "FSETID",
  "FOWNER",
  "MKNOD",
  "NET_RAW",
  "SETGID",
  "SETUID",
  "SETFCAP",
  "SETPCAP",
  "NET_BIND_SERVICE",
  "SYS_CHROOT",
  "KILL",
  "AUDIT_WRITE",
];

/** Every capability Linux knows (`setpriv --list-caps`, upper case). */
export const ALL_CAPABILITIES = [
  "CHOWN",
  "DAC_OVERRIDE",
  "DAC_READ_SEARCH",
  "FOWNER",
  "FSETID",
  "KILL",
  "SETGID",
  "SETUID",
  "SETPCAP",
  "LINUX_IMMUTABLE",
  "NET_BIND_SERVICE",
  "NET_BROADCAST",
  "NET_ADMIN",
  "NET_RAW",
  "IPC_LOCK",
  "IPC_OWNER",
  "SYS_MODULE",
  "SYS_RAWIO",
  "SYS_CHROOT",
  "SYS_PTRACE",
  "SYS_PACCT",
  "SYS_ADMIN",
  "SYS_BOOT",
  "SYS_NICE",
  "SYS_RESOURCE",
  "SYS_TIME",
  "SYS_TTY_CONFIG",
  "MKNOD",
  "LEASE",
  "AUDIT_WRITE",
  "AUDIT_CONTROL",
  "SETFCAP",
  "MAC_OVERRIDE",
  "MAC_ADMIN",
  "SYSLOG",
  "WAKE_ALARM",
  "BLOCK_SUSPEND",
  "AUDIT_READ",
  "PERFMON",
  "BPF",
  "CHECKPOINT_RESTORE",
];

/** Where a container's volumes and the machine's directories are assembled before the pivot. */
const NEW_ROOT = "/run/.sim-root";
/** Where the machine's root is, in the new root, until it is let go. */
const OLD_ROOT = "/.sim-old-root";

/**
 * The bounding set of a container, as containerd computes it from its
 * security context: the default set, or all when privileged; then `add:
 * [ALL]`, `drop: [ALL]`, each added one, each dropped one. Names may carry
 * `CAP_`.
 *
 * @param sc the container's security context
 * @returns the capability names, upper case, without `CAP_`
 * @throws {ContainerConfigError} for a capability Linux does not have
 */
export function capabilities(sc: SecurityContext | undefined): string[] {
  if (sc?.privileged) return [...ALL_CAPABILITIES];
  const norm = (c: string) => {
    const name = c.toUpperCase().replace(/^CAP_/, "");
    if (name !== "ALL" && !ALL_CAPABILITIES.includes(name)) {
      throw new ContainerConfigError(`unknown capability "${c}"`, "CreateContainerError");
    }
    return name;
  };
  const add = (sc?.capabilities?.add ?? []).map(norm);
  const drop = (sc?.capabilities?.drop ?? []).map(norm);
  const set = new Set(DEFAULT_CAPABILITIES);
  if (add.includes("ALL")) { for (const c of ALL_CAPABILITIES) set.add(c); }
  if (drop.includes("ALL")) set.clear();
  for (const c of add) if (c !== "ALL") set.add(c);
  for (const c of drop) set.delete(c);
  return ALL_CAPABILITIES.filter((c) => set.has(c));
}

/** One mount of a volume into a container. */
export interface ContainerMount {
  /** The volume's directory (or, with a subPath, the file or directory in it) on the machine. */
  host: string;
  /** Where the container sees it. */
  path: string;
  readOnly: boolean;
  /** Whether `host` is a file (a subPath naming one). */
  file: boolean;
  /** `path` with the machine's symlinks resolved ({@linkcode checkMountPoint}). */
  real: string;
}

/** Everything a container's process is started with. */
export interface ContainerProcess {
  /** The program and its arguments (`$(VAR)` already expanded). */
  argv: string[];
  /** The environment, in order. */
  env: Array<[string, string]>;
  uid: number;
  gid: number;
  /** Supplementary groups (`fsGroup`, `supplementalGroups`). */
  groups: number[];
  /** The bounding set (see {@linkcode capabilities}). */
  capabilities: string[];
  /** `allowPrivilegeEscalation: false`. */
  noNewPrivs: boolean;
  /** Default `/`. */
  workingDir?: string | undefined;
  /** The pod's hostname. */
  hostname: string;
  mounts: ContainerMount[];
  /**
   * Files that stand for the image (this repository, Deno and its cache for
   * a vif image): bound back over a volume that would hide them.
   */
  imagePaths: string[];
}

/** The top-level entries of the machine's root, as the new root repeats them. */
export interface HostRoot {
  dirs: string[];
  /** `bin` → `usr/bin` on a merged-/usr system. */
  links: Array<[string, string]>;
}

/**
 * Reads the machine's top-level directories and links (but `/run`, which
 * each container gets fresh).
 *
 * @returns the entries
 */
export async function readHostRoot(): Promise<HostRoot> {
  const root: HostRoot = { dirs: [], links: [] };
  for await (const e of Deno.readDir("/")) {
    if (e.name === "run" || !/^[\w.@+-]+$/.test(e.name)) continue;
    if (e.isSymlink) root.links.push([e.name, await Deno.readLink(`/${e.name}`)]);
    else if (e.isDirectory) root.dirs.push(e.name);
  }
  root.dirs.sort();
  root.links.sort();
  return root;
}

/**
 * Checks that a mount point can be made in a container without making it on
 * the machine (see the module documentation), and finds where it really is
 * (`/var/run/x` is `/run/x`), so that the start script can refuse a path
 * that an earlier volume's symlinks would send elsewhere.
 *
 * @param path the mount path
 * @param file whether the mount point is a file
 * @returns the path with the machine's symlinks resolved
 * @throws {ContainerConfigError} when it cannot be made there
 */
export async function checkMountPoint(path: string, file: boolean): Promise<string> {
  if (!path.startsWith("/") || path.split("/").includes("..")) {
    throw new ContainerConfigError(`mount path "${path}" must be absolute and without ".."`);
  }
  const parts = path.split("/").filter((p) => p !== "" && p !== ".");
  if (parts.length === 0) throw new ContainerConfigError(`a volume cannot be mounted at "/"`);
  // The longest prefix the machine has.
  let have = 0;
  for (let i = 1; i <= parts.length; i++) {
    try {
      await Deno.lstat("/" + parts.slice(0, i).join("/"));
      have = i;
    } catch {
      break;
    }
  }
  const existing = "/" + parts.slice(0, have).join("/");
  const base = have === 0 ? "" : await Deno.realPath(existing).catch(() => existing);
  const real = [base, ...parts.slice(have)].join("/").replace(/^\/\//, "/") || "/";
  const inRun = (p: string) => p === "/run" || p.startsWith("/run/");
  const inTmp = (p: string) => p === "/tmp" || p.startsWith("/tmp/");
  // Made in the new root, or in its own /run; or /tmp, which is the machine's, as before.
  if (have === 0 || parts[0] === "run" || inRun(real) || inTmp(real)) return real;
  if (have === parts.length) {
    const info = await Deno.stat(path).catch(() => undefined);
    if (info && info.isFile === file) return real;
  }
  throw new ContainerConfigError(
    `the simulated kubelet cannot make the mount point "${path}": "${existing}" is the machine's own directory; mount under a directory the machine does not have, or under /run, /var/run or /tmp`,
  );
}

/**
 * The `setpriv` words that switch to the container's user, groups and
 * capabilities (also what `Sim.execInPod` runs a command with).
 *
 * @param p the process
 * @returns `setpriv … --`
 */
export function setprivArgv(
  p: Pick<ContainerProcess, "uid" | "gid" | "groups" | "capabilities" | "noNewPrivs">,
): string[] {
  const caps = p.capabilities.length
    ? `-all,${p.capabilities.map((c) => `+${c.toLowerCase()}`).join(",")}`
    : "-all";
  return [
    "setpriv",
    `--reuid=${p.uid}`,
    `--regid=${p.gid}`,
    p.groups.length ? `--groups=${p.groups.join(",")}` : "--clear-groups",
    "--inh-caps=-all",
    `--bounding-set=${caps}`,
    ...(p.noNewPrivs ? ["--no-new-privs"] : []),
    "--",
  ];
}

/**
 * A word for `sh`, quoted when needed.
 *
 * @param word the word
 * @returns the word, safe to paste into a command line
 */
export function shellQuote(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replaceAll("'", `'\\''`)}'`;
}

/**
 * The script that starts a container (see the module documentation); run
 * it with `ip netns exec <pod> unshare --mount --uts --propagation private
 * sh <script>`.
 *
 * @param p the process and its mounts
 * @param root the machine's top-level entries
 * @param label what the script's first comment says (`pod ns/name, container c`)
 * @returns the script
 */
export function startScript(p: ContainerProcess, root: HostRoot, label: string): string {
  const q = shellQuote;
  const r = NEW_ROOT;
  const lines = [
    "#!/bin/sh",
    `# ${label.replaceAll("\n", " ")}: what a container runtime would set up`,
    "set -e",
    `hostname ${q(p.hostname)}`,
    "mount -t tmpfs -o mode=0755,size=16m tmpfs /run",
    `mkdir ${r}`,
    `mount -t tmpfs -o mode=0755,size=16m tmpfs ${r}`,
    ...root.dirs.flatMap((d) => [`mkdir ${r}/${d}`, `mount --rbind /${d} ${r}/${d}`]),
    ...root.links.map(([name, target]) => `ln -s ${q(target)} ${r}/${name}`),
    `mkdir ${r}/run`,
    `mount -t tmpfs -o mode=0755,size=16m tmpfs ${r}/run`,
    `mkdir ${r}${OLD_ROOT}`,
    `cd ${r}`,
    `pivot_root . ${OLD_ROOT.slice(1)}`,
    "cd /",
    // In the new root now: its symlinks (/var/run → /run) resolve in it.
    ...p.mounts.flatMap((m) => {
      const hidden = p.imagePaths.filter((x) =>
        x === m.path || x.startsWith(`${m.path.replace(/\/$/, "")}/`)
      );
      const dir = m.path.slice(0, m.path.lastIndexOf("/")) || "/";
      return [
        // Not through a symlink a volume mounted before brought in.
        `[ "$(realpath -m ${q(m.path)})" = ${q(m.real)} ] || ` +
        `{ echo ${q(`mount point "${m.path}" does not resolve to "${m.real}"`)} >&2; exit 1; }`,
        ...(m.file
          ? [`mkdir -p ${q(dir)}`, `[ -e ${q(m.path)} ] || : > ${q(m.path)}`]
          : [`mkdir -p ${q(m.path)}`]),
        `mount --bind ${m.readOnly ? "-o ro " : ""}${q(OLD_ROOT + m.host)} ${q(m.path)}`,
        ...hidden.flatMap((x) => [`mkdir -p ${q(x)}`, `mount --bind ${q(OLD_ROOT + x)} ${q(x)}`]),
      ];
    }),
    `umount -l ${OLD_ROOT}`,
    `rmdir ${OLD_ROOT}`,
    [
      // A session of its own: what is left of it when it ends can be found and killed.
      "exec setsid env -i",
      ...(p.workingDir ? ["-C", q(p.workingDir)] : []),
      ...p.env.map(([k, v]) => q(`${k}=${v}`)),
      ...setprivArgv(p),
      ...p.argv.map(q),
    ].join(" \\\n  "),
    "",
  ];
  return lines.join("\n");
}
