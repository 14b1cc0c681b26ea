/**
 * What the traffic-agent is told before it starts: its configuration
 * (`VIF_AGENT_CONFIG`, written by `vif intercept` into the pod template), the
 * pod it runs in (the downward API), the app container's environment (copied
 * with a prefix) and the pod's resolver. All of it comes from the pod spec,
 * which anyone allowed to edit the workload can write, so every value is
 * checked here and a bad one stops the agent with the field named.
 *
 * Pure: the environment and the resolv.conf text are given.
 *
 * @module
 */

import {
  AGENT_CONFIG_ENV,
  type AgentConfig,
  AgentConfigError,
  appEnvironment,
  parseAgentConfig,
  POD_ENV,
} from "../mod/kube/agent_config.ts";
import { parseAddress } from "../mod/net/address.ts";
import { parseResolvConf } from "../mod/net/resolv_conf.ts";

/** The pod the agent runs in, from the downward API. */
export interface AgentPod {
  /** The pod's name. */
  name: string;
  /** Its namespace. */
  namespace: string;
  /** Its IP (the destination of the connections it takes). */
  ip: string;
}

/** Everything the agent starts from. */
export interface AgentSetup {
  /** The checked configuration. */
  config: AgentConfig;
  /** The pod. */
  pod: AgentPod;
  /** The app container's environment, the prefix taken off. */
  environment: Record<string, string>;
  /** The pod's resolv.conf search list. */
  search: string[];
  /** The pod's nameservers, in order (the first answers the manager's DNS frames). */
  nameservers: string[];
}

/** The agent cannot start as configured: what is wrong, and what to do. */
export class AgentSetupError extends Error {
  /** What to do about it, as a full sentence. */
  readonly hint: string;

  /**
   * Makes the error.
   *
   * @param message what is wrong
   * @param hint what to do
   * @param options the cause
   */
  constructor(message: string, hint: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "AgentSetupError";
    this.hint = hint;
  }
}

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN =
  /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

const INJECTED = "The agent's container is made by `vif intercept`: inject the agent again " +
  "(`vif uninstall --agents`, then `vif intercept`) rather than editing it by hand.";

/**
 * Reads and checks what the agent starts from.
 *
 * @param env the agent's environment (`Deno.env.toObject()`)
 * @param resolvConf the text of the pod's `/etc/resolv.conf` (empty when it has none)
 * @returns the setup
 * @throws {AgentSetupError} naming the variable or field that is wrong
 *
 * @example
 * ```ts
 * import { agentSetup } from "./setup.ts";
 *
 * try {
 *   agentSetup({}, "");
 * } catch (error) {
 *   if (!(error as Error).message.includes("VIF_AGENT_CONFIG")) throw error;
 * }
 * ```
 */
export function agentSetup(env: Record<string, string>, resolvConf: string): AgentSetup {
  const text = env[AGENT_CONFIG_ENV];
  if (text === undefined || text.trim() === "") {
    throw new AgentSetupError(`${AGENT_CONFIG_ENV} is not set`, INJECTED);
  }
  let config: AgentConfig;
  try {
    config = parseAgentConfig(text);
  } catch (error) {
    if (!(error instanceof AgentConfigError)) throw error;
    throw new AgentSetupError(`${AGENT_CONFIG_ENV}: ${error.message}`, INJECTED, { cause: error });
  }
  const name = podVariable(env, POD_ENV.name);
  if (!DNS_SUBDOMAIN.test(name)) {
    throw new AgentSetupError(`${POD_ENV.name} "${name}" is not a pod name`, INJECTED);
  }
  const namespace = podVariable(env, POD_ENV.namespace);
  if (!DNS_LABEL.test(namespace)) {
    throw new AgentSetupError(`${POD_ENV.namespace} "${namespace}" is not a namespace`, INJECTED);
  }
  const ip = podVariable(env, POD_ENV.ip);
  if (parseAddress(ip) === undefined) {
    throw new AgentSetupError(`${POD_ENV.ip} "${ip}" is not an IP address`, INJECTED);
  }
  const resolv = parseResolvConf(resolvConf);
  return {
    config,
    pod: { name, namespace, ip },
    environment: appEnvironment(env),
    search: resolv.search,
    nameservers: resolv.nameservers.filter((server) => parseAddress(server) !== undefined),
  };
}

function podVariable(env: Record<string, string>, variable: string): string {
  const value = env[variable]?.trim();
  if (value === undefined || value === "") {
    throw new AgentSetupError(
      `${variable} is not set`,
      `The agent's container takes ${POD_ENV.name}, ${POD_ENV.namespace} and ${POD_ENV.ip} ` +
        `from the downward API (metadata.name, metadata.namespace, status.podIP). ${INJECTED}`,
    );
  }
  return value;
}
