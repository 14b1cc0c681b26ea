/**
 * The agent's injection: planInjection() as tables of pure cases, then
 * injectAgent(), waitForAgents(), removeAgent() and listInjected() with the
 * users' own credentials against the fake API server, whose RBAC decides,
 * with the workload controllers of the simulated cluster rolling the
 * templates out (and a kubelet stand-in making the pods Ready, or not);
 * Debian's kubectl reads the patched objects once.
 *
 * ```
 *   workloadApi(admin | dev | viewer token) ──HTTPS──► startApiServer() ── RBAC (tests/sim/rbac.ts)
 *                                                          │
 *                                                        Store ◄── step(): the Deployment, ReplicaSet and
 *                                                                  StatefulSet controllers of tests/sim/,
 *                                                                  then every pod Running and Ready
 *                                                                  (or as the test's fate says)
 * ```
 */

import type { V1Container, V1Pod, V1Service } from "@kubernetes/client-node";
import {
  assert,
  assertEquals,
  assertMatch,
  assertRejects,
  assertThrows,
} from "../../tests/_assert.ts";
import {
  ADMIN_TOKEN,
  kubectl,
  TEST_SERVICE_CIDR,
  type TestApi,
  withApi,
  writeKubeconfig,
} from "../../tests/sim/apiserver/_testing.ts";
import { type KubeObject, Store } from "../../tests/sim/apiserver/mod.ts";
import { portNameErrors } from "../../tests/sim/apiserver/_pod_validation.ts";
import { bootstrapRbac, rbacAuthorize } from "../../tests/sim/rbac.ts";
import { reconcileDeployments } from "../../tests/sim/_deployment.ts";
import { reconcileReplicaSets } from "../../tests/sim/_replicaset.ts";
import { reconcileStatefulSets } from "../../tests/sim/_statefulset.ts";
import {
  AGENT_ANNOTATION,
  AGENT_CONFIG_ENV,
  AGENT_CONTAINER,
  AGENT_INIT_CONTAINER,
  AGENT_TOKEN_AUDIENCE,
  AGENT_TOKEN_DIR,
  AGENT_TOKEN_SECONDS,
  AGENT_TOKEN_VOLUME,
  parseAgentConfig,
  POD_ENV,
} from "./agent_config.ts";
import {
  type AgentManager,
  agentState,
  canonicalJson,
  injectAgent,
  type InjectPlan,
  interceptRules,
  listInjected,
  managerForAgents,
  planInjection,
  removeAgent,
  renamedPortName,
  sameJson,
  waitForAgents,
} from "./agent_inject.ts";
import { KubeError } from "./errors.ts";
import { defaultImage } from "./manifests.ts";
import { podProblem } from "./pod_problem.ts";
import {
  type PodTemplate,
  type Workload,
  WORKLOAD_RESOURCES,
  type WorkloadApi,
  workloadApi,
  type WorkloadKind,
} from "./workloads.ts";

const options = { sanitizeOps: false, sanitizeResources: false };

/** User `dev`'s token: nothing until {@linkcode grantIntercept}. */
const DEV_TOKEN = "dev-token-0123456789";
/** User `viewer`'s token: reads workloads, Services and pods in `default`; changes nothing. */
const VIEWER_TOKEN = "viewer-token-0123456789";

/** A manager block that passes the agent's configuration checks. */
const MANAGER: AgentManager = {
  host: "traffic-manager.vif-system",
  port: 8083,
  serverName: "traffic-manager.vif-system",
  caPem: "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
};

type Obj = Record<string, unknown>;

// --- fixtures: what a user writes ------------------------------------------

/** The app container: env with references, envFrom, field refs, volumes, probes by port name. */
function webContainer(): V1Container {
  return {
    name: "web",
    image: "nginx:1.25",
    ports: [
      { name: "http", containerPort: 8080, protocol: "TCP" },
      { name: "metrics", containerPort: 9090, protocol: "TCP" },
      { name: "dns", containerPort: 5353, protocol: "UDP" },
    ],
    env: [
      { name: "HOST", value: "0.0.0.0" },
      { name: "LISTEN", value: "$(HOST):8080" },
      { name: "ESCAPED", value: "$$(HOST)" },
      { name: "FROM_CM", value: "$(CM_KEY)-x" },
      { name: "DB_URL", value: "$(DB_SERVICE_HOST):5432" },
      { name: "POD", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
      { name: "CPU", valueFrom: { resourceFieldRef: { resource: "limits.cpu" } } },
      { name: "TOKEN", valueFrom: { secretKeyRef: { name: "web-secret", key: "token" } } },
    ],
    envFrom: [
      { configMapRef: { name: "web-config" } },
      { secretRef: { name: "web-secret" }, prefix: "S_" },
    ],
    volumeMounts: [
      { name: "config", mountPath: "/etc/web" },
      { name: "cache", mountPath: "/var/cache/web" },
      { name: "config", mountPath: "/etc/web.conf", subPath: "web.conf", readOnly: true },
    ],
    readinessProbe: { httpGet: { path: "/healthz", port: "http" }, periodSeconds: 5 },
    livenessProbe: { tcpSocket: { port: "metrics" } },
  };
}

/** The pod template: the app container and a logging sidecar, a ConfigMap and an emptyDir. */
function webTemplate(app = "web"): PodTemplate {
  return {
    metadata: { labels: { app } },
    spec: {
      containers: [
        webContainer(),
        { name: "log", image: "busybox:1.36", ports: [{ name: "log", containerPort: 5140 }] },
      ],
      volumes: [
        { name: "config", configMap: { name: "web-config" } },
        { name: "cache", emptyDir: {} },
      ],
    },
  };
}

function workloadObject(kind: WorkloadKind, name = "web", replicas = 2): Workload {
  return {
    apiVersion: "apps/v1",
    kind,
    metadata: { name, namespace: "default" },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      ...(kind === "StatefulSet" ? { serviceName: name } : {}),
      template: webTemplate(name),
    },
  };
}

function service(name: string, selector: Record<string, string>, ports: Obj[]): V1Service {
  return {
    apiVersion: "v1",
    kind: "Service",
    metadata: { name, namespace: "default" },
    spec: { selector, ports, clusterIP: "198.19.0.10" },
  } as unknown as V1Service;
}

/** `web` names `http`; `web-metrics` gives 9090 by number; `db` selects other pods. */
function services(app = "web", metrics = true): V1Service[] {
  return [
    service(app, { app }, [{ name: "http", port: 80, targetPort: "http" }]),
    ...(metrics ? [service(`${app}-metrics`, { app }, [{ port: 9090, targetPort: 9090 }])] : []),
    service("db", { app: "db" }, [{ port: 5432 }]),
  ];
}

