/**
 * `vif connections [-w]`: every open TCP connection and UDP flow of the
 * connection, with the cluster name of its destination when the DNS
 * interceptor answered for it, its state, age, bytes each way and current
 * rate. `-w` redraws it like `top`, busiest first; `-o json|yaml` prints the
 * daemon's document (docs/daemon.md, `connections`) for scripts.
 *
 * The daemon measures; this module only asks and draws. On a terminal the
 * watch redraws in place (cursor home, each line cut to the width and
 * erased to its end, the rest of the screen erased), else it prints one
 * block per interval.
 *
 * @module
 */

import type { Command } from "commander";
import type { ConnectionEntry, ConnectionsDocument } from "../daemon/flows.ts";
import type { ControlClient } from "../daemon/control.ts";
import type { CliContext } from "./context.ts";
import type { CliIo } from "./io.ts";
import { asUserError, ExitCode, UserError } from "./errors.ts";
import { daemonClient, STATE_DIR_HELP, stateDirOf } from "./daemon_client.ts";
import { formatStructured, type OutputFormat, outputOption } from "./output.ts";
import { clipLine } from "./terminal.ts";

/**
 * Bytes as people read them: `512 B`, `1.5 KiB`, `12.0 MiB`.
 *
 * @param n a byte count
 * @returns the text
 * @example
 * ```ts
 * import { formatBytes } from "./connections.ts";
 * formatBytes(1536); // "1.5 KiB"
 * ```
 */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = Math.max(0, n);
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${Math.round(v)} B` : `${v.toFixed(1)} ${units[i]}`;
}

/**
 * A rate: {@linkcode formatBytes} per second.
 *
 * @param bytesPerSecond the rate
 * @returns the text, `-` for none
 */
export function formatRate(bytesPerSecond: number): string {
  return bytesPerSecond <= 0 ? "-" : `${formatBytes(bytesPerSecond)}/s`;
}

/**
 * An age: `42s`, `3m07s`, `2h05m`.
 *
 * @param seconds how long
 * @returns the text
 */
export function formatAge(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, "0")}m`;
}

/** What the daemon sent, fit for a terminal: printable ASCII only. */
function safe(text: string): string {
  return text.replace(/[^\x20-\x7e]/g, "?");
}

function endpoint(e: { address: string; port: number }): string {
  const a = safe(String(e.address));
  return a.includes(":") ? `[${a}]:${e.port}` : `${a}:${e.port}`;
}

const HEADER = [
  "PROTO",
  "STATE",
  "SOURCE",
  "DESTINATION",
  "NAME",
  "AGE",
  "SENT",
  "RECEIVED",
  "OUT/S",
  "IN/S",
];
/** Columns aligned to the right: the numbers. */
const RIGHT = new Set([5, 6, 7, 8, 9]);

/**
 * The table of connections, one line per entry under a header, columns two
 * spaces apart, numbers to the right. SENT and OUT/S count what the source
 * sent (the app here, or the cluster's client of an intercept).
 *
 * @param entries the entries, in the order to show
 * @returns the lines
 * @example
 * ```ts
 * import { formatConnectionTable } from "./connections.ts";
 * formatConnectionTable([])[0]!.startsWith("PROTO"); // true
 * ```
 */
export function formatConnectionTable(entries: readonly ConnectionEntry[]): string[] {
  const rows = [
    HEADER,
    ...entries.map((e) => [
      safe(e.protocol),
      safe(e.state),
      endpoint(e.source),
      endpoint(e.destination),
      e.name === null ? "-" : safe(e.name),
      formatAge(e.ageSeconds),
      formatBytes(e.bytesSent),
      formatBytes(e.bytesReceived),
      formatRate(e.rateSent),
      formatRate(e.rateReceived),
    ]),
  ];
  const widths = HEADER.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) =>
    r.map((c, i) =>
      RIGHT.has(i) ? c.padStart(widths[i]!) : i === r.length - 1 ? c : c.padEnd(widths[i]!)
    ).join("  ").trimEnd()
  );
}

/**
 * The whole text form: the table, or a sentence when there is nothing, and
 * a last line when entries were left out.
 *
 * @param doc the daemon's document
 * @param maxRows the most entries to show (a terminal's height); all when absent
 * @returns the lines
 */
export function formatConnections(doc: ConnectionsDocument, maxRows?: number): string[] {
  if (doc.flows.length === 0) {
    return [doc.total === 0 ? "No open connections." : `${doc.total} connections, none shown.`];
  }
  const shown = maxRows === undefined ? doc.flows : doc.flows.slice(0, Math.max(1, maxRows));
  const lines = formatConnectionTable(shown);
  const left = doc.total - shown.length;
  if (left > 0) lines.push(`… and ${left} more (${doc.total} in all)`);
  return lines;
}

/**
 * The line above the table in `-w`: counts and total rates.
 *
 * @param doc the daemon's document
 * @param intervalSeconds how often it is redrawn
 * @returns one line
 */
export function watchHeader(doc: ConnectionsDocument, intervalSeconds: number): string {
  const tcp = doc.flows.filter((f) => f.protocol === "tcp").length;
  const udp = doc.flows.filter((f) => f.protocol === "udp").length;
  const out = doc.flows.reduce((n, f) => n + f.rateSent, 0);
  const inward = doc.flows.reduce((n, f) => n + f.rateReceived, 0);
  const time = safe(doc.at).replace(/^.*T(\d\d:\d\d:\d\d).*$/, "$1");
  return `vif connections: ${tcp} tcp, ${udp} udp` +
    (doc.truncated > 0 ? ` (${doc.total} in all)` : "") +
    `; out ${formatRate(out)}, in ${formatRate(inward)}; every ${intervalSeconds}s; ${time} UTC` +
    " (Ctrl-C to quit)";
}

