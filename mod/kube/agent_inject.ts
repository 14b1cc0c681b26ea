/**
 * Putting the traffic-agent into a workload's pods and taking it out again,
 * with the user's own credentials: the API server's RBAC decides who may
 * intercept what, and the manager needs no write access to workloads.
 *
 * - {@linkcode planInjection} (pure) turns a workload into the pod template
 *   with the agent: the container `vif-agent` (the app container's
 *   environment and volume mounts copied under prefixes, a projected token
 *   for the manager, no privileges), and for every TCP port of every Service
 *   that reaches the app container, a take-over: a named `targetPort` by
 *   renaming the app's port and giving the agent the name, a numeric one by
 *   the init container `vif-agent-init` (the only part with `NET_ADMIN`).
 * - {@linkcode injectAgent} reads, plans and patches (a JSON merge patch
 *   guarded by `resourceVersion`, conflicts read again and retried),
 *   recording the template it replaced in {@linkcode AGENT_ANNOTATION}.
 * - {@linkcode waitForAgents} follows the rollout by bounded polling and says
 *   why a pod is not ready when time runs out.
 * - {@linkcode removeAgent} puts the template back; {@linkcode listInjected}
 *   finds every workload that carries the agent.
 *
 * Removing undoes vif's own changes only: the agent's containers and token
 * volume go and renamed ports get their names back. When nobody changed the
 * workload meanwhile (the usual case) the result is the recorded template,
 * equal in JSON; when someone did (a new image rolled out while the agent was
 * in), their change stays and the result lists where the template differs
 * from the recorded one. Putting the recorded template back whole (what
 * Telepresence does) would roll back a colleague's deploy without a word.
 *
 * A ReplicaSet does not replace its pods when its template changes, so for a
 * ReplicaSet the pods of the old template are deleted (the ReplicaSet makes
 * new ones at once).
 *
 * @module
 */

import type {
  V1ConfigMap,
  V1Container,
  V1ContainerPort,
  V1EnvVar,
  V1Pod,
  V1PolicyRule,
  V1Probe,
  V1Service,
  V1Volume,
  V1VolumeMount,
} from "@kubernetes/client-node";
import { DEFAULT_MANAGER_NAMESPACE, managerServerName } from "../rpc/names.ts";
import { VERSION } from "../version.ts";
import {
  AGENT_ANNOTATION,
  AGENT_CONFIG_ENV,
  AGENT_CONTAINER,
  AGENT_INIT_CONTAINER,
  AGENT_TOKEN_AUDIENCE,
  AGENT_TOKEN_DIR,
  AGENT_TOKEN_FILE,
  AGENT_TOKEN_SECONDS,
  AGENT_TOKEN_VOLUME,
  type AgentConfig,
  type AgentMountConfig,
  type AgentPortConfig,
  APP_ENV_PREFIX,
  APP_MOUNT_PREFIX,
  DEFAULT_AGENT_LISTENER_PORT,
  encodeAgentConfig,
  FIRST_AGENT_PORT,
  MAX_AGENT_MOUNTS,
  MAX_AGENT_PORTS,
  parseAgentConfig,
  POD_ENV,
} from "./agent_config.ts";
import { KubeError } from "./errors.ts";
import { podProblem } from "./pod_problem.ts";
import {
  CA_CONFIGMAP_KEY,
  CA_CONFIGMAP_NAME,
  defaultImage,
  IMAGE_BINARY,
  MANAGER_NAME,
  MANAGER_UID,
} from "./manifests.ts";
import {
  findWorkload,
  listServices,
  type PodTemplate,
  type PortTarget,
  portTargets,
  readWorkload,
  request,
  requestFailure,
  type ResolvedTarget,
  resolveServicePort,
  selectorText,
  type Workload,
  WORKLOAD_RESOURCES,
  type WorkloadApi,
  type WorkloadKind,
  workloadPath,
  type WorkloadRef,
} from "./workloads.ts";

export { AGENT_TOKEN_FILE };

/** The user the agent runs as (distroless "nonroot", as the manager). */
const AGENT_UID = MANAGER_UID;

/** The longest a port name may be (IANA service names). */
const MAX_PORT_NAME = 15;

/** What the manager block of the agent's configuration says: where to reach it and how to check it. */
export type AgentManager = AgentConfig["manager"];

/** Options of {@linkcode planInjection}. */
export interface PlanOptions {
  /**
   * The port to intercept (`SERVICE_PORT` of `--port LOCAL:SERVICE_PORT`): a
   * Service port's name or number. May be left out when the Services reach
   * one container port only.
   */
  port?: string;
  /** The app container, when the port is a number that no container declares. */
  container?: string;
  /** Where the agents reach the manager ({@linkcode managerForAgents}). */
  manager: AgentManager;
  /** The agent's image. Default: the manager's, `ghcr.io/vif-dev/vif:<version>`. */
  image?: string;
  /** The version of vif recorded on the workload. Default: this vif's. */
  version?: string;
  /** Plan again even when the agent is there and takes the port (to upgrade it). */
  force?: boolean;
}

/** Why a plan changes the workload. */
export type InjectReason =
  /** The workload has no agent. */
  | "new"
  /** It has one that does not take the wanted port: planned again with the union of ports. */
  | "ports"
  /** The annotation is there but the agent is not (someone put the template back). */
  | "stale"
  /** {@linkcode PlanOptions.force}. */
  | "forced";

/** A plan that changes the workload. */
export interface InjectPlan {
  /** The template is to be patched. */
  action: "inject";
  /** Why. */
  reason: InjectReason;
  /** The new `spec.template`. */
  template: PodTemplate;
  /** The template without the agent: what {@linkcode AGENT_ANNOTATION}.original records. */
  original: PodTemplate;
  /** The annotations to set on the workload's metadata. */
  annotations: Record<string, string>;
  /** The agent's configuration. */
  config: AgentConfig;
  /** The port the user asked for. */
  wanted: ResolvedTarget;
  /** Whether the template was changed by others since the agent came (the changes are kept). */
  changedSince: boolean;
  /** What could not be carried over (a mount path the agent cannot use, too many mounts). */
  warnings: string[];
}

/** A plan that changes nothing: the agent is there and takes the port. */
export interface PresentPlan {
  /** Nothing to patch. */
  action: "present";
  /** The agent's configuration, as in the pod template. */
  config: AgentConfig;
  /** The port the user asked for. */
  wanted: ResolvedTarget;
  /** The vif version that injected it. */
  version: string;
}

/** What {@linkcode planInjection} decides. */
export type InjectionPlan = InjectPlan | PresentPlan;

/** What a workload's template says about the agent. */
export interface AgentState {
  /** The template carries the agent's container. */
  injected: boolean;
  /** The template without vif's changes (the workload's own when there is no agent). */
  base: PodTemplate;
  /** The template recorded in the annotation, when there is one. */
  original?: PodTemplate;
  /** The agent's configuration, when its container has a readable one. */
  config?: AgentConfig;
  /** The version recorded in the annotation. */
  version?: string;
  /** The annotation is there but the agent is not. */
  stale: boolean;
  /** `base` differs from `original`: someone changed the template since the agent came. */
  changedSince: boolean;
}

/**
 * Reads what a workload's template and annotations say about the agent, and
 * the template without it.
 *
 * @param workload the workload
 * @returns its state
 * @throws {KubeError} when the recorded template cannot be read, or the
 *   template has a `vif-agent` container that vif did not record
 */
