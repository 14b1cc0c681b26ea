/**
 * One container instance's log, as a container runtime keeps it for the
 * kubelet (`/var/log/pods/…/<container>/<restart>.log`): every line the
 * process writes to stdout or stderr, in the order they arrive, with the time
 * each arrived; bounded (the oldest lines go first, as a rotated log loses
 * them). `pods/log` reads it through the API server (`apiserver/pod_log.ts`).
 *
 * The lines come from the process's own line lists (`Proc.lines` and
 * `Proc.errLines`, filled as the output is read): {@linkcode ContainerLog.attach}
 * copies what is there and follows every line added after, so the two
 * streams keep their interleaving.
 *
 * @module
 */

import type { Proc } from "../e2e/_env.ts";

/** One line of a container's log. */
export interface ContainerLogLine {
  /** When it was read, in ms since the epoch. */
  time: number;
  /** The line, without its newline. */
  text: string;
  /** Which output it came from. */
  stream: "stdout" | "stderr";
}

/** The bytes one instance's log keeps by default (a real runtime rotates at 10 MiB). */
export const DEFAULT_LOG_BYTES = 2 << 20;

/** A bounded log of one container instance. */
export class ContainerLog {
  #lines: ContainerLogLine[] = [];
  #start = 0;
  #bytes = 0;
  #maxBytes: number;
  #now: () => number;

  /**
   * Makes an empty log.
   *
   * @param options the most bytes kept (default {@linkcode DEFAULT_LOG_BYTES}) and the clock
   */
  constructor(options: { maxBytes?: number; now?: () => number } = {}) {
    this.#maxBytes = options.maxBytes ?? DEFAULT_LOG_BYTES;
    this.#now = options.now ?? Date.now;
  }

  /**
   * Adds a line.
   *
   * @param text the line, without its newline
   * @param stream where it came from
   */
  add(text: string, stream: "stdout" | "stderr" = "stdout"): void {
    this.#lines.push({ time: this.#now(), text, stream });
    this.#bytes += text.length + 1;
    while (this.#bytes > this.#maxBytes && this.#start < this.#lines.length) {
      this.#bytes -= this.#lines[this.#start]!.text.length + 1;
      this.#start++;
    }
    // Drop what was cut off once it is most of the array, so it stays bounded.
    if (this.#start > 1024 && this.#start * 2 > this.#lines.length) {
      this.#lines = this.#lines.slice(this.#start);
      this.#start = 0;
    }
  }

  /** The lines kept, oldest first. */
  lines(): ContainerLogLine[] {
    return this.#lines.slice(this.#start);
  }

  /**
   * Takes in what `proc` wrote so far and every line it writes after.
   *
   * @param proc the container's process
   */
  attach(proc: Pick<Proc, "lines" | "errLines">): void {
    follow(proc.lines, (line) => this.add(line, "stdout"));
    follow(proc.errLines, (line) => this.add(line, "stderr"));
  }
}

/**
 * Calls `fn` with each line already in `sink` and each one pushed later.
 * The process's reader only appends with `push`.
 */
function follow(sink: readonly string[], fn: (line: string) => void): void {
  for (const line of sink) fn(line);
  const array = sink as string[];
  const push = array.push.bind(array);
  Object.defineProperty(array, "push", {
    configurable: true,
    value: (...items: string[]) => {
      for (const item of items) fn(item);
      return push(...items);
    },
  });
}
