/**
 * The traffic-agent (`vif agent`) and its init container (`vif agent-init`):
 * what the command line hands off to. The agent takes an intercepted
 * workload's ports, passes them through to the app while no intercept is
 * active, and otherwise sends the connections to the manager; it gives the
 * manager the app's environment and mounts, sftp for the volumes and DNS
 * look-ups from the pod (DESIGN.md §10).
 *
 * @example Run the agent until asked to stop
 * ```ts ignore
 * import { Agent, loadAgentSetup, TokenFile } from "./mod.ts";
 *
 * const setup = await loadAgentSetup({ env: Deno.env.toObject() });
 * const agent = Agent.start({ setup, token: new TokenFile("/var/run/secrets/vif/agent/token") });
 * // … on SIGTERM:
 * await agent.stop("SIGTERM");
 * ```
 *
 * @module
 */

import { type AgentSetup, agentSetup } from "./setup.ts";

export { Agent, type AgentOptions, type AgentStats } from "./agent.ts";
export { type Backoff, backoffDelay, DEFAULT_BACKOFF } from "./backoff.ts";
export {
  AgentInitError,
  installRedirects,
  type InstallRedirectsOptions,
  NFT_TABLE,
  redirectRuleset,
} from "./init.ts";
export type { AgentLog } from "./log.ts";
export { MAX_CONNECTIONS_PER_PORT, type PortStats } from "./ports.ts";
export { type AgentPod, type AgentSetup, agentSetup, AgentSetupError } from "./setup.ts";
export { MAX_SFTP_SERVERS } from "./sftp.ts";
export { TokenFile } from "./token.ts";

/** Options of {@linkcode loadAgentSetup}. */
export interface LoadAgentSetupOptions {
  /** The agent's environment. */
  env: Record<string, string>;
  /** The pod's resolv.conf. Default `/etc/resolv.conf`. */
  resolvConfPath?: string;
}

/**
 * Reads the pod's resolv.conf (none is an empty one) and checks the setup.
 *
 * @param options the environment and where the resolv.conf is
 * @returns the setup
 * @throws {AgentSetupError} naming what is wrong
 */
export async function loadAgentSetup(options: LoadAgentSetupOptions): Promise<AgentSetup> {
  let resolvConf = "";
  try {
    resolvConf = await Deno.readTextFile(options.resolvConfPath ?? "/etc/resolv.conf");
  } catch {
    // No resolver: the manager's DNS frames are refused, everything else works.
  }
  return agentSetup(options.env, resolvConf.slice(0, 64 * 1024));
}
