/**
 * The resource types the fake API server serves, with what discovery tells
 * about them (kind, scope, verbs, short names, subresources) and how the
 * server treats them (status subresource, what a delete returns).
 *
 * @module
 */

/** A subresource as discovery lists it (`pods/status`, `pods/portforward`). */
export interface SubresourceInfo {
  name: string;
  kind: string;
  verbs: string[];
  /** For `scale`: the group and version of the kind. */
  group?: string;
  version?: string;
}

/** One resource type: `pods`, `deployments.apps`, … */
export interface ResourceInfo {
  /** The API group, `""` for core. */
  group: string;
  version: string;
  /** The plural name in URLs: `pods`. */
  resource: string;
  singular: string;
  kind: string;
  namespaced: boolean;
  verbs: string[];
  shortNames?: string[];
  categories?: string[];
  subresources: SubresourceInfo[];
  /** Whether the main resource ignores `status` on writes (the `/status` subresource owns it). */
  hasStatus: boolean;
  /** Whether a delete answers with the object (pods, services, namespaces) rather than a Success Status. */
  deleteReturnsObject: boolean;
  /** Whether `metadata.generation` is kept and bumped on spec changes. */
  trackGeneration: boolean;
  /** Field selector labels the real server accepts beyond `metadata.name` and `metadata.namespace`. */
  fieldLabels: string[];
  /** Stable hash discovery shows (any base64 of 8 bytes will do for clients). */
  storageVersionHash: string;
}

/** The usual verbs of a storable resource. */
const ALL_VERBS = [
  "create",
  "delete",
  "deletecollection",
  "get",
  "list",
  "patch",
  "update",
  "watch",
];
const STATUS_VERBS = ["get", "patch", "update"];

function res(
  r:
    & Omit<
      ResourceInfo,
      | "verbs"
      | "subresources"
      | "hasStatus"
      | "deleteReturnsObject"
      | "trackGeneration"
      | "fieldLabels"
      | "storageVersionHash"
    >
    & Partial<ResourceInfo>,
): ResourceInfo {
  const hash = btoa(
    String.fromCharCode(
      ...new TextEncoder().encode(`${r.group}/${r.resource}`.padEnd(8, "_"))
        .slice(0, 8),
    ),
  );
  return {
    verbs: ALL_VERBS,
    subresources: [],
    hasStatus: false,
    deleteReturnsObject: false,
    trackGeneration: false,
    fieldLabels: [],
    storageVersionHash: hash,
    ...r,
  };
}

