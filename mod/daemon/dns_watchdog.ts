/**
 * The DNS watchdog: in resolv.conf mode `/etc/resolv.conf` names only the
 * daemon's DNS address, so a daemon that dies or hangs would leave the
 * machine with no DNS at all. The watchdog is a small process of its own
 * (`vif dns-watchdog`, started by the connection when it rewrites
 * resolv.conf, stopped before it puts the original back) that:
 *
 * - holds a pipe from the daemon (its stdin) and, the moment it reads EOF
 *   without a `stop` line first (the daemon's process is gone: `kill -9`, a
 *   crash), restores the original exactly as the daemon's next start would
 *   (`ResolvConfConfigurator.recover`) and exits;
 * - probes the daemon's DNS server every second with a bare DNS header (the
 *   server answers it FORMERR itself, `dns_server.ts`), and after 3 s of
 *   silence (SIGSTOP, a hung event loop) puts the original in place while
 *   keeping the saved state (`suspend`), then puts vif's file back as soon
 *   as the daemon answers again (`resume`).
 *
 * It writes its lines into the daemon's log (`appendLogLine`), prefixed
 * `dns watchdog:`. While the daemon is healthy it changes nothing, so the
 * answer to a cluster name stays vif's.
 *
 * ```
 *  daemon ──stdin pipe (EOF = gone)──► dns-watchdog ──bare header / 1 s──► 240.0.0.2:53 (the daemon)
 *                                           │
 *                                           └── /etc/resolv.conf ◄── resolv.conf.orig, resolv.conf.json
 * ```
 *
 * @module
 */

import dgram from "node:dgram";
import { ResolvConfConfigurator } from "./dns_config.ts";
import type { SelfCommand } from "./self.ts";

/** Log sink. */
export type WatchdogLog = (level: "debug" | "info" | "warn", message: string) => void;

/** Options of {@linkcode runDnsWatchdog}. */
export interface DnsWatchdogOptions {
  /** The daemon's state directory (the saved resolv.conf). */
  stateDir: string;
  /** The daemon's DNS server. */
  probe: { hostname: string; port: number };
  /** The daemon's end of the pipe: a `stop` line, or EOF when it is gone. */
  input: ReadableStream<Uint8Array>;
  /** How often to probe (default 1000 ms). */
  intervalMs?: number;
  /** Silence after which the original goes back (default 3000 ms). */
  silenceMs?: number;
  log: WatchdogLog;
}

/**
 * The watchdog process's work: runs until the daemon says `stop` or is gone.
 *
 * @param options the state directory, the probe address, the pipe, the log
 * @returns the exit code (0)
 */
export async function runDnsWatchdog(options: DnsWatchdogOptions): Promise<number> {
  const intervalMs = options.intervalMs ?? 1000;
  const silenceMs = options.silenceMs ?? 3000;
  const { stateDir } = options;
  const log = options.log;
  // dns_config's lines, as the watchdog's.
  const dnsLog: WatchdogLog = (level, message) =>
    log(level, message.replace(/^dns: /, "dns watchdog: "));
  const prober = new Prober(options.probe);
  let why: "stop" | "gone" | undefined;
  const ended = readUntilEnd(options.input).then((w) => why = w);
  log(
    "info",
    `dns watchdog: pid ${Deno.pid} watching ${options.probe.hostname}:${options.probe.port}`,
  );
  let lastAnswer = Date.now();
  let suspended = false;
  try {
    while (why === undefined) {
      const started = Date.now();
      const answered = await Promise.race([prober.ask(intervalMs - 100), ended.then(() => false)]);
      if (why !== undefined) break;
      try {
        if (answered) {
          lastAnswer = Date.now();
          if (suspended) {
            suspended = false;
            log("info", "dns watchdog: the daemon answers again");
            if (!await ResolvConfConfigurator.resume(stateDir, { log: dnsLog })) {
              log("warn", "dns watchdog: resolv.conf changed meanwhile: leaving it as it is");
            }
          }
        } else if (!suspended && Date.now() - lastAnswer >= silenceMs) {
          suspended = true;
          log(
            "warn",
            `dns watchdog: the daemon has not answered for ${Date.now() - lastAnswer} ms: ` +
              "putting the original resolv.conf back until it does",
          );
          await ResolvConfConfigurator.suspend(stateDir, { log: dnsLog });
        }
      } catch (error) {
        log("warn", `dns watchdog: ${(error as Error).message}`);
      }
      const rest = intervalMs - (Date.now() - started);
      if (rest > 0) {
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([new Promise((r) => timer = setTimeout(r, rest)), ended]);
        clearTimeout(timer);
      }
    }
  } finally {
    prober.close();
  }
  if (why === "stop") {
    log("info", "dns watchdog: stopped by the daemon");
    return 0;
  }
  log("warn", "dns watchdog: the daemon is gone: putting the original resolv.conf back");
  try {
    await ResolvConfConfigurator.recover(stateDir, { log: dnsLog });
  } catch (error) {
    log("warn", `dns watchdog: ${(error as Error).message}`);
  }
  return 0;
}

