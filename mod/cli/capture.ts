/**
 * `vif capture`: the packets the VIF carries, both ways, as a pcap file
 * that tcpdump and Wireshark read (raw IP, `LINKTYPE_RAW`).
 *
 * The daemon (root) writes no file for the user: it streams pcap records
 * over the control socket (`capture`, docs/daemon.md) and this command,
 * running as the user, checks each batch and writes it to the file, or to
 * stdout with `-o -`. The daemon drops packets rather than wait for a slow
 * reader, and says how many; the end tells both counts.
 *
 * @module
 */

import type { Command } from "commander";
import { lookup } from "node:dns/promises";
import { parseAddress } from "../net/address.ts";
import {
  checkSnaplen,
  DEFAULT_SNAPLEN,
  MAX_SNAPLEN,
  MIN_SNAPLEN,
  pcapFileHeader,
  pcapRecords,
} from "../net/pcap.ts";
import type { CaptureParams, CaptureResult } from "../daemon/control.ts";
import type { CliContext } from "./context.ts";
import { asUserError, ExitCode, UserError } from "./errors.ts";
import { daemonClient, STATE_DIR_HELP, stateDirOf } from "./daemon_client.ts";
import { progressLine } from "./terminal.ts";

/** Where the pcap goes. */
export interface PcapSink {
  /** Writes all of `bytes`. */
  write(bytes: Uint8Array): Promise<void>;
  /** Ends the output. */
  close(): void;
}

/** What {@linkcode PcapWriter} has done. */
export interface PcapWriterCounts {
  /** Packets written. */
  packets: number;
  /** Packets the daemon said it dropped, so far. */
  dropped: number;
  /** Bytes written, the header included. */
  bytes: number;
}

/**
 * Turns the events of a `capture` stream into a pcap file: the header at
 * `start`, then each batch of records once it has been checked. Anything
 * out of the format is refused, not written.
 *
 * @example
 * ```ts
 * import { PcapWriter } from "./capture.ts";
 * const chunks: Uint8Array[] = [];
 * const writer = new PcapWriter({ write: async (b) => void chunks.push(b), close() {} });
 * await writer.event({ type: "start", snaplen: 65535, linktype: 101 });
 * chunks[0]!.length; // 24: the file header
 * ```
 */
export class PcapWriter {
  #sink: PcapSink;
  #snaplen: number | null = null;
  /** What was written so far. */
  readonly counts: PcapWriterCounts = { packets: 0, dropped: 0, bytes: 0 };

  /**
   * Makes a writer; nothing is written before the `start` event.
   *
   * @param sink where the file's bytes go
   */
  constructor(sink: PcapSink) {
    this.#sink = sink;
  }

  /** Whether the header was written (the capture started). */
  get started(): boolean {
    return this.#snaplen !== null;
  }

