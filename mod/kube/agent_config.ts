/**
 * The contract between `vif intercept`, which puts the traffic-agent into a
 * workload's pods (with the user's credentials), and the agent that runs
 * there (`vif agent`): the names it adds to the pod template, the agent's
 * configuration (one JSON environment variable, {@linkcode AgentConfig}),
 * where it finds the app's environment and volumes, and the annotations that
 * record what the workload was before.
 *
 * The configuration comes from the pod spec, which anyone allowed to edit
 * the workload can write: {@linkcode parseAgentConfig} checks every field.
 *
 * @module
 */

/** The agent's container, added to the pod template. */
export const AGENT_CONTAINER = "vif-agent";

/** The init container that redirects numeric ports to the agent (the only part with NET_ADMIN). */
export const AGENT_INIT_CONTAINER = "vif-agent-init";

/** The agent's configuration: {@linkcode AgentConfig} as JSON. */
export const AGENT_CONFIG_ENV = "VIF_AGENT_CONFIG";

/** The downward-API variables of the agent's container. */
export const POD_ENV = {
  name: "VIF_POD_NAME",
  namespace: "VIF_POD_NAMESPACE",
  ip: "VIF_POD_IP",
} as const;

/**
 * The prefix of the app container's variables in the agent's container: its
 * `env` and `envFrom` are copied there with this prefix, so the kubelet
 * resolves them (ConfigMaps, Secrets, field references) exactly as for the
 * app, and the agent reports them with the prefix taken off.
 */
export const APP_ENV_PREFIX = "VIF_APP_";

/** Where the agent's container mounts the app container's volumes: the app's path under it. */
export const APP_MOUNT_PREFIX = "/vif/app";

/** The audience of the agent's projected service-account token: the traffic-manager. */
export const AGENT_TOKEN_AUDIENCE = "vif-traffic-manager";

/** The projected volume of the agent's token. */
export const AGENT_TOKEN_VOLUME = "vif-agent-token";

/** Where the agent's container has its token. */
export const AGENT_TOKEN_DIR = "/var/run/secrets/vif/agent";

/** The token's file in {@linkcode AGENT_TOKEN_DIR}. */
export const AGENT_TOKEN_FILE = "token";

/** How long the agent's token lives; the kubelet renews it at 80 %. */
export const AGENT_TOKEN_SECONDS = 3600;

/** The first port the agent listens on; each taken port gets the next. */
export const FIRST_AGENT_PORT = 9900;

/** The manager's agent listener (on the pod network, TLS, token-authenticated). */
export const DEFAULT_AGENT_LISTENER_PORT = 8083;

/** Annotations of an injected workload. */
export const AGENT_ANNOTATION = {
  /**
   * The workload's `spec.template` before the agent came, as JSON: what
   * `vif uninstall --agents` and `vif leave --remove-agent` put back.
   */
  original: "vif.dev/original-template",
  /** The vif version that injected the agent. */
  agent: "vif.dev/agent",
  /**
   * The intercepts claimed on the workload, as JSON
   * ({@linkcode InterceptClaims}): written by `vif intercept` with the
   * user's credentials, read by the manager before it sends a port's
   * connections to a session.
   */
  intercepts: "vif.dev/intercepts",
} as const;

/** One claim of {@linkcode AGENT_ANNOTATION.intercepts}. */
export interface InterceptClaim {
  /** The claiming session's id, as the hex SHA-256 of the id (the id itself is a secret). */
  session: string;
  /** Who, for people reading the workload (`alice@laptop`). */
  holder: string;
  /** When, RFC 3339. */
  since: string;
}

/** The claims on a workload, by container port (as text). */
export type InterceptClaims = Record<string, InterceptClaim>;

/** The most claims a workload's annotation holds. */
export const MAX_INTERCEPT_CLAIMS = 64;

/**
 * Reads a workload's claims; anything malformed is dropped, not trusted.
 *
 * @param text the annotation's value (absent: none)
 * @returns the well-formed claims
 */
export function parseInterceptClaims(text: string | undefined): InterceptClaims {
  const claims: InterceptClaims = {};
  if (text === undefined || text.length > 64 * 1024) return claims;
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch {
    return claims;
  }
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) return claims;
  for (const [port, value] of Object.entries(raw).slice(0, MAX_INTERCEPT_CLAIMS)) {
    const n = Number(port);
    if (!/^[1-9][0-9]{0,4}$/.test(port) || n > 65535) continue;
    const v = value as Record<string, unknown>;
    if (
      typeof v !== "object" || v === null || typeof v.session !== "string" ||
      !/^[0-9a-f]{64}$/.test(v.session) || typeof v.holder !== "string" ||
      typeof v.since !== "string"
    ) continue;
    claims[port] = {
      session: v.session,
      holder: v.holder.slice(0, 256),
      since: v.since.slice(0, 64),
    };
  }
  return claims;
}

