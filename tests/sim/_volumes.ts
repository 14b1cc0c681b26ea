/**
 * A pod's volumes, as the kubelet sets them up on its node before any
 * container starts, keeps them current while the pod runs, and lays them
 * out under the pod's directory (a container mounts them where its own
 * `volumeMounts` say, see `_runtime.ts`):
 *
 * ```
 *   <pod dir>/volumes/kubernetes.io~empty-dir/<name>/   0777 (02777 and the fsGroup's with one)
 *   <pod dir>/volumes/kubernetes.io~configmap/<name>/   the keys (or `items`), `defaultMode`  ┐ written by the
 *   <pod dir>/volumes/kubernetes.io~secret/<name>/      the keys decoded, `defaultMode`       │ atomic writer
 *   <pod dir>/volumes/kubernetes.io~downward-api/<name>/ fieldRef and resourceFieldRef files  │ (`..data`)
 *   <pod dir>/volumes/kubernetes.io~projected/<name>/   serviceAccountToken, configMap,       │
 *                                                        secret and downwardAPI sources       ┘
 * ```
 *
 * A missing ConfigMap or Secret that is not `optional` fails the set-up with
 * the kubelet's words (`MountVolume.SetUp failed for volume "cfg" : configmap
 * "cfg" not found`), and the pod waits in `ContainerCreating`. A projected
 * `serviceAccountToken` is requested for the pod's service account, bound to
 * the pod, for its `audience` (the API server's when none) and
 * `expirationSeconds` (default 3600), and replaced by a new one once 80 % of
 * its life (at most 24 h) has passed, as the kubelet's token manager does.
 * {@linkcode PodVolumes.refresh} rewrites what changed (the kubelet calls it
 * when a ConfigMap, Secret or the pod's labels change).
 *
 * @module
 */

import type { DownwardApiFile, KeyToPath, Volume, VolumeProjection } from "./_pod_spec.ts";
import type { Container } from "./_pod_spec.ts";
import {
  type Allocatable,
  DownwardApiError,
  fieldRefValue,
  type PodFacts,
  resourceFieldValue,
} from "./_downward.ts";
import { type FileProjection, PayloadPathError, writeAtomically } from "./_atomic_writer.ts";

/** A token the kubelet got for a projected volume. */
export interface ProjectedToken {
  token: string;
  /** ms since the epoch. */
  issuedAt: number;
  /** ms since the epoch. */
  expiresAt: number;
}

/** The clock and timers (faked in tests). */
export interface Clock {
  now(): number;
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(id: unknown): void;
}

/** The real clock. */
export const SYSTEM_CLOCK: Clock = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (id) => clearTimeout(id as number),
};

/** What the volumes are made from. */
export interface VolumeContext {
  /** The pod as the downward API sees it now. */
  facts(): PodFacts;
  /** A ConfigMap of the pod's namespace (`data`, `binaryData`), or undefined. */
  configMap(
    name: string,
  ): { data?: Record<string, string>; binaryData?: Record<string, string> } | undefined;
  /** A Secret of the pod's namespace (`data`, base64), or undefined. */
  secret(name: string): { data?: Record<string, string> } | undefined;
  /** Requests a token for the pod's service account, bound to the pod. */
  requestToken(audiences: string[] | undefined, expirationSeconds: number): Promise<ProjectedToken>;
  /** The pod's containers, for a `resourceFieldRef`. */
  containers: Container[];
  allocatable: Allocatable;
}

/** Options of {@linkcode PodVolumes}. */
export interface PodVolumesOptions {
  /** The pod's directory; the volumes go under `volumes/`. */
  dir: string;
  volumes: Volume[];
  /** The pod's `fsGroup`. */
  fsGroup?: number | undefined;
  /** The one user every container runs as, if they all run as the same one (tokens become theirs, 0600). */
  fsUser?: number | undefined;
  ctx: VolumeContext;
  clock?: Clock;
  /** Failures of a background refresh. */
  log(line: string): void;
}