export function agentState(workload: Workload): AgentState {
  const template = workload.spec.template;
  const recorded = workload.metadata.annotations?.[AGENT_ANNOTATION.original];
  const version = workload.metadata.annotations?.[AGENT_ANNOTATION.agent];
  const hasAgent = (template.spec?.containers ?? []).some((c) => c.name === AGENT_CONTAINER);
  const what = `${workload.kind.toLowerCase()} "${workload.metadata.name}"`;
  const ns = workload.metadata.namespace;
  if (recorded === undefined) {
    if (hasAgent) {
      throw new KubeError(`${what} has a container "${AGENT_CONTAINER}" that vif did not record`, {
        hint: `Take it out of the workload ("kubectl edit ${
          WORKLOAD_RESOURCES[workload.kind]
        } ${workload.metadata.name} -n ${ns}"), then try again.`,
      });
    }
    return { injected: false, base: template, stale: false, changedSince: false };
  }
  let original: PodTemplate;
  try {
    original = JSON.parse(recorded);
  } catch (cause) {
    throw unreadableRecord(workload, cause);
  }
  if (
    typeof original !== "object" || original === null || !Array.isArray(original.spec?.containers)
  ) {
    throw unreadableRecord(workload, undefined);
  }
  const recordedState = { original, ...(version !== undefined ? { version } : {}) };
  if (!hasAgent) {
    return { ...recordedState, injected: false, base: template, stale: true, changedSince: false };
  }
  const config = readAgentConfig(template);
  const without = withoutAgent(template, config, original);
  return {
    ...recordedState,
    injected: true,
    base: without,
    ...(config ? { config } : {}),
    stale: false,
    changedSince: !sameJson(without, original),
  };
}

function unreadableRecord(workload: Workload, cause: unknown): KubeError {
  return new KubeError(
    `the template recorded on ${workload.kind.toLowerCase()} "${workload.metadata.name}" ` +
      `(annotation "${AGENT_ANNOTATION.original}") cannot be read`,
    {
      hint: `Take the agent out by hand ("kubectl edit ${
        WORKLOAD_RESOURCES[workload.kind]
      } ${workload.metadata.name} -n ${workload.metadata.namespace}": the container "${AGENT_CONTAINER}" and the annotation).`,
      cause,
    },
  );
}

/**
 * The agent's configuration in a pod template, from its container's
 * {@linkcode AGENT_CONFIG_ENV}.
 *
 * @param template the pod template (or a pod's spec in `spec`)
 * @returns the configuration, or undefined when there is no agent or it is unreadable
 */
export function readAgentConfig(template: PodTemplate): AgentConfig | undefined {
  const agent = (template.spec?.containers ?? []).find((c) => c.name === AGENT_CONTAINER);
  const text = agent?.env?.find((e) => e.name === AGENT_CONFIG_ENV)?.value;
  if (text === undefined) return undefined;
  try {
    return parseAgentConfig(text);
  } catch {
    return undefined;
  }
}

/**
 * The template without vif's changes: the agent's container, init container
 * and token volume taken out, and the app's renamed ports named as before
 * (their probes too). The renames are read from the agent's configuration;
 * without one, from the recorded template (a port whose number is the same
 * and whose name vif's renaming would give).
 */
function withoutAgent(
  template: PodTemplate,
  config: AgentConfig | undefined,
  original: PodTemplate,
): PodTemplate {
  const out = structuredClone(template);
  const spec = out.spec!;
  const had = original.spec ?? { containers: [] };
  spec.containers = spec.containers.filter((c) => c.name !== AGENT_CONTAINER);
  if (spec.initContainers) {
    spec.initContainers = spec.initContainers.filter((c) => c.name !== AGENT_INIT_CONTAINER);
    if (spec.initContainers.length === 0 && had.initContainers === undefined) {
      delete spec.initContainers;
    }
  }
  if (spec.volumes) {
    spec.volumes = spec.volumes.filter((v) => v.name !== AGENT_TOKEN_VOLUME);
    if (spec.volumes.length === 0 && had.volumes === undefined) delete spec.volumes;
  }
  const renames: { container: string; containerPort: number; to: string }[] = [];
  if (config) {
    for (const p of config.ports) {
      if (p.takeover === "name" && p.name !== undefined) {
        renames.push({ container: config.container, containerPort: p.containerPort, to: p.name });
      }
    }
  } else {
    for (const c of had.containers) {
      for (const p of c.ports ?? []) {
        if (p.name) renames.push({ container: c.name, containerPort: p.containerPort, to: p.name });
      }
    }
  }
  for (const r of renames) {
    const container = spec.containers.find((c) => c.name === r.container);
    const port = container?.ports?.find((p) =>
      p.containerPort === r.containerPort && (p.protocol ?? "TCP") === "TCP" && p.name !== r.to
    );
    if (!container || !port?.name) continue;
    if (!config && !/^vif\d*-/.test(port.name)) continue;
    renameProbePorts(container, port.name, r.to);
    port.name = r.to;
  }
  return out;
}

/**
 * Plans the agent's injection into a workload: the new pod template, the
 * annotations, and the agent's configuration. Pure: the workload and the
 * namespace's Services in, the plan out.
 *
 * Every TCP port of every Service that selects the pods and reaches the app
 * container (the container of the wanted port) is taken, each container
 * port once: by a redirect when any Service names it by number, else by
 * name. A workload that has the agent already gives `present` when the
 * agent takes the wanted port, else a plan from its template without the
 * agent with the union of the ports (the ports it took keep their agent
 * ports).
 *
 * @param workload the workload, as read from the API server
 * @param services every Service of its namespace
 * @param options the wanted port, the manager, the image
 * @returns the plan
 * @throws {KubeError} when the port cannot be resolved (the choices are
 *   listed), is of another container than the agent's, the pods use the
 *   host's network, a name vif adds is taken, or there are too many ports
 *
 * @example
 * ```ts
 * import { planInjection } from "./agent_inject.ts";
 *
 * const plan = planInjection({
 *   apiVersion: "apps/v1", kind: "Deployment",
 *   metadata: { name: "web", namespace: "default" },
 *   spec: { selector: { matchLabels: { app: "web" } }, template: {
 *     metadata: { labels: { app: "web" } },
 *     spec: { containers: [{ name: "web", image: "nginx", ports: [{ name: "http", containerPort: 80 }] }] },
 *   } },
 * }, [{ metadata: { name: "web" }, spec: { selector: { app: "web" }, ports: [{ port: 80, targetPort: "http" }] } }], {
 *   manager: { host: "traffic-manager.vif-system", port: 8083, serverName: "traffic-manager.vif-system", caPem: "-----BEGIN CERTIFICATE-----\n" },
 * });
 * if (plan.action !== "inject") throw new Error(plan.action);
 * const names = plan.template.spec!.containers.map((c) => c.name);
 * if (names.join() !== "web,vif-agent") throw new Error(names.join());
 * ```
 */