/** How the agent takes a port of the app container. */
export type PortTakeover =
  /** The Service names the port: the app's port is renamed and the agent's port takes the name. */
  | "name"
  /** The Service gives a number: an nftables redirect in the pod sends it to the agent. */
  | "redirect";

/** A port the agent takes. */
export interface AgentPortConfig {
  /** The app container port's name, if it has one (before the rename). */
  name?: string;
  /** The app's port. */
  containerPort: number;
  /** Where the agent listens for it. */
  agentPort: number;
  /** How the connections reach the agent. */
  takeover: PortTakeover;
}

/** The agent's configuration, in {@linkcode AGENT_CONFIG_ENV}. */
export interface AgentConfig {
  /** Always 1. */
  version: 1;
  /** Where the manager's agent listener is and how to check it. */
  manager: {
    /** A host name or IP (`traffic-manager.vif-system`). */
    host: string;
    /** Its port ({@linkcode DEFAULT_AGENT_LISTENER_PORT}). */
    port: number;
    /** The name its certificate must carry (`traffic-manager.vif-system`). */
    serverName: string;
    /** The CA that signed it (PEM). */
    caPem: string;
  };
  /** The workload the agent was injected into. */
  workload: { kind: "Deployment" | "StatefulSet" | "ReplicaSet"; name: string };
  /** The app container's name. */
  container: string;
  /** The ports it takes. */
  ports: AgentPortConfig[];
  /**
   * The app container's volume mounts; the agent's container has each at
   * {@linkcode APP_MOUNT_PREFIX} + `mountPath`.
   */
  mounts: AgentMountConfig[];
}

/** A volume mount of the app container. */
export interface AgentMountConfig {
  /** The volume's name. */
  name: string;
  /** Where the app has it: an absolute path. */
  mountPath: string;
  /** Whether the app may not write it. */
  readOnly: boolean;
}

/** The most mounts one agent reports. */
export const MAX_AGENT_MOUNTS = 64;

/** The most ports one agent takes. */
export const MAX_AGENT_PORTS = 64;

/** The longest configuration accepted, in characters (a CA bundle and 64 ports fit). */
const MAX_CONFIG_LENGTH = 256 * 1024;

