/**
 * `vif agent` and `vif agent-init` (both hidden): the traffic-agent sidecar
 * of an intercepted workload's pods and its init container, as `vif
 * intercept` writes them into the pod template. The work is in `agent/`,
 * loaded only when one of them runs; this module reads the environment and
 * the flags, prints, and turns SIGTERM into a clean stop.
 *
 * A bad configuration ends the agent with two lines (what is wrong, what to
 * do) and exit code 2, so that the pod's events say why it is crash-looping.
 *
 * @module
 */

import type { Command } from "commander";
import {
  AGENT_CONFIG_ENV,
  AGENT_TOKEN_DIR,
  APP_ENV_PREFIX,
  POD_ENV,
} from "../kube/agent_config.ts";
import type { CliContext } from "./context.ts";
import { ExitCode, UserError } from "./errors.ts";
import { lowerFirst, untilSignal } from "./_server.ts";

/** The options of `vif agent`. */
interface AgentFlags {
  tokenFile: string;
  resolvConf: string;
  sftpServer?: string;
}

/**
 * Adds `vif agent` and `vif agent-init` to the program.
 *
 * @param program The root command.
 * @param context The run's shared state.
 */
export function registerAgent(program: Command, context: CliContext): void {
  program
    .command("agent", { hidden: true })
    .description("run the traffic-agent, a sidecar in an intercepted workload's pods")
    .option("--token-file <file>", "the agent's projected token", `${AGENT_TOKEN_DIR}/token`)
    .option("--resolv-conf <file>", "the pod's resolv.conf", "/etc/resolv.conf")
    .option("--sftp-server <file>", "the sftp-server program (default: found in the usual places)")
    .action(async (flags: AgentFlags) => {
      const agentModule = await import("../../agent/mod.ts");
      const log = logTo(context);
      let setup;
      try {
        setup = await agentModule.loadAgentSetup({
          env: agentEnvironment(context),
          resolvConfPath: flags.resolvConf,
        });
      } catch (error) {
        throw asUsage(error, agentModule.AgentSetupError);
      }
      let agent;
      try {
        agent = agentModule.Agent.start({
          setup,
          token: new agentModule.TokenFile(flags.tokenFile),
          log,
          sftp: {
            ...(flags.sftpServer ? { program: flags.sftpServer } : {}),
            ...(context.io.env("PATH") ? { path: context.io.env("PATH") } : {}),
          },
        });
      } catch (error) {
        if (error instanceof agentModule.AgentSetupError) {
          throw new UserError(lowerFirst(error.message), { hint: error.hint, cause: error });
        }
        throw error;
      }
      const signal = await untilSignal(["SIGTERM", "SIGINT"]);
      await agent.stop(`${signal}: stopping`);
    });

  program
    .command("agent-init", { hidden: true })
    .description("redirect the ports taken by number to the traffic-agent (its init container)")
    .action(async () => {
      const agentModule = await import("../../agent/mod.ts");
      const { parseAgentConfig, AgentConfigError } = await import("../kube/agent_config.ts");
      const text = context.io.env(AGENT_CONFIG_ENV);
      if (text === undefined || text.trim() === "") {
        throw new UserError(`${AGENT_CONFIG_ENV} is not set`, {
          hint: "The init container is made by `vif intercept`: inject the agent again.",
          exitCode: ExitCode.Usage,
        });
      }
      let config;
      try {
        config = parseAgentConfig(text);
      } catch (error) {
        if (!(error instanceof AgentConfigError)) throw error;
        throw new UserError(`${AGENT_CONFIG_ENV}: ${error.message}`, {
          hint: "The init container is made by `vif intercept`: inject the agent again.",
          exitCode: ExitCode.Usage,
          cause: error,
        });
      }
      try {
        await agentModule.installRedirects(config, {
          log: (line) => context.io.stderr(`${line}\n`),
        });
      } catch (error) {
        if (error instanceof agentModule.AgentInitError) {
          throw new UserError(lowerFirst(error.message), { hint: error.hint, cause: error });
        }
        throw error;
      }
    });
}

/**
 * The agent's environment: its own variables by name, and the app's (with
 * their prefix), which only the whole environment lists.
 */
function agentEnvironment(context: CliContext): Record<string, string> {
  const env: Record<string, string> = {};
  let all: Record<string, string> = {};
  try {
    all = Deno.env.toObject();
  } catch {
    // No --allow-env: only the named variables.
  }
  for (const [name, value] of Object.entries(all)) {
    if (name.startsWith(APP_ENV_PREFIX)) env[name] = value;
  }
  for (const name of [AGENT_CONFIG_ENV, POD_ENV.name, POD_ENV.namespace, POD_ENV.ip]) {
    const value = context.io.env(name);
    if (value !== undefined) env[name] = value;
  }
  return env;
}

/** Info and warn lines always, debug lines with --debug or VIF_DEBUG=1. */
function logTo(context: CliContext): (level: "debug" | "info" | "warn", line: string) => void {
  return (level, line) => {
    if (level !== "debug" || context.debug) context.io.stderr(`${line}\n`);
  };
}

function asUsage(error: unknown, SetupError: new (...args: never[]) => Error): unknown {
  if (!(error instanceof SetupError)) return error;
  return new UserError(error.message, {
    hint: (error as Error & { hint: string }).hint,
    exitCode: ExitCode.Usage,
    cause: error,
  });
}