/** A volume that cannot be set up; the message is the kubelet's `FailedMount` event. */
export class VolumeSetUpError extends Error {
  /**
   * @param volume the volume's name
   * @param detail why
   */
  constructor(readonly volume: string, detail: string) {
    super(`MountVolume.SetUp failed for volume "${volume}" : ${detail}`);
    this.name = "VolumeSetUpError";
  }
}

/** The kubelet asks for a new token after this share of its life… */
const TOKEN_REFRESH_SHARE = 0.8;
/** …or after this long, whichever comes first. */
const TOKEN_MAX_AGE_MS = 24 * 3600_000;
/** A token request that failed is tried again after this long. */
const TOKEN_RETRY_MS = 10_000;

function pluginDir(v: Volume): string {
  if (v.emptyDir) return "kubernetes.io~empty-dir";
  if (v.configMap) return "kubernetes.io~configmap";
  if (v.secret) return "kubernetes.io~secret";
  if (v.downwardAPI) return "kubernetes.io~downward-api";
  return "kubernetes.io~projected";
}

function decodeBase64(text: string): Uint8Array {
  const binary = atob(text);
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

/**
 * The volumes of one pod. {@linkcode PodVolumes.setUp} before the first
 * container, {@linkcode PodVolumes.close} when the pod goes.
 */
export class PodVolumes {
  #o: PodVolumesOptions;
  #clock: Clock;
  /** Tokens by `<volume>/<path>`. */
  #tokens = new Map<
    string,
    ProjectedToken & { audiences: string[] | undefined; seconds: number }
  >();
  #timer: unknown;
  #closed = false;
  #set = false;
  #busy: Promise<void> = Promise.resolve();

  /**
   * @param options the pod's directory, volumes, fsGroup, what they are made from
   */
  constructor(options: PodVolumesOptions) {
    this.#o = options;
    this.#clock = options.clock ?? SYSTEM_CLOCK;
  }

  /**
   * The directory on the machine that holds a volume.
   *
   * @param name the volume's name
   * @returns its path, or undefined for a volume the pod does not have
   */
  path(name: string): string | undefined {
    const v = this.#o.volumes.find((x) => x.name === name);
    return v ? `${this.#o.dir}/volumes/${pluginDir(v)}/${v.name}` : undefined;
  }

  /** The tokens the projected volumes hold now, by `<volume>/<path>`. */
  get tokens(): ReadonlyMap<string, ProjectedToken> {
    return this.#tokens;
  }

  /**
   * Sets every volume up, in order.
   *
   * @throws {VolumeSetUpError} for the first volume that cannot be
   */
  setUp(): Promise<void> {
    return this.#serial(async () => {
      await this.#write(true);
      this.#set = true;
    });
  }

  /**
   * Writes again what changed in ConfigMap, Secret, downward API and
   * projected volumes (new tokens included); a failure is logged, and what
   * was there stays.
   */
  refresh(): Promise<void> {
    return this.#serial(async () => {
      // Before the set-up succeeded, the pod worker's retries are what count.
      if (!this.#set) return;
      await this.#write(false).catch((e) =>
        this.#o.log(`kubelet: volumes: ${(e as Error).message}`)
      );
    });
  }

  /** Stops refreshing tokens. */
  close(): void {
    this.#closed = true;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #serial(fn: () => Promise<void>): Promise<void> {
    const next = this.#busy.then(fn);
    this.#busy = next.catch(() => {});
    return next;
  }

  async #write(first: boolean): Promise<void> {
    if (this.#closed) return;
    for (const v of this.#o.volumes) {
      const dir = this.path(v.name)!;
      if (v.emptyDir) {
        if (first) await this.#emptyDir(dir);
        continue;
      }
      let payload: Map<string, FileProjection>;
      try {
        payload = await this.#payload(v);
      } catch (error) {
        if (error instanceof VolumeSetUpError) throw error;
        if (error instanceof DownwardApiError || error instanceof PayloadPathError) {
          throw new VolumeSetUpError(v.name, error.message);
        }
        throw error;
      }
      try {
        await writeAtomically(dir, payload, {
          fsGroup: this.#o.fsGroup,
          now: new Date(this.#clock.now()),
        });
      } catch (error) {
        if (error instanceof PayloadPathError) throw new VolumeSetUpError(v.name, error.message);
        throw error;
      }
    }
    this.#schedule();
  }

  async #emptyDir(dir: string): Promise<void> {
    await Deno.mkdir(dir, { recursive: true });
    const fsGroup = this.#o.fsGroup;
    if (fsGroup !== undefined) await Deno.chown(dir, null, fsGroup);
    await Deno.chmod(dir, fsGroup !== undefined ? 0o2777 : 0o777);
  }

  async #payload(v: Volume): Promise<Map<string, FileProjection>> {
    const out = new Map<string, FileProjection>();
    if (v.configMap) {
      const mode = v.configMap.defaultMode ?? 0o644;
      this.#configMap(out, v.name, { ...v.configMap, mode });
    } else if (v.secret) {
      const mode = v.secret.defaultMode ?? 0o644;
      this.#secret(out, v.name, { name: v.secret.secretName, ...v.secret, mode });
    } else if (v.downwardAPI) {
      this.#downward(out, v.downwardAPI.items ?? [], v.downwardAPI.defaultMode ?? 0o644);
    } else if (v.projected) {
      const mode = v.projected.defaultMode ?? 0o644;
      for (const [i, source] of (v.projected.sources ?? []).entries()) {
        await this.#projection(out, v.name, i, source, mode);
      }
    } else {
      throw new VolumeSetUpError(
        v.name,
        "the simulated kubelet has emptyDir, configMap, secret, downwardAPI and projected volumes only",
      );
    }
    return out;
  }

  #configMap(
    out: Map<string, FileProjection>,
    volume: string,
    ref: { name: string; items?: KeyToPath[]; optional?: boolean; mode: number },
  ): void {
    const cm = this.#o.ctx.configMap(ref.name);
    if (!cm) {
      if (ref.optional) return;
      throw new VolumeSetUpError(volume, `configmap "${ref.name}" not found`);
    }
    const all = new Map<string, Uint8Array>();
    for (const [k, text] of Object.entries(cm.data ?? {})) {
      all.set(k, new TextEncoder().encode(text));
    }
    for (const [k, b64] of Object.entries(cm.binaryData ?? {})) all.set(k, decodeBase64(b64));
    this.#items(out, volume, all, ref, "configmap references non-existent config key");
  }

  #secret(
    out: Map<string, FileProjection>,
    volume: string,
    ref: { name: string; items?: KeyToPath[]; optional?: boolean; mode: number },
  ): void {
    const secret = this.#o.ctx.secret(ref.name);
    if (!secret) {
      if (ref.optional) return;
      throw new VolumeSetUpError(volume, `secret "${ref.name}" not found`);
    }
    const all = new Map<string, Uint8Array>();
    for (const [k, b64] of Object.entries(secret.data ?? {})) all.set(k, decodeBase64(b64));
    this.#items(out, volume, all, ref, "references non-existent secret key");
  }

  #items(
    out: Map<string, FileProjection>,
    volume: string,
    all: Map<string, Uint8Array>,
    ref: { items?: KeyToPath[]; optional?: boolean; mode: number },
    missing: string,
  ): void {
    if (!ref.items || ref.items.length === 0) {
      for (const [k, data] of all) out.set(k, { data, mode: ref.mode });
      return;
    }
    for (const item of ref.items) {
      const data = all.get(item.key);
      if (!data) {
        if (ref.optional) continue;
        throw new VolumeSetUpError(volume, `${missing}: ${item.key}`);
      }
      out.set(item.path, { data, mode: item.mode ?? ref.mode });
    }
  }

  #downward(out: Map<string, FileProjection>, items: DownwardApiFile[], mode: number): void {
    const facts = this.#o.ctx.facts();
    for (const item of items) {
      let text = "";
      if (item.fieldRef) text = fieldRefValue(item.fieldRef.fieldPath, facts, "volume");
      else if (item.resourceFieldRef) {
        const ref = item.resourceFieldRef;
        const container = this.#o.ctx.containers.find((c) => c.name === ref.containerName);
        if (!container) {
          throw new DownwardApiError(`container ${ref.containerName ?? ""} not found in the pod`);
        }
        text = resourceFieldValue(ref, container, this.#o.ctx.allocatable);
      }
      out.set(item.path, { data: new TextEncoder().encode(text), mode: item.mode ?? mode });
    }
  }

  async #projection(
    out: Map<string, FileProjection>,
    volume: string,
    index: number,
    source: VolumeProjection,
    mode: number,
  ): Promise<void> {
    if (source.configMap) this.#configMap(out, volume, { ...source.configMap, mode });
    else if (source.secret) this.#secret(out, volume, { ...source.secret, mode });
    else if (source.downwardAPI) this.#downward(out, source.downwardAPI.items ?? [], mode);
    else if (source.serviceAccountToken) {
      const t = source.serviceAccountToken;
      const token = await this.#token(
        `${volume}/${t.path}`,
        t.audience ? [t.audience] : undefined,
        t.expirationSeconds ?? 3600,
      ).catch((error) => {
        throw new VolumeSetUpError(volume, `failed to fetch token: ${(error as Error).message}`);
      });
      const fsUser = this.#o.fsUser;
      const own = fsUser !== undefined || this.#o.fsGroup !== undefined;
      out.set(t.path, {
        data: new TextEncoder().encode(token.token),
        mode: own ? 0o600 : mode,
        ...(fsUser !== undefined ? { uid: fsUser } : {}),
      });
    } else {
      throw new VolumeSetUpError(
        volume,
        `projection ${index}: no source the simulated kubelet has`,
      );
    }
  }

  /** The token for a path: the one held while it is fresh, else a new one. */
  async #token(
    key: string,
    audiences: string[] | undefined,
    seconds: number,
  ): Promise<ProjectedToken> {
    const held = this.#tokens.get(key);
    if (held && this.#clock.now() < refreshAt(held)) return held;
    const fresh = await this.#o.ctx.requestToken(audiences, seconds);
    this.#tokens.set(key, { ...fresh, audiences, seconds });
    return fresh;
  }

  #schedule(): void {
    if (this.#closed) return;
    if (this.#timer !== undefined) this.#clock.clearTimeout(this.#timer);
    this.#timer = undefined;
    if (this.#tokens.size === 0) return;
    const next = Math.min(...[...this.#tokens.values()].map(refreshAt));
    const wait = Math.max(TOKEN_RETRY_MS / 10, next - this.#clock.now());
    this.#timer = this.#clock.setTimeout(() => {
      this.#timer = undefined;
      this.refresh().then(() => {
        // A refresh that could not get a token leaves the old one: try again a little later.
        if (this.#timer === undefined && !this.#closed) {
          this.#timer = this.#clock.setTimeout(() => {
            this.#timer = undefined;
            this.refresh();
          }, TOKEN_RETRY_MS);
        }
      });
    }, wait);
  }
}

/**
 * When the kubelet replaces a token: after 80 % of its life, or 24 h,
 * whichever comes first.
 *
 * @param t the token's issue and expiry times
 * @returns the time, in ms since the epoch
 */
export function refreshAt(t: { issuedAt: number; expiresAt: number }): number {
  const life = t.expiresAt - t.issuedAt;
  return t.issuedAt + Math.min(life * TOKEN_REFRESH_SHARE, TOKEN_MAX_AGE_MS);
}