function injectPlan(plan: ReturnType<typeof planInjection>): InjectPlan {
  assertEquals(plan.action, "inject");
  return plan as InjectPlan;
}

function container(template: PodTemplate, name: string): V1Container {
  const found = [...template.spec!.containers, ...(template.spec!.initContainers ?? [])]
    .find((c) => c.name === name);
  assert(found, `no container ${name}`);
  return found;
}

/** The workload as the plan leaves it (what the API server would store). */
function applied(w: Workload, plan: InjectPlan): Workload {
  return {
    ...w,
    metadata: { ...w.metadata, annotations: { ...w.metadata.annotations, ...plan.annotations } },
    spec: { ...w.spec, template: structuredClone(plan.template) },
  };
}

// --- planInjection(): pure ---------------------------------------------------

Deno.test("planInjection() adds the agent with the app's env, envFrom and mounts under prefixes", () => {
  const w = workloadObject("Deployment");
  const plan = injectPlan(
    planInjection(w, services(), { manager: MANAGER, version: "1.2.3", port: "http" }),
  );
  const agent = container(plan.template, AGENT_CONTAINER);
  assertEquals(agent.image, defaultImage("1.2.3"));
  assertEquals([agent.command, agent.args], [["/vif"], ["agent"]]);
  assertEquals(agent.env?.slice(0, 8), [
    { name: "VIF_APP_HOST", value: "0.0.0.0" },
    // A reference to a variable defined before it: the agent's name for it.
    { name: "VIF_APP_LISTEN", value: "$(VIF_APP_HOST):8080" },
    // `$$` escapes: kept as it is, so the agent expands it as the app does.
    { name: "VIF_APP_ESCAPED", value: "$$(HOST)" },
    // A name from envFrom: the agent has it prefixed.
    { name: "VIF_APP_FROM_CM", value: "$(VIF_APP_CM_KEY)-x" },
    // A Service variable: the agent gets it under its own name, as the app does.
    { name: "VIF_APP_DB_URL", value: "$(DB_SERVICE_HOST):5432" },
    { name: "VIF_APP_POD", valueFrom: { fieldRef: { fieldPath: "metadata.name" } } },
    {
      name: "VIF_APP_CPU",
      valueFrom: { resourceFieldRef: { resource: "limits.cpu", containerName: "web" } },
    },
    {
      name: "VIF_APP_TOKEN",
      valueFrom: { secretKeyRef: { name: "web-secret", key: "token" } },
    },
  ]);
  assertEquals(agent.env?.slice(8).map((e) => e.name), [
    AGENT_CONFIG_ENV,
    POD_ENV.name,
    POD_ENV.namespace,
    POD_ENV.ip,
  ]);
  assertEquals(agent.env?.find((e) => e.name === POD_ENV.ip)?.valueFrom, {
    fieldRef: { fieldPath: "status.podIP" },
  });
  assertEquals(agent.envFrom, [
    { configMapRef: { name: "web-config" }, prefix: "VIF_APP_" },
    { secretRef: { name: "web-secret" }, prefix: "VIF_APP_S_" },
  ]);
  assertEquals(agent.volumeMounts, [
    { name: "config", mountPath: "/vif/app/etc/web", readOnly: false },
    { name: "cache", mountPath: "/vif/app/var/cache/web", readOnly: false },
    { name: "config", mountPath: "/vif/app/etc/web.conf", readOnly: true, subPath: "web.conf" },
    { name: AGENT_TOKEN_VOLUME, mountPath: AGENT_TOKEN_DIR, readOnly: true },
  ]);
  assertEquals(plan.template.spec!.volumes?.at(-1), {
    name: AGENT_TOKEN_VOLUME,
    projected: {
      sources: [{
        serviceAccountToken: {
          audience: AGENT_TOKEN_AUDIENCE,
          expirationSeconds: AGENT_TOKEN_SECONDS,
          path: "token",
        },
      }],
    },
  });
  assertEquals(agent.securityContext, {
    runAsNonRoot: true,
    runAsUser: 65532,
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ["ALL"] },
    seccompProfile: { type: "RuntimeDefault" },
  });
  assert(agent.resources?.requests && agent.resources.limits);
  // The configuration in the env is what the agent will parse.
  const config = parseAgentConfig(agent.env!.find((e) => e.name === AGENT_CONFIG_ENV)!.value!);
  assertEquals(config, plan.config);
  assertEquals(config.workload, { kind: "Deployment", name: "web" });
  assertEquals(config.container, "web");
  assertEquals(config.manager, MANAGER);
  assertEquals(config.mounts, [
    { name: "config", mountPath: "/etc/web", readOnly: false },
    { name: "cache", mountPath: "/var/cache/web", readOnly: false },
    { name: "config", mountPath: "/etc/web.conf", readOnly: true },
  ]);
  assertEquals(plan.annotations, {
    [AGENT_ANNOTATION.original]: JSON.stringify(w.spec.template),
    [AGENT_ANNOTATION.agent]: "1.2.3",
  });
  assertEquals(plan.warnings, []);
});

Deno.test("planInjection() takes every TCP port the Services reach in the app: a named targetPort by name, a numeric one by redirect", () => {
  const w = workloadObject("Deployment");
  const plan = injectPlan(planInjection(w, services(), { manager: MANAGER, port: "http" }));
  assertEquals(plan.reason, "new");
  assertEquals(plan.wanted.containerPort, 8080);
  assertEquals(plan.config.ports, [
    { name: "http", containerPort: 8080, agentPort: 9900, takeover: "name" },
    { name: "metrics", containerPort: 9090, agentPort: 9901, takeover: "redirect" },
  ]);
  const app = container(plan.template, "web");
  // The Service's `http` now names the agent's port; the app's has another name, its probe follows.
  assertEquals(app.ports, [
    { name: "vif-http", containerPort: 8080, protocol: "TCP" },
    { name: "metrics", containerPort: 9090, protocol: "TCP" },
    { name: "dns", containerPort: 5353, protocol: "UDP" },
  ]);
  assertEquals(app.readinessProbe?.httpGet?.port, "vif-http");
  assertEquals(app.livenessProbe?.tcpSocket?.port, "metrics");
  const agent = container(plan.template, AGENT_CONTAINER);
  assertEquals(agent.ports, [
    { name: "http", containerPort: 9900, protocol: "TCP" },
    { containerPort: 9901, protocol: "TCP" },
  ]);
  assertEquals(agent.readinessProbe?.tcpSocket?.port, 9900);
  const init = container(plan.template, AGENT_INIT_CONTAINER);
  assertEquals([init.command, init.args, init.image], [["/vif"], ["agent-init"], agent.image]);
  assertEquals(init.env, [{ name: AGENT_CONFIG_ENV, value: JSON.stringify(plan.config) }]);
  assertEquals(init.securityContext, {
    runAsUser: 0,
    runAsNonRoot: false,
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ["ALL"], add: ["NET_ADMIN"] },
  });
  // Nothing else of the template changed.
  const rest = structuredClone(plan.template);
  rest.spec!.containers = rest.spec!.containers.filter((c) => c.name !== AGENT_CONTAINER);
  delete rest.spec!.initContainers;
  rest.spec!.volumes = rest.spec!.volumes!.filter((v) => v.name !== AGENT_TOKEN_VOLUME);
  rest.spec!.containers[0]!.ports![0]!.name = "http";
  rest.spec!.containers[0]!.readinessProbe!.httpGet!.port = "http";
  assert(sameJson(rest, w.spec.template));
});