/** Every resource type served, in discovery order within each group version. */
export const RESOURCES: readonly ResourceInfo[] = [
  res({
    group: "",
    version: "v1",
    resource: "configmaps",
    singular: "configmap",
    kind: "ConfigMap",
    namespaced: true,
    shortNames: ["cm"],
  }),
  res({
    group: "",
    version: "v1",
    resource: "endpoints",
    singular: "endpoints",
    kind: "Endpoints",
    namespaced: true,
    shortNames: ["ep"],
  }),
  res({
    group: "",
    version: "v1",
    resource: "namespaces",
    singular: "namespace",
    kind: "Namespace",
    namespaced: false,
    verbs: ["create", "delete", "get", "list", "patch", "update", "watch"],
    shortNames: ["ns"],
    subresources: [
      { name: "finalize", kind: "Namespace", verbs: ["update"] },
      { name: "status", kind: "Namespace", verbs: STATUS_VERBS },
    ],
    hasStatus: true,
    deleteReturnsObject: true,
    fieldLabels: ["status.phase"],
  }),
  res({
    group: "",
    version: "v1",
    resource: "nodes",
    singular: "node",
    kind: "Node",
    namespaced: false,
    shortNames: ["no"],
    subresources: [{ name: "status", kind: "Node", verbs: STATUS_VERBS }],
    hasStatus: true,
    fieldLabels: ["spec.unschedulable"],
  }),
  res({
    group: "",
    version: "v1",
    resource: "pods",
    singular: "pod",
    kind: "Pod",
    namespaced: true,
    shortNames: ["po"],
    categories: ["all"],
    subresources: [
      { name: "log", kind: "Pod", verbs: ["get"] },
      { name: "portforward", kind: "PodPortForwardOptions", verbs: ["create", "get"] },
      { name: "status", kind: "Pod", verbs: STATUS_VERBS },
    ],
    hasStatus: true,
    deleteReturnsObject: true,
    fieldLabels: [
      "spec.nodeName",
      "spec.restartPolicy",
      "spec.schedulerName",
      "spec.serviceAccountName",
      "spec.hostNetwork",
      "status.phase",
      "status.podIP",
      "status.nominatedNodeName",
    ],
  }),
  res({
    group: "",
    version: "v1",
    resource: "secrets",
    singular: "secret",
    kind: "Secret",
    namespaced: true,
    fieldLabels: ["type"],
  }),
  res({
    group: "",
    version: "v1",
    resource: "serviceaccounts",
    singular: "serviceaccount",
    kind: "ServiceAccount",
    namespaced: true,
    shortNames: ["sa"],
    subresources: [{
      name: "token",
      kind: "TokenRequest",
      verbs: ["create"],
      group: "authentication.k8s.io",
      version: "v1",
    }],
  }),
  res({
    group: "",
    version: "v1",
    resource: "services",
    singular: "service",
    kind: "Service",
    namespaced: true,
    verbs: ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
    shortNames: ["svc"],
    categories: ["all"],
    subresources: [{ name: "status", kind: "Service", verbs: STATUS_VERBS }],
    hasStatus: true,
    deleteReturnsObject: true,
  }),
  res({
    group: "apps",
    version: "v1",
    resource: "deployments",
    singular: "deployment",
    kind: "Deployment",
    namespaced: true,
    shortNames: ["deploy"],
    categories: ["all"],
    subresources: [
      { name: "scale", kind: "Scale", verbs: STATUS_VERBS, group: "autoscaling", version: "v1" },
      { name: "status", kind: "Deployment", verbs: STATUS_VERBS },
    ],
    hasStatus: true,
    trackGeneration: true,
  }),
  res({
    group: "apps",
    version: "v1",
    resource: "replicasets",
    singular: "replicaset",
    kind: "ReplicaSet",
    namespaced: true,
    shortNames: ["rs"],
    categories: ["all"],
    subresources: [
      { name: "scale", kind: "Scale", verbs: STATUS_VERBS, group: "autoscaling", version: "v1" },
      { name: "status", kind: "ReplicaSet", verbs: STATUS_VERBS },
    ],
    hasStatus: true,
    trackGeneration: true,
  }),
  res({
    group: "apps",
    version: "v1",
    resource: "statefulsets",
    singular: "statefulset",
    kind: "StatefulSet",
    namespaced: true,
    shortNames: ["sts"],
    categories: ["all"],
    subresources: [
      { name: "scale", kind: "Scale", verbs: STATUS_VERBS, group: "autoscaling", version: "v1" },
      { name: "status", kind: "StatefulSet", verbs: STATUS_VERBS },
    ],
    hasStatus: true,
    trackGeneration: true,
  }),
  res({
    group: "authentication.k8s.io",
    version: "v1",
    resource: "tokenreviews",
    singular: "tokenreview",
    kind: "TokenReview",
    namespaced: false,
    verbs: ["create"],
  }),
  res({
    group: "authorization.k8s.io",
    version: "v1",
    resource: "selfsubjectaccessreviews",
    singular: "selfsubjectaccessreview",
    kind: "SelfSubjectAccessReview",
    namespaced: false,
    verbs: ["create"],
  }),
  res({
    group: "authorization.k8s.io",
    version: "v1",
    resource: "subjectaccessreviews",
    singular: "subjectaccessreview",
    kind: "SubjectAccessReview",
    namespaced: false,
    verbs: ["create"],
  }),
  res({
    group: "authentication.k8s.io",
    version: "v1",
    resource: "selfsubjectreviews",
    singular: "selfsubjectreview",
    kind: "SelfSubjectReview",
    namespaced: false,
    verbs: ["create"],
  }),
  res({
    group: "discovery.k8s.io",
    version: "v1",
    resource: "endpointslices",
    singular: "endpointslice",
    kind: "EndpointSlice",
    namespaced: true,
  }),
  res({
    group: "networking.k8s.io",
    version: "v1",
    resource: "servicecidrs",
    singular: "servicecidr",
    kind: "ServiceCIDR",
    namespaced: false,
    subresources: [{ name: "status", kind: "ServiceCIDR", verbs: STATUS_VERBS }],
    hasStatus: true,
  }),
  res({
    group: "rbac.authorization.k8s.io",
    version: "v1",
    resource: "clusterrolebindings",
    singular: "clusterrolebinding",
    kind: "ClusterRoleBinding",
    namespaced: false,
  }),
  res({
    group: "rbac.authorization.k8s.io",
    version: "v1",
    resource: "clusterroles",
    singular: "clusterrole",
    kind: "ClusterRole",
    namespaced: false,
  }),
  res({
    group: "rbac.authorization.k8s.io",
    version: "v1",
    resource: "rolebindings",
    singular: "rolebinding",
    kind: "RoleBinding",
    namespaced: true,
  }),
  res({
    group: "rbac.authorization.k8s.io",
    version: "v1",
    resource: "roles",
    singular: "role",
    kind: "Role",
    namespaced: true,
  }),
];

/**
 * `apiVersion` of a resource's objects: `v1`, `apps/v1`.
 *
 * @param info the resource
 * @returns the group version string
 */
export function apiVersionOf(info: Pick<ResourceInfo, "group" | "version">): string {
  return info.group ? `${info.group}/${info.version}` : info.version;
}

/**
 * Finds a resource by plural (`pods`), plural and group (`deployments.apps`),
 * singular, short name (`svc`) or kind (`Deployment`).
 *
 * @param name how the caller names it
 * @returns the resource, or `undefined`
 */
export function findResource(name: string): ResourceInfo | undefined {
  const lower = name.toLowerCase();
  return RESOURCES.find((r) =>
    r.resource === lower || `${r.resource}.${r.group}` === lower || r.singular === lower ||
    r.kind.toLowerCase() === lower || (r.shortNames ?? []).includes(lower)
  );
}

/**
 * The resource at a group, version and plural from a URL.
 *
 * @param group the API group
 * @param version the version
 * @param resource the plural
 * @returns the resource, or `undefined`
 */
export function resourceAt(
  group: string,
  version: string,
  resource: string,
): ResourceInfo | undefined {
  return RESOURCES.find((r) =>
    r.group === group && r.version === version && r.resource === resource
  );
}

/** Group versions in the order `/apis` lists them (core `v1` is not among them). */
export function apiGroups(): { group: string; version: string }[] {
  const seen = new Map<string, string>();
  for (const r of RESOURCES) if (r.group && !seen.has(r.group)) seen.set(r.group, r.version);
  return [...seen].map(([group, version]) => ({ group, version }));
}