export function planInjection(
  workload: Workload,
  services: readonly V1Service[],
  options: PlanOptions,
): InjectionPlan {
  const state = agentState(workload);
  const base = state.base;
  const baseSpec = base.spec!;
  const ref = {
    kind: workload.kind,
    name: workload.metadata.name,
    namespace: workload.metadata.namespace,
  };
  const what = `${ref.kind.toLowerCase()} "${ref.name}" in namespace "${ref.namespace}"`;
  if (baseSpec.hostNetwork) {
    throw new KubeError(`the pods of ${what} use the host's network`, {
      hint:
        "vif cannot take a port of such a pod without taking it on the node: intercept another workload.",
    });
  }
  const containerNames = baseSpec.containers.map((c) => c.name);
  const targets = portTargets(base, services);
  const wanted = resolveServicePort(targets, options.port, {
    workload: ref,
    containers: containerNames,
    ...(options.container ?? state.config?.container
      ? { container: options.container ?? state.config?.container }
      : {}),
  });
  const version = options.version ?? VERSION;
  if (state.injected && state.config) {
    if (state.config.container !== wanted.container) {
      throw new KubeError(
        `the agent in ${what} serves container "${state.config.container}", ` +
          `and port ${wanted.containerPort} is of container "${wanted.container}"`,
        {
          hint: `Take the agent out first ("vif uninstall --agents -n ${ref.namespace}"), ` +
            "then intercept that port.",
        },
      );
    }
    const takes = state.config.ports.some((p) => p.containerPort === wanted.containerPort);
    if (takes && !options.force) {
      return { action: "present", config: state.config, wanted, version: state.version ?? "" };
    }
  }
  const reason: InjectReason = !state.injected
    ? (state.stale ? "stale" : "new")
    : options.force && state.config?.ports.some((p) => p.containerPort === wanted.containerPort)
    ? "forced"
    : "ports";

  const app = baseSpec.containers.find((c) => c.name === wanted.container)!;
  for (
    const [list, name, kind] of [
      [baseSpec.containers, AGENT_CONTAINER, "a container"],
      [baseSpec.initContainers ?? [], AGENT_INIT_CONTAINER, "an init container"],
      [baseSpec.volumes ?? [], AGENT_TOKEN_VOLUME, "a volume"],
    ] as const
  ) {
    if ((list as readonly { name: string }[]).some((x) => x.name === name)) {
      throw new KubeError(`${what} has ${kind} named "${name}" already, which vif did not add`, {
        hint: "Rename it: vif needs the name for the agent.",
      });
    }
  }

  const ports = portsToTake(targets, wanted, containerNames, state.config);
  // A name another container has too would send the Service there once the app's is renamed.
  for (const p of ports) {
    const elsewhere = baseSpec.containers.some((c) =>
      c.name !== app.name && (c.ports ?? []).some((x) => x.name === p.name)
    );
    if (p.takeover === "name" && elsewhere) p.takeover = "redirect";
  }
  if (ports.length > MAX_AGENT_PORTS) {
    throw new KubeError(`${what} has ${ports.length} service ports, more than the agent takes`, {
      hint: `An agent takes at most ${MAX_AGENT_PORTS} ports.`,
    });
  }
  assignAgentPorts(ports, baseSpec);

  const template = structuredClone(base);
  const spec = template.spec!;
  const appCopy = spec.containers.find((c) => c.name === app.name)!;
  const taken = new Set<string>();
  for (const c of [...spec.containers, ...(spec.initContainers ?? [])]) {
    for (const p of c.ports ?? []) if (p.name) taken.add(p.name);
  }
  for (const p of ports) {
    if (p.takeover !== "name" || p.name === undefined) continue;
    const port = appCopy.ports?.find((x) =>
      x.name === p.name && x.containerPort === p.containerPort
    );
    if (!port) continue;
    const renamed = renamedPortName(p.name, taken);
    taken.add(renamed);
    renameProbePorts(appCopy, p.name, renamed);
    port.name = renamed;
  }

  const warnings: string[] = [];
  const { mounts, volumeMounts } = agentMounts(app, warnings);
  const config: AgentConfig = {
    version: 1,
    manager: options.manager,
    workload: { kind: ref.kind, name: ref.name },
    container: app.name,
    ports: ports.map((p) => ({
      ...(p.name !== undefined ? { name: p.name } : {}),
      containerPort: p.containerPort,
      agentPort: p.agentPort,
      takeover: p.takeover,
    })),
    mounts,
  };
  const encoded = encodeAgentConfig(config);
  try {
    parseAgentConfig(encoded);
  } catch (cause) {
    throw new KubeError(
      `the agent's configuration for ${what} is not valid: ${(cause as Error).message}`,
      {
        hint: "Check the manager's address and CA; otherwise this is a bug in vif (report it).",
        cause,
      },
    );
  }
  const image = options.image ?? defaultImage(version);
  spec.containers.push(agentContainer({
    app,
    image,
    encoded,
    ports,
    volumeMounts,
    serviceEnv: serviceEnvNames(services, baseSpec.enableServiceLinks !== false),
  }));
  if (ports.some((p) => p.takeover === "redirect")) {
    (spec.initContainers ??= []).push(initContainer(image, encoded));
  }
  (spec.volumes ??= []).push(tokenVolume());

  return {
    action: "inject",
    reason,
    template,
    original: base,
    annotations: {
      [AGENT_ANNOTATION.original]: JSON.stringify(base),
      [AGENT_ANNOTATION.agent]: version,
    },
    config,
    wanted,
    changedSince: state.changedSince,
    warnings,
  };
}

/** A port the agent takes, its agent port 0 until assigned. */
type TakenPort = AgentPortConfig;

/** The container ports the agent takes: every TCP target of the app container, each once, and those it took before. */
function portsToTake(
  targets: readonly PortTarget[],
  wanted: ResolvedTarget,
  containers: readonly string[],
  previous: AgentConfig | undefined,
): TakenPort[] {
  const byPort = new Map<number, TakenPort>();
  for (const p of previous?.container === wanted.container ? previous.ports : []) {
    byPort.set(p.containerPort, { ...p });
  }
  const only = containers.length === 1 ? containers[0] : undefined;
  for (const t of targets) {
    if (t.protocol !== "TCP" || t.containerPort === undefined) continue;
    const container = t.container ??
      (t.containerPort === wanted.containerPort ? wanted.container : only);
    if (container !== wanted.container) continue;
    const had = byPort.get(t.containerPort);
    const name = had?.name ?? t.containerPortName;
    const takeover = had?.takeover === "redirect" || t.takeover === "redirect"
      ? "redirect"
      : "name";
    byPort.set(t.containerPort, {
      ...(name !== undefined ? { name } : {}),
      containerPort: t.containerPort,
      agentPort: had?.agentPort ?? 0,
      takeover,
    });
  }
  return [...byPort.values()].sort((a, b) => a.containerPort - b.containerPort);
}

/** Gives each port without one the next free agent port from {@linkcode FIRST_AGENT_PORT}. */
function assignAgentPorts(ports: TakenPort[], spec: NonNullable<PodTemplate["spec"]>): void {
  const used = new Set<number>();
  for (const c of [...spec.containers, ...(spec.initContainers ?? [])]) {
    for (const p of c.ports ?? []) used.add(p.containerPort);
  }
  for (const p of ports) {
    used.add(p.containerPort);
    if (p.agentPort) used.add(p.agentPort);
  }
  let next = FIRST_AGENT_PORT;
  for (const p of ports) {
    if (p.agentPort) continue;
    while (used.has(next)) next++;
    if (next > 65535) {
      throw new KubeError("no free port for the agent", {
        hint: `The pod declares every port from ${FIRST_AGENT_PORT} up.`,
      });
    }
    p.agentPort = next;
    used.add(next);
  }
}

/**
 * The name an app container's port gets when the agent takes its name:
 * `vif-` and the name, cut to 15 characters, with a number after `vif`
 * when that is taken. Always a valid port name (IANA service name).
 *
 * @param name the port's name
 * @param taken the names in use in the pod
 * @returns the new name
 * @throws {KubeError} when 100 candidates are all taken
 *
 * @example
 * ```ts
 * import { renamedPortName } from "./agent_inject.ts";
 *
 * if (renamedPortName("http", new Set()) !== "vif-http") throw new Error();
 * if (renamedPortName("http", new Set(["vif-http"])) !== "vif2-http") throw new Error();
 * if (renamedPortName("metrics-export1", new Set()) !== "vif-metrics-exp") throw new Error();
 * ```
 */
export function renamedPortName(name: string, taken: ReadonlySet<string>): string {
  for (let i = 1; i <= 100; i++) {
    const prefix = i === 1 ? "vif-" : `vif${i}-`;
    const candidate = (prefix + name).slice(0, MAX_PORT_NAME).replace(/-+$/, "");
    if (!taken.has(candidate)) return candidate;
  }
  throw new KubeError(`cannot find a free name for port "${name}"`, {
    hint: "The pod uses too many port names that start with vif.",
  });
}