/** A row of the port table: the Services, the wanted port, and what is taken how. */
const PORT_CASES: {
  name: string;
  services: V1Service[];
  port?: string;
  template?: (t: PodTemplate) => void;
  ports: [number, string, number][];
  init: boolean;
  appPorts?: string[];
}[] = [
  {
    name: "named only: no init container",
    services: services("web", false),
    ports: [[8080, "name", 9900]],
    init: false,
    appPorts: ["vif-http", "metrics", "dns"],
  },
  {
    name: "numeric only: the app's ports keep their names",
    services: [service("web", { app: "web" }, [{ port: 80, targetPort: 8080 }])],
    ports: [[8080, "redirect", 9900]],
    init: true,
    appPorts: ["http", "metrics", "dns"],
  },
  {
    name: "one port named by one Service and numbered by another: a redirect takes both",
    services: [
      service("web", { app: "web" }, [{ port: 80, targetPort: "http" }]),
      service("web-direct", { app: "web" }, [{ port: 8080, targetPort: 8080 }]),
    ],
    port: "80",
    ports: [[8080, "redirect", 9900]],
    init: true,
    appPorts: ["http", "metrics", "dns"],
  },
  {
    name: "the sidecar's ports stay out, UDP stays out",
    services: [
      service("web", { app: "web" }, [
        { name: "http", port: 80, targetPort: "http" },
        { name: "log", port: 514, targetPort: "log" },
        { name: "dns", port: 53, targetPort: "dns", protocol: "UDP" },
      ]),
    ],
    port: "http",
    ports: [[8080, "name", 9900]],
    init: false,
  },
  {
    name: "a name taken elsewhere in the pod: the next free one",
    services: services("web", false),
    template: (t) => t.spec!.containers[1]!.ports!.push({ name: "vif-http", containerPort: 1 }),
    ports: [[8080, "name", 9900]],
    init: false,
    appPorts: ["vif2-http", "metrics", "dns"],
  },
  {
    name: "a name another container has too: taken by redirect, so the Service cannot move there",
    services: services("web", false),
    template: (t) => t.spec!.containers[1]!.ports!.push({ name: "http", containerPort: 8081 }),
    ports: [[8080, "redirect", 9900]],
    init: true,
    appPorts: ["http", "metrics", "dns"],
  },
  {
    name: "agent ports skip the ports the pod declares",
    services: services("web", false),
    template: (t) => t.spec!.containers[1]!.ports!.push({ containerPort: 9900 }),
    ports: [[8080, "name", 9901]],
    init: false,
  },
  {
    name: "a numeric port no container declares, one container",
    services: [service("web", { app: "web" }, [{ port: 80, targetPort: 3000 }])],
    template: (t) => t.spec!.containers.splice(1),
    ports: [[3000, "redirect", 9900]],
    init: true,
  },
];

for (const c of PORT_CASES) {
  Deno.test(`planInjection() ports: ${c.name}`, () => {
    const w = workloadObject("Deployment");
    c.template?.(w.spec.template);
    const plan = injectPlan(planInjection(w, c.services, { manager: MANAGER, port: c.port }));
    assertEquals(
      plan.config.ports.map((
        p,
      ): [number, string, number] => [p.containerPort, p.takeover, p.agentPort]),
      c.ports,
    );
    assertEquals(
      (plan.template.spec!.initContainers ?? []).some((x) => x.name === AGENT_INIT_CONTAINER),
      c.init,
    );
    if (c.appPorts) {
      assertEquals(container(plan.template, "web").ports?.map((p) => p.name), c.appPorts);
    }
    // What the plan adds, agentState() takes away: the recorded template again.
    const state = agentState(applied(w, plan));
    assert(state.injected && !state.changedSince);
    assert(sameJson(state.base, w.spec.template), canonicalJson(state.base));
  });
}

/** A row of the refusals: what is wrong, and the error's message. */
const REFUSALS: {
  name: string;
  workload: (w: Workload) => void;
  port?: string;
  error: RegExp;
  hint?: RegExp;
}[] = [
  {
    name: "pods on the host's network",
    workload: (w) => (w.spec.template.spec!.hostNetwork = true),
    error: /^the pods of deployment "web" in namespace "default" use the host's network$/,
  },
  {
    name: "a container named vif-agent that vif did not record",
    workload: (w) => w.spec.template.spec!.containers.push({ name: AGENT_CONTAINER, image: "x" }),
    error: /^deployment "web" has a container "vif-agent" that vif did not record$/,
    hint: /kubectl edit deployments web -n default/,
  },
  {
    name: "a volume named like the agent's token",
    workload: (w) =>
      w.spec.template.spec!.volumes!.push({ name: AGENT_TOKEN_VOLUME, emptyDir: {} }),
    error: /has a volume named "vif-agent-token" already, which vif did not add$/,
  },
  {
    name: "an unreadable record",
    workload: (w) => {
      w.metadata.annotations = { [AGENT_ANNOTATION.original]: "{not json" };
      w.spec.template.spec!.containers.push({ name: AGENT_CONTAINER, image: "x" });
    },
    error: /annotation "vif\.dev\/original-template"\) cannot be read$/,
  },
  {
    name: "a UDP port",
    workload: () => {},
    port: "5353",
    error: /no service port "5353"/,
  },
];

for (const c of REFUSALS) {
  Deno.test(`planInjection() refuses ${c.name}`, () => {
    const w = workloadObject("Deployment");
    c.workload(w);
    const e = assertThrows(
      () => planInjection(w, services(), { manager: MANAGER, port: c.port ?? "http" }),
      KubeError,
    );
    assertMatch(e.message, c.error);
    if (c.hint) assertMatch(e.hint, c.hint);
  });
}