  /**
   * Takes one event of the stream.
   *
   * @param event the event as the daemon sent it
   * @throws {SyntaxError} when the event is not one of the protocol's, or its records are malformed
   */
  async event(event: Record<string, unknown>): Promise<void> {
    if (event.type === "start") {
      const { snaplen, linktype } = event;
      if (this.#snaplen !== null) throw new SyntaxError("the capture started twice");
      if (typeof snaplen !== "number" || typeof linktype !== "number") {
        throw new SyntaxError("the capture's start has no snap length or link type");
      }
      checkSnaplen(snaplen);
      if (!Number.isInteger(linktype) || linktype < 0 || linktype > 0xffff) {
        throw new SyntaxError(`the capture's link type ${linktype} is not one`);
      }
      this.#snaplen = snaplen;
      await this.#write(pcapFileHeader(snaplen, linktype));
      return;
    }
    if (event.type === "packets") {
      if (this.#snaplen === null) throw new SyntaxError("packets came before the capture's start");
      const { data, count, dropped } = event;
      if (typeof data !== "string" || typeof count !== "number" || typeof dropped !== "number") {
        throw new SyntaxError("a batch of packets lacks its data or counts");
      }
      const bytes = Uint8Array.fromBase64(data);
      const records = pcapRecords(bytes, this.#snaplen);
      if (records.length !== count) {
        throw new SyntaxError(`a batch said ${count} packets and held ${records.length}`);
      }
      await this.#write(bytes);
      this.counts.packets += records.length;
      if (Number.isSafeInteger(dropped) && dropped >= this.counts.dropped) {
        this.counts.dropped = dropped;
      }
      return;
    }
    // An event of a later protocol version: nothing this client knows to write.
  }

  async #write(bytes: Uint8Array): Promise<void> {
    await this.#sink.write(bytes);
    this.counts.bytes += bytes.length;
  }
}

/** A file, or stdout, as a {@linkcode PcapSink}. */
function fileSink(file: { write(p: Uint8Array): Promise<number>; close(): void }): PcapSink {
  return {
    async write(bytes) {
      for (let at = 0; at < bytes.length;) at += await file.write(bytes.subarray(at));
    },
    close() {
      try {
        file.close();
      } catch {
        // closed already
      }
    },
  };
}

/**
 * The addresses of `--host`: an address as it is, a name through the
 * system's resolver (vif's DNS while connected), both families.
 *
 * @param hosts what was given
 * @returns at most 16 addresses
 * @throws {UserError} when a name does not resolve or there are too many
 */
export async function resolveHosts(hosts: readonly string[]): Promise<string[]> {
  const out: string[] = [];
  for (const host of hosts) {
    if (parseAddress(host) !== undefined) {
      out.push(host);
      continue;
    }
    try {
      const found = await lookup(host, { all: true });
      out.push(...found.map((a) => a.address).filter((a) => parseAddress(a) !== undefined));
    } catch (cause) {
      throw new UserError(`cannot resolve the host "${host}": ${(cause as Error).message}`, {
        hint: "Pass an IP address, or a name vif resolves (vif connect first).",
        cause,
      });
    }
  }
  const unique = [...new Set(out)];
  if (unique.length > 16) {
    throw new UserError(`the hosts make ${unique.length} addresses, more than 16`, {
      hint: "Capture fewer hosts at once.",
    });
  }
  return unique;
}

function defaultFile(now: Date): string {
  const p = (n: number) => String(n).padStart(2, "0");
  return `vif-${now.getFullYear()}${p(now.getMonth() + 1)}${p(now.getDate())}-` +
    `${p(now.getHours())}${p(now.getMinutes())}${p(now.getSeconds())}.pcap`;
}

function usage(message: string, hint: string): UserError {
  return new UserError(message, { hint, exitCode: ExitCode.Usage });
}

function wholeNumber(text: string, what: string, min: number, max: number): number {
  const n = Number(text);
  if (!/^\d+$/.test(text) || n < min || n > max) {
    throw usage(
      `the ${what} "${text}" is not a whole number from ${min} to ${max}`,
      `Pass --${what} N.`,
    );
  }
  return n;
}

/**
 * The parameters of `capture` from the command's flags (names already resolved).
 *
 * @param flags the flags as typed
 * @param hosts the addresses of `--host`
 * @returns what to ask the daemon
 * @throws {UserError} (usage) for a bad value
 */
export function captureParams(
  flags: { port?: string; duration?: string; count?: string; snaplen?: string },
  hosts: string[],
): CaptureParams {
  const params: CaptureParams = {};
  if (hosts.length > 0) params.hosts = hosts;
  if (flags.port !== undefined) params.port = wholeNumber(flags.port, "port", 1, 65535);
  if (flags.count !== undefined) params.count = wholeNumber(flags.count, "count", 1, 1e9);
  if (flags.snaplen !== undefined) {
    params.snaplen = wholeNumber(flags.snaplen, "snaplen", MIN_SNAPLEN, MAX_SNAPLEN);
  }
  if (flags.duration !== undefined) {
    const seconds = Number(flags.duration);
    if (!Number.isFinite(seconds) || seconds <= 0 || seconds > 7 * 24 * 3600) {
      throw usage(
        `the duration "${flags.duration}" is not a number of seconds`,
        "Pass --duration S, more than 0 and at most a week.",
      );
    }
    params.durationMs = Math.max(1, Math.round(seconds * 1000));
  }
  return params;
}

/**
 * The sentence that ends a capture.
 *
 * @param counts what was written
 * @param where the file's name, or `stdout`
 * @param result what the daemon answered (absent when it was not heard)
 * @returns one line
 */
export function captureSummary(
  counts: PcapWriterCounts,
  where: string,
  result?: CaptureResult,
): string {
  const dropped = result?.dropped ?? counts.dropped;
  const why = result === undefined ? "interrupted" : {
    count: "count reached",
    duration: "time up",
    stopped: "stopped",
    disconnected: "vif disconnected",
    failed: "failed",
  }[
    result.reason
  ] ?? "ended";
  return `${counts.packets} ${counts.packets === 1 ? "packet" : "packets"} written to ${where}` +
    `, ${dropped} dropped${dropped > 0 ? " (the reader was behind)" : ""} (${why})`;
}

const EXAMPLES = `
Examples:
  vif capture -o web.pcap --host web.default --port 80
  vif capture --duration 10 --count 1000
  vif capture -o - --port 53 | tcpdump -n -r -

The file is raw IP (link type 101, LINKTYPE_RAW), every packet as the app on
this machine sees it, both ways. It is written by this command, as you, with
mode 0600. Ctrl-C stops; the last line says how many packets were written and
how many vif dropped because this reader was behind.`;

interface CaptureFlags {
  output?: string;
  host: string[];
  port?: string;
  duration?: string;
  count?: string;
  snaplen?: string;
  stateDir?: string;
}

/**
 * Adds `vif capture` to the program.
 *
 * @param program the root command
 * @param context the run's shared state
 */
export function registerCapture(program: Command, context: CliContext): void {
  program
    .command("capture")
    .description("write the packets through vif to a pcap file (tcpdump, Wireshark)")
    .option("-o, --output <file>", 'the pcap file, "-" for stdout (default vif-DATE-TIME.pcap)')
    .option(
      "--host <host>",
      "only packets from or to this address or name (repeatable)",
      (v: string, all: string[]) => [...all, v],
      [] as string[],
    )
    .option("--port <port>", "only TCP and UDP packets from or to this port")
    .option("--duration <seconds>", "stop after this long")
    .option("--count <n>", "stop after this many packets")
    .option(
      "--snaplen <bytes>",
      `the longest part of each packet kept (default ${DEFAULT_SNAPLEN})`,
    )
    .option("--state-dir <dir>", STATE_DIR_HELP)
    .addHelpText("after", EXAMPLES)
    .action(async (flags: CaptureFlags) => {
      const io = context.io;
      const toStdout = flags.output === "-";
      if (toStdout && (io.stdoutIsTerminal?.() ?? false)) {
        throw usage(
          "a pcap is binary: not for a terminal",
          "Pipe it (`| tcpdump -r -`) or pass -o FILE.",
        );
      }
      const params = captureParams(flags, await resolveHosts(flags.host));
      const client = await daemonClient(stateDirOf(flags.stateDir, io.env));
      if (!client) {
        throw new UserError("vif is not connected (no daemon runs)", {
          hint: "Run `vif connect --context NAME` first.",
        });
      }
      const path = toStdout ? "stdout" : flags.output ?? defaultFile(new Date());
      let sink: PcapSink;
      try {
        sink = fileSink(
          toStdout
            ? Deno.stdout
            : await Deno.open(path, { write: true, create: true, truncate: true, mode: 0o600 }),
        );
      } catch (cause) {
        client.close();
        throw new UserError(`cannot write "${path}": ${(cause as Error).message}`, {
          hint: "Pass -o with a file you may write.",
          cause,
        });
      }
      const writer = new PcapWriter(sink);
      const progress = progressLine(io, !(io.isTerminal?.() ?? false));
      const stop = new AbortController();
      let interrupts = 0;
      const interrupt = () => {
        // The first Ctrl-C asks the daemon to stop and waits for its counts; a second leaves.
        if (interrupts++ === 0) stop.abort();
        else client.close();
      };
      Deno.addSignalListener("SIGINT", interrupt);
      Deno.addSignalListener("SIGTERM", interrupt);
      let result: CaptureResult | undefined;
      let lastDrawn = 0;
      try {
        io.stderr(`capturing to ${path}; Ctrl-C stops\n`);
        result = await client.stream("capture", params, async (event) => {
          await writer.event(event);
          if (Date.now() - lastDrawn > 250) {
            lastDrawn = Date.now();
            progress.step(`${writer.counts.packets} packets, ${writer.counts.dropped} dropped`);
          }
        }, stop.signal);
      } catch (error) {
        if (!(interrupts > 1 && writer.started)) {
          if (!writer.started && !toStdout) await Deno.remove(path).catch(() => {});
          throw error instanceof SyntaxError
            ? new UserError(`the daemon sent a capture vif cannot read: ${error.message}`, {
              hint: "The daemon and this vif may be of different versions: `vif version`.",
              cause: error,
            })
            : asUserError(error);
        }
      } finally {
        Deno.removeSignalListener("SIGINT", interrupt);
        Deno.removeSignalListener("SIGTERM", interrupt);
        progress.done();
        sink.close();
        client.close();
      }
      io.stderr(captureSummary(writer.counts, path, result) + "\n");
    });
}
