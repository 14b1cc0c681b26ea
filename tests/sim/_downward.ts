/**
 * The downward API as the kubelet resolves it, for env vars and for
 * downward API volume files: what a `fieldRef` (`metadata.name`,
 * `metadata.labels['app']`, `status.podIPs`, …) or a `resourceFieldRef`
 * (`limits.cpu` with a divisor) names, for one pod on one node. Pure.
 *
 * @module
 */

import type { Container } from "./_pod_spec.ts";
import { subscriptOf } from "./apiserver/_pod_validation.ts";

/** What the downward API can tell about a pod. */
export interface PodFacts {
  namespace: string;
  name: string;
  uid: string;
  labels: Record<string, string>;
  annotations: Record<string, string>;
  nodeName: string;
  serviceAccountName: string;
  podIPs: string[];
  hostIPs: string[];
}

/** A node's allocatable resources, for limits a container does not set. */
export interface Allocatable {
  cpu: string;
  memory: string;
  "ephemeral-storage": string;
}

/** A `fieldRef` or `resourceFieldRef` the kubelet cannot resolve. */
export class DownwardApiError extends RangeError {
  /**
   * @param message what is wrong
   */
  constructor(message: string) {
    super(message);
    this.name = "DownwardApiError";
  }
}

/**
 * A map as the downward API writes `metadata.labels` or `.annotations` to a
 * file: `key="value"` lines, sorted by key, values quoted as Go's `%q`.
 *
 * @param m the map
 * @returns the text, without a final newline
 */
export function formatMap(m: Record<string, string>): string {
  return Object.keys(m).sort().map((k) => `${k}=${JSON.stringify(m[k])}`).join("\n");
}

/**
 * The value of a `fieldRef`.
 *
 * @param path the `fieldPath`
 * @param facts the pod
 * @param where `env` (labels and annotations only with a subscript) or `volume`
 * @returns the value
 * @throws {DownwardApiError} for a path the kubelet does not resolve there
 */
export function fieldRefValue(path: string, facts: PodFacts, where: "env" | "volume"): string {
  const sub = subscriptOf(path);
  if (sub) return (sub[0] === "labels" ? facts.labels : facts.annotations)[sub[1]] ?? "";
  switch (path) {
    case "metadata.name":
      return facts.name;
    case "metadata.namespace":
      return facts.namespace;
    case "metadata.uid":
      return facts.uid;
  }
  if (where === "volume") {
    if (path === "metadata.labels") return formatMap(facts.labels);
    if (path === "metadata.annotations") return formatMap(facts.annotations);
  } else {
    switch (path) {
      case "spec.nodeName":
        return facts.nodeName;
      case "spec.serviceAccountName":
        return facts.serviceAccountName;
      case "status.podIP":
        return facts.podIPs[0] ?? "";
      case "status.podIPs":
        return facts.podIPs.join(",");
      case "status.hostIP":
        return facts.hostIPs[0] ?? "";
      case "status.hostIPs":
        return facts.hostIPs.join(",");
    }
  }
  throw new DownwardApiError(`unsupported fieldPath: ${path}`);
}

const BINARY: Record<string, number> = {
  Ki: 2 ** 10,
  Mi: 2 ** 20,
  Gi: 2 ** 30,
  Ti: 2 ** 40,
  Pi: 2 ** 50,
  Ei: 2 ** 60,
};
const DECIMAL: Record<string, number> = {
  n: 1e-9,
  u: 1e-6,
  m: 1e-3,
  "": 1,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  P: 1e15,
  E: 1e18,
};

/**
 * A resource quantity (`500m`, `1.5`, `128Mi`, `1e3`) in base units.
 *
 * @param q the quantity
 * @returns its value
 * @throws {DownwardApiError} when it does not parse
 */
export function parseQuantity(q: string | number): number {
  if (typeof q === "number") return q;
  const m = /^([+-]?[0-9.]+)([eE][+-]?\d+|[KMGTPE]i|[numkMGTPE]?)$/.exec(q.trim());
  if (!m || !/^[+-]?(\d+\.?\d*|\.\d+)$/.test(m[1]!)) {
    throw new DownwardApiError(`quantities must match the regular expression: ${q}`);
  }
  const n = Number(m[1]);
  const suffix = m[2]!;
  if (/^[eE]/.test(suffix)) return n * 10 ** Number(suffix.slice(1));
  return n * (BINARY[suffix] ?? DECIMAL[suffix]!);
}

const RESOURCES = [
  "limits.cpu",
  "limits.memory",
  "limits.ephemeral-storage",
  "requests.cpu",
  "requests.memory",
  "requests.ephemeral-storage",
];

/**
 * The value of a `resourceFieldRef`, as the kubelet computes it: a limit the
 * container does not set is the node's allocatable, a request it does not set
 * is its limit (the API's default) or 0; divided by the divisor (default 1)
 * and rounded up, CPU in millicores.
 *
 * @param ref the resource and divisor
 * @param container the container it names
 * @param allocatable the node's
 * @returns the value as an integer string
 * @throws {DownwardApiError} for an unsupported resource or a bad quantity
 */
export function resourceFieldValue(
  ref: { resource: string; divisor?: string | number },
  container: Container,
  allocatable: Allocatable,
): string {
  if (!RESOURCES.includes(ref.resource)) {
    throw new DownwardApiError(`unsupported container resource : ${ref.resource}`);
  }
  const [kind, name] = ref.resource.split(".") as ["limits" | "requests", keyof Allocatable];
  const limit = container.resources?.limits?.[name] ?? allocatable[name];
  const raw = kind === "limits" ? limit : container.resources?.requests?.[name] ??
    container.resources?.limits?.[name] ?? 0;
  const divisor = parseQuantity(ref.divisor ?? 1);
  if (divisor <= 0) throw new DownwardApiError(`invalid divisor: ${ref.divisor}`);
  const value = parseQuantity(raw);
  if (name === "cpu") {
    return String(Math.ceil(Math.ceil(value * 1000) / Math.ceil(divisor * 1000)));
  }
  return String(Math.ceil(Math.ceil(value) / Math.ceil(divisor)));
}