const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN =
  /^(?=.{1,253}$)[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const PORT_NAME = /^(?=.{1,15}$)(?=.*[a-z])[a-z0-9]+(-[a-z0-9]+)*$/;
const IP_LIKE = /^[0-9a-fA-F:.]+$/;

/** A configuration that cannot be used: the message says which field and why. */
export class AgentConfigError extends Error {
  /** @param message what is wrong */
  constructor(message: string) {
    super(message);
    this.name = "AgentConfigError";
  }
}

/**
 * Reads and checks the agent's configuration.
 *
 * @param text the JSON of {@linkcode AGENT_CONFIG_ENV}
 * @returns the configuration
 * @throws {AgentConfigError} naming the first field that is wrong
 *
 * @example
 * ```ts
 * import { encodeAgentConfig, parseAgentConfig } from "./agent_config.ts";
 *
 * const config = parseAgentConfig(encodeAgentConfig({
 *   version: 1,
 *   manager: { host: "traffic-manager.vif-system", port: 8083, serverName: "traffic-manager.vif-system", caPem: "-----BEGIN CERTIFICATE-----\n…" },
 *   workload: { kind: "Deployment", name: "web" },
 *   container: "web",
 *   ports: [{ name: "http", containerPort: 80, agentPort: 9900, takeover: "name" }],
 *   mounts: [{ name: "config", mountPath: "/etc/web", readOnly: true }],
 * }));
 * if (config.ports[0]?.agentPort !== 9900) throw new Error("round trip");
 * ```
 */
export function parseAgentConfig(text: string): AgentConfig {
  if (text.length > MAX_CONFIG_LENGTH) {
    throw new AgentConfigError(`the configuration is over ${MAX_CONFIG_LENGTH} characters`);
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (error) {
    throw new AgentConfigError(`the configuration is not JSON: ${(error as Error).message}`);
  }
  const root = object(raw, "the configuration");
  if (root.version !== 1) throw new AgentConfigError(`version ${String(root.version)} is not 1`);
  const manager = object(root.manager, "manager");
  const host = string(manager.host, "manager.host");
  if (!DNS_SUBDOMAIN.test(host) && !IP_LIKE.test(host)) {
    throw new AgentConfigError(`manager.host "${host}" is not a host name or IP address`);
  }
  const serverName = string(manager.serverName, "manager.serverName");
  if (!DNS_SUBDOMAIN.test(serverName)) {
    throw new AgentConfigError(`manager.serverName "${serverName}" is not a DNS name`);
  }
  const caPem = string(manager.caPem, "manager.caPem");
  if (!caPem.includes("-----BEGIN CERTIFICATE-----")) {
    throw new AgentConfigError("manager.caPem holds no PEM certificate");
  }
  const workload = object(root.workload, "workload");
  const kind = string(workload.kind, "workload.kind");
  if (kind !== "Deployment" && kind !== "StatefulSet" && kind !== "ReplicaSet") {
    throw new AgentConfigError(
      `workload.kind "${kind}" is not Deployment, StatefulSet or ReplicaSet`,
    );
  }
  const workloadName = string(workload.name, "workload.name");
  if (!DNS_SUBDOMAIN.test(workloadName)) {
    throw new AgentConfigError(`workload.name "${workloadName}" is not a Kubernetes name`);
  }
  const container = string(root.container, "container");
  if (!DNS_LABEL.test(container)) {
    throw new AgentConfigError(`container "${container}" is not a container name`);
  }
  if (!Array.isArray(root.ports) || root.ports.length === 0) {
    throw new AgentConfigError("ports is not a non-empty list");
  }
  if (root.ports.length > MAX_AGENT_PORTS) {
    throw new AgentConfigError(`ports has ${root.ports.length} entries, over ${MAX_AGENT_PORTS}`);
  }
  const seen = new Set<number>();
  const ports = root.ports.map((entry, i): AgentPortConfig => {
    const where = `ports[${i}]`;
    const p = object(entry, where);
    const containerPort = port(p.containerPort, `${where}.containerPort`);
    const agentPort = port(p.agentPort, `${where}.agentPort`);
    for (const n of [containerPort, agentPort]) {
      if (seen.has(n)) throw new AgentConfigError(`${where}: port ${n} appears twice`);
      seen.add(n);
    }
    const takeover = string(p.takeover, `${where}.takeover`);
    if (takeover !== "name" && takeover !== "redirect") {
      throw new AgentConfigError(`${where}.takeover "${takeover}" is not "name" or "redirect"`);
    }
    let name: string | undefined;
    if (p.name !== undefined) {
      name = string(p.name, `${where}.name`);
      if (!PORT_NAME.test(name)) {
        throw new AgentConfigError(`${where}.name "${name}" is not a port name`);
      }
    }
    if (takeover === "name" && name === undefined) {
      throw new AgentConfigError(`${where} is taken by name but has none`);
    }
    return { ...(name !== undefined ? { name } : {}), containerPort, agentPort, takeover };
  });
  const rawMounts = root.mounts ?? [];
  if (!Array.isArray(rawMounts)) throw new AgentConfigError("mounts is not a list");
  if (rawMounts.length > MAX_AGENT_MOUNTS) {
    throw new AgentConfigError(`mounts has ${rawMounts.length} entries, over ${MAX_AGENT_MOUNTS}`);
  }
  const mounts = rawMounts.map((entry, i): AgentMountConfig => {
    const where = `mounts[${i}]`;
    const m = object(entry, where);
    const name = string(m.name, `${where}.name`);
    if (!DNS_LABEL.test(name)) {
      throw new AgentConfigError(`${where}.name "${name}" is not a volume name`);
    }
    const mountPath = string(m.mountPath, `${where}.mountPath`);
    if (
      !mountPath.startsWith("/") || mountPath.length > 1024 ||
      mountPath.split("/").some((part) => part === ".." || part === ".") ||
      /[\0\n]/.test(mountPath)
    ) {
      throw new AgentConfigError(`${where}.mountPath "${mountPath}" is not a clean absolute path`);
    }
    if (typeof m.readOnly !== "boolean") {
      throw new AgentConfigError(`${where}.readOnly is not true or false`);
    }
    return { name, mountPath, readOnly: m.readOnly };
  });
  return {
    version: 1,
    manager: { host, port: port(manager.port, "manager.port"), serverName, caPem },
    workload: { kind, name: workloadName },
    container,
    ports,
    mounts,
  };
}

/**
 * The configuration as the value of {@linkcode AGENT_CONFIG_ENV}.
 *
 * @param config the configuration
 * @returns its JSON
 */
export function encodeAgentConfig(config: AgentConfig): string {
  return JSON.stringify(config);
}

/**
 * The app container's environment from the agent's own: the variables with
 * {@linkcode APP_ENV_PREFIX}, the prefix taken off.
 *
 * @param env the agent's environment
 * @returns the app's
 */
export function appEnvironment(env: Record<string, string>): Record<string, string> {
  const app: Record<string, string> = {};
  for (const [name, value] of Object.entries(env)) {
    if (name.startsWith(APP_ENV_PREFIX) && name.length > APP_ENV_PREFIX.length) {
      app[name.slice(APP_ENV_PREFIX.length)] = value;
    }
  }
  return app;
}

function object(value: unknown, where: string): Record<string, unknown> {
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    throw new AgentConfigError(`${where} is not an object`);
  }
  return value as Record<string, unknown>;
}

function string(value: unknown, where: string): string {
  if (typeof value !== "string" || value === "") {
    throw new AgentConfigError(`${where} is not a non-empty string`);
  }
  return value;
}

function port(value: unknown, where: string): number {
  if (typeof value !== "number" || !Number.isInteger(value) || value < 1 || value > 65535) {
    throw new AgentConfigError(`${where} is not a port number (1 to 65535)`);
  }
  return value;
}
