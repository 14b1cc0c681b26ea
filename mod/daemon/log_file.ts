/**
 * The daemon's log: one line per event (`2026-11-24T06:50:00.123Z info  text`)
 * appended to `<state-dir>/daemon.log`, rotated when it passes a size
 * (`daemon.log` → `daemon.log.1` → … → `daemon.log.N`, the oldest dropped),
 * at a level that can change while the daemon runs (`vif loglevel`).
 *
 * Writes are synchronous: a line is on disk before the daemon goes on, so the
 * last lines before a crash are there to read. The file is never opened
 * through a symbolic link (`state_dir.ts`): the daemon writes it as root.
 * Another process (the DNS watchdog) adds its lines with
 * {@linkcode appendLogLine}, in the same format.
 *
 * @module
 */

import fs from "node:fs";
import { LOG_LEVELS, type LogLevel } from "./control.ts";
import { openAppend } from "./state_dir.ts";

/** Options of {@linkcode LogFile.open}. */
export interface LogFileOptions {
  /** Rotate when the file passes this many bytes (default 4 MiB). */
  maxBytes?: number;
  /** Rotated files to keep (default 3). */
  keep?: number;
  /** The starting level (default `info`). */
  level?: LogLevel;
  /** Who may read the files besides root (the daemon's user). */
  owner?: { uid: number; gid: number };
  /** Also copy each line here (a terminal, in tests). */
  echo?: (line: string) => void;
}

/** An open, rotating log file. */
export class LogFile {
  readonly path: string;
  level: LogLevel;
  /** A `node:fs` descriptor, opened with `O_NOFOLLOW`. */
  #fd: number;
  #size: number;
  #maxBytes: number;
  #keep: number;
  #owner: { uid: number; gid: number } | undefined;
  #echo: ((line: string) => void) | undefined;
  #encoder = new TextEncoder();

  private constructor(path: string, fd: number, size: number, options: LogFileOptions) {
    this.path = path;
    this.#fd = fd;
    this.#size = size;
    this.level = options.level ?? "info";
    this.#maxBytes = options.maxBytes ?? 4 << 20;
    this.#keep = options.keep ?? 3;
    this.#owner = options.owner;
    this.#echo = options.echo;
  }

  /**
   * Opens (appending to) the log file.
   *
   * @param path the file
   * @param options size limit, files kept, level, owner
   * @returns the log
   * @throws {StateDirError} when the path is a symbolic link
   */
  static open(path: string, options: LogFileOptions = {}): LogFile {
    const fd = openAppend(path, 0o600);
    const log = new LogFile(path, fd, fs.fstatSync(fd).size, options);
    log.#chown();
    return log;
  }

  #chown(): void {
    if (!this.#owner) return;
    try {
      fs.fchownSync(this.#fd, this.#owner.uid, this.#owner.gid);
    } catch {
      // not root (tests): the file is ours anyway
    }
  }

  /** Whether a line at `level` is written now. */
  enabled(level: LogLevel): boolean {
    return LOG_LEVELS.indexOf(level) >= LOG_LEVELS.indexOf(this.level);
  }

  /**
   * Writes one event, if its level is enabled.
   *
   * @param level its level
   * @param message the text (newlines are kept as `\n` escapes: one event, one line)
   */
  write(level: LogLevel, message: string): void {
    if (!this.enabled(level)) return;
    const line = formatLine(level, message);
    this.#echo?.(line);
    const bytes = this.#encoder.encode(line);
    if (this.#size + bytes.length > this.#maxBytes && this.#size > 0) this.#rotate();
    try {
      fs.writeSync(this.#fd, bytes);
      this.#size += bytes.length;
    } catch {
      // A full disk must not stop the daemon; the line is lost.
    }
  }

  #rotate(): void {
    this.close();
    // The oldest goes; each other moves up one: daemon.log.2 → .3, …, daemon.log → .1.
    const name = (i: number) => i === 0 ? this.path : `${this.path}.${i}`;
    for (let i = this.#keep - 1; i >= 0; i--) {
      try {
        Deno.renameSync(name(i), name(i + 1));
      } catch {
        // not there
      }
    }
    try {
      this.#fd = openAppend(this.path, 0o600);
    } catch {
      // Someone put a link in its place: the lines are lost rather than written through it.
      this.#fd = -1;
    }
    this.#size = 0;
    this.#chown();
  }

  /**
   * The log files that exist, newest first.
   *
   * @returns their paths
   */
  files(): string[] {
    const out: string[] = [];
    for (let i = 0; i <= this.#keep; i++) {
      const p = i === 0 ? this.path : `${this.path}.${i}`;
      try {
        Deno.statSync(p);
        out.push(p);
      } catch {
        // rotated away or never made
      }
    }
    return out;
  }

  /** Closes the file. */
  close(): void {
    try {
      if (this.#fd >= 0) fs.closeSync(this.#fd);
    } catch {
      // closed
    }
    this.#fd = -1;
  }
}

/** One event as a log line: `2026-11-24T06:50:00.123Z info  text\n`. */
function formatLine(level: LogLevel, message: string): string {
  return `${new Date().toISOString()} ${level.padEnd(5)} ${message.replaceAll("\n", "\\n")}\n`;
}

/**
 * Adds one line to a log file another process keeps (the daemon's), opening
 * and closing it for the line: lines land in whatever file has the name now,
 * also after the owner rotated it. Never through a symbolic link.
 *
 * @param path the log file
 * @param level its level
 * @param message the text
 * @returns whether the line was written
 */
export function appendLogLine(path: string, level: LogLevel, message: string): boolean {
  try {
    const fd = openAppend(path, 0o600);
    try {
      fs.writeSync(fd, new TextEncoder().encode(formatLine(level, message)));
    } finally {
      fs.closeSync(fd);
    }
    return true;
  } catch {
    return false;
  }
}