/** Points the container's probes and lifecycle hooks that name port `from` at `to`. */
function renameProbePorts(container: V1Container, from: string, to: string): void {
  const fix = (action: { port?: unknown } | undefined) => {
    if (action && action.port === from) action.port = to;
  };
  const probes: (V1Probe | undefined)[] = [
    container.livenessProbe,
    container.readinessProbe,
    container.startupProbe,
  ];
  for (const probe of probes) {
    fix(probe?.httpGet);
    fix(probe?.tcpSocket);
  }
  for (const hook of [container.lifecycle?.postStart, container.lifecycle?.preStop]) {
    fix(hook?.httpGet);
    fix(hook?.tcpSocket);
  }
}

/** A mount path the agent can report: absolute, no `.` or `..`, no NUL or newline. */
function cleanMountPath(path: string): boolean {
  return path.startsWith("/") && path.length <= 1024 && !/[\0\n]/.test(path) &&
    !path.split("/").some((part) => part === "." || part === "..");
}

/** The app's volume mounts in the agent's container (under the prefix, read-only where the app's are), and as the configuration lists them. */
function agentMounts(
  app: V1Container,
  warnings: string[],
): { mounts: AgentMountConfig[]; volumeMounts: V1VolumeMount[] } {
  const mounts: AgentMountConfig[] = [];
  const volumeMounts: V1VolumeMount[] = [];
  for (const m of app.volumeMounts ?? []) {
    if (!cleanMountPath(m.mountPath)) {
      warnings.push(
        `the agent skips mount "${m.mountPath}" of volume "${m.name}": not a clean absolute path`,
      );
      continue;
    }
    if (mounts.length === MAX_AGENT_MOUNTS) {
      warnings.push(
        `the agent shares the first ${MAX_AGENT_MOUNTS} mounts of container "${app.name}" only`,
      );
      break;
    }
    mounts.push({ name: m.name, mountPath: m.mountPath, readOnly: m.readOnly ?? false });
    volumeMounts.push({
      name: m.name,
      mountPath: APP_MOUNT_PREFIX + m.mountPath.replace(/\/+$/, ""),
      // As the app has it: a file the developer writes through --mount lands where the app sees it.
      readOnly: m.readOnly ?? false,
      ...(m.subPath !== undefined ? { subPath: m.subPath } : {}),
      ...(m.subPathExpr !== undefined
        ? { subPathExpr: rewriteReferences(m.subPathExpr, () => true) }
        : {}),
    });
  }
  return { mounts, volumeMounts };
}

/**
 * Rewrites the `$(VAR)` references of a value to the agent's names
 * ({@linkcode APP_ENV_PREFIX} + VAR) where `prefixed(VAR)` says so, as
 * Kubernetes expands them: `$$` is an escaped `$`, and `$(` without `)` is
 * kept as it is.
 *
 * @param value an env value, command or `subPathExpr`
 * @param prefixed whether a name is one of the app's own variables
 * @returns the value with those references prefixed
 *
 * @example
 * ```ts
 * import { rewriteReferences } from "./agent_inject.ts";
 *
 * const out = rewriteReferences("$(A)-$$(A)-$(HOST", () => true);
 * if (out !== "$(VIF_APP_A)-$$(A)-$(HOST") throw new Error(out);
 * ```
 */
export function rewriteReferences(value: string, prefixed: (name: string) => boolean): string {
  let out = "";
  for (let i = 0; i < value.length;) {
    if (value[i] === "$" && value[i + 1] === "$") {
      out += "$$";
      i += 2;
    } else if (value[i] === "$" && value[i + 1] === "(") {
      const end = value.indexOf(")", i + 2);
      if (end < 0) {
        out += value.slice(i);
        break;
      }
      const name = value.slice(i + 2, end);
      out += `$(${prefixed(name) ? APP_ENV_PREFIX + name : name})`;
      i = end + 1;
    } else {
      out += value[i];
      i++;
    }
  }
  return out;
}

/**
 * The names of the Service environment variables the kubelet gives a pod of
 * the namespace (`WEB_SERVICE_HOST`, `WEB_PORT_80_TCP`, `KUBERNETES_…`), as
 * prefixes: a reference to one of them is left alone, since the agent gets
 * them under their own names as the app does.
 */
function serviceEnvNames(services: readonly V1Service[], links: boolean): string[] {
  const prefixes = ["KUBERNETES_SERVICE_", "KUBERNETES_PORT"];
  if (!links) return prefixes;
  for (const s of services) {
    const ip = s.spec?.clusterIP;
    if (!ip || ip === "None" || !s.metadata?.name) continue;
    const name = s.metadata.name.toUpperCase().replaceAll("-", "_");
    prefixes.push(`${name}_SERVICE_`, `${name}_PORT`);
  }
  return prefixes;
}

/**
 * The app container's `env` for the agent's container: each name prefixed,
 * each reference to one of the app's variables prefixed too, and a
 * `resourceFieldRef` pointed at the app container. A reference to a name
 * defined before it, or (when the app has `envFrom`) to any name that is
 * not a Service variable, is the app's.
 */
function appEnv(app: V1Container, serviceEnv: readonly string[]): V1EnvVar[] {
  const defined = new Set<string>();
  const hasEnvFrom = (app.envFrom ?? []).length > 0;
  const prefixed = (name: string) =>
    defined.has(name) || (hasEnvFrom && !serviceEnv.some((p) => name.startsWith(p)));
  return (app.env ?? []).map((e) => {
    const copy: V1EnvVar = { name: APP_ENV_PREFIX + e.name };
    if (e.value !== undefined) copy.value = rewriteReferences(e.value, prefixed);
    if (e.valueFrom !== undefined) {
      copy.valueFrom = structuredClone(e.valueFrom);
      const resource = copy.valueFrom.resourceFieldRef;
      if (resource) resource.containerName ??= app.name;
    }
    defined.add(e.name);
    return copy;
  });
}

/** The agent's container. */
function agentContainer(input: {
  app: V1Container;
  image: string;
  encoded: string;
  ports: readonly TakenPort[];
  volumeMounts: V1VolumeMount[];
  serviceEnv: readonly string[];
}): V1Container {
  const { app, ports } = input;
  const field = (name: string, fieldPath: string): V1EnvVar => ({
    name,
    valueFrom: { fieldRef: { fieldPath } },
  });
  const containerPorts: V1ContainerPort[] = ports.map((p) => ({
    ...(p.takeover === "name" && p.name !== undefined ? { name: p.name } : {}),
    containerPort: p.agentPort,
    protocol: "TCP",
  }));
  return {
    name: AGENT_CONTAINER,
    image: input.image,
    imagePullPolicy: "IfNotPresent",
    command: [IMAGE_BINARY],
    args: ["agent"],
    // The app's variables first: a reference in them cannot reach the agent's own.
    env: [
      ...appEnv(app, input.serviceEnv),
      { name: AGENT_CONFIG_ENV, value: input.encoded },
      field(POD_ENV.name, "metadata.name"),
      field(POD_ENV.namespace, "metadata.namespace"),
      field(POD_ENV.ip, "status.podIP"),
    ],
    ...(app.envFrom && app.envFrom.length > 0
      ? {
        envFrom: app.envFrom.map((from) => ({
          ...structuredClone(from),
          prefix: APP_ENV_PREFIX + (from.prefix ?? ""),
        })),
      }
      : {}),
    ports: containerPorts,
    // Ready once it listens: until then the Service would send connections nowhere.
    readinessProbe: {
      tcpSocket: { port: ports[0]!.agentPort },
      periodSeconds: 5,
      failureThreshold: 3,
    },
    resources: {
      requests: { cpu: "10m", memory: "64Mi" },
      limits: { cpu: "1", memory: "256Mi" },
    },
    securityContext: {
      runAsNonRoot: true,
      runAsUser: AGENT_UID,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"] },
      seccompProfile: { type: "RuntimeDefault" },
    },
    volumeMounts: [
      ...input.volumeMounts,
      { name: AGENT_TOKEN_VOLUME, mountPath: AGENT_TOKEN_DIR, readOnly: true },
    ],
  };
}

