/**
 * Helpers for tests that build network namespaces: running commands in them,
 * starting servers, and undoing everything in reverse order, even on failure.
 *
 * @module
 */

/** The repository root. */
export const ROOT = new URL("../../", import.meta.url).pathname.replace(/\/$/, "");

/** A short random suffix, so parallel or leftover runs never collide. */
export function suffix(): string {
  return crypto.randomUUID().slice(0, 6);
}

/**
 * Namespaces whose commands share one mount namespace: the pid of the process
 * that holds it (see {@linkcode Env.shareMounts}).
 */
const MOUNT_HOLDERS = new Map<string, number>();

/**
 * The process that holds the mount namespace the commands of `ns` share.
 *
 * @param ns the network namespace
 * @returns its pid, or undefined when `ns` does not share one
 */
export function mountHolder(ns: string): number | undefined {
  return MOUNT_HOLDERS.get(ns);
}

/**
 * The words that run a command in network namespace `ns`: `ip netns exec`
 * (a mount namespace of its own for each command, with the namespace's
 * `/etc/netns/NAME` files), or, once {@linkcode Env.shareMounts} was asked,
 * `nsenter` into the one mount namespace every command of `ns` shares.
 *
 * @param ns the network namespace
 * @returns the prefix
 */
export function inNetns(ns: string): string[] {
  const holder = MOUNT_HOLDERS.get(ns);
  if (holder === undefined) return ["ip", "netns", "exec", ns];
  return ["nsenter", `--target=${holder}`, "--mount", "--net", `--wd=${Deno.cwd()}`, "--"];
}

/** The output of a finished command. */
export interface Output {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs a command (in namespace `ns` when given) and returns its output.
 *
 * @param cmd the program and its arguments
 * @param options namespace, stdin text, environment
 * @returns exit code, stdout, stderr
 */
export async function run(
  cmd: string[],
  options: { ns?: string; stdin?: string; env?: Record<string, string> } = {},
): Promise<Output> {
  const argv = options.ns ? [...inNetns(options.ns), ...cmd] : cmd;
  const child = new Deno.Command(argv[0]!, {
    args: argv.slice(1),
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    ...(options.env ? { env: options.env } : {}),
  }).spawn();
  if (options.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(options.stdin));
    await w.close();
  }
  const out = await child.output();
  return {
    code: out.code,
    stdout: new TextDecoder().decode(out.stdout),
    stderr: new TextDecoder().decode(out.stderr),
  };
}

/**
 * Runs a command and throws with its output when it fails.
 *
 * @param cmd the program and its arguments
 * @param options as for {@linkcode run}
 * @returns stdout
 * @throws {Error} when the exit code is not 0
 */
export async function must(
  cmd: string[],
  options: { ns?: string; stdin?: string; env?: Record<string, string> } = {},
): Promise<string> {
  const out = await run(cmd, options);
  if (out.code !== 0) {
    throw new Error(
      `Command failed: "${cmd.join(" ")}"${
        options.ns ? ` in ${options.ns}` : ""
      }: exit ${out.code}: ${out.stderr.trim()} ${out.stdout.trim()}`,
    );
  }
  return out.stdout;
}

/** A background process started by {@linkcode Env.spawn}. */
export interface Proc {
  readonly pid: number;
  readonly child: Deno.ChildProcess;
  /** Lines of stdout so far. */
  readonly lines: string[];
  /** Lines of stderr so far. */
  readonly errLines: string[];
  /**
   * Resolves once stdout and stderr have both ended and every line is in
   * `lines`/`errLines`: the process's exit can come before its last lines
   * have been read. ({@linkcode Proc.stop} waits for it too.)
   */
  readonly output: Promise<void>;
  /** Resolves with the first stdout line that matches. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves when the process has ended. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * A test environment: namespaces, processes and files, all undone by
 * {@linkcode Env.cleanup} in reverse order of creation.
 */
export class Env {
  #undo: Array<() => Promise<void>> = [];
  /** A private temporary directory, removed on cleanup. */
  dir = "";

  /** Makes the temporary directory. */
  async init(): Promise<this> {
    this.dir = await Deno.makeTempDir({ prefix: "vif-test-" });
    this.#undo.push(() => Deno.remove(this.dir, { recursive: true }).catch(() => {}));
    return this;
  }