Deno.test("planInjection() of a workload with the agent: present when it takes the port, else planned again from the original with the union", () => {
  const w = workloadObject("Deployment");
  const first = injectPlan(planInjection(w, services("web", false), { manager: MANAGER }));
  const injected = applied(w, first);
  const again = planInjection(injected, services("web", false), { manager: MANAGER, port: "http" });
  assertEquals(again.action, "present");
  assertEquals(again.config, first.config);
  // A new Service reaches the metrics port: both ports now, the first keeps its agent port.
  const union = injectPlan(planInjection(injected, services(), { manager: MANAGER, port: "9090" }));
  assertEquals(union.reason, "ports");
  assertEquals(union.config.ports.map((p) => [p.containerPort, p.agentPort, p.takeover]), [
    [8080, 9900, "name"],
    [9090, 9901, "redirect"],
  ]);
  // Recorded: the workload's own template, not the injected one.
  assertEquals(union.annotations[AGENT_ANNOTATION.original], JSON.stringify(w.spec.template));
  assertEquals(container(union.template, "web").ports?.map((p) => p.name), [
    "vif-http",
    "metrics",
    "dns",
  ]);
  assertEquals(union.template.spec!.containers.filter((c) => c.name === AGENT_CONTAINER).length, 1);
  // Forced: planned again even though the port is taken.
  const forced = injectPlan(
    planInjection(injected, services("web", false), { manager: MANAGER, force: true }),
  );
  assertEquals(forced.reason, "forced");
  assert(sameJson(forced.template, first.template));
  // A port of another container: the agent serves one.
  const other = [
    ...services("web", false),
    service("log", { app: "web" }, [{ port: 514, targetPort: "log" }]),
  ];
  const e = assertThrows(
    () => planInjection(injected, other, { manager: MANAGER, port: "log" }),
    KubeError,
  );
  assertEquals(
    e.message,
    'the agent in deployment "web" in namespace "default" serves container "web", and port 5140 is of container "log"',
  );
});

Deno.test("planInjection() of a workload whose agent was taken out by hand plans anew from what is there", () => {
  const w = workloadObject("Deployment");
  const first = injectPlan(planInjection(w, services(), { manager: MANAGER, port: "http" }));
  const reset = applied(w, first);
  reset.spec.template = structuredClone(w.spec.template);
  reset.spec.template.spec!.containers[0]!.image = "nginx:1.27";
  const plan = injectPlan(planInjection(reset, services(), { manager: MANAGER, port: "http" }));
  assertEquals(plan.reason, "stale");
  assertEquals(plan.annotations[AGENT_ANNOTATION.original], JSON.stringify(reset.spec.template));
});

Deno.test("agentState() of a template others changed since the injection keeps their change", () => {
  const w = workloadObject("Deployment");
  const plan = injectPlan(planInjection(w, services(), { manager: MANAGER, port: "http" }));
  const changed = applied(w, plan);
  changed.spec.template.spec!.containers[0]!.image = "nginx:1.27";
  const state = agentState(changed);
  assert(state.injected && state.changedSince);
  assertEquals(state.base.spec!.containers[0]!.image, "nginx:1.27");
  assertEquals(state.base.spec!.containers[0]!.ports![0]!.name, "http");
  assertEquals(state.base.spec!.containers.map((c) => c.name), ["web", "log"]);
  // Without a readable configuration, the renames come from the recorded template.
  const unreadable = applied(w, plan);
  const agent = unreadable.spec.template.spec!.containers.find((c) => c.name === AGENT_CONTAINER)!;
  agent.env = agent.env!.map((e) => e.name === AGENT_CONFIG_ENV ? { ...e, value: "{" } : e);
  const guessed = agentState(unreadable);
  assertEquals(guessed.config, undefined);
  assert(sameJson(guessed.base, w.spec.template), canonicalJson(guessed.base));
});

Deno.test("renamedPortName() gives a valid port name that no other port of the pod has", () => {
  const cases: [string, string[], string][] = [
    ["http", [], "vif-http"],
    ["http", ["vif-http"], "vif2-http"],
    ["http", ["vif-http", "vif2-http"], "vif3-http"],
    ["abcdefghijklmno", [], "vif-abcdefghijk"],
    ["abcdefghij-lmno", [], "vif-abcdefghij"],
    ["a", [], "vif-a"],
    ["8080x", [], "vif-8080x"],
  ];
  for (const [name, taken, expected] of cases) {
    const renamed = renamedPortName(name, new Set(taken));
    assertEquals(renamed, expected, name);
    assertEquals(portNameErrors(renamed), [], renamed);
  }
  const all = new Set(Array.from({ length: 100 }, (_, i) => i === 0 ? "vif-x" : `vif${i + 1}-x`));
  assertThrows(() => renamedPortName("x", all), KubeError);
});

Deno.test("podProblem() names what holds a pod up", () => {
  const pod = (status: Obj, spec: Obj = {}): V1Pod =>
    ({
      metadata: { name: "web-1", namespace: "default" },
      spec: {
        containers: [{ name: "web", image: "nginx" }, {
          name: "vif-agent",
          image: "ghcr.io/vif-dev/vif:0.1.0",
        }],
        ...spec,
      },
      status,
    }) as V1Pod;
  const cs = (name: string, state: Obj, extra: Obj = {}) => ({
    name,
    image: "",
    imageID: "",
    ready: false,
    restartCount: 0,
    state,
    ...extra,
  });
  const cases: [string, V1Pod, RegExp, RegExp][] = [
    [
      "unschedulable",
      pod({
        phase: "Pending",
        conditions: [{
          type: "PodScheduled",
          status: "False",
          reason: "Unschedulable",
          message: "0/3 nodes are available: 3 Insufficient memory.",
        }],
      }),
      /^Pending: Unschedulable: 0\/3 nodes are available: 3 Insufficient memory\.$/,
      /no room/,
    ],
    [
      "image pull",
      pod({
        phase: "Pending",
        containerStatuses: [
          cs("web", { running: {} }, { ready: true }),
          cs("vif-agent", { waiting: { reason: "ImagePullBackOff", message: "Back-off pulling" } }),
        ],
      }),
      /^container "vif-agent" cannot pull image "ghcr\.io\/vif-dev\/vif:0\.1\.0": ImagePullBackOff: Back-off pulling$/,
      /imagePullSecret/,
    ],
    [
      "crash loop",
      pod({
        phase: "Running",
        containerStatuses: [cs("vif-agent", { waiting: { reason: "CrashLoopBackOff" } }, {
          lastState: {
            terminated: { exitCode: 2, reason: "Error", message: "a\nagent: no manager" },
          },
        })],
      }),
      /^container "vif-agent" keeps crashing \(CrashLoopBackOff\): last exit code 2 \(Error\): agent: no manager$/,
      /kubectl logs web-1 -n default -c vif-agent --previous/,
    ],
    [
      "init container failed",
      pod({
        phase: "Pending",
        initContainerStatuses: [
          cs("vif-agent-init", { terminated: { exitCode: 1, reason: "Error" } }),
        ],
      }),
      /^init container "vif-agent-init" failed: exit code 1 \(Error\)$/,
      /-c vif-agent-init --previous/,
    ],
    [
      "a missing ConfigMap",
      pod({
        phase: "Pending",
        containerStatuses: [cs("vif-agent", {
          waiting: {
            reason: "CreateContainerConfigError",
            message: 'configmap "web-config" not found',
          },
        })],
      }),
      /^container "vif-agent" is waiting: CreateContainerConfigError: configmap "web-config" not found$/,
      /kubectl describe pod web-1 -n default/,
    ],
    [
      "not ready",
      pod({ phase: "Running", containerStatuses: [cs("vif-agent", { running: {} })] }),
      /^container "vif-agent" is running but not ready$/,
      /describe/,
    ],
  ];
  for (const [what, p, text, hint] of cases) {
    const problem = podProblem(p);
    assert(problem, what);
    assertMatch(problem.text, text);
    assertMatch(problem.hint, hint);
  }
  assertEquals(podProblem(pod({ phase: "Pending" })), undefined);
});

