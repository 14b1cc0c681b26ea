/**
 * Keeping a resource of the Kubernetes API in memory by list and watch
 * (client-go's informer, in small): what the manager's discovery watches
 * (nodes, pods, services, namespaces) and the agent's view of its own pod
 * are kept this way. Also the small tools of every API call made from the
 * cluster: a time limit, an abort signal for client-node, one phrase for a
 * failure.
 *
 * @module
 */

import {
  ApiException,
  type ConfigurationOptions,
  type KubeConfig,
  type KubernetesObject,
  Observable,
  type ObservableMiddleware,
  Watch,
} from "@kubernetes/client-node";

/** What an {@linkcode Informer} needs: the client, the waits, where lines go. */
export interface InformerDeps {
  /** The client configuration. */
  kubeConfig: KubeConfig;
  /** Waits between retries. */
  retry: Required<RetryOptions>;
  /** The limit of each list call, in ms. */
  requestTimeoutMs: number;
  /** How long a watch may be silent before it is started again, in ms. */
  watchIdleMs: number;
  /** A line saying a failure is over (`listed nodes again`). */
  info(text: string): void;
  /** A line saying what failed (once per distinct failure, not every retry). */
  warn(text: string): void;
}

/** Options of the retry loops. */
export interface RetryOptions {
  /** The first wait after a failure, in ms. Default 500. */
  initialMs?: number;
  /** The longest wait, in ms. Default 30000. */
  maxMs?: number;
}

/** An object as the API server sent it: only what every object has is typed. */
export interface RawObject extends KubernetesObject {
  spec?: Record<string, unknown>;
  status?: Record<string, unknown>;
}

/** One page of a list. */
export interface Page {
  items: RawObject[];
  resourceVersion: string;
  continue?: string;
}

/** What an {@linkcode Informer} keeps, and how it lists. */
export interface InformerSpec<V> {
  /** For logs: `nodes`. */
  resource: string;
  /** The watch path: `/api/v1/nodes`. */
  path: string;
  /** Lists one page. */
  list(page: { limit: number; continue?: string }, signal: AbortSignal): Promise<Page>;
  /** What to keep of an object; `undefined` to forget it. */
  value(object: RawObject): V | undefined;
}

/** A failed request, in one phrase. */
export interface Failure {
  /** The HTTP status, when the server answered. */
  code?: number;
  message: string;
}

/** HTTP statuses that say "this is not for you": the resource is not served, or not allowed. */
export function isAbsent(failure: Failure | undefined): boolean {
  return failure?.code === 404 || failure?.code === 403;
}

/**
 * A status or error as one short phrase.
 *
 * @param error what a client-node call threw
 * @returns the HTTP status, when there was one, and the phrase
 */
export function describeFailure(error: unknown): Failure {
  if (error instanceof ApiException) {
    const body = typeof error.body === "string" ? error.body : JSON.stringify(error.body);
    let message = "";
    try {
      message = (JSON.parse(body) as { message?: string }).message ?? "";
    } catch {
      message = body;
    }
    return { code: error.code, message: `HTTP ${error.code}${message ? `: ${message}` : ""}` };
  }
  const code = (error as { statusCode?: number } | undefined)?.statusCode;
  let text = error instanceof Error ? error.message : String(error);
  let cause = (error as { cause?: unknown } | undefined)?.cause;
  for (let i = 0; i < 3 && cause instanceof Error; i++) {
    text += `: ${cause.message}`;
    cause = (cause as { cause?: unknown }).cause;
  }
  return { ...(typeof code === "number" ? { code } : {}), message: text };
}

/**
 * One resource kept in memory by list and watch, as client-go's informers:
 * lists (in pages), then watches from the list's `resourceVersion`, lists
 * again on 410 Gone, retries with backoff, and starts a watch again that has
 * been silent too long. `onChange` is called after every change of
 * {@linkcode Informer.values} (and of its failure).
 */
export class Informer<V> {
  /** Values by `namespace/name`. */
  values = new Map<string, V>();
  /** Whether a list has succeeded once. */
  synced = false;
  /** The last list failure, until a list succeeds. */
  failure: Failure | undefined;

