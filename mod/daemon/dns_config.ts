/**
 * How the operating system is told to ask the daemon's DNS server
 * (DESIGN.md §5), after tailscale's `OSConfigurator`: one interface, one
 * implementation per mechanism, picked by a pure function of the environment.
 *
 * - {@linkcode ResolvedConfigurator}: systemd-resolved per-link DNS on the
 *   TUN with routing domains (`~cluster.local`, `~<namespace>`…), so only
 *   cluster names come to us; everything else stays as it was. The link's
 *   settings vanish with the link.
 * - {@linkcode ResolvConfConfigurator}: `/etc/resolv.conf` rewritten in place
 *   to `nameserver 240.0.0.2` plus the cluster search path; the original is
 *   saved first and put back on quit, or by {@linkcode ResolvConfConfigurator.recover}
 *   on the next start after a crash. Non-cluster names then go to the
 *   original nameservers through the daemon (`upstream` of `apply`).
 * - {@linkcode chooseConfigurator}: resolved when it runs and
 *   `/etc/resolv.conf` is its stub, else resolv.conf.
 *
 * @module
 */

import type { Cidr } from "../net/address.ts";
import { readOwnFile, writeOwnFile } from "./state_dir.ts";

/** Log sink; lines start with `dns: `. */
export type DnsConfigLog = (level: "debug" | "info" | "warn", message: string) => void;

/** What the OS is to be told. */
export interface DnsOsConfig {
  /** The daemon's DNS address, `240.0.0.2`. */
  address: string;
  /** Search domains, most specific first: `default.svc.cluster.local svc.cluster.local cluster.local`. */
  searchDomains: string[];
  /** Domains whose names must come to us (`cluster.local`, namespaces, `svc`, reverse zones). */
  routingDomains: string[];
  /** The TUN's name, `vif0`. */
  interfaceName: string;
}

/** The outcome of {@linkcode DnsConfigurator.apply}. */
export interface DnsApplied {
  /**
   * Where the daemon should send names that are not the cluster's: the
   * nameservers the workstation used before (resolv.conf), or resolved's stub.
   * Never the daemon's own address.
   */
  upstream: string[];
}

/** One way of pointing the OS at the daemon's DNS server. */
export interface DnsConfigurator {
  /**
   * Points the OS at `config.address`. May be called again with a new config
   * (new namespaces): the original saved the first time is kept.
   *
   * @throws {Error} when the OS cannot be configured; nothing is left changed
   */
  apply(config: DnsOsConfig): Promise<DnsApplied>;
  /** Puts back what `apply` changed; does nothing when nothing was applied. */
  restore(): Promise<void>;
  /** One line for logs and `vif status`. */
  describe(): string;
}

// --- which domains ---------------------------------------------------------------

/** Options for {@linkcode clusterDnsDomains}. */
export interface ClusterDnsDomainsOptions {
  clusterDomain: string;
  namespace: string;
  namespaces?: string[];
  /** `--dns-include` suffixes. */
  include?: string[];
  /** Pod and service subnets: their reverse zones become routing domains. */
  subnets?: Cidr[];
}

/**
 * The search and routing domains for a cluster, as {@linkcode DnsOsConfig} wants them.
 *
 * @param options the cluster's domain, namespaces, include suffixes, subnets
 * @returns search domains (a pod's search path) and routing domains
 * @example
 * ```ts
 * import { clusterDnsDomains } from "./dns_config.ts";
 * clusterDnsDomains({ clusterDomain: "cluster.local", namespace: "default", namespaces: ["other"] });
 * // { searchDomains: ["default.svc.cluster.local", "svc.cluster.local", "cluster.local"],
 * //   routingDomains: ["cluster.local", "svc", "default", "other"] }
 * ```
 */
export function clusterDnsDomains(
  options: ClusterDnsDomainsOptions,
): { searchDomains: string[]; routingDomains: string[] } {
  const clean = (d: string) => d.toLowerCase().replace(/^\.+|\.+$/g, "");
  const domain = clean(options.clusterDomain);
  const namespace = clean(options.namespace);
  const searchDomains = [`${namespace}.svc.${domain}`, `svc.${domain}`, domain];
  const routing = [
    domain,
    "svc",
    namespace,
    ...(options.namespaces ?? []).map(clean),
    ...(options.include ?? []).map(clean),
    ...(options.subnets ?? []).flatMap(reverseZones),
  ].filter((d) => d !== "");
  return { searchDomains, routingDomains: [...new Set(routing)] };
}