// --- against the fake API server --------------------------------------------

interface Cluster {
  t: TestApi;
  store: Store;
  admin: WorkloadApi;
  as(token: string): WorkloadApi;
}

/**
 * Runs `fn` against a fake API server that authorizes by RBAC from its
 * store: `admin` (system:masters), `dev` (nothing until granted), `viewer`.
 */
async function withCluster(fn: (c: Cluster) => Promise<void>): Promise<void> {
  const store = new Store({ serviceCidr: TEST_SERVICE_CIDR });
  for (const o of bootstrapRbac()) store.create(structuredClone(o));
  store.create({
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "Role",
    metadata: { name: "viewer", namespace: "default" },
    rules: [
      {
        apiGroups: ["apps"],
        resources: ["deployments", "statefulsets", "replicasets"],
        verbs: ["get", "list"],
      },
      { apiGroups: [""], resources: ["services", "pods"], verbs: ["get", "list"] },
    ],
  } as KubeObject);
  store.create({
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "RoleBinding",
    metadata: { name: "viewer", namespace: "default" },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "viewer" },
    subjects: [{ kind: "User", name: "viewer" }],
  } as KubeObject);
  await withApi(async (t) => {
    const as = (token: string) =>
      workloadApi({
        server: t.api.url,
        caPem: t.tls.caPem,
        headers: { Authorization: `Bearer ${token}` },
      });
    await fn({ t, store, admin: as(ADMIN_TOKEN), as });
  }, {
    store,
    tokens: {
      [ADMIN_TOKEN]: { user: "admin", groups: ["system:masters"] },
      [DEV_TOKEN]: { user: "dev" },
      [VIEWER_TOKEN]: { user: "viewer" },
    },
    authorize: (a) => rbacAuthorize(store, a),
  });
}

/** Binds `dev` in `default` to a Role of interceptRules(): what vif says an intercepting user needs. */
function grantIntercept(store: Store): void {
  store.create({
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "Role",
    metadata: { name: "vif-intercept", namespace: "default" },
    rules: interceptRules(),
  } as KubeObject);
  store.create({
    apiVersion: "rbac.authorization.k8s.io/v1",
    kind: "RoleBinding",
    metadata: { name: "vif-intercept", namespace: "default" },
    roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: "vif-intercept" },
    subjects: [{ kind: "User", name: "dev" }],
  } as KubeObject);
}

/** Creates a workload and the Services, as a user's manifests would. */
function deploy(store: Store, kind: WorkloadKind, name = "web", metrics = true): void {
  store.create(workloadObject(kind, name) as unknown as KubeObject);
  for (const s of services(name, metrics)) {
    if (!store.get({ resource: "services", namespace: "default", name: s.metadata!.name! })) {
      const { clusterIP: _, ...spec } = s.spec!;
      store.create({ ...s, spec } as unknown as KubeObject);
    }
  }
}

/** What the kubelet stand-in makes of a pod: its status, or undefined for Running and Ready. */
type PodFate = (pod: V1Pod) => Obj | undefined;

function readyStatus(pod: V1Pod): Obj {
  return {
    phase: "Running",
    podIP: "198.18.0.9",
    conditions: [
      { type: "PodScheduled", status: "True" },
      { type: "Initialized", status: "True" },
      { type: "Ready", status: "True" },
    ],
    initContainerStatuses: (pod.spec?.initContainers ?? []).map((c) => ({
      name: c.name,
      image: c.image,
      imageID: "",
      ready: true,
      restartCount: 0,
      state: { terminated: { exitCode: 0, reason: "Completed" } },
    })),
    containerStatuses: pod.spec!.containers.map((c) => ({
      name: c.name,
      image: c.image,
      imageID: "",
      ready: true,
      restartCount: 0,
      started: true,
      state: { running: { startedAt: "2026-01-01T00:00:00Z" } },
    })),
  };
}

/** One round: the workload controllers, then every pod gets `fate(pod)` or Running and Ready. */
function step(store: Store, fate: PodFate = () => undefined): void {
  reconcileDeployments(store, new Date(), () => {});
  reconcileReplicaSets(store, () => {});
  reconcileStatefulSets(store, () => {});
  for (const p of store.list("pods")) {
    const status = fate(p as unknown as V1Pod) ?? readyStatus(p as unknown as V1Pod);
    if (canonicalJson(status) === canonicalJson((p as Obj).status)) continue;
    store.modify(
      { resource: "pods", namespace: p.metadata.namespace!, name: p.metadata.name! },
      (o) => {
        (o as Obj).status = status;
      },
    );
  }
}

/** Rounds until nothing changes (at most 50). */
function settle(store: Store, fate?: PodFate): void {
  for (let i = 0; i < 50; i++) {
    const before = store.resourceVersion;
    step(store, fate);
    if (store.resourceVersion === before) return;
  }
  throw new Error("the cluster does not settle");
}

/** waitForAgents() options on a fake clock: each wait is one round of the cluster. */
function fakeTime(store: Store, fate?: PodFate): {
  sleep: (ms: number) => Promise<void>;
  now: () => number;
  lines: string[];
  onProgress: (line: string) => void;
} {
  let clock = 0;
  const lines: string[] = [];
  return {
    sleep: (ms) => {
      clock += ms;
      step(store, fate);
      return Promise.resolve();
    },
    now: () => clock,
    lines,
    onProgress: (line) => lines.push(line),
  };
}

function stored(store: Store, kind: WorkloadKind, name = "web"): Workload {
  const resource =
    { Deployment: "deployments", StatefulSet: "statefulsets", ReplicaSet: "replicasets" }[kind];
  const o = store.get({ resource, namespace: "default", name });
  assert(o, `no ${kind} ${name}`);
  return { ...(o as unknown as Workload), kind };
}

