/**
 * The error the manager throws when it cannot start as configured, carrying
 * what to do about it, so that the command line can print it as two lines.
 *
 * @module
 */

/** Options of {@linkcode ManagerSetupError}. */
export interface ManagerSetupErrorOptions {
  /** What the operator can do about it, as a full sentence. */
  hint: string;
  /** Whether a bad option value caused it (the command line exits 2, else 1). */
  usage?: boolean;
  /** The error that led to this one. */
  cause?: unknown;
}

/**
 * The manager cannot start: a bad option, missing TLS files, a port in use.
 *
 * @example
 * ```ts
 * import { ManagerSetupError } from "./errors.ts";
 *
 * const error = new ManagerSetupError('Cannot parse pod subnet "198.18.0.0/40"', {
 *   hint: 'Pass CIDRs like "198.18.64.0/18".',
 *   usage: true,
 * });
 * if (!error.usage) throw new Error("expected a usage error");
 * ```
 */
export class ManagerSetupError extends Error {
  /** What the operator can do about it. */
  readonly hint: string;
  /** Whether a bad option value caused it. */
  readonly usage: boolean;

  /**
   * Makes the error.
   *
   * @param message What happened.
   * @param options The hint, whether it is a usage error, and the cause.
   */
  constructor(message: string, options: ManagerSetupErrorOptions) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "ManagerSetupError";
    this.hint = options.hint;
    this.usage = options.usage ?? false;
  }
}
