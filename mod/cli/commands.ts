/**
 * The commands of `vif`, in the order `vif --help` lists them. A new command
 * is a module in this folder exporting a {@linkcode RegisterCommand} (see
 * `version.ts`), added here; its work lives in its subsystem, the command
 * module only parses and prints.
 *
 * `manager` (also `vif --serve`) runs the traffic-manager (manager/); `--serve`
 * is rewritten to it before parsing, see `serveAlias()` in `manager.ts`.
 *
 * `connect`, `status`, `connections`, `capture`, `quit`, `loglevel` and
 * `gather-logs` talk to the daemon
 * over its control socket (mod/daemon/control.ts); `daemon` (hidden) is the
 * daemon itself, started by `connect`; `kube-credentials` and `dns-watchdog`
 * (hidden) are the daemon's helpers, which it runs as separate processes.
 *
 * @module
 */

import type { RegisterCommand } from "./context.ts";
import { registerAgent } from "./agent.ts";
import { registerClientCert } from "./client_cert.ts";
import { registerConfig } from "./config.ts";
import { registerConnect } from "./connect.ts";
import { registerDaemon } from "./daemon.ts";
import { registerGatherLogs } from "./gather_logs.ts";
import { registerDnsWatchdog } from "./dns_watchdog.ts";
import { registerDoctor } from "./doctor.ts";
import { registerQuit } from "./quit.ts";
import { registerStatus } from "./status.ts";
import { registerConnections } from "./connections.ts";
import { registerCapture } from "./capture.ts";
import { registerCompletion } from "./completion.ts";
import { registerHelp } from "./help.ts";
import { registerInstall } from "./install.ts";
import { registerIntercept } from "./intercept.ts";
import { registerKubeCredentials } from "./kube_credentials.ts";
import { registerList } from "./list.ts";
import { registerManager } from "./manager.ts";
import { registerVersion } from "./version.ts";

/** Every command, in listing order; `help` stays last. */
export const COMMANDS: readonly RegisterCommand[] = [
  registerConnect,
  registerStatus,
  registerConnections,
  registerCapture,
  registerQuit,
  registerInstall,
  registerClientCert,
  registerList,
  registerIntercept,
  registerManager,
  registerVersion,
  registerDoctor,
  registerDaemon,
  registerGatherLogs,
  registerKubeCredentials,
  registerDnsWatchdog,
  registerAgent,
  registerConfig,
  registerCompletion,
  registerHelp,
];