function podsOf(store: Store, app = "web"): V1Pod[] {
  return store.list("pods", { namespace: "default" })
    .filter((p) => p.metadata.labels?.app === app) as unknown as V1Pod[];
}

for (const kind of ["Deployment", "StatefulSet", "ReplicaSet"] as WorkloadKind[]) {
  Deno.test(
    `injectAgent() and removeAgent() on a ${kind} as a user with interceptRules(): rolled out, then the original template exactly`,
    options,
    async () => {
      await withCluster(async ({ store, as }) => {
        grantIntercept(store);
        deploy(store, kind);
        settle(store);
        const original = structuredClone(stored(store, kind).spec.template);
        const before = podsOf(store).map((p) => p.metadata!.name!);
        assertEquals(before.length, 2);
        const dev = as(DEV_TOKEN);
        const progress: string[] = [];
        const result = await injectAgent(dev, { namespace: "default", name: "web" }, {
          manager: MANAGER,
          port: "http",
          onProgress: (line) => progress.push(line),
        });
        assertEquals([result.action, result.reason, result.workload.kind], [
          "injected",
          "new",
          kind,
        ]);
        assertEquals(result.config.ports.map((p) => p.containerPort), [8080, 9090]);
        assertEquals(progress[0], `patching ${kind.toLowerCase()} "web" in namespace "default"`);
        // A ReplicaSet does not roll: its pods are deleted and made again.
        assertEquals(result.restarted.sort(), kind === "ReplicaSet" ? before.sort() : []);
        const injected = stored(store, kind);
        assertEquals(
          injected.metadata.annotations?.[AGENT_ANNOTATION.original],
          JSON.stringify(original),
        );
        assertEquals(
          injected.spec.template.spec!.containers.map((c) => c.name),
          ["web", "log", AGENT_CONTAINER],
        );

        const time = fakeTime(store);
        const waited = await waitForAgents(dev, result.workload, { timeoutMs: 60_000, ...time });
        assertEquals(waited.replicas, 2);
        assertEquals(waited.pods.length, 2);
        for (const p of podsOf(store)) {
          assert(p.spec!.containers.some((c) => c.name === AGENT_CONTAINER), p.metadata!.name);
        }
        assertEquals(time.lines[0], "rolling out 0/2");
        assert(time.lines.includes("rolling out 2/2"), time.lines.join("\n"));
        for (const name of waited.pods) assert(time.lines.includes(`agent ready in ${name}`));

        // Again for the same port: nothing to do.
        const again = await injectAgent(dev, { namespace: "default", name: "web" }, {
          manager: MANAGER,
          port: "9090",
        });
        assertEquals(again.action, "present");

        // A claim of an intercept, as `vif intercept` writes it: it goes with the agent.
        store.modify(
          { resource: WORKLOAD_RESOURCES[kind], namespace: "default", name: "web" },
          (o) => {
            o.metadata.annotations = {
              ...o.metadata.annotations,
              [AGENT_ANNOTATION.intercepts]: "{}",
            };
          },
        );
        const removed = await removeAgent(dev, result.workload);
        assertEquals([removed.action, removed.changedSince, removed.differences], [
          "removed",
          false,
          [],
        ]);
        const back = stored(store, kind);
        assertEquals(canonicalJson(back.spec.template), canonicalJson(original));
        assertEquals(
          Object.keys(back.metadata.annotations ?? {}).filter((k) => k.startsWith("vif.dev/")),
          [],
        );
        const gone = fakeTime(store);
        await waitForAgents(dev, result.workload, { timeoutMs: 60_000, absent: true, ...gone });
        for (const p of podsOf(store)) {
          assert(!p.spec!.containers.some((c) => c.name === AGENT_CONTAINER), p.metadata!.name);
        }
        assertEquals((await removeAgent(dev, result.workload)).action, "absent");
      });
    },
  );
}

Deno.test(
  "injectAgent() for a user who may read but not patch: two lines, what was refused and what to do",
  options,
  async () => {
    await withCluster(async ({ store, as }) => {
      deploy(store, "Deployment");
      const e = await assertRejects(
        () =>
          injectAgent(as(VIEWER_TOKEN), { namespace: "default", name: "web" }, {
            manager: MANAGER,
            port: "http",
          }),
        KubeError,
      );
      assertEquals(e.message, 'you may not patch deployments "web" in namespace "default"');
      assertEquals(
        (e as KubeError).hint,
        "Ask a cluster admin for vif's intercept permissions in that namespace; " +
          'check with "kubectl auth can-i patch deployments -n default".',
      );
      assertEquals((e as KubeError).status, 403);
      // Who may not even read gets the same two lines for the read.
      const none = await assertRejects(
        () =>
          injectAgent(as(DEV_TOKEN), { namespace: "default", name: "web" }, { manager: MANAGER }),
        KubeError,
      );
      assertEquals(none.message, 'you may not get deployments "web" in namespace "default"');
      assertEquals(stored(store, "Deployment").metadata.annotations, undefined);
    });
  },
);

Deno.test(
  "injectAgent() reads again and retries when the workload changes between read and patch",
  options,
  async () => {
    await withCluster(async ({ store, admin }) => {
      deploy(store, "Deployment");
      let patches = 0;
      const racing: WorkloadApi = {
        ...admin,
        patch: <T>(path: string, body: unknown) => {
          patches++;
          // Someone else writes first, each time until the third.
          if (patches < 3) {
            store.modify({ resource: "deployments", namespace: "default", name: "web" }, (o) => {
              o.metadata.labels = { ...o.metadata.labels, [`touched-${patches}`]: "yes" };
            });
          }
          return admin.patch<T>(path, body);
        },
      };
      const result = await injectAgent(racing, { namespace: "default", name: "web" }, {
        manager: MANAGER,
        port: "http",
      });
      assertEquals(result.action, "injected");
      assertEquals(patches, 3);
      const d = stored(store, "Deployment");
      // Their writes are kept; ours is in.
      assertEquals(d.metadata.labels, { "touched-1": "yes", "touched-2": "yes" });
      assert(d.spec.template.spec!.containers.some((c) => c.name === AGENT_CONTAINER));
      // Never quiet: a KubeError after the attempts.
      const always: WorkloadApi = {
        ...admin,
        patch: <T>(path: string, body: unknown) => {
          store.modify({ resource: "deployments", namespace: "default", name: "web" }, (o) => {
            o.metadata.labels = { ...o.metadata.labels, again: String(Math.random()) };
          });
          return admin.patch<T>(path, body);
        },
      };
      const e = await assertRejects(
        () =>
          removeAgent(always, { namespace: "default", kind: "Deployment", name: "web" }, {
            attempts: 2,
          }),
        KubeError,
      );
      assertEquals(
        e.message,
        'deployment "web" in namespace "default" changed under vif 2 times in a row',
      );
    });
  },
);

