/**
 * Server-side printing: `meta.k8s.io/v1` `Table` responses, which `kubectl
 * get` asks for (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`),
 * with the columns kube-apiserver's printers give each kind.
 *
 * @module
 */

import type { ResourceInfo } from "./resources.ts";
import type { KubeObject } from "./store.ts";
import { labelSelectorText } from "./selectors.ts";

/** `metav1.TableColumnDefinition`. */
export interface TableColumn {
  name: string;
  type: string;
  format: string;
  description: string;
  priority: number;
}

type Obj = Record<string, unknown>;

/**
 * `duration.HumanDuration` of k8s.io/apimachinery: `5s`, `3m20s`, `2d4h`.
 *
 * @param ms the duration in milliseconds
 * @returns the text kubectl shows in AGE
 */
export function humanDuration(ms: number): string {
  const seconds = Math.floor(ms / 1000);
  if (seconds < -1) return "<invalid>";
  if (seconds < 0) return "0s";
  if (seconds < 120) return `${seconds}s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 10) return seconds % 60 === 0 ? `${minutes}m` : `${minutes}m${seconds % 60}s`;
  if (minutes < 180) return `${minutes}m`;
  const hours = Math.floor(minutes / 60);
  if (hours < 8) return minutes % 60 === 0 ? `${hours}h` : `${hours}h${minutes % 60}m`;
  if (hours < 48) return `${hours}h`;
  if (hours < 24 * 8) {
    return hours % 24 === 0 ? `${hours / 24}d` : `${Math.floor(hours / 24)}d${hours % 24}h`;
  }
  if (hours < 24 * 365 * 2) return `${Math.floor(hours / 24)}d`;
  const days = Math.floor(hours / 24);
  if (hours < 24 * 365 * 8) {
    return days % 365 === 0 ? `${days / 365}y` : `${Math.floor(days / 365)}y${days % 365}d`;
  }
  return `${Math.floor(days / 365)}y`;
}

function col(
  name: string,
  description: string,
  priority = 0,
  type = "string",
  format = "",
): TableColumn {
  return { name, type, format, description, priority };
}

const NAME = col("Name", "Name must be unique within a namespace.", 0, "string", "name");
const AGE = col(
  "Age",
  "CreationTimestamp is a timestamp representing the server time when this object was created.",
);

function o(v: unknown): Obj {
  return v !== null && typeof v === "object" && !Array.isArray(v) ? v as Obj : {};
}
function arr(v: unknown): Obj[] {
  return Array.isArray(v) ? v.map(o) : [];
}

interface Printer {
  columns: TableColumn[];
  cells(x: KubeObject, age: string, now: Date): unknown[];
}

/**
 * A pod's row as kube-apiserver's `printPod` makes it: READY counts the app
 * containers that are ready and running; STATUS is the pod's phase (or
 * reason), then what its init containers say while it initializes
 * (`Init:1/2`, `Init:Error`, `Init:CrashLoopBackOff`), then the last waiting
 * or terminated reason among its containers; RESTARTS adds `(5s ago)` after
 * the latest restart.
 */
function podCells(p: KubeObject, age: string, now: Date): unknown[] {
  const spec = o(p.spec);
  const status = o(p.status);
  const containers = arr(spec.containers);
  const inits = arr(spec.initContainers);
  const statuses = arr(status.containerStatuses);
  let restarts = 0;
  let ready = 0;
  let lastRestart = 0;
  const noteRestart = (s: Obj) => {
    restarts += Number(s.restartCount) || 0;
    const finished = Date.parse(String(o(o(s.lastState).terminated).finishedAt ?? ""));
    if (!Number.isNaN(finished) && finished > lastRestart) lastRestart = finished;
  };
  let reason = String(status.reason || status.phase || "Pending");
  let initializing = false;
  const initStatuses = arr(status.initContainerStatuses);
  for (let i = 0; i < initStatuses.length; i++) {
    const s = initStatuses[i]!;
    noteRestart(s);
    const terminated = o(o(s.state).terminated);
    const waiting = o(o(s.state).waiting);
    if (o(s.state).terminated && Number(terminated.exitCode) === 0) continue;
    if (o(s.state).terminated) {
      reason = terminated.reason
        ? `Init:${terminated.reason}`
        : terminated.signal
        ? `Init:Signal:${terminated.signal}`
        : `Init:ExitCode:${terminated.exitCode}`;
    } else if (waiting.reason && waiting.reason !== "PodInitializing") {
      reason = `Init:${waiting.reason}`;
    } else {
      reason = `Init:${i}/${inits.length}`;
    }
    initializing = true;
    break;
  }
  const initialized = arr(status.conditions).some((c) =>
    c.type === "Initialized" && c.status === "True"
  );
  if (!initializing || initialized) {
    restarts = 0;
    lastRestart = 0;
    let running = false;
    for (let i = statuses.length - 1; i >= 0; i--) {
      const s = statuses[i]!;
      noteRestart(s);
      const state = o(s.state);
      const waiting = o(state.waiting);
      const terminated = o(state.terminated);
      if (state.waiting && waiting.reason) reason = String(waiting.reason);
      else if (state.terminated && terminated.reason) reason = String(terminated.reason);
      else if (state.terminated) {
        reason = terminated.signal
          ? `Signal:${terminated.signal}`
          : `ExitCode:${terminated.exitCode}`;
      } else if (s.ready === true && state.running) {
        running = true;
        ready++;
      }
    }
    if (reason === "Completed" && running) {
      reason = arr(status.conditions).some((c) => c.type === "Ready" && c.status === "True")
        ? "Running"
        : "NotReady";
    }
  }
  const terminal = status.phase === "Succeeded" || status.phase === "Failed";
  if (p.metadata.deletionTimestamp && !terminal) reason = "Terminating";
  const restartText = restarts !== 0 && lastRestart !== 0
    ? `${restarts} (${humanDuration(now.getTime() - lastRestart)} ago)`
    : String(restarts);
  return [
    p.metadata.name,
    `${ready}/${containers.length}`,
    reason,
    restartText,
    age,
    status.podIP ?? "<none>",
    spec.nodeName ?? "<none>",
    status.nominatedNodeName ?? "<none>",
    "<none>",
  ];
}

function templateContainers(spec: Obj): Obj[] {
  return arr(o(o(spec.template).spec).containers);
}

function servicePorts(spec: Obj): string {
  const ports = arr(spec.ports).map((p) =>
    p.nodePort ? `${p.port}:${p.nodePort}/${p.protocol}` : `${p.port}/${p.protocol}`
  );
  return ports.length ? ports.join(",") : "<none>";
}

function selectorText(sel: unknown): string {
  const m = Object.entries(o(sel)).map(([k, v]) => `${k}=${v}`);
  return m.length ? m.join(",") : "<none>";
}

const PRINTERS: Record<string, Printer> = {
  Pod: {
    columns: [
      NAME,
      col("Ready", "The aggregate readiness state of this pod for accepting traffic."),
      col("Status", "The aggregate status of the containers in this pod."),
      col(
        "Restarts",
        "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.",
        0,
        "string",
      ),
      AGE,
      col(
        "IP",
        "IP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.",
        1,
      ),
      col("Node", "NodeName is a request to schedule this pod onto a specific node.", 1),
      col(
        "Nominated Node",
        "nominatedNodeName is set only when this pod preempts other pods on the node.",
        1,
      ),
      col(
        "Readiness Gates",
        "If specified, all readiness gates will be evaluated for pod readiness.",
        1,
      ),
    ],
    cells: podCells,
  },
  Service: {
    columns: [
      NAME,
      col("Type", "type determines how the Service is exposed."),
      col(
        "Cluster-IP",
        "clusterIP is the IP address of the service and is usually assigned randomly.",
      ),
      col(
        "External-IP",
        "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.",
      ),
      col("Port(s)", "The list of ports that are exposed by this service."),
      AGE,
      col(
        "Selector",
        "Route service traffic to pods with label keys and values matching this selector.",
        1,
      ),
    ],
    cells: (s, age) => {
      const spec = o(s.spec);
      const external = Array.isArray(spec.externalIPs) && spec.externalIPs.length
        ? spec.externalIPs.join(",")
        : spec.type === "ExternalName"
        ? String(spec.externalName ?? "<none>")
        : "<none>";
      return [
        s.metadata.name,
        spec.type,
        spec.clusterIP ?? "<none>",
        external,
        servicePorts(spec),
        age,
        selectorText(spec.selector),
      ];
    },
  },
  Deployment: {
    columns: [
      NAME,
      col("Ready", "Number of the pod with ready state"),
      col(
        "Up-to-date",
        "Total number of non-terminated pods targeted by this deployment that have the desired template spec.",
        0,
        "integer",
      ),
      col(
        "Available",
        "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.",
        0,
        "integer",
      ),
      AGE,
      col("Containers", "Names of each container in the template.", 1),
      col("Images", "Images referenced by each container in the template.", 1),
      col(
        "Selector",
        "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment.",
        1,
      ),
    ],
    cells: (d, age) => {
      const spec = o(d.spec);
      const status = o(d.status);
      const containers = templateContainers(spec);
      return [
        d.metadata.name,
        `${Number(status.readyReplicas) || 0}/${Number(spec.replicas ?? 1)}`,
        Number(status.updatedReplicas) || 0,
        Number(status.availableReplicas) || 0,
        age,
        containers.map((c) => c.name).join(","),
        containers.map((c) => c.image).join(","),
        labelSelectorText(spec.selector) || "<none>",
      ];
    },
  },
  ReplicaSet: {
    columns: [
      NAME,
      col(
        "Desired",
        "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1.",
        0,
        "integer",
      ),
      col(
        "Current",
        "Replicas is the most recently observed number of replicas.",
        0,
        "integer",
      ),
      col(
        "Ready",
        "readyReplicas is the number of pods targeted by this ReplicaSet with a Ready Condition.",
        0,
        "integer",
      ),
      AGE,
      col("Containers", "Names of each container in the template.", 1),
      col("Images", "Images referenced by each container in the template.", 1),
      col(
        "Selector",
        "Selector is a label query over pods that should match the replica count.",
        1,
      ),
    ],
    cells: (r, age) => {
      const spec = o(r.spec);
      const status = o(r.status);
      const containers = templateContainers(spec);
      return [
        r.metadata.name,
        Number(spec.replicas ?? 1),
        Number(status.replicas) || 0,
        Number(status.readyReplicas) || 0,
        age,
        containers.map((c) => c.name).join(","),
        containers.map((c) => c.image).join(","),
        labelSelectorText(spec.selector) || "<none>",
      ];
    },
  },
  StatefulSet: {
    columns: [
      NAME,
      col("Ready", "Number of the pod with ready state"),
      AGE,
      col("Containers", "Names of each container in the template.", 1),
      col("Images", "Images referenced by each container in the template.", 1),
    ],
    cells: (s, age) => {
      const spec = o(s.spec);
      const containers = templateContainers(spec);
      return [
        s.metadata.name,
        `${Number(o(s.status).readyReplicas) || 0}/${Number(spec.replicas ?? 1)}`,
        age,
        containers.map((c) => c.name).join(","),
        containers.map((c) => c.image).join(","),
      ];
    },
  },
  Namespace: {
    columns: [NAME, col("Status", "The status of the namespace"), AGE],
    cells: (n, age) => [n.metadata.name, o(n.status).phase ?? "Active", age],
  },
  Node: {
    columns: [
      NAME,
      col("Status", "The status of the node"),
      col("Roles", "The roles of the node"),
      AGE,
      col("Version", "Kubelet Version reported by the node."),
      col("Internal-IP", "List of internal IPs.", 1),
      col("External-IP", "List of external IPs.", 1),
      col("OS-Image", "OS image reported by the node.", 1),
      col("Kernel-Version", "Kernel version reported by the node.", 1),
      col("Container-Runtime", "Container runtime and version reported by the node.", 1),
    ],
    cells: (n, age) => {
      const status = o(n.status);
      const ready = arr(status.conditions).find((c) => c.type === "Ready");
      const roles = Object.keys(n.metadata.labels ?? {})
        .filter((k) => k.startsWith("node-role.kubernetes.io/"))
        .map((k) => k.slice("node-role.kubernetes.io/".length));
      const addr = (t: string) =>
        arr(status.addresses).filter((a) => a.type === t).map((a) => a.address).join(",") ||
        "<none>";
      const info = o(status.nodeInfo);
      return [
        n.metadata.name,
        ready ? (ready.status === "True" ? "Ready" : "NotReady") : "Unknown",
        roles.length ? roles.join(",") : "<none>",
        age,
        info.kubeletVersion ?? "",
        addr("InternalIP"),
        addr("ExternalIP"),
        info.osImage ?? "<unknown>",
        info.kernelVersion ?? "<unknown>",
        info.containerRuntimeVersion ?? "<unknown>",
      ];
    },
  },
  Endpoints: {
    columns: [NAME, col("Endpoints", "Endpoints of the service"), AGE],
    cells: (e, age) => {
      const out: string[] = [];
      for (const s of arr(e.subsets)) {
        for (const a of arr(s.addresses)) {
          const ports = arr(s.ports);
          if (ports.length === 0) out.push(String(a.ip));
          for (const p of ports) out.push(`${a.ip}:${p.port}`);
        }
      }
      return [e.metadata.name, out.length ? out.join(",") : "<none>", age];
    },
  },
  Secret: {
    columns: [
      NAME,
      col("Type", "The type of the secret"),
      col("Data", "The number of entries in the secret", 0, "integer"),
      AGE,
    ],
    cells: (s, age) => [s.metadata.name, s.type ?? "Opaque", Object.keys(o(s.data)).length, age],
  },
  ConfigMap: {
    columns: [NAME, col("Data", "Number of data in configmap", 0, "integer"), AGE],
    cells: (c, age) => [
      c.metadata.name,
      Object.keys(o(c.data)).length + Object.keys(o(c.binaryData)).length,
      age,
    ],
  },
  ServiceAccount: {
    columns: [
      NAME,
      col(
        "Secrets",
        "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use.",
        0,
        "integer",
      ),
      AGE,
    ],
    cells: (s, age) => [s.metadata.name, arr(s.secrets).length, age],
  },
};

const DEFAULT_PRINTER: Printer = {
  columns: [
    NAME,
    col(
      "Created At",
      "CreationTimestamp is a timestamp representing the server time when this object was created.",
      0,
      "date",
    ),
  ],
  cells: (x) => [x.metadata.name, x.metadata.creationTimestamp],
};

/** What a row carries besides its cells (`?includeObject=`). */
export type IncludeObject = "None" | "Metadata" | "Object";

/**
 * A Table of objects of one resource.
 *
 * @param info the resource
 * @param objects the objects (rows)
 * @param options the Table's apiVersion, what each row includes, the list metadata, now
 * @returns the Table
 */
export function toTable(
  info: ResourceInfo,
  objects: KubeObject[],
  options: {
    apiVersion: string;
    includeObject: IncludeObject;
    metadata: Record<string, unknown>;
    now: Date;
    noHeaders?: boolean;
  },
): Record<string, unknown> {
  const printer = PRINTERS[info.kind] ?? DEFAULT_PRINTER;
  const rows = objects.map((x) => {
    const created = Date.parse(x.metadata.creationTimestamp ?? "");
    const age = Number.isNaN(created)
      ? "<unknown>"
      : humanDuration(options.now.getTime() - created);
    const row: Record<string, unknown> = { cells: printer.cells(x, age, options.now) };
    if (options.includeObject === "Object") row.object = x;
    else if (options.includeObject === "Metadata") {
      row.object = {
        kind: "PartialObjectMetadata",
        apiVersion: options.apiVersion,
        metadata: x.metadata,
      };
    }
    return row;
  });
  return {
    kind: "Table",
    apiVersion: options.apiVersion,
    metadata: options.metadata,
    ...(options.noHeaders ? {} : { columnDefinitions: printer.columns }),
    rows,
  };
}