/**
 * The reverse zones covering a subnet (RFC 1035 3.5, RFC 3596 2.5), at label
 * boundaries: `198.18.0.0/15` → `18.198.in-addr.arpa`, `19.198.in-addr.arpa`.
 * The zones cover the subnet exactly, never more: with resolved, a wider
 * routing domain would send PTR names of non-cluster addresses to us, and
 * from us upstream, and back. A subnet that needs more than 256 zones gets
 * none (its PTR names then reach us only through resolv.conf mode).
 */
function reverseZones(cidr: Cidr): string[] {
  const v4 = cidr.family === 4;
  const step = v4 ? 8 : 4;
  const suffix = v4 ? "in-addr.arpa" : "ip6.arpa";
  const units = (bits: number) => {
    const out: number[] = [];
    for (let i = 0; i < bits / step; i++) {
      const byte = cidr.bytes[v4 ? i : i >> 1]!;
      out.push(v4 ? byte : i & 1 ? byte & 0xf : byte >> 4);
    }
    return out;
  };
  const name = (parts: number[]) =>
    [...parts.map((p) => p.toString(v4 ? 10 : 16)).reverse(), suffix].join(".");
  const whole = Math.floor(cidr.prefixLength / step) * step;
  const extra = cidr.prefixLength - whole;
  if (extra === 0) return [name(units(whole))];
  const count = 1 << (step - extra);
  if (count > 256) return [];
  const base = units(whole + step);
  return Array.from({ length: count }, (_, i) => {
    const parts = [...base];
    parts[parts.length - 1] = parts[parts.length - 1]! + i;
    return name(parts);
  });
}

// --- resolv.conf -------------------------------------------------------------------

/** Options for {@linkcode ResolvConfConfigurator}. */
export interface ResolvConfOptions {
  /** The file to rewrite (default `/etc/resolv.conf`). */
  path?: string;
  /** Where the original is kept until restored (default `/var/lib/vif`). */
  stateDir?: string;
  /** Log sink. */
  log?: DnsConfigLog;
}

/** What is kept in the state dir beside the original bytes. */
interface SavedState {
  /** The file that was rewritten. */
  path: string;
  /** Whether it existed; if not, restoring removes it. */
  existed: boolean;
  /**
   * The target when the path was a symlink to nothing (resolved's stub link
   * while resolved is stopped): the link is replaced by a file, and put back.
   */
  link?: string;
  /** What vif wrote, to tell whether someone has rewritten it since. */
  written: string;
  /** When, for the log. */
  savedAt: string;
}

const ORIGINAL = "resolv.conf.orig";
/** The file in the state directory that says resolv.conf was rewritten (see `recover`). */
export const RESOLV_CONF_STATE = "resolv.conf.json";
const MARKER = "# Written by vif";

/**
 * Rewrites `/etc/resolv.conf` to point at the daemon, keeping the original.
 *
 * The file is written in place (open, truncate, write), never replaced by a
 * rename: inside `ip netns exec`, `/etc/resolv.conf` is a bind mount of
 * `/etc/netns/NAME/resolv.conf` and a rename over it fails; in place also
 * keeps the file's owner and mode, and writes through a symlink to its
 * target. The original bytes are saved in the state dir before anything
 * changes, so a crash at any point can be undone by {@linkcode recover}.
 *
 * The new file has `nameserver <address>`, a `search` line with the cluster's
 * search path before the original search domains, and the original
 * `options` and `sortlist` lines unchanged. `ndots` is left as it was (glibc's
 * default is 1), not raised to a pod's 5: the interceptor itself maps
 * `web.other` and `web.other.svc`, which glibc tries as they are when they
 * have at least ndots dots, and only single labels need the search path. With
 * ndots 5, every internet name with fewer than five dots would first be tried
 * against three cluster suffixes.
 *
 * If the file changed under us while connected (a DHCP client or
 * NetworkManager rewrote it), restoring leaves the newer file alone.
 *
 * @example
 * ```ts ignore
 * const dns = new ResolvConfConfigurator({ stateDir: "/var/lib/vif" });
 * const { upstream } = await dns.apply({ address: "240.0.0.2", searchDomains, routingDomains, interfaceName: "vif0" });
 * // … on quit
 * await dns.restore();
 * ```
 */