for (const kind of ["Deployment", "StatefulSet", "ReplicaSet"] as WorkloadKind[]) {
  Deno.test(
    `injectAgent() for a port a new Service reaches plans a ${kind} again from the original; every pod gets the new agent`,
    options,
    async () => {
      await withCluster(async ({ store, admin }) => {
        deploy(store, kind, "web", false);
        settle(store);
        const original = structuredClone(stored(store, kind).spec.template);
        const ref = { namespace: "default", name: "web" };
        const first = await injectAgent(admin, ref, { manager: MANAGER });
        assertEquals(first.config.ports.map((p) => [p.containerPort, p.agentPort]), [[
          8080,
          9900,
        ]]);
        await waitForAgents(admin, first.workload, { timeoutMs: 30_000, ...fakeTime(store) });
        store.create({
          apiVersion: "v1",
          kind: "Service",
          metadata: { name: "web-metrics", namespace: "default" },
          spec: { selector: { app: "web" }, ports: [{ port: 9090, targetPort: 9090 }] },
        } as KubeObject);
        const second = await injectAgent(admin, ref, { manager: MANAGER, port: "9090" });
        assertEquals([second.action, second.reason], ["injected", "ports"]);
        assertEquals(second.config.ports.map((p) => [p.containerPort, p.agentPort, p.takeover]), [
          [8080, 9900, "name"],
          [9090, 9901, "redirect"],
        ]);
        // The pods of the first injection go too, a ReplicaSet's by deletion.
        assertEquals(second.restarted.length, kind === "ReplicaSet" ? 2 : 0);
        const w = stored(store, kind);
        assertEquals(w.metadata.annotations?.[AGENT_ANNOTATION.original], JSON.stringify(original));
        assert(w.spec.template.spec!.initContainers?.some((c) => c.name === AGENT_INIT_CONTAINER));
        const waited = await waitForAgents(admin, first.workload, {
          timeoutMs: 30_000,
          ...fakeTime(store),
        });
        assertEquals(waited.pods.length, 2);
        for (const p of podsOf(store)) {
          const agent = p.spec!.containers.find((c) => c.name === AGENT_CONTAINER)!;
          const config = parseAgentConfig(
            agent.env!.find((e) => e.name === AGENT_CONFIG_ENV)!.value!,
          );
          assertEquals(config.ports.length, 2, p.metadata!.name);
        }
        await removeAgent(admin, first.workload);
        assertEquals(canonicalJson(stored(store, kind).spec.template), canonicalJson(original));
      });
    },
  );
}

Deno.test(
  "removeAgent() of a workload changed since keeps the change and says where it differs",
  options,
  async () => {
    await withCluster(async ({ store, admin }) => {
      deploy(store, "Deployment");
      const injected = await injectAgent(admin, { namespace: "default", name: "web" }, {
        manager: MANAGER,
        port: "http",
      });
      store.modify({ resource: "deployments", namespace: "default", name: "web" }, (o) => {
        const d = o as unknown as Workload;
        d.spec.template.spec!.containers[0]!.image = "nginx:1.27";
        d.spec.template.spec!.containers[0]!.env!.push({ name: "NEW", value: "1" });
      });
      const removed = await removeAgent(admin, injected.workload);
      assertEquals([removed.action, removed.changedSince], ["removed", true]);
      assertEquals(removed.differences, ["spec.containers[0].env", "spec.containers[0].image"]);
      const t = stored(store, "Deployment").spec.template;
      assertEquals(t.spec!.containers.map((c) => c.name), ["web", "log"]);
      assertEquals(t.spec!.containers[0]!.image, "nginx:1.27");
      assertEquals(t.spec!.containers[0]!.ports![0]!.name, "http");
      assertEquals(t.spec!.initContainers, undefined);
      assertEquals(t.spec!.volumes!.map((v) => v.name), ["config", "cache"]);
      assertEquals(
        stored(store, "Deployment").metadata.annotations?.[AGENT_ANNOTATION.original],
        undefined,
      );
    });
  },
);

Deno.test(
  "listInjected() finds every workload with the agent, in all namespaces or the ones named",
  options,
  async () => {
    await withCluster(async ({ store, admin, as }) => {
      deploy(store, "Deployment", "web");
      deploy(store, "StatefulSet", "db-web");
      deploy(store, "Deployment", "plain");
      await injectAgent(admin, { namespace: "default", name: "web" }, {
        manager: MANAGER,
        port: "http",
      });
      await injectAgent(admin, { namespace: "default", name: "db-web" }, {
        manager: MANAGER,
        port: "http",
      });
      const all = await listInjected(admin);
      assertEquals(all.map((w) => `${w.workload.kind}/${w.workload.name}`), [
        "Deployment/web",
        "StatefulSet/db-web",
      ]);
      assertEquals(all[0]?.config?.container, "web");
      assertEquals([all[0]?.stale, all[0]?.changedSince], [false, false]);
      assertEquals(await listInjected(admin, { namespaces: ["kube-system"] }), []);
      assertEquals((await listInjected(as(VIEWER_TOKEN), { namespaces: ["default"] })).length, 2);
      const e = await assertRejects(() => listInjected(as(VIEWER_TOKEN)), KubeError);
      assertEquals(e.message, "you may not list deployments in any namespace");
    });
  },
);

Deno.test(
  "waitForAgents() runs out of time naming the pod's state: the image it cannot pull",
  options,
  async () => {
    await withCluster(async ({ store, admin }) => {
      deploy(store, "Deployment");
      settle(store);
      const result = await injectAgent(admin, { namespace: "default", name: "web" }, {
        manager: MANAGER,
        port: "http",
        image: "registry.example/vif:missing",
      });
      const fate: PodFate = (pod) => {
        if (!pod.spec!.containers.some((c) => c.name === AGENT_CONTAINER)) return undefined;
        return {
          phase: "Pending",
          conditions: [{ type: "PodScheduled", status: "True" }, {
            type: "Ready",
            status: "False",
          }],
          containerStatuses: pod.spec!.containers.map((c) => ({
            name: c.name,
            image: c.image,
            imageID: "",
            ready: false,
            restartCount: 0,
            state: c.name === AGENT_CONTAINER
              ? { waiting: { reason: "ImagePullBackOff", message: "Back-off pulling image" } }
              : { running: {} },
          })),
        };
      };
      const time = fakeTime(store, fate);
      const e = await assertRejects(
        () =>
          waitForAgents(admin, result.workload, { timeoutMs: 10_000, intervalMs: 1000, ...time }),
        KubeError,
      );
      assertMatch(
        e.message,
        /^the agent is ready in 0 of 2 pods of deployment "web" in namespace "default" after 10 s: pod "web-[a-z0-9]+-[a-z0-9]+": container "vif-agent" cannot pull image "registry\.example\/vif:missing": ImagePullBackOff: Back-off pulling image$/,
      );
      assertMatch((e as KubeError).hint, /imagePullSecret/);
      assert(
        time.lines.some((l) => /^pod web-.*: container "vif-agent" cannot pull image/.test(l)),
      );
      // Bounded: one look per second of the limit, and one more.
      assert(time.now() <= 10_000);
    });
  },
);

