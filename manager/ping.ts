/**
 * ICMP echo for `PROTOCOL_ICMP` tunnels, by running the system's `ping`.
 *
 * Why a program and not a socket: an unprivileged ICMP echo socket
 * (`socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP)`, allowed by
 * `net.ipv4.ping_group_range`) is not reachable from Deno without FFI, and the
 * manager must not use FFI (DESIGN.md §2). iputils `ping` uses that same
 * socket kind (or its file capability), so it works as a non-root user.
 *
 * @module
 */

import { DialResult_Code } from "../mod/rpc/service.ts";

/** What one echo came to, as a tunnel's dial result. */
export interface PingOutcome {
  /** `OK` (a reply came), `UNREACHABLE` or `TIMEOUT`. */
  code: DialResult_Code;
  /** A human-readable detail. */
  message: string;
}

/** Sends one echo request and waits for the reply. */
export type Pinger = (address: string, timeoutMs: number) => Promise<PingOutcome>;

/** The message when there is no ping program. */
export const NO_PING_MESSAGE = "the traffic-manager cannot ping (no ping program)";

/**
 * Finds a `ping` program on `PATH` (and in `/bin`, `/usr/bin`, `/sbin`, `/usr/sbin`).
 *
 * @param path The `PATH` value; the process's when absent.
 * @returns The program's path, or `undefined` when there is none.
 */
export function findPingProgram(path?: string): string | undefined {
  let searchPath = path;
  if (searchPath === undefined) {
    try {
      searchPath = Deno.env.get("PATH") ?? "";
    } catch {
      searchPath = "";
    }
  }
  const dirs = [...searchPath.split(":"), "/bin", "/usr/bin", "/sbin", "/usr/sbin"];
  for (const dir of dirs.filter((d) => d !== "")) {
    try {
      const info = Deno.statSync(`${dir}/ping`);
      if (info.isFile && ((info.mode ?? 0o111) & 0o111) !== 0) return `${dir}/ping`;
    } catch {
      // Not here.
    }
  }
  return undefined;
}

/** Options of {@linkcode commandPinger}. */
export interface CommandPingerOptions {
  /** How many ping programs may run at once; more pings are answered unreachable. Default 64. */
  maxInFlight?: number;
}

/**
 * Makes a {@linkcode Pinger} that runs `program -n -c 1 -W <seconds> <address>`.
 * Without a program, every ping is unreachable with {@linkcode NO_PING_MESSAGE}.
 * A process per ping is dear, so at most `maxInFlight` run at once.
 *
 * @param program The ping program's path, or `undefined` when there is none.
 * @param options The limit of pings in flight.
 * @returns The pinger.
 */
export function commandPinger(
  program: string | undefined,
  options: CommandPingerOptions = {},
): Pinger {
  if (program === undefined) {
    return () => Promise.resolve({ code: DialResult_Code.UNREACHABLE, message: NO_PING_MESSAGE });
  }
  const maxInFlight = options.maxInFlight ?? 64;
  let inFlight = 0;
  return async (address, timeoutMs) => {
    if (inFlight >= maxInFlight) {
      return {
        code: DialResult_Code.UNREACHABLE,
        message: `the traffic-manager is already running ${maxInFlight} pings`,
      };
    }
    inFlight++;
    try {
      return await runPing(program, address, timeoutMs);
    } finally {
      inFlight--;
    }
  };
}

async function runPing(program: string, address: string, timeoutMs: number): Promise<PingOutcome> {
  const seconds = Math.max(1, Math.ceil(timeoutMs / 1000));
  // The kill is a safety net: -W already bounds the wait.
  const signal = AbortSignal.timeout(seconds * 1000 + 2000);
  let output: Deno.CommandOutput;
  try {
    output = await new Deno.Command(program, {
      args: ["-n", "-c", "1", "-W", String(seconds), address],
      stdin: "null",
      signal,
    }).output();
  } catch (error) {
    // A ping with file capabilities (iputils' cap_net_raw) cannot start in a
    // pod whose bounding set has no NET_RAW, as the manager's has none.
    const why = error instanceof Deno.errors.PermissionDenied
      ? "it needs CAP_NET_RAW, which the traffic-manager does not have"
      : (error as Error).message;
    return {
      code: DialResult_Code.UNREACHABLE,
      message: `the traffic-manager cannot run "${program}": ${why}`,
    };
  }
  const decoder = new TextDecoder();
  return pingOutcome(address, seconds, {
    code: output.code,
    stdout: decoder.decode(output.stdout),
    stderr: decoder.decode(output.stderr),
  });
}

/** How a `ping -c 1` run ended. */
export interface PingRun {
  /** The exit code: 0 a reply came, 1 none came, 2 an error. */
  code: number;
  /** Its standard output. */
  stdout: string;
  /** Its standard error. */
  stderr: string;
}

/**
 * Reads the outcome of one `ping -c 1` run (iputils or BusyBox).
 *
 * @param address The address pinged.
 * @param seconds The wait it was given.
 * @param run Its exit code and output.
 * @returns The dial result to send.
 *
 * @example
 * ```ts
 * import { pingOutcome } from "./ping.ts";
 * import { DialResult_Code } from "../mod/rpc/service.ts";
 *
 * const outcome = pingOutcome("198.18.0.9", 1, {
 *   code: 1,
 *   stdout: "From 198.18.0.1 icmp_seq=1 Destination Host Unreachable\n",
 *   stderr: "",
 * });
 * if (outcome.code !== DialResult_Code.UNREACHABLE) throw new Error(outcome.message);
 * ```
 */
export function pingOutcome(address: string, seconds: number, run: PingRun): PingOutcome {
  if (run.code === 0) {
    const time = /time[=<]([0-9.]+ ?ms)/.exec(run.stdout)?.[1];
    return {
      code: DialResult_Code.OK,
      message: `reply from ${address}${time === undefined ? "" : ` in ${time}`}`,
    };
  }
  const unreachable = /(Destination [A-Za-z ]*Unreachable|[A-Za-z ]*unreachable[A-Za-z ]*)/i.exec(
    run.stdout + "\n" + run.stderr,
  );
  if (unreachable?.[1] !== undefined) {
    return {
      code: DialResult_Code.UNREACHABLE,
      message: `${address}: ${unreachable[1].trim().toLowerCase()}`,
    };
  }
  if (run.code === 1) {
    return { code: DialResult_Code.TIMEOUT, message: `no reply from ${address} in ${seconds} s` };
  }
  const detail = (run.stderr.trim() || run.stdout.trim()).split("\n", 1)[0] || `exit ${run.code}`;
  return { code: DialResult_Code.UNREACHABLE, message: `ping ${address} failed: ${detail}` };
}