export class ResolvConfConfigurator implements DnsConfigurator {
  #path: string;
  #stateDir: string;
  #log: DnsConfigLog;
  #state: SavedState | undefined;
  #upstream: string[] = [];
  /** The original text, for rendering again on a second apply. */
  #original = "";
  #originalBytes: Uint8Array | undefined;

  /**
   * Makes the configurator; nothing changes until {@linkcode apply}.
   *
   * @param options the file, the state dir, the log
   */
  constructor(options: ResolvConfOptions = {}) {
    this.#path = options.path ?? "/etc/resolv.conf";
    this.#stateDir = options.stateDir ?? "/var/lib/vif";
    this.#log = options.log ?? (() => {});
  }

  /** One line for logs. */
  describe(): string {
    return `resolv.conf: ${this.#path} (original kept in ${this.#stateDir}/${ORIGINAL})`;
  }

  /**
   * Saves the original, then writes the new file in place.
   *
   * @param config the address and search domains (routing domains and the interface are unused)
   * @returns the original nameservers, for the daemon's upstream resolver
   * @throws {Error} when the file cannot be read or written, or holds vif's
   *   text with no saved original to go back to
   */
  async apply(config: DnsOsConfig): Promise<DnsApplied> {
    const first = this.#state === undefined;
    if (this.#state === undefined) {
      await ResolvConfConfigurator.recover(this.#stateDir, { log: this.#log });
      const original = await readOptional(this.#path);
      const text = original === undefined ? "" : new TextDecoder().decode(original);
      if (text.includes(MARKER)) {
        throw new Error(
          `Cannot configure DNS: "${this.#path}" was written by vif and its original is not in "${this.#stateDir}": put the right one back by hand`,
        );
      }
      const link = original === undefined ? await symlinkTarget(this.#path) : undefined;
      const upstream = parseNameservers(text).filter((ns) => ns !== config.address);
      // glibc asks 127.0.0.1 when there is no nameserver line (resolv.conf(5)).
      this.#upstream = upstream.length > 0 ? upstream : ["127.0.0.1"];
      const state: SavedState = {
        path: this.#path,
        existed: original !== undefined,
        ...(link === undefined ? {} : { link }),
        written: "",
        savedAt: new Date().toISOString(),
      };
      await Deno.mkdir(this.#stateDir, { recursive: true, mode: 0o700 });
      // The original first, then the state that says it is there: a crash
      // between the two leaves an original without state, which recover drops.
      if (original !== undefined) {
        await writeReplacing(`${this.#stateDir}/${ORIGINAL}`, original);
      }
      this.#state = { ...state, written: render(config, text, this.#restoreHint(state)) };
      await this.#saveState();
      this.#original = text;
      this.#originalBytes = original;
      if (link !== undefined) {
        this.#log(
          "info",
          `dns: replacing the dangling symlink ${this.#path} → ${link} with a file`,
        );
        await Deno.remove(this.#path);
      }
    } else {
      const written = render(config, this.#original, this.#restoreHint(this.#state));
      // The same configuration, still in the file: nothing to write or say.
      const onDisk = await Deno.readTextFile(this.#path).catch(() => undefined);
      if (written === this.#state.written && onDisk === written) {
        return { upstream: [...this.#upstream] };
      }
      this.#state.written = written;
      await this.#saveState();
    }
    try {
      await writeInPlace(this.#path, new TextEncoder().encode(this.#state.written));
    } catch (cause) {
      if (first) await this.#undoFirst();
      throw new Error(`Cannot configure DNS: cannot write "${this.#path}": ${message(cause)}`, {
        cause,
      });
    }
    this.#log(
      "info",
      `dns: ${this.#path} now points at ${config.address} (search ${
        config.searchDomains.join(" ")
      }); other names go to ${this.#upstream.join(", ")}`,
    );
    return { upstream: [...this.#upstream] };
  }

  /** After a failed first write: the original back (the write may have truncated it), state gone. */
  async #undoFirst(): Promise<void> {
    const state = this.#state!;
    try {
      // A write refused at open (a read-only file) changed nothing: only the state goes.
      const now = await readOptional(state.path).catch(() => undefined);
      const unchanged = now !== undefined && this.#originalBytes !== undefined &&
        now.length === this.#originalBytes.length &&
        now.every((b, i) => b === this.#originalBytes![i]);
      if (unchanged) {
        this.#state = undefined;
        await removeState(this.#stateDir);
        return;
      }
      if (this.#originalBytes !== undefined) await writeInPlace(state.path, this.#originalBytes);
      else await removeAndRelink(state);
      this.#state = undefined;
      await removeState(this.#stateDir);
    } catch (error) {
      // Keep the saved copy: the hint in the log says how to put it back.
      this.#log(
        "warn",
        `dns: cannot put "${state.path}" back: ${message(error)}; by hand: ${
          this.#restoreHint(state)
        }`,
      );
    }
  }

  #restoreHint(state: Pick<SavedState, "existed" | "path" | "link">): string {
    if (state.existed) return `cp ${this.#stateDir}/${ORIGINAL} ${state.path}`;
    return state.link === undefined ? `rm ${state.path}` : `ln -sfn ${state.link} ${state.path}`;
  }

  async #saveState(): Promise<void> {
    const json = new TextEncoder().encode(JSON.stringify(this.#state, null, 2) + "\n");
    await writeReplacing(`${this.#stateDir}/${RESOLV_CONF_STATE}`, json);
  }

  /**
   * Puts the original back byte for byte (or removes the file if there was
   * none) and deletes the saved copy.
   *
   * @throws {Error} when the file cannot be written; the saved copy is kept
   */
  async restore(): Promise<void> {
    if (this.#state === undefined) return;
    await ResolvConfConfigurator.recover(this.#stateDir, { log: this.#log });
    this.#state = undefined;
  }

  /**
   * Undoes what an earlier daemon applied and could not restore (it
   * crashed): if the state dir holds a saved original, it is put back —
   * unless the file has been rewritten by someone else since, in which case
   * that newer file stays — and the saved copy is removed. Call it when the
   * daemon starts. A file that is already the original (the DNS watchdog
   * put it back) only loses the saved copy.
   *
   * @param stateDir the state dir the earlier daemon used
   * @param options the log
   * @returns `true` when the original is back
   * @throws {Error} when the file cannot be written; the saved copy is kept
   */
  static async recover(stateDir: string, options: { log?: DnsConfigLog } = {}): Promise<boolean> {
    const log = options.log ?? (() => {});
    const saved = await loadSaved(stateDir, log);
    if (saved === undefined) return false;
    const { state } = saved;
    const current = await readOptional(state.path);
    if (isOriginal(current, saved)) {
      await removeState(stateDir);
      log("info", `dns: ${state.path} is already as it was before ${state.savedAt}`);
      return true;
    }
    if (!isVifs(current, state)) {
      log(
        "warn",
        `dns: "${state.path}" was changed by someone else since vif wrote it: leaving it as it is`,
      );
      await removeState(stateDir);
      return false;
    }
    if (state.existed && saved.original === undefined) {
      log("warn", `dns: the saved original of "${state.path}" is missing: leaving it as it is`);
      await removeState(stateDir);
      return false;
    }
    await putOriginal(saved);
    await removeState(stateDir);
    log("info", `dns: restored ${state.path} as it was before ${state.savedAt}`);
    return true;
  }

  /**
   * Puts the original back for a while, keeping the saved copy: what the
   * DNS watchdog does while the daemon does not answer. Only a file that is
   * still vif's is touched.
   *
   * @param stateDir the state dir of the daemon
   * @param options the log
   * @returns `true` when the original is in place now
   * @throws {Error} when the file cannot be written
   */
  static async suspend(stateDir: string, options: { log?: DnsConfigLog } = {}): Promise<boolean> {
    const log = options.log ?? (() => {});
    const saved = await loadSaved(stateDir, log, { keep: true });
    if (saved === undefined) return false;
    const current = await readOptional(saved.state.path);
    if (isOriginal(current, saved)) return true;
    if (!isVifs(current, saved.state)) return false;
    if (saved.state.existed && saved.original === undefined) return false;
    await putOriginal(saved);
    log("info", `dns: ${saved.state.path} holds the original for now`);
    return true;
  }

  /**
   * Writes vif's file again after {@linkcode suspend}, if the file is still
   * the original (nobody rewrote it meanwhile) and vif still has it.
   *
   * @param stateDir the state dir of the daemon
   * @param options the log
   * @returns `true` when vif's file is in place now
   * @throws {Error} when the file cannot be written
   */
  static async resume(stateDir: string, options: { log?: DnsConfigLog } = {}): Promise<boolean> {
    const log = options.log ?? (() => {});
    const saved = await loadSaved(stateDir, log, { keep: true });
    if (saved === undefined) return false;
    const current = await readOptional(saved.state.path);
    if (isVifs(current, saved.state)) return true;
    if (!isOriginal(current, saved)) return false;
    await writeInPlace(saved.state.path, new TextEncoder().encode(saved.state.written));
    log("info", `dns: ${saved.state.path} points at vif again`);
    return true;
  }
}

/** What the state dir holds about a rewritten resolv.conf. */
interface Saved {
  state: SavedState;
  /** The original bytes (absent when there was no file, or the copy is lost). */
  original: Uint8Array | undefined;
}

/**
 * Reads the saved state and original; `undefined` when there is none. An
 * unreadable state is dropped (unless `keep`), with the original.
 */
async function loadSaved(
  stateDir: string,
  log: DnsConfigLog,
  options: { keep?: boolean } = {},
): Promise<Saved | undefined> {
  let stateBytes: Uint8Array | undefined;
  try {
    stateBytes = readOwnFile(`${stateDir}/${RESOLV_CONF_STATE}`);
  } catch (cause) {
    throw new Error(`Cannot read "${stateDir}/${RESOLV_CONF_STATE}": ${message(cause)}`, {
      cause,
    });
  }
  if (stateBytes === undefined) {
    if (!options.keep) await Deno.remove(`${stateDir}/${ORIGINAL}`).catch(() => {});
    return undefined;
  }
  let state: SavedState;
  try {
    state = JSON.parse(new TextDecoder().decode(stateBytes));
    if (typeof state.path !== "string" || typeof state.written !== "string") {
      throw new TypeError("fields are missing");
    }
  } catch (cause) {
    log("warn", `dns: ignoring unreadable "${stateDir}/${RESOLV_CONF_STATE}": ${message(cause)}`);
    if (!options.keep) await removeState(stateDir);
    return undefined;
  }
  let original: Uint8Array | undefined;
  try {
    original = state.existed ? readOwnFile(`${stateDir}/${ORIGINAL}`) : undefined;
  } catch (cause) {
    throw new Error(`Cannot read "${stateDir}/${ORIGINAL}": ${message(cause)}`, { cause });
  }
  return { state, original };
}

/** Whether the file's bytes are what vif wrote. */
function isVifs(current: Uint8Array | undefined, state: SavedState): boolean {
  return current !== undefined && new TextDecoder().decode(current) === state.written;
}

/** Whether the file is as it was before vif: the saved bytes, or no file when there was none. */
function isOriginal(current: Uint8Array | undefined, saved: Saved): boolean {
  if (!saved.state.existed) return current === undefined;
  const original = saved.original;
  return current !== undefined && original !== undefined && sameBytes(current, original);
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** Writes the original back (or removes vif's file, putting a dangling link back). */
async function putOriginal(saved: Saved): Promise<void> {
  if (saved.state.existed) await writeInPlace(saved.state.path, saved.original!);
  else await removeAndRelink(saved.state);
}

/** The nameserver addresses of a resolv.conf text, in order. */
function parseNameservers(text: string): string[] {
  return lines(text).flatMap((l) => {
    const [key, value] = l.trim().split(/\s+/);
    return key === "nameserver" && value !== undefined ? [value] : [];
  });
}

function lines(text: string): string[] {
  return text.split(/\r?\n/);
}

/** The new resolv.conf text: our nameserver, the search path, the original options. */
function render(config: DnsOsConfig, original: string, hint: string): string {
  const search: string[] = [...config.searchDomains];
  const kept: string[] = [];
  for (const line of lines(original)) {
    const words = line.trim().split(/\s+/);
    const key = words[0];
    // glibc: "domain" and "search" are alternatives, the last one wins; both
    // feed our search line here.
    if (key === "search" || key === "domain") search.push(...words.slice(1));
    else if (key === "options" || key === "sortlist") kept.push(line.trim());
  }
  const unique = [...new Set(search.map((d) => d.replace(/\.$/, "")).filter((d) => d !== ""))];
  return [
    `${MARKER} while connected: cluster names are answered at ${config.address},`,
    "# other names by the nameservers this file had before.",
    `# vif quit (or the next daemon start, after a crash) puts the original back. By hand:`,
    `#   ${hint}`,
    `nameserver ${config.address}`,
    `search ${unique.join(" ")}`,
    ...kept,
    "",
  ].join("\n");
}

/** The target of `path` if it is a symlink (to nothing, when read as missing). */
async function symlinkTarget(path: string): Promise<string | undefined> {
  try {
    return (await Deno.lstat(path)).isSymlink ? await Deno.readLink(path) : undefined;
  } catch {
    return undefined;
  }
}

/** Undoes a write where there was no file: removes ours, puts a dangling link back. */
async function removeAndRelink(state: SavedState): Promise<void> {
  await Deno.remove(state.path).catch((error) => {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  });
  if (state.link !== undefined) await Deno.symlink(state.link, state.path);
}

async function readOptional(path: string): Promise<Uint8Array | undefined> {
  try {
    return await Deno.readFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return undefined;
    throw new Error(`Cannot read "${path}": ${message(error)}`, { cause: error });
  }
}

/** Open, truncate, write, sync: the inode (and a bind mount over it) stays. */
async function writeInPlace(path: string, bytes: Uint8Array): Promise<void> {
  const file = await Deno.open(path, { write: true, create: true, truncate: true, mode: 0o644 });
  try {
    for (let at = 0; at < bytes.length;) at += await file.write(bytes.subarray(at));
    await file.syncData();
  } finally {
    file.close();
  }
}

/**
 * Writes a file of ours in the state directory: a new file beside it, then
 * renamed over it, never through a link (`state_dir.ts`).
 */
function writeReplacing(path: string, bytes: Uint8Array): Promise<void> {
  writeOwnFile(path, bytes, 0o600);
  return Promise.resolve();
}

async function removeState(stateDir: string): Promise<void> {
  await Deno.remove(`${stateDir}/${RESOLV_CONF_STATE}`).catch(() => {});
  await Deno.remove(`${stateDir}/${ORIGINAL}`).catch(() => {});
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

// --- systemd-resolved ------------------------------------------------------------------

/** Runs a command; the default uses `Deno.Command`. */
export type CommandRunner = (
  command: string,
  args: string[],
) => Promise<{ success: boolean; stdout: string; stderr: string }>;

async function runCommand(
  command: string,
  args: string[],
): Promise<{ success: boolean; stdout: string; stderr: string }> {
  try {
    const out = await new Deno.Command(command, { args, stdin: "null" }).output();
    const decoder = new TextDecoder();
    return {
      success: out.success,
      stdout: decoder.decode(out.stdout),
      stderr: decoder.decode(out.stderr),
    };
  } catch (error) {
    return { success: false, stdout: "", stderr: message(error) };
  }
}

/** Options for {@linkcode ResolvedConfigurator}. */
export interface ResolvedOptions {
  /** Runs `resolvectl` (injectable for tests). */
  run?: CommandRunner;
  /** Log sink. */
  log?: DnsConfigLog;
  /** resolved's list of uplink nameservers (default `/run/systemd/resolve/resolv.conf`). */
  uplinkResolvConf?: string;
}

/**
 * Per-link DNS in systemd-resolved: the TUN gets our DNS address, the search
 * domains, and routing domains (`~cluster.local`…), and is not a default
 * route, so only cluster names come to us. `resolvectl revert` undoes it; the
 * settings go with the link anyway.
 *
 * Names that come to us but that the cluster does not answer (a namespace
 * named like a top-level domain: `site.dev`; an `--dns-exclude` suffix under
 * the cluster domain; an unknown single label) must not go back to
 * resolved's stub: it would route them to us again, round and round. They go
 * to the uplink nameservers resolved itself uses, read from
 * `/run/systemd/resolve/resolv.conf` before our link is set up (without our
 * address); the stub only when that lists none. Such names then miss
 * resolved's split DNS for other links.
 *
 * @example
 * ```ts ignore
 * const dns = new ResolvedConfigurator();
 * await dns.apply({ address: "240.0.0.2", searchDomains, routingDomains, interfaceName: "vif0" });
 * ```
 */
export class ResolvedConfigurator implements DnsConfigurator {
  #run: CommandRunner;
  #log: DnsConfigLog;
  #applied: DnsOsConfig | undefined;

  /**
   * Makes the configurator; nothing changes until {@linkcode apply}.
   *
   * @param options the command runner, the log
   */
  constructor(options: ResolvedOptions = {}) {
    this.#run = options.run ?? runCommand;
    this.#log = options.log ?? (() => {});
    this.#uplink = options.uplinkResolvConf ?? "/run/systemd/resolve/resolv.conf";
  }

  #uplink: string;

  /** One line for logs. */
  describe(): string {
    const c = this.#applied;
    return c === undefined
      ? "systemd-resolved: per-link DNS (not applied)"
      : `systemd-resolved: ${c.address} on ${c.interfaceName} for ${
        c.routingDomains.map((d) => `~${d}`).join(" ")
      }`;
  }

  /**
   * Sets the link's DNS server, domains and default-route flag.
   *
   * @param config address, domains, interface
   * @returns resolved's uplink nameservers (else its stub) as the upstream
   * @throws {Error} when `resolvectl dns` or `resolvectl domain` fails (the link is reverted)
   */
  async apply(config: DnsOsConfig): Promise<DnsApplied> {
    const link = config.interfaceName;
    const routing = config.routingDomains
      .map((d) => d.replace(/^~/, "").replace(/\.$/, ""))
      .filter((d) => d !== "" && d !== ".")
      .map((d) => `~${d}`);
    const search = config.searchDomains.map((d) => d.replace(/\.$/, "")).filter((d) => d !== "");
    const uplinkBytes = await readOptional(this.#uplink).catch(() => undefined);
    const uplink = parseNameservers(
      uplinkBytes === undefined ? "" : new TextDecoder().decode(uplinkBytes),
    ).filter((ns) => ns !== config.address && !STUB_ADDRESSES.has(ns));
    try {
      await this.#must(["dns", link, config.address]);
      await this.#must(["domain", link, ...search, ...routing]);
    } catch (error) {
      await this.#run("resolvectl", ["revert", link]);
      throw error;
    }
    // systemd ≥ 245: without this, the link could get names of no routing domain.
    const route = await this.#run("resolvectl", ["default-route", link, "false"]);
    if (!route.success) {
      this.#log(
        "warn",
        `dns: cannot run "resolvectl default-route ${link} false": ${route.stderr.trim()}`,
      );
    }
    this.#applied = config;
    this.#log(
      "info",
      `dns: systemd-resolved sends ${routing.join(" ")} to ${config.address} on ${link}`,
    );
    return { upstream: uplink.length > 0 ? uplink : ["127.0.0.53"] };
  }

  async #must(args: string[]): Promise<void> {
    const out = await this.#run("resolvectl", args);
    if (!out.success) {
      throw new Error(
        `Cannot configure DNS: "resolvectl ${args.join(" ")}" failed: ${out.stderr.trim()}`,
      );
    }
  }

  /** Reverts the link; a link already gone is fine. */
  async restore(): Promise<void> {
    const c = this.#applied;
    if (c === undefined) return;
    this.#applied = undefined;
    const out = await this.#run("resolvectl", ["revert", c.interfaceName]);
    if (!out.success) {
      this.#log(
        "debug",
        `dns: "resolvectl revert ${c.interfaceName}": ${out.stderr.trim()} (the link may be gone)`,
      );
    } else this.#log("info", `dns: systemd-resolved settings of ${c.interfaceName} reverted`);
  }
}

// --- choosing --------------------------------------------------------------------------

/** What {@linkcode chooseConfigurator} looks at. */
export interface DnsEnvironment {
  /** The path considered, for the log line (default `/etc/resolv.conf`). */
  path?: string;
  /** `/etc/resolv.conf`: missing, a file, or a symlink (with its target's text if readable). */
  resolvConf:
    | { kind: "missing" }
    | { kind: "file"; text: string }
    | { kind: "symlink"; target: string; text?: string };
  /** Whether systemd-resolved is running. */
  resolvedRunning: boolean;
  /** Whether `resolvectl` can be run. */
  resolvectl: boolean;
}

/** The mechanism to use and the log line that says why. */
export interface DnsChoice {
  kind: "resolved" | "resolv.conf";
  log: string;
}

const STUB_ADDRESSES = new Set(["127.0.0.53", "127.0.0.54"]);

/**
 * Picks how to configure DNS: systemd-resolved when it runs, `resolvectl`
 * is there and `/etc/resolv.conf` is its stub (a symlink to
 * `stub-resolv.conf`, or a file with `nameserver 127.0.0.53`); else rewriting
 * resolv.conf. Pure: the environment is given.
 *
 * @param env what was found on the machine
 * @returns the choice and a log line
 * @example
 * ```ts
 * import { chooseConfigurator } from "./dns_config.ts";
 * chooseConfigurator({
 *   resolvConf: { kind: "symlink", target: "../run/systemd/resolve/stub-resolv.conf" },
 *   resolvedRunning: true,
 *   resolvectl: true,
 * }).kind; // "resolved"
 * ```
 */
export function chooseConfigurator(env: DnsEnvironment): DnsChoice {
  const path = env.path ?? "/etc/resolv.conf";
  const rc = env.resolvConf;
  const text = rc.kind === "missing" ? undefined : rc.text;
  const viaLink = rc.kind === "symlink" && /(^|\/)stub-resolv\.conf$/.test(rc.target);
  const viaText = text !== undefined &&
    parseNameservers(text).some((ns) => STUB_ADDRESSES.has(ns));
  const rewrite = (why: string): DnsChoice => ({
    kind: "resolv.conf",
    log: `dns: rewriting ${path}: ${why}`,
  });
  if (viaLink || viaText) {
    const how = viaLink
      ? `a symlink to ${(rc as { target: string }).target}`
      : "nameserver 127.0.0.53";
    if (!env.resolvedRunning) {
      return rewrite(`it is systemd-resolved's stub (${how}) but resolved is not running`);
    }
    if (!env.resolvectl) return rewrite("systemd-resolved runs but resolvectl is missing");
    return {
      kind: "resolved",
      log: `dns: using systemd-resolved per-link DNS: ${path} is its stub (${how})`,
    };
  }
  if (rc.kind === "missing") return rewrite("there is none yet");
  const extra = rc.kind === "symlink"
    ? ` (a symlink to ${rc.target}, written through; its owner may rewrite it)`
    : text?.includes("NetworkManager")
    ? " (NetworkManager may rewrite it)"
    : "";
  if (env.resolvedRunning) {
    return rewrite(`systemd-resolved runs but ${path} does not use its stub${extra}`);
  }
  return rewrite(`systemd-resolved is not running${extra}`);
}

/** Options for {@linkcode detectDnsEnvironment} and {@linkcode makeDnsConfigurator}. */
export interface DnsSystemOptions {
  /** The resolv.conf path (default `/etc/resolv.conf`). */
  path?: string;
  /** The state dir for the resolv.conf original (default `/var/lib/vif`). */
  stateDir?: string;
  /** Runs commands (`systemctl`, `resolvectl`). */
  run?: CommandRunner;
  /** Log sink. */
  log?: DnsConfigLog;
}

/**
 * Looks at this machine for {@linkcode chooseConfigurator}.
 *
 * @param options the path and the command runner
 * @returns the environment
 */
export async function detectDnsEnvironment(
  options: DnsSystemOptions = {},
): Promise<DnsEnvironment> {
  const path = options.path ?? "/etc/resolv.conf";
  const run = options.run ?? runCommand;
  let resolvConf: DnsEnvironment["resolvConf"];
  const readText = async () => {
    const bytes = await readOptional(path).catch(() => undefined);
    return bytes === undefined ? undefined : new TextDecoder().decode(bytes);
  };
  try {
    const info = await Deno.lstat(path);
    if (info.isSymlink) {
      resolvConf = { kind: "symlink", target: await Deno.readLink(path), text: await readText() };
    } else resolvConf = { kind: "file", text: (await readText()) ?? "" };
  } catch {
    resolvConf = { kind: "missing" };
  }
  const [active, ctl] = await Promise.all([
    run("systemctl", ["is-active", "--quiet", "systemd-resolved"]),
    run("resolvectl", ["--version"]),
  ]);
  return { path, resolvConf, resolvedRunning: active.success, resolvectl: ctl.success };
}

/**
 * Makes the configurator a choice names.
 *
 * @param choice from {@linkcode chooseConfigurator}
 * @param options path, state dir, runner, log
 * @returns the configurator
 */
export function makeDnsConfigurator(
  choice: DnsChoice,
  options: DnsSystemOptions = {},
): DnsConfigurator {
  return choice.kind === "resolved"
    ? new ResolvedConfigurator({ run: options.run, log: options.log })
    : new ResolvConfConfigurator({
      path: options.path,
      stateDir: options.stateDir,
      log: options.log,
    });
}
