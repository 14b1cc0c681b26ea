/**
 * The commands of `vif`, in the order `vif --help` lists them. A new command
 * is a module in this folder exporting a {@linkcode RegisterCommand} (see
 * `version.ts`), added here; its work lives in its subsystem, the command
 * module only parses and prints.
 *
 * `manager` (also `vif --serve`) runs the traffic-manager (manager/); `--serve`
 * is rewritten to it before parsing, see `serveAlias()` in `manager.ts`.
 *
 * Planned, each with the issue that brings it (none is here until it works):
 * - `connect`, `quit`, `status`: talk to the daemon over its control socket (mod/daemon/)
 * - `daemon [--foreground]`: the root-side session that owns the TUN (mod/daemon/)
 * - `install`, `uninstall`, `list`: the traffic-manager's manifests, a namespace's services (mod/kube/)
 *
 * @module
 */

import type { RegisterCommand } from "./context.ts";
import { registerConnect } from "./connect.ts";
import { registerHelp } from "./help.ts";
import { registerInstall } from "./install.ts";
import { registerList } from "./list.ts";
import { registerManager } from "./manager.ts";
import { registerVersion } from "./version.ts";

/** Every command, in listing order; `help` stays last. */
export const COMMANDS: readonly RegisterCommand[] = [
  registerConnect,
  registerInstall,
  registerList,
  registerManager,
  registerVersion,
  registerHelp,
];
