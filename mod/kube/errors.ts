/**
 * The error of `mod/kube/`: what went wrong talking to Kubernetes (a
 * kubeconfig that cannot be used, an API request that failed) and what the
 * user can do about it. The CLI prints `message` and `hint` as its two lines.
 *
 * @module
 */

/** Options of {@linkcode KubeError}. */
export interface KubeErrorOptions {
  /** What the user can do about it, as a full sentence. */
  hint: string;
  /** The error that led to this one. */
  cause?: unknown;
  /** The HTTP status the API server answered with, when it answered. */
  status?: number;
}

/**
 * A failure to use the cluster: `message` says what happened (sentence case,
 * no final period, values quoted), `hint` what to do.
 *
 * @example
 * ```ts
 * import { KubeError } from "./errors.ts";
 *
 * const error = new KubeError('no context "dev" in the kubeconfig', {
 *   hint: 'Use one of: "kind-kind", "prod".',
 * });
 * if (!error.hint.startsWith("Use")) throw new Error(error.hint);
 * ```
 */
export class KubeError extends Error {
  /** What the user can do about it. */
  readonly hint: string;
  /** The HTTP status the API server answered with, if any. */
  readonly status: number | undefined;

  /**
   * Makes a Kubernetes error.
   *
   * @param message What happened.
   * @param options The hint, the cause and the HTTP status.
   */
  constructor(message: string, options: KubeErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "KubeError";
    this.hint = options.hint;
    this.status = options.status;
  }
}