/** The init container that redirects the numeric ports to the agent: root with NET_ADMIN, nothing else. */
function initContainer(image: string, encoded: string): V1Container {
  return {
    name: AGENT_INIT_CONTAINER,
    image,
    imagePullPolicy: "IfNotPresent",
    command: [IMAGE_BINARY],
    args: ["agent-init"],
    env: [{ name: AGENT_CONFIG_ENV, value: encoded }],
    resources: {
      requests: { cpu: "10m", memory: "32Mi" },
      limits: { cpu: "500m", memory: "128Mi" },
    },
    securityContext: {
      runAsUser: 0,
      runAsNonRoot: false,
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
      capabilities: { drop: ["ALL"], add: ["NET_ADMIN"] },
    },
  };
}

/** The agent's token: for the manager's audience only, renewed by the kubelet. */
function tokenVolume(): V1Volume {
  return {
    name: AGENT_TOKEN_VOLUME,
    projected: {
      sources: [{
        serviceAccountToken: {
          audience: AGENT_TOKEN_AUDIENCE,
          expirationSeconds: AGENT_TOKEN_SECONDS,
          path: AGENT_TOKEN_FILE,
        },
      }],
    },
  };
}

/**
 * Whether two values are equal as JSON, whatever the order of object keys.
 *
 * @param a a value
 * @param b another
 * @returns true when their canonical JSON is the same
 *
 * @example
 * ```ts
 * import { sameJson } from "./agent_inject.ts";
 *
 * if (!sameJson({ a: 1, b: [2] }, { b: [2], a: 1 })) throw new Error();
 * ```
 */
export function sameJson(a: unknown, b: unknown): boolean {
  return canonicalJson(a) === canonicalJson(b);
}

/**
 * JSON with object keys sorted, at every depth.
 *
 * @param value a JSON value
 * @returns its canonical text
 */
export function canonicalJson(value: unknown): string {
  return JSON.stringify(
    value,
    (_, v) =>
      v !== null && typeof v === "object" && !Array.isArray(v)
        ? Object.fromEntries(Object.entries(v).sort(([x], [y]) => (x < y ? -1 : x > y ? 1 : 0)))
        : v,
  );
}

/**
 * Where two JSON values differ, as paths (`spec.containers[0].image`), at
 * most `limit` of them.
 *
 * @param a a value
 * @param b another
 * @param limit the most paths returned
 * @returns the paths, in document order
 */
export function jsonDifferences(a: unknown, b: unknown, limit = 10): string[] {
  const out: string[] = [];
  const walk = (x: unknown, y: unknown, path: string) => {
    if (out.length >= limit) return;
    const isObj = (v: unknown) => v !== null && typeof v === "object";
    if (Array.isArray(x) && Array.isArray(y) && x.length === y.length) {
      x.forEach((v, i) => walk(v, y[i], `${path}[${i}]`));
    } else if (isObj(x) && isObj(y) && !Array.isArray(x) && !Array.isArray(y)) {
      const xo = x as Record<string, unknown>, yo = y as Record<string, unknown>;
      for (const k of [...new Set([...Object.keys(xo), ...Object.keys(yo)])].sort()) {
        walk(xo[k], yo[k], path ? `${path}.${k}` : k);
      }
    } else if (canonicalJson(x) !== canonicalJson(y)) out.push(path || "(the whole value)");
  };
  walk(a, b, "");
  return out;
}

/**
 * Where the agents reach the manager: `traffic-manager.<namespace>` on
 * {@linkcode DEFAULT_AGENT_LISTENER_PORT}, checked against the CA the
 * {@linkcode CA_CONFIGMAP_NAME} ConfigMap publishes (read with the user's
 * credentials, as `vif connect` reads it).
 *
 * @param api the user's client
 * @param namespace the manager's namespace (default `vif-system`)
 * @returns the configuration's manager block
 * @throws {KubeError} when the ConfigMap cannot be read or holds no CA
 */
export async function managerForAgents(
  api: WorkloadApi,
  namespace: string = DEFAULT_MANAGER_NAMESPACE,
): Promise<AgentManager> {
  const path = `/api/v1/namespaces/${
    encodeURIComponent(namespace)
  }/configmaps/${CA_CONFIGMAP_NAME}`;
  const cm = await request(
    api,
    { verb: "get", resource: "configmaps", name: CA_CONFIGMAP_NAME, namespace },
    () => api.get<V1ConfigMap>(path),
  ).catch((error: KubeError) => {
    if (error.status !== 404) throw error;
    throw new KubeError(`no traffic-manager in namespace "${namespace}"`, {
      hint: `Install it with "vif install -n ${namespace}", or name its namespace.`,
      cause: error,
    });
  });
  const caPem = cm.data?.[CA_CONFIGMAP_KEY];
  if (!caPem?.includes("-----BEGIN CERTIFICATE-----")) {
    throw new KubeError(
      `configmap "${CA_CONFIGMAP_NAME}" in namespace "${namespace}" holds no CA`,
      {
        hint: `Install the manager again ("vif install -n ${namespace}").`,
      },
    );
  }
  const host = `${MANAGER_NAME}.${namespace}`;
  return {
    host,
    port: DEFAULT_AGENT_LISTENER_PORT,
    serverName: managerServerName(namespace),
    caPem,
  };
}

/**
 * The RBAC rules a user needs in an application's namespace to intercept
 * there (with the `vif-user` Role in the manager's namespace): read and
 * patch the workloads, read their Services and pods, and delete pods (a
 * ReplicaSet's, which do not roll by themselves).
 *
 * @returns the rules of a Role
 */
export function interceptRules(): V1PolicyRule[] {
  return [
    {
      apiGroups: ["apps"],
      resources: ["deployments", "statefulsets", "replicasets"],
      verbs: ["get", "list", "patch"],
    },
    { apiGroups: [""], resources: ["services"], verbs: ["get", "list"] },
    { apiGroups: [""], resources: ["pods"], verbs: ["get", "list", "delete"] },
  ];
}

/**
 * The JSON merge patch (RFC 7386) that turns `from` into `to`: changed and
 * new members as they are in `to`, removed ones as `null`, lists whole.
 *
 * @param from the value now
 * @param to the value wanted (holding no `null`, which a merge patch cannot set)
 * @returns the patch
 *
 * @example
 * ```ts
 * import { mergePatchBetween } from "./agent_inject.ts";
 *
 * const patch = mergePatchBetween({ a: 1, b: { c: 2, d: 3 } }, { a: 1, b: { c: 4 } });
 * if (JSON.stringify(patch) !== '{"b":{"d":null,"c":4}}') throw new Error(JSON.stringify(patch));
 * ```
 */
export function mergePatchBetween(from: unknown, to: unknown): unknown {
  const isMap = (v: unknown): v is Record<string, unknown> =>
    v !== null && typeof v === "object" && !Array.isArray(v);
  if (!isMap(from) || !isMap(to)) return structuredClone(to);
  const out: Record<string, unknown> = {};
  for (const key of Object.keys(from)) if (!(key in to)) out[key] = null;
  for (const [key, value] of Object.entries(to)) {
    if (!(key in from)) out[key] = structuredClone(value);
    else if (!sameJson(from[key], value)) out[key] = mergePatchBetween(from[key], value);
  }
  return out;
}

/**
 * The merge patch that sets a workload's template and annotations (an
 * undefined value removes one), guarded by its `resourceVersion`: a stale
 * one makes the API server answer 409.
 */
