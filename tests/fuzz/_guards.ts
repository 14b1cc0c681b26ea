/**
 * What keeps a fuzz run honest about hangs and escapes: a deadline for
 * asynchronous checks, a catcher of errors that escape a check (unhandled
 * rejections, throws from callbacks), and a watchdog worker for checks that
 * block the thread for good.
 *
 * @module
 */

/**
 * Races `promise` against a timer.
 *
 * @param promise what a check returned
 * @param ms how long it may take
 * @param late makes the error when it takes longer
 * @returns what the promise resolves with
 */
export function withDeadline<T>(promise: Promise<T>, ms: number, late: () => Error): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  return Promise.race([
    promise,
    new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(late()), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

let activeCatcher: EscapeCatcher | undefined;

/**
 * Takes the errors that escaped (unhandled rejections, throws from callbacks)
 * since the last look, so that a check can judge them itself and say what
 * escaped; what it does not take fails the input.
 *
 * @returns the errors
 */
export function claimEscapes(): unknown[] {
  return activeCatcher?.take() ?? [];
}

/**
 * Catches what a check lets escape: rejections nobody handled and errors
 * thrown from callbacks (which would otherwise end the test process without
 * the input).
 */
export class EscapeCatcher {
  #escaped: unknown[] = [];
  #onRejection = (event: PromiseRejectionEvent) => {
    event.preventDefault();
    this.#escaped.push(event.reason);
  };
  #onError = (event: ErrorEvent) => {
    event.preventDefault();
    this.#escaped.push(event.error ?? event.message);
  };

  /** Starts listening; {@linkcode claimEscapes} looks at this one until it stops. */
  constructor() {
    globalThis.addEventListener("unhandledrejection", this.#onRejection);
    globalThis.addEventListener("error", this.#onError);
    activeCatcher = this;
  }

  /** The escapes since the last look. */
  take(): unknown[] {
    return this.#escaped.splice(0);
  }

  /**
   * What escaped since the last look, as one line.
   *
   * @param wait let a turn of the event loop pass first
   * @returns the line, or `undefined` when nothing escaped
   */
  async collect(wait: boolean): Promise<string | undefined> {
    if (wait) await new Promise((resolve) => setTimeout(resolve, 0));
    const first = this.#escaped[0];
    const count = this.#escaped.length;
    this.#escaped = [];
    if (count === 0) return undefined;
    const text = first instanceof Error ? `${first.name}: ${first.message}` : String(first);
    return `${count} error(s) escaped (unhandled rejection or throw): ${text}`;
  }

  /** Stops listening. */
  stop(): void {
    globalThis.removeEventListener("unhandledrejection", this.#onRejection);
    globalThis.removeEventListener("error", this.#onError);
    if (activeCatcher === this) activeCatcher = undefined;
  }
}

const WATCH_BYTES = 64 * 1024;

/**
 * A worker that watches the check under way through shared memory: when one
 * input keeps the thread busy past the limit, it prints the input and kills
 * the process (a synchronous endless loop cannot be stopped otherwise).
 */
export class Watchdog {
  #state = new Int32Array(new SharedArrayBuffer(16));
  #input = new Uint8Array(new SharedArrayBuffer(WATCH_BYTES));
  #where = new Uint8Array(new SharedArrayBuffer(512));
  #worker: Worker;
  #encoder = new TextEncoder();

  /**
   * Starts the worker.
   *
   * @param name the target, for the message
   * @param limitMs how long one input may keep the thread busy
   */
  constructor(name: string, limitMs: number) {
    this.#worker = new Worker(new URL("./_watchdog.ts", import.meta.url), { type: "module" });
    this.#worker.postMessage({
      name,
      limitMs,
      state: this.#state,
      input: this.#input,
      where: this.#where,
    });
  }

  /**
   * A check starts.
   *
   * @param input its input (the first 64 KiB are kept for the message)
   * @param where where the input came from
   */
  busy(input: Uint8Array, where: string): void {
    const n = Math.min(input.length, WATCH_BYTES);
    this.#input.set(input.subarray(0, n));
    this.#where.fill(0);
    this.#encoder.encodeInto(where.slice(0, 200), this.#where);
    Atomics.store(this.#state, 2, input.length);
    Atomics.add(this.#state, 1, 1);
    Atomics.store(this.#state, 0, 1);
  }

  /** The check ended. */
  idle(): void {
    Atomics.store(this.#state, 0, 0);
  }

  /** Ends the worker. */
  stop(): void {
    this.#worker.terminate();
  }
}