  #spec: InformerSpec<V>;
  #deps: InformerDeps;
  #onChange: () => void;
  #stop = new AbortController();
  /** Ends the current watch, if any. */
  #endWatch: (() => void) | undefined;
  /** The current watch's connection attempt (client-node cannot abort it before the answer). */
  #connecting: Promise<void> = Promise.resolve();
  #resourceVersion = "";
  /** The failure last logged, until a list or watch works again. */
  #loggedFailure = "";
  readonly done: Promise<void>;

  /**
   * Starts listing and watching.
   *
   * @param spec the resource, its list call, what to keep of each object
   * @param deps the client, the waits, the logs
   * @param onChange called after each change
   */
  constructor(spec: InformerSpec<V>, deps: InformerDeps, onChange: () => void) {
    this.#spec = spec;
    this.#deps = deps;
    this.#onChange = onChange;
    this.done = this.#run();
  }

  /** Stops the watch and every retry; resolves when all is over. */
  async stop(): Promise<void> {
    this.#stop.abort();
    this.#endWatch?.();
    await this.done;
    // Let a connection attempt in flight finish (and be aborted), a second at most.
    const bound = new AbortController();
    await Promise.race([this.#connecting, sleep(1000, bound.signal)]);
    bound.abort();
  }

  async #run(): Promise<void> {
    const { retry } = this.#deps;
    let delay = retry.initialMs;
    const backoff = async (ms = delay) => {
      await sleep(ms, this.#stop.signal);
      delay = Math.min(delay * 2, retry.maxMs);
    };
    while (!this.#stop.signal.aborted) {
      try {
        await this.#list();
        delay = retry.initialMs;
      } catch (error) {
        if (this.#stop.signal.aborted) break;
        this.failure = describeFailure(error);
        this.#onChange();
        const wait = isAbsent(this.failure) ? retry.maxMs * 10 : delay;
        this.#logFailure(`cannot list ${this.#spec.resource}`, wait);
        await backoff(wait);
        continue;
      }
      while (!this.#stop.signal.aborted) {
        const started = Date.now();
        const end = await this.#watchOnce();
        if (this.#stop.signal.aborted || end === "gone") break; // Gone: list again, now.
        if (end !== "ended") {
          this.#logFailure(`the watch of ${this.#spec.resource} failed`, delay, end);
          await backoff();
        } else if (Date.now() - started < 1000) {
          await backoff(); // A server that ends watches at once: do not spin.
        } else delay = retry.initialMs;
      }
    }
  }

  async #list(): Promise<void> {
    const values = new Map<string, V>();
    let cont: string | undefined;
    let resourceVersion = "";
    do {
      const page = await withTimeout(
        this.#deps.requestTimeoutMs,
        this.#stop.signal,
        (signal) => this.#spec.list({ limit: 500, ...(cont ? { continue: cont } : {}) }, signal),
      );
      for (const item of page.items) {
        const value = this.#spec.value(item);
        if (value !== undefined) values.set(keyOf(item), value);
      }
      resourceVersion = page.resourceVersion;
      cont = page.continue || undefined;
    } while (cont !== undefined && !this.#stop.signal.aborted);
    this.values = values;
    this.#resourceVersion = resourceVersion;
    this.synced = true;
    this.failure = undefined;
    this.#recovered(`listed ${this.#spec.resource} again`);
    this.#onChange();
  }

  /** Watches from the last resourceVersion until the watch ends: `ended`, `gone`, or the failure. */
  #watchOnce(): Promise<"ended" | "gone" | Failure> {
    return new Promise((resolve) => {
      let settled = false;
      let controller: AbortController | undefined;
      // client-node's Watch does not call `done` after an abort (under Deno the
      // aborted body never errors), so every end goes through here.
      let idle: ReturnType<typeof setTimeout> | undefined;
      const finish = (result: "ended" | "gone" | Failure) => {
        if (settled) return;
        settled = true;
        clearTimeout(idle);
        this.#endWatch = undefined;
        controller?.abort();
        resolve(result);
      };
      // client-node aborts a watch silent for 30 s, without telling (see
      // above): a silent watch is ended here too, and started again.
      const touch = () => {
        clearTimeout(idle);
        idle = setTimeout(() => finish("ended"), this.#deps.watchIdleMs);
      };
      touch();
      this.#endWatch = () => finish("ended");
      const done = (error: unknown) => {
        if (error === null || error === undefined || isTimeout(error)) finish("ended");
        else {
          const failure = describeFailure(error);
          finish(failure.code === 410 ? "gone" : failure);
        }
      };
      const onEvent = (type: string, object: RawObject) => {
        if (settled) return;
        touch();
        if (type === "ERROR") {
          const status = object as { code?: number; message?: string };
          finish(
            status.code === 410
              ? "gone"
              : { code: status.code, message: status.message ?? JSON.stringify(object) },
          );
          return;
        }
        const version = object?.metadata?.resourceVersion;
        if (version) this.#resourceVersion = version;
        if (type === "BOOKMARK") return;
        const key = keyOf(object);
        const value = type === "DELETED" ? undefined : this.#spec.value(object);
        if (value === undefined) this.values.delete(key);
        else this.values.set(key, value);
        this.#onChange();
      };
      const params = {
        resourceVersion: this.#resourceVersion,
        allowWatchBookmarks: true,
        // As client-go: a random 5 to 10 minutes, so watches do not all end together.
        timeoutSeconds: 300 + Math.floor(Math.random() * 300),
      };
      this.#connecting = new Watch(this.#deps.kubeConfig).watch(
        this.#spec.path,
        params,
        onEvent,
        done,
      )
        .then((c) => {
          controller = c;
          if (settled) c.abort();
          else this.#recovered(`watching ${this.#spec.resource} again`); // Answered 200.
        }, done);
    });
  }

  /** After a failure was logged, says that it is over. */
  #recovered(what: string): void {
    if (this.#loggedFailure === "") return;
    this.#loggedFailure = "";
    this.#deps.info(what);
  }

  #logFailure(what: string, waitMs: number, failure: Failure | undefined = this.failure): void {
    const text = failure?.message ?? "unknown error";
    if (text === this.#loggedFailure) return; // Said already: not every retry.
    this.#loggedFailure = text;
    this.#deps.warn(`${what}: ${text} (retrying every ${formatWait(waitMs)} or sooner)`);
  }
}

/** `namespace/name` of an object. */
export function keyOf(object: KubernetesObject): string {
  return `${object.metadata?.namespace ?? ""}/${object.metadata?.name ?? ""}`;
}

function isTimeout(error: unknown): boolean {
  return (error as { name?: string } | undefined)?.name === "TimeoutError";
}

/** A wait in ms as `30s` or `500ms`. */
export function formatWait(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000}s` : `${ms}ms`;
}

/**
 * Waits `ms`, or less when `signal` aborts. Never rejects.
 *
 * @param ms how long
 * @param signal ends the wait early
 */
export function sleep(ms: number, signal: AbortSignal): Promise<void> {
  if (signal.aborted) return Promise.resolve();
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
 * Runs `fn` with a signal that aborts after `ms` or when `outer` aborts.
 *
 * @param ms the limit
 * @param outer aborts it sooner
 * @param fn the call
 * @returns what `fn` returns
 */
export async function withTimeout<T>(
  ms: number,
  outer: AbortSignal,
  fn: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  const controller = new AbortController();
  const abort = () => controller.abort(outer.reason);
  const timer = setTimeout(
    () => controller.abort(new DOMException(`No answer in ${formatWait(ms)}`, "TimeoutError")),
    ms,
  );
  outer.addEventListener("abort", abort);
  if (outer.aborted) abort();
  try {
    return await fn(controller.signal);
  } finally {
    clearTimeout(timer);
    outer.removeEventListener("abort", abort);
  }
}

/**
 * client-node's per-call options that make a request end when `signal` aborts.
 *
 * @param signal ends the request
 * @returns the options to pass as a typed call's last argument
 */
export function callOptions(signal: AbortSignal): ConfigurationOptions {
  const middleware: ObservableMiddleware = {
    pre(context) {
      context.setSignal(signal);
      return new Observable(Promise.resolve(context));
    },
    post: (context) => new Observable(Promise.resolve(context)),
  };
  return { middleware: [middleware], middlewareMergeStrategy: "append" };
}

/**
 * A typed list answer as a {@linkcode Page}.
 *
 * @param list what a `list…` call returned
 * @returns its items, resourceVersion and continue token
 */
export function listPage(
  list: { items: unknown[]; metadata?: { resourceVersion?: string; _continue?: string } },
): Page {
  return {
    items: list.items as RawObject[],
    resourceVersion: list.metadata?.resourceVersion ?? "",
    ...(list.metadata?._continue ? { continue: list.metadata._continue } : {}),
  };
}
