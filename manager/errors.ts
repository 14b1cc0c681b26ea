/**
 * The error the manager throws when it cannot start as configured: the
 * {@linkcode SetupError} every serving role shares (`mod/rpc/serve.ts`),
 * under the name the manager's callers know.
 *
 * @module
 */

import { SetupError, type SetupErrorOptions } from "../mod/rpc/serve.ts";

/** The manager cannot start: a bad option, missing TLS files, a port in use. */
export const ManagerSetupError = SetupError;
/** See {@linkcode ManagerSetupError}. */
export type ManagerSetupError = SetupError;
/** Options of {@linkcode ManagerSetupError}. */
export type ManagerSetupErrorOptions = SetupErrorOptions;
