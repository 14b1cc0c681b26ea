/**
 * Credentials for the API server, got as the user: the root daemon never
 * loads the user's kubeconfig, reads their token file or runs their exec
 * credential plugin itself. When it needs credentials (a connect request
 * without them, or the API server refusing them once they expired), it runs
 * `vif kube-credentials` (`mod/cli/kube_credentials.ts`) as the user it
 * serves, through `setpriv`, with only that user's `HOME`, `KUBECONFIG` and
 * `PATH` from the connect request in its environment, and reads the
 * resolved access as JSON from its standard output: bounded in size and in
 * time, checked field by field, never logged or written anywhere.
 *
 * @module
 */

import type { ApiAccess } from "../kube/api.ts";
import type { ConnectParams, ResolvedContext } from "./control.ts";
import type { SelfCommand } from "./self.ts";

/** Resolves the kubeconfig context a connect request names, as its user. */
export type CredentialsResolver = (
  params: ConnectParams,
  context?: string,
) => Promise<ResolvedContext>;

/** Options of {@linkcode credentialsHelper}. */
export interface CredentialsHelperOptions {
  /** How to run this program. */
  self: SelfCommand;
  /** Whom to run it as; as this process when absent or root. */
  user?: { uid: number; gid: number };
  /** How long the helper (and the plugin it runs) may take (default 60 s). */
  timeoutMs?: number;
  /** The most output read from it (default 1 MiB). */
  maxBytes?: number;
}

/** A failure to get credentials: what happened and what to do. */
export class CredentialsError extends Error {
  /** What to do about it. */
  readonly hint: string;

  /**
   * @param message what happened
   * @param hint what to do
   * @param options the cause
   */
  constructor(message: string, hint: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "CredentialsError";
    this.hint = hint;
  }
}

/** `PATH` when the connect request carried none. */
const DEFAULT_PATH = "/usr/local/bin:/usr/bin:/bin";

/**
 * Makes a resolver that runs `vif kube-credentials` as `options.user`.
 *
 * @param options the program, the user, the bounds
 * @returns the resolver
 * @example
 * ```ts ignore
 * const resolve = credentialsHelper({ self: self(envOf), user: { uid: 1000, gid: 1000 } });
 * const { context, access } = await resolve(params, "dev");
 * ```
 */
export function credentialsHelper(options: CredentialsHelperOptions): CredentialsResolver {
  const timeoutMs = options.timeoutMs ?? 60_000;
  const maxBytes = options.maxBytes ?? 1 << 20;
  const user = options.user && options.user.uid !== 0 ? options.user : undefined;
  return async (params, context) => {
    const name = context ?? params.context;
    const argv = [
      ...(user ? await setprivPrefix(user) : []),
      ...options.self.argv,
      "kube-credentials",
      ...(params.kubeconfig ? ["--kubeconfig", params.kubeconfig] : []),
      ...(name ? ["--context", name] : []),
      ...(params.as ? ["--as", params.as] : []),
      ...(params.requestTimeoutMs !== undefined
        ? ["--request-timeout", `${params.requestTimeoutMs}ms`]
        : []),
    ];
    // This process's start-up environment is for this user only: the user's
    // own HOME leads a checkout's `deno` to the user's own cache.
    const env: Record<string, string> = {
      ...(user ? {} : options.self.env),
      PATH: params.path || DEFAULT_PATH,
    };
    if (params.home) env.HOME = params.home;
    if (params.kubeconfigEnv) env.KUBECONFIG = params.kubeconfigEnv;
    const who = user ? `uid ${user.uid}` : "this user";
    let out: Awaited<ReturnType<typeof runBounded>>;
    try {
      out = await runBounded(argv, env, timeoutMs, maxBytes);
    } catch (cause) {
      throw new CredentialsError(
        `cannot run "vif kube-credentials" as ${who}: ${(cause as Error).message}`,
        "Check that setpriv (util-linux) is installed and that vif can be run by that user.",
        { cause },
      );
    }
    if (out.timedOut) {
      throw new CredentialsError(
        `getting credentials for context "${name ?? "(current)"}" as ${who} took longer than ${
          timeoutMs / 1000
        } s`,
        "Check the kubeconfig's exec credential plugin: it must not wait for input.",
      );
    }
    if (out.overflow) {
      throw new CredentialsError(
        `"vif kube-credentials" gave no usable answer: more than ${maxBytes} bytes`,
        "Check the kubeconfig's exec credential plugin: its answer is far too long.",
      );
    }
    if (out.code !== 0) {
      // The helper's two lines: "vif: what happened", then what to do.
      const [first = "", hint = ""] = new TextDecoder().decode(out.stderr).trim().split("\n");
      throw new CredentialsError(
        first.replace(/^vif: /, "") || `"vif kube-credentials" exited with ${out.code}`,
        hint || "Check the kubeconfig's user (its exec plugin or token file), or log in again.",
      );
    }
    try {
      return parseResolved(new TextDecoder().decode(out.stdout));
    } catch (cause) {
      throw new CredentialsError(
        `"vif kube-credentials" gave no usable answer: ${(cause as Error).message}`,
        "This is unexpected: check that the daemon and the command line are the same vif.",
        { cause },
      );
    }
  };
}