function templatePatch(
  workload: Workload,
  template: PodTemplate,
  annotations: Record<string, string | undefined>,
): unknown {
  const present = workload.metadata.annotations ?? {};
  const changes: Record<string, string | null> = {};
  for (const [key, value] of Object.entries(annotations)) {
    if (value !== undefined) changes[key] = value;
    else if (key in present) changes[key] = null;
  }
  return {
    metadata: {
      resourceVersion: workload.metadata.resourceVersion,
      ...(Object.keys(changes).length > 0 ? { annotations: changes } : {}),
    },
    spec: { template: mergePatchBetween(workload.spec.template, template) },
  };
}

/** Tries a read-plan-patch cycle again after a conflict, this many times in all. */
const DEFAULT_ATTEMPTS = 5;

/** Options of {@linkcode injectAgent}. */
export interface InjectOptions extends PlanOptions {
  /** How many times to read, plan and patch when others write in between. Default 5. */
  attempts?: number;
  /** Progress lines (`patching deployment "web"`). */
  onProgress?: (line: string) => void;
}

/** What {@linkcode injectAgent} did. */
export interface InjectResult {
  /** The workload. */
  workload: WorkloadRef;
  /** `injected`: the template was patched; `present`: the agent takes the port already. */
  action: "injected" | "present";
  /** Why it was patched. */
  reason?: InjectReason;
  /** The agent's configuration. */
  config: AgentConfig;
  /** The port the user asked for, resolved. */
  wanted: ResolvedTarget;
  /** The template had been changed by others since the agent came (kept). */
  changedSince: boolean;
  /** What the plan could not carry over. */
  warnings: string[];
  /** The pods deleted so that a ReplicaSet makes them again with the agent. */
  restarted: string[];
}

/**
 * Puts the agent into a workload (found by {@linkcode findWorkload}) with
 * the user's credentials: reads it and its namespace's Services, plans, and
 * patches the template and annotations with a merge patch guarded by the
 * `resourceVersion` read; when someone wrote in between, reads and plans
 * again. A ReplicaSet's old pods are then deleted so that it makes new ones.
 *
 * @param api the user's client
 * @param target the namespace and the workload's name (`KIND/NAME` allowed)
 * @param options the port, the manager, the image
 * @returns what was done
 * @throws {KubeError} for a workload or port that cannot be found, a refused
 *   request (`you may not patch deployments "web" in namespace "default"`,
 *   and what to do), or conflicts on every attempt
 */
export async function injectAgent(
  api: WorkloadApi,
  target: { namespace: string; name: string },
  options: InjectOptions,
): Promise<InjectResult> {
  const attempts = Math.max(1, options.attempts ?? DEFAULT_ATTEMPTS);
  let workload = await findWorkload(api, target.namespace, target.name);
  const ref: WorkloadRef = {
    namespace: target.namespace,
    kind: workload.kind,
    name: workload.metadata.name,
  };
  const services = await listServices(api, target.namespace);
  for (let attempt = 1;; attempt++) {
    const plan = planInjection(workload, services, options);
    if (plan.action === "present") {
      return {
        workload: ref,
        action: "present",
        config: plan.config,
        wanted: plan.wanted,
        changedSince: false,
        warnings: [],
        restarted: [],
      };
    }
    options.onProgress?.(`patching ${describe(ref)}`);
    const patched = await patchTemplate(api, workload, plan.template, plan.annotations);
    if (patched === "conflict") {
      if (attempt >= attempts) throw conflictError(ref, attempts);
      workload = await mustRead(api, ref);
      continue;
    }
    const restarted = ref.kind === "ReplicaSet"
      ? await restartReplicaSetPods(api, patched, options.onProgress)
      : [];
    return {
      workload: ref,
      action: "injected",
      reason: plan.reason,
      config: plan.config,
      wanted: plan.wanted,
      changedSince: plan.changedSince,
      warnings: plan.warnings,
      restarted,
    };
  }
}

function describe(ref: WorkloadRef): string {
  return `${ref.kind.toLowerCase()} "${ref.name}" in namespace "${ref.namespace}"`;
}

function conflictError(ref: WorkloadRef, attempts: number): KubeError {
  return new KubeError(
    `${describe(ref)} changed under vif ${attempts} times in a row`,
    {
      hint: "Something keeps rewriting it (a GitOps controller?); try again when it is quiet.",
      status: 409,
    },
  );
}

async function mustRead(api: WorkloadApi, ref: WorkloadRef): Promise<Workload> {
  const found = await readWorkload(api, ref);
  if (found === undefined) {
    throw new KubeError(`${describe(ref)} is gone`, {
      hint: `See what there is with "vif list -n ${ref.namespace}".`,
      status: 404,
    });
  }
  return found;
}

/** Patches the template and annotations; `conflict` when the workload changed since it was read. */
async function patchTemplate(
  api: WorkloadApi,
  workload: Workload,
  template: PodTemplate,
  annotations: Record<string, string | undefined>,
): Promise<Workload | "conflict"> {
  const ref = {
    namespace: workload.metadata.namespace,
    kind: workload.kind,
    name: workload.metadata.name,
  };
  try {
    return await api.patch<Workload>(
      workloadPath(ref),
      templatePatch(workload, template, annotations),
    );
  } catch (error) {
    const status = (error as { statusCode?: number }).statusCode;
    if (status === 409) return "conflict";
    throw requestFailure(error, {
      verb: "patch",
      resource: WORKLOAD_RESOURCES[ref.kind],
      name: ref.name,
      namespace: ref.namespace,
    }, api.server);
  }
}

/** A pod as vif reads it. */
type Pod = V1Pod & { metadata: NonNullable<V1Pod["metadata"]> };

/**
 * What tells one injection from another in a pod spec: the agent's
 * configuration as its container has it, `""` without the agent.
 */
function agentFingerprint(spec: { containers?: V1Container[] } | undefined): string {
  const agent = (spec?.containers ?? []).find((c) => c.name === AGENT_CONTAINER);
  if (!agent) return "";
  return agent.env?.find((e) => e.name === AGENT_CONFIG_ENV)?.value ?? "(no configuration)";
}

/** Lists the pods of a selector in a namespace (one page of at most 1000: a rollout's pods). */
async function listPods(api: WorkloadApi, namespace: string, selector: string): Promise<Pod[]> {
  const path = `/api/v1/namespaces/${encodeURIComponent(namespace)}/pods?limit=1000` +
    (selector ? `&labelSelector=${encodeURIComponent(selector)}` : "");
  const list = await request(
    api,
    { verb: "list", resource: "pods", namespace },
    () => api.get<{ items?: Pod[] }>(path),
  );
  return list.items ?? [];
}

function ownedBy(
  pod: { metadata?: { ownerReferences?: { uid: string; controller?: boolean }[] } },
  uid: string | undefined,
): boolean {
  return uid !== undefined &&
    (pod.metadata?.ownerReferences ?? []).some((o) => o.uid === uid && o.controller);
}

/** Deletes a ReplicaSet's pods whose agent (or its absence) is not its template's. */
async function restartReplicaSetPods(
  api: WorkloadApi,
  rs: Workload,
  onProgress: ((line: string) => void) | undefined,
): Promise<string[]> {
  const ns = rs.metadata.namespace;
  const wanted = agentFingerprint(rs.spec.template.spec);
  const pods = (await listPods(api, ns, selectorText(rs.spec.selector)))
    .filter((p) => ownedBy(p, rs.metadata.uid) && !p.metadata.deletionTimestamp)
    .filter((p) => agentFingerprint(p.spec) !== wanted);
  const deleted: string[] = [];
  for (const pod of pods) {
    const name = pod.metadata.name!;
    onProgress?.(`deleting pod "${name}" so that replicaset "${rs.metadata.name}" makes it again`);
    try {
      await api.delete(
        `/api/v1/namespaces/${encodeURIComponent(ns)}/pods/${encodeURIComponent(name)}`,
      );
      deleted.push(name);
    } catch (error) {
      if ((error as { statusCode?: number }).statusCode === 404) continue;
      throw requestFailure(
        error,
        { verb: "delete", resource: "pods", name, namespace: ns },
        api.server,
      );
    }
  }
  return deleted;
}