  /** Registers an undo step. */
  defer(fn: () => Promise<void> | void): void {
    this.#undo.push(async () => {
      await fn();
    });
  }

  /**
   * Makes sure no vif daemon started with this state directory outlives the
   * test: on cleanup, the pid its `daemon.json` names is killed (SIGKILL).
   *
   * @param stateDir the daemon's state directory
   */
  killDaemonOnCleanup(stateDir: string): void {
    this.defer(async () => {
      const s = await Deno.readTextFile(`${stateDir}/daemon.json`).then(JSON.parse, () => null);
      if (typeof s?.pid !== "number") return;
      try {
        Deno.kill(s.pid, "SIGKILL");
      } catch {
        // gone
      }
    });
  }

  /**
   * Creates a network namespace with loopback up; it is deleted on cleanup.
   *
   * @param name the namespace name
   * @returns the name
   */
  async netns(name: string): Promise<string> {
    await must(["ip", "netns", "add", name]);
    this.#undo.push(async () => {
      await run(["ip", "netns", "del", name]);
    });
    await must(["ip", "link", "set", "lo", "up"], { ns: name });
    return name;
  }

  /**
   * Makes every later command in `ns` share one mount namespace, as the
   * processes of a workstation do: what the daemon mounts (an intercept's
   * volumes) is seen by the commands run after it. The namespace is made by
   * `ip netns exec` (so it has the namespace's `/etc/netns/NAME` files and
   * `/sys`) and held by a `sleep` of this test's; it ends, with whatever is
   * still mounted in it, when the last process in it ends.
   *
   * @param ns the network namespace (made already)
   */
  async shareMounts(ns: string): Promise<void> {
    if (MOUNT_HOLDERS.has(ns)) throw new Error(`Mounts of "${ns}" are shared already`);
    const child = new Deno.Command("ip", {
      args: ["netns", "exec", ns, "sleep", "infinity"],
      stdin: "null",
      stdout: "null",
      stderr: "null",
    }).spawn();
    this.#undo.push(async () => {
      MOUNT_HOLDERS.delete(ns);
      try {
        child.kill("SIGKILL");
      } catch { /* gone */ }
      await child.status;
    });
    // ip netns exec execs sleep in the same process once the namespace is set up.
    const deadline = Date.now() + 5000;
    for (;;) {
      const exe = await Deno.readLink(`/proc/${child.pid}/exe`).catch(() => "");
      if (exe.endsWith("/sleep")) break;
      if (Date.now() > deadline) throw new Error(`ip netns exec ${ns} sleep did not start`);
      await new Promise((r) => setTimeout(r, 10));
    }
    MOUNT_HOLDERS.set(ns, child.pid);
  }

  /**
   * Starts a long-running process (in `ns` when given); it is stopped on cleanup.
   *
   * @param cmd the program and its arguments
   * @param options namespace, environment
   * @returns the process
   */
  spawn(cmd: string[], options: { ns?: string; env?: Record<string, string> } = {}): Proc {
    const argv = options.ns ? [...inNetns(options.ns), ...cmd] : cmd;
    const child = new Deno.Command(argv[0]!, {
      args: argv.slice(1),
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      ...(options.env ? { env: options.env } : {}),
    }).spawn();
    const lines: string[] = [];
    const waiters: Array<{ re: RegExp; resolve: (l: string) => void }> = [];
    const stderr: string[] = [];
    const pump = async (stream: ReadableStream<Uint8Array>, sink: string[], match: boolean) => {
      const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
      let rest = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        rest += value;
        let nl;
        while ((nl = rest.indexOf("\n")) >= 0) {
          const line = rest.slice(0, nl);
          rest = rest.slice(nl + 1);
          sink.push(line);
          if (match) {
            for (const w of [...waiters]) {
              if (w.re.test(line)) {
                waiters.splice(waiters.indexOf(w), 1);
                w.resolve(line);
              }
            }
          }
        }
      }
    };
    const pumps = Promise.all([pump(child.stdout, lines, true), pump(child.stderr, stderr, false)]);
    const status = child.status;
    let ended = false;
    status.finally(() => ended = true);
    const proc: Proc = {
      pid: child.pid,
      child,
      lines,
      errLines: stderr,
      output: pumps.then(() => {}, () => {}),
      waitFor(re, timeoutMs = 15_000) {
        const seen = lines.find((l) => re.test(l));
        if (seen !== undefined) return Promise.resolve(seen);
        return new Promise((resolve, reject) => {
          const timer = setTimeout(() => {
            reject(
              new Error(
                `Timed out waiting for ${re} from "${cmd.join(" ")}": stdout ${
                  JSON.stringify(lines.slice(-5))
                } stderr ${JSON.stringify(stderr.slice(-10))}`,
              ),
            );
          }, timeoutMs);
          waiters.push({
            re,
            resolve: (l) => {
              clearTimeout(timer);
              resolve(l);
            },
          });
          status.then(() => {
            clearTimeout(timer);
            reject(
              new Error(`"${cmd.join(" ")}" ended: stderr ${JSON.stringify(stderr.slice(-10))}`),
            );
          });
        });
      },
      async stop(graceMs = 3000) {
        if (!ended) {
          try {
            child.kill("SIGTERM");
          } catch { /* gone */ }
          const timer = setTimeout(() => {
            try {
              if (!ended) child.kill("SIGKILL");
            } catch { /* gone */ }
          }, graceMs);
          await status;
          clearTimeout(timer);
        }
        await pumps.catch(() => {});
      },
    };
    this.#undo.push(() => proc.stop());
    return proc;
  }

  /** Undoes everything, newest first; never throws. */
  async cleanup(): Promise<void> {
    while (this.#undo.length) {
      const fn = this.#undo.pop()!;
      try {
        await fn();
      } catch (error) {
        console.error(`cleanup: ${error}`);
      }
    }
  }
}

/**
 * Polls `cond` until it is true, failing after `ms`.
 *
 * @param cond the condition (may be async)
 * @param ms the limit
 * @param what what is awaited, for the error
 * @param intervalMs how often to ask; default 50 ms
 * @throws {Error} on time-out, naming `what` and the limit
 */
export async function waitUntil(
  cond: () => boolean | Promise<boolean>,
  ms: number,
  what: string,
  intervalMs = 50,
): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error(`Timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** The path of the project's deno (the one running the tests). */
export const DENO = Deno.execPath();

/**
 * The receiver's throughput of an `iperf3 -J` run.
 *
 * @param json iperf3's JSON output
 * @returns Gbit/s
 */
export function iperfGbits(json: string): number {
  return JSON.parse(json).end.sum_received.bits_per_second / 1e9;
}