/**
 * One redraw of `-w`: on a terminal in place (each line cut to the width
 * and erased to its end, the screen below erased), else a plain block and a
 * blank line.
 *
 * @param doc the daemon's document
 * @param options the terminal's size (absent: not a terminal) and the interval
 * @returns the text to write
 */
export function watchFrame(
  doc: ConnectionsDocument,
  options: { columns?: number; rows?: number; tty: boolean; intervalSeconds: number },
): string {
  // Header, blank line, table header, and a "more" line.
  const room = options.rows === undefined ? undefined : Math.max(1, options.rows - 5);
  const lines = [
    watchHeader(doc, options.intervalSeconds),
    "",
    ...formatConnections(doc, options.tty ? room : undefined),
  ];
  if (!options.tty) return lines.join("\n") + "\n\n";
  return "\x1b[H" + lines.map((l) => clipLine(l, options.columns) + "\x1b[K").join("\n") +
    "\n\x1b[J";
}

/**
 * Asks the daemon for its connections.
 *
 * @param client a connection to the daemon
 * @returns the document
 * @throws {UserError} when vif is not connected
 */
export async function fetchConnections(client: ControlClient): Promise<ConnectionsDocument> {
  try {
    return await client.request("connections", {});
  } catch (error) {
    throw asUserError(error);
  }
}

/** The terminal's height, when stdout is one. */
function terminalRows(): number | undefined {
  try {
    return Deno.consoleSize().rows || undefined;
  } catch {
    return undefined;
  }
}

/** Waits `ms`, or less when `signal` aborts. */
function pause(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done);
  });
}

/**
 * Redraws the connections until `signal` aborts.
 *
 * @param client a connection to the daemon
 * @param io where to draw
 * @param options format, interval, the terminal's height
 * @throws {UserError} when the daemon stops answering (vif disconnected)
 */
export async function watchConnections(
  client: ControlClient,
  io: CliIo,
  options: {
    output: OutputFormat;
    intervalMs: number;
    signal: AbortSignal;
    rows?: () => number | undefined;
  },
): Promise<void> {
  const tty = options.output === "text" && (io.stdoutIsTerminal?.() ?? false);
  if (tty) io.stdout("\x1b[?25l\x1b[H\x1b[2J"); // hide the cursor, clear once
  try {
    while (!options.signal.aborted) {
      const doc = await fetchConnections(client);
      if (options.signal.aborted) break;
      if (options.output === "json") io.stdout(JSON.stringify(doc) + "\n");
      else if (options.output === "yaml") io.stdout("---\n" + formatStructured(doc, "yaml"));
      else {
        io.stdout(watchFrame(doc, {
          tty,
          columns: io.columns?.(),
          rows: options.rows?.(),
          intervalSeconds: options.intervalMs / 1000,
        }));
      }
      await pause(options.intervalMs, options.signal);
    }
  } finally {
    if (tty) io.stdout("\x1b[?25h"); // the cursor back
  }
}

const EXAMPLES = `
Examples:
  vif connections
  vif connections -w                 # redrawn every second, busiest first; Ctrl-C quits
  vif connections -o json | jq '.flows[] | select(.name == "web.default")'
  vif status --connections

Columns: SOURCE is the app on this machine (for an intercept, the cluster's
client, and NAME says "intercept ..."); NAME is the name the destination was
looked up as;
SENT and OUT/S count what the source sent, RECEIVED and IN/S what came back
(payload bytes; rates over the last one to two seconds).`;

interface ConnectionsFlags {
  watch?: boolean;
  interval: string;
  output: OutputFormat;
  stateDir?: string;
}

/**
 * Adds `vif connections` to the program.
 *
 * @param program the root command
 * @param context the run's shared state
 */
export function registerConnections(program: Command, context: CliContext): void {
  program
    .command("connections")
    .description("list the open connections and flows through vif, with bytes and rates")
    .option("-w, --watch", "redraw every interval, busiest first, until Ctrl-C")
    .option("--interval <seconds>", "how often -w redraws", "1")
    .addOption(outputOption("the connections"))
    .option("--state-dir <dir>", STATE_DIR_HELP)
    .addHelpText("after", EXAMPLES)
    .action(async (flags: ConnectionsFlags) => {
      const interval = Number(flags.interval);
      if (!Number.isFinite(interval) || interval < 0.2 || interval > 3600) {
        throw new UserError(`the interval "${flags.interval}" is not a number of seconds`, {
          hint: "Pass --interval with 0.2 to 3600 seconds.",
          exitCode: ExitCode.Usage,
        });
      }
      const client = await daemonClient(stateDirOf(flags.stateDir, context.io.env));
      if (!client) {
        throw new UserError("vif is not connected (no daemon runs)", {
          hint: "Run `vif connect --context NAME` first.",
        });
      }
      try {
        if (!flags.watch) {
          const doc = await fetchConnections(client);
          context.io.stdout(
            flags.output === "text"
              ? formatConnections(doc).join("\n") + "\n"
              : formatStructured(doc, flags.output),
          );
          return;
        }
        const stop = new AbortController();
        const quit = () => stop.abort();
        Deno.addSignalListener("SIGINT", quit);
        Deno.addSignalListener("SIGTERM", quit);
        try {
          await watchConnections(client, context.io, {
            output: flags.output,
            intervalMs: Math.round(interval * 1000),
            signal: stop.signal,
            rows: terminalRows,
          });
        } finally {
          Deno.removeSignalListener("SIGINT", quit);
          Deno.removeSignalListener("SIGTERM", quit);
        }
      } finally {
        client.close();
      }
    });
}