/** What {@linkcode removeAgent} did. */
export interface RemoveResult {
  /** The workload. */
  workload: WorkloadRef;
  /**
   * `removed`: the agent is out; `cleaned`: only the annotations were left,
   * and are gone; `absent`: there was nothing of vif's.
   */
  action: "removed" | "cleaned" | "absent";
  /** Someone changed the template since the agent came: their changes are kept. */
  changedSince: boolean;
  /** Where the template now differs from the recorded one (at most 10 paths). */
  differences: string[];
  /** The pods deleted so that a ReplicaSet makes them again without the agent. */
  restarted: string[];
}

/** Options of {@linkcode removeAgent}. */
export interface RemoveOptions {
  /** How many times to read and patch when others write in between. Default 5. */
  attempts?: number;
  /** Progress lines. */
  onProgress?: (line: string) => void;
}

/**
 * Takes the agent out of a workload and removes vif's annotations (all of
 * {@linkcode AGENT_ANNOTATION}, the intercepts' claims included): the
 * template becomes the recorded one (equal in JSON) when nobody changed the
 * workload meanwhile; otherwise vif's changes alone are undone and the
 * others' kept (see the module documentation). A ReplicaSet's pods with the
 * agent are deleted so that it makes them again without.
 *
 * @param api the user's client
 * @param ref the workload
 * @param options attempts and progress
 * @returns what was done
 * @throws {KubeError} when the workload is missing, a request is refused, or
 *   conflicts go on
 */
export async function removeAgent(
  api: WorkloadApi,
  ref: WorkloadRef,
  options: RemoveOptions = {},
): Promise<RemoveResult> {
  const attempts = Math.max(1, options.attempts ?? DEFAULT_ATTEMPTS);
  let workload = await mustRead(api, ref);
  for (let attempt = 1;; attempt++) {
    const state = agentState(workload);
    const result = { workload: ref, changedSince: state.changedSince, restarted: [] as string[] };
    if (state.original === undefined) return { ...result, action: "absent", differences: [] };
    const template = !state.injected
      ? workload.spec.template
      : state.changedSince
      ? state.base
      : state.original;
    options.onProgress?.(`patching ${describe(ref)}`);
    // Every annotation of vif's goes: the claims of intercepts too, which mean nothing without the agent.
    const patched = await patchTemplate(
      api,
      workload,
      template,
      Object.fromEntries(Object.values(AGENT_ANNOTATION).map((key) => [key, undefined])),
    );
    if (patched === "conflict") {
      if (attempt >= attempts) throw conflictError(ref, attempts);
      workload = await mustRead(api, ref);
      continue;
    }
    const restarted = ref.kind === "ReplicaSet" && state.injected
      ? await restartReplicaSetPods(api, patched, options.onProgress)
      : [];
    return {
      ...result,
      action: state.injected ? "removed" : "cleaned",
      differences: state.changedSince ? jsonDifferences(state.original, state.base) : [],
      restarted,
    };
  }
}

/** A workload that carries the agent (or its annotation). */
export interface InjectedWorkload {
  /** The workload. */
  workload: WorkloadRef;
  /** The vif version that injected it. */
  version?: string;
  /** The agent's configuration, when readable. */
  config?: AgentConfig;
  /** The annotation is there but the agent is not. */
  stale: boolean;
  /** Someone changed the template since the agent came. */
  changedSince: boolean;
}

/** Options of {@linkcode listInjected}. */
export interface ListInjectedOptions {
  /** The namespaces to look in. Default: all (one cluster-wide list per kind). */
  namespaces?: readonly string[];
}

/** The most workloads read per kind and namespace. */
const MAX_WORKLOADS = 20_000;

/**
 * Every workload that carries the agent's annotation: what `vif uninstall
 * --agents` takes the agent out of.
 *
 * @param api the user's client
 * @param options the namespaces (default: all)
 * @returns the workloads, sorted by namespace, kind and name
 * @throws {KubeError} when a list is refused or fails
 */
export async function listInjected(
  api: WorkloadApi,
  options: ListInjectedOptions = {},
): Promise<InjectedWorkload[]> {
  const scopes: (string | undefined)[] = options.namespaces ? [...options.namespaces] : [undefined];
  const out: InjectedWorkload[] = [];
  for (const namespace of scopes) {
    for (const kind of ["Deployment", "StatefulSet", "ReplicaSet"] as WorkloadKind[]) {
      const base = `${workloadPath({ kind, ...(namespace ? { namespace } : {}) })}?limit=500`;
      let next: string | undefined;
      let seen = 0;
      do {
        const path = next ? `${base}&continue=${encodeURIComponent(next)}` : base;
        const page = await request(
          api,
          { verb: "list", resource: WORKLOAD_RESOURCES[kind], ...(namespace ? { namespace } : {}) },
          () => api.get<{ items?: Workload[]; metadata?: { continue?: string } }>(path),
        );
        for (const item of page.items ?? []) {
          if (item.metadata?.annotations?.[AGENT_ANNOTATION.original] === undefined) continue;
          out.push(injectedEntry({ ...item, kind }));
        }
        seen += page.items?.length ?? 0;
        next = page.metadata?.continue || undefined;
      } while (next && seen < MAX_WORKLOADS);
    }
  }
  const key = (w: InjectedWorkload) =>
    `${w.workload.namespace}\0${w.workload.kind}\0${w.workload.name}`;
  return out.sort((a, b) => key(a) < key(b) ? -1 : key(a) > key(b) ? 1 : 0);
}

function injectedEntry(workload: Workload): InjectedWorkload {
  const ref = {
    namespace: workload.metadata.namespace,
    kind: workload.kind,
    name: workload.metadata.name,
  };
  const version = workload.metadata.annotations?.[AGENT_ANNOTATION.agent];
  try {
    const state = agentState(workload);
    return {
      workload: ref,
      ...(version !== undefined ? { version } : {}),
      ...(state.config ? { config: state.config } : {}),
      stale: state.stale,
      changedSince: state.changedSince,
    };
  } catch {
    // An unreadable record: listed, so that uninstall says what it cannot do.
    return {
      workload: ref,
      ...(version !== undefined ? { version } : {}),
      stale: false,
      changedSince: true,
    };
  }
}

/** Options of {@linkcode waitForAgents}. */
export interface WaitOptions {
  /** How long to wait in all, in ms. */
  timeoutMs: number;
  /** Progress lines: `rolling out 1/2`, `agent ready in web-5d…`, a pod's trouble. */
  onProgress?: (line: string) => void;
  /** Wait for pods without the agent instead (after {@linkcode removeAgent}). */
  absent?: boolean;
  /**
   * Wait for the rollout only: every wanted pod of the current template
   * ready, no agent asked for (the traffic-manager's own Deployment, after
   * `vif install`).
   */
  rolloutOnly?: boolean;
  /** Time between two looks, in ms. Default 1000. */
  intervalMs?: number;
  /** Waits `ms` (tests give a fake). Default: a timer. */
  sleep?: (ms: number) => Promise<void>;
  /** The time in ms (tests give a fake). Default `Date.now`. */
  now?: () => number;
}

/** What {@linkcode waitForAgents} saw at the end. */
export interface WaitResult {
  /** The ready pods of the new template. */
  pods: string[];
  /** The replicas wanted. */
  replicas: number;
}

/** What one look at a rollout found. */
interface RolloutView {
  workload: Workload;
  desired: number;
  /** The controller has seen the latest spec. */
  observed: boolean;
  /** Pods of the new template (with the agent, or without when waiting for its absence). */
  fresh: Pod[];
  /** Pods of an older template, not being deleted. */
  stale: Pod[];
  /** Why the rollout cannot go on, from the workload's or its ReplicaSet's conditions. */
  blocked?: string;
}