/**
 * `setpriv` to become `user`, with its supplementary groups when the system
 * knows its name.
 *
 * @param user the uid and gid
 * @returns the words to put before a command
 */
export async function setprivPrefix(user: { uid: number; gid: number }): Promise<string[]> {
  const known = await new Deno.Command("getent", {
    args: ["passwd", String(user.uid)],
    stdin: "null",
    stdout: "null",
    stderr: "null",
  }).output().then((o) => o.success, () => false);
  return [
    "setpriv",
    `--reuid=${user.uid}`,
    `--regid=${user.gid}`,
    known ? "--init-groups" : "--clear-groups",
    "--",
  ];
}

/** Runs a command with a clean environment; stops reading past `maxBytes`, kills it past `timeoutMs`. */
async function runBounded(
  argv: string[],
  env: Record<string, string>,
  timeoutMs: number,
  maxBytes: number,
): Promise<{
  code: number;
  stdout: Uint8Array;
  stderr: Uint8Array;
  timedOut: boolean;
  overflow: boolean;
}> {
  const child = new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    clearEnv: true,
    env,
    cwd: "/",
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let timedOut = false;
  let overflow = false;
  const kill = () => {
    try {
      child.kill("SIGKILL");
    } catch {
      // ended
    }
  };
  const timer = setTimeout(() => {
    timedOut = true;
    kill();
  }, timeoutMs);
  try {
    const [stdout, stderr] = await Promise.all([
      readAtMost(child.stdout, maxBytes, () => {
        overflow = true;
        kill();
      }),
      readAtMost(child.stderr, 16 * 1024, () => {}),
    ]);
    const status = await child.status;
    return { code: status.code, stdout, stderr, timedOut, overflow };
  } finally {
    clearTimeout(timer);
  }
}

/** Reads a stream to its end, keeping at most `max` bytes; `tooMuch` is told when it has more. */
async function readAtMost(
  stream: ReadableStream<Uint8Array>,
  max: number,
  tooMuch: () => void,
): Promise<Uint8Array> {
  const out = new Uint8Array(max);
  let length = 0;
  for await (const chunk of stream) {
    const room = max - length;
    if (chunk.length > room) {
      out.set(chunk.subarray(0, room), length);
      length = max;
      tooMuch();
      continue; // drain the rest so the child is not blocked on a full pipe
    }
    out.set(chunk, length);
    length += chunk.length;
  }
  return out.subarray(0, length);
}

/**
 * Checks the helper's answer field by field and keeps only what is known.
 *
 * @param text `{"context": "...", "access": {...}}`
 * @returns the resolved context
 * @throws {SyntaxError} when it is not JSON
 * @throws {TypeError} when a field is missing or of the wrong type
 */
export function parseResolved(text: string): ResolvedContext {
  const value = JSON.parse(text) as { context?: unknown; access?: Record<string, unknown> };
  const a = value?.access;
  if (typeof value?.context !== "string" || typeof a !== "object" || a === null) {
    throw new TypeError("no context or access");
  }
  if (typeof a.server !== "string" || !/^https?:\/\//.test(a.server)) {
    throw new TypeError("no server URL");
  }
  const headers: Record<string, string> = {};
  if (a.headers !== undefined) {
    if (typeof a.headers !== "object" || a.headers === null) throw new TypeError("bad headers");
    for (const [k, v] of Object.entries(a.headers)) {
      if (typeof v !== "string") throw new TypeError(`header "${k}" is not text`);
      headers[k] = v;
    }
  }
  const access: ApiAccess = { server: a.server, headers };
  for (const key of ["caPem", "certPem", "keyPem", "serverName"] as const) {
    const v = a[key];
    if (v === undefined) continue;
    if (typeof v !== "string") throw new TypeError(`"${key}" is not text`);
    access[key] = v;
  }
  if (a.insecure === true) access.insecure = true;
  if (a.timeoutMs !== undefined) {
    if (typeof a.timeoutMs !== "number" || !(a.timeoutMs >= 0 && a.timeoutMs <= 86_400_000)) {
      throw new TypeError('"timeoutMs" is not a time-out');
    }
    access.timeoutMs = a.timeoutMs;
  }
  return { context: value.context, access };
}
