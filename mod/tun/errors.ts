/**
 * The error a TUN device or routing call throws when the operating system
 * refuses: it carries the symbolic error code so a caller can tell "not
 * permitted" from "already exists" without parsing the message.
 *
 * @module
 */

/**
 * An operating-system call failed.
 *
 * @example
 * ```ts
 * import { SystemError } from "./errors.ts";
 * const e = new SystemError('Cannot set MTU on "vif0": EINVAL (invalid argument)', "EINVAL", 22);
 * e.code; // "EINVAL"
 * ```
 */
export class SystemError extends Error {
  /** The symbolic error code: `EPERM`, `EEXIST`, or `errno 123` when unknown. */
  readonly code: string;
  /** The operating system's error number. */
  readonly errno: number;

  /**
   * Makes the error.
   *
   * @param message the whole message, ending with the code and its meaning
   * @param code the symbolic error code
   * @param errno the error number
   * @param options the usual error options (`cause`)
   */
  constructor(message: string, code: string, errno: number, options?: ErrorOptions) {
    super(message, options);
    this.name = "SystemError";
    this.code = code;
    this.errno = errno;
  }
}