/** Reads the pipe: `"stop"` after a `stop` line, `"gone"` at EOF (or an error) without one. */
async function readUntilEnd(input: ReadableStream<Uint8Array>): Promise<"stop" | "gone"> {
  let text = "";
  try {
    for await (const chunk of input.pipeThrough(new TextDecoderStream())) {
      text = (text + chunk).slice(-64); // only the last line matters
      if (/(^|\n)stop\n/.test(text)) return "stop";
    }
  } catch {
    // a broken pipe is a gone daemon too
  }
  return "gone";
}

/** Sends bare DNS headers and waits for the answer to each. */
class Prober {
  #socket: dgram.Socket;
  #target: { hostname: string; port: number };
  #waiting: { id: number; resolve: (ok: boolean) => void } | undefined;
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(target: { hostname: string; port: number }) {
    this.#target = target;
    this.#socket = dgram.createSocket(target.hostname.includes(":") ? "udp6" : "udp4");
    this.#socket.on("message", (msg: Uint8Array) => {
      const w = this.#waiting;
      if (!w || msg.length < 12 || ((msg[0]! << 8) | msg[1]!) !== w.id) return;
      if ((msg[2]! & 0x80) === 0) return; // not a response
      this.#waiting = undefined;
      w.resolve(true);
    });
    // No route to the address (the TUN is gone): the probe fails by timing out.
    this.#socket.on("error", () => {});
  }

  /** Whether the server answers within `timeoutMs`. */
  ask(timeoutMs: number): Promise<boolean> {
    const id = crypto.getRandomValues(new Uint16Array(1))[0]!;
    const header = new Uint8Array(12);
    header[0] = id >> 8;
    header[1] = id & 0xff;
    return new Promise<boolean>((resolve) => {
      this.#timer = setTimeout(() => {
        this.#waiting = undefined;
        resolve(false);
      }, timeoutMs);
      this.#waiting = {
        id,
        resolve: (ok) => {
          clearTimeout(this.#timer);
          resolve(ok);
        },
      };
      try {
        this.#socket.send(header, this.#target.port, this.#target.hostname, () => {});
      } catch {
        // the timer answers
      }
    });
  }

  close(): void {
    clearTimeout(this.#timer);
    this.#waiting?.resolve(false);
    try {
      this.#socket.close();
    } catch {
      // closed
    }
  }
}

/** The watchdog process, as the daemon holds it. */
export interface DnsWatchdog {
  /** Its pid. */
  readonly pid: number;
  /** Tells it to exit without touching anything, and waits until it has (at most 3 s). */
  stop(): Promise<void>;
}

/** Options of {@linkcode startDnsWatchdog}. */
export interface StartDnsWatchdogOptions {
  /** How to run this program. */
  self: SelfCommand;
  /** The state directory (its log is the daemon's `daemon.log` there). */
  stateDir: string;
  /** The daemon's DNS server, `240.0.0.2:53`. */
  probe: string;
  log: WatchdogLog;
}

/**
 * Starts `vif dns-watchdog` with a pipe from this process.
 *
 * @param options the program, the state directory, the DNS address to probe
 * @returns the running watchdog
 * @throws {Error} when it cannot be started
 */
export function startDnsWatchdog(options: StartDnsWatchdogOptions): DnsWatchdog {
  const [program, ...args] = options.self.argv;
  const child = new Deno.Command(program!, {
    args: [...args, "dns-watchdog", "--state-dir", options.stateDir, "--probe", options.probe],
    clearEnv: true,
    env: {
      ...options.self.env,
      PATH: "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    },
    cwd: "/",
    stdin: "piped",
    stdout: "null",
    stderr: "null",
  }).spawn();
  const writer = child.stdin.getWriter();
  let stopping = false;
  child.status.then((s) => {
    if (!stopping) {
      options.log("warn", `dns: the dns watchdog (pid ${child.pid}) exited with ${s.code}`);
    }
  });
  options.log("info", `dns: dns watchdog started (pid ${child.pid})`);
  return {
    pid: child.pid,
    async stop() {
      if (stopping) return await child.status.then(() => {});
      stopping = true;
      await writer.write(new TextEncoder().encode("stop\n")).catch(() => {});
      await writer.close().catch(() => {});
      const timer = setTimeout(() => {
        try {
          child.kill("SIGKILL");
        } catch {
          // ended
        }
      }, 3000);
      await child.status;
      clearTimeout(timer);
    },
  };
}