Deno.test("waitForAgents() stops at a passed progress deadline", options, async () => {
  await withCluster(async ({ store, admin }) => {
    deploy(store, "Deployment");
    settle(store);
    const result = await injectAgent(admin, { namespace: "default", name: "web" }, {
      manager: MANAGER,
      port: "http",
    });
    step(store, () => ({ phase: "Pending" }));
    store.modify({ resource: "deployments", namespace: "default", name: "web" }, (o) => {
      const d = o as unknown as Workload;
      d.status = {
        ...d.status,
        observedGeneration: d.metadata.generation,
        conditions: [{
          type: "Progressing",
          status: "False",
          reason: "ProgressDeadlineExceeded",
          message: 'ReplicaSet "web-x" has timed out progressing.',
        }],
      };
    });
    const e = await assertRejects(
      () =>
        waitForAgents(admin, result.workload, {
          timeoutMs: 600_000,
          sleep: () => Promise.resolve(),
        }),
      KubeError,
    );
    assertMatch(
      e.message,
      /: its rollout passed its progress deadline: ReplicaSet "web-x" has timed out progressing\.$/,
    );
  });
});

Deno.test(
  "waitForAgents() stops when the new ReplicaSet cannot make pods (an admission policy refused them)",
  options,
  async () => {
    await withCluster(async ({ store, admin }) => {
      deploy(store, "Deployment");
      settle(store);
      const result = await injectAgent(admin, { namespace: "default", name: "web" }, {
        manager: MANAGER,
        port: "9090",
      });
      // What the ReplicaSet controller writes when pod creation is forbidden (Pod Security).
      reconcileDeployments(store, new Date(), () => {});
      const fresh = store.list("replicasets", { namespace: "default" }).find((rs) =>
        JSON.stringify(rs).includes(AGENT_CONTAINER)
      )!;
      store.modify(
        { resource: "replicasets", namespace: "default", name: fresh.metadata.name! },
        (o) => {
          (o as Obj).status = {
            replicas: 0,
            conditions: [{
              type: "ReplicaFailure",
              status: "True",
              reason: "FailedCreate",
              message:
                'pods "web-x" is forbidden: violates PodSecurity "baseline:latest": non-default capabilities (container "vif-agent-init" must not include "NET_ADMIN" in securityContext.capabilities.add)',
            }],
          };
        },
      );
      const e = await assertRejects(
        () =>
          waitForAgents(admin, result.workload, {
            timeoutMs: 600_000,
            sleep: () => Promise.resolve(),
          }),
        KubeError,
      );
      assertMatch(
        e.message,
        /^the agent is ready in 0 of 2 pods of deployment "web" in namespace "default": its ReplicaSet cannot make pods: pods "web-x" is forbidden: violates PodSecurity/,
      );
    });
  },
);

Deno.test(
  "managerForAgents() reads the manager's CA from its ConfigMap with the user's credentials",
  options,
  async () => {
    await withCluster(async ({ store, admin }) => {
      await assertRejects(
        () => managerForAgents(admin, "vif-system"),
        KubeError,
        'no traffic-manager in namespace "vif-system"',
      );
      store.create(
        { apiVersion: "v1", kind: "Namespace", metadata: { name: "vif-system" } } as KubeObject,
      );
      store.create({
        apiVersion: "v1",
        kind: "ConfigMap",
        metadata: { name: "traffic-manager-ca", namespace: "vif-system" },
        data: { "ca.crt": MANAGER.caPem },
      } as KubeObject);
      assertEquals(await managerForAgents(admin, "vif-system"), MANAGER);
    });
  },
);

Deno.test(
  "kubectl reads the injected Deployment, rolls it out, and finds what each user may do",
  options,
  async () => {
    await withCluster(async ({ t, store, admin }) => {
      deploy(store, "Deployment");
      settle(store);
      const original = stored(store, "Deployment").spec.template;
      await injectAgent(admin, { namespace: "default", name: "web" }, {
        manager: MANAGER,
        port: "http",
      });
      settle(store);
      const kc = await writeKubeconfig(t, ADMIN_TOKEN);
      const get = await kubectl(t, kc, ["get", "deployment", "web", "-n", "default", "-o", "json"]);
      assertEquals(get.code, 0, get.stderr);
      const d = JSON.parse(get.stdout) as Workload;
      assertEquals(d.spec.template.spec!.containers.map((c) => c.name), [
        "web",
        "log",
        AGENT_CONTAINER,
      ]);
      assertEquals(d.metadata.annotations?.[AGENT_ANNOTATION.original], JSON.stringify(original));
      const status = await kubectl(t, kc, [
        "rollout",
        "status",
        "deployment/web",
        "-n",
        "default",
        "--timeout=20s",
      ]);
      assertEquals(status.code, 0, status.stderr);
      assertMatch(status.stdout, /successfully rolled out/);
      const pods = await kubectl(t, kc, [
        "get",
        "pods",
        "-n",
        "default",
        "-l",
        "app=web",
        "-o",
        'jsonpath={range .items[*]}{.spec.containers[*].name}{"\\n"}{end}',
      ]);
      assertEquals(pods.stdout.trim().split("\n"), ["web log vif-agent", "web log vif-agent"]);
      const viewer = await writeKubeconfig(t, VIEWER_TOKEN, "viewer");
      const can = await kubectl(t, viewer, [
        "auth",
        "can-i",
        "patch",
        "deployments",
        "-n",
        "default",
      ]);
      assertEquals(can.stdout.trim(), "no");
      grantIntercept(store);
      const dev = await writeKubeconfig(t, DEV_TOKEN, "dev");
      for (
        const [verb, resource] of [["patch", "deployments"], ["list", "services"], [
          "delete",
          "pods",
        ]]
      ) {
        const r = await kubectl(t, dev, ["auth", "can-i", verb!, resource!, "-n", "default"]);
        assertEquals(r.stdout.trim(), "yes", `${verb} ${resource}: ${r.stderr}`);
      }
      // The agent-less Deployment, as kubectl shows it after the removal.
      await removeAgent(admin, { namespace: "default", kind: "Deployment", name: "web" });
      const after = await kubectl(t, kc, [
        "get",
        "deployment",
        "web",
        "-n",
        "default",
        "-o",
        "json",
      ]);
      const restored = JSON.parse(after.stdout) as Workload;
      assertEquals(canonicalJson(restored.spec.template), canonicalJson(original));
    });
  },
);