/**
 * Follows the rollout of a workload after {@linkcode injectAgent} (or
 * {@linkcode removeAgent} with `absent`) by polling, until every wanted
 * replica is a ready pod of the new template whose agent is ready, and no
 * pod of an older template is left. Progress goes to `onProgress` as it
 * changes.
 *
 * @param api the user's client
 * @param ref the workload
 * @param options the time limit, progress, and the clock for tests
 * @returns the ready pods
 * @throws {KubeError} when time runs out or the rollout cannot go on
 *   (`ProgressDeadlineExceeded`, a paused Deployment), naming the state of
 *   the pod that holds it up: `ImagePullBackOff` with the image,
 *   `CrashLoopBackOff` with the last exit, `Pending` with the scheduler's
 *   reason, an init container that failed
 */
export async function waitForAgents(
  api: WorkloadApi,
  ref: WorkloadRef,
  options: WaitOptions,
): Promise<WaitResult> {
  const now = options.now ?? Date.now;
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((r) => setTimeout(r, ms)));
  const interval = Math.max(10, options.intervalMs ?? 1000);
  const mode: WaitMode = options.rolloutOnly ? "ready" : options.absent ? "absent" : "agent";
  const want = mode === "agent";
  const deadline = now() + Math.max(0, options.timeoutMs);
  const said = new Set<string>();
  const say = (line: string) => {
    if (said.has(line)) return;
    // Bounded: a message that changes on every look must not grow the set for ever.
    if (said.size >= 1000) said.clear();
    said.add(line);
    options.onProgress?.(line);
  };
  let last = "";
  const report = (line: string) => {
    if (line === last) return;
    last = line;
    options.onProgress?.(line);
  };
  for (;;) {
    const view = await lookAtRollout(api, ref);
    const ready = view.fresh.filter((p) => podReady(p) && (!want || agentReady(p)));
    if (want) { for (const p of ready) say(`agent ready in ${p.metadata.name}`); }
    report(`rolling out ${Math.min(ready.length, view.desired)}/${view.desired}`);
    for (const p of view.fresh) {
      const problem = podProblem(p);
      if (problem) say(`pod ${p.metadata.name}: ${problem.text}`);
    }
    if (view.observed && ready.length >= view.desired && view.stale.length === 0) {
      return { pods: ready.map((p) => p.metadata.name!), replicas: view.desired };
    }
    if (view.blocked) throw stuck(ref, view, mode, `: ${view.blocked}`);
    const left = deadline - now();
    if (left <= 0) throw stuck(ref, view, mode, ` after ${Math.round(options.timeoutMs / 1000)} s`);
    await sleep(Math.min(interval, left));
  }
}

async function lookAtRollout(api: WorkloadApi, ref: WorkloadRef): Promise<RolloutView> {
  const workload = await mustRead(api, ref);
  const desired = workload.spec.replicas ?? 1;
  const generation = workload.metadata.generation ?? 0;
  const observed = (workload.status?.observedGeneration ?? 0) >= generation;
  const selector = selectorText(workload.spec.selector);
  const pods = (await listPods(api, ref.namespace, selector)).filter((p) =>
    !p.metadata.deletionTimestamp
  );
  const uid = workload.metadata.uid;
  let blocked: string | undefined;
  let isFresh: (p: Pod) => boolean;
  let mine: Pod[];
  if (ref.kind === "Deployment") {
    const sets = await request(
      api,
      { verb: "list", resource: "replicasets", namespace: ref.namespace },
      () =>
        api.get<{ items?: Workload[] }>(
          `${workloadPath({ kind: "ReplicaSet", namespace: ref.namespace })}?labelSelector=${
            encodeURIComponent(selector)
          }`,
        ),
    );
    const owned = (sets.items ?? []).filter((rs) => ownedBy(rs, uid));
    const current = owned.find((rs) => sameTemplate(rs.spec.template, workload.spec.template));
    mine = pods.filter((p) => owned.some((rs) => ownedBy(p, rs.metadata.uid)));
    isFresh = (p) => current !== undefined && ownedBy(p, current.metadata.uid);
    const progressing = workload.status?.conditions?.find((c) => c.type === "Progressing");
    if (observed && progressing?.reason === "ProgressDeadlineExceeded") {
      blocked = `its rollout passed its progress deadline${
        progressing.message ? `: ${progressing.message}` : ""
      }`;
    }
    if (workload.spec.paused) blocked = "it is paused (kubectl rollout resume)";
    const failure = current?.status?.conditions?.find((c) =>
      c.type === "ReplicaFailure" && c.status === "True"
    );
    if (failure) {
      blocked = `its ReplicaSet cannot make pods: ${failure.message ?? failure.reason ?? ""}`;
    }
  } else if (ref.kind === "StatefulSet") {
    mine = pods.filter((p) => ownedBy(p, uid));
    const revision = workload.status?.updateRevision;
    isFresh = (p) =>
      revision !== undefined && p.metadata.labels?.["controller-revision-hash"] === revision;
  } else {
    mine = pods.filter((p) => ownedBy(p, uid));
    isFresh = () => true;
  }
  // The pods of this very injection (or of none), whatever the controller's bookkeeping says.
  const fingerprint = agentFingerprint(workload.spec.template.spec);
  const fresh = mine.filter((p) => isFresh(p) && agentFingerprint(p.spec) === fingerprint);
  const stale = mine.filter((p) => !fresh.includes(p));
  return { workload, desired, observed, fresh, stale, ...(blocked ? { blocked } : {}) };
}

/** Whether a ReplicaSet's template is the Deployment's (the controller adds `pod-template-hash`). */
function sameTemplate(a: PodTemplate, b: PodTemplate): boolean {
  const strip = (t: PodTemplate) => {
    const copy = structuredClone(t);
    if (copy.metadata?.labels) delete copy.metadata.labels["pod-template-hash"];
    return copy;
  };
  return sameJson(strip(a), strip(b));
}

function podReady(p: Pod): boolean {
  return (p.status?.conditions ?? []).some((c) => c.type === "Ready" && c.status === "True");
}

function agentReady(p: Pod): boolean {
  return (p.status?.containerStatuses ?? []).some((s) => s.name === AGENT_CONTAINER && s.ready);
}

/** What a wait waits for: the agent in every pod, its absence, or a plain rollout. */
type WaitMode = "agent" | "absent" | "ready";

/** The error when a rollout does not finish: the workload, the count, and the first pod's trouble. */
function stuck(ref: WorkloadRef, view: RolloutView, mode: WaitMode, when: string): KubeError {
  const want = mode === "agent";
  const ready = view.fresh.filter((p) => podReady(p) && (!want || agentReady(p))).length;
  const head = mode === "agent"
    ? `the agent is ready in ${ready} of ${view.desired} pods of ${describe(ref)}`
    : mode === "absent"
    ? `${describe(ref)} still has pods with the agent (${ready} of ${view.desired} without)`
    : `${ready} of ${view.desired} pods of ${describe(ref)} are ready`;
  const troubled = view.fresh.map((p) => ({ p, problem: podProblem(p) })).find((x) => x.problem);
  if (troubled?.problem) {
    return new KubeError(
      `${head}${when}: pod "${troubled.p.metadata.name}": ${troubled.problem.text}`,
      {
        hint: troubled.problem.hint,
      },
    );
  }
  const detail = !view.observed
    ? ": the controller has not taken the change yet"
    : view.fresh.length === 0
    ? ": no pod of the new template yet"
    : view.stale.length > 0
    ? `: ${view.stale.length} pods of the old template are left`
    : "";
  return new KubeError(`${head}${when}${view.blocked ? "" : detail}`, {
    hint:
      `See "kubectl rollout status ${
        WORKLOAD_RESOURCES[ref.kind]
      }/${ref.name} -n ${ref.namespace}" ` +
      `and "kubectl get events -n ${ref.namespace}".`,
  });
}
